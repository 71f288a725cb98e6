//! `socket`, `close`, `dup*`, `fcntl(F_DUPFD…)`, `close_range`, `closefrom`: keeping what the layer
//! knows about descriptor numbers right.

use std::ffi::{c_int, c_uint, c_ulong};

use crate::fds::{FRESH, copy_state, flag, forget, forget_range};

/// `socket(2)`: forgets anything known about the descriptor number it returns.
///
/// # Safety
///
/// As `socket(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let real = real!(socket: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int, -1);
    // SAFETY: forwarded unchanged.
    let fd = unsafe { real(domain, ty, protocol) };
    if fd >= 0 {
        forget(fd);
        flag(&FRESH, fd, true);
    }
    fd
}

/// `close(2)`: forgets anything known about the descriptor.
///
/// # Safety
///
/// As `close(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let real = real!(close: unsafe extern "C" fn(c_int) -> c_int, -1);
    forget(fd);
    // SAFETY: forwarded unchanged.
    unsafe { real(fd) }
}

/// `dup(2)`: the new descriptor inherits what the layer knows about the old one.
///
/// # Safety
///
/// As `dup(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let real = real!(dup: unsafe extern "C" fn(c_int) -> c_int, -1);
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd) };
    if r >= 0 {
        copy_state(fd, r);
    }
    r
}

/// `dup2(2)`: `new` (closed first if it was open) inherits what the layer knows about `old`.
///
/// # Safety
///
/// As `dup2(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let real = real!(dup2: unsafe extern "C" fn(c_int, c_int) -> c_int, -1);
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(old, new) };
    if r >= 0 {
        copy_state(old, r);
    }
    r
}

/// `dup3(2)`: as `dup2`.
///
/// # Safety
///
/// As `dup3(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let real = real!(dup3: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int, -1);
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(old, new, flags) };
    if r >= 0 {
        copy_state(old, r);
    }
    r
}

/// The real `fcntl`-like function `f` with the program's argument, then, for `F_DUPFD` and
/// `F_DUPFD_CLOEXEC`, the new descriptor inherits what the layer knows about `fd`.
///
/// The C function is variadic (`int fcntl(int, int, ...)`) and Rust cannot define one; the layer
/// takes the optional third argument as one register-sized integer, which is how every `fcntl`
/// command passes it (an `int` or a pointer) on the Linux ABIs (x86-64, AArch64), and hands it on
/// to the real, variadic, function unchanged. Commands without an argument get an unused value.
///
/// # Safety
///
/// As `fcntl(2)`; `f` is libc's `fcntl` or `fcntl64`.
pub(crate) unsafe fn fcntl_with(
    f: unsafe extern "C" fn(c_int, c_int, ...) -> c_int,
    fd: c_int,
    cmd: c_int,
    arg: c_ulong,
) -> c_int {
    // SAFETY: forwarded unchanged (see above for the argument).
    let r = unsafe { f(fd, cmd, arg) };
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        copy_state(fd, r);
    }
    r
}

/// `fcntl(2)`: see `fcntl_with`.
///
/// # Safety
///
/// As `fcntl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let real = real!(fcntl: unsafe extern "C" fn(c_int, c_int, ...) -> c_int, -1);
    // SAFETY: the caller's contract is fcntl's.
    unsafe { fcntl_with(real, fd, cmd, arg) }
}

/// `fcntl64`: what `fcntl` calls are compiled to with `_FILE_OFFSET_BITS=64` (glibc ≥ 2.28).
///
/// # Safety
///
/// As `fcntl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let real = real!(fcntl64: unsafe extern "C" fn(c_int, c_int, ...) -> c_int, -1);
    // SAFETY: the caller's contract is fcntl's.
    unsafe { fcntl_with(real, fd, cmd, arg) }
}

/// `close_range(2)`: forgets the descriptors it closes (not those it only marks close-on-exec).
///
/// # Safety
///
/// As `close_range(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let real = real!(close_range: unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int, -1);
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(first, last, flags) };
    if r == 0 && (flags as c_uint) & libc::CLOSE_RANGE_CLOEXEC == 0 {
        forget_range(first, last);
    }
    r
}

/// `closefrom(3)`: forgets every descriptor from `low` on.
///
/// # Safety
///
/// As `closefrom(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(low: c_int) {
    // `()`: closefrom returns nothing, so a missing libc definition can only do nothing.
    #[allow(clippy::unused_unit)]
    let real = real!(closefrom: unsafe extern "C" fn(c_int), ());
    forget_range(c_uint::try_from(low).unwrap_or(0), c_uint::MAX);
    // SAFETY: forwarded unchanged.
    unsafe { real(low) }
}
