//! Random sequences of lease and release against an independent model: no address is ever leased
//! to two sessions, none is lost, and after releasing everything the pool is whole again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipvirt::{Host, LeaseError, PoolEntry, SessionId, StaticPool};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Lease(u32),
    Release(u32),
    SnapshotRestore,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            5 => (0u32..24).prop_map(Op::Lease),
            4 => (0u32..24).prop_map(Op::Release),
            1 => Just(Op::SnapshotRestore),
        ],
        0..200,
    )
}

fn entries() -> impl Strategy<Value = (Vec<PoolEntry>, Vec<Ipv4Addr>)> {
    // A few overlapping pieces of 192.0.2.0/26 and some server addresses inside it.
    let piece = (0u8..64, 0u8..8).prop_map(|(a, n)| PoolEntry::Range {
        first: Ipv4Addr::new(192, 0, 2, a),
        last: Ipv4Addr::new(192, 0, 2, a.saturating_add(n).min(63)),
    });
    (
        prop::collection::vec(piece, 1..5),
        prop::collection::vec((0u8..64).prop_map(|h| Ipv4Addr::new(192, 0, 2, h)), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn leases_never_collide_and_nothing_is_lost((es, servers) in entries(), ops in ops()) {
        let host = Host::new(servers.iter().map(|&a| a.into()));
        let Ok(mut pool) = StaticPool::new(&es, &host) else { return Ok(()) };
        // The model: the set of addresses the entries cover, less the servers.
        let all: BTreeSet<Ipv4Addr> = es.iter()
            .flat_map(|e| (e.first().to_bits()..=e.last().to_bits()).map(Ipv4Addr::from_bits))
            .filter(|a| !servers.contains(a))
            .collect();
        prop_assert_eq!(pool.size() as usize, all.len());
        let mut live: BTreeMap<u32, Ipv4Addr> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Lease(s) => match pool.lease(SessionId::new(s)).map(Ipv4Addr::from) {
                    Ok(a) => {
                        prop_assert!(all.contains(&a), "{} is not in the pool", a);
                        if let Some(&held) = live.get(&s) {
                            prop_assert_eq!(held, a, "session {} changed address", s);
                        } else {
                            prop_assert!(!live.values().any(|&x| x == a), "{} leased twice", a);
                            live.insert(s, a);
                        }
                    }
                    Err(LeaseError::Exhausted { .. }) => {
                        prop_assert!(!live.contains_key(&s));
                        prop_assert_eq!(live.len(), all.len(), "exhausted with free addresses");
                    }
                    Err(e) => prop_assert!(false, "unexpected {}", e),
                },
                Op::Release(s) => {
                    prop_assert_eq!(pool.release(SessionId::new(s)).map(Ipv4Addr::from), live.remove(&s));
                }
                Op::SnapshotRestore => {
                    let snap = pool.snapshot();
                    let mut fresh = StaticPool::new(&es, &host).unwrap();
                    fresh.restore(&snap).unwrap();
                    pool = fresh;
                }
            }
            prop_assert_eq!(pool.leased() as usize, live.len());
            prop_assert_eq!(pool.available() as usize, all.len() - live.len());
            for (&s, &a) in &live {
                prop_assert_eq!(pool.session_of(a), Some(SessionId::new(s)));
                prop_assert_eq!(pool.address_of(SessionId::new(s)).map(Ipv4Addr::from), Some(a));
            }
        }
        // Release everything: the pool is whole again, every address can be leased once more.
        for s in live.keys() {
            pool.release(SessionId::new(*s));
        }
        prop_assert_eq!(pool.available() as usize, all.len());
        let again: BTreeSet<Ipv4Addr> = (1000..1000 + all.len() as u32)
            .map(|s| pool.lease(SessionId::new(s)).unwrap().addr())
            .collect();
        prop_assert_eq!(again, all);
    }

    #[test]
    fn pool_entries_parse_display_round_trip(a in any::<u32>(), n in 0u32..1000, prefix in 0u8..=32, kind in 0u8..3) {
        let e = match kind {
            0 => PoolEntry::Range { first: Ipv4Addr::from_bits(a), last: Ipv4Addr::from_bits(a.saturating_add(n)) },
            1 => PoolEntry::Range { first: Ipv4Addr::from_bits(a), last: Ipv4Addr::from_bits(a) },
            _ => PoolEntry::Net(ipnet::Ipv4Net::new(Ipv4Addr::from_bits(a), prefix).unwrap().trunc()),
        };
        prop_assert_eq!(e.to_string().parse::<PoolEntry>().unwrap(), e);
    }

    #[test]
    fn pool_entry_parser_never_panics(s in "\\PC{0,40}") {
        let _ = s.parse::<PoolEntry>();
    }
}
