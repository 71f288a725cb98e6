//! The panic boundary: every C entry point runs its body inside [`guard`], so a panic reaches C
//! as `IPVIRT_PANIC` and never unwinds across the boundary; and the test-only switch that makes
//! the next call panic (feature `capi-test-panic`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::status::ipvirt_status::{self, *};

/// Runs `f`, turning a panic into `IPVIRT_PANIC`.
pub(super) fn guard(f: impl FnOnce() -> ipvirt_status) -> ipvirt_status {
    catch_unwind(AssertUnwindSafe(|| {
        #[cfg(feature = "capi-test-panic")]
        test_panic::maybe_panic();
        f()
    }))
    .unwrap_or(IPVIRT_PANIC)
}

/// The test-only way to make a C ABI call panic (cargo feature `capi-test-panic`): proves that a
/// panic inside any call becomes `IPVIRT_PANIC`, writes nothing and leaves the process running.
#[cfg(feature = "capi-test-panic")]
mod test_panic {
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn arm() {
        ARMED.with(|a| a.set(true));
    }

    /// Panics (once) if [`arm`] was called on this thread since the last panic.
    #[allow(
        clippy::panic,
        reason = "the deliberate panic of the capi-test-panic feature"
    )]
    pub(super) fn maybe_panic() {
        if ARMED.with(|a| a.replace(false)) {
            panic!("ipvirt: the panic armed by ipvirt_test_arm_panic (capi-test-panic)");
        }
    }
}

/// Test only (cargo feature `capi-test-panic`, never in a release build): the next C ABI call on
/// the calling thread that returns an [`ipvirt_status`] panics inside its `catch_unwind` guard, so
/// a test can check that it returns `IPVIRT_PANIC`, writes nothing and leaves the process and the
/// library usable.
#[cfg(feature = "capi-test-panic")]
#[doc(hidden)]
#[unsafe(no_mangle)]
pub extern "C" fn ipvirt_test_arm_panic() {
    test_panic::arm();
}
