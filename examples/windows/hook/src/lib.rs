//! A Winsock hook DLL that gives the processes of a session their own loopback address and virtual
//! IP, by doing what `ipvirt` says in front of the socket calls. The Windows counterpart of the
//! `LD_PRELOAD` layer (`examples/preload/`); on other targets it builds to an empty library.
//!
//! ```text
//! cargo build --target x86_64-pc-windows-gnu -p ipvirt-winhook -p ipvirt-winsession
//! winsession.exe --id 7 --policy C:\ipvirt\policy.toml -- C:\Apps\crm.exe
//! ```
//!
//! The launcher (`examples/windows/launcher/`) starts the program suspended, loads this DLL into
//! it, calls its export `ipvirt_init` on a thread of its own, and only then lets the program run.
//! Nothing happens under the loader lock: the DLL has no `DllMain` work; `ipvirt_init` reads the
//! configuration and installs the detours.
//!
//! ## Configuration (read once, by `ipvirt_init`)
//!
//! | source | meaning |
//! |---|---|
//! | the process's Windows session (`ProcessIdToSessionId`) | the session id |
//! | `WTSGetActiveConsoleSessionId()` | the console session: never virtualized |
//! | `HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\TSAppSrv\VirtualIP`, `HKLM\SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP`, `HKLM\SOFTWARE\Wow6432Node\Citrix\VIP` | the registry settings of SPEC §3, mapped by `ipvirt::Policy::from_reg` (`ipvirt_host::registry`) |
//! | `IPVIRT_POLICY` | a TOML policy file: virtual loopback, the VIP pool, and any setting the registry does not hold (registry values win) |
//! | the program's path (`GetModuleFileNameW`) | matched against the program lists (name or full path) |
//! | `IPVIRT_VIP` | the session's VIP, leased by the launcher (none: the policy's `on_lease_failure` applies) |
//! | `IPVIRT_SERVER_ADDRS` | the server's own addresses, comma-separated (default: the host's non-loopback unicast addresses, `GetAdaptersAddresses`, read only when the policy enables virtual IPs) |
//! | `IPVIRT_SESSION` | **launcher and test facility**: the session id to use instead of the process's own. Wine runs every program in one Windows session, so the tests give each launch its own id this way; on a real server the launcher leaves it unset |
//! | `IPVIRT_SESSION_KIND` | `console` or `remote`: overrides the console-session check (tests) |
//! | `IPVIRT_DEBUG` | `1`: print each rewrite and its reason to stderr |
//! | `IPVIRT_JOB` | the session's job object (the holder of its lease), which the process keeps open so that its name lives while any process of the session runs |
//!
//! A configuration that is present but wrong makes `ipvirt_init` fail with a message on stderr;
//! the launcher then does not run the program (fail closed: a session must not silently share
//! `127.0.0.1`).
//!
//! ## The session's children
//!
//! In a virtualized session (a remote session with virtual loopback or virtual IPs on) the DLL
//! detours `CreateProcessW`, `CreateProcessA`, `CreateProcessAsUserW` and `CreateProcessAsUserA`
//! in every process, listed or not (kernelbase's, which kernel32's and advapi32's lead to; what
//! `ShellExecute`, `_spawn`/`_exec`, `system` and libuv's `uv_spawn` start comes through them).
//! Each child is created suspended, with the session's `IPVIRT_*` variables in its environment
//! (whatever environment the program passes), gets this DLL and its `ipvirt_init`, and then runs:
//! a session is every process it starts, children's children included. A child that is not
//! listed (`cmd.exe` in `cmd.exe /c crm.exe`) has nothing of its own rewritten and passes the
//! layer on. **Fail closed**: a child that cannot be virtualized is terminated before it ran and
//! the create call fails — `ERROR_NOT_SUPPORTED` for a 32-bit child (this DLL is 64-bit, and a
//! 32-bit one is not built), `ERROR_DLL_INIT_FAILED` when the DLL does not load or its
//! `ipvirt_init` fails — with the reason on stderr and in the debugger output
//! (`OutputDebugString`); a child to be debugged by its creator (`DEBUG_PROCESS`) is refused with
//! `ERROR_NOT_SUPPORTED` (its threads would wait for the thread that waits for the DLL: attach a
//! debugger to the running program instead). `CREATE_BREAKAWAY_FROM_JOB` is dropped while the
//! session has a job object, so no child leaves the lease's holder (`calls/process.rs`).
//!
//! ## What is intercepted
//!
//! Inline detours (the `retour` crate) of the ws2_32 exports `bind`, `listen`, `closesocket`,
//! `connect`, `WSAConnect`, `sendto`, `WSASendTo` (destinations, and the implicit source bind of
//! an unbound socket),
//! `getsockname`, `getpeername`, `accept`, `WSAAccept`, `recvfrom`, `WSARecvFrom` (addresses handed
//! back), `getaddrinfo`, `GetAddrInfoW`, `gethostbyname` (results), and `WSAIoctl`, which hands out
//! wrappers of `ConnectEx` and `GetAcceptExSockaddrs`; and of `mswsock.dll`'s own
//! `GetAcceptExSockaddrs` export. mswsock exports `AcceptEx`, `GetAcceptExSockaddrs` and
//! `TransmitFile` but no `ConnectEx` (that one only comes from `WSAIoctl`); `AcceptEx` and
//! `TransmitFile` take no address, and the two `AcceptEx` writes are read with
//! `GetAcceptExSockaddrs`. The function's own code is patched, so calls through `GetProcAddress`
//! are caught as well as imported ones. Wine's and Windows' ws2_32 call their own exports
//! (`WSAConnect` calls `connect`, `GetAddrInfoW` calls `getaddrinfo`, Wine's mswsock asks
//! `WSAIoctl` for the provider's functions): a per-thread depth counter lets only the outermost
//! hook rewrite. Refusals fail the call with `SOCKET_ERROR` and the Winsock code of
//! `ipvirt::Refusal::wsa_error` (`WSAEADDRNOTAVAIL`, `WSAECONNREFUSED`, `WSAEACCES`).
//!
//! A client that binds the wildcard with port 0 itself before it connects (libuv and Go do, since
//! `ConnectEx` needs a bound socket) gets the source a plain `connect` gets: the `bind` of a stream
//! socket to `0.0.0.0:0` or `[::]:0` is held back and made when the socket is used — by the
//! connect's rules for `connect`, `WSAConnect` and `ConnectEx`, by the bind's for `listen`
//! (`pending.rs`), and by the bind's for `getsockname` too (a program that asks for its name
//! before it connects wants the port the system chose).
//!
//! ## Limits
//!
//! - A client that asks for its name (`getsockname`) between its wildcard bind and its connect
//!   leaves from the address the system chooses; a UDP socket bound to the wildcard is bound at
//!   once (it may receive before it sends), so its datagrams leave from the address the system
//!   chooses.
//! - Processes made by `CreateProcessWithLogonW`/`CreateProcessWithTokenW` (the secondary logon
//!   service creates them, for another user) or by another process on the session's behalf (a
//!   COM server, a service, the Task Scheduler) are not followed: they are not children of the
//!   session's processes.
//! - An overlapped `WSARecvFrom` that is still pending when the call returns gets its sender's
//!   address from the system later, unrewritten; the condition function of `WSAAccept` sees the
//!   address as the system has it.
//! - Under Wine 8.0, a UDP bind to `127.0.0.8` is widened to `0.0.0.0` by wineserver
//!   (`server/sock.c`, `bind_to_interface`; fixed upstream): the hook does its part, the host
//!   does not. TCP is unaffected.
//!
//! ## Files
//!
//! `hooks.rs`: the one hook table (every detoured function once: module, export, hook,
//! signature); `sys.rs` installing the detours, the trampolines, the depth guard, the Winsock
//! error; `config.rs` the configuration (the registry keys through `ipvirt_host::registry`);
//! `addrs.rs` copying addresses and what the families share; `pending.rs` the wildcard binds held
//! back until the socket is used; `calls/` the hooks, one file per call family; `inject.rs`
//! (public: the launcher uses it too) loading the DLL into a suspended process. Every address
//! goes through ipvirt's sockaddr layer with `ipvirt::SockaddrLayout::WINDOWS`.

