//! The launcher's lease state: the pool's snapshot plus who holds each lease, kept in an
//! [`ipvirt::StateFile`] (atomic replace, separate lock file).
//!
//! Rules (SPEC §10):
//! - every launcher of a session adds itself as a holder of the session's lease; concurrent
//!   launchers of one session share one lease (and one VIP);
//! - a holder lives while its launcher runs or while any process carrying its token runs (the
//!   command and everything it started, also after the launcher was killed);
//! - a lease is released when its session has no live holder left: by the last launcher when it
//!   ends, or, after a launcher was killed, by the next launcher or `--status` that looks;
//! - holders recorded under another boot are all gone.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipvirt::{PoolSnapshot, SessionId, StateFile, StaticPool};
use serde::{Deserialize, Serialize};

use crate::procfs;

/// The lease state file's format version.
const VERSION: u32 = 1;

/// One launcher's hold on its session's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Holder {
    pub(crate) session: SessionId,
    /// The launcher's pid and start time.
    pub(crate) pid: u32,
    pub(crate) start: u64,
    /// The value of `IPVIRT_LEASE` in the session's processes.
    pub(crate) token: String,
}

impl Holder {
    /// The holder for this launcher.
    pub(crate) fn me(session: SessionId, boot: &str) -> Holder {
        let pid = std::process::id();
        let start = procfs::start_time(pid).unwrap_or(0);
        let boot8: String = boot.chars().filter(|c| *c != '-').take(8).collect();
        Holder {
            session,
            pid,
            start,
            token: format!("{boot8}-{pid}-{start}"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseState {
    version: u32,
    boot_id: String,
    pool: PoolSnapshot,
    holders: Vec<Holder>,
}

/// The pool restored from `file` (if it exists), with the holders, under the caller's lock.
struct Loaded {
    pool: StaticPool,
    holders: Vec<Holder>,
    notes: Vec<String>,
}

fn load(
    file: &StateFile,
    lock: &ipvirt::StateLock<'_>,
    mut pool: StaticPool,
    boot: &str,
) -> Result<Loaded, String> {
    let mut notes = Vec::new();
    let Some(state) = lock.read::<LeaseState>().map_err(|e| e.to_string())? else {
        return Ok(Loaded {
            pool,
            holders: Vec::new(),
            notes,
        });
    };
    if state.version != VERSION {
        return Err(format!(
            "lease file {} has format version {}; this launcher reads version {VERSION}",
            file.path().display(),
            state.version
        ));
    }
    for w in pool
        .restore(&state.pool)
        .map_err(|e| format!("lease file {} does not restore: {e}", file.path().display()))?
    {
        notes.push(format!("lease file {}: {w}", file.path().display()));
    }
    let mut holders = state.holders;
    if state.boot_id != boot {
        // The host restarted since: nobody from before holds anything.
        holders.clear();
    }
    Ok(Loaded {
        pool,
        holders,
        notes,
    })
}

/// Drops the holders that are gone (their launcher ended and no process carries their token), and
/// releases the leases of sessions left without a holder. A holder named by
/// `ending` is judged by its token alone (the launcher that is ending). Returns the released leases.
fn reclaim(loaded: &mut Loaded, ending: Option<&Holder>) -> Vec<(SessionId, Ipv4Addr)> {
    let suspects: HashSet<String> = loaded
        .holders
        .iter()
        .filter(|h| ending == Some(*h) || !procfs::alive(h.pid, h.start))
        .map(|h| h.token.clone())
        .collect();
    let in_use = procfs::tokens_in_use(&suspects);
    loaded
        .holders
        .retain(|h| !suspects.contains(&h.token) || in_use.contains(&h.token));
    let held: HashSet<SessionId> = loaded.holders.iter().map(|h| h.session).collect();
    let mut released = Vec::new();
    for (session, addr) in loaded.pool.leases() {
        if !held.contains(&session) {
            loaded.pool.release(session);
            released.push((session, addr));
        }
    }
    // A holder whose lease is gone (the pool changed under it) holds nothing.
    let leased: HashSet<SessionId> = loaded.pool.leases().iter().map(|&(s, _)| s).collect();
    loaded.holders.retain(|h| leased.contains(&h.session));
    released
}

fn save(lock: &ipvirt::StateLock<'_>, loaded: &Loaded, boot: &str) -> Result<(), String> {
    let state = LeaseState {
        version: VERSION,
        boot_id: boot.to_owned(),
        pool: loaded.pool.snapshot(),
        holders: loaded.holders.clone(),
    };
    lock.write(&state).map_err(|e| e.to_string())
}

/// What [`acquire`] got.
pub(crate) struct Acquired {
    /// The session's VIP, or `None` when the pool is exhausted.
    pub(crate) vip: Option<Ipv4Addr>,
    /// Warnings to print (stale entries dropped, leases reclaimed).
    pub(crate) notes: Vec<String>,
}

/// Leases `me.session`'s VIP (or joins its live lease) and records `me` as a holder. Reclaims the
/// leases of sessions that are gone first.
pub(crate) fn acquire(
    file: &StateFile,
    pool: StaticPool,
    me: &Holder,
    boot: &str,
) -> Result<Acquired, String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool, boot)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    for (s, a) in reclaim(&mut loaded, None) {
        notes.push(format!(
            "reclaimed {a} from session {s}: none of its processes runs any more"
        ));
    }
    let vip = match loaded.pool.lease(me.session) {
        Ok(a) => {
            loaded.holders.push(me.clone());
            Some(a.addr())
        }
        Err(_) => None,
    };
    save(&lock, &loaded, boot)?;
    Ok(Acquired { vip, notes })
}

/// Ends `me`'s hold: its lease is released when no other holder of the session is left and no
/// process carrying `me`'s token still runs.
pub(crate) fn release(
    file: &StateFile,
    pool: StaticPool,
    me: &Holder,
    boot: &str,
) -> Result<Vec<String>, String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool, boot)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    let released = reclaim(&mut loaded, Some(me));
    if loaded.holders.contains(me) {
        notes.push(format!(
            "session {}: processes started by this launcher still run; the lease stays until they end",
            me.session
        ));
    }
    for (s, a) in released.into_iter().filter(|&(s, _)| s != me.session) {
        notes.push(format!(
            "reclaimed {a} from session {s}: none of its processes runs any more"
        ));
    }
    save(&lock, &loaded, boot)?;
    Ok(notes)
}

/// A live lease: the session, its VIP and how many launchers hold it.
pub(crate) type LiveLease = (SessionId, Ipv4Addr, usize);

/// Reclaims what is gone and lists the live leases with their holder counts.
pub(crate) fn status(
    file: &StateFile,
    pool: StaticPool,
    boot: &str,
) -> Result<(Vec<LiveLease>, Vec<String>), String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool, boot)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    for (s, a) in reclaim(&mut loaded, None) {
        notes.push(format!(
            "reclaimed {a} from session {s}: none of its processes runs any more"
        ));
    }
    if file.path().exists() {
        save(&lock, &loaded, boot)?;
    }
    let leases = loaded
        .pool
        .leases()
        .into_iter()
        .map(|(s, a)| {
            (
                s,
                a,
                loaded.holders.iter().filter(|h| h.session == s).count(),
            )
        })
        .collect();
    Ok((leases, notes))
}
