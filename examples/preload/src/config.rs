//! The configuration, read once when the library is loaded, and the state built from it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use ipvirt::{Host, Policy, Rewriter, Session, SessionId, Vip};
use ipvirt_host::policy_file::{self, PolicyFileError};

use crate::diag::{interface_addresses, remember_stderr, say};
use crate::sys::{errno, set_errno};

pub(crate) struct State {
    pub(crate) rw: Rewriter,
    pub(crate) debug: bool,
}

pub(crate) const UNINIT: u8 = 0;
pub(crate) const INITIALIZING: u8 = 1;
pub(crate) const DONE: u8 = 2;

pub(crate) static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
pub(crate) static STATE: AtomicPtr<State> = AtomicPtr::new(ptr::null_mut());

/// Runs when the library is loaded, before the program's `main`.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static INIT: extern "C" fn() = init_at_load;

extern "C" fn init_at_load() {
    remember_stderr();
    let _ = state();
}

/// The layer's state, or `None` while it is being built (calls made meanwhile pass through) or when
/// the configuration is missing or bad.
#[inline]
pub(crate) fn state() -> Option<&'static State> {
    let p = STATE.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: a non-null STATE points at a leaked, never-freed, immutable State.
        return Some(unsafe { &*p });
    }
    if PHASE
        .compare_exchange(UNINIT, INITIALIZING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        remember_stderr();
        let errno = errno();
        // A panic must not unwind out of an `extern "C"` function (it would abort the program):
        // should reading the configuration ever panic, it counts as a bad configuration.
        match std::panic::catch_unwind(build) {
            Ok(Ok(Some(s))) => STATE.store(Box::into_raw(Box::new(s)), Ordering::Release),
            Ok(Ok(None)) => {}
            Ok(Err(msg)) => say(format_args!(
                "ipvirt: {msg}; socket calls are left unchanged\n"
            )),
            Err(_) => say(format_args!(
                "ipvirt: reading the configuration failed unexpectedly; socket calls are left unchanged\n"
            )),
        }
        set_errno(errno);
        PHASE.store(DONE, Ordering::Release);
        let p = STATE.load(Ordering::Acquire);
        // SAFETY: as above.
        return (!p.is_null()).then(|| unsafe { &*p });
    }
    None
}

