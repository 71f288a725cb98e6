//! Virtual IPs leased from a real DHCP server, as Microsoft RD IP Virtualization gets them
//! (feature `dhcp`).
//!
//! [`DhcpSource`] is a **sans-I/O** DHCPv4 client for many sessions at once: it never opens a
//! socket, reads a clock or sleeps. The caller (a hooking layer, a session service, or the
//! `ipvirt_host::dhcp_driver::DhcpDriver` on Linux) feeds it:
//!
//! - [`start(now, session)`](DhcpSource::start) or [`lease(now, session)`](crate::AddressSource::lease):
//!   a session that wants an address;
//! - [`handle_datagram(now, bytes)`](DhcpSource::handle_datagram): every datagram that arrived on
//!   UDP port 68 of the VIP adapter;
//! - [`handle_timeout(now)`](DhcpSource::handle_timeout): when [`poll_timeout`](DhcpSource::poll_timeout)
//!   said so (calling it early or late is harmless);
//!
//! and drains:
//!
//! - [`poll_transmit()`](DhcpSource::poll_transmit): datagrams to send to UDP port 67, each to
//!   [`Destination::Broadcast`] (`255.255.255.255` out of the adapter) or to one server;
//! - [`poll_event()`](DhcpSource::poll_event): what happened to which lease (bound, renewed, lost,
//!   an unusable address refused…), for configuring the address on the adapter, persisting the
//!   leases and logging.
//!
//! # Time
//!
//! Every call that can change the machine takes `now` (quinn-proto's rule): [`start`](DhcpSource::start),
//! [`lease`](crate::AddressSource::lease), [`release`](crate::AddressSource::release),
//! [`decline`](DhcpSource::decline), [`handle_datagram`](DhcpSource::handle_datagram),
//! [`handle_timeout`](DhcpSource::handle_timeout) and [`restore`](DhcpSource::restore). Nothing
//! starts an exchange at a remembered clock. The queries (`&self`: [`state`](DhcpSource::state),
//! [`address_of`](crate::AddressSource::address_of), [`session_of`](crate::AddressSource::session_of), …) answer
//! as of the latest `now` the machine was given ([`DhcpSource::now`]).
//!
//! `now` is a [`Duration`] since an epoch the caller chooses, and must be the same epoch for every
//! call. Leases that are persisted ([`DhcpSource::snapshot`]) and restored after a restart need a
//! wall clock: `ipvirt_host::dhcp_driver::DhcpDriver` uses the time since the UNIX epoch. A clock
//! that **jumps forward** is time that passed (leases may expire at once: the safe reading). A
//! clock that **goes back** is not: every deadline the machine holds moves back by the same
//! amount, so a lease keeps the time it had left.
//!
//! # Sessions and client identifiers
//!
//! Each session is a DHCP client of its own, sharing the adapter's hardware address: its client
//! identifier (option 61) is type 0 followed by the policy's prefix and the session id in decimal
//! (`ipvirt-host1-7`), so the server keeps one lease per session, and a session that comes back
//! is the same client and asks for its previous address (option 50 in its DISCOVER).
//!
//! # Offers are not taken on trust
//!
//! An address a server offers or acknowledges becomes a session's VIP only if it is usable on
//! this host ([`DhcpConfig::usable`], the one definition): it can be a VIP at all ([`Vip::new`]),
//! it is not the server's own address (the session's RELEASE would never reach the server), it
//! is none of the host's own addresses nor the network or broadcast address of one of the host's
//! subnets ([`DhcpConfig::host_addresses`], which the driver fills from the interfaces), and it is
//! inside the adapter's network (`VIPAdapter`, [`DhcpConfig::adapter`]) and not its network or
//! broadcast address. An unusable OFFER is not taken up; an unusable ACK is DECLINEd, as RFC 2131
//! §3.1.5 wants for an acknowledged address that is in use. Either way the machine says why, in a
//! [`DhcpEvent::Refused`] the caller logs ([`Unusable`] in words).
//!
//! # States
//!
//! A session is in one of the [`DhcpState`]s of RFC 2131 §4.4; the data each state needs (the
//! transaction, the offer taken up, the lease) is held inside the state. `R` is the
//! retransmission delay: [`DhcpConfig::first_retransmit`] (4 s) doubling up to
//! [`DhcpConfig::max_retransmit`] (64 s). A reply "matches" when it is a BOOTREPLY with the
//! session's current transaction id (found in an index of the transactions, not by a search), the
//! adapter's hardware address and the session's client identifier (when the server echoes one);
//! anything else is ignored and counted ([`DhcpStats`]).
//!
//! | state | event | action | next state |
//! |---|---|---|---|
//! | (none) | [`lease(now, ..)`](crate::AddressSource::lease) / [`start(now, ..)`](DhcpSource::start) | DISCOVER, broadcast, with the previous address (option 50) if remembered | `Selecting` |
//! | `Init` | timer | DISCOVER, broadcast, new transaction | `Selecting` |
//! | `Selecting` | OFFER, address usable, not held or requested by another session | REQUEST, broadcast, server id + requested address | `Requesting` |
//! | `Selecting` | OFFER of an address another session holds or requests | ignored (counted as a conflict) | `Selecting` |
//! | `Selecting` | OFFER of an unusable address (see above) | ignored (counted as refused); event `Refused` | `Selecting` |
//! | `Selecting` | timer | DISCOVER again, after `R` | `Selecting` |
//! | `Requesting` | ACK from the chosen server, address free and usable | event `Bound`; lease starts when the first REQUEST left | `Bound` |
//! | `Requesting`, `Rebooting` | ACK of an address another session holds | DECLINE, broadcast; event `Declined` | `Init` (wait [`DhcpConfig::decline_wait`]) |
//! | `Requesting`, `Rebooting` | ACK of an unusable address | DECLINE, broadcast; events `Refused`, `Declined` | `Init` (wait) |
//! | `Requesting` | NAK from the chosen server | event `Nak` | `Init` (at once) |
//! | `Requesting` | timer, fewer than [`DhcpConfig::request_attempts`] sent | REQUEST again, after `R` | `Requesting` |
//! | `Requesting`, `Rebooting` | timer, all attempts sent | — | `Init` (at once) |
//! | (restored, expired) | [`restore`](DhcpSource::restore) | REQUEST, broadcast, requested address, no server id (INIT-REBOOT) | `Rebooting` |
//! | `Rebooting` | ACK, address free and usable | event `Bound` | `Bound` |
//! | `Rebooting` | NAK | event `Nak` | `Init` (at once) |
//! | `Rebooting` | timer, attempts left | REQUEST again | `Rebooting` |
//! | `Bound` | T1 | REQUEST unicast to the server, `ciaddr` = the address | `Renewing` |
//! | `Renewing` | ACK | event `Renewed` (new T1, T2, expiry) | `Bound` |
//! | `Renewing` | timer before T2 | REQUEST again after half the time left to T2 (at least [`DhcpConfig::min_renew_retransmit`]) | `Renewing` |
//! | `Renewing` | T2 | REQUEST broadcast | `Rebinding` |
//! | `Rebinding` | ACK (any server) | event `Renewed` | `Bound` |
//! | `Rebinding` | timer before expiry | REQUEST again after half the time left (at least the minimum) | `Rebinding` |
//! | `Renewing`, `Rebinding` | ACK of another address | the new address, if usable and no other session holds it (event `Renewed`); else DECLINE and events (`Refused`,) `Lost`, `Declined` | `Bound` / `Init` |
//! | `Renewing`, `Rebinding` | NAK | event `Lost` | `Init` (at once, asking for the old address) |
//! | `Bound`, `Renewing`, `Rebinding` | expiry | event `Lost` | `Init` (at once, asking for the old address) |
//! | `Bound`, `Renewing`, `Rebinding` | [`decline`](DhcpSource::decline) (the caller found the address in use) | DECLINE, broadcast; event `Declined` | `Init` (wait) |
//! | any | [`release(now, ..)`](crate::AddressSource::release) | RELEASE unicast to the server if an address is held; event `Released`; the address is remembered | (none) |
//! | any | clock goes back | every deadline moves back by as much | unchanged |
//! | any | a datagram that does not match, or is malformed | ignored, counted | unchanged |
//!
//! # What the rewriter sees
//!
//! [`AddressSource::lease`](crate::AddressSource::lease) returns the session's address while it holds an unexpired lease
//! (`Bound`, `Renewing`, `Rebinding`: renewing does not take the address away). Otherwise it returns
//! [`LeaseError::Pending`](crate::LeaseError::Pending) (no address yet: starting, waiting for a server, pool exhausted) or
//! [`LeaseError::Lost`](crate::LeaseError::Lost) (the lease expired or was refused); the caller passes no VIP to the
//! rewriter, and the policy's `on_lease_failure` applies, exactly as for an exhausted static pool.
//!
//! # Never two sessions on one address
//!
//! An address is held by at most one session: an OFFER of an address another session holds or is
//! requesting is not taken up, and an ACK of such an address is DECLINEd. Whatever a server answers
//! (a property test drives a hostile one), [`address_of`](crate::AddressSource::address_of) never gives
//! two live sessions the same address.
//!
//! # Files
//!
//! This file holds the types and the table above; `machine.rs` the machine ([`DhcpSource`], each
//! state's data inside its state); `wire.rs` the messages as bytes (`dhcproto`, and the
//! sanitising of untrusted datagrams); `snapshot.rs` the leases as a serde value
//! ([`DhcpSnapshot`], [`DhcpSource::snapshot`], [`DhcpSource::restore`]).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ipvirt::dhcp::{DhcpConfig, DhcpSource, Destination};
//! use ipvirt::{AddressSource, LeaseError, SessionId};
//!
//! let mut dhcp = DhcpSource::new(DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]));
//! let now = Duration::from_secs(1_000);
//! // The first call starts the exchange at `now`: no address yet, the policy's on_lease_failure
//! // applies.
//! assert_eq!(dhcp.lease(now, SessionId::new(7)), Err(LeaseError::Pending { session: SessionId::new(7) }));
//! let discover = dhcp.poll_transmit().unwrap();
//! assert_eq!(discover.destination, Destination::Broadcast);
//! assert_eq!(dhcp.poll_timeout(), Some(now + Duration::from_secs(4))); // retransmission
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::addr::{Vip, VipError};
use crate::session::SessionId;

