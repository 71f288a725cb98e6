//! The DHCP lease machine against a scripted server: every transition of the table in
//! `ipvirt::dhcp`, lost packets, NAKs, a server that goes away and comes back, clock jumps, and a
//! hostile server that offers addresses the host cannot use.
#![cfg(feature = "dhcp")]

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipvirt::dhcp::{
    DatagramError, Destination, DhcpConfig, DhcpEvent, DhcpSnapshot, DhcpSource, DhcpState,
    MessageKind, Transmit, Unusable,
};
use ipvirt::{AddressSource, LeaseError, SessionId};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const S7: SessionId = SessionId::new(7);
const S8: SessionId = SessionId::new(8);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn machine() -> DhcpSource {
    DhcpSource::new(DhcpConfig::new(b"test-".to_vec(), MAC))
}

fn decode(t: &Transmit) -> Message {
    Message::decode(&mut Decoder::new(&t.payload)).unwrap()
}

fn opt_addr(m: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match m.opts().get(code) {
        Some(DhcpOption::RequestedIpAddress(a) | DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    }
}

fn msg_type(m: &Message) -> MessageType {
    m.opts().msg_type().unwrap()
}

/// A reply to `req` of type `kind` giving `addr`, from `server`, with a lease of `lease` seconds.
fn reply(
    req: &Message,
    kind: MessageType,
    addr: Ipv4Addr,
    server: Ipv4Addr,
    lease: u32,
) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_xid(req.xid())
        .set_chaddr(req.chaddr())
        .set_yiaddr(addr);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    if kind != MessageType::Nak {
        m.opts_mut().insert(DhcpOption::AddressLeaseTime(lease));
    }
    if let Some(c) = req.opts().get(OptionCode::ClientIdentifier) {
        m.opts_mut().insert(c.clone());
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn one(d: &mut DhcpSource) -> Transmit {
    let t = d.poll_transmit().expect("a datagram to send");
    assert!(d.poll_transmit().is_none(), "only one datagram");
    t
}

fn events(d: &mut DhcpSource) -> Vec<DhcpEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// Runs DISCOVER → OFFER → REQUEST → ACK for `s` at `now`; returns the address.
fn bind(d: &mut DhcpSource, now: Duration, s: SessionId, addr: Ipv4Addr, lease: u32) {
    d.start(now, s);
    let disc = decode(&one(d));
    assert_eq!(msg_type(&disc), MessageType::Discover);
    d.handle_datagram(now, &reply(&disc, MessageType::Offer, addr, SERVER, lease))
        .unwrap();
    let req = decode(&one(d));
    assert_eq!(msg_type(&req), MessageType::Request);
    d.handle_datagram(now, &reply(&req, MessageType::Ack, addr, SERVER, lease))
        .unwrap();
    assert_eq!(d.state(s), Some(DhcpState::Bound));
    events(d);
}

#[test]
fn discover_offer_request_ack() {
    let mut d = machine();
    let now = secs(1000);
    // The first lease starts the exchange at the time it is given.
    assert_eq!(d.lease(now, S7), Err(LeaseError::Pending { session: S7 }));
    assert_eq!(d.state(S7), Some(DhcpState::Selecting));
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Discover, Destination::Broadcast)
    );
    let disc = decode(&t);
    assert_eq!(disc.chaddr(), MAC);
    assert!(disc.flags().broadcast());
    assert_eq!(
        disc.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(b"\0test-7".to_vec()))
    );
    assert_eq!(opt_addr(&disc, OptionCode::RequestedIpAddress), None);

    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        now + secs(1),
        &reply(&disc, MessageType::Offer, addr, SERVER, 120),
    )
    .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Requesting));
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Request, Destination::Broadcast)
    );
    let req = decode(&t);
    assert_eq!(req.xid(), disc.xid());
    assert_eq!(opt_addr(&req, OptionCode::RequestedIpAddress), Some(addr));
    assert_eq!(opt_addr(&req, OptionCode::ServerIdentifier), Some(SERVER));
    assert_eq!(req.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        d.lease(d.now(), S7),
        Err(LeaseError::Pending { session: S7 })
    );

    d.handle_datagram(
        now + secs(2),
        &reply(&req, MessageType::Ack, addr, SERVER, 120),
    )
    .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Bound));
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
    assert_eq!(d.address_of(S7).unwrap().addr(), addr);
    assert_eq!(d.session_of(addr), Some(S7));
    let l = d.lease_of(S7).unwrap();
    // The lease starts when the REQUEST left; T1 and T2 default to 1/2 and 7/8.
    assert_eq!(
        (l.acquired, l.t1, l.t2, l.expiry),
        (
            now + secs(1),
            now + secs(61),
            now + secs(106),
            now + secs(121)
        )
    );
    assert_eq!(d.poll_timeout(), Some(l.t1));
    assert_eq!(
        events(&mut d),
        [DhcpEvent::Bound {
            session: S7,
            lease: l
        }]
    );
    assert!(d.poll_transmit().is_none());
}

