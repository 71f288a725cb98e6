//! `Policy::from_reg` on arbitrary bytes: never panics; an imported policy validates and compiles
//! without panicking (it may still be refused with diagnostics or a compile error).
#![no_main]

use ipvirt::{Host, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(import) = Policy::from_reg(data) {
        let _ = import.policy.validate();
        let _ = import.policy.compile(Host::default());
        // What the import writes out reads back as the same policy.
        if let Ok(text) = import.policy.to_toml() {
            assert_eq!(
                Policy::from_toml(&text).as_ref(),
                Ok(&import.policy),
                "{text}"
            );
        }
    }
});
