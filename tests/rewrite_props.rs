//! SPEC §5 invariants as properties, 10 000 cases each, over random sessions, processes, VIPs,
//! settings and addresses (IPv4, IPv4-mapped, IPv6).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use common::{SERVER, engine};
use ipvirt::{Engine, Refusal, Session, SessionId, SessionKind, Stack, Vip};
use proptest::prelude::*;

const IMAGES: [&str; 5] = ["crm.exe", "pref.exe", "lo.exe", "vipo.exe", "notepad.exe"];

fn v4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn is_lo(ip: IpAddr) -> bool {
    v4_of(ip).map_or(ip.is_loopback(), |v4| v4.is_loopback())
}

/// Whether `ip` names this host as a destination: a loopback address, or the unspecified
/// address, which Linux and Windows send to the loopback (SPEC §12).
fn is_this_host(ip: IpAddr) -> bool {
    is_lo(ip) || ip.is_unspecified() || v4_of(ip).is_some_and(|v4| v4.is_unspecified())
}

fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(Ipv4Addr::LOCALHOST),
        Just(Ipv4Addr::UNSPECIFIED),
        Just(SERVER),
        (100u8..=199).prop_map(|h| Ipv4Addr::new(192, 0, 2, h)), // pool: VIPs of some session
        (0u32..=0x00FF_FFFF).prop_map(|h| Ipv4Addr::from(0x7F00_0000 | h)), // any 127/8
        (0u32..64).prop_map(|h| Ipv4Addr::from(0x7F00_0000 | h)), // low sessions' loopbacks
        any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    let port = prop_oneof![Just(0u16), Just(9000), Just(27000), any::<u16>()];
    prop_oneof![
        4 => (any_v4(), port.clone()).prop_map(|(ip, p)| SocketAddr::V4(SocketAddrV4::new(ip, p))),
        3 => (any_v4(), port.clone(), any::<u32>(), any::<u32>())
            .prop_map(|(ip, p, f, s)| SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), p, f, s))),
        1 => (prop_oneof![Just(Ipv6Addr::LOCALHOST), Just(Ipv6Addr::UNSPECIFIED), any::<u128>().prop_map(Ipv6Addr::from)], port)
            .prop_map(|(ip, p)| SocketAddr::V6(SocketAddrV6::new(ip, p, 0, 0))),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    isolate: bool,
    no_connectivity: bool,
    image: &'static str,
    session: Session,
    vip: Option<Ipv4Addr>,
    stack: Stack,
}

fn any_case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(&IMAGES[..]),
        prop_oneof![0u32..=3, 0u32..=SessionId::MAX.get()],
        prop_oneof![Just(SessionKind::Remote), Just(SessionKind::Console)],
        prop::option::of((100u8..=199).prop_map(|h| Ipv4Addr::new(192, 0, 2, h))),
        prop_oneof![Just(Stack::Single), Just(Stack::Dual)],
    )
        .prop_map(
            |(isolate, no_connectivity, image, id, kind, vip, stack)| Case {
                isolate,
                no_connectivity,
                image,
                session: Session::new(SessionId::new(id), kind),
                vip,
                stack,
            },
        )
}

fn engine_for(c: &Case) -> Engine {
    engine(
        c.isolate,
        if c.no_connectivity {
            "no-connectivity"
        } else {
            "use-server-address"
        },
    )
}

