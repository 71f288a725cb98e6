//! One policy, one session, one table of socket calls, four layers (SPEC §7): the `Rewriter`, the
//! C ABI, the `LD_PRELOAD` layer and the kernel layer must give the same answers.
//!
//! The calls run for real in the two Linux layers (`tests/kernel/probe.c`: a fresh socket per
//! call, printing what the program sees and where the socket really is, read from /proc/net by
//! inode); the Rewriter's and the C ABI's answers are turned into the same lines. Each call is
//! made by a listed program (`probe`) and an unlisted one (`other`). The table covers the session
//! loopback for TCP and UDP, IPv4-mapped and `::1` (the mapping is on), `::`, `0.0.0.0`, excluded
//! ports, and isolation (bind and connect). Loopback only: VIPs need a namespace and are covered
//! by tests/kernel_layer.rs and tests/preload_e2e.rs.
//!
//! `isolation_table_of_spec_12_holds_in_every_layer` runs SPEC §12's routes the same way: a
//! `0.0.0.0` (and `::`, `::ffff:0.0.0.0`) destination, `127.0.0.0` and `127.255.255.255`, a source
//! chosen with `IP_PKTINFO` / `IPV6_PKTINFO`, and an `AF_UNSPEC` family in `sendto`.

#![allow(unsafe_code)] // the C ABI's functions, called as a C caller would

use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket,
};
use std::path::{Path, PathBuf};
use std::process::Command;

use ipvirt::capi;
use ipvirt::{Host, Policy, Rewriter, Session, SessionId, Stack};
use ipvirt_testkit::require;
use ipvirt_testkit::{free_port, in_session, kernel_unavailable, preload_lib};

const SESSION: u32 = 7;

fn policy_text(x1: u16, x2: u16) -> String {
    format!(
        "platform = \"other\"\n[virtual_loopback]\nenabled = true\nprograms = [\"probe\"]\n\
         isolate = true\nipv6 = \"map\"\nexcluded_ports = [{x1}, {x2}]\n"
    )
}

/// One call of the table.
#[derive(Debug, Clone)]
struct Call {
    op: &'static str,
    ip: IpAddr,
    port: u16,
}

fn addr(c: &Call) -> SocketAddr {
    match c.ip {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, c.port)),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, c.port, 0, 0)),
    }
}

/// How the probe prints an address (inet_ntop).
fn ntop(a: SocketAddr) -> String {
    a.ip().to_string()
}

/// Where Linux sends a destination: `0.0.0.0` goes to `127.0.0.1`, `::` to `::1`.
fn native(dest: SocketAddr) -> SocketAddr {
    let mut d = dest;
    match dest.ip() {
        IpAddr::V4(a) if a.is_unspecified() => d.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(a) if a.is_unspecified() => d.set_ip(Ipv6Addr::LOCALHOST.into()),
        IpAddr::V6(a) if a.to_ipv4_mapped() == Some(Ipv4Addr::UNSPECIFIED) => {
            d.set_ip(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into());
        }
        _ => {}
    }
    d
}

/// An address as an IPv4 server sees it (IPv4-mapped ones as IPv4).
fn ntop4(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

/// The source Linux picks for a loopback destination when the socket is not bound.
fn default_source(dest: SocketAddr) -> SocketAddr {
    match dest {
        SocketAddr::V4(_) => "127.0.0.1:0".parse().unwrap(),
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => SocketAddr::V6(
            SocketAddrV6::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0, 0, 0),
        ),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0)),
    }
}

