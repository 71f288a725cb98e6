//! Sessions in cgroups the layer did not make: a systemd login's `session-N.scope`, or a user's
//! `user-UID.slice` (SPEC §11), registered by the `ipvirt` service instead of moving the login's
//! processes out of logind's tree.
//!
//! The layer's programs stay attached at its root (`<cgroup2>/ipvirt`, the anchor a restarted
//! service finds them by), and are attached once more at each such cgroup
//! ([`Layer::attach_at`]); the cgroup's id keys its session entry ([`Layer::register`]). The
//! programs find the entry of a task's cgroup or of its nearest registered ancestor, so every
//! process of the scope, and of cgroups below it, is in the session. A cgroup of the host that is
//! neither below the root nor registered has no program attached: it is never touched (a console
//! login, the system's services).
//!
//! Stale entries are removed only when their cgroup is verifiably gone: the layer asks the kernel
//! whether a cgroup with that id still exists (`open_by_handle_at` on the cgroup2 mount), so a
//! launcher that reclaims never removes a registered session it does not know.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ipvirt::table::SessionEntry;

use crate::{Layer, PROGRAMS, attached, cgroup2_mount, session_bytes, session_of_bytes, sys};

/// `FILEID_KERNFS`: the file-handle type of kernfs (cgroup2) inodes.
const FILEID_KERNFS: i32 = 0xfe;

/// Whether the cgroup with id `id` exists: `Some(false)` only when the kernel says it does not
/// (`ESTALE`/`ENOENT` from `open_by_handle_at`); `None` when it cannot tell (no permission, no
/// file-handle support), which callers treat as "it may exist".
pub fn cgroup_alive(id: u64) -> Option<bool> {
    let mount = cgroup2_mount().ok()?;
    let dir = File::open(&mount).ok()?;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        id: [u8; 8],
    }
    let mut h = Handle {
        bytes: 8,
        kind: FILEID_KERNFS,
        id: id.to_ne_bytes(),
    };
    // SAFETY: `h` is a `struct file_handle` with an 8-byte handle; the call only reads it.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::open_by_handle_at(
            dir.as_raw_fd(),
            (&raw mut h).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: a descriptor the kernel just returned to us.
        #[allow(unsafe_code)]
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        return Some(true);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ESTALE) | Some(libc::ENOENT) => Some(false),
        _ => None,
    }
}

/// The id of the cgroup `dir` (the inode of its directory).
///
/// # Errors
///
/// `dir` cannot be read.
pub fn cgroup_id_of(dir: &Path) -> Result<u64, String> {
    std::fs::metadata(dir)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

impl Layer {
    /// Attaches the layer's programs at the cgroup `dir` as well (a cgroup outside its root:
    /// a logind scope or a user's slice). Already attached is fine.
    ///
    /// # Errors
    ///
    /// `dir` cannot be opened, or the kernel refuses an attachment (then none is left).
    pub fn attach_at(&self, dir: &Path) -> Result<(), String> {
        let root = File::open(&self.root).map_err(|e| format!("{}: {e}", self.root.display()))?;
        let progs = attached(&OwnedFd::from(root))?;
        if progs.len() != PROGRAMS.len() {
            return Err(format!(
                "{}: {} of {} programs attached; the layer is not whole",
                self.root.display(),
                progs.len(),
                PROGRAMS.len()
            ));
        }
        let target: OwnedFd = File::open(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .into();
        // Ours already there (a restarted service attaching again), by attach type.
        let present: Vec<u32> = attached(&target)?.into_iter().map(|(_, ty)| ty).collect();
        let mut done = Vec::new();
        for (fd, ty) in &progs {
            if present.contains(ty) {
                continue;
            }
            match sys::prog_attach(
                target.as_raw_fd(),
                fd.as_raw_fd(),
                *ty,
                sys::BPF_F_ALLOW_MULTI,
            ) {
                Ok(()) => done.push((fd, *ty)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    for (fd, ty) in done {
                        let _ = sys::prog_detach(target.as_raw_fd(), fd.as_raw_fd(), ty);
                    }
                    return Err(format!("{}: attaching the layer: {e}", dir.display()));
                }
            }
        }
        // Its tasks are in the layer's tree: without a session entry they fail closed.
        self.anchor(dir)
    }

    /// Detaches the layer's programs from the cgroup `dir` (what [`attach_at`](Self::attach_at)
    /// attached); a cgroup that is gone has nothing attached.
    ///
    /// # Errors
    ///
    /// The kernel refuses a detachment.
    pub fn detach_from(&self, dir: &Path) -> Result<(), String> {
        let Ok(target) = File::open(dir) else {
            return Ok(());
        };
        let target = OwnedFd::from(target);
        let root = File::open(&self.root).map_err(|e| format!("{}: {e}", self.root.display()))?;
        for (fd, ty) in attached(&OwnedFd::from(root))? {
            match sys::prog_detach(target.as_raw_fd(), fd.as_raw_fd(), ty) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT)) => {}
                Err(e) => return Err(format!("{}: detaching the layer: {e}", dir.display())),
            }
        }
        if let Ok(id) = File::from(target).metadata().map(|m| m.ino()) {
            let _ = self.maps.anchors.delete(&id.to_ne_bytes());
        }
        Ok(())
    }

    /// Writes `entry` as the session entry of the cgroup `dir` (below the root, or one the
    /// programs are attached at).
    ///
    /// # Errors
    ///
    /// `dir` cannot be read, or the map refuses the write (full: 65 536 sessions).
    pub fn register(&self, dir: &Path, entry: &SessionEntry) -> Result<u64, String> {
        let id = cgroup_id_of(dir)?;
        self.maps
            .sessions
            .update(&id.to_ne_bytes(), &session_bytes(entry))
            .map_err(|e| format!("writing the session entry of {}: {e}", dir.display()))?;
        self.bump_generation()?;
        Ok(id)
    }

    /// Removes the session entry of the cgroup with id `id`; `false` when there was none.
    ///
    /// # Errors
    ///
    /// The map refuses the deletion.
    pub fn unregister(&self, id: u64) -> Result<bool, String> {
        let gone = self
            .maps
            .sessions
            .delete(&id.to_ne_bytes())
            .map_err(|e| format!("removing the session entry of cgroup {id}: {e}"))?;
        if gone {
            self.bump_generation()?;
        }
        Ok(gone)
    }

    /// Every session entry, by cgroup id.
    ///
    /// # Errors
    ///
    /// The map cannot be read.
    pub fn entries(&self) -> Result<Vec<(u64, SessionEntry)>, String> {
        let mut out = Vec::new();
        for k in self.maps.sessions.keys(8).map_err(|e| e.to_string())? {
            let Ok(key) = <[u8; 8]>::try_from(k.as_slice()) else {
                continue;
            };
            let mut v = [0u8; 16];
            if self.maps.sessions.lookup(&key, &mut v).unwrap_or(false) {
                out.push((u64::from_ne_bytes(key), session_of_bytes(&v)));
            }
        }
        out.sort_by_key(|(id, e)| (e.session, *id));
        Ok(out)
    }
}
