//! What the service keeps in `/var/lib/ipvirt/sessions.json` (an atomic `StateFile`): the live
//! sessions and, with `identity = "user"`, the number of every user who had one. A restarted
//! service reads it back and finds its sessions again; a file written under another boot holds
//! no live session.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The format version of `sessions.json`.
pub(crate) const VERSION: u32 = 1;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    pub(crate) version: u32,
    pub(crate) boot_id: String,
    pub(crate) sessions: Vec<SavedSession>,
    /// uid → session number (`identity = "user"`), kept across logins and restarts.
    #[serde(default)]
    pub(crate) users: BTreeMap<u32, u32>,
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
