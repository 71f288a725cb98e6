//! SPEC §6 raw `sockaddr` bytes: every layout, the rewrite rows on bytes, bad buffers, and
//! arbitrary bytes (proptest) never panicking or writing when they fail.

mod common;

use std::net::SocketAddr;

use common::{VIP, engine, sa};
use ipvirt::{
    FamilyHeader, RawConnect, RawError, RawOutcome, Refusal, Session, SessionId, SockaddrError,
    SockaddrLayout, Stack, read_sockaddr, write_sockaddr,
};
use proptest::prelude::*;

const LAYOUTS: [SockaddrLayout; 5] = [
    SockaddrLayout::LINUX,
    SockaddrLayout::LINUX_BIG_ENDIAN,
    SockaddrLayout::WINDOWS,
    SockaddrLayout::MACOS,
    SockaddrLayout::FREEBSD,
];

const S7: Session = Session::remote(SessionId::new(7));

fn bytes(addr: &str, layout: SockaddrLayout) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let len = write_sockaddr(sa(addr), &mut buf, layout).unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn exact_bytes_per_platform() {
    // sockaddr_in for 127.0.0.1:9000
    assert_eq!(
        bytes("127.0.0.1:9000", SockaddrLayout::LINUX),
        [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        bytes("127.0.0.1:9000", SockaddrLayout::LINUX_BIG_ENDIAN)[..2],
        [0, 2]
    );
    assert_eq!(
        bytes("127.0.0.1:9000", SockaddrLayout::WINDOWS)[..2],
        [2, 0]
    );
    assert_eq!(bytes("127.0.0.1:9000", SockaddrLayout::MACOS)[..2], [16, 2]);
    assert_eq!(
        bytes("127.0.0.1:9000", SockaddrLayout::FREEBSD)[..2],
        [16, 2]
    );
    // sockaddr_in6 family numbers
    assert_eq!(bytes("[::1]:80", SockaddrLayout::LINUX)[..2], [10, 0]);
    assert_eq!(
        bytes("[::1]:80", SockaddrLayout::LINUX_BIG_ENDIAN)[..2],
        [0, 10]
    );
    assert_eq!(bytes("[::1]:80", SockaddrLayout::WINDOWS)[..2], [23, 0]);
    assert_eq!(bytes("[::1]:80", SockaddrLayout::MACOS)[..2], [28, 30]);
    assert_eq!(bytes("[::1]:80", SockaddrLayout::FREEBSD)[..2], [28, 28]);
    let b = bytes("[::ffff:127.0.0.1]:80", SockaddrLayout::LINUX);
    assert_eq!(b.len(), 28);
    assert_eq!(b[2..4], [0, 80]);
    assert_eq!(
        b[8..24],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
    );
}

#[test]
fn native_layout_matches_this_machine() {
    // This test runs on Linux/x86-64 or AArch64 in CI: the native layout is LINUX.
    if cfg!(all(target_os = "linux", target_endian = "little")) {
        assert_eq!(SockaddrLayout::native(), SockaddrLayout::LINUX);
    }
}

#[test]
fn rows_on_bytes_for_every_layout() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    for layout in LAYOUTS {
        let rows: [(&str, &str); 6] = [
            ("127.0.0.1:9000", "127.0.0.8:9000"),
            ("[::ffff:127.0.0.1]:9000", "[::ffff:127.0.0.8]:9000"),
            ("0.0.0.0:9000", "192.0.2.107:9000"),
            ("192.0.2.10:9000", "192.0.2.107:9000"),
            ("127.0.0.1:27000", "127.0.0.1:27000"),
            ("[::1]:9000", "[::1]:9000"),
        ];
        for (input, want) in rows {
            let mut buf = bytes(input, layout);
            let changed = rw.raw(layout).bind_on(&mut buf, Stack::Single).unwrap();
            assert_eq!(
                read_sockaddr(&buf, layout).unwrap(),
                sa(want),
                "{layout:?} bind {input}"
            );
            assert_eq!(changed == RawOutcome::Rewritten, input != want);
            // Only the address bytes may differ from a freshly written `want`.
            assert_eq!(
                buf,
                bytes(want, layout),
                "{layout:?} bind {input}: other bytes touched"
            );
        }
        // Dual-stack `::`.
        let mut buf = bytes("[::]:9000", layout);
        assert_eq!(
            rw.raw(layout).bind_on(&mut buf, Stack::Dual),
            Ok(RawOutcome::Rewritten)
        );
        assert_eq!(
            read_sockaddr(&buf, layout).unwrap(),
            sa("[::ffff:192.0.2.107]:9000")
        );

        // connect: destination rewritten, source written in the same family.
        let mut dest = bytes("127.0.0.1:9000", layout);
        let mut source = [0xEEu8; 128];
        let r = rw.raw(layout).connect(&mut dest, &mut source).unwrap();
        assert_eq!(r.dest, RawOutcome::Rewritten);
        assert_eq!(read_sockaddr(&dest, layout).unwrap(), sa("127.0.0.8:9000"));
        let len = r.source_len.unwrap();
        assert_eq!(len, 16);
        assert_eq!(
            read_sockaddr(&source[..len], layout).unwrap(),
            sa("192.0.2.107:0")
        );
        assert!(
            source[len..].iter().all(|&b| b == 0xEE),
            "wrote past the source"
        );

        let mut dest = bytes("[::ffff:198.51.100.7]:443", layout);
        let r = rw.raw(layout).send_to(&mut dest, &mut source).unwrap();
        assert_eq!(r.dest, RawOutcome::Unchanged);
        assert_eq!(r.source_len, Some(28));
        assert_eq!(
            read_sockaddr(&source[..28], layout).unwrap(),
            sa("[::ffff:192.0.2.107]:0")
        );

        // reported
        let mut buf = bytes("[::ffff:127.0.0.8]:5000", layout);
        assert_eq!(rw.raw(layout).reported(&mut buf), Ok(RawOutcome::Rewritten));
        assert_eq!(
            read_sockaddr(&buf, layout).unwrap(),
            sa("[::ffff:127.0.0.1]:5000")
        );
    }
}

