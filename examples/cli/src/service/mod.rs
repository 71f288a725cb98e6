//! `ipvirt daemon`: the one owner of a host's sessions (SPEC §11).
//!
//! Citrix and Microsoft virtualize every session of a server from a policy; Microsoft's RD IP
//! Virtualization service owns the leases of all sessions. On a Linux server this service does:
//!
//! - it reads the policy (`/etc/ipvirt/policy.toml`), attaches the kernel layer once (or, with
//!   `sessions.layer = "preload"`, hands each login the `LD_PRELOAD` library), and owns every
//!   lease on the host through the one lease book (`/var/lib/ipvirt/leases.json`): the static
//!   pool and **one** DHCP client for all sessions;
//! - the PAM module asks it, at `pam_open_session`, to make the login's process a session
//!   ([`sessions`]): a number (the lowest free one, or the user's own with `identity = "user"`),
//!   a cgroup (logind's scope registered under systemd, `<cgroup2>/ipvirt/session-N` otherwise),
//!   the kernel layer's entry, a VIP; console logins are left alone;
//! - a session ends when its cgroup is empty (inotify on `cgroup.events`: nothing polls), and its
//!   lease and entry go with it; addresses it added to an interface are the only ones it removes;
//! - its state is in `/var/lib/ipvirt/` (mode 0700, root's; atomic files), so a restarted service
//!   finds its sessions, entries and leases again and renews the DHCP leases it held; SIGTERM
//!   stops it without ending any session;
//! - its control socket (`/run/ipvirt/control.sock`, [`server`]) decides by the peer's
//!   credentials: root may open, close and list sessions and reload; a user may list its own;
//! - SIGHUP (`ipvirt reload`) re-reads the policy: the rules apply at once to new and running
//!   sessions; running sessions keep their numbers and addresses until they end;
//! - every refusal the kernel layer makes for a session is logged once with the session, its user
//!   and the program ([`refusals`]);
//! - it logs to stderr (the journal, under systemd) and syslog.

mod cgroups;
mod dhcp;
mod log;
mod refusals;
mod server;
mod sessions;
mod state;

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use crate::args::DaemonArgs;
use crate::{Outcome, paths};

use self::log::Log;
use self::sessions::{Config, Service};

pub(crate) use sessions::name_of;

/// Makes the state directory root's and private (0700), or checks that it is.
fn private_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: the service's state directory must be a directory of root's that no one else can read or write (mode 0700); it is {}owned by uid {} with mode {:o}",
            dir.display(),
            if meta.is_dir() {
                ""
            } else {
                "not a directory, "
            },
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Blocks the signals the main thread waits for, in every thread started from now on.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the calling thread.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals.
fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    loop {
        // SAFETY: set is initialised; sig is a valid out pointer.
        #[allow(unsafe_code)]
        let r = unsafe { libc::sigwait(set, &mut sig) };
        if r == 0 {
            return sig;
        }
    }
}

/// Starts the thread that logs the kernel layer's refusals, once the layer is attached.
pub(super) fn start_refusals(service: &Arc<Mutex<Service>>, log: &Arc<Log>) {
    let Some(ring) = service.lock().ok().and_then(|mut s| s.take_refusals()) else {
        return;
    };
    let (service, log) = (Arc::clone(service), Arc::clone(log));
    let spawned = std::thread::Builder::new()
        .name("ipvirt-refusals".into())
        .spawn({
            let log = Arc::clone(&log);
            move || refusals::serve(ring, service, log)
        });
    if let Err(e) = spawned {
        log.error(&format!("starting the refusal log's thread: {e}"));
    }
}

/// Tells systemd the service is ready (`Type=notify`), when it runs under systemd.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", Path::new(&path))
    };
    let _ = sent;
}

pub(crate) fn daemon(args: DaemonArgs) -> Outcome {
    if !paths::is_root() {
        return Err("the ipvirt service runs as root (it attaches the kernel layer, moves logins into cgroups and configures addresses)".into());
    }
    let signals = block_signals();
    let log = Arc::new(Log::new(args.log));
    private_dir(&args.state_dir)?;
    let config = Config {
        policy_path: std::path::absolute(&args.policy)
            .map_err(|e| format!("{}: {e}", args.policy.display()))?,
        state_dir: args.state_dir.clone(),
        kernel_root: args.kernel_root.clone(),
        preload: args.preload.clone(),
        dhcp_wait: args.dhcp_wait,
        servers: args.servers.clone(),
        socket: std::path::absolute(&args.socket)
            .map_err(|e| format!("{}: {e}", args.socket.display()))?,
    };
    let service = Service::start(config, Arc::clone(&log))?;
    let watcher = service.watcher.clone();
    let service = Arc::new(Mutex::new(service));
    let listener = server::listen(&args.socket)?;
    {
        let (service, log) = (Arc::clone(&service), Arc::clone(&log));
        std::thread::Builder::new()
            .name("ipvirt-server".into())
            .spawn(move || server::serve(listener, service, log))
            .map_err(|e| format!("starting the control socket's thread: {e}"))?;
    }
    {
        let (service, log) = (Arc::clone(&service), Arc::clone(&log));
        std::thread::Builder::new()
            .name("ipvirt-watch".into())
            .spawn(move || {
                loop {
                    match watcher.next() {
                        Ok(dirs) => {
                            if let Ok(mut s) = service.lock() {
                                for d in dirs {
                                    s.reap(&d);
                                }
                            }
                        }
                        Err(e) => {
                            log.error(&e);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("starting the cgroup watcher: {e}"))?;
    }
    start_refusals(&service, &log);
    log.info(&format!(
        "listening on {}; policy {}; state in {}",
        args.socket.display(),
        args.policy.display(),
        args.state_dir.display()
    ));
    notify_ready();
    loop {
        match wait_signal(&signals) {
            libc::SIGHUP => {
                if let Ok(mut s) = service.lock() {
                    let _ = s.reload();
                }
                // A reload may have attached the kernel layer for the first time.
                start_refusals(&service, &log);
            }
            _ => {
                if let Ok(mut s) = service.lock() {
                    s.stop();
                }
                let _ = std::fs::remove_file(&args.socket);
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
