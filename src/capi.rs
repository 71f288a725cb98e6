//! The C ABI (feature `capi`), for hooking layers written in C or C++. The header is
//! `src/ipvirt.h`.
//!
//! ## Conventions
//!
//! - Symbols are `ipvirt_<object>_<verb>`. Objects are opaque handles made by `_new` and released by
//!   `_free` ([`ipvirt_engine`], [`ipvirt_rewriter`]); the plan is a small value struct
//!   ([`ipvirt_plan`]).
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
//! keeps its engine alive (it holds a reference count), so the engine may be freed before its
//! rewriters; a rewriter is immutable too and may be shared between threads. Free each handle
//! exactly once.
//!
//! ## Raw addresses
//!
//! Addresses are the platform's `struct sockaddr_in` / `sockaddr_in6` bytes, with the layout given
//! by an [`ipvirt_layout`] value (family numbers and header differ between Linux, Windows, macOS and
//! FreeBSD). `IPVIRT_UNSUPPORTED_FAMILY` means "not `AF_INET`/`AF_INET6`: pass the call through
//! untouched". `IPVIRT_NO_CONNECTIVITY` maps to `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`,
//! `IPVIRT_ISOLATED` to `ECONNREFUSED` / `WSAECONNREFUSED`.

// The C ABI is the one module of the library that needs unsafe code: it dereferences the caller's
// pointers. Every block says why it is sound.
#![allow(unsafe_code)]
// C naming for the types the header declares.
#![allow(non_camel_case_types)]

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::engine::{Decision, Engine, ProcessPlan, Reason};
use crate::error::{RewriteError, SockaddrError};
use crate::host::Host;
use crate::policy::Policy;
use crate::rewrite::Stack;
use crate::session::{Session, SessionId};
use crate::sockaddr::SockaddrLayout;

/// Status codes. The numeric values are frozen.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ipvirt_status {
    /// Success.
    IPVIRT_OK = 0,
    /// A required pointer was NULL.
    IPVIRT_NULL_ARGUMENT = 1,
    /// A string argument was not UTF-8.
    IPVIRT_INVALID_UTF8 = 2,
    /// The policy text could not be read (the message says where).
    IPVIRT_POLICY_ERROR = 3,
    /// The policy could not be compiled (the message says why).
    IPVIRT_COMPILE_ERROR = 4,
    /// A buffer is shorter than what it must hold (an address, the source, a message).
    IPVIRT_BUFFER_TOO_SHORT = 5,
    /// A socket-address buffer is longer than any socket address (128 bytes).
    IPVIRT_BUFFER_TOO_LONG = 6,
    /// The address is not `AF_INET`/`AF_INET6`: pass the call through untouched.
    IPVIRT_UNSUPPORTED_FAMILY = 7,
    /// The session has no VIP and the policy says no connectivity: fail with `EADDRNOTAVAIL`.
    IPVIRT_NO_CONNECTIVITY = 8,
    /// Another session's loopback address with isolation on: fail with `ECONNREFUSED`.
    IPVIRT_ISOLATED = 9,
    /// The session id has no loopback address (past 16 777 214) or the session kind is unknown.
    IPVIRT_INVALID_SESSION = 10,
    /// The VIP is not a usable unicast IPv4 address.
    IPVIRT_INVALID_VIP = 11,
    /// Another argument is out of range (a layout, a plan field, a length).
    IPVIRT_INVALID_ARGUMENT = 12,
    /// ipvirt panicked (a bug); nothing was written.
    IPVIRT_PANIC = 13,
}

use ipvirt_status::*;

/// Socket-address layouts (see [`SockaddrLayout`]).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ipvirt_layout {
    /// The platform ipvirt was compiled for.
    IPVIRT_LAYOUT_NATIVE = 0,
    /// Linux, little-endian.
    IPVIRT_LAYOUT_LINUX = 1,
    /// Linux, big-endian.
    IPVIRT_LAYOUT_LINUX_BIG_ENDIAN = 2,
    /// Windows.
    IPVIRT_LAYOUT_WINDOWS = 3,
    /// macOS.
    IPVIRT_LAYOUT_MACOS = 4,
    /// FreeBSD.
    IPVIRT_LAYOUT_FREEBSD = 5,
}

