//! The flat rule tables of SPEC §7: their layout, what the engine puts in them, and the property
//! that the `Rewriter` decides exactly as the tables' reference evaluator does, for every call of
//! SPEC §5/§6/§8 (more than 100 000 cases per call).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use common::{SERVER, VIP, engine};
use ipvirt::table::{self, PolicyTable, ProgramEntry, SessionEntry, reference};
use ipvirt::{Host, Policy, Rewriter, Session, SessionId, Stack};
use proptest::prelude::*;

#[test]
fn layout_is_the_documented_one() {
    use std::mem::{align_of, offset_of, size_of};
    assert_eq!(size_of::<PolicyTable>(), 8472);
    assert_eq!(align_of::<PolicyTable>(), 8);
    assert_eq!(offset_of!(PolicyTable, version), 0);
    assert_eq!(offset_of!(PolicyTable, flags), 4);
    assert_eq!(offset_of!(PolicyTable, localhost), 8);
    assert_eq!(offset_of!(PolicyTable, primary_server), 12);
    assert_eq!(offset_of!(PolicyTable, server_count), 16);
    assert_eq!(offset_of!(PolicyTable, reserved), 20);
    assert_eq!(offset_of!(PolicyTable, servers), 24);
    assert_eq!(offset_of!(PolicyTable, excluded_ports), 280);
    assert_eq!(size_of::<SessionEntry>(), 16);
    assert_eq!(offset_of!(SessionEntry, session), 0);
    assert_eq!(offset_of!(SessionEntry, loopback), 4);
    assert_eq!(offset_of!(SessionEntry, vip), 8);
    assert_eq!(offset_of!(SessionEntry, flags), 12);
    assert_eq!(size_of::<ProgramEntry>(), 4);
}

#[test]
fn the_engine_fills_the_tables_from_the_policy() {
    let e = engine(true, "no-connectivity");
    let t = e.tables();
    assert_eq!(t.version, table::TABLE_VERSION);
    assert_eq!(t.localhost, Ipv4Addr::LOCALHOST.to_bits());
    assert_eq!(t.servers(), [SERVER.to_bits()]);
    assert_eq!(t.primary_server, SERVER.to_bits());
    assert!(t.is_port_excluded(27000));
    assert!(!t.is_port_excluded(27001));
    assert_eq!(t.flags, table::POLICY_ISOLATE);
    let s7 = e.session_entry(Session::remote(SessionId::new(7)), Some(VIP));
    assert_eq!(
        s7,
        SessionEntry {
            session: 7,
            loopback: 0x7F00_0008,
            vip: VIP.to_bits(),
            flags: table::SESSION_VIRTUALIZED
        }
    );
    let none = e.session_entry(Session::remote(SessionId::new(7)), None);
    assert_eq!(
        none.flags,
        table::SESSION_VIRTUALIZED | table::SESSION_NO_CONNECTIVITY
    );
    let console = e.session_entry(Session::console(SessionId::new(1)), None);
    assert_eq!(console.flags & table::SESSION_VIRTUALIZED, 0);
    assert_eq!(console.loopback, 0);
    assert_eq!(
        e.process("pref.exe").entry().flags,
        table::PROGRAM_LOOPBACK | table::PROGRAM_VIRTUAL_IP | table::PROGRAM_PREFER_LOOPBACK
    );
    assert_eq!(
        e.process("vipo.exe").entry().flags,
        table::PROGRAM_VIRTUAL_IP
    );
    assert_eq!(e.process("notepad.exe").entry().flags, 0);
    // The rewriter carries the same entries.
    let rw = e.rewriter(
        Session::remote(SessionId::new(7)),
        &e.process("crm.exe"),
        Some(VIP),
    );
    assert_eq!(rw.session_entry(), s7);
    assert_eq!(rw.program_entry(), e.process("crm.exe").entry());
    assert_eq!(rw.policy_table(), t);
    // The IPv6 mapping is a flag too; a host with too many addresses does not fit the table.
    let mapped = Policy::from_toml("[virtual_loopback]\nipv6 = \"map\"\n")
        .unwrap()
        .compile(Host::default())
        .unwrap();
    assert_eq!(mapped.tables().flags, table::POLICY_IPV6_MAP);
    let many = Host::new((1..=65u8).map(|i| IpAddr::from([192, 0, 2, i])));
    let err = Policy::default().compile(many).unwrap_err();
    assert!(err.to_string().contains("65"), "{err}");
}

