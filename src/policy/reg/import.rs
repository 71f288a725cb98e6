//! The import: the values of the three keys the policy lives in, from an export's [`Entry`]s,
//! applied to a [`Policy`] ([`Policy::from_reg`], [`RegImport`], [`Origin`], [`VipOrigins`]).
//! Values it cannot use become [`Diagnostic`]s.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ipnet::Ipv4Net;

use super::lexer::{Data, Entry, Export, RegError, decode, multi_sz};
use crate::policy::{
    Diagnostic, DiagnosticCode, Ipv6Loopback, LeaseFailure, Policy, Severity, VipMode, VipSource,
};

const KEY_POLICY: &str = r"hkey_local_machine\software\policies\microsoft\windows nt\terminal services\tsappsrv\virtualip";
const KEY_LOCAL: &str =
    r"hkey_local_machine\system\currentcontrolset\control\terminal server\tsappsrv\virtualip";
const KEY_CITRIX: &str = r"hkey_local_machine\software\wow6432node\citrix\vip";
/// The keys the import reads, in the order of `from_reg`'s `kept` values.
const KEYS: [&str; 3] = [KEY_POLICY, KEY_LOCAL, KEY_CITRIX];

/// Where a Microsoft RD IP Virtualization value came from.
///
/// ```
/// use ipvirt::Origin;
///
/// assert_ne!(Origin::GroupPolicy, Origin::Local);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The group-policy key (`SOFTWARE\Policies\…\TSAppSrv\VirtualIP`): it wins.
    GroupPolicy,
    /// The local key (`SYSTEM\CurrentControlSet\…\TSAppSrv\VirtualIP`).
    Local,
}

/// Where each Microsoft value of a [`RegImport`] came from (`None`: neither key had it; the default
/// applies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct VipOrigins {
    /// `EnableVirtualIP`.
    pub enabled: Option<Origin>,
    /// `VirtualMode`.
    pub mode: Option<Origin>,
    /// `PerApp`.
    pub programs: Option<Origin>,
    /// `VIPAdapter`.
    pub adapter: Option<Origin>,
    /// `PromptOnIPLeaseFail`.
    pub on_lease_failure: Option<Origin>,
}

/// The result of [`Policy::from_reg`]: the policy, where its Microsoft values came from, and what
/// the import could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegImport {
    /// The policy the export describes.
    pub policy: Policy,
    /// Where each Microsoft value came from.
    pub origins: VipOrigins,
    /// Values that were ignored, and why.
    pub diagnostics: Vec<Diagnostic>,
}

/// The values the import collects from one key: (name, data, line), later lines win.
type Values = Vec<(String, Data, usize)>;

impl Policy {
    /// Reads a registry export (the bytes of a `.reg` file); see the module documentation above for
    /// the keys and formats.
    ///
    /// The time is linear in the size of the file, so a full export of `HKLM\SOFTWARE` (hundreds
    /// of thousands of keys, long wrapped binary values) is fine: only the three keys' values are
    /// kept, every other line is checked and dropped.
    ///
    /// # Errors
    ///
    /// [`RegError`] for a file that is not a registry export (no header, bad UTF-16) or has a
    /// malformed line; the error names the line.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Origin, Policy, VipMode};
    ///
    /// let reg = "Windows Registry Editor Version 5.00\r\n\r\n\
    ///     [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n\
    ///     \"EnableVirtualIP\"=dword:00000001\r\n\
    ///     \"VirtualMode\"=dword:00000000\r\n\
    ///     \"VIPAdapter\"=\"192.0.2.96/24\"\r\n";
    /// let import = Policy::from_reg(reg.as_bytes())?;
    /// assert!(import.policy.virtual_ip.enabled);
    /// assert_eq!(import.policy.virtual_ip.mode, VipMode::PerSession);
    /// assert_eq!(import.origins.adapter, Some(Origin::Local));
    /// # Ok::<(), ipvirt::RegError>(())
    /// ```
    pub fn from_reg(bytes: &[u8]) -> Result<RegImport, RegError> {
        let text = decode(bytes)?;
        let mut export = Export::new(&text)?;

        // Only the values of the three keys the import reads are kept; every other key's lines are
        // still checked by the lexer, so a malformed line anywhere is an error. A deleted key
        // clears what the file set in any of the three at or under it: a constant amount of work
        // per key line, however many keys the file has.
        let mut kept: [Values; 3] = [Vec::new(), Vec::new(), Vec::new()];
        // `None`: a key the import ignores (or none yet); `Some(i)`: `KEYS[i]`.
        let mut current: Option<usize> = None;
        for entry in export.by_ref() {
            match entry? {
                Entry::Key {
                    name,
                    deleted: true,
                } => {
                    // A deleted key removes what the file set in it (and in its subkeys) so far.
                    for (key, values) in KEYS.iter().zip(&mut kept) {
                        if key
                            .strip_prefix(name.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('\\'))
                        {
                            values.clear();
                        }
                    }
                    current = None;
                }
                Entry::Key {
                    name,
                    deleted: false,
                } => current = KEYS.iter().position(|k| *k == name),
                Entry::Value { line, name, data } => {
                    if let Some(values) = current.and_then(|i| kept.get_mut(i)) {
                        values.push((name, data, line));
                    }
                }
            }
        }
        let regedit4 = export.regedit4;

        let [gp, local, citrix] = &kept;
        let mut import = RegImport {
            policy: Policy::default(),
            origins: VipOrigins::default(),
            diagnostics: Vec::new(),
        };
        // No registry value names the source: Microsoft's IP virtualization leases from DHCP
        // unless a static-pool plug-in is installed, which the registry does not show.
        import.policy.virtual_ip.source = VipSource::Dhcp;
        import.apply_microsoft(gp, local, regedit4);
        import.apply_citrix(citrix, regedit4);
        Ok(import)
    }
}

