//! Policy validation: whether the settings make sense together, in words (SPEC §3, §4).
//!
//! Reading a policy checks syntax and types; [`Policy::validate`] checks meaning and returns
//! [`Diagnostic`]s instead of failing: the engine always does what the settings say, and an
//! administrator decides what to fix. Each diagnostic has a [`Severity`], a stable
//! [`DiagnosticCode`] (its [`as_str`](DiagnosticCode::as_str) form never changes between releases,
//! so tools can match on it), and a sentence that names the setting (by its policy-file key) and the
//! value.
//!
//! | code | severity | when |
//! |---|---|---|
//! | `platform-unsupported` | error | a feature is on and the platform is Windows 10/11 Enterprise multi-session |
//! | `platform-desktop` | error | a feature is on and the platform is a desktop Windows |
//! | `platform-vip-lsp-fix` | warning | virtual IP on Windows Server 2019/2022 (needs the Winsock LSP catalog fix or update) |
//! | `platform-not-stated` | info | a feature is on and no platform is stated: platform checks skipped |
//! | `prefer-loopback-unexpected` | warning | preferred loopback is on while virtual IP or virtual loopback is off ("unexpected results") |
//! | `prefer-loopback-not-listed` | warning | a preferred-loopback process is not in the virtual loopback programs list |
//! | `vip-programs-ignored` | warning | `virtual_ip.programs` is set in per-session mode |
//! | `vip-no-adapter` | error | virtual IP is on without `adapter`: it stays off |
//! | `vip-no-pool` | warning | virtual IP is on with the static source and no pool: no session gets an address |
//! | `vip-dhcp-no-interface` | error | the DHCP source has neither `virtual_ip.dhcp.interface` nor `adapter` to select the interface |
//! | `vip-dhcp-bad-interface` | error | `virtual_ip.dhcp.interface` cannot be a Linux interface name (empty, over 15 bytes, `/`, `:` or blanks) |
//! | `vip-dhcp-bad-prefix` | error | `virtual_ip.dhcp.client_id_prefix` is empty or over 200 bytes (a client identifier holds at most 255) |
//! | `vip-dhcp-pool-ignored` | warning | the DHCP source is used and `virtual_ip.pool` is set: the pool is not used |
//! | `vip-dhcp-settings-ignored` | info | `[virtual_ip.dhcp]` is set but the source is `static`: the settings are not used |
//! | `vip-no-programs` | warning | per-program virtual IP with an empty program list |
//! | `pool-outside-adapter` | error | a pool entry is not inside the adapter network |
//! | `pool-adapter-edge` | warning | a pool entry holds the adapter network's network or broadcast address |
//! | `pool-not-unicast` | error | a pool entry holds unspecified, loopback, multicast or broadcast addresses |
//! | `pool-overlap` | info | pool entries overlap (they are merged) |
//! | `pool-server-address` | warning | a pool entry holds one of the server's addresses (never leased; [`Policy::validate_for`]) |
//! | `loopback-no-programs` | warning | virtual loopback is on with an empty programs list: nothing is rewritten |
//! | `localhost-not-loopback` | error | `virtual_loopback.localhost` is outside 127.0.0.0/8 or is 127.0.0.0 |
//! | `excluded-port-zero` | warning | port 0 is excluded: every bind to the localhost address with port 0 is left alone |
//! | `duplicate-port` | warning | a port is excluded twice |
//! | `duplicate-program` | warning | a list names the same program twice (after case and separator folding) |
//! | `program-wildcard` | warning | a list entry has `*` or `?`: there are no wildcards, it is matched literally |
//! | `program-empty` | warning | a list entry is empty: it matches nothing |
//! | `isolate-without-loopback` | info | `virtual_loopback.isolate` is on while virtual loopback is off: no effect |
//! | `ipv6-loopback-unchanged` | info | virtual loopback is on and `virtual_loopback.ipv6` is `unchanged`: servers on `[::1]` (Node's and Windows' `localhost`) still clash between sessions (SPEC §8) |
//!
//! [`Policy::from_reg`] adds three codes of its own for values it had to ignore:
//!
//! | code | severity | when |
//! |---|---|---|
//! | `reg-unknown-value` | info | a value under one of the policy keys is not a setting ipvirt knows |
//! | `reg-wrong-type` | warning | a known value has the wrong registry type |
//! | `reg-bad-value` | warning or error | a known value has a value it cannot take (`VirtualMode = 5`, a `VIPAdapter` that is not a CIDR) |

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{DhcpSettings, Ipv6Loopback, Platform, Policy, VipMode, VipSource};
use crate::addr::reserved_block;
use crate::host::Host;
use crate::program::{duplicates, fold_program_name};
use crate::session::SessionId;

