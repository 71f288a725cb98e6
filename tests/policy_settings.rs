//! SPEC §3: every setting, its policy-file key and its default; JSON through serde; reading errors
//! name the line and the key. SPEC §4 matching properties.

use std::net::Ipv4Addr;

use ipvirt::{LeaseFailure, Platform, Policy, PolicyError, ProgramList, VipMode};
use proptest::prelude::*;

#[test]
fn defaults_are_the_products_defaults() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p, Policy::default());
    // Citrix policy: Virtual IP loopback support disabled, programs list empty, exclusions empty.
    assert!(!p.virtual_loopback.enabled);
    assert!(p.virtual_loopback.programs.is_empty());
    assert!(p.virtual_loopback.excluded_ports.is_empty());
    assert_eq!(p.virtual_loopback.localhost, Ipv4Addr::LOCALHOST);
    assert!(!p.virtual_loopback.isolate);
    // Citrix registry: PreferLoopback off, no processes.
    assert!(!p.prefer_loopback.enabled);
    assert!(p.prefer_loopback.processes.is_empty());
    // Microsoft: EnableVirtualIP off, per program, empty PerApp, no adapter (VIP off), server address.
    assert!(!p.virtual_ip.enabled);
    assert_eq!(p.virtual_ip.mode, VipMode::PerProgram);
    assert!(p.virtual_ip.programs.is_empty());
    assert_eq!(p.virtual_ip.adapter, None);
    assert!(p.virtual_ip.pool.is_empty());
    assert_eq!(
        p.virtual_ip.on_lease_failure,
        LeaseFailure::UseServerAddress
    );
    assert_eq!(p.platform, None);
}

/// (TOML, check) for each row of SPEC §3's tables.
#[test]
fn spec_3_each_setting_reads_from_its_key() {
    type Check = fn(&Policy) -> bool;
    let rows: [(&str, Check); 14] = [
        ("[virtual_loopback]\nenabled = true", |p| {
            p.virtual_loopback.enabled
        }),
        (
            "[virtual_loopback]\nprograms = [\"crm.exe\", 'C:\\A\\b.exe']",
            |p| p.virtual_loopback.programs == ["crm.exe", r"C:\A\b.exe"],
        ),
        ("[virtual_loopback]\nexcluded_ports = [27000, 1433]", |p| {
            p.virtual_loopback.excluded_ports == [27000, 1433]
        }),
        ("[virtual_loopback]\nlocalhost = \"127.0.0.2\"", |p| {
            p.virtual_loopback.localhost == Ipv4Addr::new(127, 0, 0, 2)
        }),
        ("[virtual_loopback]\nisolate = true", |p| {
            p.virtual_loopback.isolate
        }),
        ("[prefer_loopback]\nenabled = true", |p| {
            p.prefer_loopback.enabled
        }),
        ("[prefer_loopback]\nprocesses = [\"crm.exe\"]", |p| {
            p.prefer_loopback.processes == ["crm.exe"]
        }),
        ("[virtual_ip]\nenabled = true", |p| p.virtual_ip.enabled),
        ("[virtual_ip]\nmode = \"per-session\"", |p| {
            p.virtual_ip.mode == VipMode::PerSession
        }),
        ("[virtual_ip]\nmode = \"per-program\"", |p| {
            p.virtual_ip.mode == VipMode::PerProgram
        }),
        ("[virtual_ip]\nprograms = [\"crm.exe\"]", |p| {
            p.virtual_ip.programs == ["crm.exe"]
        }),
        ("[virtual_ip]\nadapter = \"192.0.2.96/24\"", |p| {
            p.virtual_ip.adapter == Some("192.0.2.96/24".parse().unwrap())
        }),
        (
            "[virtual_ip]\non_lease_failure = \"no-connectivity\"",
            |p| p.virtual_ip.on_lease_failure == LeaseFailure::NoConnectivity,
        ),
        ("platform = \"windows-server-2019\"", |p| {
            p.platform == Some(Platform::WindowsServer2019)
        }),
    ];
    for (toml, check) in rows {
        let p = Policy::from_toml(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        assert!(check(&p), "{toml}");
        // The same shape in JSON, through serde, and TOML written back reads the same.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p, "{json}");
        assert_eq!(Policy::from_toml(&p.to_toml().unwrap()).unwrap(), p);
    }
    for platform in Platform::ALL {
        let p = Policy::from_toml(&format!("platform = \"{platform}\"")).unwrap();
        assert_eq!(p.platform, Some(platform));
    }
}

#[test]
fn pool_entries_of_every_form() {
    let p = Policy::from_toml("[virtual_ip]\npool = [\"192.0.2.100-192.0.2.199\", \"198.51.100.0/25\", \"203.0.113.7\", \"192.0.2.1 - 192.0.2.3\"]").unwrap();
    let shown: Vec<String> = p.virtual_ip.pool.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "192.0.2.100-192.0.2.199",
            "198.51.100.0/25",
            "203.0.113.7",
            "192.0.2.1-192.0.2.3"
        ]
    );
}

