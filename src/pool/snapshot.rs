//! A pool's state for a service that restarts: [`PoolSnapshot`], what a restore had to drop
//! ([`RestoreWarning`]), and [`StaticPool::snapshot`] / [`StaticPool::restore`] (methods of the
//! pool, defined here beside the format they read and write).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::free_set::FreeSet;
use super::static_pool::{PoolError, StaticPool};
use crate::addr::PoolEntry;
use crate::session::SessionId;

impl StaticPool {
    /// The pool's state as a serde value: its definition, the live leases and the remembered
    /// previous holders.
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.0/29".parse()?], &Host::default())?;
    /// pool.lease(SessionId::new(7))?;
    /// let snap = pool.snapshot();
    /// let mut again = StaticPool::new(&["192.0.2.0/29".parse()?], &Host::default())?;
    /// again.restore(&snap)?;
    /// assert_eq!(again.address_of(SessionId::new(7)), pool.address_of(SessionId::new(7)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            version: PoolSnapshot::VERSION,
            pool: self.entries.clone(),
            leases: self.leases(),
            remembered: self.remembered(),
            cursor: Some(self.addr_at(self.cursor)),
        }
    }

    /// Replaces the pool's state with the snapshot's: its live leases, its remembered sessions (in
    /// their age order) and its rotation cursor. The pool's own definition is kept (the snapshot's
    /// `pool` is informative): a service rebuilds the pool from its current policy, then restores.
    ///
    /// A policy may have changed the pool since the snapshot was taken. What no longer fits is
    /// dropped and returned as a [`RestoreWarning`] (never a refusal, so one stale entry cannot
    /// stop every later launch): a lease of an address that left the pool (that address is no
    /// longer the pool's to hand out, so dropping it cannot put two sessions on one address), a
    /// remembered address outside the pool, or a remembered entry that conflicts with a live lease
    /// or a newer remembered entry. A cursor outside the pool restarts the rotation at the start.
    ///
    /// # Errors
    ///
    /// What cannot come from a policy change means the snapshot is corrupt, and the pool is left
    /// unchanged: [`PoolError::DuplicateSession`] and [`PoolError::DuplicateAddress`] among the
    /// live leases, [`PoolError::InvalidSession`], and [`PoolError::UnsupportedVersion`] for a
    /// snapshot written by a newer ipvirt.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, PoolError, PoolSnapshot, RestoreWarning, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.0/29".parse()?], &Host::default())?;
    /// let stale = PoolSnapshot {
    ///     leases: vec![(SessionId::new(7), "192.0.2.1".parse()?)],
    ///     remembered: vec![(SessionId::new(8), "198.51.100.1".parse()?)],
    ///     ..PoolSnapshot::default()
    /// };
    /// let warnings = pool.restore(&stale)?;
    /// assert_eq!(warnings, [RestoreWarning::RememberedOutsidePool {
    ///     session: SessionId::new(8),
    ///     addr: "198.51.100.1".parse()?,
    /// }]);
    /// assert_eq!(pool.address_of(SessionId::new(7)), Some("192.0.2.1".parse()?));
    ///
    /// let corrupt = PoolSnapshot {
    ///     leases: vec![(SessionId::new(7), "192.0.2.1".parse()?), (SessionId::new(8), "192.0.2.1".parse()?)],
    ///     ..PoolSnapshot::default()
    /// };
    /// assert!(matches!(pool.restore(&corrupt), Err(PoolError::DuplicateAddress { .. })));
    /// assert_eq!(pool.leased(), 1); // untouched
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&mut self, snapshot: &PoolSnapshot) -> Result<Vec<RestoreWarning>, PoolError> {
        if snapshot.version > PoolSnapshot::VERSION {
            return Err(PoolError::UnsupportedVersion {
                version: snapshot.version,
            });
        }
        let mut warnings = Vec::new();
        // Check everything first, into fresh tables.
        let mut leases: HashMap<SessionId, u32> = HashMap::with_capacity(snapshot.leases.len());
        let mut seen_sessions: HashMap<SessionId, ()> = HashMap::new();
        let mut seen_addrs: HashMap<Ipv4Addr, ()> = HashMap::new();
        for &(session, addr) in &snapshot.leases {
            if session > SessionId::MAX {
                return Err(PoolError::InvalidSession { session });
            }
            if seen_sessions.insert(session, ()).is_some() {
                return Err(PoolError::DuplicateSession { session });
            }
            if seen_addrs.insert(addr, ()).is_some() {
                return Err(PoolError::DuplicateAddress { addr });
            }
            match self.index_of(addr) {
                Some(idx) => {
                    leases.insert(session, idx);
                }
                None => warnings.push(RestoreWarning::LeaseOutsidePool { session, addr }),
            }
        }
        // Remembered entries, oldest first: a newer entry for the same session or address wins.
        let mut remembered: Vec<(SessionId, u32)> = Vec::new();
        let mut by_session: HashMap<SessionId, usize> = HashMap::new();
        let mut by_index: HashMap<u32, usize> = HashMap::new();
        let mut dropped = Vec::new();
        for &(session, addr) in &snapshot.remembered {
            if session > SessionId::MAX {
                return Err(PoolError::InvalidSession { session });
            }
            let Some(idx) = self.index_of(addr) else {
                warnings.push(RestoreWarning::RememberedOutsidePool { session, addr });
                continue;
            };
            if leases.contains_key(&session) || seen_addrs.contains_key(&addr) {
                warnings.push(RestoreWarning::RememberedConflict { session, addr });
                continue;
            }
            let pos = remembered.len();
            for old in [by_session.insert(session, pos), by_index.insert(idx, pos)]
                .into_iter()
                .flatten()
            {
                if let Some(&(s, i)) = remembered.get(old)
                    && !dropped.contains(&old)
                {
                    dropped.push(old);
                    warnings.push(RestoreWarning::RememberedConflict {
                        session: s,
                        addr: self.addr_at(i),
                    });
                }
            }
            remembered.push((session, idx));
        }
        let keep: Vec<(SessionId, u32)> = remembered
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains(i))
            .map(|(_, e)| e)
            .collect();
        let skip = keep.len().saturating_sub(Self::REMEMBERED);
        let cursor = snapshot.cursor.and_then(|a| self.index_of(a)).unwrap_or(0);
        // Then apply, which cannot fail.
        self.slots.iter_mut().for_each(|s| *s = 0);
        self.free = FreeSet::full(self.size);
        self.leases = HashMap::new();
        self.remembered = HashMap::new();
        self.remembered_age = BTreeMap::new();
        self.next_age = 0;
        for (&session, &idx) in &leases {
            self.take(idx, session);
        }
        for &(session, idx) in keep.iter().skip(skip) {
            if let Some(slot) = self.slots.get_mut(idx as usize) {
                *slot = session.get() + 1;
            }
            self.remember(session, idx);
        }
        self.cursor = cursor;
        Ok(warnings)
    }
}

