//! Importing the policy from a registry export (`.reg`), as `regedit` writes it.
//!
//! Three keys carry the settings that live in the registry (SPEC §3):
//!
//! | key | values |
//! |---|---|
//! | `HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\TSAppSrv\VirtualIP` (group policy) | `EnableVirtualIP`, `VirtualMode`, `PerApp`, `VIPAdapter`, `PromptOnIPLeaseFail` |
//! | `HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP` (local) | the same |
//! | `HKEY_LOCAL_MACHINE\SOFTWARE\Wow6432Node\Citrix\VIP` | `PreferLoopback`, `PreferLoopbackProcesses`, and the ipvirt extension `IpvirtIpv6Loopback` (DWORD: 1 = `virtual_loopback.ipv6 = "map"`, SPEC §8) |
//!
//! Each Microsoft value is read from the group-policy key first, then the local key, then defaults;
//! [`RegImport::origins`] says where each came from. Citrix *virtual loopback* itself is a Citrix
//! policy, not a registry value, and the static VIP pool is the pool plug-in's configuration: a
//! `.reg` import leaves `virtual_loopback` and `virtual_ip.pool` at their defaults (merge them from a
//! TOML policy). No value names where the VIPs come from: Microsoft leases them from DHCP unless a
//! static-pool plug-in is installed, so an import sets `virtual_ip.source = "dhcp"` (the DHCP
//! interface is then the one `VIPAdapter` selects); set it back to `"static"` when merging a pool.
//!
//! The reader takes the file's bytes: UTF-16LE with a byte-order mark (what `regedit` writes),
//! UTF-16BE with a mark, UTF-8 with or without one; bytes of a file without a mark that are not UTF-8
//! are read as Windows-1252/Latin-1 (`REGEDIT4` files are ANSI). CRLF or LF; the headers
//! `Windows Registry Editor Version 5.00` and `REGEDIT4`; `;` comments; `\` line continuations;
//! quoted names and strings with `\\` and `\"`; `@` for a key's default value; `dword:`, `hex:` and
//! `hex(N):` data (`hex(7)` REG_MULTI_SZ in UTF-16LE, or in ANSI under `REGEDIT4`); deleted keys
//! `[-…]` and deleted values `"name"=-`. Key names match case-insensitively, and `HKLM` stands for
//! `HKEY_LOCAL_MACHINE`.
//!
//! A line that is not well formed is a [`RegError`] naming its line. A well-formed value the
//! import cannot use — an unknown name under one of the three keys, a wrong type, a `VirtualMode`
//! other than 0 or 1, a `VIPAdapter` that is not a CIDR — is a [`Diagnostic`] in
//! [`RegImport::diagnostics`], and the value is ignored; keys other than the three are ignored.
//!
//! Why not the `regashii` crate, which reads regedit exports: tried against our fixtures (0.4), it
//! silently skips a malformed line together with every value after it in the file, silently drops
//! `dword:`/`hex` data it cannot parse, and reports no line numbers, so it cannot tell an
//! administrator which line of a policy file is wrong.

use alloc::borrow::{Cow, ToOwned};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ipnet::Ipv4Net;

use super::validate::{Diagnostic, DiagnosticCode, Severity};
use super::{LeaseFailure, Policy, VipMode};

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

/// A value's data, as the file wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Sz(String),
    Dword(u32),
    /// `hex(N):` bytes (`hex:` is type 3, REG_BINARY).
    Hex(u32, Vec<u8>),
    Deleted,
}

