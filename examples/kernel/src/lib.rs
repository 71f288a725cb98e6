//! The kernel layer's loader and sessions (SPEC §9): the session launcher's `--layer kernel`.
//!
//! - **Programs**: `ipvirt.bpf.o` (built from `ipvirt.bpf.c` by `build.sh`, committed, and checked
//!   against its source in CI) is embedded in the launcher. The first launcher loads it with `aya`
//!   and attaches its twelve `sock_addr` programs to the layer's root cgroup
//!   (`<cgroup2>/ipvirt`) with the **classic** attachment (`BPF_PROG_ATTACH`,
//!   `BPF_F_ALLOW_MULTI`), which the cgroup holds: the programs stay attached after the launcher
//!   exits or is killed. A second launcher finds them with `BPF_PROG_QUERY` and opens their maps by
//!   id; no bpffs pinning is involved. A file lock (`/run/ipvirt/kernel.lock`) serialises
//!   set-up, session start and clean-up. `/run/ipvirt/` is root's (mode 0755; the service's
//!   control socket lives there too) and the lock file root's (0600), both checked and reached
//!   without following a link (`ipvirt_host::PrivateDir`): no other user can take the lock
//!   first, as they could in the world-writable `/run/lock`. The wait for it is bounded
//!   ([`lock_with`]).
//! - **Tables**: the policy table and the program entries come from the library's compiled
//!   policy ([`ipvirt::Engine`]); one policy per root. A launcher with another policy replaces the
//!   tables only when no session runs, and otherwise refuses with an error.
//! - **Sessions**: a session is the cgroup `<root>/session-<id>`; its entry is keyed by the
//!   cgroup's id (the inode of its directory). The command moves itself into the cgroup before it
//!   executes (`pre_exec` writes `0` to `cgroup.procs`), so its first instruction already runs
//!   virtualized, and so does everything it starts. When the session's cgroup is empty, the entry
//!   and the cgroup are removed: by the launcher when its command ends, or by the next launch,
//!   `--status` or `--kernel-detach`.
//! - **Failing closed**: the launcher checks that all programs are attached before it starts the
//!   command; a process of the tree whose session has no entry gets EPERM from bind, connect and
//!   sendmsg instead of the shared `127.0.0.1`.
//! - **Whose call it is**: the kernel runs the programs of the *socket's* cgroup, and a socket
//!   keeps the cgroup it was made in; the programs decide by the *calling task's* cgroup. A
//!   process below none of the cgroups the programs are attached at (the root, and those of
//!   [`Layer::attach_at`], listed in the `ipv_anchors` map) that uses a socket a session passed to
//!   it (`SCM_RIGHTS`) is in no session and left alone (SPEC §12); one of another session gets
//!   its own session's answers.
//! - **Per-task cache**: each task keeps what the tables said for it (session entry, program
//!   entry) in BPF task storage, valid while it runs the same executable in the same cgroup and
//!   no table was written since (a generation the loader bumps after every write). A repeated call
//!   then costs two helper calls instead of six. The object is loaded with the cache on, and again
//!   with it off (a `.rodata` constant the verifier prunes) if the kernel refuses task storage in
//!   `sock_addr` programs; `--kernel-stats` says which, and what each program costs per run.

#![cfg(target_os = "linux")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod foreign;
pub mod refusals;
pub mod sys;

pub use foreign::{cgroup_alive, cgroup_id_of};
pub use refusals::{Refusals, Refused, RefusedCall};

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::ffi::OsStr;

use ipvirt::table::{PolicyTable, ProgramEntry, SessionEntry};
use ipvirt::{Engine, Policy, SessionId, fold_program_name};
use ipvirt_host::LockWait;
use ipvirt_host::private_fs::{self, Access, PrivateDir};

/// The BPF object, aligned for the ELF reader.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/ipvirt.bpf.o");

/// The programs of the object and where each attaches (`enum bpf_attach_type`).
pub const PROGRAMS: [(&str, u32); 12] = [
    ("ipv_bind4", 8),
    ("ipv_bind6", 9),
    ("ipv_connect4", 10),
    ("ipv_connect6", 11),
    ("ipv_sendmsg4", 14),
    ("ipv_sendmsg6", 15),
    ("ipv_recvmsg4", 19),
    ("ipv_recvmsg6", 20),
    ("ipv_peername4", 29),
    ("ipv_peername6", 30),
    ("ipv_sockname4", 31),
    ("ipv_sockname6", 32),
];