#[test]
fn lost_discovers_back_off_and_keep_the_transaction() {
    let mut d = machine();
    d.start(secs(0), S7);
    let first = decode(&one(&mut d));
    let mut at = secs(0);
    for delay in [4, 8, 16, 32, 64, 64] {
        assert_eq!(d.poll_timeout(), Some(at + secs(delay)));
        at += secs(delay);
        d.handle_timeout(at - Duration::from_millis(1));
        assert!(d.poll_transmit().is_none(), "nothing before the deadline");
        d.handle_timeout(at);
        let again = decode(&one(&mut d));
        assert_eq!(msg_type(&again), MessageType::Discover);
        assert_eq!(again.xid(), first.xid());
        assert_eq!(u64::from(again.secs()), at.as_secs());
    }
    // A late offer to the first DISCOVER still counts.
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(at, &reply(&first, MessageType::Offer, addr, SERVER, 600))
        .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Requesting));
}

#[test]
fn lost_acks_retransmit_then_start_over() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        secs(0),
        &reply(&disc, MessageType::Offer, addr, SERVER, 600),
    )
    .unwrap();
    one(&mut d);
    let mut at = secs(0);
    for delay in [4, 8, 16] {
        at += secs(delay);
        d.handle_timeout(at);
        let t = one(&mut d);
        assert_eq!(t.kind, MessageKind::Request);
        assert_eq!(d.state(S7), Some(DhcpState::Requesting));
    }
    at += secs(32);
    d.handle_timeout(at);
    let t = decode(&one(&mut d));
    assert_eq!(msg_type(&t), MessageType::Discover);
    assert_ne!(t.xid(), disc.xid(), "a new transaction");
    assert_eq!(d.state(S7), Some(DhcpState::Selecting));
    // An ACK to the old transaction is ignored and counted.
    let err = d
        .handle_datagram(at, &reply(&disc, MessageType::Ack, addr, SERVER, 600))
        .unwrap_err();
    assert!(
        matches!(err, DatagramError::UnknownTransaction { .. }),
        "{err}"
    );
    assert_eq!(d.stats().ignored, 1);
}

#[test]
fn nak_while_requesting_starts_over() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        secs(0),
        &reply(&disc, MessageType::Offer, addr, SERVER, 600),
    )
    .unwrap();
    let req = decode(&one(&mut d));
    d.handle_datagram(
        secs(1),
        &reply(&req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, SERVER, 0),
    )
    .unwrap();
    assert_eq!(events(&mut d), [DhcpEvent::Nak { session: S7 }]);
    assert_eq!(d.state(S7), Some(DhcpState::Selecting));
    assert_eq!(msg_type(&decode(&one(&mut d))), MessageType::Discover);
    assert_eq!(
        d.lease(d.now(), S7),
        Err(LeaseError::Pending { session: S7 })
    );
}

