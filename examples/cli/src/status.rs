//! `ipvirt status`: the live sessions of the kernel layer and the live leases of the lease book
//! (static leases, DHCP claims with their expiry). Whatever is gone is reclaimed first.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use ipvirt::dhcp::DhcpSnapshot;
use ipvirt::{Host, Policy, StaticPool, VipSource};
use ipvirt_host::StateFile;
use ipvirt_host::control::{self, ControlError, Request, Response, SessionInfo};
use ipvirt_host::lease_book::LeaseBook;
use ipvirt_host::policy_file;

use crate::args::{ReloadArgs, StatusArgs};
use crate::{Outcome, paths, say};

pub(crate) fn status(args: StatusArgs) -> Outcome {
    let mut out = io::stdout().lock();
    // The service's sessions, when it runs: it owns the host's leases and kernel sessions.
    match control::call(&args.socket, &Request::List {}, Duration::from_secs(10)) {
        Ok(Response::Sessions { sessions }) => {
            for s in sessions {
                write_session(&mut out, &s)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(other) => return Err(format!("the ipvirt service answered: {}", words(&other)).into()),
        Err(ControlError::NotRunning { .. }) => {}
        Err(e) => return Err(e.to_string().into()),
    }
    #[cfg(target_os = "linux")]
    kernel_sessions(&mut out, &args.kernel_root)?;
    let policy = args
        .policy
        .as_deref()
        .map(|p| policy_file::load(p).map(|l| l.policy))
        .transpose()
        .map_err(|e| e.to_string())?;
    let book = LeaseBook::new(paths::lease_book(args.lease_book.as_deref())?);
    let pool = match &policy {
        Some(p) if uses_pool(p) => Some(
            StaticPool::from_policy(&p.virtual_ip, &Host::new(args.servers.iter().copied()))
                .map_err(|e| format!("{}: {e}", book.path().display()))?,
        ),
        _ => None,
    };
    let (leases, notes) = book.status(pool).map_err(|e| e.to_string())?;
    notes.iter().for_each(|n| say(n));
    for l in &leases {
        write!(
            out,
            "session {} {} holders={}",
            l.session, l.addr, l.holders
        )?;
        if l.source != "static" {
            write!(out, " source={}", l.source)?;
        }
        writeln!(out)?;
    }
    dhcp_leases(&mut out, &dhcp_state(book.path()))?;
    Ok(ExitCode::SUCCESS)
}

/// One session of the service, on one line.
fn write_session(out: &mut impl Write, s: &SessionInfo) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    writeln!(
        out,
        "session {} user={} service={} tty={} loopback={} vip={} lease_expires_in={} processes={} logins={} cgroup={}",
        s.number,
        s.user,
        s.service.as_deref().unwrap_or("-"),
        s.tty.as_deref().unwrap_or("-"),
        s.loopback,
        s.vip.map_or_else(|| "-".to_owned(), |v| v.to_string()),
        s.lease_expiry
            .map_or_else(|| "-".to_owned(), |e| format!("{}s", e.saturating_sub(now))),
        s.processes,
        s.logins,
        s.cgroups.join(",")
    )
}

/// A response in words, for an error message.
pub(crate) fn words(r: &Response) -> String {
    match r {
        Response::Refused { error } => format!("refused: {error}"),
        Response::Failed { error } => format!("failed: {error}"),
        other => format!("{other:?}"),
    }
}

/// `ipvirt reload`: asks the running service to re-read its policy.
pub(crate) fn reload(args: ReloadArgs) -> Outcome {
    match control::call(&args.socket, &Request::Reload {}, Duration::from_secs(30)) {
        Ok(Response::Reloaded { notes }) => {
            let mut out = io::stdout().lock();
            for n in notes {
                writeln!(out, "{n}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(other) => Err(format!("the ipvirt service answered: {}", words(&other)).into()),
        Err(e) => Err(e.to_string().into()),
    }
}

/// Whether `policy` leases VIPs from its static pool.
pub(crate) fn uses_pool(policy: &Policy) -> bool {
    let v = &policy.virtual_ip;
    v.enabled && v.source == VipSource::Static && v.adapter.is_some() && !v.pool.is_empty()
}

/// The DHCP client's own state (its leases' timers), beside the lease book.
pub(crate) fn dhcp_state(book: &Path) -> std::path::PathBuf {
    book.with_extension("dhcp.json")
}

/// The DHCP leases in the client's state file, with their expiry.
fn dhcp_leases(out: &mut impl Write, state: &Path) -> Outcome {
    if !state.exists() {
        return Ok(ExitCode::SUCCESS);
    }
    let snap: Option<DhcpSnapshot> = StateFile::new(state).read().map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for (id, l) in snap.iter().flat_map(|s| s.leases.iter()) {
        writeln!(
            out,
            "dhcp session {id} {} server={} expires_in={}s",
            l.addr,
            l.server,
            l.expiry.saturating_sub(now).as_secs()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The kernel layer's live sessions, when it is attached (and this user may look).
#[cfg(target_os = "linux")]
fn kernel_sessions(out: &mut impl Write, root: &str) -> Result<(), crate::Fail> {
    if ipvirt_kernel::unavailable().is_some() {
        return Ok(());
    }
    let _lock = ipvirt_kernel::lock()?;
    let Some(layer) = ipvirt_kernel::Layer::find(root)? else {
        return Ok(());
    };
    layer.reclaim()?;
    for (dir, e, running) in layer.sessions()? {
        writeln!(
            out,
            "kernel session {} cgroup={} loopback={} vip={} processes={}",
            e.session,
            dir.display(),
            Ipv4Addr::from_bits(e.loopback),
            Ipv4Addr::from_bits(e.vip),
            if running { "yes" } else { "no" }
        )?;
    }
    Ok(())
}
