//! The hot path allocates nothing: every `Rewriter` method, every raw `sockaddr` function, and the
//! session mapping, run under a counting global allocator.
//!
//! The allocator counts only on a thread that has armed it, so the test harness's own threads do
//! not disturb the count.

// A global allocator is unsafe to implement; this file is the one test that needs it.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use common::{VIP, engine, sa};
use ipvirt::{Session, SessionId, SockaddrLayout, Stack, read_sockaddr, write_sockaddr};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: the caller upholds GlobalAlloc's contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn the_counter_counts() {
    // Guard against a test that cannot fail: an allocation is seen.
    assert!(allocations_in(|| drop(black_box(vec![1u8; 32]))) >= 1);
}

#[test]
fn hot_path_allocates_nothing() {
    let e = engine(true, "no-connectivity");
    let images = ["crm.exe", "pref.exe", "lo.exe", "vipo.exe", "notepad.exe"];
    let plans: Vec<_> = images.iter().map(|i| e.process(i)).collect();
    let sessions = [
        Session::remote(SessionId::new(7)),
        Session::console(SessionId::new(7)),
        Session::remote(SessionId::new(0)),
    ];
    let addrs: Vec<SocketAddr> = [
        "127.0.0.1:9000",
        "127.0.0.1:27000",
        "127.0.0.8:9000",
        "127.0.0.9:9000",
        "0.0.0.0:9000",
        "192.0.2.10:9000",
        "192.0.2.107:9000",
        "198.51.100.1:443",
        "[::ffff:127.0.0.1]:9000",
        "[::ffff:0.0.0.0]:80",
        "[::]:80",
        "[::1]:80",
        "[2001:db8::1]:443",
    ]
    .iter()
    .map(|s| sa(s))
    .collect();
    let mut rewriters = Vec::new();
    for s in sessions {
        for p in &plans {
            for vip in [None, Some(VIP)] {
                rewriters.push(e.rewriter(s, p, vip));
            }
        }
    }
    let layouts = [
        SockaddrLayout::LINUX,
        SockaddrLayout::WINDOWS,
        SockaddrLayout::MACOS,
    ];
    let mut raw: Vec<(SockaddrLayout, [u8; 128], usize)> = Vec::new();
    for l in layouts {
        for a in &addrs {
            let mut b = [0u8; 128];
            let n = write_sockaddr(*a, &mut b, l).unwrap();
            raw.push((l, b, n));
        }
    }
    let mut ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();

    let n = allocations_in(|| {
        for rw in &rewriters {
            for &a in &addrs {
                let _ = black_box(rw.bind(a));
                let _ = black_box(rw.bind_on(a, Stack::Dual));
                let _ = black_box(rw.connect(a));
                let _ = black_box(rw.send_to(a));
                black_box(rw.reported(a));
                black_box(rw.resolved_addr(a.ip()));
                black_box(rw.reverse_lookup(a.ip()));
                let _ = black_box(rw.explain(ipvirt::Call::Connect, a).rule());
            }
            black_box(rw.resolved(&mut ips));
            for (l, b, n) in &raw {
                let mut buf = *b;
                let mut src = [0u8; 128];
                let _ = black_box(read_sockaddr(&buf[..*n], *l));
                let raw = rw.raw(*l);
                let _ = black_box(raw.bind_on(&mut buf[..*n], Stack::Single));
                let _ = black_box(raw.connect(&mut buf[..*n], &mut src));
                let _ = black_box(raw.send_to(&mut buf[..*n], &mut src));
                let _ = black_box(raw.reported(&mut buf[..*n]));
                let _ = black_box(raw.resolved(&mut buf[..*n]));
                let _ = black_box(raw.reverse_lookup(&mut buf[..*n]));
                let _ = black_box(write_sockaddr(
                    read_sockaddr(&b[..*n], *l).unwrap(),
                    &mut src,
                    *l,
                ));
            }
            // Setting up a rewriter from a plan is allocation-free too (it shares the policy
            // table through an `Arc`).
            let _ = black_box(e.rewriter(Session::remote(rw.session_id()), &plans[0], Some(VIP)));
        }
        for id in [0, 7, 255, SessionId::MAX.get(), u32::MAX] {
            let _ = black_box(SessionId::new(id).loopback());
        }
        black_box(e.is_port_excluded(27000));
    });
    assert_eq!(n, 0, "the hot path allocated {n} times");
}
