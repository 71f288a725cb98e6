//! VIP pools (issue 5): exhaustion, release and reuse, returning sessions, CIDR edges, server
//! addresses, merging, snapshots, and the policy wiring.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipvirt::{
    AddressSource, Host, LeaseError, Policy, PoolEntry, PoolError, PoolSnapshot, Refusal,
    RestoreWarning, Session, SessionId, StaticPool,
};

fn e(s: &str) -> PoolEntry {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn sid(n: u32) -> SessionId {
    SessionId::new(n)
}

fn pool(entries: &[&str], host: &[&str]) -> Result<StaticPool, PoolError> {
    let entries: Vec<PoolEntry> = entries.iter().map(|s| e(s)).collect();
    StaticPool::new(
        &entries,
        &Host::new(host.iter().map(|h| h.parse().unwrap())),
    )
}

#[test]
fn cidr_edges() {
    // (entries, size, first address handed out, last address in the pool)
    let rows: [(&str, u32, &str, &str); 6] = [
        ("192.0.2.0/24", 254, "192.0.2.1", "192.0.2.254"),
        ("192.0.2.0/30", 2, "192.0.2.1", "192.0.2.2"),
        ("192.0.2.0/31", 2, "192.0.2.0", "192.0.2.1"),
        ("192.0.2.5/32", 1, "192.0.2.5", "192.0.2.5"),
        ("192.0.2.5", 1, "192.0.2.5", "192.0.2.5"),
        ("192.0.2.250-192.0.2.255", 6, "192.0.2.250", "192.0.2.255"),
    ];
    for (entry, size, first, last) in rows {
        let mut p = pool(&[entry], &[]).unwrap();
        assert_eq!(p.size(), size, "{entry}");
        assert_eq!(p.lease(sid(1)).unwrap(), ip(first), "{entry}");
        assert!(p.contains(ip(last)), "{entry}");
        let mut got = vec![ip(first)];
        for s in 2..=size {
            got.push(p.lease(sid(s)).unwrap().addr());
        }
        assert!(got.contains(&ip(last)), "{entry}");
        assert!(
            matches!(p.lease(sid(size + 1)), Err(LeaseError::Exhausted { .. })),
            "{entry}"
        );
    }
    // Network and broadcast of a /24 are never in the pool.
    let p = pool(&["192.0.2.0/24"], &[]).unwrap();
    assert!(!p.contains(ip("192.0.2.0")));
    assert!(!p.contains(ip("192.0.2.255")));
}

#[test]
fn exhaustion_release_and_reuse() {
    let mut p = pool(&["192.0.2.10-192.0.2.12"], &[]).unwrap();
    let a: Vec<Ipv4Addr> = (1..=3).map(|s| p.lease(sid(s)).unwrap().addr()).collect();
    assert_eq!(a, [ip("192.0.2.10"), ip("192.0.2.11"), ip("192.0.2.12")]);
    let err = p.lease(sid(4)).unwrap_err();
    assert_eq!(
        err,
        LeaseError::Exhausted {
            session: sid(4),
            size: 3
        }
    );
    assert!(err.to_string().contains("session 4") && err.to_string().contains('3'));
    assert_eq!(
        p.release(sid(2)).map(Ipv4Addr::from),
        Some(ip("192.0.2.11"))
    );
    assert_eq!(p.lease(sid(4)).unwrap(), ip("192.0.2.11"));
    assert_eq!((p.leased(), p.available()), (3, 0));
    assert_eq!(p.release(sid(99)).map(Ipv4Addr::from), None);
}

#[test]
fn same_address_for_every_call_while_the_lease_lives() {
    let mut p = pool(&["192.0.2.0/24"], &[]).unwrap();
    let a = p.lease(sid(7)).unwrap();
    for _ in 0..10 {
        assert_eq!(p.lease(sid(7)).unwrap(), a);
    }
    assert_eq!(p.leased(), 1);
    assert_eq!(p.address_of(sid(7)), Some(a));
    assert_eq!(p.session_of(a.addr()), Some(sid(7)));
    assert_eq!(p.session_of(ip("192.0.2.200")), None);
    assert_eq!(p.session_of(ip("198.51.100.1")), None);
}

#[test]
fn returning_session_gets_its_old_address_if_free() {
    let mut p = pool(&["192.0.2.10-192.0.2.13"], &[]).unwrap();
    let a7 = p.lease(sid(7)).unwrap();
    let a8 = p.lease(sid(8)).unwrap();
    p.release(sid(7)).map(Ipv4Addr::from);
    p.release(sid(8)).map(Ipv4Addr::from);
    // Others lease meanwhile, but the rotation hands out the never-used addresses first.
    let a9 = p.lease(sid(9)).unwrap();
    assert!(a9 != a7 && a9 != a8);
    assert_eq!(p.lease(sid(8)).unwrap(), a8);
    assert_eq!(p.lease(sid(7)).unwrap(), a7);
    // When the old address went to someone else, the session gets another one.
    p.release(sid(7)).map(Ipv4Addr::from);
    let _a10 = p.lease(sid(10)).unwrap(); // the last never-used address
    let a11 = p.lease(sid(11)).unwrap(); // the only free one: 7's old address
    assert_eq!(a11, a7);
    p.release(sid(9)).map(Ipv4Addr::from);
    let back = p.lease(sid(7)).unwrap();
    assert_ne!(back, a7);
    assert_eq!(back, a9);
}

#[test]
fn server_addresses_are_never_handed_out() {
    let mut p = pool(
        &["192.0.2.10-192.0.2.14"],
        &["192.0.2.10", "192.0.2.12", "192.0.2.14", "198.51.100.1"],
    )
    .unwrap();
    assert_eq!(p.size(), 2);
    assert_eq!(
        p.excluded(),
        [ip("192.0.2.10"), ip("192.0.2.12"), ip("192.0.2.14")]
    );
    let got = [p.lease(sid(1)).unwrap(), p.lease(sid(2)).unwrap()];
    assert_eq!(got, [ip("192.0.2.11"), ip("192.0.2.13")]);
    assert!(p.lease(sid(3)).is_err());
    assert_eq!(
        pool(&["192.0.2.10"], &["192.0.2.10"]).unwrap_err(),
        PoolError::Empty
    );
    assert_eq!(
        StaticPool::new(&[], &Host::default()).unwrap_err(),
        PoolError::Empty
    );
}

#[test]
fn overlapping_and_adjacent_entries_merge() {
    let p = pool(
        &[
            "192.0.2.0/25",
            "192.0.2.100-192.0.2.200",
            "192.0.2.201",
            "192.0.2.50",
        ],
        &[],
    )
    .unwrap();
    // /25 gives .1-.126; the range .100-.200 and .201 extend it to .1-.201.
    assert_eq!(p.size(), 201);
    let p = pool(&["10.0.0.0/8", "10.1.0.0/16"], &[]).unwrap();
    assert_eq!(p.size(), (1 << 24) - 2);
}

#[test]
fn size_limits() {
    assert!(matches!(
        pool(&["10.0.0.0/7"], &[]),
        Err(PoolError::TooLarge { .. })
    ));
    let err = pool(&["0.0.0.0-255.255.255.255"], &[]).unwrap_err();
    assert_eq!(err, PoolError::TooLarge { size: 1 << 32 });
    assert!(err.to_string().contains("4294967296"));
    // The top of the unicast space works (the run ends where the reserved blocks begin).
    let mut p = pool(&["223.255.255.254-223.255.255.255"], &["223.255.255.255"]).unwrap();
    assert_eq!(p.lease(sid(1)).unwrap(), ip("223.255.255.254"));
}

#[test]
fn invalid_session() {
    let mut p = pool(&["192.0.2.0/24"], &[]).unwrap();
    assert_eq!(
        p.lease(sid(16_777_215)),
        Err(LeaseError::InvalidSession {
            session: sid(16_777_215)
        })
    );
    assert!(p.lease(SessionId::MAX).is_ok());
}

#[test]
fn snapshot_round_trip_and_restore() {
    let mut p = pool(&["192.0.2.0/28"], &[]).unwrap();
    for s in 1..=5 {
        p.lease(sid(s)).unwrap();
    }
    p.release(sid(2)).map(Ipv4Addr::from);
    let snap = p.snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let back: PoolSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let mut q = pool(&["192.0.2.0/28"], &[]).unwrap();
    q.restore(&back).unwrap();
    assert_eq!(q.leases(), p.leases());
    // The restored pool never hands a live address to a second session…
    let fresh: Vec<Ipv4Addr> = (10..=19).map(|s| q.lease(sid(s)).unwrap().addr()).collect();
    for (_, a) in p.leases() {
        assert!(!fresh.contains(&a));
    }
    // …and remembers returning sessions.
    let mut r = pool(&["192.0.2.0/28"], &[]).unwrap();
    r.restore(&back).unwrap();
    assert_eq!(r.lease(sid(2)).unwrap(), ip("192.0.2.2"));
}

#[test]
fn corrupt_snapshots_are_errors_and_leave_no_partial_state() {
    let mut p = pool(&["192.0.2.0/29"], &["192.0.2.3"]).unwrap();
    p.lease(sid(1)).unwrap();
    let before = p.leases();
    type Pairs = Vec<(u32, &'static str)>;
    let cases: [(u32, Pairs, PoolError); 4] = [
        (
            2,
            vec![(7, "192.0.2.1"), (7, "192.0.2.2")],
            PoolError::DuplicateSession { session: sid(7) },
        ),
        (
            2,
            vec![(7, "192.0.2.1"), (8, "192.0.2.1")],
            PoolError::DuplicateAddress {
                addr: ip("192.0.2.1"),
            },
        ),
        (
            2,
            vec![(16_777_215, "192.0.2.1")],
            PoolError::InvalidSession {
                session: sid(16_777_215),
            },
        ),
        (
            3,
            vec![(7, "192.0.2.1")],
            PoolError::UnsupportedVersion { version: 3 },
        ),
    ];
    for (version, leases, want) in cases {
        let snap = PoolSnapshot {
            version,
            leases: leases.iter().map(|&(s, a)| (sid(s), ip(a))).collect(),
            ..PoolSnapshot::default()
        };
        assert_eq!(p.restore(&snap), Err(want));
        assert_eq!(p.leases(), before, "partial state after {want}");
    }
    // Unknown fields and malformed addresses in the file are errors too.
    assert!(serde_json::from_str::<PoolSnapshot>(r#"{"leases":[[1,"x"]]}"#).is_err());
    assert!(serde_json::from_str::<PoolSnapshot>(r#"{"extra":1}"#).is_err());
}

#[test]
fn stale_entries_after_a_pool_change_are_dropped_with_warnings() {
    // 192.0.2.3 is a server address here, 198.51.100.1 was never in the pool: both as if the
    // policy changed since the snapshot.
    let mut p = pool(&["192.0.2.0/29"], &["192.0.2.3"]).unwrap();
    let snap = PoolSnapshot {
        version: 2,
        leases: vec![
            (sid(7), ip("192.0.2.1")),
            (sid(8), ip("198.51.100.1")),
            (sid(9), ip("192.0.2.3")),
        ],
        remembered: vec![
            (sid(7), ip("192.0.2.2")),     // 7 is live: conflict
            (sid(10), ip("192.0.2.1")),    // 7's live address: conflict
            (sid(11), ip("198.51.100.2")), // outside
            (sid(12), ip("192.0.2.4")),    // older entry for .4: dropped for the newer 13
            (sid(13), ip("192.0.2.4")),
            (sid(14), ip("192.0.2.5")),
        ],
        ..PoolSnapshot::default()
    };
    let warnings = p.restore(&snap).unwrap();
    assert_eq!(
        warnings,
        [
            RestoreWarning::LeaseOutsidePool {
                session: sid(8),
                addr: ip("198.51.100.1")
            },
            RestoreWarning::LeaseOutsidePool {
                session: sid(9),
                addr: ip("192.0.2.3")
            },
            RestoreWarning::RememberedConflict {
                session: sid(7),
                addr: ip("192.0.2.2")
            },
            RestoreWarning::RememberedConflict {
                session: sid(10),
                addr: ip("192.0.2.1")
            },
            RestoreWarning::RememberedOutsidePool {
                session: sid(11),
                addr: ip("198.51.100.2")
            },
            RestoreWarning::RememberedConflict {
                session: sid(12),
                addr: ip("192.0.2.4")
            },
        ]
    );
    assert_eq!(p.leases(), [(sid(7), ip("192.0.2.1"))]);
    assert_eq!(
        p.remembered(),
        [(sid(13), ip("192.0.2.4")), (sid(14), ip("192.0.2.5"))]
    );
    // What is kept works: returning sessions get their addresses back.
    assert_eq!(p.lease(sid(14)).unwrap(), ip("192.0.2.5"));
    assert_eq!(p.lease(sid(13)).unwrap(), ip("192.0.2.4"));
}

#[test]
fn returning_sessions_get_their_address_back_across_restores() {
    // Each step is a separate launch: restore from the last snapshot, act, snapshot.
    let step = |snap: &PoolSnapshot, f: &dyn Fn(&mut StaticPool) -> Option<Ipv4Addr>| {
        let mut p = pool(&["192.0.2.0/29"], &[]).unwrap();
        p.restore(snap).unwrap();
        let got = f(&mut p);
        (got, p.snapshot())
    };
    let snap = PoolSnapshot::default();
    let (a7, snap) = step(&snap, &|p| p.lease(sid(7)).ok().map(Ipv4Addr::from));
    let (_, snap) = step(&snap, &|p| p.release(sid(7)).map(Ipv4Addr::from));
    let (a8, snap) = step(&snap, &|p| p.lease(sid(8)).ok().map(Ipv4Addr::from));
    let (_, snap) = step(&snap, &|p| p.release(sid(8)).map(Ipv4Addr::from));
    let (b7, snap) = step(&snap, &|p| p.lease(sid(7)).ok().map(Ipv4Addr::from));
    let (c9, _) = step(&snap, &|p| p.lease(sid(9)).ok().map(Ipv4Addr::from));
    assert_eq!(a7, Some(ip("192.0.2.1")));
    assert_eq!(
        a8,
        Some(ip("192.0.2.2")),
        "the cursor moved past 7's address"
    );
    assert_eq!(b7, a7, "7 came back to its address");
    assert_eq!(
        c9,
        Some(ip("192.0.2.3")),
        "rotation goes on after the restore"
    );
    // Version 1 snapshots (no cursor, no version field) still read.
    let old: PoolSnapshot =
        serde_json::from_str(r#"{"pool":[],"leases":[[7,"192.0.2.1"]],"remembered":[]}"#).unwrap();
    assert_eq!(old.version, 1);
    let mut p = pool(&["192.0.2.0/29"], &[]).unwrap();
    assert_eq!(p.restore(&old), Ok(vec![]));
    assert_eq!(
        p.address_of(sid(7)).map(Ipv4Addr::from),
        Some(ip("192.0.2.1"))
    );
}

#[test]
fn the_oldest_remembered_session_is_forgotten_first() {
    let n = StaticPool::REMEMBERED as u32;
    // A /14 holds 262 142 addresses: room for every session below without reuse.
    let mut p = pool(&["10.0.0.0/14"], &[]).unwrap();
    for s in 1..=n + 1 {
        p.lease(sid(s)).unwrap();
    }
    // Release in an order unrelated to ids and addresses: highest id first.
    let order: Vec<u32> = (1..=n + 1).rev().collect();
    for &s in &order {
        p.release(sid(s)).map(Ipv4Addr::from);
    }
    let remembered = p.remembered();
    assert_eq!(remembered.len(), StaticPool::REMEMBERED);
    // The first released (n + 1) was forgotten; the next oldest is first in line.
    assert_eq!(remembered.first().map(|&(s, _)| s), Some(sid(n)));
    assert_eq!(remembered.last().map(|&(s, _)| s), Some(sid(1)));
    assert!(!remembered.iter().any(|&(s, _)| s == sid(n + 1)));
    // The order survives a snapshot.
    let mut q = pool(&["10.0.0.0/14"], &[]).unwrap();
    assert_eq!(q.restore(&p.snapshot()), Ok(vec![]));
    assert_eq!(q.remembered(), remembered);
}

#[test]
fn wired_to_the_policy_and_the_rewriter() {
    let policy = Policy::from_toml(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n\
         pool = [\"192.0.2.100\"]\non_lease_failure = \"no-connectivity\"\n",
    )
    .unwrap();
    let host = Host::new(["192.0.2.10".parse().unwrap()]);
    let mut p = StaticPool::from_policy(&policy.virtual_ip, &host).unwrap();
    let engine = policy.compile(host).unwrap();
    let plan = engine.process("app.exe");
    // Session 7 gets the only address; session 8 finds the pool exhausted.
    let v7 = p.lease(sid(7)).ok();
    let v8 = p.lease(sid(8)).ok();
    assert_eq!(v7.map(Ipv4Addr::from), Some(ip("192.0.2.100")));
    assert_eq!(v8, None);
    let rw7 = engine.rewriter(Session::remote(sid(7)), &plan, v7);
    let rw8 = engine.rewriter(Session::remote(sid(8)), &plan, v8);
    assert_eq!(
        rw7.bind("0.0.0.0:80".parse().unwrap()).unwrap(),
        "192.0.2.100:80".parse().unwrap()
    );
    assert!(matches!(
        rw8.bind("0.0.0.0:80".parse().unwrap()),
        Err(Refusal::NoConnectivity)
    ));
}

#[test]
fn address_source_is_object_safe_and_generic() {
    fn lease_all(src: &mut dyn AddressSource, n: u32) -> Vec<Ipv4Addr> {
        (1..=n)
            .map(|s| src.lease(Duration::ZERO, sid(s)).unwrap().addr())
            .collect()
    }
    let mut p = pool(&["192.0.2.0/29"], &[]).unwrap();
    assert_eq!(lease_all(&mut p, 3).len(), 3);
    let mut shared = ipvirt::SharedPool::new(pool(&["192.0.2.0/29"], &[]).unwrap());
    assert_eq!(lease_all(&mut shared, 6).len(), 6);
    assert_eq!(
        AddressSource::session_of(&shared, ip("192.0.2.1")),
        Some(sid(1))
    );
}

#[test]
fn reserved_blocks_are_refused() {
    for (entry, block) in [
        ("127.0.0.0/8", "loopback"),
        ("126.255.255.250-127.0.0.3", "loopback"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "240.0.0.0/4"),
        ("0.0.0.1", "this network"),
    ] {
        let err = pool(&[entry], &[]).unwrap_err();
        assert!(matches!(err, PoolError::Reserved { .. }), "{entry}: {err}");
        assert!(
            err.to_string().contains(entry.split('-').next().unwrap())
                && err.to_string().contains(block),
            "{err}"
        );
    }
}

#[test]
fn from_policy_leaves_out_the_adapter_addresses() {
    let policy = Policy::from_toml(
        "[virtual_ip]\nadapter = \"192.0.2.96/30\"\npool = [\"192.0.2.96-192.0.2.99\"]\n",
    )
    .unwrap();
    let mut p = StaticPool::from_policy(&policy.virtual_ip, &Host::default()).unwrap();
    // .96 is the adapter's own address and the network address, .99 the broadcast: .97 and .98 remain.
    assert_eq!(p.size(), 2);
    assert_eq!(
        [p.lease(sid(1)).unwrap(), p.lease(sid(2)).unwrap()],
        [ip("192.0.2.97"), ip("192.0.2.98")]
    );
}
