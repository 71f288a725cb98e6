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
//!
//! ## Files
//!
//! One idea each, imported from the leaves up: `source.rs` ([`AddressSource`], what a layer asks,
//! and [`LeaseError`], what a lease can fail with), `free_set.rs` (the free bitmap),
//! `static_pool.rs` ([`StaticPool`] and [`PoolError`]), `snapshot.rs` ([`PoolSnapshot`],
//! [`RestoreWarning`], and [`StaticPool::snapshot`] / [`StaticPool::restore`]), `shared.rs`
//! ([`SharedPool`], `std`).

mod free_set;
#[cfg(feature = "std")]
mod shared;
mod snapshot;
mod source;
mod static_pool;

#[cfg(feature = "std")]
pub use shared::SharedPool;
pub use snapshot::{PoolSnapshot, RestoreWarning};
pub use source::{AddressSource, LeaseError};
pub use static_pool::{PoolError, StaticPool};
