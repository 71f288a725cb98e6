//! Error types, one enum per failure domain.
//!
//! Each variant is a sentence a user can act on: it names the bad value and, where there is one, the
//! limit it broke. Errors that can occur on the hot path carry only `Copy` payloads, so returning them
//! never allocates. [`Error`] gathers every domain error for callers that want a single type with `?`.

use alloc::string::String;

use crate::session::SessionId;

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

/// An error reading a policy: syntax, an unknown key, a wrong type or a malformed value.
///
/// Errors from a file name the line (1-based) and the key, so the administrator can go straight to it.
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, PolicyError};
///
/// let err = Policy::from_toml("[virtual_loopback]\nenabled = true\nprogram = [\"crm.exe\"]\n").unwrap_err();
/// assert!(matches!(err, PolicyError::Toml { line: 3, .. }));
/// assert!(err.to_string().starts_with("policy line 3, key `virtual_loopback.program`: unknown field `program`"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The TOML text is malformed, has an unknown key, a value of the wrong type, or a value that does
    /// not parse (an address, a CIDR, a pool range, a mode).
    #[error("policy line {line}{}: {message}", key.as_deref().map(|k| alloc::format!(", key `{k}`")).unwrap_or_default())]
    Toml {
        /// The 1-based line the error is on.
        line: usize,
        /// The dotted key the error is about (`virtual_ip.adapter`), where it could be told.
        key: Option<String>,
        /// What is wrong, from the TOML reader.
        message: String,
    },
    /// The platform name is not one this crate knows.
    #[error(
        "unknown platform {value:?}: expected one of windows-server-2008-r2, windows-server-2012, windows-server-2012-r2, windows-server-2016, windows-server-2019, windows-server-2022, windows-server-2025, windows-10-multi-session, windows-11-multi-session, windows-desktop, other"
    )]
    UnknownPlatform {
        /// The name that was given.
        value: String,
    },
    /// The policy could not be written as TOML (only possible if a field cannot be represented).
    #[error("policy cannot be written as TOML: {message}")]
    Serialize {
        /// What the TOML writer said.
        message: String,
    },
}

/// An error parsing a VIP pool entry (`192.0.2.10-192.0.2.20`, `192.0.2.0/24` or `192.0.2.7`).
///
/// # Examples
///
/// ```
/// use ipvirt::PoolEntry;
///
/// let err = "192.0.2.20-192.0.2.10".parse::<PoolEntry>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid pool entry \"192.0.2.20-192.0.2.10\": the range ends before it starts"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool entry {input:?}: {reason}")]
pub struct ParsePoolEntryError {
    /// The text that was given.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// An error compiling a [`Policy`](crate::Policy) into an [`Engine`](crate::Engine): a setting the
/// engine cannot carry out without breaking an invariant of SPEC §5.
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, Policy};
///
/// let mut policy = Policy::default();
/// policy.virtual_loopback.localhost = "192.0.2.1".parse().unwrap();
/// let err = policy.compile(Host::default()).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "virtual_loopback.localhost = 192.0.2.1 is not a loopback address: it must be in 127.0.0.0/8 and not 127.0.0.0"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// `virtual_loopback.localhost` is outside 127.0.0.0/8 (or is `127.0.0.0`, which names no
    /// session): replacing it by a session loopback address would turn a non-loopback address into a
    /// loopback one.
    #[error(
        "virtual_loopback.localhost = {localhost} is not a loopback address: it must be in 127.0.0.0/8 and not 127.0.0.0"
    )]
    LocalhostNotLoopback {
        /// The configured address.
        localhost: core::net::Ipv4Addr,
    },
}

