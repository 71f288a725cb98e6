//! Finds which applications need virtual IP or virtual loopback, from socket-table snapshots, and
//! proposes a policy.
//!
//! ```text
//! cargo run --example advise -- SNAPSHOT [SECOND_SNAPSHOT] [--server-addr IP]... \
//!     [--adapter CIDR] [--pool RANGE]... [--process NAME]...
//! ```
//!
//! SNAPSHOT is the output of `ss -tulpn` (Linux), `netstat -ano` / `netstat -anob` (Windows), or a
//! TCPView CSV export, taken while the application runs. SECOND_SNAPSHOT, taken after starting the
//! application again (a second instance), tells hard-coded ports from ephemeral ones. Without
//! `--adapter`, virtual IP is proposed disabled, with a note of what to fill in.

use std::process::ExitCode;

use ipvirt::advisor::{AdviceOptions, Snapshot, advise, parse};

const USAGE: &str = "usage: advise SNAPSHOT [SECOND_SNAPSHOT] [--server-addr IP]... [--adapter CIDR] [--pool RANGE]... [--process NAME]...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("advise: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<Snapshot, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    // netstat output redirected by PowerShell is UTF-16LE with a BOM.
    let text = match bytes.as_slice() {
        [0xFF, 0xFE, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let snap = parse(&text).map_err(|e| format!("{path}: {e}"))?;
    println!(
        "{path}: read as {}, {} sockets",
        snap.format,
        snap.records.len()
    );
    for s in &snap.skipped {
        println!("  line {} skipped ({}): {}", s.line, s.reason, s.text);
    }
    Ok(snap)
}

fn run() -> Result<(), String> {
    let mut files = Vec::new();
    let mut options = AdviceOptions::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--server-addr" => {
                let v = value("--server-addr")?;
                options.server_addrs.push(
                    v.parse()
                        .map_err(|_| format!("--server-addr: {v:?} is not an IP address"))?,
                );
            }
            "--adapter" => {
                let v = value("--adapter")?;
                options.adapter = Some(
                    v.parse()
                        .map_err(|_| format!("--adapter: {v:?} is not an IPv4 CIDR"))?,
                );
            }
            "--pool" => {
                let v = value("--pool")?;
                options
                    .pool
                    .push(v.parse().map_err(|e| format!("--pool: {e}"))?);
            }
            "--process" => options.only.push(value("--process")?),
            "--help" | "-h" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s:?}")),
            _ => files.push(arg),
        }
    }
    let (first, second) = match files.as_slice() {
        [a] => (read(a)?, None),
        [a, b] => (read(a)?, Some(read(b)?)),
        [] => return Err("give one or two snapshot files".into()),
        _ => return Err("give at most two snapshot files".into()),
    };
    let advice = advise(&first, second.as_ref(), &options);
    println!("\nfindings:");
    print!("{advice}");
    let toml = advice.policy_toml();
    println!("\nproposed policy:\n\n{toml}");
    let policy = ipvirt::Policy::from_toml(&toml)
        .map_err(|e| format!("the proposal does not read back: {e}"))?;
    let diagnostics = policy.validate();
    if !diagnostics.is_empty() {
        println!("validation of the proposal:");
        for d in diagnostics {
            println!("  {d}");
        }
    }
    Ok(())
}
