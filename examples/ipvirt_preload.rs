//! A Linux `LD_PRELOAD` layer that gives the processes of a session their own loopback address and
//! virtual IP, by doing what `ipvirt` says in front of the socket calls.
//!
//! ```text
//! cargo build --example ipvirt_preload          # target/debug/examples/libipvirt_preload.so
//! IPVIRT_SESSION=7 IPVIRT_POLICY=examples/policies/linux-ld-preload.toml \
//!   LD_PRELOAD=target/debug/examples/libipvirt_preload.so python3 -m http.server --bind 127.0.0.1 8000
//! ```
//!
//! (`cargo run --example session -- --id 7 --policy FILE -- COMMAND…` sets all of this up.)
//!
//! ## Configuration (read once, when the library is loaded)
//!
//! | variable | meaning |
//! |---|---|
//! | `IPVIRT_SESSION` | the session id (required) |
//! | `IPVIRT_POLICY` | path of the TOML policy file (required): a regular file of at most 1 MiB; any path the OS accepts, UTF-8 or not |
//! | `IPVIRT_VIP` | the session's IPv4 virtual IP (optional: without it the policy's `on_lease_failure` applies) |
//! | `IPVIRT_SERVER_ADDRS` | the server's own addresses, comma-separated (optional: default, the host's non-loopback interface addresses) |
//! | `IPVIRT_SESSION_KIND` | `remote` (default) or `console` |
//! | `IPVIRT_DEBUG` | `1`: print each rewrite and its reason to stderr (and, when unconfigured, why nothing happens) |
//!
//! The process is identified, like a Windows image name, by the basename of `/proc/self/exe`.
//!
//! - **Unconfigured** (neither `IPVIRT_SESSION` nor `IPVIRT_POLICY` set, e.g. `LD_PRELOAD` exported
//!   in a shell whose helper processes are not in a session): silent, every call unchanged.
//! - **Configured but wrong** (one of the two missing, a bad number, an unreadable or invalid
//!   policy): one line on stderr per process, then every call unchanged.
//! - The policy file is opened with `O_NONBLOCK` and read only if it is a regular file (a FIFO
//!   would block every program before `main`, `/dev/zero` would never end) of at most 1 MiB (a
//!   policy lists programs and ports: a few KiB; the cap keeps the read before `main` negligible).
//!
//! Diagnostics are written with `write(2)` on fd 2, errors ignored, with `SIGPIPE` blocked around
//! the write and the one it raised consumed: a closed or broken stderr never kills the program (see
//! `write_stderr`). The layer sets no environment variable of its own, so the program sees its
//! environment exactly as it was given.
//!
//! ## What is intercepted
//!
//! `bind`, `connect`, `sendto`, `sendmsg`, `sendmmsg` (destinations, and an implicit bind of the
//! source, port 0, on a socket that is not bound yet), `getsockname`, `getpeername`, `accept`,
//! `accept4`, `recvfrom`, `recvmsg`, `recvmmsg` (addresses handed back), `getaddrinfo` (results), and
//! `socket`, `close`, `dup`, `dup2`, `dup3`, `fcntl`/`fcntl64` (`F_DUPFD`, `F_DUPFD_CLOEXEC`),
//! `close_range`, `closefrom` (to keep what it knows about descriptor numbers right). Other address
//! families pass through untouched.
//!
//! The implicit source bind before a `connect` sets `IP_BIND_ADDRESS_NO_PORT` (Linux ≥ 4.2) for the
//! bind and turns it back off if the program had it off: the bind takes the address only and the
//! kernel chooses the port at connect time, per destination, as it does natively. (A bind that took
//! the port itself made connection churn 30× slower with many `TIME_WAIT` sockets, and each port
//! served one connection whatever the destination.)
//!
//! ## Fidelity
//!
//! Apart from where addresses are placed, a program sees what it would natively: return values and
//! `errno`s come from the real calls (the layer's own helper calls never leak their `errno`), bad
//! lengths and NULL pointers reach the real call unchanged, result buffers are written only up to the
//! length the program gave, and `getsockname` on a UDP socket the layer bound implicitly (an
//! unconnected `sendto`) reports the unspecified address, as the kernel would have. A call the policy
//! refuses fails with `EADDRNOTAVAIL` ("no connectivity"), `ECONNREFUSED` (a connect or send refused
//! by isolation) or `EACCES` (a bind of another session's loopback address refused by isolation:
//! POSIX's error for an address the caller may not bind).
//!
//! Limits: whether a socket is bound is asked of the kernel (`getsockname`) unless the layer saw it
//! created and not bound since, so a descriptor number that changes hands unseen cannot leave a
//! socket without its source; but the "implicitly bound" mark of an unconnected UDP socket can go
//! stale when its number is reused by means the layer does not see (`fclose` of an `fdopen`ed
//! socket, raw system calls, `posix_spawn` file actions, `SCM_RIGHTS`), and `getsockname` on the new
//! socket then shows the unspecified address. Descriptors above 65 535 are not tracked. `fcntl` is
//! variadic in C: the layer takes its third argument as one register-sized integer (see
//! `fcntl_with`), which holds on x86-64 and AArch64 Linux. Like the kernel, the layer reads only as
//! many bytes of an address as its family needs; a pointer that is not NULL but invalid crashes the
//! program where the kernel would return `EFAULT`.

