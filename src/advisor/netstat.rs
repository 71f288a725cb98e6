//! Windows `netstat -ano` and `netstat -anob`: `Proto Local Address Foreign Address State PID`
//! (UDP has no state). With `-b`, each connection is followed by its owner: an optional component
//! or service name, then ` [image.exe]`, or ` Can not obtain ownership information`.

use std::fmt::Write as _;

use super::{NameSource, Protocol, SkippedLine, SocketRecord, host_port, show};

pub(super) fn parse(text: &str) -> (Vec<SocketRecord>, Vec<SkippedLine>) {
    let mut records: Vec<SocketRecord> = Vec::new();
    let mut skipped = Vec::new();
    // Whether the previous lines were a connection and its owner lines (for -b continuations).
    let mut after_connection = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t == "Active Connections" || t.starts_with("Proto ") {
            after_connection = false;
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        if first.eq_ignore_ascii_case("TCP") || first.eq_ignore_ascii_case("UDP") {
            match record(t, line) {
                Ok(r) => {
                    records.push(r);
                    after_connection = true;
                }
                Err(reason) => {
                    skipped.push(SkippedLine {
                        line,
                        text: t.to_string(),
                        reason: reason.to_string(),
                    });
                    after_connection = false;
                }
            }
            continue;
        }
        if after_connection {
            if let Some(name) = t.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
                if let Some(last) = records.last_mut() {
                    last.process = Some(name.to_string());
                    last.name_source = NameSource::Image;
                }
                continue;
            }
            if t == "Can not obtain ownership information" || !t.contains(char::is_whitespace) {
                continue; // no owner, or a component/service name such as RpcSs
            }
        }
        skipped.push(SkippedLine {
            line,
            text: t.to_string(),
            reason: "not a netstat line: expected TCP or UDP first, or an owner line after one"
                .into(),
        });
        after_connection = false;
    }
    (records, skipped)
}

fn record(t: &str, line: usize) -> Result<SocketRecord, &'static str> {
    let tokens: Vec<&str> = t.split_whitespace().collect();
    let protocol = if tokens
        .first()
        .is_some_and(|p| p.eq_ignore_ascii_case("TCP"))
    {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let (local, remote, state, pid) = match (protocol, tokens.as_slice()) {
        (Protocol::Tcp, [_, l, r, s, p]) => (l, r, Some(*s), p),
        (Protocol::Udp, [_, l, r, p]) => (l, r, None, p),
        (Protocol::Tcp, _) => {
            return Err("a TCP line has Proto, Local Address, Foreign Address, State and PID");
        }
        (Protocol::Udp, _) => {
            return Err("a UDP line has Proto, Local Address, Foreign Address and PID");
        }
    };
    let local = host_port(local).ok_or("the local address is not host:port")?;
    let remote = host_port(remote).ok_or("the foreign address is not host:port")?;
    let pid: u32 = pid.parse().map_err(|_| "the PID is not a number")?;
    let mut r = SocketRecord::new(protocol, local, line);
    r.remote = (!(remote.ip().is_unspecified() && remote.port() == 0)).then_some(remote);
    r.state = state.map(str::to_string);
    r.pid = Some(pid);
    Ok(r)
}

pub(super) fn render(records: &[SocketRecord]) -> String {
    let mut out = String::from(
        "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State           PID\r\n",
    );
    for r in records {
        let remote = match (r.remote, r.protocol) {
            (Some(a), _) => show(a),
            (None, Protocol::Udp) => "*:*".into(),
            (None, Protocol::Tcp) if r.local.is_ipv4() => "0.0.0.0:0".into(),
            (None, Protocol::Tcp) => "[::]:0".into(),
        };
        let pid = r.pid.unwrap_or(0);
        match r.protocol {
            Protocol::Tcp => {
                let state = r.state.as_deref().unwrap_or("LISTENING");
                let _ = write!(
                    out,
                    "  TCP    {:<22} {:<22} {:<15} {pid}\r\n",
                    show(r.local),
                    remote,
                    state
                );
            }
            Protocol::Udp => {
                let _ = write!(
                    out,
                    "  UDP    {:<22} {:<22} {:<15} {pid}\r\n",
                    show(r.local),
                    remote,
                    ""
                );
            }
        }
        if let Some(p) = &r.process {
            let _ = write!(out, " [{p}]\r\n");
        }
    }
    out
}
