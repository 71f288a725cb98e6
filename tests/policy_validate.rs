//! `Policy::validate`: one test per diagnostic (it fires on the bad policy, naming the setting and
//! value), and realistic good policies yield none.

use ipvirt::{DiagnosticCode as C, Host, Policy, Severity};

const GOOD: &str = r#"
platform = "windows-server-2016"
[virtual_loopback]
enabled = true
programs = ["crm.exe", 'C:\Apps\cti.exe']
excluded_ports = [27000]
[virtual_ip]
enabled = true
mode = "per-program"
programs = ["crm.exe"]
adapter = "192.0.2.0/24"
pool = ["192.0.2.100-192.0.2.199"]
[prefer_loopback]
enabled = true
processes = ["crm.exe"]
"#;

/// Asserts that `toml` yields the diagnostic `code` with `severity`, whose text holds each of `words`.
fn fires(toml: &str, code: C, severity: Severity, words: &[&str]) {
    let policy = Policy::from_toml(toml).unwrap();
    let all = policy.validate_for(&Host::new(["192.0.2.10".parse().unwrap()]));
    let d = all
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("{code} did not fire: {all:#?}"));
    assert_eq!(d.severity, severity, "{d}");
    for w in words {
        assert!(d.to_string().contains(w), "{d} lacks {w:?}");
    }
    assert!(
        d.to_string()
            .starts_with(&format!("{severity}[{}]: ", code.as_str())),
        "{d}"
    );
}

