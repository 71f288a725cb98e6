//! The policy: every setting of Citrix virtual loopback, Microsoft RD IP Virtualization and Citrix
//! preferred loopback (SPEC §3), as one serde model.
//!
//! A [`Policy`] is plain data. It is read from the TOML file format of DESIGN.md
//! ([`Policy::from_toml`]), from JSON or any other serde format (the same shape), from a `regedit`
//! export ([`Policy::from_reg`]), or built in code. Every section and key is optional and defaults to
//! the products' own defaults: both features off.
//!
//! ```toml
//! platform = "windows-server-2022"      # optional; validation only
//!
//! [virtual_loopback]                    # Citrix policy
//! enabled = true                        # Virtual IP loopback support (default false)
//! programs = ["crm.exe", "cti.exe"]     # Virtual IP virtual loopback programs list
//! excluded_ports = [27000]              # Virtual IP loopback port exclusion
//! localhost = "127.0.0.1"               # the address that is replaced (default)
//! isolate = false                       # refuse connects to other sessions' loopback (SPEC §6)
//!
//! [virtual_ip]                          # Microsoft RD IP Virtualization
//! enabled = true                        # EnableVirtualIP
//! mode = "per-program"                  # VirtualMode: "per-session" | "per-program" (default)
//! programs = ["crm.exe"]                # PerApp
//! adapter = "192.0.2.0/24"              # VIPAdapter
//! pool = ["192.0.2.100-192.0.2.199"]    # static pool: ranges and/or CIDRs
//! on_lease_failure = "use-server-address"   # PromptOnIPLeaseFail=0; "no-connectivity" for 1
//! source = "static"                     # "static" (the pool, default) | "dhcp"
//!
//! [virtual_ip.dhcp]                     # used when source = "dhcp"
//! interface = "eth1"                    # default: the interface with a route to `adapter`
//! client_id_prefix = "ipvirt-host1-"    # client identifier = prefix + session id
//! configure_addresses = true            # add leased addresses to the interface (default)
//!
//! [prefer_loopback]                     # HKLM\SOFTWARE\Wow6432Node\Citrix\VIP
//! enabled = true                        # PreferLoopback
//! processes = ["crm.exe"]               # PreferLoopbackProcesses
//!
//! [sessions]                            # the ipvirt service on Linux (SPEC §11)
//! identity = "session"                  # "session" | "user"
//! layer = "kernel"                      # "kernel" | "preload"
//! console_services = ["login"]          # PAM services whose logins are console
//! console_ttys = ["tty*"]               # ttys whose logins are console
//! ```
//!
//! Reading checks syntax and types only: unknown keys, wrong types and malformed addresses are
//! [`PolicyError`]s that name the key and the line. Whether the settings make sense together is
//! [`Policy::validate`]'s job, which returns diagnostics instead of failing.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::addr::PoolEntry;

mod reg;
mod sessions;
#[cfg(feature = "std")]
mod toml_file;
mod validate;

pub use reg::{Origin, RegError, RegImport, VipOrigins};
pub use sessions::{ConsoleTty, Identity, SessionLayer, Sessions};
pub use validate::{Diagnostic, DiagnosticCode, Severity};

/// Every setting of both features and of preferred loopback.
///
/// Its methods live beside what they do: [`Policy::from_toml`] in `policy/toml_file.rs`,
/// [`Policy::from_reg`] in `policy/reg/import.rs`, [`Policy::validate`] in `policy/validate.rs`,
/// and [`Policy::compile`] in `engine/` (beside the [`Engine`](crate::Engine) it builds).
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, VipMode};
///
/// let policy = Policy::from_toml(r#"
///     [virtual_loopback]
///     enabled = true
///     programs = ["crm.exe"]
///
///     [virtual_ip]
///     enabled = true
///     mode = "per-session"
///     adapter = "192.0.2.0/24"
///     pool = ["192.0.2.100-192.0.2.199"]
/// "#)?;
/// assert!(policy.virtual_loopback.enabled);
/// assert_eq!(policy.virtual_ip.mode, VipMode::PerSession);
/// assert!(!policy.prefer_loopback.enabled);       // absent section: the product default
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Policy {
    /// The server's operating system, used only by [`Policy::validate`]; `None` when not stated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Citrix virtual loopback.
    pub virtual_loopback: VirtualLoopback,
    /// Microsoft RD IP Virtualization.
    pub virtual_ip: VirtualIp,
    /// Citrix preferred loopback.
    pub prefer_loopback: PreferLoopback,
    /// How the `ipvirt` service makes every login of a Linux server a session (SPEC §11; an
    /// ipvirt extension: no registry value holds it).
    pub sessions: Sessions,
}