fn layout(v: u32) -> Option<SockaddrLayout> {
    Some(match v {
        0 => SockaddrLayout::native(),
        1 => SockaddrLayout::LINUX,
        2 => SockaddrLayout::LINUX_BIG_ENDIAN,
        3 => SockaddrLayout::WINDOWS,
        4 => SockaddrLayout::MACOS,
        5 => SockaddrLayout::FREEBSD,
        _ => return None,
    })
}

/// A compiled policy (opaque).
#[derive(Debug)]
pub struct ipvirt_engine {
    engine: Arc<Engine>,
}

/// A rewriter for one process in one session (opaque).
#[derive(Debug)]
pub struct ipvirt_rewriter {
    engine: Arc<Engine>,
    session: Session,
    plan: ProcessPlan,
    vip: Option<Ipv4Addr>,
}

/// Which features apply to a process, and why (see [`ProcessPlan`]).
///
/// `reason` values: 0 feature off, 1 no adapter (virtual IP), 2 per-session mode, 3 listed (`entry`
/// is the 0-based index of the matching list entry), 4 not listed. Pass the struct back unchanged
/// to [`ipvirt_rewriter_new`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ipvirt_plan {
    /// 1 when virtual loopback applies.
    pub loopback: u8,
    /// 1 when virtual IP applies.
    pub virtual_ip: u8,
    /// 1 when preferred loopback lists the process.
    pub prefer_loopback: u8,
    /// The reasons, in the same order.
    pub loopback_reason: u8,
    /// The reason for `virtual_ip`.
    pub virtual_ip_reason: u8,
    /// The reason for `prefer_loopback`.
    pub prefer_loopback_reason: u8,
    /// Entries that matched (valid when the reason is 3).
    pub loopback_entry: u32,
    /// The `virtual_ip` entry.
    pub virtual_ip_entry: u32,
    /// The `prefer_loopback` entry.
    pub prefer_loopback_entry: u32,
}

fn encode(d: Decision) -> (u8, u8, u32) {
    let (reason, entry) = match d.reason() {
        Reason::FeatureOff => (0, 0),
        Reason::NoAdapter => (1, 0),
        Reason::PerSession => (2, 0),
        Reason::Listed { entry } => (3, entry),
        Reason::NotListed => (4, 0),
    };
    (u8::from(d.applies()), reason, entry)
}

fn decode(applies: u8, reason: u8, entry: u32) -> Option<Decision> {
    let reason = match reason {
        0 => Reason::FeatureOff,
        1 => Reason::NoAdapter,
        2 => Reason::PerSession,
        3 => Reason::Listed { entry },
        4 => Reason::NotListed,
        _ => return None,
    };
    match applies {
        0 => Some(Decision::no(reason)),
        1 => Some(Decision::yes(reason)),
        _ => None,
    }
}

impl From<ProcessPlan> for ipvirt_plan {
    fn from(p: ProcessPlan) -> ipvirt_plan {
        let (l, lr, le) = encode(p.loopback());
        let (v, vr, ve) = encode(p.virtual_ip());
        let (pl, pr, pe) = encode(p.prefer_loopback());
        ipvirt_plan {
            loopback: l,
            virtual_ip: v,
            prefer_loopback: pl,
            loopback_reason: lr,
            virtual_ip_reason: vr,
            prefer_loopback_reason: pr,
            loopback_entry: le,
            virtual_ip_entry: ve,
            prefer_loopback_entry: pe,
        }
    }
}

impl ipvirt_plan {
    fn to_plan(self) -> Option<ProcessPlan> {
        Some(ProcessPlan::from_decisions(
            decode(self.loopback, self.loopback_reason, self.loopback_entry)?,
            decode(
                self.virtual_ip,
                self.virtual_ip_reason,
                self.virtual_ip_entry,
            )?,
            decode(
                self.prefer_loopback,
                self.prefer_loopback_reason,
                self.prefer_loopback_entry,
            )?,
        ))
    }
}

