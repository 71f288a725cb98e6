//! SPEC §12, "Isolation, precisely": every route to an address that the core decides, one row
//! per route, for IPv4 and IPv4-mapped IPv6 alike. The same routes run through the C ABI and
//! both Linux layers in `examples/cli/tests/layers_agree.rs` (`isolation_table_holds_in_every_layer`).
//!
//! Routes the hooking layer must bring here: a source chosen in ancillary data
//! (`IP_PKTINFO`/`IPV6_PKTINFO`) is decided as a bind of that source on the socket's port; an
//! `AF_UNSPEC` address that Linux reads as IPv4 is decided as that IPv4 address.

mod common;

use std::net::SocketAddr;

use common::{VIP, engine, mapped, sa};
use ipvirt::{Connect, Refusal, Rule, Session, SessionId};

const S7: Session = Session::remote(SessionId::new(7));
const LINUX_ECONNREFUSED: i32 = 111;
const LINUX_EACCES: i32 = 13;
const LINUX_EADDRNOTAVAIL: i32 = 99;

/// What a call should give: a destination and source, a bound address, or a refusal's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Connect(&'static str, Option<&'static str>),
    Bind(&'static str),
    Refused(i32),
}

struct Row {
    isolate: bool,
    image: &'static str,
    session: Session,
    vip: bool,
    call: &'static str,
    input: &'static str,
    want: Want,
}

fn check(r: &Row, input: SocketAddr, want: Want, map: fn(SocketAddr) -> SocketAddr) {
    let e = engine(r.isolate, "no-connectivity");
    let plan = e.process(r.image);
    let rw = e.rewriter(r.session, &plan, r.vip.then_some(VIP));
    let what = format!("{} {input} by {} (isolate {})", r.call, r.image, r.isolate);
    let got = match r.call {
        "bind" => rw.bind(input).map(|a| Want::Bind(leak(a))),
        "connect" => rw.connect(input).map(connect_want),
        _ => rw.send_to(input).map(connect_want),
    }
    .unwrap_or_else(|e| Want::Refused(e.errno()));
    let want = match want {
        Want::Connect(d, s) => Want::Connect(leak(map(sa(d))), s.map(|s| leak(map(sa(s))))),
        Want::Bind(a) => Want::Bind(leak(map(sa(a)))),
        refused => refused,
    };
    assert_eq!(got, want, "{what}");
}

fn connect_want(c: Connect) -> Want {
    Want::Connect(leak(c.dest), c.source.map(leak))
}

fn leak(a: SocketAddr) -> &'static str {
    Box::leak(a.to_string().into_boxed_str())
}

fn row(
    isolate: bool,
    image: &'static str,
    vip: bool,
    call: &'static str,
    input: &'static str,
    want: Want,
) -> Row {
    Row {
        isolate,
        image,
        session: S7,
        vip,
        call,
        input,
        want,
    }
}

