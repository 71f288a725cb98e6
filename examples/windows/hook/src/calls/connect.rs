//! `bind`, `listen`, `connect`, `WSAConnect`, `closesocket`.

use std::ffi::c_void;

use ipvirt::{Call, RawError, RawOutcome, Stack};
use windows_sys::Win32::Networking::WinSock::{SOCKET_ERROR, WSAEINVAL};

use crate::addrs::{
    LAYOUT, STORAGE, bind_held, copy_in, debug, destination, fail_with, holds_back, stack_of,
};
use crate::config::{State, say, state};
use crate::pending;
use crate::sys::{Depth, Socket, set_last_error};

/// `bind` with the address ipvirt says; a wildcard bind with port 0 of a stream socket is held
/// back until the socket is used (see [`crate::pending`]).
///
/// # Safety
///
/// As Winsock's `bind`: `name` is NULL or points at `namelen` readable bytes.
pub(crate) unsafe extern "system" fn bind(s: Socket, name: *const u8, namelen: i32) -> i32 {
    let real = real!(Bind);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen) };
    };
    // SAFETY: the caller's contract is bind's.
    let Some((buf, n)) = (unsafe { copy_in(name, namelen) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen) };
    };
    if pending::peek(s).is_some() {
        // Bound already, as far as the program knows.
        set_last_error(WSAEINVAL);
        return SOCKET_ERROR;
    }
    if let Some(held) = holds_back(s, buf.get(..n).unwrap_or_default()) {
        pending::hold(s, held);
        if st.debug {
            say("ipvirt: bind of the wildcard with port 0 held back until the socket is used");
        }
        return 0;
    }
    match bind_as_asked(st, s, buf, n) {
        Some(r) => r,
        // SAFETY: forwarded unchanged.
        None => unsafe { real(s, name, namelen) },
    }
}

/// The bind of `buf` (`n` bytes, the program's address) on `s` with the address ipvirt says:
/// `Some(result)` of the rewritten bind or the refusal, `None` when the address stays as it is
/// (the caller makes that bind).
fn bind_as_asked(st: &State, s: Socket, mut buf: [u8; STORAGE], n: usize) -> Option<i32> {
    let real = real!(Bind);
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    let stack = stack_of(s, view);
    let call = if stack == Stack::Dual {
        Call::BindDualStack
    } else {
        Call::Bind
    };
    match st.rw.raw(LAYOUT).bind_on(view, stack) {
        Ok(RawOutcome::Rewritten) => {
            debug(before, n, st, call);
            // SAFETY: buf holds n bytes (the program's length, at most the copy's size): the
            // program's address with the new IP.
            Some(unsafe { real(s, buf.as_ptr(), n as i32) })
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, call);
            Some(fail_with(r))
        }
        _ => None,
    }
}

/// `listen`: a held-back wildcard bind is made first, with the bind rules (a server on the
/// wildcard gets the VIP).
///
/// # Safety
///
/// As Winsock's `listen`.
pub(crate) unsafe extern "system" fn listen(s: Socket, backlog: i32) -> i32 {
    let real = real!(Listen);
    let depth = Depth::enter();
    if depth.outermost()
        && let Some(st) = state()
    {
        let r = bind_now(st, s);
        if r != 0 {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { real(s, backlog) }
}

/// Makes the held-back bind of `s`, if any, with the bind rules (the wildcard becomes the VIP):
/// the socket is used as a server, or the program asks for its name. 0, or `SOCKET_ERROR` with
/// the bind's error.
pub(crate) fn bind_now(st: &State, s: Socket) -> i32 {
    let Some(held) = pending::take(s) else {
        return 0;
    };
    match bind_as_asked(st, s, held.addr, held.len) {
        Some(r) => r,
        None => match bind_held(s, &held) {
            Ok(()) => 0,
            Err(code) => {
                set_last_error(code);
                SOCKET_ERROR
            }
        },
    }
}

/// `closesocket`: a held-back bind of the socket is forgotten (its handle value will be reused).
///
/// # Safety
///
/// As Winsock's `closesocket`.
pub(crate) unsafe extern "system" fn closesocket(s: Socket) -> i32 {
    let real = real!(CloseSocket);
    let _ = pending::take(s);
    // SAFETY: forwarded unchanged.
    unsafe { real(s) }
}

/// `connect` to the destination ipvirt says, from the source it says on an unbound socket.
///
/// # Safety
///
/// As Winsock's `connect`.
pub(crate) unsafe extern "system" fn connect(s: Socket, name: *const u8, namelen: i32) -> i32 {
    let real = real!(Connect);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen) };
    };
    // SAFETY: the caller's contract is connect's.
    match unsafe { destination(st, s, name, namelen, Call::Connect, false) } {
        // SAFETY: the rewritten copy holds n bytes.
        Ok(Some((buf, n))) => unsafe { real(s, buf.as_ptr(), n) },
        // SAFETY: forwarded unchanged.
        Ok(None) => unsafe { real(s, name, namelen) },
        Err(code) => {
            set_last_error(code);
            SOCKET_ERROR
        }
    }
}

/// `WSAConnect`: as [`connect`]; the connect data and QoS pass through.
///
/// # Safety
///
/// As Winsock's `WSAConnect`.
pub(crate) unsafe extern "system" fn wsa_connect(
    s: Socket,
    name: *const u8,
    namelen: i32,
    caller_data: *const c_void,
    callee_data: *mut c_void,
    sqos: *const c_void,
    gqos: *const c_void,
) -> i32 {
    let real = real!(WsaConnect);
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen, caller_data, callee_data, sqos, gqos) };
    };
    // SAFETY: the caller's contract is WSAConnect's.
    match unsafe { destination(st, s, name, namelen, Call::Connect, false) } {
        // SAFETY: the rewritten copy holds n bytes; the rest is forwarded unchanged.
        Ok(Some((buf, n))) => unsafe {
            real(s, buf.as_ptr(), n, caller_data, callee_data, sqos, gqos)
        },
        // SAFETY: forwarded unchanged.
        Ok(None) => unsafe { real(s, name, namelen, caller_data, callee_data, sqos, gqos) },
        Err(code) => {
            set_last_error(code);
            SOCKET_ERROR
        }
    }
}
