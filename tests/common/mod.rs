//! Shared fixtures for the integration tests.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6};

use ipvirt::{Engine, Host, Policy, Vip};

/// The server's own address in the fixtures.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// Session 7's VIP in the fixtures.
pub const VIP: Vip = match Vip::new(Ipv4Addr::new(192, 0, 2, 107)) {
    Ok(v) => v,
    Err(_) => panic!("a usable VIP"),
};

/// A policy in which both features and preferred loopback are on:
/// `crm.exe` gets virtual loopback and VIP; `pref.exe` also has preferred loopback;
/// `vipo.exe` gets only VIP; `lo.exe` only loopback; port 27000 is excluded.
pub fn policy(isolate: bool, on_lease_failure: &str) -> Policy {
    Policy::from_toml(&format!(
        r#"
        [virtual_loopback]
        enabled = true
        programs = ["crm.exe", "pref.exe", "lo.exe"]
        excluded_ports = [27000]
        isolate = {isolate}

        [virtual_ip]
        enabled = true
        mode = "per-program"
        programs = ["crm.exe", "pref.exe", "vipo.exe"]
        adapter = "192.0.2.0/24"
        pool = ["192.0.2.100-192.0.2.199"]
        on_lease_failure = "{on_lease_failure}"

        [prefer_loopback]
        enabled = true
        processes = ["pref.exe"]
        "#
    ))
    .unwrap()
}

pub fn engine(isolate: bool, on_lease_failure: &str) -> Engine {
    policy(isolate, on_lease_failure)
        .compile(Host::new([SERVER.into()]))
        .unwrap()
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The IPv4-mapped IPv6 form of an IPv4 socket address (IPv6 addresses unchanged).
pub fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 => v6,
    }
}