#[test]
fn every_route_of_spec_12() {
    use Want::{Bind, Connect as C, Refused};
    let lo = "127.0.0.8:0";
    let vip = "192.0.2.107:0";
    let mut rows = Vec::new();
    for call in ["connect", "sendto"] {
        rows.extend([
            // A 0.0.0.0 destination is 127.0.0.1: the session's loopback, never the host's.
            row(
                true,
                "lo.exe",
                false,
                call,
                "0.0.0.0:9000",
                C("127.0.0.8:9000", Some(lo)),
            ),
            row(
                false,
                "lo.exe",
                false,
                call,
                "0.0.0.0:9000",
                C("127.0.0.8:9000", Some(lo)),
            ),
            row(
                true,
                "crm.exe",
                true,
                call,
                "0.0.0.0:9000",
                C("127.0.0.8:9000", Some(vip)),
            ),
            // An excluded port reaches the host's shared service on 127.0.0.1, written out so
            // that a source bound first cannot send it elsewhere (Linux sends 0.0.0.0 to it).
            row(
                true,
                "lo.exe",
                false,
                call,
                "0.0.0.0:27000",
                C("127.0.0.1:27000", None),
            ),
            row(
                true,
                "crm.exe",
                true,
                call,
                "0.0.0.0:27000",
                C("127.0.0.1:27000", Some(vip)),
            ),
            // Virtual IP alone: this host is still this host, and loopback needs no VIP.
            row(
                true,
                "vipo.exe",
                true,
                call,
                "0.0.0.0:9000",
                C("127.0.0.1:9000", Some(vip)),
            ),
            row(
                true,
                "vipo.exe",
                false,
                call,
                "0.0.0.0:9000",
                C("127.0.0.1:9000", None),
            ),
            // Out of every list: nothing changes.
            row(
                true,
                "other.exe",
                true,
                call,
                "0.0.0.0:9000",
                C("0.0.0.0:9000", None),
            ),
            // Another session's loopback, and the two addresses that belong to no session.
            row(
                true,
                "lo.exe",
                false,
                call,
                "127.0.0.9:9000",
                Refused(LINUX_ECONNREFUSED),
            ),
            row(
                true,
                "lo.exe",
                false,
                call,
                "127.0.0.0:9000",
                Refused(LINUX_ECONNREFUSED),
            ),
            row(
                true,
                "lo.exe",
                false,
                call,
                "127.255.255.255:9000",
                Refused(LINUX_ECONNREFUSED),
            ),
            row(
                true,
                "lo.exe",
                false,
                call,
                "127.0.0.0:27000",
                C("127.0.0.0:27000", None),
            ),
            row(
                false,
                "lo.exe",
                false,
                call,
                "127.0.0.0:9000",
                C("127.0.0.0:9000", None),
            ),
        ]);
    }
    rows.extend([
        // bind, and so a source chosen in IP_PKTINFO / IPV6_PKTINFO.
        row(
            true,
            "lo.exe",
            false,
            "bind",
            "127.0.0.1:9000",
            Bind("127.0.0.8:9000"),
        ),
        row(
            true,
            "lo.exe",
            false,
            "bind",
            "127.0.0.9:9000",
            Refused(LINUX_EACCES),
        ),
        row(
            true,
            "lo.exe",
            false,
            "bind",
            "127.0.0.0:9000",
            Refused(LINUX_EACCES),
        ),
        row(
            true,
            "lo.exe",
            false,
            "bind",
            "127.255.255.255:9000",
            Refused(LINUX_EACCES),
        ),
        row(
            true,
            "lo.exe",
            false,
            "bind",
            "127.0.0.0:27000",
            Bind("127.0.0.0:27000"),
        ),
        row(
            false,
            "lo.exe",
            false,
            "bind",
            "127.0.0.0:9000",
            Bind("127.0.0.0:9000"),
        ),
    ]);
    // A session without a loopback address (past SessionId::MAX, or Linux's 16 777 214) is
    // isolated too: it may reach only the host's shared services.
    let none = Session::remote(SessionId::new(20_000_000));
    for (call, input, want) in [
        ("connect", "127.0.0.9:9000", Refused(LINUX_ECONNREFUSED)),
        ("sendto", "127.0.0.0:9000", Refused(LINUX_ECONNREFUSED)),
        ("connect", "0.0.0.0:9000", Refused(LINUX_EADDRNOTAVAIL)),
        ("bind", "127.0.0.9:9000", Refused(LINUX_EACCES)),
        ("connect", "127.0.0.1:27000", C("127.0.0.1:27000", None)),
    ] {
        rows.push(Row {
            session: none,
            ..row(true, "lo.exe", false, call, input, want)
        });
    }
    for r in &rows {
        check(r, sa(r.input), r.want, |a| a);
        check(r, mapped(sa(r.input)), r.want, mapped);
    }
}

#[test]
fn refusals_of_spec_12_say_what_and_why() {
    let e = engine(true, "use-server-address");
    let plan = e.process("lo.exe");
    let rw = e.rewriter(S7, &plan, None);
    let nobody = "127.0.0.0".parse().unwrap();
    assert_eq!(
        rw.connect(sa("127.0.0.0:9000")),
        Err(Refusal::Unowned { addr: nobody })
    );
    assert_eq!(
        rw.bind(sa("127.0.0.0:9000")),
        Err(Refusal::BindUnowned { addr: nobody })
    );
    assert_eq!(
        rw.connect(sa("127.0.0.0:9000")).unwrap_err().to_string(),
        "refused: 127.0.0.0 belongs to no session and virtual_loopback.isolate is on"
    );
    assert_eq!(
        rw.connect(sa("127.255.255.255:9000")),
        Err(Refusal::Isolated {
            owner: SessionId::MAX
        })
    );
    let why = rw.explain(ipvirt::Call::Connect, sa("0.0.0.0:9000"));
    assert_eq!(why.rule(), Rule::UnspecifiedDestinationToSessionLoopback);
    let why = rw.explain(ipvirt::Call::Connect, sa("127.0.0.0:9000"));
    assert_eq!(why.rule(), Rule::IsolatedUnowned);
}
