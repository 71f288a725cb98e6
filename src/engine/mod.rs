//! The compiled policy and the per-process plan (SPEC §4).
//!
//! [`Policy::compile`] turns the policy into an [`Engine`]: program lists folded into hash sets,
//! excluded ports into a bitmap, the server's addresses sorted. A hooking layer compiles once (at
//! service start, or when the policy changes) and then, once per process, asks
//! [`Engine::process`] which features apply to that executable. The answer, a [`ProcessPlan`], is a
//! small `Copy` value the layer keeps for the life of the process; every socket call after that is
//! answered by a [`Rewriter`](crate::Rewriter) from the plan without touching a string.
//!
//! Who is in scope (SPEC §4):
//!
//! | feature | applies to a process when |
//! |---|---|
//! | virtual loopback | `virtual_loopback.enabled` and the process is in `virtual_loopback.programs` |
//! | virtual IP | `virtual_ip.enabled`, an `adapter` is set, and (mode is per-session, or the process is in `virtual_ip.programs`) |
//! | preferred loopback | `prefer_loopback.enabled` and the process is in `prefer_loopback.processes` |
//!
//! The session is not part of the plan: only remote sessions other than session 0 are ever
//! virtualized, and [`Engine::rewriter`](crate::Engine::rewriter) checks that per session.

use alloc::sync::Arc;
use core::fmt;
use core::net::Ipv4Addr;

use crate::addr::Vip;
use crate::host::Host;
use crate::policy::{Ipv6Loopback, LeaseFailure, Policy, VipMode, VipSource};
use crate::program::{ProgramList, fold_program_name};
use crate::session::{Session, SessionId};

use crate::table::{
    MAX_SERVERS, POLICY_IPV6_MAP, POLICY_ISOLATE, PROGRAM_LOOPBACK, PROGRAM_PREFER_LOOPBACK,
    PROGRAM_VIRTUAL_IP, PolicyTable, ProgramEntry, SESSION_NO_CONNECTIVITY, SESSION_NO_LOOPBACK,
    SESSION_VIRTUALIZED, SessionEntry,
};

/// A policy compiled for one host: what [`Engine::process`] and the rewriters read.
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, Policy};
///
/// let policy = Policy::from_toml(r#"
///     [virtual_loopback]
///     enabled = true
///     programs = ["crm.exe"]
/// "#)?;
/// let engine = policy.compile(Host::new(["192.0.2.10".parse()?]))?;
/// let plan = engine.process(r"C:\Apps\CRM.EXE");
/// assert!(plan.loopback().applies());
/// assert!(!plan.virtual_ip().applies());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Policy,
    host: Host,
    loopback_programs: ProgramList,
    vip_programs: ProgramList,
    prefer_programs: ProgramList,
    /// The policy table of SPEC §7, shared with every rewriter.
    table: Arc<PolicyTable>,
}

impl Policy {
    /// Compiles the policy for a host whose own addresses are `host`.
    ///
    /// Addresses of the VIP pool are removed from the host's addresses (on Windows the VIPs live on
    /// the server's adapter, so a layer that lists the adapter's addresses would otherwise treat
    /// another session's VIP as "the server's address").
    ///
    /// # Errors
    ///
    /// [`CompileError::LocalhostNotLoopback`] when `virtual_loopback.localhost` is outside
    /// 127.0.0.0/8 or is `127.0.0.0`: rewriting it would break the rule that loopback stays loopback.
    /// (Everything the policy validation reports is advice: the engine does what
    /// the settings say.)
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{CompileError, Host, Policy};
    ///
    /// let mut policy = Policy::default();
    /// policy.virtual_loopback.localhost = "10.0.0.1".parse()?;
    /// assert!(matches!(policy.compile(Host::default()), Err(CompileError::LocalhostNotLoopback { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compile(&self, host: Host) -> Result<Engine, CompileError> {
        let localhost = self.virtual_loopback.localhost;
        // One definition of "a loopback address that names a session": the mapping's inverse.
        if SessionId::from_loopback(localhost).is_none() {
            return Err(CompileError::LocalhostNotLoopback { localhost });
        }
        let pool = &self.virtual_ip.pool;
        let mut host = host;
        host.retain_v4(|a| !pool.iter().any(|e| e.contains(a)));
        let servers = host.v4_bits();
        if servers.len() > MAX_SERVERS {
            return Err(CompileError::TooManyServerAddresses {
                count: servers.len(),
                max: MAX_SERVERS,
            });
        }
        let mut table = PolicyTable::new();
        table.localhost = localhost.to_bits();
        table.primary_server = host.primary_v4().map_or(0, Ipv4Addr::to_bits);
        table.server_count = servers.len() as u32;
        for (slot, &bits) in table.servers.iter_mut().zip(servers) {
            *slot = bits;
        }
        for &port in &self.virtual_loopback.excluded_ports {
            if let Some(word) = table.excluded_ports.get_mut(usize::from(port) / 64) {
                *word |= 1 << (port % 64);
            }
        }
        if self.virtual_loopback.isolate {
            table.flags |= POLICY_ISOLATE;
        }
        if self.virtual_loopback.ipv6 == Ipv6Loopback::Map {
            table.flags |= POLICY_IPV6_MAP;
        }
        Ok(Engine {
            loopback_programs: ProgramList::new(&self.virtual_loopback.programs),
            vip_programs: ProgramList::new(&self.virtual_ip.programs),
            prefer_programs: ProgramList::new(&self.prefer_loopback.processes),
            policy: self.clone(),
            host,
            table: Arc::new(table),
        })
    }
}

