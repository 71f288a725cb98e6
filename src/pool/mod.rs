//! Virtual IP pools and leases.
//!
//! Microsoft RD IP Virtualization gives each session an IPv4 address, from DHCP or from a static
//! pool; in per-program mode the session's listed programs share that one address. This module is
//! the bookkeeping: which session holds which address.
//!
//! - [`AddressSource`] is what a hooking layer or session service asks for a session's VIP. DHCP (or
//!   any other allocator) plugs in by implementing it; [`StaticPool`] is the static-pool
//!   implementation (Microsoft's static-pool plug-in).
//! - [`StaticPool`] is built from ranges, CIDRs and single addresses ([`PoolEntry`]); overlapping
//!   entries are merged, a CIDR's network and broadcast addresses are left out (except in a /31 or
//!   /32, which have none) and so are the server's own addresses ([`Host`]).
//! - [`StaticPool::lease`] returns the session's address, the **same one for every call while the
//!   lease lives**: that is how the listed programs of a session share it. [`StaticPool::release`]
//!   ends the lease (at logoff).
//! - **Returning sessions**: a session that comes back gets its previous address if it is still free,
//!   as DHCP does. Addresses are handed out in rotation (next free after the last one handed out), so
//!   a released address is reused as late as possible. The pool remembers the previous address of up
//!   to [`StaticPool::REMEMBERED`] released sessions; past that, the oldest-remembered fall back to a
//!   new address. A previous holder is forgotten as soon as its address goes to another session.
//! - No address is ever leased to two live sessions, and no address is lost: after every session has
//!   released, the pool is whole again.
//!
//! ## Memory and cost
//!
//! Each address costs one `u32` (its holder, or its previous holder) plus one bit of a three-level
//! free bitmap: about 4.1 bytes per address, so a `10.0.0.0/8` pool (16 777 216 addresses, the
//! largest accepted) takes about 69 MB. Each live lease adds one hash-map entry (session → address).
//! `lease` and `release` are a hash lookup and a bitmap walk of at most three 64-bit words per level:
//! their cost does not grow with the number of live leases. The pool keeps no clock: leases live
//! until released.
//!
//! ## Threads
//!
//! [`StaticPool`] has a single owner (`&mut self` to change it; it is `Send` and `Sync`), which is
//! what a `no_std` driver wants. With `std`, [`SharedPool`] wraps it in a mutex so that any number of
//! threads can lease and release through `&self`.
//!
//! ## Snapshots
//!
//! [`StaticPool::snapshot`] captures the leases (and remembered previous holders) as a serde value; a
//! service that restarts rebuilds the pool from its policy and calls [`StaticPool::restore`], which
//! checks the whole snapshot — duplicate sessions or addresses, addresses outside the pool, session
//! ids past [`SessionId::MAX`] — before it changes anything, so a bad snapshot leaves no partial state.
//!
//! # Examples
//!
//! ```
//! use ipvirt::{Host, SessionId, StaticPool};
//!
//! let mut pool = StaticPool::new(&["192.0.2.100-192.0.2.101".parse()?], &Host::default())?;
//! let a = pool.lease(SessionId::new(7))?;
//! assert_eq!(pool.lease(SessionId::new(7))?, a);               // same address while it lives
//! let b = pool.lease(SessionId::new(8))?;
//! assert_ne!(a, b);
//! assert!(pool.lease(SessionId::new(9)).is_err());             // exhausted
//! pool.release(SessionId::new(7));
//! assert_eq!(pool.lease(SessionId::new(9))?, a);
//! assert_eq!(pool.session_of(b.addr()), Some(SessionId::new(8)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use alloc::collections::BTreeMap;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::addr::{PoolEntry, Vip, reserved_block};
use crate::host::Host;
use crate::policy::VirtualIp;
use crate::session::SessionId;

#[cfg(feature = "dhcp")]
pub mod dhcp;

