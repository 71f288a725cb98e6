//! Files only their owner can change, and locks waited for with a deadline (SPEC §10, "Who may
//! touch the state", found by attack in issue 23).
//!
//! A root process that writes state in a directory another user can write can be made to follow
//! a symbolic link that user planted (truncating any file, creating files as root), or to open a
//! file that user made; and a lock that user holds blocks it for ever. So every state file, its
//! temporary file and its lock (the [`StateFile`](crate::StateFile)s of the lease book, the DHCP
//! state, the kernel layer's set-up lock) is reached through a [`PrivateDir`]:
//!
//! - the directory is opened component by component from `/` without following a link
//!   (`O_NOFOLLOW`), after its path has been made canonical; every directory on the way belongs to
//!   root or to the caller and no other user can write it (a world-writable *sticky* directory such
//!   as `/tmp` is acceptable on the way, never as the directory itself);
//! - the directory itself belongs to the caller and no other user can write it;
//! - files are opened relative to it (`openat`) without following a link, and must be regular
//!   files of the caller, not writable by others, with one name; a temporary file is created
//!   exclusively (`O_EXCL`), renamed within the directory (`renameat`), and the directory is
//!   flushed through the same descriptor.
//!
//! [`lock`] waits for an exclusive `flock` until a deadline or until the caller says stop
//! ([`LockWait`]), and names the lock file and, from `/proc/locks`, who holds it.
//!
//! On Windows the checks are not made (the state lives in the user's profile); the lock wait is
//! bounded there too.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a path cannot be used for state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsafePath {
    /// A system call failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A symbolic link where a directory or file was expected: never followed.
    #[error("{} is a symbolic link: ipvirt follows none where it keeps state", path.display())]
    Link {
        /// The path.
        path: PathBuf,
    },
    /// Owned by another user.
    #[error("{} belongs to uid {owner}, not to this user (uid {caller}){}", path.display(), if *caller == 0 { " nor root" } else { "" })]
    Owner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The caller's effective uid.
        caller: u32,
    },
    /// Other users can write it (group- or world-writable, not a sticky directory on the way).
    #[error("{} can be written by other users (mode {mode:04o}){}", path.display(), if *sticky { "; a shared sticky directory such as /tmp is not a place for state: use a directory of your own" } else { "" })]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Whether it is a sticky directory (acceptable on the way, not as the state's directory).
        sticky: bool,
    },
    /// Not a directory.
    #[error("{} is not a directory", path.display())]
    NotDirectory {
        /// The path.
        path: PathBuf,
    },
    /// Not a regular file (a FIFO, a device, a directory, a socket).
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// A file with more than one name (a hard link to it exists elsewhere).
    #[error("{} has {links} names (hard links): refused", path.display())]
    HardLinked {
        /// The path.
        path: PathBuf,
        /// How many names it has.
        links: u64,
    },
}

