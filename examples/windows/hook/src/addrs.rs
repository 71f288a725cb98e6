//! Copying addresses in and out of the program's memory, and what the call families share.

use std::ptr;

use ipvirt::{Call, RawError, RawOutcome, Refusal, SockaddrLayout, Stack, read_sockaddr};
use windows_sys::Win32::Networking::WinSock::{
    IPPROTO_IPV6, IPV6_V6ONLY, SO_PROTOCOL_INFOW, SO_TYPE, SOCK_DGRAM, SOCK_STREAM, SOCKET_ERROR,
    SOL_SOCKET, WSAEINVAL, WSAPROTOCOL_INFOW, getsockopt,
};

use crate::config::{State, say};
use crate::pending::{self, Held};
use crate::sys::{Socket, last_error, set_last_error};

/// Winsock's `sockaddr` layout (`AF_INET6` is 23).
pub(crate) const LAYOUT: SockaddrLayout = SockaddrLayout::WINDOWS;
/// The size of a `SOCKADDR_STORAGE`: room for any address the layer handles.
pub(crate) const STORAGE: usize = ipvirt::SOCKADDR_STORAGE_LEN;

/// A private copy of the program's address: as many bytes as its family needs (never more than it
/// said it has), the rest zero, and the length to pass on: the program's, or the size of the copy
/// when the program gave more (Winsock accepts a longer length and reads only what the family
/// needs). `None` when the layer has nothing to do with it (NULL, a length under 2, another
/// family): the call goes through unchanged and Winsock answers as it would.
///
/// # Safety
///
/// `addr` must be NULL or point at `len` readable bytes (what Winsock requires too).
pub(crate) unsafe fn copy_in(addr: *const u8, len: i32) -> Option<([u8; STORAGE], usize)> {
    let len = usize::try_from(len).ok()?;
    if addr.is_null() || len < 2 {
        return None;
    }
    let len = len.min(STORAGE);
    let mut buf = [0u8; STORAGE];
    // SAFETY: len >= 2 and the caller guarantees len readable bytes.
    unsafe { ptr::copy_nonoverlapping(addr, buf.as_mut_ptr(), 2) };
    let family = LAYOUT.family(buf.get(..2)?).ok()?;
    let need = if family == LAYOUT.af_inet() {
        ipvirt::SOCKADDR_IN_LEN
    } else if family == LAYOUT.af_inet6() {
        ipvirt::SOCKADDR_IN6_LEN
    } else {
        return None;
    };
    let n = len.min(need);
    // SAFETY: n <= len readable bytes; buf holds STORAGE >= n bytes.
    unsafe { ptr::copy_nonoverlapping(addr, buf.as_mut_ptr(), n) };
    Some((buf, len))
}

/// Rewrites an address Winsock handed back into a buffer of `cap` bytes, of which it filled
/// `min(cap, actual)`: only those bytes are ever written. `call` names the call for debugging.
///
/// # Safety
///
/// `addr` must be NULL or point at `cap` writable bytes.
pub(crate) unsafe fn fix_reported(st: &State, addr: *mut u8, cap: usize, actual: usize) {
    let n = cap.min(actual).min(STORAGE);
    if addr.is_null() || n < 2 {
        return;
    }
    let mut local = [0u8; STORAGE];
    // SAFETY: Winsock wrote n <= cap bytes at addr.
    unsafe { ptr::copy_nonoverlapping(addr, local.as_mut_ptr(), n) };
    let Some(view) = local.get_mut(..actual.min(STORAGE)) else {
        return;
    };
    let before = st.debug.then(|| read_sockaddr(view, LAYOUT).ok()).flatten();
    if st.rw.raw(LAYOUT).reported(view) == Ok(RawOutcome::Rewritten) {
        if let Some(b) = before {
            say(&format!("ipvirt: {}", st.rw.explain(Call::Reported, b)));
        }
        // SAFETY: n <= cap writable bytes at addr.
        unsafe { ptr::copy_nonoverlapping(local.as_ptr(), addr, n) };
    }
}

