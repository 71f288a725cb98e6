//! What the service costs a login, and how it scales (SPEC §11), measured with the real service
//! (`ipvirt daemon`, the bench's own build), real libpam and `pam_ipvirt.so`:
//!
//! - `login`: `pam_open_session` + `pam_close_session` of a PAM stack with `pam_permit.so` only,
//!   and of the same stack with `pam_ipvirt.so` added (every open makes this process a new
//!   session: a number, a cgroup, the kernel layer's entry, a state file; every close ends the
//!   login, and the previous session ends when this process leaves its cgroup). Besides the
//!   criterion groups it prints both medians over interleaved rounds, the time the module adds
//!   per login, and the sessions the service opens per second.
//! - `scale`: a listed program's `socket`+`bind(127.0.0.1:0)`+`close` in a session while 1 session
//!   is registered, then while 10 000 are (forked processes, each made a session by the service),
//!   then with 1 again; and the service's resident memory per session.
//!
//! Run: `cargo bench -p ipvirt-cli --bench logins` as root on Linux with the kernel layer (cgroup2,
//! BTF) and libpam; elsewhere it prints why it did nothing. The bench makes a private mount
//! namespace for itself (a private /etc/pam.d: the host's is never changed) and its own kernel
//! root, socket and state directory.

// libpam, unshare/mount, fork: FFI by nature.
#![allow(unsafe_code, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{CString, c_char, c_int, c_void};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use ipvirt_host::control::{self, Request, Response};

    #[repr(C)]
    struct PamConv {
        conv: extern "C" fn(c_int, *const *const c_void, *mut *mut c_void, *mut c_void) -> c_int,
        appdata: *mut c_void,
    }

    #[link(name = "pam")]
    unsafe extern "C" {
        fn pam_start(
            service: *const c_char,
            user: *const c_char,
            conv: *const PamConv,
            pamh: *mut *mut c_void,
        ) -> c_int;
        fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
        fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
        fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
        fn pam_set_item(pamh: *mut c_void, item: c_int, value: *const c_void) -> c_int;
    }

    extern "C" fn no_conversation(
        _n: c_int,
        _m: *const *const c_void,
        _r: *mut *mut c_void,
        _a: *mut c_void,
    ) -> c_int {
        19 // PAM_CONV_ERR: nothing in these stacks asks anything
    }

    /// Why the bench cannot run here, if it cannot.
    pub(crate) fn unavailable() -> Option<String> {
        if let Some(why) = ipvirt_testkit::kernel_unavailable() {
            return Some(why);
        }
        if !Path::new("/etc/pam.d").is_dir() {
            return Some("no /etc/pam.d".into());
        }
        None
    }

    /// The service, with its own socket, state and kernel root.
    pub(crate) struct Daemon {
        child: Child,
        pub(crate) socket: PathBuf,
        root: String,
        dir: PathBuf,
    }

    impl Daemon {
        pub(crate) fn start(program: &str) -> Daemon {
            let dir =
                std::env::temp_dir().join(format!("ipvirt-bench-logins-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let policy = dir.join("policy.toml");
            std::fs::write(
                &policy,
                format!("[virtual_loopback]\nenabled = true\nprograms = [{program:?}]\n"),
            )
            .unwrap();
            let socket = dir.join("run/control.sock");
            let root = format!("ipvirt-bench-{}", std::process::id());
            let child = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                .args(["daemon", "--policy"])
                .arg(&policy)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--socket")
                .arg(&socket)
                .args(["--kernel-root", &root, "--log", "stderr"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let d = Daemon {
                child,
                socket,
                root,
                dir,
            };
            let end = Instant::now() + Duration::from_secs(30);
            while d.sessions().is_none() {
                assert!(Instant::now() < end, "the service did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            d
        }

        pub(crate) fn sessions(&self) -> Option<usize> {
            match control::call(&self.socket, &Request::List {}, Duration::from_secs(60)) {
                Ok(Response::Sessions { sessions }) => Some(sessions.len()),
                _ => None,
            }
        }

        /// The service's resident memory, in bytes.
        pub(crate) fn rss(&self) -> u64 {
            let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            // SAFETY: our child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
            let _ = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                .args(["kernel", "detach", "--root", &self.root])
                .output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Puts this process in a private mount namespace with a private /etc/pam.d holding the two
    /// stacks the login bench compares.
    pub(crate) fn private_pam(module: &Path, socket: &Path) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ipvirt-bench-pam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = "auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n";
        std::fs::write(dir.join("bench-without"), base).unwrap();
        std::fs::write(
            dir.join("bench-with"),
            format!(
                "{base}session required {} socket={}\n",
                module.display(),
                socket.display()
            ),
        )
        .unwrap();
        // SAFETY: plain system calls on this process; the strings outlive them.
        unsafe {
            assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS)");
            let root = CString::new("/").unwrap();
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            let src = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            let dst = CString::new("/etc/pam.d").unwrap();
            assert_eq!(
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null()
                ),
                0,
                "bind-mounting the private pam.d"
            );
        }
        dir
    }

    /// One login: `pam_start`, open, close, `pam_end`.
    pub(crate) fn login(service: &str) {
        let conv = PamConv {
            conv: no_conversation,
            appdata: std::ptr::null_mut(),
        };
        let svc = CString::new(service).unwrap();
        let user = CString::new("nobody").unwrap();
        let tty = CString::new("/dev/pts/42").unwrap();
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid strings and conversation; the handle is used only between start and end.
        unsafe {
            assert_eq!(pam_start(svc.as_ptr(), user.as_ptr(), &conv, &mut h), 0);
            pam_set_item(h, 3, tty.as_ptr().cast()); // PAM_TTY
            let r = pam_open_session(h, 0);
            assert_eq!(r, 0, "pam_open_session of {service}");
            pam_close_session(h, 0);
            pam_end(h, 0);
        }
    }

    /// This process's cgroup2 directory.
    pub(crate) fn home_cgroup() -> PathBuf {
        let mount = ipvirt_testkit::cgroup2_mount().unwrap();
        let here = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = here.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        mount.join(rel.trim_start_matches('/'))
    }

    /// Moves this process into `dir`.
    pub(crate) fn join(dir: &Path) {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    }

    /// `socket`+`bind(127.0.0.1:0)`+`close`, `n` times: seconds per round trip.
    pub(crate) fn binds(n: usize) -> f64 {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: a socket we own, a valid address of its size.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                libc::bind(
                    fd,
                    (&raw const sin).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                libc::close(fd);
            }
        }
        start.elapsed().as_secs_f64() / n as f64
    }

    /// `n` forked processes, each made a session by the service and then waiting; killed on drop.
    pub(crate) struct Sessions(Vec<i32>);

    impl Sessions {
        pub(crate) fn open(socket: &Path, n: usize) -> Sessions {
            let mut pids = Vec::with_capacity(n);
            for _ in 0..n {
                let mut fds = [0; 2];
                // SAFETY: a pipe for the child to say it is in its session.
                unsafe { libc::pipe(fds.as_mut_ptr()) };
                let (r, w) = (fds[0], fds[1]);
                // SAFETY: the child only talks to the service, writes one byte and waits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let ok = matches!(
                        control::call(
                            socket,
                            &Request::Open {
                                user: "nobody".into(),
                                service: Some("bench".into()),
                                tty: Some("/dev/pts/43".into()),
                                rhost: None,
                                id: None,
                            },
                            Duration::from_secs(60),
                        ),
                        Ok(Response::Opened { .. })
                    );
                    // SAFETY: async-signal-safe calls in the forked child.
                    unsafe {
                        libc::write(w, [u8::from(ok)].as_ptr().cast(), 1);
                        loop {
                            libc::pause();
                        }
                    }
                }
                let mut b = [0u8; 1];
                // SAFETY: reading one byte from our pipe.
                unsafe {
                    libc::close(w);
                    libc::read(r, b.as_mut_ptr().cast(), 1);
                    libc::close(r);
                }
                assert_eq!(b[0], 1, "a session opened");
                pids.push(pid);
            }
            Sessions(pids)
        }
    }

    impl Drop for Sessions {
        fn drop(&mut self) {
            for &p in &self.0 {
                // SAFETY: our children.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            for &p in &self.0 {
                // SAFETY: reaping our children.
                unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
            }
        }
    }

    pub(crate) fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

#[cfg(target_os = "linux")]
fn benches(c: &mut Criterion) {
    use linux::*;

    if let Some(why) = unavailable() {
        eprintln!("logins: skipped: {why}");
        return;
    }
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    let daemon = Daemon::start(&name);
    let module = ipvirt_testkit::cdylib("pam_ipvirt");
    let _pam = private_pam(&module, &daemon.socket);
    let home = home_cgroup();

    let only = std::env::var("IPVIRT_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "login" {
        login_bench(c, &home);
    }
    if only.is_empty() || only == "scale" {
        scale_bench(&daemon, &home);
    }
}

#[cfg(target_os = "linux")]
fn login_bench(c: &mut Criterion, home: &std::path::Path) {
    use std::time::Duration;

    use linux::*;

    // Interleaved rounds: the medians of each stack's per-login time.
    const ROUNDS: usize = 15;
    const PER: usize = 20;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = std::time::Instant::now();
        for _ in 0..PER {
            login("bench-without");
        }
        without.push(t.elapsed().as_secs_f64() / PER as f64);
        let t = std::time::Instant::now();
        for _ in 0..PER {
            login("bench-with");
        }
        with.push(t.elapsed().as_secs_f64() / PER as f64);
        join(home);
    }
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "login: pam_open_session+pam_close_session without pam_ipvirt {:.3} ms, with {:.3} ms \
         (median of {ROUNDS} interleaved rounds of {PER}): the module adds {:.3} ms ({:.1}x); \
         the service opens {:.0} sessions per second",
        a * 1e3,
        b * 1e3,
        (b - a) * 1e3,
        b / a,
        1.0 / b
    );
    let mut g = c.benchmark_group("login");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("without_pam_ipvirt", |bn| {
        bn.iter(|| login("bench-without"))
    });
    g.bench_function("with_pam_ipvirt", |bn| bn.iter(|| login("bench-with")));
    g.finish();
    join(home);
}

