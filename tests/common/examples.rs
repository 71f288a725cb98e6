//! The example programs the end-to-end tests run (built by `cargo test` with the other examples,
//! or built here), and what the tests need of the machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<test>`).
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

/// The example's file in `target/<profile>/examples`, built with cargo if it is missing.
fn example(file: &str, name: &str) -> Option<PathBuf> {
    let dir = profile_dir()?;
    let path = dir.join("examples").join(file);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--example", name])
            .env("CARGO_TARGET_DIR", dir.parent()?)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    path.exists().then_some(path)
}

/// The `LD_PRELOAD` layer's shared library.
pub fn preload_lib() -> Option<PathBuf> {
    example("libipvirt_preload.so", "ipvirt_preload")
}

/// The session launcher.
pub fn launcher() -> Option<PathBuf> {
    example("session", "session")
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
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command in session `session` under the layer (no VIP, no debug output).
pub fn in_session(lib: &Path, policy: &Path, session: u32, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("LD_PRELOAD", lib)
        .env("IPVIRT_SESSION", session.to_string())
        .env("IPVIRT_POLICY", policy)
        .env_remove("IPVIRT_VIP")
        .env_remove("IPVIRT_DEBUG");
    c
}

/// The advisor's command line (`advise`; `--live` needs it built with the feature `live`, as
/// `cargo test --all-features` does).
pub fn advise() -> Option<PathBuf> {
    example("advise", "advise")
}

/// The cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let found: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1])
        })
        .collect();
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|m| found.contains(m))
        .or(found.first().copied())
        .map(PathBuf::from)
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

#[cfg(unix)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}