impl Data {
    fn type_name(&self) -> String {
        match self {
            Data::Sz(_) => "REG_SZ".into(),
            Data::Dword(_) => "REG_DWORD".into(),
            Data::Hex(2, _) => "REG_EXPAND_SZ".into(),
            Data::Hex(3, _) => "REG_BINARY".into(),
            Data::Hex(7, _) => "REG_MULTI_SZ".into(),
            Data::Hex(11, _) => "REG_QWORD".into(),
            Data::Hex(n, _) => format!("hex({n:x})"),
            Data::Deleted => "a deletion".into(),
        }
    }
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
        let mut iter = logical_lines(&text).filter(|(_, l)| !l.trim().is_empty());
        let first = iter.next();
        let (hline, header) = first
            .as_ref()
            .map(|(n, l)| (*n, l.trim()))
            .unwrap_or((1, ""));
        let regedit4 = match header {
            "Windows Registry Editor Version 5.00" => false,
            "REGEDIT4" => true,
            other => {
                return Err(RegError::Header {
                    line: hline,
                    found: other.chars().take(60).collect(),
                });
            }
        };

        // Only the values of the three keys the import reads are kept; every other key's lines are
        // still checked, so a malformed line anywhere is an error. A deleted key clears what the
        // file set in any of the three at or under it: a constant amount of work per key line,
        // however many keys the file has.
        let mut kept: [Values; 3] = [Vec::new(), Vec::new(), Vec::new()];
        // `None`: no key yet, or the last key line deleted its key (a value there is malformed);
        // `Some(None)`: a key the import ignores; `Some(Some(i))`: `KEYS[i]`.
        let mut current: Option<Option<usize>> = None;
        for (line, raw) in iter {
            let t = raw.trim();
            if t.starts_with(';') {
                continue;
            }
            if let Some(inner) = t.strip_prefix('[') {
                let Some(inner) = inner.strip_suffix(']') else {
                    return Err(malformed(line, t, "a key line must end with ']'"));
                };
                let (deleted, name) = match inner.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                let name = canonical_key(name);
                if name.is_empty() {
                    return Err(malformed(line, t, "the key name is empty"));
                }
                if deleted {
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
                } else {
                    current = Some(KEYS.iter().position(|k| *k == name));
                }
                continue;
            }
            if t.starts_with('"') || t.starts_with('@') {
                let (name, data) = parse_value(line, t)?;
                let Some(slot) = current else {
                    return Err(malformed(line, t, "a value must follow a key line [..]"));
                };
                if let Some(values) = slot.and_then(|i| kept.get_mut(i)) {
                    values.push((name, data, line));
                }
                continue;
            }
            return Err(malformed(
                line,
                t,
                "expected a key [..], a value \"name\"=data, or a ; comment",
            ));
        }

        let [gp, local, citrix] = &kept;
        let mut import = RegImport {
            policy: Policy::default(),
            origins: VipOrigins::default(),
            diagnostics: Vec::new(),
        };
        // No registry value names the source: Microsoft's IP virtualization leases from DHCP
        // unless a static-pool plug-in is installed, which the registry does not show.
        import.policy.virtual_ip.source = super::VipSource::Dhcp;
        import.apply_microsoft(gp, local, regedit4);
        import.apply_citrix(citrix, regedit4);
        Ok(import)
    }
}

fn malformed(line: usize, text: &str, reason: &'static str) -> RegError {
    RegError::Malformed {
        line,
        text: text.chars().take(80).collect(),
        reason,
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
                crate::policy::Ipv6Loopback::Map
            } else {
                crate::policy::Ipv6Loopback::Unchanged
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

/// Lower-cased key path with `HKLM` spelled out and no trailing separator.
fn canonical_key(name: &str) -> String {
    let lower = name.trim().trim_end_matches('\\').to_lowercase();
    match lower.strip_prefix("hklm\\") {
        Some(rest) => format!("hkey_local_machine\\{rest}"),
        None if lower == "hklm" => "hkey_local_machine".to_owned(),
        None => lower,
    }
}

/// The text of the file (borrowed when it is UTF-8 without a byte-order mark).
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, RegError> {
    let utf16 = |body: &[u8], le: bool| -> Result<String, RegError> {
        if !body.len().is_multiple_of(2) {
            return Err(RegError::Utf16 {
                offset: bytes.len() - 1,
            });
        }
        let units = body.chunks_exact(2).map(|c| match *c {
            [a, b] if le => u16::from_le_bytes([a, b]),
            [a, b] => u16::from_be_bytes([a, b]),
            _ => 0,
        });
        let mut out = String::with_capacity(body.len() / 2);
        // Code units read so far: a character after the basic plane takes two.
        let mut read = 0usize;
        for ch in core::char::decode_utf16(units) {
            let ch = ch.map_err(|_| RegError::Utf16 {
                offset: 2 + 2 * read,
            })?;
            read += ch.len_utf16();
            out.push(ch);
        }
        Ok(out)
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true).map(Cow::Owned),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false).map(Cow::Owned),
        [0xEF, 0xBB, 0xBF, rest @ ..] => Ok(String::from_utf8_lossy(rest)),
        _ => match core::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        },
    }
}

