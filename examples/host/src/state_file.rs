//! Atomic, locked state files (SPEC §10): see [`StateFile`].

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::private_fs::{self, Access, LockError, LockWait, PrivateDir, UnsafePath, file_name};

/// A JSON state file that survives faults (SPEC §10): replaced atomically, locked apart from the data.
///
/// Leases are the one piece of state the layers keep, and a launcher can be killed at any moment
/// (SIGKILL, the OOM killer, power loss) or meet a full disk. A [`StateFile`] keeps a serde value
/// (JSON) in a file the way trusted lease stores do (ISC Kea's memfile, dnsmasq):
///
/// - **Writes replace, never edit**: the new state goes to `<path>.tmp`, is flushed to disk
///   (`fsync`), then renamed over `<path>`, and the directory is synced so the rename itself is
///   durable. A crash, a kill or a full disk at any step leaves either the old file or the new one,
///   never a truncated one; a failed write removes its temporary file and leaves the old state.
/// - **The lock is a separate file**, `<path>.lock` (an exclusive `flock`), held across
///   read-modify-write by [`StateFile::lock`]. Because the data file is only ever renamed into place,
///   a reader that takes no lock ([`StateFile::read`]) still sees a whole file, old or new. The lock
///   file is never deleted (deleting it would let two writers lock two different files).
/// - **Bad state is an error, never a silent reset**: a file that does not parse is
///   [`StateError::Corrupt`], naming the file and where it stops making sense, and the file is left
///   as it is for inspection. Something other than a regular file at the path, or a file larger
///   than [`StateFile::MAX_BYTES`], is refused before it is read.
/// - **Nobody else's files** (SPEC §10, found by attack): the directory, the state, its temporary
///   file and its lock are reached through a [`PrivateDir`]: no symbolic link is followed, the
///   directory and every file must be the caller's and not writable by other users (a shared
///   sticky directory such as `/tmp` is refused as the state's directory), the temporary file is
///   created exclusively, the rename happens within the checked directory. A violation is
///   [`StateError::Unsafe`], naming the path and why.
/// - **A bounded wait**: [`lock`](Self::lock) waits at most the [`LockWait`]'s deadline (10 s by
///   default, [`with_lock_wait`](Self::with_lock_wait) to change it or to stop it on a signal),
///   then fails with an error that names the lock file and, from `/proc/locks`, its holder.
///
/// ```
/// use ipvirt::{Host, PoolSnapshot, SessionId, StaticPool};
/// use ipvirt_host::StateFile;
///
/// let dir = std::env::temp_dir().join(format!("ipvirt-doc-state-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let state = StateFile::new(dir.join("leases.json"));
/// let mut pool = StaticPool::new(&["192.0.2.100-192.0.2.109".parse()?], &Host::default())?;
/// {
///     let locked = state.lock()?;                         // one writer at a time
///     if let Some(snap) = locked.read::<PoolSnapshot>()? {
///         let _warnings = pool.restore(&snap)?;
///     }
///     pool.lease(SessionId::new(7))?;
///     locked.write(&pool.snapshot())?;                   // atomic replace
/// }
/// let seen: PoolSnapshot = state.read()?.expect("written");  // no lock needed to read
/// assert_eq!(seen.leases.len(), 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
    wait: LockWait,
}

/// Two state files are the same when they name the same files (however long they wait).
impl PartialEq for StateFile {
    fn eq(&self, other: &StateFile) -> bool {
        self.path == other.path
    }
}

impl Eq for StateFile {}

/// The step of a read or write that failed (for [`StateError::Io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateStep {
    /// Opening or creating the lock file.
    OpenLock,
    /// Taking the lock.
    Lock,
    /// Reading the state.
    Read,
    /// Creating the temporary file.
    CreateTemp,
    /// Writing the temporary file.
    WriteTemp,
    /// Flushing the temporary file to disk.
    SyncTemp,
    /// Renaming the temporary file over the state.
    Rename,
    /// Flushing the directory (makes the rename durable).
    SyncDir,
}

impl core::fmt::Display for StateStep {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StateStep::OpenLock => "cannot open the lock file",
            StateStep::Lock => "cannot lock",
            StateStep::Read => "cannot read",
            StateStep::CreateTemp => "cannot create the temporary file",
            StateStep::WriteTemp => "cannot write the temporary file",
            StateStep::SyncTemp => "cannot flush the temporary file to disk",
            StateStep::Rename => "cannot rename the temporary file over the state",
            StateStep::SyncDir => "renamed, but cannot flush the directory to disk",
        })
    }
}

