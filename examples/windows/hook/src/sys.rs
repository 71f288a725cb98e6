//! The real Winsock functions (the detours' trampolines), installing the detours, the per-thread
//! depth guard and the Winsock last error.

#![allow(clippy::wildcard_imports)]

use crate::*;

use std::cell::Cell;

use retour::RawDetour;
use windows_sys::Win32::Networking::WinSock::{WSAGetLastError, WSASetLastError};
use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};

/// The detoured functions. The value indexes [`REAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum F {
    Bind,
    Connect,
    WsaConnect,
    SendTo,
    WsaSendTo,
    GetSockName,
    GetPeerName,
    Accept,
    WsaAccept,
    RecvFrom,
    WsaRecvFrom,
    GetAddrInfo,
    GetAddrInfoW,
    GetHostByName,
    WsaIoctl,
}

/// How many functions are detoured.
pub(crate) const COUNT: usize = 15;

/// The trampolines (the original code) of the detoured functions, set before each detour is
/// enabled; 0 until then.
pub(crate) static REAL: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];

/// The real function `$f` (an [`F`]) as the function pointer type `$ty`.
macro_rules! real {
    ($f:expr, $ty:ty) => {{
        let p = $crate::sys::REAL[$f as usize].load(::std::sync::atomic::Ordering::Acquire);
        // SAFETY: a detour is enabled only after its trampoline was stored here, and the hooks
        // run only through an enabled detour; the trampoline has the signature of the export `$f`
        // names, which `$ty` spells.
        unsafe { ::std::mem::transmute::<usize, $ty>(p) }
    }};
}

thread_local! {
    /// How many hooks are running on this thread (Wine's and Windows' ws2_32 call their own
    /// exports: `WSAConnect` calls `connect`, `GetAddrInfoW` calls `getaddrinfo`, …).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Marks a hook as running on this thread until dropped.
pub(crate) struct Depth {
    outermost: bool,
}

impl Depth {
    /// Enters a hook. Only the outermost hook of a thread rewrites: an inner one is ws2_32 calling
    /// itself with what the outer hook already decided on.
    #[inline]
    pub(crate) fn enter() -> Depth {
        let saved = last_error();
        let d = DEPTH.with(|d| {
            let v = d.get();
            d.set(v.saturating_add(1));
            v
        });
        set_last_error(saved);
        Depth { outermost: d == 0 }
    }

    /// Whether this hook is the outermost on its thread.
    #[inline]
    pub(crate) fn outermost(&self) -> bool {
        self.outermost
    }
}

impl Drop for Depth {
    /// Runs after the real call: the thread-local access may go through `TlsGetValue`, which sets
    /// the thread's last error to 0, so the real call's error is saved and put back around it.
    fn drop(&mut self) {
        let saved = last_error();
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        set_last_error(saved);
    }
}

/// The calling thread's Winsock error.
#[inline]
pub(crate) fn last_error() -> i32 {
    // SAFETY: no preconditions.
    unsafe { WSAGetLastError() }
}

/// Sets the calling thread's Winsock error.
#[inline]
pub(crate) fn set_last_error(e: i32) {
    // SAFETY: no preconditions.
    unsafe { WSASetLastError(e) }
}

/// A NUL-terminated UTF-16 copy of `s`.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The address of `name` in ws2_32, or `None` when it is missing.
fn export(ws2: windows_sys::Win32::Foundation::HMODULE, name: &CStr) -> Option<usize> {
    // SAFETY: ws2 is a loaded module; name is NUL-terminated.
    unsafe { GetProcAddress(ws2, name.as_ptr().cast()) }.map(|f| f as usize)
}

/// Detours every function of `hooks` (the function, its export name, the hook's address).
/// Returns the names that could not be detoured (missing export, or code retour cannot move).
///
/// The detours are leaked: they stay for the life of the process.
pub(crate) fn install(hooks: &[(F, &CStr, usize)]) -> Result<Vec<String>, String> {
    let name = wide("ws2_32.dll");
    // SAFETY: name is NUL-terminated; ws2_32 is a system library whose DllMain is Windows'.
    let ws2 = unsafe { LoadLibraryW(name.as_ptr()) };
    if ws2.is_null() {
        return Err("cannot load ws2_32.dll".into());
    }
    let mut missed = Vec::new();
    for &(f, export_name, hook) in hooks {
        let shown = export_name.to_string_lossy().into_owned();
        let Some(target) = export(ws2, export_name) else {
            missed.push(format!("{shown} (not exported)"));
            continue;
        };
        // SAFETY: target is the entry of an exported function of ws2_32 and hook a function of
        // the same signature; retour copies and relocates the first instructions into a
        // trampoline and patches the entry with a jump to the hook.
        let detour = match unsafe { RawDetour::new(target as *const (), hook as *const ()) } {
            Ok(d) => d,
            Err(e) => {
                missed.push(format!("{shown} ({e})"));
                continue;
            }
        };
        REAL[f as usize].store(detour.trampoline() as *const () as usize, Ordering::Release);
        // SAFETY: the trampoline is stored above, so the hook can call the original code as soon
        // as the jump is in place.
        if let Err(e) = unsafe { detour.enable() } {
            missed.push(format!("{shown} ({e})"));
            continue;
        }
        // The detour must outlive every call: it is never disabled.
        std::mem::forget(detour);
    }
    Ok(missed)
}