impl Engine {
    /// The plan for a process, from its executable image: a full path (`C:\Apps\crm.exe`,
    /// `/usr/bin/python3`) or a bare name. Call once per process and keep the result.
    ///
    /// The name is folded once; the cost does not depend on the length of the program lists.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Host, Policy, Reason};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     [virtual_ip]
    ///     enabled = true
    ///     mode = "per-program"
    ///     programs = ["crm.exe", 'C:\Tools\cti.exe']
    ///     adapter = "192.0.2.0/24"
    /// "#)?;
    /// let engine = policy.compile(Host::default())?;
    /// assert_eq!(engine.process("D:/x/CTI.exe").virtual_ip().reason(), Reason::NotListed);
    /// assert_eq!(engine.process(r"c:\tools\cti.exe").virtual_ip().reason(), Reason::Listed { entry: 1 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn process(&self, image: &str) -> ProcessPlan {
        let folded = fold_program_name(image);
        let vl = &self.policy.virtual_loopback;
        let vip = &self.policy.virtual_ip;
        let pl = &self.policy.prefer_loopback;

        let listed = |list: &ProgramList| match list.find_folded(&folded) {
            Some(entry) => Decision::yes(Reason::Listed { entry }),
            None => Decision::no(Reason::NotListed),
        };
        let loopback = if vl.enabled {
            listed(&self.loopback_programs)
        } else {
            Decision::no(Reason::FeatureOff)
        };
        let virtual_ip = if !vip.enabled {
            Decision::no(Reason::FeatureOff)
        } else if vip.adapter.is_none() {
            Decision::no(Reason::NoAdapter)
        } else if vip.mode == VipMode::PerSession {
            Decision::yes(Reason::PerSession)
        } else {
            listed(&self.vip_programs)
        };
        let prefer_loopback = if pl.enabled {
            listed(&self.prefer_programs)
        } else {
            Decision::no(Reason::FeatureOff)
        };
        ProcessPlan {
            loopback,
            virtual_ip,
            prefer_loopback,
        }
    }

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

    /// The policy this engine was compiled from.
    ///
    /// ```
    /// use ipvirt::{Host, Policy};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// assert_eq!(engine.policy(), &Policy::default());
    /// # Ok::<(), ipvirt::CompileError>(())
    /// ```
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The server's own addresses, less the VIP pool's.
    ///
    /// ```
    /// use ipvirt::{Host, Policy};
    ///
    /// let engine = Policy::default().compile(Host::new(["192.0.2.10".parse()?]))?;
    /// assert_eq!(engine.host().ipv4().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The policy table of SPEC §7: what a C or kernel layer loads (see [`table`](crate::table)).
    #[must_use]
    pub fn tables(&self) -> &PolicyTable {
        &self.table
    }

    /// The policy table, shared (what every [`Rewriter`](crate::Rewriter) of this engine holds).
    #[must_use]
    pub fn policy_table(&self) -> Arc<PolicyTable> {
        Arc::clone(&self.table)
    }

    /// The session entry of SPEC §7 for `session` with the VIP `vip` (`None`: the session has none,
    /// and the policy's `on_lease_failure` is recorded in the flags).
    ///
    /// ```
    /// use ipvirt::{Host, Policy, Session, SessionId, table};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let console = engine.session_entry(Session::console(SessionId::new(1)), None);
    /// assert_eq!(console.flags & table::SESSION_VIRTUALIZED, 0);
    /// let huge = engine.session_entry(Session::remote(SessionId::new(20_000_000)), None);
    /// assert_ne!(huge.flags & table::SESSION_NO_LOOPBACK, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session_entry(&self, session: Session, vip: Option<Vip>) -> SessionEntry {
        let mut flags = 0;
        let mut loopback = 0;
        if session.is_virtualized() {
            flags |= SESSION_VIRTUALIZED;
            match session.id().loopback() {
                Ok(lo) => loopback = lo.to_bits(),
                Err(_) => flags |= SESSION_NO_LOOPBACK,
            }
        }
        if vip.is_none() && self.policy.virtual_ip.on_lease_failure == LeaseFailure::NoConnectivity
        {
            flags |= SESSION_NO_CONNECTIVITY;
        }
        SessionEntry {
            session: session.id().get(),
            loopback,
            vip: vip.map_or(0, Vip::to_bits),
            flags,
        }
    }

    /// Whether loopback traffic on `port` is never rewritten (`virtual_loopback.excluded_ports`).
    /// A bit test: no search.
    ///
    /// ```
    /// use ipvirt::{Host, Policy};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nexcluded_ports = [27000]\n")?.compile(Host::default())?;
    /// assert!(engine.is_port_excluded(27000));
    /// assert!(!engine.is_port_excluded(9000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn is_port_excluded(&self, port: u16) -> bool {
        self.table.is_port_excluded(port)
    }
}

