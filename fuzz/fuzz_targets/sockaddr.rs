//! Every raw socket-address call on arbitrary bytes, layouts, policies, sessions and VIPs, checked
//! against the same decision through the `std::net` API (`read_sockaddr`, then `Rewriter::bind_on`
//! etc.) and against the SPEC §5 invariants:
//!
//! - raw and `std::net` answers agree (the same error, or the same resulting address);
//! - an error leaves every buffer untouched; bytes outside the address field are never touched;
//! - loopback stays loopback and non-loopback stays non-loopback (a `0.0.0.0` destination is this
//!   host, `127.0.0.1`, SPEC §12); the family and port never change;
//! - an inactive rewriter (out-of-scope process or session) changes nothing;
//! - a changed address is the session's own (its loopback, localhost or its VIP), never another
//!   session's loopback;
//! - `Rewriter::explain` gives the same outcome as the call it explains.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::sync::OnceLock;

use ipvirt::{
    Call, Engine, FamilyHeader, Host, Outcome, Policy, RawConnect, RawError, RawOutcome, Refusal,
    Rewriter, SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN, Session, SessionId, SockaddrError, SockaddrLayout,
    Stack, Vip, read_sockaddr,
};
use libfuzzer_sys::fuzz_target;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const IMAGES: [&str; 5] = ["crm.exe", "pref.exe", "lo.exe", "vipo.exe", "notepad.exe"];

/// Policy knobs: bit 0 isolate, 1 no-connectivity, 2 per-session VIP mode, 3 loopback off, 4 VIP
/// off, 5 preferred loopback off.
const KNOBS: usize = 64;

fn engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        (0..KNOBS)
            .map(|k| {
                let on = |bit: usize| k & (1 << bit) == 0;
                let text = format!(
                    r#"
                    [virtual_loopback]
                    enabled = {lo}
                    programs = ["crm.exe", "pref.exe", "lo.exe"]
                    excluded_ports = [27000]
                    isolate = {isolate}

                    [virtual_ip]
                    enabled = {vip}
                    mode = "{mode}"
                    programs = ["crm.exe", "pref.exe", "vipo.exe"]
                    adapter = "192.0.2.0/24"
                    pool = ["192.0.2.100-192.0.2.199"]
                    on_lease_failure = "{lease}"

                    [prefer_loopback]
                    enabled = {pref}
                    processes = ["pref.exe"]
                    "#,
                    lo = on(3),
                    isolate = !on(0),
                    vip = on(4),
                    mode = if on(2) { "per-program" } else { "per-session" },
                    lease = if on(1) {
                        "use-server-address"
                    } else {
                        "no-connectivity"
                    },
                    pref = on(5),
                );
                Policy::from_toml(&text)
                    .unwrap()
                    .compile(Host::new([SERVER.into()]))
                    .unwrap()
            })
            .collect()
    })
}

/// The input: 8 control bytes, then the socket-address bytes (so that a seed is a real
/// `sockaddr` behind a short prefix).
///
/// | byte | meaning |
/// |------|---------|
/// | 0 | policy knobs (see [`KNOBS`]) |
/// | 1 | the process (index into [`IMAGES`]) |
/// | 2, 3 | session id (little-endian) |
/// | 4 | flags: 1 console, 2 dual-stack socket, 4 session id past the last valid one, 8 no VIP |
/// | 5 | VIP: 192.0.2.(100 + byte % 100) |
/// | 6 | layout: 0 Linux, 1 Linux big-endian, 2 Windows, 3 macOS, 4 FreeBSD, else a custom one |
/// | 7 | length of the source buffer for connect / sendto |
struct Input<'a> {
    knobs: usize,
    image: &'static str,
    session: Session,
    dual_stack: bool,
    vip: Option<Ipv4Addr>,
    layout: SockaddrLayout,
    source_len: usize,
    buf: &'a [u8],
}

