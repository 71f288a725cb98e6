//! The C library as a C user gets it: `cargo cinstall` (cargo-c) into a temporary prefix installs
//! the shared and static libraries, `ipvirt.pc` and the committed header; then the C smoke test
//! (tests/capi/smoke.c, every function) is compiled with nothing but
//! `pkg-config --cflags --libs ipvirt` and run against the installed shared library, and once more
//! linked statically with `pkg-config --static --libs ipvirt`.
//!
//! Runs when `cargo-cinstall` (cargo install cargo-c), `pkg-config` and `cc` are installed, as in
//! `.ci/run`; skipped with the reason otherwise.
#![cfg(feature = "capi")]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("ipvirt")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "pkg-config {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn compile(prefix: &Path, exe: &Path, flags: &[String]) {
    let out = Command::new("cc")
        .args([
            "-std=c99",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-o")
        .arg(exe)
        .arg(root().join("tests/capi/smoke.c"))
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc with {flags:?} (prefix {}) failed:\n{}",
        prefix.display(),
        text(&out)
    );
}

fn run_smoke(exe: &Path, libdir: Option<&Path>) -> String {
    let mut c = Command::new(exe);
    match libdir {
        Some(d) => c.env("LD_LIBRARY_PATH", d),
        None => c.env_remove("LD_LIBRARY_PATH"),
    };
    let out = c.output().unwrap();
    let t = text(&out);
    assert!(out.status.success() && t.contains("0 failures"), "{t}");
    t
}

#[test]
fn cargo_cinstall_then_pkg_config_builds_and_runs_the_c_smoke_test() {
    require!("cargo-cinstall", "pkg-config", "cc");
    let base = std::env::temp_dir().join(format!("ipvirt-cinstall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let prefix = base.join("prefix");
    // The target directory tests/capi.rs builds its static library in (same features, same
    // profile): the dependencies are built once for both, and the test's own build is left alone.
    let exe_dir = std::env::current_exe().unwrap();
    let target = exe_dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap()
        .join("capi");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["cinstall", "--debug", "--prefix"])
        .arg(&prefix)
        .args(["--libdir", "lib"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo cinstall failed:\n{}",
        text(&out)
    );

    // What is installed: the committed header as written, both libraries, the .pc file.
    let header = std::fs::read(prefix.join("include/ipvirt.h")).unwrap();
    assert_eq!(header, std::fs::read(root().join("src/ipvirt.h")).unwrap());
    let lib = prefix.join("lib");
    for f in ["libipvirt.a", "libipvirt.so", "pkgconfig/ipvirt.pc"] {
        assert!(
            lib.join(f).exists(),
            "{f} not installed in {}",
            lib.display()
        );
    }
    let pc = std::fs::read_to_string(lib.join("pkgconfig/ipvirt.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    // The shared library, found through pkg-config only.
    let mut flags = pkg_config(&prefix, &["--cflags"]);
    flags.extend(pkg_config(&prefix, &["--libs"]));
    assert!(flags.iter().any(|f| f == "-lipvirt"), "{flags:?}");
    let dynamic = base.join("smoke-shared");
    compile(&prefix, &dynamic, &flags);
    run_smoke(&dynamic, Some(&lib));
    let ldd = Command::new("ldd")
        .arg(&dynamic)
        .env("LD_LIBRARY_PATH", &lib)
        .output();
    if let Ok(ldd) = ldd {
        let t = text(&ldd);
        assert!(
            t.contains(&lib.join("libipvirt.so").display().to_string())
                || t.contains(&lib.display().to_string()),
            "{t}"
        );
    }

    // The static library: pkg-config --static adds the system libraries it needs; the shared one
    // is kept out of the way so that the linker must take the archive.
    let mut flags = pkg_config(&prefix, &["--cflags"]);
    flags.extend(
        pkg_config(&prefix, &["--static", "--libs"])
            .into_iter()
            .map(|f| {
                if f == "-lipvirt" {
                    lib.join("libipvirt.a").display().to_string()
                } else {
                    f
                }
            }),
    );
    let fixed = base.join("smoke-static");
    compile(&prefix, &fixed, &flags);
    run_smoke(&fixed, None);
    let _ = std::fs::remove_dir_all(&base);
}
