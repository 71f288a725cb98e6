//! The status codes as one table: each status's frozen number, C name, message and, for a
//! refusal, the refusal whose error codes (`errno`, Winsock) the hook fails the call with. Pure
//! data: it imports nothing of the C ABI (the calls that read it are in `library.rs`).

use crate::session::SessionId;
use crate::sockaddr::SockaddrError;
use crate::verdict::Refusal;

/// Writes [`ipvirt_status`] and its table from one list: `NAME = number, "message", refusal;`.
macro_rules! statuses {
    ($($(#[doc = $doc:literal])* $name:ident = $n:literal, $msg:literal, $refusal:expr;)*) => {
        /// Status codes. The numeric values are frozen.
        ///
        /// ```
        /// use ipvirt::capi::ipvirt_status;
        ///
        /// assert_eq!(ipvirt_status::IPVIRT_NO_CONNECTIVITY as u32, 8);
        /// assert_eq!(ipvirt_status::IPVIRT_NO_CONNECTIVITY.name(), "IPVIRT_NO_CONNECTIVITY");
        /// ```
        #[repr(u32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ipvirt_status {
            $($(#[doc = $doc])* $name = $n,)*
        }

        impl ipvirt_status {
            /// Every status, in the order of their numbers.
            ///
            /// ```
            /// use ipvirt::capi::ipvirt_status;
            ///
            /// assert!(ipvirt_status::ALL.iter().enumerate().all(|(i, s)| *s as usize == i));
            /// ```
            pub const ALL: [ipvirt_status; [$($n),*].len()] = [$(ipvirt_status::$name),*];

            /// The status with the number `n`, if there is one.
            ///
            /// ```
            /// use ipvirt::capi::ipvirt_status;
            ///
            /// assert_eq!(ipvirt_status::from_number(13), Some(ipvirt_status::IPVIRT_PANIC));
            /// assert_eq!(ipvirt_status::from_number(99), None);
            /// ```
            #[must_use]
            pub const fn from_number(n: u32) -> Option<ipvirt_status> {
                match n {
                    $($n => Some(ipvirt_status::$name),)*
                    _ => None,
                }
            }

            /// The status's name in the header (`"IPVIRT_OK"`).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(ipvirt_status::$name => stringify!($name),)*
                }
            }

            /// What the status means, in words (what `ipvirt_status_message` writes).
            ///
            /// ```
            /// use ipvirt::capi::ipvirt_status;
            ///
            /// assert_eq!(ipvirt_status::IPVIRT_OK.message(), "success");
            /// ```
            #[must_use]
            pub const fn message(self) -> &'static str {
                match self {
                    $(ipvirt_status::$name => $msg,)*
                }
            }

            /// For a refusal, the [`Refusal`] whose error codes the hook fails the call with (what
            /// `ipvirt_status_errno` writes); `None` for a status that is no refusal.
            ///
            /// ```
            /// use ipvirt::capi::ipvirt_status;
            ///
            /// assert_eq!(ipvirt_status::IPVIRT_ISOLATED.refusal().map(|r| r.errno()), Some(111));
            /// assert_eq!(ipvirt_status::IPVIRT_PANIC.refusal(), None);
            /// ```
            #[must_use]
            pub const fn refusal(self) -> Option<Refusal> {
                match self {
                    $(ipvirt_status::$name => $refusal,)*
                }
            }
        }
    };
}

/// Any session: the error codes of an isolation refusal do not depend on the owner.
const ANY: SessionId = SessionId::new(0);

