//! `ipvirt run`: a command as a session. It leases the session's VIP through the host's lease
//! book (from the policy's pool, or from DHCP), starts the command under one of the two Linux
//! layers with the session's configuration, and gives the lease up when the session's processes
//! are gone.
//!
//! ```text
//! ipvirt run --id 7 --policy examples/policies/linux-ld-preload.toml \
//!     -- python3 -m http.server --bind 127.0.0.1 8000
//! sudo ipvirt run --layer kernel --id 7 \
//!     --policy examples/policies/linux-kernel.toml -- busybox httpd -f -p 127.0.0.1:8000
//! ```
//!
//! A VIP is leased only when the policy enables virtual IP with an adapter and a pool (or
//! `source = "dhcp"`). When the pool is exhausted the command still runs, without `IPVIRT_VIP`:
//! the policy's `on_lease_failure` decides what its sockets do.
//!
//! # What survives what (SPEC §10)
//!
//! - The lease book is replaced atomically (`ipvirt_host::StateFile`): a kill or a full disk at
//!   any moment leaves the old state or the new one. A launch that cannot record its lease (disk
//!   full, unreadable or corrupt state) does not run the command: it prints an error naming the
//!   file and exits with status 2, and a corrupt file is left for inspection.
//! - **The lease lives while any process of the session does.** Its holders are this launcher,
//!   the token `IPVIRT_LEASE=<token>` that the command and everything it starts carry, and, with
//!   the kernel layer, the session's cgroup. When the launcher ends, or after it was killed
//!   (SIGKILL, the OOM killer), the lease is released only once none of them lives: by the
//!   launcher itself, or by the next launch or `ipvirt status`. The command does not die with its
//!   launcher (no `PR_SET_PDEATHSIG`): killing the launcher must not kill a user's work.
//! - Concurrent launchers of one session share one lease (and one VIP); it ends with the last.
//! - SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM are forwarded to the command;
//!   the launcher then waits for it and releases as above. One that comes before the command runs
//!   also ends a wait for the lease book's or the kernel layer's lock (each wait is bounded
//!   anyway: `ipvirt_host::LockWait`), with an error naming the lock and its holder.
//! - With `--layer kernel` the session is also a cgroup (crate `ipvirt-kernel`): the programs
//!   stay attached when the launcher is killed, and the session's entry stays while any of its
//!   processes runs, so nothing falls back to the shared `127.0.0.1`.
//! - Limits: with the `LD_PRELOAD` layer, a process that clears its environment, or one of
//!   another user that this launcher may not inspect (`/proc/PID/environ`), is not seen as the
//!   session's.

// Signal handlers, kill(2) and the cgroup join between fork and exec.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use ipvirt::{Host, Policy, Session, SessionId, StaticPool, Vip, VipSource};
use ipvirt_host::LockWait;
use ipvirt_host::control::{self, ControlError, Request, Response};
use ipvirt_host::holder::TOKEN_VAR;
use ipvirt_host::lease_book::{Holder, LeaseBook};
use ipvirt_host::policy_file;

use crate::args::{Layer, RunArgs};
use crate::run_dhcp;
use crate::status::{dhcp_state, uses_pool};
use crate::{Outcome, paths, say};

static CHILD: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);

/// The signals forwarded to the command (their default action would end the launcher without
/// releasing its lease).
const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// Whether a forwarded signal came before the command started: a wait for a lock (the lease
/// book's, the kernel layer's) then ends instead of going on (`ipvirt_host::LockWait`).
fn stopping() -> bool {
    PENDING.load(Ordering::SeqCst) != 0
}

/// How the launcher waits for the lease book's lock: the default deadline, and not past a
/// SIGTERM.
const LOCK_WAIT: LockWait = LockWait::new(LockWait::DEFAULT_DEADLINE).stopped_by(stopping);
/// The same for the kernel layer's set-up lock, whose holder may be loading the programs.
const KERNEL_LOCK_WAIT: LockWait = LockWait::new(ipvirt_kernel::LOCK_DEADLINE).stopped_by(stopping);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our child's.
        unsafe { libc::kill(pid, signal) };
    } else {
        // No command yet: remember it, so the launcher does not start one.
        PENDING.store(signal, Ordering::SeqCst);
    }
}