#[test]
fn tables_from_c_are_checked_where_they_are_made() {
    let good = SessionEntry {
        session: 7,
        loopback: 0x7F00_0008,
        vip: 0,
        flags: table::SESSION_VIRTUALIZED,
    };
    let prog = ProgramEntry {
        flags: table::PROGRAM_LOOPBACK,
    };
    let policy = Arc::new(PolicyTable::new());
    assert!(Rewriter::from_tables(policy.clone(), good, prog).is_ok());
    let cases = [
        (
            SessionEntry {
                loopback: 0xC000_0201,
                ..good
            },
            "session.loopback",
        ),
        (
            SessionEntry {
                loopback: 0x7F00_0000,
                ..good
            },
            "session.loopback",
        ),
        (
            SessionEntry {
                vip: 0x7F00_0002,
                ..good
            },
            "session.vip",
        ),
        (
            SessionEntry {
                vip: 0xE000_0001,
                ..good
            },
            "session.vip",
        ),
    ];
    for (entry, field) in cases {
        let err = Rewriter::from_tables(policy.clone(), entry, prog).unwrap_err();
        assert_eq!(err.field, field);
        assert!(err.to_string().contains(field), "{err}");
    }
    let mut bad = PolicyTable::new();
    bad.localhost = 0x0A00_0001;
    assert_eq!(
        Rewriter::from_tables(Arc::new(bad), good, prog)
            .unwrap_err()
            .field,
        "policy.localhost"
    );
    let mut unsorted = PolicyTable::new();
    unsorted.server_count = 2;
    unsorted.servers[0] = 0xC000_020B;
    unsorted.servers[1] = 0xC000_020A;
    assert!(Rewriter::from_tables(Arc::new(unsorted), good, prog).is_err());
}

// ---- the property: Rewriter == reference, for any tables ---------------------------------------

const SERVERS: [u32; 3] = [0xC000_020A, 0xC000_020B, 0xC633_6401];
const VIPS: [u32; 3] = [0xC000_026B, 0xC000_026C, 0xCB00_7101];
const PORTS: [u16; 5] = [0, 53, 9000, 27000, 65535];

fn any_policy() -> impl Strategy<Value = PolicyTable> {
    (
        0u32..4,
        prop_oneof![Just(0x7F00_0001u32), Just(0x7F00_0005), Just(0x7F12_3456)],
        0usize..=3,
        any::<bool>(),
        prop::collection::vec(prop::sample::select(&PORTS[..]), 0..3),
    )
        .prop_map(|(flags, localhost, n, primary, excluded)| {
            let mut t = PolicyTable::new();
            t.flags = flags;
            t.localhost = localhost;
            t.server_count = n as u32;
            for (slot, s) in t.servers.iter_mut().zip(&SERVERS[..n]) {
                *slot = *s;
            }
            t.primary_server = if primary && n > 0 { SERVERS[0] } else { 0 };
            for p in excluded {
                t.excluded_ports[usize::from(p) / 64] |= 1 << (p % 64);
            }
            t
        })
}

