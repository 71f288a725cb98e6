//! What Linux's `/proc` and cgroup2 tell about a lease's holders.
//!
//! A process holder is named by its pid and start time, so a recycled pid is not mistaken for it;
//! a token holder is every process that carries the token in its environment
//! (`IPVIRT_LEASE=<token>`: a command and everything it starts, daemons that left the process
//! group included; processes whose environment the caller may not read, another user's without
//! root, are not seen); a cgroup holder lives while the cgroup has processes.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::TOKEN_VAR;

/// This boot's id: holders recorded under another boot are gone (the host restarted).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of process `pid` (clock ticks after boot, `/proc/PID/stat` field 22), or `None`
/// when there is no such process (or it is a zombie: it holds nothing any more).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: parse after the last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); the start time is field 22.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// Whether the cgroup `dir` has processes (`populated 1` in its `cgroup.events`). A cgroup that
/// is gone has none; one that cannot be read is taken to have some (never give away what may
/// still be in use).
pub fn populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(s) => s.lines().any(|l| l == "populated 1"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => true,
    }
}

/// Job objects are a Windows notion: none has processes here.
pub fn job_active(_name: &str) -> bool {
    false
}

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags: a kernel thread, which has no environment at all.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether `pid` is a live user process (not a zombie, not a kernel thread).
fn live_user_process(pid: &str) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    let rest = String::from_utf8_lossy(stat.get(close + 1..).unwrap_or(&[])).into_owned();
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().unwrap_or("Z");
    // Field 9 (flags); `fields` is at field 4 now.
    let flags: u64 = fields.nth(9 - 4).and_then(|f| f.parse().ok()).unwrap_or(0);
    state != "Z" && state != "X" && flags & PF_KTHREAD == 0
}

/// The tokens among `wanted` that some live process carries in its environment.
///
/// A process in the middle of `execve` shows an empty environment for a moment (the new image's
/// has not been laid out yet): a live user process whose environment reads empty is read again a
/// few times, a millisecond apart, before it is taken to carry nothing — a daemon that a command
/// starts just before it exits must keep the session's lease.
pub fn tokens_in_use(wanted: &HashSet<String>) -> HashSet<String> {
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return found;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let prefix = format!("{TOKEN_VAR}=");
    let scan = |env: &[u8], found: &mut HashSet<String>| {
        for var in env.split(|&b| b == 0) {
            if let Some(value) = var.strip_prefix(prefix.as_bytes()) {
                let value = OsStr::from_bytes(value).to_string_lossy();
                if wanted.contains(value.as_ref()) {
                    found.insert(value.into_owned());
                }
            }
        }
    };
    let mut empty = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // A zombie's environment reads as empty, so a finished process never counts.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.is_empty() {
            empty.push(name.to_string_lossy().into_owned());
            continue;
        }
        scan(&env, &mut found);
        if found.len() == wanted.len() {
            return found;
        }
    }
    // Read the empty ones again together, for at most about 50 ms in all.
    let mut pending: Vec<String> = empty.into_iter().filter(|p| live_user_process(p)).collect();
    for _ in 0..50 {
        if pending.is_empty() || found.len() == wanted.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        pending.retain(|pid| match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(env) if !env.is_empty() => {
                scan(&env, &mut found);
                false
            }
            Ok(_) => live_user_process(pid),
            Err(_) => false,
        });
    }
    found
}
