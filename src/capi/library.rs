//! What the library says about itself and its statuses: its version, each status's text and the
//! error codes of a refusal, read from the one table of `status.rs`.

use std::ffi::c_char;

use super::panic::guard;
use super::ptr::{check_disjoint, check_len, region, write_message};
use super::status::ipvirt_status::{self, *};

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
        let Some(r) = ipvirt_status::from_number(status).and_then(ipvirt_status::refusal) else {
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
        let (msg, known) = ipvirt_status::from_number(status)
            .map_or(("unknown status", false), |s| (s.message(), true));
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