// An FFI shim: the hooks are unsafe by nature.
#![allow(unsafe_code)]

#[cfg(windows)]
#[macro_use]
mod hooks;
#[cfg(windows)]
mod addrs;
#[cfg(windows)]
mod calls;
#[cfg(windows)]
mod config;
#[cfg(windows)]
pub mod inject;
#[cfg(windows)]
mod pending;
#[cfg(windows)]
mod sys;
#[cfg(all(windows, test))]
mod tests;

#[cfg(windows)]
use std::ffi::c_void;
#[cfg(windows)]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(windows)]
use crate::config::{CARRY, STATE, build, say};
#[cfg(windows)]
use crate::sys::{Group, install};

/// What `ipvirt_init` returns: 0 the layer is on or has nothing to do in this process; 1 the
/// configuration is wrong; 2 a detour could not be installed; 3 it was called twice.
#[cfg(windows)]
pub(crate) fn init() -> u32 {
    static CALLED: AtomicBool = AtomicBool::new(false);
    if CALLED.swap(true, Ordering::AcqRel) {
        return 3;
    }
    // A panic must not unwind into the thread that called us: it counts as a failure.
    let built = match std::panic::catch_unwind(build) {
        Ok(Ok(built)) => built,
        Ok(Err(msg)) => {
            say(&format!("ipvirt: {msg}"));
            return 1;
        }
        Err(_) => {
            say("ipvirt: reading the configuration failed unexpectedly");
            return 1;
        }
    };
    // The socket hooks where ipvirt rewrites this process's calls; the process hooks wherever
    // the session is virtualized, listed or not (an unlisted `cmd.exe` passes the layer on).
    let mut groups = Vec::new();
    if let Some(st) = built.sockets {
        groups.push(Group::Sockets);
        if STATE.set(st).is_err() {
            return 3;
        }
    }
    if let Some(carry) = built.carry {
        groups.push(Group::Processes);
        if CARRY.set(carry).is_err() {
            return 3;
        }
    }
    if groups.is_empty() {
        return 0;
    }
    match std::panic::catch_unwind(|| install(&hooks::table(), &groups)) {
        Ok(missed) if missed.is_empty() => 0,
        Ok(missed) => {
            say(&format!("ipvirt: could not detour {}", missed.join(", ")));
            2
        }
        Err(_) => {
            say("ipvirt: installing the detours failed unexpectedly");
            2
        }
    }
}

/// Reads the configuration and installs the detours; called once, by the launcher, on a thread
/// of its own after the DLL is loaded (never from `DllMain`: nothing runs under the loader lock).
///
/// Returns 0 when the layer is on or has nothing to do in this process, 1 when the configuration
/// is wrong, 2 when a detour could not be installed, 3 when called twice. Messages go to stderr.
///
/// # Safety
///
/// Call it once, before the program runs (the launcher calls it on a suspended process):
/// installing the detours patches ws2_32's code, which must not be running at that moment.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ipvirt_init(_param: *mut c_void) -> u32 {
    init()
}
