//! The C ABI's policy formats and validation from Rust: what a C caller gets for JSON, `.reg` and
//! TOML input, the diagnostics list read by index, and the argument checks (lengths no buffer can
//! have, outputs inside inputs, NULLs). tests/capi/smoke.c runs the same calls from C.
#![cfg(feature = "capi")]
// Calling the C ABI from Rust needs unsafe blocks; each passes valid pointers and lengths.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use ipvirt::capi::ipvirt_status::*;
use ipvirt::capi::*;
use ipvirt::{DiagnosticCode, Policy};

fn validate(format: u32, text: &[u8]) -> Result<Vec<(u32, u32, String, String)>, String> {
    let mut list: *mut ipvirt_diagnostics = null_mut();
    let mut err = [0u8; 512];
    let mut needed = 0usize;
    let st = unsafe {
        ipvirt_policy_validate(
            format,
            text.as_ptr(),
            text.len(),
            null(),
            0,
            &mut list,
            err.as_mut_ptr().cast(),
            err.len(),
            &mut needed,
        )
    };
    if st != IPVIRT_OK {
        assert!(list.is_null());
        let msg = CStr::from_bytes_until_nul(&err).unwrap().to_str().unwrap();
        assert_eq!(msg.len(), needed);
        return Err(format!("{st:?}: {msg}"));
    }
    let mut n = 0usize;
    assert_eq!(unsafe { ipvirt_diagnostics_count(list, &mut n) }, IPVIRT_OK);
    let mut out = Vec::new();
    for i in 0..n {
        let mut d = std::mem::MaybeUninit::<ipvirt_diagnostic>::uninit();
        assert_eq!(
            unsafe { ipvirt_diagnostics_get(list, i, d.as_mut_ptr()) },
            IPVIRT_OK
        );
        let d = unsafe { d.assume_init() };
        let name = unsafe { CStr::from_ptr(d.code_name) }.to_str().unwrap();
        let msg = unsafe { CStr::from_ptr(d.message) }.to_str().unwrap();
        assert_eq!(msg.len(), d.message_len);
        out.push((d.severity, d.code, name.to_string(), msg.to_string()));
    }
    let mut d = std::mem::MaybeUninit::<ipvirt_diagnostic>::uninit();
    assert_eq!(
        unsafe { ipvirt_diagnostics_get(list, n, d.as_mut_ptr()) },
        IPVIRT_INVALID_ARGUMENT
    );
    unsafe { ipvirt_diagnostics_free(list) };
    Ok(out)
}

/// The list is the Rust `validate`, diagnostic for diagnostic: same order, codes, severities and
/// sentences.
#[test]
fn validate_lists_what_policy_validate_says() {
    let text = "[virtual_ip]\nenabled = true\nprograms = [\"a.exe\", \"A.EXE\"]\n\
                [prefer_loopback]\nenabled = true\nprocesses = [\"b*.exe\"]\n";
    let expected = Policy::from_toml(text).unwrap().validate();
    assert!(expected.len() >= 3);
    let got = validate(0, text.as_bytes()).unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.0, e.severity as u32);
        assert_eq!(g.2, e.code.as_str());
        assert_eq!(g.3, e.message);
    }
    assert!(
        got.iter()
            .any(|g| g.1 == 8 && g.2 == DiagnosticCode::VipNoAdapter.as_str())
    );
    // The same policy as JSON gives the same list.
    let json = serde_json::to_string(&Policy::from_toml(text).unwrap()).unwrap();
    assert_eq!(validate(1, json.as_bytes()).unwrap(), got);
}

#[test]
fn reg_import_diagnostics_come_first_and_bad_input_is_named() {
    let reg = "Windows Registry Editor Version 5.00\r\n\r\n\
        [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n\
        \"EnableVirtualIP\"=dword:00000001\r\n\"VirtualMode\"=dword:00000005\r\n\"Colour\"=\"blue\"\r\n";
    let got = validate(2, reg.as_bytes()).unwrap();
    let import = Policy::from_reg(reg.as_bytes()).unwrap().diagnostics;
    assert!(!import.is_empty());
    for (g, e) in got.iter().zip(&import) {
        assert_eq!(
            (g.2.as_str(), g.3.as_str()),
            (e.code.as_str(), e.message.as_str())
        );
    }
    assert!(
        got.iter()
            .any(|g| g.2 == "reg-bad-value" && g.3.contains("VirtualMode"))
    );
    // Unreadable input in each format, and an unknown format: the reason, not a silent default.
    let e = validate(0, b"[virtual_ip]\nadapter = \"192.0.2.0/33\"\n").unwrap_err();
    assert!(e.starts_with("IPVIRT_POLICY_ERROR: policy line 2"), "{e}");
    let e = validate(1, b"{\"virtual_ip\": {\"adapter\": 5}}").unwrap_err();
    assert!(e.starts_with("IPVIRT_POLICY_ERROR: policy JSON"), "{e}");
    let e = validate(2, b"hello").unwrap_err();
    assert!(e.starts_with("IPVIRT_POLICY_ERROR"), "{e}");
    let e = validate(3, b"").unwrap_err();
    assert!(e.contains("format 3 is not"), "{e}");
    let e = validate(0, b"\xff\xfe").unwrap_err();
    assert!(e.starts_with("IPVIRT_INVALID_UTF8"), "{e}");
}

