//! TCPView CSV exports ("Save As"), by column name: TCPView 4 writes `Process Name, Process ID,
//! Protocol, State, Local Address, Local Port, Remote Address, Remote Port, …`; TCPView 3 writes
//! `Process, PID, Protocol, Local Address, Local Port, Remote Address, Remote Port, State`.
//! Protocols `TCP`, `TCPV6`, `UDP`, `UDPV6`; `*` is any address or port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{NameSource, Protocol, SkippedLine, SocketRecord};

struct Columns {
    process: Option<usize>,
    pid: Option<usize>,
    protocol: usize,
    state: Option<usize>,
    local_addr: usize,
    local_port: usize,
    remote_addr: Option<usize>,
    remote_port: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Option<Columns> {
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    };
    Some(Columns {
        process: find(&["Process Name", "Process"]),
        pid: find(&["Process ID", "PID"]),
        protocol: find(&["Protocol"])?,
        state: find(&["State"]),
        local_addr: find(&["Local Address"])?,
        local_port: find(&["Local Port"])?,
        remote_addr: find(&["Remote Address"]),
        remote_port: find(&["Remote Port"]),
    })
}

fn addr(ip: &str, port: &str) -> Option<SocketAddr> {
    let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if ip == "*" || ip.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        ip.parse().ok()?
    };
    let port = port.trim();
    let port: u16 = if port == "*" || port.is_empty() {
        0
    } else {
        port.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

pub(super) fn parse(text: &str) -> (Vec<SocketRecord>, Vec<SkippedLine>) {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut cols: Option<Columns> = None;
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                skipped.push(SkippedLine {
                    line,
                    text: String::new(),
                    reason: format!("not CSV: {e}"),
                });
                continue;
            }
        };
        let line = row
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
        let joined = row.iter().collect::<Vec<_>>().join(",");
        if joined.trim().is_empty() {
            continue;
        }
        let Some(c) = &cols else {
            match columns(&row) {
                Some(c) => cols = Some(c),
                None => skipped.push(SkippedLine {
                    line,
                    text: joined,
                    reason: "not a TCPView header: expected Protocol, Local Address and Local Port columns".into(),
                }),
            }
            continue;
        };
        let get = |i: Option<usize>| {
            i.and_then(|i| row.get(i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let protocol = match get(Some(c.protocol))
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("TCP" | "TCPV6" | "TCP6") => Protocol::Tcp,
            Some("UDP" | "UDPV6" | "UDP6") => Protocol::Udp,
            _ => {
                skipped.push(SkippedLine {
                    line,
                    text: joined,
                    reason: "the Protocol is not TCP, TCPV6, UDP or UDPV6".into(),
                });
                continue;
            }
        };
        let Some(local) = addr(
            get(Some(c.local_addr)).unwrap_or(""),
            get(Some(c.local_port)).unwrap_or(""),
        ) else {
            skipped.push(SkippedLine {
                line,
                text: joined,
                reason: "the local address or port does not parse".into(),
            });
            continue;
        };
        let remote = match (get(c.remote_addr), get(c.remote_port)) {
            (Some(a), p) => addr(a, p.unwrap_or("*")),
            _ => None,
        };
        let mut r = SocketRecord::new(protocol, local, line);
        r.remote = remote.filter(|a| !(a.ip().is_unspecified() && a.port() == 0));
        r.state = get(c.state).map(str::to_string);
        r.process = get(c.process).map(str::to_string);
        r.name_source = NameSource::Image;
        r.pid = get(c.pid).and_then(|p| p.parse().ok());
        records.push(r);
    }
    (records, skipped)
}

pub(super) fn render(records: &[SocketRecord]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "Process Name",
        "Process ID",
        "Protocol",
        "State",
        "Local Address",
        "Local Port",
        "Remote Address",
        "Remote Port",
    ]);
    for r in records {
        let v6 = r.local.is_ipv6();
        let protocol = match (r.protocol, v6) {
            (Protocol::Tcp, false) => "TCP",
            (Protocol::Tcp, true) => "TCPV6",
            (Protocol::Udp, false) => "UDP",
            (Protocol::Udp, true) => "UDPV6",
        };
        let (ra, rp) = match r.remote {
            Some(a) => (a.ip().to_string(), a.port().to_string()),
            None => ("*".to_string(), "*".to_string()),
        };
        let _ = w.write_record([
            r.process.clone().unwrap_or_default(),
            r.pid.map(|p| p.to_string()).unwrap_or_default(),
            protocol.to_string(),
            r.state.clone().unwrap_or_default(),
            r.local.ip().to_string(),
            r.local.port().to_string(),
            ra,
            rp,
        ]);
    }
    w.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
