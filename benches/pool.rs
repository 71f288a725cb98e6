//! VIP pool: one lease + release on a pool that already has 1 000 or 1 000 000 live leases, against
//! a baseline in the same group (insert + remove in a `HashMap<SessionId, Ipv4Addr>` of the same
//! size: the least bookkeeping any lease table does). The cost should not grow with the live leases.
//!
//! It also prints the memory of a 10.0.0.0/8 pool (16 777 214 addresses).
//!
//! Run: `cargo bench --bench pool`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::{Host, SessionId, StaticPool};

fn bench(c: &mut Criterion) {
    let slash8 = StaticPool::new(&["10.0.0.0/8".parse().unwrap()], &Host::default()).unwrap();
    let bytes = slash8.memory_bytes();
    println!(
        "memory of a 10.0.0.0/8 pool: {bytes} bytes for {} addresses = {:.3} bytes/address",
        slash8.size(),
        bytes as f64 / f64::from(slash8.size())
    );
    drop(slash8);
    let empty = bytes;

    let mut g = c.benchmark_group("lease_release");
    g.throughput(Throughput::Elements(1));
    for live in [1_000u32, 1_000_000] {
        let mut pool = StaticPool::new(&["10.0.0.0/8".parse().unwrap()], &Host::default()).unwrap();
        let mut map: HashMap<SessionId, Ipv4Addr> = HashMap::new();
        for s in 0..live {
            let a = pool.lease(SessionId::new(s)).unwrap().addr();
            map.insert(SessionId::new(s), a);
        }
        let bytes = pool.memory_bytes();
        println!(
            "  with {live} live leases: {bytes} bytes ({:.1} bytes per live lease over the empty pool)",
            (bytes as f64 - empty as f64) / f64::from(live)
        );
        let probe = SessionId::new(live + 1);
        g.bench_with_input(BenchmarkId::new("baseline_hashmap", live), &live, |b, _| {
            b.iter(|| {
                map.insert(black_box(probe), Ipv4Addr::new(10, 0, 0, 1));
                black_box(map.remove(&probe))
            })
        });
        g.bench_with_input(BenchmarkId::new("pool", live), &live, |b, _| {
            b.iter(|| {
                let a = pool.lease(black_box(probe));
                black_box(a.ok());
                black_box(pool.release(probe))
            })
        });
    }
    g.finish();
}

criterion_group!(pool, bench);
criterion_main!(pool);