/// Where a session's virtual IP comes from: a static pool, DHCP, or anything else a hooking layer
/// plugs in.
///
/// # Examples
///
/// A stand-in for a DHCP client that hands out one fixed address per session:
///
/// ```
/// use std::collections::HashMap;
/// use std::net::Ipv4Addr;
/// use ipvirt::{AddressSource, LeaseError, SessionId, Vip};
///
/// #[derive(Default)]
/// struct Dhcp(HashMap<SessionId, Vip>);
///
/// impl AddressSource for Dhcp {
///     fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
///         // What a server hands out is checked like any VIP.
///         let next = Vip::new(Ipv4Addr::new(198, 51, 100, 10 + self.0.len() as u8)).expect("unicast");
///         Ok(*self.0.entry(session).or_insert(next))
///     }
///     fn release(&mut self, session: SessionId) -> Option<Vip> {
///         self.0.remove(&session)
///     }
///     fn address_of(&self, session: SessionId) -> Option<Vip> {
///         self.0.get(&session).copied()
///     }
///     fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
///         self.0.iter().find(|(_, a)| **a == addr).map(|(s, _)| *s)
///     }
/// }
///
/// let mut dhcp = Dhcp::default();
/// let vip = dhcp.lease(SessionId::new(7))?;
/// assert_eq!(dhcp.session_of(vip.addr()), Some(SessionId::new(7)));
/// # Ok::<(), LeaseError>(())
/// ```
pub trait AddressSource {
    /// The session's address: the one it already holds, or a new lease.
    ///
    /// # Errors
    ///
    /// [`LeaseError`] when no address can be given (the rewriter then applies the policy's
    /// `on_lease_failure`: pass `None` as the VIP).
    fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError>;

    /// Ends the session's lease, returning the address it held (`None` if it held none).
    fn release(&mut self, session: SessionId) -> Option<Vip>;

    /// The address the session holds, if any.
    fn address_of(&self, session: SessionId) -> Option<Vip>;