/// How serious a [`Diagnostic`] is.
///
/// ```
/// use ipvirt::Severity;
///
/// assert!(Severity::Error > Severity::Warning);
/// assert_eq!(Severity::Info.to_string(), "info");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// The policy works, probably not as intended.
    Warning,
    /// The policy cannot work as written (on this platform, or at all).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Writes [`DiagnosticCode`] from one list, one row per code: `Variant = number, "code text",
/// C_NAME;` (rustls's `enum_builder!` habit). The number and the C name are the C ABI's
/// (`IPVIRT_DIAG_*` in `src/ipvirt.h`, frozen: later codes are appended); the text is the stable
/// code tools match on. The header test checks the header against this list.
macro_rules! diagnostic_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $n:literal, $text:literal, $c_name:ident;)*) => {
        /// What a [`Diagnostic`] is about; [`as_str`](Self::as_str) is its stable code, and
        /// [`number`](Self::number) and [`c_name`](Self::c_name) its frozen number and name in the
        /// C ABI.
        ///
        /// ```
        /// use ipvirt::DiagnosticCode;
        ///
        /// let code = DiagnosticCode::PreferLoopbackUnexpected;
        /// assert_eq!(code.as_str(), "prefer-loopback-unexpected");
        /// assert_eq!((code.number(), code.c_name()), (5, "IPVIRT_DIAG_PREFER_LOOPBACK_UNEXPECTED"));
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum DiagnosticCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DiagnosticCode {
            /// Every code, in the order of their numbers (1, 2, …).
            ///
            /// ```
            /// use ipvirt::DiagnosticCode;
            ///
            /// assert!(DiagnosticCode::ALL.iter().zip(1..).all(|(c, n)| c.number() == n));
            /// ```
            pub const ALL: [DiagnosticCode; [$($n),*].len()] = [$(DiagnosticCode::$variant),*];

            /// The stable code (`"vip-no-adapter"`): it never changes between releases.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DiagnosticCode::$variant => $text,)*
                }
            }

            /// The frozen number of the C ABI (`IPVIRT_DIAG_*`).
            #[must_use]
            pub const fn number(self) -> u32 {
                match self {
                    $(DiagnosticCode::$variant => $n,)*
                }
            }

            /// The name of the number in the C header (`"IPVIRT_DIAG_VIP_NO_ADAPTER"`).
            #[must_use]
            pub const fn c_name(self) -> &'static str {
                match self {
                    $(DiagnosticCode::$variant => stringify!($c_name),)*
                }
            }

            /// The code with the C number `n`, if there is one.
            ///
            /// ```
            /// use ipvirt::DiagnosticCode;
            ///
            /// assert_eq!(DiagnosticCode::from_number(8), Some(DiagnosticCode::VipNoAdapter));
            /// assert_eq!(DiagnosticCode::from_number(0), None);
            /// ```
            #[must_use]
            pub const fn from_number(n: u32) -> Option<DiagnosticCode> {
                match n {
                    $($n => Some(DiagnosticCode::$variant),)*
                    _ => None,
                }
            }

            /// The stable code as a NUL-terminated C string (the C ABI's `code_name`).
            #[cfg(feature = "capi")]
            pub(crate) const fn as_c_str(self) -> &'static core::ffi::CStr {
                match self {
                    $(DiagnosticCode::$variant => {
                        const { match core::ffi::CStr::from_bytes_with_nul(concat!($text, "\0").as_bytes()) {
                            Ok(c) => c,
                            Err(_) => unreachable!(),
                        } }
                    })*
                }
            }
        }
    };
}

