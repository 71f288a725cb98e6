//! Pointer and length checks: what every C entry point does before it touches a buffer.

use std::ffi::c_char;

use super::status::ipvirt_status::{self, *};

/// The largest length a buffer can have: no object is larger than `isize::MAX` bytes, and
/// `slice::from_raw_parts` requires it.
const MAX_LEN: usize = isize::MAX as usize;

/// Refuses a length no buffer can have (`IPVIRT_INVALID_ARGUMENT`), before any slice is built.
pub(super) fn check_len(len: usize) -> Result<(), ipvirt_status> {
    if len > MAX_LEN {
        Err(IPVIRT_INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Whether the byte ranges `[a, a + a_len)` and `[b, b + b_len)` share a byte (empty ranges share
/// none). Only the addresses are compared; nothing is dereferenced.
fn overlap(a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> bool {
    let (a, b) = (a as usize, b as usize);
    a_len != 0 && b_len != 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// A buffer or scalar as `(address, length)`, for [`check_disjoint`].
pub(super) type Region = (*const u8, usize);

/// Refuses overlaps (`IPVIRT_INVALID_ARGUMENT`) between two outputs, or an output and an input
/// (inputs may overlap each other: they are only read). NULL regions are ignored.
pub(super) fn check_disjoint(outputs: &[Region], inputs: &[Region]) -> Result<(), ipvirt_status> {
    for (i, &(a, a_len)) in outputs.iter().enumerate() {
        for &(b, b_len) in outputs.iter().skip(i + 1).chain(inputs) {
            if !a.is_null() && !b.is_null() && overlap(a, a_len, b, b_len) {
                return Err(IPVIRT_INVALID_ARGUMENT);
            }
        }
    }
    Ok(())
}

/// The region of a scalar (or struct) argument, for [`check_disjoint`].
pub(super) fn region<T>(p: *const T) -> Region {
    (p.cast(), size_of::<T>())
}

/// A byte slice from a pointer and length; NULL is allowed only with length 0.
///
/// # Errors
///
/// `IPVIRT_NULL_ARGUMENT` for NULL with a non-zero length, `IPVIRT_INVALID_ARGUMENT` for a length
/// above `isize::MAX` (checked before the slice is built).
///
/// # Safety
///
/// `ptr` must be NULL or valid for reading `len` bytes.
pub(super) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], ipvirt_status> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(IPVIRT_NULL_ARGUMENT)
        };
    }
    check_len(len)?;
    // SAFETY: the caller guarantees ptr is valid for len bytes, and len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable byte slice from a non-NULL pointer and length.
///
/// # Errors
///
/// `IPVIRT_NULL_ARGUMENT` for NULL, `IPVIRT_INVALID_ARGUMENT` for a length above `isize::MAX`
/// (checked before the slice is built).
///
/// # Safety
///
/// `ptr` must be NULL or valid for reading and writing `len` bytes, and not otherwise borrowed
/// while the slice lives.
pub(super) unsafe fn bytes_mut<'a>(
    ptr: *mut u8,
    len: usize,
) -> Result<&'a mut [u8], ipvirt_status> {
    if ptr.is_null() {
        return Err(IPVIRT_NULL_ARGUMENT);
    }
    check_len(len)?;
    // SAFETY: the caller guarantees ptr is valid for len bytes, and len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes `msg` NUL-terminated into `buf` (truncated to fit) and its full length to `written`.
///
/// # Safety
///
/// `buf` must be NULL or valid for `len` bytes; `written` NULL or valid for a `usize`.
pub(super) unsafe fn write_message(
    msg: &str,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bool {
    if !written.is_null() {
        // SAFETY: written is valid (caller).
        unsafe { *written = msg.len() };
    }
    if buf.is_null() || len == 0 {
        return msg.is_empty();
    }
    let n = msg.len().min(len - 1);
    // SAFETY: buf is valid for len > n bytes (caller); msg has n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    n == msg.len()
}