#[test]
fn replies_from_another_server_than_the_chosen_one_are_ignored() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        secs(0),
        &reply(&disc, MessageType::Offer, addr, SERVER, 600),
    )
    .unwrap();
    let req = decode(&one(&mut d));
    let other = Ipv4Addr::new(10, 0, 0, 2);
    for kind in [MessageType::Nak, MessageType::Ack] {
        let err = d
            .handle_datagram(secs(1), &reply(&req, kind, addr, other, 600))
            .unwrap_err();
        assert!(matches!(err, DatagramError::Unexpected { .. }), "{err}");
    }
    assert_eq!(d.state(S7), Some(DhcpState::Requesting));
    // A second offer while requesting is not taken up either.
    let err = d
        .handle_datagram(
            secs(1),
            &reply(
                &disc,
                MessageType::Offer,
                Ipv4Addr::new(10, 0, 0, 101),
                other,
                600,
            ),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            DatagramError::Unexpected {
                state: DhcpState::Requesting,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn renewal_at_t1_unicast_then_rebinding_at_t2_broadcast() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 1000);
    // Renewing: T1 = 500.
    d.handle_timeout(secs(499));
    assert!(d.poll_transmit().is_none());
    d.handle_timeout(secs(500));
    assert_eq!(d.state(S7), Some(DhcpState::Renewing));
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Request, Destination::Server(SERVER))
    );
    let renew = decode(&t);
    assert_eq!(renew.ciaddr(), addr);
    assert_eq!(opt_addr(&renew, OptionCode::ServerIdentifier), None);
    assert_eq!(opt_addr(&renew, OptionCode::RequestedIpAddress), None);
    // The rewriter keeps the address while renewing.
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
    // Lost: retransmit after half the time left to T2 (875), at least 60 s: 500 + 187.
    let ms = Duration::from_millis;
    assert_eq!(d.poll_timeout(), Some(ms(687_500)));
    d.handle_timeout(ms(687_500));
    assert_eq!(decode(&one(&mut d)).xid(), renew.xid());
    // 687.5 + max(93.75, 60) = 781.25; then + 60 = 841.25; then T2 = 875 caps it.
    assert_eq!(d.poll_timeout(), Some(ms(781_250)));
    d.handle_timeout(ms(781_250));
    one(&mut d);
    assert_eq!(d.poll_timeout(), Some(ms(841_250)));
    d.handle_timeout(ms(841_250));
    one(&mut d);
    assert_eq!(d.poll_timeout(), Some(secs(875)));
    d.handle_timeout(secs(875));
    assert_eq!(d.state(S7), Some(DhcpState::Rebinding));
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Request, Destination::Broadcast)
    );
    let rebind = decode(&t);
    assert_eq!(rebind.ciaddr(), addr);
    assert_ne!(rebind.xid(), renew.xid());
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
    // Any server may answer a rebinding client.
    let other = Ipv4Addr::new(10, 0, 0, 2);
    d.handle_datagram(
        secs(900),
        &reply(&rebind, MessageType::Ack, addr, other, 1000),
    )
    .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Bound));
    let l = d.lease_of(S7).unwrap();
    assert_eq!(
        (l.server, l.acquired, l.expiry),
        (other, secs(875), secs(1875))
    );
    assert_eq!(
        events(&mut d),
        [DhcpEvent::Renewed {
            session: S7,
            previous: addr,
            lease: l
        }]
    );
}

#[test]
fn renewal_ack_extends_the_lease() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 120);
    d.handle_timeout(secs(60));
    let renew = decode(&one(&mut d));
    d.handle_datagram(
        secs(61),
        &reply(&renew, MessageType::Ack, addr, SERVER, 120),
    )
    .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Bound));
    assert_eq!(d.lease_of(S7).unwrap().expiry, secs(180));
    assert_eq!(d.poll_timeout(), Some(secs(120)));
}

#[test]
fn nak_while_renewing_loses_the_address() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 120);
    d.handle_timeout(secs(60));
    let renew = decode(&one(&mut d));
    d.handle_datagram(
        secs(61),
        &reply(&renew, MessageType::Nak, Ipv4Addr::UNSPECIFIED, SERVER, 0),
    )
    .unwrap();
    assert_eq!(events(&mut d), [DhcpEvent::Lost { session: S7, addr }]);
    assert_eq!(
        d.lease(d.now(), S7),
        Err(LeaseError::Lost { session: S7, addr })
    );
    assert_eq!(d.address_of(S7), None);
    assert_eq!(d.session_of(addr), None);
    let disc = decode(&one(&mut d));
    assert_eq!(msg_type(&disc), MessageType::Discover);
    // The refused address is not asked for again.
    assert_eq!(opt_addr(&disc, OptionCode::RequestedIpAddress), None);
}

#[test]
fn server_gone_until_expiry_then_back() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 120);
    let mut now = secs(0);
    while d.state(S7) != Some(DhcpState::Selecting) {
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
        while d.poll_transmit().is_some() {}
        if now < secs(120) {
            assert_eq!(
                d.lease(now, S7).unwrap().addr(),
                addr,
                "still held at {now:?}"
            );
        }
    }
    assert_eq!(now, secs(120));
    assert_eq!(events(&mut d), [DhcpEvent::Lost { session: S7, addr }]);
    assert_eq!(
        d.lease(d.now(), S7),
        Err(LeaseError::Lost { session: S7, addr })
    );
    // Back: it asks for its old address and gets it.
    now += secs(4);
    d.handle_timeout(now);
    let disc = decode(&one(&mut d));
    assert_eq!(opt_addr(&disc, OptionCode::RequestedIpAddress), Some(addr));
    d.handle_datagram(now, &reply(&disc, MessageType::Offer, addr, SERVER, 120))
        .unwrap();
    let req = decode(&one(&mut d));
    d.handle_datagram(now, &reply(&req, MessageType::Ack, addr, SERVER, 120))
        .unwrap();
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
}

