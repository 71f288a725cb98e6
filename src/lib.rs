//! # ipvirt
//!
//! Per-session network identity for multi-user servers, as a pure library.
//!
//! On a multi-user server (Citrix Virtual Apps, Remote Desktop Session Host) an application that
//! listens on a hard-coded port, or identifies itself by IP address, breaks as soon as a second user
//! starts it: the port is taken. Citrix *virtual loopback* gives each session its own loopback address
//! (session 7 binds `127.0.0.1:9000` and really gets `127.0.0.8:9000`); Microsoft *RD IP
//! Virtualization* gives each session its own IPv4 address, a *virtual IP* (`0.0.0.0:9000` becomes
//! `VIP:9000`). `ipvirt` is the address logic of both, platform-neutral.
//!
//! ## What ipvirt does, and what it does not
//!
//! ipvirt **decides**; the hooking layer (a Winsock hook DLL, an LSP, a WFP callout driver, a Linux
//! `LD_PRELOAD` shim) **acts**. ipvirt does not intercept calls, open sockets, read the registry, run
//! DHCP, or keep a clock: the caller passes in everything a decision depends on and gets plain values
//! back, so every decision is a pure, testable function.
//!
//! ```text
//!  policy file / .reg export / builder            socket-table snapshots (ss, netstat, TCPView)
//!             │                                                │
//!             ▼                                                ▼
//!    Policy ──validate()──► Diagnostics                    advisor ──► findings + proposed Policy
//!             │ compile(host)
//!             ▼
//!    Engine ──process(image)──► ProcessPlan   (once per process: scopes precomputed)
//!             │ rewriter(session, plan, vip)
//!             ▼
//!    Rewriter ── bind / connect / send_to / reported / resolved / reverse_lookup ──► verdicts
//!             │                                   ▲
//!             ▼                                   │ sockaddr: raw sockaddr_in/_in6 bytes
//!    session: SessionId ⇄ loopback address        │ capi: C ABI over the same calls
//!    pool: VIP leases per session
//! ```
//!
//! ## Quick start
//!
//! ```
//! use std::net::Ipv4Addr;
//! use ipvirt::{Session, SessionId};
//!
//! // Session 7's private loopback address: what its `bind(127.0.0.1:9000)` really binds.
//! let session = Session::remote(SessionId::new(7));
//! assert!(session.is_virtualized());
//! assert_eq!(session.id().loopback()?, Ipv4Addr::new(127, 0, 0, 8));
//!
//! // And back: which session owns a loopback address seen on the wire.
//! assert_eq!(SessionId::from_loopback(Ipv4Addr::new(127, 0, 1, 0)), Some(SessionId::new(255)));
//! # Ok::<(), ipvirt::Error>(())
//! ```
//!
//! ## The public interface
//!
//! - [`SessionId`], [`Session`], [`SessionKind`]: sessions and the loopback mapping (SPEC §2).
//! - [`Error`] and the per-domain errors ([`SessionError`], [`ParseSessionError`]).
//!
//! ## Features
//!
//! - `std` (default): links std. Without it the crate is `no_std` + `alloc` (for kernel drivers) and
//!   uses `core::net` and `core::error::Error`.

#![cfg_attr(not(feature = "std"), no_std)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod advisor;
#[cfg(feature = "capi")]
pub mod capi;
mod engine;
mod error;
mod host;
mod policy;
mod pool;
mod process;
mod rewrite;
mod session;
mod sockaddr;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

pub use engine::{Decision, Engine, ProcessExplanation, ProcessPlan, Reason};
pub use error::{
    AdvisorError, CompileError, Error, LeaseError, ParsePoolEntryError, ParseSessionError,
    PolicyError, PoolError, RegError, RewriteError, SessionError, SockaddrError,
};
pub use host::Host;
pub use policy::{
    Diagnostic, DiagnosticCode, LeaseFailure, Origin, Platform, Policy, PreferLoopback, RegImport,
    Severity, VipMode, VipOrigins, VirtualIp, VirtualLoopback,
};
#[cfg(feature = "std")]
pub use pool::SharedPool;
pub use pool::{AddressSource, PoolEntry, PoolSnapshot, StaticPool};
pub use process::{ProgramList, fold_program_name};
pub use rewrite::{Call, Connect, Explanation, Outcome, Rewriter, Rule, Stack};
pub use session::{Session, SessionId, SessionKind};
pub use sockaddr::{
    FamilyHeader, RawConnect, SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN, SOCKADDR_STORAGE_LEN,
    SockaddrLayout, read_sockaddr, write_sockaddr,
};