    /// The session that holds `addr`, if any.
    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId>;
}

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
/// owner changes it (`&mut self`); share it between threads with [`SharedPool`] (`std`).
#[derive(Debug, Clone)]
pub struct StaticPool {
    /// The definition, as given (for snapshots and explanations).
    entries: Vec<PoolEntry>,
    /// Addresses of the server that were left out.
    excluded: Vec<Ipv4Addr>,
    /// Disjoint, sorted runs of leasable addresses: (first, last, index of first).
    runs: Vec<(u32, u32, u32)>,
    size: u32,
    /// Per address index: `LIVE | (session + 1)` while leased, else `previous holder + 1` or 0.
    slots: Vec<u32>,
    free: FreeSet,
    leases: HashMap<SessionId, u32>,
    /// Released sessions' previous addresses (index) and when they were released (a sequence
    /// number), at most `REMEMBERED`.
    remembered: HashMap<SessionId, (u32, u64)>,
    /// The same sessions by release sequence number: the first is the oldest, evicted first.
    remembered_age: BTreeMap<u64, SessionId>,
    /// The next release sequence number.
    next_age: u64,
    /// Where the next search for a free address starts.
    cursor: u32,
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
    fn remember(&mut self, session: SessionId, idx: u32) {
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

    fn take(&mut self, idx: u32, session: SessionId) {
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

    fn addr_at(&self, idx: u32) -> Ipv4Addr {
        // The run holding idx: the last whose first index is <= idx.
        let run = self
            .runs
            .partition_point(|&(_, _, start)| start <= idx)
            .saturating_sub(1);
        let (first, _, start) = self.runs.get(run).copied().unwrap_or((0, 0, 0));
        Ipv4Addr::from_bits(first + (idx - start))
    }

    fn index_of(&self, addr: Ipv4Addr) -> Option<u32> {
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
    fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
        StaticPool::lease(self, session)
    }

    fn release(&mut self, session: SessionId) -> Option<Vip> {
        StaticPool::release(self, session)
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        StaticPool::address_of(self, session)
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        StaticPool::session_of(self, addr)
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

/// A pool shared between threads: a [`StaticPool`] behind a mutex.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ipvirt::{Host, SessionId, SharedPool, StaticPool};
///
/// let pool = Arc::new(SharedPool::new(StaticPool::new(&["192.0.2.0/24".parse()?], &Host::default())?));
/// let handles: Vec<_> = (1..=4u32)
///     .map(|s| {
///         let pool = Arc::clone(&pool);
///         std::thread::spawn(move || pool.lease(SessionId::new(s)).unwrap())
///     })
///     .collect();
/// let mut got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// got.sort();
/// got.dedup();
/// assert_eq!(got.len(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct SharedPool {
    inner: std::sync::Mutex<StaticPool>,
}

#[cfg(feature = "std")]
impl SharedPool {
    /// Shares `pool`.
    #[must_use]
    pub fn new(pool: StaticPool) -> SharedPool {
        SharedPool {
            inner: std::sync::Mutex::new(pool),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut StaticPool) -> T) -> T {
        // A panic while holding the lock cannot leave the pool half-changed (every change is
        // completed before anything that could panic), so a poisoned lock is still usable.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// [`StaticPool::lease`].
    ///
    /// # Errors
    ///
    /// As [`StaticPool::lease`].
    pub fn lease(&self, session: SessionId) -> Result<Vip, LeaseError> {
        self.with(|p| p.lease(session))
    }

    /// [`StaticPool::release`].
    pub fn release(&self, session: SessionId) -> Option<Vip> {
        self.with(|p| p.release(session))
    }

    /// [`StaticPool::address_of`].
    #[must_use]
    pub fn address_of(&self, session: SessionId) -> Option<Vip> {
        self.with(|p| p.address_of(session))
    }

    /// [`StaticPool::session_of`].
    #[must_use]
    pub fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        self.with(|p| p.session_of(addr))
    }

    /// [`StaticPool::snapshot`].
    #[must_use]
    pub fn snapshot(&self) -> PoolSnapshot {
        self.with(|p| p.snapshot())
    }

    /// [`StaticPool::restore`].
    ///
    /// # Errors
    ///
    /// As [`StaticPool::restore`].
    pub fn restore(&self, snapshot: &PoolSnapshot) -> Result<Vec<RestoreWarning>, PoolError> {
        self.with(|p| p.restore(snapshot))
    }

    /// Runs `f` with the pool locked (for several operations at once).
    pub fn lock<T>(&self, f: impl FnOnce(&mut StaticPool) -> T) -> T {
        self.with(f)
    }
}

#[cfg(feature = "std")]
impl AddressSource for SharedPool {
    fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
        SharedPool::lease(self, session)
    }

    fn release(&mut self, session: SessionId) -> Option<Vip> {
        SharedPool::release(self, session)
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        SharedPool::address_of(self, session)
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        SharedPool::session_of(self, addr)
    }
}

/// A set of indices below `size` as a hierarchical bitmap: level 0 has one bit per index (set =
/// free), each level above one bit per word of the level below (set = that word is not empty).
#[derive(Debug, Clone)]
struct FreeSet {
    levels: Vec<Vec<u64>>,
}

impl FreeSet {
    /// Every index below `size` present.
    fn full(size: u32) -> FreeSet {
        let mut levels = Vec::new();
        let mut bits = size as usize;
        loop {
            let words = bits.div_ceil(64).max(1);
            let mut level = vec![u64::MAX; words];
            if let Some(last) = level.last_mut() {
                let rem = bits % 64;
                if rem != 0 {
                    *last = (1u64 << rem) - 1;
                }
                if bits == 0 {
                    *last = 0;
                }
            }
            levels.push(level);
            if words == 1 {
                break;
            }
            bits = words;
        }
        FreeSet { levels }
    }

    fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * 8).sum::<usize>()
            + self.levels.capacity() * core::mem::size_of::<Vec<u64>>()
    }

    fn contains(&self, idx: u32) -> bool {
        let i = idx as usize;
        self.levels
            .first()
            .and_then(|l| l.get(i / 64))
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn insert(&mut self, idx: u32) {
        let mut i = idx as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(i / 64) else {
                return;
            };
            let was_empty = *word == 0;
            *word |= 1 << (i % 64);
            if !was_empty {
                return;
            }
            i /= 64;
        }
    }

