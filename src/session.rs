//! Sessions and the session ⇄ loopback-address mapping (SPEC §2).
//!
//! Citrix virtual loopback gives session `n` the address `127.0.0.0 + (n + 1)`, the sum carried
//! across the low three octets of 127.0.0.0/8:
//!
//! | session | loopback address |
//! |---|---|
//! | 0 | `127.0.0.1` (the real localhost: session 0 is not isolated) |
//! | 7 | `127.0.0.8` |
//! | 254 | `127.0.0.255` |
//! | 255 | `127.0.1.0` (the carry into the third octet) |
//! | 65 535 | `127.1.0.0` |
//! | 16 777 214 ([`SessionId::MAX`]) | `127.255.255.255` |
//! | 16 777 215 and above | none: [`SessionError::OutOfRange`] |
//!
//! The mapping is injective and has an inverse, [`SessionId::from_loopback`]: every address of
//! 127.0.0.0/8 except `127.0.0.0` names exactly one session. A session past the maximum is an error,
//! never a wrap-around into another session's address.
//!
//! Both directions are a handful of integer operations: no allocation, no branch on anything but the
//! range check.

use alloc::string::String;
use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use alloc::string::ToString;

/// `127.0.0.0` as a `u32`: the base the session offset is added to.
const LOOPBACK_BASE: u32 = 0x7F00_0000;
/// The host part of 127.0.0.0/8.
const HOST_MASK: u32 = 0x00FF_FFFF;

/// A session id, as Windows numbers sessions (`0` is the services session).
///
/// `SessionId::new` accepts any `u32`, as Windows may hand out; only ids up to [`SessionId::MAX`] have
/// a loopback address. Conversions from outside data — [`FromStr`], [`TryFrom<u32>`] and serde —
/// reject larger ids up front, so a configuration error surfaces when it is read, not at the first
/// socket call.
///
/// # Examples
///
/// ```
/// use std::net::Ipv4Addr;
/// use ipvirt::SessionId;
///
/// let id = SessionId::new(7);
/// assert_eq!(id.loopback(), Ok(Ipv4Addr::new(127, 0, 0, 8)));
/// assert_eq!(SessionId::from_loopback(Ipv4Addr::new(127, 0, 0, 8)), Some(id));
/// assert_eq!("255".parse::<SessionId>().unwrap().loopback(), Ok(Ipv4Addr::new(127, 0, 1, 0)));
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u32", into = "u32")]
pub struct SessionId(u32);

impl SessionId {
    /// The largest session id that has a loopback address: 16 777 214 → `127.255.255.255`.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::SessionId;
    ///
    /// assert_eq!(SessionId::MAX.get(), 16_777_214);
    /// assert_eq!(SessionId::MAX.loopback(), Ok(Ipv4Addr::new(127, 255, 255, 255)));
    /// ```
    pub const MAX: SessionId = SessionId(HOST_MASK - 1);

    /// Wraps a raw session id. Any value is accepted; [`loopback`](Self::loopback) checks the range.
    ///
    /// ```
    /// use ipvirt::SessionId;
    ///
    /// assert_eq!(SessionId::new(7).get(), 7);
    /// ```
    #[inline]
    #[must_use]
    pub const fn new(id: u32) -> SessionId {
        SessionId(id)
    }

    /// The raw session id.
    ///
    /// ```
    /// use ipvirt::SessionId;
    ///
    /// assert_eq!(SessionId::new(42).get(), 42);
    /// ```
    #[inline]
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The session's loopback address: `127.0.0.0 + (id + 1)`, carried across the low three octets.
    ///
    /// Session 0 gets `127.0.0.1`, the real localhost, so it is not isolated from processes that use
    /// plain localhost; sessions that are virtualized are never 0 (see [`Session::is_virtualized`]).
    ///
    /// # Errors
    ///
    /// [`SessionError::OutOfRange`] when the id is larger than [`SessionId::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::{SessionError, SessionId};
    ///
    /// assert_eq!(SessionId::new(7).loopback(), Ok(Ipv4Addr::new(127, 0, 0, 8)));
    /// assert_eq!(SessionId::new(65_535).loopback(), Ok(Ipv4Addr::new(127, 1, 0, 0)));
    /// assert_eq!(
    ///     SessionId::new(16_777_215).loopback(),
    ///     Err(SessionError::OutOfRange { id: 16_777_215 })
    /// );
    /// ```
    #[inline]
    pub const fn loopback(self) -> Result<Ipv4Addr, SessionError> {
        if self.0 > Self::MAX.0 {
            return Err(SessionError::OutOfRange { id: self.0 });
        }
        // Cannot overflow: self.0 + 1 <= HOST_MASK, so the sum stays inside 127.0.0.0/8.
        Ok(Ipv4Addr::from_bits(LOOPBACK_BASE | (self.0 + 1)))
    }

