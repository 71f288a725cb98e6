//! The committed header `src/ipvirt.h` against the Rust side, beyond names (tests/capi.rs checks
//! those): every exported function's C signature, every `#[repr(C)]` struct's size and field
//! offsets, the rule tables' constants, the version macros, and the format and severity numbers.
//!
//! The signatures are read from the Rust source of `src/capi/` (each `extern "C" fn`, its
//! parameters and return type), turned into C types, and written as a C file that assigns each
//! function to a pointer of exactly that type; the layouts become `_Static_assert`s with the numbers
//! `size_of`/`offset_of!` give here. The C compiler (`-Werror`, so an incompatible pointer
//! assignment fails) then checks the header against both.
#![cfg(feature = "capi")]
// Reading the string ipvirt_version returns needs one unsafe block.
#![allow(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use ipvirt::capi::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Rust FFI type as C (east const: `*const u8` is `uint8_t const *`).
fn c_type(rust: &str) -> String {
    let t = rust.trim();
    if let Some(rest) = t.strip_prefix("*const ") {
        return format!("{} const *", c_type(rest));
    }
    if let Some(rest) = t.strip_prefix("*mut ") {
        return format!("{} *", c_type(rest));
    }
    match t {
        "u8" => "uint8_t".into(),
        "u16" => "uint16_t".into(),
        "u32" => "uint32_t".into(),
        "u64" => "uint64_t".into(),
        "i32" => "int32_t".into(),
        "usize" => "size_t".into(),
        "c_char" => "char".into(),
        t if t.starts_with("ipvirt_") => t.into(),
        other => panic!("no C type for the Rust type `{other}`"),
    }
}

/// (name, C return type, C parameter types) of every `extern "C" fn` in src/capi/.
fn rust_signatures() -> Vec<(String, String, Vec<String>)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("src/capi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("extern \"C\" fn ") {
            let rest = &text[i + "extern \"C\" fn ".len()..];
            let open = rest.find('(').unwrap();
            let name = rest[..open].trim().to_string();
            let close = rest.find(')').unwrap();
            let params: Vec<String> = rest[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| c_type(p.split_once(':').unwrap().1))
                .collect();
            let after = rest[close + 1..].trim_start();
            let ret = match after.strip_prefix("->") {
                Some(r) => c_type(r[..r.find('{').unwrap()].trim()),
                None => "void".into(),
            };
            out.push((name, ret, params));
        }
    }
    out
}

/// `_Static_assert`s for a struct's size and each field's offset.
macro_rules! layout {
    ($out:expr, $ty:ident { $($field:ident),* }) => {{
        $out.push_str(&format!(
            "_Static_assert(sizeof({ty}) == {size}, \"sizeof {ty}\");\n",
            ty = stringify!($ty),
            size = size_of::<$ty>()
        ));
        $(
            $out.push_str(&format!(
                "_Static_assert(offsetof({ty}, {f}) == {off}, \"{ty}.{f}\");\n",
                ty = stringify!($ty),
                f = stringify!($field),
                off = offset_of!($ty, $field)
            ));
        )*
    }};
}