// This is an FFI shim: every exported function is unsafe by nature.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong, c_void};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use ipvirt::{
    Call, Host, Policy, RawError, RawOutcome, Refusal, Rewriter, Session, SessionId,
    SockaddrLayout, Stack, Vip, read_sockaddr, write_sockaddr,
};
use libc::{addrinfo, mmsghdr, msghdr, sockaddr, socklen_t, ssize_t};

const LAYOUT: SockaddrLayout = SockaddrLayout::LINUX;
const STORAGE: usize = ipvirt::SOCKADDR_STORAGE_LEN;

// ---- state, built once ---------------------------------------------------------------------------

struct State {
    rw: Rewriter,
    debug: bool,
}

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const DONE: u8 = 2;

static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
static STATE: AtomicPtr<State> = AtomicPtr::new(ptr::null_mut());

/// Runs when the library is loaded, before the program's `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init_at_load;

extern "C" fn init_at_load() {
    let _ = state();
}

/// The layer's state, or `None` while it is being built (calls made meanwhile pass through) or when
/// the configuration is missing or bad.
#[inline]
fn state() -> Option<&'static State> {
    let p = STATE.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: a non-null STATE points at a leaked, never-freed, immutable State.
        return Some(unsafe { &*p });
    }
    if PHASE
        .compare_exchange(UNINIT, INITIALIZING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let errno = errno();
        // A panic must not unwind out of an `extern "C"` function (it would abort the program):
        // should reading the configuration ever panic, it counts as a bad configuration.
        match std::panic::catch_unwind(build) {
            Ok(Ok(Some(s))) => STATE.store(Box::into_raw(Box::new(s)), Ordering::Release),
            Ok(Ok(None)) => {}
            Ok(Err(msg)) => say(format_args!(
                "ipvirt: {msg}; socket calls are left unchanged\n"
            )),
            Err(_) => say(format_args!(
                "ipvirt: reading the configuration failed unexpectedly; socket calls are left unchanged\n"
            )),
        }
        set_errno(errno);
        PHASE.store(DONE, Ordering::Release);
        let p = STATE.load(Ordering::Acquire);
        // SAFETY: as above.
        return (!p.is_null()).then(|| unsafe { &*p });
    }
    None
}

/// The largest policy file the layer reads: 1 MiB, far more than any policy needs (a policy lists
/// programs and ports), and little enough that reading it before `main` costs nothing noticeable.
const MAX_POLICY: u64 = 1 << 20;

