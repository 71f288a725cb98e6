//! Policy input in three formats (TOML, JSON, a `.reg` export) and its validation: the list of
//! diagnostics, read by index.

use std::ffi::{CString, c_char};
use std::net::IpAddr;

use super::panic::guard;
use super::ptr::{Region, bytes, check_disjoint, check_len, region, write_message};
use super::status::ipvirt_status::{self, *};
use crate::host::Host;
use crate::policy::{Diagnostic, DiagnosticCode, Policy, Severity};

/// The formats a policy is read from (`ipvirt_format` in the header; frozen values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `IPVIRT_FORMAT_TOML` (0): the policy file, [`Policy::from_toml`].
    Toml,
    /// `IPVIRT_FORMAT_JSON` (1): the serde form of [`Policy`], same keys as the TOML file.
    Json,
    /// `IPVIRT_FORMAT_REG` (2): a registry export, [`Policy::from_reg`].
    Reg,
}

impl Format {
    fn from_u32(n: u32) -> Option<Format> {
        match n {
            0 => Some(Format::Toml),
            1 => Some(Format::Json),
            2 => Some(Format::Reg),
            _ => None,
        }
    }
}

/// The policy bytes and the server's addresses a caller passed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Input {
    pub(super) policy: Region,
    pub(super) servers: Region,
}

/// The error-message buffer of a call, and where its full length goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Message {
    pub(super) buf: *mut c_char,
    pub(super) len: usize,
    pub(super) needed: *mut usize,
}

impl Message {
    /// Writes `msg` (when the buffer is there) and returns `status`.
    ///
    /// # Safety
    ///
    /// `buf` NULL or valid for `len` bytes; `needed` NULL or valid for a `usize`.
    pub(super) unsafe fn fail(self, status: ipvirt_status, msg: &str) -> ipvirt_status {
        // SAFETY: the caller's contract.
        unsafe { write_message(msg, self.buf, self.len, self.needed) };
        status
    }
}

/// What [`read_input`] read.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) policy: Policy,
    pub(super) host: Host,
    /// What a `.reg` import had to ignore (empty for TOML and JSON).
    pub(super) import: Vec<Diagnostic>,
}

/// Checks the outputs (`err`, `out`) and reads the policy and the servers: the part the three
/// engine constructors and [`ipvirt_policy_validate`] share. An error is reported through `err`
/// (except a bad `err` or an output inside an input, which are refused without a message).
///
/// # Safety
///
/// Every pointer of `input` and `err` NULL or valid for its length; `out` NULL or valid for its
/// length.
pub(super) unsafe fn read_input(
    format: Format,
    input: Input,
    out: Region,
    err: Message,
) -> Result<Read, ipvirt_status> {
    // The error buffer and the outputs first: a bad one is reported without writing anything.
    let outputs = [
        (err.buf.cast_const().cast(), err.len),
        region(err.needed),
        out,
    ];
    check_len(err.len).and_then(|()| check_disjoint(&outputs, &[]))?;
    let fail = |status, msg: &str| {
        // SAFETY: the caller's contract for err (its length was checked above).
        unsafe { err.fail(status, msg) }
    };
    if input.policy.0.is_null() || out.0.is_null() {
        return Err(fail(
            IPVIRT_NULL_ARGUMENT,
            "policy and out must not be NULL",
        ));
    }
    // SAFETY: policy is valid for policy_len bytes (caller).
    let text = match unsafe { bytes(input.policy.0, input.policy.1) } {
        Ok(text) => text,
        Err(st) => return Err(fail(st, "policy_len is larger than any buffer")),
    };
    // SAFETY: servers is NULL or valid for servers_len bytes (caller).
    let servers = match unsafe { bytes(input.servers.0, input.servers.1) } {
        Ok(servers) => servers,
        Err(IPVIRT_NULL_ARGUMENT) => {
            return Err(fail(
                IPVIRT_NULL_ARGUMENT,
                "servers is NULL with a non-zero length",
            ));
        }
        Err(st) => return Err(fail(st, "servers_len is larger than any buffer")),
    };
    // An output inside an input: refused, and without a message (it would overwrite the input).
    check_disjoint(&outputs, &[input.policy, (servers.as_ptr(), servers.len())])?;
    if servers.len() % 4 != 0 {
        return Err(fail(
            IPVIRT_INVALID_ARGUMENT,
            "servers_len must be a multiple of 4 (one IPv4 address each)",
        ));
    }
    let host = Host::new(
        servers
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(IpAddr::from),
    );
    let utf8 = || {
        std::str::from_utf8(text)
            .map_err(|_| fail(IPVIRT_INVALID_UTF8, "the policy text is not UTF-8"))
    };
    let (policy, import) = match format {
        Format::Toml => match Policy::from_toml(utf8()?) {
            Ok(p) => (p, Vec::new()),
            Err(e) => return Err(fail(IPVIRT_POLICY_ERROR, &e.to_string())),
        },
        Format::Json => match serde_json::from_str::<Policy>(utf8()?) {
            Ok(p) => (p, Vec::new()),
            Err(e) => {
                let msg = format!("policy JSON: {e}");
                return Err(fail(IPVIRT_POLICY_ERROR, &msg));
            }
        },
        Format::Reg => match Policy::from_reg(text) {
            Ok(import) => (import.policy, import.diagnostics),
            Err(e) => return Err(fail(IPVIRT_POLICY_ERROR, &e.to_string())),
        },
    };
    Ok(Read {
        policy,
        host,
        import,
    })
}