/// What the command runs with.
struct Launch<'a> {
    args: &'a RunArgs,
    policy: &'a Path,
    preload: Option<&'a Path>,
    cgroup_procs: Option<&'a Path>,
    vip: Option<Ipv4Addr>,
    token: &'a str,
}

pub(crate) fn run(args: RunArgs) -> Outcome {
    if paths::is_root()
        && !args.console
        && let Some(outcome) = through_service(&args)
    {
        return outcome;
    }
    let me = carry_token()?;
    let policy_path = std::fs::canonicalize(&args.policy)
        .map_err(|e| format!("{}: {e}", args.policy.display()))?;
    let policy = policy_file::load(&policy_path)
        .map_err(|e| e.to_string())?
        .policy;
    let host = Host::new(args.servers.iter().copied());
    let id = args.id;
    let dhcp_on = policy.virtual_ip.enabled && policy.virtual_ip.source == VipSource::Dhcp;
    let pooled = uses_pool(&policy);
    if id == SessionId::MAX && !args.console && policy.virtual_loopback.enabled {
        // SPEC §9: its loopback address is lo's broadcast address on Linux.
        return Err(format!(
            "session {id}: its loopback address 127.255.255.255 is the broadcast address of lo on \
             Linux, where TCP cannot use it; sessions up to {} have a usable loopback address",
            id.get() - 1
        )
        .into());
    }
    let preload = match args.layer {
        Layer::Kernel => None,
        Layer::Preload => Some(paths::preload(args.preload.as_deref())?),
    };
    // The lease book is opened only by a session that leases (its directory is made then).
    let book = || {
        paths::lease_book(args.lease_book.as_deref())
            .map(|p| LeaseBook::new(p).with_lock_wait(LOCK_WAIT))
    };
    let pool = || {
        StaticPool::from_policy(&policy.virtual_ip, &host)
            .map_err(|e| format!("{}: {e}", policy_path.display()))
    };

    for sig in FORWARDED {
        // SAFETY: installs a handler that only touches atomics and calls the async-signal-safe
        // kill(2).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }

    let token_text = me.token().unwrap_or_default().to_owned();
    let mut holders = vec![me.clone()];
    // The kernel session's cgroup holds the lease too: it lives while any process of the
    // session runs, whatever their environment.
    #[cfg(target_os = "linux")]
    if args.layer == Layer::Kernel {
        holders.push(Holder::Cgroup(kernel_session_dir(&args.kernel_root, id)?));
    }
    let leasing = pooled && !args.console;
    let book = if leasing || (dhcp_on && !args.console) {
        Some(book()?)
    } else {
        None
    };
    let mut vip = None;
    if let (true, Some(book)) = (leasing, &book) {
        let got = book
            .acquire(pool()?, id, &holders)
            .map_err(|e| e.to_string())?;
        got.notes.iter().for_each(|n| say(n));
        vip = got.vip;
    }
    let mut dhcp_keeper = None;
    if let (true, Some(book)) = (dhcp_on && !args.console, &book) {
        let mut client = run_dhcp::Client::open(&policy, &dhcp_state(book.path()), book, id)?;
        match client.lease(args.dhcp_wait, &holders) {
            Some(v) => {
                vip = Some(v);
                dhcp_keeper = Some(client.keep_in_background());
            }
            None => {
                // Stop asking: the command runs without a VIP for its whole life.
                client.release();
                say(&format!(
                    "session {id}: no DHCP lease within {} s; virtual_ip.on_lease_failure = {} applies",
                    args.dhcp_wait.as_secs(),
                    policy.virtual_ip.on_lease_failure
                ));
            }
        }
    }
    match (vip, &book) {
        (Some(v), Some(book)) => say(&format!(
            "session {id}: virtual IP {v}{} (leases in {})",
            if dhcp_on { " leased from DHCP" } else { "" },
            book.path().display()
        )),
        (None, _) if leasing => say(&format!(
            "session {id}: no virtual IP left in the pool; virtual_ip.on_lease_failure = {} applies",
            policy.virtual_ip.on_lease_failure
        )),
        _ => {}
    }

    let launch = Launch {
        args: &args,
        policy: &policy_path,
        preload: preload.as_deref(),
        cgroup_procs: None,
        vip,
        token: &token_text,
    };
    let mut kernel_layer = None;
    let status = if PENDING.load(Ordering::SeqCst) != 0 {
        Err(format!(
            "stopped by signal {} before the command started",
            PENDING.load(Ordering::SeqCst)
        ))
    } else if args.layer == Layer::Kernel {
        // The lock is held until the command is in its cgroup: a concurrent clean-up cannot
        // remove the session between its entry being written and the command joining it.
        let started = ipvirt_kernel::lock_with(&KERNEL_LOCK_WAIT).and_then(|lock| {
            let (layer, procs) = kernel_session(&args, &policy, host.clone(), id, vip)?;
            let child = start(&Launch {
                cgroup_procs: Some(&procs),
                ..launch
            });
            drop(lock);
            Ok((layer, child?))
        });
        match started {
            Ok((layer, child)) => {
                kernel_layer = Some(layer);
                wait(child, &args)
            }
            Err(e) => Err(e),
        }
    } else {
        start(&launch).and_then(|child| wait(child, &args))
    };
    if let Some(layer) = kernel_layer {
        // Removed now if the session's processes are all gone; otherwise by the next launch,
        // `ipvirt status` or `ipvirt kernel detach` once they are.
        if let Err(e) = ipvirt_kernel::lock().and_then(|_lock| layer.close_session(id)) {
            say(&format!("could not end the kernel session now: {e}"));
        }
    }
    if let Some(keeper) = dhcp_keeper {
        keeper.stop();
    }
    if let (Some(_), true, Some(book)) = (vip, leasing, &book) {
        match book.release(pool()?, id, &[me]) {
            Ok(notes) => notes.iter().for_each(|n| say(n)),
            // The holder stays recorded; the next launch reclaims it once the session is gone.
            Err(e) => say(&format!("could not release the lease now: {e}")),
        }
    }
    let status = status?;
    Ok(
        match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
            _ => ExitCode::FAILURE,
        },
    )
}

