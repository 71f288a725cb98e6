//! Runs a command as a session: leases the session's VIP from the policy's pool, starts the command
//! under one of the two Linux layers with the session's configuration, and gives the lease up when
//! the session's processes are gone.
//!
//! ```text
//! cargo run --example session -- --id 7 --policy examples/policies/linux-ld-preload.toml \
//!     -- python3 -m http.server --bind 127.0.0.1 8000
//! sudo target/debug/examples/session --layer kernel --id 7 \
//!     --policy examples/policies/linux-ld-preload.toml -- busybox httpd -f -p 127.0.0.1:8000
//! ```
//!
//! Options:
//!   --id ID             the session id (required to run a command)
//!   --policy FILE       the TOML policy (required)
//!   --pool-state FILE   the lease state shared by concurrent launches (default:
//!                       ipvirt-leases-<hash of the policy path>.json in the temporary directory);
//!                       FILE.lock beside it is the lock, FILE.tmp the temporary file of a write
//!   --server-addr IP    one of the server's addresses, never leased (repeatable)
//!   --preload FILE      the layer's library (default: libipvirt_preload.so beside this program,
//!                       built with `cargo build --example ipvirt_preload` if missing)
//!   --console           run as a console session (never virtualized)
//!   --dhcp-wait SECS    with virtual_ip.source = "dhcp": how long to wait for the lease before
//!                       the command starts without one (default 10)
//!   --layer LAYER       `preload` (the default: the LD_PRELOAD library, dynamically linked
//!                       programs, no privileges) or `kernel` (cgroup-BPF programs: every process
//!                       of the session, static and Go binaries included; needs root)
//!   --kernel-root NAME  the kernel layer's root cgroup, below the cgroup2 mount (default: ipvirt);
//!                       one policy per root
//!   --kernel-detach     detach the kernel layer's programs and remove its cgroups (refused while a
//!                       session's processes run), restoring the host; needs no --policy
//!   --kernel-stats      print whether the kernel layer's programs run with the per-task cache, and
//!                       each program's runs and average run time (counted while
//!                       kernel.bpf_stats_enabled = 1); needs no --policy
//!   --kernel-stats-for SECS
//!                       the same, counting only during the next SECS seconds (statistics are
//!                       turned on for that window with BPF_ENABLE_STATS, no sysctl changed)
//!
//! `IPVIRT_KERNEL_TASK_CACHE=off` in the environment of the launcher that attaches the kernel
//! layer loads its programs without the per-task cache (a diagnostic switch; the cache is also
//! left off, with one line on stderr, when the kernel refuses task storage in these programs).
//!   --status            print the live leases (session, VIP, holders) after reclaiming those whose
//!                       processes are all gone, and exit
//!
//! A VIP is leased only when the policy enables virtual IP with an adapter and a pool. When the pool
//! is exhausted the command still runs, without `IPVIRT_VIP`: the policy's `on_lease_failure` decides
//! what its sockets do.
//!
//! With `virtual_ip.source = "dhcp"` (built with the `dhcp` feature) the VIP is leased from a DHCP
//! server instead, on `virtual_ip.dhcp.interface` (or the interface `virtual_ip.adapter` selects),
//! with client identifier `<client_id_prefix><session id>`: the launcher waits up to `--dhcp-wait`
//! seconds for the lease (else the command runs without a VIP and `on_lease_failure` applies), adds
//! the address to the interface, renews the lease on a thread while the command runs, and releases
//! it (DHCPRELEASE, address removed) when the command ends. The leases are kept in the lease file
//! (default `ipvirt-leases-<hash>-dhcp.json` in the temporary directory), so a launcher that was
//! killed and restarted takes its session's unexpired lease back and renews it. Limits: the command
//! keeps the address it started with (a lease lost while it runs is reported and the address is
//! taken off the interface, so its binds fail); concurrent launchers of one session are one DHCP
//! client and the first to end releases the lease.
//!
//! # What survives what (SPEC §10)
//!
//! - The lease state is replaced atomically ([`ipvirt::StateFile`]): a kill or a full disk at any
//!   moment leaves the old state or the new one. A launch that cannot record its lease (disk full,
//!   unreadable or corrupt state) does not run the command: it prints an error naming the file and
//!   exits with status 2, and a corrupt file is left for inspection.
//! - **The lease lives while any process of the session does.** The command runs with
//!   `IPVIRT_LEASE=<token>` in its environment, inherited by everything it starts. When the launcher
//!   ends, or after it was killed (SIGKILL, the OOM killer), the lease is released only once no
//!   process carrying the token is left: by the launcher itself, or by the next launch or `--status`.
//!   The command does not die with its launcher (no `PR_SET_PDEATHSIG`): killing the launcher must
//!   not kill a user's work, and the lease keeps its address from going to another session.
//! - Concurrent launchers of one session share one lease (and one VIP); it ends with the last.
//! - SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM are forwarded to the command;
//!   the launcher then waits for it and releases as above.
//! - With `--layer kernel` the session is also a cgroup (see `examples/kernel/mod.rs`): the
//!   programs stay attached when the launcher is killed, and the session's entry stays while any
//!   of its processes runs, so nothing falls back to the shared `127.0.0.1`.
//! - Limits: a process that clears its environment, or one of another user that this launcher may
//!   not inspect (`/proc/PID/environ`), is not seen as the session's.