#[test]
fn clock_jump_forward_past_expiry_loses_at_once() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 120);
    d.handle_timeout(secs(10_000));
    assert_eq!(events(&mut d), [DhcpEvent::Lost { session: S7, addr }]);
    assert_eq!(d.state(S7), Some(DhcpState::Selecting));
    assert_eq!(msg_type(&decode(&one(&mut d))), MessageType::Discover);
}

#[test]
fn clock_jump_forward_past_t2_rebinds() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 1000);
    d.handle_timeout(secs(900));
    assert_eq!(d.state(S7), Some(DhcpState::Rebinding));
    assert_eq!(one(&mut d).destination, Destination::Broadcast);
}

#[test]
fn clock_jump_backward_keeps_the_time_left() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(10_000), S7, addr, 120);
    d.handle_timeout(secs(10_050));
    // Back by 9 000 s: every deadline moves back as much; 10 s are left to T1.
    d.handle_timeout(secs(1_050));
    assert_eq!(d.poll_timeout(), Some(secs(1_060)));
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
    assert_eq!(d.lease_of(S7).unwrap().expiry, secs(1_120));
    d.handle_timeout(secs(1_060));
    assert_eq!(d.state(S7), Some(DhcpState::Renewing));
    // Backward during a retransmission wait: the wait is kept too.
    let mut d = machine();
    d.start(secs(500), S8);
    one(&mut d);
    d.handle_timeout(secs(100));
    assert_eq!(d.poll_timeout(), Some(secs(104)));
}

#[test]
fn foreign_and_malformed_datagrams_are_ignored_and_counted() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    // Malformed: empty, truncated, garbage.
    for bytes in [&[][..], &[2, 1, 6][..], &[0xff; 300][..]] {
        let err = d.handle_datagram(secs(0), bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DatagramError::Malformed { .. } | DatagramError::NotAReply { .. }
            ),
            "{err}"
        );
    }
    let good = reply(&disc, MessageType::Offer, addr, SERVER, 600);
    // Every truncation: an error or (when what is left still holds a whole offer) a use, never
    // a panic.
    for cut in 0..good.len() {
        let _ = d.clone().handle_datagram(secs(0), &good[..cut]);
    }
    // Another client's hardware address.
    let mut m = Message::decode(&mut Decoder::new(&good)).unwrap();
    m.set_chaddr(&[2, 0, 0, 0, 0, 9]);
    let mut other_mac = Vec::new();
    m.encode(&mut Encoder::new(&mut other_mac)).unwrap();
    assert!(matches!(
        d.handle_datagram(secs(0), &other_mac),
        Err(DatagramError::OtherClient { .. })
    ));
    // Another client identifier.
    let mut m = Message::decode(&mut Decoder::new(&good)).unwrap();
    m.opts_mut()
        .insert(DhcpOption::ClientIdentifier(b"\0test-8".to_vec()));
    let mut other_id = Vec::new();
    m.encode(&mut Encoder::new(&mut other_id)).unwrap();
    assert!(matches!(
        d.handle_datagram(secs(0), &other_id),
        Err(DatagramError::OtherClient { .. })
    ));
    // A BOOTREQUEST (our own broadcast, looped back).
    assert!(matches!(
        d.handle_datagram(secs(0), &disc_bytes(&disc)),
        Err(DatagramError::NotAReply { .. })
    ));
    // An offer of an address that can never be a VIP.
    let err = d
        .handle_datagram(
            secs(0),
            &reply(
                &disc,
                MessageType::Offer,
                Ipv4Addr::new(127, 0, 0, 5),
                SERVER,
                600,
            ),
        )
        .unwrap_err();
    assert!(matches!(err, DatagramError::Unusable { .. }), "{err}");
    assert_eq!(d.state(S7), Some(DhcpState::Selecting));
    let stats = d.stats();
    assert_eq!((stats.malformed, stats.ignored), (3, 4), "{stats:?}");
    // Inputs on which the packet decoder itself would panic: a hardware-address length over 16,
    // fixed-size options of the wrong size (rapid commit with a value, a 3-byte lease time).
    let mut long_hlen = good.clone();
    long_hlen[2] = 200;
    let mut bad_opts = good[..240].to_vec();
    bad_opts.extend_from_slice(&[53, 1, 2, 80, 2, 0, 0, 255]);
    let mut short_lease = good[..240].to_vec();
    short_lease.extend_from_slice(&[53, 1, 2, 51, 3, 0, 0, 9, 255]);
    for bytes in [long_hlen, short_lease] {
        assert!(matches!(
            d.handle_datagram(secs(0), &bytes),
            Err(DatagramError::Malformed { .. })
        ));
    }
    // An option a client never reads is dropped, whatever its shape.
    assert!(!matches!(
        d.handle_datagram(secs(0), &bad_opts),
        Err(DatagramError::Malformed { .. })
    ));
    // The right one still works.
    d.handle_datagram(secs(0), &good).unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Requesting));
}

