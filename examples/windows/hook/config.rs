//! The configuration as Windows has it, read once by `ipvirt_init`, and the state built from it.

#![allow(clippy::wildcard_imports)]

use crate::*;

use std::sync::OnceLock;

use windows_sys::Win32::System::LibraryLoader::GetModuleFileNameW;
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTSGetActiveConsoleSessionId,
};
use windows_sys::Win32::System::Threading::GetCurrentProcessId;

/// What the hooks read: the process's rewriter and whether to print each rewrite.
pub(crate) struct State {
    pub(crate) rw: Rewriter,
    pub(crate) debug: bool,
}

/// Set once by `ipvirt_init`, before any detour is enabled.
pub(crate) static STATE: OnceLock<State> = OnceLock::new();

/// The state; the hooks run only after it is set (the detours are installed after it).
#[inline]
pub(crate) fn state() -> Option<&'static State> {
    STATE.get()
}

/// The largest policy file read (a policy lists programs and ports: a few KiB).
const MAX_POLICY: u64 = 1 << 20;

/// A variable of the environment (`None` when unset or empty).
pub(crate) fn var(name: &str) -> Result<Option<String>, String> {
    match std::env::var_os(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|v| format!("{name}={v:?} is not valid text")),
    }
}

/// The session: `IPVIRT_SESSION` when set (the launcher's assignment: Wine runs every program in
/// one Windows session, so tests give each launch its own), else the process's Windows session
/// (`ProcessIdToSessionId`). It is the console session when its id is
/// `WTSGetActiveConsoleSessionId()`, or when `IPVIRT_SESSION_KIND=console`.
pub(crate) fn session() -> Result<Session, String> {
    let id = match var("IPVIRT_SESSION")? {
        Some(text) => text
            .trim()
            .parse::<SessionId>()
            .map_err(|e| format!("IPVIRT_SESSION={text:?}: {e}"))?,
        None => {
            let mut id = 0u32;
            // SAFETY: id is a valid out pointer.
            let ok = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut id) };
            if ok == 0 {
                return Err("ProcessIdToSessionId failed".into());
            }
            SessionId::new(id)
        }
    };
    // SAFETY: no preconditions. 0xFFFFFFFF: no session is attached to the console.
    let console = unsafe { WTSGetActiveConsoleSessionId() };
    let kind = match var("IPVIRT_SESSION_KIND")?.as_deref() {
        Some("console") => SessionKind::Console,
        Some("remote") | None if id.get() == console => SessionKind::Console,
        Some("remote") | None => SessionKind::Remote,
        Some(other) => {
            return Err(format!(
                "IPVIRT_SESSION_KIND={other:?}: expected remote or console"
            ));
        }
    };
    Ok(Session::new(id, kind))
}

/// The full path of the program (`GetModuleFileNameW(NULL)`): program lists match its name, or
/// the whole path.
pub(crate) fn image() -> Result<String, String> {
    let mut buf = vec![0u16; 260];
    loop {
        let cap = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: buf holds cap UTF-16 units.
        let n = unsafe { GetModuleFileNameW(ptr::null_mut(), buf.as_mut_ptr(), cap) } as usize;
        if n == 0 {
            return Err("GetModuleFileNameW failed".into());
        }
        if n < buf.len() {
            return Ok(String::from_utf16_lossy(buf.get(..n).unwrap_or_default()));
        }
        if buf.len() >= 32 * 1024 {
            return Err("the program's path is longer than 32 768 characters".into());
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// Reads the TOML policy named by `IPVIRT_POLICY` (a regular file of at most 1 MiB).
fn read_policy(path: &str) -> Result<Policy, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("IPVIRT_POLICY={path:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("IPVIRT_POLICY={path:?} is not a regular file"));
    }
    if meta.len() > MAX_POLICY {
        return Err(format!(
            "IPVIRT_POLICY={path:?} is larger than the 1 MiB a policy may have ({} bytes)",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("IPVIRT_POLICY={path:?}: {e}"))?;
    Policy::from_toml(&text).map_err(|e| format!("{path}: {e}"))
}

/// The server's own addresses: `IPVIRT_SERVER_ADDRS` (comma-separated) when set, else none.
fn servers() -> Result<Vec<IpAddr>, String> {
    let Some(list) = var("IPVIRT_SERVER_ADDRS")? else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format!("IPVIRT_SERVER_ADDRS: {s:?} is not an IP address"))
        })
        .collect()
}

/// Reads the configuration. `Ok(None)`: nothing to rewrite in this process (no policy, out of
/// scope, console session). `Err`: the configuration is present but wrong.
pub(crate) fn build() -> Result<Option<State>, String> {
    let debug = var("IPVIRT_DEBUG")?.is_some_and(|v| v != "0");
    let session = session()?;
    let mut policy = match var("IPVIRT_POLICY")? {
        Some(path) => read_policy(&path)?,
        None => Policy::default(),
    };
    for note in registry::apply(&mut policy)? {
        say(&format!("ipvirt: registry: {note}"));
    }
    let vip = match var("IPVIRT_VIP")? {
        Some(v) => Some(
            v.parse::<Vip>()
                .map_err(|e| format!("IPVIRT_VIP={v:?}: {e}"))?,
        ),
        None => None,
    };
    let image = image()?;
    let engine = policy
        .compile(Host::new(servers()?))
        .map_err(|e| format!("the policy does not compile: {e}"))?;
    let plan = engine.process(&image);
    let rw = engine.rewriter(session, &plan, vip);
    if debug {
        say(&format!("ipvirt: {}", engine.explain(session, &image)));
    }
    Ok(rw.is_active().then_some(State { rw, debug }))
}

/// Writes one line on the process's stderr, ignoring errors.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{}", line.trim_end());
}
