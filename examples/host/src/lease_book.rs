//! The one book of every VIP lease on a host (SPEC §10): which session holds which address, who
//! holds it, and the static pool's state, in one [`StateFile`].
//!
//! Every launcher (`ipvirt run`, the Windows `winsession`) and the service lease through the
//! same book, so two launchers, a restarted service or a killed launcher can never hand one
//! address to two live sessions:
//!
//! - **Static leases** come from the policy's pool ([`StaticPool`]); the book keeps the pool's
//!   snapshot (its rotation cursor and remembered sessions survive, so a returning session gets
//!   its old address back).
//! - **Other sources** (DHCP) [`claim`](LeaseBook::claim) an address for a session: refused while
//!   another live session holds it (from the pool or from a claim), so an offer of a taken
//!   address is declined instead of used.
//! - **Holders**: a lease lives while one of its session's holders does ([`Holder`]): a process
//!   (its id and start time, so a reused id is not mistaken for it) or any process carrying its
//!   token in the environment (Linux), or a cgroup with processes in it (Linux: the kernel
//!   layer's and the service's sessions), or a job object with processes in it (Windows: a
//!   launcher's session). Several launchers of one session share its lease; it
//!   ends with the last holder.
//! - **Reclaiming**: every transaction first drops the holders that are gone and releases the
//!   leases of sessions left without one — a launcher that was SIGKILLed, OOM-killed or lost to a
//!   power cut leaves nothing held once its processes are gone. Holders recorded under another
//!   boot ([`boot_id`](crate::holder::boot_id)) are all gone.
//!
//! The book is read and written under the [`StateFile`]'s lock, so transactions of different
//! processes are serialised; a reader sees a whole file, old or new.
//!
//! ```no_run
//! use ipvirt::{Host, Policy, SessionId, StaticPool};
//! use ipvirt_host::lease_book::{Holder, LeaseBook};
//!
//! let policy = Policy::from_toml(r#"
//!     [virtual_ip]
//!     enabled = true
//!     adapter = "192.0.2.0/24"
//!     pool = ["192.0.2.100-192.0.2.101"]
//! "#)?;
//! let pool = || StaticPool::from_policy(&policy.virtual_ip, &Host::new([]));
//! let book = LeaseBook::new("/var/lib/ipvirt/leases.json");
//! let me = Holder::launcher().expect("this process can be inspected");
//! let got = book.acquire(pool()?, SessionId::new(7), &[me.clone()])?;
//! println!("session 7: {:?} ({:?})", got.vip, got.notes);
//! book.release(pool()?, SessionId::new(7), &[me])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipvirt::{PoolError, PoolSnapshot, SessionId, StaticPool};
use serde::{Deserialize, Serialize};

use crate::holder;
use crate::{StateError, StateFile, StateLock};

/// The book's format version. Version 1 was two launcher-specific formats (0.2).
pub const VERSION: u32 = 2;

/// What keeps a session's lease alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Holder {
    /// A process (a launcher, a program): alive while the process with this id and start time
    /// runs (Linux: clock ticks after boot; Windows: its creation time), or, with a token, while
    /// any process carries `IPVIRT_LEASE=<token>` in its environment (Linux: the command a
    /// launcher started and everything it starts, also after the launcher was killed).
    Process {
        /// The process id.
        pid: u32,
        /// Its start time, as [`holder::start_time`] reads it.
        start: u64,
        /// The token its session's processes carry, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// A cgroup, alive while it has processes (Linux: a kernel-layer or service session).
    Cgroup(PathBuf),
    /// A named job object, alive while it has processes (Windows: the program a launcher started
    /// and every process it starts; see [`holder::job_active`]).
    Job(String),
}

impl Holder {
    /// The holder for process `pid`, or `None` when it cannot be inspected (gone, or not ours to
    /// see).
    pub fn process(pid: u32) -> Option<Holder> {
        Some(Holder::Process {
            pid,
            start: holder::start_time(pid)?,
            token: None,
        })
    }

    /// The holder for the calling process.
    pub fn this_process() -> Option<Holder> {
        Holder::process(std::process::id())
    }

