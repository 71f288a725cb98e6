//! What the layer knows about descriptor numbers, and the socket options it reads or sets.

use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicU64, Ordering};

use ipvirt::{Stack, read_sockaddr};
use libc::socklen_t;

use crate::addrs::{LAYOUT, STORAGE};
use crate::sys::real_getsockname;

pub(crate) const TRACKED: usize = 65_536;
/// Sockets the layer saw created (by `socket`) and not bound since: known unbound without asking.
/// Whether any other socket is bound is asked of the kernel (`getsockname`) each time it matters:
/// a descriptor number can change hands in ways the layer does not see (`fclose`, raw system
/// calls, `posix_spawn` file actions), and a wrong "not bound" costs only a failed `bind` (`EINVAL`,
/// which the layer ignores), where a wrong "bound" would leave the socket's source to the kernel.
pub(crate) static FRESH: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];
/// Unconnected datagram sockets the layer bound implicitly: `getsockname` reports the unspecified
/// address for them, as the kernel's own implicit bind would have.
pub(crate) static IMPLICIT: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];
/// Datagram sockets whose address the layer bound before a `connect` (the implicit source). The
/// kernel keeps a bound address when the socket is disconnected (`connect(AF_UNSPEC)`), so the
/// layer unbinds it then (see `calls::connect`), as the kernel's own choice would have been.
pub(crate) static LAYER_ADDR: [AtomicU64; TRACKED / 64] =
    [const { AtomicU64::new(0) }; TRACKED / 64];

pub(crate) fn slot(fd: c_int) -> Option<(usize, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < TRACKED)?;
    Some((fd / 64, 1u64 << (fd % 64)))
}

pub(crate) fn flag(set: &[AtomicU64], fd: c_int, on: bool) {
    if let Some((w, bit)) = slot(fd)
        && let Some(word) = set.get(w)
    {
        if on {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

pub(crate) fn has(set: &[AtomicU64], fd: c_int) -> bool {
    slot(fd)
        .and_then(|(w, bit)| {
            set.get(w)
                .map(|word| word.load(Ordering::Relaxed) & bit != 0)
        })
        .unwrap_or(false)
}

pub(crate) fn forget(fd: c_int) {
    flag(&IMPLICIT, fd, false);
    flag(&FRESH, fd, false);
    flag(&LAYER_ADDR, fd, false);
}

/// Forgets every descriptor from `first` to `last` (inclusive), a word at a time.
pub(crate) fn forget_range(first: c_uint, last: c_uint) {
    let first = first as usize;
    let last = (last as usize).min(TRACKED - 1);
    if first > last {
        return;
    }
    for w in first / 64..=last / 64 {
        let lo = if w == first / 64 { first % 64 } else { 0 };
        let hi = if w == last / 64 { last % 64 } else { 63 };
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        for set in [&FRESH, &IMPLICIT, &LAYER_ADDR] {
            if let Some(word) = set.get(w) {
                word.fetch_and(!mask, Ordering::Relaxed);
            }
        }
    }
}

/// `to` now refers to the socket `from` refers to (`dup`, `dup2`, `dup3`, `F_DUPFD`): it inherits
/// what the layer knows about it.
pub(crate) fn copy_state(from: c_int, to: c_int) {
    if from == to {
        return;
    }
    for set in [&FRESH, &IMPLICIT, &LAYER_ADDR] {
        flag(set, to, has(set, from));
    }
}

pub(crate) fn mark_bound(fd: c_int) {
    flag(&FRESH, fd, false);
}

/// Whether the socket has a local address already (port != 0). On any doubt, says yes: then the
/// layer binds nothing and the real call decides.
pub(crate) fn is_bound(fd: c_int) -> bool {
    if has(&FRESH, fd) {
        return false;
    }
    let Some(getsockname) = real_getsockname() else {
        return true;
    };
    let mut buf = [0u8; STORAGE];
    let mut len = STORAGE as socklen_t;
    // SAFETY: buf has `len` writable bytes.
    if unsafe { getsockname(fd, buf.as_mut_ptr().cast(), &mut len) } != 0 {
        return true;
    }
    read_sockaddr(buf.get(..len as usize).unwrap_or(&[]), LAYOUT).map_or(true, |a| a.port() != 0)
}

/// Before the implicit bind of a connect: turns `IP_BIND_ADDRESS_NO_PORT` on, so the bind takes the
/// address only and `connect` picks the port for the destination, as it does natively (a port
/// taken at bind time serves one connection whatever the destination, and the search for a free
/// one degrades with many `TIME_WAIT` sockets). Returns whether it turned it on (and must turn it
/// back off: the program reads its own value with `getsockopt`). Linux ≥ 4.2; on older kernels the
/// option is unknown and the bind takes a port as before.
pub(crate) fn defer_port(fd: c_int) -> bool {
    let mut on: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: on is a writable c_int and len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    if r != 0 || on != 0 {
        return false;
    }
    set_no_port(fd, 1)
}

pub(crate) fn set_no_port(fd: c_int, value: c_int) -> bool {
    // SAFETY: value is a readable c_int and the length says so.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const value).cast(),
            std::mem::size_of::<c_int>() as socklen_t,
        ) == 0
    }
}

pub(crate) fn socket_type(fd: c_int) -> Option<c_int> {
    socket_int(fd, libc::SO_TYPE)
}

/// The socket's address family (`SO_DOMAIN`).
pub(crate) fn socket_domain(fd: c_int) -> Option<c_int> {
    socket_int(fd, libc::SO_DOMAIN)
}

/// The local port of the socket (0 when it has none yet), as the kernel has it.
pub(crate) fn local_port(fd: c_int) -> u16 {
    let Some(getsockname) = real_getsockname() else {
        return 0;
    };
    let mut buf = [0u8; STORAGE];
    let mut len = STORAGE as socklen_t;
    // SAFETY: buf has `len` writable bytes.
    if unsafe { getsockname(fd, buf.as_mut_ptr().cast(), &mut len) } != 0 {
        return 0;
    }
    read_sockaddr(buf.get(..len as usize).unwrap_or(&[]), LAYOUT).map_or(0, |a| a.port())
}

fn socket_int(fd: c_int, option: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: v is a writable c_int and len says so.
    let r =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&raw mut v).cast(), &mut len) };
    (r == 0).then_some(v)
}

pub(crate) fn stack_of(fd: c_int, addr: &[u8]) -> Stack {
    // Only `::` needs the answer: ask the kernel then, and only then.
    let is_any6 = LAYOUT.family(addr).ok() == Some(LAYOUT.af_inet6())
        && addr.get(8..24).is_some_and(|b| b.iter().all(|&x| x == 0));
    if !is_any6 {
        return Stack::Single;
    }
    let mut v6only: c_int = 1;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: v6only is a writable c_int and len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw mut v6only).cast(),
            &mut len,
        )
    };
    if r == 0 && v6only == 0 {
        Stack::Dual
    } else {
        Stack::Single
    }
}
