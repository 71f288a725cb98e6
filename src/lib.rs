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
//! back, so every decision is a pure, testable function. (The optional `dhcp` feature's client is
//! sans-I/O too.) What does I/O for every layer — state files, the host's one lease book, the
//! Linux DHCP driver, live socket sampling, the Windows registry — is the crate `ipvirt-host`;
//! the layers and the `ipvirt` command are crates of their own (`ipvirt-kernel`,
//! `ipvirt-preload`, `ipvirt-cli`, the Windows hook and launcher).
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
//!      (owns: table::PolicyTable (Arc) + SessionEntry + ProgramEntry — SPEC §7's rule tables)
//!             │                                   ▲
//!             ▼                                   │ sockaddr: raw sockaddr_in/_in6 bytes
//!    session: SessionId ⇄ loopback address        │ capi: C ABI over the same calls
//!    pool: VIP leases per session
//! ```
//!
//! ## Quick start
//!
//! ```
//! use std::net::SocketAddr;
//! use ipvirt::{Host, Policy, Session, SessionId};
//!
//! // Once, when the service starts: read and compile the policy for this server.
//! let policy = Policy::from_toml(r#"
//!     [virtual_loopback]
//!     enabled = true
//!     programs = ["crm.exe"]
//!     [virtual_ip]
//!     enabled = true
//!     programs = ["crm.exe"]
//!     adapter = "192.0.2.0/24"
//! "#)?;
//! let engine = policy.compile(Host::new(["192.0.2.10".parse()?]))?;
//!
//! // Once per process: which features apply to it.
//! let plan = engine.process(r"C:\Apps\CRM.EXE");
//!
//! // Per session (and its VIP), then per socket call: no allocation, no lock, no string compare.
//! let rw = engine.rewriter(Session::remote(SessionId::new(7)), &plan, Some("192.0.2.107".parse()?));
//! let a = |s: &str| s.parse::<SocketAddr>().unwrap();
//! assert_eq!(rw.bind(a("127.0.0.1:9000"))?, a("127.0.0.8:9000"));
//! assert_eq!(rw.bind(a("0.0.0.0:9000"))?, a("192.0.2.107:9000"));
//! assert_eq!(rw.connect(a("198.51.100.5:443"))?.source, Some(a("192.0.2.107:0")));
//! assert_eq!(rw.reported(a("127.0.0.8:9000")), a("127.0.0.1:9000"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The public interface
//!
//! - Sessions: [`SessionId`] (the loopback mapping both ways), [`Session`], [`SessionKind`].
//! - The policy: [`Policy`] and its sections [`VirtualLoopback`], [`VirtualIp`],
//!   [`PreferLoopback`], [`Sessions`] (the Linux service's `[sessions]`); [`Policy::from_toml`], [`Policy::from_reg`] ([`RegImport`],
//!   [`Origin`]), serde; [`Policy::validate`] → [`Diagnostic`]s ([`Severity`],
//!   [`DiagnosticCode`]).
//! - Process matching: [`ProgramList`], [`fold_program_name`].
//! - The engine: [`Policy::compile`] with a [`Host`] → [`Engine`]; [`Engine::process`] →
//!   [`ProcessPlan`] ([`Decision`], [`Reason`]); [`Engine::explain`].
//! - The rewrites: [`Engine::rewriter`] → [`Rewriter`] (`bind`, `connect`, `send_to`, `reported`,
//!   `resolved`, `reverse_lookup`, `explain` → [`Explanation`], [`Rule`]), [`Connect`], [`Stack`];
//!   refusals: [`Refusal`] (one error-code table); on raw bytes: [`Rewriter::raw`] → [`Raw`]
//!   ([`RawOutcome`], [`RawConnect`], [`RawError`]), [`SockaddrLayout`], [`read_sockaddr`],
//!   [`write_sockaddr`].
//! - The rule tables of SPEC §7 for C and kernel layers: [`table`] ([`table::PolicyTable`],
//!   [`table::SessionEntry`], [`table::ProgramEntry`], [`table::reference`]),
//!   [`Engine::tables`], [`Rewriter::from_tables`]; the checked [`Vip`].
//! - VIP pools: [`AddressSource`], [`StaticPool`], [`PoolEntry`], [`PoolSnapshot`],
//!   [`RestoreWarning`], `SharedPool` (`std`); the state that survives kills and full disks (SPEC
//!   §10) is `ipvirt_host::StateFile`.
//! - The advisor (`std`): [`advisor`].
//! - The C ABI (feature `capi`): `capi`, header `src/ipvirt.h`.
//! - Errors: one enum per operation ([`SessionError`], [`PolicyError`], [`RegError`],
//!   [`CompileError`], [`Refusal`], [`RawError`], [`TableError`], [`VipError`], [`ParseVipError`], [`SockaddrError`], [`PoolError`], [`LeaseError`],
//!   [`AdvisorError`], [`ParseSessionError`], [`ParsePoolEntryError`]) and [`Error`], which any of
//!   them converts into.
//!
//! ## Features
//!
//! - `std` (default): links std; adds TOML reading ([`Policy::from_toml`]), the advisor and
//!   `SharedPool`. Without it the crate is `no_std` + `alloc` (for kernel drivers) and uses
//!   `core::net` and `core::error::Error`.
//! - `capi`: the C ABI.
//! - `dhcp`: VIPs from a DHCP server: `dhcp`, a sans-I/O client for every session (its Linux
//!   driver, with sockets, timers and a lease file, is `ipvirt_host::dhcp_driver`).

#![cfg_attr(not(feature = "std"), no_std)]
// docs.rs (`--cfg docsrs`, nightly): label the items that need a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
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

mod addr;
#[cfg(feature = "std")]
pub mod advisor;
#[cfg(feature = "capi")]
pub mod capi;
#[cfg(feature = "dhcp")]
pub mod dhcp;
mod engine;
mod error;
mod host;
mod policy;
mod pool;
mod program;
mod rewrite;
mod session;
mod sockaddr;
pub mod table;
mod verdict;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

pub use addr::{ParsePoolEntryError, ParseVipError, PoolEntry, Vip, VipError};
#[cfg(feature = "std")]
pub use advisor::AdvisorError;
pub use engine::{CompileError, Decision, Engine, ProcessExplanation, ProcessPlan, Reason};
pub use error::Error;
pub use host::Host;
pub use policy::{
    ConsoleTty, DhcpSettings, Diagnostic, DiagnosticCode, Identity, Ipv6Loopback, LeaseFailure,
    Origin, Platform, Policy, PolicyError, PreferLoopback, RegError, RegImport, SessionLayer,
    Sessions, Severity, VipMode, VipOrigins, VipSource, VirtualIp, VirtualLoopback,
};
#[cfg(feature = "std")]
pub use pool::SharedPool;
pub use pool::{AddressSource, LeaseError, PoolError, PoolSnapshot, RestoreWarning, StaticPool};
pub use program::{ProgramList, fold_program_name};
pub use rewrite::{
    Call, Explanation, Outcome, Raw, RawConnect, RawError, RawOutcome, Rewriter, Rule, TableError,
};
pub use session::{ParseSessionError, Session, SessionError, SessionId, SessionKind};
pub use sockaddr::{
    FamilyHeader, SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN, SOCKADDR_STORAGE_LEN, SockaddrError,
    SockaddrLayout, read_sockaddr, write_sockaddr,
};
pub use verdict::{Connect, Refusal, Stack};
