//! `.reg` import against fixtures in regedit's byte format (tests/fixtures/reg/make.py writes them).

use ipvirt::{DiagnosticCode as C, LeaseFailure, Origin, Policy, RegError, Severity, VipMode};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/reg/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn regedit_export_utf16_bom_crlf_multiline_hex7() {
    let bytes = fixture("regedit-export.reg");
    assert_eq!(
        &bytes[..2],
        &[0xFF, 0xFE],
        "the fixture is UTF-16LE with a BOM"
    );
    let import = Policy::from_reg(&bytes).unwrap();
    let p = &import.policy;
    assert!(p.virtual_ip.enabled);
    assert_eq!(p.virtual_ip.mode, VipMode::PerProgram);
    assert_eq!(
        p.virtual_ip.programs,
        [
            "crm.exe",
            r"C:\Program Files\Contoso\CTI\cti.exe",
            "licmgr.exe"
        ]
    );
    assert_eq!(p.virtual_ip.adapter, Some("192.0.2.96/24".parse().unwrap()));
    assert_eq!(
        p.virtual_ip.on_lease_failure,
        LeaseFailure::UseServerAddress
    );
    assert!(p.prefer_loopback.enabled);
    assert_eq!(
        p.prefer_loopback.processes,
        ["crm.exe", "cti.exe", "報告.exe"]
    );
    // Not in the registry: left at their defaults.
    assert!(!p.virtual_loopback.enabled);
    assert!(p.virtual_ip.pool.is_empty());
    // No value names the source: Microsoft's own is DHCP, on the adapter VIPAdapter selects.
    assert_eq!(p.virtual_ip.source, ipvirt::VipSource::Dhcp);
    assert_eq!(p.virtual_ip.dhcp, ipvirt::DhcpSettings::default());
    assert!(
        !p.validate()
            .iter()
            .any(|d| d.code == C::VipNoPool || d.code == C::VipDhcpNoInterface),
        "{:#?}",
        p.validate()
    );
    assert_eq!(import.origins.enabled, Some(Origin::Local));
    assert_eq!(import.origins.programs, Some(Origin::Local));
    // The value ipvirt does not know is reported, not an error.
    assert_eq!(import.diagnostics.len(), 1, "{:#?}", import.diagnostics);
    let d = &import.diagnostics[0];
    assert_eq!((d.code, d.severity), (C::RegUnknownValue, Severity::Info));
    assert!(
        d.message.contains("SomethingNew") && d.message.contains("line 13"),
        "{d}"
    );
}

#[test]
fn policy_key_wins_over_local_key_value_by_value() {
    let import = Policy::from_reg(&fixture("both-keys.reg")).unwrap();
    let (p, o) = (&import.policy, &import.origins);
    assert!(p.virtual_ip.enabled, "group policy says 1, local says 0");
    assert_eq!(o.enabled, Some(Origin::GroupPolicy));
    assert_eq!(p.virtual_ip.mode, VipMode::PerSession);
    assert_eq!(o.mode, Some(Origin::GroupPolicy));
    assert_eq!(
        p.virtual_ip.adapter,
        Some("198.51.100.0/24".parse().unwrap())
    );
    assert_eq!(o.adapter, Some(Origin::GroupPolicy));
    // Only the local key has these: they come from it.
    assert_eq!(p.virtual_ip.programs, ["local-only.exe"]);
    assert_eq!(o.programs, Some(Origin::Local));
    assert_eq!(p.virtual_ip.on_lease_failure, LeaseFailure::NoConnectivity);
    assert_eq!(o.on_lease_failure, Some(Origin::Local));
    assert!(import.diagnostics.is_empty());
}

#[test]
fn regedit4_ansi_short_names_comments() {
    let import = Policy::from_reg(&fixture("regedit4.reg")).unwrap();
    assert!(import.policy.prefer_loopback.enabled);
    assert_eq!(
        import.policy.prefer_loopback.processes,
        ["crm.exe", "café.exe"]
    );
    assert_eq!(import.origins.enabled, None);
}

#[test]
fn deleted_keys_and_values() {
    let import = Policy::from_reg(&fixture("deletions.reg")).unwrap();
    // The group-policy key was deleted after its values were set: the local key applies…
    assert!(import.policy.virtual_ip.enabled);
    assert_eq!(import.origins.enabled, Some(Origin::Local));
    // …whose VIPAdapter was deleted in turn: no adapter at all.
    assert_eq!(import.policy.virtual_ip.adapter, None);
    assert_eq!(import.origins.adapter, None);
}

