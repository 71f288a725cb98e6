//! `ss -tulpn` (Linux): `Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process`,
//! the process as `users:(("name",pid=N,fd=M))`. The header line is optional (`-H`); without the
//! Netid column (`ss -tlpn`) the protocol is told from the state (`UNCONN` is UDP).

use std::fmt::Write as _;

use super::{NameSource, Protocol, SkippedLine, SocketRecord, host_port, show};

const STATES: [&str; 12] = [
    "LISTEN",
    "UNCONN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "CLOSE-WAIT",
    "LAST-ACK",
    "CLOSING",
    "CLOSED",
];

pub(super) fn parse(text: &str) -> (Vec<SocketRecord>, Vec<SkippedLine>) {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with("Netid") || t.starts_with("State ") {
            continue;
        }
        match record(t, line) {
            Ok(r) => records.push(r),
            Err(reason) => skipped.push(SkippedLine {
                line,
                text: t.to_string(),
                reason: reason.to_string(),
            }),
        }
    }
    (records, skipped)
}

fn record(t: &str, line: usize) -> Result<SocketRecord, &'static str> {
    let mut tokens = t.split_whitespace();
    let first = tokens.next().ok_or("empty line")?;
    let (protocol, state) = match first {
        "tcp" | "tcp6" => (Protocol::Tcp, tokens.next().ok_or("no state column")?),
        "udp" | "udp6" => (Protocol::Udp, tokens.next().ok_or("no state column")?),
        s if STATES.contains(&s) => (
            if s == "UNCONN" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            s,
        ),
        _ => return Err("not an ss line: expected tcp or udp (or a socket state) first"),
    };
    if !STATES.contains(&state) {
        return Err("unknown socket state");
    }
    for _ in 0..2 {
        tokens
            .next()
            .ok_or("missing Recv-Q/Send-Q")?
            .parse::<u64>()
            .map_err(|_| "Recv-Q and Send-Q must be numbers")?;
    }
    let local = host_port(tokens.next().ok_or("no local address")?)
        .ok_or("the local address is not host:port")?;
    let peer = host_port(tokens.next().ok_or("no peer address")?)
        .ok_or("the peer address is not host:port")?;
    let rest: Vec<&str> = tokens.collect();
    let users = rest.join(" ");
    let (process, pid) = users_field(&users);
    let mut r = SocketRecord::new(protocol, local, line);
    r.remote = (!(peer.ip().is_unspecified() && peer.port() == 0)).then_some(peer);
    r.state = Some(state.to_string());
    r.process = process;
    // ss prints the kernel's command name, not the executable's.
    r.name_source = NameSource::Comm;
    r.pid = pid;
    Ok(r)
}

/// The first `("name",pid=N` of `users:((...))`.
fn users_field(s: &str) -> (Option<String>, Option<u32>) {
    let Some(start) = s.find("((\"") else {
        return (None, None);
    };
    let after = &s[start + 3..];
    let Some(end) = after.find("\",") else {
        return (None, None);
    };
    let name = after[..end].to_string();
    let pid = after[end..]
        .split("pid=")
        .nth(1)
        .and_then(|p| p.split([',', ')']).next())
        .and_then(|p| p.parse().ok());
    (Some(name), pid)
}

pub(super) fn render(records: &[SocketRecord]) -> String {
    let mut out =
        String::from("Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n");
    for r in records {
        let state = r.state.clone().unwrap_or_else(|| {
            if r.protocol == Protocol::Udp {
                "UNCONN"
            } else {
                "LISTEN"
            }
            .into()
        });
        let peer = match r.remote {
            Some(a) => show(a),
            None if r.local.is_ipv4() => "0.0.0.0:*".into(),
            None => "[::]:*".into(),
        };
        let users = match (&r.process, r.pid) {
            (Some(p), Some(pid)) => format!("users:((\"{p}\",pid={pid},fd=3))"),
            (Some(p), None) => format!("users:((\"{p}\",fd=3))"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} {state} 0 0 {} {peer} {users}",
            r.protocol,
            show(r.local)
        );
    }
    out
}
