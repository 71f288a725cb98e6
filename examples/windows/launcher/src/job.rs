//! The session's processes as a job object: the lease's holder.
//!
//! The launcher puts the program in a named job object before it runs; Windows puts every process
//! the program creates in the same job (the hook makes sure none breaks away), and their children
//! too. The lease book records the job ([`Holder::Job`](ipvirt_host::lease_book::Holder::Job)),
//! which holds the session's lease while it has processes — after the program ended (a daemon it
//! started), and after the launcher was killed. Every process with the hook keeps a handle of the
//! job open (`IPVIRT_JOB` names it), so the name lives while any of them runs: Windows removes a
//! name when its last handle is closed.
//!
//! The name is `Global\ipvirt-PID-START` (this launcher's id and start time: unique on the host),
//! seen by every launcher of every Windows session. Creating a global name needs
//! `SeCreateGlobalPrivilege` (administrators and services have it); without it the job is
//! `Local\ipvirt-SESSION-PID-START`, in this Windows session's namespace, and a launcher in another
//! Windows session that reads the book keeps that lease rather than guess
//! (`ipvirt_host::holder::job_active`).

use std::ptr;

use ipvirt_host::holder;
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE};
use windows_sys::Win32::System::JobObjects::{AssignProcessToJobObject, CreateJobObjectW};
use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;

use crate::start::wide;

/// A named job object, closed when dropped (the processes in it keep running).
pub(crate) struct Job {
    handle: HANDLE,
    name: String,
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}

impl Job {
    /// A new job named after this launcher, global when Windows lets this process make a global
    /// name, local to its Windows session otherwise.
    pub(crate) fn create() -> Result<Job, String> {
        let pid = std::process::id();
        let start = holder::start_time(pid).ok_or("cannot read this launcher's process times")?;
        let global = format!("Global\\ipvirt-{pid}-{start}");
        if let Some(job) = Job::named(&global) {
            return Ok(job);
        }
        let mut session = 0u32;
        // SAFETY: session is a valid out pointer.
        if unsafe { ProcessIdToSessionId(pid, &mut session) } == 0 {
            return Err("ProcessIdToSessionId failed".into());
        }
        let local = format!("Local\\ipvirt-{session}-{pid}-{start}");
        Job::named(&local).ok_or_else(|| {
            format!(
                "cannot create the session's job object {local}: {}",
                std::io::Error::last_os_error()
            )
        })
    }

    /// A new job object called `name`; `None` when it cannot be made, or exists already (another
    /// process made it: not ours to use).
    fn named(name: &str) -> Option<Job> {
        let w = wide(name.as_ref());
        // SAFETY: w is NUL-terminated; default security.
        let handle = unsafe { CreateJobObjectW(ptr::null(), w.as_ptr()) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: no preconditions; read right after the call.
        if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
            // SAFETY: our handle, closed once.
            unsafe { CloseHandle(handle) };
            return None;
        }
        Some(Job {
            handle,
            name: name.to_owned(),
        })
    }

    /// The job's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Puts `process` (suspended: it has created nothing yet) in the job.
    pub(crate) fn assign(&self, process: HANDLE) -> Result<(), String> {
        // SAFETY: both handles are valid.
        if unsafe { AssignProcessToJobObject(self.handle, process) } == 0 {
            return Err(format!(
                "cannot put the program in the session's job object {}: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}
