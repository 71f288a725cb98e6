//! C programs against the committed header and the static library: `c/smoke.c` compiles with the
//! system C compiler (`-std=c99 -Wall -Wextra -Werror -pedantic`), links the library and exercises
//! every function; `c/panic.c` shows that a panic inside ipvirt reaches C as `IPVIRT_PANIC` and
//! the process survives (`ipvirt_test_arm_panic`, feature `capi-test-panic`); and the header also
//! compiles as C++; and both C programs end with nothing allocated, under valgrind and under
//! LeakSanitizer.

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
    let dir = scratch(name, "");
    let exe = compile(&dir, name, defines).unwrap_or_else(|e| panic!("{e}"));
    passes(name, Command::new(&exe));
    dir
}

/// A directory of its own for one program and tool.
fn scratch(name: &str, tool: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-capi-{name}{tool}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd` (a C program, perhaps under a tool) and checks that it passed; returns its stderr.
fn passes(name: &str, mut cmd: Command) -> String {
    // Without RUST_BACKTRACE a deliberate panic prints one line and caches nothing.
    let run = cmd.env("RUST_BACKTRACE", "0").output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        run.status.success() && stdout.contains("0 failures"),
        "{name}: {}\n{stdout}\n{stderr}",
        run.status
    );
    stderr
}

/// Compiles `tests/c/<name>.c` into `dir` with `flags` (defines, sanitizers).
fn compile(dir: &Path, name: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let (lib, libs) = static_library();
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
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg("-I")
        .arg(core().join("src"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c")))
        .arg(lib)
        .args(libs)
        .output()
        .unwrap();
    if cc.status.success() {
        Ok(exe)
    } else {
        Err(format!(
            "cc {flags:?} failed:\n{}",
            String::from_utf8_lossy(&cc.stderr)
        ))
    }
}

/// The two C programs and the flags each is built with.
const PROGRAMS: [(&str, &[&str]); 2] = [("smoke", &[]), ("panic", &["-DIPVIRT_TEST_PANIC"])];

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

/// Issue 23, item 15: the C programs (every function, and a panic inside each kind of call) end
/// with every block the library allocated freed: valgrind finds no leak of any kind, and nothing
/// in use at exit. Skips with the reason when valgrind is not installed (`.ci/run` installs it).
#[test]
fn the_c_programs_leave_nothing_allocated_under_valgrind() {
    if !have_cc() {
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("skipped: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    for (name, flags) in PROGRAMS {
        let dir = scratch(name, "-valgrind");
        let exe = compile(&dir, name, flags).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--leak-check=full",
            "--show-leak-kinds=all",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--error-exitcode=99",
        ])
        .arg(&exe);
        let report = passes(name, cmd);
        assert!(
            report.contains("in use at exit: 0 bytes in 0 blocks"),
            "{name}: blocks left at exit:\n{report}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The same under AddressSanitizer's LeakSanitizer (the tool the report came from). Skips with
/// the reason when the C compiler cannot build with `-fsanitize=address`.
#[test]
fn the_c_programs_leak_nothing_under_leak_sanitizer() {
    if !have_cc() {
        return;
    }
    for (name, flags) in PROGRAMS {
        let dir = scratch(name, "-asan");
        let mut all = flags.to_vec();
        all.extend(["-fsanitize=address", "-fno-omit-frame-pointer"]);
        let exe = match compile(&dir, name, &all) {
            Ok(exe) => exe,
            Err(e) => {
                eprintln!("skipped: the C compiler cannot build with AddressSanitizer: {e}");
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        };
        let mut cmd = Command::new(&exe);
        cmd.env("ASAN_OPTIONS", "detect_leaks=1:exitcode=99");
        let report = passes(name, cmd);
        assert!(!report.contains("LeakSanitizer"), "{name}:\n{report}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
