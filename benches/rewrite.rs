//! Every rewrite, hit and miss, against a baseline in the same group: passing the address through
//! unchanged (what a hook without ipvirt would do). Read the results as ratios to the baseline.
//!
//! Run: `cargo bench --bench rewrite`.
//!
//! "hit" = the rule applies and the address changes; "miss" = the call passes through (an address no
//! rule touches, in a process in scope of both features, so every check runs).

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::{Host, Policy, Refusal, Session, SessionId, SockaddrLayout, Stack, write_sockaddr};

const POLICY: &str = r#"
[virtual_loopback]
enabled = true
programs = ["crm.exe"]
excluded_ports = [27000]

[virtual_ip]
enabled = true
mode = "per-program"
programs = ["crm.exe"]
adapter = "192.0.2.0/24"
pool = ["192.0.2.100-192.0.2.199"]
"#;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The baseline: the identity "rewrite" a hook performs without ipvirt.
#[inline]
fn passthrough(a: SocketAddr) -> Result<SocketAddr, Refusal> {
    Ok(a)
}

fn benches(c: &mut Criterion) {
    let engine = Policy::from_toml(POLICY)
        .unwrap()
        .compile(Host::new(["192.0.2.10".parse().unwrap()]))
        .unwrap();
    let plan = engine.process(r"C:\Apps\crm.exe");
    let rw = engine.rewriter(
        Session::remote(SessionId::new(7)),
        &plan,
        Some("192.0.2.107".parse().unwrap()),
    );

    let cases: [(&str, &str, &str); 4] = [
        ("bind", "127.0.0.1:9000", "198.51.100.1:9000"),
        ("connect", "127.0.0.1:9000", "[2001:db8::1]:443"),
        ("send_to", "127.0.0.1:53", "[2001:db8::1]:53"),
        ("reported", "127.0.0.8:9000", "198.51.100.1:9000"),
    ];
    for (name, hit, miss) in cases {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        let (hit, miss) = (sa(hit), sa(miss));
        g.bench_function("baseline_copy", |b| b.iter(|| passthrough(black_box(hit))));
        match name {
            "bind" => {
                g.bench_function("hit", |b| b.iter(|| rw.bind(black_box(hit))));
                g.bench_function("miss", |b| b.iter(|| rw.bind(black_box(miss))));
            }
            "connect" => {
                g.bench_function("hit", |b| b.iter(|| rw.connect(black_box(hit))));
                g.bench_function("miss", |b| b.iter(|| rw.connect(black_box(miss))));
            }
            "send_to" => {
                g.bench_function("hit", |b| b.iter(|| rw.send_to(black_box(hit))));
                g.bench_function("miss", |b| b.iter(|| rw.send_to(black_box(miss))));
            }
            _ => {
                g.bench_function("hit", |b| b.iter(|| rw.reported(black_box(hit))));
                g.bench_function("miss", |b| b.iter(|| rw.reported(black_box(miss))));
            }
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("resolved");
        g.throughput(Throughput::Elements(1));
        let (hit, miss): (IpAddr, IpAddr) = (
            "192.0.2.10".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        g.bench_function("baseline_copy", |b| b.iter(|| black_box(black_box(hit))));
        g.bench_function("hit", |b| b.iter(|| rw.resolved_addr(black_box(hit))));
        g.bench_function("miss", |b| b.iter(|| rw.resolved_addr(black_box(miss))));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("reverse_lookup");
        g.throughput(Throughput::Elements(1));
        let (hit, miss): (IpAddr, IpAddr) = (
            "192.0.2.107".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        g.bench_function("baseline_copy", |b| b.iter(|| black_box(black_box(hit))));
        g.bench_function("hit", |b| b.iter(|| rw.reverse_lookup(black_box(hit))));
        g.bench_function("miss", |b| b.iter(|| rw.reverse_lookup(black_box(miss))));
        g.finish();
    }
    {
        // Raw bytes: the baseline copies the 16-byte sockaddr_in the hook would pass on unchanged.
        let mut g = c.benchmark_group("bind_sockaddr");
        g.throughput(Throughput::Elements(1));
        let layout = SockaddrLayout::LINUX;
        let mut hit = [0u8; 16];
        write_sockaddr(sa("127.0.0.1:9000"), &mut hit, layout).unwrap();
        let mut miss = [0u8; 16];
        write_sockaddr(sa("198.51.100.1:9000"), &mut miss, layout).unwrap();
        g.bench_function("baseline_copy", |b| b.iter(|| black_box(black_box(hit))));
        g.bench_function("hit", |b| {
            b.iter(|| {
                let mut buf = black_box(hit);
                let _ = rw.raw(layout).bind_on(&mut buf, Stack::Single);
                buf
            })
        });
        g.bench_function("miss", |b| {
            b.iter(|| {
                let mut buf = black_box(miss);
                let _ = rw.raw(layout).bind_on(&mut buf, Stack::Single);
                buf
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("connect_sockaddr");
        g.throughput(Throughput::Elements(1));
        let layout = SockaddrLayout::LINUX;
        let mut hit = [0u8; 16];
        write_sockaddr(sa("127.0.0.1:9000"), &mut hit, layout).unwrap();
        let mut miss = [0u8; 28];
        write_sockaddr(sa("[2001:db8::1]:443"), &mut miss, layout).unwrap();
        g.bench_function("baseline_copy", |b| b.iter(|| black_box(black_box(hit))));
        g.bench_function("hit", |b| {
            b.iter(|| {
                let mut buf = black_box(hit);
                let mut src = [0u8; 28];
                let _ = black_box(rw.raw(layout).connect(&mut buf, &mut src));
                (buf, src)
            })
        });
        g.bench_function("miss", |b| {
            b.iter(|| {
                let mut buf = black_box(miss);
                let mut src = [0u8; 28];
                let _ = black_box(rw.raw(layout).connect(&mut buf, &mut src));
                (buf, src)
            })
        });
        g.finish();
    }
}

criterion_group!(rewrite, benches);
criterion_main!(rewrite);
