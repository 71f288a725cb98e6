//! `sendto`, `sendmsg`, `sendmmsg`: destinations, the implicit source bind, and the sources a
//! program chooses in control messages (`IP_PKTINFO`, `IPV6_PKTINFO`).

use std::ffi::{c_int, c_uint, c_void};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use ipvirt::{Call, RawError, RawOutcome};
use libc::{cmsghdr, in_pktinfo, in6_pktinfo, mmsghdr, msghdr, sockaddr, socklen_t, ssize_t};

use crate::addrs::{LAYOUT, STORAGE, bind_source, copy_in_send, debug, fail_with};
use crate::config::{State, state};
use crate::diag::say;
use crate::fds::{FRESH, IMPLICIT, flag, local_port};
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

/// The sources a message chooses in its control messages (`IP_PKTINFO`'s `ipi_spec_dst`,
/// `IPV6_PKTINFO`'s IPv4-mapped `ipi6_addr`), decided as a bind of that source on the socket's
/// port (SPEC §12): another session's loopback address is refused, `127.0.0.1` becomes the
/// session's. `Ok(None)`: nothing to change (the program's buffer goes to the kernel as it is);
/// `Ok(Some(copy))`: the control buffer to send instead; `Err(errno)`: fail the call. A native IPv6
/// source is left alone (there is no per-session IPv6 loopback).
///
/// # Safety
///
/// `msg.msg_control` is NULL or has `msg.msg_controllen` readable bytes (`sendmsg`'s contract).
pub(crate) unsafe fn fix_control(
    st: &State,
    fd: c_int,
    msg: &msghdr,
) -> Result<Option<Vec<u8>>, c_int> {
    if msg.msg_control.is_null() || msg.msg_controllen == 0 {
        return Ok(None);
    }
    let mut copy: Option<Vec<u8>> = None;
    let mut port = None;
    // SAFETY: the control buffer is readable (caller); CMSG_FIRSTHDR/NXTHDR stay within it.
    let mut cur = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cur.is_null() {
        // SAFETY: cur is a header inside the buffer (CMSG_NXTHDR checks that it fits).
        let h: cmsghdr = unsafe { ptr::read_unaligned(cur) };
        // SAFETY: pure arithmetic on a pointer into the buffer.
        let data = unsafe { libc::CMSG_DATA(cur) } as usize;
        let offset = data - msg.msg_control as usize;
        let have = (h.cmsg_len as usize).saturating_sub(data - cur as usize);
        // (size_t with glibc, socklen_t with musl.)
        #[allow(clippy::unnecessary_cast)]
        let end = msg.msg_controllen as usize;
        let source = if h.cmsg_level == libc::IPPROTO_IP
            && h.cmsg_type == libc::IP_PKTINFO
            && have >= size_of::<in_pktinfo>()
            && offset + size_of::<in_pktinfo>() <= end
        {
            // SAFETY: the data holds an in_pktinfo (checked against cmsg_len and the buffer).
            let p: in_pktinfo = unsafe { ptr::read_unaligned(data as *const in_pktinfo) };
            let ip = Ipv4Addr::from(u32::from_be(p.ipi_spec_dst.s_addr));
            (!ip.is_unspecified()).then_some((IpAddr::V4(ip), offset + 4, false))
        } else if h.cmsg_level == libc::IPPROTO_IPV6
            && h.cmsg_type == libc::IPV6_PKTINFO
            && have >= size_of::<in6_pktinfo>()
            && offset + size_of::<in6_pktinfo>() <= end
        {
            // SAFETY: the data holds an in6_pktinfo (checked as above).
            let p: in6_pktinfo = unsafe { ptr::read_unaligned(data as *const in6_pktinfo) };
            let ip = std::net::Ipv6Addr::from(p.ipi6_addr.s6_addr);
            ip.to_ipv4_mapped()
                .filter(|v4| !v4.is_unspecified())
                .map(|_| (IpAddr::V6(ip), offset, true))
        } else {
            None
        };
        if let Some((ip, at, six)) = source {
            let port = *port.get_or_insert_with(|| local_port(fd));
            let addr = match ip {
                IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)),
            };
            match st.rw.bind(addr) {
                Ok(new) if new == addr => {}
                Ok(new) => {
                    if st.debug {
                        say(format_args!(
                            "ipvirt: sendmsg source: {}\n",
                            st.rw.explain(Call::Bind, addr)
                        ));
                    }
                    let buf = copy.get_or_insert_with(|| {
                        // SAFETY: the buffer has msg_controllen readable bytes (caller).
                        unsafe { std::slice::from_raw_parts(msg.msg_control.cast::<u8>(), end) }
                            .to_vec()
                    });
                    let bytes: Vec<u8> = match new.ip() {
                        IpAddr::V4(v4) if !six => v4.octets().to_vec(),
                        IpAddr::V6(v6) if six => v6.octets().to_vec(),
                        _ => return Err(libc::EINVAL),
                    };
                    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
                        dst.copy_from_slice(&bytes);
                    }
                }
                Err(r) => {
                    if st.debug {
                        say(format_args!(
                            "ipvirt: sendmsg source: {}\n",
                            st.rw.explain(Call::Bind, addr)
                        ));
                    }
                    return Err(r.errno());
                }
            }
        }
        // SAFETY: cur is a header of the buffer msg describes.
        cur = unsafe { libc::CMSG_NXTHDR(msg, cur) };
    }
    Ok(copy)
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
        unsafe { copy_in_send(fd, addr, len) }
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

