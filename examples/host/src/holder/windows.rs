//! What Windows tells about a lease's holders: a process's creation time and whether it runs, and
//! whether a job object has processes.

// OpenProcess and friends: FFI.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::path::Path;

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::JobObjects::{
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JobObjectBasicAccountingInformation, OpenJobObjectW,
    QueryInformationJobObject,
};
use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, GetExitCodeProcess, GetProcessTimes, OpenProcess,
    PROCESS_QUERY_LIMITED_INFORMATION,
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

/// The right to query a job object (`winnt.h`).
const JOB_OBJECT_QUERY: u32 = 0x0004;

/// Whether the job object named `name` has processes
/// (`JOBOBJECT_BASIC_ACCOUNTING_INFORMATION.ActiveProcesses`). A name that does not open is gone,
/// with one exception: a `Local\ipvirt-SESSION-…` name of another Windows session than this
/// process's lives in that session's namespace, which this process cannot see, so it is taken to
/// have processes (never give away what may still be in use); a reader in that session decides.
pub fn job_active(name: &str) -> bool {
    let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
    // SAFETY: wide is NUL-terminated.
    let h = unsafe { OpenJobObjectW(JOB_OBJECT_QUERY, 0, wide.as_ptr()) };
    if h.is_null() {
        return other_sessions_local_name(name);
    }
    // SAFETY: a zeroed structure of integers is a valid value.
    let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: h is an open job handle; info holds the size given.
    let ok = unsafe {
        QueryInformationJobObject(
            h,
            JobObjectBasicAccountingInformation,
            (&raw mut info).cast(),
            std::mem::size_of_val(&info) as u32,
            std::ptr::null_mut(),
        )
    };
    // SAFETY: closed once.
    unsafe { CloseHandle(h) };
    // A job that cannot be queried is taken to have processes.
    ok == 0 || info.ActiveProcesses > 0
}

/// Whether `name` is `Local\ipvirt-SESSION-…` with a Windows session other than this process's.
fn other_sessions_local_name(name: &str) -> bool {
    let Some(session) = name
        .strip_prefix("Local\\ipvirt-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return false;
    };
    let mut own = 0u32;
    // SAFETY: own is a valid out pointer.
    let ok = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut own) };
    ok == 0 || own != session
}

/// Cgroup holders are a Linux notion: none has processes here.
pub fn populated(_dir: &Path) -> bool {
    false
}