/// An error from a [`Rewriter`](crate::Rewriter): the call must fail, with the error code given
/// for each variant.
///
/// Every payload is `Copy`: returning the error never allocates.
///
/// | variant | POSIX `errno` | Winsock |
/// |---|---|---|
/// | [`NoConnectivity`](Self::NoConnectivity) | `EADDRNOTAVAIL` | `WSAEADDRNOTAVAIL` |
/// | [`Isolated`](Self::Isolated) | `ECONNREFUSED` (connect, send); `EACCES` (bind) | `WSAECONNREFUSED`; `WSAEACCES` (bind) |
/// | [`Session`](Self::Session), [`InvalidVip`](Self::InvalidVip) | (set-up errors of [`Engine::rewriter`](crate::Engine::rewriter); a hook logs them and passes calls through) | |
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, Policy, RewriteError, Session, SessionId};
///
/// let policy = Policy::from_toml(
///     "[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\nisolate = true\n",
/// )?;
/// let engine = policy.compile(Host::default())?;
/// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
/// let err = rw.connect("127.0.0.9:9000".parse()?).unwrap_err();
/// assert!(matches!(err, RewriteError::Isolated { .. }));
/// assert_eq!(
///     err.to_string(),
///     "session 7 may not use 127.0.0.9:9000: it is session 8's loopback address and virtual_loopback.isolate is on"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The call would use the session's VIP, the session has none, and the policy says
    /// `on_lease_failure = "no-connectivity"` (`PromptOnIPLeaseFail = 1`).
    #[error(
        "session {session} has no virtual IP and virtual_ip.on_lease_failure is no-connectivity: {addr} cannot be used"
    )]
    NoConnectivity {
        /// The session.
        session: SessionId,
        /// The address the call was given.
        addr: core::net::SocketAddr,
    },
    /// The address is another session's loopback address and `virtual_loopback.isolate` is on: a
    /// connect or send to it, or a bind of it.
    #[error(
        "session {session} may not use {dest}: it is session {owner}'s loopback address and virtual_loopback.isolate is on"
    )]
    Isolated {
        /// The session making the call.
        session: SessionId,
        /// The address the call was given (the destination of a connect or send, the address of a
        /// bind).
        dest: core::net::SocketAddr,
        /// The session that loopback address belongs to.
        owner: SessionId,
    },
    /// Virtual loopback applies but the session has no loopback address (its id is past
    /// [`SessionId::MAX`]).
    #[error(transparent)]
    Session(SessionError),
    /// Virtual IP applies and the VIP given is not a usable unicast IPv4 address.
    #[error(
        "virtual IP {vip} is not a usable unicast address (unspecified, loopback, multicast or broadcast)"
    )]
    InvalidVip {
        /// The VIP that was given.
        vip: core::net::Ipv4Addr,
    },
}

#[cfg(feature = "std")]
impl RewriteError {
    /// The `std::io::ErrorKind` a hook should fail a connect or send with. A bind refused by
    /// isolation fails with [`PermissionDenied`](std::io::ErrorKind::PermissionDenied) (`EACCES`)
    /// instead: see [`Rewriter::bind`](crate::Rewriter::bind).
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use ipvirt::{RewriteError, SessionId};
    ///
    /// let e = RewriteError::NoConnectivity { session: SessionId::new(7), addr: "0.0.0.0:80".parse().unwrap() };
    /// assert_eq!(e.io_error_kind(), ErrorKind::AddrNotAvailable);
    /// ```
    #[must_use]
    pub fn io_error_kind(&self) -> std::io::ErrorKind {
        match self {
            RewriteError::NoConnectivity { .. } => std::io::ErrorKind::AddrNotAvailable,
            RewriteError::Isolated { .. } => std::io::ErrorKind::ConnectionRefused,
            _ => std::io::ErrorKind::InvalidInput,
        }
    }
}

/// An error from the raw `sockaddr` functions.
///
/// Every payload is `Copy`. [`UnsupportedFamily`](Self::UnsupportedFamily) is not the caller's
/// mistake: it says the address is not `AF_INET`/`AF_INET6`, and the hook passes the call through
/// untouched. The others mean the application passed a bad buffer: the hook lets the system call
/// fail as it would natively (`EINVAL` / `WSAEFAULT`), or, for [`Rewrite`](Self::Rewrite), fails it
/// with the rewrite error's code.
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
    /// The rewrite itself says the call must fail.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
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

/// An error building or restoring a [`StaticPool`](crate::StaticPool).
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, PoolError, StaticPool};
///
/// let host = Host::new(["192.0.2.7".parse().unwrap()]);
/// let err = StaticPool::new(&["192.0.2.7".parse().unwrap()], &host).unwrap_err();
/// assert_eq!(err, PoolError::Empty);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No address is left once the server's own addresses are taken out (or no entry was given).
    #[error("the VIP pool is empty: it has no address that is not one of the server's own")]
    Empty,
    /// The pool holds more addresses than the largest accepted, 16 777 216 (a /8).
    #[error("the VIP pool has {size} addresses: at most 16777216 (a /8) are accepted")]
    TooLarge {
        /// How many addresses the entries hold.
        size: u64,
    },
    /// An entry holds addresses that can never be a VIP.
    #[error("VIP pool entry \"{entry}\" overlaps {block}: such addresses can never be a VIP")]
    Reserved {
        /// The entry.
        entry: crate::pool::PoolEntry,
        /// The block it overlaps, in words.
        block: &'static str,
    },
    /// A snapshot names the same session twice.
    #[error("the pool snapshot names session {session} twice")]
    DuplicateSession {
        /// The session.
        session: SessionId,
    },
    /// A snapshot leases the same address twice.
    #[error("the pool snapshot leases {addr} twice")]
    DuplicateAddress {
        /// The address.
        addr: core::net::Ipv4Addr,
    },
    /// A snapshot names an address that is not in the pool (or is one of the server's own).
    #[error("the pool snapshot names {addr}, which is not in the pool")]
    OutsidePool {
        /// The address.
        addr: core::net::Ipv4Addr,
    },
    /// A snapshot names a session id past [`SessionId::MAX`].
    #[error("the pool snapshot names session {session}, past the largest session id 16777214")]
    InvalidSession {
        /// The session.
        session: SessionId,
    },
}