impl Input<'_> {
    fn parse(data: &[u8]) -> Option<Input<'_>> {
        let (&[knobs, image, s0, s1, flags, vip, layout, source_len], buf) =
            data.split_first_chunk()?;
        let mut id = u32::from(u16::from_le_bytes([s0, s1]));
        if flags & 4 != 0 {
            id |= 0xFFFF_0000;
        }
        let id = SessionId::new(id);
        Some(Input {
            knobs: usize::from(knobs) % KNOBS,
            image: IMAGES[usize::from(image) % IMAGES.len()],
            session: if flags & 1 != 0 {
                Session::console(id)
            } else {
                Session::remote(id)
            },
            dual_stack: flags & 2 != 0,
            vip: (flags & 8 == 0).then(|| Ipv4Addr::new(192, 0, 2, 100 + vip % 100)),
            layout: match layout {
                0 => SockaddrLayout::LINUX,
                1 => SockaddrLayout::LINUX_BIG_ENDIAN,
                2 => SockaddrLayout::WINDOWS,
                3 => SockaddrLayout::MACOS,
                4 => SockaddrLayout::FREEBSD,
                // Custom: AF_INET 2, AF_INET6 the byte itself (it may even be 2).
                l if l & 1 == 0 => SockaddrLayout::new(2, l.into(), FamilyHeader::LenByte),
                l if l & 2 == 0 => SockaddrLayout::new(2, l.into(), FamilyHeader::U16Be),
                l => SockaddrLayout::new(2, l.into(), FamilyHeader::U16Le),
            },
            source_len: source_len.into(),
            buf,
        })
    }
}

fn v4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn is_lo(ip: IpAddr) -> bool {
    v4_of(ip).map_or(ip.is_loopback(), |v4| v4.is_loopback())
}

/// The bytes of the address field: those a rewrite may change.
fn address_field(v6: bool) -> std::ops::Range<usize> {
    if v6 { 8..24 } else { 4..8 }
}

/// Only the address field differs between `before` and `after`.
fn only_address_changed(before: &[u8], after: &[u8], v6: bool) {
    assert_eq!(before.len(), after.len());
    let field = address_field(v6);
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if !field.contains(&i) {
            assert_eq!(b, a, "byte {i} outside the address changed");
        }
    }
}

struct Check<'a> {
    rw: &'a Rewriter,
    session: Session,
    vip: Option<Ipv4Addr>,
}

