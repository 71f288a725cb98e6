//! The rule tables of SPEC §7 across the C ABI: what a C or kernel layer loads, and a rewriter
//! built from tables it holds.

use std::sync::Arc;

use super::args::{session_of, vip_of};
use super::engine::{ipvirt_engine, ipvirt_plan};
use super::panic::guard;
use super::ptr::{check_disjoint, region};
use super::rewriter::ipvirt_rewriter;
use super::status::ipvirt_status::{self, *};
use crate::rewrite::Rewriter;
use crate::table::{PolicyTable, ProgramEntry, SessionEntry};

/// The policy table (see [`PolicyTable`]): `struct ipvirt_policy_table` in the header.
pub type ipvirt_policy_table = PolicyTable;
/// A session entry (see [`SessionEntry`]): `struct ipvirt_session_entry`.
pub type ipvirt_session_entry = SessionEntry;
/// A program entry (see [`ProgramEntry`]): `struct ipvirt_program_entry`.
pub type ipvirt_program_entry = ProgramEntry;

/// Copies the engine's policy table into `*out` (8 472 bytes).
///
/// # Safety
///
/// `engine` a live handle; `out` valid for an `ipvirt_policy_table`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_policy_table(
    engine: *const ipvirt_engine,
    out: *mut ipvirt_policy_table,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        // SAFETY: engine is a live handle; out is valid (caller, checked non-NULL).
        unsafe { out.write((*engine).engine.tables().clone()) };
        IPVIRT_OK
    })
}

/// The session entry for session `session_id` of kind `session_kind` (0 remote, 1 console) with
/// the VIP `vip` (4 bytes, network order; NULL with 0 for none), into `*out`.
///
/// # Safety
///
/// `engine` a live handle; `vip` NULL or valid for `vip_len` bytes; `out` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_session_entry(
    engine: *const ipvirt_engine,
    session_id: u32,
    session_kind: u32,
    vip: *const u8,
    vip_len: usize,
    out: *mut ipvirt_session_entry,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[(vip, vip_len)]) {
            return st;
        }
        let session = match session_of(session_id, session_kind) {
            Ok(s) => s,
            Err(st) => return st,
        };
        // SAFETY: vip is NULL or valid for vip_len bytes (caller).
        let vip = match unsafe { vip_of(vip, vip_len) } {
            Ok(v) => v,
            Err(st) => return st,
        };
        // SAFETY: engine is a live handle; out is valid (caller, checked non-NULL).
        unsafe { out.write((*engine).engine.session_entry(session, vip)) };
        IPVIRT_OK
    })
}

/// The program entry of a plan, into `*out`.
///
/// # Safety
///
/// `plan` and `out` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_plan_entry(
    plan: *const ipvirt_plan,
    out: *mut ipvirt_program_entry,
) -> ipvirt_status {
    guard(|| {
        if plan.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[region(plan)]) {
            return st;
        }
        // SAFETY: plan is valid (caller, checked non-NULL).
        let Some(plan) = unsafe { *plan }.to_plan() else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        // SAFETY: out is valid (caller, checked non-NULL).
        unsafe { out.write(plan.entry()) };
        IPVIRT_OK
    })
}

/// A rewriter from tables the caller holds (a C or kernel layer's own copy), checked once:
/// `IPVIRT_INVALID_ARGUMENT` when a field breaks a rule of the tables (see
/// [`Rewriter::from_tables`]).
///
/// # Safety
///
/// `policy`, `session` and `program` valid; `out` valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_rewriter_from_tables(
    policy: *const ipvirt_policy_table,
    session: *const ipvirt_session_entry,
    program: *const ipvirt_program_entry,
    out: *mut *mut ipvirt_rewriter,
) -> ipvirt_status {
    guard(|| {
        if policy.is_null() || session.is_null() || program.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(
            &[region(out)],
            &[region(policy), region(session), region(program)],
        ) {
            return st;
        }
        // SAFETY: the three inputs are valid (caller, checked non-NULL); the structs have no
        // invalid bit patterns (integers only).
        let (p, s, g) = unsafe { ((*policy).clone(), *session, *program) };
        match Rewriter::from_tables(Arc::new(p), s, g) {
            Ok(rw) => {
                // SAFETY: out is valid for a pointer (caller, checked non-NULL).
                unsafe { *out = Box::into_raw(Box::new(ipvirt_rewriter { rw })) };
                IPVIRT_OK
            }
            Err(_) => IPVIRT_INVALID_ARGUMENT,
        }
    })
}
