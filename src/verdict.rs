//! What every layer returns for a call: [`Connect`] (where a connect or send goes, and from where),
//! [`Stack`] (what an `AF_INET6` socket carries), and [`Refusal`] (the answer "this call must
//! fail", with its one error-code table). A leaf: it imports only [`SessionId`].

use core::net::{Ipv4Addr, SocketAddr};

use crate::session::SessionId;

/// A call the rules refuse: the hook fails it with the code of [`errno`](Self::errno) (POSIX) or
/// [`wsa_error`](Self::wsa_error) (Winsock). A small `Copy` value: returning it never allocates.
///
/// | refusal | when | POSIX | Winsock |
/// |---|---|---|---|
/// | [`NoConnectivity`](Self::NoConnectivity) | the call would put the VIP on the network, the session has none, and `on_lease_failure = "no-connectivity"` | `EADDRNOTAVAIL` | `WSAEADDRNOTAVAIL` |
/// | [`Isolated`](Self::Isolated) | a connect or send to another session's loopback address, `virtual_loopback.isolate` on | `ECONNREFUSED` | `WSAECONNREFUSED` |
/// | [`OtherSession`](Self::OtherSession) | a bind of another session's loopback address, isolation on (it would receive that session's connections) | `EACCES` (what a bind the caller may not make gives; `EADDRNOTAVAIL` would invite retries) | `WSAEACCES` |
/// | [`Unowned`](Self::Unowned) | a connect or send to `127.0.0.0`, which belongs to no session, isolation on (SPEC §12) | `ECONNREFUSED` | `WSAECONNREFUSED` |
/// | [`BindUnowned`](Self::BindUnowned) | a bind of `127.0.0.0`, isolation on | `EACCES` | `WSAEACCES` |
/// | [`NoLoopback`](Self::NoLoopback) | virtual loopback applies but the session id is past `SessionId::MAX`, so it has no loopback address | `EADDRNOTAVAIL` | `WSAEADDRNOTAVAIL` |
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, Policy, Refusal, Session, SessionId};
///
/// let policy = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\nisolate = true\n")?;
/// let engine = policy.compile(Host::default())?;
/// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
/// let err = rw.connect("127.0.0.9:9000".parse()?).unwrap_err();
/// assert_eq!(err, Refusal::Isolated { owner: SessionId::new(8) });
/// assert_eq!(err.errno(), 111); // ECONNREFUSED on Linux
/// assert_eq!(err.wsa_error(), 10061);
/// assert_eq!(err.to_string(), "refused: the address is session 8's loopback address and virtual_loopback.isolate is on");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The call would use the session's VIP, the session has none, and the policy says
    /// `on_lease_failure = "no-connectivity"` (`PromptOnIPLeaseFail = 1`).
    #[error(
        "refused: the session has no virtual IP and virtual_ip.on_lease_failure is no-connectivity"
    )]
    NoConnectivity,
    /// A connect or send to another session's loopback address with isolation on.
    #[error(
        "refused: the address is session {owner}'s loopback address and virtual_loopback.isolate is on"
    )]
    Isolated {
        /// The session that address belongs to.
        owner: SessionId,
    },
    /// A bind of another session's loopback address with isolation on.
    #[error(
        "refused: the address is session {owner}'s loopback address and virtual_loopback.isolate is on, so it may not be bound"
    )]
    OtherSession {
        /// The session that address belongs to.
        owner: SessionId,
    },
    /// A connect or send to an address of 127.0.0.0/8 that belongs to no session (`127.0.0.0`)
    /// with isolation on (SPEC §12): every isolated session could meet there.
    #[error("refused: {addr} belongs to no session and virtual_loopback.isolate is on")]
    Unowned {
        /// The address.
        addr: Ipv4Addr,
    },
    /// A bind of an address of 127.0.0.0/8 that belongs to no session (`127.0.0.0`) with
    /// isolation on (SPEC §12).
    #[error(
        "refused: {addr} belongs to no session and virtual_loopback.isolate is on, so it may not be bound"
    )]
    BindUnowned {
        /// The address.
        addr: Ipv4Addr,
    },
    /// Virtual loopback applies but the session has no loopback address.
    #[error(
        "refused: virtual loopback applies but the session id is past 16777214, so it has no loopback address"
    )]
    NoLoopback,
}

