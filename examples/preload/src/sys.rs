//! `errno` and the real functions behind the interposed ones (`dlsym(RTLD_NEXT)`).

use std::ffi::{CStr, c_int};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{sockaddr, socklen_t};

#[inline]
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// The next definition of `name` (libc's), resolved once.
pub(crate) fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let p = cache.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    cache.store(p, Ordering::Relaxed);
    p
}

/// `real!(name: fn type)`: the real function, or a failure with `ENOSYS` if it cannot be found.
macro_rules! real {
    ($name:ident : $ty:ty, $fail:expr) => {{
        static CACHE: ::std::sync::atomic::AtomicUsize = ::std::sync::atomic::AtomicUsize::new(0);
        let p = $crate::sys::next_symbol(&CACHE, {
            // SAFETY: the literal ends with exactly one NUL.
            unsafe {
                ::std::ffi::CStr::from_bytes_with_nul_unchecked(
                    concat!(stringify!($name), "\0").as_bytes(),
                )
            }
        });
        if p == 0 {
            $crate::sys::set_errno(libc::ENOSYS);
            return $fail;
        }
        // SAFETY: p is libc's definition of the same symbol, whose type is $ty.
        unsafe { std::mem::transmute::<usize, $ty>(p) }
    }};
}

pub(crate) type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
pub(crate) type NameFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;

pub(crate) fn real_bind() -> Option<BindFn> {
    Some(real!(bind: BindFn, None))
}

pub(crate) fn real_getsockname() -> Option<NameFn> {
    Some(real!(getsockname: NameFn, None))
}
