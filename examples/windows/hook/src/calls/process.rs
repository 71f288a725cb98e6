//! `CreateProcessW`, `CreateProcessA`, `CreateProcessAsUserW`, `CreateProcessAsUserA`: every
//! process a process of the session creates is of the session.
//!
//! The child is created suspended, with the session's configuration in its environment (the
//! `IPVIRT_*` variables this process was started with, [`CARRIED`], whatever environment the
//! program passes or changed); the DLL is loaded into it and its `ipvirt_init` called (what the
//! launcher does), and only then does it run — unless the program asked for it suspended. A child
//! that is not listed gets the layer too (it rewrites nothing of its own and passes the layer on:
//! `cmd.exe /c crm.exe`), so children's children are followed. What `ShellExecute`, `_spawn`,
//! `system` and libuv's `uv_spawn` start goes through these functions.
//!
//! **Fail closed**: a child that cannot be virtualized — a 32-bit program (this DLL is 64-bit),
//! a DLL that does not load, an `ipvirt_init` that fails — is terminated before it ran an
//! instruction of its own, and the create call fails: `ERROR_NOT_SUPPORTED` for a 32-bit child,
//! `ERROR_DLL_INIT_FAILED` otherwise, with the reason on stderr and in the debugger output
//! (`OutputDebugString`). A child its creator is to debug (`DEBUG_PROCESS`,
//! `DEBUG_ONLY_THIS_PROCESS`) is refused before it is created, with `ERROR_NOT_SUPPORTED`: its
//! threads would wait for the debugger, the very thread that waits here for the DLL to load. A
//! session never has a process on the shared `127.0.0.1` it did not ask for.
//!
//! While the session holds a lease, its processes are in the launcher's job object (the lease's
//! holder): `CREATE_BREAKAWAY_FROM_JOB` is dropped from the flags, so no child leaves it.

use std::ffi::{OsString, c_void};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_DLL_INIT_FAILED, ERROR_NOT_SUPPORTED, HANDLE, HMODULE, SetLastError,
};
use windows_sys::Win32::Globalization::{CP_ACP, MultiByteToWideChar};
use windows_sys::Win32::System::Environment::{FreeEnvironmentStringsW, GetEnvironmentStringsW};
use windows_sys::Win32::System::LibraryLoader::{
    GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    GetModuleFileNameW, GetModuleHandleExW,
};
use windows_sys::Win32::System::Threading::{
    CREATE_BREAKAWAY_FROM_JOB, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    DEBUG_ONLY_THIS_PROCESS, DEBUG_PROCESS, PROCESS_INFORMATION, ResumeThread, TerminateProcess,
};

use crate::config::{CARRIED, Carry, carry, say};
use crate::inject::Target;
use crate::sys::Depth;

/// `CreateProcessW`: the child is of the session (see the module documentation).
///
/// # Safety
///
/// As `CreateProcessW`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn create_process_w(
    app: *const u16,
    cmd: *mut u16,
    pattr: *const c_void,
    tattr: *const c_void,
    inherit: i32,
    flags: u32,
    env: *const c_void,
    dir: *const u16,
    startup: *const c_void,
    info: *mut PROCESS_INFORMATION,
) -> i32 {
    let real = real!(CreateProcessW);
    // SAFETY: the caller's contract is CreateProcessW's; only the flags and the environment
    // change.
    unsafe {
        follow(flags, env, info, |flags, env| {
            real(
                app, cmd, pattr, tattr, inherit, flags, env, dir, startup, info,
            )
        })
    }
}

/// `CreateProcessA`: as [`create_process_w`].
///
/// # Safety
///
/// As `CreateProcessA`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn create_process_a(
    app: *const u8,
    cmd: *mut u8,
    pattr: *const c_void,
    tattr: *const c_void,
    inherit: i32,
    flags: u32,
    env: *const c_void,
    dir: *const u8,
    startup: *const c_void,
    info: *mut PROCESS_INFORMATION,
) -> i32 {
    let real = real!(CreateProcessA);
    // SAFETY: as in create_process_w.
    unsafe {
        follow(flags, env, info, |flags, env| {
            real(
                app, cmd, pattr, tattr, inherit, flags, env, dir, startup, info,
            )
        })
    }
}

/// `CreateProcessAsUserW`: as [`create_process_w`] (the child runs as the token's user, in the
/// session this process is of).
///
/// # Safety
///
/// As `CreateProcessAsUserW`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn create_process_as_user_w(
    token: HANDLE,
    app: *const u16,
    cmd: *mut u16,
    pattr: *const c_void,
    tattr: *const c_void,
    inherit: i32,
    flags: u32,
    env: *const c_void,
    dir: *const u16,
    startup: *const c_void,
    info: *mut PROCESS_INFORMATION,
) -> i32 {
    let real = real!(CreateProcessAsUserW);
    // SAFETY: as in create_process_w.
    unsafe {
        follow(flags, env, info, |flags, env| {
            real(
                token, app, cmd, pattr, tattr, inherit, flags, env, dir, startup, info,
            )
        })
    }
}