/// Physical lines joined at `\` continuations, each with its first line's number.
///
/// A line that does not continue is borrowed from `text`; a continued one is built once, in one
/// buffer, so the whole pass is linear in the text.
fn logical_lines(text: &str) -> LogicalLines<'_> {
    LogicalLines {
        physical: text.split('\n').enumerate(),
    }
}

/// The iterator of [`logical_lines`].
#[derive(Debug)]
struct LogicalLines<'a> {
    physical: core::iter::Enumerate<core::str::Split<'a, char>>,
}

impl<'a> Iterator for LogicalLines<'a> {
    type Item = (usize, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let (i, raw) = self.physical.next()?;
        let first = raw.strip_suffix('\r').unwrap_or(raw);
        if !continues(first, first) {
            return Some((i + 1, Cow::Borrowed(first)));
        }
        let mut acc = String::from(without_continuation(first));
        for (_, raw) in self.physical.by_ref() {
            let next = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
            acc.push_str(next);
            // `acc` before `next` ended outside any string: it had a continuation, so its end was
            // outside one, and the backslashes and blanks taken off it open or close none. So
            // whether `acc` ends inside a string depends on `next` alone (scanning all of `acc`
            // again, line after line, made a long continued value quadratic).
            if !continues(&acc, next) {
                return Some((i + 1, Cow::Owned(acc)));
            }
            let keep = without_continuation(&acc).len();
            acc.truncate(keep);
        }
        Some((i + 1, Cow::Owned(acc)))
    }
}

/// Whether a line continues on the next one: a trailing backslash outside a quoted string (hex data
/// lines). Whether the line ends inside a string is the same as whether `tail`, its part after the
/// last continuation, does; it is scanned only for a line that ends with a backslash.
fn continues(line: &str, tail: &str) -> bool {
    line.trim_end().ends_with('\\') && !in_string_at_end(tail)
}

/// A continued line without its trailing blanks and backslashes.
fn without_continuation(line: &str) -> &str {
    line.trim_end().trim_end_matches('\\')
}

/// Whether the end of `t` is inside a quoted string (so a trailing `\` is an escape, not a
/// continuation).
fn in_string_at_end(t: &str) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in t.chars() {
        match c {
            '\\' if inside && !escaped => escaped = true,
            '"' if !escaped => inside = !inside,
            _ => escaped = false,
        }
    }
    inside
}

