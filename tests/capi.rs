//! The C ABI: the committed header matches the exported symbols, and the functions called from
//! Rust, with lengths no buffer can have and overlapping buffers. (C programs linking the static
//! library are the tests of `examples/capi`.)
#![cfg(feature = "capi")]
// Calling the C ABI from Rust needs unsafe blocks; each passes valid pointers and lengths.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ipvirt::capi::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn names_in(text: &str, pattern_start: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(pattern_start) {
        let rest = &text[i + pattern_start.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].trim_start().starts_with('(') {
            out.insert(format!("ipvirt_{name}"));
        }
    }
    out
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let raw = std::fs::read_to_string(root().join("src/ipvirt.h")).unwrap();
    // Declarations only: drop the /* ... */ comments.
    let mut header = String::new();
    let mut rest = raw.as_str();
    while let Some(start) = rest.find("/*") {
        header.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    header.push_str(rest);
    // Every file of src/capi/.
    let mut files: Vec<_> = std::fs::read_dir(root().join("src/capi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let source: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    // Declarations in the header: `ipvirt_xxx(` after a return type.
    let declared = names_in(&header, " ipvirt_")
        .union(&names_in(&header, "*ipvirt_"))
        .cloned()
        .collect::<BTreeSet<_>>();
    let exported = names_in(&source, "extern \"C\" fn ipvirt_");
    assert!(!exported.is_empty());
    assert_eq!(declared, exported, "header and src/capi/ disagree");
    // Every exported function is #[no_mangle].
    assert_eq!(
        source.matches("#[unsafe(no_mangle)]").count(),
        exported.len()
    );
    // The status values in the header are the frozen ones.
    for (name, value) in [
        ("IPVIRT_OK", 0),
        ("IPVIRT_NULL_ARGUMENT", 1),
        ("IPVIRT_BUFFER_TOO_SHORT", 5),
        ("IPVIRT_UNSUPPORTED_FAMILY", 7),
        ("IPVIRT_NO_CONNECTIVITY", 8),
        ("IPVIRT_ISOLATED", 9),
        ("IPVIRT_PANIC", 13),
        ("IPVIRT_OTHER_SESSION", 14),
        ("IPVIRT_NO_LOOPBACK", 15),
    ] {
        assert!(raw.contains(&format!("{name} = {value}")), "{name}");
    }
    assert_eq!(ipvirt_status::IPVIRT_NO_CONNECTIVITY as u32, 8);
    assert_eq!(ipvirt_status::IPVIRT_PANIC as u32, 13);
}

#[test]
fn the_same_functions_from_rust() {
    let policy = b"[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n";
    let mut engine: *mut ipvirt_engine = std::ptr::null_mut();
    let st = unsafe {
        ipvirt_engine_new(
            policy.as_ptr(),
            policy.len(),
            std::ptr::null(),
            0,
            &mut engine,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::zeroed();
    let st = unsafe { ipvirt_engine_process(engine, b"crm.exe".as_ptr(), 7, plan.as_mut_ptr()) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let plan = unsafe { plan.assume_init() };
    assert_eq!(
        (plan.loopback, plan.loopback_reason, plan.loopback_entry),
        (1, 3, 0)
    );
    let mut rw: *mut ipvirt_rewriter = std::ptr::null_mut();
    let st = unsafe { ipvirt_rewriter_new(engine, 7, 0, &plan, std::ptr::null(), 0, &mut rw) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    unsafe { ipvirt_engine_free(engine) };
    let mut sin = [2u8, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut changed = 0u32;
    let st = unsafe { ipvirt_rewriter_bind(rw, sin.as_mut_ptr(), sin.len(), 1, 0, &mut changed) };
    assert_eq!((st, changed, sin[7]), (ipvirt_status::IPVIRT_OK, 1, 8));
    let mut source = [0u8; 28];
    let (mut written, mut dchanged) = (0usize, 0u32);
    let mut dest = [2u8, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let st = unsafe {
        ipvirt_rewriter_connect(
            rw,
            dest.as_mut_ptr(),
            16,
            1,
            source.as_mut_ptr(),
            28,
            &mut written,
            &mut dchanged,
        )
    };
    assert_eq!(
        (st, written, dchanged, dest[7], source[7]),
        (ipvirt_status::IPVIRT_OK, 16, 1, 8, 8)
    );
    let mut buf = [0u8; 128];
    let mut needed = 0usize;
    let st = unsafe { ipvirt_status_message(9, buf.as_mut_ptr().cast(), buf.len(), &mut needed) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    assert!(String::from_utf8_lossy(&buf[..needed]).contains("ECONNREFUSED"));
    unsafe { ipvirt_rewriter_free(rw) };
}

/// A rewriter for session 7 (VIP 192.0.2.107) running `crm.exe`, which has virtual loopback.
fn rewriter() -> *mut ipvirt_rewriter {
    let policy = b"[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n";
    let mut engine: *mut ipvirt_engine = std::ptr::null_mut();
    let null = std::ptr::null_mut();
    let st = unsafe {
        ipvirt_engine_new(
            policy.as_ptr(),
            policy.len(),
            std::ptr::null(),
            0,
            &mut engine,
            null,
            0,
            null.cast(),
        )
    };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::zeroed();
    let st = unsafe { ipvirt_engine_process(engine, b"crm.exe".as_ptr(), 7, plan.as_mut_ptr()) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let plan = unsafe { plan.assume_init() };
    let mut rw: *mut ipvirt_rewriter = std::ptr::null_mut();
    let vip = [192u8, 0, 2, 107];
    let st = unsafe { ipvirt_rewriter_new(engine, 7, 0, &plan, vip.as_ptr(), 4, &mut rw) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    unsafe { ipvirt_engine_free(engine) };
    rw
}

const LOOPBACK_9000: [u8; 16] = [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Lengths above `isize::MAX`, with real (small) buffers: refused before any slice is built (a
/// debug build used to abort in `slice::from_raw_parts`), nothing written.
#[test]
fn lengths_no_buffer_can_have_are_invalid_arguments() {
    use ipvirt_status::*;
    let rw = rewriter();
    for huge in [isize::MAX as usize + 1, usize::MAX] {
        let mut a = LOOPBACK_9000;
        let mut source = [0x77u8; 28];
        let (mut changed, mut written) = (9u32, 99usize);
        let st = unsafe { ipvirt_rewriter_bind(rw, a.as_mut_ptr(), huge, 1, 0, &mut changed) };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        let st = unsafe { ipvirt_rewriter_reported(rw, a.as_mut_ptr(), huge, 1, &mut changed) };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        for (dest_len, source_len) in [(huge, 28), (16, huge)] {
            for f in [ipvirt_rewriter_connect, ipvirt_rewriter_sendto] {
                let st = unsafe {
                    f(
                        rw,
                        a.as_mut_ptr(),
                        dest_len,
                        1,
                        source.as_mut_ptr(),
                        source_len,
                        &mut written,
                        &mut changed,
                    )
                };
                assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
            }
        }
        assert_eq!(
            (a, source, changed, written),
            (LOOPBACK_9000, [0x77; 28], 9, 99)
        );

        let mut msg = [b'x'; 64];
        let mut needed = 99usize;
        let st = unsafe { ipvirt_status_message(0, msg.as_mut_ptr().cast(), huge, &mut needed) };
        assert_eq!((st, msg[0], needed), (IPVIRT_INVALID_ARGUMENT, b'x', 99));

        let policy = b"[virtual_loopback]\nenabled = true\n";
        let mut engine: *mut ipvirt_engine = std::ptr::null_mut();
        let st = unsafe {
            ipvirt_engine_new(
                policy.as_ptr(),
                huge,
                std::ptr::null(),
                0,
                &mut engine,
                msg.as_mut_ptr().cast(),
                msg.len(),
                &mut needed,
            )
        };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        assert!(engine.is_null());
        assert!(String::from_utf8_lossy(&msg).contains("policy_len"));
        let servers = [192u8, 0, 2, 10];
        let st = unsafe {
            ipvirt_engine_new(
                policy.as_ptr(),
                policy.len(),
                servers.as_ptr(),
                huge,
                &mut engine,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        // A huge error buffer: nothing is written at all, not even the length.
        let mut msg = [b'x'; 64];
        needed = 99;
        let st = unsafe {
            ipvirt_engine_new(
                b"bad".as_ptr(),
                3,
                std::ptr::null(),
                0,
                &mut engine,
                msg.as_mut_ptr().cast(),
                huge,
                &mut needed,
            )
        };
        assert_eq!((st, msg[0], needed), (IPVIRT_INVALID_ARGUMENT, b'x', 99));
        assert!(engine.is_null());

        let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::zeroed();
        let mut e: *mut ipvirt_engine = std::ptr::null_mut();
        let st = unsafe {
            ipvirt_engine_new(
                policy.as_ptr(),
                policy.len(),
                std::ptr::null(),
                0,
                &mut e,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, IPVIRT_OK);
        let st = unsafe { ipvirt_engine_process(e, b"crm.exe".as_ptr(), huge, plan.as_mut_ptr()) };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        let st = unsafe { ipvirt_engine_process(e, b"crm.exe".as_ptr(), 7, plan.as_mut_ptr()) };
        assert_eq!(st, IPVIRT_OK);
        let plan = unsafe { plan.assume_init() };
        let mut r: *mut ipvirt_rewriter = std::ptr::null_mut();
        let vip = [192u8, 0, 2, 107];
        let st = unsafe { ipvirt_rewriter_new(e, 7, 0, &plan, vip.as_ptr(), huge, &mut r) };
        assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
        assert!(r.is_null());
        unsafe { ipvirt_engine_free(e) };
    }
    unsafe { ipvirt_rewriter_free(rw) };
}

/// One buffer as both `dest` and `source` (it used to zero the destination port), or a scalar
/// output inside a buffer: refused with `IPVIRT_INVALID_ARGUMENT`, nothing written.
#[test]
fn overlapping_buffers_are_refused_and_left_alone() {
    use ipvirt_status::*;
    let rw = rewriter();
    for f in [ipvirt_rewriter_connect, ipvirt_rewriter_sendto] {
        let (mut changed, mut written) = (9u32, 99usize);
        // The same buffer, one inside the other, and a partial overlap.
        let mut buf = [0u8; 64];
        buf[..16].copy_from_slice(&LOOPBACK_9000);
        let before = buf;
        let p = buf.as_mut_ptr();
        for (dest, dest_len, source, source_len) in [
            (p, 16, p, 16),
            (p, 16, p, 28),
            (p, 16, unsafe { p.add(8) }, 28),
            (unsafe { p.add(8) }, 16, p, 28),
        ] {
            let st = unsafe {
                f(
                    rw,
                    dest,
                    dest_len,
                    1,
                    source,
                    source_len,
                    &mut written,
                    &mut changed,
                )
            };
            assert_eq!(st, IPVIRT_INVALID_ARGUMENT);
            assert_eq!((buf, changed, written), (before, 9, 99));
        }
        // Outputs inside the buffers.
        let mut source = [0x77u8; 28];
        let st = unsafe {
            f(
                rw,
                p,
                16,
                1,
                source.as_mut_ptr(),
                28,
                &mut written,
                source.as_mut_ptr().add(4).cast(),
            )
        };
        assert_eq!((st, source), (IPVIRT_INVALID_ARGUMENT, [0x77; 28]));
        let st = unsafe {
            f(
                rw,
                p,
                16,
                1,
                source.as_mut_ptr(),
                28,
                p.add(8).cast(),
                &mut changed,
            )
        };
        assert_eq!((st, buf), (IPVIRT_INVALID_ARGUMENT, before));
        // Adjacent buffers do not overlap: the call works.
        let st = unsafe { f(rw, p, 16, 1, p.add(16), 28, &mut written, &mut changed) };
        assert_eq!(st, IPVIRT_OK);
        assert_eq!(buf[..8], [2, 0, 0x23, 0x28, 127, 0, 0, 8]);
        assert_eq!(written, 16);
        assert_eq!(buf[16..24], [2, 0, 0, 0, 127, 0, 0, 8]); // bound to its own loopback first
    }
    let mut a = LOOPBACK_9000;
    let p = a.as_mut_ptr();
    let st = unsafe { ipvirt_rewriter_bind(rw, p, 16, 1, 0, p.add(4).cast()) };
    assert_eq!((st, a), (IPVIRT_INVALID_ARGUMENT, LOOPBACK_9000));
    let st = unsafe { ipvirt_rewriter_reported(rw, p, 16, 1, p.add(12).cast()) };
    assert_eq!((st, a), (IPVIRT_INVALID_ARGUMENT, LOOPBACK_9000));
    let mut msg = [0u8; 64];
    let st = unsafe {
        ipvirt_status_message(
            0,
            msg.as_mut_ptr().cast(),
            64,
            msg.as_mut_ptr().add(8).cast(),
        )
    };
    assert_eq!((st, msg), (IPVIRT_INVALID_ARGUMENT, [0; 64]));
    unsafe { ipvirt_rewriter_free(rw) };
}

/// The test-only panic (feature `capi-test-panic`): the call returns `IPVIRT_PANIC`, writes
/// nothing, and the next call works.
#[cfg(feature = "capi-test-panic")]
#[test]
fn a_panic_becomes_ipvirt_panic_from_rust() {
    use ipvirt_status::*;
    let rw = rewriter();
    let mut a = LOOPBACK_9000;
    let mut changed = 9u32;
    ipvirt_test_arm_panic();
    let st = unsafe { ipvirt_rewriter_bind(rw, a.as_mut_ptr(), 16, 1, 0, &mut changed) };
    assert_eq!((st, a, changed), (IPVIRT_PANIC, LOOPBACK_9000, 9));
    let mut source = [0x77u8; 28];
    let mut written = 99usize;
    ipvirt_test_arm_panic();
    let st = unsafe {
        ipvirt_rewriter_connect(
            rw,
            a.as_mut_ptr(),
            16,
            1,
            source.as_mut_ptr(),
            28,
            &mut written,
            &mut changed,
        )
    };
    assert_eq!(
        (st, a, source, written, changed),
        (IPVIRT_PANIC, LOOPBACK_9000, [0x77; 28], 99, 9)
    );
    let st = unsafe { ipvirt_rewriter_bind(rw, a.as_mut_ptr(), 16, 1, 0, &mut changed) };
    assert_eq!((st, a[7], changed), (IPVIRT_OK, 8, 1));
    unsafe { ipvirt_rewriter_free(rw) };
}