/// An error reading or writing a [`StateFile`]. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A system call failed; the old state is intact unless `step` is
    /// [`StateStep::SyncDir`] (then the new state is in place but may not survive a power loss).
    #[error("state file {path}: {step}: {source}")]
    Io {
        /// The file the step worked on.
        path: PathBuf,
        /// What was being done.
        step: StateStep,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The file does not parse; it is left as it is.
    #[error(
        "state file {path} is corrupt ({message}); it was left as it is for inspection: move it away to start afresh"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line and column).
        message: String,
    },
    /// Something other than a regular file is at the path (a FIFO would hang the reader).
    #[error("state file {path} is not a regular file")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// The directory or a file may not hold state: a link, another user's, writable by others
    /// (see [`PrivateDir`]).
    #[error("state file {}: {source}", path.display())]
    Unsafe {
        /// The state file.
        path: PathBuf,
        /// What is wrong, naming the directory or file.
        #[source]
        source: UnsafePath,
    },
    /// The lock was held by another process past the deadline, or the wait was stopped.
    #[error("state file {}: {source}", path.display())]
    Lock {
        /// The state file.
        path: PathBuf,
        /// Why, naming the lock file and its holder.
        #[source]
        source: LockError,
    },
    /// The file is larger than [`StateFile::MAX_BYTES`].
    #[error("state file {path} has {size} bytes, more than the {max} a state file may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The value could not be turned into JSON (a map with non-string keys, for instance).
    #[error("state file {path}: cannot encode the state: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl StateError {
    fn io(path: &Path, step: StateStep, source: io::Error) -> StateError {
        StateError::Io {
            path: path.to_path_buf(),
            step,
            source,
        }
    }
}

