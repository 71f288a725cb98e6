//! Runs a Windows program as a session: leases the session's VIP from the policy's pool, starts the
//! program suspended, loads the hook DLL (`ipvirt_winhook.dll`) into it, calls the DLL's
//! `ipvirt_init`, lets the program run, waits for it and exits with its exit code.
//!
//! ```text
//! cargo build --target x86_64-pc-windows-gnu -p ipvirt-winhook -p ipvirt-winsession
//! winsession.exe --policy C:\ipvirt\policy.toml -- C:\Apps\crm.exe --port 9000
//! ```
//!
//! Options:
//!   --id ID             the session id to give the program instead of its Windows session (a
//!                       launcher and test facility: Wine runs every program in one session)
//!   --console           run as the console session (never virtualized)
//!   --policy FILE       a TOML policy (virtual loopback, the VIP pool; the registry keys of
//!                       SPEC §3 are read as well, and win)
//!   --lease-book FILE   the lease book shared by concurrent launches (default:
//!                       %LOCALAPPDATA%\ipvirt\leases.json)
//!   --server-addr IP    one of the server's addresses, never leased (repeatable)
//!   --hook FILE         the hook DLL (default: ipvirt_winhook.dll beside this program)
//!   --debug             the hook prints each rewrite and its reason
//!   --status            print the live leases (session, VIP, holders) and exit
//!
//! The program gets `IPVIRT_SESSION`, `IPVIRT_POLICY`, `IPVIRT_VIP`, `IPVIRT_SERVER_ADDRS`,
//! `IPVIRT_JOB` in its environment (see the hook's documentation), and the hook passes them on to
//! every process the program starts, which gets the hook too. If the hook cannot be loaded or
//! initialised — or the program is a 32-bit one, which the 64-bit DLL cannot be loaded into — the
//! program is terminated before it ran a single instruction of its own, and the launcher exits
//! with status 2 and the reason: a session never silently runs without its addresses.
//!
//! Leases go through the host's one lease book (`ipvirt_host::lease_book`). The session's holders
//! are the launcher and the session's job object (`job.rs`): the program is put in a named job
//! before it runs, its children and theirs are in it too, and the job holds the lease while any of
//! them runs — after the program ended (a server it started) and after the launcher was killed.
//! The launcher exits when the program ends. On other targets this program only says that it
//! needs Windows.

// Process creation, injection and process inspection are Win32 calls.
#![allow(unsafe_code)]

#[cfg(windows)]
mod job;
#[cfg(windows)]
mod start;

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    eprintln!("winsession: Windows only (build with --target x86_64-pc-windows-gnu)");
    std::process::ExitCode::from(2)
}

#[cfg(windows)]
fn main() {
    std::process::exit(windows::main());
}

#[cfg(windows)]
mod windows {
    use std::io::Write;
    use std::net::IpAddr;
    use std::path::{Path, PathBuf};

