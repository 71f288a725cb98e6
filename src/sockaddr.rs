//! The rewrites on raw `sockaddr_in` / `sockaddr_in6` bytes (SPEC §6).
//!
//! A hook sits where the application's `struct sockaddr *` and its length are. These functions read
//! and rewrite that memory directly, so a hook needs no conversion code of its own. The platform's
//! layout is a parameter ([`SockaddrLayout`]), so one build can serve any target and tests can run
//! every layout on any machine:
//!
//! | layout | family field | `AF_INET` | `AF_INET6` |
//! |---|---|---|---|
//! | [`LINUX`](SockaddrLayout::LINUX) | `u16`, little-endian (x86-64, AArch64) | 2 | 10 |
//! | [`LINUX_BIG_ENDIAN`](SockaddrLayout::LINUX_BIG_ENDIAN) | `u16`, big-endian | 2 | 10 |
//! | [`WINDOWS`](SockaddrLayout::WINDOWS) | `u16`, little-endian | 2 | 23 |
//! | [`MACOS`](SockaddrLayout::MACOS) | `sa_len` byte, then a family byte | 2 | 30 |
//! | [`FREEBSD`](SockaddrLayout::FREEBSD) | `sa_len` byte, then a family byte | 2 | 28 |
//!
//! The structures themselves are the same everywhere: `sockaddr_in` is 16 bytes (family, port in
//! network order, address, 8 bytes of zero); `sockaddr_in6` is 28 bytes (family, port, flow info,
//! address, scope id; flow info and scope id are copied in the platform's byte order, as the C
//! fields hold them and as std does). A 24-byte `sockaddr_in6` (RFC 2133, no scope id) is accepted, as Linux does.
//!
//! Rules for the bytes:
//!
//! - nothing is read or written outside `buf`: a buffer shorter than its family's structure is
//!   [`SockaddrError::TooShort`], one longer than a `sockaddr_storage` (128 bytes) is
//!   [`SockaddrError::TooLong`];
//! - a family other than `AF_INET`/`AF_INET6` is [`SockaddrError::UnsupportedFamily`]: the hook
//!   passes such a call through untouched (`AF_UNIX`, `AF_NETLINK`, … are never rewritten);
//! - a rewrite changes only the address bytes: family, port, padding, flow info and scope id are
//!   left exactly as the application wrote them; an output (the implicit source) is written only
//!   on success.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// The shortest `sockaddr_in6` accepted: RFC 2133's, without `sin6_scope_id`.
pub(crate) const SOCKADDR_IN6_MIN: usize = 24;
/// `sizeof(struct sockaddr_storage)`: the longest socket address any platform uses.
pub const SOCKADDR_STORAGE_LEN: usize = 128;

/// How the family is stored at the start of a `sockaddr`.
///
/// ```
/// use ipvirt::FamilyHeader;
///
/// assert_ne!(FamilyHeader::U16Le, FamilyHeader::LenByte);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyHeader {
    /// A 16-bit family, little-endian (Linux on little-endian CPUs, Windows).
    U16Le,
    /// A 16-bit family, big-endian (Linux on big-endian CPUs).
    U16Be,
    /// A length byte (`sa_len`) and a family byte (the BSDs, macOS).
    LenByte,
}

/// A platform's `sockaddr` layout: the family numbers and how the family is stored.
///
/// ```
/// use ipvirt::SockaddrLayout;
///
/// assert_eq!(SockaddrLayout::WINDOWS.af_inet6(), 23);
/// assert_eq!(SockaddrLayout::LINUX.af_inet6(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockaddrLayout {
    af_inet: u16,
    af_inet6: u16,
    header: FamilyHeader,
}

