//! Starting the command suspended (the hook DLL is loaded into it by `ipvirt_winhook::inject`),
//! and letting it run.

use std::ptr;

use ipvirt_winhook::inject::Target;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, CreateProcessW, PROCESS_INFORMATION, ResumeThread, STARTUPINFOW,
    TerminateProcess,
};

/// A NUL-terminated UTF-16 copy of `s`.
pub(crate) fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    s.encode_wide().chain(Some(0)).collect()
}

/// One argument quoted for a Windows command line, as `CommandLineToArgvW` and the C runtime read
/// it back: quotes around arguments with spaces, tabs or quotes (or empty ones), backslashes
/// doubled before a quote.
pub(crate) fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\u{b}', '"']) {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// A started, still suspended, process. Dropped without [`Suspended::resume`], it is terminated.
pub(crate) struct Suspended {
    pub(crate) process: HANDLE,
    thread: HANDLE,
    resumed: bool,
}

impl Drop for Suspended {
    fn drop(&mut self) {
        // SAFETY: the handles are ours, closed once.
        unsafe {
            if !self.resumed {
                TerminateProcess(self.process, 2);
            }
            CloseHandle(self.thread);
            CloseHandle(self.process);
        }
    }
}

impl Suspended {
    /// Starts `command` (program and arguments) suspended, inheriting this process's environment,
    /// standard handles and directory.
    pub(crate) fn start(command: &[String]) -> Result<Suspended, String> {
        let line: Vec<String> = command.iter().map(|a| quote(a)).collect();
        let mut line = wide(line.join(" ").as_ref());
        // SAFETY: zeroed STARTUPINFOW/PROCESS_INFORMATION are valid initial values.
        let mut si: STARTUPINFOW = unsafe { std::mem::zeroed() };
        si.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
        // SAFETY: as above.
        let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: line is a writable NUL-terminated command line; the out structures are valid.
        let ok = unsafe {
            CreateProcessW(
                ptr::null(),
                line.as_mut_ptr(),
                ptr::null(),
                ptr::null(),
                1,
                CREATE_SUSPENDED,
                ptr::null(),
                ptr::null(),
                &si,
                &mut pi,
            )
        };
        if ok == 0 {
            return Err(format!(
                "cannot start {:?}: {}",
                command.first().map(String::as_str).unwrap_or(""),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Suspended {
            process: pi.hProcess,
            thread: pi.hThread,
            resumed: false,
        })
    }

    /// The process, to load the DLL into.
    pub(crate) fn target(&self) -> Target {
        // SAFETY: the process was created suspended and is not resumed before the DLL is loaded
        // (the launcher calls resume afterwards); CreateProcessW's handle has every right; it
        // stays open while self lives.
        unsafe { Target::new(self.process) }
    }

    /// Lets the program run.
    pub(crate) fn resume(&mut self) -> Result<(), String> {
        // SAFETY: our thread handle.
        if unsafe { ResumeThread(self.thread) } == u32::MAX {
            return Err(format!(
                "cannot resume the program: {}",
                std::io::Error::last_os_error()
            ));
        }
        self.resumed = true;
        Ok(())
    }
}
