//! The rewriter handle and its calls: the same calls as [`Raw`](crate::Raw), on the caller's
//! buffers.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::args::{session_of, vip_of};
use super::engine::{ipvirt_engine, ipvirt_plan};
use super::panic::guard;
use super::ptr::{bytes_mut, check_disjoint, region};
use super::status::ipvirt_status::{self, *};
use super::status::{refusal_status, sockaddr_status};
use crate::rewrite::{RawError, RawOutcome, Rewriter};
use crate::sockaddr::SockaddrLayout;
use crate::verdict::Stack;

/// Socket-address layouts (see [`SockaddrLayout`]).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ipvirt_layout {
    /// The platform ipvirt was compiled for.
    IPVIRT_LAYOUT_NATIVE = 0,
    /// Linux, little-endian.
    IPVIRT_LAYOUT_LINUX = 1,
    /// Linux, big-endian.
    IPVIRT_LAYOUT_LINUX_BIG_ENDIAN = 2,
    /// Windows.
    IPVIRT_LAYOUT_WINDOWS = 3,
    /// macOS.
    IPVIRT_LAYOUT_MACOS = 4,
    /// FreeBSD.
    IPVIRT_LAYOUT_FREEBSD = 5,
}

pub(super) fn layout(v: u32) -> Option<SockaddrLayout> {
    Some(match v {
        0 => SockaddrLayout::native(),
        1 => SockaddrLayout::LINUX,
        2 => SockaddrLayout::LINUX_BIG_ENDIAN,
        3 => SockaddrLayout::WINDOWS,
        4 => SockaddrLayout::MACOS,
        5 => SockaddrLayout::FREEBSD,
        _ => return None,
    })
}

/// A rewriter for one process in one session (opaque): a [`Rewriter`], built and checked once.
#[derive(Debug)]
pub struct ipvirt_rewriter {
    pub(super) rw: Rewriter,
}

/// The status of a raw call's error.
fn raw_status(e: RawError) -> ipvirt_status {
    match e {
        RawError::Sockaddr(e) => sockaddr_status(e),
        RawError::Refused(r) => refusal_status(r),
    }
}

/// An outcome as the C ABI says it: `IPVIRT_UNSUPPORTED_FAMILY` for another family, else
/// `IPVIRT_OK` with `changed`.
fn outcome_status(o: RawOutcome, changed: &mut u32) -> ipvirt_status {
    match o {
        RawOutcome::OtherFamily => IPVIRT_UNSUPPORTED_FAMILY,
        RawOutcome::Rewritten => {
            *changed = 1;
            IPVIRT_OK
        }
        RawOutcome::Unchanged => {
            *changed = 0;
            IPVIRT_OK
        }
    }
}

/// A rewriter for the process `plan` describes, in session `session_id` of kind `session_kind`
/// (0 remote, 1 console/administrative), whose VIP is `vip` (4 bytes, network order; NULL with 0
/// for none: the policy's lease-failure setting then applies).
///
/// # Safety
///
/// `engine` must be a live handle; `plan` valid; `vip` NULL or valid for `vip_len` bytes; `out`
/// valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_new(
    engine: *const ipvirt_engine,
    session_id: u32,
    session_kind: u32,
    plan: *const ipvirt_plan,
    vip: *const u8,
    vip_len: usize,
    out: *mut *mut ipvirt_rewriter,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || plan.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[region(plan), (vip, vip_len)]) {
            return st;
        }
        let session = match session_of(session_id, session_kind) {
            Ok(s) => s,
            Err(st) => return st,
        };
        // SAFETY: plan is valid (caller, checked non-NULL).
        let Some(plan) = unsafe { *plan }.to_plan() else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        // SAFETY: vip is NULL or valid for vip_len bytes (caller).
        let vip = match unsafe { vip_of(vip, vip_len) } {
            Ok(v) => v,
            Err(st) => return st,
        };
        // SAFETY: engine is a live handle (caller).
        let engine = &unsafe { &*engine }.engine;
        // Built once: every value was checked above, and the rewriter owns what it reads.
        let handle = Box::new(ipvirt_rewriter {
            rw: engine.rewriter(session, &plan, vip),
        });
        // SAFETY: out is valid for a pointer (checked non-NULL).
        unsafe { *out = Box::into_raw(handle) };
        IPVIRT_OK
    })
}

