//! Diagnostics on stderr that can never kill or stop the program, nor reach a descriptor the
//! program owns.

use std::ffi::c_int;
use std::net::IpAddr;
use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use ipvirt::read_sockaddr;

use crate::addrs::LAYOUT;
use crate::sys::{errno, set_errno};

/// A diagnostic being formatted: a stack buffer, written out with [`write_stderr`] when full and at
/// the end. Formatting into it cannot fail and never allocates.
pub(crate) struct Diag {
    buf: [u8; 1024],
    len: usize,
}

impl std::fmt::Write for Diag {
    fn write_str(&mut self, mut s: &str) -> std::fmt::Result {
        while !s.is_empty() {
            let room = self.buf.len() - self.len;
            if room == 0 {
                write_stderr(&self.buf);
                self.len = 0;
                continue;
            }
            let n = room.min(s.len());
            if let (Some(dst), Some(src)) = (
                self.buf.get_mut(self.len..self.len + n),
                s.as_bytes().get(..n),
            ) {
                dst.copy_from_slice(src);
            }
            self.len += n;
            s = s.get(n..).unwrap_or("");
        }
        Ok(())
    }
}

/// Writes a diagnostic to stderr. Nothing here may kill or abort the program: `eprintln!` panics
/// when stderr is closed or a broken pipe, and a panic in an `extern "C"` function aborts. Errors are
/// ignored and `errno` is left as it was.
pub(crate) fn say(args: std::fmt::Arguments<'_>) {
    use std::fmt::Write;
    let saved = errno();
    let mut d = Diag {
        buf: [0; 1024],
        len: 0,
    };
    let _ = d.write_fmt(args);
    write_stderr(d.buf.get(..d.len).unwrap_or(&[]));
    set_errno(saved);
}

/// The file fd 2 was when the layer was loaded (device and inode), and whether it was open.
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
static STDERR_INO: AtomicU64 = AtomicU64::new(0);
const UNKNOWN: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;
static STDERR_STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The file at fd 2 now: (device, inode), or `None` when fd 2 is closed.
fn stderr_file() -> Option<(u64, u64)> {
    // SAFETY: stat is plain data, written by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a writable stat buffer.
    (unsafe { libc::fstat(2, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Notes which file fd 2 is, once, when the layer starts (before the program's `main`): the
/// program's stderr. Diagnostics go there only while fd 2 is still that file.
pub(crate) fn remember_stderr() {
    if STDERR_STATE.load(Ordering::Acquire) != UNKNOWN {
        return;
    }
    let saved = errno();
    match stderr_file() {
        Some((dev, ino)) => {
            STDERR_DEV.store(dev, Ordering::Relaxed);
            STDERR_INO.store(ino, Ordering::Relaxed);
            STDERR_STATE.store(OPEN, Ordering::Release);
        }
        None => STDERR_STATE.store(CLOSED, Ordering::Release),
    }
    set_errno(saved);
}

/// Whether fd 2 is still the stderr the program was started with. A program may close fd 2, and
/// the next descriptor it opens — a connection, a file — takes the number: a diagnostic written
/// there would reach the program's peer (found by attack, issue 23). The inode tells them apart
/// (every socket and pipe has its own); a closed fd 2 gets nothing.
fn stderr_is_the_programs_stderr() -> bool {
    remember_stderr();
    STDERR_STATE.load(Ordering::Acquire) == OPEN
        && stderr_file().is_some_and(|(dev, ino)| {
            dev == STDERR_DEV.load(Ordering::Relaxed) && ino == STDERR_INO.load(Ordering::Relaxed)
        })
}

/// `write(2)` on fd 2, all of `bytes` or as much as it takes, without ever raising `SIGPIPE` on
/// the program, and only while fd 2 is the stderr the program started with
/// (`stderr_is_the_programs_stderr`).
///
/// A write to a pipe or socket whose reader is gone raises `SIGPIPE` on the writing thread, which
/// kills the program by default. `send(MSG_NOSIGNAL)` would avoid it but only on sockets, and
/// `poll` cannot tell a reader that vanishes between the poll and the write; so `SIGPIPE` is
/// blocked on this thread for the write (`pthread_sigmask`), and when the write failed with
/// `EPIPE` the signal it raised — pending on this thread, not delivered — is consumed with a
/// zero-timeout `sigtimedwait` before the mask is restored. A `SIGPIPE` that was already pending
/// before (the program blocks it and one arrived) is left pending, as it was found.
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    if bytes.is_empty() || !stderr_is_the_programs_stderr() {
        return;
    }
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut pipe: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: each pointer is to a live sigset_t of this frame.
    let blocked = unsafe {
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old) == 0
    };
    // SAFETY: pending is a live sigset_t.
    let was_pending = blocked
        && unsafe {
            libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1
        };
    let mut broken = false;
    while !bytes.is_empty() {
        // SAFETY: bytes is a live slice of bytes.len() readable bytes.
        let r = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if r > 0 {
            bytes = bytes.get(r as usize..).unwrap_or(&[]);
            continue;
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        broken = r < 0 && errno() == libc::EPIPE;
        break;
    }
    if blocked {
        if broken && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: pipe is an initialised set, the info pointer may be NULL, zero is a timespec.
            while unsafe { libc::sigtimedwait(&pipe, ptr::null_mut(), &zero) } < 0
                && errno() == libc::EINTR
            {}
        }
        // SAFETY: old is the mask pthread_sigmask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    }
}

/// The host's own addresses: every interface address that is not loopback. An error when
/// `getifaddrs` fails (the configuration then names the variable that replaces it).
pub(crate) fn interface_addresses() -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(format!(
            "cannot list the host's addresses (getifaddrs: {}); IPVIRT_SERVER_ADDRS names them \
             without it",
            std::io::Error::last_os_error()
        ));
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of its family's size (up to a sockaddr_in6 here).
            let family = c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
            let len = match family {
                libc::AF_INET => Some(16),
                libc::AF_INET6 => Some(28),
                _ => None,
            };
            if let Some(len) = len {
                // SAFETY: the address has `len` bytes for its family.
                let bytes = unsafe { std::slice::from_raw_parts(ifa.ifa_addr.cast::<u8>(), len) };
                if let Ok(a) = read_sockaddr(bytes, LAYOUT)
                    && !a.ip().is_loopback()
                {
                    out.push(a.ip());
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}
