//! Explains what ipvirt does for the sessions given.
//!
//! ```text
//! cargo run --example explain -- --session 7 --session 255
//! ```
//!
//! With no arguments it explains a few representative sessions (0, 7, 254, 255, the largest).

use std::process::ExitCode;

use ipvirt::{SessionId, SessionKind};

const USAGE: &str = "usage: explain [--session ID]...";

fn main() -> ExitCode {
    let mut sessions = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--session" | "-s" => match args.next().map(|v| v.parse::<SessionId>()) {
                Some(Ok(id)) => sessions.push(id),
                Some(Err(e)) => return fail(&e.to_string()),
                None => return fail("--session needs a value"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return fail(&format!("unknown argument {other:?}")),
        }
    }
    if sessions.is_empty() {
        println!("(no --session given: explaining a few representative sessions)\n");
        sessions = [0, 7, 254, 255, 65_535, SessionId::MAX.get()]
            .into_iter()
            .map(SessionId::new)
            .collect();
    }
    for id in sessions {
        explain_session(id);
    }
    ExitCode::SUCCESS
}

fn explain_session(id: SessionId) {
    let Ok(addr) = id.loopback() else {
        // Unreachable for parsed ids (FromStr checks the range), kept for completeness.
        println!(
            "session {id}: no loopback address (largest is {})",
            SessionId::MAX
        );
        return;
    };
    let offset = id.get() + 1;
    println!("session {id}: loopback {addr}");
    println!("  127.0.0.0 + ({id} + 1) = 127.0.0.0 + {offset}");
    let [_, a, b, c] = addr.octets();
    if offset > 255 {
        println!(
            "  {offset} = {a}·65536 + {b}·256 + {c}: the sum carries past the last octet into the ones before it"
        );
    }
    if id.get() == 0 {
        println!(
            "  note: session 0 gets 127.0.0.1, the real localhost; it is the services session and never"
        );
        println!(
            "  virtualized (only {:?} sessions other than 0 are), so it is not isolated",
            SessionKind::Remote
        );
    } else {
        println!("  session {id} binding 127.0.0.1:PORT really binds {addr}:PORT");
    }
    println!();
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("explain: {msg}\n{USAGE}");
    ExitCode::from(2)
}
