//! Refusals reported to the `ipvirt` service, which logs each kind once per session with the
//! program (SPEC §11).
//!
//! The service puts its control socket's path in a session's environment (`IPVIRT_CONTROL`)
//! when the session uses this layer. At a refusal, the layer sends the service one line
//! (`{"op":"refusal","reason":"…","errno":N}`) on a fresh, non-blocking Unix socket and waits for
//! the answer at most 200 ms (the service names the process while it still runs), then closes
//! it: the refused call returns within that bound whatever the service does. The
//! service decides the session and the program from the connection's credentials (the process's
//! cgroup and executable), never from the line. A process reports each kind of refusal once (a
//! small table of what it reported); without `IPVIRT_CONTROL`, nothing is sent.
//!
//! The layer's library has no unit tests of its own (a test binary would export its hooks); this is
//! tested end to end by `examples/cli/tests/logins.rs` (a preload session's refusals in the
//! service's log).
//!
//! The system calls are made directly (`syscall(2)`): the layer's own `connect` is never
//! re-entered, and `errno` is left as the refusal set it.

use std::ffi::c_int;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ipvirt::Refusal;

use crate::sys::{errno, set_errno};

/// The control socket's address (`sockaddr_un`), when `IPVIRT_CONTROL` names one that fits.
static CONTROL: OnceLock<Option<(libc::sockaddr_un, libc::socklen_t)>> = OnceLock::new();

/// How long a report waits for the service's answer at most: 200 ms, once per kind of refusal
/// and process.
const ANSWER_WAIT_NS: libc::c_long = 200_000_000;

/// Fingerprints of the refusals this process reported (0: a free slot).
static REPORTED: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// Reads `IPVIRT_CONTROL` (at load, with the rest of the configuration). A path that does not fit
/// a `sockaddr_un` is an error naming it.
pub(crate) fn configure() -> Result<(), String> {
    let Some(path) = crate::config::var_os("IPVIRT_CONTROL") else {
        let _ = CONTROL.set(None);
        return Ok(());
    };
    let bytes = path.as_encoded_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        let _ = CONTROL.set(None);
        return Err(format!(
            "IPVIRT_CONTROL={path:?}: not a socket path (1 to {} bytes, no NUL)",
            sa.sun_path.len() - 1
        ));
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &b) in sa.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    let _ = CONTROL.set(Some((sa, len as libc::socklen_t)));
    Ok(())
}

/// FNV-1a of the refusal's words and errno; never 0.
fn fingerprint(reason: &[u8], err: c_int) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in reason.iter().chain(&err.to_ne_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// Whether this process reports `h` for the first time (and remembers it). A full table forgets
/// the slot it needs: at worst a kind is reported again, which the service counts once.
fn first(h: u64) -> bool {
    let slot = &REPORTED[(h % REPORTED.len() as u64) as usize];
    slot.swap(h, Ordering::Relaxed) != h
}

/// A line buffer: formatting into it cannot fail and never allocates; what does not fit is cut.
struct Line {
    buf: [u8; 768],
    len: usize,
}

impl Line {
    fn push(&mut self, b: &[u8]) {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The request line for `reason` (JSON-escaped) and `err`; `None` if it does not fit.
fn request(reason: &[u8], err: c_int) -> Option<Line> {
    use std::fmt::Write;
    let mut l = Line {
        buf: [0; 768],
        len: 0,
    };
    l.push(br#"{"op":"refusal","reason":""#);
    for &b in reason {
        match b {
            b'"' => l.push(br#"\""#),
            b'\\' => l.push(br"\\"),
            0..=0x1f => {
                let _ = write!(l, "\\u{b:04x}");
            }
            _ => l.push(&[b]),
        }
    }
    let _ = writeln!(l, r#"","errno":{err}}}"#);
    (l.len < l.buf.len()).then_some(l)
}

/// Reports `r` to the service, once per kind and process, without blocking; `errno` is kept.
pub(crate) fn refused(r: &Refusal) {
    let Some(Some((sa, len))) = CONTROL.get() else {
        return;
    };
    let saved = errno();
    let mut words = Line {
        buf: [0; 768],
        len: 0,
    };
    {
        use std::fmt::Write;
        let _ = write!(words, "{r}");
    }
    let reason = &words.buf[..words.len.min(ipvirt_host::control::MAX_REASON)];
    let err = r.errno();
    if first(fingerprint(reason, err))
        && let Some(line) = request(reason, err)
    {
        send(sa, *len, &line.buf[..line.len]);
    }
    set_errno(saved);
}

/// One line to the socket at `sa`, on a non-blocking socket closed at once; errors ignored.
fn send(sa: &libc::sockaddr_un, len: libc::socklen_t, line: &[u8]) {
    // SAFETY: raw system calls on a descriptor this function owns; `sa` is `len` valid bytes and
    // `line` is a valid buffer.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return;
        }
        let ok = libc::syscall(
            libc::SYS_connect,
            fd,
            std::ptr::from_ref(sa).cast::<libc::sockaddr>(),
            len,
        ) == 0;
        if ok {
            // MSG_NOSIGNAL: a service that closed first raises no SIGPIPE in the program.
            let sent = libc::syscall(
                libc::SYS_sendto,
                fd,
                line.as_ptr(),
                line.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                std::ptr::null::<libc::sockaddr>(),
                0,
            );
            if sent > 0 {
                // The service reads this process's cgroup and executable before it answers: wait
                // for the answer (at most ANSWER_WAIT), so a program that exits right after the
                // refused call is still there to be named.
                let mut p = libc::pollfd {
                    fd: fd as c_int,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let t = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: ANSWER_WAIT_NS,
                };
                let _ = libc::syscall(
                    libc::SYS_ppoll,
                    &mut p,
                    1,
                    &t,
                    std::ptr::null::<libc::sigset_t>(),
                    0,
                );
            }
        }
        let _ = libc::syscall(libc::SYS_close, fd);
    }
}