/// A variable of the environment as the OS has it (`None` when unset or empty).
fn var_os(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A variable that must be text (a number, a word, addresses).
fn var_text(name: &str) -> Result<Option<String>, String> {
    var_os(name)
        .map(|v| {
            v.into_string()
                .map_err(|v| format!("{name}={v:?} is not valid UTF-8"))
        })
        .transpose()
}

/// Reads the policy file: a regular file (a FIFO would block before `main`, a device such as
/// `/dev/zero` would never end) of at most [`MAX_POLICY`] bytes. Opened with `O_NONBLOCK` so that
/// opening a FIFO cannot block either.
fn read_policy(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("IPVIRT_POLICY={path:?}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("IPVIRT_POLICY={path:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "IPVIRT_POLICY={path:?} is not a regular file (FIFOs, devices and directories are not read)"
        ));
    }
    let too_big = |len: u64| {
        format!("IPVIRT_POLICY={path:?} is larger than the 1 MiB a policy may have ({len} bytes)")
    };
    if meta.len() > MAX_POLICY {
        return Err(too_big(meta.len()));
    }
    // The file may grow between fstat and read: never read more than the cap (+1 to notice).
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_POLICY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("IPVIRT_POLICY={path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| format!("IPVIRT_POLICY={path:?} is not UTF-8 text"))
}

/// Reads the configuration. `Ok(None)`: nothing to do for this process (unconfigured, or out of
/// every list). `Err`: the configuration is present but wrong.
fn build() -> Result<Option<State>, String> {
    let debug = var_os("IPVIRT_DEBUG").is_some_and(|v| v != "0");
    let session_var = var_os("IPVIRT_SESSION");
    let policy_var = var_os("IPVIRT_POLICY");
    if session_var.is_none() && policy_var.is_none() {
        // Unconfigured (LD_PRELOAD exported in a shell, say): stay silent, every helper process of
        // a script would print the line otherwise.
        if debug {
            say(format_args!(
                "ipvirt: IPVIRT_SESSION is not set (nor IPVIRT_POLICY): the layer is off for this process\n"
            ));
        }
        return Ok(None);
    }
    let session_text = var_text("IPVIRT_SESSION")?.ok_or("IPVIRT_SESSION is not set")?;
    let id: SessionId = session_text
        .trim()
        .parse()
        .map_err(|e| format!("IPVIRT_SESSION={session_text:?}: {e}"))?;
    let session = match var_text("IPVIRT_SESSION_KIND")?.as_deref() {
        None | Some("remote") => Session::remote(id),
        Some("console") => Session::console(id),
        Some(other) => {
            return Err(format!(
                "IPVIRT_SESSION_KIND={other:?}: expected remote or console"
            ));
        }
    };
    let path = PathBuf::from(policy_var.ok_or("IPVIRT_POLICY is not set")?);
    let text = read_policy(&path)?;
    let shown = path.display();
    let policy = Policy::from_toml(&text).map_err(|e| format!("{shown}: {e}"))?;
    let vip = match var_text("IPVIRT_VIP")? {
        Some(v) => Some(
            v.parse::<Vip>()
                .map_err(|e| format!("IPVIRT_VIP={v:?}: {e}"))?,
        ),
        None => None,
    };
    let servers: Vec<IpAddr> = match var_text("IPVIRT_SERVER_ADDRS")? {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("IPVIRT_SERVER_ADDRS: {s:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()?,
        None => interface_addresses(),
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| format!("cannot read /proc/self/exe: {e}"))?;
    // Program lists are text: a name that is not UTF-8 is matched by its lossy form.
    let image = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let engine = policy
        .compile(Host::new(servers))
        .map_err(|e| format!("{shown}: {e}"))?;
    let plan = engine.process(&image);
    // The rewriter owns what it reads: the engine is dropped after this.
    let rw = engine.rewriter(session, &plan, vip);
    if debug {
        say(format_args!("ipvirt: {}", engine.explain(session, &image)));
    }
    Ok(rw.is_active().then_some(State { rw, debug }))
}

// ---- diagnostics -----------------------------------------------------------------------------------

/// A diagnostic being formatted: a stack buffer, written out with [`write_stderr`] when full and at
/// the end. Formatting into it cannot fail and never allocates.
struct Diag {
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
fn say(args: std::fmt::Arguments<'_>) {
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

/// `write(2)` on fd 2, all of `bytes` or as much as it takes, without ever raising `SIGPIPE` on
/// the program.
///
/// A write to a pipe or socket whose reader is gone raises `SIGPIPE` on the writing thread, which
/// kills the program by default. `send(MSG_NOSIGNAL)` would avoid it but only on sockets, and
/// `poll` cannot tell a reader that vanishes between the poll and the write; so `SIGPIPE` is
/// blocked on this thread for the write (`pthread_sigmask`), and when the write failed with
/// `EPIPE` the signal it raised — pending on this thread, not delivered — is consumed with a
/// zero-timeout `sigtimedwait` before the mask is restored. A `SIGPIPE` that was already pending
/// before (the program blocks it and one arrived) is left pending, as it was found.
fn write_stderr(mut bytes: &[u8]) {
    if bytes.is_empty() {
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

/// The host's own addresses: every interface address that is not loopback.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
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
    out
}

// ---- errno and the real functions ----------------------------------------------------------------

#[inline]
fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline]
fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// The next definition of `name` (libc's), resolved once.
fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
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
        static CACHE: AtomicUsize = AtomicUsize::new(0);
        let p = next_symbol(&CACHE, {
            // SAFETY: the literal ends with exactly one NUL.
            unsafe {
                CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes())
            }
        });
        if p == 0 {
            set_errno(libc::ENOSYS);
            return $fail;
        }
        // SAFETY: p is libc's definition of the same symbol, whose type is $ty.
        unsafe { std::mem::transmute::<usize, $ty>(p) }
    }};
}

type BindFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type NameFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;

fn real_bind() -> Option<BindFn> {
    Some(real!(bind: BindFn, None))
}

fn real_getsockname() -> Option<NameFn> {
    Some(real!(getsockname: NameFn, None))
}

// ---- what the layer knows about descriptors --------------------------------------------------------

const TRACKED: usize = 65_536;
/// Sockets the layer saw created (by `socket`) and not bound since: known unbound without asking.
/// Whether any other socket is bound is asked of the kernel (`getsockname`) each time it matters:
/// a descriptor number can change hands in ways the layer does not see (`fclose`, raw system
/// calls, `posix_spawn` file actions), and a wrong "not bound" costs only a failed `bind` (`EINVAL`,
/// which the layer ignores), where a wrong "bound" would leave the socket's source to the kernel.
static FRESH: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];
/// Unconnected datagram sockets the layer bound implicitly: `getsockname` reports the unspecified
/// address for them, as the kernel's own implicit bind would have.
static IMPLICIT: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];

fn slot(fd: c_int) -> Option<(usize, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < TRACKED)?;
    Some((fd / 64, 1u64 << (fd % 64)))
}

fn flag(set: &[AtomicU64], fd: c_int, on: bool) {
    if let Some((w, bit)) = slot(fd)
        && let Some(word) = set.get(w)
    {
        if on {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

fn has(set: &[AtomicU64], fd: c_int) -> bool {
    slot(fd)
        .and_then(|(w, bit)| {
            set.get(w)
                .map(|word| word.load(Ordering::Relaxed) & bit != 0)
        })
        .unwrap_or(false)
}

fn forget(fd: c_int) {
    flag(&IMPLICIT, fd, false);
    flag(&FRESH, fd, false);
}

/// Forgets every descriptor from `first` to `last` (inclusive), a word at a time.
fn forget_range(first: c_uint, last: c_uint) {
    let first = first as usize;
    let last = (last as usize).min(TRACKED - 1);
    if first > last {
        return;
    }
    for w in first / 64..=last / 64 {
        let lo = if w == first / 64 { first % 64 } else { 0 };
        let hi = if w == last / 64 { last % 64 } else { 63 };
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        for set in [&FRESH, &IMPLICIT] {
            if let Some(word) = set.get(w) {
                word.fetch_and(!mask, Ordering::Relaxed);
            }
        }
    }
}

/// `to` now refers to the socket `from` refers to (`dup`, `dup2`, `dup3`, `F_DUPFD`): it inherits
/// what the layer knows about it.
fn copy_state(from: c_int, to: c_int) {
    if from == to {
        return;
    }
    for set in [&FRESH, &IMPLICIT] {
        flag(set, to, has(set, from));
    }
}

fn mark_bound(fd: c_int) {
    flag(&FRESH, fd, false);
}

/// Whether the socket has a local address already (port != 0). On any doubt, says yes: then the
/// layer binds nothing and the real call decides.
fn is_bound(fd: c_int) -> bool {
    if has(&FRESH, fd) {
        return false;
    }
    let Some(getsockname) = real_getsockname() else {
        return true;
    };
    let mut buf = [0u8; STORAGE];
    let mut len = STORAGE as socklen_t;
    // SAFETY: buf has `len` writable bytes.
    if unsafe { getsockname(fd, buf.as_mut_ptr().cast(), &mut len) } != 0 {
        return true;
    }
    read_sockaddr(buf.get(..len as usize).unwrap_or(&[]), LAYOUT).map_or(true, |a| a.port() != 0)
}

/// Before the implicit bind of a connect: turns `IP_BIND_ADDRESS_NO_PORT` on, so the bind takes the
/// address only and `connect` picks the port for the destination, as it does natively (a port
/// taken at bind time serves one connection whatever the destination, and the search for a free
/// one degrades with many `TIME_WAIT` sockets). Returns whether it turned it on (and must turn it
/// back off: the program reads its own value with `getsockopt`). Linux ≥ 4.2; on older kernels the
/// option is unknown and the bind takes a port as before.
fn defer_port(fd: c_int) -> bool {
    let mut on: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: on is a writable c_int and len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    if r != 0 || on != 0 {
        return false;
    }
    set_no_port(fd, 1)
}

fn set_no_port(fd: c_int, value: c_int) -> bool {
    // SAFETY: value is a readable c_int and the length says so.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const value).cast(),
            std::mem::size_of::<c_int>() as socklen_t,
        ) == 0
    }
}

fn socket_type(fd: c_int) -> Option<c_int> {
    let mut ty: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: ty is a writable c_int and len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut ty).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(ty)
}