    /// The session whose loopback address is `addr`, or `None` when `addr` is `127.0.0.0` or lies
    /// outside 127.0.0.0/8.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::SessionId;
    ///
    /// assert_eq!(SessionId::from_loopback(Ipv4Addr::new(127, 0, 1, 0)), Some(SessionId::new(255)));
    /// assert_eq!(SessionId::from_loopback(Ipv4Addr::new(127, 0, 0, 1)), Some(SessionId::new(0)));
    /// assert_eq!(SessionId::from_loopback(Ipv4Addr::new(127, 0, 0, 0)), None);
    /// assert_eq!(SessionId::from_loopback(Ipv4Addr::new(10, 0, 0, 8)), None);
    /// ```
    #[inline]
    #[must_use]
    pub const fn from_loopback(addr: Ipv4Addr) -> Option<SessionId> {
        let bits = addr.to_bits();
        if bits & !HOST_MASK != LOOPBACK_BASE {
            return None;
        }
        match bits & HOST_MASK {
            0 => None,
            host => Some(SessionId(host - 1)),
        }
    }
}

impl fmt::Display for SessionId {
    /// The decimal id, as `FromStr` reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for SessionId {
    type Err = ParseSessionError;

    /// Reads a decimal session id (ASCII digits only, no sign or spaces) no larger than
    /// [`SessionId::MAX`].
    fn from_str(s: &str) -> Result<SessionId, ParseSessionError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSessionError::NotANumber {
                input: s.to_string(),
            });
        }
        // All digits: the only way u32 parsing can fail is overflow.
        match s.parse::<u32>() {
            Ok(id) if id <= SessionId::MAX.0 => Ok(SessionId(id)),
            _ => Err(ParseSessionError::OutOfRange {
                input: s.to_string(),
            }),
        }
    }
}

impl TryFrom<u32> for SessionId {
    type Error = SessionError;

    /// Accepts ids up to [`SessionId::MAX`], the ones that have a loopback address.
    fn try_from(id: u32) -> Result<SessionId, SessionError> {
        if id > SessionId::MAX.0 {
            Err(SessionError::OutOfRange { id })
        } else {
            Ok(SessionId(id))
        }
    }
}

impl From<SessionId> for u32 {
    fn from(id: SessionId) -> u32 {
        id.0
    }
}

/// What kind of session a process runs in; only [`SessionKind::Remote`] sessions are virtualized.
///
/// ```
/// use ipvirt::{Session, SessionId, SessionKind};
///
/// assert_eq!(Session::console(SessionId::new(1)).kind(), SessionKind::Console);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SessionKind {
    /// A remote user session (Citrix ICA/HDX, Remote Desktop): the sessions these features exist for.
    Remote,
    /// The physical console, a remote administration (`mstsc /admin`) session, or the services
    /// session: never virtualized (SPEC §4).
    Console,
}

/// A session: its id and its kind.
///
/// Only remote sessions other than session 0 are virtualized: session 0 is where services run
/// (Windows) and its loopback address would be the real `127.0.0.1`, and console or administrative
/// sessions keep the server's own network identity (seed: "only in an ICA session"; Microsoft: not
/// session 0, not remote-admin sessions).
///
/// # Examples
///
/// ```
/// use ipvirt::{Session, SessionId};
///
/// assert!(Session::remote(SessionId::new(7)).is_virtualized());
/// assert!(!Session::console(SessionId::new(7)).is_virtualized());
/// assert!(!Session::remote(SessionId::new(0)).is_virtualized());
/// assert_eq!(Session::remote(SessionId::new(7)).to_string(), "remote session 7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Session {
    id: SessionId,
    kind: SessionKind,
}

impl Session {
    /// A remote (ICA/RDP) session.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId, SessionKind};
    ///
    /// assert_eq!(Session::remote(SessionId::new(3)).kind(), SessionKind::Remote);
    /// ```
    #[inline]
    #[must_use]
    pub const fn remote(id: SessionId) -> Session {
        Session {
            id,
            kind: SessionKind::Remote,
        }
    }

    /// The console, an administrative, or the services session: never virtualized.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId};
    ///
    /// assert!(!Session::console(SessionId::new(1)).is_virtualized());
    /// ```
    #[inline]
    #[must_use]
    pub const fn console(id: SessionId) -> Session {
        Session {
            id,
            kind: SessionKind::Console,
        }
    }