impl SockaddrLayout {
    /// Linux on a little-endian CPU (x86-64, AArch64, RISC-V): `AF_INET6` = 10.
    pub const LINUX: SockaddrLayout = SockaddrLayout::new(2, 10, FamilyHeader::U16Le);
    /// Linux on a big-endian CPU (s390x, …).
    pub const LINUX_BIG_ENDIAN: SockaddrLayout = SockaddrLayout::new(2, 10, FamilyHeader::U16Be);
    /// Windows (Winsock): `AF_INET6` = 23.
    pub const WINDOWS: SockaddrLayout = SockaddrLayout::new(2, 23, FamilyHeader::U16Le);
    /// macOS and iOS: `sa_len`, `AF_INET6` = 30.
    pub const MACOS: SockaddrLayout = SockaddrLayout::new(2, 30, FamilyHeader::LenByte);
    /// FreeBSD: `sa_len`, `AF_INET6` = 28.
    pub const FREEBSD: SockaddrLayout = SockaddrLayout::new(2, 28, FamilyHeader::LenByte);

    /// A layout with the given family numbers and header.
    ///
    /// ```
    /// use ipvirt::{FamilyHeader, SockaddrLayout};
    ///
    /// // OpenBSD: sa_len, AF_INET6 = 24.
    /// let openbsd = SockaddrLayout::new(2, 24, FamilyHeader::LenByte);
    /// assert_eq!(openbsd.af_inet(), 2);
    /// ```
    #[must_use]
    pub const fn new(af_inet: u16, af_inet6: u16, header: FamilyHeader) -> SockaddrLayout {
        SockaddrLayout {
            af_inet,
            af_inet6,
            header,
        }
    }

    /// The layout of the platform this crate is compiled for (Linux, Windows, macOS, FreeBSD; the
    /// Linux layout elsewhere).
    ///
    /// ```
    /// use ipvirt::SockaddrLayout;
    ///
    /// assert_eq!(SockaddrLayout::native().af_inet(), 2);
    /// ```
    #[must_use]
    pub const fn native() -> SockaddrLayout {
        if cfg!(target_os = "windows") {
            SockaddrLayout::WINDOWS
        } else if cfg!(any(target_os = "macos", target_os = "ios")) {
            SockaddrLayout::MACOS
        } else if cfg!(target_os = "freebsd") {
            SockaddrLayout::FREEBSD
        } else if cfg!(target_endian = "big") {
            SockaddrLayout::LINUX_BIG_ENDIAN
        } else {
            SockaddrLayout::LINUX
        }
    }

    /// `AF_INET` on this platform.
    #[must_use]
    pub const fn af_inet(&self) -> u16 {
        self.af_inet
    }

    /// `AF_INET6` on this platform.
    #[must_use]
    pub const fn af_inet6(&self) -> u16 {
        self.af_inet6
    }

    /// The family header.
    #[must_use]
    pub const fn header(&self) -> FamilyHeader {
        self.header
    }

    /// The family stored in `buf`.
    ///
    /// # Errors
    ///
    /// [`SockaddrError::TooShort`] when `buf` cannot hold a family field (under 2 bytes),
    /// [`SockaddrError::TooLong`] past 128 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::SockaddrLayout;
    ///
    /// assert_eq!(SockaddrLayout::LINUX.family(&[1, 0]), Ok(1)); // AF_UNIX
    /// assert!(SockaddrLayout::LINUX.family(&[2]).is_err());
    /// ```
    #[inline]
    pub fn family(&self, buf: &[u8]) -> Result<u16, SockaddrError> {
        if buf.len() > SOCKADDR_STORAGE_LEN {
            return Err(SockaddrError::TooLong {
                len: buf.len(),
                max: SOCKADDR_STORAGE_LEN,
            });
        }
        let Some(&[a, b]) = buf.first_chunk::<2>() else {
            return Err(SockaddrError::TooShort {
                len: buf.len(),
                need: 2,
            });
        };
        Ok(match self.header {
            FamilyHeader::U16Le => u16::from_le_bytes([a, b]),
            FamilyHeader::U16Be => u16::from_be_bytes([a, b]),
            FamilyHeader::LenByte => u16::from(b),
        })
    }