    /// The holder for the calling process as a launcher: with a token unique to it on this boot,
    /// which the processes it starts carry in their environment ([`holder::TOKEN_VAR`]).
    pub fn launcher() -> Option<Holder> {
        let pid = std::process::id();
        let start = holder::start_time(pid)?;
        let boot: String = holder::boot_id()
            .chars()
            .filter(|c| *c != '-')
            .take(8)
            .collect();
        Some(Holder::Process {
            pid,
            start,
            token: Some(format!("{boot}-{pid}-{start}")),
        })
    }

    /// The token the holder's processes carry, if any.
    pub fn token(&self) -> Option<&str> {
        match self {
            Holder::Process { token, .. } => token.as_deref(),
            Holder::Cgroup(_) | Holder::Job(_) => None,
        }
    }
}

/// One session's hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hold {
    session: SessionId,
    holder: Holder,
}

/// An address from a source other than the static pool, held by a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The session.
    pub session: SessionId,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Where it came from (`"dhcp"`).
    pub source: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Book {
    version: u32,
    boot_id: String,
    #[serde(default)]
    pool: Option<PoolSnapshot>,
    #[serde(default)]
    claims: Vec<Claim>,
    #[serde(default)]
    holds: Vec<Hold>,
}

/// An error of the lease book.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseBookError {
    /// The file could not be read, locked or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The file is of another format version.
    #[error(
        "lease book {path}: format version {found}; this ipvirt reads version {VERSION} (move the file away to start afresh)"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The pool's snapshot in the file does not restore into the policy's pool.
    #[error("lease book {path}: the pool does not restore: {source}")]
    Restore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PoolError,
    },
    /// The address is held by another live session.
    #[error("{addr} is held by session {holder}; it cannot be session {session}'s")]
    Taken {
        /// The address.
        addr: Ipv4Addr,
        /// The session that holds it.
        holder: SessionId,
        /// The session that asked for it.
        session: SessionId,
    },
}

/// What [`LeaseBook::acquire`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The session's VIP, or `None` when the pool is exhausted.
    pub vip: Option<Ipv4Addr>,
    /// Warnings to print (entries dropped from a pool that changed, leases reclaimed).
    pub notes: Vec<String>,
}

/// A live lease in [`LeaseBook::status`]: the session, its address, where it came from
/// (`"static"` or the claim's source) and how many holders it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLease {
    /// The session.
    pub session: SessionId,
    /// Its address.
    pub addr: Ipv4Addr,
    /// `"static"` (the pool) or a claim's source.
    pub source: String,
    /// Its live holders.
    pub holders: usize,
}

/// The lease book in a file (see the [module docs](self)).
#[derive(Debug)]
pub struct LeaseBook {
    file: StateFile,
}

/// The book read under the lock, with the pool restored.
struct Open<'a> {
    lock: StateLock<'a>,
    book: Book,
    pool: Option<StaticPool>,
    notes: Vec<String>,
}

impl LeaseBook {
    /// The book in `path` (`path.lock` beside it is its lock, `path.tmp` the temporary file of a
    /// write).
    pub fn new(path: impl Into<PathBuf>) -> LeaseBook {
        LeaseBook {
            file: StateFile::new(path),
        }
    }

    /// The same book, its lock waited for as `wait` says (see [`StateFile::with_lock_wait`]).
    #[must_use]
    pub fn with_lock_wait(self, wait: crate::LockWait) -> LeaseBook {
        LeaseBook {
            file: self.file.with_lock_wait(wait),
        }
    }

    /// The book's file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The state file behind the book.
    pub fn state_file(&self) -> &StateFile {
        &self.file
    }

