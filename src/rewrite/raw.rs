//! The same calls on raw `sockaddr` bytes: [`Rewriter::raw`] → [`Raw`], with the method names of
//! the `std::net` API. The bytes are decided on by the same rules ([`rules`](super::rules)), so the
//! two paths cannot disagree.
//!
//! Only address bytes change; nothing is read or written past a slice; outputs are written only on
//! success. An address of another family (`AF_UNIX`, `AF_NETLINK`, …) is the ordinary answer
//! [`RawOutcome::OtherFamily`] — pass the call through — not an error. Short or oversized buffers
//! are [`SockaddrError`]s, and a refused call is a [`Refusal`], both in [`RawError`].

use core::net::{Ipv4Addr, Ipv6Addr};

use super::Rewriter;
use super::rules::{Ip, ReportedCore};
use crate::sockaddr::{
    Kind, SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN, SockaddrError, SockaddrLayout, array, kind, put,
};
use crate::verdict::{Refusal, Stack};

/// The calls of a [`Rewriter`] on raw `sockaddr` bytes of one [`SockaddrLayout`].
///
/// ```
/// use ipvirt::{Host, Policy, RawOutcome, SockaddrLayout, Session, SessionId};
///
/// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
/// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
/// let raw = rw.raw(SockaddrLayout::LINUX);
/// let mut sin = [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
/// assert_eq!(raw.bind(&mut sin)?, RawOutcome::Rewritten);
/// assert_eq!(sin[4..8], [127, 0, 0, 8]);
/// assert_eq!(raw.reported(&mut sin)?, RawOutcome::Rewritten);
/// assert_eq!(sin[4..8], [127, 0, 0, 1]);
/// let mut sun = [1, 0, b'/', b't', b'm', b'p'];          // AF_UNIX: not ours
/// assert_eq!(raw.bind(&mut sun)?, RawOutcome::OtherFamily);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    rw: &'a Rewriter,
    layout: SockaddrLayout,
}

/// What a raw call did to an address buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawOutcome {
    /// The address bytes were rewritten.
    Rewritten,
    /// An `AF_INET`/`AF_INET6` address that stays as it is.
    Unchanged,
    /// Not `AF_INET`/`AF_INET6`: the call passes through untouched.
    OtherFamily,
}

/// What [`Raw::connect`] and [`Raw::send_to`] did.
///
/// ```
/// use ipvirt::{RawConnect, RawOutcome};
///
/// let r = RawConnect { dest: RawOutcome::Rewritten, source_len: Some(16) };
/// assert!(r.source_len.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawConnect {
    /// What happened to the destination bytes.
    pub dest: RawOutcome,
    /// `Some(len)`: a source address of `len` bytes was written to the `source` buffer; bind the
    /// socket to it first if it is not bound yet. `None`: nothing was written.
    pub source_len: Option<usize>,
}

