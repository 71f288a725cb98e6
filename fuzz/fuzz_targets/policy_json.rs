//! serde_json into `Policy`: never panics; what reads writes back and reads as an equal policy;
//! it validates and compiles without panicking.
#![no_main]

use ipvirt::{Host, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = serde_json::from_slice::<Policy>(data) else {
        return;
    };
    let json = serde_json::to_string(&policy).unwrap();
    assert_eq!(
        serde_json::from_str::<Policy>(&json).unwrap(),
        policy,
        "{json}"
    );
    let _ = policy.validate();
    let _ = policy.compile(Host::default());
});