/// The line the probe prints, from a layer's decisions: `bind` gives the bound address or an
/// errno, `connect` the destination and source (or an errno), `reported` what a result reports.
fn line(
    c: &Call,
    bind: impl Fn(SocketAddr) -> Result<SocketAddr, i32>,
    connect: impl Fn(SocketAddr) -> Result<(SocketAddr, Option<SocketAddr>), i32>,
    reported: impl Fn(SocketAddr) -> SocketAddr,
) -> String {
    let head = format!("{} {} {}", c.op, c.ip, c.port);
    let a = addr(c);
    let body = if c.op.starts_with("bind") {
        match bind(a) {
            Ok(real) => format!("ok real={} reported={}", ntop(real), ntop(reported(real))),
            Err(e) => format!("err {e}"),
        }
    } else if c.op.starts_with("udp") {
        // A source chosen in IP_PKTINFO / IPV6_PKTINFO is decided as a bind of it (SPEC §12);
        // the echo server answers from where the datagram went with the source it saw.
        let chosen = match c.op.split_once('=') {
            Some((_, src)) => match bind(SocketAddr::new(src.parse().unwrap(), 0)) {
                Ok(s) => Ok(Some(s)),
                Err(e) => Err(e),
            },
            None => Ok(None),
        };
        match chosen.and_then(|chosen| connect(a).map(|c| (c, chosen))) {
            Ok(((dest, source), chosen)) => {
                // Linux sends 0.0.0.0 to the source when one is chosen (the route to bypass
                // isolation that issue 23 found), else to 127.0.0.1.
                let dest = match chosen {
                    Some(src) if native(dest) != dest => SocketAddr::new(src.ip(), dest.port()),
                    _ => native(dest),
                };
                let src = chosen.or(source).unwrap_or_else(|| default_source(dest));
                format!("ok from={} src={}", ntop(reported(dest)), ntop4(src))
            }
            Err(e) => format!("err {e}"),
        }
    } else {
        match connect(a) {
            Ok((dest, source)) => {
                let dest = native(dest);
                let local = source.unwrap_or_else(|| default_source(dest));
                format!(
                    "ok peer={} peer_reported={} local={} local_reported={}",
                    ntop(dest),
                    ntop(reported(dest)),
                    ntop(local),
                    ntop(reported(local))
                )
            }
            Err(e) => format!("err {e}"),
        }
    };
    format!("{head} {body}")
}

fn rewriter_lines(rw: &Rewriter, calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            line(
                c,
                |a| {
                    let stack = if a.is_ipv6() {
                        Stack::Dual
                    } else {
                        Stack::Single
                    };
                    rw.bind_on(a, stack).map_err(|r| r.errno())
                },
                |a| {
                    let r = if c.op.starts_with("udp") {
                        rw.send_to(a)
                    } else {
                        rw.connect(a)
                    };
                    r.map(|k| (k.dest, k.source)).map_err(|r| r.errno())
                },
                |a| rw.reported(a),
            )
        })
        .collect()
}