    fn remove(&mut self, idx: u32) {
        let mut i = idx as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(i / 64) else {
                return;
            };
            *word &= !(1 << (i % 64));
            if *word != 0 {
                return;
            }
            i /= 64;
        }
    }

    /// The smallest present index `>= from`.
    fn find_from(&self, from: u32) -> Option<u32> {
        self.find(0, from as usize)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn find(&self, level: usize, from: usize) -> Option<usize> {
        let words = self.levels.get(level)?;
        let w = from / 64;
        let word = *words.get(w)?;
        let masked = word & (u64::MAX << (from % 64));
        if masked != 0 {
            return Some(w * 64 + masked.trailing_zeros() as usize);
        }
        // The next non-empty word of this level, from the level above (the top level is one word).
        let next = self.find(level + 1, w + 1)?;
        let word = *words.get(next)?;
        (word != 0).then(|| next * 64 + word.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_set_finds_across_levels() {
        let mut f = FreeSet::full(70_000);
        assert_eq!(f.levels.len(), 3);
        for i in 0..70_000 {
            f.remove(i);
        }
        assert_eq!(f.find_from(0), None);
        f.insert(69_999);
        f.insert(5);
        assert_eq!(f.find_from(0), Some(5));
        assert_eq!(f.find_from(6), Some(69_999));
        assert_eq!(f.find_from(70_000), None);
        f.remove(69_999);
        assert_eq!(f.find_from(6), None);
    }

    #[test]
    fn free_set_edges() {
        for size in [1u32, 63, 64, 65, 4095, 4096, 4097, 262_144] {
            let mut f = FreeSet::full(size);
            assert_eq!(f.find_from(0), Some(0));
            assert_eq!(f.find_from(size - 1), Some(size - 1));
            assert_eq!(f.find_from(size), None);
            for i in 0..size {
                f.remove(i);
            }
            assert_eq!(f.find_from(0), None, "size {size}");
        }
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
        entry: crate::pool::PoolEntry,
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
        addr: core::net::Ipv4Addr,
    },
    /// A snapshot names an address that is not in the pool (or is one of the server's own).
    #[error("the pool snapshot names {addr}, which is not in the pool")]
    OutsidePool {
        /// The address.
        addr: core::net::Ipv4Addr,
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

/// An error leasing a VIP. Every payload is `Copy`.
///
/// A hook turns it into the policy's lease-failure behaviour by passing no VIP to
/// [`Engine::rewriter`](crate::Engine::rewriter) (`pool.lease(s).ok()`).
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, LeaseError, SessionId, StaticPool};
///
/// let mut pool = StaticPool::new(&["192.0.2.7".parse().unwrap()], &Host::default()).unwrap();
/// pool.lease(SessionId::new(1)).unwrap();
/// let err = pool.lease(SessionId::new(2)).unwrap_err();
/// assert_eq!(err, LeaseError::Exhausted { session: SessionId::new(2), size: 1 });
/// assert_eq!(err.to_string(), "no VIP left for session 2: all 1 addresses of the pool are leased");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Every address of the pool is leased.
    #[error("no VIP left for session {session}: all {size} addresses of the pool are leased")]
    Exhausted {
        /// The session that asked.
        session: SessionId,
        /// The pool's size.
        size: u32,
    },
    /// The session id is past [`SessionId::MAX`].
    #[error("session {session} cannot lease a VIP: session ids go up to 16777214")]
    InvalidSession {
        /// The session that asked.
        session: SessionId,
    },
    /// A DHCP server has not given the session an address (yet): the exchange is under way, no
    /// server answers, or the server's pool is exhausted.
    #[error("no VIP for session {session} yet: no DHCP server has leased it an address")]
    Pending {
        /// The session that asked.
        session: SessionId,
    },
    /// The session's DHCP lease ended (expired, or the server refused to extend it); it is asking
    /// for an address again.
    #[error("session {session} lost its VIP {addr}: its DHCP lease ended")]
    Lost {
        /// The session that asked.
        session: SessionId,
        /// The address it held.
        addr: core::net::Ipv4Addr,
    },
}