    /// Reads a `u32` field stored in the platform's byte order (`sin6_flowinfo`, `sin6_scope_id`:
    /// copied as the C field holds them, as std and socket2 do).
    fn u32_from(&self, b: [u8; 4]) -> u32 {
        match self.header {
            FamilyHeader::U16Le => u32::from_le_bytes(b),
            FamilyHeader::U16Be => u32::from_be_bytes(b),
            FamilyHeader::LenByte => u32::from_ne_bytes(b),
        }
    }

    fn u32_to(&self, v: u32) -> [u8; 4] {
        match self.header {
            FamilyHeader::U16Le => v.to_le_bytes(),
            FamilyHeader::U16Be => v.to_be_bytes(),
            FamilyHeader::LenByte => v.to_ne_bytes(),
        }
    }

    #[inline(always)]
    pub(crate) fn write_family(&self, buf: &mut [u8], family: u16, len: usize) {
        let bytes = match self.header {
            FamilyHeader::U16Le => family.to_le_bytes(),
            FamilyHeader::U16Be => family.to_be_bytes(),
            // Family numbers on these platforms fit a byte; sa_len is the structure's size.
            FamilyHeader::LenByte => [
                u8::try_from(len).unwrap_or(u8::MAX),
                family.to_le_bytes()[0],
            ],
        };
        if let Some(head) = buf.first_chunk_mut::<2>() {
            *head = bytes;
        }
    }
}

/// The kind of address in a buffer, once its length has been checked.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    V4,
    V6,
}

#[inline(always)]
pub(crate) fn kind(buf: &[u8], layout: SockaddrLayout) -> Result<Kind, SockaddrError> {
    let family = layout.family(buf)?;
    let (kind, need) = if family == layout.af_inet {
        (Kind::V4, SOCKADDR_IN_LEN)
    } else if family == layout.af_inet6 {
        (Kind::V6, SOCKADDR_IN6_MIN)
    } else {
        return Err(SockaddrError::UnsupportedFamily { family });
    };
    if buf.len() < need {
        return Err(SockaddrError::TooShort {
            len: buf.len(),
            need,
        });
    }
    Ok(kind)
}

#[inline(always)]
pub(crate) fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// Reads the socket address in `buf` (a `sockaddr_in` or `sockaddr_in6` of `layout`).
///
/// # Errors
///
/// [`SockaddrError::TooShort`], [`SockaddrError::TooLong`] or [`SockaddrError::UnsupportedFamily`].
///
/// # Examples
///
/// ```
/// use ipvirt::{SockaddrLayout, read_sockaddr};
///
/// let sin = [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
/// assert_eq!(read_sockaddr(&sin, SockaddrLayout::LINUX)?, "127.0.0.1:9000".parse()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_sockaddr(buf: &[u8], layout: SockaddrLayout) -> Result<SocketAddr, SockaddrError> {
    let port = u16::from_be_bytes(array(buf, 2));
    Ok(match kind(buf, layout)? {
        Kind::V4 => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(array::<4>(buf, 4)), port)),
        Kind::V6 => {
            let flow = layout.u32_from(array(buf, 4));
            let ip = Ipv6Addr::from(array::<16>(buf, 8));
            let scope = if buf.len() >= SOCKADDR_IN6_LEN {
                layout.u32_from(array(buf, 24))
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope))
        }
    })
}