mod machine;
mod snapshot;
mod wire;

pub use machine::DhcpSource;
pub use snapshot::{DhcpRestoreError, DhcpSnapshot};

/// The settings of a [`DhcpSource`].
///
/// ```
/// use std::time::Duration;
/// use ipvirt::dhcp::DhcpConfig;
///
/// let c = DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]);
/// assert_eq!(c.first_retransmit, Duration::from_secs(4));
/// assert_eq!(c.client_id(ipvirt::SessionId::new(7)), b"\0ipvirt-host1-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpConfig {
    /// The stable part of every session's client identifier (the policy's
    /// `virtual_ip.dhcp.client_id_prefix`). Two servers on one network need different prefixes.
    pub client_id_prefix: Vec<u8>,
    /// The adapter's hardware (MAC) address, `chaddr` of every message.
    pub hardware_addr: [u8; 6],
    /// The first retransmission delay (RFC 2131: 4 s). dnsmasq pings an address before it offers
    /// it, so much shorter delays retransmit before the first offer can come.
    pub first_retransmit: Duration,
    /// The largest retransmission delay (RFC 2131: 64 s).
    pub max_retransmit: Duration,
    /// How many REQUESTs a session sends in `Requesting` or `Rebooting` before it starts over.
    pub request_attempts: u32,
    /// The shortest delay between two REQUESTs while renewing or rebinding (RFC 2131: 60 s).
    pub min_renew_retransmit: Duration,
    /// How long a session waits after a DECLINE before it asks again (RFC 2131: 10 s).
    pub decline_wait: Duration,
    /// Seeds the transaction ids (any value; the driver mixes in the time and the process id).
    pub seed: u64,
    /// The adapter's network (the policy's `virtual_ip.adapter`, `VIPAdapter`): an address outside
    /// it, or its network or broadcast address, is refused. `None`: not checked.
    pub adapter: Option<Ipv4Net>,
    /// The host's own IPv4 addresses, each with its prefix (`10.0.0.2/24`): none of them, and no
    /// network or broadcast address of their subnets, is ever a VIP. The Linux driver fills it
    /// from every interface of the host.
    pub host_addresses: Vec<Ipv4Net>,
}

