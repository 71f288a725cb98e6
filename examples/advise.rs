//! The advisor as a library call: reads one or two socket-table snapshots (`ss -tulpn`,
//! `netstat -ano[b]`, a TCPView CSV export) and prints what it found and the policy it proposes.
//!
//! ```text
//! cargo run --example advise -- tests/fixtures/advisor/ss-first.txt \
//!     tests/fixtures/advisor/ss-second-noheader.txt
//! ```
//!
//! (The `ipvirt advise` command of the `ipvirt-cli` crate also takes the VIP adapter and pool,
//! UTF-16 exports, and samples this machine's live table.)

use std::io::{self, Write};
use std::process::ExitCode;

use ipvirt::advisor::{AdviceOptions, advise, parse};

fn main() -> ExitCode {
    match run(&mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): end quietly, as command-line tools do.
        Err(e)
            if e.downcast_ref::<io::Error>().map(io::Error::kind)
                == Some(io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let mut snapshots = Vec::new();
    for path in std::env::args().skip(1).take(2) {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        snapshots.push(parse(&text).map_err(|e| format!("{path}: {e}"))?);
    }
    let Some(first) = snapshots.first() else {
        return Err("usage: advise SNAPSHOT [SECOND_SNAPSHOT]".into());
    };
    let advice = advise(first, snapshots.get(1), &AdviceOptions::default());
    write!(out, "{advice}")?;
    writeln!(out, "\n{}", advice.policy_toml())?;
    Ok(())
}
