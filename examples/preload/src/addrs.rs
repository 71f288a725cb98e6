//! Copying addresses in and out of the program's memory, and the calls every family shares.

use std::ffi::c_int;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use ipvirt::{Call, RawOutcome, Refusal, SockaddrLayout, read_sockaddr, write_sockaddr};
use libc::{sockaddr, socklen_t};

use crate::config::State;
use crate::diag::say;
use crate::fds::{
    IMPLICIT, LAYER_ADDR, defer_port, flag, has, is_bound, mark_bound, set_no_port, socket_domain,
    socket_type,
};
use crate::sys::{errno, real_bind, set_errno};

/// The layout of socket addresses on this platform.
pub(crate) const LAYOUT: SockaddrLayout = SockaddrLayout::LINUX;
/// The largest socket address (`sizeof(struct sockaddr_storage)`).
pub(crate) const STORAGE: usize = ipvirt::SOCKADDR_STORAGE_LEN;

/// A private copy of the program's address: as many bytes as its family needs (never more than it
/// said it has), the rest zero. `None` when the layer has nothing to do with it.
///
/// # Safety
///
/// `addr` must be NULL or point at `len` readable bytes (what the kernel requires too).
pub(crate) unsafe fn copy_in(
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<([u8; STORAGE], usize)> {
    let len = len as usize;
    if addr.is_null() || !(2..=STORAGE).contains(&len) {
        return None;
    }
    let mut buf = [0u8; STORAGE];
    // SAFETY: len >= 2 and the caller guarantees len readable bytes.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), buf.as_mut_ptr(), 2) };
    let family = LAYOUT.family(buf.get(..2)?).ok()?;
    let need = if family == LAYOUT.af_inet() {
        16
    } else if family == LAYOUT.af_inet6() {
        28
    } else {
        return None;
    };
    let n = len.min(need);
    // SAFETY: n <= len readable bytes; buf holds STORAGE >= n bytes.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), buf.as_mut_ptr(), n) };
    Some((buf, len))
}

/// As [`copy_in`], for the destination of a send. An `AF_UNSPEC` address on an `AF_INET` socket,
/// which Linux's UDP and raw sends read as IPv4 (SPEC §12: no family trick passes unchecked), is
/// copied as the `AF_INET` address it is, so that it is decided as one; the kernel treats the two
/// alike, so the copy may go to the kernel in its place.
///
/// # Safety
///
/// As [`copy_in`].
pub(crate) unsafe fn copy_in_send(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<([u8; STORAGE], usize)> {
    // SAFETY: the caller's contract.
    if let Some(copy) = unsafe { copy_in(addr, len) } {
        return Some(copy);
    }
    let n = len as usize;
    const INET: usize = std::mem::size_of::<libc::sockaddr_in>();
    if addr.is_null() || !(INET..=STORAGE).contains(&n) {
        return None;
    }
    let mut buf = [0u8; STORAGE];
    // SAFETY: n >= INET and the caller guarantees n readable bytes.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), buf.as_mut_ptr(), INET) };
    if LAYOUT.family(buf.get(..2)?).ok()? != libc::AF_UNSPEC as u16
        || socket_domain(fd) != Some(libc::AF_INET)
    {
        return None;
    }
    // Linux's `sa_family_t` is the first two bytes, in native order (the only layout this layer
    // runs on).
    buf.get_mut(..2)?
        .copy_from_slice(&LAYOUT.af_inet().to_ne_bytes());
    Some((buf, n))
}

/// Rewrites an address the kernel handed back into a buffer of `cap` bytes, of which it filled
/// `min(cap, actual)`; only those bytes are ever written.
///
/// # Safety
///
/// `addr` must point at `cap` writable bytes.
pub(crate) unsafe fn fix_reported(
    st: &State,
    fd: c_int,
    addr: *mut sockaddr,
    cap: socklen_t,
    actual: socklen_t,
    own_name: bool,
) {
    let (cap, actual) = (cap as usize, actual as usize);
    let n = cap.min(actual).min(STORAGE);
    if addr.is_null() || n < 2 {
        return;
    }
    let mut local = [0u8; STORAGE];
    // SAFETY: the kernel wrote n <= cap bytes at addr.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), local.as_mut_ptr(), n) };
    let full = actual.min(STORAGE);
    let Some(view) = local.get_mut(..full) else {
        return;
    };
    let changed = if own_name && has(&IMPLICIT, fd) {
        // The layer bound this unconnected datagram socket implicitly: report what the kernel's
        // own implicit bind gives, the unspecified address (same port).
        match read_sockaddr(view, LAYOUT) {
            Ok(a) => {
                let any = match a {
                    SocketAddr::V4(v4) => {
                        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, v4.port()))
                    }
                    SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(
                        Ipv6Addr::UNSPECIFIED,
                        v6.port(),
                        v6.flowinfo(),
                        v6.scope_id(),
                    )),
                };
                // ipvirt's sockaddr layer writes the whole structure: no offsets here.
                write_sockaddr(any, view, LAYOUT).is_ok()
            }
            Err(_) => false,
        }
    } else {
        let before = st.debug.then(|| read_sockaddr(view, LAYOUT).ok()).flatten();
        let changed = st.rw.raw(LAYOUT).reported(view) == Ok(RawOutcome::Rewritten);
        if changed && let Some(b) = before {
            say(format_args!(
                "ipvirt: {}\n",
                st.rw.explain(Call::Reported, b)
            ));
        }
        changed
    };
    if changed {
        // SAFETY: n <= cap writable bytes at addr.
        unsafe { ptr::copy_nonoverlapping(local.as_ptr(), addr.cast::<u8>(), n) };
    }
}

