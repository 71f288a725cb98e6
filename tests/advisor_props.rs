//! The advisor's readers never panic on arbitrary text, and generated records survive a render /
//! parse round trip in every format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipvirt::advisor::{Format, Protocol, SocketRecord, parse, parse_as, render};
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn record() -> impl Strategy<Value = SocketRecord> {
    (
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        ip(),
        1u16..,
        prop::option::of((ip(), 1u16..)),
        "[a-z][a-z0-9_.-]{0,12}",
        1u32..100_000,
    )
        .prop_map(|(protocol, ip, port, remote, name, pid)| {
            let mut r = SocketRecord::new(protocol, SocketAddr::new(ip, port), 0);
            r.remote = remote.map(|(i, p)| SocketAddr::new(i, p));
            r.state = Some(match (protocol, r.remote.is_some()) {
                (Protocol::Tcp, false) => "LISTEN".to_string(),
                (Protocol::Tcp, true) => "ESTAB".to_string(),
                (Protocol::Udp, _) => "UNCONN".to_string(),
            });
            r.process = Some(name);
            r.pid = Some(pid);
            r
        })
}

/// What survives a format: netstat has no names without -b (it has them here), uses its own state
/// words; compare what every format carries.
fn key(
    r: &SocketRecord,
) -> (
    Protocol,
    SocketAddr,
    Option<SocketAddr>,
    Option<String>,
    Option<u32>,
) {
    (r.protocol, r.local, r.remote, r.process.clone(), r.pid)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s);
        for f in Format::ALL {
            let _ = parse_as(&s, f);
        }
    }

    #[test]
    fn table_shaped_text_never_panics(lines in prop::collection::vec("[a-zA-Z0-9:\\[\\]\\*.%,\"() =_-]{0,60}", 0..12)) {
        let text = lines.join("\n");
        for f in Format::ALL {
            let _ = parse_as(&text, f);
        }
    }

    #[test]
    fn records_round_trip_in_every_format(records in prop::collection::vec(record(), 1..8)) {
        for f in Format::ALL {
            let text = render(&records, f);
            let back = parse_as(&text, f);
            prop_assert!(back.skipped.is_empty(), "{:?}: {:?}\n{}", f, back.skipped, text);
            let want: Vec<_> = records.iter().map(key).collect();
            let got: Vec<_> = back.records.iter().map(key).collect();
            prop_assert_eq!(got, want, "{:?}\n{}", f, text);
            // And detection picks the right format.
            prop_assert_eq!(parse(&text).unwrap().format, f);
        }
    }
}