/// Which features apply to one process, and why: computed once per process by [`Engine::process`].
///
/// ```
/// use ipvirt::{Host, Policy, Reason};
///
/// let plan = Policy::default().compile(Host::default())?.process("crm.exe");
/// assert!(!plan.loopback().applies());
/// assert_eq!(plan.loopback().reason(), Reason::FeatureOff);
/// # Ok::<(), ipvirt::CompileError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessPlan {
    loopback: Decision,
    virtual_ip: Decision,
    prefer_loopback: Decision,
}

impl ProcessPlan {
    /// A plan in which nothing applies: what a process out of every list gets.
    ///
    /// ```
    /// use ipvirt::ProcessPlan;
    ///
    /// assert!(!ProcessPlan::NONE.virtual_ip().applies());
    /// ```
    pub const NONE: ProcessPlan = ProcessPlan {
        loopback: Decision::no(Reason::FeatureOff),
        virtual_ip: Decision::no(Reason::FeatureOff),
        prefer_loopback: Decision::no(Reason::FeatureOff),
    };

    /// A plan from its three decisions (the C ABI passes plans by value).
    #[cfg(feature = "capi")]
    pub(crate) const fn from_decisions(
        loopback: Decision,
        virtual_ip: Decision,
        prefer_loopback: Decision,
    ) -> ProcessPlan {
        ProcessPlan {
            loopback,
            virtual_ip,
            prefer_loopback,
        }
    }

    /// Whether virtual loopback applies ("L" in SPEC §5), and why.
    #[inline]
    #[must_use]
    pub const fn loopback(&self) -> Decision {
        self.loopback
    }

    /// Whether virtual IP applies ("V" in SPEC §5, before checking the session has a VIP), and why.
    #[inline]
    #[must_use]
    pub const fn virtual_ip(&self) -> Decision {
        self.virtual_ip
    }

    /// Whether preferred loopback lists this process, and why.
    #[inline]
    #[must_use]
    pub const fn prefer_loopback(&self) -> Decision {
        self.prefer_loopback
    }

    /// The program entry of SPEC §7: which of L, V and preferred loopback apply.
    #[must_use]
    pub const fn entry(&self) -> ProgramEntry {
        let mut flags = 0;
        if self.loopback.applies() {
            flags |= PROGRAM_LOOPBACK;
        }
        if self.virtual_ip.applies() {
            flags |= PROGRAM_VIRTUAL_IP;
        }
        if self.prefer_loopback.applies() {
            flags |= PROGRAM_PREFER_LOOPBACK;
        }
        ProgramEntry { flags }
    }
}

