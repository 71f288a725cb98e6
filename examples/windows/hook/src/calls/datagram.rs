//! `sendto`, `WSASendTo` (destinations, and the implicit source bind of an unbound datagram
//! socket), `recvfrom`, `WSARecvFrom` (the addresses handed back).

use std::ffi::c_void;

use ipvirt::Call;
use windows_sys::Win32::Networking::WinSock::SOCKET_ERROR;

use crate::addrs::{destination, fix_reported_len, read_len};
use crate::config::state;
use crate::sys::{Depth, Socket, set_last_error};

/// `sendto` to the destination ipvirt says.
///
/// # Safety
///
/// As Winsock's `sendto`.
pub(crate) unsafe extern "system" fn sendto(
    s: Socket,
    buf: *const u8,
    len: i32,
    flags: i32,
    to: *const u8,
    tolen: i32,
) -> i32 {
    let real = real!(SendTo);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, buf, len, flags, to, tolen) };
    };
    // SAFETY: the caller's contract is sendto's.
    match unsafe { destination(st, s, to, tolen, Call::SendTo, true) } {
        // SAFETY: the rewritten copy holds n bytes.
        Ok(Some((copy, n))) => unsafe { real(s, buf, len, flags, copy.as_ptr(), n) },
        // SAFETY: forwarded unchanged.
        Ok(None) => unsafe { real(s, buf, len, flags, to, tolen) },
        Err(code) => {
            set_last_error(code);
            SOCKET_ERROR
        }
    }
}

/// `WSASendTo`: as [`sendto`]; buffers, overlapped I/O and completion routine pass through.
///
/// # Safety
///
/// As Winsock's `WSASendTo`.
pub(crate) unsafe extern "system" fn wsa_send_to(
    s: Socket,
    bufs: *const c_void,
    count: u32,
    sent: *mut u32,
    flags: u32,
    to: *const u8,
    tolen: i32,
    overlapped: *mut c_void,
    completion: *const c_void,
) -> i32 {
    let real = real!(WsaSendTo);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe {
            real(
                s, bufs, count, sent, flags, to, tolen, overlapped, completion,
            )
        };
    };
    // SAFETY: the caller's contract is WSASendTo's.
    match unsafe { destination(st, s, to, tolen, Call::SendTo, true) } {
        // SAFETY: the rewritten copy holds n bytes (Winsock copies the destination before an
        // overlapped send returns); the rest is forwarded unchanged.
        Ok(Some((copy, n))) => unsafe {
            real(
                s,
                bufs,
                count,
                sent,
                flags,
                copy.as_ptr(),
                n,
                overlapped,
                completion,
            )
        },
        // SAFETY: forwarded unchanged.
        Ok(None) => unsafe {
            real(
                s, bufs, count, sent, flags, to, tolen, overlapped, completion,
            )
        },
        Err(code) => {
            set_last_error(code);
            SOCKET_ERROR
        }
    }
}

/// `recvfrom`: the sender's address as the program should see it.
///
/// # Safety
///
/// As Winsock's `recvfrom`.
pub(crate) unsafe extern "system" fn recvfrom(
    s: Socket,
    buf: *mut u8,
    len: i32,
    flags: i32,
    from: *mut u8,
    fromlen: *mut i32,
) -> i32 {
    let real = real!(RecvFrom);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, buf, len, flags, from, fromlen) };
    };
    // SAFETY: fromlen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(fromlen) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(s, buf, len, flags, from, fromlen) };
    if r != SOCKET_ERROR {
        // SAFETY: Winsock wrote the address and its length.
        unsafe { fix_reported_len(st, from, fromlen, cap) };
    }
    r
}

/// `WSARecvFrom`: as [`recvfrom`] when the call completes at once. An overlapped receive that is
/// still pending when the call returns has its address written later, by the system: that one is
/// reported unchanged (see the limits in the crate documentation).
///
/// # Safety
///
/// As Winsock's `WSARecvFrom`.
pub(crate) unsafe extern "system" fn wsa_recv_from(
    s: Socket,
    bufs: *const c_void,
    count: u32,
    received: *mut u32,
    flags: *mut u32,
    from: *mut u8,
    fromlen: *mut i32,
    overlapped: *mut c_void,
    completion: *const c_void,
) -> i32 {
    let real = real!(WsaRecvFrom);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe {
            real(
                s, bufs, count, received, flags, from, fromlen, overlapped, completion,
            )
        };
    };
    // SAFETY: fromlen is NULL or points at an int (Winsock requires it).
    let cap = unsafe { read_len(fromlen) };
    // SAFETY: forwarded unchanged.
    let r = unsafe {
        real(
            s, bufs, count, received, flags, from, fromlen, overlapped, completion,
        )
    };
    if r == 0 {
        // SAFETY: the receive completed: Winsock wrote the address and its length.
        unsafe { fix_reported_len(st, from, fromlen, cap) };
    }
    r
}
