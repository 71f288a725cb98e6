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
//! Every call family has a group (`bind`, `bind_on` dual stack, `connect`, `send_to`, `reported`,
//! `resolved_addr`, `reverse_lookup`, raw `bind_on` and raw `connect`), and every floor is checked
//! against the `Rewriter` on every input of the batch — results, and bytes for the raw calls —
//! before anything is timed: a floor that answers differently is not a floor.
//!
//! Run: `cargo bench --bench batch`, then `python3 benches/report.py batch_` (ns per address and the
//! ratios to both baselines).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::{
    Connect, Host, Policy, RawConnect, RawError, RawOutcome, Refusal, Session, SessionId,
    SockaddrLayout, Stack, Vip, write_sockaddr,
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
//
// Each decides every input of the batch exactly as the `Rewriter` does (checked in `benches` before
// anything is timed), and is written as a layer author would write it for this one policy.

/// The refusal isolation gives a loopback address `b` that is neither ours nor `127.0.0.1`, on a
/// port that is not excluded (`bind`: `true`).
#[inline(always)]
fn foreign(b: u32, bind: bool) -> Refusal {
    match (b, bind) {
        (0x7F00_0000, true) => Refusal::BindUnowned {
            addr: Ipv4Addr::from_bits(b),
        },
        (0x7F00_0000, false) => Refusal::Unowned {
            addr: Ipv4Addr::from_bits(b),
        },
        (_, true) => Refusal::OtherSession {
            owner: SessionId::new(b - 0x7F00_0001),
        },
        (_, false) => Refusal::Isolated {
            owner: SessionId::new(b - 0x7F00_0001),
        },
    }
}

#[inline(always)]
fn hand_bind(a: SocketAddr) -> Result<SocketAddr, Refusal> {
    match v4_of(&a) {
        Some(LOCALHOST) if a.port() != EXCLUDED => Ok(with(a, LO)),
        Some(0 | SERVER) => Ok(with(a, VIP)),
        Some(b) if b >> 24 == 127 && b != LO && b != LOCALHOST && a.port() != EXCLUDED => {
            Err(foreign(b, true))
        }
        _ => Ok(a),
    }
}

/// `bind` on a dual-stack socket: also `::` takes the VIP.
#[inline(always)]
fn hand_bind_dual(a: SocketAddr) -> Result<SocketAddr, Refusal> {
    match a {
        SocketAddr::V6(v) if v.ip().is_unspecified() => Ok(with(a, VIP)),
        _ => hand_bind(a),
    }
}

/// The implicit source: `bits`, port 0, in the destination's family.
#[inline(always)]
fn src(a: SocketAddr, bits: u32) -> Option<SocketAddr> {
    Some(match a {
        SocketAddr::V4(_) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits(bits), 0)),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::from_bits(bits).to_ipv6_mapped(),
            0,
            0,
            0,
        )),
    })
}

#[inline(always)]
fn hand_connect(a: SocketAddr) -> Result<Connect, Refusal> {
    let Some(b) = v4_of(&a) else {
        return Ok(Connect {
            dest: a,
            source: None,
        });
    };
    let excluded = a.port() == EXCLUDED;
    let dest = match b {
        // `0.0.0.0` is this host: decided as `127.0.0.1`.
        0 | LOCALHOST if !excluded => with(a, LO),
        0 => with(a, LOCALHOST),
        _ if b >> 24 == 127 && b != LO && b != LOCALHOST && !excluded => {
            return Err(foreign(b, false));
        }
        _ => a,
    };
    Ok(Connect {
        dest,
        source: src(a, VIP),
    })
}

#[inline(always)]
fn hand_reported(a: SocketAddr) -> SocketAddr {
    match v4_of(&a) {
        Some(LO) if a.port() != EXCLUDED => with(a, LOCALHOST),
        _ => a,
    }
}

/// `ip` with its IPv4 address (or the one inside `::ffff:a.b.c.d`) replaced by `bits`.
#[inline(always)]
fn with_ip(ip: IpAddr, bits: u32) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits)),
        IpAddr::V6(_) => IpAddr::V6(Ipv4Addr::from_bits(bits).to_ipv6_mapped()),
    }
}

