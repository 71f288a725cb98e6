//! The static pool of VIPs (Microsoft's static-pool plug-in): [`StaticPool`], and the error of
//! building one, [`PoolError`]. Its snapshot and restore are in `snapshot.rs`.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use hashbrown::HashMap;

use super::free_set::FreeSet;
use super::source::{AddressSource, LeaseError};
use crate::addr::{PoolEntry, Vip, reserved_block};
use crate::host::Host;
use crate::policy::VirtualIp;
use crate::session::SessionId;

/// The largest pool accepted: a /8.
const MAX_SIZE: u64 = 1 << 24;
/// Slot flag: the address is leased (else the low bits name the previous holder, or 0 for none).
const LIVE: u32 = 1 << 31;
/// Slot bits that hold `session + 1`.
const HOLDER: u32 = (1 << 24) - 1;

/// A static pool of VIPs.
///
/// Overlapping entries are merged; a CIDR's network and broadcast addresses and the server's own
/// addresses are never handed out. A session keeps the same address for every call while its lease
/// lives; a session that comes back after [`release`](Self::release) gets its previous address if it
/// is still free (the pool remembers up to [`REMEMBERED`](Self::REMEMBERED) released sessions, and
/// hands addresses out in rotation so a released one is reused as late as possible). Memory: about
/// 4.1 bytes per address (a `u32` holder slot and a three-level free bitmap), plus one hash-map entry
/// per live lease; `lease` and `release` cost the same with a thousand or a million live leases. One
/// owner changes it (`&mut self`); share it between threads with [`SharedPool`](crate::SharedPool) (`std`).
///
/// [`snapshot`](Self::snapshot) and [`restore`](Self::restore) are defined in `pool/snapshot.rs`,
/// beside the [`PoolSnapshot`](crate::PoolSnapshot) format they write and read.
#[derive(Debug, Clone)]
pub struct StaticPool {
    /// The definition, as given (for snapshots and explanations).
    pub(super) entries: Vec<PoolEntry>,
    /// Addresses of the server that were left out.
    pub(super) excluded: Vec<Ipv4Addr>,
    /// Disjoint, sorted runs of leasable addresses: (first, last, index of first).
    pub(super) runs: Vec<(u32, u32, u32)>,
    pub(super) size: u32,
    /// Per address index: `LIVE | (session + 1)` while leased, else `previous holder + 1` or 0.
    pub(super) slots: Vec<u32>,
    pub(super) free: FreeSet,
    pub(super) leases: HashMap<SessionId, u32>,
    /// Released sessions' previous addresses (index) and when they were released (a sequence
    /// number), at most `REMEMBERED`.
    pub(super) remembered: HashMap<SessionId, (u32, u64)>,
    /// The same sessions by release sequence number: the first is the oldest, evicted first.
    pub(super) remembered_age: BTreeMap<u64, SessionId>,
    /// The next release sequence number.
    pub(super) next_age: u64,
    /// Where the next search for a free address starts.
    pub(super) cursor: u32,
}

impl StaticPool {
    /// How many released sessions' previous addresses the pool remembers.
    pub const REMEMBERED: usize = 65_536;