/// A pool's state, for a service that restarts (see [`StaticPool::snapshot`]).
///
/// Everything the pool's promises need survives a snapshot and restore: the live leases, the
/// remembered sessions in age order (so a returning session gets its old address back and the
/// oldest is forgotten first), and the rotation cursor (so a released address is reused late).
/// `version` is [`PoolSnapshot::VERSION`]; a snapshot without it is read as version 1 (ipvirt 0.1,
/// which had no cursor and no age order), and a newer version is refused by
/// [`StaticPool::restore`].
///
/// ```
/// use ipvirt::{PoolSnapshot, SessionId};
///
/// let json = r#"{"version":2,"pool":["192.0.2.0/29"],"leases":[[7,"192.0.2.1"]],"remembered":[],"cursor":"192.0.2.2"}"#;
/// let snap: PoolSnapshot = serde_json::from_str(json)?;
/// assert_eq!(snap.leases, [(SessionId::new(7), "192.0.2.1".parse()?)]);
/// assert_eq!(snap.cursor, Some("192.0.2.2".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSnapshot {
    /// The snapshot format's version ([`PoolSnapshot::VERSION`] when written by this crate).
    pub version: u32,
    /// The pool's definition when the snapshot was taken.
    pub pool: Vec<PoolEntry>,
    /// The live leases.
    pub leases: Vec<(SessionId, Ipv4Addr)>,
    /// Released sessions and the address each held last, oldest first.
    pub remembered: Vec<(SessionId, Ipv4Addr)>,
    /// Where the next search for a free address starts; `None` starts at the pool's first address.
    pub cursor: Option<Ipv4Addr>,
}

impl PoolSnapshot {
    /// The format version this crate writes.
    pub const VERSION: u32 = 2;
}

impl Default for PoolSnapshot {
    /// An empty snapshot of version 1 (the version of a snapshot that does not say).
    fn default() -> Self {
        PoolSnapshot {
            version: 1,
            pool: Vec::new(),
            leases: Vec::new(),
            remembered: Vec::new(),
            cursor: None,
        }
    }
}

/// What [`StaticPool::restore`] dropped from a snapshot because it no longer fits the pool (the
/// policy changed since the snapshot was taken). Nothing dropped can put two sessions on one
/// address; a caller logs these.
///
/// ```
/// use ipvirt::{RestoreWarning, SessionId};
///
/// let w = RestoreWarning::LeaseOutsidePool { session: SessionId::new(7), addr: "198.51.100.1".parse()? };
/// assert_eq!(w.to_string(), "session 7's lease of 198.51.100.1 was dropped: the address is no longer in the pool");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreWarning {
    /// A live lease of an address that is no longer in the pool.
    LeaseOutsidePool {
        /// The session.
        session: SessionId,
        /// Its address.
        addr: Ipv4Addr,
    },
    /// A remembered previous address that is no longer in the pool.
    RememberedOutsidePool {
        /// The released session.
        session: SessionId,
        /// The address it held last.
        addr: Ipv4Addr,
    },
    /// A remembered previous address that a live lease or a newer remembered entry also names.
    RememberedConflict {
        /// The released session.
        session: SessionId,
        /// The address it held last.
        addr: Ipv4Addr,
    },
}

impl fmt::Display for RestoreWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RestoreWarning::LeaseOutsidePool { session, addr } => write!(
                f,
                "session {session}'s lease of {addr} was dropped: the address is no longer in the pool"
            ),
            RestoreWarning::RememberedOutsidePool { session, addr } => write!(
                f,
                "session {session} will not get {addr} back: the address is no longer in the pool"
            ),
            RestoreWarning::RememberedConflict { session, addr } => write!(
                f,
                "session {session} will not get {addr} back: the snapshot gives that address or session another entry"
            ),
        }
    }
}
