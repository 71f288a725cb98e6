//! How a hooking layer calls ipvirt, in words: for a policy, session 7 and each program the
//! policy names, which features apply and why, and what a few socket calls become.
//!
//! ```text
//! cargo run --example explain                                   # the built-in CRM/CTI policy
//! cargo run --example explain -- examples/policies/rds-per-session.toml
//! ```
//!
//! (The `ipvirt explain` command of the `ipvirt-cli` crate does this for any sessions, programs,
//! addresses and registry exports, and says what each Linux layer cannot do.)

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use ipvirt::{Call, Host, Policy, Session, SessionId, Vip};

const BUILT_IN: &str = include_str!("policies/crm-cti.toml");

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
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?,
        None => BUILT_IN.to_owned(),
    };
    // Once, when the service starts: read, check and compile the policy for this server.
    let policy = Policy::from_toml(&text)?;
    for d in policy.validate() {
        writeln!(out, "{d}")?;
    }
    let engine = policy.compile(Host::new(["192.0.2.10".parse()?]))?;
    let session = Session::remote(SessionId::new(7));
    let vip: Option<Vip> = Some("192.0.2.107".parse()?);

    let mut programs: Vec<&String> = policy.virtual_loopback.programs.iter().collect();
    programs.extend(&policy.virtual_ip.programs);
    programs.dedup();
    for program in programs {
        // Once per process: which features apply to it, and why.
        write!(out, "\n{}", engine.explain(session, program))?;
        let plan = engine.process(program);
        // Once per process and session: the rewriter the hooks call for every socket call.
        let rw = engine.rewriter(session, &plan, vip);
        for (call, addr) in [
            (Call::Bind, "127.0.0.1:9000"),
            (Call::Bind, "0.0.0.0:9000"),
            (Call::Connect, "127.0.0.1:9000"),
            (Call::Connect, "198.51.100.20:443"),
        ] {
            let addr: SocketAddr = addr.parse()?;
            writeln!(out, "  {}", rw.explain(call, addr))?;
        }
    }
    Ok(())
}
