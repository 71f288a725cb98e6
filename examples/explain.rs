//! Explains what ipvirt does: for a policy, the sessions and the processes given, which features
//! apply and why, and what each kind of socket call becomes.
//!
//! ```text
//! cargo run --example explain                                   # the built-in CRM/CTI policy
//! cargo run --example explain -- --policy examples/policies/rds-per-session.toml \
//!     --session 7 --process 'C:\Apps\crm.exe' --vip 198.51.100.7
//! ```
//!
//! Options (all optional):
//!   --policy FILE        a TOML policy or a regedit export (.reg) (default:
//!                        examples/policies/crm-cti.toml, built in)
//!   --session ID         a remote session to explain (repeatable; default 7)
//!   --console ID         a console/administrative session to explain (repeatable)
//!   --process IMAGE      an executable, by path or name (repeatable; default: the policy's programs
//!                        and one unlisted program)
//!   --vip IP             the session's virtual IP (default: the pool's address for the session, or
//!                        none when the pool is empty)
//!   --no-vip             the session has no VIP (shows the lease-failure behaviour)
//!   --server-addr IP     one of the server's own addresses (repeatable; default 192.0.2.10)
//!   --port PORT          the port in the sample calls (default 9000)
//!   --layer LAYER        also say what a Linux layer cannot do with this policy: `kernel` (the
//!                        cgroup-BPF layer) or `preload` (the LD_PRELOAD layer)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use ipvirt::{Call, Engine, Host, Policy, Session, SessionId, Vip, VipSource};

const BUILT_IN: &str = include_str!("policies/crm-cti.toml");

const USAGE: &str = "usage: explain [--policy FILE] [--session ID]... [--console ID]... [--process IMAGE]... \
[--vip IP | --no-vip] [--server-addr IP]... [--port PORT] [--layer kernel|preload]";

/// A Linux layer whose limits `--layer` explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Kernel,
    Preload,
}

