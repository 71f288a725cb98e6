//! The launcher's lease state on Windows: the pool's snapshot plus who holds each lease, kept in
//! an [`ipvirt::StateFile`] (atomic replace, separate lock file).
//!
//! A holder is a process, named by its id and its creation time (so a reused id is not mistaken
//! for it): the launcher and the program it started. A lease lives while one of its session's
//! holders runs; the last launcher of a session releases it when it ends, and the next launch (or
//! `--status`) reclaims the leases whose holders are all gone (a launcher that was killed while its
//! program still ran leaves the program as the holder). Programs the program starts are not
//! holders: the lease ends with the launched program (a limit of this example; a job object would
//! track them).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipvirt::{PoolSnapshot, SessionId, StateFile, StateLock, StaticPool};
use serde::{Deserialize, Serialize};
use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The lease state file's format version.
const VERSION: u32 = 1;

/// One process holding its session's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Holder {
    pub(crate) session: SessionId,
    pub(crate) pid: u32,
    /// The process's creation time (`GetProcessTimes`, 100 ns units since 1601).
    pub(crate) created: u64,
}

impl Holder {
    /// The holder for process `pid`, or `None` when it cannot be inspected.
    pub(crate) fn of(session: SessionId, pid: u32) -> Option<Holder> {
        let (created, _) = inspect(pid)?;
        Some(Holder {
            session,
            pid,
            created,
        })
    }

    fn alive(&self) -> bool {
        inspect(self.pid).is_some_and(|(created, running)| created == self.created && running)
    }
}

/// A process's creation time and whether it still runs.
fn inspect(pid: u32) -> Option<(u64, bool)> {
    // SAFETY: OpenProcess has no memory preconditions.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return None;
    }
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    let mut code = 0u32;
    // SAFETY: h is an open process handle; the out pointers are valid.
    let ok = unsafe {
        GetProcessTimes(h, &mut c, &mut e, &mut k, &mut u) != 0
            && GetExitCodeProcess(h, &mut code) != 0
    };
    // SAFETY: closed once.
    unsafe { CloseHandle(h) };
    ok.then(|| {
        (
            (u64::from(c.dwHighDateTime) << 32) | u64::from(c.dwLowDateTime),
            code == STILL_ACTIVE as u32,
        )
    })
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseState {
    version: u32,
    pool: PoolSnapshot,
    holders: Vec<Holder>,
}

struct Loaded {
    pool: StaticPool,
    holders: Vec<Holder>,
    notes: Vec<String>,
}

fn load(file: &StateFile, lock: &StateLock<'_>, mut pool: StaticPool) -> Result<Loaded, String> {
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
    Ok(Loaded {
        pool,
        holders: state.holders,
        notes,
    })
}

/// Drops the holders that are gone (and those in `ending`), releases the leases of sessions left
/// without a holder, and returns them.
fn reclaim(loaded: &mut Loaded, ending: &[Holder]) -> Vec<(SessionId, Ipv4Addr)> {
    loaded.holders.retain(|h| !ending.contains(h) && h.alive());
    let held: HashSet<SessionId> = loaded.holders.iter().map(|h| h.session).collect();
    let mut released = Vec::new();
    for (session, addr) in loaded.pool.leases() {
        if !held.contains(&session) {
            loaded.pool.release(session);
            released.push((session, addr));
        }
    }
    released
}

fn save(lock: &StateLock<'_>, loaded: &Loaded) -> Result<(), String> {
    let state = LeaseState {
        version: VERSION,
        pool: loaded.pool.snapshot(),
        holders: loaded.holders.clone(),
    };
    lock.write(&state).map_err(|e| e.to_string())
}

fn reclaimed_notes(released: &[(SessionId, Ipv4Addr)], except: Option<SessionId>) -> Vec<String> {
    released
        .iter()
        .filter(|(s, _)| Some(*s) != except)
        .map(|(s, a)| {
            format!("reclaimed {a} from session {s}: none of its processes runs any more")
        })
        .collect()
}

/// Leases the session's VIP (or joins its live lease) for the holders `me`. `Ok(None)`: the pool
/// is exhausted.
pub(crate) fn acquire(
    file: &StateFile,
    pool: StaticPool,
    me: &[Holder],
) -> Result<(Option<Ipv4Addr>, Vec<String>), String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    notes.extend(reclaimed_notes(&reclaim(&mut loaded, &[]), None));
    let Some(session) = me.first().map(|h| h.session) else {
        return Err("no holder given".into());
    };
    let vip = match loaded.pool.lease(session) {
        Ok(a) => {
            loaded.holders.extend(me.iter().cloned());
            Some(a.addr())
        }
        Err(_) => None,
    };
    save(&lock, &loaded)?;
    Ok((vip, notes))
}

/// Adds a holder to its session's live lease (the program, once started).
pub(crate) fn add(file: &StateFile, pool: StaticPool, holder: Holder) -> Result<(), String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool)?;
    loaded.holders.push(holder);
    save(&lock, &loaded)
}

/// Ends the holds of `me`; the lease is released when no other holder of its session runs.
pub(crate) fn release(
    file: &StateFile,
    pool: StaticPool,
    me: &[Holder],
) -> Result<Vec<String>, String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    let released = reclaim(&mut loaded, me);
    notes.extend(reclaimed_notes(&released, me.first().map(|h| h.session)));
    save(&lock, &loaded)?;
    Ok(notes)
}

/// A live lease: the session, its VIP and how many processes hold it.
pub(crate) type LiveLease = (SessionId, Ipv4Addr, usize);

/// Reclaims what is gone and lists the live leases with their holder counts.
pub(crate) fn status(
    file: &StateFile,
    pool: StaticPool,
) -> Result<(Vec<LiveLease>, Vec<String>), String> {
    let lock = file.lock().map_err(|e| e.to_string())?;
    let mut loaded = load(file, &lock, pool)?;
    let mut notes = std::mem::take(&mut loaded.notes);
    notes.extend(reclaimed_notes(&reclaim(&mut loaded, &[]), None));
    if file.path().exists() {
        save(&lock, &loaded)?;
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
