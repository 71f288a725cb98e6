//! `Policy::from_toml` on arbitrary text: never panics; a policy read writes out (`to_toml`) and
//! reads back as an equal policy, and validates and compiles without panicking.
#![no_main]

use ipvirt::{Host, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(policy) = Policy::from_toml(text) else {
        return;
    };
    let out = policy
        .to_toml()
        .unwrap_or_else(|e| panic!("a policy read from TOML does not write out: {e}"));
    assert_eq!(Policy::from_toml(&out).as_ref(), Ok(&policy), "{out}");
    let _ = policy.validate();
    let _ = policy.compile(Host::new(["192.0.2.10".parse().unwrap()]));
});