// Signal handlers and kill(2): the launcher forwards signals to its child.
#![allow(unsafe_code)]

#[cfg(feature = "dhcp")]
mod dhcp;
#[path = "../kernel/mod.rs"]
mod kernel;
mod leases;
mod procfs;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use ipvirt::{Host, Policy, Session, SessionId, StateFile, StaticPool, VipSource};

const USAGE: &str = "usage: session --id ID --policy FILE [--pool-state FILE] [--server-addr IP]... \
[--preload FILE] [--console] [--dhcp-wait SECS] [--layer preload|kernel] [--kernel-root NAME] -- COMMAND [ARGS...]\n       \
session --policy FILE [--pool-state FILE] [--server-addr IP]... [--layer kernel] --status\n       \
session [--kernel-root NAME] --kernel-detach | --kernel-stats | --kernel-stats-for SECS";

/// Which Linux layer virtualizes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Preload,
    Kernel,
}

struct Args {
    id: Option<SessionId>,
    policy: PathBuf,
    state: Option<PathBuf>,
    servers: Vec<IpAddr>,
    preload: Option<PathBuf>,
    console: bool,
    status: bool,
    #[cfg_attr(not(feature = "dhcp"), allow(dead_code))]
    dhcp_wait: std::time::Duration,
    layer: Layer,
    kernel_root: String,
    detach: bool,
    stats: bool,
    stats_for: Option<std::time::Duration>,
    command: Vec<OsString>,
}

/// Prints a line on stderr, ignoring errors (a closed stderr must not stop the launcher).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "session: {line}");
}

