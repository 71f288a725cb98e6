//! The configuration as Windows has it, read once by `ipvirt_init`, and the state built from it.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use ipvirt::{Host, Policy, Rewriter, Session, SessionId, SessionKind, Vip, read_sockaddr};
use ipvirt_host::registry;

use windows_sys::Win32::System::Diagnostics::Debug::OutputDebugStringW;
use windows_sys::Win32::System::JobObjects::OpenJobObjectW;
use windows_sys::Win32::System::LibraryLoader::GetModuleFileNameW;
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTSGetActiveConsoleSessionId,
};
use windows_sys::Win32::System::Threading::GetCurrentProcessId;

use crate::addrs::LAYOUT;
use crate::calls::process::own_dll;
use crate::sys::wide;

/// What the socket hooks read: the process's rewriter and whether to print each rewrite.
pub(crate) struct State {
    pub(crate) rw: Rewriter,
    pub(crate) debug: bool,
}

/// Set once by `ipvirt_init` when ipvirt rewrites this process's socket calls, before any detour
/// is enabled.
pub(crate) static STATE: OnceLock<State> = OnceLock::new();

/// The state; the socket hooks run only after it is set (the detours are installed after it).
#[inline]
pub(crate) fn state() -> Option<&'static State> {
    STATE.get()
}

/// The session's configuration: the variables every process of the session gets, as the
/// launcher set them (the hook sets them in every child's environment, whatever the program
/// passes).
pub(crate) const CARRIED: [&str; 7] = [
    "IPVIRT_SESSION",
    "IPVIRT_SESSION_KIND",
    "IPVIRT_POLICY",
    "IPVIRT_VIP",
    "IPVIRT_SERVER_ADDRS",
    "IPVIRT_DEBUG",
    "IPVIRT_JOB",
];

/// What the process-creation hooks read: how to make a child of the session.
pub(crate) struct Carry {
    /// [`CARRIED`] and their values in this process's environment at `ipvirt_init`.
    pub(crate) vars: Vec<(&'static str, Option<OsString>)>,
    /// This DLL, and the offset of `ipvirt_init` from its base.
    pub(crate) dll: PathBuf,
    pub(crate) init_offset: usize,
    /// Whether the session's processes are in a job object (`IPVIRT_JOB`): none may leave it.
    pub(crate) job: bool,
    /// Print each child started.
    pub(crate) debug: bool,
}

/// Set once by `ipvirt_init` when the session is virtualized, before any detour is enabled.
pub(crate) static CARRY: OnceLock<Carry> = OnceLock::new();

/// How to make a child of the session; `None` when the session is not virtualized (its children
/// are not either).
#[inline]
pub(crate) fn carry() -> Option<&'static Carry> {
    CARRY.get()
}

/// What `ipvirt_init` found: the socket state (`None`: nothing of this process is rewritten) and
/// how to pass the session on (`None`: the session is not virtualized).
pub(crate) struct Built {
    pub(crate) sockets: Option<State>,
    pub(crate) carry: Option<Carry>,
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
/// `WTSGetActiveConsoleSessionId()`; `IPVIRT_SESSION_KIND=console` or `remote` says so instead.
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
        Some("remote") => SessionKind::Remote,
        None if id.get() == console => SessionKind::Console,
        None => SessionKind::Remote,
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

/// How many times [`host_addresses`] asks before it gives up on an error that is not "buffer too
/// small".
const ADAPTER_TRIES: u32 = 8;

/// The host's own unicast addresses, loopback ones left out (`GetAdaptersAddresses`).
///
/// The adapter table is read while interfaces may come and go: Windows documents
/// `ERROR_BUFFER_OVERFLOW` for a table that grew between the size query and the read, and under
/// Wine 8 the call once answered `ERROR_FILE_NOT_FOUND` (2) on a CI machine where the same call had
/// succeeded seconds before in the same run. So every failure is retried (up to [`ADAPTER_TRIES`]
/// times, 25 ms apart for errors); `ERROR_NO_DATA` means no adapter has an address, an empty list.
/// An error that persists is returned with its code. Only a policy with virtual IPs asks (see
/// [`servers`]).
pub(crate) fn host_addresses() -> Result<Vec<IpAddr>, String> {
    use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, ERROR_NO_DATA, ERROR_SUCCESS};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_DNS_SERVER, GAA_FLAG_SKIP_FRIENDLY_NAME,
        GAA_FLAG_SKIP_MULTICAST, GetAdaptersAddresses, IP_ADAPTER_ADDRESSES_LH,
    };
    use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;

    let flags = GAA_FLAG_SKIP_ANYCAST
        | GAA_FLAG_SKIP_MULTICAST
        | GAA_FLAG_SKIP_DNS_SERVER
        | GAA_FLAG_SKIP_FRIENDLY_NAME;
    // u64s: the list must be 8-byte aligned.
    let mut buf: Vec<u64> = vec![0; 2048];
    let mut last = ERROR_SUCCESS;
    for _ in 0..ADAPTER_TRIES {
        let mut size = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        let head = buf.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
        // SAFETY: buf holds size bytes, aligned for the structure.
        let r = unsafe {
            GetAdaptersAddresses(u32::from(AF_UNSPEC), flags, ptr::null(), head, &mut size)
        };
        last = r;
        if r == ERROR_NO_DATA {
            return Ok(Vec::new());
        }
        if r == ERROR_BUFFER_OVERFLOW {
            buf.resize((size as usize).div_ceil(8) + 1, 0);
            continue;
        }
        if r != ERROR_SUCCESS {
            std::thread::sleep(std::time::Duration::from_millis(25));
            continue;
        }
        let mut out = Vec::new();
        let mut adapter = head.cast_const();
        while !adapter.is_null() {
            // SAFETY: a node of the list the call wrote into buf.
            let a = unsafe { &*adapter };
            let mut u = a.FirstUnicastAddress.cast_const();
            while !u.is_null() {
                // SAFETY: a node of the adapter's unicast list, inside buf.
                let ua = unsafe { &*u };
                let sa = ua.Address.lpSockaddr.cast::<u8>();
                if let Ok(len) = usize::try_from(ua.Address.iSockaddrLength)
                    && !sa.is_null()
                {
                    // SAFETY: the address has iSockaddrLength bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(sa, len) };
                    if let Ok(addr) = read_sockaddr(bytes, LAYOUT)
                        && !addr.ip().is_loopback()
                    {
                        out.push(addr.ip());
                    }
                }
                u = ua.Next;
            }
            adapter = a.Next;
        }
        return Ok(out);
    }
    Err(if last == ERROR_BUFFER_OVERFLOW {
        format!("GetAdaptersAddresses asked for a larger buffer {ADAPTER_TRIES} times")
    } else {
        format!(
            "GetAdaptersAddresses failed with error {last} {ADAPTER_TRIES} times; \
             IPVIRT_SERVER_ADDRS names the server's addresses without it"
        )
    })
}