/// The lock on a [`StateFile`], from [`StateFile::lock`]; released when dropped.
#[derive(Debug)]
pub struct StateLock<'a> {
    state: &'a StateFile,
    dir: PrivateDir,
    _file: File,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl StateFile {
    /// The largest state file read: 64 MiB (a pool's full state with 65 536 remembered sessions
    /// is about 3 MB of JSON).
    pub const MAX_BYTES: u64 = 64 << 20;

    /// The state kept at `path`; its temporary file is `<path>.tmp` and its lock `<path>.lock`,
    /// both in the same directory (a rename is atomic only within one file system).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        let path = path.into();
        StateFile {
            tmp: with_suffix(&path, ".tmp"),
            lock: with_suffix(&path, ".lock"),
            path,
            wait: LockWait::default(),
        }
    }

    /// The same state, its lock waited for as `wait` says (a deadline, and what else stops the
    /// wait: `ipvirt run` stops on a signal).
    #[must_use]
    pub fn with_lock_wait(mut self, wait: LockWait) -> StateFile {
        self.wait = wait;
        self
    }

    /// The state's directory, opened and checked.
    fn dir(&self) -> Result<PrivateDir, StateError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        PrivateDir::open(dir).map_err(|source| self.unsafe_path(source))
    }

    fn unsafe_path(&self, source: UnsafePath) -> StateError {
        StateError::Unsafe {
            path: self.path.clone(),
            source,
        }
    }

    /// The state's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file's path.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }

    /// The temporary file's path (it exists only during a write, or after a crash during one; it
    /// is never read).
    #[must_use]
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Takes the exclusive lock, waiting for other holders as the [`LockWait`] says, creating
    /// the lock file (mode 0600) if needed.
    ///
    /// # Errors
    ///
    /// [`StateError::Unsafe`] when the directory or the lock file may not be used,
    /// [`StateError::Lock`] when another process holds the lock past the deadline (or the wait
    /// was stopped), naming the lock file and its holder; [`StateError::Io`] at
    /// [`StateStep::OpenLock`] or [`StateStep::Lock`].
    pub fn lock(&self) -> Result<StateLock<'_>, StateError> {
        let dir = self.dir()?;
        let file = match dir.open_file(file_name(&self.lock), Access::ReadWriteCreate) {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(StateError::io(
                    &self.lock,
                    StateStep::OpenLock,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            Err(UnsafePath::Io { source, .. }) => {
                return Err(StateError::io(&self.lock, StateStep::OpenLock, source));
            }
            Err(e) => return Err(self.unsafe_path(e)),
        };
        private_fs::lock(&file, &self.lock, &self.wait).map_err(|source| match source {
            LockError::Io { source, .. } => StateError::io(&self.lock, StateStep::Lock, source),
            source => StateError::Lock {
                path: self.path.clone(),
                source,
            },
        })?;
        Ok(StateLock {
            state: self,
            dir,
            _file: file,
        })
    }

    /// Reads the state without taking the lock: `None` when there is no state yet. Always a whole
    /// file (old or new), because writers only rename complete files into place.
    ///
    /// # Errors
    ///
    /// [`StateError::Corrupt`], [`StateError::NotRegular`], [`StateError::TooLarge`], or
    /// [`StateError::Io`] at [`StateStep::Read`].
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        self.read_in(&self.dir()?)
    }

    fn read_in<T: DeserializeOwned>(&self, dir: &PrivateDir) -> Result<Option<T>, StateError> {
        let bytes = match self.read_bytes(dir)? {
            Some(b) => b,
            None => return Ok(None),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    fn read_bytes(&self, dir: &PrivateDir) -> Result<Option<Vec<u8>>, StateError> {
        let path = &self.path;
        let mut file = match dir.open_file(file_name(path), Access::Read) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(UnsafePath::NotRegular { .. }) => {
                return Err(StateError::NotRegular { path: path.clone() });
            }
            Err(UnsafePath::Io { source, .. }) => {
                return Err(StateError::io(path, StateStep::Read, source));
            }
            Err(e) => return Err(self.unsafe_path(e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| StateError::io(path, StateStep::Read, e))?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to tell "exactly at the limit" from "over it", even when the
        // file grew after the metadata was taken.
        (&mut file)
            .take(Self::MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StateError::io(path, StateStep::Read, e))?;
        let size = bytes.len() as u64;
        if size > Self::MAX_BYTES {
            return Err(StateError::TooLarge {
                path: path.clone(),
                size: meta.len().max(size),
                max: Self::MAX_BYTES,
            });
        }
        Ok(Some(bytes))
    }
}

impl StateLock<'_> {
    /// Reads the state under the lock: `None` when there is no state yet.
    ///
    /// # Errors
    ///
    /// As [`StateFile::read`].
    pub fn read<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        self.state.read_in(&self.dir)
    }

    /// Replaces the state with `value`, atomically: temporary file, flush, rename, directory flush.
    /// On an error before the rename the temporary file is removed and the old state is intact.
    ///
    /// # Errors
    ///
    /// [`StateError::Encode`], or [`StateError::Io`] naming the step that failed (a full disk is
    /// [`StateStep::WriteTemp`] or [`StateStep::SyncTemp`] with `ENOSPC`).
    pub fn write<T: Serialize>(&self, value: &T) -> Result<(), StateError> {
        let state = self.state;
        let mut json = serde_json::to_vec_pretty(value).map_err(|e| StateError::Encode {
            path: state.path.clone(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        let tmp = &state.tmp;
        let (tmp_name, name) = (file_name(tmp), file_name(&state.path));
        let dir = &self.dir;
        let written = (|| {
            // Created exclusively: never a link followed, never a file someone else made. A
            // leftover of a killed writer (or anything at that name: this directory is ours, and
            // we hold the lock) is removed first; removing a link removes the link only.
            let mut file = match dir.create_new(tmp_name) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    dir.remove(tmp_name)
                        .map_err(|e| (StateStep::CreateTemp, e))?;
                    dir.create_new(tmp_name)
                }
                other => other,
            }
            .map_err(|e| (StateStep::CreateTemp, e))?;
            file.write_all(&json)
                .map_err(|e| (StateStep::WriteTemp, e))?;
            file.sync_all().map_err(|e| (StateStep::SyncTemp, e))?;
            drop(file);
            dir.rename(tmp_name, name)
                .map_err(|e| (StateStep::Rename, e))
        })();
        if let Err((step, e)) = written {
            // Best effort: the old state is intact either way, and the next write replaces it.
            if step != StateStep::CreateTemp {
                let _ = dir.remove(tmp_name);
            }
            return Err(StateError::io(tmp, step, e));
        }
        dir.sync()
            .map_err(|e| StateError::io(&state.path, StateStep::SyncDir, e))
    }
}