    fn open(&self, pool: Option<StaticPool>) -> Result<Open<'_>, LeaseBookError> {
        let lock = self.file.lock()?;
        let boot = holder::boot_id();
        let mut notes = Vec::new();
        let mut book = match lock.read::<Book>()? {
            Some(b) if b.version != VERSION => {
                return Err(LeaseBookError::Version {
                    path: self.path().to_path_buf(),
                    found: b.version,
                });
            }
            Some(b) => b,
            None => Book::default(),
        };
        if book.boot_id != boot {
            // The host restarted since: nobody from before holds anything.
            book.holds.clear();
            book.claims.clear();
            book.boot_id = boot;
        }
        book.version = VERSION;
        let pool = match (pool, &book.pool) {
            (Some(mut p), Some(snap)) => {
                for w in p.restore(snap).map_err(|source| LeaseBookError::Restore {
                    path: self.path().to_path_buf(),
                    source,
                })? {
                    notes.push(format!("lease book {}: {w}", self.path().display()));
                }
                Some(p)
            }
            (p, _) => p,
        };
        Ok(Open {
            lock,
            book,
            pool,
            notes,
        })
    }

    /// Leases `session`'s VIP from `pool` (or joins its live lease) and records `holders` as
    /// its holders. Reclaims the leases of sessions that are gone first.
    ///
    /// # Errors
    ///
    /// The file cannot be locked, read or written, or is of another version; its pool does not
    /// restore into `pool`.
    pub fn acquire(
        &self,
        pool: StaticPool,
        session: SessionId,
        holders: &[Holder],
    ) -> Result<Acquired, LeaseBookError> {
        let mut open = self.open(Some(pool))?;
        open.reclaim(&[]);
        let claimed = open
            .book
            .claims
            .iter()
            .map(|c| c.addr)
            .collect::<HashSet<_>>();
        let vip = match open.pool.as_mut().map(|p| p.lease(session)) {
            Some(Ok(a)) if !claimed.contains(&a.addr()) => Some(a.addr()),
            Some(Ok(a)) => {
                // Claimed by another source meanwhile: never hand it out twice.
                if let Some(p) = open.pool.as_mut() {
                    p.release(session);
                }
                open.notes.push(format!(
                    "{} is claimed by another source; session {session} gets no address from the pool now",
                    a.addr()
                ));
                None
            }
            _ => None,
        };
        if vip.is_some() {
            open.add_holders(session, holders);
        }
        let notes = open.save()?;
        Ok(Acquired { vip, notes })
    }

    /// Adds holders to `session`'s live lease or claim (a program, once started).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn hold(
        &self,
        pool: Option<StaticPool>,
        session: SessionId,
        holders: &[Holder],
    ) -> Result<Vec<String>, LeaseBookError> {
        let mut open = self.open(pool)?;
        open.add_holders(session, holders);
        open.save()
    }

    /// Records `addr` as `session`'s, from `source` (e.g. a DHCP lease), held by `holders`.
    ///
    /// # Errors
    ///
    /// [`LeaseBookError::Taken`] when another live session holds the address (from the pool or a
    /// claim): the caller must not use it (a DHCP client declines the offer). Otherwise as
    /// [`acquire`](Self::acquire).
    pub fn claim(
        &self,
        pool: Option<StaticPool>,
        session: SessionId,
        addr: Ipv4Addr,
        source: &str,
        holders: &[Holder],
    ) -> Result<Vec<String>, LeaseBookError> {
        let mut open = self.open(pool)?;
        open.reclaim(&[]);
        if let Some(other) = open.holder_of(addr).filter(|&s| s != session) {
            let notes = open.save()?;
            drop(notes);
            return Err(LeaseBookError::Taken {
                addr,
                holder: other,
                session,
            });
        }
        open.book.claims.retain(|c| c.session != session);
        open.book.claims.push(Claim {
            session,
            addr,
            source: source.to_owned(),
        });
        open.add_holders(session, holders);
        open.save()
    }

    /// Drops `session`'s claim (its DHCP lease ended), whoever holds it.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn unclaim(&self, session: SessionId) -> Result<Vec<String>, LeaseBookError> {
        let mut open = self.open(None)?;
        open.book.claims.retain(|c| c.session != session);
        open.save()
    }

    /// Ends the holds of `holders` on `session` (their processes are ending: they live on only
    /// through their tokens); its lease (or claim) is released when no other holder of the
    /// session lives. Returns notes (processes that still hold it, other leases
    /// reclaimed).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn release(
        &self,
        pool: StaticPool,
        session: SessionId,
        holders: &[Holder],
    ) -> Result<Vec<String>, LeaseBookError> {
        let mut open = self.open(Some(pool))?;
        let ending: Vec<Hold> = holders
            .iter()
            .map(|h| Hold {
                session,
                holder: h.clone(),
            })
            .collect();
        open.reclaim(&ending);
        if open.book.holds.iter().any(|h| h.session == session) {
            open.notes.push(format!(
                "session {session}: processes it started still run; the lease stays until they end"
            ));
        }
        open.save()
    }

    /// Reclaims what is gone and lists the live leases (static ones only when `pool` is given).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn status(
        &self,
        pool: Option<StaticPool>,
    ) -> Result<(Vec<LiveLease>, Vec<String>), LeaseBookError> {
        let mut open = self.open(pool)?;
        open.reclaim(&[]);
        let count = |s: SessionId| open.book.holds.iter().filter(|h| h.session == s).count();
        let mut leases: Vec<LiveLease> = open
            .pool
            .iter()
            .flat_map(StaticPool::leases)
            .map(|(session, addr)| LiveLease {
                session,
                addr,
                source: "static".into(),
                holders: count(session),
            })
            .collect();
        leases.extend(open.book.claims.iter().map(|c| LiveLease {
            session: c.session,
            addr: c.addr,
            source: c.source.clone(),
            holders: count(c.session),
        }));
        leases.sort_by_key(|l| (l.session, l.addr));
        let notes = if self.path().exists() {
            open.save()?
        } else {
            open.notes
        };
        Ok((leases, notes))
    }
}