fn disc_bytes(m: &Message) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut Encoder::new(&mut b)).unwrap();
    b
}

#[test]
fn an_ack_without_lease_time_is_unusable() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        secs(0),
        &reply(&disc, MessageType::Offer, addr, SERVER, 600),
    )
    .unwrap();
    let req = decode(&one(&mut d));
    let mut ack = Message::decode(&mut Decoder::new(&reply(
        &req,
        MessageType::Ack,
        addr,
        SERVER,
        600,
    )))
    .unwrap();
    ack.opts_mut().remove(OptionCode::AddressLeaseTime);
    let err = d.handle_datagram(secs(0), &disc_bytes(&ack)).unwrap_err();
    assert!(matches!(err, DatagramError::Unusable { .. }), "{err}");
    assert_eq!(d.state(S7), Some(DhcpState::Requesting));
}

#[test]
fn an_offer_of_a_held_address_is_not_taken_and_an_ack_of_it_is_declined() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 600);
    d.start(secs(1), S8);
    let disc = decode(&one(&mut d));
    let err = d
        .handle_datagram(
            secs(1),
            &reply(&disc, MessageType::Offer, addr, SERVER, 600),
        )
        .unwrap_err();
    assert!(matches!(err, DatagramError::Unusable { .. }), "{err}");
    assert_eq!(d.state(S8), Some(DhcpState::Selecting));
    assert_eq!(d.stats().conflicts, 1);
    // Offered another address, then ACKed the held one: DECLINE.
    let other = Ipv4Addr::new(10, 0, 0, 101);
    d.handle_datagram(
        secs(1),
        &reply(&disc, MessageType::Offer, other, SERVER, 600),
    )
    .unwrap();
    let req = decode(&one(&mut d));
    d.handle_datagram(secs(1), &reply(&req, MessageType::Ack, addr, SERVER, 600))
        .unwrap();
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Decline, Destination::Broadcast)
    );
    let decline = decode(&t);
    assert_eq!(
        opt_addr(&decline, OptionCode::RequestedIpAddress),
        Some(addr)
    );
    assert_eq!(
        opt_addr(&decline, OptionCode::ServerIdentifier),
        Some(SERVER)
    );
    assert_eq!(
        events(&mut d),
        [DhcpEvent::Declined {
            session: S8,
            addr,
            was_held: false
        }]
    );
    assert_eq!(d.state(S8), Some(DhcpState::Init));
    assert_eq!(
        d.lease(d.now(), S8),
        Err(LeaseError::Pending { session: S8 })
    );
    assert_eq!(d.session_of(addr), Some(S7));
    // It waits 10 s, then starts over.
    assert_eq!(d.poll_timeout(), Some(secs(11)));
    d.handle_timeout(secs(11));
    assert_eq!(msg_type(&decode(&one(&mut d))), MessageType::Discover);
}

#[test]
fn decline_by_the_caller() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 600);
    assert_eq!(d.decline(secs(5), S7), Some(addr));
    assert_eq!(one(&mut d).kind, MessageKind::Decline);
    assert_eq!(
        events(&mut d),
        [DhcpEvent::Declined {
            session: S7,
            addr,
            was_held: true
        }]
    );
    assert_eq!(d.address_of(S7), None);
    d.handle_timeout(secs(15));
    let disc = decode(&one(&mut d));
    assert_eq!(
        opt_addr(&disc, OptionCode::RequestedIpAddress),
        None,
        "not the declined address"
    );
    assert_eq!(d.decline(secs(15), S8), None);
}

#[test]
fn release_sends_release_and_a_returning_session_asks_for_its_address() {
    let mut d = machine();
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    bind(&mut d, secs(0), S7, addr, 600);
    assert_eq!(d.release(d.now(), S7).unwrap().addr(), addr);
    let t = one(&mut d);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Release, Destination::Server(SERVER))
    );
    let rel = decode(&t);
    assert_eq!(rel.ciaddr(), addr);
    assert_eq!(opt_addr(&rel, OptionCode::ServerIdentifier), Some(SERVER));
    assert_eq!(events(&mut d), [DhcpEvent::Released { session: S7, addr }]);
    assert_eq!(d.state(S7), None);
    assert_eq!(d.poll_timeout(), None);
    assert_eq!(d.release(d.now(), S7), None);
    // It comes back.
    d.start(secs(100), S7);
    let disc = decode(&one(&mut d));
    assert_eq!(opt_addr(&disc, OptionCode::RequestedIpAddress), Some(addr));
    // Releasing a session that holds nothing sends nothing.
    d.release(d.now(), S7);
    assert!(d.poll_transmit().is_none());
}