/// Whether a feature applies to a process, and the reason.
///
/// ```
/// use ipvirt::{Decision, Reason};
///
/// let d = Decision::yes(Reason::PerSession);
/// assert!(d.applies());
/// assert_eq!(d.reason(), Reason::PerSession);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    applies: bool,
    reason: Reason,
}

impl Decision {
    /// The feature applies, for `reason`.
    #[must_use]
    pub const fn yes(reason: Reason) -> Decision {
        Decision {
            applies: true,
            reason,
        }
    }

    /// The feature does not apply, for `reason`.
    ///
    /// ```
    /// use ipvirt::{Decision, Reason};
    ///
    /// assert!(!Decision::no(Reason::NotListed).applies());
    /// ```
    #[must_use]
    pub const fn no(reason: Reason) -> Decision {
        Decision {
            applies: false,
            reason,
        }
    }

    /// Whether the feature applies.
    #[inline]
    #[must_use]
    pub const fn applies(self) -> bool {
        self.applies
    }

    /// Why.
    #[inline]
    #[must_use]
    pub const fn reason(self) -> Reason {
        self.reason
    }
}

/// Why a feature applies to a process or not.
///
/// ```
/// use ipvirt::Reason;
///
/// assert_ne!(Reason::Listed { entry: 0 }, Reason::NotListed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The feature's `enabled` setting is off.
    FeatureOff,
    /// Virtual IP is enabled but `virtual_ip.adapter` is not set: without `VIPAdapter` VIP is off.
    NoAdapter,
    /// Virtual IP in per-session mode: every process of the session.
    PerSession,
    /// The process matched this entry (0-based index) of the feature's program list.
    Listed {
        /// Index of the matching entry in the list as written.
        entry: u32,
    },
    /// The feature is on but the process is not in its program list.
    NotListed,
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
        list: &[alloc::string::String],
        d: Decision,
    ) -> fmt::Result {
        match d.reason {
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
        let p = &self.engine.policy;
        let yes = |d: Decision| {
            if d.applies {
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
        write!(f, "  virtual loopback: {} — ", yes(self.plan.loopback))?;
        self.reason(
            f,
            "virtual_loopback",
            &p.virtual_loopback.programs,
            self.plan.loopback,
        )?;
        writeln!(f)?;
        if self.plan.loopback.applies && self.session.is_virtualized() {
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
        write!(f, "  virtual IP: {} — ", yes(self.plan.virtual_ip))?;
        self.reason(
            f,
            "virtual_ip",
            &p.virtual_ip.programs,
            self.plan.virtual_ip,
        )?;
        writeln!(f)?;
        if self.plan.virtual_ip.applies && self.session.is_virtualized() {
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
            yes(self.plan.prefer_loopback)
        )?;
        self.reason(
            f,
            "prefer_loopback",
            &p.prefer_loopback.processes,
            self.plan.prefer_loopback,
        )?;
        writeln!(f)?;
        if self.plan.prefer_loopback.applies && self.plan.virtual_ip.applies {
            writeln!(
                f,
                "    connections to loopback addresses keep a loopback source instead of the VIP"
            )?;
        }
        Ok(())
    }
}

/// An error compiling a [`Policy`](crate::Policy) into an [`Engine`](crate::Engine): a setting the
/// engine cannot carry out without breaking an invariant of SPEC §5.
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, Policy};
///
/// let mut policy = Policy::default();
/// policy.virtual_loopback.localhost = "192.0.2.1".parse().unwrap();
/// let err = policy.compile(Host::default()).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "virtual_loopback.localhost = 192.0.2.1 is not a loopback address: it must be in 127.0.0.0/8 and not 127.0.0.0"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// `virtual_loopback.localhost` is outside 127.0.0.0/8 (or is `127.0.0.0`, which names no
    /// session): replacing it by a session loopback address would turn a non-loopback address into a
    /// loopback one.
    #[error(
        "virtual_loopback.localhost = {localhost} is not a loopback address: it must be in 127.0.0.0/8 and not 127.0.0.0"
    )]
    LocalhostNotLoopback {
        /// The configured address.
        localhost: core::net::Ipv4Addr,
    },
    /// The host has more IPv4 addresses (outside the VIP pool) than the policy table holds.
    #[error(
        "the host has {count} IPv4 addresses outside the VIP pool: the rule table holds at most {max}"
    )]
    TooManyServerAddresses {
        /// How many the host has.
        count: usize,
        /// [`MAX_SERVERS`](crate::table::MAX_SERVERS).
        max: usize,
    },
}