/// Runs `f`, turning a panic into `IPVIRT_PANIC`.
fn guard(f: impl FnOnce() -> ipvirt_status) -> ipvirt_status {
    catch_unwind(AssertUnwindSafe(|| {
        #[cfg(feature = "capi-test-panic")]
        test_panic::maybe_panic();
        f()
    }))
    .unwrap_or(IPVIRT_PANIC)
}

/// The test-only way to make a C ABI call panic (cargo feature `capi-test-panic`): proves that a
/// panic inside any call becomes `IPVIRT_PANIC`, writes nothing and leaves the process running.
#[cfg(feature = "capi-test-panic")]
mod test_panic {
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn arm() {
        ARMED.with(|a| a.set(true));
    }

    /// Panics (once) if [`arm`] was called on this thread since the last panic.
    #[allow(
        clippy::panic,
        reason = "the deliberate panic of the capi-test-panic feature"
    )]
    pub(super) fn maybe_panic() {
        if ARMED.with(|a| a.replace(false)) {
            panic!("ipvirt: the panic armed by ipvirt_test_arm_panic (capi-test-panic)");
        }
    }
}

/// Test only (cargo feature `capi-test-panic`, never in a release build): the next C ABI call on
/// the calling thread that returns an [`ipvirt_status`] panics inside its `catch_unwind` guard, so
/// a test can check that it returns `IPVIRT_PANIC`, writes nothing and leaves the process and the
/// library usable.
#[cfg(feature = "capi-test-panic")]
#[doc(hidden)]
#[unsafe(no_mangle)]
pub extern "C" fn ipvirt_test_arm_panic() {
    test_panic::arm();
}

/// The largest length a buffer can have: no object is larger than `isize::MAX` bytes, and
/// `slice::from_raw_parts` requires it.
const MAX_LEN: usize = isize::MAX as usize;