fn stack_of(fd: c_int, addr: &[u8]) -> Stack {
    // Only `::` needs the answer: ask the kernel then, and only then.
    let is_any6 = LAYOUT.family(addr).ok() == Some(LAYOUT.af_inet6())
        && addr.get(8..24).is_some_and(|b| b.iter().all(|&x| x == 0));
    if !is_any6 {
        return Stack::Single;
    }
    let mut v6only: c_int = 1;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: v6only is a writable c_int and len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw mut v6only).cast(),
            &mut len,
        )
    };
    if r == 0 && v6only == 0 {
        Stack::Dual
    } else {
        Stack::Single
    }
}

// ---- copying addresses in and out ----------------------------------------------------------------

/// A private copy of the program's address: as many bytes as its family needs (never more than it
/// said it has), the rest zero. `None` when the layer has nothing to do with it.
///
/// # Safety
///
/// `addr` must be NULL or point at `len` readable bytes (what the kernel requires too).
unsafe fn copy_in(addr: *const sockaddr, len: socklen_t) -> Option<([u8; STORAGE], usize)> {
    let len = len as usize;
    if addr.is_null() || !(2..=STORAGE).contains(&len) {
        return None;
    }
    let mut buf = [0u8; STORAGE];
    // SAFETY: len >= 2 and the caller guarantees len readable bytes.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), buf.as_mut_ptr(), 2) };
    let family = LAYOUT.family(buf.get(..2)?).ok()?;
    let need = if family == LAYOUT.af_inet() {
        16
    } else if family == LAYOUT.af_inet6() {
        28
    } else {
        return None;
    };
    let n = len.min(need);
    // SAFETY: n <= len readable bytes; buf holds STORAGE >= n bytes.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), buf.as_mut_ptr(), n) };
    Some((buf, len))
}

/// Rewrites an address the kernel handed back into a buffer of `cap` bytes, of which it filled
/// `min(cap, actual)`; only those bytes are ever written.
///
/// # Safety
///
/// `addr` must point at `cap` writable bytes.
unsafe fn fix_reported(
    st: &State,
    fd: c_int,
    addr: *mut sockaddr,
    cap: socklen_t,
    actual: socklen_t,
    own_name: bool,
) {
    let (cap, actual) = (cap as usize, actual as usize);
    let n = cap.min(actual).min(STORAGE);
    if addr.is_null() || n < 2 {
        return;
    }
    let mut local = [0u8; STORAGE];
    // SAFETY: the kernel wrote n <= cap bytes at addr.
    unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), local.as_mut_ptr(), n) };
    let full = actual.min(STORAGE);
    let Some(view) = local.get_mut(..full) else {
        return;
    };
    let changed = if own_name && has(&IMPLICIT, fd) {
        // The layer bound this unconnected datagram socket implicitly: report what the kernel's
        // own implicit bind gives, the unspecified address (same port).
        match read_sockaddr(view, LAYOUT) {
            Ok(a) => {
                let any: IpAddr = if a.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                let mut out = [0u8; STORAGE];
                let ok = write_sockaddr(SocketAddr::new(any, a.port()), &mut out, LAYOUT).is_ok();
                // Keep every byte but the address: write only the address part.
                let (from, to) = if a.is_ipv4() { (4, 8) } else { (8, 24) };
                if ok && let (Some(dst), Some(src)) = (view.get_mut(from..to), out.get(from..to)) {
                    dst.copy_from_slice(src);
                }
                ok
            }
            Err(_) => false,
        }
    } else {
        let before = st.debug.then(|| read_sockaddr(view, LAYOUT).ok()).flatten();
        let changed = st.rw.raw(LAYOUT).reported(view) == Ok(RawOutcome::Rewritten);
        if changed && let Some(b) = before {
            say(format_args!(
                "ipvirt: {}\n",
                st.rw.explain(Call::Reported, b)
            ));
        }
        changed
    };
    if changed {
        // SAFETY: n <= cap writable bytes at addr.
        unsafe { ptr::copy_nonoverlapping(local.as_ptr(), addr.cast::<u8>(), n) };
    }
}

