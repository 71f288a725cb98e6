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
    /// See [`ParsePoolEntryError`].
    #[error(transparent)]
    ParsePoolEntry(#[from] ParsePoolEntryError),
}
