//! `ipvirt advise`: which programs need which feature, from one or two socket-table snapshots or
//! from this machine's live table (Linux), and the policy it proposes.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use ipvirt::advisor::{AdviceOptions, Snapshot, advise as analyse, parse};
use ipvirt_host::policy_file;

use crate::Outcome;
use crate::args::AdviseArgs;

/// The largest snapshot read: a socket table of a big server is a few MiB.
const MAX_SNAPSHOT: u64 = 64 << 20;

/// When to take the second live sample.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Second {
    None,
    OnEnter,
    After(std::time::Duration),
}

pub(crate) fn advise(args: AdviseArgs) -> Outcome {
    if !args.live && (args.twice || args.interval.is_some()) {
        return Err("--twice and --interval need --live".into());
    }
    let mut options = AdviceOptions::default();
    options.server_addrs.clone_from(&args.servers);
    options.adapter = args.adapter;
    options.pool.clone_from(&args.pool);
    options.only.clone_from(&args.processes);
    let mut out = io::stdout().lock();
    let (first, second) = if args.live {
        let second = match (args.twice, args.interval) {
            (true, _) => Second::OnEnter,
            (false, Some(d)) => Second::After(d),
            (false, None) => Second::None,
        };
        live(&mut out, second)?
    } else {
        match args.snapshots.as_slice() {
            [a] => (read(&mut out, a)?, None),
            [a, b] => (read(&mut out, a)?, Some(read(&mut out, b)?)),
            _ => return Err("give one or two snapshot files, or --live".into()),
        }
    };
    let advice = analyse(&first, second.as_ref(), &options);
    writeln!(out, "\nfindings:")?;
    write!(out, "{advice}")?;
    let toml = advice.policy_toml();
    writeln!(out, "\nproposed policy:\n\n{toml}")?;
    let policy = ipvirt::Policy::from_toml(&toml)
        .map_err(|e| format!("the proposal does not read back: {e}"))?;
    let diagnostics = policy.validate();
    if !diagnostics.is_empty() {
        writeln!(out, "validation of the proposal:")?;
        for d in diagnostics {
            writeln!(out, "  {d}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a snapshot file: `ss`, `netstat` (UTF-16 when PowerShell redirected it) or TCPView.
fn read(out: &mut impl Write, path: &Path) -> Result<Snapshot, crate::Fail> {
    let bytes = policy_file::read_regular(path, MAX_SNAPSHOT).map_err(|e| e.to_string())?;
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
    let snap = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(
        out,
        "{}: read as {}, {} sockets",
        path.display(),
        snap.format,
        snap.records.len()
    )?;
    for s in &snap.skipped {
        writeln!(out, "  line {} skipped ({}): {}", s.line, s.reason, s.text)?;
    }
    Ok(snap)
}

#[cfg(target_os = "linux")]
fn sample(out: &mut impl Write, n: usize) -> Result<Snapshot, crate::Fail> {
    let snap = ipvirt_host::live::sample().map_err(|e| e.to_string())?;
    let owned = snap.records.iter().filter(|r| r.pid.is_some()).count();
    writeln!(
        out,
        "live sample {n}: {} sockets, {owned} held by a process this user can see",
        snap.records.len()
    )?;
    Ok(snap)
}

#[cfg(not(target_os = "linux"))]
fn sample(_: &mut impl Write, _: usize) -> Result<Snapshot, crate::Fail> {
    Err("--live reads Linux's /proc: it works on Linux only".into())
}

fn live(out: &mut impl Write, second: Second) -> Result<(Snapshot, Option<Snapshot>), crate::Fail> {
    let first = sample(out, 1)?;
    let second = match second {
        Second::None => None,
        Second::OnEnter => {
            writeln!(
                out,
                "restart the application, then press Enter for the second sample"
            )?;
            out.flush()?;
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("stdin: {e}"))?;
            Some(sample(out, 2)?)
        }
        Second::After(d) => {
            writeln!(
                out,
                "second sample in {} s: restart the application now",
                d.as_secs_f64()
            )?;
            out.flush()?;
            std::thread::sleep(d);
            Some(sample(out, 2)?)
        }
    };
    Ok((first, second))
}
