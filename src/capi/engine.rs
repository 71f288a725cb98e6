//! The engine handle and the process plan.

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::panic::guard;
use super::policy::{Format, Input, Message, read_input};
use super::ptr::{bytes, check_disjoint, region};
use super::status::ipvirt_status::{self, *};
use crate::engine::{Decision, Engine, ProcessPlan, Reason};
#[cfg(doc)]
use crate::policy::Policy;

/// A compiled policy (opaque).
#[derive(Debug)]
pub struct ipvirt_engine {
    pub(super) engine: Arc<Engine>,
}

/// Writes the plan's reason codes from one list: a constant each, and [`IPVIRT_REASONS`].
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $n:literal => $reason:pat,)*) => {
        $($(#[doc = $doc])* pub const $name: u8 = $n;)*

        /// Every reason code of an [`ipvirt_plan`] with its name in the header, in the order of
        /// their numbers (the header test checks `ipvirt_reason` against it).
        ///
        /// ```
        /// use ipvirt::capi::{IPVIRT_REASON_LISTED, IPVIRT_REASONS};
        ///
        /// assert_eq!(IPVIRT_REASONS[3], ("IPVIRT_REASON_LISTED", IPVIRT_REASON_LISTED));
        /// ```
        pub const IPVIRT_REASONS: [(&str, u8); [$($n),*].len()] = [$((stringify!($name), $n)),*];

        /// The code of a reason (its list entry travels in the plan's `*_entry` field).
        fn reason_code(r: Reason) -> u8 {
            match r {
                $($reason => $name,)*
            }
        }
    };
}

reasons! {
    /// The feature's `enabled` setting is off ([`Reason::FeatureOff`]).
    IPVIRT_REASON_FEATURE_OFF = 0 => Reason::FeatureOff,
    /// Virtual IP is enabled but `virtual_ip.adapter` is not set: it is off
    /// ([`Reason::NoAdapter`]).
    IPVIRT_REASON_NO_ADAPTER = 1 => Reason::NoAdapter,
    /// Virtual IP in per-session mode: every process of the session ([`Reason::PerSession`]).
    IPVIRT_REASON_PER_SESSION = 2 => Reason::PerSession,
    /// The process matched a list entry; the plan's `*_entry` field is its 0-based index
    /// ([`Reason::Listed`]).
    IPVIRT_REASON_LISTED = 3 => Reason::Listed { .. },
    /// The feature is on but the process is not in its list ([`Reason::NotListed`]).
    IPVIRT_REASON_NOT_LISTED = 4 => Reason::NotListed,
}

/// Which features apply to a process, and why (see [`ProcessPlan`]).
///
/// `*_reason` values are the `IPVIRT_REASON_*` codes ([`IPVIRT_REASONS`]): feature off, no adapter
/// (virtual IP), per-session mode, listed (`*_entry` is the 0-based index of the matching list
/// entry), not listed. Pass the struct back unchanged to
/// [`ipvirt_rewriter_new`](super::ipvirt_rewriter_new).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ipvirt_plan {
    /// 1 when virtual loopback applies.
    pub loopback: u8,
    /// 1 when virtual IP applies.
    pub virtual_ip: u8,
    /// 1 when preferred loopback lists the process.
    pub prefer_loopback: u8,
    /// The reasons, in the same order.
    pub loopback_reason: u8,
    /// The reason for `virtual_ip`.
    pub virtual_ip_reason: u8,
    /// The reason for `prefer_loopback`.
    pub prefer_loopback_reason: u8,
    /// Entries that matched (valid when the reason is 3).
    pub loopback_entry: u32,
    /// The `virtual_ip` entry.
    pub virtual_ip_entry: u32,
    /// The `prefer_loopback` entry.
    pub prefer_loopback_entry: u32,
}

fn encode(d: Decision) -> (u8, u8, u32) {
    let entry = match d.reason() {
        Reason::Listed { entry } => entry,
        _ => 0,
    };
    (u8::from(d.applies()), reason_code(d.reason()), entry)
}

fn decode(applies: u8, reason: u8, entry: u32) -> Option<Decision> {
    let reason = match reason {
        IPVIRT_REASON_FEATURE_OFF => Reason::FeatureOff,
        IPVIRT_REASON_NO_ADAPTER => Reason::NoAdapter,
        IPVIRT_REASON_PER_SESSION => Reason::PerSession,
        IPVIRT_REASON_LISTED => Reason::Listed { entry },
        IPVIRT_REASON_NOT_LISTED => Reason::NotListed,
        _ => return None,
    };
    match applies {
        0 => Some(Decision::no(reason)),
        1 => Some(Decision::yes(reason)),
        _ => None,
    }
}

impl From<ProcessPlan> for ipvirt_plan {
    fn from(p: ProcessPlan) -> ipvirt_plan {
        let (l, lr, le) = encode(p.loopback());
        let (v, vr, ve) = encode(p.virtual_ip());
        let (pl, pr, pe) = encode(p.prefer_loopback());
        ipvirt_plan {
            loopback: l,
            virtual_ip: v,
            prefer_loopback: pl,
            loopback_reason: lr,
            virtual_ip_reason: vr,
            prefer_loopback_reason: pr,
            loopback_entry: le,
            virtual_ip_entry: ve,
            prefer_loopback_entry: pe,
        }
    }
}

impl ipvirt_plan {
    pub(super) fn to_plan(self) -> Option<ProcessPlan> {
        Some(ProcessPlan::from_decisions(
            decode(self.loopback, self.loopback_reason, self.loopback_entry)?,
            decode(
                self.virtual_ip,
                self.virtual_ip_reason,
                self.virtual_ip_entry,
            )?,
            decode(
                self.prefer_loopback,
                self.prefer_loopback_reason,
                self.prefer_loopback_entry,
            )?,
        ))
    }
}

