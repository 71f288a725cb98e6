//! C programs against the committed header and the static library: `c/smoke.c` compiles with the
//! system C compiler (`-std=c99 -Wall -Wextra -Werror -pedantic`), links the library and exercises
//! every function; `c/panic.c` shows that a panic inside ipvirt reaches C as `IPVIRT_PANIC` and
//! the process survives (`ipvirt_test_arm_panic`, feature `capi-test-panic`); and the header also
//! compiles as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The core's directory (the header is `src/ipvirt.h` there).
fn core() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The static library cargo built for this test run (`libipvirt_capi_check.a`), and the system
/// libraries a Rust static library needs on Linux (`cargo rustc -- --print native-static-libs`).
fn static_library() -> (PathBuf, Vec<&'static str>) {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    // Cargo names a static library in deps/ with its build's hash: the newest is this build's.
    let lib = std::fs::read_dir(deps)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libipvirt_capi_check") && n.ends_with(".a")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("libipvirt_capi_check*.a is not in {}", deps.display()));
    let libs = vec![
        "-lgcc_s",
        "-lutil",
        "-lrt",
        "-lpthread",
        "-lm",
        "-ldl",
        "-lc",
    ];
    (lib, libs)
}

/// Compiles `tests/c/<name>.c` (with `defines`) against the header and the library, runs it, and
/// checks that it passed. Returns the directory it used.
fn compile_and_run(name: &str, defines: &[&str]) -> PathBuf {
    let (lib, libs) = static_library();
    let dir = std::env::temp_dir().join(format!("ipvirt-capi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let cc = Command::new("cc")
        .args([
            "-std=c99",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .args(defines)
        .arg("-o")
        .arg(&exe)
        .arg("-I")
        .arg(core().join("src"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c")))
        .arg(lib)
        .args(libs)
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
        "{name}: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    dir
}

fn have_cc() -> bool {
    let ok = Command::new("cc").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipped: no C compiler `cc` on this machine");
    }
    ok
}

#[test]
fn a_panic_reaches_c_as_ipvirt_panic_and_the_process_survives() {
    if !have_cc() {
        return;
    }
    let dir = compile_and_run("panic", &["-DIPVIRT_TEST_PANIC"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_c_program_uses_every_function() {
    if !have_cc() {
        return;
    }
    let dir = compile_and_run("smoke", &[]);
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
            .arg(core().join("src"))
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
