//! The Winsock extension functions: `ConnectEx` (destination and implicit source, as `connect`),
//! which programs obtain with `WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)` only, and
//! `GetAcceptExSockaddrs` (the addresses an `AcceptEx` received, as `accept` reports them), which
//! they obtain that way or call as `mswsock.dll`'s export (Go's `syscall` package does).
//!
//! The `WSAIoctl` hook hands the program a wrapper instead of the provider's function and keeps the
//! provider's pointer for the wrapper to call; `mswsock.dll`'s `GetAcceptExSockaddrs` is detoured
//! (the hook table). `AcceptEx` needs neither, from `WSAIoctl` or from mswsock: it takes no
//! address, and the two it writes are in the provider's own format, which programs read with
//! `GetAcceptExSockaddrs`. `TransmitFile` takes and reports no address.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipvirt::Call;
use windows_sys::Win32::Networking::WinSock::{
    SIO_GET_EXTENSION_FUNCTION_POINTER, WSAID_CONNECTEX, WSAID_GETACCEPTEXSOCKADDRS,
};
use windows_sys::core::GUID;

use crate::addrs::{destination, fix_reported};
use crate::config::state;
use crate::hooks::GetAcceptExSockaddrs;
use crate::sys::{Depth, Socket, set_last_error};

/// `ConnectEx` of the provider (0 until a program asked for it).
static REAL_CONNECTEX: AtomicUsize = AtomicUsize::new(0);
/// `GetAcceptExSockaddrs` of the provider (0 until a program asked for it).
static REAL_GETACCEPTEXSOCKADDRS: AtomicUsize = AtomicUsize::new(0);

pub(crate) type ConnectExFn = unsafe extern "system" fn(
    Socket,
    *const u8,
    i32,
    *const c_void,
    u32,
    *mut u32,
    *mut c_void,
) -> i32;

fn same(a: &GUID, b: &GUID) -> bool {
    (a.data1, a.data2, a.data3, a.data4) == (b.data1, b.data2, b.data3, b.data4)
}

/// Keeps the provider's function `real` in `slot` and returns the wrapper to hand out instead, or
/// `None` when another provider's function is already wrapped (that one is handed out unwrapped:
/// one provider, the TCP/IP one, serves IPv4 and IPv6).
fn wrap(slot: &AtomicUsize, real: usize, wrapper: usize) -> Option<usize> {
    match slot.compare_exchange(0, real, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(wrapper),
        Err(old) if old == real => Some(wrapper),
        Err(_) => None,
    }
}

/// `WSAIoctl`: for `SIO_GET_EXTENSION_FUNCTION_POINTER` of `ConnectEx` or
/// `GetAcceptExSockaddrs`, the wrapper instead of the provider's function; every other control
/// passes through.
///
/// # Safety
///
/// As Winsock's `WSAIoctl`.
pub(crate) unsafe extern "system" fn wsa_ioctl(
    s: Socket,
    code: u32,
    inbuf: *const c_void,
    inlen: u32,
    outbuf: *mut c_void,
    outlen: u32,
    returned: *mut u32,
    overlapped: *mut c_void,
    completion: *const c_void,
) -> i32 {
    let real = real!(WsaIoctl);
    let depth = Depth::enter();
    // SAFETY: forwarded unchanged.
    let r = unsafe {
        real(
            s, code, inbuf, inlen, outbuf, outlen, returned, overlapped, completion,
        )
    };
    if r != 0
        || code != SIO_GET_EXTENSION_FUNCTION_POINTER
        || !depth.outermost()
        || state().is_none()
        || inbuf.is_null()
        || outbuf.is_null()
        || (inlen as usize) < std::mem::size_of::<GUID>()
        || (outlen as usize) < std::mem::size_of::<usize>()
    {
        return r;
    }
    // SAFETY: inbuf holds a GUID (inlen checked); it may be unaligned.
    let guid = unsafe { inbuf.cast::<GUID>().read_unaligned() };
    // SAFETY: outbuf holds a pointer (outlen checked), written by the provider.
    let provided = unsafe { outbuf.cast::<usize>().read_unaligned() };
    let wrapper = if same(&guid, &WSAID_CONNECTEX) {
        wrap(
            &REAL_CONNECTEX,
            provided,
            connect_ex as ConnectExFn as usize,
        )
    } else if same(&guid, &WSAID_GETACCEPTEXSOCKADDRS) {
        wrap(
            &REAL_GETACCEPTEXSOCKADDRS,
            provided,
            provided_get_accept_ex_sockaddrs as GetAcceptExSockaddrs as usize,
        )
    } else {
        None
    };
    if let Some(w) = wrapper.filter(|_| provided != 0) {
        // SAFETY: as above.
        unsafe { outbuf.cast::<usize>().write_unaligned(w) };
    }
    r
}

