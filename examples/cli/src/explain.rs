//! `ipvirt explain`: for a policy, the sessions and the processes given, which features apply
//! and why, and what each kind of socket call becomes.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use ipvirt::{Call, Engine, Host, Policy, Session, SessionId, Vip, VipSource};
use ipvirt_host::policy_file;

use crate::Outcome;
use crate::args::{ExplainArgs, Layer};

/// The policy explained when none is given.
const BUILT_IN: &str = include_str!("../../policies/crm-cti.toml");

pub(crate) fn explain(args: ExplainArgs) -> Outcome {
    let (source, loaded) = match &args.policy {
        Some(path) => (
            path.display().to_string(),
            policy_file::load(path).map_err(|e| e.to_string())?,
        ),
        None => (
            "built-in examples/policies/crm-cti.toml".to_string(),
            policy_file::parse("crm-cti.toml".as_ref(), BUILT_IN.as_bytes())
                .map_err(|e| e.to_string())?,
        ),
    };
    let policy = loaded.policy;
    let servers = if args.servers.is_empty() {
        vec![IpAddr::from([192, 0, 2, 10])]
    } else {
        args.servers.clone()
    };
    let host = Host::new(servers.iter().copied());
    let engine = policy
        .clone()
        .compile(host.clone())
        .map_err(|e| format!("{source}: {e}"))?;

    let mut out = io::stdout().lock();
    writeln!(out, "policy: {source}")?;
    let listed: Vec<String> = servers.iter().map(ToString::to_string).collect();
    writeln!(out, "server addresses: {}", listed.join(", "))?;
    for note in &loaded.notes {
        writeln!(out, "  {note}")?;
    }
    let diagnostics = policy.validate_for(&host);
    if diagnostics.is_empty() {
        writeln!(out, "validation: no findings")?;
    } else {
        writeln!(out, "validation:")?;
        for d in &diagnostics {
            writeln!(out, "  {d}")?;
        }
    }
    if let Some(layer) = args.layer {
        explain_layer(&mut out, layer, &policy)?;
    }
    writeln!(out)?;

    let mut sessions: Vec<Session> = args.sessions.iter().map(|&s| Session::remote(s)).collect();
    sessions.extend(args.consoles.iter().map(|&s| Session::console(s)));
    if sessions.is_empty() {
        sessions.push(Session::remote(SessionId::new(7)));
    }
    let processes = if args.processes.is_empty() {
        default_processes(&policy)
    } else {
        args.processes.clone()
    };
    let vip_given = args.vip.is_some() || args.no_vip;
    if policy.virtual_ip.enabled && policy.virtual_ip.source == VipSource::Dhcp && !vip_given {
        writeln!(
            out,
            "virtual IP source: dhcp — addresses are leased from a DHCP server at run time; this explanation shows a session without one (give --vip IP for one with)"
        )?;
        writeln!(out)?;
    }
    for &session in &sessions {
        explain_session(
            &mut out,
            session,
            args.layer.is_some() && policy.virtual_loopback.enabled,
        )?;
        let vip = match (args.vip, args.no_vip) {
            (Some(v), _) => Some(v),
            (None, true) => None,
            (None, false) => pool_address(&policy, session.id()),
        };
        for image in &processes {
            explain_process(&mut out, &engine, session, image, vip, args.port)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a Linux layer cannot do, for this policy.
fn explain_layer(out: &mut impl Write, layer: Layer, policy: &Policy) -> io::Result<()> {
    let map = policy.virtual_loopback.ipv6 == ipvirt::Ipv6Loopback::Map;
    match layer {
        Layer::Kernel => {
            writeln!(
                out,
                "kernel layer (cgroup-BPF, ipvirt run --layer kernel; needs root):"
            )?;
            writeln!(
                out,
                "  reaches every process of the session's cgroup and its children: static, Go and setuid programs included"
            )?;
            writeln!(
                out,
                "  programs are matched by executable: the basename of the task's mm->exe_file (ASCII case folded), or \
                 for a full path, the file (device and inode) it names when the session starts"
            )?;
            writeln!(
                out,
                "  cannot: raw and ICMP sockets (no sock_addr hook runs for them)"
            )?;
            writeln!(
                out,
                "  cannot: sockets created before the process joined the session (a socket keeps its cgroup)"
            )?;
            writeln!(
                out,
                "  cannot: name resolution (getaddrinfo results are the resolver's; a VIP replaces a server \
                 address only at bind)"
            )?;
            if map {
                writeln!(
                    out,
                    "  ipv6 = \"map\": only sockets that take IPv4-mapped addresses are mapped (IPV6_V6ONLY is read, \
                     never cleared: a v6-only [::1] socket stays on ::1); an unconnected UDP sendto [::1] is left \
                     alone (a sendmsg6 program cannot send to an IPv4-mapped address)"
                )?;
            }
            writeln!(
                out,
                "  fails closed: a process of the layer's cgroup tree whose session has no entry gets EPERM from \
                 bind, connect and sendmsg"
            )?;
        }
        Layer::Preload => {
            writeln!(
                out,
                "LD_PRELOAD layer (ipvirt run, the default; no privileges):"
            )?;
            writeln!(
                out,
                "  reaches dynamically linked programs started with the layer in LD_PRELOAD and the session's variables"
            )?;
            writeln!(
                out,
                "  cannot: static programs (busybox-static, musl), Go programs (direct system calls), setuid \
                 programs (the loader drops LD_PRELOAD), programs that clear their environment"
            )?;
            if map {
                writeln!(
                    out,
                    "  ipv6 = \"map\": clears IPV6_V6ONLY on a [::1] socket before its bind, so the mapping applies"
                )?;
            }
        }
    }
    Ok(())
}

fn explain_session(out: &mut impl Write, session: Session, linux: bool) -> io::Result<()> {
    let id = session.id();
    write!(out, "{session}: ")?;
    match id.loopback() {
        Ok(addr) => {
            write!(out, "loopback address {addr} = 127.0.0.0 + ({id} + 1)")?;
            if id.get() + 1 > 255 {
                let [_, a, b, c] = addr.octets();
                write!(
                    out,
                    ", {} = {a}·65536 + {b}·256 + {c} (the sum carries across octets)",
                    id.get() + 1
                )?;
            }
            writeln!(out)?;
        }
        Err(e) => writeln!(out, "{e}")?,
    }
    if id.get() == 0 {
        writeln!(
            out,
            "  session 0 maps to 127.0.0.1, the real localhost: it is the services session and is never isolated"
        )?;
    }
    if !session.is_virtualized() {
        writeln!(
            out,
            "  this session is not virtualized: only remote sessions other than session 0 are"
        )?;
    } else if linux && id == SessionId::MAX {
        writeln!(
            out,
            "  on Linux 127.255.255.255 is the broadcast address of lo, where TCP cannot use it: the \
             launcher refuses this session, and the LD_PRELOAD layer refuses its loopback calls (EADDRNOTAVAIL)"
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn explain_process(
    out: &mut impl Write,
    engine: &Engine,
    session: Session,
    image: &str,
    vip: Option<Vip>,
    port: u16,
) -> io::Result<()> {
    write!(out, "{}", engine.explain(session, image))?;
    let plan = engine.process(image);
    let rw = engine.rewriter(session, &plan, vip);
    if plan.virtual_ip().applies() && session.is_virtualized() {
        match vip {
            Some(v) => writeln!(out, "  the session's VIP: {v}")?,
            None => writeln!(out, "  the session has no VIP")?,
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
    writeln!(out, "  what its calls become:")?;
    for (call, addr) in samples {
        writeln!(out, "    {}", rw.explain(call, addr))?;
    }
    writeln!(out)?;
    Ok(())
}

/// The programs the policy names (each once, whatever its case), plus one it does not.
fn default_processes(policy: &Policy) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out: Vec<String> = policy
        .virtual_loopback
        .programs
        .iter()
        .chain(&policy.virtual_ip.programs)
        .chain(&policy.prefer_loopback.processes)
        .filter(|p| seen.insert(p.to_ascii_lowercase()))
        .cloned()
        .collect();
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