/// Frees a rewriter (NULL is a no-op).
///
/// # Safety
///
/// `rewriter` must be NULL or a handle from [`ipvirt_rewriter_new`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_free(rewriter: *mut ipvirt_rewriter) {
    if !rewriter.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the handle came from Box::into_raw and is freed once (caller).
            drop(unsafe { Box::from_raw(rewriter) })
        }));
    }
}

/// Runs `f` with the rewriter behind a handle.
///
/// # Safety
///
/// `rw` must be NULL or a live handle.
unsafe fn with_rewriter(
    rw: *const ipvirt_rewriter,
    layout_v: u32,
    f: impl FnOnce(&Rewriter, SockaddrLayout) -> ipvirt_status,
) -> ipvirt_status {
    guard(|| {
        if rw.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        let Some(l) = layout(layout_v) else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        // SAFETY: rw is a live handle (caller).
        f(&unsafe { &*rw }.rw, l)
    })
}

/// `bind`: rewrites the socket address in `addr` (`addr_len` bytes) in place; `*changed` is set to
/// 1 if it changed, 0 if not. `dual_stack` is 1 for an `AF_INET6` socket with `IPV6_V6ONLY` off.
///
/// # Safety
///
/// `rw` a live handle; `addr` valid for `addr_len` bytes; `changed` valid for a `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_bind(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    dual_stack: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if changed.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            let stack = match dual_stack {
                0 => Stack::Single,
                1 => Stack::Dual,
                _ => return IPVIRT_INVALID_ARGUMENT,
            };
            if let Err(st) = check_disjoint(&[(addr, addr_len), region(changed)], &[]) {
                return st;
            }
            // SAFETY: addr is valid for addr_len bytes (caller) and changed is not in it.
            let buf = match bytes_mut(addr, addr_len) {
                Ok(buf) => buf,
                Err(st) => return st,
            };
            match r.raw(l).bind_on(buf, stack) {
                // SAFETY: changed is valid (checked non-NULL) and not in buf.
                Ok(o) => outcome_status(o, &mut *changed),
                Err(e) => raw_status(e),
            }
        })
    }
}

/// `connect` (and `sendto` with [`ipvirt_rewriter_sendto`]): rewrites the destination in `dest`
/// (`dest_len` bytes) in place and, when the socket should be bound first, writes that source
/// address into `source` (give 28 bytes or more; `*source_written` is its length, 0 for none).
/// `*dest_changed` is 1 if the destination changed.
///
/// # Safety
///
/// `rw` a live handle; `dest` valid for `dest_len` bytes; `source` valid for `source_len` bytes;
/// `source_written` and `dest_changed` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_connect(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        connect_like(
            rw,
            dest,
            dest_len,
            layout,
            source,
            source_len,
            source_written,
            dest_changed,
            false,
        )
    }
}

/// `sendto` / `sendmsg`: as [`ipvirt_rewriter_connect`].
///
/// # Safety
///
/// As [`ipvirt_rewriter_connect`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_sendto(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        connect_like(
            rw,
            dest,
            dest_len,
            layout,
            source,
            source_len,
            source_written,
            dest_changed,
            true,
        )
    }
}