#[inline(always)]
fn v4_of_ip(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v) => Some(v.to_bits()),
        IpAddr::V6(v) => {
            let b = v.to_bits();
            (b >> 32 == 0xFFFF).then_some(b as u32)
        }
    }
}

#[inline(always)]
fn hand_resolved(a: IpAddr) -> IpAddr {
    match v4_of_ip(a) {
        Some(SERVER) => with_ip(a, VIP),
        _ => a,
    }
}

#[inline(always)]
fn hand_reverse(a: IpAddr) -> IpAddr {
    match v4_of_ip(a) {
        Some(VIP) => with_ip(a, SERVER),
        Some(LO) => with_ip(a, LOCALHOST),
        _ => a,
    }
}

/// The IPv4 address in a Linux `sockaddr_in` (family 2) or IPv4-mapped `sockaddr_in6` (family
/// 10), with its offset; `Err(true)`: another IPv6 address, `Err(false)`: another family.
#[inline(always)]
fn raw_v4(buf: &[u8; 28]) -> Result<(usize, u32), bool> {
    let at = match buf[0] {
        2 => 4,
        10 if buf[8..18] == [0; 10] && buf[18..20] == [0xFF, 0xFF] => 20,
        10 => return Err(true),
        _ => return Err(false),
    };
    Ok((
        at,
        u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]),
    ))
}

#[inline(always)]
fn hand_raw_bind(buf: &mut [u8; 28]) -> Result<RawOutcome, RawError> {
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let (at, b) = match raw_v4(buf) {
        Ok(found) => found,
        Err(true) => return Ok(RawOutcome::Unchanged),
        Err(false) => return Ok(RawOutcome::OtherFamily),
    };
    let new = match b {
        LOCALHOST if port != EXCLUDED => LO,
        0 | SERVER => VIP,
        _ if b >> 24 == 127 && b != LO && b != LOCALHOST && port != EXCLUDED => {
            return Err(RawError::Refused(foreign(b, true)));
        }
        _ => return Ok(RawOutcome::Unchanged),
    };
    buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
    Ok(RawOutcome::Rewritten)
}

