//! Property: never two live sessions on one address, whatever a (hostile) DHCP server answers and
//! whatever the clock does.
#![cfg(feature = "dhcp")]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipvirt::dhcp::{DhcpConfig, DhcpSource};
use ipvirt::{AddressSource, SessionId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Start(u32),
    Release(u32),
    Decline(u32),
    Lease(u32),
    Clock(i64),
    /// Answer the sent message number `to` (counted from the newest) with a message of `kind`
    /// giving address `addr`, from server `server`, for `lease` seconds; `t1`/`t2` options if set.
    Reply {
        to: usize,
        kind: u8,
        addr: u8,
        server: u8,
        lease: u32,
        t1: Option<u32>,
        t2: Option<u32>,
        echo_id: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1..=4u32).prop_map(Op::Start),
        1 => (1..=4u32).prop_map(Op::Release),
        1 => (1..=4u32).prop_map(Op::Decline),
        1 => (1..=4u32).prop_map(Op::Lease),
        1 => (-300..600i64).prop_map(Op::Clock),
        6 => (0..6usize, 0..3u8, 0..3u8, 0..2u8, 1..400u32, proptest::option::of(0..500u32), proptest::option::of(0..500u32), any::<bool>())
            .prop_map(|(to, kind, addr, server, lease, t1, t2, echo_id)| Op::Reply { to, kind, addr, server, lease, t1, t2, echo_id }),
    ]
}

fn reply(req: &Message, op: &Op) -> Vec<u8> {
    let Op::Reply {
        kind,
        addr,
        server,
        lease,
        t1,
        t2,
        echo_id,
        ..
    } = *op
    else {
        unreachable!()
    };
    let kind = [MessageType::Offer, MessageType::Ack, MessageType::Nak][kind as usize];
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_xid(req.xid())
        .set_chaddr(req.chaddr())
        .set_yiaddr(Ipv4Addr::new(10, 0, 0, 100 + addr));
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(
            10,
            0,
            0,
            1 + server,
        )));
    m.opts_mut().insert(DhcpOption::AddressLeaseTime(lease));
    if let Some(t) = t1 {
        m.opts_mut().insert(DhcpOption::Renewal(t));
    }
    if let Some(t) = t2 {
        m.opts_mut().insert(DhcpOption::Rebinding(t));
    }
    if echo_id && let Some(c) = req.opts().get(OptionCode::ClientIdentifier) {
        m.opts_mut().insert(c.clone());
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn check(d: &DhcpSource) -> Result<(), TestCaseError> {
    let mut by_addr: HashMap<Ipv4Addr, SessionId> = HashMap::new();
    for s in d.sessions() {
        if let Some(v) = d.address_of(s) {
            if let Some(other) = by_addr.insert(v.addr(), s) {
                return Err(TestCaseError::fail(format!(
                    "{} held by sessions {other} and {s}",
                    v.addr()
                )));
            }
            prop_assert_eq!(d.session_of(v.addr()), Some(s));
        }
    }
    let mut leased: HashMap<Ipv4Addr, SessionId> = HashMap::new();
    for (s, l) in d.leases() {
        prop_assert!(
            leased.insert(l.addr, s).is_none(),
            "{} leased twice",
            l.addr
        );
        prop_assert!(l.acquired <= l.t1 && l.t1 <= l.t2 && l.t2 <= l.expiry);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn never_two_sessions_on_one_address(ops in proptest::collection::vec(op(), 1..80)) {
        let mut d = DhcpSource::new(DhcpConfig::new(b"p-".to_vec(), [2, 0, 0, 0, 0, 1]));
        let mut now = Duration::from_secs(1_000);
        let mut sent: Vec<Message> = Vec::new();
        for op in &ops {
            match *op {
                Op::Start(s) => d.start(now, SessionId::new(s)),
                Op::Release(s) => { d.release(now, SessionId::new(s)); }
                Op::Decline(s) => { d.decline(now, SessionId::new(s)); }
                Op::Lease(s) => { let _ = d.lease(now, SessionId::new(s)); }
                Op::Clock(delta) => {
                    now = if delta < 0 {
                        now.saturating_sub(Duration::from_secs(delta.unsigned_abs()))
                    } else {
                        now + Duration::from_secs(delta as u64)
                    };
                    d.handle_timeout(now);
                }
                Op::Reply { to, .. } => {
                    if let Some(req) = sent.iter().rev().nth(to) {
                        let _ = d.handle_datagram(now, &reply(req, op));
                    }
                }
            }
            while let Some(t) = d.poll_transmit() {
                sent.push(Message::decode(&mut Decoder::new(&t.payload)).unwrap());
            }
            while d.poll_event().is_some() {}
            check(&d)?;
        }
    }

    /// Arbitrary bytes never panic the machine and never change it.
    #[test]
    fn arbitrary_datagrams_are_harmless(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = DhcpSource::new(DhcpConfig::new(b"p-".to_vec(), [2, 0, 0, 0, 0, 1]));
        d.start(Duration::from_secs(5), SessionId::new(1));
        while d.poll_transmit().is_some() {}
        let before = d.state(SessionId::new(1));
        if d.handle_datagram(Duration::from_secs(5), &bytes).is_err() {
            prop_assert_eq!(d.state(SessionId::new(1)), before);
        }
    }
}