/// Refuses a length no buffer can have (`IPVIRT_INVALID_ARGUMENT`), before any slice is built.
fn check_len(len: usize) -> Result<(), ipvirt_status> {
    if len > MAX_LEN {
        Err(IPVIRT_INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Whether the byte ranges `[a, a + a_len)` and `[b, b + b_len)` share a byte (empty ranges share
/// none). Only the addresses are compared; nothing is dereferenced.
fn overlap(a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> bool {
    let (a, b) = (a as usize, b as usize);
    a_len != 0 && b_len != 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// A buffer or scalar as `(address, length)`, for [`check_disjoint`].
type Region = (*const u8, usize);

/// Refuses overlaps (`IPVIRT_INVALID_ARGUMENT`) between two outputs, or an output and an input
/// (inputs may overlap each other: they are only read). NULL regions are ignored.
fn check_disjoint(outputs: &[Region], inputs: &[Region]) -> Result<(), ipvirt_status> {
    for (i, &(a, a_len)) in outputs.iter().enumerate() {
        for &(b, b_len) in outputs.iter().skip(i + 1).chain(inputs) {
            if !a.is_null() && !b.is_null() && overlap(a, a_len, b, b_len) {
                return Err(IPVIRT_INVALID_ARGUMENT);
            }
        }
    }
    Ok(())
}

/// The region of a scalar (or struct) argument, for [`check_disjoint`].
fn region<T>(p: *const T) -> Region {
    (p.cast(), size_of::<T>())
}

/// A byte slice from a pointer and length; NULL is allowed only with length 0.
///
/// # Errors
///
/// `IPVIRT_NULL_ARGUMENT` for NULL with a non-zero length, `IPVIRT_INVALID_ARGUMENT` for a length
/// above `isize::MAX` (checked before the slice is built).
///
/// # Safety
///
/// `ptr` must be NULL or valid for reading `len` bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], ipvirt_status> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(IPVIRT_NULL_ARGUMENT)
        };
    }
    check_len(len)?;
    // SAFETY: the caller guarantees ptr is valid for len bytes, and len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable byte slice from a non-NULL pointer and length.
///
/// # Errors
///
/// `IPVIRT_NULL_ARGUMENT` for NULL, `IPVIRT_INVALID_ARGUMENT` for a length above `isize::MAX`
/// (checked before the slice is built).
///
/// # Safety
///
/// `ptr` must be NULL or valid for reading and writing `len` bytes, and not otherwise borrowed
/// while the slice lives.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8], ipvirt_status> {
    if ptr.is_null() {
        return Err(IPVIRT_NULL_ARGUMENT);
    }
    check_len(len)?;
    // SAFETY: the caller guarantees ptr is valid for len bytes, and len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes `msg` NUL-terminated into `buf` (truncated to fit) and its full length to `written`.
///
/// # Safety
///
/// `buf` must be NULL or valid for `len` bytes; `written` NULL or valid for a `usize`.
unsafe fn write_message(msg: &str, buf: *mut c_char, len: usize, written: *mut usize) -> bool {
    if !written.is_null() {
        // SAFETY: written is valid (caller).
        unsafe { *written = msg.len() };
    }
    if buf.is_null() || len == 0 {
        return msg.is_empty();
    }
    let n = msg.len().min(len - 1);
    // SAFETY: buf is valid for len > n bytes (caller); msg has n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    n == msg.len()
}

fn status_of(e: SockaddrError) -> ipvirt_status {
    match e {
        SockaddrError::TooShort { .. } => IPVIRT_BUFFER_TOO_SHORT,
        SockaddrError::TooLong { .. } => IPVIRT_BUFFER_TOO_LONG,
        SockaddrError::UnsupportedFamily { .. } => IPVIRT_UNSUPPORTED_FAMILY,
        SockaddrError::Rewrite(r) => rewrite_status(r),
    }
}

fn rewrite_status(e: RewriteError) -> ipvirt_status {
    match e {
        RewriteError::NoConnectivity { .. } => IPVIRT_NO_CONNECTIVITY,
        RewriteError::Isolated { .. } => IPVIRT_ISOLATED,
        RewriteError::Session(_) => IPVIRT_INVALID_SESSION,
        RewriteError::InvalidVip { .. } => IPVIRT_INVALID_VIP,
    }
}

/// The version of ipvirt, a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn ipvirt_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Writes the description of `status` into `buf` (NUL-terminated, truncated to fit) and its full
/// length (without the NUL) to `*needed` if `needed` is not NULL.
///
/// Returns `IPVIRT_OK`, `IPVIRT_BUFFER_TOO_SHORT` when the text was truncated, or
/// `IPVIRT_INVALID_ARGUMENT` for an unknown status (the text then says so).
///
/// # Safety
///
/// `buf` must be NULL or valid for `buf_len` bytes; `needed` NULL or valid for a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_status_message(
    status: u32,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> ipvirt_status {
    guard(|| {
        let (msg, known) = match status {
            0 => ("success", true),
            1 => ("a required pointer argument was NULL", true),
            2 => ("a string argument is not valid UTF-8", true),
            3 => ("the policy text could not be read", true),
            4 => ("the policy could not be compiled", true),
            5 => ("a buffer is too short", true),
            6 => ("a socket address buffer is longer than 128 bytes", true),
            7 => (
                "the address family is neither AF_INET nor AF_INET6: pass the call through",
                true,
            ),
            8 => (
                "the session has no virtual IP and the policy says no connectivity (EADDRNOTAVAIL)",
                true,
            ),
            9 => (
                "another session's loopback address, and isolation is on (ECONNREFUSED)",
                true,
            ),
            10 => (
                "the session id has no loopback address or the session kind is unknown",
                true,
            ),
            11 => ("the virtual IP is not a usable unicast IPv4 address", true),
            12 => ("an argument is out of range", true),
            13 => ("ipvirt panicked: this is a bug", true),
            _ => ("unknown status", false),
        };
        if let Err(st) = check_len(buf_len)
            .and_then(|()| check_disjoint(&[(buf.cast(), buf_len), region(needed)], &[]))
        {
            return st;
        }
        // SAFETY: the caller's contract; buf_len is a possible length and needed is not in buf.
        let fits = unsafe { write_message(msg, buf, buf_len, needed) };
        match (known, fits) {
            (false, _) => IPVIRT_INVALID_ARGUMENT,
            (true, true) => IPVIRT_OK,
            (true, false) => IPVIRT_BUFFER_TOO_SHORT,
        }
    })
}

/// Builds an engine from a TOML policy (`policy`, `policy_len` bytes of UTF-8) and the server's own
/// IPv4 addresses (`servers`: `servers_len` bytes, 4 per address, network byte order; NULL with 0
/// for none). On success writes the new handle to `*out`.
///
/// On failure, when `err` is not NULL, writes the reason (naming the line and key of a policy
/// error) into `err` (NUL-terminated, truncated to `err_len`), and its full length to `*err_needed`
/// when that is not NULL.
///
/// # Safety
///
/// Each pointer must be NULL or valid for its length; `out` valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_new(
    policy: *const u8,
    policy_len: usize,
    servers: *const u8,
    servers_len: usize,
    out: *mut *mut ipvirt_engine,
    err: *mut c_char,
    err_len: usize,
    err_needed: *mut usize,
) -> ipvirt_status {
    guard(|| {
        // The error buffer and the outputs first: a bad one is reported without writing anything.
        let outputs = [
            (err.cast_const().cast(), err_len),
            region(err_needed),
            region(out),
        ];
        if let Err(st) = check_len(err_len).and_then(|()| check_disjoint(&outputs, &[])) {
            return st;
        }
        let fail = |status, msg: &str| {
            // SAFETY: the caller's contract for err and err_needed.
            unsafe { write_message(msg, err, err_len, err_needed) };
            status
        };
        if policy.is_null() || out.is_null() {
            return fail(IPVIRT_NULL_ARGUMENT, "policy and out must not be NULL");
        }
        // SAFETY: policy is valid for policy_len bytes (caller).
        let text = match unsafe { bytes(policy, policy_len) } {
            Ok(text) => text,
            Err(st) => return fail(st, "policy_len is larger than any buffer"),
        };
        // SAFETY: servers is NULL or valid for servers_len bytes (caller).
        let servers = match unsafe { bytes(servers, servers_len) } {
            Ok(servers) => servers,
            Err(IPVIRT_NULL_ARGUMENT) => {
                return fail(
                    IPVIRT_NULL_ARGUMENT,
                    "servers is NULL with a non-zero length",
                );
            }
            Err(st) => return fail(st, "servers_len is larger than any buffer"),
        };
        // An output inside an input: refused, and without a message (it would overwrite the input).
        if let Err(st) = check_disjoint(
            &outputs,
            &[(policy, policy_len), (servers.as_ptr(), servers.len())],
        ) {
            return st;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return fail(IPVIRT_INVALID_UTF8, "the policy text is not UTF-8");
        };
        if servers.len() % 4 != 0 {
            return fail(
                IPVIRT_INVALID_ARGUMENT,
                "servers_len must be a multiple of 4 (one IPv4 address each)",
            );
        }
        let host = Host::new(
            servers
                .chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                .map(IpAddr::from),
        );
        let policy = match Policy::from_toml(text) {
            Ok(p) => p,
            Err(e) => return fail(IPVIRT_POLICY_ERROR, &e.to_string()),
        };
        let engine = match policy.compile(host) {
            Ok(e) => e,
            Err(e) => return fail(IPVIRT_COMPILE_ERROR, &e.to_string()),
        };
        let handle = Box::new(ipvirt_engine {
            engine: Arc::new(engine),
        });
        // SAFETY: out is valid for a pointer (checked non-NULL).
        unsafe { *out = Box::into_raw(handle) };
        IPVIRT_OK
    })
}

/// Frees an engine (NULL is a no-op). Rewriters made from it stay valid.
///
/// # Safety
///
/// `engine` must be NULL or a handle from [`ipvirt_engine_new`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_free(engine: *mut ipvirt_engine) {
    if !engine.is_null() {
        // SAFETY: the handle came from Box::into_raw and is freed once (caller).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(engine) })));
    }
}

/// The plan for a process, from its executable image (`image`, `image_len` bytes of UTF-8: a full
/// path or a name). Call once per process.
///
/// # Safety
///
/// `engine` must be a live handle; `image` valid for `image_len` bytes; `out` valid for a plan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_process(
    engine: *const ipvirt_engine,
    image: *const u8,
    image_len: usize,
    out: *mut ipvirt_plan,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || image.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[(image, image_len)]) {
            return st;
        }
        // SAFETY: image is valid for image_len bytes (caller).
        let name = match unsafe { bytes(image, image_len) } {
            Ok(name) => name,
            Err(st) => return st,
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return IPVIRT_INVALID_UTF8;
        };
        // SAFETY: engine is a live handle (caller).
        let plan = unsafe { &*engine }.engine.process(name);
        // SAFETY: out is valid for a plan (caller, checked non-NULL).
        unsafe { *out = plan.into() };
        IPVIRT_OK
    })
}

