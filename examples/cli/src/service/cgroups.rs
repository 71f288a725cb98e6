// inotify(7): FFI.
#![allow(unsafe_code)]

//! Where a login's session lives in cgroup2 (SPEC §11).
//!
//! - **Under systemd** logind has already put the login in
//!   `user.slice/user-UID.slice/session-N.scope` (and the user's services in `user@UID.service`
//!   beside it): the service registers that scope (with `identity = "session"`) or the user's
//!   slice (`identity = "user"`) as the session, and never moves a process out of logind's tree.
//! - **Without a session manager** the service makes `<cgroup2>/<root>/session-N` and moves the
//!   login's process into it; everything the login starts inherits it.
//!
//! A session ends when its cgroup has no process left: [`Watcher`] reads the kernel's
//! notifications on each cgroup's `cgroup.events` (inotify), so an idle service costs nothing.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The cgroup2 tree as the service uses it.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    /// The cgroup2 mount.
    pub(crate) mount: PathBuf,
    /// `<mount>/<root>`: the kernel layer's anchor and the parent of the sessions it makes.
    pub(crate) root: PathBuf,
}

/// A login's cgroup that logind made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logind {
    /// `…/user-UID.slice`.
    pub(crate) user_slice: PathBuf,
    /// `…/user-UID.slice/session-N.scope`.
    pub(crate) scope: PathBuf,
}

impl Cgroups {
    pub(crate) fn new(root_name: &str) -> Result<Cgroups, String> {
        let mount = ipvirt_kernel::cgroup2_mount()?;
        Ok(Cgroups {
            root: mount.join(root_name),
            mount,
        })
    }

    /// The cgroup of process `pid` (absolute path below the mount).
    pub(crate) fn of_process(&self, pid: u32) -> Result<PathBuf, String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| format!("process {pid} has no cgroup2 path"))?;
        Ok(self.mount.join(rel.trim_start_matches('/')))
    }

    /// Whether `dir` is a logind session scope (`user.slice/user-UID.slice/session-N.scope`) of
    /// user `uid`, and if so its slice.
    pub(crate) fn logind(&self, dir: &Path, uid: u32) -> Option<Logind> {
        let rel = dir.strip_prefix(&self.mount).ok()?;
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let slice = format!("user-{uid}.slice");
        match parts.as_slice() {
            ["user.slice", s, scope]
                if *s == slice && scope.starts_with("session-") && scope.ends_with(".scope") =>
            {
                let user_slice = self.mount.join("user.slice").join(s);
                Some(Logind {
                    scope: user_slice.join(scope),
                    user_slice,
                })
            }
            _ => None,
        }
    }

    /// The cgroup the service makes for session `number`.
    pub(crate) fn own(&self, number: u32) -> PathBuf {
        self.root.join(format!("session-{number}"))
    }

    /// Makes the root and `own(number)` if missing.
    pub(crate) fn make_own(&self, number: u32) -> Result<PathBuf, String> {
        let dir = self.own(number);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Whether a cgroup the service made for another owner (a launcher's) holds `number`.
    pub(crate) fn own_exists(&self, number: u32) -> bool {
        self.own(number).is_dir()
    }

    /// Moves process `pid` (all its threads) into `dir`.
    pub(crate) fn move_into(dir: &Path, pid: u32) -> Result<(), String> {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("moving process {pid} into {}: {e}", dir.display()))
    }

    /// Removes a cgroup the service made, once empty: `false` when processes still run in it.
    pub(crate) fn remove_own(dir: &Path) -> Result<bool, String> {
        match std::fs::remove_dir(dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    }

    /// How many processes run in `dir` and the cgroups below it.
    pub(crate) fn processes(dir: &Path) -> usize {
        let here = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let below: usize = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| Cgroups::processes(&e.path()))
                    .sum()
            })
            .unwrap_or(0);
        here + below
    }

    /// `dir` below the mount, as `ipvirt status` shows it.
    pub(crate) fn relative(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.mount)
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_else(|_| dir.display().to_string())
    }
}

/// Notifications that a session's cgroup emptied or went away.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    fd: Arc<std::os::fd::OwnedFd>,
    watches: Arc<Mutex<HashMap<i32, PathBuf>>>,
}

impl Watcher {
    pub(crate) fn new() -> Result<Watcher, String> {
        // SAFETY: no preconditions.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(format!("inotify: {}", io::Error::last_os_error()));
        }
        // SAFETY: a descriptor the kernel just gave us.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Watcher {
            fd: Arc::new(fd),
            watches: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Watches `dir/cgroup.events`.
    pub(crate) fn watch(&self, dir: &Path) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let events = dir.join("cgroup.events");
        let c = CString::new(events.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a NUL in the path", events.display()))?;
        // SAFETY: a valid inotify descriptor and a NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(format!(
                "watching {}: {}",
                events.display(),
                io::Error::last_os_error()
            ));
        }
        if let Ok(mut w) = self.watches.lock() {
            w.insert(wd, dir.to_path_buf());
        }
        Ok(())
    }

    /// Stops watching `dir`.
    pub(crate) fn unwatch(&self, dir: &Path) {
        use std::os::fd::AsRawFd;
        let Ok(mut w) = self.watches.lock() else {
            return;
        };
        let wds: Vec<i32> = w
            .iter()
            .filter(|(_, d)| d.as_path() == dir)
            .map(|(wd, _)| *wd)
            .collect();
        for wd in wds {
            w.remove(&wd);
            // SAFETY: a watch descriptor of this inotify descriptor.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
        }
    }

    /// Waits for the next notifications and returns the cgroups they are about (blocking).
    pub(crate) fn next(&self) -> Result<Vec<PathBuf>, String> {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let n = loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("reading inotify events: {e}"));
            }
        };
        let mut out = Vec::new();
        let mut at = 0;
        let head = std::mem::size_of::<libc::inotify_event>();
        let Ok(mut watches) = self.watches.lock() else {
            return Ok(out);
        };
        while at + head <= n {
            let Some(b) = buf.get(at..at + head) else {
                break;
            };
            let wd = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            let mask = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
            let dir = if mask & libc::IN_IGNORED != 0 {
                watches.remove(&wd)
            } else {
                watches.get(&wd).cloned()
            };
            if let Some(dir) = dir
                && !out.contains(&dir)
            {
                out.push(dir);
            }
            at += head + len;
        }
        Ok(out)
    }
}