impl Open<'_> {
    fn add_holders(&mut self, session: SessionId, holders: &[Holder]) {
        for h in holders {
            let hold = Hold {
                session,
                holder: h.clone(),
            };
            if !self.book.holds.contains(&hold) {
                self.book.holds.push(hold);
            }
        }
    }

    /// The live session that holds `addr`, from the pool or a claim.
    fn holder_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        self.book
            .claims
            .iter()
            .find(|c| c.addr == addr)
            .map(|c| c.session)
            .or_else(|| {
                self.pool
                    .as_ref()
                    .and_then(|p| p.leases().into_iter().find(|&(_, a)| a == addr))
                    .map(|(s, _)| s)
            })
    }

    /// Drops every hold that is gone, then releases the leases and claims of sessions left
    /// without a hold. A hold in `ending` (a launcher that is ending) lives on only through its
    /// token.
    fn reclaim(&mut self, ending: &[Hold]) {
        // Whether each hold's process runs, judged once: a process that ends between two looks
        // must not be taken for alive at the first (its token then not looked for) and for dead
        // at the second.
        let running: Vec<bool> = self
            .book
            .holds
            .iter()
            .map(|h| match &h.holder {
                Holder::Process { pid, start, .. } => {
                    !ending.contains(h) && holder::start_time(*pid) == Some(*start)
                }
                Holder::Cgroup(dir) => !ending.contains(h) && holder::populated(dir),
                Holder::Job(name) => !ending.contains(h) && holder::job_active(name),
            })
            .collect();
        // The tokens to look for: those of holds whose process no longer runs (or is ending).
        let suspects: HashSet<String> = self
            .book
            .holds
            .iter()
            .zip(&running)
            .filter(|(_, run)| !**run)
            .filter_map(|(h, _)| h.holder.token().map(str::to_owned))
            .collect();
        let in_use = holder::tokens_in_use(&suspects);
        let mut keep = running.into_iter();
        self.book.holds.retain(|h| {
            keep.next().unwrap_or(false) || h.holder.token().is_some_and(|t| in_use.contains(t))
        });
        let held: HashSet<SessionId> = self.book.holds.iter().map(|h| h.session).collect();
        let mut released = Vec::new();
        if let Some(pool) = self.pool.as_mut() {
            for (session, addr) in pool.leases() {
                if !held.contains(&session) {
                    pool.release(session);
                    released.push((session, addr));
                }
            }
        }
        self.book.claims.retain(|c| {
            let keep = held.contains(&c.session);
            if !keep {
                released.push((c.session, c.addr));
            }
            keep
        });
        let ended: HashSet<SessionId> = ending.iter().map(|h| h.session).collect();
        for (s, a) in released {
            if !ended.contains(&s) {
                self.notes.push(format!(
                    "reclaimed {a} from session {s}: none of its processes runs any more"
                ));
            }
        }
    }

    fn save(mut self) -> Result<Vec<String>, LeaseBookError> {
        if let Some(p) = &self.pool {
            self.book.pool = Some(p.snapshot());
        }
        self.lock.write(&self.book)?;
        Ok(self.notes)
    }
}
