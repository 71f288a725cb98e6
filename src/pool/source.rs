//! What a layer asks for a session's VIP: [`AddressSource`], and the error of a lease,
//! [`LeaseError`].

use core::net::Ipv4Addr;
use core::time::Duration;

use crate::addr::Vip;
use crate::session::SessionId;

/// Where a session's virtual IP comes from: a static pool, DHCP, or anything else a hooking layer
/// plugs in.
///
/// # Time
///
/// The calls that change a source take `now`, a [`Duration`] since an epoch the caller chooses
/// (the same for every call), so that a source that keeps time — a DHCP client, whose leases
/// expire and whose first `lease` starts an exchange — never acts on a remembered clock. A source
/// that keeps no time ([`StaticPool`](crate::StaticPool), [`SharedPool`](crate::SharedPool))
/// ignores it; their own `lease(session)` and `release(session)` take none. The queries
/// (`address_of`, `session_of`) answer as of the latest `now` the source was given.
///
/// # Examples
///
/// A stand-in for a DHCP client that hands out one fixed address per session:
///
/// ```
/// use std::collections::HashMap;
/// use std::net::Ipv4Addr;
/// use std::time::Duration;
/// use ipvirt::{AddressSource, LeaseError, SessionId, Vip};
///
/// #[derive(Default)]
/// struct Dhcp(HashMap<SessionId, Vip>);
///
/// impl AddressSource for Dhcp {
///     fn lease(&mut self, _now: Duration, session: SessionId) -> Result<Vip, LeaseError> {
///         // What a server hands out is checked like any VIP.
///         let next = Vip::new(Ipv4Addr::new(198, 51, 100, 10 + self.0.len() as u8)).expect("unicast");
///         Ok(*self.0.entry(session).or_insert(next))
///     }
///     fn release(&mut self, _now: Duration, session: SessionId) -> Option<Vip> {
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
/// let vip = dhcp.lease(Duration::from_secs(1), SessionId::new(7))?;
/// assert_eq!(dhcp.session_of(vip.addr()), Some(SessionId::new(7)));
/// # Ok::<(), LeaseError>(())
/// ```
pub trait AddressSource {
    /// The session's address at `now`: the one it already holds, or a new lease (which a source
    /// that asks a server starts at `now`).
    ///
    /// # Errors
    ///
    /// [`LeaseError`] when no address can be given (the rewriter then applies the policy's
    /// `on_lease_failure`: pass `None` as the VIP).
    fn lease(&mut self, now: Duration, session: SessionId) -> Result<Vip, LeaseError>;

    /// Ends the session's lease at `now`, returning the address it held (`None` if it held none).
    fn release(&mut self, now: Duration, session: SessionId) -> Option<Vip>;

    /// The address the session holds, if any.
    fn address_of(&self, session: SessionId) -> Option<Vip>;

    /// The session that holds `addr`, if any.
    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId>;
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
        addr: Ipv4Addr,
    },
}
