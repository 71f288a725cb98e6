// getsockopt(SO_PEERCRED), geteuid: FFI.
#![allow(unsafe_code)]

//! The control socket: who is asking (the kernel's `SO_PEERCRED`, never the request), bounded
//! reads, one worker thread per connection up to a limit, so a slow, hostile or huge client never
//! stalls the service or harms it.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvirt_host::control::{self, LineError, MAX_REQUEST, Request, Response};

use super::log::Log;
use super::sessions::{Open, Peer, Service};

/// How long a client has to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long the service waits for a client to take its answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Connections handled at once; more are answered "busy" at once and closed.
const MAX_WORKERS: usize = 256;
/// Connections of one user other than root handled at once: a user who floods the socket with
/// silent connections holds a few workers for a few seconds, never root's logins.
const MAX_PER_USER: usize = 8;

/// Makes the socket's directory (root's, 0755: users may connect, only root may create), removes
/// a stale socket, binds, and opens the socket to every user (what each may do is the service's
/// decision, from the peer's credentials).
pub(crate) fn listen(path: &Path) -> Result<UnixListener, String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no directory", path.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: the control socket's directory must be a directory owned by uid {me} that no one else can write (it is {}, owner {}, mode {:o})",
            dir.display(),
            if meta.is_dir() {
                "a directory"
            } else {
                "not a directory"
            },
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket left by a previous run: nobody answers on it.
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{}: another ipvirt service already listens here",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a socket; not removing it",
                path.display()
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(listener)
}

/// The peer's pid and uid, as the kernel recorded them when it connected.
fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for the call.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: u32::try_from(cred.pid).unwrap_or(0),
        uid: cred.uid,
    })
}

/// Accepts connections until the listener fails; each is handled on a worker thread.
pub(crate) fn serve(listener: UnixListener, service: Arc<Mutex<Service>>, log: Arc<Log>) {
    let busy = Arc::new(AtomicUsize::new(0));
    let per_user: Arc<Mutex<HashMap<u32, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log.error(&format!("the control socket failed: {e}"));
                // Keep serving: a transient error (EMFILE) must not end the service.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let uid = peer_of(&stream).map_or(u32::MAX, |p| p.uid);
        let over_user = uid != 0
            && per_user.lock().is_ok_and(|mut m| {
                let n = m.entry(uid).or_insert(0);
                *n += 1;
                *n > MAX_PER_USER
            });
        let over_all = busy.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS;
        let release = {
            let (busy, per_user) = (Arc::clone(&busy), Arc::clone(&per_user));
            move || {
                busy.fetch_sub(1, Ordering::SeqCst);
                if uid != 0
                    && let Ok(mut m) = per_user.lock()
                    && let Some(n) = m.get_mut(&uid)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(&uid);
                    }
                }
            }
        };
        if over_user || over_all {
            release();
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = control::write_response(
                &mut stream,
                &Response::Refused {
                    error: if over_user {
                        format!("busy: uid {uid} has {MAX_PER_USER} requests in progress")
                    } else {
                        format!("busy: {MAX_WORKERS} requests are being handled; try again")
                    },
                },
            );
            continue;
        }
        let (worker_service, worker_log) = (Arc::clone(&service), Arc::clone(&log));
        let spawned = std::thread::Builder::new()
            .name("ipvirt-control".into())
            .spawn(move || {
                handle(stream, &worker_service, &worker_log);
                // A reload may have attached the kernel layer for the first time.
                super::start_refusals(&worker_service, &worker_log);
                release();
            });
        if let Err(e) = spawned {
            log.error(&format!("a control connection: no thread for it: {e}"));
        }
    }
}

fn handle(mut stream: UnixStream, service: &Mutex<Service>, log: &Log) {
    let _ = stream.set_write_timeout(Some(WRITE_DEADLINE));
    let answer = match answer(&mut stream, service) {
        Ok(r) => r,
        Err(r) => *r,
    };
    if let Response::Refused { error } = &answer {
        log.warn(&format!("control: refused: {error}"));
    }
    let _ = control::write_response(&mut stream, &answer);
}

fn answer(stream: &mut UnixStream, service: &Mutex<Service>) -> Result<Response, Box<Response>> {
    let refuse = |error: String| Box::new(Response::Refused { error });
    let peer = peer_of(stream).map_err(|e| refuse(format!("no peer credentials: {e}")))?;
    let line = control::read_line(stream, MAX_REQUEST, Instant::now() + READ_DEADLINE).map_err(
        |e| match e {
            LineError::Io(e) => refuse(format!("reading the request: {e}")),
            other => refuse(format!("a request from uid {} {other}", peer.uid)),
        },
    )?;
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| refuse(format!("uid {}: not a request: {e}", peer.uid)))?;
    let first = {
        let mut s = service.lock().map_err(|_| Response::Failed {
            error: "the service's state is poisoned".into(),
        })?;
        s.handle(peer, request)
    };
    match first {
        Open::Done(r) => Ok(r),
        Open::Lease(opening) => {
            // The DHCP lease is awaited without the lock: other logins proceed meanwhile.
            let lease = opening
                .dhcp
                .as_ref()
                .and_then(|(d, id, holders, deadline)| d.lease(*id, holders.clone(), *deadline));
            let mut s = service.lock().map_err(|_| {
                Box::new(Response::Failed {
                    error: "the service's state is poisoned".into(),
                })
            })?;
            Ok(s.finish_open(*opening, lease))
        }
    }
}