impl DhcpConfig {
    /// The RFC 2131 defaults with this client-id prefix and hardware address.
    #[must_use]
    pub fn new(client_id_prefix: Vec<u8>, hardware_addr: [u8; 6]) -> DhcpConfig {
        DhcpConfig {
            client_id_prefix,
            hardware_addr,
            first_retransmit: Duration::from_secs(4),
            max_retransmit: Duration::from_secs(64),
            request_attempts: 4,
            min_renew_retransmit: Duration::from_secs(60),
            decline_wait: Duration::from_secs(10),
            seed: 0x9e37_79b9_7f4a_7c15,
            adapter: None,
            host_addresses: Vec::new(),
        }
    }

    /// Whether `addr`, offered or acknowledged by the server `server`, can be a session's VIP on
    /// this host: the one definition the machine checks every OFFER and ACK with (see the
    /// [module](self), "Offers are not taken on trust").
    ///
    /// # Errors
    ///
    /// [`Unusable`], naming why: never a VIP at all, the server's own address, one of the host's
    /// own addresses, the network or broadcast address of one of the host's subnets or of the
    /// adapter's network, or outside the adapter's network.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::dhcp::{DhcpConfig, Unusable};
    ///
    /// let mut c = DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]);
    /// c.adapter = Some("10.0.0.0/24".parse()?);
    /// c.host_addresses = vec!["10.0.0.2/24".parse()?];
    /// let server = "10.0.0.1".parse()?;
    /// assert!(c.usable("10.0.0.100".parse()?, server).is_ok());
    /// assert!(matches!(c.usable("10.0.0.2".parse()?, server), Err(Unusable::HostAddress { .. })));
    /// assert!(matches!(c.usable("10.0.0.1".parse()?, server), Err(Unusable::ServerAddress)));
    /// assert!(matches!(c.usable("10.0.0.255".parse()?, server), Err(Unusable::Broadcast { .. })));
    /// assert!(matches!(c.usable("10.0.1.7".parse()?, server), Err(Unusable::OutsideAdapter { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn usable(&self, addr: Ipv4Addr, server: Ipv4Addr) -> Result<Vip, Unusable> {
        let vip = Vip::new(addr).map_err(Unusable::NotAVip)?;
        if addr == server {
            return Err(Unusable::ServerAddress);
        }
        // Network and broadcast addresses of a subnet (a /31 or /32 has none, RFC 3021).
        let edge = |net: &Ipv4Net| -> Option<Unusable> {
            let net = net.trunc();
            if net.prefix_len() >= 31 {
                None
            } else if addr == net.network() {
                Some(Unusable::Network { network: net })
            } else if addr == net.broadcast() {
                Some(Unusable::Broadcast { network: net })
            } else {
                None
            }
        };
        for net in &self.host_addresses {
            if net.addr() == addr {
                return Err(Unusable::HostAddress { interface: *net });
            }
            if let Some(u) = edge(net) {
                return Err(u);
            }
        }
        if let Some(adapter) = self.adapter {
            if !adapter.contains(&addr) {
                return Err(Unusable::OutsideAdapter {
                    adapter: adapter.trunc(),
                });
            }
            if let Some(u) = edge(&adapter) {
                return Err(u);
            }
        }
        Ok(vip)
    }

    /// The session's client identifier (option 61): type 0, the prefix, the session id in decimal.
    #[must_use]
    pub fn client_id(&self, session: SessionId) -> Vec<u8> {
        let mut id = Vec::with_capacity(self.client_id_prefix.len() + 9);
        id.push(0);
        id.extend_from_slice(&self.client_id_prefix);
        id.extend_from_slice(alloc::format!("{session}").as_bytes());
        id
    }
}