fn any_session() -> impl Strategy<Value = SessionEntry> {
    (
        prop_oneof![0u32..12, Just(SessionId::MAX.get()), Just(20_000_000)],
        any::<bool>(),
        prop::option::of(prop::sample::select(&VIPS[..])),
        any::<bool>(),
    )
        .prop_map(|(id, virtualized, vip, no_connectivity)| {
            let lo = SessionId::new(id).loopback().ok();
            let mut flags = 0;
            if virtualized {
                flags |= table::SESSION_VIRTUALIZED;
                if lo.is_none() {
                    flags |= table::SESSION_NO_LOOPBACK;
                }
            }
            if no_connectivity {
                flags |= table::SESSION_NO_CONNECTIVITY;
            }
            SessionEntry {
                session: id,
                loopback: if virtualized {
                    lo.map_or(0, Ipv4Addr::to_bits)
                } else {
                    0
                },
                vip: vip.unwrap_or(0),
                flags,
            }
        })
}

fn any_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(Ipv4Addr::LOCALHOST),
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::new(127, 0, 0, 0)),
        Just(Ipv4Addr::new(127, 0, 0, 5)),
        Just(Ipv4Addr::new(127, 18, 52, 86)),
        (0u32..14).prop_map(|s| SessionId::new(s).loopback().unwrap()),
        prop::sample::select(&SERVERS[..]).prop_map(Ipv4Addr::from_bits),
        prop::sample::select(&VIPS[..]).prop_map(Ipv4Addr::from_bits),
        any::<u32>().prop_map(Ipv4Addr::from_bits),
    ]
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    let port = prop_oneof![prop::sample::select(&PORTS[..]), any::<u16>()];
    prop_oneof![
        (any_ipv4(), port.clone()).prop_map(|(ip, p)| SocketAddr::V4(SocketAddrV4::new(ip, p))),
        (any_ipv4(), port.clone(), any::<u32>(), any::<u32>()).prop_map(|(ip, p, f, s)| {
            SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), p, f, s))
        }),
        (
            prop_oneof![
                Just(Ipv6Addr::LOCALHOST),
                Just(Ipv6Addr::UNSPECIFIED),
                any::<u128>().prop_map(Ipv6Addr::from_bits)
            ],
            port
        )
            .prop_map(|(ip, p)| SocketAddr::V6(SocketAddrV6::new(ip, p, 0, 0))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120_000))]

    #[test]
    fn the_rewriter_decides_as_the_reference_evaluator(
        policy in any_policy(),
        session in any_session(),
        program in (0u32..8).prop_map(|flags| ProgramEntry { flags }),
        a in any_addr(),
        dual in any::<bool>(),
    ) {
        let stack = if dual { Stack::Dual } else { Stack::Single };
        let policy = Arc::new(policy);
        let rw = Rewriter::from_tables(Arc::clone(&policy), session, program).unwrap();
        let t = reference::Tables { policy: &policy, session, program };
        prop_assert_eq!(rw.bind_on(a, stack), reference::bind(&t, a, stack), "bind_on {} {:?}", a, stack);
        let c = reference::connect(&t, a);
        prop_assert_eq!(rw.connect(a), c, "connect {}", a);
        prop_assert_eq!(rw.send_to(a), c, "send_to {}", a);
        prop_assert_eq!(rw.reported(a), reference::reported(&t, a), "reported {}", a);
        prop_assert_eq!(rw.resolved_addr(a.ip()), reference::resolved(&t, a.ip()), "resolved {}", a);
        prop_assert_eq!(rw.reverse_lookup(a.ip()), reference::reverse_lookup(&t, a.ip()), "reverse {}", a);
    }
}

#[test]
fn a_rewriter_is_stored_and_shared_freely() {
    fn send_sync_static<T: Send + Sync + 'static>(_: &T) {}
    let e = engine(false, "use-server-address");
    let rw = e.rewriter(
        Session::remote(SessionId::new(7)),
        &e.process("crm.exe"),
        Some(VIP),
    );
    send_sync_static(&rw);
    drop(e); // the rewriter outlives its engine
    let t = std::thread::spawn(move || rw.bind("127.0.0.1:80".parse().unwrap()));
    assert_eq!(t.join().unwrap(), Ok("127.0.0.8:80".parse().unwrap()));
}