impl UnsafePath {
    fn io(path: &Path, what: &'static str, source: io::Error) -> UnsafePath {
        UnsafePath::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    /// The system's error, when a system call failed.
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            UnsafePath::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How a file is opened in a [`PrivateDir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only, never blocking (a FIFO is refused, not waited on).
    Read,
    /// Read and write, created (mode 0600) when missing.
    ReadWriteCreate,
}

/// How long [`lock`] waits, and what else ends the wait.
#[derive(Debug, Clone, Copy)]
pub struct LockWait {
    /// How long to wait for another holder before giving up.
    pub deadline: Duration,
    /// Asked while waiting (every few tens of milliseconds): `true` ends the wait with
    /// [`LockError::Stopped`]. `ipvirt run` passes a check of the signal its handlers recorded,
    /// so a SIGTERM ends a wait for a lock.
    pub stop: fn() -> bool,
}

fn never() -> bool {
    false
}

impl LockWait {
    /// The default deadline: 10 s (a transaction on a state file takes milliseconds).
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

    /// Waits up to `deadline`.
    #[must_use]
    pub const fn new(deadline: Duration) -> LockWait {
        LockWait {
            deadline,
            stop: never,
        }
    }

    /// Also ends the wait when `stop` returns `true`.
    #[must_use]
    pub const fn stopped_by(mut self, stop: fn() -> bool) -> LockWait {
        self.stop = stop;
        self
    }
}

impl Default for LockWait {
    fn default() -> LockWait {
        LockWait::new(LockWait::DEFAULT_DEADLINE)
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process held it past the deadline.
    #[error("lock {}: still held after {} s{}; giving up", path.display(), waited.as_secs_f32().round(), holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long it was waited for.
        waited: Duration,
        /// Who holds it, where the system tells (`/proc/locks`): process id, name and user.
        holder: Option<String>,
    },
    /// The caller's [`LockWait::stop`] ended the wait.
    #[error("lock {}: the wait was stopped (a signal){}", path.display(), holder.as_ref().map(|h| format!("; it is held by {h}")).unwrap_or_default())]
    Stopped {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, where the system tells.
        holder: Option<String>,
    },
    /// `flock` failed.
    #[error("lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// Takes an exclusive lock on `file` (named `path` in errors), waiting as `wait` says: a
/// non-blocking attempt, then again after 10 ms, doubling up to 100 ms between attempts, until the
/// deadline or until `wait.stop` says stop.
///
/// # Errors
///
/// [`LockError::Timeout`] and [`LockError::Stopped`] name the lock file and its holder where the
/// system tells; [`LockError::Io`] when `flock` itself fails.
pub fn lock(file: &File, path: &Path, wait: &LockWait) -> Result<(), LockError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {
                continue;
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        if (wait.stop)() {
            return Err(LockError::Stopped {
                path: path.to_path_buf(),
                holder: holder_of(file),
            });
        }
        let waited = start.elapsed();
        if waited >= wait.deadline {
            return Err(LockError::Timeout {
                path: path.to_path_buf(),
                waited,
                holder: holder_of(file),
            });
        }
        std::thread::sleep(pause.min(wait.deadline - waited));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Who holds a lock on `file`, from `/proc/locks` (Linux): "process PID (NAME, uid UID)".
#[cfg(target_os = "linux")]
fn holder_of(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's line has "->" after the number.
    let pid: u32 = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) == Some(&"->") {
            return None;
        }
        let at = f.iter().position(|x| *x == id)?;
        f.get(at.checked_sub(1)?)?.parse().ok()
    })?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .ok();
    let uid = std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid());
    Some(match (name, uid) {
        (Some(n), Some(u)) => format!("process {pid} ({n}, uid {u})"),
        _ => format!("process {pid}"),
    })
}

#[cfg(not(target_os = "linux"))]
fn holder_of(_file: &File) -> Option<String> {
    None
}

#[cfg(unix)]
pub use unix::PrivateDir;

#[cfg(not(unix))]
pub use other::PrivateDir;

#[cfg(unix)]
mod unix {
    use std::ffi::{CString, OsStr};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path, PathBuf};

    use super::{Access, UnsafePath};

    /// A directory that only the caller (and root) can change, reached without following a link;
    /// files in it are opened relative to it. See the [module docs](super).
    #[derive(Debug)]
    pub struct PrivateDir {
        path: PathBuf,
        fd: OwnedFd,
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::geteuid()
        }
    }

    fn cstr(path: &Path, name: &OsStr) -> Result<CString, UnsafePath> {
        CString::new(name.as_bytes()).map_err(|_| {
            UnsafePath::io(
                path,
                "a name with a NUL byte",
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })
    }

    /// `openat(dir, name, flags)`.
    fn openat(
        dir: libc::c_int,
        name: &CString,
        flags: libc::c_int,
        mode: u32,
    ) -> io::Result<OwnedFd> {
        // SAFETY: name is NUL-terminated; the returned descriptor is new and ours.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by openat and is owned by nobody else.
        #[allow(unsafe_code)]
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn fstat(fd: &impl AsRawFd) -> io::Result<libc::stat> {
        // SAFETY: st is plain data that fstat fills.
        #[allow(unsafe_code)]
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a writable stat buffer; fd is open.
        #[allow(unsafe_code)]
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    /// Checks one directory of the way (`last`: the directory itself).
    fn check_dir(path: &Path, st: &libc::stat, last: bool) -> Result<(), UnsafePath> {
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(UnsafePath::NotDirectory {
                path: path.to_path_buf(),
            });
        }
        let caller = euid();
        let owner_ok = if last {
            st.st_uid == caller
        } else {
            st.st_uid == caller || st.st_uid == 0
        };
        if !owner_ok {
            return Err(UnsafePath::Owner {
                path: path.to_path_buf(),
                owner: st.st_uid,
                caller,
            });
        }
        let mode = st.st_mode & 0o7777;
        let sticky = mode & libc::S_ISVTX != 0;
        if mode & 0o022 != 0 && (last || !sticky) {
            return Err(UnsafePath::Writable {
                path: path.to_path_buf(),
                mode,
                sticky,
            });
        }
        Ok(())
    }

    fn link_or(path: &Path, what: &'static str, e: io::Error) -> UnsafePath {
        // ELOOP: the last component is a link (O_NOFOLLOW); ENOTDIR: a link or file on the way.
        if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        {
            UnsafePath::Link {
                path: path.to_path_buf(),
            }
        } else {
            UnsafePath::io(path, what, e)
        }
    }

    impl PrivateDir {
        /// Opens the existing directory `path` (made canonical first), checking every directory
        /// from `/` down as the [module docs](super) say.
        ///
        /// # Errors
        ///
        /// [`UnsafePath`] naming the first directory that may not be used, and why.
        pub fn open(path: &Path) -> Result<PrivateDir, UnsafePath> {
            let canonical = std::fs::canonicalize(path)
                .map_err(|e| UnsafePath::io(path, "cannot open the directory", e))?;
            let root = CString::new("/").unwrap_or_default();
            let mut fd = openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| UnsafePath::io(Path::new("/"), "cannot open", e))?;
            let mut at = PathBuf::from("/");
            let names: Vec<&OsStr> = canonical
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            let st = fstat(&fd).map_err(|e| UnsafePath::io(&at, "cannot stat", e))?;
            check_dir(&at, &st, names.is_empty())?;
            for (i, name) in names.iter().enumerate() {
                at.push(name);
                let last = i + 1 == names.len();
                let flags = libc::O_DIRECTORY
                    | libc::O_NOFOLLOW
                    | if last { libc::O_RDONLY } else { libc::O_PATH };
                fd = openat(fd.as_raw_fd(), &cstr(&at, name)?, flags, 0)
                    .map_err(|e| link_or(&at, "cannot open the directory", e))?;
                let st = fstat(&fd).map_err(|e| UnsafePath::io(&at, "cannot stat", e))?;
                check_dir(&at, &st, last)?;
            }
            if names.is_empty() {
                fd = openat(libc::AT_FDCWD, &root, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(|e| UnsafePath::io(&at, "cannot open", e))?;
            }
            Ok(PrivateDir { path: at, fd })
        }

        /// Makes `path` and any missing parents (mode `mode`, e.g. 0700), then opens it as
        /// [`open`](Self::open) does. An existing directory is checked, not changed.
        ///
        /// # Errors
        ///
        /// As [`open`](Self::open), and [`UnsafePath::Io`] when a directory cannot be made.
        pub fn create(path: &Path, mode: u32) -> Result<PrivateDir, UnsafePath> {
            use std::os::unix::fs::DirBuilderExt;
            if !path.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(path)
                    .map_err(|e| UnsafePath::io(path, "cannot make the directory", e))?;
            }
            PrivateDir::open(path)
        }

        /// The directory's canonical path.
        #[must_use]
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Opens `name` in the directory without following a link, and checks it: a regular file
        /// of the caller's, not writable by others, with one name. `Ok(None)` when it does not
        /// exist and `access` does not create it.
        ///
        /// # Errors
        ///
        /// [`UnsafePath`] naming the file.
        pub fn open_file(&self, name: &OsStr, access: Access) -> Result<Option<File>, UnsafePath> {
            let path = self.path.join(name);
            let flags = match access {
                Access::Read => libc::O_RDONLY | libc::O_NONBLOCK,
                Access::ReadWriteCreate => libc::O_RDWR | libc::O_CREAT,
            } | libc::O_NOFOLLOW
                | libc::O_NOCTTY;
            let fd = match openat(self.fd.as_raw_fd(), &cstr(&path, name)?, flags, 0o600) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => {
                    return Ok(None);
                }
                Err(e) => return Err(link_or(&path, "cannot open", e)),
            };
            let st = fstat(&fd).map_err(|e| UnsafePath::io(&path, "cannot stat", e))?;
            check_file(&path, &st)?;
            Ok(Some(File::from(fd)))
        }

        /// Creates `name` exclusively (mode 0600; never a link followed, never an existing file
        /// reused), for writing.
        ///
        /// # Errors
        ///
        /// The system's error (`AlreadyExists` when the name is taken).
        pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
            let name = CString::new(name.as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            openat(self.fd.as_raw_fd(), &name, flags, 0o600).map(File::from)
        }

        /// Removes `name` from the directory (a link itself, never what it points to).
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn remove(&self, name: &OsStr) -> io::Result<()> {
            let name = CString::new(name.as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: name is NUL-terminated; the directory descriptor is open.
            #[allow(unsafe_code)]
            let r = unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Renames `from` over `to`, both in the directory (atomic; a link at `to` is replaced,
        /// not followed).
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            let bad = |_| io::Error::from(io::ErrorKind::InvalidInput);
            let from = CString::new(from.as_bytes()).map_err(bad)?;
            let to = CString::new(to.as_bytes()).map_err(bad)?;
            let dir = self.fd.as_raw_fd();
            // SAFETY: both names are NUL-terminated; the directory descriptor is open.
            #[allow(unsafe_code)]
            let r = unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Flushes the directory to disk (makes a rename in it durable).
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn sync(&self) -> io::Result<()> {
            // SAFETY: the descriptor is open.
            #[allow(unsafe_code)]
            let r = unsafe { libc::fsync(self.fd.as_raw_fd()) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }

    /// A file that may hold state: regular, the caller's, not writable by others, one name.
    fn check_file(path: &Path, st: &libc::stat) -> Result<(), UnsafePath> {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(UnsafePath::NotRegular {
                path: path.to_path_buf(),
            });
        }
        let caller = euid();
        if st.st_uid != caller {
            return Err(UnsafePath::Owner {
                path: path.to_path_buf(),
                owner: st.st_uid,
                caller,
            });
        }
        let mode = st.st_mode & 0o7777;
        if mode & 0o022 != 0 {
            return Err(UnsafePath::Writable {
                path: path.to_path_buf(),
                mode,
                sticky: false,
            });
        }
        if st.st_nlink > 1 {
            // (nlink_t is 32 bits on some targets.)
            #[allow(clippy::unnecessary_cast)]
            let links = st.st_nlink as u64;
            return Err(UnsafePath::HardLinked {
                path: path.to_path_buf(),
                links,
            });
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod other {
    use std::ffi::OsStr;
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::{Access, UnsafePath};

    /// A directory for state (on this platform: only checked to be a directory).
    #[derive(Debug)]
    pub struct PrivateDir {
        path: PathBuf,
    }

    impl PrivateDir {
        /// Opens the existing directory `path`.
        ///
        /// # Errors
        ///
        /// [`UnsafePath`] when it is not a directory.
        pub fn open(path: &Path) -> Result<PrivateDir, UnsafePath> {
            let m = std::fs::metadata(path)
                .map_err(|e| UnsafePath::io(path, "cannot open the directory", e))?;
            if !m.is_dir() {
                return Err(UnsafePath::NotDirectory {
                    path: path.to_path_buf(),
                });
            }
            Ok(PrivateDir {
                path: path.to_path_buf(),
            })
        }

        /// Makes `path` and its parents when missing, then opens it.
        ///
        /// # Errors
        ///
        /// As [`open`](Self::open).
        pub fn create(path: &Path, _mode: u32) -> Result<PrivateDir, UnsafePath> {
            std::fs::create_dir_all(path)
                .map_err(|e| UnsafePath::io(path, "cannot make the directory", e))?;
            PrivateDir::open(path)
        }

        /// The directory's path.
        #[must_use]
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Opens `name` in the directory: `Ok(None)` when it does not exist and `access` does not
        /// create it.
        ///
        /// # Errors
        ///
        /// [`UnsafePath`] naming the file.
        pub fn open_file(&self, name: &OsStr, access: Access) -> Result<Option<File>, UnsafePath> {
            let path = self.path.join(name);
            let mut o = OpenOptions::new();
            match access {
                Access::Read => o.read(true),
                Access::ReadWriteCreate => o.read(true).write(true).create(true).truncate(false),
            };
            let file = match o.open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => {
                    return Ok(None);
                }
                Err(e) => return Err(UnsafePath::io(&path, "cannot open", e)),
            };
            if !file
                .metadata()
                .map_err(|e| UnsafePath::io(&path, "cannot stat", e))?
                .is_file()
            {
                return Err(UnsafePath::NotRegular { path });
            }
            Ok(Some(file))
        }

        /// Creates `name` exclusively, for writing.
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.path.join(name))
        }

        /// Removes `name` from the directory.
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn remove(&self, name: &OsStr) -> io::Result<()> {
            std::fs::remove_file(self.path.join(name))
        }

        /// Renames `from` over `to`, both in the directory.
        ///
        /// # Errors
        ///
        /// The system's error.
        pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            std::fs::rename(self.path.join(from), self.path.join(to))
        }

        /// NTFS journals a rename itself: nothing to flush.
        ///
        /// # Errors
        ///
        /// Never.
        pub fn sync(&self) -> io::Result<()> {
            Ok(())
        }
    }
}

/// The name of `path`'s last component, for [`PrivateDir`] calls.
pub(crate) fn file_name(path: &Path) -> &OsStr {
    path.file_name().unwrap_or(OsStr::new(""))
}
