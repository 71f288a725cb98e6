//! `getsockname`, `getpeername`, `accept`, `WSAAccept`: the addresses handed back.

use std::ffi::c_void;

use windows_sys::Win32::Networking::WinSock::INVALID_SOCKET;

use crate::addrs::{fix_reported_len, read_len};
use crate::calls::connect::bind_now;
use crate::config::state;
use crate::hooks::GetSockName;
use crate::sys::{Depth, Socket};

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

/// `getsockname`: the session's loopback reported as the localhost address the program used. A
/// held-back bind (see [`crate::pending`]) is made first, with the bind rules: a program that asks
/// for its name before it connects or listens wants the port the system chose (`bind(0)`, then
/// `getsockname`, is how programs find a free port).
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
    {
        let depth = Depth::enter();
        if let Some(st) = state().filter(|_| depth.outermost()) {
            let r = bind_now(st, s);
            if r != 0 {
                return r;
            }
        }
    }
    // SAFETY: the caller's contract.
    unsafe { name_of(real, s, name, namelen) }
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
