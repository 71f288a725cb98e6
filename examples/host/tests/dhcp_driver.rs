//! The DHCP driver against a real `dnsmasq`, in a network namespace each test creates: a veth pair
//! joins the test (the client side, in the test's own namespace) to the server's namespace
//! (`ipvirt_testkit::dhcp::DhcpNet`). Needs root, `ip` and `dnsmasq` (`.ci/run` installs
//! `dnsmasq-base`); skips with a printed reason elsewhere.
#![cfg(all(feature = "dhcp", target_os = "linux"))]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvirt::dhcp::{DhcpConfig, DhcpEvent, DhcpState};
use ipvirt::{Host, LeaseError, Policy, Refusal, Session, SessionId};
use ipvirt_host::StateFile;
use ipvirt_host::dhcp_driver::DhcpDriver;
use ipvirt_testkit::dhcp::{DEADLINE, DhcpNet as Net, log_has, wait_for};
use ipvirt_testkit::require_root;

/// A driver on the test network's client side.
fn driver(net: &Net, prefix: &str, state: Option<StateFile>) -> DhcpDriver {
    DhcpDriver::open(
        &net.client_if,
        DhcpConfig::new(prefix.as_bytes().to_vec(), [0; 6]),
        state,
        true,
    )
    .unwrap()
}

/// Steps the driver until `cond` holds (deadline: [`DEADLINE`]).
fn drive(d: &mut DhcpDriver, what: &str, mut cond: impl FnMut(&mut DhcpDriver) -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond(d) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; notes: {:?}; stats: {:?}",
            d.take_notes(),
            d.machine().stats()
        );
        d.step(Duration::from_millis(100));
    }
}

fn sid(n: u32) -> SessionId {
    SessionId::new(n)
}

/// A clock that is the wall clock plus an offset the test moves.
fn jumping_clock(d: &mut DhcpDriver) -> Arc<AtomicU64> {
    let offset = Arc::new(AtomicU64::new(0));
    let o = Arc::clone(&offset);
    d.set_clock(Arc::new(move || {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
            + Duration::from_secs(o.load(Ordering::SeqCst))
    }));
    offset
}

#[test]
fn three_sessions_three_addresses_and_a_returning_session_gets_its_own() {
    require_root!();
    // dnsmasq pings each address before its first offer: the default 4 s retransmission copes.
    let net = Net::new(1, 150, true);
    let mut d = driver(&net, "ipvirt-t1-", None);
    for s in 1..=3 {
        assert_eq!(
            d.lease(sid(s)),
            Err(LeaseError::Pending { session: sid(s) })
        );
    }
    drive(&mut d, "three leases", |d| {
        (1..=3).all(|s| d.lease(sid(s)).is_ok())
    });
    let addrs: Vec<Ipv4Addr> = (1..=3).map(|s| d.lease(sid(s)).unwrap().addr()).collect();
    let mut distinct = addrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{addrs:?}");
    for a in &addrs {
        assert_eq!(a.octets()[..3], [10, 231, 1]);
    }
    // Each session is its own client of the server.
    wait_for(
        || {
            let l = net.server_leases();
            addrs.iter().all(|a| l.iter().any(|(b, _)| b == a))
        },
        "the server's lease file to list the three",
    );

    // Session 2 logs off and comes back: its old address.
    assert_eq!(d.release(sid(2)).unwrap().addr(), addrs[1]);
    assert_eq!(d.machine().state(sid(2)), None);
    wait_for(
        || {
            let l = net.server_leases();
            !l.iter().any(|(a, _)| *a == addrs[1]) && l.iter().any(|(a, _)| *a == addrs[0])
        },
        "the RELEASE to free the address in the server's lease file",
    );
    assert_eq!(
        d.lease(sid(2)),
        Err(LeaseError::Pending { session: sid(2) })
    );
    drive(&mut d, "session 2 back", |d| d.lease(sid(2)).is_ok());
    assert_eq!(d.lease(sid(2)).unwrap().addr(), addrs[1]);
    for s in 1..=3 {
        d.release(sid(s));
    }
    wait_for(|| net.server_leases().is_empty(), "every lease released");
    assert!(d.take_notes().is_empty());
}