/// Parses `"name"=data` or `@=data`.
fn parse_value(line: usize, t: &str) -> Result<(String, Data), RegError> {
    let (name, rest) = if let Some(r) = t.strip_prefix('@') {
        (String::new(), r)
    } else {
        let (s, r) = parse_quoted(t)
            .ok_or_else(|| malformed(line, t, "the value name's closing quote is missing"))?;
        (s, r)
    };
    let rest = rest.trim_start();
    let Some(data) = rest.strip_prefix('=') else {
        return Err(malformed(line, t, "expected '=' after the value name"));
    };
    let data = data.trim();
    if data == "-" {
        return Ok((name, Data::Deleted));
    }
    if data.starts_with('"') {
        let (s, after) = parse_quoted(data)
            .ok_or_else(|| malformed(line, t, "the string's closing quote is missing"))?;
        if !after.trim().is_empty() {
            return Err(malformed(line, t, "unexpected text after the string"));
        }
        return Ok((name, Data::Sz(s)));
    }
    if let Some(hex) = strip_prefix_ignore_case(data, "dword:") {
        let hex = hex.trim();
        if hex.is_empty() || hex.len() > 8 {
            return Err(malformed(line, t, "dword: needs 1 to 8 hex digits"));
        }
        let v = u32::from_str_radix(hex, 16)
            .map_err(|_| malformed(line, t, "dword: needs 1 to 8 hex digits"))?;
        return Ok((name, Data::Dword(v)));
    }
    let (kind, bytes) = if let Some(b) = strip_prefix_ignore_case(data, "hex:") {
        (3, b)
    } else if let Some(r) = strip_prefix_ignore_case(data, "hex(") {
        let (n, b) = r
            .split_once("):")
            .ok_or_else(|| malformed(line, t, "expected hex(N): with a hex type number"))?;
        let n = u32::from_str_radix(n.trim(), 16)
            .map_err(|_| malformed(line, t, "expected hex(N): with a hex type number"))?;
        (n, b)
    } else {
        return Err(malformed(
            line,
            t,
            "expected \"string\", dword:, hex: or hex(N): data, or - to delete",
        ));
    };
    // Two digits and a comma a byte.
    let mut out = Vec::with_capacity(bytes.len() / 3 + 1);
    for part in bytes.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue; // a trailing comma, or the comma before a continuation
        }
        if p.len() != 2 {
            return Err(malformed(
                line,
                t,
                "hex data must be two-digit bytes separated by commas",
            ));
        }
        out.push(u8::from_str_radix(p, 16).map_err(|_| {
            malformed(
                line,
                t,
                "hex data must be two-digit bytes separated by commas",
            )
        })?);
    }
    Ok((name, Data::Hex(kind, out)))
}

/// `s` without `prefix` (ASCII) at its start, in any case: the data of a long value is not copied
/// to lower case to find its type.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A quoted string at the start of `s` with `\\` and `\"` escapes, and the rest after it.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '"'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '"' => return Some((out, body.get(i + 1..).unwrap_or(""))),
            c => out.push(c),
        }
    }
    None
}