/// With `IPVIRT_DEBUG`, prints what happened to the address the program gave (`before`, `n` bytes).
pub(crate) fn debug(before: Option<[u8; STORAGE]>, n: usize, st: &State, call: Call) {
    if let Some(b) = before
        && let Ok(a) = read_sockaddr(b.get(..n).unwrap_or(&[]), LAYOUT)
    {
        say(format_args!("ipvirt: {}\n", st.rw.explain(call, a)));
    }
}

/// Fails a call the policy refuses, with the refusal's errno (ipvirt's one table: "no
/// connectivity" `EADDRNOTAVAIL`; isolation `ECONNREFUSED` for a connect or send, `EACCES` for a
/// bind).
pub(crate) fn fail_with(r: Refusal) -> c_int {
    crate::report::refused(&r);
    set_errno(r.errno());
    -1
}

/// Whether the address in `view` is `[::1]`.
pub(crate) fn is_ipv6_loopback(view: &[u8]) -> bool {
    read_sockaddr(view, LAYOUT).is_ok_and(|a| a.ip() == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
}

/// Whether the address in `view` is `[::]`, which a `connect` or send reaches as `[::1]`.
pub(crate) fn is_ipv6_unspecified(view: &[u8]) -> bool {
    read_sockaddr(view, LAYOUT).is_ok_and(|a| a.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// Turns `IPV6_V6ONLY` off on `fd`; whether it worked.
pub(crate) fn clear_v6only(fd: c_int) -> bool {
    let off: c_int = 0;
    // SAFETY: setsockopt reads an int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const off).cast(),
            std::mem::size_of::<c_int>() as socklen_t,
        ) == 0
    }
}

/// The implicit source bind before a connect (`for_connect`) or send: `Ok(true)` if the layer
/// bound the socket. Before a connect, the bind takes the address only (`defer_port`).
pub(crate) fn bind_source(fd: c_int, source: &[u8], for_connect: bool) -> Result<bool, c_int> {
    if is_bound(fd) {
        return Ok(false);
    }
    if !for_connect && socket_type(fd) == Some(libc::SOCK_STREAM) {
        return Ok(false);
    }
    let Some(bind) = real_bind() else {
        return Err(libc::ENOSYS);
    };
    let restore = for_connect && defer_port(fd);
    // SAFETY: source holds a complete sockaddr of its length.
    let r = unsafe { bind(fd, source.as_ptr().cast(), source.len() as socklen_t) };
    let e = errno();
    if restore {
        // The option matters at bind time only: the port stays unchosen until connect.
        set_no_port(fd, 0);
    }
    if r != 0 {
        // EINVAL: it was bound after all (another thread): carry on as the program asked.
        return if e == libc::EINVAL { Ok(false) } else { Err(e) };
    }
    mark_bound(fd);
    if for_connect && socket_type(fd) == Some(libc::SOCK_DGRAM) {
        flag(&LAYER_ADDR, fd, true);
    }
    Ok(true)
}
