//! `sendto`, `sendmsg`, `sendmmsg`: destinations, and the implicit source bind.

use std::ffi::{c_int, c_uint, c_void};
use std::ptr;

use ipvirt::{Call, RawError, RawOutcome};
use libc::{mmsghdr, msghdr, sockaddr, socklen_t, ssize_t};

use crate::addrs::{LAYOUT, STORAGE, bind_source, copy_in, debug, fail_with};
use crate::config::{State, state};
use crate::fds::{FRESH, IMPLICIT, flag};
use crate::sys::{errno, set_errno};

/// Rewrites a send destination in `buf` and binds the source if needed. `Err(-1)` with errno set:
/// fail the call.
pub(crate) fn prepare_send(st: &State, fd: c_int, view: &mut [u8]) -> Result<bool, ssize_t> {
    let n = view.len();
    let before = st.debug.then(|| {
        let mut b = [0u8; STORAGE];
        if let Some(dst) = b.get_mut(..n) {
            dst.copy_from_slice(view);
        }
        b
    });
    let mut src = [0u8; STORAGE];
    match st.rw.raw(LAYOUT).send_to(view, &mut src) {
        Ok(raw) => {
            let dest_changed = raw.dest == RawOutcome::Rewritten;
            if let Some(sl) = raw.source_len {
                match bind_source(fd, src.get(..sl).unwrap_or(&[]), false) {
                    Ok(true) => flag(&IMPLICIT, fd, true),
                    Ok(false) => {}
                    Err(e) => {
                        set_errno(e);
                        return Err(-1);
                    }
                }
            }
            if dest_changed || raw.source_len.is_some() {
                debug(before, n, st, Call::SendTo);
            }
            // The kernel binds an unbound socket when it sends.
            flag(&FRESH, fd, false);
            Ok(dest_changed)
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, Call::SendTo);
            Err(fail_with(r) as ssize_t)
        }
        Err(_) => Ok(false),
    }
}

/// `sendto(2)` to the destination ipvirt says.
///
/// # Safety
///
/// As `sendto(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    data: *const c_void,
    size: usize,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    let real = real!(sendto: unsafe extern "C" fn(c_int, *const c_void, usize, c_int, *const sockaddr, socklen_t) -> ssize_t, -1);
    let saved = errno();
    let st = state();
    // SAFETY: the caller's contract is sendto's.
    let copied = if st.is_some() {
        // SAFETY: the caller's contract is sendto's.
        unsafe { copy_in(addr, len) }
    } else {
        None
    };
    let (Some(st), Some((mut buf, n))) = (st, copied) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, data, size, flags, addr, len) };
    };
    let view = buf.get_mut(..n).unwrap_or_default();
    match prepare_send(st, fd, view) {
        Ok(changed) => {
            set_errno(saved);
            let ptr = if changed { buf.as_ptr().cast() } else { addr };
            // SAFETY: ptr is the program's address or our complete copy of len bytes.
            unsafe { real(fd, data, size, flags, ptr, len) }
        }
        Err(r) => r,
    }
}

/// `sendmsg(2)` to the destination ipvirt says (the program's `msghdr` is not modified).
///
/// # Safety
///
/// As `sendmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let real = real!(sendmsg: unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t, -1);
    let saved = errno();
    let Some(st) = state().filter(|_| !msg.is_null()) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, msg, flags) };
    };
    // SAFETY: msg is non-null and, by sendmsg's contract, points at a msghdr.
    let mut copy: msghdr = unsafe { ptr::read(msg) };
    // SAFETY: msg_name is NULL or has msg_namelen readable bytes.
    let Some((mut buf, n)) = (unsafe { copy_in(copy.msg_name.cast(), copy.msg_namelen) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, msg, flags) };
    };
    let view = buf.get_mut(..n).unwrap_or_default();
    match prepare_send(st, fd, view) {
        Ok(true) => {
            copy.msg_name = buf.as_mut_ptr().cast();
            set_errno(saved);
            // SAFETY: copy is the program's msghdr with msg_name pointing at our complete copy.
            unsafe { real(fd, &copy, flags) }
        }
        Ok(false) => {
            set_errno(saved);
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, msg, flags) }
        }
        Err(r) => r,
    }
}

/// `sendmmsg(2)`: each message's destination as ipvirt says (the program's names are not modified;
/// `msg_len` is written back as the kernel wrote it).
///
/// # Safety
///
/// As `sendmmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    vec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    let real =
        real!(sendmmsg: unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int) -> c_int, -1);
    let saved = errno();
    let Some(st) = state().filter(|_| !vec.is_null() && vlen > 0) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, vec, vlen, flags) };
    };
    // The kernel sends at most UIO_MAXIOV (1024) messages per call.
    let count = (vlen as usize).min(1024);
    // SAFETY: vec points at vlen mmsghdr entries, count <= vlen.
    let msgs = unsafe { std::slice::from_raw_parts(vec, count) };
    if msgs.iter().all(|m| m.msg_hdr.msg_name.is_null()) {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, vec, vlen, flags) };
    }
    let mut copies: Vec<mmsghdr> = msgs.to_vec();
    let mut names: Vec<[u8; STORAGE]> = vec![[0u8; STORAGE]; count];
    let mut send = count;
    for (i, (m, name)) in copies.iter_mut().zip(names.iter_mut()).enumerate() {
        // SAFETY: msg_name is NULL or has msg_namelen readable bytes.
        let Some((buf, n)) = (unsafe { copy_in(m.msg_hdr.msg_name.cast(), m.msg_hdr.msg_namelen) })
        else {
            continue;
        };
        *name = buf;
        match prepare_send(st, fd, name.get_mut(..n).unwrap_or_default()) {
            Ok(true) => m.msg_hdr.msg_name = name.as_mut_ptr().cast(),
            Ok(false) => {}
            // A refused destination ends the batch there, as a failing message does in the kernel.
            Err(r) if i == 0 => return r as c_int,
            Err(_) => {
                send = i;
                break;
            }
        }
    }
    set_errno(saved);
    // SAFETY: copies holds `send` valid entries whose names point at live buffers.
    let r = unsafe { real(fd, copies.as_mut_ptr(), send as c_uint, flags) };
    if r > 0 {
        for i in 0..(r as usize).min(send) {
            if let Some(c) = copies.get(i) {
                // SAFETY: i < count <= vlen entries of the program's vector.
                unsafe { (*vec.add(i)).msg_len = c.msg_len };
            }
        }
    }
    r
}
