//! The kernel layer's decisions (`examples/kernel/bpf/rules.h`, the C the BPF object is built from)
//! against the library's `table::reference` evaluator, and the committed BPF object against its
//! source.
//!
//! `rules_h_matches_the_reference` compiles rules.h natively with a small driver
//! (`tests/c/rules_check.c`) and feeds it 150 000 generated cases: random policy tables
//! (isolation, the IPv6 mapping, localhost, server addresses, excluded ports), session entries
//! (virtualized or not, with or without a VIP, "no connectivity", no loopback) and program entries,
//! with addresses drawn from the values the rules care about (localhost, the session's and other
//! sessions' loopback addresses, the VIP, the servers, `0.0.0.0`, `::1`, `::`, IPv4-mapped ones).
//! Each case's answer must be the reference's, refusals included.

use ipvirt_testkit::require;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipvirt::Stack;
use ipvirt::table::{self, PolicyTable, ProgramEntry, SessionEntry, reference};

const KIND_V4: u32 = 0;
const KIND_MAPPED: u32 = 1;
const KIND_LOOP6: u32 = 2;
const KIND_ANY6: u32 = 3;
const KIND_OTHER6: u32 = 4;

/// splitmix64: a small deterministic generator (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Policy {
    table: PolicyTable,
    excluded: Vec<u16>,
}

fn random_policy(rng: &mut Rng) -> Policy {
    let mut t = PolicyTable::new();
    if rng.chance(50) {
        t.flags |= table::POLICY_ISOLATE;
    }
    if rng.chance(50) {
        t.flags |= table::POLICY_IPV6_MAP;
    }
    if rng.chance(15) {
        t.localhost = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    }
    let n = rng.below(5) as usize;
    let mut servers: Vec<u32> = (0..n)
        .map(|_| u32::from(Ipv4Addr::new(192, 0, 2, rng.below(20) as u8 + 1)))
        .collect();
    servers.sort_unstable();
    servers.dedup();
    for (i, s) in servers.iter().enumerate() {
        t.servers[i] = *s;
    }
    t.server_count = servers.len() as u32;
    t.primary_server = servers.first().copied().unwrap_or(0);
    let mut excluded = Vec::new();
    for _ in 0..rng.below(4) {
        let p = rng.pick(&[80u16, 443, 8080, 27000, 0, 65535, 1234]);
        t.excluded_ports[usize::from(p >> 6)] |= 1 << (p & 63);
        excluded.push(p);
    }
    Policy { table: t, excluded }
}

fn random_session(rng: &mut Rng) -> SessionEntry {
    let id = rng.pick(&[0u32, 1, 7, 8, 300, 16_777_214, 16_777_215]);
    let virtualized = rng.chance(85);
    let mut flags = 0;
    let mut loopback = 0;
    if virtualized {
        flags |= table::SESSION_VIRTUALIZED;
        if id <= 16_777_214 && !rng.chance(5) {
            loopback = 0x7F00_0001 + id;
        } else {
            flags |= table::SESSION_NO_LOOPBACK;
        }
    }
    let vip = if rng.chance(55) {
        u32::from(Ipv4Addr::new(192, 0, 2, 100 + rng.below(5) as u8))
    } else {
        0
    };
    if vip == 0 && rng.chance(50) {
        flags |= table::SESSION_NO_CONNECTIVITY;
    }
    SessionEntry {
        session: id,
        loopback,
        vip,
        flags,
    }
}

/// An address as (kind, IPv4) plus the `SocketAddr` the reference takes.
fn random_addr(rng: &mut Rng, p: &Policy, s: &SessionEntry) -> (u32, u32) {
    let interesting = [
        p.table.localhost,
        0x7F00_0001,
        s.loopback,
        0x7F00_0009,
        0x7F00_0008,
        0x7F00_0000,
        0x7FFF_FFFF,
        0x7F12_3456,
        s.vip,
        u32::from(Ipv4Addr::new(192, 0, 2, 101)),
        p.table.servers[0],
        p.table.servers[1],
        0,
        u32::from(Ipv4Addr::new(198, 51, 100, 7)),
        u32::from(Ipv4Addr::new(10, 1, 2, 3)),
    ];
    let kind = rng.pick(&[
        KIND_V4,
        KIND_V4,
        KIND_V4,
        KIND_MAPPED,
        KIND_MAPPED,
        KIND_LOOP6,
        KIND_ANY6,
        KIND_OTHER6,
    ]);
    let ip = match kind {
        KIND_V4 | KIND_MAPPED => rng.pick(&interesting),
        _ => 0,
    };
    (kind, ip)
}

fn socket_addr(kind: u32, ip: u32, port: u16) -> SocketAddr {
    let v4 = Ipv4Addr::from_bits(ip);
    match kind {
        KIND_V4 => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        KIND_MAPPED => SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), port, 0, 0)),
        KIND_LOOP6 => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0)),
        KIND_ANY6 => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        _ => SocketAddr::V6(SocketAddrV6::new(
            "2001:db8::1".parse().unwrap(),
            port,
            0,
            0,
        )),
    }
}