/// [`fix_reported`] for the `(addr, *len)` pair of `getsockname`, `getpeername`, `accept`,
/// `recvfrom`: `cap` is the length the program gave, `*len` what Winsock says the address has.
///
/// # Safety
///
/// As [`fix_reported`]; `len` is NULL or points at an `int`.
pub(crate) unsafe fn fix_reported_len(st: &State, addr: *mut u8, len: *const i32, cap: i32) {
    if len.is_null() {
        return;
    }
    // SAFETY: len points at an int (Winsock wrote it).
    let actual = unsafe { *len };
    let (Ok(cap), Ok(actual)) = (usize::try_from(cap), usize::try_from(actual)) else {
        return;
    };
    // SAFETY: the caller's contract.
    unsafe { fix_reported(st, addr, cap, actual) };
}

/// With `IPVIRT_DEBUG`, prints what happened to the address the program gave (`before`, `n`
/// bytes).
pub(crate) fn debug(before: Option<[u8; STORAGE]>, n: usize, st: &State, call: Call) {
    if let Some(b) = before
        && let Ok(a) = read_sockaddr(b.get(..n).unwrap_or(&[]), LAYOUT)
    {
        say(&format!("ipvirt: {}", st.rw.explain(call, a)));
    }
}

/// Fails a call the policy refuses: `SOCKET_ERROR` with the refusal's Winsock code
/// (`WSAEADDRNOTAVAIL`, `WSAECONNREFUSED`, `WSAEACCES`).
pub(crate) fn fail_with(r: Refusal) -> i32 {
    set_last_error(r.wsa_error());
    SOCKET_ERROR
}

/// Whether `s` is bound: `getsockname` (the real one) fails with `WSAEINVAL` on an unbound socket.
pub(crate) fn is_bound(s: Socket) -> bool {
    let mut buf = [0u8; STORAGE];
    let mut len = STORAGE as i32;
    let saved = last_error();
    let getsockname = real!(GetSockName);
    // SAFETY: buf holds len bytes.
    let r = unsafe { getsockname(s, buf.as_mut_ptr(), &mut len) };
    set_last_error(saved);
    r == 0
}

/// The implicit source bind before a connect or send: binds `s` to `source` unless it is bound.
/// `Ok(true)`: the layer bound it. `Err(code)`: the bind failed with that Winsock error.
pub(crate) fn bind_source(s: Socket, source: &[u8]) -> Result<bool, i32> {
    if is_bound(s) {
        return Ok(false);
    }
    let bind = real!(Bind);
    let len = i32::try_from(source.len()).unwrap_or(0);
    // SAFETY: source holds a complete sockaddr of its length.
    let r = unsafe { bind(s, source.as_ptr(), len) };
    if r != 0 {
        let e = last_error();
        // WSAEINVAL: bound meanwhile (another thread): carry on as the program asked.
        return if e == WSAEINVAL { Ok(false) } else { Err(e) };
    }
    Ok(true)
}

/// The destination of a connect or send, decided: `Ok(Some((copy, len)))` to use the rewritten
/// copy and that length,
/// `Ok(None)` to pass the program's own address, `Err(code)` to fail with `SOCKET_ERROR` and that
/// Winsock code. Binds the source first, on an unbound socket, when ipvirt says so: before a
/// connect, and before a send on a datagram socket (`send`: a `sendto` on a stream socket ignores
/// its address).
///
/// # Safety
///
/// `addr` is NULL or points at `len` readable bytes.
pub(crate) unsafe fn destination(
    st: &State,
    s: Socket,
    addr: *const u8,
    len: i32,
    call: Call,
    send: bool,
) -> Result<Option<([u8; STORAGE], i32)>, i32> {
    // A wildcard bind the layer held back (see `pending`): a connect makes it now.
    let held = if send { None } else { pending::take(s) };
    // SAFETY: the caller's contract.
    let Some((mut buf, n)) = (unsafe { copy_in(addr, len) }) else {
        held.map_or(Ok(()), |h| bind_held(s, &h))?;
        return Ok(None);
    };
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    let mut src = [0u8; STORAGE];
    match st.rw.raw(LAYOUT).connect(view, &mut src) {
        Ok(raw) => {
            let changed = raw.dest == RawOutcome::Rewritten;
            match (raw.source_len, held) {
                // The source the connect's rules choose, as on an unbound socket.
                (Some(sl), _) if !send || socket_type(s) == Some(SOCK_DGRAM) => {
                    bind_source(s, src.get(..sl).unwrap_or(&[]))?;
                }
                // No source chosen: the program's own wildcard bind.
                (_, Some(h)) => bind_held(s, &h)?,
                _ => {}
            }
            if changed || raw.source_len.is_some() {
                debug(before, n, st, call);
            }
            Ok(changed.then_some((buf, i32::try_from(n).unwrap_or(len))))
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, call);
            // Refused before anything happened: the socket stays as the program left it.
            if let Some(h) = held {
                pending::hold(s, h);
            }
            Err(r.wsa_error())
        }
        // A short buffer: Winsock refuses it itself.
        Err(RawError::Sockaddr(_)) => {
            held.map_or(Ok(()), |h| bind_held(s, &h))?;
            Ok(None)
        }
    }
}