/// A rewriter for the process `plan` describes, in session `session_id` of kind `session_kind`
/// (0 remote, 1 console/administrative), whose VIP is `vip` (4 bytes, network order; NULL with 0
/// for none: the policy's lease-failure setting then applies).
///
/// # Safety
///
/// `engine` must be a live handle; `plan` valid; `vip` NULL or valid for `vip_len` bytes; `out`
/// valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_new(
    engine: *const ipvirt_engine,
    session_id: u32,
    session_kind: u32,
    plan: *const ipvirt_plan,
    vip: *const u8,
    vip_len: usize,
    out: *mut *mut ipvirt_rewriter,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || plan.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[region(plan), (vip, vip_len)]) {
            return st;
        }
        let id = SessionId::new(session_id);
        let session = match session_kind {
            0 => Session::remote(id),
            1 => Session::console(id),
            _ => return IPVIRT_INVALID_SESSION,
        };
        // SAFETY: plan is valid (caller, checked non-NULL).
        let Some(plan) = unsafe { *plan }.to_plan() else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        // SAFETY: vip is NULL or valid for vip_len bytes (caller).
        let vip = match unsafe { bytes(vip, vip_len) } {
            Err(st) => return st,
            Ok([]) => None,
            Ok(&[a, b, c, d]) => Some(Ipv4Addr::new(a, b, c, d)),
            Ok(_) => return IPVIRT_INVALID_ARGUMENT,
        };
        // SAFETY: engine is a live handle (caller).
        let engine = Arc::clone(&unsafe { &*engine }.engine);
        // Build it once now so that set-up errors surface here, not at the first call.
        if let Err(e) = engine.rewriter(session, &plan, vip) {
            return rewrite_status(e);
        }
        let handle = Box::new(ipvirt_rewriter {
            engine,
            session,
            plan,
            vip,
        });
        // SAFETY: out is valid for a pointer (checked non-NULL).
        unsafe { *out = Box::into_raw(handle) };
        IPVIRT_OK
    })
}