/// Citrix virtual loopback: the three Citrix policy settings plus this crate's extensions.
///
/// ```
/// use std::net::Ipv4Addr;
/// use ipvirt::VirtualLoopback;
///
/// let vl = VirtualLoopback::default();
/// assert!(!vl.enabled);
/// assert_eq!(vl.localhost, Ipv4Addr::LOCALHOST);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct VirtualLoopback {
    /// "Virtual IP loopback support": each session gets its own loopback address. Default off.
    pub enabled: bool,
    /// "Virtual IP virtual loopback programs list": only these executables are rewritten (SPEC §4
    /// says how names match). Default empty.
    pub programs: Vec<String>,
    /// "Virtual IP loopback port exclusion": loopback traffic on these ports is never rewritten.
    pub excluded_ports: Vec<u16>,
    /// The localhost address that is replaced by the session's loopback address. Default
    /// `127.0.0.1` (seed: "localhost (default = 127.0.0.1)").
    pub localhost: Ipv4Addr,
    /// Refuse connects and sends from an in-scope process to another session's loopback address
    /// (SPEC §6; no vendor offers it). Default off.
    pub isolate: bool,
    /// What happens to `[::1]` (SPEC §8): `unchanged` (the default, what the vendors do: two
    /// sessions' servers on `localhost` still clash on `[::1]`) or `map` (an in-scope `[::1]:p`
    /// becomes `[::ffff:session_loopback]:p`, reported back as `[::1]:p`). An ipvirt extension.
    pub ipv6: Ipv6Loopback,
}

/// `virtual_loopback.ipv6`: what happens to the IPv6 loopback address `::1` (SPEC §8).
///
/// ```
/// use ipvirt::{Ipv6Loopback, Policy};
///
/// assert_eq!(Ipv6Loopback::default(), Ipv6Loopback::Unchanged);
/// let p = Policy::from_toml("[virtual_loopback]\nipv6 = \"map\"\n")?;
/// assert_eq!(p.virtual_loopback.ipv6, Ipv6Loopback::Map);
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6Loopback {
    /// `::1` is never rewritten (the vendors' behaviour); the validator flags it when virtual
    /// loopback is on.
    #[default]
    Unchanged,
    /// An in-scope `bind`, `connect` or `sendto` of `[::1]:p` on a socket that accepts IPv4-mapped
    /// addresses becomes `[::ffff:session_loopback]:p`; results report `[::1]:p`.
    Map,
}

impl fmt::Display for Ipv6Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv6Loopback::Unchanged => "unchanged",
            Ipv6Loopback::Map => "map",
        })
    }
}

impl Default for VirtualLoopback {
    fn default() -> VirtualLoopback {
        VirtualLoopback {
            enabled: false,
            programs: Vec::new(),
            excluded_ports: Vec::new(),
            localhost: Ipv4Addr::LOCALHOST,
            isolate: false,
            ipv6: Ipv6Loopback::Unchanged,
        }
    }
}

/// Microsoft Remote Desktop IP Virtualization.
///
/// ```
/// use ipvirt::{LeaseFailure, VipMode, VirtualIp};
///
/// let vip = VirtualIp::default();
/// assert!(!vip.enabled);
/// assert_eq!(vip.mode, VipMode::PerProgram);
/// assert_eq!(vip.on_lease_failure, LeaseFailure::UseServerAddress);
/// assert!(vip.adapter.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct VirtualIp {
    /// `EnableVirtualIP`. Default off.
    pub enabled: bool,
    /// `VirtualMode`: per session or per program. Default per program.
    pub mode: VipMode,
    /// `PerApp`: the programs that get the session's VIP in per-program mode, by name or full path.
    pub programs: Vec<String>,
    /// `VIPAdapter`: the IPv4 network that selects the adapter the VIPs live on. `None`: VIP cannot
    /// work (the validator says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<Ipv4Net>,
    /// The static pool the VIPs are leased from: ranges (`a-b`), CIDRs and single addresses.
    pub pool: Vec<PoolEntry>,
    /// `PromptOnIPLeaseFail`: what a session that got no VIP does. Default: use the server's address.
    pub on_lease_failure: LeaseFailure,
    /// Where the VIPs come from: the static `pool` (the default, Microsoft's static-pool plug-in)
    /// or a DHCP server (Microsoft's own default; [`Policy::from_reg`] sets it).
    #[serde(skip_serializing_if = "VipSource::is_static")]
    pub source: VipSource,
    /// The DHCP client's settings, used when `source` is `dhcp`.
    #[serde(skip_serializing_if = "DhcpSettings::is_default")]
    pub dhcp: DhcpSettings,
}