const NAME_LEN: usize = 64;
/// `struct ipv_config`: unlisted program entry, version, generation, padding. (Version 3: the
/// programs need `ipv_anchors`.)
const CONFIG_VERSION: u32 = 3;
const CONFIG_LEN: usize = 16;
/// The `.rodata` global that turns the per-task cache on.
const CACHE_GLOBAL: &str = "ipv_task_cache_on";
/// The directory of the set-up lock (and of the service's control socket).
pub const RUN_DIR: &str = "/run/ipvirt";
const LOCK_NAME: &str = "kernel.lock";

/// The layer's maps, opened by id.
#[derive(Debug)]
struct Maps {
    policy: sys::Map,
    config: sys::Map,
    sessions: sys::Map,
    files: sys::Map,
    names: sys::Map,
    /// The cgroups the programs are attached at: a task below none of them is left alone.
    anchors: sys::Map,
    /// The object's `.rodata` (the per-task cache switch), if the kernel reports it.
    rodata: Option<sys::Map>,
    /// The refusal events ([`refusals`]); `None` for programs of a version without them.
    refusals: Option<sys::Map>,
}

/// What the maps should hold for one policy.
#[derive(Debug)]
pub struct Tables {
    policy: PolicyTable,
    unlisted: ProgramEntry,
    names: Vec<([u8; NAME_LEN], ProgramEntry)>,
    files: Vec<([u8; 16], ProgramEntry)>,
    /// Program-list paths that name no file here (they match nothing).
    pub missing: Vec<String>,
}

fn policy_bytes(t: &PolicyTable) -> &[u8] {
    // SAFETY: PolicyTable is #[repr(C)] with only u32/u64 fields laid out without padding
    // (8472 bytes, checked by the library's layout tests); every byte is initialised.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(
            (t as *const PolicyTable).cast::<u8>(),
            size_of::<PolicyTable>(),
        )
    }
}

fn session_bytes(e: &SessionEntry) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, v) in [e.session, e.loopback, e.vip, e.flags]
        .into_iter()
        .enumerate()
    {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

fn session_of_bytes(b: &[u8; 16]) -> SessionEntry {
    let w = |i: usize| u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    SessionEntry {
        session: w(0),
        loopback: w(1),
        vip: w(2),
        flags: w(3),
    }
}

/// The kernel's encoding of a device number (`major << 20 | minor`), as `super_block.s_dev`.
fn kernel_dev(dev: u64) -> u32 {
    let major = libc::major(dev);
    let minor = libc::minor(dev);
    (major << 20) | (minor & 0xF_FFFF)
}

/// The tables of `policy` compiled as `engine`: the policy table, the entry of unlisted programs,
/// and one entry per program named in a list (bare names by folded basename, full paths by the
/// file they name now).
pub fn tables(policy: &Policy, engine: &Engine) -> Result<Tables, String> {
    let mut names = Vec::new();
    let mut files = Vec::new();
    let mut missing = Vec::new();
    let lists = [
        &policy.virtual_loopback.programs,
        &policy.virtual_ip.programs,
        &policy.prefer_loopback.processes,
    ];
    for entry in lists.into_iter().flatten() {
        let folded = fold_program_name(entry);
        if folded.is_empty() {
            continue;
        }
        let plan = engine.process(entry);
        if folded.contains('\\') {
            // A full path: the file it names now (device and inode).
            match std::fs::metadata(entry.trim()) {
                Ok(m) => {
                    let mut key = [0u8; 16];
                    key[..8].copy_from_slice(&m.ino().to_ne_bytes());
                    key[8..12].copy_from_slice(&kernel_dev(m.dev()).to_ne_bytes());
                    if !files.iter().any(|(k, _)| *k == key) {
                        files.push((key, plan.entry()));
                    }
                }
                Err(e) => missing.push(format!("{}: {e}", entry.trim())),
            }
        } else {
            let bytes = folded.as_bytes();
            if bytes.len() >= NAME_LEN {
                return Err(format!(
                    "program {entry:?}: the kernel layer matches names of at most {} bytes",
                    NAME_LEN - 1
                ));
            }
            let mut key = [0u8; NAME_LEN];
            key[..bytes.len()].copy_from_slice(bytes);
            // A name in several lists is one entry (its plan covers every list).
            if !names.iter().any(|(k, _)| *k == key) {
                names.push((key, plan.entry()));
            }
        }
    }
    Ok(Tables {
        policy: engine.tables().clone(),
        unlisted: engine.process("").entry(),
        names,
        files,
        missing,
    })
}

/// The cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("/proc/self/mounts: {e}"))?;
    let found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
        })
        .collect();
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| found.contains(p))
        .or_else(|| found.into_iter().next())
        .ok_or_else(|| "no cgroup2 hierarchy is mounted (the kernel layer needs one)".to_string())
}