/// `CreateProcessAsUserA`: as [`create_process_as_user_w`].
///
/// # Safety
///
/// As `CreateProcessAsUserA`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "system" fn create_process_as_user_a(
    token: HANDLE,
    app: *const u8,
    cmd: *mut u8,
    pattr: *const c_void,
    tattr: *const c_void,
    inherit: i32,
    flags: u32,
    env: *const c_void,
    dir: *const u8,
    startup: *const c_void,
    info: *mut PROCESS_INFORMATION,
) -> i32 {
    let real = real!(CreateProcessAsUserA);
    // SAFETY: as in create_process_w.
    unsafe {
        follow(flags, env, info, |flags, env| {
            real(
                token, app, cmd, pattr, tattr, inherit, flags, env, dir, startup, info,
            )
        })
    }
}

/// The body of the four hooks: `create(flags, environment)` calls the real function with the
/// program's other arguments.
///
/// # Safety
///
/// `env` and `info` are the program's arguments to a `CreateProcess*` function (`env` NULL or an
/// environment block of the kind `flags` says; `info` NULL or writable), and `create` calls it.
unsafe fn follow(
    flags: u32,
    env: *const c_void,
    info: *mut PROCESS_INFORMATION,
    create: impl FnOnce(u32, *const c_void) -> i32,
) -> i32 {
    let depth = Depth::enter();
    // NULL info: the function fails on its own.
    let Some(carry) = carry().filter(|_| depth.outermost() && !info.is_null()) else {
        return create(flags, env);
    };
    if flags & (DEBUG_PROCESS | DEBUG_ONLY_THIS_PROCESS) != 0 {
        // The creating thread is the child's debugger: the child's threads stop at every debug
        // event until that thread answers, and it is waiting here for the DLL to load in the
        // child. Refused before anything is created.
        say(
            "ipvirt: a child to be debugged by its creator (DEBUG_PROCESS) cannot be given the \
             layer, so it is not started; attach the debugger to the running program instead",
        );
        // SAFETY: no preconditions.
        unsafe { SetLastError(ERROR_NOT_SUPPORTED) };
        return 0;
    }
    // SAFETY: the caller's contract: env is NULL or a block of the kind flags says.
    let block = unsafe { child_environment(env, flags & CREATE_UNICODE_ENVIRONMENT != 0) };
    let block = with_session(block, carry);
    let mut ours = flags | CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
    if carry.job {
        ours &= !CREATE_BREAKAWAY_FROM_JOB;
    }
    if create(ours, block.as_ptr().cast()) == 0 {
        return 0;
    }
    // SAFETY: the call succeeded: it filled info (checked non-NULL above).
    let pi = unsafe { *info };
    match virtualize(carry, pi.hProcess) {
        Ok(()) => {
            if carry.debug {
                say(&format!(
                    "ipvirt: child process {}: the layer is loaded",
                    pi.dwProcessId
                ));
            }
            if flags & CREATE_SUSPENDED == 0 {
                // SAFETY: the child's first thread, from the call above.
                unsafe { ResumeThread(pi.hThread) };
            }
            1
        }
        Err((code, why)) => {
            say(&format!(
                "ipvirt: child process {} not started: {why}",
                pi.dwProcessId
            ));
            // SAFETY: the handles the call returned, closed once; the child has not run. The
            // program gets a failed call and no handles.
            unsafe {
                TerminateProcess(pi.hProcess, code);
                CloseHandle(pi.hThread);
                CloseHandle(pi.hProcess);
                info.write(std::mem::zeroed());
                SetLastError(code);
            }
            0
        }
    }
}

/// Loads the DLL into the suspended child and initialises it; `Err((error, reason))` when it
/// cannot be virtualized.
fn virtualize(carry: &Carry, process: HANDLE) -> Result<(), (u32, String)> {
    // SAFETY: the child was created suspended by the call this hook made; its handle from
    // CreateProcess has every right, and stays open here.
    let target = unsafe { Target::new(process) };
    match target.is_32bit() {
        Ok(false) => {}
        Ok(true) => {
            return Err((
                ERROR_NOT_SUPPORTED,
                "it is a 32-bit program, and the layer's DLL is 64-bit".into(),
            ));
        }
        Err(e) => return Err((ERROR_DLL_INIT_FAILED, e)),
    }
    match target.inject(&carry.dll, carry.init_offset) {
        Ok(0) => Ok(()),
        Ok(code) => Err((
            ERROR_DLL_INIT_FAILED,
            format!("its ipvirt_init failed with {code} (1 configuration, 2 detours)"),
        )),
        Err(e) => Err((ERROR_DLL_INIT_FAILED, e)),
    }
}