/// `virtual_ip.source`: where the sessions' VIPs come from.
///
/// ```
/// use ipvirt::{Policy, VipSource};
///
/// assert_eq!(VipSource::default(), VipSource::Static);
/// let p = Policy::from_toml("[virtual_ip]\nsource = \"dhcp\"\n[virtual_ip.dhcp]\ninterface = \"eth1\"\n")?;
/// assert_eq!(p.virtual_ip.source, VipSource::Dhcp);
/// assert_eq!(p.virtual_ip.dhcp.interface.as_deref(), Some("eth1"));
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VipSource {
    /// The static pool `virtual_ip.pool` (the default, so that a policy with a pool means what it
    /// always meant).
    #[default]
    Static,
    /// A DHCP server on the VIP adapter's network, one client identifier per session
    /// (`ipvirt::dhcp`, feature `dhcp`).
    Dhcp,
}

impl VipSource {
    fn is_static(&self) -> bool {
        *self == VipSource::Static
    }
}

impl fmt::Display for VipSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VipSource::Static => "static",
            VipSource::Dhcp => "dhcp",
        })
    }
}

/// `[virtual_ip.dhcp]`: the DHCP client's settings (used when `virtual_ip.source = "dhcp"`).
///
/// ```
/// use ipvirt::DhcpSettings;
///
/// let d = DhcpSettings::default();
/// assert!(d.interface.is_none() && d.client_id_prefix.is_none());
/// assert!(d.configure_addresses);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DhcpSettings {
    /// The network interface the DHCP messages go through (Linux: `eth1`). `None`: the interface
    /// that has a route to `virtual_ip.adapter`'s network, as `VIPAdapter` selects the adapter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The stable start of every session's DHCP client identifier; the session id follows. `None`:
    /// `ipvirt-<host name>-`. Two servers that share a DHCP server need different prefixes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_prefix: Option<String>,
    /// Add each leased address to the interface (and remove it when the lease ends), as Microsoft's
    /// IP virtualization does; a hooking layer can bind a socket to a VIP only when it is the
    /// host's, and the server's renewal replies reach it only then. Default on.
    pub configure_addresses: bool,
}

impl Default for DhcpSettings {
    fn default() -> DhcpSettings {
        DhcpSettings {
            interface: None,
            client_id_prefix: None,
            configure_addresses: true,
        }
    }
}

impl DhcpSettings {
    fn is_default(&self) -> bool {
        *self == DhcpSettings::default()
    }
}

/// `VirtualMode`: who gets a virtual IP.
///
/// ```
/// use ipvirt::VipMode;
///
/// assert_eq!(VipMode::default(), VipMode::PerProgram);
/// assert_eq!(VipMode::PerSession.to_string(), "per-session");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VipMode {
    /// `VirtualMode = 0`: every process of the session uses the session's VIP.
    PerSession,
    /// `VirtualMode = 1` (the default): only the listed programs use it, all sharing one address.
    #[default]
    PerProgram,
}

impl fmt::Display for VipMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VipMode::PerSession => "per-session",
            VipMode::PerProgram => "per-program",
        })
    }
}

/// `PromptOnIPLeaseFail`: what happens to a session that could not lease a VIP.
///
/// The hooking layer maps [`LeaseFailure::NoConnectivity`] to `EADDRNOTAVAIL` /
/// `WSAEADDRNOTAVAIL` on the calls that would have used the VIP.
///
/// ```
/// use ipvirt::LeaseFailure;
///
/// assert_eq!(LeaseFailure::default(), LeaseFailure::UseServerAddress);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseFailure {
    /// `PromptOnIPLeaseFail = 0` (default): the session uses the server's address.
    #[default]
    UseServerAddress,
    /// `PromptOnIPLeaseFail = 1`: the session gets no network connectivity.
    NoConnectivity,
}

impl fmt::Display for LeaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseFailure::UseServerAddress => "use-server-address",
            LeaseFailure::NoConnectivity => "no-connectivity",
        })
    }
}

/// Citrix preferred loopback (`HKLM\SOFTWARE\Wow6432Node\Citrix\VIP`).
///
/// ```
/// use ipvirt::PreferLoopback;
///
/// assert!(!PreferLoopback::default().enabled);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PreferLoopback {
    /// `PreferLoopback` (REG_DWORD 1 = on). Default off.
    pub enabled: bool,
    /// `PreferLoopbackProcesses` (REG_MULTI_SZ): the processes it applies to.
    pub processes: Vec<String>,
}

