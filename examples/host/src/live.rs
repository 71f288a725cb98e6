//! The live socket table of this machine (feature `live`, Linux only): what `ss -tulpn` shows, read
//! by ipvirt itself, with each process named by its **executable**.
//!
//! [`sample`] reads `/proc/net/tcp`, `tcp6`, `udp` and `udp6` for the sockets, and `/proc/PID/fd`
//! of every process for the socket inodes each holds (through the `procfs` crate). A socket's
//! process is named by the file name of `/proc/PID/exe` ([`NameSource::Executable`]), the identity
//! the layers match, and its full path is kept ([`SocketRecord::exe`]); only when the executable
//! cannot be read (a kernel thread) is the command name used ([`NameSource::Comm`]), and the
//! advisor then says it is unverified. A socket no readable process holds (another user's, when
//! not root) has no process, as in `ss` without root.
//!
//! The sockets are those of the reader's network namespace. Two samples with the program
//! restarted in between tell a hard-coded port from an ephemeral one; the same pid in both is
//! [`FindingKind::NoEvidenceYet`](ipvirt::advisor::FindingKind::NoEvidenceYet).
//!
//! It lives here, not in the core: the core reads socket tables as text and never touches
//! `/proc`; this module is the I/O that feeds it ([`Snapshot::live`]), for `ipvirt advise --live`
//! and any other tool.

use std::collections::HashMap;
use std::net::SocketAddr;

use procfs::net::{TcpState, UdpState};
use procfs::process::FDTarget;

use ipvirt::advisor::{AdvisorError, NameSource, Protocol, Snapshot, SocketRecord};

/// Who holds a socket.
#[derive(Debug, Clone)]
struct Owner {
    pid: u32,
    exe: Option<String>,
    comm: Option<String>,
}

