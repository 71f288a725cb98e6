//! What the workspace's end-to-end tests share: where the built products are, what the machine
//! has, and guards that clean up.
//!
//! Products are found where cargo put them, never built from a test: binaries of the crate under
//! test through `CARGO_BIN_EXE_*` (in the test itself), shared libraries of a workspace crate in
//! the test's own target directory ([`cdylib`]). A crate whose tests need a shared library lists
//! its crate as a dev-dependency, which makes cargo build it first.

#[cfg(unix)]
pub mod dhcp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Returns from the test, printing why, when one of the programs is not installed.
#[macro_export]
macro_rules! require {
    ($($cmd:expr),+) => {
        for cmd in [$($cmd),+] {
            if !$crate::have(cmd) {
                eprintln!("skipped: `{cmd}` is not installed on this machine");
                return;
            }
        }
    };
}

/// Returns from the test, printing why, when the kernel layer cannot run on this machine.
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = $crate::kernel_unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<test>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps")
        .to_path_buf()
}

/// The shared library `lib<name>.so` of a workspace crate, as cargo built it for this test run
/// (`target/<profile>/deps/`, or `target/<profile>/` after a `cargo build` of that crate).
///
/// # Panics
///
/// When it is not there: the test's crate must list the library's crate as a dev-dependency (or
/// the library be built), which is a mistake in the workspace, not a missing prerequisite.
pub fn cdylib(name: &str) -> PathBuf {
    let file = format!("lib{name}.so");
    let dir = profile_dir();
    [dir.join("deps").join(&file), dir.join(&file)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{file} is not in {}: list its crate as a dev-dependency of the crate under test, \
                 or build it (`cargo test --workspace` does)",
                dir.display()
            )
        })
}

/// The `LD_PRELOAD` layer's shared library (crate `ipvirt-preload`).
pub fn preload_lib() -> PathBuf {
    cdylib("ipvirt_preload")
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills the child when dropped.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A command in session `session` under the `LD_PRELOAD` layer `lib` (no VIP, no debug output).
pub fn in_session(lib: &Path, policy: &Path, session: u32, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("LD_PRELOAD", lib)
        .env("IPVIRT_SESSION", session.to_string())
        .env("IPVIRT_POLICY", policy)
        .env_remove("IPVIRT_VIP")
        .env_remove("IPVIRT_DEBUG");
    c
}

/// The cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let found: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2"))
                .then(|| f.get(1).copied())
                .flatten()
        })
        .collect();
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|m| found.contains(m))
        .or(found.first().copied())
        .map(PathBuf::from)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        euid == 0
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Why the kernel layer cannot run here, if it cannot: root, a cgroup2 hierarchy, kernel BTF.
pub fn kernel_unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("the kernel layer is Linux-only".into());
    }
    if !is_root() {
        return Some("the kernel layer needs root".into());
    }
    if cgroup2_mount().is_none() {
        return Some("no cgroup2 hierarchy is mounted".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    None
}

/// Returns from the test, printing why, unless it runs as root with `ip` and `dnsmasq` (what a
/// test that makes network namespaces and runs a DHCP server needs).
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require!("ip", "dnsmasq");
        if !$crate::is_root() {
            eprintln!("skipped: creating network namespaces needs root");
            return;
        }
    };
}

/// Waits until `cond` holds, failing the test with `what` after `deadline` from now.
pub fn wait_until(what: &str, deadline: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + deadline;
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(unix)]
pub mod logins;