#[test]
fn snapshot_and_restore() {
    let mut d = machine();
    let a7 = Ipv4Addr::new(10, 0, 0, 100);
    let a8 = Ipv4Addr::new(10, 0, 0, 101);
    bind(&mut d, secs(0), S7, a7, 1000);
    bind(&mut d, secs(0), S8, a8, 100);
    d.release(d.now(), S8);
    assert_eq!(one(&mut d).kind, MessageKind::Release);
    bind(&mut d, secs(0), S8, a8, 100);
    let snap = d.snapshot();
    assert_eq!(snap.leases.len(), 2);
    assert_eq!(snap.remembered, [(S8, a8)]);
    let json = serde_json::to_string(&snap).unwrap();
    let back: DhcpSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);

    // Restarted at 200 s: S7 (T1 500) is held and waits for T1; S8 expired at 100 s: INIT-REBOOT.
    let mut r = machine();
    r.restore(secs(200), &back).unwrap();
    assert_eq!(r.state(S7), Some(DhcpState::Bound));
    assert_eq!(r.lease(r.now(), S7).unwrap().addr(), a7);
    assert_eq!(r.poll_timeout(), Some(secs(204)));
    assert_eq!(r.state(S8), Some(DhcpState::Rebooting));
    let t = one(&mut r);
    assert_eq!(
        (t.kind, t.destination),
        (MessageKind::Request, Destination::Broadcast)
    );
    let reboot = decode(&t);
    assert_eq!(opt_addr(&reboot, OptionCode::RequestedIpAddress), Some(a8));
    assert_eq!(opt_addr(&reboot, OptionCode::ServerIdentifier), None);
    assert_eq!(reboot.ciaddr(), Ipv4Addr::UNSPECIFIED);
    r.handle_datagram(
        secs(201),
        &reply(&reboot, MessageType::Ack, a8, SERVER, 100),
    )
    .unwrap();
    assert_eq!(r.lease(r.now(), S8).unwrap().addr(), a8);

    // Restarted past S7's T1: it renews at once (unicast), it does not start over.
    let mut r = machine();
    r.restore(secs(600), &back).unwrap();
    assert_eq!(r.state(S7), Some(DhcpState::Renewing));
    let sent: Vec<Transmit> = std::iter::from_fn(|| r.poll_transmit()).collect();
    assert!(
        sent.iter()
            .any(|t| t.session == S7 && t.destination == Destination::Server(SERVER))
    );

    // A rebooting session refused by NAK starts over without asking for the address.
    let mut r = machine();
    r.restore(secs(200), &back).unwrap();
    let reboot = std::iter::from_fn(|| r.poll_transmit())
        .find(|t| t.session == S8)
        .unwrap();
    r.handle_datagram(
        secs(201),
        &reply(
            &decode(&reboot),
            MessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            SERVER,
            0,
        ),
    )
    .unwrap();
    assert_eq!(r.state(S8), Some(DhcpState::Selecting));
    let disc = decode(&one(&mut r));
    assert_eq!(opt_addr(&disc, OptionCode::RequestedIpAddress), None);

    // A rebooting session that gets no answer starts over after the attempts.
    let mut r = machine();
    r.restore(secs(200), &back).unwrap();
    while r.poll_transmit().is_some() {}
    while r.state(S8) == Some(DhcpState::Rebooting) {
        let now = r.poll_timeout().unwrap();
        r.handle_timeout(now);
    }
    assert_eq!(r.state(S8), Some(DhcpState::Selecting));

    // Bad snapshots change nothing.
    let mut bad = back.clone();
    bad.leases[1].1.addr = a7;
    let mut r = machine();
    assert!(r.restore(secs(0), &bad).is_err());
    bad = back.clone();
    bad.leases[0].1.t1 = secs(5_000);
    assert!(r.restore(secs(0), &bad).is_err());
    bad = back.clone();
    bad.version = 9;
    assert!(r.restore(secs(0), &bad).is_err());
    assert!(r.sessions().is_empty());
}

#[test]
fn a_lease_shorter_than_the_clock_step_renews_at_once() {
    let mut d = machine();
    d.start(secs(0), S7);
    let disc = decode(&one(&mut d));
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(secs(0), &reply(&disc, MessageType::Offer, addr, SERVER, 10))
        .unwrap();
    let req = decode(&one(&mut d));
    // The ACK arrives 6 s after the REQUEST left: T1 (5 s) has passed.
    d.handle_datagram(secs(6), &reply(&req, MessageType::Ack, addr, SERVER, 10))
        .unwrap();
    assert_eq!(d.state(S7), Some(DhcpState::Renewing));
    assert_eq!(d.lease(d.now(), S7).unwrap().addr(), addr);
    assert_eq!(one(&mut d).destination, Destination::Server(SERVER));
}

