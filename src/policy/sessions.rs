//! `[sessions]`: how the `ipvirt` service makes every login of a Linux server a session (SPEC §11).
//!
//! The core only holds and checks these settings; the service (`ipvirt daemon`, crate
//! `ipvirt-cli`) and its PAM module act on them.
//!
//! ```toml
//! [sessions]
//! identity = "session"          # "session": the lowest free number per login (default);
//!                               # "user": one number per user, kept across logins
//! layer = "kernel"              # "kernel" (cgroup-BPF, every process; default) | "preload"
//! console_services = ["login", "gdm-password"]   # PAM services whose logins are console
//! console_ttys = ["tty*", "console"]             # ttys whose logins are console ("*" ends a prefix)
//! ```
//!
//! Console sessions are never virtualized (SPEC §4, §11). The defaults count the local logins of
//! a Linux host as console: the PAM services of `login(1)` and of the common display managers,
//! and the virtual terminals and the system console as ttys. An SSH login (`PAM_TTY` is `ssh`), an
//! xrdp, ThinLinc or X2Go login, or `su -l` on a pseudo-terminal is remote.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

/// The `[sessions]` section: how the `ipvirt` service makes every login of a Linux server a
/// session (SPEC §11). The core only holds and checks these settings; the service and its PAM
/// module act on them.
///
/// ```toml
/// [sessions]
/// identity = "session"          # "session": the lowest free number per login (default);
///                               # "user": one number per user, kept across logins
/// layer = "kernel"              # "kernel" (cgroup-BPF, every process; default) | "preload"
/// console_services = ["login", "gdm-password"]   # PAM services whose logins are console
/// console_ttys = ["tty*", "console"]             # ttys whose logins are console ("*" ends a prefix)
/// ```
///
/// Console sessions are never virtualized (SPEC §4, §11). The defaults count the local logins of
/// a Linux host as console: the PAM services of `login(1)` and of the common display managers,
/// and the virtual terminals and the system console as ttys. An SSH login (`PAM_TTY` is `ssh`), an
/// xrdp, ThinLinc or X2Go login, or `su -l` on a pseudo-terminal is remote.
///
/// ```
/// use ipvirt::{Identity, Policy, SessionLayer};
///
/// let p = Policy::from_toml("[sessions]\nidentity = \"user\"\n")?;
/// assert_eq!(p.sessions.identity, Identity::User);
/// assert_eq!(p.sessions.layer, SessionLayer::Kernel);
/// assert!(p.sessions.is_console(Some("login"), Some("tty1")));
/// assert!(p.sessions.is_console(Some("sshd"), Some("tty3")));      // a console tty
/// assert!(!p.sessions.is_console(Some("sshd"), Some("ssh")));
/// assert!(!p.sessions.is_console(Some("su-l"), Some("/dev/pts/4")));
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Sessions {
    /// How logins get their session numbers.
    pub identity: Identity,
    /// The layer that virtualizes the logins.
    pub layer: SessionLayer,
    /// PAM services (`PAM_SERVICE`) whose logins are console sessions, by exact name.
    pub console_services: Vec<String>,
    /// ttys (`PAM_TTY`) whose logins are console sessions: exact names, or prefixes ending in `*`.
    pub console_ttys: Vec<ConsoleTty>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            identity: Identity::default(),
            layer: SessionLayer::default(),
            console_services: [
                "login",
                "gdm-password",
                "gdm-autologin",
                "gdm-fingerprint",
                "gdm-smartcard",
                "lightdm",
                "lightdm-autologin",
                "lightdm-greeter",
                "sddm",
                "sddm-autologin",
                "sddm-greeter",
                "lxdm",
                "xdm",
                "kdm",
                "slim",
            ]
            .into_iter()
            .map(ToOwned::to_owned)
            .collect(),
            console_ttys: ["tty*", "/dev/tty*", "console", "/dev/console"]
                .into_iter()
                .map(|p| ConsoleTty(p.to_owned()))
                .collect(),
        }
    }
}

impl Sessions {
    /// Whether a login of PAM service `service` on tty `tty` is a console session (never
    /// virtualized). A `tty` that names a virtual terminal (`tty1`, `/dev/tty2`) but is a
    /// pseudo-terminal (`/dev/pts/…`, `pts/…`) is not.
    #[must_use]
    pub fn is_console(&self, service: Option<&str>, tty: Option<&str>) -> bool {
        service.is_some_and(|s| self.console_services.iter().any(|c| c == s))
            || tty.is_some_and(|t| self.console_ttys.iter().any(|p| p.matches(t)))
    }
}

/// `sessions.identity`: how logins get their session numbers (SPEC §11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Identity {
    /// The lowest free number ≥ 1 for each login (as Windows numbers its sessions; session 1's
    /// loopback is `127.0.0.2`).
    #[default]
    Session,
    /// One number per user, kept across logins: a user's loopback and VIP stay the same, and all
    /// of a user's logins (and, under systemd, the user's service manager) are one session.
    User,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Identity::Session => "session",
            Identity::User => "user",
        })
    }
}

/// `sessions.layer`: which Linux layer virtualizes the logins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SessionLayer {
    /// The kernel layer: every process of the login's cgroup, static and Go programs included.
    #[default]
    Kernel,
    /// The `LD_PRELOAD` layer, set in the login's environment: dynamically linked programs only.
    Preload,
}

impl fmt::Display for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionLayer::Kernel => "kernel",
            SessionLayer::Preload => "preload",
        })
    }
}

/// A `sessions.console_ttys` entry: an exact tty name, or a prefix followed by `*`.
///
/// ```
/// use ipvirt::ConsoleTty;
///
/// let p: ConsoleTty = "tty*".parse()?;
/// assert!(p.matches("tty2") && !p.matches("ssh"));
/// assert!("a*b".parse::<ConsoleTty>().is_err());
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsoleTty(String);

impl ConsoleTty {
    /// Whether `tty` is this entry's tty (or starts with its prefix).
    #[must_use]
    pub fn matches(&self, tty: &str) -> bool {
        if tty.starts_with("/dev/pts/") || tty.starts_with("pts/") {
            return false;
        }
        match self.0.strip_suffix('*') {
            Some(prefix) => tty.starts_with(prefix),
            None => tty == self.0,
        }
    }
}

impl TryFrom<String> for ConsoleTty {
    type Error = super::PolicyError;

    fn try_from(s: String) -> Result<ConsoleTty, super::PolicyError> {
        let body = s.strip_suffix('*').unwrap_or(&s);
        if body.is_empty() || body.contains('*') {
            return Err(super::PolicyError::ConsoleTty { value: s });
        }
        Ok(ConsoleTty(s))
    }
}

impl core::str::FromStr for ConsoleTty {
    type Err = super::PolicyError;

    fn from_str(s: &str) -> Result<ConsoleTty, super::PolicyError> {
        ConsoleTty::try_from(s.to_owned())
    }
}

impl From<ConsoleTty> for String {
    fn from(t: ConsoleTty) -> String {
        t.0
    }
}

impl fmt::Display for ConsoleTty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
