//! Finds which applications need virtual IP or virtual loopback, from socket-table snapshots, and
//! proposes a policy.
//!
//! ```text
//! cargo run --example advise -- SNAPSHOT [SECOND_SNAPSHOT] [--server-addr IP]... \
//!     [--adapter CIDR] [--pool RANGE]... [--process NAME]...
//! cargo run --features live --example advise -- --live [--twice | --interval SECS] [options]
//! ```
//!
//! SNAPSHOT is the output of `ss -tulpn` (Linux), `netstat -ano` / `netstat -anob` (Windows), or a
//! TCPView CSV export, taken while the application runs. SECOND_SNAPSHOT, taken after starting the
//! application again (a second instance), tells hard-coded ports from ephemeral ones. Without
//! `--adapter`, virtual IP is proposed disabled, with a note of what to fill in.
//!
//! `--live` (Linux, feature `live`) samples this machine's socket table instead of reading files,
//! naming each process by its executable (`/proc/PID/exe`), the name the layers match; run it as
//! root to see every user's processes. `--twice` takes a second sample when you press Enter
//! (restart the application in between); `--interval SECS` takes it SECS seconds later.

use std::process::ExitCode;

use ipvirt::advisor::{AdviceOptions, Snapshot, advise, parse};

const USAGE: &str = "usage: advise SNAPSHOT [SECOND_SNAPSHOT] [--server-addr IP]... [--adapter CIDR] [--pool RANGE]... [--process NAME]...\n       advise --live [--twice | --interval SECS] [--server-addr IP]... [--adapter CIDR] [--pool RANGE]... [--process NAME]...";

/// When to take the second live sample.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Second {
    None,
    OnEnter,
    After(std::time::Duration),
}

#[cfg(all(feature = "live", target_os = "linux"))]
fn sample(n: usize) -> Result<Snapshot, String> {
    let snap = ipvirt::advisor::live::sample().map_err(|e| e.to_string())?;
    let owned = snap.records.iter().filter(|r| r.pid.is_some()).count();
    println!(
        "live sample {n}: {} sockets, {owned} held by a process this user can see",
        snap.records.len()
    );
    Ok(snap)
}

#[cfg(not(all(feature = "live", target_os = "linux")))]
fn sample(_: usize) -> Result<Snapshot, String> {
    Err("--live needs Linux and the cargo feature `live` (cargo run --features live --example advise -- --live)".into())
}

fn live(second: Second) -> Result<(Snapshot, Option<Snapshot>), String> {
    let first = sample(1)?;
    let second = match second {
        Second::None => None,
        Second::OnEnter => {
            println!("restart the application, then press Enter for the second sample");
            std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("stdin: {e}"))?;
            Some(sample(2)?)
        }
        Second::After(d) => {
            println!(
                "second sample in {} s: restart the application now",
                d.as_secs_f64()
            );
            std::thread::sleep(d);
            Some(sample(2)?)
        }
    };
    Ok((first, second))
}

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
    let (mut is_live, mut second) = (false, Second::None);
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
            "--live" => is_live = true,
            "--twice" => second = Second::OnEnter,
            "--interval" => {
                let v = value("--interval")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        format!("--interval: {v:?} is not a number of seconds (0 to 86400)")
                    })?;
                second = Second::After(std::time::Duration::from_secs_f64(secs));
            }
            "--help" | "-h" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s:?}")),
            _ => files.push(arg),
        }
    }
    if !is_live && second != Second::None {
        return Err("--twice and --interval need --live".into());
    }
    let (first, second) = match files.as_slice() {
        [] if is_live => live(second)?,
        _ if is_live => return Err("--live reads no snapshot files".into()),
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
