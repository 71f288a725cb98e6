// getpwnam_r, getpwuid_r: FFI.
#![allow(unsafe_code)]

//! The service's sessions: numbers, cgroups, leases and the kernel layer's entries, opened for a
//! login and ended when the login's last process has (SPEC §10, §11).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvirt::{
    Engine, Host, Identity, Policy, Session, SessionId, SessionLayer, StaticPool, Vip, VipSource,
};
use ipvirt_host::control::{self, Request, Response, SessionInfo};
use ipvirt_host::lease_book::{Holder, LeaseBook};
use ipvirt_host::policy_file;

use super::cgroups::{Cgroups, Watcher};
use super::dhcp::Dhcp;
use super::log::Log;
use super::state::{SavedCgroup, SavedSession, Store, VipSource as Source};
use crate::paths;

/// Who is asking (the peer's credentials, from the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) pid: u32,
    pub(crate) uid: u32,
}

/// The settings the service started with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) policy_path: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) kernel_root: String,
    pub(crate) preload: Option<PathBuf>,
    pub(crate) dhcp_wait: Duration,
    pub(crate) servers: Vec<IpAddr>,
    /// The control socket (its path goes into a preload session's environment, so the layer can
    /// report its refusals).
    pub(crate) socket: PathBuf,
}

/// How many kinds of `LD_PRELOAD` refusal are remembered per session (further kinds are logged
/// and not remembered: a flood costs log lines, never memory).
const PRELOAD_KINDS: usize = 256;

/// A session being opened while its DHCP lease is awaited without the service's lock.
#[derive(Debug)]
pub(crate) struct Opening {
    number: u32,
    peer: Peer,
    user: String,
    uid: u32,
    service: Option<String>,
    tty: Option<String>,
    rhost: Option<String>,
    target: PathBuf,
    owned: bool,
    /// What the lease waits for, when it comes from DHCP.
    pub(crate) dhcp: Option<(Arc<Dhcp>, SessionId, Vec<Holder>, Instant)>,
}

/// What [`Service::open`] decided.
#[derive(Debug)]
pub(crate) enum Open {
    /// The answer.
    Done(Response),
    /// Wait for the DHCP lease ([`Opening::dhcp`]), then [`Service::finish_open`].
    Lease(Box<Opening>),
}

/// Everything the service owns.
#[derive(Debug)]
pub(crate) struct Service {
    config: Config,
    log: Arc<Log>,
    policy: Policy,
    engine: Engine,
    host: Host,
    pub(crate) cgroups: Cgroups,
    pub(crate) watcher: Watcher,
    store: Store,
    book: LeaseBook,
    sessions: BTreeMap<u32, SavedSession>,
    users: BTreeMap<u32, u32>,
    /// Numbers being opened (their DHCP lease awaited).
    reserved: BTreeSet<u32>,
    /// Numbers the lease book held for others (launchers) when the service started.
    foreign: BTreeSet<u32>,
    kernel: Option<ipvirt_kernel::Layer>,
    /// Whether the kernel layer's refusal reader was handed out ([`Service::take_refusals`]).
    refusals_taken: bool,
    /// The `LD_PRELOAD` refusals logged, per session: (executable, reason).
    preload_refusals: BTreeMap<u32, BTreeSet<(String, String)>>,
    dhcp: Option<Arc<Dhcp>>,
    preload: Option<PathBuf>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The uid of user `name`, from the system's user database.
pub(crate) fn uid_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0u8; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives it.
    let r = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(pwd.pw_uid)
}

