//! `getsockname`, `getpeername`, `accept`, `accept4`, `recvfrom`, `recvmsg`, `recvmmsg`: addresses
//! handed back to the program.

use std::ffi::{c_int, c_uint, c_void};
use std::ptr;

use libc::{mmsghdr, msghdr, sockaddr, socklen_t, ssize_t};

use crate::addrs::fix_reported;
use crate::config::state;
use crate::fds::forget;
use crate::sys::NameFn;

/// The capacity of an `(addr, *len)` result pair before a call: 0 when either is NULL.
///
/// # Safety
///
/// `len` must be NULL or point at a `socklen_t`.
pub(crate) unsafe fn capacity(addr: *mut sockaddr, len: *mut socklen_t) -> socklen_t {
    if addr.is_null() || len.is_null() {
        0
    } else {
        // SAFETY: len points at a socklen_t (caller).
        unsafe { *len }
    }
}

/// After a call that filled `(addr, *len)` (given `cap` bytes) and returned `r`: shows the address
/// as the program should see it. `ok` says whether the call succeeded; `fd` is the socket the
/// address belongs to; `own_name` is true for `getsockname`.
///
/// # Safety
///
/// When `ok` and `cap > 0`, `addr` has `cap` bytes the kernel filled and `len` points at the length
/// it set.
pub(crate) unsafe fn show_result(
    ok: bool,
    fd: c_int,
    addr: *mut sockaddr,
    cap: socklen_t,
    len: *mut socklen_t,
    own_name: bool,
) {
    if ok
        && cap > 0
        && let Some(st) = state()
    {
        // SAFETY: the caller's contract.
        unsafe { fix_reported(st, fd, addr, cap, *len, own_name) };
    }
}

/// `getsockname(2)`: the session loopback shown as the localhost address the program used.
///
/// # Safety
///
/// As `getsockname(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(getsockname: NameFn, -1);
    // SAFETY: getsockname's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    unsafe {
        let r = real(fd, addr, len);
        show_result(r == 0, fd, addr, cap, len, true);
        r
    }
}

/// `getpeername(2)`: as `getsockname`.
///
/// # Safety
///
/// As `getpeername(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(getpeername: NameFn, -1);
    // SAFETY: getpeername's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    unsafe {
        let r = real(fd, addr, len);
        show_result(r == 0, fd, addr, cap, len, false);
        r
    }
}

/// `accept(2)`: the peer address as the program should see it.
///
/// # Safety
///
/// As `accept(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(accept: NameFn, -1);
    // SAFETY: accept's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    let r = unsafe { real(fd, addr, len) };
    if r >= 0 {
        forget(r);
    }
    // SAFETY: as above.
    unsafe { show_result(r >= 0, r, addr, cap, len, false) };
    r
}

/// `accept4(2)`: as `accept`.
///
/// # Safety
///
/// As `accept4(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let real = real!(accept4: unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int, -1);
    // SAFETY: accept4's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, addr, len, flags) };
    if r >= 0 {
        forget(r);
    }
    // SAFETY: the kernel filled addr and *len when r >= 0.
    unsafe { show_result(r >= 0, r, addr, cap, len, false) };
    r
}

/// `recvfrom(2)`: the sender's address as the program should see it.
///
/// # Safety
///
/// As `recvfrom(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    data: *mut c_void,
    size: usize,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let real = real!(recvfrom: unsafe extern "C" fn(c_int, *mut c_void, usize, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t, -1);
    // SAFETY: len is NULL or points at a socklen_t.
    let cap = if len.is_null() || addr.is_null() {
        0
    } else {
        // SAFETY: len is NULL or points at a socklen_t.
        unsafe { *len }
    };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, data, size, flags, addr, len) };
    if r >= 0
        && cap > 0
        && let Some(st) = state()
    {
        // SAFETY: the kernel filled addr (cap bytes) and set *len.
        unsafe { fix_reported(st, fd, addr, cap, *len, false) };
    }
    r
}

/// `recvmsg(2)`: the sender's address (`msg_name`) as the program should see it.
///
/// # Safety
///
/// As `recvmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let real = real!(recvmsg: unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t, -1);
    // SAFETY: msg is NULL or points at a msghdr.
    let (name, cap) = if msg.is_null() {
        (ptr::null_mut(), 0)
    } else {
        // SAFETY: msg is NULL or points at a msghdr.
        unsafe { ((*msg).msg_name, (*msg).msg_namelen) }
    };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, msg, flags) };
    if r >= 0
        && !name.is_null()
        && let Some(st) = state()
    {
        // SAFETY: the kernel filled msg_name (cap bytes) and set msg_namelen.
        unsafe { fix_reported(st, fd, name.cast(), cap, (*msg).msg_namelen, false) };
    }
    r
}

/// `recvmmsg(2)`: each sender's address as the program should see it.
///
/// # Safety
///
/// As `recvmmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    vec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    let real = real!(recvmmsg: unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int, -1);
    let st = state();
    // Remember each name buffer's capacity before the kernel overwrites msg_namelen.
    let count = if vec.is_null() || st.is_none() {
        0
    } else {
        (vlen as usize).min(1024)
    };
    let mut caps = [0 as socklen_t; 1024];
    for (i, cap) in caps.iter_mut().enumerate().take(count) {
        // SAFETY: i < count <= vlen entries.
        *cap = unsafe { (*vec.add(i)).msg_hdr.msg_namelen };
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, vec, vlen, flags, timeout) };
    if let Some(st) = st
        && r > 0
    {
        for (i, &cap) in caps.iter().enumerate().take((r as usize).min(count)) {
            // SAFETY: i < r entries were filled by the kernel.
            let h = unsafe { &mut (*vec.add(i)).msg_hdr };
            if !h.msg_name.is_null() {
                // SAFETY: msg_name has cap bytes, filled up to msg_namelen.
                unsafe { fix_reported(st, fd, h.msg_name.cast(), cap, h.msg_namelen, false) };
            }
        }
    }
    r
}
