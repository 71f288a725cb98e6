//! SPEC §5 and §6: one row per line of the rewrite table, for IPv4 and IPv4-mapped IPv6 alike.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{SERVER, VIP, engine, mapped, sa};
use ipvirt::{Call, Connect, Refusal, Rule, Session, SessionId, Stack, Vip};

const S7: Session = Session::remote(SessionId::new(7));
/// `Refusal::errno` answers with Linux's numbers on every target (they differ in Windows' CRT).
const LINUX_EADDRNOTAVAIL: i32 = 99;
const LINUX_EACCES: i32 = 13;

/// `row!(image, session, vip, call, input => expected)` checks the call for the IPv4 input and,
/// for IPv4 inputs, for the IPv4-mapped IPv6 form too (expected mapped the same way).
macro_rules! bind_row {
    ($eng:expr, $image:expr, $session:expr, $vip:expr, $input:expr => $want:expr) => {{
        let eng = $eng;
        let plan = eng.process($image);
        let rw = eng.rewriter($session, &plan, $vip);
        let (input, want): (SocketAddr, Result<SocketAddr, ()>) = (sa($input), $want.map(sa));
        assert_eq!(
            rw.bind(input).map_err(|_| ()),
            want,
            "bind {input} by {}",
            $image
        );
        if input.is_ipv4() {
            assert_eq!(
                rw.bind(mapped(input)).map_err(|_| ()),
                want.map(mapped),
                "bind {} by {}",
                mapped(input),
                $image
            );
        }
    }};
}

macro_rules! connect_row {
    ($eng:expr, $image:expr, $session:expr, $vip:expr, $input:expr => $dest:expr, $source:expr) => {{
        let eng = $eng;
        let plan = eng.process($image);
        let rw = eng.rewriter($session, &plan, $vip);
        let input = sa($input);
        let want = Connect {
            dest: sa($dest),
            source: $source.map(sa),
        };
        assert_eq!(
            rw.connect(input).unwrap(),
            want,
            "connect {input} by {}",
            $image
        );
        assert_eq!(
            rw.send_to(input).unwrap(),
            want,
            "sendto {input} by {}",
            $image
        );
        if input.is_ipv4() {
            let want6 = Connect {
                dest: mapped(want.dest),
                source: want.source.map(mapped),
            };
            assert_eq!(
                rw.connect(mapped(input)).unwrap(),
                want6,
                "connect {} by {}",
                mapped(input),
                $image
            );
            assert_eq!(
                rw.send_to(mapped(input)).unwrap(),
                want6,
                "sendto {} by {}",
                mapped(input),
                $image
            );
        }
    }};
}

// ---- bind ---------------------------------------------------------------------------------------

#[test]
fn bind_localhost_with_l_becomes_session_loopback() {
    bind_row!(engine(false, "use-server-address"), "lo.exe", S7, None, "127.0.0.1:9000" => Ok::<_, ()>("127.0.0.8:9000"));
    bind_row!(engine(false, "use-server-address"), "crm.exe", S7, Some(VIP), "127.0.0.1:9000" => Ok::<_, ()>("127.0.0.8:9000"));
}

#[test]
fn bind_localhost_on_excluded_port_is_unchanged() {
    bind_row!(engine(false, "use-server-address"), "lo.exe", S7, None, "127.0.0.1:27000" => Ok::<_, ()>("127.0.0.1:27000"));
}

#[test]
fn bind_localhost_without_l_is_unchanged() {
    bind_row!(engine(false, "use-server-address"), "vipo.exe", S7, Some(VIP), "127.0.0.1:9000" => Ok::<_, ()>("127.0.0.1:9000"));
    bind_row!(engine(false, "use-server-address"), "other.exe", S7, None, "127.0.0.1:9000" => Ok::<_, ()>("127.0.0.1:9000"));
}

#[test]
fn bind_unspecified_with_v_becomes_vip() {
    bind_row!(engine(false, "use-server-address"), "vipo.exe", S7, Some(VIP), "0.0.0.0:9000" => Ok::<_, ()>("192.0.2.107:9000"));
    bind_row!(engine(false, "use-server-address"), "crm.exe", S7, Some(VIP), "0.0.0.0:9000" => Ok::<_, ()>("192.0.2.107:9000"));
}

#[test]
fn bind_server_address_with_v_becomes_vip() {
    bind_row!(engine(false, "use-server-address"), "vipo.exe", S7, Some(VIP), "192.0.2.10:9000" => Ok::<_, ()>("192.0.2.107:9000"));
}