    /// A session of the given kind.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId, SessionKind};
    ///
    /// assert_eq!(Session::new(SessionId::new(2), SessionKind::Remote), Session::remote(SessionId::new(2)));
    /// ```
    #[inline]
    #[must_use]
    pub const fn new(id: SessionId, kind: SessionKind) -> Session {
        Session { id, kind }
    }

    /// The session id.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId};
    ///
    /// assert_eq!(Session::remote(SessionId::new(3)).id(), SessionId::new(3));
    /// ```
    #[inline]
    #[must_use]
    pub const fn id(self) -> SessionId {
        self.id
    }

    /// The session kind.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId, SessionKind};
    ///
    /// assert_eq!(Session::console(SessionId::new(1)).kind(), SessionKind::Console);
    /// ```
    #[inline]
    #[must_use]
    pub const fn kind(self) -> SessionKind {
        self.kind
    }

    /// Whether the session's sockets are ever rewritten: a remote session other than session 0.
    ///
    /// ```
    /// use ipvirt::{Session, SessionId};
    ///
    /// assert!(Session::remote(SessionId::new(1)).is_virtualized());
    /// assert!(!Session::remote(SessionId::new(0)).is_virtualized());
    /// ```
    #[inline]
    #[must_use]
    pub const fn is_virtualized(self) -> bool {
        matches!(self.kind, SessionKind::Remote) && self.id.0 != 0
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SessionKind::Remote => write!(f, "remote session {}", self.id),
            SessionKind::Console => write!(f, "console session {}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_crosses_octets() {
        assert_eq!(
            SessionId::new(254).loopback(),
            Ok(Ipv4Addr::new(127, 0, 0, 255))
        );
        assert_eq!(
            SessionId::new(255).loopback(),
            Ok(Ipv4Addr::new(127, 0, 1, 0))
        );
        assert_eq!(
            SessionId::new(65_535).loopback(),
            Ok(Ipv4Addr::new(127, 1, 0, 0))
        );
    }

    #[test]
    fn parse_rejects_signs_spaces_and_overflow() {
        for bad in ["", " 7", "7 ", "+7", "-1", "0x10", "7.0", "١"] {
            assert!(
                matches!(
                    bad.parse::<SessionId>(),
                    Err(ParseSessionError::NotANumber { .. })
                ),
                "{bad:?}"
            );
        }
        for big in [
            "16777215",
            "4294967295",
            "4294967296",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(
                    big.parse::<SessionId>(),
                    Err(ParseSessionError::OutOfRange { .. })
                ),
                "{big:?}"
            );
        }
        assert_eq!("007".parse::<SessionId>(), Ok(SessionId::new(7)));
        assert_eq!("16777214".parse::<SessionId>(), Ok(SessionId::MAX));
    }

    #[test]
    fn try_from_checks_range() {
        assert_eq!(SessionId::try_from(16_777_214), Ok(SessionId::MAX));
        assert_eq!(
            SessionId::try_from(16_777_215),
            Err(SessionError::OutOfRange { id: 16_777_215 })
        );
    }
}

/// An error from the session-to-loopback mapping.
///
/// # Examples
///
/// ```
/// use ipvirt::{SessionError, SessionId};
///
/// let err = SessionId::new(16_777_215).loopback().unwrap_err();
/// assert_eq!(err, SessionError::OutOfRange { id: 16_777_215 });
/// assert_eq!(
///     err.to_string(),
///     "session 16777215 has no loopback address: the largest session id with one is 16777214 (127.255.255.255)"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session id is larger than [`SessionId::MAX`]: 127.0.0.0/8 has no address left for it, and
    /// wrapping around would hand it another session's address.
    #[error(
        "session {id} has no loopback address: the largest session id with one is {max} (127.255.255.255)",
        max = SessionId::MAX.get()
    )]
    OutOfRange {
        /// The session id that was asked for.
        id: u32,
    },
}

/// An error from parsing a [`SessionId`] from text.
///
/// # Examples
///
/// ```
/// use ipvirt::SessionId;
///
/// let err = "seven".parse::<SessionId>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid session id \"seven\": not a decimal number");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSessionError {
    /// The text is not a decimal number (empty, a sign, a space, a letter, …).
    #[error("invalid session id {input:?}: not a decimal number")]
    NotANumber {
        /// The text that was given.
        input: String,
    },
    /// The number is larger than [`SessionId::MAX`], the largest id with a loopback address.
    #[error(
        "invalid session id {input:?}: larger than {max}, the largest session id with a loopback address",
        max = SessionId::MAX.get()
    )]
    OutOfRange {
        /// The text that was given.
        input: String,
    },
}
