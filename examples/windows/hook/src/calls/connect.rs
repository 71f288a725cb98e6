//! `bind`, `connect`, `WSAConnect`.

use std::ffi::c_void;

use ipvirt::{Call, RawError, RawOutcome, Stack};
use windows_sys::Win32::Networking::WinSock::SOCKET_ERROR;

use crate::addrs::{LAYOUT, copy_in, debug, destination, fail_with, stack_of};
use crate::config::state;
use crate::sys::{Depth, Socket, set_last_error};

/// `bind` with the address ipvirt says.
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
    let Some((mut buf, n)) = (unsafe { copy_in(name, namelen) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen) };
    };
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
            unsafe { real(s, buf.as_ptr(), n as i32) }
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, call);
            fail_with(r)
        }
        // SAFETY: forwarded unchanged.
        _ => unsafe { real(s, name, namelen) },
    }
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