#[test]
fn json_reads_the_same_shape() {
    let json = r#"{"virtual_loopback":{"enabled":true,"programs":["crm.exe"]},"virtual_ip":{"mode":"per-session","adapter":"192.0.2.0/24","pool":["192.0.2.10-192.0.2.20"]}}"#;
    let p: Policy = serde_json::from_str(json).unwrap();
    assert!(p.virtual_loopback.enabled);
    assert_eq!(p.virtual_ip.mode, VipMode::PerSession);
    assert!(
        serde_json::from_str::<Policy>(r#"{"virtual_ip":{"modes":"x"}}"#)
            .unwrap_err()
            .to_string()
            .contains("modes")
    );
}

#[test]
fn reading_errors_name_line_and_key() {
    // (policy, line, key, words in the message)
    let rows: [(&str, usize, &str, &str); 10] = [
        (
            "[virtual_loopback]\nenabled = true\nprogram = [\"a\"]\n",
            3,
            "virtual_loopback.program",
            "unknown field `program`",
        ),
        (
            "[virtual_lopback]\nenabled = true\n",
            1,
            "virtual_lopback",
            "unknown field",
        ),
        ("\n\nfoo = 1\n", 3, "foo", "unknown field `foo`"),
        (
            "[virtual_ip]\nenabled = \"yes\"\n",
            2,
            "virtual_ip.enabled",
            "expected a boolean",
        ),
        (
            "[virtual_ip]\nadapter = \"192.0.2.0/33\"\n",
            2,
            "virtual_ip.adapter",
            "",
        ),
        (
            "[virtual_ip]\nmode = \"per-user\"\n",
            2,
            "virtual_ip.mode",
            "per-user",
        ),
        (
            "[virtual_ip]\npool = [\"192.0.2.9-192.0.2.1\"]\n",
            2,
            "virtual_ip.pool",
            "192.0.2.9-192.0.2.1",
        ),
        (
            "[virtual_loopback]\nlocalhost = \"::1\"\n",
            2,
            "virtual_loopback.localhost",
            "",
        ),
        (
            "[virtual_loopback]\nexcluded_ports = [70000]\n",
            2,
            "virtual_loopback.excluded_ports",
            "70000",
        ),
        ("platform = \"windows-7\"\n", 1, "platform", "windows-7"),
    ];
    for (toml, line, key, words) in rows {
        let err = Policy::from_toml(toml).unwrap_err();
        match &err {
            PolicyError::Toml {
                line: l, key: k, ..
            } => {
                assert_eq!(*l, line, "{toml:?}: {err}");
                assert_eq!(k.as_deref(), Some(key), "{toml:?}: {err}");
            }
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("policy line {line}, key `{key}`: ")),
            "{msg}"
        );
        assert!(msg.contains(words), "{msg}");
    }
    assert!(Policy::from_toml("[virtual_ip\n").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn arbitrary_text_never_panics_the_toml_reader(s in "\\PC{0,200}") {
        let _ = Policy::from_toml(&s);
    }

    #[test]
    fn arbitrary_toml_shaped_text_never_panics(lines in prop::collection::vec("[\\[\\]a-z_=\" 0-9.,/\\-]{0,30}", 0..10)) {
        let _ = Policy::from_toml(&lines.join("\n"));
    }

    #[test]
    fn matching_is_case_insensitive(name in "[A-Za-z0-9_]{1,12}\\.[A-Za-z]{3}", flips in prop::collection::vec(any::<bool>(), 16)) {
        let list = ProgramList::new([name.as_str()]);
        let flipped: String = name.chars().zip(flips.iter().cycle()).map(|(c, &f)| if f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
        prop_assert_eq!(list.find(&flipped), Some(0));
    }

    #[test]
    fn a_path_matches_what_its_basename_matches(
        names in prop::collection::vec("[a-z0-9]{1,8}\\.exe", 1..6),
        dirs in prop::collection::vec("[A-Za-z0-9 ]{1,8}", 0..4),
        pick in any::<prop::sample::Index>(),
        windows in any::<bool>(),
    ) {
        let list = ProgramList::new(&names);
        let base = pick.get(&names).clone();
        let sep = if windows { "\\" } else { "/" };
        let path = format!("{}{sep}{base}", dirs.join(sep));
        prop_assert_eq!(list.find(&path).is_some(), list.find(&base).is_some());
        prop_assert!(list.find(&path).is_some());
        // An unlisted basename in the same directory does not match.
        prop_assert_eq!(list.find(&format!("{}{sep}_{base}", dirs.join(sep))), None);
    }
}

#[test]
fn vip_source_and_dhcp_settings_from_toml_and_json() {
    use ipvirt::VipSource;
    // Absent: static, as every policy written before it meant.
    let p = Policy::from_toml("[virtual_ip]\npool = [\"192.0.2.100\"]\n").unwrap();
    assert_eq!(p.virtual_ip.source, VipSource::Static);
    assert!(
        !p.to_toml().unwrap().contains("source"),
        "defaults are not written"
    );
    let text = "[virtual_ip]\nsource = \"dhcp\"\n[virtual_ip.dhcp]\ninterface = \"eth1\"\nclient_id_prefix = \"h1-\"\nconfigure_addresses = false\n";
    let p = Policy::from_toml(text).unwrap();
    assert_eq!(p.virtual_ip.source, VipSource::Dhcp);
    assert_eq!(p.virtual_ip.dhcp.interface.as_deref(), Some("eth1"));
    assert_eq!(p.virtual_ip.dhcp.client_id_prefix.as_deref(), Some("h1-"));
    assert!(!p.virtual_ip.dhcp.configure_addresses);
    assert_eq!(Policy::from_toml(&p.to_toml().unwrap()).unwrap(), p);
    let json: Policy = serde_json::from_str(
        r#"{"virtual_ip":{"source":"dhcp","dhcp":{"interface":"eth1","client_id_prefix":"h1-","configure_addresses":false}}}"#,
    )
    .unwrap();
    assert_eq!(json, p);
    // Typos are errors that name the key and the line.
    let err = Policy::from_toml("[virtual_ip]\nsource = \"dchp\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("policy line 2, key `virtual_ip.source`"),
        "{err}"
    );
    let err = Policy::from_toml("[virtual_ip.dhcp]\ninterfce = \"eth1\"\n").unwrap_err();
    assert!(
        err.to_string().contains("line 2") && err.to_string().contains("interfce"),
        "{err}"
    );
}

#[test]
fn explain_says_where_the_vip_comes_from() {
    use ipvirt::{Host, Session, SessionId};
    let s7 = Session::remote(SessionId::new(7));
    let dhcp = Policy::from_toml(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n\
         on_lease_failure = \"no-connectivity\"\n[virtual_ip.dhcp]\nclient_id_prefix = \"h1-\"\n",
    )
    .unwrap();
    let text = dhcp
        .compile(Host::default())
        .unwrap()
        .explain(s7, "app")
        .to_string();
    assert!(
        text.contains("leased from a DHCP server (virtual_ip.source = dhcp) on the interface with a route to 192.0.2.0/24, client identifier h1-7"),
        "{text}"
    );
    assert!(
        text.contains("on_lease_failure = no-connectivity"),
        "{text}"
    );
    let with_if = Policy::from_toml(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\nsource = \"dhcp\"\n\
         [virtual_ip.dhcp]\ninterface = \"eth1\"\n",
    )
    .unwrap();
    let text = with_if
        .compile(Host::default())
        .unwrap()
        .explain(s7, "app")
        .to_string();
    assert!(
        text.contains("on interface eth1, client identifier ipvirt-<host name>-7"),
        "{text}"
    );
    let pool = Policy::from_toml(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100\"]\n",
    )
    .unwrap();
    let text = pool
        .compile(Host::default())
        .unwrap()
        .explain(s7, "app")
        .to_string();
    assert!(
        text.contains("leased from the static pool (virtual_ip.source = static, 1 pool entry)"),
        "{text}"
    );
}
