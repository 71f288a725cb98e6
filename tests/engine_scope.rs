//! SPEC §4 at the engine: which features apply to which process, and the reason recorded.

use ipvirt::{Host, Policy, Reason, Session, SessionId};

fn engine(toml: &str) -> ipvirt::Engine {
    Policy::from_toml(toml)
        .unwrap()
        .compile(Host::default())
        .unwrap()
}

const BOTH: &str = r#"
[virtual_loopback]
enabled = true
programs = ["crm.exe", 'C:\Apps\cti.exe']
[virtual_ip]
enabled = true
mode = "per-program"
programs = ["CRM.EXE", "lic.exe"]
adapter = "192.0.2.0/24"
[prefer_loopback]
enabled = true
processes = ["crm.exe"]
"#;

#[test]
fn spec_4_scope_table() {
    let e = engine(BOTH);
    // (image, loopback reason, vip reason, prefer reason)
    let rows: [(&str, Reason, Reason, Reason); 8] = [
        (
            "crm.exe",
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
        ),
        (
            "CRM.EXE",
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
        ),
        (
            r"D:\Any\Where\Crm.Exe",
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
        ),
        (
            "/opt/crm/crm.exe",
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
            Reason::Listed { entry: 0 },
        ),
        (
            r"C:\Apps\cti.exe",
            Reason::Listed { entry: 1 },
            Reason::NotListed,
            Reason::NotListed,
        ),
        (
            "c:/apps/CTI.EXE",
            Reason::Listed { entry: 1 },
            Reason::NotListed,
            Reason::NotListed,
        ),
        (
            r"C:\Other\cti.exe",
            Reason::NotListed,
            Reason::NotListed,
            Reason::NotListed,
        ),
        (
            "lic.exe",
            Reason::NotListed,
            Reason::Listed { entry: 1 },
            Reason::NotListed,
        ),
    ];
    for (image, lo, vip, pref) in rows {
        let plan = e.process(image);
        assert_eq!(plan.loopback().reason(), lo, "{image} loopback");
        assert_eq!(plan.virtual_ip().reason(), vip, "{image} vip");
        assert_eq!(plan.prefer_loopback().reason(), pref, "{image} prefer");
        assert_eq!(
            plan.loopback().applies(),
            matches!(lo, Reason::Listed { .. })
        );
        assert_eq!(
            plan.virtual_ip().applies(),
            matches!(vip, Reason::Listed { .. })
        );
    }
    // No wildcards, no implied extension.
    for image in ["crm", "crm.ex", "*.exe", "crm.exe.bak"] {
        assert!(!e.process(image).loopback().applies(), "{image}");
    }
}

#[test]
fn features_off_by_default() {
    let e = engine("");
    let plan = e.process("crm.exe");
    assert_eq!(plan.loopback().reason(), Reason::FeatureOff);
    assert_eq!(plan.virtual_ip().reason(), Reason::FeatureOff);
    assert_eq!(plan.prefer_loopback().reason(), Reason::FeatureOff);
}

#[test]
fn listed_but_feature_disabled_does_not_apply() {
    let e = engine(&BOTH.replace("enabled = true", "enabled = false"));
    let plan = e.process("crm.exe");
    assert!(!plan.loopback().applies());
    assert!(!plan.virtual_ip().applies());
    assert!(!plan.prefer_loopback().applies());
    assert_eq!(plan.loopback().reason(), Reason::FeatureOff);
}

#[test]
fn per_session_mode_applies_to_every_process() {
    let e = engine(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n",
    );
    for image in ["crm.exe", "notepad.exe", "/usr/bin/python3"] {
        assert_eq!(
            e.process(image).virtual_ip().reason(),
            Reason::PerSession,
            "{image}"
        );
    }
}

#[test]
fn vip_without_adapter_is_off() {
    let e = engine("[virtual_ip]\nenabled = true\nmode = \"per-session\"\n");
    assert_eq!(e.process("x").virtual_ip().reason(), Reason::NoAdapter);
    assert!(!e.process("x").virtual_ip().applies());
}

#[test]
fn explanation_names_setting_and_entry() {
    let e = engine(BOTH);
    let text = e
        .explain(Session::remote(SessionId::new(7)), r"C:\Apps\cti.exe")
        .to_string();
    assert!(
        text.contains(r#""C:\Apps\cti.exe" (entry 2 of virtual_loopback.programs)"#),
        "{text}"
    );
    assert!(text.contains("127.0.0.8"), "{text}");
    assert!(
        text.contains("is not in virtual_ip.programs (2 entries)"),
        "{text}"
    );
    let text = e
        .explain(Session::console(SessionId::new(1)), "crm.exe")
        .to_string();
    assert!(text.contains("not virtualized"), "{text}");
    let text = engine("")
        .explain(Session::remote(SessionId::new(7)), "crm.exe")
        .to_string();
    assert!(text.contains("virtual_loopback.enabled is false"), "{text}");
}

#[test]
fn compile_refuses_a_non_loopback_localhost() {
    for bad in ["10.0.0.1", "127.0.0.0", "0.0.0.0"] {
        let p = Policy::from_toml(&format!("[virtual_loopback]\nlocalhost = \"{bad}\"\n")).unwrap();
        let err = p.compile(Host::default()).unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    let p = Policy::from_toml("[virtual_loopback]\nlocalhost = \"127.0.0.2\"\n").unwrap();
    assert!(p.compile(Host::default()).is_ok());
}

#[test]
fn pool_addresses_are_not_server_addresses() {
    let p = Policy::from_toml("[virtual_ip]\nenabled = true\nadapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100-192.0.2.199\"]\n").unwrap();
    let e = p
        .compile(Host::new([
            "192.0.2.10".parse().unwrap(),
            "192.0.2.150".parse().unwrap(),
        ]))
        .unwrap();
    assert!(e.host().contains_v4("192.0.2.10".parse().unwrap()));
    assert!(!e.host().contains_v4("192.0.2.150".parse().unwrap()));
}

#[test]
fn lookup_scales_with_huge_lists() {
    let programs: Vec<String> = (0..100_000).map(|i| format!("app{i}.exe")).collect();
    let mut p = Policy::default();
    p.virtual_loopback.enabled = true;
    p.virtual_loopback.programs = programs;
    let e = p.compile(Host::default()).unwrap();
    assert_eq!(
        e.process(r"C:\x\APP99999.EXE").loopback().reason(),
        Reason::Listed { entry: 99_999 }
    );
    assert_eq!(
        e.process("app100000.exe").loopback().reason(),
        Reason::NotListed
    );
}