/// The name of user `uid`.
pub(crate) fn name_of(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0u8; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives it.
    let r =
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if r != 0 || out.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string in buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is plain data (integers and pointers): all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

impl Service {
    /// Reads the policy and the saved state, attaches what the policy needs, and finds the
    /// sessions of a previous run again.
    pub(crate) fn start(config: Config, log: Arc<Log>) -> Result<Service, String> {
        let policy = policy_file::load(&config.policy_path)
            .map_err(|e| e.to_string())?
            .policy;
        let host = Host::new(config.servers.iter().copied());
        let engine = policy
            .clone()
            .compile(host.clone())
            .map_err(|e| format!("{}: {e}", config.policy_path.display()))?;
        let cgroups = Cgroups::new(&config.kernel_root)?;
        std::fs::create_dir_all(&cgroups.root)
            .map_err(|e| format!("{}: {e}", cgroups.root.display()))?;
        let store = Store::new(&config.state_dir)?;
        let book = LeaseBook::new(config.state_dir.join("leases.json"));
        let mut service = Service {
            log,
            engine,
            host,
            cgroups,
            watcher: Watcher::new()?,
            store,
            book,
            sessions: BTreeMap::new(),
            users: BTreeMap::new(),
            reserved: BTreeSet::new(),
            foreign: BTreeSet::new(),
            kernel: None,
            refusals_taken: false,
            preload_refusals: BTreeMap::new(),
            dhcp: None,
            preload: None,
            policy,
            config,
        };
        service.apply_policy()?;
        service.restore()?;
        Ok(service)
    }

    /// Whether the policy virtualizes anything.
    fn virtualizes(&self) -> bool {
        self.policy.virtual_loopback.enabled || self.policy.virtual_ip.enabled
    }

    fn uses_dhcp(&self) -> bool {
        self.policy.virtual_ip.enabled && self.policy.virtual_ip.source == VipSource::Dhcp
    }

    fn uses_pool(&self) -> bool {
        crate::status::uses_pool(&self.policy)
    }

    fn pool(&self) -> Result<StaticPool, String> {
        StaticPool::from_policy(&self.policy.virtual_ip, &self.host)
            .map_err(|e| format!("{}: {e}", self.config.policy_path.display()))
    }

    /// Attaches (or re-tables) the kernel layer, starts the DHCP client, finds the preload
    /// library: whatever the policy in force needs.
    fn apply_policy(&mut self) -> Result<(), String> {
        let kernel = self.virtualizes() && self.policy.sessions.layer == SessionLayer::Kernel;
        if kernel {
            if let Some(why) = ipvirt_kernel::unavailable() {
                return Err(format!("sessions.layer = \"kernel\": {why}"));
            }
            let tables = ipvirt_kernel::tables(&self.policy, &self.engine)?;
            for m in &tables.missing {
                self.log.warn(&format!(
                    "program list entry {m}: it matches no program on this host"
                ));
            }
            let _lock = ipvirt_kernel::lock()?;
            match &self.kernel {
                Some(layer) => layer.replace_tables(&tables)?,
                None => {
                    let mut layer =
                        ipvirt_kernel::Layer::attach_replacing(&self.config.kernel_root, &tables)?;
                    layer.take_notes().iter().for_each(|n| self.log.warn(n));
                    self.kernel = Some(layer);
                }
            }
        }
        if self.virtualizes() && self.policy.sessions.layer == SessionLayer::Preload {
            self.preload = Some(paths::preload(self.config.preload.as_deref())?);
        }
        if self.uses_dhcp() && self.dhcp.is_none() {
            let state = self.config.state_dir.join("leases.dhcp.json");
            self.dhcp = Some(Arc::new(Dhcp::start(
                &self.policy,
                &state,
                self.book.path(),
                Arc::clone(&self.log),
            )?));
        }
        Ok(())
    }

    /// The reader of the kernel layer's refusal events, once: `None` when the layer is not
    /// attached, was handed out already, or its programs report none (a note says so).
    pub(crate) fn take_refusals(&mut self) -> Option<ipvirt_kernel::Refusals> {
        let layer = self.kernel.as_ref()?;
        if self.refusals_taken {
            return None;
        }
        self.refusals_taken = true;
        match layer.refusals() {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                self.log.warn(
                    "the attached kernel programs report no refusals (an older ipvirt's); refusals are not logged until the layer is detached and attached again",
                );
                None
            }
            Err(e) => {
                self.log.warn(&format!("refusals are not logged: {e}"));
                None
            }
        }
    }

    /// Logs a refusal the `LD_PRELOAD` layer made in the peer's process, once per session, program
    /// and reason. The session is the one the peer's process is in (its cgroup), the program its
    /// executable: what the request itself says is only the reason.
    fn note_refusal(&mut self, peer: Peer, reason: &str, errno: i32) -> Response {
        if reason.len() > control::MAX_REASON {
            return Response::Refused {
                error: format!(
                    "a refusal of {} bytes (at most {})",
                    reason.len(),
                    control::MAX_REASON
                ),
            };
        }
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let Ok(dir) = self.cgroups.of_process(peer.pid) else {
            return Response::Refused {
                error: format!("pid {}: its cgroup cannot be read", peer.pid),
            };
        };
        let Some(s) = self
            .sessions
            .values()
            .find(|s| s.cgroups.iter().any(|c| dir.starts_with(&c.path)))
        else {
            return Response::Refused {
                error: format!("pid {} is in no session", peer.pid),
            };
        };
        let (number, user) = (s.number, s.user.clone());
        let exe = std::fs::read_link(format!("/proc/{}/exe", peer.pid))
            .map_or_else(|_| "?".to_owned(), |p| p.display().to_string());
        let seen = self.preload_refusals.entry(number).or_default();
        let key = (exe, reason);
        if seen.contains(&key) {
            return Response::Noted {};
        }
        self.log.warn(&format!(
            "session {number} (user {user}): {} (errno {errno}): {} (pid {}, LD_PRELOAD layer)",
            key.1, key.0, peer.pid
        ));
        if seen.len() < PRELOAD_KINDS {
            seen.insert(key);
        }
        Response::Noted {}
    }

    /// The user of session `number`, if it is one of the service's.
    pub(crate) fn session_user(&self, number: u32) -> Option<&str> {
        self.sessions.get(&number).map(|s| s.user.as_str())
    }

    /// Finds the sessions of a previous run: those with a process left are watched again (and
    /// their entries and leases kept), the others end now.
    fn restore(&mut self) -> Result<(), String> {
        let (saved, users) = self.store.load()?;
        self.users = users;
        if let Ok((leases, _)) = self
            .book
            .status(self.uses_pool().then(|| self.pool()).transpose()?)
        {
            self.foreign = leases.iter().map(|l| l.session.get()).collect();
        }
        for s in saved {
            self.foreign.remove(&s.number);
            self.sessions.insert(s.number, s.clone());
            let alive: Vec<SavedCgroup> = s
                .cgroups
                .iter()
                .filter(|c| Cgroups::processes(&c.path) > 0)
                .cloned()
                .collect();
            if alive.is_empty() {
                self.end(s.number, "its processes ended while the service was away");
                continue;
            }
            for c in &alive {
                if let Err(e) = self.watcher.watch(&c.path) {
                    self.log.warn(&e);
                }
                if let Err(e) = self.register(&s, c) {
                    self.log.error(&format!("session {}: {e}", s.number));
                }
            }
            if let Some(d) = self
                .dhcp
                .clone()
                .filter(|_| s.vip_source == Some(Source::Dhcp))
            {
                let holders: Vec<Holder> = alive
                    .iter()
                    .map(|c| Holder::Cgroup(c.path.clone()))
                    .collect();
                match d.lease(
                    SessionId::new(s.number),
                    holders,
                    Instant::now() + self.config.dhcp_wait,
                ) {
                    Some((v, _)) if Some(v) == s.vip => {}
                    Some((v, _)) => self.log.warn(&format!(
                        "session {}: the DHCP server now gives {v}; the session keeps {}",
                        s.number,
                        s.vip.map_or_else(|| "no VIP".into(), |a| a.to_string())
                    )),
                    None => self.log.error(&format!(
                        "session {}: its DHCP lease could not be taken back",
                        s.number
                    )),
                }
            }
            if let Some(live) = self.sessions.get_mut(&s.number) {
                live.cgroups = alive;
            }
            self.persist(s.number);
            self.log
                .info(&format!("session {} of {} found again", s.number, s.user));
        }
        Ok(())
    }

    /// Writes the sessions' entry for `cgroup` (and attaches the layer there when logind made it).
    fn register(&self, s: &SavedSession, cgroup: &SavedCgroup) -> Result<(), String> {
        let Some(layer) = &self.kernel else {
            return Ok(());
        };
        let vip = s
            .vip
            .map(Vip::new)
            .transpose()
            .map_err(|e| format!("its VIP: {e}"))?;
        let entry = self
            .engine
            .session_entry(Session::remote(SessionId::new(s.number)), vip);
        let _lock = ipvirt_kernel::lock()?;
        if !cgroup.owned {
            layer.attach_at(&cgroup.path)?;
        }
        layer.register(&cgroup.path, &entry)?;
        Ok(())
    }

    /// Writes the session's file (it changed), logging a failure: the session itself is fine.
    fn persist(&self, number: u32) {
        if let Some(s) = self.sessions.get(&number)
            && let Err(e) = self.store.put(s)
        {
            self.log.error(&format!("saving session {number}: {e}"));
        }
    }

    /// Handles a request other than the second half of an open.
    pub(crate) fn handle(&mut self, peer: Peer, request: Request) -> Open {
        match request {
            Request::Open {
                user,
                service,
                tty,
                rhost,
                id,
            } => self.open(peer, user, service, tty, rhost, id),
            Request::Close { session } => Open::Done(self.close(peer, session)),
            Request::Refusal { reason, errno } => {
                Open::Done(self.note_refusal(peer, &reason, errno))
            }
            Request::List {} => Open::Done(self.list(peer)),
            Request::Reload {} => Open::Done(if peer.uid == 0 {
                self.reload()
            } else {
                Response::Refused {
                    error: format!("only root may reload the policy (uid {} asked)", peer.uid),
                }
            }),
            _ => Open::Done(Response::Refused {
                error: "this service does not know that request".into(),
            }),
        }
    }

    /// The lowest number no session, user or launcher has. A launcher's kernel session
    /// (`<root>/session-N` the service did not make) is found when its number comes up, and
    /// remembered.
    fn lowest_free(&mut self) -> Option<u32> {
        let users: BTreeSet<u32> = self.users.values().copied().collect();
        loop {
            let n = (1..SessionId::MAX.get()).find(|n| {
                !self.sessions.contains_key(n)
                    && !self.reserved.contains(n)
                    && !self.foreign.contains(n)
                    && !users.contains(n)
            })?;
            if !self.cgroups.own_exists(n) {
                return Some(n);
            }
            self.foreign.insert(n);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        peer: Peer,
        user: String,
        service: Option<String>,
        tty: Option<String>,
        rhost: Option<String>,
        id: Option<u32>,
    ) -> Open {
        let refuse = |error: String| Open::Done(Response::Refused { error });
        if peer.uid != 0 {
            return refuse(format!(
                "only root may open sessions (uid {} asked)",
                peer.uid
            ));
        }
        let Some(uid) = uid_of(&user) else {
            return refuse(format!("there is no user {user:?} on this host"));
        };
        if !self.virtualizes() {
            return Open::Done(Response::Console {
                reason: "virtual loopback and virtual IP are both off in the policy".into(),
            });
        }
        if self
            .policy
            .sessions
            .is_console(service.as_deref(), tty.as_deref())
        {
            return Open::Done(Response::Console {
                reason: format!(
                    "a console login (PAM service {}, tty {}): console sessions are not virtualized",
                    service.as_deref().unwrap_or("-"),
                    tty.as_deref().unwrap_or("-")
                ),
            });
        }
        let here = match self.cgroups.of_process(peer.pid) {
            Ok(d) => d,
            Err(e) => return Open::Done(Response::Failed { error: e }),
        };
        let logind = self.cgroups.logind(&here, uid);
        let identity = self.policy.sessions.identity;
        let number = match id {
            Some(n) if n == 0 || n >= SessionId::MAX.get() => {
                return refuse(format!(
                    "session {n} cannot be opened: numbers go from 1 to {} on Linux",
                    SessionId::MAX.get() - 1
                ));
            }
            Some(n) => n,
            None => match (identity, self.users.get(&uid)) {
                (Identity::User, Some(&n)) => n,
                _ => match self.lowest_free() {
                    Some(n) => n,
                    None => {
                        return Open::Done(Response::Failed {
                            error: "every session number is in use".into(),
                        });
                    }
                },
            },
        };
        if self.reserved.contains(&number) {
            return Open::Done(Response::Failed {
                error: format!("session {number} is being opened by another login; try again"),
            });
        }
        let target = match (&logind, identity) {
            (Some(l), Identity::User) => (l.user_slice.clone(), false),
            (Some(l), _) => (l.scope.clone(), false),
            (None, _) => (self.cgroups.own(number), true),
        };
        if let Some(existing) = self.sessions.get(&number) {
            if existing.uid != uid {
                return refuse(format!(
                    "session {number} belongs to {}, not {user}",
                    existing.user
                ));
            }
            return Open::Done(self.join(peer, number, target));
        }
        let opening = Opening {
            number,
            peer,
            user,
            uid,
            service,
            tty,
            rhost,
            target: target.0,
            owned: target.1,
            dhcp: None,
        };
        if let Some(d) = self.dhcp.clone() {
            self.reserved.insert(number);
            let holders = vec![Holder::Cgroup(opening.target.clone())];
            let deadline = Instant::now() + self.config.dhcp_wait;
            return Open::Lease(Box::new(Opening {
                dhcp: Some((d, SessionId::new(number), holders, deadline)),
                ..opening
            }));
        }
        let vip = if self.uses_pool() {
            let got = self.pool().and_then(|pool| {
                self.book
                    .acquire(
                        pool,
                        SessionId::new(number),
                        &[Holder::Cgroup(opening.target.clone())],
                    )
                    .map_err(|e| e.to_string())
            });
            match got {
                Ok(a) => {
                    a.notes.iter().for_each(|n| self.log.info(n));
                    if a.vip.is_none() {
                        self.log.warn(&format!(
                            "session {number}: no virtual IP left in the pool; virtual_ip.on_lease_failure = {} applies",
                            self.policy.virtual_ip.on_lease_failure
                        ));
                    }
                    a.vip.map(|v| (v, Source::Static))
                }
                Err(e) => return Open::Done(Response::Failed { error: e }),
            }
        } else {
            None
        };
        Open::Done(self.create(opening, vip))
    }

    /// The second half of an open whose DHCP lease was awaited.
    pub(crate) fn finish_open(
        &mut self,
        opening: Opening,
        lease: Option<(Ipv4Addr, u64)>,
    ) -> Response {
        self.reserved.remove(&opening.number);
        if lease.is_none() {
            self.log.warn(&format!(
                "session {}: no DHCP lease within {} s; virtual_ip.on_lease_failure = {} applies",
                opening.number,
                self.config.dhcp_wait.as_secs(),
                self.policy.virtual_ip.on_lease_failure
            ));
        }
        self.create(opening, lease.map(|(v, _)| (v, Source::Dhcp)))
    }

    /// Makes the session: its cgroup, its entry, the caller moved in; saved and watched.
    fn create(&mut self, o: Opening, vip: Option<(Ipv4Addr, Source)>) -> Response {
        let number = o.number;
        let undo_lease = |s: &Self| {
            if let Some((_, source)) = vip {
                s.drop_lease(number, source, std::slice::from_ref(&o.target));
            }
        };
        if o.owned
            && let Err(e) = self.cgroups.make_own(number)
        {
            undo_lease(self);
            return Response::Failed { error: e };
        }
        let id = match ipvirt_kernel::cgroup_id_of(&o.target) {
            Ok(id) => id,
            Err(e) => {
                undo_lease(self);
                return Response::Failed { error: e };
            }
        };
        let cgroup = SavedCgroup {
            path: o.target.clone(),
            id,
            owned: o.owned,
        };
        let session = SavedSession {
            number,
            user: o.user,
            uid: o.uid,
            service: o.service,
            tty: o.tty,
            rhost: o.rhost,
            started: now_secs(),
            vip: vip.map(|(v, _)| v),
            vip_source: vip.map(|(_, s)| s),
            logins: 1,
            cgroups: vec![cgroup.clone()],
            layer: self.policy.sessions.layer.to_string(),
        };
        // The entry first, then the process: its first instruction in the session is virtualized.
        if let Err(e) = self.register(&session, &cgroup) {
            undo_lease(self);
            return Response::Failed {
                error: format!("session {number}: {e}"),
            };
        }
        if o.owned
            && let Err(e) = Cgroups::move_into(&o.target, o.peer.pid)
        {
            self.unregister(&cgroup);
            undo_lease(self);
            return Response::Failed { error: e };
        }
        if let Err(e) = self.watcher.watch(&o.target) {
            self.log.warn(&e);
        }
        if self.policy.sessions.identity == Identity::User {
            self.users.insert(session.uid, number);
        }
        self.log.info(&format!(
            "session {number} opened for {} ({}, tty {}{}): loopback {}{}",
            session.user,
            session.service.as_deref().unwrap_or("-"),
            session.tty.as_deref().unwrap_or("-"),
            session
                .rhost
                .as_deref()
                .map_or(String::new(), |h| format!(", from {h}")),
            loopback(number),
            session
                .vip
                .map_or(String::new(), |v| format!(", virtual IP {v}"))
        ));
        self.sessions.insert(number, session);
        self.persist(number);
        if self.policy.sessions.identity == Identity::User
            && let Err(e) = self.store.put_users(&self.users)
        {
            self.log.error(&format!("saving the users' numbers: {e}"));
        }
        self.opened(number)
    }

    /// A second login of a session (the same user, or `ipvirt run --id` of a running session).
    fn join(&mut self, peer: Peer, number: u32, target: (PathBuf, bool)) -> Response {
        let Some(s) = self.sessions.get(&number).cloned() else {
            return Response::Failed {
                error: format!("session {number} ended meanwhile"),
            };
        };
        let (dir, owned) = match s.cgroups.iter().find(|c| c.owned) {
            // The service's own cgroup of the session: the caller joins it.
            Some(c) if target.1 => (c.path.clone(), true),
            _ => target,
        };
        if !s.cgroups.iter().any(|c| c.path == dir) {
            let id = match ipvirt_kernel::cgroup_id_of(&dir) {
                Ok(id) => id,
                Err(e) => return Response::Failed { error: e },
            };
            let c = SavedCgroup {
                path: dir.clone(),
                id,
                owned,
            };
            if let Err(e) = self.register(&s, &c) {
                return Response::Failed { error: e };
            }
            if let Err(e) = self.watcher.watch(&dir) {
                self.log.warn(&e);
            }
            if let Some(live) = self.sessions.get_mut(&number) {
                live.cgroups.push(c);
            }
        }
        if owned && let Err(e) = Cgroups::move_into(&dir, peer.pid) {
            return Response::Failed { error: e };
        }
        if let Some(live) = self.sessions.get_mut(&number) {
            live.logins += 1;
        }
        self.log
            .info(&format!("session {number}: another login of {}", s.user));
        self.persist(number);
        self.opened(number)
    }

    fn opened(&self, number: u32) -> Response {
        let Some(info) = self.info(number) else {
            return Response::Failed {
                error: format!("session {number} is gone"),
            };
        };
        let mut env = vec![("IPVIRT_SESSION".to_owned(), number.to_string())];
        if let Some(v) = info.vip {
            env.push(("IPVIRT_VIP".into(), v.to_string()));
        }
        if let Some(lib) = &self.preload {
            env.push(("LD_PRELOAD".into(), lib.display().to_string()));
            env.push((
                "IPVIRT_CONTROL".into(),
                self.config.socket.display().to_string(),
            ));
            env.push((
                "IPVIRT_POLICY".into(),
                self.config.policy_path.display().to_string(),
            ));
            if !self.config.servers.is_empty() {
                let list: Vec<String> = self
                    .config
                    .servers
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                env.push(("IPVIRT_SERVER_ADDRS".into(), list.join(",")));
            }
        }
        Response::Opened {
            session: info,
            environment: env,
        }
    }

    fn info(&self, number: u32) -> Option<SessionInfo> {
        let s = self.sessions.get(&number)?;
        let lease_expiry = match (s.vip_source, &self.dhcp) {
            (Some(Source::Dhcp), Some(d)) => d.expiry(SessionId::new(number)),
            _ => None,
        };
        Some(SessionInfo {
            number,
            user: s.user.clone(),
            uid: s.uid,
            service: s.service.clone(),
            tty: s.tty.clone(),
            rhost: s.rhost.clone(),
            loopback: loopback(number),
            vip: s.vip,
            lease_expiry,
            processes: s.cgroups.iter().map(|c| Cgroups::processes(&c.path)).sum(),
            logins: s.logins as usize,
            cgroups: s
                .cgroups
                .iter()
                .map(|c| self.cgroups.relative(&c.path))
                .collect(),
            started: s.started,
        })
    }

    fn close(&mut self, peer: Peer, number: u32) -> Response {
        if peer.uid != 0 {
            return Response::Refused {
                error: format!("only root may close sessions (uid {} asked)", peer.uid),
            };
        }
        let Some(s) = self.sessions.get_mut(&number) else {
            return Response::Closed {
                session: number,
                ended: true,
            };
        };
        s.logins = s.logins.saturating_sub(1);
        let user = s.user.clone();
        self.log
            .info(&format!("session {number}: a login of {user} closed"));
        // Processes the login left behind (daemons, nohup) stay in the session and keep its
        // addresses; it ends with the last of them.
        let ended = self.reap_session(number);
        if !ended {
            self.persist(number);
        }
        Response::Closed {
            session: number,
            ended,
        }
    }

    fn list(&self, peer: Peer) -> Response {
        let sessions = self
            .sessions
            .values()
            .filter(|s| peer.uid == 0 || s.uid == peer.uid)
            .filter_map(|s| self.info(s.number))
            .collect();
        Response::Sessions { sessions }
    }

    /// Re-reads the policy. The rules (program lists, excluded ports, isolation) apply to new
    /// and running sessions alike at their next call; addresses stay with running sessions.
    pub(crate) fn reload(&mut self) -> Response {
        let loaded = match policy_file::load(&self.config.policy_path) {
            Ok(l) => l,
            Err(e) => {
                self.log
                    .error(&format!("reload: {e}; the policy in force stays"));
                return Response::Failed {
                    error: format!("{e}; the policy in force stays"),
                };
            }
        };
        let engine = match loaded.policy.clone().compile(self.host.clone()) {
            Ok(e) => e,
            Err(e) => {
                let msg = format!(
                    "{}: {e}; the policy in force stays",
                    self.config.policy_path.display()
                );
                self.log.error(&format!("reload: {msg}"));
                return Response::Failed { error: msg };
            }
        };
        let old = std::mem::replace(&mut self.policy, loaded.policy);
        let old_engine = std::mem::replace(&mut self.engine, engine);
        if let Err(e) = self.apply_policy() {
            self.policy = old;
            self.engine = old_engine;
            self.log
                .error(&format!("reload: {e}; the policy in force stays"));
            return Response::Failed {
                error: format!("{e}; the policy in force stays"),
            };
        }
        // Running sessions' entries follow the new rules (their addresses are theirs).
        let sessions: Vec<SavedSession> = self.sessions.values().cloned().collect();
        for s in &sessions {
            for c in &s.cgroups {
                if let Err(e) = self.register(s, c) {
                    self.log
                        .error(&format!("reload: session {}: {e}", s.number));
                }
            }
        }
        let mut notes = vec![format!(
            "{} re-read: its rules apply to new sessions and to the {} running ones at their next socket call",
            self.config.policy_path.display(),
            sessions.len()
        )];
        if self.policy.virtual_ip != old.virtual_ip {
            notes.push(
                "virtual IP settings changed: new sessions lease under them; running sessions keep their addresses until they end"
                    .into(),
            );
        }
        if self.policy.sessions != old.sessions {
            notes.push("session settings changed: they apply to new logins".into());
        }
        notes.iter().for_each(|n| self.log.info(n));
        Response::Reloaded { notes }
    }

    /// A cgroup of some session changed (emptied, went away): ends what has no process left.
    pub(crate) fn reap(&mut self, dir: &Path) {
        let numbers: Vec<u32> = self
            .sessions
            .values()
            .filter(|s| s.cgroups.iter().any(|c| c.path == dir))
            .map(|s| s.number)
            .collect();
        for n in numbers {
            if !self.reap_session(n) {
                self.persist(n);
            }
        }
    }

    /// Drops the session's cgroups that have no process left, and ends it when none is left.
    /// Returns whether it ended.
    fn reap_session(&mut self, number: u32) -> bool {
        let Some(s) = self.sessions.get(&number).cloned() else {
            return false;
        };
        let (alive, empty): (Vec<SavedCgroup>, Vec<SavedCgroup>) = s
            .cgroups
            .iter()
            .cloned()
            .partition(|c| Cgroups::processes(&c.path) > 0);
        if alive.is_empty() {
            self.end(number, "its last process ended");
            return true;
        }
        for c in &empty {
            self.unregister(c);
        }
        if let Some(live) = self.sessions.get_mut(&number) {
            live.cgroups = alive;
        }
        false
    }

    fn unregister(&self, c: &SavedCgroup) {
        self.watcher.unwatch(&c.path);
        if let Some(layer) = &self.kernel {
            let r = ipvirt_kernel::lock().and_then(|_lock| {
                layer.unregister(c.id)?;
                if !c.owned {
                    layer.detach_from(&c.path)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                self.log.warn(&e);
            }
        }
        if c.owned {
            match Cgroups::remove_own(&c.path) {
                Ok(_) => {}
                Err(e) => self.log.warn(&e),
            }
        }
    }

    fn drop_lease(&self, number: u32, source: Source, cgroups: &[PathBuf]) {
        match source {
            Source::Static => {
                let holders: Vec<Holder> =
                    cgroups.iter().map(|p| Holder::Cgroup(p.clone())).collect();
                match self
                    .pool()
                    .and_then(|p| {
                        self.book
                            .release(p, SessionId::new(number), &holders)
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(notes) => notes.iter().for_each(|n| self.log.info(n)),
                    Err(e) => self.log.warn(&format!(
                        "session {number}: its lease could not be released now ({e}); the next transaction reclaims it"
                    )),
                }
            }
            Source::Dhcp => {
                if let Some(d) = &self.dhcp {
                    d.release(SessionId::new(number));
                }
            }
        }
    }

    /// Ends a session: its entries and cgroups removed, its lease released.
    fn end(&mut self, number: u32, why: &str) {
        let Some(s) = self.sessions.remove(&number) else {
            return;
        };
        self.preload_refusals.remove(&number);
        self.store.remove(number);
        for c in &s.cgroups {
            self.unregister(c);
        }
        if let Some(source) = s.vip_source {
            let paths: Vec<PathBuf> = s.cgroups.iter().map(|c| c.path.clone()).collect();
            self.drop_lease(number, source, &paths);
        }
        self.log.info(&format!(
            "session {number} of {} ended: {why}{}",
            s.user,
            s.vip.map_or(String::new(), |v| format!("; {v} released"))
        ));
    }

    /// Stops the service: the sessions keep running (their entries, cgroups and leases stay,
    /// found again at the next start).
    pub(crate) fn stop(&mut self) {
        self.log.info(&format!(
            "stopping with {} live session(s); they keep running and are found again at the next start",
            self.sessions.len()
        ));
    }
}

/// Session `number`'s loopback address.
fn loopback(number: u32) -> Ipv4Addr {
    SessionId::new(number)
        .loopback()
        .unwrap_or(Ipv4Addr::LOCALHOST)
}