/// With `IPVIRT_DEBUG`, prints what happened to the address the program gave (`before`, `n` bytes).
fn debug(before: Option<[u8; STORAGE]>, n: usize, st: &State, call: Call) {
    if let Some(b) = before
        && let Ok(a) = read_sockaddr(b.get(..n).unwrap_or(&[]), LAYOUT)
    {
        say(format_args!("ipvirt: {}\n", st.rw.explain(call, a)));
    }
}

/// Fails a call the policy refuses, with the refusal's errno (ipvirt's one table: "no
/// connectivity" `EADDRNOTAVAIL`; isolation `ECONNREFUSED` for a connect or send, `EACCES` for a
/// bind).
fn fail_with(r: Refusal) -> c_int {
    set_errno(r.errno());
    -1
}

/// Whether the address in `view` is `[::1]`.
fn is_ipv6_loopback(view: &[u8]) -> bool {
    read_sockaddr(view, LAYOUT).is_ok_and(|a| a.ip() == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
}

/// Turns `IPV6_V6ONLY` off on `fd`; whether it worked.
fn clear_v6only(fd: c_int) -> bool {
    let off: c_int = 0;
    // SAFETY: setsockopt reads an int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const off).cast(),
            std::mem::size_of::<c_int>() as socklen_t,
        ) == 0
    }
}

/// The implicit source bind before a connect (`for_connect`) or send: `Ok(true)` if the layer
/// bound the socket. Before a connect, the bind takes the address only (`defer_port`).
fn bind_source(fd: c_int, source: &[u8], for_connect: bool) -> Result<bool, c_int> {
    if is_bound(fd) {
        return Ok(false);
    }
    if !for_connect && socket_type(fd) == Some(libc::SOCK_STREAM) {
        return Ok(false);
    }
    let Some(bind) = real_bind() else {
        return Err(libc::ENOSYS);
    };
    let restore = for_connect && defer_port(fd);
    // SAFETY: source holds a complete sockaddr of its length.
    let r = unsafe { bind(fd, source.as_ptr().cast(), source.len() as socklen_t) };
    let e = errno();
    if restore {
        // The option matters at bind time only: the port stays unchosen until connect.
        set_no_port(fd, 0);
    }
    if r != 0 {
        // EINVAL: it was bound after all (another thread): carry on as the program asked.
        return if e == libc::EINVAL { Ok(false) } else { Err(e) };
    }
    mark_bound(fd);
    Ok(true)
}

