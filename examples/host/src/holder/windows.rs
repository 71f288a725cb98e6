//! What Windows tells about a lease's holders: a process's creation time and whether it runs.

// OpenProcess and friends: FFI.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::path::Path;

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// No boot identity is kept on Windows: a process's creation time tells boots apart.
pub fn boot_id() -> String {
    String::new()
}

/// The creation time of process `pid` (`GetProcessTimes`, 100 ns units since 1601), or `None`
/// when it cannot be inspected or has ended.
pub fn start_time(pid: u32) -> Option<u64> {
    // SAFETY: OpenProcess has no memory preconditions.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return None;
    }
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    let mut code = 0u32;
    // SAFETY: h is an open process handle; the out pointers are valid.
    let ok = unsafe {
        GetProcessTimes(h, &mut c, &mut e, &mut k, &mut u) != 0
            && GetExitCodeProcess(h, &mut code) != 0
    };
    // SAFETY: closed once.
    unsafe { CloseHandle(h) };
    (ok && code == STILL_ACTIVE as u32)
        .then(|| (u64::from(c.dwHighDateTime) << 32) | u64::from(c.dwLowDateTime))
}

/// Token holders are a Linux notion: none is in use here.
pub fn tokens_in_use(_wanted: &HashSet<String>) -> HashSet<String> {
    HashSet::new()
}

/// Cgroup holders are a Linux notion: none has processes here.
pub fn populated(_dir: &Path) -> bool {
    false
}