#[test]
fn renewal_keeps_the_address_and_a_restarted_driver_renews_rather_than_rediscovers() {
    require_root!();
    let net = Net::new(2, 150, false);
    let state = net.dir.join("leases.json");
    let addr;
    {
        let mut d = driver(&net, "ipvirt-t2-", Some(StateFile::new(&state)));
        let offset = jumping_clock(&mut d);
        d.lease(sid(7)).unwrap_err();
        drive(&mut d, "a lease", |d| d.lease(sid(7)).is_ok());
        addr = d.lease(sid(7)).unwrap().addr();
        let lease = d.machine().lease_of(sid(7)).unwrap();
        assert_eq!(lease.expiry - lease.acquired, Duration::from_secs(120));
        // Jump to T1 (60 s): the renewal goes unicast to the server; its ACK comes back to the
        // address, configured on the adapter.
        offset.store(61, Ordering::SeqCst);
        let mut renewed = false;
        drive(&mut d, "the renewal", |d| {
            renewed |= d.step(Duration::from_millis(100)).iter().any(
                |e| matches!(e, DhcpEvent::Renewed { previous, lease, .. } if *previous == addr && lease.addr == addr),
            );
            renewed
        });
        assert_eq!(d.machine().state(sid(7)), Some(DhcpState::Bound));
        assert_eq!(d.lease(sid(7)).unwrap().addr(), addr);
        // The driver ends without releasing (a launcher that restarts).
    }
    let mut d = driver(&net, "ipvirt-t2-", Some(StateFile::new(&state)));
    let offset = jumping_clock(&mut d);
    // The lease is back at once, without a DISCOVER.
    assert_eq!(d.lease(sid(7)).unwrap().addr(), addr);
    assert_eq!(d.machine().state(sid(7)), Some(DhcpState::Bound));
    offset.store(70, Ordering::SeqCst);
    let mut renewed = false;
    drive(&mut d, "the restarted driver's renewal", |d| {
        renewed |= d
            .step(Duration::from_millis(100))
            .iter()
            .any(|e| matches!(e, DhcpEvent::Renewed { lease, .. } if lease.addr == addr));
        renewed
    });
    d.release(sid(7));
    wait_for(|| net.server_leases().is_empty(), "the lease released");
    // The file remembers the address for when the session comes back.
    let snap: ipvirt::dhcp::DhcpSnapshot = StateFile::new(&state).read().unwrap().unwrap();
    assert!(snap.leases.is_empty());
    assert_eq!(snap.remembered, [(sid(7), addr)]);
}

fn policy(failure: &str) -> Policy {
    Policy::from_toml(&format!(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"10.231.0.0/16\"\n\
         source = \"dhcp\"\non_lease_failure = \"{failure}\"\n\
         [virtual_ip.dhcp]\ninterface = \"ivd0\"\n"
    ))
    .unwrap()
}

#[test]
fn a_pool_of_two_with_three_sessions_applies_on_lease_failure() {
    require_root!();
    let net = Net::new(3, 101, false);
    // The waiting session's DISCOVERs come every second or two rather than at 4, 12, 28, 60 s, so
    // the one dnsmasq answers with "no address available" comes long before the deadline even on
    // a loaded machine (dnsmasq does not ping here, so short delays do not outrun its offers).
    let mut config = DhcpConfig::new(b"ipvirt-t3-".to_vec(), [0; 6]);
    config.first_retransmit = Duration::from_secs(1);
    config.max_retransmit = Duration::from_secs(2);
    let mut d = DhcpDriver::open(&net.client_if, config, None, true).unwrap();
    for s in 1..=3 {
        d.lease(sid(s)).unwrap_err();
    }
    drive(&mut d, "two leases and the server out of addresses", |d| {
        (1..=3).filter(|&s| d.lease(sid(s)).is_ok()).count() == 2
            && log_has(&net.log_path(), "no address available")
    });
    let left: Vec<u32> = (1..=3).filter(|&s| d.lease(sid(s)).is_err()).collect();
    let [s] = left[..] else { panic!("{left:?}") };
    assert_eq!(
        d.lease(sid(s)),
        Err(LeaseError::Pending { session: sid(s) })
    );
    assert_eq!(d.machine().state(sid(s)), Some(DhcpState::Selecting));
    for (failure, expect) in [("no-connectivity", true), ("use-server-address", false)] {
        let policy = policy(failure);
        let engine = policy
            .compile(Host::new(["10.231.3.2".parse().unwrap()]))
            .unwrap();
        let plan = engine.process("app");
        let rw = engine.rewriter(Session::remote(sid(s)), &plan, d.lease(sid(s)).ok());
        let got = rw.bind("0.0.0.0:80".parse().unwrap());
        if expect {
            assert_eq!(got, Err(Refusal::NoConnectivity));
        } else {
            assert_eq!(got, Ok("0.0.0.0:80".parse().unwrap()));
        }
        let other = (1..=3).find(|&o| o != s).unwrap();
        let rw = engine.rewriter(Session::remote(sid(other)), &plan, d.lease(sid(other)).ok());
        assert_eq!(
            rw.bind("0.0.0.0:80".parse().unwrap()).unwrap().ip(),
            d.lease(sid(other)).unwrap().addr()
        );
    }
    // One session logs off: the waiting one gets its address.
    let other = (1..=3).find(|&o| o != s).unwrap();
    let freed = d.release(sid(other)).unwrap().addr();
    drive(&mut d, "the waiting session's lease", |d| {
        d.lease(sid(s)).is_ok()
    });
    assert_eq!(d.lease(sid(s)).unwrap().addr(), freed);
}