// ---- the interposed functions --------------------------------------------------------------------

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
unsafe fn fcntl_with(
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

/// `fcntl(2)`: see [`fcntl_with`].
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

/// `bind(2)` with the address ipvirt says.
///
/// # Safety
///
/// As `bind(2)`: `addr` is NULL or points at `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(bind: BindFn, -1);
    let saved = errno();
    let Some(st) = state() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: the caller's contract is bind's.
    let Some((mut buf, n)) = (unsafe { copy_in(addr, len) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    let mut stack = stack_of(fd, view);
    if stack == Stack::Single && st.rw.maps_ipv6_loopback() && is_ipv6_loopback(view) {
        // SPEC §8: `::1` is mapped to the session's IPv4-mapped loopback, which a v6-only socket
        // cannot bind: take the option off first (the socket then serves that one address).
        if clear_v6only(fd) {
            stack = Stack::Dual;
        }
    }
    set_errno(saved);
    let call = if stack == Stack::Dual {
        Call::BindDualStack
    } else {
        Call::Bind
    };
    let r = match st.rw.raw(LAYOUT).bind_on(view, stack) {
        Ok(RawOutcome::Rewritten) => {
            debug(before, n, st, call);
            // SAFETY: buf holds len bytes (n == len): the program's address with the new IP.
            unsafe { real(fd, buf.as_ptr().cast(), len) }
        }
        Ok(RawOutcome::Unchanged | RawOutcome::OtherFamily) => {
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, call);
            return fail_with(r);
        }
        Err(_) => {
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
    };
    if r == 0 {
        mark_bound(fd);
    }
    r
}

/// `connect(2)` to the destination ipvirt says, from the source it says on an unbound socket.
///
/// # Safety
///
/// As `connect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(connect: unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int, -1);
    let saved = errno();
    let Some(st) = state() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: the caller's contract is connect's.
    let Some((mut buf, n)) = (unsafe { copy_in(addr, len) }) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(fd, addr, len) };
    };
    let before = st.debug.then_some(buf);
    let view = buf.get_mut(..n).unwrap_or_default();
    if st.rw.maps_ipv6_loopback() && is_ipv6_loopback(view) && !is_bound(fd) {
        // SPEC §8: the mapped destination is IPv4-mapped; an unbound v6-only socket takes the
        // option off first (a bound one was bound by the program, which chose it).
        clear_v6only(fd);
    }
    let mut src = [0u8; STORAGE];
    match st.rw.raw(LAYOUT).connect(view, &mut src) {
        Ok(raw) => {
            let dest_changed = raw.dest == RawOutcome::Rewritten;
            if let Some(sl) = raw.source_len
                && let Err(e) = bind_source(fd, src.get(..sl).unwrap_or(&[]), true)
            {
                set_errno(e);
                return -1;
            }
            flag(&IMPLICIT, fd, false);
            // The kernel binds a socket when it connects it.
            flag(&FRESH, fd, false);
            if dest_changed || raw.source_len.is_some() {
                debug(before, n, st, Call::Connect);
            }
            set_errno(saved);
            let ptr = if dest_changed {
                buf.as_ptr().cast()
            } else {
                addr
            };
            // SAFETY: ptr is the program's address or our complete copy of len bytes.
            unsafe { real(fd, ptr, len) }
        }
        Err(RawError::Refused(r)) => {
            debug(before, n, st, Call::Connect);
            fail_with(r)
        }
        Err(_) => {
            set_errno(saved);
            // SAFETY: forwarded unchanged.
            unsafe { real(fd, addr, len) }
        }
    }
}

/// Rewrites a send destination in `buf` and binds the source if needed. `Err(-1)` with errno set:
/// fail the call.
fn prepare_send(st: &State, fd: c_int, view: &mut [u8]) -> Result<bool, ssize_t> {
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

/// The capacity of an `(addr, *len)` result pair before a call: 0 when either is NULL.
///
/// # Safety
///
/// `len` must be NULL or point at a `socklen_t`.
unsafe fn capacity(addr: *mut sockaddr, len: *mut socklen_t) -> socklen_t {
    if addr.is_null() || len.is_null() {
        0
    } else {
        // SAFETY: len points at a socklen_t (caller).
        unsafe { *len }
    }
}

/// After a call that filled `(addr, *len)` (given `cap` bytes) and returned `r`: shows the address
/// as the program should see it. `ok` says whether the call succeeded; `fd` is the socket the
/// address belongs to; `own_name` is true for `getsockname`.
///
/// # Safety
///
/// When `ok` and `cap > 0`, `addr` has `cap` bytes the kernel filled and `len` points at the length
/// it set.
unsafe fn show_result(
    ok: bool,
    fd: c_int,
    addr: *mut sockaddr,
    cap: socklen_t,
    len: *mut socklen_t,
    own_name: bool,
) {
    if ok
        && cap > 0
        && let Some(st) = state()
    {
        // SAFETY: the caller's contract.
        unsafe { fix_reported(st, fd, addr, cap, *len, own_name) };
    }
}

/// `getsockname(2)`: the session loopback shown as the localhost address the program used.
///
/// # Safety
///
/// As `getsockname(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(getsockname: NameFn, -1);
    // SAFETY: getsockname's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    unsafe {
        let r = real(fd, addr, len);
        show_result(r == 0, fd, addr, cap, len, true);
        r
    }
}

