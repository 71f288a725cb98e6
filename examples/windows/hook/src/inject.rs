//! Loading the hook DLL into a process that is still suspended and calling its `ipvirt_init`:
//! what the launcher does to the program it starts, and what the hook does to every process a
//! hooked process creates (`calls/process.rs`).
//!
//! `LoadLibraryW` runs on a thread of the target made with `CreateRemoteThread` (kernel32 is mapped
//! at the same address in every process of a boot, so this process's `LoadLibraryW` is the
//! target's); the DLL's base in the target is found among its modules, and `ipvirt_init` is called
//! at the same offset from it on a second thread. Both are waited for, with a deadline.

use std::ffi::{OsStr, c_void};
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, HMODULE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Diagnostics::Debug::WriteProcessMemory;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress, LoadLibraryW};
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_READWRITE, VirtualAllocEx, VirtualFreeEx,
};
use windows_sys::Win32::System::ProcessStatus::{
    EnumProcessModulesEx, GetModuleFileNameExW, LIST_MODULES_ALL,
};
use windows_sys::Win32::System::Threading::{
    CreateRemoteThread, GetExitCodeThread, IsWow64Process, LPTHREAD_START_ROUTINE,
    WaitForSingleObject,
};

/// How long the loader thread and `ipvirt_init` may take (reading a policy and patching a few
/// functions: milliseconds; Wine's first start of a DLL: a second or two).
const DEADLINE_MS: u32 = 60_000;

/// A NUL-terminated UTF-16 copy of `s`.
fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

/// A process to load the DLL into, by a handle its owner keeps (and closes).
#[derive(Debug)]
pub struct Target {
    process: HANDLE,
}

impl Target {
    /// The process of `process`.
    ///
    /// # Safety
    ///
    /// `process` is a handle of a process whose threads have not run yet (created with
    /// `CREATE_SUSPENDED`), with the rights `CreateRemoteThread`, `VirtualAllocEx`,
    /// `WriteProcessMemory` and `EnumProcessModulesEx` need (a handle from `CreateProcess` has
    /// them), and it stays open while the `Target` is used.
    pub unsafe fn new(process: HANDLE) -> Target {
        Target { process }
    }

