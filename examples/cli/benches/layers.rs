//! The two Linux layers' overhead on real system calls: each group measures the bare libc calls and
//! the same calls through the `LD_PRELOAD` layer (its exported `socket`, `bind`, `connect`, `close`,
//! loaded with `dlopen` into this process and configured for session 7 with virtual loopback on)
//! and, as root, in a kernel-layer session (`kernel_session`: this process moves itself into
//! session 7's cgroup, started by `ipvirt run --layer kernel`, for that measurement and back
//! out after it; the calls are the bare libc ones, rewritten by the cgroup-BPF programs), in the
//! same run.
//!
//! Run: `cargo bench -p ipvirt-cli --bench layers` (cargo builds the layer, a dev-dependency, and
//! the `ipvirt` command first). Linux only; elsewhere it prints why it did nothing.
//!
//! For the kernel layer it also prints, before each criterion group, three arms measured in
//! interleaved rounds (bare; in a cgroup with a pass-only program, `r0 = 1; exit`, attached: the
//! floor any cgroup-BPF layer pays for the kernel's hook itself; in the kernel session) and what
//! the layer's own program costs per run as the kernel counts it (`BPF_ENABLE_STATS`).
//!
//! - `socket_bind_close`: `socket` + `bind(127.0.0.1:0)` + `close`; the layer rewrites the bind to
//!   the session loopback `127.0.0.8:0`.
//! - `loopback_connect`: `socket` + `connect(127.0.0.1:PORT)` + `close` to a listener; the layer
//!   sends it to `127.0.0.8:PORT` and binds the source to `127.0.0.8:0` first (the implicit bind is
//!   part of the rewrite, so it is part of the cost).
//! - `connection_churn`: `socket` + `connect(127.0.0.1:PORT)` + `close`, the client closing first so
//!   each connection leaves a `TIME_WAIT` socket on the client side, as short-lived connections of a
//!   real program do. Under the layer the implicit source bind sets `IP_BIND_ADDRESS_NO_PORT`, so
//!   the port is chosen at connect time as natively; a bind that took the port itself would search
//!   past every `TIME_WAIT` port (LAYERS.md: 1.2 s native, 36 s with the bind for 20 000).
//!   Before the criterion group it times 20 000 natively and 20 000 through the layer, interleaved
//!   in rounds of 1 000, and prints the totals, the median rounds and their ratios. It runs in a network namespace of its own (it needs root, and
//!   is skipped otherwise), so the tens of thousands of `TIME_WAIT` sockets never crowd the
//!   machine's loopback ports that other programs use.
//!
//! `IPVIRT_BENCH_LAYER=/path/to/libipvirt_preload.so` measures another build of the layer (an older
//! commit's, say) instead of this tree's.

// dlopen/dlsym and raw system calls: this bench is FFI by nature.
#![allow(unsafe_code)]