#[test]
fn bind_other_addresses_pass_through() {
    let e = engine(false, "use-server-address");
    for a in [
        "192.0.2.50:9000",
        "198.51.100.1:80",
        "127.0.0.9:9000",
        "127.0.0.8:9000",
        "192.0.2.107:9000",
    ] {
        bind_row!(&e, "crm.exe", S7, Some(VIP), a => Ok::<_, ()>(a));
    }
}

#[test]
fn bind_without_l_and_v_passes_everything() {
    let e = engine(false, "use-server-address");
    for a in ["0.0.0.0:9000", "127.0.0.1:9000", "192.0.2.10:80"] {
        bind_row!(&e, "notepad.exe", S7, Some(VIP), a => Ok::<_, ()>(a));
    }
}

#[test]
fn bind_lease_failure_use_server_address_passes_through() {
    bind_row!(engine(false, "use-server-address"), "vipo.exe", S7, None, "0.0.0.0:9000" => Ok::<_, ()>("0.0.0.0:9000"));
    bind_row!(engine(false, "use-server-address"), "vipo.exe", S7, None, "192.0.2.10:9000" => Ok::<_, ()>("192.0.2.10:9000"));
}

#[test]
fn bind_lease_failure_no_connectivity_fails() {
    let e = engine(false, "no-connectivity");
    bind_row!(&e, "vipo.exe", S7, None, "0.0.0.0:9000" => Err::<&str, ()>(()));
    bind_row!(&e, "vipo.exe", S7, None, "192.0.2.10:9000" => Err::<&str, ()>(()));
    // Binds that never take the VIP still work.
    bind_row!(&e, "vipo.exe", S7, None, "192.0.2.50:9000" => Ok::<_, ()>("192.0.2.50:9000"));
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, None);
    let err = rw.bind(sa("0.0.0.0:9000")).unwrap_err();
    assert_eq!(err, Refusal::NoConnectivity);
    assert_eq!(err.io_error_kind(), std::io::ErrorKind::AddrNotAvailable);
    assert_eq!(err.errno(), LINUX_EADDRNOTAVAIL);
    assert_eq!(err.wsa_error(), 10049);
}

#[test]
fn console_and_session_zero_are_never_rewritten() {
    let e = engine(true, "no-connectivity");
    for session in [
        Session::console(SessionId::new(7)),
        Session::remote(SessionId::new(0)),
        Session::console(SessionId::new(0)),
    ] {
        for a in ["127.0.0.1:9000", "0.0.0.0:9000", "192.0.2.10:9000"] {
            bind_row!(&e, "crm.exe", session, Some(VIP), a => Ok::<_, ()>(a));
            bind_row!(&e, "crm.exe", session, None, a => Ok::<_, ()>(a));
            connect_row!(&e, "crm.exe", session, Some(VIP), a => a, None::<&str>);
        }
        connect_row!(&e, "crm.exe", session, None, "127.0.0.9:80" => "127.0.0.9:80", None::<&str>);
    }
}

// ---- connect / sendto ----------------------------------------------------------------------------

