//! The service's log: every line on stderr (systemd's journal keeps it, with the syslog level
//! prefix journald reads), and to syslog (`/dev/log`, facility `daemon`) when no journal reads
//! stderr — "as system services do".

use std::io::Write;
use std::os::unix::net::UnixDatagram;

use crate::args::LogTo;

/// How serious a line is (syslog levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// A session could not be made, a lease was lost.
    Error = 3,
    /// Something the administrator should look at.
    Warning = 4,
    /// A session opened or ended, the policy was re-read.
    Info = 6,
}

/// Where the lines go.
#[derive(Debug)]
pub(crate) struct Log {
    syslog: Option<UnixDatagram>,
    journal: bool,
}

impl Log {
    pub(crate) fn new(to: LogTo) -> Log {
        let journal = std::env::var_os("JOURNAL_STREAM").is_some();
        let want = match to {
            LogTo::Stderr => false,
            LogTo::Syslog => true,
            LogTo::Auto => !journal,
        };
        let syslog = want
            .then(|| {
                let s = UnixDatagram::unbound().ok()?;
                s.connect("/dev/log").ok()?;
                Some(s)
            })
            .flatten();
        Log { syslog, journal }
    }

    /// Writes one line (one per call; newlines in `msg` are replaced, so one event is one line).
    pub(crate) fn line(&self, level: Level, msg: &str) {
        let msg = msg.replace('\n', " ");
        let prefix = if self.journal {
            format!("<{}>", level as u8)
        } else {
            "ipvirt: ".to_owned()
        };
        let _ = writeln!(std::io::stderr().lock(), "{prefix}{msg}");
        if let Some(s) = &self.syslog {
            // Facility daemon (3): priority 3 * 8 + level.
            let _ = s.send(
                format!(
                    "<{}>ipvirt[{}]: {msg}",
                    3 * 8 + level as u8,
                    std::process::id()
                )
                .as_bytes(),
            );
        }
    }

    pub(crate) fn info(&self, msg: &str) {
        self.line(Level::Info, msg);
    }

    pub(crate) fn warn(&self, msg: &str) {
        self.line(Level::Warning, msg);
    }

    pub(crate) fn error(&self, msg: &str) {
        self.line(Level::Error, msg);
    }
}