/// The entries (`NAME=VALUE`) of the environment block `env`, or of this process's environment
/// when it is NULL. `wide`: the block is UTF-16 (`CREATE_UNICODE_ENVIRONMENT`), else in the ANSI
/// code page.
///
/// # Safety
///
/// `env` is NULL or a block of that kind, ended by two NULs.
pub(crate) unsafe fn child_environment(env: *const c_void, wide: bool) -> Vec<Vec<u16>> {
    if env.is_null() {
        // SAFETY: no preconditions; the block is freed below.
        let own = unsafe { GetEnvironmentStringsW() };
        if own.is_null() {
            return Vec::new();
        }
        // SAFETY: Windows' block, ended by two NULs.
        let entries = unsafe { wide_entries(own) };
        // SAFETY: from GetEnvironmentStringsW, freed once.
        unsafe { FreeEnvironmentStringsW(own) };
        return entries;
    }
    if wide {
        // SAFETY: the caller's contract.
        return unsafe { wide_entries(env.cast()) };
    }
    let mut out = Vec::new();
    let mut p = env.cast::<u8>();
    loop {
        // SAFETY: inside the block: every entry ends with a NUL, the block with an empty one.
        let n = unsafe { strlen(p) };
        if n == 0 {
            return out;
        }
        let len = i32::try_from(n).unwrap_or(i32::MAX);
        // SAFETY: p holds n bytes; a NULL output asks for the length.
        let units = unsafe { MultiByteToWideChar(CP_ACP, 0, p, len, ptr::null_mut(), 0) };
        let mut entry = vec![0u16; usize::try_from(units).unwrap_or(0)];
        // SAFETY: entry holds units UTF-16 units.
        unsafe { MultiByteToWideChar(CP_ACP, 0, p, len, entry.as_mut_ptr(), units) };
        out.push(entry);
        // SAFETY: past the entry's NUL, still inside the block.
        p = unsafe { p.add(n + 1) };
    }
}

/// The length of the NUL-terminated string at `p`.
///
/// # Safety
///
/// `p` points at a NUL-terminated string.
unsafe fn strlen(p: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller's contract: every byte up to the NUL is readable.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

/// The entries of a UTF-16 environment block.
///
/// # Safety
///
/// `p` points at a block of NUL-terminated UTF-16 strings ended by an empty one.
unsafe fn wide_entries(mut p: *const u16) -> Vec<Vec<u16>> {
    let mut out = Vec::new();
    loop {
        let mut n = 0;
        // SAFETY: the caller's contract.
        while unsafe { *p.add(n) } != 0 {
            n += 1;
        }
        if n == 0 {
            return out;
        }
        // SAFETY: p holds n units.
        out.push(unsafe { std::slice::from_raw_parts(p, n) }.to_vec());
        // SAFETY: past the entry's NUL, still inside the block.
        p = unsafe { p.add(n + 1) };
    }
}

/// The name of an entry (`NAME=VALUE`; a name may start with `=`, as `=C:` does), upper-cased:
/// Windows compares names without case.
fn name_of(entry: &[u16]) -> String {
    let end = entry
        .iter()
        .skip(1)
        .position(|&c| c == u16::from(b'='))
        .map_or(entry.len(), |i| i + 1);
    String::from_utf16_lossy(entry.get(..end).unwrap_or_default()).to_uppercase()
}

/// The UTF-16 block for the child: `entries` with the session's variables set as this process got
/// them (and those it did not get removed), sorted by name as Windows keeps environments, ended by
/// two NULs.
pub(crate) fn with_session(mut entries: Vec<Vec<u16>>, carry: &Carry) -> Vec<u16> {
    entries.retain(|e| {
        let name = name_of(e);
        !CARRIED.iter().any(|c| name == *c)
    });
    for (name, value) in &carry.vars {
        if let Some(v) = value {
            let mut e: Vec<u16> = OsString::from(format!("{name}=")).encode_wide().collect();
            e.extend(v.encode_wide());
            entries.push(e);
        }
    }
    entries.sort_by_cached_key(|e| name_of(e));
    let mut block: Vec<u16> = Vec::new();
    for e in entries {
        block.extend(e);
        block.push(0);
    }
    if block.is_empty() {
        block.push(0);
    }
    block.push(0);
    block
}

/// This DLL's path and the offset of its `ipvirt_init` from its base: what a child is given.
pub(crate) fn own_dll() -> Result<(PathBuf, usize), String> {
    let init = crate::ipvirt_init as *const () as usize;
    let mut module: HMODULE = ptr::null_mut();
    // SAFETY: FROM_ADDRESS takes an address inside the module for the name; module is a valid
    // out pointer; UNCHANGED_REFCOUNT: nothing to release.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            init as *const u16,
            &mut module,
        )
    };
    if ok == 0 {
        return Err("cannot find the hook DLL's own module".into());
    }
    let mut buf = vec![0u16; 32 * 1024];
    // SAFETY: buf holds the length given.
    let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) } as usize;
    if n == 0 || n >= buf.len() {
        return Err("cannot read the hook DLL's own path".into());
    }
    let path = PathBuf::from(OsString::from_wide(buf.get(..n).unwrap_or_default()));
    Ok((path, init - module as usize))
}
