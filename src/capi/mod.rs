//! The C ABI (feature `capi`), for hooking layers written in C or C++. The header is
//! `src/ipvirt.h`.
//!
//! ## Conventions
//!
//! - Symbols are `ipvirt_<object>_<verb>`. Objects are opaque handles made by `_new` and released by
//!   `_free` ([`ipvirt_engine`], [`ipvirt_rewriter`]); the plan is a small value struct
//!   ([`ipvirt_plan`]); the rule tables of SPEC §7 are the `#[repr(C)]` structs of
//!   [`table`](crate::table) ([`ipvirt_policy_table`], [`ipvirt_session_entry`],
//!   [`ipvirt_program_entry`]).
//! - Every function returns an [`ipvirt_status`] (frozen numeric values; `IPVIRT_OK` is 0), except
//!   `_free` and [`ipvirt_version`].
//! - Inputs come before outputs, and every buffer is followed by its length in bytes. Outputs are
//!   written only on success (`IPVIRT_OK`), except the error-message buffer of
//!   [`ipvirt_engine_new`] and the string of [`ipvirt_status_message`], which exist to explain a
//!   failure. Strings written are NUL-terminated and truncated to fit.
//! - Every pointer is checked for NULL (`IPVIRT_NULL_ARGUMENT`). A NULL buffer with length 0 is
//!   accepted where a buffer is optional (the server-address list, the VIP, the error message).
//! - Every length is checked before its buffer is touched: a length above `isize::MAX` (no object
//!   can be that large) is `IPVIRT_INVALID_ARGUMENT`, and nothing is read or written.
//! - The buffers of a call must not overlap one another, and the scalar outputs (`changed`,
//!   `source_written`, ...) must not point into them: an overlap is refused with
//!   `IPVIRT_INVALID_ARGUMENT` before anything is written. Input-only buffers (the policy, the
//!   server list, the image, the VIP) may overlap each other.
//! - A panic never crosses the boundary: every body runs inside `catch_unwind` and a panic becomes
//!   `IPVIRT_PANIC`, with nothing written. With the cargo feature `capi-test-panic` (tests only),
//!   `ipvirt_test_arm_panic` makes the next call on the calling thread panic inside its guard.
//!
//! ## Lifetimes and threads
//!
//! An engine is immutable once built and may be used from any number of threads at once. A rewriter
//! owns what it reads (the policy table, shared by reference count, and copies of its session and
//! program entries), so the engine may be freed before its rewriters; it is built once, checked
//! once, and every call after that only decides. A rewriter is immutable too and may be shared
//! between threads. Free each handle exactly once.
//!
//! ## Raw addresses
//!
//! Addresses are the platform's `struct sockaddr_in` / `sockaddr_in6` bytes, with the layout given
//! by an [`ipvirt_layout`] value (family numbers and header differ between Linux, Windows, macOS and
//! FreeBSD). `IPVIRT_UNSUPPORTED_FAMILY` means "not `AF_INET`/`AF_INET6`: pass the call through
//! untouched" — an answer, not an error. The refusals carry the error code to fail the call with,
//! from the crate's one table ([`Refusal`](crate::Refusal)); [`ipvirt_status_errno`] gives it:
//! `IPVIRT_NO_CONNECTIVITY` and `IPVIRT_NO_LOOPBACK` → `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`,
//! `IPVIRT_ISOLATED` → `ECONNREFUSED` / `WSAECONNREFUSED`, `IPVIRT_OTHER_SESSION` (a bind) →
//! `EACCES` / `WSAEACCES`.
//!
//! ## Files
//!
//! Imported from the leaves up, each file one idea (rustls-ffi's layering): `status.rs` the status
//! codes as one pure table (number, C name, message, the refusal behind its error codes);
//! `panic.rs` the panic boundary every call runs in; `ptr.rs` the pointer and length checks;
//! `args.rs` scalar arguments to checked values (session, VIP); `library.rs` the version and the
//! statuses' text and error codes; `engine.rs` the engine and the plan (with the
//! `IPVIRT_REASON_*` codes); `rewriter.rs` the rewriter and its calls; `tables.rs` the rule tables
//! of SPEC §7; `policy.rs` the policy formats (TOML, JSON, `.reg`) and validation
//! ([`ipvirt_policy_validate`], a list of diagnostics read by index).

// The C ABI is the one module of the library that needs unsafe code: it dereferences the caller's
// pointers. Every block says why it is sound.
#![allow(unsafe_code)]
// C naming for the types the header declares.
#![allow(non_camel_case_types)]

mod args;
mod engine;
mod library;
mod panic;
mod policy;
mod ptr;
mod rewriter;
mod status;
mod tables;

pub use engine::{
    IPVIRT_REASON_FEATURE_OFF, IPVIRT_REASON_LISTED, IPVIRT_REASON_NO_ADAPTER,
    IPVIRT_REASON_NOT_LISTED, IPVIRT_REASON_PER_SESSION, IPVIRT_REASONS, ipvirt_engine,
    ipvirt_engine_free, ipvirt_engine_new, ipvirt_engine_new_json, ipvirt_engine_new_reg,
    ipvirt_engine_process, ipvirt_plan,
};
pub use library::{ipvirt_status_errno, ipvirt_status_message, ipvirt_version};
#[cfg(feature = "capi-test-panic")]
pub use panic::ipvirt_test_arm_panic;
pub use policy::{
    ipvirt_diagnostic, ipvirt_diagnostics, ipvirt_diagnostics_count, ipvirt_diagnostics_free,
    ipvirt_diagnostics_get, ipvirt_policy_validate,
};
pub use rewriter::{
    ipvirt_layout, ipvirt_rewriter, ipvirt_rewriter_bind, ipvirt_rewriter_connect,
    ipvirt_rewriter_free, ipvirt_rewriter_new, ipvirt_rewriter_reported, ipvirt_rewriter_resolved,
    ipvirt_rewriter_reverse_lookup, ipvirt_rewriter_sendto,
};
pub use status::ipvirt_status;
pub use tables::{
    ipvirt_engine_policy_table, ipvirt_engine_session_entry, ipvirt_plan_entry,
    ipvirt_policy_table, ipvirt_program_entry, ipvirt_rewriter_from_tables, ipvirt_session_entry,
};