/// An exclusive lock over the layer's set-up and clean-up, released on drop.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// How long a launcher waits for the set-up lock by default: 60 s. Its holder may be loading the
/// programs (the verifier takes seconds on a busy host), and several launches of new roots queue.
pub const LOCK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Takes the layer's set-up lock, waiting for it at most [`LOCK_DEADLINE`].
///
/// # Errors
///
/// As [`lock_with`].
pub fn lock() -> Result<Lock, String> {
    lock_with(&LockWait::new(LOCK_DEADLINE))
}

/// Takes the layer's set-up lock (`/run/ipvirt/kernel.lock`), waiting as `wait` says. The
/// directory is made (root's, mode 0755) when missing; it and the lock file must be root's and
/// writable by nobody else, and no link is followed.
///
/// # Errors
///
/// A sentence naming the directory or the lock file and what is wrong with it, or, past the
/// deadline or when `wait` stops, the lock file and its holder.
pub fn lock_with(wait: &LockWait) -> Result<Lock, String> {
    let dir = PrivateDir::create(Path::new(RUN_DIR), 0o755).map_err(|e| e.to_string())?;
    let path = dir.path().join(LOCK_NAME);
    let f = dir
        .open_file(OsStr::new(LOCK_NAME), Access::ReadWriteCreate)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: not created", path.display()))?;
    private_fs::lock(&f, &path, wait).map_err(|e| e.to_string())?;
    Ok(Lock(f))
}

/// The layer at one root cgroup, its programs attached and its maps open.
#[derive(Debug)]
pub struct Layer {
    root: PathBuf,
    maps: Maps,
    /// What the caller should tell the administrator (see [`Layer::take_notes`]).
    notes: Vec<String>,
}

fn open_dir(path: &Path) -> Result<OwnedFd, String> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Our programs attached at `root` (fd, attach type), found by name.
fn attached(root: &OwnedFd) -> Result<Vec<(OwnedFd, u32)>, String> {
    let mut out = Vec::new();
    for (name, ty) in PROGRAMS {
        let ids = sys::prog_query(root.as_raw_fd(), ty)
            .map_err(|e| format!("querying the programs attached for {name}: {e}"))?;
        for id in ids {
            let Ok(fd) = sys::prog_fd_by_id(id) else {
                continue;
            };
            if sys::prog_info(fd.as_raw_fd()).is_ok_and(|(n, _)| n == name) {
                out.push((fd, ty));
            }
        }
    }
    Ok(out)
}