/// `ConnectEx`: the destination and implicit source as [`connect`](super::connect::connect)
/// (ConnectEx needs a bound socket, so the source is the one the program bound, through the
/// `bind` hook).
///
/// # Safety
///
/// As Winsock's `ConnectEx`.
pub(crate) unsafe extern "system" fn connect_ex(
    s: Socket,
    name: *const u8,
    namelen: i32,
    send: *const c_void,
    sendlen: u32,
    sent: *mut u32,
    overlapped: *mut c_void,
) -> i32 {
    let p = REAL_CONNECTEX.load(Ordering::Acquire);
    // SAFETY: the wrapper is handed out only after the provider's ConnectEx was stored.
    let real = unsafe { std::mem::transmute::<usize, ConnectExFn>(p) };
    let depth = Depth::enter();
    let Some(st) = state().filter(|_| depth.outermost()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(s, name, namelen, send, sendlen, sent, overlapped) };
    };
    // SAFETY: the caller's contract is ConnectEx's.
    match unsafe { destination(st, s, name, namelen, Call::Connect, false) } {
        // SAFETY: the rewritten copy holds n bytes (the provider copies the address before
        // an overlapped ConnectEx returns).
        Ok(Some((buf, n))) => unsafe { real(s, buf.as_ptr(), n, send, sendlen, sent, overlapped) },
        // SAFETY: forwarded unchanged.
        Ok(None) => unsafe { real(s, name, namelen, send, sendlen, sent, overlapped) },
        Err(code) => {
            set_last_error(code);
            0
        }
    }
}

/// `GetAcceptExSockaddrs` as `WSAIoctl` handed it out: [`accept_ex_addrs`] of the provider's.
///
/// # Safety
///
/// As Winsock's `GetAcceptExSockaddrs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn provided_get_accept_ex_sockaddrs(
    buf: *const c_void,
    datalen: u32,
    locallen: u32,
    remotelen: u32,
    local: *mut *mut u8,
    local_len: *mut i32,
    remote: *mut *mut u8,
    remote_len: *mut i32,
) {
    let p = REAL_GETACCEPTEXSOCKADDRS.load(Ordering::Acquire);
    // SAFETY: the wrapper is handed out only after the provider's function was stored.
    let real = unsafe { std::mem::transmute::<usize, GetAcceptExSockaddrs>(p) };
    // SAFETY: the caller's contract.
    unsafe {
        accept_ex_addrs(
            real, buf, datalen, locallen, remotelen, local, local_len, remote, remote_len,
        )
    }
}

/// `mswsock.dll`'s `GetAcceptExSockaddrs` (detoured): [`accept_ex_addrs`] of the original.
///
/// # Safety
///
/// As Winsock's `GetAcceptExSockaddrs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn get_accept_ex_sockaddrs(
    buf: *const c_void,
    datalen: u32,
    locallen: u32,
    remotelen: u32,
    local: *mut *mut u8,
    local_len: *mut i32,
    remote: *mut *mut u8,
    remote_len: *mut i32,
) {
    let real = real!(GetAcceptExSockaddrs);
    // SAFETY: the caller's contract.
    unsafe {
        accept_ex_addrs(
            real, buf, datalen, locallen, remotelen, local, local_len, remote, remote_len,
        )
    }
}

/// Calls `real` and reports the local and remote addresses of an `AcceptEx` as `accept` reports
/// them. Under Wine, mswsock's function asks `WSAIoctl` for the provider's: the depth guard lets
/// only the outer of the two rewrite.
///
/// # Safety
///
/// As Winsock's `GetAcceptExSockaddrs`.
#[allow(clippy::too_many_arguments)]
unsafe fn accept_ex_addrs(
    real: GetAcceptExSockaddrs,
    buf: *const c_void,
    datalen: u32,
    locallen: u32,
    remotelen: u32,
    local: *mut *mut u8,
    local_len: *mut i32,
    remote: *mut *mut u8,
    remote_len: *mut i32,
) {
    let depth = Depth::enter();
    // SAFETY: forwarded unchanged.
    unsafe {
        real(
            buf, datalen, locallen, remotelen, local, local_len, remote, remote_len,
        )
    };
    let Some(st) = state().filter(|_| depth.outermost()) else {
        return;
    };
    for (addr, len) in [(local, local_len), (remote, remote_len)] {
        if addr.is_null() || len.is_null() {
            continue;
        }
        // SAFETY: the provider set *addr to an address of *len bytes inside the program's buffer.
        let (a, n) = unsafe { (*addr, *len) };
        if let Ok(n) = usize::try_from(n) {
            // SAFETY: as above.
            unsafe { fix_reported(st, a, n, n) };
        }
    }
}