    /// A pool of the addresses in `entries` (merged where they overlap), less the server's own
    /// addresses in `host`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Empty`] when no address is left, [`PoolError::TooLarge`] past 16 777 216
    /// addresses (a /8), [`PoolError::Reserved`] when an entry overlaps 0.0.0.0/8, 127.0.0.0/8,
    /// 224.0.0.0/4 or 240.0.0.0/4 (addresses that can never be a VIP).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, StaticPool};
    ///
    /// let host = Host::new(["192.0.2.1".parse()?]);
    /// let pool = StaticPool::new(&["192.0.2.0/24".parse()?, "192.0.2.200-192.0.2.210".parse()?], &host)?;
    /// assert_eq!(pool.size(), 253); // .1-.254, less the server's .1; the range overlaps and merges
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(entries: &[PoolEntry], host: &Host) -> Result<StaticPool, PoolError> {
        let mut spans: Vec<(u32, u32)> = entries
            .iter()
            .map(|e| (e.first().to_bits(), e.last().to_bits()))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some((_, last)) if u64::from(a) <= u64::from(*last) + 1 => *last = (*last).max(b),
                _ => merged.push((a, b)),
            }
        }
        // Cut the server's addresses out (they are sorted).
        let mut excluded = Vec::new();
        let mut runs_bits: Vec<(u32, u32)> = Vec::new();
        for (a, b) in merged {
            let mut start = u64::from(a);
            for &server in host
                .ipv4()
                .iter()
                .filter(|s| (a..=b).contains(&s.to_bits()))
            {
                excluded.push(server);
                let s = u64::from(server.to_bits());
                if s > start {
                    runs_bits.push((start as u32, (s - 1) as u32));
                }
                start = s + 1;
            }
            if start <= u64::from(b) {
                runs_bits.push((start as u32, b));
            }
        }
        let total: u64 = runs_bits
            .iter()
            .map(|&(a, b)| u64::from(b) - u64::from(a) + 1)
            .sum();
        if total == 0 {
            return Err(PoolError::Empty);
        }
        if total > MAX_SIZE {
            return Err(PoolError::TooLarge { size: total });
        }
        let size = u32::try_from(total).map_err(|_| PoolError::TooLarge { size: total })?;
        // Every address must be able to be a VIP (the one definition, `Vip::new`).
        for &(a, b) in &runs_bits {
            if let Some(block) = reserved_block(Ipv4Addr::from_bits(a), Ipv4Addr::from_bits(b)) {
                let entry = entries
                    .iter()
                    .copied()
                    .find(|e| e.first().to_bits() <= b && e.last().to_bits() >= a)
                    .unwrap_or(PoolEntry::Range {
                        first: Ipv4Addr::from_bits(a),
                        last: Ipv4Addr::from_bits(b),
                    });
                return Err(PoolError::Reserved { entry, block });
            }
        }
        let mut runs = Vec::with_capacity(runs_bits.len());
        let mut index = 0u32;
        for (a, b) in runs_bits {
            runs.push((a, b, index));
            index += b - a + 1;
        }
        Ok(StaticPool {
            entries: entries.to_vec(),
            excluded,
            runs,
            size,
            slots: vec![0; size as usize],
            free: FreeSet::full(size),
            leases: HashMap::new(),
            remembered: HashMap::new(),
            remembered_age: BTreeMap::new(),
            next_age: 0,
            cursor: 0,
        })
    }

    /// The pool a policy describes: `virtual_ip.pool`, less the server's addresses and, when
    /// `virtual_ip.adapter` is set, less the adapter's own address and its network's network and
    /// broadcast addresses.
    ///
    /// # Errors
    ///
    /// As [`StaticPool::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, Policy, StaticPool};
    ///
    /// let policy = Policy::from_toml("[virtual_ip]\npool = [\"192.0.2.100-192.0.2.199\"]\n")?;
    /// let pool = StaticPool::from_policy(&policy.virtual_ip, &Host::default())?;
    /// assert_eq!(pool.size(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_policy(vip: &VirtualIp, host: &Host) -> Result<StaticPool, PoolError> {
        // The adapter's own address, and its network's network and broadcast addresses, are not
        // VIPs either.
        let mut extra: Vec<core::net::IpAddr> =
            host.ipv4().iter().copied().map(Into::into).collect();
        extra.extend(host.ipv6().iter().copied().map(core::net::IpAddr::from));
        if let Some(adapter) = vip.adapter {
            extra.push(adapter.addr().into());
            if adapter.prefix_len() < 31 {
                extra.push(adapter.network().into());
                extra.push(adapter.broadcast().into());
            }
        }
        StaticPool::new(&vip.pool, &Host::new(extra))
    }

    /// How many addresses the pool holds.
    #[must_use]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// How many addresses are leased now.
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.0/30".parse()?], &Host::default())?;
    /// pool.lease(SessionId::new(1))?;
    /// assert_eq!((pool.leased(), pool.available()), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn leased(&self) -> u32 {
        u32::try_from(self.leases.len()).unwrap_or(u32::MAX)
    }

    /// How many addresses are free.
    #[must_use]
    pub fn available(&self) -> u32 {
        self.size - self.leased()
    }

    /// The entries the pool was built from.
    #[must_use]
    pub fn entries(&self) -> &[PoolEntry] {
        &self.entries
    }

    /// The server's own addresses that fell inside the entries and were left out.
    ///
    /// ```
    /// use ipvirt::{Host, StaticPool};
    ///
    /// let pool = StaticPool::new(&["192.0.2.0/24".parse()?], &Host::new(["192.0.2.1".parse()?]))?;
    /// assert_eq!(pool.excluded(), ["192.0.2.1".parse::<std::net::Ipv4Addr>()?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn excluded(&self) -> &[Ipv4Addr] {
        &self.excluded
    }

    /// Whether `addr` belongs to the pool (leased or not).
    ///
    /// ```
    /// use ipvirt::{Host, StaticPool};
    ///
    /// let pool = StaticPool::new(&["192.0.2.0/24".parse()?], &Host::default())?;
    /// assert!(pool.contains("192.0.2.7".parse()?));
    /// assert!(!pool.contains("192.0.2.255".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.index_of(addr).is_some()
    }

    /// The bytes the pool's tables take (slots, bitmap, run list, leases and remembered holders),
    /// from their capacities.
    ///
    /// ```
    /// use ipvirt::{Host, StaticPool};
    ///
    /// let pool = StaticPool::new(&["10.0.0.0/16".parse()?], &Host::default())?;
    /// assert!(pool.memory_bytes() < 5 * pool.size() as usize);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        let map = |m: &HashMap<SessionId, u32>| {
            m.capacity() * (core::mem::size_of::<(SessionId, u32)>() + 1)
        };
        self.slots.capacity() * 4
            + self.free.memory_bytes()
            + self.runs.capacity() * core::mem::size_of::<(u32, u32, u32)>()
            + map(&self.leases)
            + self.remembered.capacity() * (core::mem::size_of::<(SessionId, (u32, u64))>() + 1)
            // A B-tree node holds up to 11 entries; count a full entry plus a share of the node.
            + self.remembered_age.len() * (core::mem::size_of::<(u64, SessionId)>() + 8)
            + core::mem::size_of::<StaticPool>()
    }

    /// Leases an address to `session`, or returns the one it holds.
    ///
    /// A session that held an address before (and released it) gets it back if it is still free.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Exhausted`] when every address is leased; [`LeaseError::InvalidSession`] for a
    /// session id past [`SessionId::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.10-192.0.2.20".parse()?], &Host::default())?;
    /// let first = pool.lease(SessionId::new(7))?;
    /// pool.release(SessionId::new(7));
    /// pool.lease(SessionId::new(8))?;                    // takes another address
    /// assert_eq!(pool.lease(SessionId::new(7))?, first); // 7 comes back to its old one
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
        if session > SessionId::MAX {
            return Err(LeaseError::InvalidSession { session });
        }
        if let Some(&idx) = self.leases.get(&session) {
            return Ok(self.vip_at(idx));
        }
        let idx = match self.forget(session) {
            Some(idx) if self.free.contains(idx) => idx,
            _ => {
                let found = self
                    .free
                    .find_from(self.cursor)
                    .or_else(|| self.free.find_from(0));
                let Some(idx) = found else {
                    return Err(LeaseError::Exhausted {
                        session,
                        size: self.size,
                    });
                };
                self.cursor = if idx + 1 >= self.size { 0 } else { idx + 1 };
                idx
            }
        };
        self.take(idx, session);
        Ok(self.vip_at(idx))
    }

    /// Ends `session`'s lease; returns the address it held.
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.10".parse()?], &Host::default())?;
    /// let a = pool.lease(SessionId::new(7))?;
    /// assert_eq!(pool.release(SessionId::new(7)), Some(a));
    /// assert_eq!(pool.release(SessionId::new(7)), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&mut self, session: SessionId) -> Option<Vip> {
        let idx = self.leases.remove(&session)?;
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            *slot = session.get() + 1; // remember the previous holder
        }
        self.free.insert(idx);
        self.remember(session, idx);
        Some(self.vip_at(idx))
    }

    /// Remembers `session`'s previous address as the newest entry, evicting the oldest past
    /// [`REMEMBERED`](Self::REMEMBERED).
    pub(super) fn remember(&mut self, session: SessionId, idx: u32) {
        self.forget(session);
        while self.remembered.len() >= Self::REMEMBERED {
            let Some((_, oldest)) = self.remembered_age.pop_first() else {
                break;
            };
            if let Some((old_idx, _)) = self.remembered.remove(&oldest) {
                self.clear_previous(old_idx, oldest);
            }
        }
        let age = self.next_age;
        self.next_age += 1;
        self.remembered.insert(session, (idx, age));
        self.remembered_age.insert(age, session);
    }

    /// Forgets `session`'s previous address; returns it (its index).
    fn forget(&mut self, session: SessionId) -> Option<u32> {
        let (idx, age) = self.remembered.remove(&session)?;
        self.remembered_age.remove(&age);
        Some(idx)
    }

    /// Clears the free slot `idx`'s previous holder if it is `session`.
    fn clear_previous(&mut self, idx: u32, session: SessionId) {
        if let Some(slot) = self.slots.get_mut(idx as usize)
            && *slot & LIVE == 0
            && *slot == session.get() + 1
        {
            *slot = 0;
        }
    }

    /// The released sessions the pool remembers, with the address each held last, oldest first
    /// (the order in which they are forgotten once [`REMEMBERED`](Self::REMEMBERED) are kept).
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.0/29".parse()?], &Host::default())?;
    /// for s in [9, 3, 5] {
    ///     pool.lease(SessionId::new(s))?;
    /// }
    /// for s in [5, 9, 3] {
    ///     pool.release(SessionId::new(s));
    /// }
    /// let order: Vec<u32> = pool.remembered().iter().map(|(s, _)| s.get()).collect();
    /// assert_eq!(order, [5, 9, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn remembered(&self) -> Vec<(SessionId, Ipv4Addr)> {
        self.remembered_age
            .values()
            .filter_map(|s| self.remembered.get(s).map(|&(i, _)| (*s, self.addr_at(i))))
            .collect()
    }

    /// The address `session` holds, if any.
    #[must_use]
    pub fn address_of(&self, session: SessionId) -> Option<Vip> {
        self.leases.get(&session).map(|&i| self.vip_at(i))
    }

    /// The session holding `addr`, if any.
    #[must_use]
    pub fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        let slot = *self.slots.get(self.index_of(addr)? as usize)?;
        (slot & LIVE != 0).then(|| SessionId::new((slot & HOLDER) - 1))
    }

    /// Every live lease, in address order.
    ///
    /// ```
    /// use ipvirt::{Host, SessionId, StaticPool};
    ///
    /// let mut pool = StaticPool::new(&["192.0.2.0/29".parse()?], &Host::default())?;
    /// pool.lease(SessionId::new(2))?;
    /// pool.lease(SessionId::new(1))?;
    /// assert_eq!(pool.leases().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn leases(&self) -> Vec<(SessionId, Ipv4Addr)> {
        let mut out: Vec<(SessionId, Ipv4Addr)> = self
            .leases
            .iter()
            .map(|(&s, &i)| (s, self.addr_at(i)))
            .collect();
        out.sort_unstable_by_key(|&(_, a)| a);
        out
    }

    pub(super) fn take(&mut self, idx: u32, session: SessionId) {
        let Some(&slot) = self.slots.get(idx as usize) else {
            return;
        };
        let previous = slot & HOLDER;
        if previous != 0 && slot & LIVE == 0 {
            // The address goes to someone else: its previous holder no longer gets it back.
            let prev = SessionId::new(previous - 1);
            if prev != session && self.remembered.get(&prev).map(|&(i, _)| i) == Some(idx) {
                self.forget(prev);
            }
        }
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            *slot = LIVE | (session.get() + 1);
        }
        self.free.remove(idx);
        self.leases.insert(session, idx);
    }

    /// The address at `idx` as a VIP: every address of the pool was checked when it was built.
    fn vip_at(&self, idx: u32) -> Vip {
        Vip::checked(self.addr_at(idx))
    }

    pub(super) fn addr_at(&self, idx: u32) -> Ipv4Addr {
        // The run holding idx: the last whose first index is <= idx.
        let run = self
            .runs
            .partition_point(|&(_, _, start)| start <= idx)
            .saturating_sub(1);
        let (first, _, start) = self.runs.get(run).copied().unwrap_or((0, 0, 0));
        Ipv4Addr::from_bits(first + (idx - start))
    }

    pub(super) fn index_of(&self, addr: Ipv4Addr) -> Option<u32> {
        let bits = addr.to_bits();
        let run = self
            .runs
            .partition_point(|&(first, _, _)| first <= bits)
            .checked_sub(1)?;
        let &(first, last, start) = self.runs.get(run)?;
        (bits <= last).then(|| start + (bits - first))
    }
}

