//! The words of [`Engine::explain`]: which features apply to a process in a session, naming the
//! setting and the list entry that decided ([`ProcessExplanation`]). `Engine::explain` is a
//! method of the engine, defined here beside the words it prints.

use alloc::string::String;
use core::fmt;

use super::{Decision, Engine, ProcessPlan, Reason};
use crate::policy::{Ipv6Loopback, VipSource};
use crate::session::Session;

impl Engine {
    /// Explains, in words, which features apply to `image` in `session`, naming the setting and the
    /// list entry that decided.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let policy = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n")?;
    /// let engine = policy.compile(Host::default())?;
    /// let text = engine.explain(Session::remote(SessionId::new(7)), r"C:\Apps\crm.exe").to_string();
    /// assert!(text.contains("virtual loopback: applies"), "{text}");
    /// assert!(text.contains("127.0.0.8"), "{text}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn explain<'a>(&'a self, session: Session, image: &'a str) -> ProcessExplanation<'a> {
        ProcessExplanation {
            engine: self,
            session,
            image,
            plan: self.process(image),
        }
    }
}

/// The words [`Engine::explain`] prints.
#[derive(Debug, Clone, Copy)]
pub struct ProcessExplanation<'a> {
    engine: &'a Engine,
    session: Session,
    image: &'a str,
    plan: ProcessPlan,
}

impl ProcessExplanation<'_> {
    /// The plan being explained.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let e = engine.explain(Session::remote(SessionId::new(7)), "crm.exe");
    /// assert!(!e.plan().loopback().applies());
    /// # Ok::<(), ipvirt::CompileError>(())
    /// ```
    #[must_use]
    pub fn plan(&self) -> ProcessPlan {
        self.plan
    }

    fn reason(
        &self,
        f: &mut fmt::Formatter<'_>,
        key: &str,
        list: &[String],
        d: Decision,
    ) -> fmt::Result {
        match d.reason() {
            Reason::FeatureOff => write!(f, "{key}.enabled is false"),
            Reason::NoAdapter => write!(
                f,
                "virtual_ip.adapter is not set (without VIPAdapter, virtual IP is off)"
            ),
            Reason::PerSession => write!(
                f,
                "virtual_ip.mode is per-session: every process of the session"
            ),
            Reason::Listed { entry } => {
                let text = list.get(entry as usize).map_or("?", |s| s.as_str());
                let list_key = if key == "prefer_loopback" {
                    "processes"
                } else {
                    "programs"
                };
                let n = entry + 1;
                write!(
                    f,
                    "\"{text}\" (entry {n} of {key}.{list_key}) matches \"{}\"",
                    self.image
                )
            }
            Reason::NotListed => {
                let list_key = if key == "prefer_loopback" {
                    "processes"
                } else {
                    "programs"
                };
                let n = list.len();
                let entries = if n == 1 { "entry" } else { "entries" };
                write!(
                    f,
                    "\"{}\" is not in {key}.{list_key} ({n} {entries})",
                    self.image
                )
            }
        }
    }
}

impl fmt::Display for ProcessExplanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.engine.policy();
        let yes = |d: Decision| {
            if d.applies() {
                "applies"
            } else {
                "does not apply"
            }
        };
        writeln!(f, "process \"{}\" in {}", self.image, self.session)?;
        if !self.session.is_virtualized() {
            writeln!(
                f,
                "  the session is not virtualized (only remote sessions other than session 0 are): every call passes through unchanged"
            )?;
        }
        write!(f, "  virtual loopback: {} — ", yes(self.plan.loopback()))?;
        self.reason(
            f,
            "virtual_loopback",
            &p.virtual_loopback.programs,
            self.plan.loopback(),
        )?;
        writeln!(f)?;
        if self.plan.loopback().applies() && self.session.is_virtualized() {
            match self.session.id().loopback() {
                Ok(addr) => {
                    write!(
                        f,
                        "    {}:PORT is rewritten to {addr}:PORT",
                        p.virtual_loopback.localhost
                    )?;
                    if !p.virtual_loopback.excluded_ports.is_empty() {
                        write!(
                            f,
                            " except on ports {:?}",
                            p.virtual_loopback.excluded_ports
                        )?;
                    }
                    writeln!(f)?;
                    match p.virtual_loopback.ipv6 {
                        Ipv6Loopback::Map => writeln!(
                            f,
                            "    [::1]:PORT is rewritten to [::ffff:{addr}]:PORT on sockets that take IPv4-mapped addresses (virtual_loopback.ipv6 = map); on a v6-only socket the layer clears IPV6_V6ONLY first or leaves it alone"
                        )?,
                        Ipv6Loopback::Unchanged => writeln!(
                            f,
                            "    [::1] is left alone (virtual_loopback.ipv6 = unchanged): servers on localhost that resolve it to ::1 share it with every session"
                        )?,
                    }
                }
                Err(e) => writeln!(
                    f,
                    "    error: {e}; calls that would use the session loopback are refused (EADDRNOTAVAIL)"
                )?,
            }
        }
        write!(f, "  virtual IP: {} — ", yes(self.plan.virtual_ip()))?;
        self.reason(
            f,
            "virtual_ip",
            &p.virtual_ip.programs,
            self.plan.virtual_ip(),
        )?;
        writeln!(f)?;
        if self.plan.virtual_ip().applies() && self.session.is_virtualized() {
            writeln!(
                f,
                "    0.0.0.0:PORT and the server's addresses are rewritten to the session's VIP; outgoing connections originate from it"
            )?;
            match p.virtual_ip.source {
                VipSource::Static => writeln!(
                    f,
                    "    the VIP is leased from the static pool (virtual_ip.source = static, {} pool entr{})",
                    p.virtual_ip.pool.len(),
                    if p.virtual_ip.pool.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                )?,
                VipSource::Dhcp => {
                    write!(
                        f,
                        "    the VIP is leased from a DHCP server (virtual_ip.source = dhcp) on "
                    )?;
                    match (&p.virtual_ip.dhcp.interface, p.virtual_ip.adapter) {
                        (Some(i), _) => write!(f, "interface {i}")?,
                        (None, Some(a)) => write!(f, "the interface with a route to {a}")?,
                        (None, None) => write!(f, "no interface (none is set)")?,
                    }
                    writeln!(
                        f,
                        ", client identifier {}{}; until a lease is held, and after one is lost:",
                        p.virtual_ip
                            .dhcp
                            .client_id_prefix
                            .as_deref()
                            .unwrap_or("ipvirt-<host name>-"),
                        self.session.id()
                    )?;
                }
            }
            writeln!(
                f,
                "    without a VIP the session follows virtual_ip.on_lease_failure = {}",
                p.virtual_ip.on_lease_failure
            )?;
        }
        write!(
            f,
            "  preferred loopback: {} — ",
            yes(self.plan.prefer_loopback())
        )?;
        self.reason(
            f,
            "prefer_loopback",
            &p.prefer_loopback.processes,
            self.plan.prefer_loopback(),
        )?;
        writeln!(f)?;
        if self.plan.prefer_loopback().applies() && self.plan.virtual_ip().applies() {
            writeln!(
                f,
                "    connections to loopback addresses keep a loopback source instead of the VIP"
            )?;
        }
        Ok(())
    }
}
