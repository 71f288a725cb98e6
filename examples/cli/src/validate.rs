//! `ipvirt validate FILE`: the policy's diagnostics, one per line; exit status 1 when any is an
//! error, 0 otherwise (warnings and notes included).

use std::io::{self, Write};
use std::process::ExitCode;

use ipvirt::{Host, Severity};
use ipvirt_host::policy_file;

use crate::Outcome;
use crate::args::ValidateArgs;

pub(crate) fn validate(args: ValidateArgs) -> Outcome {
    let loaded = policy_file::load(&args.policy).map_err(|e| e.to_string())?;
    let diagnostics = loaded
        .policy
        .validate_for(&Host::new(args.servers.iter().copied()));
    let mut out = io::stdout().lock();
    for note in &loaded.notes {
        writeln!(out, "{}: note: {note}", args.policy.display())?;
    }
    for d in &diagnostics {
        writeln!(out, "{}: {d}", args.policy.display())?;
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    writeln!(
        out,
        "{}: {} ({}), {} error{}, {} other finding{}",
        args.policy.display(),
        if errors == 0 { "valid" } else { "invalid" },
        loaded.format,
        errors,
        if errors == 1 { "" } else { "s" },
        diagnostics.len() - errors,
        if diagnostics.len() - errors == 1 {
            ""
        } else {
            "s"
        },
    )?;
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