fn parse_args() -> Result<Args, String> {
    let mut id = None;
    let mut policy = None;
    let mut state = None;
    let mut servers = Vec::new();
    let mut preload = None;
    let mut console = false;
    let mut status = false;
    let mut dhcp_wait = std::time::Duration::from_secs(10);
    let mut layer = Layer::Preload;
    let mut kernel_root = String::from("ipvirt");
    let mut detach = false;
    let mut stats = false;
    let mut stats_for = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let text = |v: OsString, name: &str| {
            v.into_string()
                .map_err(|v| format!("{name}: {v:?} is not valid text"))
        };
        match arg.to_str().unwrap_or("") {
            "--id" => {
                let v = text(value("--id")?, "--id")?;
                id = Some(v.parse::<SessionId>().map_err(|e| format!("--id: {e}"))?);
            }
            "--policy" => policy = Some(PathBuf::from(value("--policy")?)),
            "--pool-state" => state = Some(PathBuf::from(value("--pool-state")?)),
            "--server-addr" => {
                let v = text(value("--server-addr")?, "--server-addr")?;
                servers.push(
                    v.parse()
                        .map_err(|_| format!("--server-addr: {v:?} is not an IP address"))?,
                );
            }
            "--preload" => preload = Some(PathBuf::from(value("--preload")?)),
            "--console" => console = true,
            "--dhcp-wait" => {
                let v = text(value("--dhcp-wait")?, "--dhcp-wait")?;
                dhcp_wait =
                    std::time::Duration::from_secs(v.parse().map_err(|_| {
                        format!("--dhcp-wait: {v:?} is not a whole number of seconds")
                    })?);
            }
            "--layer" => {
                layer = match text(value("--layer")?, "--layer")?.as_str() {
                    "preload" => Layer::Preload,
                    "kernel" => Layer::Kernel,
                    other => {
                        return Err(format!(
                            "--layer: {other:?} is not a layer (preload or kernel)"
                        ));
                    }
                }
            }
            "--kernel-root" => {
                let v = text(value("--kernel-root")?, "--kernel-root")?;
                if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                    return Err(format!("--kernel-root: {v:?} is not a cgroup name"));
                }
                kernel_root = v;
            }
            "--kernel-detach" => detach = true,
            "--kernel-stats" => stats = true,
            "--kernel-stats-for" => {
                let v = text(value("--kernel-stats-for")?, "--kernel-stats-for")?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "--kernel-stats-for: {v:?} is not a number of seconds from 1 to 86400"
                        )
                    })?;
                stats = true;
                stats_for = Some(std::time::Duration::from_secs(secs));
            }
            "--status" => status = true,
            "--help" | "-h" => return Err(String::new()),
            "--" => break,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?} (put the command after --)"
                ));
            }
        }
    }
    let command: Vec<OsString> = it.collect();
    if detach || stats {
        return Ok(Args {
            id,
            policy: policy.unwrap_or_default(),
            state,
            servers,
            preload,
            console,
            status,
            dhcp_wait,
            layer: Layer::Kernel,
            kernel_root,
            detach,
            stats,
            stats_for,
            command,
        });
    }
    if !status && command.is_empty() {
        return Err("no command given after --".into());
    }
    if !status && id.is_none() {
        return Err("--id is required".into());
    }
    Ok(Args {
        id,
        policy: policy.ok_or("--policy is required")?,
        state,
        servers,
        preload,
        console,
        status,
        dhcp_wait,
        layer,
        kernel_root,
        detach,
        stats,
        stats_for,
        command,
    })
}

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

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(&format!("{e}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            say(&e);
            ExitCode::from(2)
        }
    }
}