    use ipvirt::{Host, Policy, SessionId, StaticPool};
    use ipvirt_host::lease_book::{Holder, LeaseBook};
    use ipvirt_host::{policy_file, registry};
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::System::RemoteDesktop::{
        ProcessIdToSessionId, WTSGetActiveConsoleSessionId,
    };
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, INFINITE, WaitForSingleObject,
    };

    use crate::job::Job;
    use crate::start::Suspended;
    use ipvirt_winhook::inject::init_offset;

    const USAGE: &str = "usage: winsession [--id ID] [--console] [--policy FILE] [--lease-book FILE] \
[--server-addr IP]... [--hook FILE] [--debug] -- COMMAND [ARGS...]\n       winsession [--policy FILE] [--lease-book FILE] --status";

    #[derive(Default)]
    struct Args {
        id: Option<SessionId>,
        console: bool,
        policy: Option<PathBuf>,
        state: Option<PathBuf>,
        servers: Vec<IpAddr>,
        hook: Option<PathBuf>,
        debug: bool,
        status: bool,
        command: Vec<String>,
    }

    fn say(line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "winsession: {line}");
    }

    fn parse_args() -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = std::env::args_os().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .ok_or_else(|| format!("{name} needs a value"))?
                    .into_string()
                    .map_err(|v| format!("{name}: {v:?} is not valid text"))
            };
            match arg.to_str().unwrap_or("") {
                "--id" => {
                    let v = value("--id")?;
                    a.id = Some(v.parse().map_err(|e| format!("--id {v:?}: {e}"))?);
                }
                "--console" => a.console = true,
                "--policy" => a.policy = Some(value("--policy")?.into()),
                "--lease-book" => a.state = Some(value("--lease-book")?.into()),
                "--server-addr" => {
                    let v = value("--server-addr")?;
                    a.servers.push(
                        v.parse()
                            .map_err(|_| format!("--server-addr: {v:?} is not an IP address"))?,
                    );
                }
                "--hook" => a.hook = Some(value("--hook")?.into()),
                "--debug" => a.debug = true,
                "--status" => a.status = true,
                "--help" | "-h" => return Err(String::new()),
                "--" => break,
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?} (put the command after --)"
                    ));
                }
            }
        }
        a.command = it
            .map(|s| {
                s.into_string()
                    .map_err(|v| format!("the command's argument {v:?} is not valid text"))
            })
            .collect::<Result<_, _>>()?;
        if !a.status && a.command.is_empty() {
            return Err("no command given after --".into());
        }
        Ok(a)
    }

    /// The exit code of the launcher (the program's, or 2 for the launcher's own failures).
    pub(crate) fn main() -> i32 {
        match parse_args() {
            Err(e) if e.is_empty() => {
                let _ = writeln!(std::io::stdout(), "{USAGE}");
                0
            }
            Err(e) => {
                say(&format!("{e}\n{USAGE}"));
                2
            }
            Ok(args) => match run(&args) {
                Ok(code) => code as i32,
                Err(e) => {
                    say(&e);
                    2
                }
            },
        }
    }

    /// This process's Windows session.
    fn own_session() -> Result<SessionId, String> {
        let mut id = 0u32;
        // SAFETY: id is a valid out pointer.
        if unsafe { ProcessIdToSessionId(std::process::id(), &mut id) } == 0 {
            return Err("ProcessIdToSessionId failed".into());
        }
        Ok(SessionId::new(id))
    }

    /// The lease book in this user's local application data (`%LOCALAPPDATA%\ipvirt\`).
    fn default_book() -> Result<PathBuf, String> {
        let base = std::env::var_os("LOCALAPPDATA")
            .filter(|v| !v.is_empty())
            .ok_or("LOCALAPPDATA is not set: give --lease-book FILE")?;
        let dir = PathBuf::from(base).join("ipvirt");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir.join("leases.json"))
    }

    fn run(args: &Args) -> Result<u32, String> {
        let policy_path = match &args.policy {
            Some(p) => Some(std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => None,
        };
        let mut policy = match &policy_path {
            Some(p) => policy_file::load(p).map_err(|e| e.to_string())?.policy,
            None => Policy::default(),
        };
        for note in registry::apply(&mut policy)? {
            say(&format!("registry: {note}"));
        }
        let host = Host::new(args.servers.iter().copied());
        let vip_on = policy.virtual_ip.enabled
            && policy.virtual_ip.adapter.is_some()
            && !policy.virtual_ip.pool.is_empty();
        let book = LeaseBook::new(match &args.state {
            Some(p) => std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => default_book()?,
        });
        let pool = || {
            StaticPool::from_policy(&policy.virtual_ip, &host)
                .map_err(|e| format!("the policy's pool: {e}"))
        };

        if args.status {
            if !vip_on {
                return Err("the policy leases no VIPs".into());
            }
            let (live, notes) = book.status(Some(pool()?)).map_err(|e| e.to_string())?;
            notes.iter().for_each(|n| say(n));
            let mut out = std::io::stdout().lock();
            for l in live {
                let _ = writeln!(
                    out,
                    "session {} {} holders={}",
                    l.session, l.addr, l.holders
                );
            }
            return Ok(0);
        }

        let hook = match &args.hook {
            Some(p) => std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("ipvirt_winhook.dll"),
        };
        if !hook.is_file() {
            return Err(format!(
                "the hook DLL {} does not exist (use --hook)",
                hook.display()
            ));
        }
        let id = match args.id {
            Some(id) => id,
            None => own_session()?,
        };
        // SAFETY: no preconditions.
        let console = args.console || id.get() == unsafe { WTSGetActiveConsoleSessionId() };

        // The program's configuration: environment variables it inherits (set while this
        // launcher is still single-threaded).
        let set = |k: &str, v: Option<String>| match v {
            // SAFETY: the launcher runs no other thread that reads the environment.
            Some(v) => unsafe { std::env::set_var(k, v) },
            // SAFETY: as above.
            None => unsafe { std::env::remove_var(k) },
        };
        set("IPVIRT_SESSION", args.id.map(|i| i.to_string()));
        set(
            "IPVIRT_SESSION_KIND",
            args.console.then(|| "console".into()),
        );
        set(
            "IPVIRT_POLICY",
            policy_path.as_ref().map(|p| p.display().to_string()),
        );
        set("IPVIRT_DEBUG", args.debug.then(|| "1".into()));
        set(
            "IPVIRT_SERVER_ADDRS",
            (!args.servers.is_empty()).then(|| {
                args.servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );

        let me = Holder::this_process().ok_or("cannot read this launcher's own process times")?;
        let leasing = vip_on && !console;
        // The session's processes, for the lease: the program and every process it starts are in
        // this job, which holds the lease while any of them runs (see job.rs).
        let job = if leasing { Some(Job::create()?) } else { None };
        set("IPVIRT_JOB", job.as_ref().map(|j| j.name().to_owned()));
        let vip = if leasing {
            let got = book
                .acquire(pool()?, id, std::slice::from_ref(&me))
                .map_err(|e| e.to_string())?;
            got.notes.iter().for_each(|n| say(n));
            match got.vip {
                Some(v) => say(&format!(
                    "session {id}: virtual IP {v} (leases in {})",
                    book.path().display()
                )),
                None => say(&format!(
                    "session {id}: no virtual IP left in the pool; virtual_ip.on_lease_failure = {} applies",
                    policy.virtual_ip.on_lease_failure
                )),
            }
            got.vip
        } else {
            None
        };
        set("IPVIRT_VIP", vip.map(|v| v.to_string()));

        let lease = match (vip, &job) {
            (Some(_), Some(job)) => Some((&book, &pool as &PoolFn<'_>, id, job)),
            _ => None,
        };
        let result = start_and_wait(args, &hook, job.as_ref(), lease);
        if vip.is_some() {
            // The launcher's own hold ends; the job's lives on while a process of the session
            // runs (checked now, and by every later transaction of the book).
            match book.release(pool()?, id, std::slice::from_ref(&me)) {
                Ok(notes) => notes.iter().for_each(|n| say(n)),
                Err(e) => say(&format!("could not release the lease now: {e}")),
            }
        }
        result
    }

    type PoolFn<'a> = dyn Fn() -> Result<StaticPool, String> + 'a;

    /// Starts the program with the hook (in `job`, when given), records the job as a holder of
    /// the lease, lets the program run and waits for it; its exit code.
    fn start_and_wait(
        args: &Args,
        hook: &Path,
        job: Option<&Job>,
        lease: Option<(&LeaseBook, &PoolFn<'_>, SessionId, &Job)>,
    ) -> Result<u32, String> {
        let mut child = Suspended::start(&args.command)?;
        let target = child.target();
        if target.is_32bit()? {
            return Err(format!(
                "{} is a 32-bit program: the hook DLL is 64-bit and cannot be loaded into it; \
                 the program was not run",
                args.command.first().map(String::as_str).unwrap_or("")
            ));
        }
        if let Some(job) = job {
            job.assign(child.process)?;
        }
        match target.inject(hook, init_offset(hook)?)? {
            0 => {}
            3 => {
                return Err(
                    "the program has the hook already: this launcher runs inside a session, \
                     whose processes all stay in it (the program was not run)"
                        .into(),
                );
            }
            code => {
                return Err(format!(
                    "the hook's ipvirt_init failed (code {code}: 1 configuration, 2 detours; its \
                     message is above); the program was not run"
                ));
            }
        }
        if let Some((book, pool, id, job)) = lease {
            let h = Holder::Job(job.name().to_owned());
            for n in book
                .hold(Some(pool()?), id, std::slice::from_ref(&h))
                .map_err(|e| e.to_string())?
            {
                say(&n);
            }
        }
        child.resume()?;
        // SAFETY: the process handle is ours.
        if unsafe { WaitForSingleObject(child.process, INFINITE) } != WAIT_OBJECT_0 {
            return Err(format!(
                "waiting for the program: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut code = 0u32;
        // SAFETY: as above.
        if unsafe { GetExitCodeProcess(child.process, &mut code) } == 0 {
            return Err(format!(
                "the program's exit code: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(code)
    }
}
