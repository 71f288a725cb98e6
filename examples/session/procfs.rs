//! What the launcher asks Linux's `/proc` to tell whether a lease's holder still lives.
//!
//! A holder is the launcher (its pid and start time, so a recycled pid is not mistaken for it) and
//! every process that carries the launcher's token in its environment (`IPVIRT_LEASE=<token>`: the
//! command and everything it starts, daemons that left the process group included). Processes
//! whose environment this launcher may not read (another user's, without root) are not seen.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The environment variable that marks a session's processes.
pub(crate) const TOKEN_VAR: &str = "IPVIRT_LEASE";

/// This boot's id: holders recorded under another boot are gone (the host restarted).
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of process `pid` (clock ticks after boot, `/proc/PID/stat` field 22), or `None`
/// when there is no such process (or it is a zombie: it holds nothing any more).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
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

/// Whether the process `pid` that started at `start` still runs.
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// The tokens among `wanted` that some live process carries in its environment.
pub(crate) fn tokens_in_use(wanted: &HashSet<String>) -> HashSet<String> {
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return found;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let prefix = format!("{TOKEN_VAR}=");
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // A zombie's environment reads as empty, so a finished process never counts.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        for var in env.split(|&b| b == 0) {
            if let Some(value) = var.strip_prefix(prefix.as_bytes()) {
                let value = OsStr::from_bytes(value).to_string_lossy();
                if wanted.contains(value.as_ref()) {
                    found.insert(value.into_owned());
                }
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}
