//! The scalar arguments of the C ABI turned into the library's checked values: a session from its
//! id and kind, a VIP from its four bytes.

use super::ptr::bytes;
use super::status::ipvirt_status::{self, *};
use crate::addr::Vip;
use crate::session::{Session, SessionId};

/// The session a C caller names: `kind` 0 remote, 1 console/administrative.
///
/// # Errors
///
/// `IPVIRT_INVALID_SESSION` for another kind.
pub(super) fn session_of(id: u32, kind: u32) -> Result<Session, ipvirt_status> {
    let id = SessionId::new(id);
    match kind {
        0 => Ok(Session::remote(id)),
        1 => Ok(Session::console(id)),
        _ => Err(IPVIRT_INVALID_SESSION),
    }
}

/// The VIP a C caller passes: 4 bytes in network order, or NULL with length 0 for none.
///
/// # Errors
///
/// `IPVIRT_INVALID_VIP` for an address that cannot be a VIP, `IPVIRT_INVALID_ARGUMENT` for another
/// length, or what [`bytes`] says.
///
/// # Safety
///
/// `vip` must be NULL or valid for reading `vip_len` bytes.
pub(super) unsafe fn vip_of(vip: *const u8, vip_len: usize) -> Result<Option<Vip>, ipvirt_status> {
    // SAFETY: the caller's contract.
    match unsafe { bytes(vip, vip_len) }? {
        [] => Ok(None),
        &[a, b, c, d] => Vip::new([a, b, c, d].into())
            .map(Some)
            .map_err(|_| IPVIRT_INVALID_VIP),
        _ => Err(IPVIRT_INVALID_ARGUMENT),
    }
}