statuses! {
    /// Success.
    IPVIRT_OK = 0, "success", None;
    /// A required pointer was NULL.
    IPVIRT_NULL_ARGUMENT = 1, "a required pointer argument was NULL", None;
    /// A string argument was not UTF-8.
    IPVIRT_INVALID_UTF8 = 2, "a string argument is not valid UTF-8", None;
    /// The policy text could not be read (the message says where).
    IPVIRT_POLICY_ERROR = 3, "the policy text could not be read", None;
    /// The policy could not be compiled (the message says why).
    IPVIRT_COMPILE_ERROR = 4, "the policy could not be compiled", None;
    /// A buffer is shorter than what it must hold (an address, the source, a message).
    IPVIRT_BUFFER_TOO_SHORT = 5, "a buffer is too short", None;
    /// A socket-address buffer is longer than any socket address (128 bytes).
    IPVIRT_BUFFER_TOO_LONG = 6, "a socket address buffer is longer than 128 bytes", None;
    /// The address is not `AF_INET`/`AF_INET6`: pass the call through untouched.
    IPVIRT_UNSUPPORTED_FAMILY = 7,
        "the address family is neither AF_INET nor AF_INET6: pass the call through", None;
    /// The session has no VIP and the policy says no connectivity: fail with `EADDRNOTAVAIL`.
    IPVIRT_NO_CONNECTIVITY = 8,
        "the session has no virtual IP and the policy says no connectivity (EADDRNOTAVAIL)",
        Some(Refusal::NoConnectivity);
    /// A connect or send to another session's loopback address with isolation on: fail it with
    /// `ECONNREFUSED` / `WSAECONNREFUSED`.
    IPVIRT_ISOLATED = 9,
        "another session's loopback address, and isolation is on (ECONNREFUSED)",
        Some(Refusal::Isolated { owner: ANY });
    /// The session kind is unknown.
    IPVIRT_INVALID_SESSION = 10, "the session kind is unknown", None;
    /// The VIP is not a usable unicast IPv4 address.
    IPVIRT_INVALID_VIP = 11, "the virtual IP is not a usable unicast IPv4 address", None;
    /// Another argument is out of range (a layout, a plan field, a length).
    IPVIRT_INVALID_ARGUMENT = 12, "an argument is out of range", None;
    /// ipvirt panicked (a bug); nothing was written.
    IPVIRT_PANIC = 13, "ipvirt panicked: this is a bug", None;
    /// A bind of another session's loopback address with isolation on: fail it with `EACCES` /
    /// `WSAEACCES`.
    IPVIRT_OTHER_SESSION = 14,
        "a bind of another session's loopback address, and isolation is on (EACCES)",
        Some(Refusal::OtherSession { owner: ANY });
    /// Virtual loopback applies but the session id (past 16 777 214) has no loopback address: fail
    /// with `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`.
    IPVIRT_NO_LOOPBACK = 15,
        "virtual loopback applies but the session has no loopback address (EADDRNOTAVAIL)",
        Some(Refusal::NoLoopback);
}

/// The status of a refusal: the one whose table row names a refusal of the same kind.
pub(super) fn refusal_status(r: Refusal) -> ipvirt_status {
    // An address of no session (SPEC §12: 127.0.0.0) is refused with the same codes as another
    // session's: the C statuses stay as they are.
    let r = match r {
        Refusal::Unowned { .. } => Refusal::Isolated { owner: ANY },
        Refusal::BindUnowned { .. } => Refusal::OtherSession { owner: ANY },
        other => other,
    };
    let kind = core::mem::discriminant(&r);
    ipvirt_status::ALL
        .into_iter()
        .find(|s| {
            s.refusal()
                .is_some_and(|t| core::mem::discriminant(&t) == kind)
        })
        // Every refusal has a row (a unit test checks it).
        .unwrap_or(ipvirt_status::IPVIRT_PANIC)
}

/// The status of a bad buffer.
pub(super) fn sockaddr_status(e: SockaddrError) -> ipvirt_status {
    match e {
        SockaddrError::TooShort { .. } => ipvirt_status::IPVIRT_BUFFER_TOO_SHORT,
        SockaddrError::TooLong { .. } => ipvirt_status::IPVIRT_BUFFER_TOO_LONG,
        _ => ipvirt_status::IPVIRT_UNSUPPORTED_FAMILY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_status() {
        for (r, s) in [
            (
                Refusal::NoConnectivity,
                ipvirt_status::IPVIRT_NO_CONNECTIVITY,
            ),
            (
                Refusal::Isolated {
                    owner: SessionId::new(8),
                },
                ipvirt_status::IPVIRT_ISOLATED,
            ),
            (
                Refusal::OtherSession {
                    owner: SessionId::new(8),
                },
                ipvirt_status::IPVIRT_OTHER_SESSION,
            ),
            (Refusal::NoLoopback, ipvirt_status::IPVIRT_NO_LOOPBACK),
            (
                Refusal::Unowned {
                    addr: core::net::Ipv4Addr::new(127, 0, 0, 0),
                },
                ipvirt_status::IPVIRT_ISOLATED,
            ),
            (
                Refusal::BindUnowned {
                    addr: core::net::Ipv4Addr::new(127, 0, 0, 0),
                },
                ipvirt_status::IPVIRT_OTHER_SESSION,
            ),
        ] {
            assert_eq!(refusal_status(r), s);
            assert_eq!(s.refusal().map(|t| t.errno()), Some(r.errno()));
        }
    }

    #[test]
    fn numbers_are_dense_and_frozen() {
        for (i, s) in ipvirt_status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(ipvirt_status::from_number(i as u32), Some(*s));
        }
        assert_eq!(ipvirt_status::ALL.len(), 16);
    }
}
