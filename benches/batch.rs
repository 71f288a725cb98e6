//! Rewrites on a realistic batch: 4 096 addresses mixing every rule's hit and miss — the localhost
//! address on ordinary and excluded ports, `0.0.0.0`, the server's address, external addresses, the
//! session's own and another session's loopback, IPv4-mapped forms of all of them, `::1`, `::` and
//! other IPv6 addresses — in a fixed shuffled order, so the branch predictor cannot learn one
//! answer. Each group measures, in the same run:
//!
//! - `baseline_copy`: copying the batch's results without deciding anything (what a hook without
//!   ipvirt pays),
//! - `floor_handwritten`: a minimal hand-written version of the same rule (the ten lines a layer
//!   author would write for this one policy, session and process),
//! - `ipvirt`: the `Rewriter` call.
//!
//! Run: `cargo bench --bench batch`, then `python3 benches/report.py batch_` (ns per address and the
//! ratios to both baselines).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::{
    Connect, Host, Policy, Refusal, Session, SessionId, SockaddrLayout, Stack, Vip, write_sockaddr,
};

const POLICY: &str = r#"
[virtual_loopback]
enabled = true
programs = ["crm.exe"]
excluded_ports = [27000]
isolate = true

[virtual_ip]
enabled = true
mode = "per-program"
programs = ["crm.exe"]
adapter = "192.0.2.0/24"
pool = ["192.0.2.100-192.0.2.199"]
"#;

const N: usize = 4096;
const LOCALHOST: u32 = 0x7F00_0001;
const LO: u32 = 0x7F00_0008; // session 7
const SERVER: u32 = 0xC000_020A;
const VIP: u32 = 0xC000_026B;
const EXCLUDED: u16 = 27000;

/// The batch: a deterministic mix, shuffled with xorshift.
fn batch() -> Vec<SocketAddr> {
    let v4 =
        |bits: u32, port: u16| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits(bits), port));
    let mapped = |bits: u32, port: u16| {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::from_bits(bits).to_ipv6_mapped(),
            port,
            0,
            0,
        ))
    };
    let kinds: [&dyn Fn(u16) -> SocketAddr; 14] = [
        &|p| v4(LOCALHOST, p),
        &|_| v4(LOCALHOST, EXCLUDED),
        &|p| v4(0, p),
        &|p| v4(SERVER, p),
        &|p| v4(0xC633_6400 | u32::from(p & 0xFF), p),
        &|p| v4(LO, p),
        &|p| v4(0x7F00_0009, p),
        &|p| mapped(LOCALHOST, p),
        &|p| mapped(0, p),
        &|p| mapped(0xCB00_7100 | u32::from(p & 0xFF), p),
        &|p| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, p, 0, 0)),
        &|p| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, p, 0, 0)),
        &|p| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, p),
                p,
                0,
                0,
            ))
        },
        &|p| v4(0x0A00_0000 | u32::from(p), p),
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..N)
        .map(|_| {
            let r = next();
            kinds[(r % kinds.len() as u64) as usize](1024 + (r >> 32) as u16 % 4000)
        })
        .collect()
}

/// The IPv4 address an address stands for (itself or the one inside `::ffff:a.b.c.d`).
#[inline(always)]
fn v4_of(a: &SocketAddr) -> Option<u32> {
    match a {
        SocketAddr::V4(v) => Some(v.ip().to_bits()),
        SocketAddr::V6(v) => {
            let b = v.ip().to_bits();
            (b >> 32 == 0xFFFF).then_some(b as u32)
        }
    }
}

#[inline(always)]
fn with(a: SocketAddr, bits: u32) -> SocketAddr {
    match a {
        SocketAddr::V4(v) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits(bits), v.port())),
        SocketAddr::V6(v) => SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::from_bits(bits).to_ipv6_mapped(),
            v.port(),
            v.flowinfo(),
            v.scope_id(),
        )),
    }
}

// ---- the hand-written floors: this policy, session 7, crm.exe, VIP .107, isolation on ----------

#[inline(always)]
fn hand_bind(a: SocketAddr) -> Result<SocketAddr, Refusal> {
    match v4_of(&a) {
        Some(LOCALHOST) if a.port() != EXCLUDED => Ok(with(a, LO)),
        Some(0 | SERVER) => Ok(with(a, VIP)),
        Some(b)
            if b >> 24 == 127
                && b != LO
                && b != LOCALHOST
                && b != 0x7F00_0000
                && a.port() != EXCLUDED =>
        {
            Err(Refusal::OtherSession {
                owner: SessionId::new(b - 0x7F00_0001),
            })
        }
        _ => Ok(a),
    }
}

#[inline(always)]
fn hand_connect(a: SocketAddr) -> Result<Connect, Refusal> {
    let src = |bits| {
        Some(with(a, bits)).map(|mut s| {
            s.set_port(0);
            s
        })
    };
    match v4_of(&a) {
        Some(LOCALHOST) if a.port() != EXCLUDED => Ok(Connect {
            dest: with(a, LO),
            source: src(VIP),
        }),
        Some(b)
            if b >> 24 == 127
                && b != LO
                && b != LOCALHOST
                && b != 0x7F00_0000
                && a.port() != EXCLUDED =>
        {
            Err(Refusal::Isolated {
                owner: SessionId::new(b - 0x7F00_0001),
            })
        }
        Some(_) => Ok(Connect {
            dest: a,
            source: src(VIP),
        }),
        None => Ok(Connect {
            dest: a,
            source: None,
        }),
    }
}