fn open_maps(prog: &OwnedFd) -> Result<Maps, String> {
    let (_, ids) = sys::prog_info(prog.as_raw_fd()).map_err(|e| format!("program info: {e}"))?;
    let mut found: Vec<(String, sys::Map)> = Vec::new();
    for id in ids {
        let fd = sys::map_fd_by_id(id).map_err(|e| format!("map {id}: {e}"))?;
        let (name, _) = sys::map_info(fd.as_raw_fd()).map_err(|e| format!("map {id}: {e}"))?;
        found.push((name, sys::Map::new(fd)));
    }
    let stale = |what: &str| {
        format!(
            "the attached programs {what}: they come from another ipvirt version; detach the layer \
             (--kernel-detach) and start again"
        )
    };
    let mut take = |name: &str| {
        found
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| found.swap_remove(i).1)
            .ok_or_else(|| stale(&format!("have no map {name}")))
    };
    let maps = Maps {
        policy: take("ipv_policy")?,
        config: take("ipv_config")?,
        sessions: take("ipv_sessions")?,
        files: take("ipv_prog_files")?,
        names: take("ipv_prog_names")?,
        anchors: take("ipv_anchors")?,
        rodata: take(".rodata").ok(),
        refusals: take("ipv_refusals").ok(),
    };
    let (_, size) = sys::map_info(maps.config.fd()).map_err(|e| format!("ipv_config: {e}"))?;
    if size as usize != CONFIG_LEN {
        return Err(stale(&format!(
            "have a {size}-byte ipv_config (this launcher writes {CONFIG_LEN})"
        )));
    }
    Ok(maps)
}

/// The config map's value: the unlisted entry, the version, the generation.
fn config_bytes(unlisted: u32, version: u32, generation: u32) -> [u8; CONFIG_LEN] {
    let mut b = [0u8; CONFIG_LEN];
    b[..4].copy_from_slice(&unlisted.to_ne_bytes());
    b[4..8].copy_from_slice(&version.to_ne_bytes());
    b[8..12].copy_from_slice(&generation.to_ne_bytes());
    b
}

/// Whether the kernel refused a program (the verifier), as opposed to failing to attach it.
fn refused_by_verifier(e: &str) -> bool {
    e.starts_with("loading ")
}

/// Loads the object and attaches every program at `root` (the caller holds the lock): with the
/// per-task cache, or without it when this kernel's verifier refuses task storage there. Returns
/// whether the cache is on, and why not when it is off.
///
/// `IPVIRT_KERNEL_TASK_CACHE=off` in the launcher's environment loads the programs without the
/// cache (a diagnostic switch: the decisions are the same, each call does the full lookups).
fn load_and_attach(root: &OwnedFd) -> Result<Option<String>, String> {
    match std::env::var("IPVIRT_KERNEL_TASK_CACHE").as_deref() {
        Ok("off") => {
            return load_and_attach_with(root, false)
                .map(|()| Some("IPVIRT_KERNEL_TASK_CACHE=off".into()));
        }
        Ok("on") | Err(std::env::VarError::NotPresent) => {}
        Ok(other) => {
            return Err(format!(
                "IPVIRT_KERNEL_TASK_CACHE={other:?}: expected on or off"
            ));
        }
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(format!(
                "IPVIRT_KERNEL_TASK_CACHE={v:?}: expected on or off"
            ));
        }
    }
    match load_and_attach_with(root, true) {
        Ok(()) => Ok(None),
        Err(with) if refused_by_verifier(&with) => match load_and_attach_with(root, false) {
            Ok(()) => Ok(Some(format!(
                "this kernel refuses task storage in sock_addr programs ({with})"
            ))),
            Err(without) => Err(format!("{without} (and with the per-task cache: {with})")),
        },
        Err(e) => Err(e),
    }
}

