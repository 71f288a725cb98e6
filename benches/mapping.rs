//! The session ⇄ loopback mapping against a plain `u32 → Ipv4Addr` conversion of the same batch.
//!
//! Run: `cargo bench --bench mapping`. The `baseline` entry of each group is the cost of producing
//! an address at all; the ratio `loopback / baseline` is the price of the mapping itself.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::SessionId;

const BATCH: u32 = 1024;

fn ids() -> Vec<u32> {
    // Spread over the whole range, including both ends, so no value is special-cased by the optimiser.
    (0..BATCH)
        .map(|i| i.wrapping_mul(16_381) % (SessionId::MAX.get() + 1))
        .collect()
}

fn to_loopback(c: &mut Criterion) {
    let ids = ids();
    let mut group = c.benchmark_group("session_to_loopback");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.bench_function("baseline_ipv4_from_u32", |b| {
        b.iter(|| {
            for &id in black_box(&ids) {
                black_box(Ipv4Addr::from(0x7F00_0000 | id));
            }
        })
    });
    group.bench_function("loopback", |b| {
        b.iter(|| {
            for &id in black_box(&ids) {
                let _ = black_box(SessionId::new(id).loopback());
            }
        })
    });
    group.finish();
}

fn from_loopback(c: &mut Criterion) {
    let addrs: Vec<Ipv4Addr> = ids()
        .into_iter()
        .filter_map(|id| SessionId::new(id).loopback().ok())
        .collect();
    let mut group = c.benchmark_group("loopback_to_session");
    group.throughput(Throughput::Elements(addrs.len() as u64));
    group.bench_function("baseline_u32_from_ipv4", |b| {
        b.iter(|| {
            for &a in black_box(&addrs) {
                black_box(u32::from(a));
            }
        })
    });
    group.bench_function("from_loopback", |b| {
        b.iter(|| {
            for &a in black_box(&addrs) {
                black_box(SessionId::from_loopback(a));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, to_loopback, from_loopback);
criterion_main!(benches);
