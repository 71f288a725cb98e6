//! The advisor: which applications need virtual IP or virtual loopback (feature `std`).
//!
//! The vendor's answer to "does my application need this?" is a manual procedure (seed, Citrix
//! docs): run TCPView with address resolution off, start the application, note which addresses and
//! ports it opens and which process opens them, configure every process that opens a server address,
//! `0.0.0.0` or `127.0.0.1`; then start a second instance and check it does not open the same address
//! on another port. The advisor automates it:
//!
//! 1. **Read** socket-table snapshots ([`parse`]): `ss -tulpn` (with or without the header line),
//!    Windows `netstat -ano` and `netstat -anob` (the process name on its continuation line), and
//!    TCPView CSV exports (TCPView 3 and 4 column sets). Every format yields the same
//!    [`SocketRecord`]s. A line that does not parse is reported with its number and skipped
//!    ([`Snapshot::skipped`]); a text in which nothing parses is [`AdvisorError::NothingParsed`],
//!    naming the formats tried.
//! 2. **Analyse** ([`advise`]): per process, the listening or bound sockets on `0.0.0.0`, `::` or one
//!    of the server's addresses need **virtual IP**; on `127.0.0.1` or `::ffff:127.0.0.1` they need
//!    **virtual loopback**; on `::1` they are flagged (there is no per-session IPv6 loopback). With a
//!    second snapshot taken after starting the application again, a port the same program holds in
//!    both is **hard-coded** (the reason two sessions collide), one that changed is ephemeral.
//!    Connections (established sockets) are not evidence: their local ports are the kernel's.
//! 3. **Propose** a [`Policy`] listing the programs, with the evidence lines, in words ([`Advice`]).
//!    Virtual IP needs an adapter network and a pool, which a socket table cannot tell: give them
//!    ([`AdviceOptions`]); without them the proposal lists the VIP programs with virtual IP left
//!    disabled and says what to fill in, so the proposal always passes [`Policy::validate`] without
//!    errors.

mod netstat;
mod ss;
mod tcpview;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;

use crate::addr::PoolEntry;
use crate::host::Host;
use crate::policy::{Policy, VipMode};

/// A transport protocol.
///
/// ```
/// use ipvirt::advisor::Protocol;
///
/// assert_eq!(Protocol::Udp.to_string(), "udp");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (IPv4 or IPv6).
    Tcp,
    /// UDP (IPv4 or IPv6).
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One socket of a snapshot, whatever the format it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketRecord {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The local address and port (a wildcard `*` is read as `0.0.0.0`).
    pub local: SocketAddr,
    /// The remote address and port, when connected (`None` for `*:*` / `0.0.0.0:0`).
    pub remote: Option<SocketAddr>,
    /// The state as the tool printed it (`LISTEN`, `LISTENING`, `Listen`, `UNCONN`, `ESTABLISHED`…),
    /// if any.
    pub state: Option<String>,
    /// The process name, where known; [`name_source`](Self::name_source) says which name it is.
    pub process: Option<String>,
    /// Where [`process`](Self::process) comes from: the executable's file name (what the layers
    /// match), or the kernel's command name, which `ss -p` prints and which may differ.
    pub name_source: NameSource,
    /// The full path of the executable, where known (a live sample: `/proc/PID/exe`).
    pub exe: Option<String>,
    /// The process id, where known.
    pub pid: Option<u32>,
    /// The 1-based line of the snapshot it came from (a live sample: the socket's position in it).
    pub line: usize,
}

/// Which name of a process a [`SocketRecord`] carries.
///
/// The layers (the `LD_PRELOAD` layer, a Winsock hook) match a process by its **executable's file
/// name** (`nc.openbsd` for `/usr/bin/nc.openbsd`). `ss -p` prints the kernel's command name
/// (`comm`): at most 15 characters, and for a program started through a symlink or one that renames
/// itself, another name (`nc`). A policy listing the command name may not apply to the program.
///
/// ```
/// use ipvirt::advisor::{NameSource, parse};
///
/// let snap = parse("tcp LISTEN 0 5 127.0.0.1:9000 0.0.0.0:* users:((\"nc\",pid=42,fd=3))\n")?;
/// assert_eq!(snap.records[0].name_source, NameSource::Comm);
/// # Ok::<(), ipvirt::AdvisorError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameSource {
    /// The executable's file name (a live sample reads `/proc/PID/exe`; a record built by hand).
    Executable,
    /// The kernel's command name (`comm`) that `ss -p` prints: unverified.
    Comm,
    /// The image name Windows tools print (`netstat -b`, TCPView): the executable's file name.
    Image,
}