/// The C file: the header, every function assigned to a pointer of its Rust type, the layouts, the
/// version and the enum values.
fn checks() -> String {
    let mut c = String::from(
        "#define IPVIRT_TEST_PANIC 1\n#include \"ipvirt.h\"\n#include <stddef.h>\n#include <string.h>\n\n",
    );
    let sigs = rust_signatures();
    assert!(sigs.len() >= 25, "only {} functions found", sigs.len());
    for (name, ret, params) in &sigs {
        let params = if params.is_empty() {
            "void".to_string()
        } else {
            params.join(", ")
        };
        c.push_str(&format!("{ret} (*check_{name})({params}) = {name};\n"));
    }
    layout!(
        c,
        ipvirt_plan {
            loopback,
            virtual_ip,
            prefer_loopback,
            loopback_reason,
            virtual_ip_reason,
            prefer_loopback_reason,
            loopback_entry,
            virtual_ip_entry,
            prefer_loopback_entry
        }
    );
    layout!(
        c,
        ipvirt_diagnostic {
            severity,
            code,
            code_name,
            message,
            message_len
        }
    );
    layout!(
        c,
        ipvirt_policy_table {
            version,
            flags,
            localhost,
            primary_server,
            server_count,
            reserved,
            servers,
            excluded_ports
        }
    );
    layout!(
        c,
        ipvirt_session_entry {
            session,
            loopback,
            vip,
            flags
        }
    );
    layout!(c, ipvirt_program_entry { flags });
    // The rule tables' constants (SPEC §7).
    {
        use ipvirt::table::*;
        for (name, value) in [
            ("IPVIRT_TABLE_VERSION", u64::from(TABLE_VERSION)),
            ("IPVIRT_MAX_SERVERS", MAX_SERVERS as u64),
            ("IPVIRT_POLICY_ISOLATE", u64::from(POLICY_ISOLATE)),
            ("IPVIRT_POLICY_IPV6_MAP", u64::from(POLICY_IPV6_MAP)),
            ("IPVIRT_SESSION_VIRTUALIZED", u64::from(SESSION_VIRTUALIZED)),
            (
                "IPVIRT_SESSION_NO_CONNECTIVITY",
                u64::from(SESSION_NO_CONNECTIVITY),
            ),
            ("IPVIRT_SESSION_NO_LOOPBACK", u64::from(SESSION_NO_LOOPBACK)),
            ("IPVIRT_PROGRAM_LOOPBACK", u64::from(PROGRAM_LOOPBACK)),
            ("IPVIRT_PROGRAM_VIRTUAL_IP", u64::from(PROGRAM_VIRTUAL_IP)),
            (
                "IPVIRT_PROGRAM_PREFER_LOOPBACK",
                u64::from(PROGRAM_PREFER_LOOPBACK),
            ),
        ] {
            c.push_str(&format!("_Static_assert({name} == {value}, \"{name}\");\n"));
        }
    }
    // The tables written once on the Rust side: every status, diagnostic code and plan reason,
    // by its header name and frozen number.
    let named: Vec<(String, u64)> = ipvirt_status::ALL
        .iter()
        .map(|s| (s.name().to_string(), *s as u64))
        .chain(
            ipvirt::DiagnosticCode::ALL
                .iter()
                .map(|d| (d.c_name().to_string(), u64::from(d.number()))),
        )
        .chain(
            IPVIRT_REASONS
                .iter()
                .map(|(name, n)| (name.to_string(), u64::from(*n))),
        )
        .collect();
    for (name, value) in &named {
        c.push_str(&format!("_Static_assert({name} == {value}, \"{name}\");\n"));
    }
    c.push_str(&format!(
        "_Static_assert(IPVIRT_VERSION_MAJOR == {}, \"major\");\n\
         _Static_assert(IPVIRT_VERSION_MINOR == {}, \"minor\");\n\
         _Static_assert(IPVIRT_VERSION_PATCH == {}, \"patch\");\n\
         _Static_assert(sizeof(IPVIRT_VERSION_STRING) == sizeof(\"{v}\"), \"version string\");\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        v = env!("CARGO_PKG_VERSION"),
    ));
    c.push_str(&format!(
        "int main(void) {{ return strcmp(IPVIRT_VERSION_STRING, \"{}\") != 0 \
         || IPVIRT_FORMAT_TOML != 0 || IPVIRT_FORMAT_JSON != 1 || IPVIRT_FORMAT_REG != 2 \
         || IPVIRT_SEVERITY_INFO != 0 || IPVIRT_SEVERITY_WARNING != 1 \
         || IPVIRT_SEVERITY_ERROR != 2; }}\n",
        env!("CARGO_PKG_VERSION")
    ));
    c
}

fn compile(source: &str, tag: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("ipvirt-capi-header-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("checks.c");
    std::fs::write(&file, source).unwrap();
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic-errors",
        ])
        .args(["-fsyntax-only", "-I"])
        .arg(root().join("src"))
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn have_cc() -> bool {
    let ok = Command::new("cc").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipped: no C compiler `cc` on this machine");
    }
    ok
}

#[test]
fn header_signatures_layouts_and_version_match_rust() {
    if !have_cc() {
        return;
    }
    let source = checks();
    if let Err(e) = compile(&source, "ok") {
        panic!("the header disagrees with src/capi/:\n{e}\n--- checks.c ---\n{source}");
    }
}