/// The error codes of a refusal: (Linux `errno`, Winsock error). The one table every layer uses.
const fn codes(r: &Refusal) -> (i32, i32) {
    const EADDRNOTAVAIL: (i32, i32) = (99, 10049);
    const ECONNREFUSED: (i32, i32) = (111, 10061);
    const EACCES: (i32, i32) = (13, 10013);
    match r {
        Refusal::Isolated { .. } | Refusal::Unowned { .. } => ECONNREFUSED,
        Refusal::OtherSession { .. } | Refusal::BindUnowned { .. } => EACCES,
        Refusal::NoConnectivity | Refusal::NoLoopback => EADDRNOTAVAIL,
    }
}

impl Refusal {
    /// The Linux `errno` to fail the call with (`EADDRNOTAVAIL` = 99, `ECONNREFUSED` = 111,
    /// `EACCES` = 13).
    /// Other POSIX systems: match on [`io_error_kind`](Self::io_error_kind) or the variant.
    #[must_use]
    pub const fn errno(&self) -> i32 {
        codes(self).0
    }

    /// The Winsock error to fail the call with (`WSAEADDRNOTAVAIL` = 10049, `WSAECONNREFUSED` =
    /// 10061, `WSAEACCES` = 10013), set with `WSASetLastError`.
    #[must_use]
    pub const fn wsa_error(&self) -> i32 {
        codes(self).1
    }

    /// The `std::io::ErrorKind` of the refusal.
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use ipvirt::Refusal;
    ///
    /// assert_eq!(Refusal::NoConnectivity.io_error_kind(), ErrorKind::AddrNotAvailable);
    /// ```
    #[cfg(feature = "std")]
    #[must_use]
    pub fn io_error_kind(&self) -> std::io::ErrorKind {
        match self {
            Refusal::Isolated { .. } | Refusal::Unowned { .. } => {
                std::io::ErrorKind::ConnectionRefused
            }
            Refusal::OtherSession { .. } | Refusal::BindUnowned { .. } => {
                std::io::ErrorKind::PermissionDenied
            }
            Refusal::NoConnectivity | Refusal::NoLoopback => std::io::ErrorKind::AddrNotAvailable,
        }
    }
}

/// What a `connect`, `WSAConnect`, `sendto` or `WSASendTo` should do instead.
///
/// ```
/// use ipvirt::Connect;
///
/// let c = Connect { dest: "127.0.0.8:9000".parse()?, source: Some("127.0.0.8:0".parse()?) };
/// assert_eq!(c.dest.port(), 9000);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connect {
    /// The destination to connect or send to.
    pub dest: SocketAddr,
    /// When the socket is not bound yet: bind it to this address first (always port 0, so the
    /// kernel picks the port). `None`: leave the source to the kernel. A socket that is already
    /// bound ignores it.
    pub source: Option<SocketAddr>,
}

/// Whether an `AF_INET6` socket also carries IPv4 (`IPV6_V6ONLY` off). Only the hooking layer knows;
/// it decides what `::` means for a bind.
///
/// ```
/// use ipvirt::Stack;
///
/// assert_ne!(Stack::Single, Stack::Dual);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stack {
    /// An `AF_INET` socket, or an `AF_INET6` socket with `IPV6_V6ONLY` on (the Windows default).
    #[default]
    Single,
    /// An `AF_INET6` socket with `IPV6_V6ONLY` off (the Linux default): `::` accepts IPv4 too.
    Dual,
}