/// The diagnostics of one [`ipvirt_policy_validate`] call (opaque): read them with
/// [`ipvirt_diagnostics_count`] and [`ipvirt_diagnostics_get`], free them with
/// [`ipvirt_diagnostics_free`].
#[derive(Debug)]
pub struct ipvirt_diagnostics {
    items: Vec<(Severity, DiagnosticCode, CString, usize)>,
}

/// One diagnostic, as [`ipvirt_diagnostics_get`] writes it.
///
/// `severity`: 0 info, 1 warning, 2 error (`IPVIRT_SEVERITY_*`). `code`: `IPVIRT_DIAG_*` (frozen
/// numbers). `code_name`: the stable code (`"vip-no-adapter"`), a static string. `message`: the
/// sentence, NUL-terminated, `message_len` bytes without the NUL; it belongs to the list and is
/// valid until [`ipvirt_diagnostics_free`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ipvirt_diagnostic {
    /// 0 info, 1 warning, 2 error.
    pub severity: u32,
    /// The `IPVIRT_DIAG_*` number.
    pub code: u32,
    /// The stable code, static.
    pub code_name: *const c_char,
    /// The sentence, owned by the list.
    pub message: *const c_char,
    /// Its length in bytes, without the NUL.
    pub message_len: usize,
}