/// When the `ipvirt` service runs, root's sessions are its: it makes this process the session
/// (its policy, its layer, its lease book), and the command replaces this process. `None` when
/// no service listens (the launcher then works alone).
fn through_service(args: &RunArgs) -> Option<Outcome> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let user = crate::service::name_of(euid).unwrap_or_else(|| "root".into());
    let request = Request::Open {
        user,
        service: Some("ipvirt-run".into()),
        tty: None,
        rhost: None,
        id: Some(args.id.get()),
    };
    let answer = match control::call(&args.socket, &request, Duration::from_secs(30)) {
        Err(ControlError::NotRunning { .. }) => return None,
        Err(e) => return Some(Err(e.to_string().into())),
        Ok(a) => a,
    };
    let env = match answer {
        Response::Opened {
            session,
            environment,
        } => {
            say(&format!(
                "session {} opened by the ipvirt service on {} (its policy and layer apply): loopback {}{}",
                session.number,
                args.socket.display(),
                session.loopback,
                session
                    .vip
                    .map_or(String::new(), |v| format!(", virtual IP {v}"))
            ));
            environment
        }
        Response::Console { reason } => {
            say(&format!(
                "the ipvirt service does not virtualize this command: {reason}"
            ));
            Vec::new()
        }
        other => {
            return Some(Err(format!(
                "the ipvirt service on {}: {}",
                args.socket.display(),
                crate::status::words(&other)
            )
            .into()));
        }
    };
    let (program, rest) = args.command.split_first()?;
    let mut cmd = Command::new(program);
    cmd.args(rest).env_remove(TOKEN_VAR);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // This process is in the session's cgroup now; the command takes its place.
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    Some(Err(format!("cannot run {program:?}: {err}").into()))
}

/// This launcher as a lease holder, carrying its token in its own environment.
///
/// The token (`IPVIRT_LEASE`) must be visible in `/proc/PID/environ` of every process that may
/// use the lease, at every moment: a lease whose launcher is dead lives only through it. A
/// child between `fork` and `execve` still shows the launcher's environment, so a launcher
/// SIGKILLed in that window would leave a command about to run with a VIP that the next launch
/// reclaims. So the launcher first re-executes itself with the token in its own environment
/// (same pid, same start time, so the same token): from then on the launcher, any child it
/// forks, and the command after `execve` all carry it.
fn carry_token() -> Result<Holder, String> {
    let me = Holder::launcher().ok_or("cannot read this process's start time in /proc")?;
    let token = me.token().unwrap_or_default();
    if std::env::var_os(TOKEN_VAR).is_some_and(|v| v == token) {
        return Ok(me);
    }
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut args = std::env::args_os();
    let mut cmd = Command::new(&exe);
    if let Some(arg0) = args.next() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
    }
    let err = std::os::unix::process::CommandExt::exec(cmd.args(args).env(TOKEN_VAR, token));
    Err(format!(
        "re-executing {} with its lease token: {err}",
        exe.display()
    ))
}