/// The server's operating system, for validation (SPEC §4).
///
/// ```
/// use ipvirt::Platform;
///
/// assert_eq!("windows-server-2022".parse::<Platform>(), Ok(Platform::WindowsServer2022));
/// assert_eq!(Platform::Other.to_string(), "other");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Platform {
    /// Windows Server 2008 R2 (Microsoft VIP's first release).
    WindowsServer2008R2,
    /// Windows Server 2012.
    WindowsServer2012,
    /// Windows Server 2012 R2.
    WindowsServer2012R2,
    /// Windows Server 2016.
    WindowsServer2016,
    /// Windows Server 2019 (VIP needs the Winsock LSP catalog fix or update).
    WindowsServer2019,
    /// Windows Server 2022 (VIP needs the Winsock LSP catalog fix or update).
    WindowsServer2022,
    /// Windows Server 2025.
    WindowsServer2025,
    /// Windows 10 Enterprise multi-session: not supported.
    Windows10MultiSession,
    /// Windows 11 Enterprise multi-session: not supported.
    Windows11MultiSession,
    /// A single-session desktop Windows: the features do not apply.
    WindowsDesktop,
    /// Anything else (e.g. Linux with an `LD_PRELOAD` layer): not restricted.
    Other,
}

impl Platform {
    /// Every platform, in declaration order.
    pub const ALL: [Platform; 11] = [
        Platform::WindowsServer2008R2,
        Platform::WindowsServer2012,
        Platform::WindowsServer2012R2,
        Platform::WindowsServer2016,
        Platform::WindowsServer2019,
        Platform::WindowsServer2022,
        Platform::WindowsServer2025,
        Platform::Windows10MultiSession,
        Platform::Windows11MultiSession,
        Platform::WindowsDesktop,
        Platform::Other,
    ];

    /// The name used in policy files.
    ///
    /// ```
    /// use ipvirt::Platform;
    ///
    /// assert_eq!(Platform::WindowsServer2008R2.as_str(), "windows-server-2008-r2");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::WindowsServer2008R2 => "windows-server-2008-r2",
            Platform::WindowsServer2012 => "windows-server-2012",
            Platform::WindowsServer2012R2 => "windows-server-2012-r2",
            Platform::WindowsServer2016 => "windows-server-2016",
            Platform::WindowsServer2019 => "windows-server-2019",
            Platform::WindowsServer2022 => "windows-server-2022",
            Platform::WindowsServer2025 => "windows-server-2025",
            Platform::Windows10MultiSession => "windows-10-multi-session",
            Platform::Windows11MultiSession => "windows-11-multi-session",
            Platform::WindowsDesktop => "windows-desktop",
            Platform::Other => "other",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Platform {
    type Error = PolicyError;

    fn try_from(s: String) -> Result<Platform, PolicyError> {
        s.parse()
    }
}

impl From<Platform> for String {
    fn from(p: Platform) -> String {
        String::from(p.as_str())
    }
}

impl core::str::FromStr for Platform {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Platform, PolicyError> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownPlatform { value: s.into() })
    }
}

/// An error reading a policy: syntax, an unknown key, a wrong type or a malformed value.
///
/// Errors from a file name the line (1-based) and the key, so the administrator can go straight to it.
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, PolicyError};
///
/// let err = Policy::from_toml("[virtual_loopback]\nenabled = true\nprogram = [\"crm.exe\"]\n").unwrap_err();
/// assert!(matches!(err, PolicyError::Toml { line: 3, .. }));
/// assert!(err.to_string().starts_with("policy line 3, key `virtual_loopback.program`: unknown field `program`"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The TOML text is malformed, has an unknown key, a value of the wrong type, or a value that does
    /// not parse (an address, a CIDR, a pool range, a mode).
    #[error("policy line {line}{}: {message}", key.as_deref().map(|k| alloc::format!(", key `{k}`")).unwrap_or_default())]
    Toml {
        /// The 1-based line the error is on.
        line: usize,
        /// The dotted key the error is about (`virtual_ip.adapter`), where it could be told.
        key: Option<String>,
        /// What is wrong, from the TOML reader.
        message: String,
    },
    /// The platform name is not one this crate knows.
    #[error(
        "unknown platform {value:?}: expected one of windows-server-2008-r2, windows-server-2012, windows-server-2012-r2, windows-server-2016, windows-server-2019, windows-server-2022, windows-server-2025, windows-10-multi-session, windows-11-multi-session, windows-desktop, other"
    )]
    UnknownPlatform {
        /// The name that was given.
        value: String,
    },
    /// A `sessions.console_ttys` entry with a `*` anywhere but at its end, or empty.
    #[error(
        "sessions.console_ttys entry {value:?}: an entry is a tty name, or a prefix followed by one `*` at its end"
    )]
    ConsoleTty {
        /// The entry.
        value: String,
    },
    /// The policy could not be written as TOML (only possible if a field cannot be represented).
    #[error("policy cannot be written as TOML: {message}")]
    Serialize {
        /// What the TOML writer said.
        message: String,
    },
}