impl SocketRecord {
    /// A record with no state, process or remote.
    ///
    /// ```
    /// use ipvirt::advisor::{Protocol, SocketRecord};
    ///
    /// let r = SocketRecord::new(Protocol::Tcp, "127.0.0.1:9000".parse()?, 1);
    /// assert!(r.is_listening_or_bound());
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    #[must_use]
    pub fn new(protocol: Protocol, local: SocketAddr, line: usize) -> SocketRecord {
        SocketRecord {
            protocol,
            local,
            remote: None,
            state: None,
            process: None,
            name_source: NameSource::Executable,
            exe: None,
            pid: None,
            line,
        }
    }

    /// Whether the socket waits for traffic (a TCP listener, a UDP socket not connected) rather
    /// than being one end of a connection.
    #[must_use]
    pub fn is_listening_or_bound(&self) -> bool {
        match self.protocol {
            Protocol::Tcp => self
                .state
                .as_deref()
                .is_none_or(|s| s.to_ascii_uppercase().starts_with("LISTEN")),
            Protocol::Udp => self.remote.is_none(),
        }
    }
}

/// The formats the advisor reads.
///
/// ```
/// use ipvirt::advisor::Format;
///
/// assert_eq!(Format::ALL.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `ss -tulpn` (Linux), with or without the header line.
    Ss,
    /// `netstat -ano` or `netstat -anob` (Windows).
    Netstat,
    /// A TCPView CSV export.
    TcpView,
    /// A live sample of this machine's socket table (`ipvirt_host::live::sample`, Linux): not a
    /// text format; [`parse_as`] reads no line as one, [`render`] writes it as `ss` text.
    Live,
}

impl Format {
    /// Every text format, in the order [`parse`] tries them.
    pub const ALL: [Format; 3] = [Format::Ss, Format::Netstat, Format::TcpView];