/// The cgroup the kernel layer gives session `id` below its root.
fn kernel_session_dir(root: &str, id: SessionId) -> Result<PathBuf, String> {
    Ok(ipvirt_kernel::cgroup2_mount()?
        .join(root)
        .join(format!("session-{id}")))
}

/// The kernel layer's set-up for one session: the layer attached, the session's cgroup made and
/// its entry written. Returns the layer and the `cgroup.procs` file the command joins.
fn kernel_session(
    args: &RunArgs,
    policy: &Policy,
    host: Host,
    id: SessionId,
    vip: Option<Ipv4Addr>,
) -> Result<(ipvirt_kernel::Layer, PathBuf), String> {
    if let Some(why) = ipvirt_kernel::unavailable() {
        return Err(format!("--layer kernel: {why}"));
    }
    let engine = policy
        .clone()
        .compile(host)
        .map_err(|e| format!("{}: {e}", args.policy.display()))?;
    let tables = ipvirt_kernel::tables(policy, &engine)?;
    for m in &tables.missing {
        say(&format!(
            "note: program list entry {m}: it matches no program on this host"
        ));
    }
    let session = if args.console {
        Session::console(id)
    } else {
        Session::remote(id)
    };
    let vip = vip
        .map(Vip::new)
        .transpose()
        .map_err(|e| format!("leased VIP: {e}"))?;
    let entry = engine.session_entry(session, vip);
    let mut layer = ipvirt_kernel::Layer::attach(&args.kernel_root, &tables)?;
    layer.take_notes().iter().for_each(|n| say(n));
    let procs = layer.open_session(&entry)?;
    Ok((layer, procs))
}

/// Starts the command: under the `LD_PRELOAD` layer (`preload`), or in the kernel layer's session
/// cgroup (`cgroup_procs`), which the child joins before it executes the command.
fn start(l: &Launch<'_>) -> Result<std::process::Child, String> {
    let (program, rest) = l.args.command.split_first().ok_or("no command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("IPVIRT_SESSION", l.args.id.to_string())
        .env("IPVIRT_POLICY", l.policy)
        .env(
            "IPVIRT_SESSION_KIND",
            if l.args.console { "console" } else { "remote" },
        );
    match l.vip {
        Some(v) => {
            cmd.env("IPVIRT_VIP", v.to_string());
            cmd.env(TOKEN_VAR, l.token);
        }
        None => {
            cmd.env_remove("IPVIRT_VIP");
            cmd.env_remove(TOKEN_VAR);
        }
    }
    if !l.args.servers.is_empty() {
        let list: Vec<String> = l.args.servers.iter().map(ToString::to_string).collect();
        cmd.env("IPVIRT_SERVER_ADDRS", list.join(","));
    }
    if let Some(preload) = l.preload {
        let mut ld = preload.as_os_str().to_owned();
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|e| !e.is_empty()) {
            ld.push(":");
            ld.push(existing);
        }
        cmd.env("LD_PRELOAD", ld);
    }
    if let Some(procs) = l.cgroup_procs {
        let procs = CString::new(procs.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: a path with a NUL byte", procs.display()))?;
        // SAFETY: the closure runs in the child between fork and exec and makes only
        // async-signal-safe system calls (open, write, close) on memory prepared before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))
}

fn wait(
    mut child: std::process::Child,
    args: &RunArgs,
) -> Result<std::process::ExitStatus, String> {
    let program = args.command.first().cloned().unwrap_or_default();
    CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    // A signal that came while the command was starting: forward it now.
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap_or(0), pending) };
    }
    loop {
        match child.wait() {
            Ok(status) => {
                // Its pid may be reused from now on: signals no longer go anywhere.
                CHILD.store(0, Ordering::SeqCst);
                return Ok(status);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for {program:?}: {e}")),
        }
    }
}