/// The check can fail: one parameter type changed, one field offset off by one, or a version off,
/// and the compiler refuses.
#[test]
fn a_wrong_signature_or_layout_is_caught() {
    if !have_cc() {
        return;
    }
    let source = checks();
    let wrong_param = source.replacen(
        "(*check_ipvirt_engine_process)(ipvirt_engine const *, uint8_t const *, size_t,",
        "(*check_ipvirt_engine_process)(ipvirt_engine const *, uint8_t const *, uint32_t,",
        1,
    );
    assert_ne!(wrong_param, source, "the engine_process line was not found");
    assert!(compile(&wrong_param, "param").is_err());
    let off = format!(
        "offsetof(ipvirt_diagnostic, message) == {}",
        offset_of!(ipvirt_diagnostic, message)
    );
    let wrong_offset = source.replacen(
        &off,
        &format!(
            "offsetof(ipvirt_diagnostic, message) == {}",
            offset_of!(ipvirt_diagnostic, message) + 1
        ),
        1,
    );
    assert_ne!(wrong_offset, source);
    assert!(compile(&wrong_offset, "offset").is_err());
    let wrong_version = source.replacen(
        &format!(
            "IPVIRT_VERSION_MINOR == {}",
            env!("CARGO_PKG_VERSION_MINOR")
        ),
        "IPVIRT_VERSION_MINOR == 99",
        1,
    );
    assert_ne!(wrong_version, source);
    assert!(compile(&wrong_version, "version").is_err());
}

/// The library's run-time version is the crate's, and the header's string.
#[test]
fn ipvirt_version_is_the_crate_version() {
    // SAFETY: ipvirt_version returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(ipvirt_version()) };
    assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    let header = std::fs::read_to_string(root().join("src/ipvirt.h")).unwrap();
    assert!(header.contains(&format!(
        "#define IPVIRT_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
}

/// The header declares the statuses, diagnostic codes and plan reasons of the Rust tables and no
/// others (the `_Static_assert`s above check each value); each diagnostic code's C name is its
/// stable code in upper case, and the numbers run 1, 2, … in the order of `DiagnosticCode::ALL`.
#[test]
fn the_header_enums_are_the_rust_tables() {
    let header = std::fs::read_to_string(root().join("src/ipvirt.h")).unwrap();
    let entries = |prefix: &str| {
        header
            .lines()
            .filter(|l| l.trim_start().starts_with(prefix) && l.contains(" = "))
            .count()
    };
    assert_eq!(entries("IPVIRT_DIAG_"), ipvirt::DiagnosticCode::ALL.len());
    assert_eq!(entries("IPVIRT_REASON_"), IPVIRT_REASONS.len());
    for (i, code) in ipvirt::DiagnosticCode::ALL.iter().enumerate() {
        assert_eq!(code.number() as usize, i + 1, "{code:?}");
        assert_eq!(
            code.c_name(),
            format!(
                "IPVIRT_DIAG_{}",
                code.as_str().replace('-', "_").to_uppercase()
            )
        );
        assert_eq!(
            ipvirt::DiagnosticCode::from_number(code.number()),
            Some(*code)
        );
    }
    for s in ipvirt_status::ALL {
        assert!(
            header.contains(&format!("    {} = {}", s.name(), s as u32)),
            "{}",
            s.name()
        );
    }
    for (i, (name, n)) in IPVIRT_REASONS.iter().enumerate() {
        assert_eq!(usize::from(*n), i, "{name}");
    }
}

/// A header that disagrees with a table does not compile: one diagnostic number, one reason.
#[test]
fn a_wrong_enum_value_is_caught() {
    if !have_cc() {
        return;
    }
    let source = checks();
    for (from, to) in [
        (
            "IPVIRT_DIAG_VIP_NO_ADAPTER == 8,",
            "IPVIRT_DIAG_VIP_NO_ADAPTER == 9,",
        ),
        ("IPVIRT_REASON_LISTED == 3,", "IPVIRT_REASON_LISTED == 4,"),
    ] {
        let wrong = source.replacen(from, to, 1);
        assert_ne!(wrong, source, "{from} not found");
        assert!(compile(&wrong, "enum").is_err(), "{to} compiled");
    }
}