fn proc_error(what: &str, e: &procfs::ProcError) -> AdvisorError {
    AdvisorError::Proc {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// The socket inodes of every process this one may read, to their lowest pid.
fn owners() -> Result<HashMap<u64, Owner>, AdvisorError> {
    let mut owners: HashMap<u64, Owner> = HashMap::new();
    let all = procfs::process::all_processes().map_err(|e| proc_error("/proc", &e))?;
    for process in all {
        // A process that exits while being read, or one of another user: skipped, as ss does.
        let Ok(process) = process else { continue };
        let Ok(fds) = process.fd() else { continue };
        let inodes: Vec<u64> = fds
            .flatten()
            .filter_map(|fd| match fd.target {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect();
        if inodes.is_empty() {
            continue;
        }
        let Ok(pid) = u32::try_from(process.pid()) else {
            continue;
        };
        let owner = Owner {
            pid,
            exe: process.exe().ok().map(|p| p.to_string_lossy().into_owned()),
            comm: process.stat().ok().map(|s| s.comm),
        };
        for inode in inodes {
            owners
                .entry(inode)
                .and_modify(|o| {
                    if pid < o.pid {
                        *o = owner.clone();
                    }
                })
                .or_insert_with(|| owner.clone());
        }
    }
    Ok(owners)
}

/// The name the layers match: the executable's file name (a path `/proc` marks as deleted, after
/// the program file was replaced, keeps its name without the mark).
fn exe_name(path: &str) -> Option<String> {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

fn tcp_state(s: &TcpState) -> &'static str {
    match s {
        TcpState::Established => "ESTAB",
        TcpState::SynSent => "SYN-SENT",
        TcpState::SynRecv | TcpState::NewSynRecv => "SYN-RECV",
        TcpState::FinWait1 => "FIN-WAIT-1",
        TcpState::FinWait2 => "FIN-WAIT-2",
        TcpState::TimeWait => "TIME-WAIT",
        TcpState::Close => "CLOSED",
        TcpState::CloseWait => "CLOSE-WAIT",
        TcpState::LastAck => "LAST-ACK",
        TcpState::Listen => "LISTEN",
        TcpState::Closing => "CLOSING",
    }
}

/// A table that does not exist (IPv6 disabled) is empty; another error is an error.
fn table<T>(what: &str, read: procfs::ProcResult<Vec<T>>) -> Result<Vec<T>, AdvisorError> {
    match read {
        Ok(v) => Ok(v),
        Err(procfs::ProcError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(proc_error(what, &e)),
    }
}

/// Reads this machine's TCP and UDP sockets (IPv4 and IPv6) and the processes holding them: a
/// [`Snapshot`] of [`Format::Live`](ipvirt::advisor::Format::Live), which [`advise`](ipvirt::advisor::advise) analyses like a text one.
///
/// # Errors
///
/// [`AdvisorError::Proc`] naming the file when `/proc` or one of the socket tables cannot be read.
///
/// # Examples
///
/// ```no_run
/// use ipvirt::advisor::{AdviceOptions, advise};
/// use ipvirt_host::live;
///
/// let first = live::sample()?;
/// // ... restart the application ...
/// let second = live::sample()?;
/// println!("{}", advise(&first, Some(&second), &AdviceOptions::default()));
/// # Ok::<(), ipvirt::AdvisorError>(())
/// ```
pub fn sample() -> Result<Snapshot, AdvisorError> {
    // The tables first, then their owners: a socket opened in between has no owner yet and is not
    // in the tables; one closed in between keeps the owner it had.
    let mut sockets: Vec<(Protocol, SocketAddr, SocketAddr, &'static str, u64)> = Vec::new();
    for entries in [
        table("/proc/net/tcp", procfs::net::tcp())?,
        table("/proc/net/tcp6", procfs::net::tcp6())?,
    ] {
        for e in entries {
            sockets.push((
                Protocol::Tcp,
                e.local_address,
                e.remote_address,
                tcp_state(&e.state),
                e.inode,
            ));
        }
    }
    for entries in [
        table("/proc/net/udp", procfs::net::udp())?,
        table("/proc/net/udp6", procfs::net::udp6())?,
    ] {
        for e in entries {
            let state = match e.state {
                UdpState::Established => "ESTAB",
                UdpState::Close => "UNCONN",
            };
            sockets.push((
                Protocol::Udp,
                e.local_address,
                e.remote_address,
                state,
                e.inode,
            ));
        }
    }
    let owners = owners()?;
    let records = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (protocol, local, remote, state, inode))| {
            let mut r = SocketRecord::new(protocol, local, i + 1);
            r.remote = (!(remote.ip().is_unspecified() && remote.port() == 0)).then_some(remote);
            r.state = Some(state.to_string());
            if let Some(o) = owners.get(&inode).filter(|_| inode != 0) {
                r.pid = Some(o.pid);
                r.exe.clone_from(&o.exe);
                match o.exe.as_deref().and_then(exe_name) {
                    Some(name) => {
                        r.process = Some(name);
                        r.name_source = NameSource::Executable;
                    }
                    None => {
                        r.process.clone_from(&o.comm);
                        r.name_source = NameSource::Comm;
                    }
                }
            }
            r
        })
        .collect();
    Ok(Snapshot::live(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_name_is_the_file_name() {
        assert_eq!(
            exe_name("/usr/bin/nc.openbsd").as_deref(),
            Some("nc.openbsd")
        );
        assert_eq!(exe_name("/opt/a b/x (deleted)").as_deref(), Some("x"));
        assert_eq!(exe_name("/"), None);
    }

    /// This test's own listening socket is found, named by this test binary's executable.
    #[test]
    fn a_sample_finds_this_process_by_its_executable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snap = sample().unwrap();
        let me = snap
            .records
            .iter()
            .find(|r| r.local.port() == port && r.protocol == Protocol::Tcp)
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(me.pid, Some(std::process::id()));
        assert_eq!(me.state.as_deref(), Some("LISTEN"));
        assert_eq!(me.name_source, NameSource::Executable);
        assert_eq!(
            me.process.as_deref(),
            exe.file_name().and_then(|n| n.to_str())
        );
        assert_eq!(me.exe.as_deref(), exe.to_str());
    }
}
