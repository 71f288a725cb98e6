//! A pool shared between threads (`std`): [`SharedPool`].

use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use super::snapshot::{PoolSnapshot, RestoreWarning};
use super::source::{AddressSource, LeaseError};
use super::static_pool::{PoolError, StaticPool};
use crate::addr::Vip;
use crate::session::SessionId;

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
#[derive(Debug)]
pub struct SharedPool {
    inner: std::sync::Mutex<StaticPool>,
}

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

impl AddressSource for SharedPool {
    /// [`SharedPool::lease`]: a pool keeps no time, `now` is not read.
    fn lease(&mut self, _now: Duration, session: SessionId) -> Result<Vip, LeaseError> {
        SharedPool::lease(self, session)
    }

    /// [`SharedPool::release`]: a pool keeps no time, `now` is not read.
    fn release(&mut self, _now: Duration, session: SessionId) -> Option<Vip> {
        SharedPool::release(self, session)
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        SharedPool::address_of(self, session)
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        SharedPool::session_of(self, addr)
    }
}