/// Where a [`Transmit`] goes (always UDP port 67).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `255.255.255.255`, out of the VIP adapter.
    Broadcast,
    /// One server, unicast.
    Server(Ipv4Addr),
}

/// A datagram for the caller to send from UDP port 68 to port 67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The session it is for.
    pub session: SessionId,
    /// The message type (DISCOVER, REQUEST, DECLINE, RELEASE).
    pub kind: MessageKind,
    /// Where it goes.
    pub destination: Destination,
    /// The encoded DHCP message.
    pub payload: Vec<u8>,
}

/// The DHCP message types the machine sends or reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPOFFER.
    Offer,
    /// DHCPREQUEST.
    Request,
    /// DHCPDECLINE.
    Decline,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
    /// DHCPRELEASE.
    Release,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Discover => "DISCOVER",
            MessageKind::Offer => "OFFER",
            MessageKind::Request => "REQUEST",
            MessageKind::Decline => "DECLINE",
            MessageKind::Ack => "ACK",
            MessageKind::Nak => "NAK",
            MessageKind::Release => "RELEASE",
        })
    }
}

/// A session's state (RFC 2131 §4.4; see the [module](self) for the transition table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhcpState {
    /// Waiting to (re)start: after a DECLINE, for [`DhcpConfig::decline_wait`].
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offered address sent, waiting for the ACK.
    Requesting,
    /// REQUEST for a remembered address sent (INIT-REBOOT), waiting for the ACK.
    Rebooting,
    /// Holding a lease.
    Bound,
    /// Past T1: renewing with the server that granted the lease.
    Renewing,
    /// Past T2: asking any server to extend the lease.
    Rebinding,
}