fn load_and_attach_with(root: &OwnedFd, cache: bool) -> Result<(), String> {
    let on = u32::from(cache);
    let mut ebpf = aya::EbpfLoader::new()
        .set_global(CACHE_GLOBAL, &on, true)
        // aya 0.13 has no type for task storage (ipv_task_cache): the kernel creates it, only the
        // programs use it.
        .allow_unsupported_maps()
        .load(OBJECT)
        .map_err(|e| format!("reading the BPF object: {e}"))?;
    let mut done: Vec<(OwnedFd, u32)> = Vec::new();
    for (name, ty) in PROGRAMS {
        let result = (|| -> Result<OwnedFd, String> {
            let prog: &mut aya::programs::CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("the BPF object has no program {name}"))?
                .try_into()
                .map_err(|e| format!("{name}: {e}"))?;
            prog.load().map_err(|e| format!("loading {name}: {e}"))?;
            let fd = prog.fd().map_err(|e| format!("{name}: {e}"))?;
            let owned = fd
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("{name}: {e}"))?;
            sys::prog_attach(
                root.as_raw_fd(),
                owned.as_raw_fd(),
                ty,
                sys::BPF_F_ALLOW_MULTI,
            )
            .map_err(|e| format!("attaching {name}: {e}"))?;
            Ok(owned)
        })();
        match result {
            Ok(fd) => done.push((fd, ty)),
            Err(e) => {
                // All or nothing: a half-attached layer would virtualize some calls only.
                for (fd, ty) in &done {
                    let _ = sys::prog_detach(root.as_raw_fd(), fd.as_raw_fd(), *ty);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

fn cgroup_id(dir: &Path) -> Result<u64, String> {
    std::fs::metadata(dir)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Whether a cgroup still has processes (`populated 1` in `cgroup.events`).
fn populated(dir: &Path) -> bool {
    let mut s = String::new();
    match File::open(dir.join("cgroup.events")).and_then(|mut f| f.read_to_string(&mut s)) {
        Ok(_) => s.lines().any(|l| l == "populated 1"),
        // An unreadable cgroup is treated as in use: never remove what may still run.
        Err(_) => true,
    }
}

impl Layer {
    /// Attaches the layer at `<cgroup2>/<root_name>` (or finds it attached) and makes its maps
    /// hold `tables`. The caller holds [`lock`].
    pub fn attach(root_name: &str, tables: &Tables) -> Result<Layer, String> {
        Layer::attach_with(root_name, tables, false)
    }

    /// As [`attach`](Self::attach), replacing the tables even while sessions run under others:
    /// the `ipvirt` service, the one owner of the root's sessions, starting with its policy.
    pub fn attach_replacing(root_name: &str, tables: &Tables) -> Result<Layer, String> {
        Layer::attach_with(root_name, tables, true)
    }

    fn attach_with(root_name: &str, tables: &Tables, replace_live: bool) -> Result<Layer, String> {
        let root = cgroup2_mount()?.join(root_name);
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let root_fd = open_dir(&root)?;
        let mut notes = Vec::new();
        let mut progs = attached(&root_fd)?;
        if progs.len() != PROGRAMS.len() {
            // None, or a set left half-attached: start clean.
            for (fd, ty) in &progs {
                let _ = sys::prog_detach(root_fd.as_raw_fd(), fd.as_raw_fd(), *ty);
            }
            if let Some(why) = load_and_attach(&root_fd)? {
                notes.push(format!(
                    "kernel layer: the programs run without the per-task cache (same decisions, \
                     slower calls): {why}"
                ));
            }
            progs = attached(&root_fd)?;
            if progs.len() != PROGRAMS.len() {
                return Err(format!(
                    "{}: {} of {} programs attached after attaching them",
                    root.display(),
                    progs.len(),
                    PROGRAMS.len()
                ));
            }
        }
        let maps = open_maps(&progs[0].0)?;
        let layer = Layer { root, maps, notes };
        layer.anchor(&layer.root)?;
        layer.reclaim()?;
        layer.install(tables, replace_live)?;
        Ok(layer)
    }

    /// Makes the maps hold `tables` even while sessions run under others: the `ipvirt` service
    /// re-reading its policy (its running sessions follow the new rules at their next call; their
    /// entries, with their addresses, stay). The caller holds [`lock`].
    ///
    /// # Errors
    ///
    /// The maps cannot be read or written.
    pub fn replace_tables(&self, tables: &Tables) -> Result<(), String> {
        self.install(tables, true)
    }

    /// Opens the layer if it is attached at `<cgroup2>/<root_name>`; `None` when it is not.
    pub fn find(root_name: &str) -> Result<Option<Layer>, String> {
        let root = cgroup2_mount()?.join(root_name);
        if !root.exists() {
            return Ok(None);
        }
        let root_fd = open_dir(&root)?;
        let progs = attached(&root_fd)?;
        let Some((first, _)) = progs.first() else {
            return Ok(None);
        };
        let maps = open_maps(first)?;
        Ok(Some(Layer {
            root,
            maps,
            notes: Vec::new(),
        }))
    }

    /// What the layer has to say since the last call (e.g. that its programs run without the
    /// per-task cache), for the caller to print or log.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The reader of the refusals the programs report ([`refusals`]): one reader per host, the
    /// `ipvirt` service. `None` when the attached programs are of a version that reports none.
    ///
    /// # Errors
    ///
    /// The ring buffer cannot be mapped.
    pub fn refusals(&self) -> Result<Option<Refusals>, String> {
        let Some(map) = &self.maps.refusals else {
            return Ok(None);
        };
        let fd = map
            .try_clone_fd()
            .map_err(|e| format!("ipv_refusals: {e}"))?;
        Refusals::open(fd).map(Some)
    }

    /// The root cgroup.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the attached programs were loaded with the per-task cache (`None`: the kernel
    /// does not show their `.rodata`).
    pub fn task_cache_on(&self) -> Option<bool> {
        let map = self.maps.rodata.as_ref()?;
        let (_, size) = sys::map_info(map.fd()).ok()?;
        let mut v = vec![0u8; size as usize];
        map.lookup(&0u32.to_ne_bytes(), &mut v)
            .ok()?
            .then_some(())?;
        // ipv_task_cache_on is the object's only read-only global: offset 0.
        Some(v.get(..4)? != [0u8; 4])
    }

    /// Each attached program's name and run statistics (`run_time_ns`, `run_cnt`), in the order
    /// of attachment types.
    pub fn run_stats(&self) -> Result<Vec<(String, u64, u64)>, String> {
        let root_fd = open_dir(&self.root)?;
        let mut out = Vec::new();
        for (fd, _) in attached(&root_fd)? {
            let (name, _) = sys::prog_info(fd.as_raw_fd()).map_err(|e| e.to_string())?;
            let (ns, runs) = sys::prog_run_stats(fd.as_raw_fd()).map_err(|e| e.to_string())?;
            out.push((name, ns, runs));
        }
        Ok(out)
    }

    fn install(&self, t: &Tables, replace_live: bool) -> Result<(), String> {
        let zero = 0u32.to_ne_bytes();
        let mut current = vec![0u8; size_of::<PolicyTable>()];
        let have = self
            .maps
            .policy
            .lookup(&zero, &mut current)
            .map_err(|e| format!("reading the policy map: {e}"))?;
        let mut current_config = [0u8; CONFIG_LEN];
        self.maps
            .config
            .lookup(&zero, &mut current_config)
            .map_err(|e| format!("reading the config map: {e}"))?;
        let generation = u32::from_ne_bytes(current_config[8..12].try_into().unwrap_or([0; 4]));
        let config = config_bytes(t.unlisted.flags, CONFIG_VERSION, generation.wrapping_add(2));
        let same_programs = self.program_maps_hold(t)?;
        let same = have
            && current == policy_bytes(&t.policy)
            && current_config[..8] == config[..8]
            && same_programs;
        if same {
            return Ok(());
        }
        let live = self.sessions()?;
        if !replace_live && !live.is_empty() && current_config[4..8] == CONFIG_VERSION.to_ne_bytes()
        {
            let ids: Vec<String> = live.iter().map(|(_, e, _)| e.session.to_string()).collect();
            return Err(format!(
                "the kernel layer at {} runs sessions {} under another policy; end them, or give \
                 this policy its own root (--kernel-root NAME)",
                self.root.display(),
                ids.join(", ")
            ));
        }
        // Clear the program entries, then write everything; the config (version) last, so the
        // programs see no policy until it is whole. Each config write moves the generation on,
        // so no task keeps a cached entry from before.
        self.maps
            .config
            .update(&zero, &config_bytes(0, 0, generation.wrapping_add(1)))
            .map_err(|e| format!("writing the config map: {e}"))?;
        for (map, len) in [(&self.maps.names, NAME_LEN), (&self.maps.files, 16)] {
            for k in map
                .keys(len)
                .map_err(|e| format!("listing program entries: {e}"))?
            {
                let _ = map.delete(&k);
            }
        }
        for (k, v) in &t.names {
            self.maps
                .names
                .update(k, &v.flags.to_ne_bytes())
                .map_err(|e| format!("writing a program entry: {e}"))?;
        }
        for (k, v) in &t.files {
            self.maps
                .files
                .update(k, &v.flags.to_ne_bytes())
                .map_err(|e| format!("writing a program entry: {e}"))?;
        }
        self.maps
            .policy
            .update(&zero, policy_bytes(&t.policy))
            .map_err(|e| format!("writing the policy map: {e}"))?;
        self.maps
            .config
            .update(&zero, &config)
            .map_err(|e| format!("writing the config map: {e}"))
    }

    /// Moves the generation on after a write to a table, so that every task recomputes its
    /// cached entries at its next call (the caller holds [`lock`]).
    fn bump_generation(&self) -> Result<(), String> {
        let zero = 0u32.to_ne_bytes();
        let mut c = [0u8; CONFIG_LEN];
        self.maps
            .config
            .lookup(&zero, &mut c)
            .map_err(|e| format!("reading the config map: {e}"))?;
        let g = u32::from_ne_bytes(c[8..12].try_into().unwrap_or([0; 4])).wrapping_add(1);
        c[8..12].copy_from_slice(&g.to_ne_bytes());
        self.maps
            .config
            .update(&zero, &c)
            .map_err(|e| format!("writing the config map: {e}"))
    }

    fn program_maps_hold(&self, t: &Tables) -> Result<bool, String> {
        let name_keys = self.maps.names.keys(NAME_LEN).map_err(|e| e.to_string())?;
        let file_keys = self.maps.files.keys(16).map_err(|e| e.to_string())?;
        if name_keys.len() != t.names.len() || file_keys.len() != t.files.len() {
            return Ok(false);
        }
        let holds = |map: &sys::Map, k: &[u8], v: &ProgramEntry| {
            let mut got = [0u8; 4];
            map.lookup(k, &mut got).is_ok_and(|f| f) && got == v.flags.to_ne_bytes()
        };
        Ok(t.names.iter().all(|(k, v)| holds(&self.maps.names, k, v))
            && t.files.iter().all(|(k, v)| holds(&self.maps.files, k, v)))
    }

    /// Records `dir` as a cgroup the programs are attached at (`ipv_anchors`), so that its
    /// tasks are in the layer's tree: one without a session entry fails closed, where a task
    /// outside every such tree is left alone.
    fn anchor(&self, dir: &Path) -> Result<(), String> {
        let id = cgroup_id(dir)?;
        self.maps
            .anchors
            .update(&id.to_ne_bytes(), &1u32.to_ne_bytes())
            .map_err(|e| format!("writing the attachment of {}: {e}", dir.display()))
    }

    /// The session cgroup of `id`.
    pub fn session_dir(&self, id: SessionId) -> PathBuf {
        self.root.join(format!("session-{id}"))
    }

    /// Creates (or joins) the session's cgroup and writes its entry; returns the cgroup's
    /// `cgroup.procs`, which the command writes itself into before it executes.
    pub fn open_session(&self, entry: &SessionEntry) -> Result<PathBuf, String> {
        let dir = self.session_dir(SessionId::new(entry.session));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        let id = cgroup_id(&dir)?;
        self.maps
            .sessions
            .update(&id.to_ne_bytes(), &session_bytes(entry))
            .map_err(|e| format!("writing the session entry: {e}"))?;
        // A second launcher of a running session may have written a new entry (a new VIP).
        self.bump_generation()?;
        Ok(dir.join("cgroup.procs"))
    }

    /// Removes the session's entry and cgroup when no process is left in it; `false` when some
    /// still run (the session stays virtualized).
    pub fn close_session(&self, id: SessionId) -> Result<bool, String> {
        self.remove_if_empty(&self.session_dir(id))
    }

    fn remove_if_empty(&self, dir: &Path) -> Result<bool, String> {
        if !dir.exists() {
            return Ok(true);
        }
        if populated(dir) {
            return Ok(false);
        }
        let id = cgroup_id(dir)?;
        // rmdir first: it fails (EBUSY) if a process joined meanwhile, and the entry then stays.
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        self.maps
            .sessions
            .delete(&id.to_ne_bytes())
            .map_err(|e| format!("removing the session entry: {e}"))?;
        self.bump_generation()?;
        Ok(true)
    }

    /// Removes every session cgroup with no process left, and every entry whose cgroup is gone.
    pub fn reclaim(&self) -> Result<Vec<SessionId>, String> {
        let mut gone = Vec::new();
        for (dir, entry) in self.session_dirs()? {
            if self.remove_if_empty(&dir)? {
                gone.push(SessionId::new(entry.map_or(0, |e| e.session)));
            }
        }
        let live: Vec<u64> = self
            .session_dirs()?
            .iter()
            .filter_map(|(d, _)| cgroup_id(d).ok())
            .collect();
        for k in self.maps.sessions.keys(8).map_err(|e| e.to_string())? {
            let id = u64::from_ne_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
            // An entry of a cgroup outside the root (a registered logind scope) stays while the
            // kernel says its cgroup exists, or cannot tell.
            let gone = !live.contains(&id) && cgroup_alive(id) == Some(false);
            if gone && self.maps.sessions.delete(&k).unwrap_or(false) {
                self.bump_generation()?;
            }
        }
        Ok(gone)
    }

    fn entry_of(&self, dir: &Path) -> Option<SessionEntry> {
        let id = cgroup_id(dir).ok()?;
        let mut v = [0u8; 16];
        self.maps
            .sessions
            .lookup(&id.to_ne_bytes(), &mut v)
            .ok()?
            .then(|| session_of_bytes(&v))
    }

    fn session_dirs(&self) -> Result<Vec<(PathBuf, Option<SessionEntry>)>, String> {
        let mut out = Vec::new();
        let rd =
            std::fs::read_dir(&self.root).map_err(|e| format!("{}: {e}", self.root.display()))?;
        for d in rd.flatten() {
            let path = d.path();
            let is_session = d
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("session-"));
            if is_session && path.is_dir() {
                let e = self.entry_of(&path);
                out.push((path, e));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The live sessions: cgroup, entry, and whether processes run in it.
    pub fn sessions(&self) -> Result<Vec<(PathBuf, SessionEntry, bool)>, String> {
        Ok(self
            .session_dirs()?
            .into_iter()
            .filter_map(|(d, e)| {
                let p = populated(&d);
                e.map(|e| (d, e, p))
            })
            .collect())
    }

    /// Detaches the layer and removes its cgroups, restoring the host. Refused while a session
    /// has processes (they would silently lose their addresses).
    pub fn detach(self) -> Result<(), String> {
        self.reclaim()?;
        let busy: Vec<String> = self
            .session_dirs()?
            .into_iter()
            .filter(|(d, _)| populated(d))
            .map(|(d, e)| match e {
                Some(e) => format!("session {} ({})", e.session, d.display()),
                None => d.display().to_string(),
            })
            .collect();
        if !busy.is_empty() {
            return Err(format!(
                "not detaching: processes still run in {}; end them first",
                busy.join(", ")
            ));
        }
        // Sessions registered in cgroups outside the root (the service's logind scopes): their
        // programs are the same, and their processes would lose their addresses.
        let root_ids: Vec<u64> = self
            .session_dirs()?
            .iter()
            .filter_map(|(d, _)| cgroup_id(d).ok())
            .collect();
        let foreign: Vec<String> = self
            .entries()?
            .into_iter()
            .filter(|(id, _)| !root_ids.contains(id) && cgroup_alive(*id) != Some(false))
            .map(|(id, e)| format!("session {} (cgroup {id})", e.session))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "not detaching: the ipvirt service has registered {} in cgroups of their own; stop the service first",
                foreign.join(", ")
            ));
        }
        let root_fd = open_dir(&self.root)?;
        for (fd, ty) in attached(&root_fd)? {
            sys::prog_detach(root_fd.as_raw_fd(), fd.as_raw_fd(), ty)
                .map_err(|e| format!("detaching from {}: {e}", self.root.display()))?;
        }
        drop(root_fd);
        std::fs::remove_dir(&self.root).map_err(|e| format!("{}: {e}", self.root.display()))
    }
}

/// Why the kernel layer cannot run here, if it cannot: the checks a test or `explain` prints.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some("the kernel layer needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)".into());
    }
    if let Err(e) = cgroup2_mount() {
        return Some(e);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    None
}