/// # Safety
///
/// As [`ipvirt_rewriter_connect`].
#[allow(clippy::too_many_arguments)]
unsafe fn connect_like(
    rw: *const ipvirt_rewriter,
    dest: *mut u8,
    dest_len: usize,
    layout: u32,
    source: *mut u8,
    source_len: usize,
    source_written: *mut usize,
    dest_changed: *mut u32,
    send: bool,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if source_written.is_null() || dest_changed.is_null() || source.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            // One buffer as both dest and source would be two live `&mut` to the same bytes, and
            // both outputs cannot be kept anyway: refuse any overlap before building the slices.
            if let Err(st) = check_disjoint(
                &[
                    (dest, dest_len),
                    (source, source_len),
                    region(source_written),
                    region(dest_changed),
                ],
                &[],
            ) {
                return st;
            }
            // SAFETY: dest and source are valid for their lengths (caller) and disjoint (checked).
            let (d, s) = match (bytes_mut(dest, dest_len), bytes_mut(source, source_len)) {
                (Ok(d), Ok(s)) => (d, s),
                (Err(st), _) | (_, Err(st)) => return st,
            };
            let raw = r.raw(l);
            let result = if send {
                raw.send_to(d, s)
            } else {
                raw.connect(d, s)
            };
            match result {
                Ok(c) if c.dest == RawOutcome::OtherFamily => IPVIRT_UNSUPPORTED_FAMILY,
                Ok(c) => {
                    // SAFETY: both outputs are valid (checked non-NULL) and outside the buffers.
                    *source_written = c.source_len.unwrap_or(0);
                    *dest_changed = u32::from(c.dest == RawOutcome::Rewritten);
                    IPVIRT_OK
                }
                Err(e) => raw_status(e),
            }
        })
    }
}

/// The in-place calls on one address: `reported`, `resolved`, `reverse_lookup`.
#[derive(Clone, Copy)]
enum InPlace {
    Reported,
    Resolved,
    ReverseLookup,
}

/// # Safety
///
/// As [`ipvirt_rewriter_reported`].
unsafe fn in_place(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    changed: *mut u32,
    call: InPlace,
) -> ipvirt_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_rewriter(rw, layout, |r, l| {
            if changed.is_null() {
                return IPVIRT_NULL_ARGUMENT;
            }
            if let Err(st) = check_disjoint(&[(addr, addr_len), region(changed)], &[]) {
                return st;
            }
            // SAFETY: addr is valid for addr_len bytes (caller) and changed is not in it.
            let buf = match bytes_mut(addr, addr_len) {
                Ok(buf) => buf,
                Err(st) => return st,
            };
            let raw = r.raw(l);
            let result = match call {
                InPlace::Reported => raw.reported(buf),
                InPlace::Resolved => raw.resolved(buf),
                InPlace::ReverseLookup => raw.reverse_lookup(buf),
            };
            match result {
                // SAFETY: changed is valid (checked non-NULL) and not in buf.
                Ok(o) => outcome_status(o, &mut *changed),
                Err(e) => sockaddr_status(e),
            }
        })
    }
}

/// `getsockname`, `getpeername`, `accept`, `recvfrom`: rewrites the address the system returned
/// (`addr`, `addr_len` bytes: the complete address) in place to what the application should see;
/// `*changed` is 1 if it changed.
///
/// # Safety
///
/// `rw` a live handle; `addr` valid for `addr_len` bytes; `changed` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_reported(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { in_place(rw, addr, addr_len, layout, changed, InPlace::Reported) }
}

/// `getaddrinfo`, `gethostbyname` results: rewrites one resolved address (`addr`, `addr_len`
/// bytes: an `addrinfo`'s `ai_addr`) in place — the server's address becomes the session's VIP;
/// `*changed` is 1 if it changed.
///
/// # Safety
///
/// As [`ipvirt_rewriter_reported`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_resolved(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { in_place(rw, addr, addr_len, layout, changed, InPlace::Resolved) }
}

/// `gethostbyaddr`, `getnameinfo` input: rewrites the address to look up instead, in place (the
/// VIP → the server's address, the session loopback → the localhost address); `*changed` is 1 if
/// it changed.
///
/// # Safety
///
/// As [`ipvirt_rewriter_reported`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_reverse_lookup(
    rw: *const ipvirt_rewriter,
    addr: *mut u8,
    addr_len: usize,
    layout: u32,
    changed: *mut u32,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { in_place(rw, addr, addr_len, layout, changed, InPlace::ReverseLookup) }
}
