//! Property: never two live sessions on one address, and never an address the host cannot use,
//! whatever a (hostile) DHCP server answers and whatever the clock does.
#![cfg(feature = "dhcp")]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipvirt::dhcp::{DhcpConfig, DhcpEvent, DhcpSource, MessageKind};
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
    /// giving address number `addr` of [`ADDRS`], from server `server`, for `lease` seconds;
    /// `t1`/`t2` options if set.
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
        6 => (0..6usize, 0..3u8, 0..ADDRS.len() as u8, 0..2u8, 1..400u32, proptest::option::of(0..500u32), proptest::option::of(0..500u32), any::<bool>())
            .prop_map(|(to, kind, addr, server, lease, t1, t2, echo_id)| Op::Reply { to, kind, addr, server, lease, t1, t2, echo_id }),
    ]
}

/// What the server hands out: three usable addresses, then the unusable kinds (issue 23, item 6):
/// the adapter network's network and broadcast addresses, the second server's own address, the
/// host's own address, and an address outside the adapter's network.
const ADDRS: [Ipv4Addr; 8] = [
    Ipv4Addr::new(10, 0, 0, 100),
    Ipv4Addr::new(10, 0, 0, 101),
    Ipv4Addr::new(10, 0, 0, 102),
    Ipv4Addr::new(10, 0, 0, 0),
    Ipv4Addr::new(10, 0, 0, 255),
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 50),
    Ipv4Addr::new(10, 0, 9, 9),
];

/// Whether `addr` from `server` cannot be a VIP under [`machine`]'s configuration, written out
/// independently of the machine's own check.
fn unusable_here(addr: Ipv4Addr, server: Ipv4Addr) -> bool {
    let [.., network, broadcast, _, host, outside] = ADDRS;
    addr == server || [network, broadcast, host, outside].contains(&addr)
}

/// The machine under test: adapter 10.0.0.0/24, the host's own address 10.0.0.50/24.
fn machine() -> DhcpSource {
    let mut c = DhcpConfig::new(b"p-".to_vec(), [2, 0, 0, 0, 0, 1]);
    c.adapter = Some("10.0.0.0/24".parse().unwrap());
    c.host_addresses = vec!["10.0.0.50/24".parse().unwrap()];
    DhcpSource::new(c)
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
        .set_yiaddr(ADDRS[addr as usize]);
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
        prop_assert!(
            !unusable_here(l.addr, l.server),
            "{} leased from {}",
            l.addr,
            l.server
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn never_two_sessions_on_one_address(ops in proptest::collection::vec(op(), 1..80)) {
        let mut d = machine();
        let mut now = Duration::from_secs(1_000);
        let mut sent: Vec<Message> = Vec::new();
        let mut declines_due: Vec<Ipv4Addr> = Vec::new();
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
                Op::Reply { to, kind, addr, server, .. } => {
                    if let Some(req) = sent.iter().rev().nth(to) {
                        let used = d.handle_datagram(now, &reply(req, op)).is_ok();
                        let (addr, server) = (ADDRS[addr as usize], Ipv4Addr::new(10, 0, 0, 1 + server));
                        // An ACK the machine used, of an address the host cannot use: DECLINEd
                        // at once (RFC 2131 §3.1.5).
                        if used && kind == 1 && unusable_here(addr, server) {
                            declines_due.push(addr);
                        }
                    }
                }
            }
            let first_new = sent.len();
            let due = std::mem::take(&mut declines_due);
            while let Some(t) = d.poll_transmit() {
                sent.push(Message::decode(&mut Decoder::new(&t.payload)).unwrap());
            }
            while let Some(e) = d.poll_event() {
                // An acknowledged address the host cannot use is DECLINEd at once (RFC 2131
                // §3.1.5), to the server that gave it.
                if let DhcpEvent::Refused { kind: MessageKind::Ack, addr, server, .. } = e {
                    prop_assert!(
                        sent[first_new..].iter().any(|m| {
                            m.opts().msg_type() == Some(MessageType::Decline)
                                && m.opts().get(OptionCode::RequestedIpAddress)
                                    == Some(&DhcpOption::RequestedIpAddress(addr))
                                && m.opts().get(OptionCode::ServerIdentifier)
                                    == Some(&DhcpOption::ServerIdentifier(server))
                        }),
                        "no DECLINE of {} after {:?}", addr, e
                    );
                }
            }
            for addr in due {
                prop_assert!(
                    sent[first_new..].iter().any(|m| {
                        m.opts().msg_type() == Some(MessageType::Decline)
                            && m.opts().get(OptionCode::RequestedIpAddress)
                                == Some(&DhcpOption::RequestedIpAddress(addr))
                    }),
                    "no DECLINE of {} after its ACK", addr
                );
            }
            check(&d)?;
        }
    }

    /// Arbitrary bytes never panic the machine and never change it.
    #[test]
    fn arbitrary_datagrams_are_harmless(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = machine();
        d.start(Duration::from_secs(5), SessionId::new(1));
        while d.poll_transmit().is_some() {}
        let before = d.state(SessionId::new(1));
        if d.handle_datagram(Duration::from_secs(5), &bytes).is_err() {
            prop_assert_eq!(d.state(SessionId::new(1)), before);
        }
    }
}