/// A variable of the environment as the OS has it (`None` when unset or empty).
pub(crate) fn var_os(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A variable that must be text (a number, a word, addresses).
pub(crate) fn var_text(name: &str) -> Result<Option<String>, String> {
    var_os(name)
        .map(|v| {
            v.into_string()
                .map_err(|v| format!("{name}={v:?} is not valid UTF-8"))
        })
        .transpose()
}

/// Reads the policy file through the one definition every product uses
/// ([`ipvirt_host::policy_file::read`]: a regular file of at most 1 MiB, opened with `O_NONBLOCK`
/// so that a FIFO cannot block before `main` and `/dev/zero` cannot go on forever), in the words
/// of the layer's messages (`IPVIRT_POLICY=...`).
pub(crate) fn read_policy(path: &Path) -> Result<String, String> {
    let bytes = policy_file::read(path).map_err(|e| match e {
        PolicyFileError::NotAFile { .. } => format!(
            "IPVIRT_POLICY={path:?} is not a regular file (FIFOs, devices and directories are not read)"
        ),
        PolicyFileError::TooLarge { len, .. } => format!(
            "IPVIRT_POLICY={path:?} is larger than the 1 MiB a policy may have ({len} bytes)"
        ),
        PolicyFileError::Io { source, .. } => format!("IPVIRT_POLICY={path:?}: {source}"),
        other => format!("IPVIRT_POLICY={path:?}: {other}"),
    })?;
    String::from_utf8(bytes).map_err(|_| format!("IPVIRT_POLICY={path:?} is not UTF-8 text"))
}

/// Reads the configuration. `Ok(None)`: nothing to do for this process (unconfigured, or out of
/// every list). `Err`: the configuration is present but wrong.
pub(crate) fn build() -> Result<Option<State>, String> {
    let debug = var_os("IPVIRT_DEBUG").is_some_and(|v| v != "0");
    let session_var = var_os("IPVIRT_SESSION");
    let policy_var = var_os("IPVIRT_POLICY");
    if session_var.is_none() && policy_var.is_none() {
        // Unconfigured (LD_PRELOAD exported in a shell, say): stay silent, every helper process of
        // a script would print the line otherwise.
        if debug {
            say(format_args!(
                "ipvirt: IPVIRT_SESSION is not set (nor IPVIRT_POLICY): the layer is off for this process\n"
            ));
        }
        return Ok(None);
    }
    let session_text = var_text("IPVIRT_SESSION")?.ok_or("IPVIRT_SESSION is not set")?;
    let id: SessionId = session_text
        .trim()
        .parse()
        .map_err(|e| format!("IPVIRT_SESSION={session_text:?}: {e}"))?;
    let session = match var_text("IPVIRT_SESSION_KIND")?.as_deref() {
        None | Some("remote") => Session::remote(id),
        Some("console") => Session::console(id),
        Some(other) => {
            return Err(format!(
                "IPVIRT_SESSION_KIND={other:?}: expected remote or console"
            ));
        }
    };
    let path = PathBuf::from(policy_var.ok_or("IPVIRT_POLICY is not set")?);
    let text = read_policy(&path)?;
    let shown = path.display();
    let policy = Policy::from_toml(&text).map_err(|e| format!("{shown}: {e}"))?;
    let vip = match var_text("IPVIRT_VIP")? {
        Some(v) => Some(
            v.parse::<Vip>()
                .map_err(|e| format!("IPVIRT_VIP={v:?}: {e}"))?,
        ),
        None => None,
    };
    let servers: Vec<IpAddr> = match var_text("IPVIRT_SERVER_ADDRS")? {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("IPVIRT_SERVER_ADDRS: {s:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()?,
        // Only the virtual-IP rules read the server's addresses.
        None if policy.virtual_ip.enabled => interface_addresses()?,
        None => Vec::new(),
    };
    if let Err(e) = crate::report::configure() {
        // Only the reports to the service are off: the rewrites are not.
        say(format_args!(
            "ipvirt: {e}; refusals are not reported to the service\n"
        ));
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| format!("cannot read /proc/self/exe: {e}"))?;
    // Program lists are text: a name that is not UTF-8 is matched by its lossy form.
    let image = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let engine = policy
        .compile(Host::new(servers))
        .map_err(|e| format!("{shown}: {e}"))?;
    let plan = engine.process(&image);
    // The rewriter owns what it reads: the engine is dropped after this.
    let mut rw = engine.rewriter(session, &plan, vip);
    if session.is_virtualized() && id == SessionId::MAX && plan.loopback().applies() {
        // SPEC §9: 127.255.255.255 is the broadcast address of lo's 127.0.0.0/8 on Linux, where TCP
        // cannot use it. The session gets no loopback address: its loopback calls are refused
        // (EADDRNOTAVAIL) rather than put on the broadcast address or on the shared 127.0.0.1.
        say(format_args!(
            "ipvirt: session {id}: its loopback address 127.255.255.255 is the broadcast address of lo on \
             Linux; the calls that would use it fail with EADDRNOTAVAIL\n"
        ));
        let mut entry = engine.session_entry(session, vip);
        entry.loopback = 0;
        entry.flags |= ipvirt::table::SESSION_NO_LOOPBACK;
        rw = ipvirt::Rewriter::from_tables(engine.policy_table(), entry, plan.entry())
            .map_err(|e| format!("session {id}: {e}"))?;
    }
    if debug {
        say(format_args!("ipvirt: {}", engine.explain(session, &image)));
    }
    Ok(rw.is_active().then_some(State { rw, debug }))
}
