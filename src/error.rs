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
}