/// Builds an engine from a TOML policy (`policy`, `policy_len` bytes of UTF-8) and the server's own
/// IPv4 addresses (`servers`: `servers_len` bytes, 4 per address, network byte order; NULL with 0
/// for none). On success writes the new handle to `*out`.
///
/// On failure, when `err` is not NULL, writes the reason (naming the line and key of a policy
/// error) into `err` (NUL-terminated, truncated to `err_len`), and its full length to `*err_needed`
/// when that is not NULL.
///
/// # Safety
///
/// Each pointer must be NULL or valid for its length; `out` valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_new(
    policy: *const u8,
    policy_len: usize,
    servers: *const u8,
    servers_len: usize,
    out: *mut *mut ipvirt_engine,
    err: *mut c_char,
    err_len: usize,
    err_needed: *mut usize,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        new_engine(
            Format::Toml,
            Input {
                policy: (policy, policy_len),
                servers: (servers, servers_len),
            },
            out,
            Message {
                buf: err,
                len: err_len,
                needed: err_needed,
            },
        )
    }
}

/// As [`ipvirt_engine_new`], from a policy in JSON (`policy_len` bytes of UTF-8: the serde form of
/// [`Policy`], the same keys as the TOML file).
///
/// # Safety
///
/// As [`ipvirt_engine_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_new_json(
    policy: *const u8,
    policy_len: usize,
    servers: *const u8,
    servers_len: usize,
    out: *mut *mut ipvirt_engine,
    err: *mut c_char,
    err_len: usize,
    err_needed: *mut usize,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        new_engine(
            Format::Json,
            Input {
                policy: (policy, policy_len),
                servers: (servers, servers_len),
            },
            out,
            Message {
                buf: err,
                len: err_len,
                needed: err_needed,
            },
        )
    }
}

/// As [`ipvirt_engine_new`], from a registry export (`policy_len` bytes of a `.reg` file, UTF-16 or
/// UTF-8, read by [`Policy::from_reg`]). Values the import had to ignore do not fail the call:
/// [`ipvirt_policy_validate`](super::ipvirt_policy_validate) with `IPVIRT_FORMAT_REG` lists them.
///
/// # Safety
///
/// As [`ipvirt_engine_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_new_reg(
    policy: *const u8,
    policy_len: usize,
    servers: *const u8,
    servers_len: usize,
    out: *mut *mut ipvirt_engine,
    err: *mut c_char,
    err_len: usize,
    err_needed: *mut usize,
) -> ipvirt_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        new_engine(
            Format::Reg,
            Input {
                policy: (policy, policy_len),
                servers: (servers, servers_len),
            },
            out,
            Message {
                buf: err,
                len: err_len,
                needed: err_needed,
            },
        )
    }
}

/// The three constructors: read the policy in `format`, compile it for the servers, write the
/// handle.
///
/// # Safety
///
/// As [`ipvirt_engine_new`].
unsafe fn new_engine(
    format: Format,
    input: Input,
    out: *mut *mut ipvirt_engine,
    err: Message,
) -> ipvirt_status {
    guard(|| {
        // SAFETY: the caller's contract for the input, the message and out.
        let read = match unsafe { read_input(format, input, region(out), err) } {
            Ok(read) => read,
            Err(st) => return st,
        };
        if out.is_null() {
            // SAFETY: the caller's contract for the message.
            return unsafe { err.fail(IPVIRT_NULL_ARGUMENT, "out must not be NULL") };
        }
        let engine = match read.policy.compile(read.host) {
            Ok(e) => e,
            // SAFETY: the caller's contract for the message.
            Err(e) => return unsafe { err.fail(IPVIRT_COMPILE_ERROR, &e.to_string()) },
        };
        let handle = Box::new(ipvirt_engine {
            engine: Arc::new(engine),
        });
        // SAFETY: out is valid for a pointer (checked non-NULL).
        unsafe { *out = Box::into_raw(handle) };
        IPVIRT_OK
    })
}

/// Frees an engine (NULL is a no-op). Rewriters made from it stay valid.
///
/// # Safety
///
/// `engine` must be NULL or a handle from [`ipvirt_engine_new`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_free(engine: *mut ipvirt_engine) {
    if !engine.is_null() {
        // SAFETY: the handle came from Box::into_raw and is freed once (caller).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(engine) })));
    }
}

/// The plan for a process, from its executable image (`image`, `image_len` bytes of UTF-8: a full
/// path or a name). Call once per process.
///
/// # Safety
///
/// `engine` must be a live handle; `image` valid for `image_len` bytes; `out` valid for a plan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_engine_process(
    engine: *const ipvirt_engine,
    image: *const u8,
    image_len: usize,
    out: *mut ipvirt_plan,
) -> ipvirt_status {
    guard(|| {
        if engine.is_null() || image.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        if let Err(st) = check_disjoint(&[region(out)], &[(image, image_len)]) {
            return st;
        }
        // SAFETY: image is valid for image_len bytes (caller).
        let name = match unsafe { bytes(image, image_len) } {
            Ok(name) => name,
            Err(st) => return st,
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return IPVIRT_INVALID_UTF8;
        };
        // SAFETY: engine is a live handle (caller).
        let plan = unsafe { &*engine }.engine.process(name);
        // SAFETY: out is valid for a plan (caller, checked non-NULL).
        unsafe { *out = plan.into() };
        IPVIRT_OK
    })
}
