//! Whether a lease's holder still lives, asked of the platform (one switch; both sides have the
//! same function names, so the lease book carries no `cfg`).
//!
//! - [`start_time`]: a process's start, to tell it from a later process that reuses its id
//!   (Linux: clock ticks after boot, `/proc/PID/stat` field 22; Windows: its creation time,
//!   `GetProcessTimes`).
//! - [`tokens_in_use`]: the tokens some live process carries in its environment
//!   (`IPVIRT_LEASE=<token>`; Linux; none elsewhere).
//! - [`populated`]: whether a cgroup has processes (Linux; never elsewhere).
//! - [`job_active`]: whether a named job object has processes (Windows; never elsewhere).
//! - [`boot_id`]: this boot's identity (Linux; empty elsewhere, where start times tell boots
//!   apart).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{boot_id, job_active, populated, start_time, tokens_in_use};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{boot_id, job_active, populated, start_time, tokens_in_use};

/// The environment variable that marks a session's processes on Linux (a [`crate::lease_book`]
/// token holder).
pub const TOKEN_VAR: &str = "IPVIRT_LEASE";
