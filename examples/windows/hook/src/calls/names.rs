//! `getsockname`, `getpeername`, `accept`, `WSAAccept`: the addresses handed back.

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Networking::WinSock::{INVALID_SOCKET, SOCKET_ERROR, WSAEFAULT};

use crate::addrs::{fix_reported_len, read_len};
use crate::config::state;
use crate::hooks::GetSockName;
use crate::pending::{self, Held};
use crate::sys::{Depth, Socket, set_last_error};

/// The body of the two `get*name` hooks.
///
/// # Safety
///
/// As Winsock's `getsockname`.
unsafe fn name_of(real: GetSockName, s: Socket, name: *mut u8, namelen: *mut i32) -> i32 {
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen) };
    };
    // SAFETY: namelen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(namelen) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(s, name, namelen) };
    if r == 0 {
        // SAFETY: Winsock wrote the address and its length.
        unsafe { fix_reported_len(st, name, namelen, cap) };
    }
    r
}

/// `getsockname`: the session's loopback reported as the localhost address the program used; a
/// held-back bind reported as the program made it (see [`crate::pending`]).
///
/// # Safety
///
/// As Winsock's `getsockname`.
pub(crate) unsafe extern "system" fn getsockname(
    s: Socket,
    name: *mut u8,
    namelen: *mut i32,
) -> i32 {
    let real = real!(GetSockName);
    if let Some(held) = pending::peek(s) {
        // SAFETY: the caller's contract.
        return unsafe { report_held(&held, name, namelen) };
    }
    // SAFETY: the caller's contract.
    unsafe { name_of(real, s, name, namelen) }
}

/// The address of a held-back bind, as `getsockname` reports a bound one: `WSAEFAULT` when the
/// program's buffer is too small for it.
///
/// # Safety
///
/// As Winsock's `getsockname`.
unsafe fn report_held(held: &Held, name: *mut u8, namelen: *mut i32) -> i32 {
    // SAFETY: namelen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(namelen) };
    if name.is_null() || usize::try_from(cap).is_ok_and(|c| c < held.len) || cap < 0 {
        set_last_error(WSAEFAULT);
        return SOCKET_ERROR;
    }
    // SAFETY: name holds cap >= held.len writable bytes; namelen points at an int.
    unsafe {
        ptr::copy_nonoverlapping(held.addr.as_ptr(), name, held.len);
        *namelen = held.len as i32;
    }
    0
}

/// `getpeername`: as [`getsockname`].
///
/// # Safety
///
/// As Winsock's `getpeername`.
pub(crate) unsafe extern "system" fn getpeername(
    s: Socket,
    name: *mut u8,
    namelen: *mut i32,
) -> i32 {
    let real = real!(GetPeerName);
    // SAFETY: the caller's contract.
    unsafe { name_of(real, s, name, namelen) }
}

/// `accept`: the peer's address as the program should see it.
///
/// # Safety
///
/// As Winsock's `accept`.
pub(crate) unsafe extern "system" fn accept(s: Socket, addr: *mut u8, addrlen: *mut i32) -> Socket {
    let real = real!(Accept);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, addr, addrlen) };
    };
    // SAFETY: addrlen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(addrlen) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(s, addr, addrlen) };
    if r != INVALID_SOCKET {
        // SAFETY: Winsock wrote the address and its length.
        unsafe { fix_reported_len(st, addr, addrlen, cap) };
    }
    r
}

/// `WSAAccept`: as [`accept`]. The condition function, if any, is called by Winsock with the
/// address as the system has it (see the crate documentation's limits).
///
/// # Safety
///
/// As Winsock's `WSAAccept`.
pub(crate) unsafe extern "system" fn wsa_accept(
    s: Socket,
    addr: *mut u8,
    addrlen: *mut i32,
    condition: *const c_void,
    data: usize,
) -> Socket {
    let real = real!(WsaAccept);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, addr, addrlen, condition, data) };
    };
    // SAFETY: addrlen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(addrlen) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(s, addr, addrlen, condition, data) };
    if r != INVALID_SOCKET {
        // SAFETY: Winsock wrote the address and its length.
        unsafe { fix_reported_len(st, addr, addrlen, cap) };
    }
    r
}