#[test]
fn invalid_session_ids_are_refused() {
    let mut d = machine();
    let s = SessionId::new(SessionId::MAX.get() + 1);
    assert_eq!(
        d.lease(d.now(), s),
        Err(LeaseError::InvalidSession { session: s })
    );
    assert!(d.poll_transmit().is_none());
}

#[test]
fn lease_and_release_act_at_the_time_they_are_given() {
    // A machine that was never given a time: the exchange starts at the lease's `now`, not at a
    // remembered clock (the DISCOVER's retransmission is 4 s after it, its `secs` counts from it).
    let mut d = machine();
    assert_eq!(
        d.lease(secs(5_000), S7),
        Err(LeaseError::Pending { session: S7 })
    );
    assert_eq!(d.now(), secs(5_000));
    assert_eq!(d.poll_timeout(), Some(secs(5_004)));
    let disc = decode(&one(&mut d));
    assert_eq!(disc.secs(), 0);
    let addr = Ipv4Addr::new(10, 0, 0, 100);
    d.handle_datagram(
        secs(5_001),
        &reply(&disc, MessageType::Offer, addr, SERVER, 600),
    )
    .unwrap();
    let req = decode(&one(&mut d));
    d.handle_datagram(
        secs(5_001),
        &reply(&req, MessageType::Ack, addr, SERVER, 600),
    )
    .unwrap();
    // Asked at a time past the expiry, the lease is lost even before the timer ran.
    assert_eq!(
        d.lease(secs(5_602), S7),
        Err(LeaseError::Lost { session: S7, addr })
    );
    // A release at a later time: its RELEASE's `secs` is 0 and the clock moved.
    let mut d = machine();
    bind(&mut d, secs(10), S8, addr, 600);
    assert_eq!(d.release(secs(20), S8).map(|v| v.addr()), Some(addr));
    assert_eq!(d.now(), secs(20));
    assert_eq!(decode(&one(&mut d)).secs(), 0);
}

/// A machine that knows its network (issue 23, item 6): the adapter is 10.0.0.0/24, the host's
/// own addresses are 10.0.0.2/24 (on the adapter) and 192.168.7.5/24 (another interface).
fn guarded() -> DhcpSource {
    let mut c = DhcpConfig::new(b"test-".to_vec(), MAC);
    c.adapter = Some("10.0.0.0/24".parse().unwrap());
    c.host_addresses = vec![
        "10.0.0.2/24".parse().unwrap(),
        "192.168.7.5/24".parse().unwrap(),
    ];
    DhcpSource::new(c)
}

/// What a hostile (or misconfigured) server hands out, and why none of it is a VIP.
fn unusable_kinds() -> Vec<(Ipv4Addr, Unusable)> {
    let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    vec![
        (
            Ipv4Addr::new(10, 0, 0, 0),
            Unusable::Network {
                network: net("10.0.0.0/24"),
            },
        ),
        (
            Ipv4Addr::new(10, 0, 0, 255),
            Unusable::Broadcast {
                network: net("10.0.0.0/24"),
            },
        ),
        (SERVER, Unusable::ServerAddress),
        (
            Ipv4Addr::new(10, 0, 0, 2),
            Unusable::HostAddress {
                interface: net("10.0.0.2/24"),
            },
        ),
        (
            Ipv4Addr::new(192, 168, 7, 5),
            Unusable::HostAddress {
                interface: net("192.168.7.5/24"),
            },
        ),
        (
            Ipv4Addr::new(192, 168, 7, 255),
            Unusable::Broadcast {
                network: net("192.168.7.0/24"),
            },
        ),
        (
            Ipv4Addr::new(10, 0, 1, 7),
            Unusable::OutsideAdapter {
                adapter: net("10.0.0.0/24"),
            },
        ),
    ]
}