/// Why a raw call failed: a bad buffer, or a refusal of the rules. Buffers are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// The buffer is too short or too long: fail the call as the system would (`EINVAL`).
    #[error(transparent)]
    Sockaddr(#[from] SockaddrError),
    /// The call must fail with the refusal's code.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Where the address is in a checked buffer, in the form the rules take.
#[derive(Clone, Copy)]
struct Parsed {
    ip: Ip,
    port: u16,
    v6: bool,
}

impl Parsed {
    /// The address in `buf`, or `None` for another family.
    #[inline(always)]
    fn of(buf: &[u8], layout: SockaddrLayout) -> Result<Option<Parsed>, SockaddrError> {
        let port = u16::from_be_bytes(array(buf, 2));
        Ok(Some(match kind(buf, layout) {
            Ok(Kind::V4) => Parsed {
                ip: Ip::V4(u32::from_be_bytes(array(buf, 4))),
                port,
                v6: false,
            },
            Ok(Kind::V6) => Parsed {
                ip: Ip::of_v6(u128::from_be_bytes(array(buf, 8))),
                port,
                v6: true,
            },
            Err(SockaddrError::UnsupportedFamily { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }))
    }

    /// Puts the new IPv4 address (IPv4-mapped in a `sockaddr_in6`) in place; `None` leaves the
    /// buffer alone.
    #[inline(always)]
    fn put(self, buf: &mut [u8], new: Option<u32>) -> RawOutcome {
        let Some(bits) = new else {
            return RawOutcome::Unchanged;
        };
        if self.v6 {
            put(buf, 8, &Ipv4Addr::from_bits(bits).to_ipv6_mapped().octets());
        } else {
            put(buf, 4, &bits.to_be_bytes());
        }
        RawOutcome::Rewritten
    }
}

/// Writes an implicit source (`bits`, port 0, in the destination's family) as a complete
/// `sockaddr_in` or IPv4-mapped `sockaddr_in6`, without building a `SocketAddr`.
#[inline(always)]
fn write_source(
    bits: u32,
    v6: bool,
    out: &mut [u8],
    layout: SockaddrLayout,
) -> Result<usize, SockaddrError> {
    let need = if v6 {
        SOCKADDR_IN6_LEN
    } else {
        SOCKADDR_IN_LEN
    };
    let Some(dst) = out.get_mut(..need) else {
        return Err(SockaddrError::TooShort {
            len: out.len(),
            need,
        });
    };
    let mut b = [0u8; SOCKADDR_IN6_LEN];
    let family = if v6 {
        layout.af_inet6()
    } else {
        layout.af_inet()
    };
    layout.write_family(&mut b, family, need);
    if v6 {
        put(&mut b, 18, &[0xFF, 0xFF]);
        put(&mut b, 20, &bits.to_be_bytes());
    } else {
        put(&mut b, 4, &bits.to_be_bytes());
    }
    if let Some(src) = b.get(..need) {
        dst.copy_from_slice(src);
    }
    Ok(need)
}

impl Rewriter {
    /// The calls of this rewriter on raw `sockaddr` bytes of `layout` (the address-family numbers
    /// and header of the target platform).
    #[inline]
    #[must_use]
    pub fn raw(&self, layout: SockaddrLayout) -> Raw<'_> {
        Raw { rw: self, layout }
    }
}

impl Raw<'_> {
    /// [`Rewriter::bind`] on the address in `addr`, rewritten in place.
    ///
    /// # Errors
    ///
    /// [`RawError::Sockaddr`] for a short or oversized buffer, [`RawError::Refused`] as
    /// [`Rewriter::bind`]. `addr` is unchanged on error.
    #[inline]
    pub fn bind(&self, addr: &mut [u8]) -> Result<RawOutcome, RawError> {
        self.bind_on(addr, Stack::Single)
    }

    /// [`Rewriter::bind_on`] on the address in `addr`, rewritten in place.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// ```
    /// use ipvirt::{Host, Policy, RawOutcome, SockaddrLayout, Session, SessionId, Stack, Vip};
    ///
    /// let engine = Policy::from_toml("[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n")?
    ///     .compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("x"), Some(Vip::new("192.0.2.107".parse()?)?));
    /// let mut any6 = [0u8; 28];
    /// any6[0] = 10; // AF_INET6 on Linux, address ::
    /// assert_eq!(rw.raw(SockaddrLayout::LINUX).bind_on(&mut any6, Stack::Dual)?, RawOutcome::Rewritten);
    /// assert_eq!(any6[20..24], [192, 0, 2, 107]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind_on(&self, addr: &mut [u8], stack: Stack) -> Result<RawOutcome, RawError> {
        let Some(p) = Parsed::of(addr, self.layout)? else {
            return Ok(RawOutcome::OtherFamily);
        };
        let new = self.rw.bind_core(p.ip, p.port, stack).0?;
        Ok(p.put(addr, new))
    }

    /// [`Rewriter::connect`] on the destination in `dest`, rewritten in place; the source to bind
    /// first, if any, is written to `source` (give it 28 bytes or more).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), plus [`SockaddrError::TooShort`] when a source must be written and
    /// `source` cannot hold it. Neither buffer is changed on error.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, RawOutcome, SockaddrLayout, Session, SessionId, read_sockaddr};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
    /// let mut dest = [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    /// let mut source = [0u8; 128];
    /// let r = rw.raw(SockaddrLayout::LINUX).connect(&mut dest, &mut source)?;
    /// assert_eq!(r.dest, RawOutcome::Rewritten);
    /// let len = r.source_len.unwrap();
    /// assert_eq!(read_sockaddr(&source[..len], SockaddrLayout::LINUX)?, "127.0.0.8:0".parse()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn connect(&self, dest: &mut [u8], source: &mut [u8]) -> Result<RawConnect, RawError> {
        let Some(p) = Parsed::of(dest, self.layout)? else {
            return Ok(RawConnect {
                dest: RawOutcome::OtherFamily,
                source_len: None,
            });
        };
        let c = self.rw.connect_core::<false>(p.ip, p.port).0?;
        // Write the source first: if it does not fit, nothing at all is changed.
        let source_len = match c.source {
            Some(bits) => Some(write_source(bits, p.v6, source, self.layout)?),
            None => None,
        };
        Ok(RawConnect {
            dest: p.put(dest, c.dest),
            source_len,
        })
    }

    /// [`Rewriter::send_to`] on raw bytes: the rules of [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    #[inline]
    pub fn send_to(&self, dest: &mut [u8], source: &mut [u8]) -> Result<RawConnect, RawError> {
        self.connect(dest, source)
    }

    /// [`Rewriter::reported`] on raw bytes, in place: pass the complete address the system
    /// returned (then truncate to the application's buffer as the system would).
    ///
    /// # Errors
    ///
    /// [`SockaddrError::TooShort`] or [`SockaddrError::TooLong`].
    #[inline]
    pub fn reported(&self, addr: &mut [u8]) -> Result<RawOutcome, SockaddrError> {
        let Some(p) = Parsed::of(addr, self.layout)? else {
            return Ok(RawOutcome::OtherFamily);
        };
        Ok(match self.rw.reported_core(p.ip, p.port, p.v6).0 {
            ReportedCore::Unchanged => RawOutcome::Unchanged,
            ReportedCore::V4(bits) => p.put(addr, Some(bits)),
            ReportedCore::Ipv6Loopback => {
                put(addr, 8, &Ipv6Addr::LOCALHOST.octets());
                RawOutcome::Rewritten
            }
        })
    }

    /// [`Rewriter::resolved`] on one raw address (an `addrinfo`'s `ai_addr`), in place; the port
    /// is kept.
    ///
    /// # Errors
    ///
    /// [`SockaddrError::TooShort`] or [`SockaddrError::TooLong`].
    #[inline]
    pub fn resolved(&self, addr: &mut [u8]) -> Result<RawOutcome, SockaddrError> {
        let Some(p) = Parsed::of(addr, self.layout)? else {
            return Ok(RawOutcome::OtherFamily);
        };
        Ok(p.put(addr, self.rw.resolved_core(p.ip).0))
    }

    /// [`Rewriter::reverse_lookup`] on one raw address (the input of `getnameinfo`), in place.
    ///
    /// # Errors
    ///
    /// [`SockaddrError::TooShort`] or [`SockaddrError::TooLong`].
    #[inline]
    pub fn reverse_lookup(&self, addr: &mut [u8]) -> Result<RawOutcome, SockaddrError> {
        let Some(p) = Parsed::of(addr, self.layout)? else {
            return Ok(RawOutcome::OtherFamily);
        };
        Ok(p.put(addr, self.rw.reverse_core(p.ip).0))
    }
}