    /// The format's name, as error messages give it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Format::Ss => "ss -tulpn",
            Format::Netstat => "netstat -ano[b]",
            Format::TcpView => "TCPView CSV",
            Format::Live => "live sample",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedLine {
    /// The 1-based line.
    pub line: usize,
    /// Its text (trimmed).
    pub text: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The sockets of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The format it was read as.
    pub format: Format,
    /// The sockets.
    pub records: Vec<SocketRecord>,
    /// Lines that could not be read.
    pub skipped: Vec<SkippedLine>,
}

impl Snapshot {
    /// A snapshot of [`Format::Live`]: sockets a sampler read from the running system itself
    /// (`ipvirt_host::live::sample` on Linux), which [`advise`] analyses like a text one.
    ///
    /// ```
    /// use ipvirt::advisor::{Format, Snapshot};
    ///
    /// let snap = Snapshot::live(Vec::new());
    /// assert_eq!(snap.format, Format::Live);
    /// assert!(snap.skipped.is_empty());
    /// ```
    pub fn live(records: Vec<SocketRecord>) -> Snapshot {
        Snapshot {
            format: Format::Live,
            records,
            skipped: Vec::new(),
        }
    }
}

/// Reads a socket table in whichever supported format it is: the one that reads the most lines.
///
/// # Errors
///
/// [`AdvisorError::NothingParsed`] when no line parses in any format.
///
/// # Examples
///
/// ```
/// use ipvirt::advisor::{Format, parse};
///
/// let snap = parse("tcp LISTEN 0 5 127.0.0.1:9000 0.0.0.0:* users:((\"crm\",pid=42,fd=3))\n")?;
/// assert_eq!(snap.format, Format::Ss);
/// assert_eq!(snap.records[0].process.as_deref(), Some("crm"));
/// assert!(parse("hello\nworld\n").is_err());
/// # Ok::<(), ipvirt::AdvisorError>(())
/// ```
pub fn parse(text: &str) -> Result<Snapshot, AdvisorError> {
    let best = Format::ALL
        .into_iter()
        .map(|f| parse_as(text, f))
        .max_by_key(|s| (s.records.len(), usize::MAX - s.skipped.len()));
    match best {
        Some(s) if !s.records.is_empty() => Ok(s),
        _ => Err(AdvisorError::NothingParsed {
            lines: text.lines().filter(|l| !l.trim().is_empty()).count(),
            tried: Format::ALL
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Reads a socket table as `format`, reporting the lines that do not fit it.
///
/// ```
/// use ipvirt::advisor::{Format, parse_as};
///
/// let snap = parse_as("  TCP    0.0.0.0:9000   0.0.0.0:0   LISTENING   4412\r\n", Format::Netstat);
/// assert_eq!(snap.records[0].pid, Some(4412));
/// ```
#[must_use]
pub fn parse_as(text: &str, format: Format) -> Snapshot {
    let (records, skipped) = match format {
        Format::Ss => ss::parse(text),
        Format::Netstat => netstat::parse(text),
        Format::TcpView => tcpview::parse(text),
        Format::Live => (
            Vec::new(),
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| SkippedLine {
                    line: i + 1,
                    text: l.trim().to_string(),
                    reason: "a live sample is read from /proc, not from text".into(),
                })
                .collect(),
        ),
    };
    Snapshot {
        format,
        records,
        skipped,
    }
}

/// Writes records in `format` (what [`parse_as`] reads back): for tests and for converting
/// between tools.
///
/// ```
/// use ipvirt::advisor::{Format, Protocol, SocketRecord, parse_as, render};
///
/// let r = SocketRecord::new(Protocol::Udp, "0.0.0.0:5060".parse()?, 1);
/// let text = render(&[r.clone()], Format::TcpView);
/// assert_eq!(parse_as(&text, Format::TcpView).records[0].local, r.local);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[must_use]
pub fn render(records: &[SocketRecord], format: Format) -> String {
    match format {
        Format::Ss | Format::Live => ss::render(records),
        Format::Netstat => netstat::render(records),
        Format::TcpView => tcpview::render(records),
    }
}

/// Parses `host:port` as the tools print it: `1.2.3.4:80`, `[::1]:80`, `[::ffff:127.0.0.1]:80`,
/// `*:68`, `0.0.0.0%lo:53`, `[fe80::1]%eth0:546`, `*:*`. `*` as a port is 0.
pub(crate) fn host_port(s: &str) -> Option<SocketAddr> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = if port == "*" { 0 } else { port.parse().ok()? };
    let host = host
        .split('%')
        .next()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip: IpAddr = if host == "*" {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

/// Formats an address as `ss` and `netstat` do (`[v6]:port`).
pub(crate) fn show(a: SocketAddr) -> String {
    a.to_string()
}

/// What a finding says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// Listens or binds on `0.0.0.0`, `::` or a server address: needs virtual IP.
    NeedsVirtualIp,
    /// Listens or binds on `127.0.0.1` / `::ffff:127.0.0.1`: needs virtual loopback.
    NeedsVirtualLoopback,
    /// Listens on `::1`: no per-session IPv6 loopback exists, so this cannot be virtualized.
    Ipv6LoopbackOnly,
    /// The same program holds the same port in both snapshots: the port is hard-coded.
    HardCodedPort,
    /// The program's port changed between the snapshots: ephemeral, not a conflict.
    EphemeralPort,
    /// The same port in both snapshots, but held by the same process (the same pid): the program
    /// was not restarted in between, so this says nothing about whether the port is hard-coded.
    NoEvidenceYet,
}

/// One finding, in words, with the evidence lines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// The program.
    pub process: String,
    /// What was found.
    pub kind: FindingKind,
    /// The sentence.
    pub message: String,
    /// The lines of the snapshots that show it (`first:12: tcp 0.0.0.0:9000 LISTEN pid 4412`).
    pub evidence: Vec<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for e in &self.evidence {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

/// What the advisor knows beyond the snapshots (build it with `..AdviceOptions::default()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdviceOptions {
    /// The server's own addresses (a bind to one of them needs virtual IP).
    pub server_addrs: Vec<IpAddr>,
    /// The VIP adapter network; with it (and a pool) the proposal enables virtual IP.
    pub adapter: Option<Ipv4Net>,
    /// The VIP pool.
    pub pool: Vec<PoolEntry>,
    /// Only these programs (case-insensitive); empty: every program with a name.
    pub only: Vec<String>,
}

/// The advisor's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Advice {
    /// The findings, per program.
    pub findings: Vec<Finding>,
    /// The proposed policy.
    pub policy: Policy,
    /// What the administrator still has to do, in words.
    pub notes: Vec<String>,
    /// Program names of the proposal that are not known to be executable names (from `ss`, the
    /// kernel's command name), each with why: [`policy_toml`](Self::policy_toml) marks them.
    pub unverified: Vec<(String, String)>,
}

impl Advice {
    /// The proposed policy as TOML, with the notes as comments at the top.
    ///
    /// ```
    /// use ipvirt::advisor::{AdviceOptions, advise, parse};
    ///
    /// let snap = parse("tcp LISTEN 0 5 127.0.0.1:9000 0.0.0.0:* users:((\"crm\",pid=42,fd=3))\n")?;
    /// let toml = advise(&snap, None, &AdviceOptions::default()).policy_toml();
    /// assert!(toml.contains("programs = [\"crm\"]"));
    /// assert!(ipvirt::Policy::from_toml(&toml).is_ok());
    /// # Ok::<(), ipvirt::AdvisorError>(())
    /// ```
    #[must_use]
    pub fn policy_toml(&self) -> String {
        let mut out = String::from("# Proposed by ipvirt's advisor.\n");
        for n in &self.notes {
            out.push_str(&format!("# {n}\n"));
        }
        out.push('\n');
        let toml = self.policy.to_toml().unwrap_or_default();
        // A list naming an unverified program gets a comment above it, one line per name.
        let mut lines = toml.lines().peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("programs =") || line.starts_with("processes =") {
                let mut list = vec![line];
                while !list.last().is_some_and(|l| l.trim_end().ends_with(']')) {
                    match lines.next() {
                        Some(l) => list.push(l),
                        None => break,
                    }
                }
                let text = list.join("\n");
                for (name, why) in &self.unverified {
                    if text.contains(&format!("\"{name}\"")) {
                        out.push_str(&format!("# UNVERIFIED: {why}\n"));
                    }
                }
                out.push_str(&text);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            writeln!(
                f,
                "no program listens on 0.0.0.0, ::, a server address or 127.0.0.1: nothing to virtualize"
            )?;
        }
        for finding in &self.findings {
            writeln!(f, "- {finding}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// Where a listener sits, for the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Vip,
    Loopback,
    Ipv6Loopback,
    Other,
}

fn place(ip: IpAddr, host: &Host) -> Place {
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match (ip, v4) {
        (_, Some(v4)) if v4 == Ipv4Addr::LOCALHOST => Place::Loopback,
        (_, Some(v4)) if v4.is_unspecified() || host.contains_v4(v4) => Place::Vip,
        (IpAddr::V6(v6), None) if v6.is_loopback() => Place::Ipv6Loopback,
        (IpAddr::V6(v6), None) if v6.is_unspecified() || host.contains(ip) => Place::Vip,
        _ => Place::Other,
    }
}

fn evidence(tag: &str, r: &SocketRecord) -> String {
    let state = r
        .state
        .as_deref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let pid = r.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
    let exe = r
        .exe
        .as_deref()
        .map(|e| format!(" {e}"))
        .unwrap_or_default();
    format!(
        "{tag}:{}: {} {}{state}{pid}{exe}",
        r.line,
        r.protocol,
        show(r.local)
    )
}

/// Analyses one snapshot, or two (the second taken after starting the application again), and
/// proposes a policy.
///
/// # Examples
///
/// ```
/// use ipvirt::advisor::{AdviceOptions, FindingKind, advise, parse};
///
/// let first = parse("tcp LISTEN 0 5 0.0.0.0:9000 0.0.0.0:* users:((\"crm\",pid=42,fd=3))\n")?;
/// let second = parse("tcp LISTEN 0 5 0.0.0.0:9000 0.0.0.0:* users:((\"crm\",pid=77,fd=3))\n")?;
/// let advice = advise(&first, Some(&second), &AdviceOptions::default());
/// let kinds: Vec<_> = advice.findings.iter().map(|f| f.kind).collect();
/// assert_eq!(kinds, [FindingKind::NeedsVirtualIp, FindingKind::HardCodedPort]);
/// assert_eq!(advice.policy.virtual_ip.programs, ["crm"]);
/// # Ok::<(), ipvirt::AdvisorError>(())
/// ```
#[must_use]
pub fn advise(first: &Snapshot, second: Option<&Snapshot>, options: &AdviceOptions) -> Advice {
    let host = Host::new(options.server_addrs.iter().copied());
    let wanted = |name: &str| {
        options.only.is_empty() || options.only.iter().any(|o| o.eq_ignore_ascii_case(name))
    };
    // Per program: its listeners in each snapshot.
    type Listeners<'a> = BTreeMap<String, (Vec<&'a SocketRecord>, Vec<&'a SocketRecord>)>;
    let mut by_program: Listeners<'_> = BTreeMap::new();
    let mut unnamed = Vec::new();
    for (i, snap) in std::iter::once(first).chain(second).enumerate() {
        for r in snap.records.iter().filter(|r| r.is_listening_or_bound()) {
            let key = match (&r.process, r.pid) {
                (Some(p), _) if wanted(p) => p.clone(),
                (Some(_), _) => continue,
                // Only a PID (netstat -ano): a finding, but no name for the policy.
                (None, Some(pid)) if options.only.is_empty() => format!("pid {pid}"),
                (None, _) => {
                    if i == 0
                        && options.only.is_empty()
                        && place(r.local.ip(), &host) != Place::Other
                    {
                        unnamed.push(r);
                    }
                    continue;
                }
            };
            let e = by_program.entry(key).or_default();
            if i == 0 { e.0.push(r) } else { e.1.push(r) }
        }
    }

    let mut findings = Vec::new();
    let (mut vip_programs, mut loopback_programs) = (Vec::new(), Vec::new());
    let mut pid_only: Vec<String> = Vec::new();
    let mut unverified: Vec<(String, String)> = Vec::new();
    for (program, (now, later)) in &by_program {
        let mut seen = Vec::new();
        for (kind, wanted_place, words) in [
            (
                FindingKind::NeedsVirtualIp,
                Place::Vip,
                "needs virtual IP: it listens on every address or on a server address",
            ),
            (
                FindingKind::NeedsVirtualLoopback,
                Place::Loopback,
                "needs virtual loopback: it listens on 127.0.0.1",
            ),
            (
                FindingKind::Ipv6LoopbackOnly,
                Place::Ipv6Loopback,
                "listens on ::1, which cannot be virtualized (there is no per-session IPv6 loopback): make it use 127.0.0.1",
            ),
        ] {
            let hits: Vec<&&SocketRecord> = now
                .iter()
                .filter(|r| place(r.local.ip(), &host) == wanted_place)
                .collect();
            if hits.is_empty() {
                continue;
            }
            seen.push(wanted_place);
            let ports: Vec<String> = hits
                .iter()
                .map(|r| format!("{} {}", r.protocol, show(r.local)))
                .collect();
            findings.push(Finding {
                process: program.clone(),
                kind,
                message: format!("{program} {words} ({})", ports.join(", ")),
                evidence: hits.iter().map(|r| evidence("first", r)).collect(),
            });
        }
        let named = now
            .first()
            .or(later.first())
            .is_some_and(|r| r.process.is_some());
        // A name from `ss` is the command name: say so in each finding, and list it.
        if let Some(comm) = now
            .iter()
            .chain(later)
            .find(|r| r.name_source == NameSource::Comm && r.process.is_some())
            .filter(|_| !seen.is_empty())
        {
            let pid = comm
                .pid
                .map_or_else(|| "PID".to_string(), |p| p.to_string());
            let words = format!(
                "\"{program}\" is the command name (comm) ss printed, not necessarily the executable's name the layers match: unverified (check `readlink /proc/{pid}/exe`, or sample with `advise --live`)"
            );
            for f in findings.iter_mut().filter(|f| &f.process == program) {
                f.message = format!("{}; {words}", f.message);
            }
            unverified.push((program.clone(), words));
        }
        if named && seen.contains(&Place::Vip) {
            vip_programs.push(program.clone());
        }
        if named && seen.contains(&Place::Loopback) {
            loopback_programs.push(program.clone());
        }
        if !named && !seen.is_empty() {
            let pid = program.trim_start_matches("pid ");
            pid_only.push(format!(
                "{program} has no process name in the snapshot (netstat -ano): find it with `tasklist /FI \"PID eq {pid}\"`, or use netstat -anob, and add it to the policy by name"
            ));
        }
        if second.is_some() {
            for r in now
                .iter()
                .filter(|r| place(r.local.ip(), &host) != Place::Other)
            {
                let same = later
                    .iter()
                    .find(|s| s.protocol == r.protocol && s.local == r.local);
                let (kind, message, ev) = match same {
                    // The same process in both: it was not restarted, so this proves nothing.
                    Some(s) if r.pid.is_some() && r.pid == s.pid => (
                        FindingKind::NoEvidenceYet,
                        format!(
                            "{program} holds {} {} in both snapshots, but it is the same process (pid {}): no evidence yet; restart the program between the snapshots to tell a hard-coded port from an ephemeral one",
                            r.protocol,
                            show(r.local),
                            r.pid.unwrap_or_default()
                        ),
                        vec![evidence("first", r), evidence("second", s)],
                    ),
                    Some(s) => (
                        FindingKind::HardCodedPort,
                        format!(
                            "{program} holds {} {} in both snapshots: the port is hard-coded, so a second session's instance collides without virtualization",
                            r.protocol,
                            show(r.local)
                        ),
                        vec![evidence("first", r), evidence("second", s)],
                    ),
                    None => (
                        FindingKind::EphemeralPort,
                        format!(
                            "{program}'s {} {} is gone in the second snapshot: an ephemeral port, not a conflict by itself",
                            r.protocol,
                            show(r.local)
                        ),
                        vec![evidence("first", r)],
                    ),
                };
                findings.push(Finding {
                    process: program.clone(),
                    kind,
                    message,
                    evidence: ev,
                });
            }
        }
    }

    let mut notes = pid_only;
    if second.is_none() && !findings.is_empty() {
        notes.push(
            "start the application again (a second instance) and give a second snapshot to tell hard-coded ports from ephemeral ones".into(),
        );
    }
    for r in &unnamed {
        notes.push(format!(
            "line {}: {} {} has no process name (ss needs root for -p; netstat needs -o/-b): not included",
            r.line,
            r.protocol,
            show(r.local)
        ));
    }

    let mut policy = Policy::default();
    if !loopback_programs.is_empty() {
        policy.virtual_loopback.enabled = true;
        policy.virtual_loopback.programs = loopback_programs;
    }
    if !vip_programs.is_empty() {
        policy.virtual_ip.mode = VipMode::PerProgram;
        policy.virtual_ip.programs = vip_programs;
        policy.virtual_ip.adapter = options.adapter;
        policy.virtual_ip.pool.clone_from(&options.pool);
        if options.adapter.is_some() {
            policy.virtual_ip.enabled = true;
            if options.pool.is_empty() {
                notes.push("virtual_ip.pool is empty: give --pool, or let a DHCP address source hand out the VIPs".into());
            }
        } else {
            notes.push(
                "virtual IP is proposed disabled: set virtual_ip.adapter (the VIP network, --adapter) and virtual_ip.pool (--pool), then enabled = true".into(),
            );
        }
    }
    Advice {
        findings,
        policy,
        notes,
        unverified,
    }
}

/// An error of the advisor (feature `std`).
///
/// # Examples
///
/// ```
/// let err = ipvirt::advisor::parse("hello\nworld\n").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "no line of the 2 non-empty lines parses as a socket table; tried ss -tulpn, netstat -ano[b], TCPView CSV"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisorError {
    /// No line of the text parses in any supported format.
    #[error("no line of the {lines} non-empty lines parses as a socket table; tried {tried}")]
    NothingParsed {
        /// How many non-empty lines the text has.
        lines: usize,
        /// The formats tried.
        tried: String,
    },
    /// A live sample (`ipvirt_host::live::sample`) could not read a file of `/proc`.
    #[error("cannot read {what}: {message}")]
    Proc {
        /// The file or directory.
        what: String,
        /// Why.
        message: String,
    },
}