/// Every address a call produced, with the input it came from.
fn outputs(e: &Engine, c: &Case, a: SocketAddr) -> Vec<(&'static str, SocketAddr, SocketAddr)> {
    let plan = e.process(c.image);
    let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
    let mut out = Vec::new();
    if let Ok(b) = rw.bind_on(a, c.stack) {
        out.push(("bind", a, b));
    }
    for (name, r) in [("connect", rw.connect(a)), ("sendto", rw.send_to(a))] {
        if let Ok(conn) = r {
            out.push((name, a, conn.dest));
        }
    }
    out.push(("reported", a, rw.reported(a)));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn loopback_stays_loopback_and_non_loopback_stays_non_loopback(c in any_case(), a in any_addr()) {
        let e = engine_for(&c);
        for (call, input, output) in outputs(&e, &c, a) {
            if call == "connect" || call == "sendto" {
                // A destination of 0.0.0.0 is this host: it may become the session loopback.
                prop_assert_eq!(is_this_host(input.ip()), is_this_host(output.ip()), "{} {} -> {}", call, input, output);
            } else {
                prop_assert_eq!(is_lo(input.ip()), is_lo(output.ip()), "{} {} -> {}", call, input, output);
            }
            prop_assert_eq!(input.is_ipv4(), output.is_ipv4(), "{} changed the family", call);
        }
    }

    #[test]
    fn the_port_never_changes_and_sources_use_port_zero(c in any_case(), a in any_addr()) {
        let e = engine_for(&c);
        for (call, input, output) in outputs(&e, &c, a) {
            prop_assert_eq!(input.port(), output.port(), "{} {} -> {}", call, input, output);
        }
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        if let Ok(conn) = rw.connect(a) && let Some(s) = conn.source {
            prop_assert_eq!(s.port(), 0);
            prop_assert_eq!(s.is_ipv4(), a.is_ipv4(), "source family follows the destination's");
        }
    }

    #[test]
    fn out_of_scope_process_or_session_is_never_rewritten(mut c in any_case(), a in any_addr(), how in 0u8..3) {
        // Put the case out of scope one of three ways: the process, a console session, session 0.
        match how {
            0 => c.image = "notepad.exe",
            1 => c.session = Session::console(c.session.id()),
            _ => c.session = Session::new(SessionId::new(0), c.session.kind()),
        }
        let e = engine_for(&c);
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        prop_assert_eq!(rw.bind_on(a, c.stack), Ok(a));
        let conn = rw.connect(a).unwrap();
        prop_assert_eq!((conn.dest, conn.source), (a, None));
        let conn = rw.send_to(a).unwrap();
        prop_assert_eq!((conn.dest, conn.source), (a, None));
        prop_assert_eq!(rw.reported(a), a);
        prop_assert_eq!(rw.resolved_addr(a.ip()), a.ip());
        prop_assert_eq!(rw.reverse_lookup(a.ip()), a.ip());
    }

    #[test]
    fn no_result_belongs_to_another_session(c in any_case(), a in any_addr()) {
        let e = engine_for(&c);
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        let own_lo = c.session.id().loopback().ok();
        let allowed = |ip: IpAddr| {
            let v4 = v4_of(ip);
            v4.is_some() && (v4 == own_lo || v4 == Some(Ipv4Addr::LOCALHOST) || v4 == c.vip)
        };
        for (call, input, output) in outputs(&e, &c, a) {
            if output != input {
                prop_assert!(allowed(output.ip()), "{} {} -> {} is not the session's own", call, input, output);
            }
        }
        if let Ok(conn) = rw.connect(a) && let Some(s) = conn.source {
            prop_assert!(allowed(s.ip()), "source {} for {} is not the session's own", s, a);
        }
        let r = rw.resolved_addr(a.ip());
        prop_assert!(r == a.ip() || v4_of(r) == c.vip);
    }

    #[test]
    fn rewriting_a_rewritten_address_changes_nothing(c in any_case(), a in any_addr()) {
        let e = engine_for(&c);
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        if let Ok(b) = rw.bind_on(a, c.stack) {
            prop_assert_eq!(rw.bind_on(b, c.stack), Ok(b));
        }
        if let Ok(conn) = rw.connect(a) {
            prop_assert_eq!(rw.connect(conn.dest).map(|x| x.dest), Ok(conn.dest));
        }
        let r = rw.reported(a);
        prop_assert_eq!(rw.reported(r), r);
        let x = rw.resolved_addr(a.ip());
        prop_assert_eq!(rw.resolved_addr(x), x);
    }

    #[test]
    fn isolation_refuses_binds_exactly_where_it_refuses_connects(c in any_case(), a in any_addr()) {
        // One definition of "another session's loopback": a bind of an address is refused by
        // isolation exactly when a connect to it is.
        let e = engine_for(&c);
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        let bind_isolated = matches!(rw.bind_on(a, c.stack), Err(Refusal::OtherSession { .. }));
        let connect_isolated = matches!(rw.connect(a), Err(Refusal::Isolated { .. }));
        prop_assert_eq!(bind_isolated, connect_isolated, "bind and connect of {} disagree", a);
        if bind_isolated {
            prop_assert!(c.isolate);
        }
        // With isolation on, no bind of another session's loopback address ever succeeds
        // unchanged by an in-scope process (the port not excluded).
        if c.isolate && let Ok(b) = rw.bind_on(a, c.stack)
            && let Some(v4) = v4_of(b.ip())
            && rw.session_loopback().is_some()
            && b.port() != 27000
            && let Some(owner) = SessionId::from_loopback(v4)
        {
            prop_assert!(owner.get() == 0 || Some(v4) == rw.session_loopback(), "bound {} of session {}", b, owner);
        }
    }

    #[test]
    fn reported_undoes_the_loopback_rewrite(c in any_case(), port in any::<u16>()) {
        // What the application binds or connects to on localhost, it sees back as localhost.
        let e = engine_for(&c);
        let plan = e.process(c.image);
        let rw = e.rewriter(c.session, &plan, c.vip.map(|v| Vip::new(v).unwrap()));
        for a in [SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SocketAddr::V6(SocketAddrV6::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port, 0, 0))] {
            if let Ok(b) = rw.bind(a) {
                prop_assert_eq!(rw.reported(b), a);
            }
            if let Ok(conn) = rw.connect(a) {
                prop_assert_eq!(rw.reported(conn.dest), a);
            }
        }
    }
}
