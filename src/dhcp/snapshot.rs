//! The leases of a [`DhcpSource`] as a serde value, for a caller that persists them:
//! [`DhcpSnapshot`], [`DhcpRestoreError`], and [`DhcpSource::snapshot`] / [`DhcpSource::restore`]
//! (methods of the machine, defined here beside the format they write and read).

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::machine::{Client, DhcpSource, Exchange, Phase};
use super::{DhcpLease, MessageKind};
use crate::addr::Vip;
use crate::session::SessionId;

impl DhcpSource {
    /// The leases and remembered addresses, for persisting them.
    ///
    /// ```
    /// use ipvirt::dhcp::{DhcpConfig, DhcpSnapshot, DhcpSource};
    ///
    /// let dhcp = DhcpSource::new(DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]));
    /// assert_eq!(dhcp.snapshot().version, DhcpSnapshot::VERSION);
    /// assert!(dhcp.snapshot().leases.is_empty());
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> DhcpSnapshot {
        DhcpSnapshot {
            version: DhcpSnapshot::VERSION,
            leases: self.leases(),
            remembered: self
                .core
                .remembered_order
                .iter()
                .filter_map(|s| self.core.remembered(*s).map(|a| (*s, a)))
                .collect(),
        }
    }

    /// Takes back the leases of a snapshot at `now` (after a restart): an unexpired lease is held
    /// again and renewed at its T1 (at once if T1 has passed), so a restarted caller renews rather
    /// than starting over; an expired one is asked for again with an INIT-REBOOT REQUEST. Sessions
    /// already known are left as they are, and so is a lease of an address another session holds.
    /// A lease of an address this host cannot use ([`DhcpConfig::usable`](super::DhcpConfig::usable):
    /// written before the check existed, or before the host's addresses changed) is not taken
    /// back: a [`DhcpEvent::Refused`](super::DhcpEvent::Refused) says why.
    ///
    /// # Errors
    ///
    /// [`DhcpRestoreError`] for a newer format, duplicates, or an invalid lease; nothing changes.
    pub fn restore(
        &mut self,
        now: Duration,
        snapshot: &DhcpSnapshot,
    ) -> Result<(), DhcpRestoreError> {
        if snapshot.version > DhcpSnapshot::VERSION {
            return Err(DhcpRestoreError::UnsupportedVersion {
                version: snapshot.version,
            });
        }
        let mut seen_s = BTreeSet::new();
        let mut seen_a = BTreeSet::new();
        for (s, l) in &snapshot.leases {
            if !seen_s.insert(*s) {
                return Err(DhcpRestoreError::Duplicate {
                    what: alloc::format!("session {s}"),
                });
            }
            if !seen_a.insert(l.addr) {
                return Err(DhcpRestoreError::Duplicate {
                    what: alloc::format!("address {}", l.addr),
                });
            }
            let invalid = |reason| DhcpRestoreError::Invalid {
                session: *s,
                addr: l.addr,
                reason,
            };
            if Vip::new(l.addr).is_err() {
                return Err(invalid("the address can never be a VIP"));
            }
            if !(l.acquired <= l.t1 && l.t1 <= l.t2 && l.t2 <= l.expiry) {
                return Err(invalid(
                    "its times are not in the order acquired <= t1 <= t2 <= expiry",
                ));
            }
        }
        self.advance(now);
        for &(s, a) in &snapshot.remembered {
            self.core.remember(s, a);
        }
        for &(session, l) in &snapshot.leases {
            if self.clients.contains_key(&session) || self.core.holder_of(l.addr, None).is_some() {
                continue;
            }
            if let Err(reason) = self.core.config.usable(l.addr, l.server) {
                self.core
                    .refuse(session, MessageKind::Ack, l.addr, l.server, reason);
                continue;
            }
            // A lease from the future (the clock went back while we were down) keeps its length.
            let shift = l.acquired.saturating_sub(now);
            let lease = DhcpLease {
                acquired: l.acquired - shift,
                t1: l.t1 - shift,
                t2: l.t2 - shift,
                expiry: l.expiry - shift,
                ..l
            };
            let mut c = Client::new(now, Some(lease.addr));
            if lease.expiry <= now {
                let e = Exchange::new(self.core.new_xid(), now);
                self.core
                    .set_phase(session, &mut c, Phase::Rebooting(e, lease.addr));
                self.core.send_request(session, &mut c);
            } else {
                self.core.set_phase(session, &mut c, Phase::Bound(lease));
                c.next = lease.t1;
                if lease.t1 <= now {
                    self.core.on_timer(session, &mut c);
                }
            }
            self.clients.insert(session, c);
        }
        Ok(())
    }
}

/// The leases of a [`DhcpSource`], for persisting them ([`DhcpSource::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSnapshot {
    /// The format's version ([`DhcpSnapshot::VERSION`]).
    pub version: u32,
    /// The sessions that hold a lease.
    pub leases: Vec<(SessionId, DhcpLease)>,
    /// Released sessions and the address each held last, oldest first.
    pub remembered: Vec<(SessionId, Ipv4Addr)>,
}

impl DhcpSnapshot {
    /// The format version this crate writes.
    pub const VERSION: u32 = 1;
}

/// An error restoring a [`DhcpSnapshot`]. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhcpRestoreError {
    /// A newer format.
    #[error("the DHCP lease snapshot has format version {version}; this ipvirt reads version 1")]
    UnsupportedVersion {
        /// Its version.
        version: u32,
    },
    /// Two leases of one address, or two of one session.
    #[error("the DHCP lease snapshot names {what} twice")]
    Duplicate {
        /// The session or address.
        what: String,
    },
    /// A lease whose deadlines are out of order or whose address cannot be a VIP.
    #[error("the DHCP lease snapshot's lease of {addr} for session {session} is invalid: {reason}")]
    Invalid {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
        /// What is wrong.
        reason: &'static str,
    },
}