diagnostic_codes! {
    /// A feature is on and the platform is Windows 10/11 Enterprise multi-session (error).
    PlatformUnsupported = 1, "platform-unsupported", IPVIRT_DIAG_PLATFORM_UNSUPPORTED;
    /// A feature is on and the platform is a desktop Windows (error).
    PlatformDesktop = 2, "platform-desktop", IPVIRT_DIAG_PLATFORM_DESKTOP;
    /// Virtual IP on Windows Server 2019/2022, which needs the Winsock LSP catalog fix or update (warning).
    PlatformVipLspFix = 3, "platform-vip-lsp-fix", IPVIRT_DIAG_PLATFORM_VIP_LSP_FIX;
    /// A feature is on and no platform is stated: platform checks skipped (info).
    PlatformNotStated = 4, "platform-not-stated", IPVIRT_DIAG_PLATFORM_NOT_STATED;
    /// Preferred loopback is on while virtual IP or virtual loopback is off: "unexpected results" (warning).
    PreferLoopbackUnexpected = 5, "prefer-loopback-unexpected", IPVIRT_DIAG_PREFER_LOOPBACK_UNEXPECTED;
    /// A preferred-loopback process is not in the virtual loopback programs list (warning).
    PreferLoopbackNotListed = 6, "prefer-loopback-not-listed", IPVIRT_DIAG_PREFER_LOOPBACK_NOT_LISTED;
    /// `virtual_ip.programs` is set in per-session mode (warning).
    VipProgramsIgnored = 7, "vip-programs-ignored", IPVIRT_DIAG_VIP_PROGRAMS_IGNORED;
    /// Virtual IP is on without `adapter`: it stays off (error).
    VipNoAdapter = 8, "vip-no-adapter", IPVIRT_DIAG_VIP_NO_ADAPTER;
    /// Virtual IP is on with the static source and no pool: no session gets an address (warning).
    VipNoPool = 9, "vip-no-pool", IPVIRT_DIAG_VIP_NO_POOL;
    /// Per-program virtual IP with an empty program list (warning).
    VipNoPrograms = 10, "vip-no-programs", IPVIRT_DIAG_VIP_NO_PROGRAMS;
    /// A pool entry is not inside the adapter network (error).
    PoolOutsideAdapter = 11, "pool-outside-adapter", IPVIRT_DIAG_POOL_OUTSIDE_ADAPTER;
    /// A pool entry holds the adapter network's network or broadcast address (warning).
    PoolAdapterEdge = 12, "pool-adapter-edge", IPVIRT_DIAG_POOL_ADAPTER_EDGE;
    /// A pool entry holds unspecified, loopback, multicast or broadcast addresses (error).
    PoolNotUnicast = 13, "pool-not-unicast", IPVIRT_DIAG_POOL_NOT_UNICAST;
    /// Pool entries overlap; they are merged (info).
    PoolOverlap = 14, "pool-overlap", IPVIRT_DIAG_POOL_OVERLAP;
    /// A pool entry holds one of the server's addresses, never leased ([`Policy::validate_for`], warning).
    PoolServerAddress = 15, "pool-server-address", IPVIRT_DIAG_POOL_SERVER_ADDRESS;
    /// Virtual loopback is on with an empty programs list: nothing is rewritten (warning).
    LoopbackNoPrograms = 16, "loopback-no-programs", IPVIRT_DIAG_LOOPBACK_NO_PROGRAMS;
    /// `virtual_loopback.localhost` is outside 127.0.0.0/8 or is 127.0.0.0 (error).
    LocalhostNotLoopback = 17, "localhost-not-loopback", IPVIRT_DIAG_LOCALHOST_NOT_LOOPBACK;
    /// Port 0 is excluded: every bind to the localhost address with port 0 is left alone (warning).
    ExcludedPortZero = 18, "excluded-port-zero", IPVIRT_DIAG_EXCLUDED_PORT_ZERO;
    /// A port is excluded twice (warning).
    DuplicatePort = 19, "duplicate-port", IPVIRT_DIAG_DUPLICATE_PORT;
    /// A list names the same program twice, after case and separator folding (warning).
    DuplicateProgram = 20, "duplicate-program", IPVIRT_DIAG_DUPLICATE_PROGRAM;
    /// A list entry has `*` or `?`: there are no wildcards, it is matched literally (warning).
    ProgramWildcard = 21, "program-wildcard", IPVIRT_DIAG_PROGRAM_WILDCARD;
    /// A list entry is empty: it matches nothing (warning).
    ProgramEmpty = 22, "program-empty", IPVIRT_DIAG_PROGRAM_EMPTY;
    /// `virtual_loopback.isolate` is on while virtual loopback is off: no effect (info).
    IsolateWithoutLoopback = 23, "isolate-without-loopback", IPVIRT_DIAG_ISOLATE_WITHOUT_LOOPBACK;
    /// Virtual loopback is on and `virtual_loopback.ipv6` is `unchanged`: servers on `[::1]` still clash between sessions (info).
    Ipv6LoopbackUnchanged = 24, "ipv6-loopback-unchanged", IPVIRT_DIAG_IPV6_LOOPBACK_UNCHANGED;
    /// A value under one of the policy keys of a `.reg` export is not a setting ipvirt knows (info).
    RegUnknownValue = 25, "reg-unknown-value", IPVIRT_DIAG_REG_UNKNOWN_VALUE;
    /// A known value of a `.reg` export has the wrong registry type (warning).
    RegWrongType = 26, "reg-wrong-type", IPVIRT_DIAG_REG_WRONG_TYPE;
    /// A known value of a `.reg` export has a value it cannot take (warning or error).
    RegBadValue = 27, "reg-bad-value", IPVIRT_DIAG_REG_BAD_VALUE;
    /// The DHCP source has neither `virtual_ip.dhcp.interface` nor `adapter` to select the interface (error).
    VipDhcpNoInterface = 28, "vip-dhcp-no-interface", IPVIRT_DIAG_VIP_DHCP_NO_INTERFACE;
    /// `virtual_ip.dhcp.interface` cannot be a Linux interface name (error).
    VipDhcpBadInterface = 29, "vip-dhcp-bad-interface", IPVIRT_DIAG_VIP_DHCP_BAD_INTERFACE;
    /// `virtual_ip.dhcp.client_id_prefix` is empty or over 200 bytes (error).
    VipDhcpBadPrefix = 30, "vip-dhcp-bad-prefix", IPVIRT_DIAG_VIP_DHCP_BAD_PREFIX;
    /// The DHCP source is used and `virtual_ip.pool` is set: the pool is not used (warning).
    VipDhcpPoolIgnored = 31, "vip-dhcp-pool-ignored", IPVIRT_DIAG_VIP_DHCP_POOL_IGNORED;
    /// `[virtual_ip.dhcp]` is set but the source is `static`: the settings are not used (info).
    VipDhcpSettingsIgnored = 32, "vip-dhcp-settings-ignored", IPVIRT_DIAG_VIP_DHCP_SETTINGS_IGNORED;
}