/// Frees a rewriter (NULL is a no-op).
///
/// # Safety
///
/// `rewriter` must be NULL or a handle from [`ipvirt_rewriter_new`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_free(rewriter: *mut ipvirt_rewriter) {
    if !rewriter.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the handle came from Box::into_raw and is freed once (caller).
            drop(unsafe { Box::from_raw(rewriter) })
        }));
    }
}

/// Runs `f` with the rewriter behind a handle.
///
/// # Safety
///
/// `rw` must be NULL or a live handle.
unsafe fn with_rewriter(
    rw: *const ipvirt_rewriter,
    layout_v: u32,
    f: impl FnOnce(&crate::Rewriter<'_>, SockaddrLayout) -> ipvirt_status,
) -> ipvirt_status {
    guard(|| {
        if rw.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        let Some(l) = layout(layout_v) else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        // SAFETY: rw is a live handle (caller).
        let h = unsafe { &*rw };
        match h.engine.rewriter(h.session, &h.plan, h.vip) {
            Ok(r) => f(&r, l),
            Err(e) => rewrite_status(e),
        }
    })
}

/// `bind`: rewrites the socket address in `addr` (`addr_len` bytes) in place; `*changed` is set to
/// 1 if it changed, 0 if not. `dual_stack` is 1 for an `AF_INET6` socket with `IPV6_V6ONLY` off.
///
/// # Safety
///
/// `rw` a live handle; `addr` valid for `addr_len` bytes; `changed` valid for a `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_bind(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    dual_stack: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if changed.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            let stack = match dual_stack {
                0 => Stack::Single,
                1 => Stack::Dual,
                _ => return IPVIRT_INVALID_ARGUMENT,
            };
            if let Err(st) = check_disjoint(&[(addr, addr_len), region(changed)], &[]) {
                return st;
            }
            // SAFETY: addr is valid for addr_len bytes (caller) and changed is not in it.
            let buf = match bytes_mut(addr, addr_len) {
                Ok(buf) => buf,
                Err(st) => return st,
            };
            match r.bind_sockaddr(buf, l, stack) {
                Ok(c) => {
                    // SAFETY: changed is valid (checked non-NULL).
                    *changed = u32::from(c);
                    IPVIRT_OK
                }
                Err(e) => status_of(e),
            }
        })
    }
}