#[test]
fn connect_localhost_with_l_goes_to_session_loopback_from_it() {
    connect_row!(engine(false, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.1:9000" => "127.0.0.8:9000", Some("127.0.0.8:0"));
}

#[test]
fn connect_localhost_excluded_port_untouched() {
    connect_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.1:27000" => "127.0.0.1:27000", None::<&str>);
    // Isolation does not apply on an excluded port either.
    connect_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.9:27000" => "127.0.0.9:27000", None::<&str>);
}

#[test]
fn connect_own_session_loopback_binds_source_to_it() {
    connect_row!(engine(false, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.8:9000" => "127.0.0.8:9000", Some("127.0.0.8:0"));
}

#[test]
fn connect_with_v_originates_from_vip() {
    connect_row!(engine(false, "use-server-address"), "vipo.exe", S7, Some(VIP),
        "198.51.100.5:443" => "198.51.100.5:443", Some("192.0.2.107:0"));
    connect_row!(engine(false, "use-server-address"), "crm.exe", S7, Some(VIP),
        "192.0.2.10:445" => "192.0.2.10:445", Some("192.0.2.107:0"));
}

#[test]
fn connect_loopback_with_v_without_prefer_originates_from_vip() {
    // Both features, no preferred loopback: the destination is the session loopback, the source the VIP.
    connect_row!(engine(false, "use-server-address"), "crm.exe", S7, Some(VIP),
        "127.0.0.1:9000" => "127.0.0.8:9000", Some("192.0.2.107:0"));
    connect_row!(engine(false, "use-server-address"), "vipo.exe", S7, Some(VIP),
        "127.0.0.1:9000" => "127.0.0.1:9000", Some("192.0.2.107:0"));
}

#[test]
fn connect_loopback_with_prefer_keeps_loopback_source() {
    connect_row!(engine(false, "use-server-address"), "pref.exe", S7, Some(VIP),
        "127.0.0.1:9000" => "127.0.0.8:9000", Some("127.0.0.8:0"));
    // A non-loopback destination still originates from the VIP.
    connect_row!(engine(false, "use-server-address"), "pref.exe", S7, Some(VIP),
        "198.51.100.5:443" => "198.51.100.5:443", Some("192.0.2.107:0"));
    // Another loopback address: the kernel's choice, not the VIP.
    connect_row!(engine(false, "use-server-address"), "pref.exe", S7, Some(VIP),
        "127.0.0.53:53" => "127.0.0.53:53", None::<&str>);
}

#[test]
fn connect_prefer_with_no_connectivity_still_reaches_loopback() {
    connect_row!(engine(false, "no-connectivity"), "pref.exe", S7, None,
        "127.0.0.1:9000" => "127.0.0.8:9000", Some("127.0.0.8:0"));
    let e = engine(false, "no-connectivity");
    let plan = e.process("pref.exe");
    let rw = e.rewriter(S7, &plan, None);
    assert!(matches!(
        rw.connect(sa("198.51.100.5:443")),
        Err(Refusal::NoConnectivity)
    ));
}

#[test]
fn connect_no_vip_no_connectivity_fails_use_server_address_passes() {
    let e = engine(false, "no-connectivity");
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, None);
    assert!(matches!(
        rw.connect(sa("198.51.100.5:443")),
        Err(Refusal::NoConnectivity)
    ));
    assert!(matches!(
        rw.send_to(sa("198.51.100.5:53")),
        Err(Refusal::NoConnectivity)
    ));
    connect_row!(engine(false, "use-server-address"), "vipo.exe", S7, None,
        "198.51.100.5:443" => "198.51.100.5:443", None::<&str>);
}

#[test]
fn bind_other_session_loopback_passes_without_isolation() {
    bind_row!(engine(false, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.9:9000" => Ok::<_, ()>("127.0.0.9:9000"));
}

#[test]
fn bind_other_session_loopback_refused_with_isolation() {
    // Isolation holds for binds as for connects (SPEC §6): a session-7 listener on 127.0.0.9
    // would receive session 8's connections to its localhost.
    bind_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.9:9000" => Err::<&str, _>(()));
    bind_row!(engine(true, "use-server-address"), "crm.exe", S7, Some(VIP),
        "127.1.0.0:80" => Err::<&str, _>(()));
    let e = engine(true, "use-server-address");
    let plan = e.process("lo.exe");
    let rw = e.rewriter(S7, &plan, None);
    let err = rw.bind(sa("127.0.0.9:9000")).unwrap_err();
    assert_eq!(
        err,
        Refusal::OtherSession {
            owner: SessionId::new(8)
        }
    );
    assert_eq!(err.errno(), LINUX_EACCES);
    assert!(matches!(
        rw.bind_dual_stack(sa("[::ffff:127.0.0.9]:9000")),
        Err(Refusal::OtherSession { .. })
    ));
    // The session's own address, localhost and an excluded port are not isolated; 127.0.0.0
    // belongs to no session and is (SPEC §12, tests/isolation_spec.rs).
    bind_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.8:9000" => Ok::<_, ()>("127.0.0.8:9000"));
    bind_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.1:9000" => Ok::<_, ()>("127.0.0.8:9000"));
    bind_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.0:9000" => Err::<&str, _>(()));
    bind_row!(engine(true, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.9:27000" => Ok::<_, ()>("127.0.0.9:27000"));
    // Isolation is a virtual-loopback setting: processes out of its scope are not checked.
    bind_row!(engine(true, "use-server-address"), "vipo.exe", S7, Some(VIP),
        "127.0.0.9:9000" => Ok::<_, ()>("127.0.0.9:9000"));
    // The raw path decides the same (one rule core).
    let mut raw = [2u8, 0, 0x23, 0x28, 127, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0];
    let before = raw;
    assert!(matches!(
        rw.raw(ipvirt::SockaddrLayout::LINUX).bind(&mut raw),
        Err(ipvirt::RawError::Refused(Refusal::OtherSession { .. }))
    ));
    assert_eq!(raw, before, "a refused bind leaves the buffer alone");
}

#[test]
fn connect_other_session_loopback_passes_without_isolation() {
    connect_row!(engine(false, "use-server-address"), "lo.exe", S7, None,
        "127.0.0.9:9000" => "127.0.0.9:9000", None::<&str>);
}

#[test]
fn connect_other_session_loopback_refused_with_isolation() {
    let e = engine(true, "use-server-address");
    let plan = e.process("lo.exe");
    let rw = e.rewriter(S7, &plan, None);
    for dest in ["127.0.0.9:9000", "[::ffff:127.0.0.9]:9000", "127.1.0.0:80"] {
        let err = rw.connect(sa(dest)).unwrap_err();
        assert!(matches!(err, Refusal::Isolated { .. }), "{dest}");
        assert_eq!(err.io_error_kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            rw.send_to(sa(dest)),
            Err(Refusal::Isolated { .. })
        ));
    }
    // Own address, localhost and session 0's 127.0.0.1 are not "another session's"; 127.0.0.0
    // is no session's and refused too (SPEC §12).
    assert!(rw.connect(sa("127.0.0.8:9000")).is_ok());
    assert!(rw.connect(sa("127.0.0.1:9000")).is_ok());
    assert!(matches!(
        rw.connect(sa("127.0.0.0:9000")),
        Err(Refusal::Unowned { .. })
    ));
    // Isolation is a virtual-loopback setting: processes out of its scope are not checked.
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert!(rw.connect(sa("127.0.0.9:9000")).is_ok());
}

#[test]
fn ipv6_loopback_and_global_are_left_alone() {
    let e = engine(true, "no-connectivity");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert_eq!(rw.bind(sa("[::1]:9000")).unwrap(), sa("[::1]:9000"));
    assert_eq!(
        rw.explain(Call::Bind, sa("[::1]:9000")).rule(),
        Rule::Ipv6Loopback
    );
    assert_eq!(
        rw.connect(sa("[::1]:9000")).unwrap(),
        Connect {
            dest: sa("[::1]:9000"),
            source: None
        }
    );
    assert_eq!(
        rw.connect(sa("[2001:db8::1]:443")).unwrap(),
        Connect {
            dest: sa("[2001:db8::1]:443"),
            source: None
        }
    );
    assert_eq!(rw.reported(sa("[::1]:9000")), sa("[::1]:9000"));
}

#[test]
fn ipv6_unspecified_dual_stack_becomes_mapped_vip_v6only_unchanged() {
    let e = engine(false, "use-server-address");
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert_eq!(
        rw.bind_on(sa("[::]:9000"), Stack::Dual).unwrap(),
        sa("[::ffff:192.0.2.107]:9000")
    );
    assert_eq!(
        rw.bind_dual_stack(sa("[::]:9000")).unwrap(),
        sa("[::ffff:192.0.2.107]:9000")
    );
    assert_eq!(
        rw.bind_on(sa("[::]:9000"), Stack::Single).unwrap(),
        sa("[::]:9000")
    );
    assert_eq!(rw.bind(sa("[::]:9000")).unwrap(), sa("[::]:9000"));
    assert_eq!(
        rw.explain(Call::Bind, sa("[::]:9000")).rule(),
        Rule::V6OnlyUnspecified
    );
    // Flow info and scope id of an IPv6 address survive a rewrite.
    let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
        "::".parse().unwrap(),
        9000,
        7,
        3,
    ));
    match rw.bind_dual_stack(scoped).unwrap() {
        SocketAddr::V6(v6) => assert_eq!((v6.flowinfo(), v6.scope_id(), v6.port()), (7, 3, 9000)),
        v4 => panic!("family changed: {v4}"),
    }
    // No connectivity on a dual-stack `::` bind.
    let e = engine(false, "no-connectivity");
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, None);
    assert!(rw.bind_dual_stack(sa("[::]:9000")).is_err());
}

// ---- results handed back -------------------------------------------------------------------------

#[test]
fn reported_session_loopback_maps_back_vip_unchanged() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    for (a, b) in [
        ("127.0.0.8:9000", "127.0.0.1:9000"),
        ("127.0.0.8:54321", "127.0.0.1:54321"),
        ("127.0.0.8:27000", "127.0.0.8:27000"), // excluded port: never rewritten, so not mapped back
        ("127.0.0.9:9000", "127.0.0.9:9000"),
        ("192.0.2.107:9000", "192.0.2.107:9000"),
        ("0.0.0.0:9000", "0.0.0.0:9000"),
    ] {
        assert_eq!(rw.reported(sa(a)), sa(b), "{a}");
        assert_eq!(rw.reported(mapped(sa(a))), mapped(sa(b)), "{a} mapped");
    }
    // Out of L: nothing maps back.
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert_eq!(rw.reported(sa("127.0.0.8:9000")), sa("127.0.0.8:9000"));
}

#[test]
fn resolved_server_address_becomes_vip() {
    let e = engine(false, "use-server-address");
    let plan = e.process("vipo.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    let mut addrs: Vec<IpAddr> = vec![
        SERVER.into(),
        "198.51.100.1".parse().unwrap(),
        SERVER.to_ipv6_mapped().into(),
        "127.0.0.1".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    assert_eq!(rw.resolved(&mut addrs), 2);
    assert_eq!(
        addrs,
        vec![
            IpAddr::from(VIP.addr()),
            "198.51.100.1".parse().unwrap(),
            VIP.addr().to_ipv6_mapped().into(),
            "127.0.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]
    );
    // Without a VIP (either lease-failure setting) results are left alone.
    let rw = e.rewriter(S7, &plan, None);
    assert_eq!(rw.resolved_addr(SERVER.into()), IpAddr::from(SERVER));
}

#[test]
fn reverse_lookup_vip_and_session_loopback() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert_eq!(rw.reverse_lookup(VIP.addr().into()), IpAddr::from(SERVER));
    assert_eq!(
        rw.reverse_lookup(VIP.addr().to_ipv6_mapped().into()),
        IpAddr::from(SERVER.to_ipv6_mapped())
    );
    assert_eq!(
        rw.reverse_lookup("127.0.0.8".parse().unwrap()),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        rw.reverse_lookup("127.0.0.9".parse().unwrap()),
        "127.0.0.9".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        rw.reverse_lookup("192.0.2.108".parse().unwrap()),
        "192.0.2.108".parse::<IpAddr>().unwrap()
    );
}

// ---- settings ------------------------------------------------------------------------------------

#[test]
fn custom_localhost_address_is_the_one_replaced() {
    let policy = ipvirt::Policy::from_toml(
        "[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\nlocalhost = \"127.0.0.2\"\n",
    )
    .unwrap();
    let e = policy.compile(ipvirt::Host::default()).unwrap();
    let plan = e.process("a");
    let rw = e.rewriter(S7, &plan, None);
    assert_eq!(rw.bind(sa("127.0.0.2:80")).unwrap(), sa("127.0.0.8:80"));
    assert_eq!(rw.bind(sa("127.0.0.1:80")).unwrap(), sa("127.0.0.1:80"));
    assert_eq!(rw.reported(sa("127.0.0.8:80")), sa("127.0.0.2:80"));
}

#[test]
fn per_session_mode_applies_vip_to_every_process() {
    let policy = ipvirt::Policy::from_toml(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nprograms = [\"only.exe\"]\nadapter = \"192.0.2.0/24\"\n",
    )
    .unwrap();
    let e = policy.compile(ipvirt::Host::new([SERVER.into()])).unwrap();
    for image in ["only.exe", "anything.exe", "/usr/bin/python3"] {
        let plan = e.process(image);
        let rw = e.rewriter(S7, &plan, Some(VIP));
        assert_eq!(
            rw.bind(sa("0.0.0.0:80")).unwrap(),
            sa("192.0.2.107:80"),
            "{image}"
        );
    }
}

#[test]
fn vip_without_adapter_is_off() {
    let policy =
        ipvirt::Policy::from_toml("[virtual_ip]\nenabled = true\nmode = \"per-session\"\n")
            .unwrap();
    let e = policy.compile(ipvirt::Host::new([SERVER.into()])).unwrap();
    let plan = e.process("x");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    assert_eq!(rw.bind(sa("0.0.0.0:80")).unwrap(), sa("0.0.0.0:80"));
    assert_eq!(plan.virtual_ip().reason(), ipvirt::Reason::NoAdapter);
}

#[test]
fn per_program_listed_programs_share_the_session_vip() {
    let e = engine(false, "use-server-address");
    let a = e.process("crm.exe");
    let b = e.process(r"C:\x\VIPO.EXE");
    let ra = e.rewriter(S7, &a, Some(VIP));
    let rb = e.rewriter(S7, &b, Some(VIP));
    assert_eq!(
        ra.bind(sa("0.0.0.0:1")).unwrap().ip(),
        rb.bind(sa("0.0.0.0:1")).unwrap().ip()
    );
}

#[test]
fn checks_happen_where_values_are_made() {
    let e = engine(false, "use-server-address");
    // A session without a loopback address fails closed where its loopback would be used...
    let plan = e.process("crm.exe");
    let huge = e.rewriter(
        Session::remote(SessionId::new(16_777_215)),
        &plan,
        Some(VIP),
    );
    assert_eq!(huge.bind(sa("127.0.0.1:9000")), Err(Refusal::NoLoopback));
    assert_eq!(huge.connect(sa("127.0.0.1:9000")), Err(Refusal::NoLoopback));
    assert_eq!(Refusal::NoLoopback.errno(), LINUX_EADDRNOTAVAIL);
    // ...and everything else still works (its VIP is fine).
    assert_eq!(huge.bind(sa("0.0.0.0:9000")), Ok(sa("192.0.2.107:9000")));
    assert_eq!(huge.bind(sa("127.0.0.1:27000")), Ok(sa("127.0.0.1:27000")));
    // Unusable VIPs cannot be made at all: one definition, `Vip::new`.
    for bad in [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.5",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        let err = bad.parse::<Vip>().unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    // The pool and the validator use the same definition.
    let policy = ipvirt::Policy::from_toml(
        "[virtual_ip]\nenabled = true\nadapter = \"240.0.0.0/24\"\npool = [\"240.0.0.1-240.0.0.5\"]\n",
    )
    .unwrap();
    assert!(
        policy
            .validate()
            .iter()
            .any(|d| d.code == ipvirt::DiagnosticCode::PoolNotUnicast)
    );
    assert!(ipvirt::StaticPool::from_policy(&policy.virtual_ip, &ipvirt::Host::default()).is_err());
    // A process out of scope does not care about the session range.
    let plan = e.process("notepad.exe");
    let out = e.rewriter(Session::remote(SessionId::new(16_777_215)), &plan, None);
    assert_eq!(out.bind(sa("127.0.0.1:9000")), Ok(sa("127.0.0.1:9000")));
}

#[test]
fn explain_names_the_rule() {
    let e = engine(true, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    let cases = [
        (
            Call::Bind,
            "127.0.0.1:9000",
            Rule::LocalhostToSessionLoopback,
        ),
        (Call::Bind, "127.0.0.1:27000", Rule::PortExcluded),
        (Call::Bind, "0.0.0.0:9000", Rule::UnspecifiedToVip),
        (Call::Bind, "192.0.2.10:9000", Rule::ServerAddressToVip),
        (
            Call::BindDualStack,
            "[::]:9000",
            Rule::DualStackUnspecifiedToVip,
        ),
        (Call::Connect, "198.51.100.1:80", Rule::SourceVip),
        (Call::SendTo, "127.0.0.9:80", Rule::Isolated),
        (
            Call::Reported,
            "127.0.0.8:80",
            Rule::SessionLoopbackToLocalhost,
        ),
        (
            Call::Resolved,
            "192.0.2.10:0",
            Rule::ResolvedServerAddressToVip,
        ),
        (
            Call::ReverseLookup,
            "192.0.2.107:0",
            Rule::ReverseVipToServer,
        ),
        (
            Call::ReverseLookup,
            "127.0.0.8:0",
            Rule::ReverseSessionLoopbackToLocalhost,
        ),
        (Call::Bind, "192.0.2.50:9000", Rule::Unchanged),
    ];
    for (call, a, rule) in cases {
        let ex = rw.explain(call, sa(a));
        assert_eq!(ex.rule(), rule, "{call} {a}: {ex}");
        assert!(ex.to_string().starts_with(&format!("{call} ")), "{ex}");
    }
    let text = rw.explain(Call::SendTo, sa("127.0.0.9:80")).to_string();
    assert!(text.contains("error") && text.contains("isolate"), "{text}");
}
