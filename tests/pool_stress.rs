//! Several threads lease and release concurrently through a `SharedPool`; afterwards no address was
//! ever held by two sessions at once and the pool is whole again. Bounded by iterations and time.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvirt::{Host, SessionId, SharedPool, StaticPool};

#[test]
fn concurrent_lease_and_release() {
    let pool = Arc::new(SharedPool::new(
        StaticPool::new(&["192.0.2.0/26".parse().unwrap()], &Host::default()).unwrap(),
    ));
    let size = 62;
    // Who holds each address, as the threads observe it: claimed after a lease, cleared before a release.
    let holders: Arc<Mutex<HashMap<Ipv4Addr, u32>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    let threads: Vec<_> = (0..6u32)
        .map(|t| {
            let (pool, holders) = (Arc::clone(&pool), Arc::clone(&holders));
            std::thread::spawn(move || {
                let mut rng = 0x9E37_79B9u32.wrapping_mul(t + 1);
                let mut mine: Vec<u32> = Vec::new();
                for _ in 0..20_000 {
                    if Instant::now() > deadline {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 17;
                    rng ^= rng << 5;
                    // Each thread owns the sessions t*1000 .. t*1000+30.
                    let s = t * 1000 + rng % 30;
                    if !rng.is_multiple_of(3) {
                        if let Ok(a) = pool.lease(SessionId::new(s)).map(Ipv4Addr::from) {
                            let mut h = holders.lock().unwrap();
                            match h.get(&a) {
                                Some(&other) => assert_eq!(other, s, "{a} held by {other} and {s}"),
                                None => {
                                    h.insert(a, s);
                                    mine.push(s);
                                }
                            }
                        }
                    } else if let Some(pos) = mine.iter().position(|&m| m == s) {
                        mine.swap_remove(pos);
                        let a = pool.address_of(SessionId::new(s)).unwrap().addr();
                        assert_eq!(holders.lock().unwrap().remove(&a), Some(s));
                        assert_eq!(pool.release(SessionId::new(s)).map(Ipv4Addr::from), Some(a));
                    }
                }
                for s in mine {
                    let a = pool.address_of(SessionId::new(s)).unwrap().addr();
                    holders.lock().unwrap().remove(&a);
                    pool.release(SessionId::new(s));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(holders.lock().unwrap().is_empty());
    pool.lock(|p| {
        assert_eq!(p.leased(), 0);
        assert_eq!(p.available(), size);
    });
    let all: std::collections::BTreeSet<Ipv4Addr> = (0..size)
        .map(|s| pool.lease(SessionId::new(90_000 + s)).unwrap().addr())
        .collect();
    assert_eq!(all.len(), size as usize);
}