/// `sendmsg(2)` to the destination ipvirt says, from a source the program chose in a control
/// message only as ipvirt allows (the program's `msghdr` and buffers are not modified).
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
    // The source first: deciding it changes nothing, where the destination may bind the socket.
    // SAFETY: sendmsg's contract: msg_control has msg_controllen readable bytes.
    let mut control = match unsafe { fix_control(st, fd, &copy) } {
        Ok(c) => c,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    let mut buf = [0u8; STORAGE];
    let mut name_changed = false;
    // SAFETY: msg_name is NULL or has msg_namelen readable bytes.
    if let Some((b, n)) = unsafe { copy_in_send(fd, copy.msg_name.cast(), copy.msg_namelen) } {
        buf = b;
        match prepare_send(st, fd, buf.get_mut(..n).unwrap_or_default()) {
            Ok(changed) => name_changed = changed,
            Err(r) => return r,
        }
    }
    set_errno(saved);
    if !name_changed && control.is_none() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, msg, flags) };
    }
    if name_changed {
        copy.msg_name = buf.as_mut_ptr().cast();
    }
    if let Some(c) = control.as_mut() {
        copy.msg_control = c.as_mut_ptr().cast();
    }
    // SAFETY: copy is the program's msghdr with msg_name / msg_control pointing at our complete
    // copies of the same lengths.
    unsafe { real(fd, &copy, flags) }
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
    if msgs
        .iter()
        .all(|m| m.msg_hdr.msg_name.is_null() && m.msg_hdr.msg_control.is_null())
    {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, vec, vlen, flags) };
    }
    let mut copies: Vec<mmsghdr> = msgs.to_vec();
    let mut names: Vec<[u8; STORAGE]> = vec![[0u8; STORAGE]; count];
    let mut controls: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut send = count;
    for (i, ((m, name), control)) in copies
        .iter_mut()
        .zip(names.iter_mut())
        .zip(controls.iter_mut())
        .enumerate()
    {
        // SAFETY: msg_control is NULL or has msg_controllen readable bytes.
        let fixed = unsafe { fix_control(st, fd, &m.msg_hdr) };
        let named = match fixed {
            Ok(c) => {
                *control = c;
                // SAFETY: msg_name is NULL or has msg_namelen readable bytes.
                unsafe { copy_in_send(fd, m.msg_hdr.msg_name.cast(), m.msg_hdr.msg_namelen) }
                    .map(|(buf, n)| {
                        *name = buf;
                        prepare_send(st, fd, name.get_mut(..n).unwrap_or_default())
                    })
                    .unwrap_or(Ok(false))
            }
            Err(e) => {
                set_errno(e);
                Err(-1)
            }
        };
        match named {
            Ok(changed) => {
                if changed {
                    m.msg_hdr.msg_name = name.as_mut_ptr().cast();
                }
                if let Some(c) = control.as_mut() {
                    m.msg_hdr.msg_control = c.as_mut_ptr().cast();
                }
            }
            // A refused message ends the batch there, as a failing message does in the kernel.
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
