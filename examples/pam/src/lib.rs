//! `pam_ipvirt.so`: a PAM `session` module that makes every login a session of the `ipvirt`
//! service (SPEC §11), before the user's shell or desktop starts.
//!
//! ```text
//! # /etc/pam.d/sshd (or common-session), after pam_systemd where there is one:
//! session  required  pam_ipvirt.so
//! ```
//!
//! - `pam_open_session`: asks the service (on its control socket) to make the calling process —
//!   the login's, whose children are the user's shell and everything it starts — a session. The
//!   service answers with the session's number and addresses, which the module puts in the
//!   login's environment for information (`IPVIRT_SESSION`, `IPVIRT_VIP`; with the `LD_PRELOAD`
//!   layer also `LD_PRELOAD` and `IPVIRT_POLICY`). A console login (policy `[sessions]`) is left
//!   alone (`PAM_IGNORE`).
//! - `pam_close_session`: tells the service the login ended (`IPVIRT_SESSION` from the PAM
//!   environment). The session itself ends when its last process has.
//! - When the service cannot make the session (it does not run, refuses, fails), the module
//!   writes one line to the auth log (`pam_syslog`) naming the user and why, and returns
//!   `PAM_SESSION_ERR`: with `required` the login fails closed; with `optional` it proceeds,
//!   unvirtualized.
//!
//! Arguments: `socket=PATH` (default `/run/ipvirt/control.sock`), `timeout=SECS` (default 15:
//! longer than the service's wait for a DHCP lease), `debug` (one line per call in the auth log).
//!
//! The module is a thin client: it decides nothing, holds no state and links only libpam; the
//! declarations of the few libpam functions it calls are written here (no PAM crate is needed,
//! and the GPL one is avoided).

#![cfg(target_os = "linux")]
// The PAM entry points and libpam's functions: FFI by nature.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::time::Duration;

use ipvirt_host::control::{self, Request, Response};

/// libpam's handle (opaque).
#[repr(C)]
#[derive(Debug)]
pub struct PamHandle {
    _private: [u8; 0],
}

const PAM_SUCCESS: c_int = 0;
const PAM_SESSION_ERR: c_int = 14;
const PAM_IGNORE: c_int = 25;

const PAM_SERVICE: c_int = 1;
const PAM_USER: c_int = 2;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;

const LOG_ERR: c_int = 3;
const LOG_NOTICE: c_int = 5;
const LOG_INFO: c_int = 6;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// The module's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    socket: PathBuf,
    timeout: Duration,
    debug: bool,
}

impl Args {
    /// Reads `socket=`, `timeout=` and `debug`; an unknown argument is an error naming it.
    fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Args, String> {
        let mut a = Args {
            socket: PathBuf::from(control::DEFAULT_SOCKET),
            timeout: Duration::from_secs(15),
            debug: false,
        };
        for arg in args {
            if let Some(p) = arg.strip_prefix("socket=") {
                if p.is_empty() {
                    return Err("socket= needs a path".into());
                }
                a.socket = PathBuf::from(p);
            } else if let Some(t) = arg.strip_prefix("timeout=") {
                let secs: u64 = t
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| {
                        format!("timeout={t}: not a number of seconds from 1 to 3600")
                    })?;
                a.timeout = Duration::from_secs(secs);
            } else if arg == "debug" {
                a.debug = true;
            } else {
                return Err(format!(
                    "unknown argument {arg:?} (socket=PATH, timeout=SECS, debug)"
                ));
            }
        }
        Ok(a)
    }
}

/// The module's view of one PAM call.
struct Call {
    pamh: *mut PamHandle,
}

impl Call {
    /// One line in the auth log (the message is passed as an argument, never as the format).
    fn log(&self, priority: c_int, msg: &str) {
        let Ok(c) = CString::new(msg.replace('\0', " ")) else {
            return;
        };
        // SAFETY: pamh is the handle PAM gave this call; "%s" with one C string.
        unsafe { pam_syslog(self.pamh, priority, c"%s".as_ptr(), c.as_ptr()) };
    }

    /// A string item (`PAM_USER`, `PAM_TTY`…), if set.
    fn item(&self, item: c_int) -> Option<String> {
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: pamh is valid; p is a valid out pointer; libpam keeps the string alive.
        let r = unsafe { pam_get_item(self.pamh, item, &mut p) };
        if r != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated C strings owned by libpam.
        let s = unsafe { CStr::from_ptr(p.cast::<c_char>()) };
        Some(s.to_string_lossy().into_owned())
    }

    fn putenv(&self, name: &str, value: &str) -> bool {
        let Ok(c) = CString::new(format!("{name}={value}")) else {
            return false;
        };
        // SAFETY: pamh is valid; libpam copies the string.
        unsafe { pam_putenv(self.pamh, c.as_ptr()) == PAM_SUCCESS }
    }