impl fmt::Display for DiagnosticCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of [`Policy::validate`].
///
/// ```
/// use ipvirt::{DiagnosticCode, Policy, Severity};
///
/// let policy = Policy::from_toml("[virtual_ip]\nenabled = true\n")?;
/// let d = policy.validate().into_iter().find(|d| d.code == DiagnosticCode::VipNoAdapter).unwrap();
/// assert_eq!(d.severity, Severity::Error);
/// assert!(d.to_string().starts_with("error[vip-no-adapter]: virtual_ip.enabled is true but virtual_ip.adapter is not set"));
/// # Ok::<(), ipvirt::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// What it is about (stable).
    pub code: DiagnosticCode,
    /// The sentence: the setting, the value, and what follows.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)
    }
}

struct Out(Vec<Diagnostic>);

impl Out {
    fn push(&mut self, severity: Severity, code: DiagnosticCode, message: String) {
        self.0.push(Diagnostic {
            severity,
            code,
            message,
        });
    }
}

impl Policy {
    /// Checks that the settings make sense together; see the table of [`DiagnosticCode`]s.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{DiagnosticCode, Policy};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     platform = "windows-server-2016"
    ///     [virtual_loopback]
    ///     enabled = true
    ///     programs = ["crm.exe"]
    ///     ipv6 = "map"
    ///     [prefer_loopback]
    ///     enabled = true
    ///     processes = ["crm.exe"]
    /// "#)?;
    /// let codes: Vec<_> = policy.validate().iter().map(|d| d.code).collect();
    /// assert_eq!(codes, [DiagnosticCode::PreferLoopbackUnexpected]); // virtual IP is off
    /// # Ok::<(), ipvirt::PolicyError>(())
    /// ```
    #[must_use]
    pub fn validate(&self) -> Vec<Diagnostic> {
        let mut out = Out(Vec::new());
        self.check_platform(&mut out);
        self.check_loopback(&mut out);
        self.check_vip(&mut out);
        self.check_prefer(&mut out);
        self.check_lists(&mut out);
        out.0
    }

