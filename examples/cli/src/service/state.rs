//! What the service keeps in its state directory (`/var/lib/ipvirt/`), each an atomic
//! `StateFile`: one file per live session (`sessions/N.json`, written when the session opens or
//! changes, removed when it ends, so opening a session costs the same with one or ten thousand
//! others), and, with `identity = "user"`, the number of every user who had one
//! (`users.json`). A restarted service reads them back and finds its sessions again; a session
//! file written under another boot holds no live session.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ipvirt_host::StateFile;
use ipvirt_host::holder;
use serde::{Deserialize, Serialize};

/// The format version of the state files.
pub(crate) const VERSION: u32 = 1;

/// `sessions/N.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    version: u32,
    boot_id: String,
    session: SavedSession,
}

/// `users.json`: uid → session number (`identity = "user"`), kept across logins and restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    version: u32,
    users: BTreeMap<u32, u32>,
}

/// The service's state files.
///
/// A session's file is replaced atomically (a temporary file renamed over it) but not flushed to
/// disk: it only has to survive the service (a crash, a kill, a restart), never the machine — a
/// session of a previous boot holds nothing, and the files of another boot are discarded. Not
/// flushing keeps a login's cost to microseconds instead of the disk's milliseconds. The
/// directory is the service's own (mode 0700, root's), so nobody else can place a file or a link
/// in it.
#[derive(Debug)]
pub(crate) struct Store {
    sessions: PathBuf,
    users: StateFile,
}

fn version_error(path: &Path, found: u32) -> String {
    format!(
        "{}: format version {found}; this ipvirt reads version {VERSION} (move it away to start without it)",
        path.display()
    )
}

impl Store {
    /// The store in the (already checked, private) state directory `dir`.
    pub(crate) fn new(dir: &Path) -> Result<Store, String> {
        let sessions = dir.join("sessions");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sessions)
            .map_err(|e| format!("{}: {e}", sessions.display()))?;
        Ok(Store {
            sessions,
            users: StateFile::new(dir.join("users.json")),
        })
    }

    /// The sessions saved under this boot (those of another boot are removed), and the users'
    /// numbers.
    pub(crate) fn load(&self) -> Result<(Vec<SavedSession>, BTreeMap<u32, u32>), String> {
        let boot = holder::boot_id();
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.sessions)
            .map_err(|e| format!("{}: {e}", self.sessions.display()))?;
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let file = StateFile::new(&path);
            let Some(s) = file
                .read::<SessionFile>()
                .map_err(|e| format!("{e} (move it away to start without that session)"))?
            else {
                continue;
            };
            if s.version != VERSION {
                return Err(version_error(&path, s.version));
            }
            if s.boot_id == boot {
                out.push(s.session);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        out.sort_by_key(|s| s.number);
        let users = match self.users.read::<UsersFile>().map_err(|e| e.to_string())? {
            Some(u) if u.version != VERSION => {
                return Err(version_error(self.users.path(), u.version));
            }
            Some(u) => u.users,
            None => BTreeMap::new(),
        };
        Ok((out, users))
    }

    /// Writes a session's file.
    pub(crate) fn put(&self, s: &SavedSession) -> Result<(), String> {
        let path = self.sessions.join(format!("{}.json", s.number));
        let tmp = self.sessions.join(format!("{}.json.tmp", s.number));
        let mut json = serde_json::to_vec(&SessionFile {
            version: VERSION,
            boot_id: holder::boot_id(),
            session: s.clone(),
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
        json.push(b'\n');
        std::fs::write(&tmp, &json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("{}: {e}", path.display())
            })
    }

    /// Removes a session's file.
    pub(crate) fn remove(&self, number: u32) {
        let _ = std::fs::remove_file(self.sessions.join(format!("{number}.json")));
    }

    /// Writes the users' numbers.
    pub(crate) fn put_users(&self, users: &BTreeMap<u32, u32>) -> Result<(), String> {
        let lock = self.users.lock().map_err(|e| e.to_string())?;
        lock.write(&UsersFile {
            version: VERSION,
            users: users.clone(),
        })
        .map_err(|e| e.to_string())
    }
}

/// Where a session's VIP came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum VipSource {
    /// The policy's static pool, through the lease book.
    Static,
    /// The DHCP server, through the service's DHCP client.
    Dhcp,
}

/// One cgroup of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedCgroup {
    /// Its directory.
    pub(crate) path: PathBuf,
    /// Its id (the inode of the directory).
    pub(crate) id: u64,
    /// Made by the service (`<root>/session-N`, removed at the end), or logind's (registered).
    pub(crate) owned: bool,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedSession {
    pub(crate) number: u32,
    pub(crate) user: String,
    pub(crate) uid: u32,
    pub(crate) service: Option<String>,
    pub(crate) tty: Option<String>,
    pub(crate) rhost: Option<String>,
    pub(crate) started: u64,
    pub(crate) vip: Option<Ipv4Addr>,
    pub(crate) vip_source: Option<VipSource>,
    /// Logins that opened it and have not closed.
    pub(crate) logins: u32,
    pub(crate) cgroups: Vec<SavedCgroup>,
    /// The layer that virtualizes it (`kernel` or `preload`).
    pub(crate) layer: String,
}