// BPF_ENABLE_STATS, to read what the kernel layer's programs cost per run.
#[cfg(target_os = "linux")]
use ipvirt_kernel::sys;

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{CString, c_int, c_void};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::Command;

    use libc::{sockaddr, socklen_t};

    pub(crate) type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
    pub(crate) type AddrFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
    pub(crate) type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

    #[derive(Clone, Copy)]
    pub(crate) struct Calls {
        pub(crate) socket: SocketFn,
        pub(crate) bind: AddrFn,
        pub(crate) connect: AddrFn,
        pub(crate) close: CloseFn,
    }

    pub(crate) fn bare() -> Calls {
        Calls {
            socket: libc::socket,
            bind: libc::bind,
            connect: libc::connect,
            close: libc::close,
        }
    }

    fn library() -> Result<PathBuf, String> {
        if let Some(lib) = std::env::var_os("IPVIRT_BENCH_LAYER") {
            return Ok(PathBuf::from(lib));
        }
        Ok(ipvirt_testkit::preload_lib())
    }

    /// Loads the layer for session 7 with this benchmark listed for virtual loopback.
    pub(crate) fn layered() -> Result<Calls, String> {
        let lib = library()?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let image = std::fs::read_link("/proc/self/exe").unwrap_or(exe);
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let policy = std::env::temp_dir().join(format!("ipvirt-bench-{}.toml", std::process::id()));
        std::fs::write(
            &policy,
            format!("[virtual_loopback]\nenabled = true\nprograms = [{name:?}]\n"),
        )
        .map_err(|e| e.to_string())?;
        // SAFETY: set before the library is loaded, while this process runs one thread.
        unsafe {
            std::env::set_var("IPVIRT_SESSION", "7");
            std::env::set_var("IPVIRT_POLICY", &policy);
        }
        let path = CString::new(lib.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: dlopen of a path; the library's constructor reads the variables set above.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("dlopen {} failed", lib.display()));
        }
        let sym = |name: &str| -> Result<*mut c_void, String> {
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: handle is a live library handle and c a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
            if p.is_null() {
                Err(format!("the layer does not export {name}"))
            } else {
                Ok(p)
            }
        };
        // SAFETY: the layer exports these symbols with exactly libc's signatures.
        unsafe {
            Ok(Calls {
                socket: std::mem::transmute::<*mut c_void, SocketFn>(sym("socket")?),
                bind: std::mem::transmute::<*mut c_void, AddrFn>(sym("bind")?),
                connect: std::mem::transmute::<*mut c_void, AddrFn>(sym("connect")?),
                close: std::mem::transmute::<*mut c_void, CloseFn>(sym("close")?),
            })
        }
    }

    pub(crate) fn sin(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        }
    }

    /// One `socket` + `bind` + `close`.
    pub(crate) fn bind_once(c: Calls, addr: &libc::sockaddr_in) {
        // SAFETY: plain system calls on a socket this function owns.
        unsafe {
            let fd = (c.socket)(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = (c.bind)(fd, (addr as *const libc::sockaddr_in).cast(), 16);
            assert_eq!(r, 0, "bind failed");
            (c.close)(fd);
        }
    }

    /// One `socket` + `connect` + `close` (with SO_LINGER 0, so no TIME_WAIT piles up).
    pub(crate) fn connect_once(c: Calls, addr: &libc::sockaddr_in) {
        // SAFETY: plain system calls on a socket this function owns.
        unsafe {
            let fd = (c.socket)(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = (c.connect)(fd, (addr as *const libc::sockaddr_in).cast(), 16);
            assert_eq!(r, 0, "connect failed");
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as socklen_t,
            );
            (c.close)(fd);
        }
    }

    /// `n` × (`socket` + `connect` + `close`), the client closing first: its side of each
    /// connection stays in `TIME_WAIT`. Returns the time taken.
    pub(crate) fn churn(c: Calls, addr: &libc::sockaddr_in, n: u64) -> std::time::Duration {
        let start = std::time::Instant::now();
        for _ in 0..n {
            // SAFETY: plain system calls on a socket this function owns.
            unsafe {
                let fd = (c.socket)(libc::AF_INET, libc::SOCK_STREAM, 0);
                let r = (c.connect)(fd, (addr as *const libc::sockaddr_in).cast(), 16);
                assert_eq!(r, 0, "connect failed: {}", std::io::Error::last_os_error());
                (c.close)(fd);
            }
        }
        start.elapsed()
    }

    /// A listener (backlog 4096) that accepts each connection, reads until the client closes, then
    /// closes its side: the client closes first and keeps the `TIME_WAIT`.
    pub(crate) fn graceful_listener(ip: [u8; 4], port: u16) -> std::io::Result<u16> {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let addr = sin(ip, port);
        // SAFETY: a socket this function owns, bound and listening, then handed to a TcpListener.
        let l = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            if fd < 0
                || libc::bind(fd, (&raw const addr).cast(), 16) != 0
                || libc::listen(fd, 4096) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            TcpListener::from_raw_fd(fd)
        };
        let port = l.local_addr()?.port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            for mut s in l.incoming().flatten() {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        Ok(port)
    }

    /// Moves this thread (criterion's) into a new network namespace with `lo` up. Threads and
    /// processes started afterwards from it live there too.
    pub(crate) fn private_network() -> Result<(), String> {
        // SAFETY: unshare changes only this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot make a network namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        let ok = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err("`ip link set lo up` failed".into())
        }
    }

    /// A kernel-layer session (session 7, this benchmark's executable listed for virtual
    /// loopback) that this process can enter and leave. Dropping it ends the session and detaches
    /// the layer's root.
    pub(crate) struct KernelSession {
        launcher: PathBuf,
        child: std::process::Child,
        root: String,
        session: PathBuf,
        home: PathBuf,
    }

    fn cgroup2() -> Option<PathBuf> {
        ipvirt_testkit::cgroup2_mount()
    }

    /// This process's own cgroup2 directory (where it returns after a measurement).
    fn home_cgroup(mount: &std::path::Path) -> Result<PathBuf, String> {
        let here = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let rel = here
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this process has no cgroup2 path")?;
        Ok(mount.join(rel.trim_start_matches('/')))
    }

    pub(crate) fn kernel_session() -> Result<KernelSession, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the kernel layer needs root".into());
        }
        let mount = cgroup2().ok_or("no cgroup2 hierarchy is mounted")?;
        let launcher = PathBuf::from(env!("CARGO_BIN_EXE_ipvirt"));
        let policy = std::env::temp_dir().join(format!("ipvirt-bench-{}.toml", std::process::id()));
        let root = format!("ipvirt-bench-{}", std::process::id());
        let child = Command::new(&launcher)
            .args([
                "run",
                "--layer",
                "kernel",
                "--kernel-root",
                &root,
                "--id",
                "7",
                "--policy",
            ])
            .arg(&policy)
            .arg("--lease-book")
            .arg(std::env::temp_dir().join(format!("ipvirt-bench-{}.json", std::process::id())))
            .args(["--", "sleep", "3600"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let k = KernelSession {
            launcher,
            child,
            session: mount.join(&root).join("session-7"),
            home: home_cgroup(&mount)?,
            root,
        };
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(k.session.join("cgroup.events"))
            .is_ok_and(|s| s.contains("populated 1"))
        {
            if start.elapsed() > std::time::Duration::from_secs(30) {
                return Err("the kernel session did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(k)
    }

    impl KernelSession {
        /// `program`'s (`run_time_ns`, `run_cnt`), from `ipvirt kernel stats`.
        pub(crate) fn run_stats(&self, program: &str) -> Option<(u64, u64)> {
            let o = Command::new(&self.launcher)
                .args(["kernel", "stats", "--root", &self.root])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("program {program} ")))?;
            let field = |k: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((field("run_time_ns=")?, field("runs=")?))
        }

        fn join(dir: &std::path::Path) {
            join(dir);
        }
        /// Moves this process into the session.
        pub(crate) fn enter(&self) {
            Self::join(&self.session);
        }
        /// Moves this process back where it was.
        pub(crate) fn leave(&self) {
            Self::join(&self.home);
        }
    }

    impl Drop for KernelSession {
        fn drop(&mut self) {
            self.leave();
            let _ = std::fs::write(self.session.join("cgroup.kill"), "1");
            let _ = self.child.wait();
            let _ = Command::new(&self.launcher)
                .args(["kernel", "detach", "--root", &self.root])
                .status();
        }
    }

    /// Moves this process into the cgroup `dir`.
    fn join(dir: &std::path::Path) {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .unwrap_or_else(|e| panic!("joining {}: {e}", dir.display()));
    }

    /// The floor under any cgroup-BPF layer: a cgroup of its own with the smallest program
    /// (`r0 = 1; exit`) attached for bind4 and connect4, so calls made in it pay the kernel's
    /// hook (finding the programs, copying the address in and out, taking the socket lock for
    /// bind) and nothing else.
    pub(crate) struct FloorCgroup {
        dir: PathBuf,
        home: PathBuf,
        _progs: Vec<std::os::fd::OwnedFd>,
    }

    impl FloorCgroup {
        pub(crate) fn new() -> Result<FloorCgroup, String> {
            use std::os::fd::AsRawFd;
            let mount = cgroup2().ok_or("no cgroup2 hierarchy is mounted")?;
            let home = home_cgroup(&mount)?;
            let dir = mount.join(format!("ipvirt-bench-floor-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let attach = || -> Result<Vec<std::os::fd::OwnedFd>, String> {
                let fd = std::fs::File::open(&dir).map_err(|e| e.to_string())?;
                let mut progs = Vec::new();
                // BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET4_CONNECT.
                for ty in [8, 10] {
                    let p = crate::sys::load_pass_program(ty)
                        .map_err(|e| format!("loading the pass program: {e}"))?;
                    crate::sys::prog_attach(fd.as_raw_fd(), p.as_raw_fd(), ty, 0)
                        .map_err(|e| format!("attaching the pass program: {e}"))?;
                    progs.push(p);
                }
                Ok(progs)
            };
            match attach() {
                Ok(progs) => Ok(FloorCgroup {
                    home,
                    dir,
                    _progs: progs,
                }),
                Err(e) => {
                    let _ = std::fs::remove_dir(&dir);
                    Err(e)
                }
            }
        }
        pub(crate) fn enter(&self) {
            join(&self.dir);
        }
        pub(crate) fn leave(&self) {
            join(&self.home);
        }
    }

    impl Drop for FloorCgroup {
        fn drop(&mut self) {
            join(&self.home);
            // Removing the cgroup releases its programs.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// A listener that accepts and drops connections in the background.
    pub(crate) fn listener(ip: [u8; 4], port: u16) -> std::io::Result<u16> {
        let l = TcpListener::bind((std::net::Ipv4Addr::from(ip), port))?;
        let port = l.local_addr()?.port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                drop(s);
            }
        });
        Ok(port)
    }
}

#[cfg(target_os = "linux")]
fn bench(c: &mut Criterion) {
    use linux::*;
    let layered = match layered() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("preload bench skipped: {e}");
            return;
        }
    };
    let bare = bare();
    let kernel = kernel_session()
        .map_err(|e| eprintln!("kernel_session variants skipped: {e}"))
        .ok();
    let floor = kernel.as_ref().and_then(|_| {
        FloorCgroup::new()
            .map_err(|e| eprintln!("the pass-only floor is not measured: {e}"))
            .ok()
    });

    let lo = sin([127, 0, 0, 1], 0);
    if let Some(k) = &kernel {
        let run = |n| {
            let t = std::time::Instant::now();
            for _ in 0..n {
                bind_once(bare, &lo);
            }
            t.elapsed()
        };
        let b = interleaved("socket_bind_close", k, floor.as_ref(), 2_000, run);
        program_cost("socket_bind_close", k, &["ipv_bind4"], b, 10_000, run);
    }
    let mut g = c.benchmark_group("socket_bind_close");
    g.bench_function("baseline_bare", |b| b.iter(|| bind_once(bare, &lo)));
    g.bench_function("layered", |b| b.iter(|| bind_once(layered, &lo)));
    if let Some(k) = &kernel {
        k.enter();
        g.bench_function("kernel_session", |b| b.iter(|| bind_once(bare, &lo)));
        k.leave();
    }
    g.finish();

    // Listeners where each run connects: 127.0.0.1:P natively, 127.0.0.8:P through the layer.
    let port = listener([127, 0, 0, 1], 0).expect("listener on 127.0.0.1");
    if let Err(e) = listener([127, 0, 0, 8], port) {
        eprintln!("loopback_connect skipped: cannot listen on 127.0.0.8:{port}: {e}");
        return;
    }
    let dest = sin([127, 0, 0, 1], port);
    if let Some(k) = &kernel {
        let run = |n| {
            let t = std::time::Instant::now();
            for _ in 0..n {
                connect_once(bare, &dest);
            }
            t.elapsed()
        };
        let b = interleaved("loopback_connect", k, floor.as_ref(), 500, run);
        // connect4, and getpeername4 for nothing: connect_once calls only socket/connect/close.
        program_cost("loopback_connect", k, &["ipv_connect4"], b, 2_500, run);
    }
    let mut g = c.benchmark_group("loopback_connect");
    g.bench_function("baseline_bare", |b| b.iter(|| connect_once(bare, &dest)));
    g.bench_function("layered", |b| b.iter(|| connect_once(layered, &dest)));
    if let Some(k) = &kernel {
        k.enter();
        g.bench_function("kernel_session", |b| b.iter(|| connect_once(bare, &dest)));
        k.leave();
    }
    g.finish();
    drop(floor);
    drop(kernel);

    churn_group(c, bare, layered);
}