#[test]
fn padding_flowinfo_and_scope_are_preserved() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    let layout = SockaddrLayout::LINUX;
    // sin_zero holding garbage is left as the application wrote it.
    let mut sin = bytes("127.0.0.1:9000", layout);
    sin[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    rw.raw(layout).bind_on(&mut sin, Stack::Single).unwrap();
    assert_eq!(sin[4..8], [127, 0, 0, 8]);
    assert_eq!(sin[8..16], [1, 2, 3, 4, 5, 6, 7, 8]);
    // A trailing area past the structure (a sockaddr_storage) is not touched.
    let mut storage = [0x55u8; 128];
    storage[..16].copy_from_slice(&bytes("0.0.0.0:80", layout));
    rw.raw(layout).bind_on(&mut storage, Stack::Single).unwrap();
    assert_eq!(storage[4..8], [192, 0, 2, 107]);
    assert!(storage[16..].iter().all(|&b| b == 0x55));
    // flowinfo / scope id
    let addr = SocketAddr::V6(std::net::SocketAddrV6::new(
        "::ffff:127.0.0.1".parse().unwrap(),
        9000,
        0x12345,
        4,
    ));
    let mut six = vec![0u8; 28];
    write_sockaddr(addr, &mut six, layout).unwrap();
    rw.raw(layout).bind_on(&mut six, Stack::Single).unwrap();
    let got = read_sockaddr(&six, layout).unwrap();
    match got {
        SocketAddr::V6(v6) => {
            assert_eq!(v6.ip().to_ipv4_mapped(), Some("127.0.0.8".parse().unwrap()));
            assert_eq!((v6.flowinfo(), v6.scope_id()), (0x12345, 4));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn rfc2133_short_sockaddr_in6_is_accepted() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    let mut six = bytes("[::ffff:127.0.0.1]:9000", SockaddrLayout::LINUX);
    six.truncate(24);
    assert_eq!(
        rw.raw(SockaddrLayout::LINUX)
            .bind_on(&mut six, Stack::Single),
        Ok(RawOutcome::Rewritten)
    );
    assert_eq!(six[20..24], [127, 0, 0, 8]);
}

#[test]
fn bad_buffers_are_typed_errors_and_leave_bytes_alone() {
    let e = engine(false, "no-connectivity");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, None);
    for layout in LAYOUTS {
        let cases: Vec<(Vec<u8>, SockaddrError)> = vec![
            (vec![], SockaddrError::TooShort { len: 0, need: 2 }),
            (vec![2], SockaddrError::TooShort { len: 1, need: 2 }),
            (
                bytes("127.0.0.1:9000", layout)[..15].to_vec(),
                SockaddrError::TooShort { len: 15, need: 16 },
            ),
            (
                bytes("[::1]:9000", layout)[..23].to_vec(),
                SockaddrError::TooShort { len: 23, need: 24 },
            ),
            (vec![0; 129], SockaddrError::TooLong { len: 129, max: 128 }),
        ];
        for (buf, want) in cases {
            let mut b = buf.clone();
            assert_eq!(
                rw.raw(layout).bind_on(&mut b, Stack::Single),
                Err(RawError::Sockaddr(want)),
                "{layout:?} {buf:?}"
            );
            assert_eq!(b, buf);
            assert_eq!(rw.raw(layout).reported(&mut b), Err(want));
            assert_eq!(
                rw.raw(layout).connect(&mut b, &mut [0; 128]),
                Err(RawError::Sockaddr(want))
            );
            assert_eq!(b, buf);
        }
    }
    // Other families: AF_UNIX (1) and AF_NETLINK (16) are never rewritten.
    for family in [1u8, 16] {
        let mut unix = vec![family, 0];
        unix.extend_from_slice(b"/tmp/ipvirt.sock\0");
        let before = unix.clone();
        let raw = rw.raw(SockaddrLayout::LINUX);
        // Not ours is an answer, not an error: pass the call through.
        assert_eq!(
            raw.bind_on(&mut unix, Stack::Single),
            Ok(RawOutcome::OtherFamily)
        );
        assert_eq!(raw.reported(&mut unix), Ok(RawOutcome::OtherFamily));
        assert_eq!(
            raw.connect(&mut unix, &mut [0; 128]),
            Ok(RawConnect {
                dest: RawOutcome::OtherFamily,
                source_len: None
            })
        );
        assert_eq!(unix, before);
        // read_sockaddr, which must produce a SocketAddr, says why it cannot.
        let err = read_sockaddr(&unix, SockaddrLayout::LINUX).unwrap_err();
        assert_eq!(
            err,
            SockaddrError::UnsupportedFamily {
                family: u16::from(family)
            }
        );
        assert!(err.is_unsupported_family());
    }
    // The rewrite says no: the buffer stays as it was.
    let mut any = bytes("0.0.0.0:80", SockaddrLayout::LINUX);
    let before = any.clone();
    assert!(matches!(
        rw.raw(SockaddrLayout::LINUX)
            .bind_on(&mut any, Stack::Single),
        Err(RawError::Refused(Refusal::NoConnectivity))
    ));
    assert_eq!(any, before);
}

#[test]
fn source_buffer_too_short_changes_nothing() {
    let e = engine(false, "use-server-address");
    let plan = e.process("crm.exe");
    let rw = e.rewriter(S7, &plan, Some(VIP));
    let mut dest = bytes("127.0.0.1:9000", SockaddrLayout::LINUX);
    let before = dest.clone();
    let mut source = [0xAAu8; 15];
    assert_eq!(
        rw.raw(SockaddrLayout::LINUX)
            .connect(&mut dest, &mut source),
        Err(RawError::Sockaddr(SockaddrError::TooShort {
            len: 15,
            need: 16
        }))
    );
    assert_eq!(dest, before);
    assert!(source.iter().all(|&b| b == 0xAA));
}

#[test]
fn custom_layout() {
    let openbsd = SockaddrLayout::new(2, 24, FamilyHeader::LenByte);
    let b = bytes("[::1]:1", openbsd);
    assert_eq!(b[..2], [28, 24]);
    assert_eq!(read_sockaddr(&b, openbsd).unwrap(), sa("[::1]:1"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..140), li in 0usize..5, src_len in 0usize..40) {
        let layout = LAYOUTS[li];
        let e = engine(true, "no-connectivity");
        let plan = e.process("crm.exe");
        for vip in [None, Some(VIP)] {
            let rw = e.rewriter(S7, &plan, vip);
            let _ = read_sockaddr(&buf, layout);
            let mut b = buf.clone();
            if rw.raw(layout).bind_on(&mut b, Stack::Dual).is_err() { prop_assert_eq!(&b, &buf); }
            let mut b = buf.clone();
            let mut s = vec![0x77u8; src_len];
            if rw.raw(layout).connect(&mut b, &mut s).is_err() {
                prop_assert_eq!(&b, &buf);
                prop_assert!(s.iter().all(|&x| x == 0x77));
            }
            let mut b = buf.clone();
            let _ = rw.raw(layout).send_to(&mut b, &mut s);
            let mut b = buf.clone();
            if rw.raw(layout).reported(&mut b).is_err() { prop_assert_eq!(&b, &buf); }
            prop_assert_eq!(b.len(), buf.len());
        }
    }

    #[test]
    fn write_read_round_trip(ip in any::<[u8; 16]>(), v4 in any::<bool>(), port in any::<u16>(), flow in any::<u32>(), scope in any::<u32>(), li in 0usize..5) {
        let layout = LAYOUTS[li];
        let addr = if v4 {
            SocketAddr::from(([ip[0], ip[1], ip[2], ip[3]], port))
        } else {
            SocketAddr::V6(std::net::SocketAddrV6::new(ip.into(), port, flow, scope))
        };
        let mut buf = [0u8; 128];
        let len = write_sockaddr(addr, &mut buf, layout).unwrap();
        prop_assert_eq!(read_sockaddr(&buf[..len], layout).unwrap(), addr);
    }
}