#[test]
fn a_dead_server_makes_renewals_fail_and_the_session_follows_on_lease_failure() {
    require_root!();
    let mut net = Net::new(4, 150, false);
    let mut d = driver(&net, "ipvirt-t4-", None);
    let offset = jumping_clock(&mut d);
    d.lease(sid(5)).unwrap_err();
    drive(&mut d, "a lease", |d| d.lease(sid(5)).is_ok());
    let addr = d.lease(sid(5)).unwrap().addr();
    net.kill_server();
    // Past T1: renewing, still holding the address.
    offset.store(61, Ordering::SeqCst);
    drive(&mut d, "renewing", |d| {
        d.machine().state(sid(5)) == Some(DhcpState::Renewing)
    });
    assert_eq!(d.lease(sid(5)).unwrap().addr(), addr);
    // Past T2: rebinding, still holding it.
    offset.store(106, Ordering::SeqCst);
    drive(&mut d, "rebinding", |d| {
        d.machine().state(sid(5)) == Some(DhcpState::Rebinding)
    });
    assert_eq!(d.lease(sid(5)).unwrap().addr(), addr);
    // Past expiry: lost.
    offset.store(121, Ordering::SeqCst);
    let mut lost = false;
    drive(&mut d, "the loss", |d| {
        lost |= d.step(Duration::from_millis(100)).iter().any(|e| {
            *e == DhcpEvent::Lost {
                session: sid(5),
                addr,
            }
        });
        lost
    });
    assert_eq!(
        d.lease(sid(5)),
        Err(LeaseError::Lost {
            session: sid(5),
            addr
        })
    );
    let policy = policy("no-connectivity");
    let engine = policy
        .compile(Host::new(["10.231.4.2".parse().unwrap()]))
        .unwrap();
    let plan = engine.process("app");
    let rw = engine.rewriter(Session::remote(sid(5)), &plan, d.lease(sid(5)).ok());
    assert_eq!(
        rw.bind("0.0.0.0:80".parse().unwrap()),
        Err(Refusal::NoConnectivity)
    );
    // The address is off the adapter.
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &net.client_if])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&format!("{addr}/32")));
}

/// Steps the driver until a note says `what` (deadline: [`DEADLINE`]); returns every note.
fn drive_until_noted(d: &mut DhcpDriver, what: &str) -> Vec<String> {
    let mut notes = Vec::new();
    drive(d, what, |d| {
        notes.extend(d.take_notes());
        notes.iter().any(|n| n.contains(what))
    });
    notes
}

#[test]
fn an_offer_of_the_hosts_own_address_is_refused_and_never_leased() {
    require_root!();
    // A misconfigured server whose only address is the client side's own (10.231.7.2); without
    // its ping check dnsmasq offers it.
    let net = Net::with_range(7, 2, 2, false);
    let own = Ipv4Addr::new(10, 231, 7, 2);
    let mut d = driver(&net, "ipvirt-t7-", None);
    assert_eq!(
        d.lease(sid(1)),
        Err(LeaseError::Pending { session: sid(1) })
    );
    let notes = drive_until_noted(&mut d, "refused the OFFER of 10.231.7.2 from 10.231.7.1");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("it is one of this host's own addresses (10.231.7.2/24)")),
        "{notes:?}"
    );
    // Never taken up: no REQUEST, so no ACK and no lease on either side; the address is still
    // the interface's own, once.
    assert_eq!(
        d.lease(sid(1)),
        Err(LeaseError::Pending { session: sid(1) })
    );
    assert_eq!(d.machine().state(sid(1)), Some(DhcpState::Selecting));
    assert!(d.machine().leases().is_empty());
    assert!(d.machine().stats().refused >= 1);
    assert!(
        !log_has(&net.log_path(), "DHCPREQUEST"),
        "a REQUEST was sent"
    );
    assert!(net.server_leases().iter().all(|(a, _)| *a != own));
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &net.client_if])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("inet 10.231.7.2/").count(), 1, "{shown}");
}

