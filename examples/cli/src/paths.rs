//! Where the command finds and keeps things: the lease book and the `LD_PRELOAD` library.
//!
//! - **State** (SPEC §10: private, never a predictable name in a world-writable directory):
//!   `IPVIRT_STATE_DIR` when set; else `/var/lib/ipvirt/` for root (the service's directory,
//!   mode 0700) and `$XDG_STATE_HOME/ipvirt/` (default `~/.local/state/ipvirt/`, mode 0700) for
//!   other users. The directory is made when missing, and checked before use
//!   (`ipvirt_host::PrivateDir`): it and every directory above it must be the caller's or root's
//!   and writable by nobody else, and no link is followed; a shared directory such as `/tmp` is
//!   refused with an error that names it.
//! - **The `LD_PRELOAD` library**: `--preload`/`IPVIRT_PRELOAD`, else `libipvirt_preload.so`
//!   beside this program (a cargo build), in its `../lib/ipvirt/` (the Debian package:
//!   `/usr/bin/ipvirt` and `/usr/lib/ipvirt/`; `cargo install`: `~/.cargo/bin/` and
//!   `~/.cargo/lib/ipvirt/`), or in its `deps/` (a test build). The command never builds it.

use std::path::{Path, PathBuf};

/// The file name of the `LD_PRELOAD` library.
pub(crate) const PRELOAD_FILE: &str = "libipvirt_preload.so";

/// The directory where this user's ipvirt state lives, made (mode 0700) when missing.
pub(crate) fn state_dir() -> Result<PathBuf, String> {
    let dir = if let Some(d) = std::env::var_os("IPVIRT_STATE_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d)
    } else if is_root() {
        PathBuf::from("/var/lib/ipvirt")
    } else if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("ipvirt")
    } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(home).join(".local/state/ipvirt")
    } else {
        return Err(
            "no directory for the lease book: set IPVIRT_STATE_DIR, XDG_STATE_HOME or HOME, or give --lease-book"
                .into(),
        );
    };
    make_private_dir(&dir)?;
    Ok(dir)
}

/// The lease book's path: `given`, or `leases.json` in [`state_dir`].
pub(crate) fn lease_book(given: Option<&Path>) -> Result<PathBuf, String> {
    match given {
        Some(p) => std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display())),
        None => Ok(state_dir()?.join("leases.json")),
    }
}

/// Makes `dir` (and its parents) with mode 0700 where missing, and checks that only this user
/// can change it.
fn make_private_dir(dir: &Path) -> Result<(), String> {
    ipvirt_host::PrivateDir::create(dir, 0o700)
        .map(drop)
        .map_err(|e| format!("the state directory: {e}"))
}

/// The `LD_PRELOAD` library: `given`, else where a build or a package put it.
pub(crate) fn preload(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return std::fs::canonicalize(p).map_err(|e| format!("--preload {}: {e}", p.display()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let dir = exe.parent().ok_or("this program's directory")?;
    let candidates = [
        dir.join(PRELOAD_FILE),
        dir.join("../lib/ipvirt").join(PRELOAD_FILE),
        dir.join("deps").join(PRELOAD_FILE),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .ok_or_else(|| {
            format!(
                "the LD_PRELOAD layer {PRELOAD_FILE} is not installed beside {} (looked in {}): \
                 give --preload FILE or IPVIRT_PRELOAD, install it in {}, or build it with \
                 `cargo build -p ipvirt-preload`",
                exe.display(),
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.join("../lib/ipvirt").display()
            )
        })
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
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
