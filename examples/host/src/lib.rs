//! # ipvirt-host
//!
//! The pieces of ipvirt that do I/O for any layer, kept out of the pure core (`ipvirt`, which
//! decides and never touches a file, a socket or a clock):
//!
//! - [`StateFile`]: JSON state replaced atomically, locked apart from the data, in a directory
//!   only its owner can change, the lock waited for with a deadline (SPEC §10).
//! - [`private_fs`]: that directory ([`PrivateDir`]: no link followed, nobody else's files) and
//!   the bounded lock wait ([`LockWait`]), also for the kernel layer's set-up lock.
//! - [`control`]: the `ipvirt` service's control protocol (requests, answers, bounded framing,
//!   the client call), shared by the service, its PAM module and the `ipvirt` command.
//! - [`policy_file`]: reading a policy file as every product must (bounded, regular files only,
//!   TOML or a `regedit` export).
//! - [`lease_book`]: the one book of every VIP lease on a host, shared by every launcher and the
//!   service, with the holders a platform can check for life.
//! - `dhcp_driver` (Linux, feature `dhcp`): sockets, timers and interface addresses around the
//!   core's sans-I/O DHCP client.
//! - `live` (Linux, feature `live`): this machine's socket table, each process named by its
//!   executable, as an [`ipvirt::advisor::Snapshot`].
//! - `registry` (Windows): the registry keys of SPEC §3, mapped by [`ipvirt::Policy::from_reg`].

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(unix)]
pub mod control;
#[cfg(all(target_os = "linux", feature = "dhcp"))]
pub mod dhcp_driver;
#[cfg(any(target_os = "linux", windows))]
pub mod holder;
#[cfg(any(target_os = "linux", windows))]
pub mod lease_book;
#[cfg(all(target_os = "linux", feature = "live"))]
pub mod live;
#[cfg(all(target_os = "linux", feature = "dhcp"))]
mod netlink;
pub mod policy_file;
pub mod private_fs;
#[cfg(windows)]
pub mod registry;
mod state_file;

pub use private_fs::{LockError, LockWait, PrivateDir, UnsafePath};
pub use state_file::{StateError, StateFile, StateLock, StateStep};