#[test]
fn malformed_line_is_an_error_naming_it() {
    let err = Policy::from_reg(&fixture("malformed.reg")).unwrap_err();
    match &err {
        RegError::Malformed { line, text, .. } => {
            assert_eq!(*line, 5);
            assert!(text.contains("PreferLoopbackProcesses"));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().starts_with("registry file line 5: "),
        "{err}"
    );
}

#[test]
fn unusable_values_are_diagnostics() {
    let import = Policy::from_reg(&fixture("bad-values.reg")).unwrap();
    let d = &import.diagnostics;
    let has = |code: C, words: &[&str]| {
        d.iter()
            .any(|x| x.code == code && words.iter().all(|w| x.message.contains(w)))
    };
    assert!(
        has(
            C::RegWrongType,
            &["line 4", "EnableVirtualIP", "REG_DWORD", "REG_SZ"]
        ),
        "{d:#?}"
    );
    assert!(
        has(C::RegBadValue, &["line 5", "VirtualMode = 5"]),
        "{d:#?}"
    );
    assert!(has(C::RegBadValue, &["line 6", "not-a-network"]), "{d:#?}");
    assert!(
        has(C::RegBadValue, &["line 7", "PromptOnIPLeaseFail = 7"]),
        "{d:#?}"
    );
    // Ignored values leave the defaults; a DWORD other than 0/1 reads as on, as Windows does.
    assert!(!import.policy.virtual_ip.enabled);
    assert_eq!(import.policy.virtual_ip.mode, VipMode::PerProgram);
    assert_eq!(import.policy.virtual_ip.adapter, None);
    assert_eq!(
        import.policy.virtual_ip.on_lease_failure,
        LeaseFailure::NoConnectivity
    );
}

#[test]
fn header_and_line_errors() {
    let cases: [(&[u8], usize); 8] = [
        (b"", 1),
        (b"hello\r\n", 1),
        (b"\r\n\r\nREGEDIT5\r\n", 3),
        (b"REGEDIT4\r\n\"A\"=dword:1\r\n", 2), // a value before any key
        (b"REGEDIT4\r\n[HKLM\\X\r\n", 2),      // no closing bracket
        (b"REGEDIT4\r\n[HKLM\\X]\r\n\"A\"=hex:1,22\r\n", 3), // one-digit byte
        (b"REGEDIT4\r\n[HKLM\\X]\r\n\"A\"=dword:123456789\r\n", 3), // nine digits
        (b"REGEDIT4\r\n[HKLM\\X]\r\n\"A=\"x\"\r\n", 3), // broken quoting
    ];
    for (bytes, line) in cases {
        let err = Policy::from_reg(bytes).unwrap_err();
        let got = match err {
            RegError::Header { line, .. } | RegError::Malformed { line, .. } => line,
            ref other => panic!("{other}"),
        };
        assert_eq!(got, line, "{:?}: {err}", String::from_utf8_lossy(bytes));
    }
    assert_eq!(
        Policy::from_reg(&[0xFF, 0xFE, 0x41]).unwrap_err(),
        RegError::Utf16 { offset: 2 }
    );
    assert!(matches!(
        Policy::from_reg(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00]),
        Err(RegError::Utf16 { .. })
    ));
    // The offset is in bytes: a surrogate pair before the bad unit counts as four.
    assert_eq!(
        Policy::from_reg(&[0xFF, 0xFE, 0x3D, 0xD8, 0x00, 0xDE, 0x00, 0xD8, 0x41, 0x00]),
        Err(RegError::Utf16 { offset: 6 })
    );
    assert_eq!(
        Policy::from_reg(&[0xFE, 0xFF, 0x00, 0x41, 0xDC, 0x00]),
        Err(RegError::Utf16 { offset: 4 })
    );
}

#[test]
fn utf8_bom_lf_default_values_and_escapes() {
    let text = "\u{feff}Windows Registry Editor Version 5.00\n\n\
        [HKEY_LOCAL_MACHINE\\SOFTWARE\\Wow6432Node\\Citrix\\VIP]\n\
        @=\"default\"\n\
        \"PreferLoopbackProcesses\"=\"C:\\\\Apps\\\\say \\\"hi\\\".exe\"\n";
    let import = Policy::from_reg(text.as_bytes()).unwrap();
    assert_eq!(
        import.policy.prefer_loopback.processes,
        [r#"C:\Apps\say "hi".exe"#]
    );
    assert!(
        import
            .diagnostics
            .iter()
            .any(|d| d.code == C::RegUnknownValue && d.message.contains("@"))
    );
}

#[test]
fn ipv6_loopback_extension_value() {
    let reg = |v: &str| {
        format!(
            "Windows Registry Editor Version 5.00\r\n\r\n\
             [HKEY_LOCAL_MACHINE\\SOFTWARE\\Wow6432Node\\Citrix\\VIP]\r\n\
             \"IpvirtIpv6Loopback\"={v}\r\n"
        )
    };
    let on = Policy::from_reg(reg("dword:00000001").as_bytes()).unwrap();
    assert_eq!(on.policy.virtual_loopback.ipv6, ipvirt::Ipv6Loopback::Map);
    assert!(on.diagnostics.iter().all(|d| d.code != C::RegUnknownValue));
    let off = Policy::from_reg(reg("dword:00000000").as_bytes()).unwrap();
    assert_eq!(
        off.policy.virtual_loopback.ipv6,
        ipvirt::Ipv6Loopback::Unchanged
    );
    let odd = Policy::from_reg(reg("dword:00000002").as_bytes()).unwrap();
    assert_eq!(odd.policy.virtual_loopback.ipv6, ipvirt::Ipv6Loopback::Map);
    assert!(odd.diagnostics.iter().any(|d| d.code == C::RegBadValue));
    // The same setting in JSON and TOML.
    let json: Policy = serde_json::from_str(r#"{"virtual_loopback":{"ipv6":"map"}}"#).unwrap();
    assert_eq!(json.virtual_loopback.ipv6, ipvirt::Ipv6Loopback::Map);
    assert!(serde_json::from_str::<Policy>(r#"{"virtual_loopback":{"ipv6":"yes"}}"#).is_err());
    let toml = Policy::from_toml(&json.to_toml().unwrap()).unwrap();
    assert_eq!(toml, json);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Policy::from_reg(&bytes);
        let mut with_header = b"Windows Registry Editor Version 5.00\r\n[HKLM\\SOFTWARE\\Wow6432Node\\Citrix\\VIP]\r\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = Policy::from_reg(&with_header);
    }

    #[test]
    fn arbitrary_lines_never_panic(lines in prop::collection::vec("[\"@=\\[\\]\\\\a-z0-9:,() \\-;]{0,40}", 0..12)) {
        let text = format!("REGEDIT4\r\n[HKLM\\SOFTWARE\\Wow6432Node\\Citrix\\VIP]\r\n{}", lines.join("\r\n"));
        let _ = Policy::from_reg(text.as_bytes());
    }
}