/// A NUL inside a sentence (from a program name) is written as `\0`: the C string is the whole
/// sentence.
#[test]
fn a_nul_in_a_message_is_escaped() {
    let text = "[virtual_loopback]\nenabled = true\nprograms = [\"a*\\u0000.exe\"]\n";
    let got = validate(0, text.as_bytes()).unwrap();
    let w = got.iter().find(|g| g.2 == "program-wildcard").unwrap();
    assert!(w.3.contains("a*\\0.exe"), "{}", w.3);
}

#[test]
fn engines_from_json_and_reg_and_the_argument_checks() {
    type New = unsafe extern "C" fn(
        *const u8,
        usize,
        *const u8,
        usize,
        *mut *mut ipvirt_engine,
        *mut std::ffi::c_char,
        usize,
        *mut usize,
    ) -> ipvirt_status;
    let reg = "Windows Registry Editor Version 5.00\r\n\r\n\
        [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n\
        \"EnableVirtualIP\"=dword:00000001\r\n\"VirtualMode\"=dword:00000000\r\n\"VIPAdapter\"=\"192.0.2.0/24\"\r\n";
    // regedit writes UTF-16LE with a byte-order mark.
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(reg.encode_utf16().flat_map(u16::to_le_bytes));
    let json = br#"{"virtual_loopback": {"enabled": true, "programs": ["crm.exe"]}}"#;
    let cases: [(New, &[u8], &[u8], u8); 3] = [
        (ipvirt_engine_new_json, json, b"crm.exe", 1),
        (ipvirt_engine_new_reg, reg.as_bytes(), b"x.exe", 2),
        (ipvirt_engine_new_reg, &utf16, b"x.exe", 2),
    ];
    for (new, text, image, which) in cases {
        let mut e: *mut ipvirt_engine = null_mut();
        let st = unsafe {
            new(
                text.as_ptr(),
                text.len(),
                null(),
                0,
                &mut e,
                null_mut(),
                0,
                null_mut(),
            )
        };
        assert_eq!(st, IPVIRT_OK);
        let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::zeroed();
        let st =
            unsafe { ipvirt_engine_process(e, image.as_ptr(), image.len(), plan.as_mut_ptr()) };
        assert_eq!(st, IPVIRT_OK);
        let plan = unsafe { plan.assume_init() };
        match which {
            1 => assert_eq!((plan.loopback, plan.loopback_reason), (1, 3)),
            _ => assert_eq!((plan.virtual_ip, plan.virtual_ip_reason), (1, 2)),
        }
        unsafe { ipvirt_engine_free(e) };

        // A length no buffer can have, an output inside the input, NULL out: refused, nothing
        // written.
        let mut e: *mut ipvirt_engine = null_mut();
        let mut msg = [b'x'; 64];
        let mut needed = 99usize;
        let huge = isize::MAX as usize + 1;
        let st = unsafe {
            new(
                text.as_ptr(),
                text.len(),
                null(),
                0,
                &mut e,
                msg.as_mut_ptr().cast(),
                huge,
                &mut needed,
            )
        };
        assert_eq!(
            (st, msg[0], needed, e.is_null()),
            (IPVIRT_INVALID_ARGUMENT, b'x', 99, true)
        );
        let mut buf = text.to_vec();
        let st = unsafe {
            new(
                buf.as_ptr(),
                buf.len(),
                null(),
                0,
                &mut e,
                buf.as_mut_ptr().add(2).cast(),
                8,
                null_mut(),
            )
        };
        assert_eq!(
            (st, &buf[..], e.is_null()),
            (IPVIRT_INVALID_ARGUMENT, text, true)
        );
        let st = unsafe {
            new(
                text.as_ptr(),
                text.len(),
                null(),
                0,
                null_mut(),
                msg.as_mut_ptr().cast(),
                msg.len(),
                &mut needed,
            )
        };
        assert_eq!(st, IPVIRT_NULL_ARGUMENT);
        // The same text to validate: the output list inside the input is refused too.
        let st = unsafe {
            ipvirt_policy_validate(
                u32::from(which),
                buf.as_ptr(),
                buf.len(),
                null(),
                0,
                buf.as_mut_ptr().add(8).cast(),
                null_mut(),
                0,
                null_mut(),
            )
        };
        assert_eq!((st, &buf[..]), (IPVIRT_INVALID_ARGUMENT, text));
    }
}

/// The DHCP source's codes have frozen numbers too (28-32, appended).
#[test]
fn dhcp_diagnostics_have_their_numbers() {
    let text = "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nsource = \"dhcp\"\npool = [\"192.0.2.100\"]\n\
                [virtual_ip.dhcp]\ninterface = \"a/b\"\nclient_id_prefix = \"\"\n";
    let got = validate(0, text.as_bytes()).unwrap();
    let codes: Vec<(u32, &str)> = got.iter().map(|(_, c, n, _)| (*c, n.as_str())).collect();
    for want in [
        (29, "vip-dhcp-bad-interface"),
        (30, "vip-dhcp-bad-prefix"),
        (31, "vip-dhcp-pool-ignored"),
    ] {
        assert!(codes.contains(&want), "{want:?} not in {codes:?}");
    }
    let text = "[virtual_ip]\nenabled = true\nsource = \"dhcp\"\n";
    let got = validate(0, text.as_bytes()).unwrap();
    assert!(
        got.iter()
            .any(|(_, c, n, _)| *c == 28 && n == "vip-dhcp-no-interface"),
        "{got:?}"
    );
    let text = "[virtual_ip.dhcp]\ninterface = \"eth1\"\n";
    let got = validate(0, text.as_bytes()).unwrap();
    assert!(
        got.iter()
            .any(|(_, c, n, _)| *c == 32 && n == "vip-dhcp-settings-ignored"),
        "{got:?}"
    );
}
