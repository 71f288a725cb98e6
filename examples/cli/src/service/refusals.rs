//! The refusals the kernel layer makes, logged once per session and program (SPEC §11).
//!
//! The kernel programs write an event for each refused call ([`ipvirt_kernel::refusals`]); this
//! thread waits on the ring buffer (no CPU while nothing is refused), and logs the first refusal
//! of each kind — session, program, call, address, errno — as a warning:
//!
//! ```text
//! session 8 (user bob): bind 127.0.0.9:8080 refused with EACCES: /usr/bin/python3.11 (python3, pid 4711)
//! session 8 (user bob): connect 127.0.0.9:22 refused with ECONNREFUSED: python3.11 (pid 4712, exited)
//! ```
//!
//! The same refusal again in the same session (the same cgroup: a session number used again
//! later is a new cgroup) is not logged again. The program is the basename of the executable as
//! the kernel names it in the event, shown as the full path (`/proc/PID/exe`) while the process
//! still runs. What is remembered is bounded ([`REMEMBERED`]): when full, what belongs to
//! cgroups that no longer exist is forgotten first, and if that frees nothing, everything is
//! (so a flood of distinct refusals costs bounded memory and, at worst, logs a kind again).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ipvirt_kernel::{Refusals, Refused, RefusedCall};

use super::log::Log;
use super::sessions::Service;

/// How many kinds of refusal are remembered at most.
pub(crate) const REMEMBERED: usize = 4096;

/// One kind of refusal: what is logged once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    cgroup: u64,
    session: Option<u32>,
    program: String,
    call: RefusedCall,
    addr: SocketAddr,
    errno: i32,
}

/// What was logged, bounded.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    kinds: HashSet<Kind>,
}

impl Seen {
    /// Whether `kind` is new (and remembers it).
    fn first(&mut self, kind: Kind) -> bool {
        if self.kinds.contains(&kind) {
            return false;
        }
        if self.kinds.len() >= REMEMBERED {
            self.kinds
                .retain(|k| ipvirt_kernel::cgroup_alive(k.cgroup) != Some(false));
            if self.kinds.len() >= REMEMBERED {
                self.kinds.clear();
            }
        }
        self.kinds.insert(kind)
    }
}

/// The program of a refusal: the full path of the process's executable while it runs (and is
/// still the executable the kernel named), else the kernel's basename of it.
fn program(r: &Refused) -> (String, bool) {
    match std::fs::read_link(PathBuf::from(format!("/proc/{}/exe", r.pid))) {
        Ok(p)
            if p.file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(r.exe.as_bytes())) =>
        {
            (p.display().to_string(), true)
        }
        _ => (r.exe.clone(), false),
    }
}

/// The log line of one refusal.
fn line(r: &Refused, user: Option<&str>, program: &str, exe_known: bool) -> String {
    let who = match (r.session, user) {
        (Some(s), Some(u)) => format!("session {s} (user {u})"),
        (Some(s), None) => format!("session {s}"),
        (None, _) => format!(
            "a process of cgroup {} (in the layer's tree, with no session entry: failed closed)",
            r.cgroup
        ),
    };
    let prog = if exe_known {
        format!("{program} ({}, pid {})", r.comm, r.pid)
    } else {
        format!("{program} (pid {}, exited)", r.pid)
    };
    format!(
        "{who}: {} {} refused with {}: {prog}",
        r.call,
        r.addr,
        ipvirt_kernel::refusals::errno_name(r.errno)
    )
}

/// Reads `ring` until it fails; logs each kind of refusal once.
pub(crate) fn serve(mut ring: Refusals, service: Arc<Mutex<Service>>, log: Arc<Log>) {
    let mut seen = Seen::default();
    loop {
        if let Err(e) = ring.wait(None) {
            log.error(&format!("reading the kernel layer's refusals: {e}"));
            return;
        }
        while let Some(event) = ring.next() {
            let r = match event {
                Ok(r) => r,
                Err(e) => {
                    log.warn(&e.to_string());
                    continue;
                }
            };
            let (prog, exe_known) = program(&r);
            let kind = Kind {
                cgroup: r.cgroup,
                session: r.session,
                // The kernel's name of the executable: the same whether or not the process is
                // still there when the event is read.
                program: r.exe.clone(),
                call: r.call,
                addr: r.addr,
                errno: r.errno,
            };
            if !seen.first(kind) {
                continue;
            }
            let user = r.session.and_then(|n| {
                service
                    .lock()
                    .ok()
                    .and_then(|s| s.session_user(n).map(str::to_owned))
            });
            log.warn(&line(&r, user.as_deref(), &prog, exe_known));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(session: Option<u32>) -> Refused {
        Refused {
            cgroup: 99,
            session,
            errno: libc::EACCES,
            pid: 4711,
            call: RefusedCall::Bind,
            addr: "127.0.0.9:8080".parse().unwrap(),
            comm: "python3".into(),
            exe: "python3.11".into(),
        }
    }

    fn kind(cgroup: u64, addr: &str) -> Kind {
        Kind {
            cgroup,
            session: Some(8),
            program: "/usr/bin/python3".into(),
            call: RefusedCall::Connect,
            addr: addr.parse().unwrap(),
            errno: libc::ECONNREFUSED,
        }
    }

    #[test]
    fn lines_name_the_session_the_user_and_the_program() {
        assert_eq!(
            line(&refused(Some(8)), Some("bob"), "/usr/bin/python3.11", true),
            "session 8 (user bob): bind 127.0.0.9:8080 refused with EACCES: /usr/bin/python3.11 (python3, pid 4711)"
        );
        assert_eq!(
            line(&refused(Some(8)), None, "python3.11", false),
            "session 8: bind 127.0.0.9:8080 refused with EACCES: python3.11 (pid 4711, exited)"
        );
        assert!(
            line(&refused(None), None, "python3", false)
                .starts_with("a process of cgroup 99 (in the layer's tree, with no session entry")
        );
    }

    #[test]
    fn each_kind_once() {
        let mut seen = Seen::default();
        assert!(seen.first(kind(1, "127.0.0.9:80")));
        assert!(!seen.first(kind(1, "127.0.0.9:80")));
        assert!(seen.first(kind(1, "127.0.0.9:81")));
        // The same number in a new cgroup is a new session.
        assert!(seen.first(kind(2, "127.0.0.9:80")));
    }

    #[test]
    fn memory_is_bounded() {
        let mut seen = Seen::default();
        // Cgroup ids no cgroup has: forgotten when the set is full.
        for i in 0..(REMEMBERED as u64 + 10) {
            seen.first(kind(u64::MAX - i, "127.0.0.9:80"));
        }
        assert!(seen.kinds.len() <= REMEMBERED);
    }
}