/// REG_MULTI_SZ bytes: UTF-16LE strings (ANSI under `REGEDIT4`), each NUL-terminated, the list
/// ended by an empty string. Empty strings are dropped.
fn multi_sz(bytes: &[u8], regedit4: bool) -> Vec<String> {
    let text: String = if regedit4 {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        let units = bytes.chunks(2).map(|c| match *c {
            [a, b] => u16::from_le_bytes([a, b]),
            [a] => u16::from(a),
            _ => 0,
        });
        core::char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    text.split('\0')
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_and_escapes() {
        let lines: Vec<_> =
            logical_lines("a\r\n\"x\"=hex(7):41,00,\\\r\n  42,00\r\n\"p\"=\"C:\\\\dir\\\\\"\r\n")
                .collect();
        assert_eq!(lines[1], (2, Cow::from("\"x\"=hex(7):41,00,42,00")));
        assert_eq!(lines[2].0, 4);
        let (name, data) = parse_value(4, &lines[2].1).unwrap();
        assert_eq!((name.as_str(), data), ("p", Data::Sz("C:\\dir\\".into())));
    }

    #[test]
    fn value_types_in_any_case() {
        let value = |t: &str| parse_value(1, t).map(|(_, d)| d);
        assert_eq!(value("\"a\"=DWORD:0000000A"), Ok(Data::Dword(10)));
        assert_eq!(
            value("\"a\"=HEX(7):41,00"),
            Ok(Data::Hex(7, alloc::vec![0x41, 0]))
        );
        assert_eq!(
            value("\"a\"=Hex:AB,cd,"),
            Ok(Data::Hex(3, alloc::vec![0xab, 0xcd]))
        );
        assert_eq!(value("\"a\"=hEx(B):01"), Ok(Data::Hex(11, alloc::vec![1])));
        for bad in [
            "\"a\"=dwor\u{e9}:1",
            "\"a\"=h\u{e9}x:00",
            "\"a\"=\u{e9}",
            "\"a\"=hex(\u{e9}):00",
        ] {
            assert!(
                matches!(value(bad), Err(RegError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn multi_sz_both_encodings() {
        assert_eq!(
            multi_sz(&[0x61, 0, 0, 0, 0x62, 0, 0, 0, 0, 0], false),
            ["a", "b"]
        );
        assert_eq!(multi_sz(b"a\0bc\0\0", true), ["a", "bc"]);
    }

    /// The joining as it was first written (rescanning and copying the whole line at every
    /// continuation, so quadratic): the linear one must give the same lines.
    fn logical_lines_quadratic(text: &str) -> Vec<(usize, String)> {
        let mut out: Vec<(usize, String)> = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let (start, mut acc) = match pending.take() {
                Some((n, mut acc)) => {
                    acc.push_str(line.trim_start());
                    (n, acc)
                }
                None => (i + 1, line.to_owned()),
            };
            let t = acc.trim_end();
            if t.ends_with('\\') && !in_string_at_end(t) {
                acc = t.trim_end_matches('\\').to_owned();
                pending = Some((start, acc));
            } else {
                out.push((start, acc));
            }
        }
        out.extend(pending);
        out
    }

    #[test]
    fn continuation_corner_cases() {
        for text in [
            "a \\\\\n\n",
            "a\\ \\\n\nb",
            "\"x\\\"\\\n\"y\\\n z\\",
            "\\\n\\\n\\\n",
            "\"a\\\\\"=hex:00,\\\r\n  \"b\\\r\n  c\"\\\r\n",
            "x\\\r\n\r\n \t\\ \r\ny",
        ] {
            let got: Vec<(usize, String)> = logical_lines(text)
                .map(|(n, l)| (n, l.into_owned()))
                .collect();
            assert_eq!(got, logical_lines_quadratic(text), "{text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        #[test]
        fn linear_joining_is_the_quadratic_one(text in "[a\"\\\\ \t\r\n]{0,60}") {
            let got: Vec<(usize, String)> = logical_lines(&text)
                .map(|(n, l)| (n, l.into_owned()))
                .collect();
            proptest::prop_assert_eq!(got, logical_lines_quadratic(&text));
        }
    }
}

/// An error reading a registry export ([`Policy::from_reg`](crate::Policy::from_reg)): the file is
/// not a registry export, or a line of it is malformed. Every variant names the line (1-based) or
/// the byte offset.
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, RegError};
///
/// let err = Policy::from_reg(b"REGEDIT4\n[HKLM\\X]\n\"A\"=dword:xyz\n").unwrap_err();
/// assert!(matches!(err, RegError::Malformed { line: 3, .. }));
/// assert_eq!(
///     err.to_string(),
///     "registry file line 3: \"\\\"A\\\"=dword:xyz\" is malformed: dword: needs 1 to 8 hex digits"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegError {
    /// The first non-empty line is not `Windows Registry Editor Version 5.00` or `REGEDIT4`.
    #[error(
        "registry file line {line}: expected the header \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\", found {found:?}"
    )]
    Header {
        /// The line where the header should be.
        line: usize,
        /// What is there instead (at most 60 characters).
        found: String,
    },
    /// A line is neither a key, a value, a comment nor blank, or its data is malformed.
    #[error("registry file line {line}: {text:?} is malformed: {reason}")]
    Malformed {
        /// The line (the first line of a continued line).
        line: usize,
        /// The line's text (at most 80 characters).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A UTF-16 file has an odd number of bytes or an unpaired surrogate.
    #[error("registry file is not valid UTF-16 at byte {offset}")]
    Utf16 {
        /// The byte offset of the bad code unit.
        offset: usize,
    },
}
