//! The real Winsock functions (the detours' trampolines), installing the detours, the per-thread
//! depth guard and the Winsock last error.

use std::cell::Cell;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};

use retour::RawDetour;
use windows_sys::Win32::Foundation::HMODULE;
use windows_sys::Win32::Networking::WinSock::{WSAGetLastError, WSASetLastError};
use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};

use crate::hooks::{COUNT, F};

/// A Winsock `SOCKET`.
pub(crate) type Socket = usize;

/// The modules that export Winsock's functions.
pub(crate) const WS2_32: &[&str] = &["ws2_32.dll"];
/// The module that exports `AcceptEx`, `GetAcceptExSockaddrs`, `TransmitFile` (no `ConnectEx`:
/// that one is only handed out by `WSAIoctl`).
pub(crate) const MSWSOCK: &[&str] = &["mswsock.dll"];
/// The modules that export the process-creation functions: kernelbase (Windows 8 and later, and
/// Wine: kernel32's and advapi32's exports lead there) or, where it has none, kernel32.
pub(crate) const KERNEL: &[&str] = &["kernelbase.dll", "kernel32.dll"];

/// When a hook of the table is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// In a process whose socket calls ipvirt rewrites.
    Sockets,
    /// In every process of a virtualized session: its children are of the session.
    Processes,
}

/// One entry of the hook table ([`crate::hooks::table`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hook {
    /// Which function: the index of its trampoline in [`REAL`].
    pub(crate) f: F,
    /// When it is installed.
    pub(crate) group: Group,
    /// The modules that may export it, tried in order.
    pub(crate) modules: &'static [&'static str],
    /// Its export name.
    pub(crate) export: &'static str,
    /// The hook's address.
    pub(crate) hook: usize,
}

/// The trampolines (the original code) of the detoured functions, set before each detour is
/// enabled; 0 until then.
pub(crate) static REAL: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];

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

/// The address of `name` in the module `m`, or `None` when it is missing.
fn export(m: HMODULE, name: &str) -> Option<usize> {
    let name = CString::new(name).ok()?;
    // SAFETY: m is a loaded module; name is NUL-terminated.
    unsafe { GetProcAddress(m, name.as_ptr().cast()) }.map(|f| f as usize)
}

/// The first of `modules` that loads and exports `name`, and the function's address.
fn find(modules: &[&str], name: &str) -> Option<usize> {
    modules.iter().find_map(|m| {
        let wname = wide(m);
        // SAFETY: wname is NUL-terminated; the modules are system libraries whose DllMain is
        // Windows' own.
        let h = unsafe { LoadLibraryW(wname.as_ptr()) };
        (!h.is_null()).then(|| export(h, name)).flatten()
    })
}

/// Detours every function of `hooks` whose group is in `groups`. Returns the names that could
/// not be detoured (missing export, or code retour cannot move).
///
/// The detours are leaked: they stay for the life of the process.
pub(crate) fn install(hooks: &[Hook], groups: &[Group]) -> Vec<String> {
    let mut missed = Vec::new();
    for h in hooks.iter().filter(|h| groups.contains(&h.group)) {
        let Some(target) = find(h.modules, h.export) else {
            missed.push(format!(
                "{} (not exported by {})",
                h.export,
                h.modules.join(" or ")
            ));
            continue;
        };
        // SAFETY: target is the entry of an exported function and hook a function of the same
        // signature (the table casts it to the export's type); retour copies and relocates the
        // first instructions into a trampoline and patches the entry with a jump to the hook.
        let detour = match unsafe { RawDetour::new(target as *const (), h.hook as *const ()) } {
            Ok(d) => d,
            Err(e) => {
                missed.push(format!("{} ({e})", h.export));
                continue;
            }
        };
        REAL[h.f as usize].store(detour.trampoline() as *const () as usize, Ordering::Release);
        // SAFETY: the trampoline is stored above, so the hook can call the original code as soon
        // as the jump is in place.
        if let Err(e) = unsafe { detour.enable() } {
            missed.push(format!("{} ({e})", h.export));
            continue;
        }
        // The detour must outlive every call: it is never disabled.
        std::mem::forget(detour);
    }
    missed
}