/// `--kernel-stats`: the per-task cache's state and each program's run statistics; with a
/// window, only the runs during it.
fn kernel_stats(root: &str, window: Option<std::time::Duration>) -> Result<ExitCode, String> {
    let Some(layer) = kernel::Layer::find(root)? else {
        return Err(format!(
            "no kernel layer is attached at {}",
            kernel::cgroup2_mount()?.join(root).display()
        ));
    };
    let mut out = std::io::stdout().lock();
    let cache = match layer.task_cache_on() {
        Some(true) => "on",
        Some(false) => {
            "off (the kernel refused task storage in sock_addr programs, or IPVIRT_KERNEL_TASK_CACHE=off)"
        }
        None => "unknown (the kernel does not show the programs' .rodata)",
    };
    let _ = writeln!(
        out,
        "kernel layer {}: per-task cache {cache}",
        layer.root().display()
    );
    let mut counted = layer.run_stats()?;
    if let Some(w) = window {
        let _on = kernel::sys::enable_stats()
            .map_err(|e| format!("turning BPF statistics on (BPF_ENABLE_STATS): {e}"))?;
        let before = layer.run_stats()?;
        std::thread::sleep(w);
        counted = layer
            .run_stats()?
            .into_iter()
            .map(|(name, ns, runs)| {
                let (ns0, runs0) = before
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map_or((0, 0), |(_, a, b)| (*a, *b));
                (name, ns.saturating_sub(ns0), runs.saturating_sub(runs0))
            })
            .collect();
    }
    for (name, ns, runs) in counted {
        let avg = if runs == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", ns as f64 / runs as f64)
        };
        let _ = writeln!(
            out,
            "program {name} runs={runs} run_time_ns={ns} ns_per_run={avg}"
        );
    }
    let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|v| v.trim() == "1");
    if !enabled && window.is_none() {
        say(
            "runs are counted only while kernel.bpf_stats_enabled = 1 (sysctl -w \
             kernel.bpf_stats_enabled=1; counting costs a few tens of ns per run itself) or a \
             BPF_ENABLE_STATS descriptor is open",
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--kernel-detach`: detaches the kernel layer at the root and removes its cgroups.
fn detach(root: &str) -> Result<ExitCode, String> {
    let _lock = kernel::lock()?;
    match kernel::Layer::find(root)? {
        Some(layer) => {
            let dir = layer.root().to_path_buf();
            layer.detach()?;
            say(&format!("kernel layer detached from {}", dir.display()));
        }
        None => {
            // Nothing attached: remove an empty root left behind, if any.
            let dir = kernel::cgroup2_mount()?.join(root);
            if dir.exists() {
                std::fs::remove_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            say(&format!("no kernel layer is attached at {}", dir.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The kernel layer's set-up for one session: the layer attached, the session's cgroup made and
/// its entry written. Returns the layer and the `cgroup.procs` file the command joins.
fn kernel_session(
    args: &Args,
    policy: &Policy,
    host: Host,
    id: SessionId,
    vip: Option<Ipv4Addr>,
) -> Result<(kernel::Layer, PathBuf), String> {
    if let Some(why) = kernel::unavailable() {
        return Err(format!("--layer kernel: {why}"));
    }
    let engine = policy
        .clone()
        .compile(host)
        .map_err(|e| format!("{}: {e}", args.policy.display()))?;
    let tables = kernel::tables(policy, &engine)?;
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
        .map(ipvirt::Vip::new)
        .transpose()
        .map_err(|e| format!("leased VIP: {e}"))?;
    let entry = engine.session_entry(session, vip);
    let layer = kernel::Layer::attach(&args.kernel_root, &tables)?;
    let procs = layer.open_session(&entry)?;
    Ok((layer, procs))
}

fn run(args: Args) -> Result<ExitCode, String> {
    if args.detach {
        return detach(&args.kernel_root);
    }
    if args.stats {
        return kernel_stats(&args.kernel_root, args.stats_for);
    }
    let policy_path = std::fs::canonicalize(&args.policy)
        .map_err(|e| format!("{}: {e}", args.policy.display()))?;
    let text = std::fs::read_to_string(&policy_path)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let host = Host::new(args.servers.iter().copied());
    let dhcp_on = policy.virtual_ip.enabled && policy.virtual_ip.source == VipSource::Dhcp;
    let vip_on = policy.virtual_ip.enabled
        && policy.virtual_ip.source == VipSource::Static
        && policy.virtual_ip.adapter.is_some()
        && !policy.virtual_ip.pool.is_empty();
    let state_path = match &args.state {
        Some(p) => std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None if dhcp_on => default_state(&policy_path).with_extension("dhcp.json"),
        None => default_state(&policy_path),
    };
    #[cfg(not(feature = "dhcp"))]
    if dhcp_on {
        return Err(format!(
            "{}: virtual_ip.source is \"dhcp\" but this launcher was built without the dhcp feature (cargo build --features dhcp --example session)",
            policy_path.display()
        ));
    }
    let state = StateFile::new(state_path);
    let pool = || {
        StaticPool::from_policy(&policy.virtual_ip, &host)
            .map_err(|e| format!("{}: {e}", policy_path.display()))
    };
    let boot = procfs::boot_id();

    if args.status && args.layer == Layer::Kernel {
        let _lock = kernel::lock()?;
        match kernel::Layer::find(&args.kernel_root)? {
            Some(layer) => {
                layer.reclaim()?;
                let mut out = std::io::stdout().lock();
                for (dir, e, running) in layer.sessions()? {
                    let _ = writeln!(
                        out,
                        "kernel session {} cgroup={} loopback={} vip={} processes={}",
                        e.session,
                        dir.display(),
                        Ipv4Addr::from_bits(e.loopback),
                        Ipv4Addr::from_bits(e.vip),
                        if running { "yes" } else { "no" }
                    );
                }
            }
            None => say(&format!(
                "no kernel layer is attached at {}",
                kernel::cgroup2_mount()?.join(&args.kernel_root).display()
            )),
        }
        if !vip_on && !dhcp_on {
            return Ok(ExitCode::SUCCESS);
        }
    }
    #[cfg(feature = "dhcp")]
    if args.status && dhcp_on {
        let mut out = std::io::stdout().lock();
        for line in dhcp::status(state.path())? {
            let _ = writeln!(out, "{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.status {
        if !vip_on {
            return Err(format!(
                "{}: the policy leases no VIPs",
                policy_path.display()
            ));
        }
        let (leases, notes) = leases::status(&state, pool()?, &boot)?;
        notes.iter().for_each(|n| say(n));
        let mut out = std::io::stdout().lock();
        for (s, a, holders) in leases {
            let _ = writeln!(out, "session {s} {a} holders={holders}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let id = args.id.ok_or("--id is required")?;
    if id == SessionId::MAX && !args.console && policy.virtual_loopback.enabled {
        // SPEC §9: its loopback address is lo's broadcast address on Linux.
        return Err(format!(
            "session {id}: its loopback address 127.255.255.255 is the broadcast address of lo on \
             Linux, where TCP cannot use it; sessions up to {} have a usable loopback address",
            id.get() - 1
        ));
    }
    let preload = match (args.layer, &args.preload) {
        (Layer::Kernel, _) => PathBuf::new(),
        (Layer::Preload, Some(p)) => {
            std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        (Layer::Preload, None) => default_preload()?,
    };

    for sig in FORWARDED {
        // SAFETY: installs a handler that only touches atomics and calls the async-signal-safe
        // kill(2).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }

    let me = leases::Holder::me(id, &boot);
    let leasing = vip_on && !args.console;
    let vip = if leasing {
        let got = leases::acquire(&state, pool()?, &me, &boot)?;
        got.notes.iter().for_each(|n| say(n));
        got.vip
    } else {
        None
    };
    #[cfg(feature = "dhcp")]
    let (vip, dhcp_keeper) = if dhcp_on && !args.console {
        let mut client = dhcp::Client::open(&policy, state.path(), id)?;
        match client.lease(args.dhcp_wait) {
            Some(v) => {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = std::sync::Arc::clone(&stop);
                let thread = std::thread::spawn(move || client.keep_until(&flag));
                (Some(v), Some((stop, thread)))
            }
            None => {
                // Stop asking: the command runs without a VIP for its whole life.
                client.release();
                say(&format!(
                    "session {id}: no DHCP lease within {} s; virtual_ip.on_lease_failure = {} applies",
                    args.dhcp_wait.as_secs(),
                    policy.virtual_ip.on_lease_failure
                ));
                (None, None)
            }
        }
    } else {
        (vip, None)
    };
    match vip {
        Some(v) => say(&format!(
            "session {id}: virtual IP {v}{} (leases in {})",
            if dhcp_on { " leased from DHCP" } else { "" },
            state.path().display()
        )),
        None if leasing => say(&format!(
            "session {id}: no virtual IP left in the pool; virtual_ip.on_lease_failure = {} applies",
            policy.virtual_ip.on_lease_failure
        )),
        None => {}
    }

    let mut kernel_layer = None;
    let status = if PENDING.load(Ordering::SeqCst) != 0 {
        Err(format!(
            "stopped by signal {} before the command started",
            PENDING.load(Ordering::SeqCst)
        ))
    } else if args.layer == Layer::Kernel {
        // The lock is held until the command is in its cgroup: a concurrent clean-up cannot
        // remove the session between its entry being written and the command joining it.
        let started = kernel::lock().and_then(|lock| {
            let (layer, procs) = kernel_session(&args, &policy, host.clone(), id, vip)?;
            let child = start(&args, id, &policy_path, None, Some(&procs), vip, &me.token);
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
        start(
            &args,
            id,
            &policy_path,
            Some(&preload),
            None,
            vip,
            &me.token,
        )
        .and_then(|child| wait(child, &args))
    };
    if let Some(layer) = kernel_layer {
        // Removed now if the session's processes are all gone; otherwise by the next launch,
        // --status or --kernel-detach once they are.
        match kernel::lock().and_then(|_lock| layer.close_session(id)) {
            Ok(_) => {}
            Err(e) => say(&format!("could not end the kernel session now: {e}")),
        }
    }

    #[cfg(feature = "dhcp")]
    if let Some((stop, thread)) = dhcp_keeper {
        stop.store(true, Ordering::SeqCst);
        if thread.join().is_err() {
            say("the DHCP thread panicked; the lease ends when it expires");
        }
    }
    if vip.is_some() && leasing {
        match leases::release(&state, pool()?, &me, &boot) {
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

/// Starts the command: under the `LD_PRELOAD` layer (`preload`), or in the kernel layer's session
/// cgroup (`cgroup_procs`), which the child joins before it executes the command.
fn start(
    args: &Args,
    id: SessionId,
    policy: &Path,
    preload: Option<&Path>,
    cgroup_procs: Option<&Path>,
    vip: Option<Ipv4Addr>,
    token: &str,
) -> Result<std::process::Child, String> {
    let (program, rest) = args.command.split_first().ok_or("no command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("IPVIRT_SESSION", id.to_string())
        .env("IPVIRT_POLICY", policy)
        .env(
            "IPVIRT_SESSION_KIND",
            if args.console { "console" } else { "remote" },
        );
    match vip {
        Some(v) => {
            cmd.env("IPVIRT_VIP", v.to_string());
            cmd.env(procfs::TOKEN_VAR, token);
        }
        None => {
            cmd.env_remove("IPVIRT_VIP");
            cmd.env_remove(procfs::TOKEN_VAR);
        }
    }
    if !args.servers.is_empty() {
        let list: Vec<String> = args.servers.iter().map(ToString::to_string).collect();
        cmd.env("IPVIRT_SERVER_ADDRS", list.join(","));
    }
    if let Some(preload) = preload {
        let mut ld = preload.as_os_str().to_owned();
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|e| !e.is_empty()) {
            ld.push(":");
            ld.push(existing);
        }
        cmd.env("LD_PRELOAD", ld);
    }
    if let Some(procs) = cgroup_procs {
        let procs = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes())
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

fn wait(mut child: std::process::Child, args: &Args) -> Result<std::process::ExitStatus, String> {
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

fn default_state(policy: &Path) -> PathBuf {
    // FNV-1a of the policy's path: one lease file per policy.
    let hash = policy
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    std::env::temp_dir().join(format!("ipvirt-leases-{hash:016x}.json"))
}

fn default_preload() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .ok_or("cannot locate this program's directory")?;
    let lib = dir.join("libipvirt_preload.so");
    if lib.exists() {
        return Ok(lib);
    }
    // target/<profile>/examples/session: build the layer with the same profile.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsStr::new("cargo").to_owned());
    let mut c = Command::new(cargo);
    c.args(["build", "--quiet", "--example", "ipvirt_preload"]);
    if dir
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "release")
    {
        c.arg("--release");
    }
    if let Some(target) = dir.parent().and_then(Path::parent) {
        c.env("CARGO_TARGET_DIR", target);
    }
    let ok = c.status().map(|s| s.success()).unwrap_or(false);
    if ok && lib.exists() {
        Ok(lib)
    } else {
        Err(format!(
            "the LD_PRELOAD layer is missing at {} and could not be built (use --preload)",
            lib.display()
        ))
    }
}
