//! The umbrella [`Error`]: any error of this crate, for callers that want one type with `?`.
//!
//! Each error type lives beside the operation that returns it ([`SessionError`] with `SessionId`,
//! [`PolicyError`] with the policy readers, [`PoolError`] with the pools, and so on); this module
//! only gathers them. Nothing in the crate imports it, so the module graph stays a DAG.

use crate::addr::ParsePoolEntryError;
use crate::addr::{ParseVipError, VipError};
#[cfg(feature = "std")]
use crate::advisor::AdvisorError;
use crate::engine::CompileError;
use crate::policy::{PolicyError, RegError};
use crate::pool::{LeaseError, PoolError};
use crate::rewrite::{RawError, TableError};
use crate::session::{ParseSessionError, SessionError};
use crate::sockaddr::SockaddrError;
use crate::verdict::Refusal;

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
    /// See [`Refusal`].
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// See [`RawError`].
    #[error(transparent)]
    Raw(#[from] RawError),
    /// See [`VipError`].
    #[error(transparent)]
    Vip(#[from] VipError),
    /// See [`ParseVipError`].
    #[error(transparent)]
    ParseVip(#[from] ParseVipError),
    /// See [`TableError`].
    #[error(transparent)]
    Table(#[from] TableError),
    /// See [`AdvisorError`] (feature `std`).
    #[cfg(feature = "std")]
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