#[test]
fn good_policies_yield_nothing() {
    let host = Host::new(["192.0.2.10".parse().unwrap()]);
    // The vendors' `::1` behaviour is flagged as info whenever virtual loopback is on (SPEC §8).
    let not_ipv6 = |d: Vec<ipvirt::Diagnostic>| -> Vec<ipvirt::Diagnostic> {
        d.into_iter()
            .filter(|d| d.code != C::Ipv6LoopbackUnchanged)
            .collect()
    };
    assert_eq!(
        not_ipv6(Policy::from_toml(GOOD).unwrap().validate_for(&host)),
        vec![]
    );
    assert_eq!(Policy::default().validate(), vec![]);
    for file in [
        "crm-cti.toml",
        "loopback-only.toml",
        "rds-per-session.toml",
        "linux-ld-preload.toml",
    ] {
        let text = std::fs::read_to_string(format!(
            "{}/examples/policies/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let d = Policy::from_toml(&text).unwrap().validate();
        let serious: Vec<_> = d
            .iter()
            .filter(|d| d.severity > Severity::Info && d.code != C::PlatformVipLspFix)
            .collect();
        assert!(serious.is_empty(), "{file}: {serious:#?}");
    }
}

#[test]
fn ipv6_loopback_unchanged() {
    let lo = "[virtual_loopback]\nenabled = true\nprograms = [\"node\"]\n";
    fires(
        lo,
        C::Ipv6LoopbackUnchanged,
        Severity::Info,
        &["::1", "map"],
    );
    let mapped = Policy::from_toml(&format!("{lo}ipv6 = \"map\"\n")).unwrap();
    assert!(
        mapped
            .validate()
            .iter()
            .all(|d| d.code != C::Ipv6LoopbackUnchanged)
    );
    // Without virtual loopback there is nothing to say.
    assert!(Policy::default().validate().is_empty());
}

#[test]
fn platform_unsupported() {
    for p in ["windows-10-multi-session", "windows-11-multi-session"] {
        fires(
            &format!(
                "platform = \"{p}\"\n[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n"
            ),
            C::PlatformUnsupported,
            Severity::Error,
            &[p, "multi-session"],
        );
    }
    // Nothing is enabled: nothing to complain about.
    assert!(
        Policy::from_toml("platform = \"windows-10-multi-session\"\n")
            .unwrap()
            .validate()
            .is_empty()
    );
}

#[test]
fn platform_desktop() {
    fires(
        "platform = \"windows-desktop\"\n[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n",
        C::PlatformDesktop,
        Severity::Error,
        &["windows-desktop", "desktop"],
    );
}

#[test]
fn platform_vip_lsp_fix() {
    for p in ["windows-server-2019", "windows-server-2022"] {
        fires(
            &GOOD.replace("windows-server-2016", p),
            C::PlatformVipLspFix,
            Severity::Warning,
            &[p, "LSP"],
        );
    }
    // Virtual loopback alone on 2022 needs no LSP fix; "other" (Linux) is not restricted.
    let lo = "platform = \"windows-server-2022\"\n[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n";
    assert!(
        Policy::from_toml(&format!("{lo}ipv6 = \"map\"\n"))
            .unwrap()
            .validate()
            .is_empty()
    );
    assert!(
        Policy::from_toml(&GOOD.replace("windows-server-2016", "other"))
            .unwrap()
            .validate()
            .iter()
            .all(|d| d.code == C::Ipv6LoopbackUnchanged)
    );
}

#[test]
fn platform_not_stated() {
    fires(
        &GOOD.replace("platform = \"windows-server-2016\"", ""),
        C::PlatformNotStated,
        Severity::Info,
        &["platform"],
    );
}

#[test]
fn prefer_loopback_unexpected() {
    fires(
        &GOOD.replace(
            "[virtual_ip]\nenabled = true",
            "[virtual_ip]\nenabled = false",
        ),
        C::PreferLoopbackUnexpected,
        Severity::Warning,
        &[
            "prefer_loopback.enabled",
            "virtual_ip.enabled",
            "unexpected",
        ],
    );
    fires(
        &GOOD.replace(
            "[virtual_loopback]\nenabled = true",
            "[virtual_loopback]\nenabled = false",
        ),
        C::PreferLoopbackUnexpected,
        Severity::Warning,
        &["virtual_loopback.enabled"],
    );
}

#[test]
fn prefer_loopback_not_listed() {
    fires(
        &GOOD.replace(
            "processes = [\"crm.exe\"]",
            "processes = [\"crm.exe\", \"lic.exe\"]",
        ),
        C::PreferLoopbackNotListed,
        Severity::Warning,
        &["\"lic.exe\"", "virtual_loopback.programs"],
    );
    // Listed under another case or by full path whose basename is listed: fine.
    let ok = GOOD.replace(
        "processes = [\"crm.exe\"]",
        r#"processes = ['D:\X\CRM.EXE', 'c:/apps/cti.exe']"#,
    );
    assert!(
        !Policy::from_toml(&ok)
            .unwrap()
            .validate()
            .iter()
            .any(|d| d.code == C::PreferLoopbackNotListed)
    );
}

#[test]
fn vip_programs_ignored() {
    fires(
        &GOOD.replace("per-program", "per-session"),
        C::VipProgramsIgnored,
        Severity::Warning,
        &["virtual_ip.programs", "per-session"],
    );
}

#[test]
fn vip_no_adapter() {
    fires(
        &GOOD.replace("adapter = \"192.0.2.0/24\"\n", ""),
        C::VipNoAdapter,
        Severity::Error,
        &["virtual_ip.adapter"],
    );
}

#[test]
fn vip_no_pool() {
    fires(
        &GOOD.replace("pool = [\"192.0.2.100-192.0.2.199\"]\n", ""),
        C::VipNoPool,
        Severity::Warning,
        &["virtual_ip.pool", "DHCP"],
    );
}

#[test]
fn vip_no_programs() {
    fires(
        &GOOD.replace(
            "programs = [\"crm.exe\"]\nadapter",
            "programs = []\nadapter",
        ),
        C::VipNoPrograms,
        Severity::Warning,
        &["virtual_ip.programs"],
    );
}

#[test]
fn pool_outside_adapter() {
    fires(
        &GOOD.replace("192.0.2.100-192.0.2.199", "198.51.100.1-198.51.100.9"),
        C::PoolOutsideAdapter,
        Severity::Error,
        &["198.51.100.1-198.51.100.9", "192.0.2.0/24"],
    );
    // Host bits in VIPAdapter (as the Microsoft docs write it) are fine.
    assert!(
        !Policy::from_toml(&GOOD.replace("192.0.2.0/24", "192.0.2.96/24"))
            .unwrap()
            .validate()
            .iter()
            .any(|d| d.code == C::PoolOutsideAdapter)
    );
}

#[test]
fn pool_adapter_edge() {
    fires(
        &GOOD.replace("192.0.2.100-192.0.2.199", "192.0.2.200-192.0.2.255"),
        C::PoolAdapterEdge,
        Severity::Warning,
        &["192.0.2.255"],
    );
}

#[test]
fn pool_not_unicast() {
    for bad in ["127.0.0.0/8", "224.0.0.1", "0.0.0.0"] {
        let t = format!(
            "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"0.0.0.0/0\"\npool = [\"{bad}\"]\n"
        );
        fires(&t, C::PoolNotUnicast, Severity::Error, &[bad]);
    }
}

#[test]
fn pool_overlap() {
    fires(
        &GOOD.replace(
            "[\"192.0.2.100-192.0.2.199\"]",
            "[\"192.0.2.100-192.0.2.150\", \"192.0.2.140-192.0.2.199\"]",
        ),
        C::PoolOverlap,
        Severity::Info,
        &[
            "192.0.2.100-192.0.2.150",
            "192.0.2.140-192.0.2.199",
            "merged",
        ],
    );
}

#[test]
fn pool_server_address() {
    fires(
        &GOOD.replace("192.0.2.100-192.0.2.199", "192.0.2.1-192.0.2.50"),
        C::PoolServerAddress,
        Severity::Warning,
        &["192.0.2.10", "never leased"],
    );
}

#[test]
fn loopback_no_programs() {
    fires(
        "[virtual_loopback]\nenabled = true\n",
        C::LoopbackNoPrograms,
        Severity::Warning,
        &["virtual_loopback.programs"],
    );
}

#[test]
fn localhost_not_loopback() {
    fires(
        "[virtual_loopback]\nlocalhost = \"10.0.0.1\"\n",
        C::LocalhostNotLoopback,
        Severity::Error,
        &["10.0.0.1", "127.0.0.0/8"],
    );
    fires(
        "[virtual_loopback]\nlocalhost = \"127.0.0.0\"\n",
        C::LocalhostNotLoopback,
        Severity::Error,
        &["127.0.0.0"],
    );
}

#[test]
fn excluded_port_zero() {
    fires(
        &GOOD.replace("[27000]", "[0, 27000]"),
        C::ExcludedPortZero,
        Severity::Warning,
        &["excluded_ports", "0"],
    );
}

#[test]
fn duplicate_port() {
    fires(
        &GOOD.replace("[27000]", "[27000, 8080, 27000]"),
        C::DuplicatePort,
        Severity::Warning,
        &["27000"],
    );
}

#[test]
fn duplicate_program() {
    fires(
        &GOOD.replace(
            r#"programs = ["crm.exe", 'C:\Apps\cti.exe']"#,
            r#"programs = ["crm.exe", 'C:\Apps\cti.exe', "CRM.EXE", 'c:/apps/CTI.exe']"#,
        ),
        C::DuplicateProgram,
        Severity::Warning,
        &["virtual_loopback.programs", "\"CRM.EXE\"", "entry 1"],
    );
}

#[test]
fn program_wildcard() {
    fires(
        &GOOD.replace(
            "programs = [\"crm.exe\"]\nadapter",
            "programs = [\"crm*.exe\"]\nadapter",
        ),
        C::ProgramWildcard,
        Severity::Warning,
        &["virtual_ip.programs", "crm*.exe", "literally"],
    );
}

#[test]
fn program_empty() {
    fires(
        &GOOD.replace(
            "processes = [\"crm.exe\"]",
            "processes = [\"crm.exe\", \"  \"]",
        ),
        C::ProgramEmpty,
        Severity::Warning,
        &["prefer_loopback.processes entry 2"],
    );
}

#[test]
fn isolate_without_loopback() {
    fires(
        "[virtual_loopback]\nisolate = true\n",
        C::IsolateWithoutLoopback,
        Severity::Info,
        &["isolate"],
    );
}

#[test]
fn vip_dhcp_diagnostics() {
    let base = "[virtual_ip]\nenabled = true\nmode = \"per-session\"\n";
    fires(
        &format!("{base}source = \"dhcp\"\n"),
        C::VipDhcpNoInterface,
        Severity::Error,
        &["virtual_ip.dhcp.interface", "virtual_ip.adapter"],
    );
    fires(
        &format!(
            "{base}adapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n[virtual_ip.dhcp]\ninterface = \"eth0/1\"\n"
        ),
        C::VipDhcpBadInterface,
        Severity::Error,
        &["\"eth0/1\""],
    );
    fires(
        &format!(
            "{base}adapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n[virtual_ip.dhcp]\ninterface = \"a-very-long-name0\"\n"
        ),
        C::VipDhcpBadInterface,
        Severity::Error,
        &["at most 15 bytes"],
    );
    fires(
        &format!(
            "{base}adapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n[virtual_ip.dhcp]\nclient_id_prefix = \"\"\n"
        ),
        C::VipDhcpBadPrefix,
        Severity::Error,
        &["0 bytes"],
    );
    fires(
        &format!("{base}adapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\npool = [\"192.0.2.100\"]\n"),
        C::VipDhcpPoolIgnored,
        Severity::Warning,
        &["1 entry", "not used"],
    );
    fires(
        &format!(
            "{base}adapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100\"]\n[virtual_ip.dhcp]\ninterface = \"eth1\"\n"
        ),
        C::VipDhcpSettingsIgnored,
        Severity::Info,
        &["static"],
    );
    fires(
        &format!("{base}adapter = \"192.0.2.0/24\"\n"),
        C::VipNoPool,
        Severity::Warning,
        &["virtual_ip.source = \"dhcp\""],
    );
    // A good DHCP policy: an adapter alone selects the interface; no pool warning.
    let ok = Policy::from_toml(&format!(
        "platform = \"other\"\n{base}adapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n[virtual_ip.dhcp]\nclient_id_prefix = \"host1-\"\n"
    ))
    .unwrap();
    assert_eq!(ok.validate(), vec![]);
}
