//! serde_json into `PoolSnapshot`, restored into a small pool: never panics; a snapshot the pool
//! accepts round-trips (restore, snapshot, restore again gives the same snapshot and leases).
#![no_main]

use ipvirt::{Host, PoolEntry, PoolSnapshot, StaticPool};
use libfuzzer_sys::fuzz_target;

fn pool() -> StaticPool {
    let entries: Vec<PoolEntry> = ["192.0.2.100-192.0.2.115", "198.51.100.7"]
        .iter()
        .map(|e| e.parse().unwrap())
        .collect();
    StaticPool::new(&entries, &Host::default()).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = serde_json::from_slice::<PoolSnapshot>(data) else {
        return;
    };
    let mut p = pool();
    if p.restore(&snapshot).is_err() {
        return;
    }
    let first = p.snapshot();
    let mut q = pool();
    q.restore(&first).unwrap();
    assert_eq!(q.snapshot(), first);
    assert_eq!(q.leases(), p.leases());
    assert_eq!(q.leased(), p.leased());
    // The round trip through JSON keeps it too.
    let json = serde_json::to_string(&first).unwrap();
    assert_eq!(serde_json::from_str::<PoolSnapshot>(&json).unwrap(), first);
});
