//! Instructions per call, for `valgrind --tool=callgrind` (stable where wall-clock time is noisy).
//!
//! `benches/callgrind.sh` runs this program under callgrind once per call with `ROUNDS` rounds and
//! once with none, and divides the difference by the number of calls made. Alone (`cargo bench
//! --bench instructions`) it runs one round of each call and prints nothing else.
//!
//! The batch is the one of `benches/batch.rs` in spirit: 4 096 addresses mixing every rule's hit and
//! miss, IPv4, IPv4-mapped and IPv6.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ipvirt::{Host, Policy, Session, SessionId, SockaddrLayout, Stack, Vip, write_sockaddr};

const N: usize = 4096;

fn batch() -> Vec<SocketAddr> {
    let kinds: [fn(u16) -> SocketAddr; 10] = [
        |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p)),
        |_| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 27000)),
        |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p)),
        |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), p)),
        |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), p)),
        |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 8), p)),
        |p| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
                p,
                0,
                0,
            ))
        },
        |p| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, p, 0, 0)),
        |p| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, p, 0, 0)),
        |p| {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                p,
                0,
                0,
            ))
        },
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..N)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            kinds[(x % 10) as usize](1024 + (x >> 40) as u16 % 4000)
        })
        .collect()
}

fn main() {
    let policy = "[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\nexcluded_ports = [27000]\n\
        [virtual_ip]\nenabled = true\nprograms = [\"crm.exe\"]\nadapter = \"192.0.2.0/24\"\n";
    let engine = Policy::from_toml(policy)
        .unwrap()
        .compile(Host::new([IpAddr::from([192, 0, 2, 10])]))
        .unwrap();
    let plan = engine.process("crm.exe");
    let vip: Vip = "192.0.2.107".parse().unwrap();
    let rw = engine.rewriter(Session::remote(SessionId::new(7)), &plan, Some(vip));
    let batch = batch();
    let raw: Vec<[u8; 28]> = batch
        .iter()
        .map(|a| {
            let mut b = [0u8; 28];
            write_sockaddr(*a, &mut b, SockaddrLayout::LINUX).unwrap();
            b
        })
        .collect();
    let call = std::env::var("CALL").unwrap_or_default();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for _ in 0..rounds {
        for (a, r) in batch.iter().zip(&raw) {
            let a = black_box(*a);
            match call.as_str() {
                "bind" => drop(black_box(rw.bind(a))),
                "connect" => drop(black_box(rw.connect(a))),
                "send_to" => drop(black_box(rw.send_to(a))),
                "reported" => drop(black_box(rw.reported(a))),
                "resolved" => drop(black_box(rw.resolved_addr(a.ip()))),
                "reverse_lookup" => drop(black_box(rw.reverse_lookup(a.ip()))),
                "raw_bind" => {
                    let mut b = black_box(*r);
                    let _ = black_box(rw.raw(SockaddrLayout::LINUX).bind_on(&mut b, Stack::Single));
                }
                "raw_connect" => {
                    let mut b = black_box(*r);
                    let mut s = [0u8; 28];
                    let _ = black_box(rw.raw(SockaddrLayout::LINUX).connect(&mut b, &mut s));
                }
                _ => {}
            }
        }
    }
}
