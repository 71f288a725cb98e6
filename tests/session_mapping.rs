//! SPEC §2: every value the spec names, both directions, plus the §2 properties (proptest).

use std::net::Ipv4Addr;

use ipvirt::{Session, SessionError, SessionId};
use proptest::prelude::*;

/// (session id, expected loopback address or `None` for an out-of-range id)
const TABLE: &[(u32, Option<[u8; 4]>)] = &[
    (0, Some([127, 0, 0, 1])),
    (1, Some([127, 0, 0, 2])),
    (7, Some([127, 0, 0, 8])),
    (254, Some([127, 0, 0, 255])),
    (255, Some([127, 0, 1, 0])),
    (65_534, Some([127, 0, 255, 255])),
    (65_535, Some([127, 1, 0, 0])),
    (16_777_214, Some([127, 255, 255, 255])),
    (16_777_215, None),
    (16_777_216, None),
    (u32::MAX, None),
];

#[test]
fn spec_2_table_forward() {
    for &(id, want) in TABLE {
        let got = SessionId::new(id).loopback();
        match want {
            Some(o) => assert_eq!(got, Ok(Ipv4Addr::from(o)), "session {id}"),
            None => assert_eq!(got, Err(SessionError::OutOfRange { id }), "session {id}"),
        }
    }
}

#[test]
fn spec_2_table_inverse() {
    for &(id, want) in TABLE {
        if let Some(o) = want {
            assert_eq!(
                SessionId::from_loopback(Ipv4Addr::from(o)),
                Some(SessionId::new(id))
            );
        }
    }
    let none = [
        [127, 0, 0, 0],
        [126, 255, 255, 255],
        [128, 0, 0, 1],
        [0, 0, 0, 0],
        [10, 0, 0, 8],
        [192, 0, 2, 1],
        [255, 255, 255, 255],
    ];
    for o in none {
        assert_eq!(SessionId::from_loopback(Ipv4Addr::from(o)), None, "{o:?}");
    }
    assert_eq!(
        SessionId::from_loopback(Ipv4Addr::new(127, 0, 0, 1)),
        Some(SessionId::new(0)),
        "127.0.0.1 is session 0's address"
    );
    assert_eq!(
        SessionId::from_loopback(Ipv4Addr::new(127, 255, 255, 255)),
        Some(SessionId::MAX)
    );
}

#[test]
fn max_is_spec_value() {
    assert_eq!(SessionId::MAX.get(), 16_777_214);
}

#[test]
fn out_of_range_error_names_id_and_max() {
    let msg = SessionId::new(u32::MAX).loopback().unwrap_err().to_string();
    assert!(msg.contains("4294967295"), "{msg}");
    assert!(msg.contains("16777214"), "{msg}");
}

#[test]
fn display_fromstr_serde_round_trip() {
    let id = SessionId::new(65_535);
    assert_eq!(id.to_string(), "65535");
    assert_eq!(id.to_string().parse::<SessionId>(), Ok(id));
    assert_eq!(serde_json::to_string(&id).unwrap(), "65535");
    assert_eq!(serde_json::from_str::<SessionId>("65535").unwrap(), id);
    let err = serde_json::from_str::<SessionId>("16777215")
        .unwrap_err()
        .to_string();
    assert!(err.contains("16777215"), "{err}");
    let s = Session::remote(id);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, r#"{"id":65535,"kind":"remote"}"#);
    assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), s);
}

#[test]
fn parse_errors_name_the_input() {
    let e = "12a".parse::<SessionId>().unwrap_err().to_string();
    assert!(
        e.contains("\"12a\"") && e.contains("not a decimal number"),
        "{e}"
    );
    let e = "16777215".parse::<SessionId>().unwrap_err().to_string();
    assert!(e.contains("\"16777215\"") && e.contains("16777214"), "{e}");
}

#[test]
fn only_remote_nonzero_sessions_are_virtualized() {
    assert!(Session::remote(SessionId::new(1)).is_virtualized());
    assert!(Session::remote(SessionId::MAX).is_virtualized());
    assert!(!Session::remote(SessionId::new(0)).is_virtualized());
    assert!(!Session::console(SessionId::new(1)).is_virtualized());
    assert!(!Session::console(SessionId::new(0)).is_virtualized());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn round_trips(id in 0..=SessionId::MAX.get()) {
        let addr = SessionId::new(id).loopback().unwrap();
        prop_assert_eq!(SessionId::from_loopback(addr), Some(SessionId::new(id)));
    }

    #[test]
    fn lands_in_127_8_never_network_address(id in 0..=SessionId::MAX.get()) {
        let addr = SessionId::new(id).loopback().unwrap();
        prop_assert!(addr.is_loopback());
        prop_assert_eq!(addr.octets()[0], 127);
        prop_assert_ne!(addr, Ipv4Addr::new(127, 0, 0, 0));
    }

    #[test]
    fn injective(a in 0..=SessionId::MAX.get(), b in 0..=SessionId::MAX.get()) {
        prop_assume!(a != b);
        prop_assert_ne!(SessionId::new(a).loopback().unwrap(), SessionId::new(b).loopback().unwrap());
    }

    #[test]
    fn out_of_range_is_error_never_wraps(id in (SessionId::MAX.get() + 1)..=u32::MAX) {
        prop_assert_eq!(SessionId::new(id).loopback(), Err(SessionError::OutOfRange { id }));
    }

    #[test]
    fn inverse_of_every_127_address(host in 1u32..=0x00FF_FFFF) {
        let addr = Ipv4Addr::from(0x7F00_0000 | host);
        let id = SessionId::from_loopback(addr).unwrap();
        prop_assert_eq!(id.loopback().unwrap(), addr);
    }

    #[test]
    fn non_127_is_none(bits in any::<u32>()) {
        let addr = Ipv4Addr::from(bits);
        prop_assume!(addr.octets()[0] != 127);
        prop_assert_eq!(SessionId::from_loopback(addr), None);
    }

    #[test]
    fn display_parse_round_trip(id in 0..=SessionId::MAX.get()) {
        prop_assert_eq!(SessionId::new(id).to_string().parse::<SessionId>(), Ok(SessionId::new(id)));
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,24}") {
        let _ = s.parse::<SessionId>();
    }
}
