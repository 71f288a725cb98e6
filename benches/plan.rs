//! `Engine::process` (the once-per-process plan lookup) with 10, 1 000 and 100 000 listed programs,
//! against a baseline in the same group: folding the image name, the floor any case-insensitive
//! lookup pays. The lookup is a hash probe, so the time should not grow with the list.
//!
//! The `startup` group measures what a layer does once per process before `main`: read, parse and
//! compile the policy, plan the process, build its rewriter.
//!
//! Run: `cargo bench --bench plan`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::{Host, Policy, fold_program_name};

fn policy_with(n: usize) -> Policy {
    let programs: Vec<String> = (0..n).map(|i| format!("app{i:06}.exe")).collect();
    let mut p = Policy::default();
    p.virtual_loopback.enabled = true;
    p.virtual_loopback.programs = programs.clone();
    p.virtual_ip.enabled = true;
    p.virtual_ip.adapter = Some("192.0.2.0/24".parse().unwrap());
    p.virtual_ip.programs = programs.clone();
    p.prefer_loopback.enabled = true;
    p.prefer_loopback.processes = programs;
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_plan");
    g.throughput(Throughput::Elements(1));
    // A listed program (the last one) given by full path, and an unlisted one.
    let image = |n: usize| format!(r"C:\Program Files\Vendor\APP{:06}.EXE", n - 1);
    g.bench_function("baseline_fold_name", |b| {
        let img = image(10);
        b.iter(|| fold_program_name(black_box(&img)))
    });
    for n in [10usize, 1_000, 100_000] {
        let engine = policy_with(n).compile(Host::default()).unwrap();
        let hit = image(n);
        assert!(engine.process(&hit).loopback().applies());
        g.bench_with_input(BenchmarkId::new("listed", n), &hit, |b, img| {
            b.iter(|| engine.process(black_box(img)))
        });
        let miss = r"C:\Windows\System32\notepad.exe".to_string();
        g.bench_with_input(BenchmarkId::new("unlisted", n), &miss, |b, img| {
            b.iter(|| engine.process(black_box(img)))
        });
    }
    g.finish();

    // What the LD_PRELOAD layer does before `main` in every process of a session: read the policy
    // file, parse it, compile it, plan the process and build its rewriter. Baseline: reading the
    // file alone.
    let mut g = c.benchmark_group("startup");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/crm-cti.toml"
    );
    g.bench_function("baseline_read_file", |b| {
        b.iter(|| std::fs::read_to_string(black_box(path)).unwrap())
    });
    g.bench_function("read_parse_compile_plan_rewriter", |b| {
        b.iter(|| {
            let text = std::fs::read_to_string(black_box(path)).unwrap();
            let engine = Policy::from_toml(&text)
                .unwrap()
                .compile(Host::new(["192.0.2.10".parse().unwrap()]))
                .unwrap();
            let plan = engine.process("/usr/bin/crm.exe");
            engine.rewriter(
                ipvirt::Session::remote(ipvirt::SessionId::new(7)),
                &plan,
                None,
            )
        })
    });
    g.finish();
}

criterion_group!(plan, bench);
criterion_main!(plan);