/// The final value of `name` in a key (later lines win; a deletion removes it), case-insensitively.
fn last<'a>(values: &'a [(String, Data, usize)], name: &str) -> Option<(&'a Data, usize)> {
    match values
        .iter()
        .rev()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
    {
        Some((_, Data::Deleted, _)) | None => None,
        Some((_, d, l)) => Some((d, *l)),
    }
}

impl RegImport {
    fn diag(&mut self, severity: Severity, code: DiagnosticCode, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            code,
            message,
        });
    }

    fn unknown_values(&mut self, key: &str, values: &[(String, Data, usize)], known: &[&str]) {
        for (name, _, line) in values {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                let shown = if name.is_empty() {
                    "@ (the default value)"
                } else {
                    name
                };
                self.diag(
                    Severity::Info,
                    DiagnosticCode::RegUnknownValue,
                    format!("line {line}: value \"{shown}\" under {key} is not a setting ipvirt knows: ignored"),
                );
            }
        }
    }

    fn wrong_type(&mut self, line: usize, name: &str, want: &str, got: &Data) {
        self.diag(
            Severity::Warning,
            DiagnosticCode::RegWrongType,
            format!(
                "line {line}: {name} should be {want}, not {}: ignored",
                got.type_name()
            ),
        );
    }

    fn dword(&mut self, values: &[(String, Data, usize)], name: &str) -> Option<(u32, usize)> {
        match last(values, name)? {
            (Data::Dword(v), l) => Some((*v, l)),
            (other, l) => {
                let other = other.clone();
                self.wrong_type(l, name, "REG_DWORD", &other);
                None
            }
        }
    }

    fn multi(
        &mut self,
        values: &[(String, Data, usize)],
        name: &str,
        regedit4: bool,
    ) -> Option<Vec<String>> {
        match last(values, name)? {
            (Data::Hex(7, bytes), _) => Some(multi_sz(bytes, regedit4)),
            // A single program written as a plain string is accepted as a one-entry list.
            (Data::Sz(s), _) => Some(if s.is_empty() {
                Vec::new()
            } else {
                alloc::vec![s.clone()]
            }),
            (other, l) => {
                let other = other.clone();
                self.wrong_type(l, name, "REG_MULTI_SZ", &other);
                None
            }
        }
    }

    fn apply_microsoft(
        &mut self,
        gp: &[(String, Data, usize)],
        local: &[(String, Data, usize)],
        regedit4: bool,
    ) {
        const KNOWN: [&str; 5] = [
            "EnableVirtualIP",
            "VirtualMode",
            "PerApp",
            "VIPAdapter",
            "PromptOnIPLeaseFail",
        ];
        self.unknown_values("the VirtualIP group-policy key", gp, &KNOWN);
        self.unknown_values("the VirtualIP local key", local, &KNOWN);
        let sources = [(gp, Origin::GroupPolicy), (local, Origin::Local)];

        for (values, origin) in sources {
            if let Some((v, line)) = self.dword(values, "EnableVirtualIP")
                && self.origins.enabled.is_none()
            {
                self.policy.virtual_ip.enabled = self.flag(v, line, "EnableVirtualIP");
                self.origins.enabled = Some(origin);
            }
        }
        for (values, origin) in sources {
            if let Some((v, line)) = self.dword(values, "VirtualMode") {
                let mode = match v {
                    0 => Some(VipMode::PerSession),
                    1 => Some(VipMode::PerProgram),
                    _ => {
                        self.diag(
                            Severity::Warning,
                            DiagnosticCode::RegBadValue,
                            format!("line {line}: VirtualMode = {v} is neither 0 (per session) nor 1 (per program): ignored"),
                        );
                        None
                    }
                };
                if let Some(mode) = mode
                    && self.origins.mode.is_none()
                {
                    self.policy.virtual_ip.mode = mode;
                    self.origins.mode = Some(origin);
                }
            }
        }
        for (values, origin) in sources {
            if let Some(list) = self.multi(values, "PerApp", regedit4)
                && self.origins.programs.is_none()
            {
                self.policy.virtual_ip.programs = list;
                self.origins.programs = Some(origin);
            }
        }
        for (values, origin) in sources {
            match last(values, "VIPAdapter") {
                Some((Data::Sz(s), line)) => match s.trim().parse::<Ipv4Net>() {
                    Ok(net) if self.origins.adapter.is_none() => {
                        self.policy.virtual_ip.adapter = Some(net);
                        self.origins.adapter = Some(origin);
                    }
                    Ok(_) => {}
                    Err(_) => self.diag(
                        Severity::Error,
                        DiagnosticCode::RegBadValue,
                        format!("line {line}: VIPAdapter = \"{s}\" is not an IPv4 CIDR such as 192.0.2.96/24: ignored"),
                    ),
                },
                Some((other, line)) => {
                    let other = other.clone();
                    self.wrong_type(line, "VIPAdapter", "REG_SZ", &other);
                }
                None => {}
            }
        }
        for (values, origin) in sources {
            if let Some((v, line)) = self.dword(values, "PromptOnIPLeaseFail")
                && self.origins.on_lease_failure.is_none()
            {
                self.policy.virtual_ip.on_lease_failure =
                    if self.flag(v, line, "PromptOnIPLeaseFail") {
                        LeaseFailure::NoConnectivity
                    } else {
                        LeaseFailure::UseServerAddress
                    };
                self.origins.on_lease_failure = Some(origin);
            }
        }
    }

    fn apply_citrix(&mut self, values: &[(String, Data, usize)], regedit4: bool) {
        self.unknown_values(
            "the Citrix VIP key",
            values,
            &[
                "PreferLoopback",
                "PreferLoopbackProcesses",
                "IpvirtIpv6Loopback",
            ],
        );
        if let Some((v, line)) = self.dword(values, "PreferLoopback") {
            self.policy.prefer_loopback.enabled = self.flag(v, line, "PreferLoopback");
        }
        // An ipvirt extension (no vendor has it, SPEC §8): 1 maps `::1` to the session loopback.
        if let Some((v, line)) = self.dword(values, "IpvirtIpv6Loopback") {
            self.policy.virtual_loopback.ipv6 = if self.flag(v, line, "IpvirtIpv6Loopback") {
                Ipv6Loopback::Map
            } else {
                Ipv6Loopback::Unchanged
            };
        }
        if let Some(list) = self.multi(values, "PreferLoopbackProcesses", regedit4) {
            self.policy.prefer_loopback.processes = list;
        }
    }

    /// A DWORD flag: 1 on, 0 off; anything else is on (as Windows reads it) with a warning.
    fn flag(&mut self, v: u32, line: usize, name: &str) -> bool {
        if v > 1 {
            self.diag(
                Severity::Warning,
                DiagnosticCode::RegBadValue,
                format!("line {line}: {name} = {v} is neither 0 nor 1: read as on"),
            );
        }
        v != 0
    }
}