#[test]
fn offers_outside_the_adapter_network_are_refused() {
    require_root!();
    // VIPAdapter 10.231.8.0/25 while the server hands out .200-.210.
    let net = Net::with_range(8, 200, 210, false);
    let mut config = DhcpConfig::new(b"ipvirt-t8-".to_vec(), [0; 6]);
    config.adapter = Some("10.231.8.0/25".parse().unwrap());
    let mut d = DhcpDriver::open(&net.client_if, config, None, true).unwrap();
    d.lease(sid(1)).unwrap_err();
    let notes = drive_until_noted(&mut d, "outside the adapter's network 10.231.8.0/25");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("refused the OFFER of 10.231.8.20")),
        "{notes:?}"
    );
    assert!(d.lease(sid(1)).is_err());
    assert!(d.machine().leases().is_empty());
    assert!(
        !log_has(&net.log_path(), "DHCPREQUEST"),
        "a REQUEST was sent"
    );
}

#[test]
fn a_missing_interface_is_a_typed_error() {
    // No root needed: the interface is looked up before any socket is made.
    let err = DhcpDriver::open(
        "ipvirt-nope0",
        DhcpConfig::new(b"x-".to_vec(), [0; 6]),
        None,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ipvirt_host::dhcp_driver::DriverError::Interface { interface, .. } if interface == "ipvirt-nope0"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("DHCP interface \"ipvirt-nope0\": no such interface"),
        "{err}"
    );
    for bad in ["", "../lo", "a/b"] {
        assert!(
            DhcpDriver::open(bad, DhcpConfig::new(b"x-".to_vec(), [0; 6]), None, false).is_err()
        );
    }
    let err =
        ipvirt_host::dhcp_driver::interface_for("203.0.113.0/24".parse().unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("no interface has a directly connected route"),
        "{err}"
    );
}

/// The interface's IPv4 addresses, as `ip` lists them.
fn addresses(interface: &str) -> String {
    let o = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// SPEC §10, issue 23 item 7: an address the administrator configured is never removed by
/// ipvirt (the driver removed every address it leased, also one it had not added: it told
/// "already there" by `ip`'s message, which iproute2 changed). One it added itself goes at
/// release.
#[test]
fn an_address_the_administrator_configured_stays_after_the_lease() {
    require_root!();
    // One address in the range: the one the administrator configured.
    let net = Net::new(7, 100, false);
    let addr = format!("10.231.{}.100", net.net);
    let ip = |verb: &str| {
        Command::new("ip")
            .args([
                "-4",
                "addr",
                verb,
                &format!("{addr}/32"),
                "dev",
                &net.client_if,
            ])
            .status()
            .unwrap()
    };
    // Configured while the driver runs (one configured before it opens is one of the host's own
    // addresses, whose offer the driver refuses: item 6).
    let mut d = driver(&net, "ipvirt-t7-", None);
    assert!(ip("add").success());
    assert_eq!(
        d.lease(sid(1)),
        Err(LeaseError::Pending { session: sid(1) })
    );
    drive(&mut d, "the lease", |d| d.lease(sid(1)).is_ok());
    assert_eq!(d.lease(sid(1)).unwrap().addr().to_string(), addr);
    let notes = d.take_notes();
    assert!(
        notes.iter().any(|n| n.contains("not put there by ipvirt")),
        "{notes:?}"
    );
    d.release(sid(1));
    assert!(
        addresses(&net.client_if).contains(&format!("{addr}/32")),
        "the administrator's address was removed: {}",
        addresses(&net.client_if)
    );

    // Without it, the driver adds the address and removes it at release.
    assert!(ip("del").success());
    wait_for(
        || net.server_leases().is_empty(),
        "the RELEASE to free the address",
    );
    drive(&mut d, "the second lease", |d| d.lease(sid(2)).is_ok());
    assert_eq!(d.lease(sid(2)).unwrap().addr().to_string(), addr);
    assert!(addresses(&net.client_if).contains(&format!("{addr}/32")));
    d.release(sid(2));
    assert!(
        !addresses(&net.client_if).contains(&format!("{addr}/32")),
        "{}",
        addresses(&net.client_if)
    );
    assert!(d.take_notes().is_empty());
}