struct Args {
    policy: Option<String>,
    sessions: Vec<Session>,
    processes: Vec<String>,
    vip: Option<Option<Vip>>,
    servers: Vec<IpAddr>,
    port: u16,
    layer: Option<Layer>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        policy: None,
        sessions: Vec::new(),
        processes: Vec::new(),
        vip: None,
        servers: Vec::new(),
        port: 9000,
        layer: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--policy" => a.policy = Some(value("--policy")?),
            "--session" | "-s" => {
                let id: SessionId = value("--session")?
                    .parse()
                    .map_err(|e| format!("--session: {e}"))?;
                a.sessions.push(Session::remote(id));
            }
            "--console" => {
                let id: SessionId = value("--console")?
                    .parse()
                    .map_err(|e| format!("--console: {e}"))?;
                a.sessions.push(Session::console(id));
            }
            "--process" | "-p" => a.processes.push(value("--process")?),
            "--vip" => {
                let v = value("--vip")?;
                a.vip = Some(Some(v.parse().map_err(|e| format!("--vip: {e}"))?));
            }
            "--no-vip" => a.vip = Some(None),
            "--server-addr" => {
                let v = value("--server-addr")?;
                a.servers.push(
                    v.parse()
                        .map_err(|_| format!("--server-addr: {v:?} is not an IP address"))?,
                );
            }
            "--port" => {
                let v = value("--port")?;
                a.port = v
                    .parse()
                    .map_err(|_| format!("--port: {v:?} is not a port number (0-65535)"))?;
            }
            "--layer" => {
                a.layer = Some(match value("--layer")?.as_str() {
                    "kernel" => Layer::Kernel,
                    "preload" => Layer::Preload,
                    other => {
                        return Err(format!(
                            "--layer: {other:?} is not a layer (kernel or preload)"
                        ));
                    }
                })
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    let (source, bytes) = match &args.policy {
        Some(path) => match std::fs::read(path) {
            Ok(b) => (path.clone(), b),
            Err(e) => return fail(&format!("cannot read policy {path:?}: {e}")),
        },
        None => (
            "built-in examples/policies/crm-cti.toml".to_string(),
            BUILT_IN.as_bytes().to_vec(),
        ),
    };
    // A registry export (.reg, or any file that starts like one) or a TOML policy.
    let looks_reg = source.to_ascii_lowercase().ends_with(".reg")
        || bytes.starts_with(&[0xFF, 0xFE])
        || bytes.starts_with(b"REGEDIT4")
        || bytes.starts_with(b"Windows Registry Editor");
    let mut notes = Vec::new();
    let policy = if looks_reg {
        match Policy::from_reg(&bytes) {
            Ok(import) => {
                notes.extend(import.diagnostics.iter().map(ToString::to_string));
                let o = import.origins;
                for (name, origin) in [
                    ("EnableVirtualIP", o.enabled),
                    ("VirtualMode", o.mode),
                    ("PerApp", o.programs),
                    ("VIPAdapter", o.adapter),
                    ("PromptOnIPLeaseFail", o.on_lease_failure),
                ] {
                    if let Some(origin) = origin {
                        notes.push(format!("{name} comes from the {origin:?} key"));
                    }
                }
                import.policy
            }
            Err(e) => return fail(&format!("{source}: {e}")),
        }
    } else {
        match Policy::from_toml(&String::from_utf8_lossy(&bytes)) {
            Ok(p) => p,
            Err(e) => return fail(&format!("{source}: {e}")),
        }
    };
    let servers = if args.servers.is_empty() {
        vec![IpAddr::from([192, 0, 2, 10])]
    } else {
        args.servers.clone()
    };
    let engine = match policy.compile(Host::new(servers.iter().copied())) {
        Ok(e) => e,
        Err(e) => return fail(&format!("{source}: {e}")),
    };

    println!("policy: {source}");
    println!(
        "server addresses: {}",
        servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for note in &notes {
        println!("  {note}");
    }
    let diagnostics = policy.validate_for(&Host::new(servers.iter().copied()));
    if diagnostics.is_empty() {
        println!("validation: no findings");
    } else {
        println!("validation:");
        for d in &diagnostics {
            println!("  {d}");
        }
    }
    if let Some(layer) = args.layer {
        explain_layer(layer, &policy);
    }
    println!();

    let sessions = if args.sessions.is_empty() {
        vec![Session::remote(SessionId::new(7))]
    } else {
        args.sessions.clone()
    };
    let processes = if args.processes.is_empty() {
        default_processes(&policy)
    } else {
        args.processes.clone()
    };
    if policy.virtual_ip.enabled
        && policy.virtual_ip.source == VipSource::Dhcp
        && args.vip.is_none()
    {
        println!(
            "virtual IP source: dhcp — addresses are leased from a DHCP server at run time; this explanation shows a session without one (give --vip IP for one with)"
        );
        println!();
    }
    for &session in &sessions {
        explain_session(
            session,
            args.layer.is_some() && policy.virtual_loopback.enabled,
        );
        let vip = match args.vip {
            Some(v) => v,
            None => pool_address(&policy, session.id()),
        };
        for image in &processes {
            explain_process(&engine, session, image, vip, args.port);
        }
    }
    ExitCode::SUCCESS
}

/// What a Linux layer cannot do, for this policy.
fn explain_layer(layer: Layer, policy: &Policy) {
    let map = policy.virtual_loopback.ipv6 == ipvirt::Ipv6Loopback::Map;
    match layer {
        Layer::Kernel => {
            println!("kernel layer (cgroup-BPF, examples/session --layer kernel; needs root):");
            println!(
                "  reaches every process of the session's cgroup and its children: static, Go and setuid programs included"
            );
            println!(
                "  programs are matched by executable: the basename of the task's mm->exe_file (ASCII case folded), or \
                 for a full path, the file (device and inode) it names when the session starts"
            );
            println!("  cannot: raw and ICMP sockets (no sock_addr hook runs for them)");
            println!(
                "  cannot: sockets created before the process joined the session (a socket keeps its cgroup)"
            );
            println!(
                "  cannot: name resolution (getaddrinfo results are the resolver's; a VIP replaces a server \
                 address only at bind)"
            );
            if map {
                println!(
                    "  ipv6 = \"map\": only sockets that take IPv4-mapped addresses are mapped (IPV6_V6ONLY is read, \
                     never cleared: a v6-only [::1] socket stays on ::1); an unconnected UDP sendto [::1] is left \
                     alone (a sendmsg6 program cannot send to an IPv4-mapped address)"
                );
            }
            println!(
                "  fails closed: a process of the layer's cgroup tree whose session has no entry gets EPERM from \
                 bind, connect and sendmsg"
            );
        }
        Layer::Preload => {
            println!("LD_PRELOAD layer (examples/session, the default; no privileges):");
            println!(
                "  reaches dynamically linked programs started with the layer in LD_PRELOAD and the session's variables"
            );
            println!(
                "  cannot: static programs (busybox-static, musl), Go programs (direct system calls), setuid \
                 programs (the loader drops LD_PRELOAD), programs that clear their environment"
            );
            if map {
                println!(
                    "  ipv6 = \"map\": clears IPV6_V6ONLY on a [::1] socket before its bind, so the mapping applies"
                );
            }
        }
    }
}

fn explain_session(session: Session, linux: bool) {
    let id = session.id();
    print!("{session}: ");
    match id.loopback() {
        Ok(addr) => {
            print!("loopback address {addr} = 127.0.0.0 + ({id} + 1)");
            if id.get() + 1 > 255 {
                let [_, a, b, c] = addr.octets();
                print!(
                    ", {} = {a}·65536 + {b}·256 + {c} (the sum carries across octets)",
                    id.get() + 1
                );
            }
            println!();
        }
        Err(e) => println!("{e}"),
    }
    if id.get() == 0 {
        println!(
            "  session 0 maps to 127.0.0.1, the real localhost: it is the services session and is never isolated"
        );
    }
    if !session.is_virtualized() {
        println!(
            "  this session is not virtualized: only remote sessions other than session 0 are"
        );
    } else if linux && id == SessionId::MAX {
        println!(
            "  on Linux 127.255.255.255 is the broadcast address of lo, where TCP cannot use it: the \
             launcher refuses this session, and the LD_PRELOAD layer refuses its loopback calls (EADDRNOTAVAIL)"
        );
    }
    println!();
}

fn explain_process(engine: &Engine, session: Session, image: &str, vip: Option<Vip>, port: u16) {
    print!("{}", engine.explain(session, image));
    let plan = engine.process(image);
    let rw = engine.rewriter(session, &plan, vip);
    if plan.virtual_ip().applies() && session.is_virtualized() {
        match vip {
            Some(v) => println!("  the session's VIP: {v}"),
            None => println!("  the session has no VIP"),
        }
    }
    let server = engine
        .host()
        .primary_v4()
        .unwrap_or(Ipv4Addr::new(192, 0, 2, 10));
    let samples: [(Call, SocketAddr); 8] = [
        (Call::Bind, SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        (Call::Bind, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        (Call::Bind, SocketAddr::from((server, port))),
        (Call::BindDualStack, SocketAddr::from(([0u16; 8], port))),
        (Call::Connect, SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        (Call::Connect, SocketAddr::from(([198, 51, 100, 20], 443))),
        (
            Call::Reported,
            SocketAddr::from((rw.session_loopback().unwrap_or(Ipv4Addr::LOCALHOST), port)),
        ),
        (Call::Resolved, SocketAddr::from((server, 0))),
    ];
    println!("  what its calls become:");
    for (call, addr) in samples {
        println!("    {}", rw.explain(call, addr));
    }
    println!();
}

/// The programs the policy names, plus one it does not.
fn default_processes(policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in policy
        .virtual_loopback
        .programs
        .iter()
        .chain(&policy.virtual_ip.programs)
        .chain(&policy.prefer_loopback.processes)
    {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(p)) {
            out.push(p.clone());
        }
    }
    out.push(r"C:\Windows\System32\notepad.exe".to_string());
    out
}

/// A stand-in for the pool: the session's address is the pool's `id`-th, so the output is
/// deterministic. (A real deployment leases from `ipvirt`'s pool or DHCP.)
fn pool_address(policy: &Policy, id: SessionId) -> Option<Vip> {
    if policy.virtual_ip.source == VipSource::Dhcp {
        // Leased from a server at run time: nothing to show without one (use --vip).
        return None;
    }
    let mut n = u64::from(id.get());
    for entry in &policy.virtual_ip.pool {
        if n < entry.len() {
            // A pool entry that cannot hold VIPs gives none (the validator says why).
            return Vip::new(Ipv4Addr::from_bits(
                entry.first().to_bits() + u32::try_from(n).ok()?,
            ))
            .ok();
        }
        n -= entry.len();
    }
    None
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("explain: {msg}\n{USAGE}");
    ExitCode::from(2)
}