/// `connect` (and `sendto` with [`ipvirt_rewriter_sendto`]): rewrites the destination in `dest`
/// (`dest_len` bytes) in place and, when the socket should be bound first, writes that source
/// address into `source` (give 28 bytes or more; `*source_written` is its length, 0 for none).
/// `*dest_changed` is 1 if the destination changed.
///
/// # Safety
///
/// `rw` a live handle; `dest` valid for `dest_len` bytes; `source` valid for `source_len` bytes;
/// `source_written` and `dest_changed` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_connect(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        connect_like(
            rw,
            dest,
            dest_len,
            layout,
            source,
            source_len,
            source_written,
            dest_changed,
            false,
        )
    }
}

/// `sendto` / `sendmsg`: as [`ipvirt_rewriter_connect`].
///
/// # Safety
///
/// As [`ipvirt_rewriter_connect`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_sendto(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        connect_like(
            rw,
            dest,
            dest_len,
            layout,
            source,
            source_len,
            source_written,
            dest_changed,
            true,
        )
    }
}

/// # Safety
///
/// As [`ipvirt_rewriter_connect`].
#[allow(clippy::too_many_arguments)]
unsafe fn connect_like(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
    send: bool,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if source_written.is_null() || dest_changed.is_null() || source.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            // One buffer as both dest and source would be two live `&mut` to the same bytes, and
            // both outputs cannot be kept anyway: refuse any overlap before building the slices.
            if let Err(st) = check_disjoint(
                &[
                    (dest, dest_len),
                    (source, source_len),
                    region(source_written),
                    region(dest_changed),
                ],
                &[],
            ) {
                return st;
            }
            // SAFETY: dest and source are valid for their lengths (caller) and disjoint (checked).
            let (d, s) = match (bytes_mut(dest, dest_len), bytes_mut(source, source_len)) {
                (Ok(d), Ok(s)) => (d, s),
                (Err(st), _) | (_, Err(st)) => return st,
            };
            let result = if send {
                r.send_to_sockaddr(d, l, s)
            } else {
                r.connect_sockaddr(d, l, s)
            };
            match result {
                Ok(raw) => {
                    // SAFETY: both outputs are valid (checked non-NULL).
                    *source_written = raw.source_len.unwrap_or(0);
                    *dest_changed = u32::from(raw.dest_changed);
                    IPVIRT_OK
                }
                Err(e) => status_of(e),
            }
        })
    }
}

/// `getsockname`, `getpeername`, `accept`, `recvfrom`: rewrites the address the system returned
/// (`addr`, `addr_len` bytes: the complete address) in place to what the application should see.
///
/// # Safety
///
/// `rw` a live handle; `addr` valid for `addr_len` bytes; `changed` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_reported(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if changed.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            if let Err(st) = check_disjoint(&[(addr, addr_len), region(changed)], &[]) {
                return st;
            }
            // SAFETY: addr is valid for addr_len bytes (caller) and changed is not in it.
            let buf = match bytes_mut(addr, addr_len) {
                Ok(buf) => buf,
                Err(st) => return st,
            };
            match r.reported_sockaddr(buf, l) {
                Ok(c) => {
                    // SAFETY: changed is valid (checked non-NULL).
                    *changed = u32::from(c);
                    IPVIRT_OK
                }
                Err(e) => status_of(e),
            }
        })
    }
}
