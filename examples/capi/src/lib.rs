//! The core's C ABI (`ipvirt::capi`) linked into a static library, with the test-only panic
//! switch (`capi-test-panic`), for the C programs of `tests/`. Not what users install: the C
//! library is built from the core with cargo-c (`cargo cinstall`, see the README), without the
//! switch.

pub use ipvirt::capi;
