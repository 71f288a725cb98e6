//! `getaddrinfo`: name-resolution results.

use std::ffi::{c_char, c_int};

use ipvirt::{Call, read_sockaddr, write_sockaddr};
use libc::addrinfo;

use crate::addrs::{LAYOUT, STORAGE};
use crate::config::state;
use crate::diag::say;

/// `getaddrinfo(3)`: the server's own address in the results becomes the session's VIP.
///
/// # Safety
///
/// As `getaddrinfo(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let real = real!(getaddrinfo: unsafe extern "C" fn(*const c_char, *const c_char, *const addrinfo, *mut *mut addrinfo) -> c_int, libc::EAI_SYSTEM);
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(node, service, hints, res) };
    if r != 0 || res.is_null() {
        return r;
    }
    let Some(st) = state() else { return r };
    // SAFETY: on success *res is the head of a list getaddrinfo allocated; we only rewrite the
    // address bytes inside ai_addr, which the list owns.
    let mut cur = unsafe { *res };
    while !cur.is_null() {
        // SAFETY: cur is a node of that list.
        let ai = unsafe { &mut *cur };
        let len = ai.ai_addrlen as usize;
        if !ai.ai_addr.is_null() && (2..=STORAGE).contains(&len) {
            // SAFETY: ai_addr has ai_addrlen bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(ai.ai_addr.cast::<u8>(), len) };
            if let Ok(a) = read_sockaddr(bytes, LAYOUT) {
                let ip = st.rw.resolved_addr(a.ip());
                if ip != a.ip() {
                    if st.debug {
                        say(format_args!(
                            "ipvirt: {}\n",
                            st.rw.explain(Call::Resolved, a)
                        ));
                    }
                    let mut out = [0u8; STORAGE];
                    let mut new = a;
                    new.set_ip(ip);
                    if let Ok(n) = write_sockaddr(new, &mut out, LAYOUT)
                        && n <= len
                        && let (Some(dst), Some(src)) = (bytes.get_mut(..n), out.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
        cur = ai.ai_next;
    }
    r
}