impl AddressSource for StaticPool {
    /// [`StaticPool::lease`]: a pool keeps no time, `now` is not read.
    fn lease(&mut self, _now: Duration, session: SessionId) -> Result<Vip, LeaseError> {
        StaticPool::lease(self, session)
    }

    /// [`StaticPool::release`]: a pool keeps no time, `now` is not read.
    fn release(&mut self, _now: Duration, session: SessionId) -> Option<Vip> {
        StaticPool::release(self, session)
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        StaticPool::address_of(self, session)
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        StaticPool::session_of(self, addr)
    }
}

/// An error building or restoring a [`StaticPool`](crate::StaticPool).
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, PoolError, StaticPool};
///
/// let host = Host::new(["192.0.2.7".parse().unwrap()]);
/// let err = StaticPool::new(&["192.0.2.7".parse().unwrap()], &host).unwrap_err();
/// assert_eq!(err, PoolError::Empty);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No address is left once the server's own addresses are taken out (or no entry was given).
    #[error("the VIP pool is empty: it has no address that is not one of the server's own")]
    Empty,
    /// The pool holds more addresses than the largest accepted, 16 777 216 (a /8).
    #[error("the VIP pool has {size} addresses: at most 16777216 (a /8) are accepted")]
    TooLarge {
        /// How many addresses the entries hold.
        size: u64,
    },
    /// An entry holds addresses that can never be a VIP.
    #[error("VIP pool entry \"{entry}\" overlaps {block}: such addresses can never be a VIP")]
    Reserved {
        /// The entry.
        entry: PoolEntry,
        /// The block it overlaps, in words.
        block: &'static str,
    },
    /// A snapshot names the same session twice.
    #[error("the pool snapshot names session {session} twice")]
    DuplicateSession {
        /// The session.
        session: SessionId,
    },
    /// A snapshot leases the same address twice.
    #[error("the pool snapshot leases {addr} twice")]
    DuplicateAddress {
        /// The address.
        addr: Ipv4Addr,
    },
    /// A snapshot names an address that is not in the pool (or is one of the server's own).
    #[error("the pool snapshot names {addr}, which is not in the pool")]
    OutsidePool {
        /// The address.
        addr: Ipv4Addr,
    },
    /// A snapshot was written in a newer format than this crate reads.
    #[error(
        "the pool snapshot has format version {version}; this ipvirt reads versions 1 and 2 (it was written by a newer ipvirt)"
    )]
    UnsupportedVersion {
        /// The snapshot's version.
        version: u32,
    },
    /// A snapshot names a session id past [`SessionId::MAX`].
    #[error("the pool snapshot names session {session}, past the largest session id 16777214")]
    InvalidSession {
        /// The session.
        session: SessionId,
    },
}