#[test]
fn unusable_offers_are_refused_with_the_reason_and_never_leased() {
    for (addr, why) in unusable_kinds() {
        let mut d = guarded();
        let now = secs(100);
        assert_eq!(d.lease(now, S7), Err(LeaseError::Pending { session: S7 }));
        let disc = decode(&one(&mut d));
        let err = d
            .handle_datagram(now, &reply(&disc, MessageType::Offer, addr, SERVER, 600))
            .unwrap_err();
        assert!(
            matches!(err, DatagramError::Unusable { .. }),
            "{addr}: {err}"
        );
        // Not taken up: no REQUEST, still selecting, the reason said.
        assert!(d.poll_transmit().is_none(), "{addr}: a REQUEST was sent");
        assert_eq!(d.state(S7), Some(DhcpState::Selecting), "{addr}");
        assert_eq!(
            events(&mut d),
            [DhcpEvent::Refused {
                session: S7,
                kind: MessageKind::Offer,
                addr,
                server: SERVER,
                reason: why
            }],
            "{addr}"
        );
        assert_eq!(d.stats().refused, 1);
        assert_eq!(d.lease(now, S7), Err(LeaseError::Pending { session: S7 }));
        // A usable offer after it is taken up.
        let good = Ipv4Addr::new(10, 0, 0, 100);
        d.handle_datagram(now, &reply(&disc, MessageType::Offer, good, SERVER, 600))
            .unwrap();
        let req = decode(&one(&mut d));
        d.handle_datagram(now, &reply(&req, MessageType::Ack, good, SERVER, 600))
            .unwrap();
        assert_eq!(d.lease(now, S7).unwrap().addr(), good);
    }
}

#[test]
fn unusable_acks_are_declined_with_the_reason() {
    let good = Ipv4Addr::new(10, 0, 0, 100);
    for (addr, why) in unusable_kinds() {
        // While requesting: the server offered a usable address and acknowledged another.
        let mut d = guarded();
        d.start(secs(0), S7);
        let disc = decode(&one(&mut d));
        d.handle_datagram(
            secs(0),
            &reply(&disc, MessageType::Offer, good, SERVER, 600),
        )
        .unwrap();
        let req = decode(&one(&mut d));
        d.handle_datagram(secs(1), &reply(&req, MessageType::Ack, addr, SERVER, 600))
            .unwrap();
        let t = one(&mut d);
        assert_eq!(
            (t.kind, t.destination),
            (MessageKind::Decline, Destination::Broadcast),
            "{addr}"
        );
        let decline = decode(&t);
        assert_eq!(
            opt_addr(&decline, OptionCode::RequestedIpAddress),
            Some(addr)
        );
        assert_eq!(
            opt_addr(&decline, OptionCode::ServerIdentifier),
            Some(SERVER)
        );
        assert_eq!(decline.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            events(&mut d),
            [
                DhcpEvent::Refused {
                    session: S7,
                    kind: MessageKind::Ack,
                    addr,
                    server: SERVER,
                    reason: why
                },
                DhcpEvent::Declined {
                    session: S7,
                    addr,
                    was_held: false
                }
            ],
            "{addr}"
        );
        assert_eq!(d.state(S7), Some(DhcpState::Init));
        assert_eq!(
            d.lease(secs(1), S7),
            Err(LeaseError::Pending { session: S7 })
        );
        assert_eq!(d.session_of(addr), None);

        // While renewing: the server moves the lease onto an unusable address. The old one is
        // lost, the new one declined.
        let mut d = guarded();
        bind(&mut d, secs(0), S7, good, 120);
        d.handle_timeout(secs(60));
        let renew = decode(&one(&mut d));
        d.handle_datagram(
            secs(61),
            &reply(&renew, MessageType::Ack, addr, SERVER, 120),
        )
        .unwrap();
        assert_eq!(one(&mut d).kind, MessageKind::Decline, "{addr}");
        assert_eq!(
            events(&mut d),
            [
                DhcpEvent::Refused {
                    session: S7,
                    kind: MessageKind::Ack,
                    addr,
                    server: SERVER,
                    reason: why
                },
                DhcpEvent::Lost {
                    session: S7,
                    addr: good
                },
                DhcpEvent::Declined {
                    session: S7,
                    addr,
                    was_held: false
                }
            ],
            "{addr}"
        );
        assert_eq!(d.address_of(S7), None);
        assert_eq!(d.stats().refused, 1);
    }
}

#[test]
fn an_unusable_lease_in_a_snapshot_is_not_taken_back() {
    let mut d = guarded();
    let snap = DhcpSnapshot {
        version: DhcpSnapshot::VERSION,
        leases: vec![(
            S7,
            ipvirt::dhcp::DhcpLease {
                addr: Ipv4Addr::new(10, 0, 0, 2),
                server: SERVER,
                acquired: secs(0),
                t1: secs(50),
                t2: secs(80),
                expiry: secs(100),
            },
        )],
        remembered: vec![],
    };
    d.restore(secs(10), &snap).unwrap();
    assert_eq!(d.state(S7), None);
    assert!(matches!(
        events(&mut d)[..],
        [DhcpEvent::Refused {
            reason: Unusable::HostAddress { .. },
            ..
        }]
    ));
}