/// An error leasing a VIP. Every payload is `Copy`.
///
/// A hook turns it into the policy's lease-failure behaviour by passing no VIP to
/// [`Engine::rewriter`](crate::Engine::rewriter) (`pool.lease(s).ok()`).
///
/// # Examples
///
/// ```
/// use ipvirt::{Host, LeaseError, SessionId, StaticPool};
///
/// let mut pool = StaticPool::new(&["192.0.2.7".parse().unwrap()], &Host::default()).unwrap();
/// pool.lease(SessionId::new(1)).unwrap();
/// let err = pool.lease(SessionId::new(2)).unwrap_err();
/// assert_eq!(err, LeaseError::Exhausted { session: SessionId::new(2), size: 1 });
/// assert_eq!(err.to_string(), "no VIP left for session 2: all 1 addresses of the pool are leased");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Every address of the pool is leased.
    #[error("no VIP left for session {session}: all {size} addresses of the pool are leased")]
    Exhausted {
        /// The session that asked.
        session: SessionId,
        /// The pool's size.
        size: u32,
    },
    /// The session id is past [`SessionId::MAX`].
    #[error("session {session} cannot lease a VIP: session ids go up to 16777214")]
    InvalidSession {
        /// The session that asked.
        session: SessionId,
    },
}

/// An error reading a registry export ([`Policy::from_reg`](crate::Policy::from_reg)): the file is
/// not a registry export, or a line of it is malformed. Every variant names the line (1-based) or
/// the byte offset.
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, RegError};
///
/// let err = Policy::from_reg(b"REGEDIT4\n[HKLM\\X]\n\"A\"=dword:xyz\n").unwrap_err();
/// assert!(matches!(err, RegError::Malformed { line: 3, .. }));
/// assert_eq!(
///     err.to_string(),
///     "registry file line 3: \"\\\"A\\\"=dword:xyz\" is malformed: dword: needs 1 to 8 hex digits"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegError {
    /// The first non-empty line is not `Windows Registry Editor Version 5.00` or `REGEDIT4`.
    #[error(
        "registry file line {line}: expected the header \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\", found {found:?}"
    )]
    Header {
        /// The line where the header should be.
        line: usize,
        /// What is there instead (at most 60 characters).
        found: String,
    },
    /// A line is neither a key, a value, a comment nor blank, or its data is malformed.
    #[error("registry file line {line}: {text:?} is malformed: {reason}")]
    Malformed {
        /// The line (the first line of a continued line).
        line: usize,
        /// The line's text (at most 80 characters).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A UTF-16 file has an odd number of bytes or an unpaired surrogate.
    #[error("registry file is not valid UTF-16 at byte {offset}")]
    Utf16 {
        /// The byte offset of the bad code unit.
        offset: usize,
    },
}

/// An error of the advisor (feature `std`).
///
/// # Examples
///
/// ```
/// let err = ipvirt::advisor::parse("hello\nworld\n").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "no line of the 2 non-empty lines parses as a socket table; tried ss -tulpn, netstat -ano[b], TCPView CSV"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisorError {
    /// No line of the text parses in any supported format.
    #[error("no line of the {lines} non-empty lines parses as a socket table; tried {tried}")]
    NothingParsed {
        /// How many non-empty lines the text has.
        lines: usize,
        /// The formats tried.
        tried: String,
    },
}

/// Any error of this crate.
///
/// Every domain error converts into it with `?`; match on the variant to get the specific error back.
///
/// # Examples
///
/// ```
/// use ipvirt::{Error, SessionId};
///
/// fn session_loopback(text: &str) -> Result<std::net::Ipv4Addr, Error> {
///     let id: SessionId = text.parse()?;
///     Ok(id.loopback()?)
/// }
/// assert_eq!(session_loopback("7").unwrap(), std::net::Ipv4Addr::new(127, 0, 0, 8));
/// assert!(matches!(session_loopback("x"), Err(Error::ParseSession(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`SessionError`].
    #[error(transparent)]
    Session(#[from] SessionError),
    /// See [`ParseSessionError`].
    #[error(transparent)]
    ParseSession(#[from] ParseSessionError),
    /// See [`PolicyError`].
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// See [`CompileError`].
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// See [`RewriteError`].
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// See [`AdvisorError`].
    #[error(transparent)]
    Advisor(#[from] AdvisorError),
    /// See [`RegError`].
    #[error(transparent)]
    Reg(#[from] RegError),
    /// See [`SockaddrError`].
    #[error(transparent)]
    Sockaddr(#[from] SockaddrError),
    /// See [`PoolError`].
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// See [`LeaseError`].
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// See [`ParsePoolEntryError`].
    #[error(transparent)]
    ParsePoolEntry(#[from] ParsePoolEntryError),
}