#[inline(always)]
fn hand_reported(a: SocketAddr) -> SocketAddr {
    match v4_of(&a) {
        Some(LO) if a.port() != EXCLUDED => with(a, LOCALHOST),
        _ => a,
    }
}

#[inline(always)]
fn hand_resolved(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(v) if v.to_bits() == SERVER => IpAddr::V4(Ipv4Addr::from_bits(VIP)),
        IpAddr::V6(v) if v.to_ipv4_mapped().is_some_and(|m| m.to_bits() == SERVER) => {
            IpAddr::V6(Ipv4Addr::from_bits(VIP).to_ipv6_mapped())
        }
        _ => a,
    }
}

#[inline(always)]
fn hand_raw_bind(buf: &mut [u8; 28]) {
    // sockaddr_in (family 2) or sockaddr_in6 (family 10, little-endian Linux).
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let at = match buf[0] {
        2 => 4,
        10 if buf[8..18] == [0; 10] && buf[18..20] == [0xFF, 0xFF] => 20,
        _ => return,
    };
    let b = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let new = match b {
        LOCALHOST if port != EXCLUDED => LO,
        0 | SERVER => VIP,
        _ => return,
    };
    buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
}

fn benches(c: &mut Criterion) {
    let engine = Policy::from_toml(POLICY)
        .unwrap()
        .compile(Host::new([IpAddr::V4(Ipv4Addr::from_bits(SERVER))]))
        .unwrap();
    let plan = engine.process(r"C:\Apps\crm.exe");
    let vip = Vip::new(Ipv4Addr::from_bits(VIP)).unwrap();
    let rw = engine.rewriter(Session::remote(SessionId::new(7)), &plan, Some(vip));
    let batch = batch();
    // The floors decide as ipvirt does on this batch (checked here, not assumed).
    for a in &batch {
        assert_eq!(hand_bind(*a), rw.bind(*a), "bind {a}");
        assert_eq!(hand_connect(*a), rw.connect(*a), "connect {a}");
        assert_eq!(hand_reported(*a), rw.reported(*a), "reported {a}");
        assert_eq!(
            hand_resolved(a.ip()),
            rw.resolved_addr(a.ip()),
            "resolved {a}"
        );
    }
    let ips: Vec<IpAddr> = batch.iter().map(SocketAddr::ip).collect();
    let layout = SockaddrLayout::LINUX;
    let raw: Vec<[u8; 28]> = batch
        .iter()
        .map(|a| {
            let mut b = [0u8; 28];
            write_sockaddr(*a, &mut b, layout).unwrap();
            b
        })
        .collect();

    macro_rules! group {
        ($name:literal, $out:ty, $copy:expr, $floor:expr, $ipvirt:expr) => {{
            let mut g = c.benchmark_group($name);
            g.throughput(Throughput::Elements(N as u64));
            let mut out: Vec<$out> = Vec::with_capacity(N);
            g.bench_function("baseline_copy", |b| {
                b.iter(|| {
                    out.clear();
                    out.extend(black_box(&batch).iter().map($copy));
                    black_box(&out);
                })
            });
            g.bench_function("floor_handwritten", |b| {
                b.iter(|| {
                    out.clear();
                    out.extend(black_box(&batch).iter().map($floor));
                    black_box(&out);
                })
            });
            g.bench_function("ipvirt", |b| {
                b.iter(|| {
                    out.clear();
                    out.extend(black_box(&batch).iter().map($ipvirt));
                    black_box(&out);
                })
            });
            g.finish();
        }};
    }
    group!("batch_bind", Result<SocketAddr, Refusal>, |a| Ok(*a), |a| hand_bind(*a), |a| rw.bind(*a));
    group!("batch_connect", Result<Connect, Refusal>, |a| Ok(Connect { dest: *a, source: None }), |a| hand_connect(*a), |a| rw.connect(*a));
    group!("batch_send_to", Result<Connect, Refusal>, |a| Ok(Connect { dest: *a, source: None }), |a| hand_connect(*a), |a| rw.send_to(*a));
    group!(
        "batch_reported",
        SocketAddr,
        |a| *a,
        |a| hand_reported(*a),
        |a| rw.reported(*a)
    );
    group!(
        "batch_resolved",
        IpAddr,
        |a| a.ip(),
        |a| hand_resolved(a.ip()),
        |a| rw.resolved_addr(a.ip())
    );
    let _ = &ips;

    let mut g = c.benchmark_group("batch_raw_bind");
    g.throughput(Throughput::Elements(N as u64));
    let mut work = raw.clone();
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            black_box(&work);
        })
    });
    g.bench_function("floor_handwritten", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            for buf in &mut work {
                hand_raw_bind(buf);
            }
            black_box(&work);
        })
    });
    g.bench_function("ipvirt", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            let r = rw.raw(layout);
            for buf in &mut work {
                let _ = r.bind_on(buf, Stack::Single);
            }
            black_box(&work);
        })
    });
    g.finish();
}

criterion_group!(batch_benches, benches);
criterion_main!(batch_benches);