    /// Whether the process runs 32-bit code on 64-bit Windows (WOW64): this 64-bit DLL cannot be
    /// loaded into it.
    ///
    /// # Errors
    ///
    /// `IsWow64Process` fails.
    pub fn is_32bit(&self) -> Result<bool, String> {
        let mut wow = 0;
        // SAFETY: a valid process handle; wow is a valid out pointer.
        if unsafe { IsWow64Process(self.process, &mut wow) } == 0 {
            return Err(format!(
                "IsWow64Process: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(wow != 0)
    }

    /// Runs `start(param)` on a new thread of the process and returns its exit code.
    fn call(&self, start: usize, param: *const c_void, what: &str) -> Result<u32, String> {
        // SAFETY: start is the address of a function of the LPTHREAD_START_ROUTINE shape in the
        // target process (LoadLibraryW, or the DLL's ipvirt_init).
        let routine: LPTHREAD_START_ROUTINE = Some(unsafe {
            std::mem::transmute::<usize, unsafe extern "system" fn(*mut c_void) -> u32>(start)
        });
        // SAFETY: a valid process handle; param is valid in the target process.
        let th = unsafe {
            CreateRemoteThread(
                self.process,
                ptr::null(),
                0,
                routine,
                param,
                0,
                ptr::null_mut(),
            )
        };
        if th.is_null() {
            return Err(format!(
                "{what}: cannot start a thread in the process: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: th is our thread handle.
        let waited = unsafe { WaitForSingleObject(th, DEADLINE_MS) };
        let mut code = 0u32;
        // SAFETY: as above.
        let got = unsafe { GetExitCodeThread(th, &mut code) };
        // SAFETY: closed once.
        unsafe { CloseHandle(th) };
        if waited != WAIT_OBJECT_0 {
            return Err(format!("{what}: did not finish within {DEADLINE_MS} ms"));
        }
        if got == 0 {
            return Err(format!("{what}: no exit code"));
        }
        Ok(code)
    }

    /// Loads `dll` into the process (`LoadLibraryW` on a remote thread) and calls its export
    /// `ipvirt_init`, `init_offset` bytes from the DLL's base ([`init_offset`]). `Ok(code)`:
    /// `ipvirt_init`'s answer (0 = ready).
    ///
    /// # Errors
    ///
    /// The DLL cannot be loaded into the process, or a thread of it did not finish in time.
    pub fn inject(&self, dll: &Path, init_offset: usize) -> Result<u32, String> {
        let path = wide(dll.as_os_str());
        let bytes = path.len() * 2;
        // SAFETY: a valid process handle.
        let mem = unsafe {
            VirtualAllocEx(
                self.process,
                ptr::null(),
                bytes,
                MEM_COMMIT | MEM_RESERVE,
                PAGE_READWRITE,
            )
        };
        if mem.is_null() {
            return Err(format!(
                "cannot allocate memory in the process: {}",
                std::io::Error::last_os_error()
            ));
        }
        let result = self.load_and_init(dll, &path, mem, init_offset);
        // SAFETY: mem was allocated above in that process; freed once.
        unsafe { VirtualFreeEx(self.process, mem, 0, MEM_RELEASE) };
        result
    }

    fn load_and_init(
        &self,
        dll: &Path,
        path: &[u16],
        mem: *mut c_void,
        init_offset: usize,
    ) -> Result<u32, String> {
        let mut written = 0usize;
        // SAFETY: mem holds path.len() * 2 bytes in the target; path is ours.
        let ok = unsafe {
            WriteProcessMemory(
                self.process,
                mem,
                path.as_ptr().cast(),
                path.len() * 2,
                &mut written,
            )
        };
        if ok == 0 || written != path.len() * 2 {
            return Err(format!(
                "cannot write the DLL path into the process: {}",
                std::io::Error::last_os_error()
            ));
        }
        // kernel32 is mapped at the same address in every process of a boot.
        let k32 = wide("kernel32.dll".as_ref());
        // SAFETY: k32 is NUL-terminated; kernel32 is loaded in every process.
        let k32 = unsafe { GetModuleHandleW(k32.as_ptr()) };
        // SAFETY: a loaded module and a NUL-terminated name.
        let load = unsafe { GetProcAddress(k32, c"LoadLibraryW".as_ptr().cast()) }
            .ok_or("kernel32 has no LoadLibraryW")?;
        let low = self.call(load as usize, mem, "loading the hook DLL")?;
        if low == 0 {
            return Err(format!(
                "the process could not load {} (is it a DLL for this architecture, with its \
                 dependencies present?)",
                dll.display()
            ));
        }
        let base = self.module_base(dll, low)?;
        let init = base + init_offset;
        self.call(init, ptr::null(), "ipvirt_init")
    }

    /// The base address of `dll` in the process (the loader thread's exit code is its low 32
    /// bits).
    fn module_base(&self, dll: &Path, low: u32) -> Result<usize, String> {
        let mut mods: Vec<HMODULE> = vec![ptr::null_mut(); 1024];
        let mut needed = 0u32;
        // SAFETY: mods holds the byte count given.
        let ok = unsafe {
            EnumProcessModulesEx(
                self.process,
                mods.as_mut_ptr(),
                (mods.len() * std::mem::size_of::<HMODULE>()) as u32,
                &mut needed,
                LIST_MODULES_ALL,
            )
        };
        if ok == 0 {
            return Err(format!(
                "cannot list the process's modules: {}",
                std::io::Error::last_os_error()
            ));
        }
        let n = (needed as usize / std::mem::size_of::<HMODULE>()).min(mods.len());
        let want = dll
            .file_name()
            .map(|f| f.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        for &m in mods.get(..n).unwrap_or(&[]) {
            if (m as usize) as u32 != low {
                continue;
            }
            let mut name = vec![0u16; 1024];
            // SAFETY: name holds the length given.
            let len = unsafe {
                GetModuleFileNameExW(self.process, m, name.as_mut_ptr(), name.len() as u32)
            } as usize;
            let name = String::from_utf16_lossy(name.get(..len).unwrap_or(&[])).to_lowercase();
            if name.rsplit(['\\', '/']).next() == Some(want.as_str()) {
                return Ok(m as usize);
            }
        }
        Err(format!(
            "{} is loaded but not among the process's modules",
            dll.display()
        ))
    }
}

/// The offset of `ipvirt_init` from the DLL's base, read by loading the DLL into this process (its
/// `DllMain` does nothing; `ipvirt_init` is not called).
///
/// # Errors
///
/// The DLL cannot be loaded or does not export `ipvirt_init`.
pub fn init_offset(dll: &Path) -> Result<usize, String> {
    let path = wide(dll.as_os_str());
    // SAFETY: path is NUL-terminated.
    let h = unsafe { LoadLibraryW(path.as_ptr()) };
    if h.is_null() {
        return Err(format!(
            "cannot load {}: {}",
            dll.display(),
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: h is loaded; the name is NUL-terminated.
    let f = unsafe { GetProcAddress(h, c"ipvirt_init".as_ptr().cast()) }
        .ok_or_else(|| format!("{} does not export ipvirt_init", dll.display()))?;
    Ok(f as usize - h as usize)
}