/// Makes a held-back wildcard bind as the program asked it (the address unchanged: a connect
/// chose no source). `Err(code)`: the bind failed with that Winsock error.
pub(crate) fn bind_held(s: Socket, held: &Held) -> Result<(), i32> {
    let bind = real!(Bind);
    let len = i32::try_from(held.len).unwrap_or(0);
    // SAFETY: held holds a complete sockaddr of its length.
    if unsafe { bind(s, held.addr.as_ptr(), len) } == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// Whether the `bind` of `view` (the program's address) on `s` is one the layer holds back (see
/// `pending`): the wildcard with port 0, of the socket's own family, on an unbound stream socket.
pub(crate) fn holds_back(s: Socket, view: &[u8]) -> Option<Held> {
    let addr = read_sockaddr(view, LAYOUT).ok()?;
    if !addr.ip().is_unspecified() || addr.port() != 0 {
        return None;
    }
    let len = if addr.is_ipv4() {
        ipvirt::SOCKADDR_IN_LEN
    } else {
        ipvirt::SOCKADDR_IN6_LEN
    };
    let family = LAYOUT.family(view).ok()?;
    let info = protocol_info(s)?;
    if info.iSocketType != SOCK_STREAM || info.iAddressFamily != i32::from(family) || is_bound(s) {
        return None;
    }
    let mut held = Held {
        addr: [0; STORAGE],
        len,
    };
    held.addr.get_mut(..len)?.copy_from_slice(view.get(..len)?);
    Some(held)
}

/// The socket's `SO_PROTOCOL_INFOW` (its family and type), or `None` when it cannot be read.
/// The program's last error is kept.
fn protocol_info(s: Socket) -> Option<WSAPROTOCOL_INFOW> {
    // SAFETY: a zeroed WSAPROTOCOL_INFOW is a valid value (integers and arrays).
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<WSAPROTOCOL_INFOW>() as i32;
    let saved = last_error();
    // SAFETY: info holds len bytes.
    let r = unsafe {
        getsockopt(
            s,
            SOL_SOCKET,
            SO_PROTOCOL_INFOW,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    set_last_error(saved);
    (r == 0).then_some(info)
}

/// `getsockopt(level, name)` as an `int`, or `None` when it fails. The program's last error is
/// kept.
fn int_option(s: Socket, level: i32, name: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    let saved = last_error();
    // SAFETY: v holds len bytes.
    let r = unsafe { getsockopt(s, level, name, (&raw mut v).cast(), &mut len) };
    set_last_error(saved);
    (r == 0).then_some(v)
}

/// The socket's type (`SOCK_STREAM`, `SOCK_DGRAM`, …).
pub(crate) fn socket_type(s: Socket) -> Option<i32> {
    int_option(s, SOL_SOCKET, SO_TYPE)
}

/// Whether a bind of the address in `view` on `s` is a dual-stack one: an `AF_INET6` socket with
/// `IPV6_V6ONLY` off (Windows turns it on by default).
pub(crate) fn stack_of(s: Socket, view: &[u8]) -> Stack {
    let v6 = LAYOUT.family(view).is_ok_and(|f| f == LAYOUT.af_inet6());
    if v6 && int_option(s, IPPROTO_IPV6, IPV6_V6ONLY) == Some(0) {
        Stack::Dual
    } else {
        Stack::Single
    }
}

/// The `int` at `len`, or 0 for NULL.
///
/// # Safety
///
/// `len` is NULL or points at an `int`.
pub(crate) unsafe fn read_len(len: *const i32) -> i32 {
    if len.is_null() {
        0
    } else {
        // SAFETY: the caller's contract.
        unsafe { *len }
    }
}