/// The server's own addresses: `IPVIRT_SERVER_ADDRS` (comma-separated) when set, else the host's
/// (see [`host_addresses`]) when the policy leases virtual IPs, else none: only the virtual-IP
/// rules read them (a bind to the server's address becomes the VIP), so a loopback-only policy
/// never depends on the adapter table.
pub(crate) fn servers(virtual_ip: bool) -> Result<Vec<IpAddr>, String> {
    let Some(list) = var("IPVIRT_SERVER_ADDRS")? else {
        return if virtual_ip {
            host_addresses()
        } else {
            Ok(Vec::new())
        };
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

/// Reads the configuration. `sockets` is `None` when nothing of this process is rewritten (no
/// policy, not listed, console session); `carry` is `None` when the session is not virtualized
/// (console, or neither virtual loopback nor virtual IPs on). `Err`: the configuration is present
/// but wrong.
pub(crate) fn build() -> Result<Built, String> {
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
        .compile(Host::new(servers(policy.virtual_ip.enabled)?))
        .map_err(|e| format!("the policy does not compile: {e}"))?;
    let plan = engine.process(&image);
    let rw = engine.rewriter(session, &plan, vip);
    if debug {
        say(&format!("ipvirt: {}", engine.explain(session, &image)));
    }
    let follow =
        session.is_virtualized() && (policy.virtual_loopback.enabled || policy.virtual_ip.enabled);
    let carry = if follow {
        let job = var("IPVIRT_JOB")?;
        if let Some(name) = &job {
            hold_job(name)?;
        }
        let (dll, init_offset) = own_dll()?;
        Some(Carry {
            vars: CARRIED
                .iter()
                .map(|&n| (n, std::env::var_os(n).filter(|v| !v.is_empty())))
                .collect(),
            dll,
            init_offset,
            job: job.is_some(),
            debug,
        })
    } else {
        None
    };
    Ok(Built {
        sockets: rw.is_active().then_some(State { rw, debug }),
        carry,
    })
}

/// Opens the session's job object `name` and keeps the handle for the life of the process:
/// Windows removes a job's name when its last handle is closed, and the lease book finds the
/// session's job by name (the launcher's handle ends with the launcher).
fn hold_job(name: &str) -> Result<(), String> {
    /// The right to query a job object (`winnt.h`).
    const JOB_OBJECT_QUERY: u32 = 0x0004;
    let w = wide(name);
    // SAFETY: w is NUL-terminated.
    let h = unsafe { OpenJobObjectW(JOB_OBJECT_QUERY, 0, w.as_ptr()) };
    if h.is_null() {
        return Err(format!(
            "IPVIRT_JOB={name:?}: cannot open the session's job object: {}",
            std::io::Error::last_os_error()
        ));
    }
    // The handle is never closed: it keeps the name while this process runs.
    Ok(())
}

/// Writes one line on the process's stderr, ignoring errors, and in the debugger output
/// (`OutputDebugString`: a program without a console has no stderr to read).
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let line = line.trim_end();
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    let w = wide(&format!("{line}\n"));
    // SAFETY: w is NUL-terminated.
    unsafe { OutputDebugStringW(w.as_ptr()) };
}
