//! `ipvirt`: the command administrators run (see `ipvirt --help` and `man ipvirt`).
//!
//! - `run`: a command as a session, under the `LD_PRELOAD` layer (crate `ipvirt-preload`) or the
//!   kernel layer (crate `ipvirt-kernel`), its VIP leased through the host's one lease book.
//! - `daemon`, `reload`: the service that makes every login of a Linux server a session, and
//!   the PAM module's counterpart (`service/`).
//! - `status`, `kernel stats|detach`: what runs, and the kernel layer's upkeep.
//! - `explain`, `validate`, `advise`: the library's decisions in words, a policy's diagnostics,
//!   and a policy proposed from socket tables.
//! - `generate`: the man pages and shell completions, from the same definitions as the parser
//!   (`args.rs`).
//!
//! Every command's output goes through [`Fail`]: an error names the bad value and exits with
//! status 2 (1 for `validate`'s findings); a reader that goes away (`| head -1`) ends the command
//! quietly.

mod advise;
mod args;
mod explain;
mod generate;
#[cfg(target_os = "linux")]
mod kernel;
mod paths;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
mod run_dhcp;
#[cfg(target_os = "linux")]
mod service;
mod status;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Why a command stopped.
#[derive(Debug)]
pub(crate) enum Fail {
    /// An error, in words naming what was wrong; exit status 2.
    Message(String),
    /// Writing the output failed: quietly when its reader went away, else with the error.
    Output(std::io::Error),
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Message(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Fail {
        Fail::Message(m.to_owned())
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Output(e)
    }
}

/// A command's result: its exit status, or why it stopped.
pub(crate) type Outcome = Result<ExitCode, Fail>;

/// Prints a line on stderr, prefixed with the program's name, ignoring errors (a closed stderr
/// must not stop a command that has work to finish, such as releasing a lease).
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "ipvirt: {line}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        #[cfg(target_os = "linux")]
        Command::Run(a) => run::run(a),
        #[cfg(not(target_os = "linux"))]
        Command::Run(_) => Err("ipvirt run needs Linux (on Windows, use winsession)".into()),
        Command::Status(a) => status::status(a),
        #[cfg(target_os = "linux")]
        Command::Daemon(a) => service::daemon(a),
        #[cfg(not(target_os = "linux"))]
        Command::Daemon(_) => Err("the ipvirt service is Linux-only".into()),
        Command::Reload(a) => status::reload(a),
        Command::Explain(a) => explain::explain(a),
        Command::Validate(a) => validate::validate(a),
        Command::Advise(a) => advise::advise(a),
        #[cfg(target_os = "linux")]
        Command::Kernel(a) => kernel::kernel(a),
        #[cfg(not(target_os = "linux"))]
        Command::Kernel(_) => Err("the kernel layer is Linux-only".into()),
        Command::Generate(a) => generate::generate(a),
    };
    match outcome {
        Ok(code) => code,
        Err(Fail::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Fail::Output(e)) => {
            say(&format!("writing the output: {e}"));
            ExitCode::from(2)
        }
        Err(Fail::Message(m)) => {
            say(&m);
            ExitCode::from(2)
        }
    }
}