    fn getenv(&self, name: &str) -> Option<String> {
        let c = CString::new(name).ok()?;
        // SAFETY: pamh is valid; the result is NULL or a string libpam owns.
        let p = unsafe { pam_getenv(self.pamh, c.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: as above.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// The module's arguments as strings.
///
/// # Safety
///
/// `argv` holds `argc` NUL-terminated strings (what PAM passes).
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let n = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..n)
        .filter_map(|i| {
            // SAFETY: argv has argc entries.
            let p = unsafe { *argv.add(i) };
            // SAFETY: each entry is a NUL-terminated string, or NULL.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect()
}

fn open(call: &Call, args: &[String]) -> c_int {
    let args = match Args::parse(args.iter().map(String::as_str)) {
        Ok(a) => a,
        Err(e) => {
            call.log(
                LOG_ERR,
                &format!("pam_ipvirt: {e}; the login is not virtualized"),
            );
            return PAM_SESSION_ERR;
        }
    };
    let Some(user) = call.item(PAM_USER) else {
        call.log(
            LOG_ERR,
            "pam_ipvirt: no PAM_USER; the login is not virtualized",
        );
        return PAM_SESSION_ERR;
    };
    let request = Request::Open {
        user: user.clone(),
        service: call.item(PAM_SERVICE),
        tty: call.item(PAM_TTY),
        rhost: call.item(PAM_RHOST),
        id: None,
    };
    let not = |why: &str| {
        call.log(
            LOG_ERR,
            &format!("pam_ipvirt: the login of {user} is not virtualized: {why}"),
        );
        PAM_SESSION_ERR
    };
    match control::call(&args.socket, &request, args.timeout) {
        Ok(Response::Opened {
            session,
            environment,
        }) => {
            for (k, v) in &environment {
                if !call.putenv(k, v) {
                    call.log(
                        LOG_ERR,
                        &format!("pam_ipvirt: could not set {k} in the login's environment"),
                    );
                }
            }
            if args.debug {
                call.log(
                    LOG_INFO,
                    &format!(
                        "pam_ipvirt: {user} is in session {} (loopback {}{})",
                        session.number,
                        session.loopback,
                        session
                            .vip
                            .map_or(String::new(), |v| format!(", virtual IP {v}"))
                    ),
                );
            }
            PAM_SUCCESS
        }
        Ok(Response::Console { reason }) => {
            if args.debug {
                call.log(LOG_INFO, &format!("pam_ipvirt: {user}: {reason}"));
            }
            PAM_IGNORE
        }
        Ok(Response::Refused { error }) => not(&format!("the service refused: {error}")),
        Ok(Response::Failed { error }) => not(&format!("the service failed: {error}")),
        Ok(other) => not(&format!("the service answered {other:?}")),
        Err(e) => not(&e.to_string()),
    }
}

fn close(call: &Call, args: &[String]) -> c_int {
    let Ok(args) = Args::parse(args.iter().map(String::as_str)) else {
        return PAM_IGNORE;
    };
    let Some(number) = call.getenv("IPVIRT_SESSION").and_then(|s| s.parse().ok()) else {
        return PAM_IGNORE;
    };
    match control::call(
        &args.socket,
        &Request::Close { session: number },
        args.timeout,
    ) {
        Ok(Response::Closed { .. }) => PAM_SUCCESS,
        Ok(other) => {
            call.log(
                LOG_NOTICE,
                &format!("pam_ipvirt: closing session {number}: the service answered {other:?}"),
            );
            PAM_SESSION_ERR
        }
        Err(e) => {
            call.log(
                LOG_NOTICE,
                &format!("pam_ipvirt: closing session {number}: {e}"),
            );
            PAM_SESSION_ERR
        }
    }
}

/// Runs `f` for a PAM entry point, with no panic crossing into libpam.
fn guard(pamh: *mut PamHandle, f: impl FnOnce(&Call) -> c_int) -> c_int {
    if pamh.is_null() {
        return PAM_SESSION_ERR;
    }
    let call = Call { pamh };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&call))).unwrap_or(PAM_SESSION_ERR)
}

/// `pam_sm_open_session`: makes the login a session of the `ipvirt` service.
///
/// # Safety
///
/// Called by libpam with its handle and the module's arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes argc strings in argv.
    let args = unsafe { arguments(argc, argv) };
    guard(pamh, |call| open(call, &args))
}

/// `pam_sm_close_session`: tells the service the login ended.
///
/// # Safety
///
/// Called by libpam with its handle and the module's arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes argc strings in argv.
    let args = unsafe { arguments(argc, argv) };
    guard(pamh, |call| close(call, &args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_and_bad_ones_named() {
        let a = Args::parse(["socket=/tmp/x.sock", "timeout=3", "debug"]).unwrap();
        assert_eq!(a.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.timeout, Duration::from_secs(3));
        assert!(a.debug);
        assert_eq!(
            Args::parse([]).unwrap().socket,
            PathBuf::from(control::DEFAULT_SOCKET)
        );
        assert!(
            Args::parse(["timeout=0"])
                .unwrap_err()
                .contains("timeout=0")
        );
        assert!(
            Args::parse(["sokcet=/x"])
                .unwrap_err()
                .contains("sokcet=/x")
        );
    }
}