/// Writes `addr` into `buf` as a complete `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes) of
/// `layout`, padding zeroed, and returns the length written. Nothing is written on error.
///
/// # Errors
///
/// [`SockaddrError::TooShort`] when `buf` is shorter than the structure.
///
/// # Examples
///
/// ```
/// use ipvirt::{SockaddrLayout, read_sockaddr, write_sockaddr};
///
/// let mut buf = [0xAA; 128];
/// let len = write_sockaddr("[::ffff:127.0.0.8]:9000".parse()?, &mut buf, SockaddrLayout::MACOS)?;
/// assert_eq!(len, 28);
/// assert_eq!(buf[..2], [28, 30]); // sa_len, AF_INET6
/// assert_eq!(read_sockaddr(&buf[..len], SockaddrLayout::MACOS)?, "[::ffff:127.0.0.8]:9000".parse()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_sockaddr(
    addr: SocketAddr,
    buf: &mut [u8],
    layout: SockaddrLayout,
) -> Result<usize, SockaddrError> {
    let need = if addr.is_ipv4() {
        SOCKADDR_IN_LEN
    } else {
        SOCKADDR_IN6_LEN
    };
    let Some(out) = buf.get_mut(..need) else {
        return Err(SockaddrError::TooShort {
            len: buf.len(),
            need,
        });
    };
    out.fill(0);
    match addr {
        SocketAddr::V4(a) => {
            layout.write_family(out, layout.af_inet, need);
            put(out, 2, &a.port().to_be_bytes());
            put(out, 4, &a.ip().octets());
        }
        SocketAddr::V6(a) => {
            layout.write_family(out, layout.af_inet6, need);
            put(out, 2, &a.port().to_be_bytes());
            put(out, 4, &layout.u32_to(a.flowinfo()));
            put(out, 8, &a.ip().octets());
            put(out, 24, &layout.u32_to(a.scope_id()));
        }
    }
    Ok(need)
}

#[inline(always)]
pub(crate) fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// An error from the raw `sockaddr` functions.
///
/// Every payload is `Copy`. These mean the application passed a bad buffer: the hook lets the
/// system call fail as it would natively (`EINVAL` / `WSAEFAULT`).
/// [`UnsupportedFamily`](Self::UnsupportedFamily) comes only from [`read_sockaddr`], which cannot
/// represent other families; the rewrite calls ([`Rewriter::raw`](crate::Rewriter::raw)) answer
/// [`RawOutcome::OtherFamily`](crate::RawOutcome::OtherFamily) instead, as a value.
///
/// # Examples
///
/// ```
/// use ipvirt::{SockaddrError, SockaddrLayout, read_sockaddr};
///
/// let err = read_sockaddr(&[2, 0, 0, 80], SockaddrLayout::LINUX).unwrap_err();
/// assert_eq!(err, SockaddrError::TooShort { len: 4, need: 16 });
/// assert_eq!(err.to_string(), "socket address buffer of 4 bytes is too short: this family needs 16");
/// assert!(read_sockaddr(&[1, 0, b'/', 0], SockaddrLayout::LINUX).unwrap_err().is_unsupported_family());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SockaddrError {
    /// The buffer is shorter than the structure its family needs (or than the 2-byte family field).
    #[error("socket address buffer of {len} bytes is too short: this family needs {need}")]
    TooShort {
        /// The buffer's length.
        len: usize,
        /// The length needed.
        need: usize,
    },
    /// The buffer is longer than any socket address (`sizeof(struct sockaddr_storage)`).
    #[error(
        "socket address buffer of {len} bytes is too long: no socket address is longer than {max}"
    )]
    TooLong {
        /// The buffer's length.
        len: usize,
        /// The longest accepted.
        max: usize,
    },
    /// The family is neither `AF_INET` nor `AF_INET6` of the layout: not rewritten.
    #[error(
        "address family {family} is neither AF_INET nor AF_INET6: such sockets are never rewritten"
    )]
    UnsupportedFamily {
        /// The family found in the buffer.
        family: u16,
    },
}

impl SockaddrError {
    /// Whether this is [`SockaddrError::UnsupportedFamily`]: pass the call through untouched.
    ///
    /// ```
    /// use ipvirt::SockaddrError;
    ///
    /// assert!(SockaddrError::UnsupportedFamily { family: 1 }.is_unsupported_family());
    /// ```
    #[must_use]
    pub const fn is_unsupported_family(&self) -> bool {
        matches!(self, SockaddrError::UnsupportedFamily { .. })
    }
}