/// `getpeername(2)`: as `getsockname`.
///
/// # Safety
///
/// As `getpeername(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(getpeername: NameFn, -1);
    // SAFETY: getpeername's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    unsafe {
        let r = real(fd, addr, len);
        show_result(r == 0, fd, addr, cap, len, false);
        r
    }
}

/// `accept(2)`: the peer address as the program should see it.
///
/// # Safety
///
/// As `accept(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(accept: NameFn, -1);
    // SAFETY: accept's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged; then the kernel filled addr and *len.
    let r = unsafe { real(fd, addr, len) };
    if r >= 0 {
        forget(r);
    }
    // SAFETY: as above.
    unsafe { show_result(r >= 0, r, addr, cap, len, false) };
    r
}

/// `accept4(2)`: as `accept`.
///
/// # Safety
///
/// As `accept4(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let real = real!(accept4: unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int, -1);
    // SAFETY: accept4's contract: len is NULL or points at a socklen_t.
    let cap = unsafe { capacity(addr, len) };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, addr, len, flags) };
    if r >= 0 {
        forget(r);
    }
    // SAFETY: the kernel filled addr and *len when r >= 0.
    unsafe { show_result(r >= 0, r, addr, cap, len, false) };
    r
}

/// `recvfrom(2)`: the sender's address as the program should see it.
///
/// # Safety
///
/// As `recvfrom(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    data: *mut c_void,
    size: usize,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let real = real!(recvfrom: unsafe extern "C" fn(c_int, *mut c_void, usize, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t, -1);
    // SAFETY: len is NULL or points at a socklen_t.
    let cap = if len.is_null() || addr.is_null() {
        0
    } else {
        // SAFETY: len is NULL or points at a socklen_t.
        unsafe { *len }
    };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, data, size, flags, addr, len) };
    if r >= 0
        && cap > 0
        && let Some(st) = state()
    {
        // SAFETY: the kernel filled addr (cap bytes) and set *len.
        unsafe { fix_reported(st, fd, addr, cap, *len, false) };
    }
    r
}

/// `recvmsg(2)`: the sender's address (`msg_name`) as the program should see it.
///
/// # Safety
///
/// As `recvmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let real = real!(recvmsg: unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t, -1);
    // SAFETY: msg is NULL or points at a msghdr.
    let (name, cap) = if msg.is_null() {
        (ptr::null_mut(), 0)
    } else {
        // SAFETY: msg is NULL or points at a msghdr.
        unsafe { ((*msg).msg_name, (*msg).msg_namelen) }
    };
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, msg, flags) };
    if r >= 0
        && !name.is_null()
        && let Some(st) = state()
    {
        // SAFETY: the kernel filled msg_name (cap bytes) and set msg_namelen.
        unsafe { fix_reported(st, fd, name.cast(), cap, (*msg).msg_namelen, false) };
    }
    r
}

/// `recvmmsg(2)`: each sender's address as the program should see it.
///
/// # Safety
///
/// As `recvmmsg(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    vec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    let real = real!(recvmmsg: unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int, -1);
    let st = state();
    // Remember each name buffer's capacity before the kernel overwrites msg_namelen.
    let count = if vec.is_null() || st.is_none() {
        0
    } else {
        (vlen as usize).min(1024)
    };
    let mut caps = [0 as socklen_t; 1024];
    for (i, cap) in caps.iter_mut().enumerate().take(count) {
        // SAFETY: i < count <= vlen entries.
        *cap = unsafe { (*vec.add(i)).msg_hdr.msg_namelen };
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { real(fd, vec, vlen, flags, timeout) };
    if let Some(st) = st
        && r > 0
    {
        for (i, &cap) in caps.iter().enumerate().take((r as usize).min(count)) {
            // SAFETY: i < r entries were filled by the kernel.
            let h = unsafe { &mut (*vec.add(i)).msg_hdr };
            if !h.msg_name.is_null() {
                // SAFETY: msg_name has cap bytes, filled up to msg_namelen.
                unsafe { fix_reported(st, fd, h.msg_name.cast(), cap, h.msg_namelen, false) };
            }
        }
    }
    r
}

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
