//! SPEC §9: on Linux, session 16 777 214's loopback address `127.255.255.255` is the broadcast
//! address of `lo`'s `127.0.0.0/8`, where TCP cannot use it. The launcher refuses to start such a
//! session with either layer, and the `LD_PRELOAD` layer, configured for it directly, refuses the
//! calls that would use it (EADDRNOTAVAIL) and says why once.

use std::process::Command;

use ipvirt_testkit::require;
use ipvirt_testkit::{free_port, in_session, preload_lib};

const POLICY: &str = "[virtual_loopback]\nenabled = true\n";

fn policy_file(name: &str, body: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ipvirt-lobcast-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn the_launcher_refuses_session_16777214_with_both_layers() {
    let launcher = env!("CARGO_BIN_EXE_ipvirt");
    let policy = policy_file("launcher", POLICY);
    for layer in ["preload", "kernel"] {
        let o = Command::new(launcher)
            .args(["run", "--layer", layer, "--id", "16777214", "--policy"])
            .arg(&policy)
            .args(["--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{layer}: {err}");
        assert!(
            err.contains("127.255.255.255") && err.contains("broadcast"),
            "{layer}: {err}"
        );
    }
    // The session before it has a usable address.
    let o = Command::new(launcher)
        .args(["run", "--id", "16777213", "--policy"])
        .arg(&policy)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let _ = std::fs::remove_file(&policy);
}

#[test]
fn the_preload_layer_refuses_the_loopback_calls_of_session_16777214() {
    require!("python3");
    let lib = preload_lib();
    let exe = Command::new("python3")
        .args([
            "-c",
            "import os; print(os.path.basename(os.readlink('/proc/self/exe')))",
        ])
        .output()
        .unwrap();
    let image = String::from_utf8(exe.stdout).unwrap().trim().to_string();
    let policy = policy_file(
        "preload",
        &format!("[virtual_loopback]\nenabled = true\nprograms = [{image:?}]\n"),
    );
    let (p1, p2) = (free_port(), free_port());
    let script = format!(
        "import socket\n\
         s = socket.socket()\n\
         try:\n    s.bind(('127.0.0.1', {p1})); print('bound', s.getsockname()[0])\n\
         except OSError as e:\n    print('bind errno', e.errno)\n\
         t = socket.socket(); t.bind(('0.0.0.0', {p2})); print('any', t.getsockname()[0])\n"
    );
    let o = in_session(&lib, &policy, 16_777_214, "python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(out, "bind errno 99\nany 0.0.0.0\n", "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("127.255.255.255"), "{err}");
    let _ = std::fs::remove_file(&policy);
}
