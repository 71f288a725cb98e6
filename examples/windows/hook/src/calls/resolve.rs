//! `getaddrinfo`, `GetAddrInfoW`, `gethostbyname`: the server's own address resolved as the VIP.

use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddr};
use std::ptr;

use ipvirt::{Call, RawOutcome, read_sockaddr, write_sockaddr};
use windows_sys::Win32::Networking::WinSock::{ADDRINFOA, HOSTENT};

use crate::addrs::{LAYOUT, STORAGE};
use crate::config::{State, say, state};
use crate::sys::Depth;

/// Rewrites every address of an `addrinfo` list in place (`ADDRINFOA` and `ADDRINFOW` have the
/// same layout up to `ai_next`).
///
/// # Safety
///
/// `list` is NULL or a list Winsock returned.
unsafe fn fix_list(st: &State, mut list: *mut ADDRINFOA) {
    while !list.is_null() {
        // SAFETY: a node of Winsock's list.
        let ai = unsafe { &*list };
        if !ai.ai_addr.is_null() && ai.ai_addrlen >= 2 {
            let len = ai.ai_addrlen.min(STORAGE);
            // SAFETY: ai_addr points at ai_addrlen bytes of Winsock's own memory.
            let bytes = unsafe { std::slice::from_raw_parts_mut(ai.ai_addr.cast::<u8>(), len) };
            let before = st
                .debug
                .then(|| read_sockaddr(bytes, LAYOUT).ok())
                .flatten();
            if st.rw.raw(LAYOUT).resolved(bytes) == Ok(RawOutcome::Rewritten)
                && let Some(b) = before
            {
                say(&format!("ipvirt: {}", st.rw.explain(Call::Resolved, b)));
            }
        }
        list = ai.ai_next;
    }
}

/// `getaddrinfo`: the results rewritten (the server's own address becomes the VIP).
///
/// # Safety
///
/// As Winsock's `getaddrinfo`.
pub(crate) unsafe extern "system" fn getaddrinfo(
    node: *const u8,
    service: *const u8,
    hints: *const c_void,
    res: *mut *mut ADDRINFOA,
) -> i32 {
    let real = real!(GetAddrInfo);
    let depth = Depth::enter();
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(node, service, hints, res) };
    if r == 0
        && !res.is_null()
        && let Some(st) = state().filter(|_| depth.outermost())
    {
        // SAFETY: on success *res is Winsock's list.
        unsafe { fix_list(st, *res) };
    }
    r
}

/// `GetAddrInfoW`: as [`getaddrinfo`].
///
/// # Safety
///
/// As Winsock's `GetAddrInfoW`.
pub(crate) unsafe extern "system" fn get_addr_info_w(
    node: *const u16,
    service: *const u16,
    hints: *const c_void,
    res: *mut *mut ADDRINFOA,
) -> i32 {
    let real = real!(GetAddrInfoW);
    let depth = Depth::enter();
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(node, service, hints, res) };
    if r == 0
        && !res.is_null()
        && let Some(st) = state().filter(|_| depth.outermost())
    {
        // SAFETY: on success *res is Winsock's list (ADDRINFOW: the same layout).
        unsafe { fix_list(st, *res) };
    }
    r
}

/// `gethostbyname`: the IPv4 addresses of the result rewritten in place (the `hostent` is the
/// calling thread's Winsock storage).
///
/// # Safety
///
/// As Winsock's `gethostbyname`.
pub(crate) unsafe extern "system" fn gethostbyname(name: *const u8) -> *mut HOSTENT {
    let real = real!(GetHostByName);
    let depth = Depth::enter();
    // SAFETY: forwarded unchanged.
    let h = unsafe { real(name) };
    let Some(st) = state().filter(|_| depth.outermost()) else {
        return h;
    };
    if h.is_null() {
        return h;
    }
    // SAFETY: a non-NULL result is Winsock's hostent.
    let he = unsafe { &*h };
    if i32::from(he.h_addrtype) != i32::from(LAYOUT.af_inet()) || he.h_length != 4 {
        return h;
    }
    let mut list = he.h_addr_list;
    // SAFETY: h_addr_list is a NULL-terminated array of pointers at 4-byte addresses.
    while !list.is_null() && !unsafe { *list }.is_null() {
        // SAFETY: as above.
        let p = unsafe { *list }.cast::<u8>();
        let mut octets = [0u8; 4];
        // SAFETY: p points at 4 bytes.
        unsafe { ptr::copy_nonoverlapping(p, octets.as_mut_ptr(), 4) };
        let before = SocketAddr::from((Ipv4Addr::from(octets), 0));
        let mut sin = [0u8; ipvirt::SOCKADDR_IN_LEN];
        if write_sockaddr(before, &mut sin, LAYOUT).is_ok()
            && st.rw.raw(LAYOUT).resolved(&mut sin) == Ok(RawOutcome::Rewritten)
            && let Ok(SocketAddr::V4(after)) = read_sockaddr(&sin, LAYOUT)
        {
            if st.debug {
                say(&format!(
                    "ipvirt: {}",
                    st.rw.explain(Call::Resolved, before)
                ));
            }
            // SAFETY: p points at 4 writable bytes of Winsock's per-thread storage.
            unsafe { ptr::copy_nonoverlapping(after.ip().octets().as_ptr(), p, 4) };
        }
        // SAFETY: still inside the NULL-terminated array.
        list = unsafe { list.add(1) };
    }
    h
}