/// What the kernel layer's programs cost per call, measured by the kernel itself
/// (`BPF_ENABLE_STATS`: each run's time, read back with `session --kernel-stats`) over `calls`
/// calls in the session, against `bare` (the median bare call, in seconds). Clock-independent of
/// the machine's load, which the interleaved ratio is not; the statistics add two clock reads to
/// each run, so the figure is an upper bound.
#[cfg(target_os = "linux")]
fn program_cost(
    name: &str,
    k: &linux::KernelSession,
    programs: &[&str],
    bare: f64,
    calls: u64,
    run: impl Fn(u64) -> std::time::Duration,
) {
    let Ok(_stats) = sys::enable_stats() else {
        eprintln!("{name}: program cost not measured: BPF_ENABLE_STATS failed");
        return;
    };
    let before: Vec<_> = programs.iter().map(|p| k.run_stats(p)).collect();
    k.enter();
    run(calls);
    k.leave();
    for (p, before) in programs.iter().zip(before) {
        let (Some((t0, n0)), Some((t1, n1))) = (before, k.run_stats(p)) else {
            eprintln!("{name}: program cost not measured: no statistics for {p}");
            continue;
        };
        let runs = n1.saturating_sub(n0);
        if runs == 0 {
            eprintln!("{name}: {p} did not run");
            continue;
        }
        let per = t1.saturating_sub(t0) as f64 / runs as f64;
        eprintln!(
            "{name}: {p} costs {per:.0} ns per run over {runs} runs (kernel statistics), \
             {:.1}% of the bare call's {:.0} ns: kernel session / bare = {:.3}",
            per / (bare * 1e9) * 100.0,
            bare * 1e9,
            1.0 + per / (bare * 1e9)
        );
    }
}

