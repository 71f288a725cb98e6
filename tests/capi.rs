//! The C ABI: the committed header matches the exported symbols, a C program compiles against it
//! with the system C compiler (`-std=c99 -Wall -Wextra -Werror`), links the static library and
//! exercises every function (tests/capi/smoke.c); and the same functions called from Rust.
#![cfg(feature = "capi")]
// Calling the C ABI from Rust needs unsafe blocks; each passes valid pointers and lengths.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipvirt::capi::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn names_in(text: &str, pattern_start: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(pattern_start) {
        let rest = &text[i + pattern_start.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].trim_start().starts_with('(') {
            out.insert(format!("ipvirt_{name}"));
        }
    }
    out
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let raw = std::fs::read_to_string(root().join("src/ipvirt.h")).unwrap();
    // Declarations only: drop the /* ... */ comments.
    let mut header = String::new();
    let mut rest = raw.as_str();
    while let Some(start) = rest.find("/*") {
        header.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    header.push_str(rest);
    let source = std::fs::read_to_string(root().join("src/capi.rs")).unwrap();
    // Declarations in the header: `ipvirt_xxx(` after a return type.
    let declared = names_in(&header, " ipvirt_")
        .union(&names_in(&header, "*ipvirt_"))
        .cloned()
        .collect::<BTreeSet<_>>();
    let exported = names_in(&source, "extern \"C\" fn ipvirt_");
    assert!(!exported.is_empty());
    assert_eq!(declared, exported, "header and src/capi.rs disagree");
    // Every exported function is #[no_mangle].
    assert_eq!(
        source.matches("#[unsafe(no_mangle)]").count(),
        exported.len()
    );
    // The status values in the header are the frozen ones.
    for (name, value) in [
        ("IPVIRT_OK", 0),
        ("IPVIRT_NULL_ARGUMENT", 1),
        ("IPVIRT_BUFFER_TOO_SHORT", 5),
        ("IPVIRT_UNSUPPORTED_FAMILY", 7),
        ("IPVIRT_NO_CONNECTIVITY", 8),
        ("IPVIRT_ISOLATED", 9),
        ("IPVIRT_PANIC", 13),
    ] {
        assert!(raw.contains(&format!("{name} = {value}")), "{name}");
    }
    assert_eq!(ipvirt_status::IPVIRT_NO_CONNECTIVITY as u32, 8);
    assert_eq!(ipvirt_status::IPVIRT_PANIC as u32, 13);
}

/// Builds libipvirt.a with the C ABI and returns it and the system libraries it needs.
fn static_library() -> Result<(PathBuf, Vec<String>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .ok_or("no target dir")?
        .join("capi");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "rustc",
            "--lib",
            "--features",
            "capi",
            "--crate-type",
            "staticlib",
            "--quiet",
            "--",
            "--print",
            "native-static-libs",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root())
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("cargo rustc failed:\n{stderr}"));
    }
    let libs = stderr
        .lines()
        .find_map(|l| l.split("native-static-libs:").nth(1))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_else(|| {
            [
                "-lgcc_s",
                "-lutil",
                "-lrt",
                "-lpthread",
                "-lm",
                "-ldl",
                "-lc",
            ]
            .map(String::from)
            .to_vec()
        });
    let lib = target.join("debug/libipvirt.a");
    if lib.exists() {
        Ok((lib, libs))
    } else {
        Err(format!("{} was not built", lib.display()))
    }
}

#[test]
fn a_c_program_uses_every_function() {
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("skipped: no C compiler `cc` on this machine");
        return;
    }
    let (lib, libs) = static_library().unwrap();
    let dir = std::env::temp_dir().join(format!("ipvirt-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("smoke");
    let cc = Command::new("cc")
        .args([
            "-std=c99",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-o",
        ])
        .arg(&exe)
        .arg("-I")
        .arg(root().join("src"))
        .arg(root().join("tests/capi/smoke.c"))
        .arg(&lib)
        .args(&libs)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("0 failures"),
        "{stdout}"
    );
    // The header also compiles as C++ when a C++ compiler is there.
    if Command::new("c++").arg("--version").output().is_ok() {
        let cpp = dir.join("h.cpp");
        std::fs::write(
            &cpp,
            "#include \"ipvirt.h\"\nint main() { return ipvirt_version() == nullptr; }\n",
        )
        .unwrap();
        let out = Command::new("c++")
            .args(["-std=c++11", "-Wall", "-Werror", "-fsyntax-only", "-I"])
            .arg(root().join("src"))
            .arg(&cpp)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_functions_from_rust() {
    let policy = b"[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n";
    let mut engine: *mut ipvirt_engine = std::ptr::null_mut();
    let st = unsafe {
        ipvirt_engine_new(
            policy.as_ptr(),
            policy.len(),
            std::ptr::null(),
            0,
            &mut engine,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let mut plan = std::mem::MaybeUninit::<ipvirt_plan>::zeroed();
    let st = unsafe { ipvirt_engine_process(engine, b"crm.exe".as_ptr(), 7, plan.as_mut_ptr()) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    let plan = unsafe { plan.assume_init() };
    assert_eq!(
        (plan.loopback, plan.loopback_reason, plan.loopback_entry),
        (1, 3, 0)
    );
    let mut rw: *mut ipvirt_rewriter = std::ptr::null_mut();
    let st = unsafe { ipvirt_rewriter_new(engine, 7, 0, &plan, std::ptr::null(), 0, &mut rw) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    unsafe { ipvirt_engine_free(engine) };
    let mut sin = [2u8, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut changed = 0u32;
    let st = unsafe { ipvirt_rewriter_bind(rw, sin.as_mut_ptr(), sin.len(), 1, 0, &mut changed) };
    assert_eq!((st, changed, sin[7]), (ipvirt_status::IPVIRT_OK, 1, 8));
    let mut source = [0u8; 28];
    let (mut written, mut dchanged) = (0usize, 0u32);
    let mut dest = [2u8, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let st = unsafe {
        ipvirt_rewriter_connect(
            rw,
            dest.as_mut_ptr(),
            16,
            1,
            source.as_mut_ptr(),
            28,
            &mut written,
            &mut dchanged,
        )
    };
    assert_eq!(
        (st, written, dchanged, dest[7], source[7]),
        (ipvirt_status::IPVIRT_OK, 16, 1, 8, 8)
    );
    let mut buf = [0u8; 128];
    let mut needed = 0usize;
    let st = unsafe { ipvirt_status_message(9, buf.as_mut_ptr().cast(), buf.len(), &mut needed) };
    assert_eq!(st, ipvirt_status::IPVIRT_OK);
    assert!(String::from_utf8_lossy(&buf[..needed]).contains("ECONNREFUSED"));
    unsafe { ipvirt_rewriter_free(rw) };
}