#[inline(always)]
fn hand_raw_connect(buf: &mut [u8; 28], source: &mut [u8; 28]) -> Result<RawConnect, RawError> {
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let (at, b) = match raw_v4(buf) {
        Ok(found) => found,
        Err(v6) => {
            return Ok(RawConnect {
                dest: if v6 {
                    RawOutcome::Unchanged
                } else {
                    RawOutcome::OtherFamily
                },
                source_len: None,
            });
        }
    };
    let excluded = port == EXCLUDED;
    let new = match b {
        0 | LOCALHOST if !excluded => Some(LO),
        0 => Some(LOCALHOST),
        _ if b >> 24 == 127 && b != LO && b != LOCALHOST && !excluded => {
            return Err(RawError::Refused(foreign(b, false)));
        }
        _ => None,
    };
    // The source: a whole `sockaddr_in` / IPv4-mapped `sockaddr_in6`, port 0.
    let len = if at == 4 {
        *source = [0; 28];
        source[0] = 2;
        source[4..8].copy_from_slice(&VIP.to_be_bytes());
        16
    } else {
        *source = [0; 28];
        source[0] = 10;
        source[18..20].copy_from_slice(&[0xFF, 0xFF]);
        source[20..24].copy_from_slice(&VIP.to_be_bytes());
        28
    };
    let dest = match new {
        Some(n) => {
            buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
            RawOutcome::Rewritten
        }
        None => RawOutcome::Unchanged,
    };
    Ok(RawConnect {
        dest,
        source_len: Some(len),
    })
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
    let layout = SockaddrLayout::LINUX;
    let raw: Vec<[u8; 28]> = batch
        .iter()
        .map(|a| {
            let mut b = [0u8; 28];
            write_sockaddr(*a, &mut b, layout).unwrap();
            b
        })
        .collect();
    // The floors decide as ipvirt does on every input of the batch (checked here, not assumed).
    for (a, r) in batch.iter().zip(&raw) {
        assert_eq!(hand_bind(*a), rw.bind(*a), "bind {a}");
        assert_eq!(
            hand_bind_dual(*a),
            rw.bind_on(*a, Stack::Dual),
            "bind_on dual {a}"
        );
        assert_eq!(hand_connect(*a), rw.connect(*a), "connect {a}");
        assert_eq!(hand_connect(*a), rw.send_to(*a), "send_to {a}");
        assert_eq!(hand_reported(*a), rw.reported(*a), "reported {a}");
        assert_eq!(
            hand_resolved(a.ip()),
            rw.resolved_addr(a.ip()),
            "resolved {a}"
        );
        assert_eq!(
            hand_reverse(a.ip()),
            rw.reverse_lookup(a.ip()),
            "reverse_lookup {a}"
        );
        let (mut mine, mut theirs) = (*r, *r);
        assert_eq!(
            hand_raw_bind(&mut mine),
            rw.raw(layout).bind_on(&mut theirs, Stack::Single),
            "raw bind {a}"
        );
        assert_eq!(mine, theirs, "raw bind bytes {a}");
        let (mut mine, mut theirs) = (*r, *r);
        let (mut mine_src, mut theirs_src) = ([0u8; 28], [0u8; 28]);
        let got = hand_raw_connect(&mut mine, &mut mine_src);
        assert_eq!(
            got,
            rw.raw(layout).connect(&mut theirs, &mut theirs_src),
            "raw connect {a}"
        );
        assert_eq!(mine, theirs, "raw connect bytes {a}");
        if let Ok(RawConnect {
            source_len: Some(n),
            ..
        }) = got
        {
            assert_eq!(mine_src[..n], theirs_src[..n], "raw connect source {a}");
        }
    }

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
    group!("batch_bind_dual", Result<SocketAddr, Refusal>, |a| Ok(*a), |a| hand_bind_dual(*a), |a| rw.bind_on(*a, Stack::Dual));
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
    group!(
        "batch_reverse_lookup",
        IpAddr,
        |a| a.ip(),
        |a| hand_reverse(a.ip()),
        |a| rw.reverse_lookup(a.ip())
    );

    let mut g = c.benchmark_group("batch_raw_bind");
    g.throughput(Throughput::Elements(N as u64));
    let mut work = raw.clone();
    let mut results: Vec<Result<RawOutcome, RawError>> = Vec::with_capacity(N);
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            results.clear();
            results.extend(work.iter().map(|_| Ok(RawOutcome::Unchanged)));
            black_box((&work, &results));
        })
    });
    g.bench_function("floor_handwritten", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            results.clear();
            results.extend(work.iter_mut().map(hand_raw_bind));
            black_box((&work, &results));
        })
    });
    g.bench_function("ipvirt", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            let r = rw.raw(layout);
            results.clear();
            results.extend(work.iter_mut().map(|buf| r.bind_on(buf, Stack::Single)));
            black_box((&work, &results));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("batch_raw_connect");
    g.throughput(Throughput::Elements(N as u64));
    let mut sources = vec![[0u8; 28]; N];
    let mut results: Vec<Result<RawConnect, RawError>> = Vec::with_capacity(N);
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            results.clear();
            results.extend(work.iter().map(|_| {
                Ok(RawConnect {
                    dest: RawOutcome::Unchanged,
                    source_len: None,
                })
            }));
            black_box((&work, &results));
        })
    });
    g.bench_function("floor_handwritten", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            results.clear();
            results.extend(
                work.iter_mut()
                    .zip(&mut sources)
                    .map(|(d, s)| hand_raw_connect(d, s)),
            );
            black_box((&work, &sources, &results));
        })
    });
    g.bench_function("ipvirt", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&raw));
            let r = rw.raw(layout);
            results.clear();
            results.extend(
                work.iter_mut()
                    .zip(&mut sources)
                    .map(|(d, s)| r.connect(d, s)),
            );
            black_box((&work, &sources, &results));
        })
    });
    g.finish();
}

criterion_group!(batch_benches, benches);
criterion_main!(batch_benches);