    /// [`validate`](Self::validate), plus the checks that need the server's own addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{DiagnosticCode, Host, Policy};
    ///
    /// let policy = Policy::from_toml(
    ///     "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\npool = [\"192.0.2.0/24\"]\n",
    /// )?;
    /// let host = Host::new(["192.0.2.10".parse()?]);
    /// assert!(policy.validate_for(&host).iter().any(|d| d.code == DiagnosticCode::PoolServerAddress));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn validate_for(&self, host: &Host) -> Vec<Diagnostic> {
        let mut out = Out(self.validate());
        for entry in &self.virtual_ip.pool {
            for &server in host.ipv4() {
                if entry.contains(server) {
                    out.push(
                        Severity::Warning,
                        DiagnosticCode::PoolServerAddress,
                        format!(
                            "virtual_ip.pool entry \"{entry}\" holds {server}, one of the server's own addresses: it is never leased"
                        ),
                    );
                }
            }
        }
        out.0
    }

    fn any_feature(&self) -> bool {
        self.virtual_loopback.enabled || self.virtual_ip.enabled || self.prefer_loopback.enabled
    }

    fn check_platform(&self, out: &mut Out) {
        if !self.any_feature() {
            return;
        }
        match self.platform {
            None => out.push(
                Severity::Info,
                DiagnosticCode::PlatformNotStated,
                "platform is not stated: the checks of supported platforms were skipped".into(),
            ),
            Some(p @ (Platform::Windows10MultiSession | Platform::Windows11MultiSession)) => out.push(
                Severity::Error,
                DiagnosticCode::PlatformUnsupported,
                format!(
                    "platform = \"{p}\": Windows 10/11 Enterprise multi-session supports neither Remote Desktop IP Virtualization nor Citrix virtual loopback"
                ),
            ),
            Some(p @ Platform::WindowsDesktop) => out.push(
                Severity::Error,
                DiagnosticCode::PlatformDesktop,
                format!(
                    "platform = \"{p}\": virtual IP and virtual loopback apply only to multi-session Windows Server, not to desktop Windows"
                ),
            ),
            Some(p @ (Platform::WindowsServer2019 | Platform::WindowsServer2022)) if self.virtual_ip.enabled => out.push(
                Severity::Warning,
                DiagnosticCode::PlatformVipLspFix,
                format!(
                    "platform = \"{p}\" with virtual_ip.enabled: Remote Desktop IP Virtualization needs the Winsock LSP catalog fix (or the Windows update that includes it) on this version"
                ),
            ),
            Some(_) => {}
        }
    }

    fn check_loopback(&self, out: &mut Out) {
        let vl = &self.virtual_loopback;
        let lh = vl.localhost;
        if SessionId::from_loopback(lh).is_none() {
            out.push(
                Severity::Error,
                DiagnosticCode::LocalhostNotLoopback,
                format!(
                    "virtual_loopback.localhost = {lh} is not a loopback address: it must be in 127.0.0.0/8 and not 127.0.0.0 (the policy cannot be compiled)"
                ),
            );
        }
        if vl.enabled && vl.programs.is_empty() {
            out.push(
                Severity::Warning,
                DiagnosticCode::LoopbackNoPrograms,
                "virtual_loopback.enabled is true but virtual_loopback.programs is empty: only listed programs are rewritten, so nothing is".into(),
            );
        }
        if vl.enabled && vl.ipv6 == Ipv6Loopback::Unchanged {
            out.push(
                Severity::Info,
                DiagnosticCode::Ipv6LoopbackUnchanged,
                "virtual_loopback.ipv6 is unchanged (the vendors' behaviour): programs that resolve localhost to ::1 (Node.js 17 and later, Windows) still share [::1] between sessions; set it to \"map\" to give each session its own".into(),
            );
        }
        if vl.isolate && !vl.enabled {
            out.push(
                Severity::Info,
                DiagnosticCode::IsolateWithoutLoopback,
                "virtual_loopback.isolate is true but virtual_loopback.enabled is false: isolation has no effect".into(),
            );
        }
        if vl.excluded_ports.contains(&0) {
            out.push(
                Severity::Warning,
                DiagnosticCode::ExcludedPortZero,
                format!(
                    "virtual_loopback.excluded_ports contains 0, which is no real port: every bind to {lh}:0 (an ephemeral port) is left on {lh}"
                ),
            );
        }
        let mut seen = Vec::new();
        for &p in &vl.excluded_ports {
            if seen.contains(&p) {
                out.push(
                    Severity::Warning,
                    DiagnosticCode::DuplicatePort,
                    format!("virtual_loopback.excluded_ports lists port {p} more than once"),
                );
            } else {
                seen.push(p);
            }
        }
    }

    fn check_vip_source(&self, out: &mut Out) {
        let vip = &self.virtual_ip;
        let dhcp = &vip.dhcp;
        if vip.source == VipSource::Static {
            if *dhcp != DhcpSettings::default() {
                out.push(
                    Severity::Info,
                    DiagnosticCode::VipDhcpSettingsIgnored,
                    "[virtual_ip.dhcp] is set but virtual_ip.source is \"static\": the DHCP settings are not used".into(),
                );
            }
            return;
        }
        if vip.enabled && dhcp.interface.is_none() && vip.adapter.is_none() {
            out.push(
                Severity::Error,
                DiagnosticCode::VipDhcpNoInterface,
                "virtual_ip.source is \"dhcp\" but neither virtual_ip.dhcp.interface nor virtual_ip.adapter is set: nothing says which interface to lease the VIPs on".into(),
            );
        }
        if let Some(i) = &dhcp.interface
            && (i.is_empty()
                || i.len() > 15
                || i == "."
                || i == ".."
                || i.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()))
        {
            out.push(
                Severity::Error,
                DiagnosticCode::VipDhcpBadInterface,
                format!("virtual_ip.dhcp.interface = {i:?} cannot be a network interface name: at most 15 bytes, without '/', ':' or blanks"),
            );
        }
        if let Some(p) = &dhcp.client_id_prefix
            && (p.is_empty() || p.len() > 200)
        {
            out.push(
                Severity::Error,
                DiagnosticCode::VipDhcpBadPrefix,
                format!(
                    "virtual_ip.dhcp.client_id_prefix is {} bytes long: it must be 1 to 200 bytes (the session id follows it in a client identifier of at most 255)",
                    p.len()
                ),
            );
        }
        if !vip.pool.is_empty() {
            out.push(
                Severity::Warning,
                DiagnosticCode::VipDhcpPoolIgnored,
                format!(
                    "virtual_ip.source is \"dhcp\" but virtual_ip.pool lists {} entr{}: the pool is not used",
                    vip.pool.len(),
                    if vip.pool.len() == 1 { "y" } else { "ies" }
                ),
            );
        }
    }

    fn check_vip(&self, out: &mut Out) {
        self.check_vip_source(out);
        let vip = &self.virtual_ip;
        if vip.enabled {
            if vip.adapter.is_none() {
                out.push(
                    Severity::Error,
                    DiagnosticCode::VipNoAdapter,
                    "virtual_ip.enabled is true but virtual_ip.adapter is not set: without VIPAdapter, virtual IP stays off".into(),
                );
            }
            if vip.pool.is_empty() && vip.source == VipSource::Static {
                out.push(
                    Severity::Warning,
                    DiagnosticCode::VipNoPool,
                    "virtual_ip.enabled is true but virtual_ip.pool is empty: the static pool has no address, so no session gets a VIP (set virtual_ip.source = \"dhcp\" to lease them from a DHCP server, Microsoft's default)".into(),
                );
            }
            match vip.mode {
                VipMode::PerSession if !vip.programs.is_empty() => out.push(
                    Severity::Warning,
                    DiagnosticCode::VipProgramsIgnored,
                    format!(
                        "virtual_ip.programs lists {} program(s) but virtual_ip.mode is per-session: every process of the session gets the VIP and the list is ignored",
                        vip.programs.len()
                    ),
                ),
                VipMode::PerProgram if vip.programs.is_empty() => out.push(
                    Severity::Warning,
                    DiagnosticCode::VipNoPrograms,
                    "virtual_ip.mode is per-program but virtual_ip.programs is empty: no process gets the VIP".into(),
                ),
                _ => {}
            }
        }
        for (i, entry) in vip.pool.iter().enumerate() {
            let (first, last) = (entry.first(), entry.last());
            if let Some(block) = reserved_block(first, last) {
                out.push(
                    Severity::Error,
                    DiagnosticCode::PoolNotUnicast,
                    format!(
                        "virtual_ip.pool entry \"{entry}\" holds addresses that cannot be a VIP: it overlaps {block}"
                    ),
                );
            }
            if let Some(adapter) = vip.adapter {
                let net = adapter.trunc();
                if !(net.contains(&first) && net.contains(&last)) {
                    out.push(
                        Severity::Error,
                        DiagnosticCode::PoolOutsideAdapter,
                        format!("virtual_ip.pool entry \"{entry}\" is not inside virtual_ip.adapter {net}: those VIPs would not be on the adapter's network"),
                    );
                } else if net.prefix_len() < 31 {
                    for edge in [net.network(), net.broadcast()] {
                        if entry.contains(edge) {
                            out.push(
                                Severity::Warning,
                                DiagnosticCode::PoolAdapterEdge,
                                format!(
                                    "virtual_ip.pool entry \"{entry}\" holds {edge}, the network or broadcast address of virtual_ip.adapter {net}"
                                ),
                            );
                        }
                    }
                }
            }
            for other in vip.pool.get(i + 1..).unwrap_or_default() {
                if entry.first() <= other.last() && other.first() <= entry.last() {
                    out.push(
                        Severity::Info,
                        DiagnosticCode::PoolOverlap,
                        format!("virtual_ip.pool entries \"{entry}\" and \"{other}\" overlap: they are merged"),
                    );
                }
            }
        }
    }

    fn check_prefer(&self, out: &mut Out) {
        let pl = &self.prefer_loopback;
        if !pl.enabled {
            return;
        }
        let off: Vec<&str> = [
            (!self.virtual_ip.enabled).then_some("virtual_ip.enabled"),
            (!self.virtual_loopback.enabled).then_some("virtual_loopback.enabled"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !off.is_empty() {
            out.push(
                Severity::Warning,
                DiagnosticCode::PreferLoopbackUnexpected,
                format!(
                    "prefer_loopback.enabled is true but {} is false: preferred loopback is meant for when both virtual IP and virtual loopback are on, otherwise results are unexpected",
                    off.join(" and ")
                ),
            );
        }
        let loopback: Vec<String> = self
            .virtual_loopback
            .programs
            .iter()
            .map(|p| fold_program_name(p))
            .collect();
        for p in &pl.processes {
            let folded = fold_program_name(p);
            if folded.is_empty() {
                continue;
            }
            let base = folded.rsplit('\\').next().unwrap_or(&folded);
            let listed = loopback
                .iter()
                .any(|l| *l == folded || (!l.contains('\\') && l == base));
            if !listed {
                out.push(
                    Severity::Warning,
                    DiagnosticCode::PreferLoopbackNotListed,
                    format!(
                        "prefer_loopback.processes lists \"{p}\", which is not in virtual_loopback.programs: its loopback traffic stays on 127.0.0.1 instead of the session's loopback address"
                    ),
                );
            }
        }
    }

    fn check_lists(&self, out: &mut Out) {
        let lists: [(&str, &[String]); 3] = [
            ("virtual_loopback.programs", &self.virtual_loopback.programs),
            ("virtual_ip.programs", &self.virtual_ip.programs),
            ("prefer_loopback.processes", &self.prefer_loopback.processes),
        ];
        for (key, list) in lists {
            for (first, later) in duplicates(list) {
                let (a, b) = (
                    list.get(first).map_or("", String::as_str),
                    list.get(later).map_or("", String::as_str),
                );
                out.push(
                    Severity::Warning,
                    DiagnosticCode::DuplicateProgram,
                    format!(
                        "{key} entry {} \"{b}\" names the same program as entry {} \"{a}\"",
                        later + 1,
                        first + 1
                    ),
                );
            }
            for (i, entry) in list.iter().enumerate() {
                if entry.trim().is_empty() {
                    out.push(
                        Severity::Warning,
                        DiagnosticCode::ProgramEmpty,
                        format!("{key} entry {} is empty: it matches nothing", i + 1),
                    );
                } else if entry.contains(['*', '?']) {
                    out.push(
                        Severity::Warning,
                        DiagnosticCode::ProgramWildcard,
                        format!("{key} entry {} \"{entry}\" contains a wildcard: names match literally, so it matches only a file with that very name", i + 1),
                    );
                }
            }
        }
    }
}
