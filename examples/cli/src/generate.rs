//! `ipvirt generate man|bash|zsh|fish DIR`: the man pages (one per command, `ipvirt.1`,
//! `ipvirt-run.1`, …) or a shell's completions, generated from the parser's own definitions so
//! they can never disagree with `--help`. The Debian package installs what this writes.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::Outcome;
use crate::args::{Cli, GenerateArgs, Generated};

pub(crate) fn generate(args: GenerateArgs) -> Outcome {
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    let cmd = Cli::command();
    let written = match args.what {
        Generated::Man => {
            clap_mangen::generate_to(cmd, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            "man pages".to_string()
        }
        shell => {
            let shell = match shell {
                Generated::Bash => Shell::Bash,
                Generated::Zsh => Shell::Zsh,
                _ => Shell::Fish,
            };
            let mut cmd = cmd;
            let file = clap_complete::generate_to(shell, &mut cmd, "ipvirt", dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            file.display().to_string()
        }
    };
    writeln!(io::stdout().lock(), "wrote {written} in {}", dir.display())?;
    Ok(ExitCode::SUCCESS)
}