/// The (kind, IPv4) the C side prints for a `SocketAddr`.
fn kind_of(addr: SocketAddr) -> (u32, u32) {
    match addr.ip() {
        IpAddr::V4(a) => (KIND_V4, a.to_bits()),
        IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => (KIND_LOOP6, 0),
        IpAddr::V6(a) if a == Ipv6Addr::UNSPECIFIED => (KIND_ANY6, 0),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (KIND_MAPPED, v4.to_bits()),
            None => (KIND_OTHER6, 0),
        },
    }
}

fn build_checker() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let core = root.join("../..");
    let out = std::env::temp_dir().join(format!("ipvirt-rules-check-{}", std::process::id()));
    let ok = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(core.join("src"))
        .arg("-I")
        .arg(root.join("bpf"))
        .arg(root.join("tests/c/rules_check.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("gcc runs");
    assert!(ok.success(), "rules_check.c must compile with -Werror");
    Some(out)
}

#[test]
fn rules_h_matches_the_reference() {
    require!("gcc");
    let checker = build_checker().unwrap();
    let seed: u64 = std::env::var("IPVIRT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1BF_2026);
    let mut rng = Rng(seed);
    let mut input = String::new();
    let mut expected: Vec<(String, String)> = Vec::new();
    const POLICIES: usize = 300;
    const CASES: usize = 500;
    for _ in 0..POLICIES {
        let p = random_policy(&mut rng);
        let servers: Vec<String> = p.table.servers().iter().map(u32::to_string).collect();
        let ports: Vec<String> = p.excluded.iter().map(u16::to_string).collect();
        input += &format!(
            "P {} {} {} {} {} {} {}\n",
            p.table.flags,
            p.table.localhost,
            p.table.primary_server,
            servers.len(),
            servers.join(" "),
            ports.len(),
            ports.join(" ")
        );
        for _ in 0..CASES {
            let s = random_session(&mut rng);
            let prog = ProgramEntry {
                flags: rng.below(8) as u32,
            };
            let t = reference::Tables {
                policy: &p.table,
                session: s,
                program: prog,
            };
            let (kind, ip) = random_addr(&mut rng, &p, &s);
            let port = rng.pick(&[80u16, 443, 8080, 27000, 0, 65535, 1234, 9000]);
            let addr = socket_addr(kind, ip, port);
            let head = format!(
                "{} {} {} {} {} {kind} {ip} {port}",
                s.session, s.loopback, s.vip, s.flags, prog.flags
            );
            match rng.below(3) {
                0 => {
                    // bind: an AF_INET socket, or an AF_INET6 one, dual-stack or v6-only.
                    let dual = kind != KIND_V4 && rng.chance(70);
                    let stack = if dual { Stack::Dual } else { Stack::Single };
                    let want = match reference::bind(&t, addr, stack) {
                        Ok(a) => {
                            let (k, i) = kind_of(a);
                            format!("ok {k} {i}")
                        }
                        Err(r) => format!("err {}", r.errno()),
                    };
                    let line = format!("B {head} {}\n", u32::from(dual));
                    expected.push((line.clone(), want));
                    input += &line;
                }
                1 => {
                    let want = match reference::connect(&t, addr) {
                        Ok(c) => {
                            let (k, i) = kind_of(c.dest);
                            let src = c.source.map_or(0, |s| kind_of(s).1);
                            format!("ok {k} {i} {src}")
                        }
                        Err(r) => format!("err {}", r.errno()),
                    };
                    let line = format!("C {head}\n");
                    expected.push((line.clone(), want));
                    input += &line;
                }
                _ => {
                    let (k, i) = kind_of(reference::reported(&t, addr));
                    let line = format!("R {head}\n");
                    expected.push((line.clone(), format!("ok {k} {i}")));
                    input += &line;
                }
            }
        }
    }
    let mut child = Command::new(&checker)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let _ = std::fs::remove_file(&checker);
    assert!(out.status.success(), "rules_check failed: {:?}", out.status);
    let got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(got.len(), expected.len(), "one answer per case");
    let mut wrong = Vec::new();
    for ((case, want), got) in expected.iter().zip(&got) {
        if want != got {
            wrong.push(format!(
                "{}  reference: {want}  rules.h: {got}",
                case.trim()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "seed {seed}: {} of {} cases differ; first ones:\n{}",
        wrong.len(),
        expected.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert_eq!(expected.len(), POLICIES * CASES);
}

#[test]
fn committed_object_matches_its_source() {
    require!("clang", "gcc");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("ipvirt-bpf-{}.o", std::process::id()));
    let status = Command::new(root.join("bpf/build.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "bpf/build.sh failed");
    let built = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read(root.join("bpf/ipvirt.bpf.o")).unwrap();
    assert!(
        built == committed,
        "examples/kernel/bpf/ipvirt.bpf.o is not the object its source builds: run \
         examples/kernel/bpf/build.sh and commit the object"
    );
}