#[cfg(target_os = "linux")]
fn scale_bench(daemon: &linux::Daemon, home: &std::path::Path) {
    use std::time::Duration;

    use linux::*;

    // Scale: a listed program's bind in a session with 1, then 10 000 sessions registered.
    let wait_sessions = |n: usize| {
        let end = std::time::Instant::now() + Duration::from_secs(120);
        while daemon.sessions() != Some(n) {
            assert!(
                std::time::Instant::now() < end,
                "the sessions did not settle at {n}: {:?}",
                daemon.sessions()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_sessions(0);
    let one = Sessions::open(&daemon.socket, 1);
    wait_sessions(1);
    let rss1 = daemon.rss();
    let mount = ipvirt_testkit::cgroup2_mount().unwrap();
    let first = std::fs::read_dir(mount.join(format!("ipvirt-bench-{}", std::process::id())))
        .unwrap()
        .flatten()
        .find(|d| d.file_name().to_string_lossy().starts_with("session-"))
        .unwrap()
        .path();
    let measure = || {
        join(&first);
        let mut v: Vec<f64> = (0..15).map(|_| binds(2_000)).collect();
        join(home);
        median(&mut v)
    };
    let t1 = measure();
    const MANY: usize = 10_000;
    let opened = std::time::Instant::now();
    let many = Sessions::open(&daemon.socket, MANY - 1);
    let open_rate = (MANY - 1) as f64 / opened.elapsed().as_secs_f64();
    wait_sessions(MANY);
    let rss_many = daemon.rss();
    let tmany = measure();
    drop(many);
    wait_sessions(1);
    let t1b = measure();
    drop(one);
    println!(
        "scale: socket+bind+close in a session: {:.0} ns with 1 session, {:.0} ns with {MANY} \
         ({:.3}x), {:.0} ns with 1 again ({:.3}x); the service opened {MANY} sessions at {:.0} per \
         second and holds {:.0} bytes of resident memory per session ({} → {} bytes)",
        t1 * 1e9,
        tmany * 1e9,
        tmany / t1,
        t1b * 1e9,
        t1b / t1,
        open_rate,
        (rss_many.saturating_sub(rss1)) as f64 / (MANY - 1) as f64,
        rss1,
        rss_many
    );
}

#[cfg(not(target_os = "linux"))]
fn benches(_: &mut Criterion) {
    eprintln!("logins: skipped: Linux only");
}

criterion_group!(group, benches);
criterion_main!(group);
