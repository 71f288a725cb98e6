//! Runs a command as a session: leases the session's VIP from the policy's pool, starts the command
//! under the `LD_PRELOAD` layer with the session's configuration, and releases the lease when the
//! command ends (also when it or the launcher is stopped by SIGINT, SIGTERM or SIGHUP).
//!
//! ```text
//! cargo run --example session -- --id 7 --policy examples/policies/linux-ld-preload.toml \
//!     -- python3 -m http.server --bind 127.0.0.1 8000
//! ```
//!
//! Options:
//!   --id ID             the session id (required)
//!   --policy FILE       the TOML policy (required)
//!   --pool-state FILE   the lease file shared by concurrent launches, locked while it is read and
//!                       written (default: ipvirt-leases-<hash of the policy path>.json in the
//!                       temporary directory)
//!   --server-addr IP    one of the server's addresses, never leased (repeatable)
//!   --preload FILE      the layer's library (default: libipvirt_preload.so beside this program,
//!                       built with `cargo build --example ipvirt_preload` if missing)
//!   --console           run as a console session (never virtualized)
//!
//! A VIP is leased only when the policy enables virtual IP with an adapter and a pool. When the pool
//! is exhausted the command still runs, without `IPVIRT_VIP`: the policy's `on_lease_failure` decides
//! what its sockets do. A SIGKILL of the launcher cannot be caught: the lease then stays in the file
//! until the same session is launched and ends again.

// Signal handlers and kill(2): the launcher forwards signals to its child.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use ipvirt::{Host, Policy, PoolSnapshot, SessionId, StaticPool};

const USAGE: &str = "usage: session --id ID --policy FILE [--pool-state FILE] [--server-addr IP]... \
[--preload FILE] [--console] -- COMMAND [ARGS...]";

struct Args {
    id: SessionId,
    policy: PathBuf,
    state: Option<PathBuf>,
    servers: Vec<IpAddr>,
    preload: Option<PathBuf>,
    console: bool,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut id = None;
    let mut policy = None;
    let mut state = None;
    let mut servers = Vec::new();
    let mut preload = None;
    let mut console = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--id" => {
                id = Some(
                    value("--id")?
                        .parse::<SessionId>()
                        .map_err(|e| format!("--id: {e}"))?,
                )
            }
            "--policy" => policy = Some(PathBuf::from(value("--policy")?)),
            "--pool-state" => state = Some(PathBuf::from(value("--pool-state")?)),
            "--server-addr" => {
                let v = value("--server-addr")?;
                servers.push(
                    v.parse()
                        .map_err(|_| format!("--server-addr: {v:?} is not an IP address"))?,
                );
            }
            "--preload" => preload = Some(PathBuf::from(value("--preload")?)),
            "--console" => console = true,
            "--help" | "-h" => return Err(String::new()),
            "--" => break,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (put the command after --)"
                ));
            }
        }
    }
    let command: Vec<String> = it.collect();
    if command.is_empty() {
        return Err("no command given after --".into());
    }
    Ok(Args {
        id: id.ok_or("--id is required")?,
        policy: policy.ok_or("--policy is required")?,
        state,
        servers,
        preload,
        console,
        command,
    })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our child's.
        unsafe { libc::kill(pid, signal) };
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("session: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("session: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let policy_path = std::fs::canonicalize(&args.policy)
        .map_err(|e| format!("{}: {e}", args.policy.display()))?;
    let text = std::fs::read_to_string(&policy_path)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let host = Host::new(args.servers.iter().copied());
    let preload = match &args.preload {
        Some(p) => p.clone(),
        None => default_preload()?,
    };
    let vip_on = policy.virtual_ip.enabled
        && policy.virtual_ip.adapter.is_some()
        && !policy.virtual_ip.pool.is_empty();
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| default_state(&policy_path));

    let vip = if vip_on && !args.console {
        let pool = StaticPool::from_policy(&policy.virtual_ip, &host)
            .map_err(|e| format!("{}: {e}", policy_path.display()))?;
        with_state(&state, pool, |p| Ok(p.lease(args.id).ok()))?
    } else {
        None
    };
    match vip {
        Some(v) => eprintln!(
            "session {}: virtual IP {v} (leases in {})",
            args.id,
            state.display()
        ),
        None if vip_on && !args.console => eprintln!(
            "session {}: no virtual IP left in the pool; virtual_ip.on_lease_failure = {} applies",
            args.id, policy.virtual_ip.on_lease_failure
        ),
        None => {}
    }

    let status = spawn(&args, &policy_path, &preload, vip);

    if vip.is_some() {
        let pool = StaticPool::from_policy(&policy.virtual_ip, &host).map_err(|e| e.to_string())?;
        with_state(&state, pool, |p| {
            p.release(args.id);
            Ok(())
        })?;
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

fn spawn(
    args: &Args,
    policy: &Path,
    preload: &Path,
    vip: Option<Ipv4Addr>,
) -> Result<std::process::ExitStatus, String> {
    let (program, rest) = args.command.split_first().ok_or("no command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("IPVIRT_SESSION", args.id.to_string())
        .env("IPVIRT_POLICY", policy)
        .env(
            "IPVIRT_SESSION_KIND",
            if args.console { "console" } else { "remote" },
        );
    match vip {
        Some(v) => cmd.env("IPVIRT_VIP", v.to_string()),
        None => cmd.env_remove("IPVIRT_VIP"),
    };
    if !args.servers.is_empty() {
        let list: Vec<String> = args.servers.iter().map(ToString::to_string).collect();
        cmd.env("IPVIRT_SERVER_ADDRS", list.join(","));
    }
    let ld = match std::env::var("LD_PRELOAD") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", preload.display()),
        _ => preload.display().to_string(),
    };
    cmd.env("LD_PRELOAD", ld);

    // Forward the usual termination signals to the command, then release the lease when it ends.
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls the async-signal-safe kill(2).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    loop {
        match child.wait() {
            Ok(status) => return Ok(status),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for {program:?}: {e}")),
        }
    }
}

/// Runs `f` on the pool restored from the lease file, under an exclusive lock, and writes it back.
fn with_state<T>(
    path: &Path,
    mut pool: StaticPool,
    f: impl FnOnce(&mut StaticPool) -> Result<T, String>,
) -> Result<T, String> {
    let mut file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("lease file {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock lease file {}: {e}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("lease file {}: {e}", path.display()))?;
    if !text.trim().is_empty() {
        let snap: PoolSnapshot = serde_json::from_str(&text)
            .map_err(|e| format!("lease file {} is corrupt: {e}", path.display()))?;
        pool.restore(&snap).map_err(|e| {
            format!(
                "lease file {} does not fit the policy's pool: {e}",
                path.display()
            )
        })?;
    }
    let out = f(&mut pool)?;
    let json = serde_json::to_string_pretty(&pool.snapshot()).map_err(|e| e.to_string())?;
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(json.as_bytes()))
        .map_err(|e| format!("lease file {}: {e}", path.display()))?;
    file.unlock()
        .map_err(|e| format!("lease file {}: {e}", path.display()))?;
    Ok(out)
}

fn default_state(policy: &Path) -> PathBuf {
    // FNV-1a of the policy's path: one lease file per policy.
    let hash = policy
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
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
