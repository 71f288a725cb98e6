//! `bind` and `connect`.

use std::ffi::c_int;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ipvirt::{Call, RawError, RawOutcome, Stack, write_sockaddr};
use libc::{sockaddr, socklen_t};

use crate::addrs::{
    LAYOUT, STORAGE, bind_source, clear_v6only, copy_in, debug, fail_with, is_ipv6_loopback,
    is_ipv6_unspecified,
};
use crate::config::state;
use crate::fds::{
    FRESH, IMPLICIT, LAYER_ADDR, defer_port, flag, has, is_bound, local_port, mark_bound,
    set_no_port, socket_domain, stack_of,
};
use crate::sys::{BindFn, errno, real_bind, set_errno};

/// Whether `addr` is an `AF_UNSPEC` address: a `connect` that dissolves the association.
///
/// # Safety
///
/// `addr` is NULL or has `len` readable bytes.
unsafe fn is_unspec(addr: *const sockaddr, len: socklen_t) -> bool {
    if addr.is_null() || (len as usize) < 2 {
        return false;
    }
    let mut family = [0u8; 2];
    // SAFETY: two readable bytes (caller).
    unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), family.as_mut_ptr(), 2) };
    LAYOUT.family(&family).ok() == Some(libc::AF_UNSPEC as u16)
}

/// After `connect(AF_UNSPEC)` on a datagram socket whose address the layer bound before a
/// connect: the kernel keeps a bound address on disconnect (the bind locked it), where the address
/// it had chosen itself would have been reset. The layer puts the socket back to no address
/// (a bind of the unspecified address with `IP_BIND_ADDRESS_NO_PORT`, which takes no port), so the
/// program sees `0.0.0.0:0` and can send anywhere, as natively. A socket that kept its port (it
/// was bound by the program after all) is left as it is.
fn unbind(fd: c_int) {
    flag(&IMPLICIT, fd, false);
    if local_port(fd) != 0 {
        return;
    }
    let any = match socket_domain(fd) {
        Some(libc::AF_INET) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        Some(libc::AF_INET6) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
        _ => return,
    };
    let mut buf = [0u8; STORAGE];
    let (Ok(n), Some(bind)) = (write_sockaddr(any, &mut buf, LAYOUT), real_bind()) else {
        return;
    };
    let restore = defer_port(fd);
    // SAFETY: buf holds a complete sockaddr of n bytes.
    unsafe { bind(fd, buf.as_ptr().cast(), n as socklen_t) };
    if restore {
        set_no_port(fd, 0);
    }
}

/// `bind(2)` with the address ipvirt says.
///
/// # Safety
///
/// As `bind(2)`: `addr` is NULL or points at `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(bind: BindFn, -1);
    let saved = errno();
    let Some(st) = state() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: the caller's contract is bind's.
    let Some((mut buf, n)) = (unsafe { copy_in(addr, len) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    let mut stack = stack_of(fd, view);
    if stack == Stack::Single && st.rw.maps_ipv6_loopback() && is_ipv6_loopback(view) {
        // SPEC §8: `::1` is mapped to the session's IPv4-mapped loopback, which a v6-only socket
        // cannot bind: take the option off first (the socket then serves that one address).
        if clear_v6only(fd) {
            stack = Stack::Dual;
        }
    }
    set_errno(saved);
    let call = if stack == Stack::Dual {
        Call::BindDualStack
    } else {
        Call::Bind
    };
    let r = match st.rw.raw(LAYOUT).bind_on(view, stack) {
        Ok(RawOutcome::Rewritten) => {
            debug(before, n, st, call);
            // SAFETY: buf holds len bytes (n == len): the program's address with the new IP.
            unsafe { real(fd, buf.as_ptr().cast(), len) }
        }
        Ok(RawOutcome::Unchanged | RawOutcome::OtherFamily) => {
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, call);
            return fail_with(r);
        }
        Err(_) => {
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
    };
    if r == 0 {
        mark_bound(fd);
        // The program chose the address: it is no longer the layer's to undo.
        flag(&LAYER_ADDR, fd, false);
    }
    r
}

/// `connect(2)` to the destination ipvirt says, from the source it says on an unbound socket.
///
/// # Safety
///
/// As `connect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(connect: unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int, -1);
    let saved = errno();
    let Some(st) = state() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: connect's contract: addr is NULL or has len readable bytes.
    if has(&LAYER_ADDR, fd) && unsafe { is_unspec(addr, len) } {
        // SAFETY: forwarded unchanged.
        let r = unsafe { real(fd, addr, len) };
        if r == 0 {
            unbind(fd);
            set_errno(saved);
        }
        return r;
    }
    // SAFETY: the caller's contract is connect's.
    let Some((mut buf, n)) = (unsafe { copy_in(addr, len) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    if st.rw.maps_ipv6_loopback()
        && (is_ipv6_loopback(view) || is_ipv6_unspecified(view))
        && !is_bound(fd)
    {
        // SPEC §8: the mapped destination is IPv4-mapped; an unbound v6-only socket takes the
        // option off first (a bound one was bound by the program, which chose it). `::` is
        // `::1` as a destination (SPEC §12).
        clear_v6only(fd);
    }
    let mut src = [0u8; STORAGE];
    match st.rw.raw(LAYOUT).connect(view, &mut src) {
        Ok(raw) => {
            let dest_changed = raw.dest == RawOutcome::Rewritten;
            if let Some(sl) = raw.source_len
                && let Err(e) = bind_source(fd, src.get(..sl).unwrap_or(&[]), true)
            {
                set_errno(e);
                return -1;
            }
            flag(&IMPLICIT, fd, false);
            // The kernel binds a socket when it connects it.
            flag(&FRESH, fd, false);
            if dest_changed || raw.source_len.is_some() {
                debug(before, n, st, Call::Connect);
            }
            set_errno(saved);
            let ptr = if dest_changed {
                buf.as_ptr().cast()
            } else {
                addr
            };
            // SAFETY: ptr is the program's address or our complete copy of len bytes.
            unsafe { real(fd, ptr, len) }
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, Call::Connect);
            fail_with(r)
        }
        Err(_) => {
            set_errno(saved);
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
    }
}