impl fmt::Display for DhcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhcpState::Init => "init",
            DhcpState::Selecting => "selecting",
            DhcpState::Requesting => "requesting",
            DhcpState::Rebooting => "rebooting",
            DhcpState::Bound => "bound",
            DhcpState::Renewing => "renewing",
            DhcpState::Rebinding => "rebinding",
        })
    }
}

/// A lease a server granted: the address, the server, and the deadlines (on the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpLease {
    /// The address.
    pub addr: Ipv4Addr,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// When the lease started (when its REQUEST left).
    pub acquired: Duration,
    /// When renewal starts (T1).
    pub t1: Duration,
    /// When rebinding starts (T2).
    pub t2: Duration,
    /// When the lease ends.
    pub expiry: Duration,
}

/// What happened to a session's lease (from [`DhcpSource::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhcpEvent {
    /// The session got an address (configure it on the adapter).
    Bound {
        /// The session.
        session: SessionId,
        /// The lease.
        lease: DhcpLease,
    },
    /// The session's lease was extended (or moved to a new address).
    Renewed {
        /// The session.
        session: SessionId,
        /// The address held before.
        previous: Ipv4Addr,
        /// The lease now.
        lease: DhcpLease,
    },
    /// The session lost its address (expired, or the server refused to extend it).
    Lost {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
    },
    /// A server refused a REQUEST of a session that held no address.
    Nak {
        /// The session.
        session: SessionId,
    },
    /// The session declined an address (another session holds it, or the caller found it in use).
    Declined {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
        /// Whether the session held it until now (so it must be taken off the adapter).
        was_held: bool,
    },
    /// The session released its address (logoff).
    Released {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
    },
    /// A server offered or acknowledged an address the session cannot use ([`DhcpConfig::usable`]):
    /// an OFFER is not taken up, an ACK is DECLINEd (a [`Declined`](Self::Declined) event follows).
    /// A caller logs it: the server is configured to hand out addresses it should not.
    Refused {
        /// The session.
        session: SessionId,
        /// OFFER or ACK.
        kind: MessageKind,
        /// The address.
        addr: Ipv4Addr,
        /// The server that offered it (option 54).
        server: Ipv4Addr,
        /// Why it cannot be used.
        reason: Unusable,
    },
}

impl fmt::Display for DhcpEvent {
    /// The event in words, for a log.
    ///
    /// ```
    /// use ipvirt::SessionId;
    /// use ipvirt::dhcp::{DhcpEvent, MessageKind, Unusable};
    ///
    /// let e = DhcpEvent::Refused {
    ///     session: SessionId::new(7),
    ///     kind: MessageKind::Offer,
    ///     addr: "10.0.0.2".parse()?,
    ///     server: "10.0.0.1".parse()?,
    ///     reason: Unusable::HostAddress { interface: "10.0.0.2/24".parse()? },
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "session 7: refused the OFFER of 10.0.0.2 from 10.0.0.1: it is one of this host's own addresses (10.0.0.2/24)"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DhcpEvent::Bound { session, lease } => write!(
                f,
                "session {session}: bound {} from {}",
                lease.addr, lease.server
            ),
            DhcpEvent::Renewed {
                session,
                previous,
                lease,
            } if previous == lease.addr => write!(
                f,
                "session {session}: renewed {} from {}",
                lease.addr, lease.server
            ),
            DhcpEvent::Renewed {
                session,
                previous,
                lease,
            } => write!(
                f,
                "session {session}: the server {} moved the lease from {previous} to {}",
                lease.server, lease.addr
            ),
            DhcpEvent::Lost { session, addr } => {
                write!(f, "session {session}: lost {addr} (expired or refused)")
            }
            DhcpEvent::Nak { session } => write!(f, "session {session}: the server refused (NAK)"),
            DhcpEvent::Declined { session, addr, .. } => {
                write!(f, "session {session}: declined {addr}")
            }
            DhcpEvent::Released { session, addr } => {
                write!(f, "session {session}: released {addr}")
            }
            DhcpEvent::Refused {
                session,
                kind,
                addr,
                server,
                reason,
            } => write!(
                f,
                "session {session}: refused the {kind} of {addr} from {server}: {reason}"
            ),
        }
    }
}

