//! The status codes and their one table: number, message, and the error code of a refusal.

use std::ffi::c_char;

use super::ptr::{check_disjoint, check_len, guard, region, write_message};
use crate::sockaddr::SockaddrError;
use crate::verdict::Refusal;

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
    /// A connect or send to another session's loopback address with isolation on: fail it with
    /// `ECONNREFUSED` / `WSAECONNREFUSED`.
    IPVIRT_ISOLATED = 9,
    /// The session kind is unknown.
    IPVIRT_INVALID_SESSION = 10,
    /// The VIP is not a usable unicast IPv4 address.
    IPVIRT_INVALID_VIP = 11,
    /// Another argument is out of range (a layout, a plan field, a length).
    IPVIRT_INVALID_ARGUMENT = 12,
    /// ipvirt panicked (a bug); nothing was written.
    IPVIRT_PANIC = 13,
    /// A bind of another session's loopback address with isolation on: fail it with `EACCES` /
    /// `WSAEACCES`.
    IPVIRT_OTHER_SESSION = 14,
    /// Virtual loopback applies but the session id (past 16 777 214) has no loopback address: fail
    /// with `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`.
    IPVIRT_NO_LOOPBACK = 15,
}

pub(super) use ipvirt_status::*;

/// The one table of statuses: the message, and for a refusal the refusal whose error codes the
/// hook fails the call with.
const TABLE: [(ipvirt_status, &str, Option<Refusal>); 16] = [
    (IPVIRT_OK, "success", None),
    (
        IPVIRT_NULL_ARGUMENT,
        "a required pointer argument was NULL",
        None,
    ),
    (
        IPVIRT_INVALID_UTF8,
        "a string argument is not valid UTF-8",
        None,
    ),
    (
        IPVIRT_POLICY_ERROR,
        "the policy text could not be read",
        None,
    ),
    (
        IPVIRT_COMPILE_ERROR,
        "the policy could not be compiled",
        None,
    ),
    (IPVIRT_BUFFER_TOO_SHORT, "a buffer is too short", None),
    (
        IPVIRT_BUFFER_TOO_LONG,
        "a socket address buffer is longer than 128 bytes",
        None,
    ),
    (
        IPVIRT_UNSUPPORTED_FAMILY,
        "the address family is neither AF_INET nor AF_INET6: pass the call through",
        None,
    ),
    (
        IPVIRT_NO_CONNECTIVITY,
        "the session has no virtual IP and the policy says no connectivity (EADDRNOTAVAIL)",
        Some(Refusal::NoConnectivity),
    ),
    (
        IPVIRT_ISOLATED,
        "another session's loopback address, and isolation is on (ECONNREFUSED)",
        Some(Refusal::Isolated {
            owner: crate::SessionId::new(0),
        }),
    ),
    (IPVIRT_INVALID_SESSION, "the session kind is unknown", None),
    (
        IPVIRT_INVALID_VIP,
        "the virtual IP is not a usable unicast IPv4 address",
        None,
    ),
    (IPVIRT_INVALID_ARGUMENT, "an argument is out of range", None),
    (IPVIRT_PANIC, "ipvirt panicked: this is a bug", None),
    (
        IPVIRT_OTHER_SESSION,
        "a bind of another session's loopback address, and isolation is on (EACCES)",
        Some(Refusal::OtherSession {
            owner: crate::SessionId::new(0),
        }),
    ),
    (
        IPVIRT_NO_LOOPBACK,
        "virtual loopback applies but the session has no loopback address (EADDRNOTAVAIL)",
        Some(Refusal::NoLoopback),
    ),
];

/// The status of a refusal.
pub(super) fn refusal_status(r: Refusal) -> ipvirt_status {
    match r {
        Refusal::NoConnectivity => IPVIRT_NO_CONNECTIVITY,
        Refusal::Isolated { .. } => IPVIRT_ISOLATED,
        Refusal::OtherSession { .. } => IPVIRT_OTHER_SESSION,
        Refusal::NoLoopback => IPVIRT_NO_LOOPBACK,
    }
}

/// The status of a bad buffer.
pub(super) fn sockaddr_status(e: SockaddrError) -> ipvirt_status {
    match e {
        SockaddrError::TooShort { .. } => IPVIRT_BUFFER_TOO_SHORT,
        SockaddrError::TooLong { .. } => IPVIRT_BUFFER_TOO_LONG,
        _ => IPVIRT_UNSUPPORTED_FAMILY,
    }
}

/// The error codes to fail a call with when ipvirt refused it with `status`: the Linux `errno` to
/// `*posix` and the Winsock error to `*winsock` (either may be NULL). Returns `IPVIRT_OK`, or
/// `IPVIRT_INVALID_ARGUMENT` for a status that is no refusal (nothing is written then).
///
/// # Safety
///
/// `posix` and `winsock` must each be NULL or valid for an `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_status_errno(
    status: u32,
    posix: *mut i32,
    winsock: *mut i32,
) -> ipvirt_status {
    guard(|| {
        let Some(r) = TABLE
            .iter()
            .find(|(s, _, _)| *s as u32 == status)
            .and_then(|(_, _, r)| *r)
        else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        if let Err(st) = check_disjoint(&[region(posix), region(winsock)], &[]) {
            return st;
        }
        if !posix.is_null() {
            // SAFETY: posix is valid for an int32_t (caller).
            unsafe { *posix = r.errno() };
        }
        if !winsock.is_null() {
            // SAFETY: winsock is valid for an int32_t (caller).
            unsafe { *winsock = r.wsa_error() };
        }
        IPVIRT_OK
    })
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
        let (msg, known) = TABLE
            .iter()
            .find(|(s, _, _)| *s as u32 == status)
            .map_or(("unknown status", false), |(_, m, _)| (*m, true));
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
