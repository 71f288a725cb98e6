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
use core::net::Ipv4Addr;

use crate::addr::Vip;
use crate::host::Host;
use crate::policy::{Ipv6Loopback, LeaseFailure, Policy, VipMode};
use crate::program::{ProgramList, fold_program_name};
use crate::session::{Session, SessionId};

use crate::table::{
    MAX_SERVERS, POLICY_IPV6_MAP, POLICY_ISOLATE, PROGRAM_LOOPBACK, PROGRAM_PREFER_LOOPBACK,
    PROGRAM_VIRTUAL_IP, PolicyTable, ProgramEntry, SESSION_NO_CONNECTIVITY, SESSION_NO_LOOPBACK,
    SESSION_VIRTUALIZED, SessionEntry,
};

mod explain;

pub use explain::ProcessExplanation;

/// A policy compiled for one host: what [`Engine::process`] and the rewriters read.
///
/// It is made by [`Policy::compile`] (a method of the policy, defined in this module beside the
/// engine it builds); [`Engine::explain`] is defined in `engine/explain.rs`, beside
/// [`ProcessExplanation`], and [`Engine::rewriter`] in `rewrite/mod.rs`, beside the
/// [`Rewriter`](crate::Rewriter) it makes.
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