/// Bare calls and the same calls in the kernel session, in alternating rounds of `round` (so both
/// meet the same load and the same socket tables), 25 rounds each; prints the medians and their
/// ratio, and returns the bare median per call (seconds). The criterion groups measure one after
/// the other, which drifts on a shared machine.
#[cfg(target_os = "linux")]
fn interleaved(
    name: &str,
    k: &linux::KernelSession,
    floor: Option<&linux::FloorCgroup>,
    round: u64,
    run: impl Fn(u64) -> std::time::Duration,
) -> f64 {
    let (mut bare, mut pass, mut kernel) = (Vec::new(), Vec::new(), Vec::new());
    run(round); // warm up
    for _ in 0..25 {
        bare.push(run(round).as_secs_f64());
        if let Some(f) = floor {
            f.enter();
            pass.push(run(round).as_secs_f64());
            f.leave();
        }
        k.enter();
        kernel.push(run(round).as_secs_f64());
        k.leave();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (b, p, kk) = (median(&mut bare), median(&mut pass), median(&mut kernel));
    let per = |t: f64| t / round as f64 * 1e9;
    eprintln!(
        "{name}, interleaved rounds of {round} (median round, per call): bare {:.0} ns, \
         pass-only program {:.0} ns, kernel session {:.0} ns; kernel / bare {:.3}, \
         pass-only / bare {:.3}, kernel / pass-only {:.3}",
        per(b),
        per(p),
        per(kk),
        kk / b,
        p / b,
        kk / p
    );
    b / round as f64
}

/// `connection_churn`, last: it moves this thread into its own network namespace.
#[cfg(target_os = "linux")]
fn churn_group(c: &mut Criterion, native_calls: linux::Calls, layer_calls: linux::Calls) {
    use linux::*;
    if let Err(e) = private_network() {
        eprintln!("connection_churn skipped: {e}");
        return;
    }
    let port = match graceful_listener([127, 0, 0, 1], 0)
        .and_then(|p| graceful_listener([127, 0, 0, 8], p))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("connection_churn skipped: cannot listen: {e}");
            return;
        }
    };
    let dest = sin([127, 0, 0, 1], port);
    // 20 000 each, interleaved in rounds of 1 000 so that both meet the same load on the machine
    // and the same number of TIME_WAIT sockets; the median round is robust to bursts of load from
    // other processes on a shared machine.
    const BATCH: u64 = 20_000;
    const ROUND: u64 = 1_000;
    let (mut native, mut through) = (Vec::new(), Vec::new());
    for _ in 0..BATCH / ROUND {
        native.push(churn(native_calls, &dest, ROUND).as_secs_f64());
        through.push(churn(layer_calls, &dest, ROUND).as_secs_f64());
    }
    let total = |v: &[f64]| v.iter().sum::<f64>();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (tn, tl) = (total(&native), total(&through));
    let (mn, ml) = (median(&mut native), median(&mut through));
    eprintln!(
        "connection_churn, {BATCH} connect+close each: native {tn:.3} s, layered {tl:.3} s, ratio {:.2}; \
         median round of {ROUND}: native {:.1} ms, layered {:.1} ms, ratio {:.2}",
        tl / tn,
        mn * 1e3,
        ml * 1e3,
        ml / mn
    );
    let mut g = c.benchmark_group("connection_churn");
    g.sample_size(20);
    g.bench_function("baseline_bare", |b| {
        b.iter_custom(|n| churn(native_calls, &dest, n));
    });
    g.bench_function("layered", |b| {
        b.iter_custom(|n| churn(layer_calls, &dest, n))
    });
    g.finish();
}

#[cfg(not(target_os = "linux"))]
fn bench(_: &mut Criterion) {
    eprintln!("preload bench skipped: the LD_PRELOAD layer is Linux-only");
}

criterion_group!(preload, bench);
criterion_main!(preload);