/// Why an address a DHCP server gave cannot be a session's VIP on this host
/// ([`DhcpConfig::usable`]). Every payload is `Copy`.
///
/// ```
/// use ipvirt::dhcp::Unusable;
///
/// let u = Unusable::Broadcast { network: "10.0.0.0/24".parse()? };
/// assert_eq!(u.to_string(), "it is the broadcast address of 10.0.0.0/24");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// An address that can never be a VIP (unspecified, loopback, multicast, broadcast…).
    NotAVip(VipError),
    /// The DHCP server's own address: the session's RELEASE would never reach the server.
    ServerAddress,
    /// One of this host's own addresses.
    HostAddress {
        /// The host's address, with its prefix.
        interface: Ipv4Net,
    },
    /// The network address of one of the host's subnets or of the adapter's network.
    Network {
        /// The subnet.
        network: Ipv4Net,
    },
    /// The broadcast address of one of the host's subnets or of the adapter's network.
    Broadcast {
        /// The subnet.
        network: Ipv4Net,
    },
    /// Outside the adapter's network (`VIPAdapter`).
    OutsideAdapter {
        /// The adapter's network.
        adapter: Ipv4Net,
    },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NotAVip(e) => write!(f, "{e}"),
            Unusable::ServerAddress => f.write_str(
                "it is the DHCP server's own address (the session's RELEASE would never reach the server)",
            ),
            Unusable::HostAddress { interface } => {
                write!(f, "it is one of this host's own addresses ({interface})")
            }
            Unusable::Network { network } => write!(f, "it is the network address of {network}"),
            Unusable::Broadcast { network } => {
                write!(f, "it is the broadcast address of {network}")
            }
            Unusable::OutsideAdapter { adapter } => write!(
                f,
                "it is outside the adapter's network {adapter} (virtual_ip.adapter)"
            ),
        }
    }
}

/// Why [`DhcpSource::handle_datagram`] did not use a datagram. Nothing changed; the datagram is
/// counted in [`DhcpStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The bytes are not a DHCP message.
    #[error("malformed DHCP datagram ({len} bytes): {reason}")]
    Malformed {
        /// The datagram's length.
        len: usize,
        /// What is wrong.
        reason: String,
    },
    /// A BOOTREQUEST (another client's message), or a message type a client never receives.
    #[error("not a DHCP reply for a client: {what}")]
    NotAReply {
        /// The opcode or message type.
        what: String,
    },
    /// No session waits for this transaction id (late, duplicate, or another client's).
    #[error("no session waits for transaction {xid:#010x}")]
    UnknownTransaction {
        /// The transaction id.
        xid: u32,
    },
    /// The transaction id matches but the hardware address or client identifier does not.
    #[error(
        "transaction {xid:#010x} matches session {session}, but the reply is for another client"
    )]
    OtherClient {
        /// The transaction id.
        xid: u32,
        /// The session with that transaction id.
        session: SessionId,
    },
    /// The session is not in a state that takes this message type (an OFFER while requesting, an
    /// ACK from another server than the chosen one…).
    #[error("session {session} ({state}) does not take this {kind}")]
    Unexpected {
        /// The session.
        session: SessionId,
        /// Its state.
        state: DhcpState,
        /// The message type.
        kind: MessageKind,
    },
    /// The reply gives an address that can never be a VIP, or an ACK without a lease time.
    #[error("session {session}: unusable {kind}: {reason}")]
    Unusable {
        /// The session.
        session: SessionId,
        /// The message type.
        kind: MessageKind,
        /// What is wrong.
        reason: String,
    },
}

/// Counters of what the machine ignored or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpStats {
    /// Datagrams that were not DHCP messages.
    pub malformed: u64,
    /// Well-formed datagrams that were not for a waiting session, or not in the right state.
    pub ignored: u64,
    /// Offers and acks of an address another session holds or requests.
    pub conflicts: u64,
    /// Offers and acks of an address this host cannot use ([`Unusable`]), refused or declined.
    pub refused: u64,
}