/// Reads a policy in `format` (0 TOML, 1 JSON, 2 a `.reg` export) and checks that its settings make
/// sense together ([`Policy::validate`]; with server addresses, [`Policy::validate_for`]). For a
/// `.reg` export the list starts with what the import had to ignore. On success writes the list
/// (possibly empty) to `*out`. A policy that cannot be read at all fails as in
/// [`ipvirt_engine_new`](super::ipvirt_engine_new) (`IPVIRT_POLICY_ERROR`, the reason in `err`);
/// an unknown format is `IPVIRT_INVALID_ARGUMENT`.
///
/// # Safety
///
/// Each pointer must be NULL or valid for its length; `out` valid for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_policy_validate(
    format: u32,
    policy: *const u8,
    policy_len: usize,
    servers: *const u8,
    servers_len: usize,
    out: *mut *mut ipvirt_diagnostics,
    err: *mut c_char,
    err_len: usize,
    err_needed: *mut usize,
) -> ipvirt_status {
    guard(|| {
        let msg = Message {
            buf: err,
            len: err_len,
            needed: err_needed,
        };
        let Some(format) = Format::from_u32(format) else {
            // The same checks of the outputs as for a known format: a bad one gets no message.
            let outputs = [
                (err.cast_const().cast(), err_len),
                region(err_needed),
                region(out),
            ];
            if check_len(err_len)
                .and_then(|()| check_disjoint(&outputs, &[]))
                .is_err()
            {
                return IPVIRT_INVALID_ARGUMENT;
            }
            let text = format!(
                "format {format} is not IPVIRT_FORMAT_TOML (0), IPVIRT_FORMAT_JSON (1) or IPVIRT_FORMAT_REG (2)"
            );
            // SAFETY: the caller's contract for err; its length and place were checked.
            return unsafe { msg.fail(IPVIRT_INVALID_ARGUMENT, &text) };
        };
        let input = Input {
            policy: (policy, policy_len),
            servers: (servers, servers_len),
        };
        // SAFETY: the caller's contract for the input, err and out.
        let read = match unsafe { read_input(format, input, region(out), msg) } {
            Ok(read) => read,
            Err(st) => return st,
        };
        let mut all = read.import;
        all.extend(read.policy.validate_for(&read.host));
        let items = all
            .into_iter()
            .map(|d| {
                // A NUL inside the sentence (from a program name) is written as `\0`.
                let text = d.message.replace('\0', "\\0");
                let len = text.len();
                let c = CString::new(text).unwrap_or_default();
                (d.severity, d.code, c, len)
            })
            .collect();
        // SAFETY: out is valid for a pointer (checked non-NULL by read_input).
        unsafe { *out = Box::into_raw(Box::new(ipvirt_diagnostics { items })) };
        IPVIRT_OK
    })
}

/// The number of diagnostics in `list`, into `*count`.
///
/// # Safety
///
/// `list` a live list; `count` valid for a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_diagnostics_count(
    list: *const ipvirt_diagnostics,
    count: *mut usize,
) -> ipvirt_status {
    guard(|| {
        if list.is_null() || count.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        // SAFETY: list is live and count valid (caller, checked non-NULL).
        unsafe { *count = (*list).items.len() };
        IPVIRT_OK
    })
}

/// Diagnostic number `index` (0-based) of `list`, into `*out`; `IPVIRT_INVALID_ARGUMENT` when
/// `index` is not below the count.
///
/// # Safety
///
/// `list` a live list; `out` valid for an `ipvirt_diagnostic`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_diagnostics_get(
    list: *const ipvirt_diagnostics,
    index: usize,
    out: *mut ipvirt_diagnostic,
) -> ipvirt_status {
    guard(|| {
        if list.is_null() || out.is_null() {
            return IPVIRT_NULL_ARGUMENT;
        }
        // SAFETY: list is a live list (caller, checked non-NULL).
        let Some((severity, code, message, len)) = unsafe { &*list }.items.get(index) else {
            return IPVIRT_INVALID_ARGUMENT;
        };
        let (number, name) = (code.number(), code.as_c_str());
        let d = ipvirt_diagnostic {
            severity: match severity {
                Severity::Info => 0,
                Severity::Warning => 1,
                Severity::Error => 2,
            },
            code: number,
            code_name: name.as_ptr(),
            message: message.as_ptr(),
            message_len: *len,
        };
        // SAFETY: out is valid (caller, checked non-NULL).
        unsafe { out.write(d) };
        IPVIRT_OK
    })
}

/// Frees a list of diagnostics (NULL is a no-op); the message pointers read from it die with it.
///
/// # Safety
///
/// `list` NULL or a list from [`ipvirt_policy_validate`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipvirt_diagnostics_free(list: *mut ipvirt_diagnostics) {
    if !list.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the list came from Box::into_raw and is freed once (caller).
            drop(unsafe { Box::from_raw(list) })
        }));
    }
}