impl Check<'_> {
    /// `explain` agrees with the calls (and its text renders).
    fn explain_agrees(&self, a: SocketAddr) {
        let rw = self.rw;
        let same = |call: Call, want: Result<Outcome, Refusal>| {
            let e = rw.explain(call, a);
            assert_eq!(e.outcome(), want, "explain {call} {a}: {e}");
            let _ = e.rule().to_string();
        };
        same(Call::Bind, rw.bind_on(a, Stack::Single).map(Outcome::Addr));
        same(
            Call::BindDualStack,
            rw.bind_on(a, Stack::Dual).map(Outcome::Addr),
        );
        same(Call::Connect, rw.connect(a).map(Outcome::Connect));
        same(Call::SendTo, rw.send_to(a).map(Outcome::Connect));
        same(Call::Reported, Ok(Outcome::Addr(rw.reported(a))));
        let ip = rw.resolved_addr(a.ip());
        same(Call::Resolved, Ok(Outcome::Ip(ip)));
        assert!(
            ip == a.ip() || v4_of(ip) == self.vip,
            "resolved {} -> {ip}",
            a.ip()
        );
        same(
            Call::ReverseLookup,
            Ok(Outcome::Ip(rw.reverse_lookup(a.ip()))),
        );
    }

    /// SPEC §5 on one rewrite of `input` into `output`; `dest` when `input` is a destination, where
    /// `0.0.0.0` (and its IPv4-mapped form) means this host, `127.0.0.1` (SPEC §12): rewritten, it
    /// becomes a loopback address; left alone (out of scope), it stays what it is.
    fn invariants(&self, call: &str, input: SocketAddr, output: SocketAddr, dest: bool) {
        let this_host =
            dest && output != input && v4_of(input.ip()) == Some(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            is_lo(input.ip()) || this_host,
            is_lo(output.ip()),
            "{call} {input} -> {output}"
        );
        assert_eq!(
            input.is_ipv4(),
            output.is_ipv4(),
            "{call} changed the family"
        );
        assert_eq!(input.port(), output.port(), "{call} changed the port");
        if !self.rw.is_active() {
            assert_eq!(
                input, output,
                "{call}: an inactive rewriter changed {input}"
            );
        }
        if output != input {
            assert!(
                self.own(output.ip()),
                "{call} {input} -> {output} is not the session's own"
            );
        }
    }

    fn own(&self, ip: IpAddr) -> bool {
        let v4 = v4_of(ip);
        let own_lo = self.session.id().loopback().ok();
        v4.is_some() && (v4 == own_lo || v4 == Some(Ipv4Addr::LOCALHOST) || v4 == self.vip)
    }

    /// A raw in-place call against its `std::net` twin.
    fn in_place(
        &self,
        call: &str,
        buf: &[u8],
        layout: SockaddrLayout,
        raw: impl FnOnce(&mut [u8]) -> Result<RawOutcome, RawError>,
        std: impl FnOnce(SocketAddr) -> Result<SocketAddr, Refusal>,
    ) {
        self.in_place_with(call, buf, layout, raw, std, true);
    }

    /// [`in_place`](Self::in_place); `spec5` false for a reverse lookup, whose answer (the
    /// server's address for the VIP) is no address a socket gets, so SPEC §5 does not apply.
    fn in_place_with(
        &self,
        call: &str,
        buf: &[u8],
        layout: SockaddrLayout,
        raw: impl FnOnce(&mut [u8]) -> Result<RawOutcome, RawError>,
        std: impl FnOnce(SocketAddr) -> Result<SocketAddr, Refusal>,
        spec5: bool,
    ) {
        let mut b = buf.to_vec();
        let got = raw(&mut b);
        let read = read_sockaddr(buf, layout);
        match (read, got) {
            (Err(SockaddrError::UnsupportedFamily { .. }), got) => {
                // Not ours: an answer, not an error, and nothing changes.
                assert_eq!(got, Ok(RawOutcome::OtherFamily), "{call}: another family");
                assert_eq!(b, buf, "{call}: another family's buffer changed");
            }
            (Err(e), got) => {
                assert_eq!(got, Err(RawError::Sockaddr(e)), "{call}: raw and read_sockaddr disagree");
                assert_eq!(b, buf, "{call}: an error changed the buffer");
            }
            (Ok(a), got) => match std(a) {
                Err(e) => {
                    assert_eq!(got, Err(RawError::Refused(e)), "{call} {a}");
                    assert_eq!(b, buf, "{call}: an error changed the buffer");
                }
                Ok(want) => {
                    let outcome = got.unwrap_or_else(|e| panic!("{call} {a}: raw {e}, std {want}"));
                    assert_ne!(outcome, RawOutcome::OtherFamily, "{call} {a}");
                    let changed = outcome == RawOutcome::Rewritten;
                    let now = read_sockaddr(&b, layout).unwrap();
                    assert_eq!(now, want, "{call} {a}: raw and std::net disagree");
                    assert!(
                        changed || b == buf,
                        "{call}: changed bytes but said it did not"
                    );
                    assert!(changed || want == a, "{call}: std changed it, raw did not");
                    only_address_changed(buf, &b, a.is_ipv6());
                    if spec5 {
                        self.invariants(call, a, want, false);
                    }
                }
            },
        }
    }

    /// Raw connect / sendto against the `std::net` twin.
    fn connect(&self, send: bool, buf: &[u8], layout: SockaddrLayout, source_len: usize) {
        let call = if send { "sendto" } else { "connect" };
        let mut d = buf.to_vec();
        let mut s = vec![0x77u8; source_len];
        let raw = self.rw.raw(layout);
        let got = if send {
            raw.send_to(&mut d, &mut s)
        } else {
            raw.connect(&mut d, &mut s)
        };
        let untouched = |d: &[u8], s: &[u8]| {
            assert_eq!(d, buf, "{call}: an error changed the destination");
            assert!(
                s.iter().all(|&x| x == 0x77),
                "{call}: an error wrote the source"
            );
        };
        let a = match read_sockaddr(buf, layout) {
            Err(SockaddrError::UnsupportedFamily { .. }) => {
                assert_eq!(
                    got,
                    Ok(RawConnect { dest: RawOutcome::OtherFamily, source_len: None }),
                    "{call}: another family"
                );
                return untouched(&d, &s);
            }
            Err(e) => {
                assert_eq!(got, Err(RawError::Sockaddr(e)), "{call}: raw and read_sockaddr disagree");
                return untouched(&d, &s);
            }
            Ok(a) => a,
        };
        let want = if send {
            self.rw.send_to(a)
        } else {
            self.rw.connect(a)
        };
        let want = match want {
            Err(e) => {
                assert_eq!(got, Err(RawError::Refused(e)), "{call} {a}");
                return untouched(&d, &s);
            }
            Ok(c) => c,
        };
        let need = if a.is_ipv4() {
            SOCKADDR_IN_LEN
        } else {
            SOCKADDR_IN6_LEN
        };
        if want.source.is_some() && source_len < need {
            assert_eq!(
                got,
                Err(RawError::Sockaddr(SockaddrError::TooShort {
                    len: source_len,
                    need
                })),
                "{call} {a}: the source does not fit"
            );
            return untouched(&d, &s);
        }
        let r = got.unwrap_or_else(|e| panic!("{call} {a}: raw {e}, std {want:?}"));
        let now = read_sockaddr(&d, layout).unwrap();
        assert_eq!(now, want.dest, "{call} {a}: raw and std::net disagree");
        let dest_changed = r.dest == RawOutcome::Rewritten;
        assert_ne!(r.dest, RawOutcome::OtherFamily, "{call} {a}");
        assert!(
            dest_changed || d == buf,
            "{call}: changed bytes but said it did not"
        );
        assert!(
            dest_changed || want.dest == a,
            "{call}: std changed it, raw did not"
        );
        only_address_changed(buf, &d, a.is_ipv6());
        self.invariants(call, a, want.dest, true);
        match (want.source, r.source_len) {
            (None, None) => assert!(s.iter().all(|&x| x == 0x77), "{call}: wrote a source"),
            (Some(src), Some(len)) => {
                assert_eq!(len, need, "{call}: the source has the destination's family");
                let read = read_sockaddr(&s[..len], layout).unwrap();
                assert_eq!(read, src, "{call} {a}: the raw and std::net sources differ");
                assert!(
                    s[len..].iter().all(|&x| x == 0x77),
                    "{call}: wrote past the source"
                );
                assert_eq!(src.port(), 0, "{call}: a source has port 0");
                assert_eq!(src.is_ipv4(), a.is_ipv4(), "{call}: the source's family");
                assert!(
                    self.own(src.ip()),
                    "{call}: source {src} is not the session's own"
                );
                if !self.rw.is_active() {
                    panic!("{call}: an inactive rewriter asked for a source");
                }
            }
            (w, g) => panic!("{call} {a}: std source {w:?}, raw source length {g:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let engine = &engines()[input.knobs];
    let (layout, buf, session, vip) = (input.layout, input.buf, input.session, input.vip);
    let plan = engine.process(input.image);
    // A VIP is checked where it is made: an unusable one never reaches a rewriter.
    let vip = match vip.map(Vip::new) {
        Some(Err(_)) => return,
        Some(Ok(v)) => Some(v),
        None => None,
    };
    let rw = engine.rewriter(session, &plan, vip);
    let vip = vip.map(Vip::addr);
    let stack = if input.dual_stack {
        Stack::Dual
    } else {
        Stack::Single
    };
    let check = Check {
        rw: &rw,
        session,
        vip,
    };
    check.in_place(
        "bind",
        buf,
        layout,
        |b| rw.raw(layout).bind_on(b, stack),
        |a| rw.bind_on(a, stack),
    );
    if let Ok(a) = read_sockaddr(buf, layout) {
        check.explain_agrees(a);
    }
    check.connect(false, buf, layout, input.source_len);
    check.connect(true, buf, layout, input.source_len);
    check.in_place(
        "reported",
        buf,
        layout,
        |b| rw.raw(layout).reported(b).map_err(RawError::Sockaddr),
        |a| Ok(rw.reported(a)),
    );
    // The name-resolution calls on one raw address keep everything but the address.
    let with_ip = |a: SocketAddr, ip: IpAddr| match (a, ip) {
        (SocketAddr::V6(v6), IpAddr::V6(ip)) => {
            SocketAddr::V6(SocketAddrV6::new(ip, v6.port(), v6.flowinfo(), v6.scope_id()))
        }
        (a, ip) => SocketAddr::new(ip, a.port()),
    };
    check.in_place(
        "resolved",
        buf,
        layout,
        |b| rw.raw(layout).resolved(b).map_err(RawError::Sockaddr),
        |a| Ok(with_ip(a, rw.resolved_addr(a.ip()))),
    );
    check.in_place_with(
        "reverse_lookup",
        buf,
        layout,
        |b| rw.raw(layout).reverse_lookup(b).map_err(RawError::Sockaddr),
        |a| Ok(with_ip(a, rw.reverse_lookup(a.ip()))),
        false,
    );
});