/// Linux `sockaddr_in`/`sockaddr_in6` bytes.
fn to_bytes(a: SocketAddr) -> Vec<u8> {
    match a {
        SocketAddr::V4(a) => {
            let mut b = vec![0u8; 16];
            b[..2].copy_from_slice(&2u16.to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        SocketAddr::V6(a) => {
            let mut b = vec![0u8; 28];
            b[..2].copy_from_slice(&10u16.to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b
        }
    }
}

fn from_bytes(b: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([b[2], b[3]]);
    match u16::from_ne_bytes([b[0], b[1]]) {
        2 => SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            port,
        )),
        _ => {
            let ip: [u8; 16] = b[8..24].try_into().unwrap();
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        }
    }
}

fn errno_of(status: capi::ipvirt_status) -> i32 {
    let mut posix = 0i32;
    let mut win = 0i32;
    // SAFETY: both outputs are valid i32s.
    let s = unsafe { capi::ipvirt_status_errno(status as u32, &mut posix, &mut win) };
    assert_eq!(s as u32, 0, "{status:?} has an errno");
    posix
}

/// The C ABI's answers, through the exported functions as a C hook calls them.
fn capi_lines(policy: &str, image: &str, calls: &[Call]) -> Vec<String> {
    let layout = capi::ipvirt_layout::IPVIRT_LAYOUT_LINUX as u32;
    let mut engine = std::ptr::null_mut();
    let mut plan = std::mem::MaybeUninit::<capi::ipvirt_plan>::zeroed();
    let mut rw = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the length passed; outputs are written by the callee.
    unsafe {
        let s = capi::ipvirt_engine_new(
            policy.as_ptr(),
            policy.len(),
            std::ptr::null(),
            0,
            &mut engine,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        assert_eq!(s as u32, 0);
        let s = capi::ipvirt_engine_process(engine, image.as_ptr(), image.len(), plan.as_mut_ptr());
        assert_eq!(s as u32, 0);
        let s = capi::ipvirt_rewriter_new(
            engine,
            SESSION,
            0,
            plan.as_ptr(),
            std::ptr::null(),
            0,
            &mut rw,
        );
        assert_eq!(s as u32, 0);
    }
    let rw = rw as *const capi::ipvirt_rewriter;
    let reported = |a: SocketAddr| {
        let mut b = to_bytes(a);
        let mut changed = 0u32;
        // SAFETY: b is valid for its length; changed is a valid u32.
        let s = unsafe {
            capi::ipvirt_rewriter_reported(rw, b.as_mut_ptr(), b.len(), layout, &mut changed)
        };
        assert_eq!(s as u32, 0);
        from_bytes(&b)
    };
    let out = calls
        .iter()
        .map(|c| {
            line(
                c,
                |a| {
                    let mut b = to_bytes(a);
                    let mut changed = 0u32;
                    let dual = u32::from(a.is_ipv6());
                    // SAFETY: b is valid for its length; changed is a valid u32.
                    let s = unsafe {
                        capi::ipvirt_rewriter_bind(
                            rw,
                            b.as_mut_ptr(),
                            b.len(),
                            layout,
                            dual,
                            &mut changed,
                        )
                    };
                    if s as u32 == 0 {
                        Ok(from_bytes(&b))
                    } else {
                        Err(errno_of(s))
                    }
                },
                |a| {
                    let mut b = to_bytes(a);
                    let mut src = [0u8; 28];
                    let mut written = 0usize;
                    let mut changed = 0u32;
                    // SAFETY: every buffer is valid for its length; the outputs are valid.
                    let s = unsafe {
                        let f = if c.op.starts_with("udp") {
                            capi::ipvirt_rewriter_sendto
                        } else {
                            capi::ipvirt_rewriter_connect
                        };
                        f(
                            rw,
                            b.as_mut_ptr(),
                            b.len(),
                            layout,
                            src.as_mut_ptr(),
                            src.len(),
                            &mut written,
                            &mut changed,
                        )
                    };
                    if s as u32 != 0 {
                        return Err(errno_of(s));
                    }
                    Ok((
                        from_bytes(&b),
                        (written > 0).then(|| from_bytes(&src[..written])),
                    ))
                },
                reported,
            )
        })
        .collect();
    // SAFETY: both were made above and are freed once.
    unsafe {
        capi::ipvirt_rewriter_free(rw as *mut _);
        capi::ipvirt_engine_free(engine);
    }
    out
}

fn build_probe(dir: &Path, name: &str, static_: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/probe.c");
    let mut c = Command::new("gcc");
    if static_ {
        c.arg("-static");
    }
    let o = c
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn probe_args(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .flat_map(|c| [c.op.to_string(), c.ip.to_string(), c.port.to_string()])
        .collect()
}

fn lines(o: std::process::Output) -> Vec<String> {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Echo servers outside any session on `ip:port`, each answering a datagram with the source it
/// saw.
fn echo_servers(ips: &[&str], port: u16) {
    for ip in ips {
        let s = UdpSocket::bind((*ip, port)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(from.ip().to_string().as_bytes(), from);
            }
        });
    }
}

#[test]
fn rewriter_c_abi_preload_and_kernel_layers_agree() {
    require!("gcc");
    let (p, x1, x2, u) = (free_port(), free_port(), free_port(), free_port());
    let b: Vec<u16> = (0..7).map(|_| free_port()).collect();
    let lo = |s: &str| s.parse::<IpAddr>().unwrap();
    let call = |op, ip: &str, port| Call {
        op,
        ip: lo(ip),
        port,
    };
    let calls = vec![
        call("bind4", "127.0.0.1", b[0]),
        call("bind4", "127.0.0.1", x1),
        call("bind4", "127.0.0.9", b[1]),
        call("bind4", "127.0.0.8", b[2]),
        call("bind4", "0.0.0.0", b[3]),
        call("bind6", "::1", b[4]),
        call("bind6", "::ffff:127.0.0.1", b[5]),
        call("bind6", "::", b[6]),
        call("connect4", "127.0.0.1", p),
        call("connect4", "127.0.0.9", p),
        call("connect4", "127.0.0.8", p),
        call("connect4", "127.0.0.1", x2),
        call("connect6", "::1", p),
        call("connect6", "::ffff:127.0.0.1", p),
        call("udp4", "127.0.0.1", u),
    ];
    // Servers where the calls may land, outside any session.
    let _tcp: Vec<TcpListener> = ["127.0.0.1", "127.0.0.8", "127.0.0.9"]
        .iter()
        .map(|ip| TcpListener::bind((*ip, p)).unwrap())
        .chain(std::iter::once(
            TcpListener::bind(("127.0.0.1", x2)).unwrap(),
        ))
        .collect();
    let _v6 = TcpListener::bind(("::1", p)).unwrap();
    echo_servers(&["127.0.0.1", "127.0.0.8"], u);
    agree("agree", &policy_text(x1, x2), &calls);
}

/// SPEC §12, "Isolation, precisely", on every route it names, in the four layers: the session is
/// 7 (loopback 127.0.0.8), isolation and the IPv6 mapping are on, `probe` is listed and `other`
/// is not. `other` shows what Linux does natively with each call.
#[test]
fn isolation_table_of_spec_12_holds_in_every_layer() {
    require!("gcc");
    // The listeners first, on ports free on every address they need: a port free on 127.0.0.1
    // may be taken on another loopback address by a test running beside this one.
    let (p, _tcp, _v6) = (0..100)
        .find_map(|_| {
            let p = free_port();
            let tcp: Result<Vec<TcpListener>, _> = ["127.0.0.1", "127.0.0.8", "127.0.0.0"]
                .iter()
                .map(|ip| TcpListener::bind((*ip, p)))
                .collect();
            let v6 = TcpListener::bind(("::1", p));
            Some((p, tcp.ok()?, v6.ok()?))
        })
        .expect("a port free on 127.0.0.1, 127.0.0.8, 127.0.0.0 and ::1");
    let (x2, _x2) = (0..100)
        .find_map(|_| {
            let x = free_port();
            Some((x, TcpListener::bind(("127.0.0.1", x)).ok()?))
        })
        .expect("a free port on 127.0.0.1");
    let (x1, u) = (free_port(), free_port());
    let b: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let lo = |s: &str| s.parse::<IpAddr>().unwrap();
    let call = |op, ip: &str, port| Call {
        op,
        ip: lo(ip),
        port,
    };
    let calls = vec![
        // A 0.0.0.0 destination is 127.0.0.1: the session's loopback, never the host's.
        call("connect4", "0.0.0.0", p),
        call("connect4", "0.0.0.0", x2),
        call("connect6", "::ffff:0.0.0.0", p),
        call("connect6", "::", p),
        call("udp4", "0.0.0.0", u),
        // 127.0.0.0 and 127.255.255.255 belong to no session.
        call("connect4", "127.0.0.0", p),
        call("bind4", "127.0.0.0", b[0]),
        call("bind6", "::ffff:127.0.0.0", b[1]),
        call("bind4", "127.255.255.255", b[2]),
        // A source chosen in ancillary data is checked like a bind.
        call("udp4src=127.0.0.9", "127.0.0.1", u),
        call("udp4src=127.0.0.1", "0.0.0.0", u),
        call("udp4src=127.0.0.8", "127.0.0.1", u),
        call("udp6src=::ffff:127.0.0.9", "::ffff:0.0.0.0", u),
        call("udp6src=::ffff:127.0.0.1", "::ffff:127.0.0.1", u),
        // AF_UNSPEC in sendto is IPv4.
        call("udp4unspec", "127.0.0.9", u),
        call("udp4unspec", "127.0.0.1", u),
    ];
    echo_servers(&["127.0.0.1", "127.0.0.8", "127.0.0.9"], u);
    agree("isolation", &policy_text(x1, x2), &calls);
}

/// Runs `calls` in session 7 under `policy` through the Rewriter, the C ABI and both Linux
/// layers, by a listed program (`probe`) and an unlisted one (`other`), and compares the lines.
fn agree(name: &str, policy: &str, calls: &[Call]) {
    let dir = std::env::temp_dir().join(format!("ipvirt-layers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let engine = Policy::from_toml(policy)
        .unwrap()
        .compile(Host::default())
        .unwrap();
    let args = probe_args(calls);

    for image in ["probe", "other"] {
        let rw = engine.rewriter(
            Session::remote(SessionId::new(SESSION)),
            &engine.process(image),
            None,
        );
        let want = rewriter_lines(&rw, calls);
        eprintln!("{image}:\n{}", want.join("\n"));
        assert_eq!(
            capi_lines(policy, image, calls),
            want,
            "C ABI vs Rewriter ({image})"
        );
        let lib = preload_lib();
        let exe = build_probe(&dir.join("dynamic"), image, false);
        let got = lines(
            in_session(&lib, &policy_path, SESSION, exe.to_str().unwrap())
                .args(&args)
                .output()
                .unwrap(),
        );
        assert_eq!(got, want, "LD_PRELOAD layer vs Rewriter ({image})");

        match kernel_unavailable() {
            // With the per-task cache (the probe's repeated calls are answered from it) and
            // without it (every call does the full lookups).
            None => {
                let exe = build_probe(&dir.join("static"), image, true);
                for cache in ["on", "off"] {
                    let root = format!("ipvirt-test-{}-{name}", std::process::id());
                    let out = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                        .args([
                            "run",
                            "--layer",
                            "kernel",
                            "--kernel-root",
                            &root,
                            "--id",
                            &SESSION.to_string(),
                        ])
                        .arg("--policy")
                        .arg(&policy_path)
                        .arg("--lease-book")
                        .arg(dir.join("leases.json"))
                        .arg("--")
                        .arg(&exe)
                        .args(&args)
                        .env("IPVIRT_KERNEL_TASK_CACHE", cache)
                        .output()
                        .unwrap();
                    let stats = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                        .args(["kernel", "stats", "--root", &root])
                        .output()
                        .unwrap();
                    let detached = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                        .args(["kernel", "detach", "--root", &root])
                        .output()
                        .unwrap();
                    assert!(detached.status.success(), "detach: {detached:?}");
                    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
                    assert!(
                        stats.contains(&format!("per-task cache {cache}")),
                        "{stats}"
                    );
                    assert_eq!(
                        lines(out),
                        want,
                        "kernel layer (per-task cache {cache}) vs Rewriter ({image})"
                    );
                }
            }
            Some(why) => eprintln!("skipped the kernel layer: {why}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 23, item 10: a UDP socket that a layer bound to the session loopback for a `connect`,
/// then disconnected with `connect(AF_UNSPEC)`, is what it would be natively: it shows
/// `0.0.0.0:0`, it can send off the host, and connected again elsewhere it takes that route's
/// source. Run in a network namespace of its own with an off-host route, natively, under the
/// `LD_PRELOAD` layer and in a kernel-layer session; every line must be the native one.
#[test]
fn a_dissolved_udp_association_is_native_in_both_layers() {
    require!("gcc", "unshare", "ip");
    if !ipvirt_testkit::is_root() {
        eprintln!("skipped: a network namespace needs root");
        return;
    }
    const SETUP: &str = "ip link set lo up && ip link add v0 type veth peer name v1 && \
        ip addr add 198.51.100.1/24 dev v0 && ip link set v1 up && ip link set v0 up && \
        exec env ${PRELOAD:+LD_PRELOAD=\"$PRELOAD\"} \"$@\"";
    let dir = std::env::temp_dir().join(format!("ipvirt-layers-{}-dissolved", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy_text(free_port(), free_port())).unwrap();
    let args = ["udp4disc=198.51.100.7", "127.0.0.1", "9000"];
    let in_netns = |exe: &Path| {
        let mut c = Command::new("unshare");
        c.args(["-n", "sh", "-c", SETUP, "sh"]).arg(exe).args(args);
        c
    };
    let exe = build_probe(&dir.join("dynamic"), "probe", false);
    let native = lines(in_netns(&exe).output().unwrap());
    assert!(native[0].contains("send=ok"), "{native:?}");

    let mut preload = in_netns(&exe);
    preload
        .env("PRELOAD", preload_lib())
        .env("IPVIRT_SESSION", SESSION.to_string())
        .env("IPVIRT_POLICY", &policy_path);
    assert_eq!(lines(preload.output().unwrap()), native, "LD_PRELOAD layer");

    match kernel_unavailable() {
        None => {
            let exe = build_probe(&dir.join("static"), "probe", true);
            let root = format!("ipvirt-test-{}-dissolved", std::process::id());
            let out = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                .args(["run", "--layer", "kernel", "--kernel-root", &root])
                .args(["--id", &SESSION.to_string()])
                .arg("--policy")
                .arg(&policy_path)
                .arg("--lease-book")
                .arg(dir.join("leases.json"))
                .args(["--", "unshare", "-n", "sh", "-c", SETUP, "sh"])
                .arg(&exe)
                .args(args)
                .output()
                .unwrap();
            let _ = Command::new(env!("CARGO_BIN_EXE_ipvirt"))
                .args(["kernel", "detach", "--root", &root])
                .output();
            assert_eq!(lines(out), native, "kernel layer");
        }
        Some(why) => eprintln!("skipped the kernel layer: {why}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
