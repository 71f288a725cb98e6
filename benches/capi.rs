//! The C ABI's per-call cost: a rewriter built once and stored in its handle (ipvirt 0.2), against
//! building one for every call (what the 0.1 handle did inside every call, and what a hook without a
//! stored rewriter pays), both through the exported C functions on the same 4 096-address batch of
//! raw `sockaddr_in`/`sockaddr_in6` bytes, with a plain copy of the batch as the baseline.
//!
//! Run: `cargo bench --features capi --bench capi`, then `python3 benches/report.py capi_`.

// The C functions take raw pointers.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipvirt::capi::{
    ipvirt_engine, ipvirt_engine_free, ipvirt_engine_new, ipvirt_engine_process, ipvirt_plan,
    ipvirt_rewriter, ipvirt_rewriter_bind, ipvirt_rewriter_free, ipvirt_rewriter_new,
};
use ipvirt::{SockaddrLayout, write_sockaddr};

const POLICY: &str = "[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\nexcluded_ports = [27000]\n\
[virtual_ip]\nenabled = true\nprograms = [\"crm.exe\"]\nadapter = \"192.0.2.0/24\"\n";
const N: usize = 4096;

fn batch() -> Vec<[u8; 28]> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..N)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = 1024 + (x >> 40) as u16 % 4000;
            let a = match x % 6 {
                0 => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
                1 => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
                2 => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), port)),
                3 => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), port)),
                4 => SocketAddr::V6(SocketAddrV6::new(
                    Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
                    port,
                    0,
                    0,
                )),
                _ => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0)),
            };
            let mut b = [0u8; 28];
            write_sockaddr(a, &mut b, SockaddrLayout::LINUX).unwrap();
            b
        })
        .collect()
}

fn len_of(b: &[u8; 28]) -> usize {
    if b[0] == 2 { 16 } else { 28 }
}

fn benches(c: &mut Criterion) {
    let servers = [192u8, 0, 2, 10];
    let vip = [192u8, 0, 2, 107];
    let mut engine: *mut ipvirt_engine = ptr::null_mut();
    let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::uninit();
    let mut rw: *mut ipvirt_rewriter = ptr::null_mut();
    // SAFETY: valid buffers and out-pointers, as the header requires.
    unsafe {
        assert_eq!(
            ipvirt_engine_new(
                POLICY.as_ptr(),
                POLICY.len(),
                servers.as_ptr(),
                4,
                &mut engine,
                ptr::null_mut(),
                0,
                ptr::null_mut()
            ) as u32,
            0
        );
        assert_eq!(
            ipvirt_engine_process(engine, b"crm.exe".as_ptr(), 7, plan.as_mut_ptr()) as u32,
            0
        );
    }
    // SAFETY: written by ipvirt_engine_process above.
    let plan = unsafe { plan.assume_init() };
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            ipvirt_rewriter_new(engine, 7, 0, &plan, vip.as_ptr(), 4, &mut rw) as u32,
            0
        )
    };
    let batch = batch();
    let mut work = batch.clone();
    let mut g = c.benchmark_group("capi_bind");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&batch));
            black_box(&work);
        })
    });
    g.bench_function("stored_rewriter", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&batch));
            let mut changed = 0u32;
            for buf in &mut work {
                let n = len_of(buf);
                // SAFETY: rw is live; buf holds n bytes; changed is outside it.
                let _ =
                    unsafe { ipvirt_rewriter_bind(rw, buf.as_mut_ptr(), n, 1, 0, &mut changed) };
            }
            black_box(&work);
        })
    });
    g.bench_function("rebuilt_per_call", |b| {
        b.iter(|| {
            work.copy_from_slice(black_box(&batch));
            let mut changed = 0u32;
            for buf in &mut work {
                let n = len_of(buf);
                let mut one: *mut ipvirt_rewriter = ptr::null_mut();
                // SAFETY: engine and plan are live; the rewriter is freed right after its call.
                unsafe {
                    let _ = ipvirt_rewriter_new(engine, 7, 0, &plan, vip.as_ptr(), 4, &mut one);
                    let _ = ipvirt_rewriter_bind(one, buf.as_mut_ptr(), n, 1, 0, &mut changed);
                    ipvirt_rewriter_free(one);
                }
            }
            black_box(&work);
        })
    });
    g.finish();
    // SAFETY: each handle freed once.
    unsafe {
        ipvirt_rewriter_free(rw);
        ipvirt_engine_free(engine);
    }
}

criterion_group!(capi_benches, benches);
criterion_main!(capi_benches);
