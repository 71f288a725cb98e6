//! End to end: the `LD_PRELOAD` layer (`examples/preload/`) where a program, another
//! session or the machine pushes it: isolation of binds, the implicit source bind that leaves the
//! port to `connect`, diagnostics on a closed stderr, policy files that are FIFOs, devices or huge,
//! non-UTF-8 paths, descriptor numbers reused behind the layer's back, and silence when unconfigured.
//!
//! The program under test is `tests/c/hardening.c`, compiled here; it reads the kernel's view
//! of an address with a raw system call where the layer would show the program something else.
//! Every test is bounded in time (a process that does not answer by its deadline is killed and the
//! test fails) and is skipped with a printed reason when `cc` (or `unshare`) is missing.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipvirt_testkit::{Guard, free_port, have, preload_lib};

const DEADLINE: Duration = Duration::from_secs(20);

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The layer's lines on stderr.
fn layer_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("ipvirt:"))
        .map(str::to_string)
        .collect()
}

/// Runs `c` to completion with stdin closed and stdout and stderr captured.
fn run(mut c: Command) -> Output {
    c.stderr(Stdio::piped());
    run_keeping_stderr(c)
}

/// Runs `c` to completion with stdin closed and stdout captured (stderr as the caller set it);
/// kills it and panics if it outlives the deadline.
fn run_keeping_stderr(mut c: Command) -> Output {
    c.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{c:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// A long-running child: its stdin (EOF ends it) and its first line of output.
struct Running {
    _guard: Guard,
    _stdin: ChildStdin,
    first: String,
}

fn start(mut c: Command) -> Running {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let guard = Guard(child);
    let first = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{c:?} printed nothing within {DEADLINE:?}"));
    Running {
        _guard: guard,
        _stdin: stdin,
        first: first.trim().to_string(),
    }
}

struct Fixture {
    lib: PathBuf,
    exe: PathBuf,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The layer, `hardening.c` compiled, and a scratch directory holding `policy.toml` (virtual
/// loopback for `hardening`, isolation on).
fn fixture(name: &str) -> Option<Fixture> {
    if !have("cc") {
        eprintln!("skipped: `cc` is not installed on this machine");
        return None;
    }
    let lib = preload_lib();
    let dir = std::env::temp_dir().join(format!("ipvirt-hard-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("hardening");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/hardening.c");
    let cc = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc failed:\n{}", text(&cc));
    std::fs::write(
        dir.join("policy.toml"),
        "[virtual_loopback]\nenabled = true\nprograms = [\"hardening\"]\nisolate = true\n",
    )
    .unwrap();
    Some(Fixture { lib, exe, dir })
}

impl Fixture {
    fn policy(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// `hardening ARGS…` under the layer with only `LD_PRELOAD` of the layer's variables set.
    fn bare(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args).env("LD_PRELOAD", &self.lib);
        for v in [
            "IPVIRT_SESSION",
            "IPVIRT_POLICY",
            "IPVIRT_VIP",
            "IPVIRT_DEBUG",
            "IPVIRT_SESSION_KIND",
            "IPVIRT_SERVER_ADDRS",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// `hardening ARGS…` in `session` under the layer with `policy`.
    fn session(&self, session: u32, policy: &Path, args: &[&str]) -> Command {
        let mut c = self.bare(args);
        c.env("IPVIRT_SESSION", session.to_string())
            .env("IPVIRT_POLICY", policy);
        c
    }
}

// ---- 1. isolation holds for binds ----------------------------------------------------------------

#[test]
fn isolation_refuses_a_bind_of_another_sessions_loopback() {
    let Some(f) = fixture("isolation") else {
        return;
    };
    let policy = f.policy();
    let port = free_port().to_string();
    // Session 7 tries to take session 8's address first (and would hold it if it could).
    let hijack = start(f.session(7, &policy, &["bind", "127.0.0.9", &port, "hold"]));
    assert_eq!(hijack.first, format!("errno {}", libc::EACCES));
    // Session 8's server gets its own address, and session 8's client reaches it.
    let server = start(f.session(8, &policy, &["serve", "127.0.0.1", &port, "s8"]));
    assert_eq!(server.first, "listening");
    let got = run(f.session(8, &policy, &["get", "127.0.0.1", &port]));
    assert_eq!(stdout(&got), "s8", "{}", text(&got));
    // Connects stay isolated too, and session 7's own address is still its own.
    let got = run(f.session(7, &policy, &["get", "127.0.0.9", &port]));
    assert_eq!(
        stdout(&got),
        format!("errno {}", libc::ECONNREFUSED),
        "{}",
        text(&got)
    );
    let own = run(f.session(7, &policy, &["bind", "127.0.0.1", &port]));
    assert_eq!(stdout(&own), "bound", "{}", text(&own));
}

// ---- 2. the implicit source bind leaves the port to connect --------------------------------------

#[test]
fn implicit_source_bind_leaves_the_port_to_connect() {
    let Some(f) = fixture("no-port") else {
        return;
    };
    if !have("unshare") || !have("ip") {
        eprintln!("skipped: `unshare` or `ip` is not installed on this machine");
        return;
    }
    // In a network namespace of its own with exactly one ephemeral port: natively two connections
    // to two listeners share it (the kernel picks the port at connect time, per destination). A
    // source bound with `bind(127.0.0.8:0)` would take the port at bind time and the second
    // connection would find none (EADDRINUSE).
    let script = "ip link set lo up && echo '40000 40000' > /proc/sys/net/ipv4/ip_local_port_range \
                  && exec env LD_PRELOAD=\"$1\" IPVIRT_SESSION=7 IPVIRT_POLICY=\"$2\" \"$0\" twoports 5001 5002 5003";
    let mut c = Command::new("unshare");
    c.args(["-n", "sh", "-c", script])
        .arg(&f.exe)
        .arg(&f.lib)
        .arg(f.policy());
    for v in [
        "LD_PRELOAD",
        "IPVIRT_SESSION",
        "IPVIRT_POLICY",
        "IPVIRT_DEBUG",
    ] {
        c.env_remove(v);
    }
    let out = run(c);
    if !out.status.success() && stdout(&out).is_empty() {
        eprintln!(
            "skipped: cannot make a network namespace here:\n{}",
            text(&out)
        );
        return;
    }
    let want = "connect1 ok\nconnect2 ok\nlocal1 127.0.0.8:40000\nlocal2 127.0.0.8:40000\nno_port 0\nconnect3 ok no_port 1";
    assert_eq!(stdout(&out), want, "{}", text(&out));
}

// ---- 3. diagnostics never kill the program -------------------------------------------------------

/// Issue 23, item 9: with `IPVIRT_DEBUG=1`, a program that closed fd 2 and got a socket in its
/// place (its connection to a peer, here one end of a socket pair) must not find the layer's
/// diagnostics in it: they go only to the stderr the program was started with.
#[test]
fn diagnostics_never_reach_a_socket_that_took_fd_2() {
    let Some(f) = fixture("stderrsock") else {
        return;
    };
    let mut c = f.bare(&["stderrsock"]);
    c.env("IPVIRT_SESSION", "7")
        .env("IPVIRT_POLICY", f.policy())
        .env("IPVIRT_DEBUG", "1");
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        "bind 0; the program's socket got 0 bytes",
        "{}",
        text(&out)
    );
    // The diagnostics went to the stderr the program started with (before it closed it).
    assert!(
        layer_lines(&out).iter().any(|l| l.contains("hardening")),
        "{}",
        text(&out)
    );
}

#[test]
fn diagnostics_on_a_closed_stderr_never_kill_the_program() {
    let Some(f) = fixture("sigpipe") else {
        return;
    };
    let missing = f.dir.join("missing.toml");
    let cases: [(&Path, &str); 2] = [
        // A bad configuration: its one line goes to the closed pipe.
        (&missing, "bound 127.0.0.1"),
        // A good one with IPVIRT_DEBUG=1: the policy's explanation and each rewrite.
        (&f.policy(), "bound 127.0.0.8"),
    ];
    for (policy, want) in cases {
        for ignore in [false, true] {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let mut c = if ignore {
                // SIGPIPE ignored before exec (std resets it to the default for its children).
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    "trap '' PIPE; exec env LD_PRELOAD=\"$1\" \"$0\" quiet",
                ])
                .arg(&f.exe)
                .arg(&f.lib)
                .env_remove("LD_PRELOAD");
                c
            } else {
                f.bare(&["quiet"])
            };
            c.env("IPVIRT_SESSION", "7")
                .env("IPVIRT_POLICY", policy)
                .env("IPVIRT_DEBUG", "1")
                .stderr(writer);
            let out = run_keeping_stderr(c);
            assert!(
                out.status.success(),
                "{} (SIGPIPE ignored: {ignore}): {}",
                policy.display(),
                text(&out)
            );
            assert_eq!(
                stdout(&out),
                format!(
                    "sigpipe {}\n{want}",
                    if ignore { "ignored" } else { "default" }
                ),
                "{}",
                text(&out)
            );
        }
    }
}

// ---- 4. the policy file is read within bounds ----------------------------------------------------

#[test]
fn policy_that_is_a_fifo_a_device_or_huge_is_refused_promptly() {
    let Some(f) = fixture("bounded") else {
        return;
    };
    let fifo = f.dir.join("policy.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    let huge = f.dir.join("huge.toml");
    {
        let mut file = std::fs::File::create(&huge).unwrap();
        file.write_all(b"[virtual_loopback]\nenabled = true\n")
            .unwrap();
        file.set_len(2 << 20).unwrap();
    }
    let cases: [(&Path, &str); 3] = [
        (&fifo, "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (&huge, "larger than"),
    ];
    for (policy, why) in cases {
        let started = Instant::now();
        let out = run(f.session(7, policy, &["quiet"]));
        let took = started.elapsed();
        assert!(out.status.success(), "{}", text(&out));
        // The layer's bad-configuration behaviour: one line, and every call left unchanged.
        assert_eq!(
            stdout(&out),
            "sigpipe default\nbound 127.0.0.1",
            "{}",
            text(&out)
        );
        let lines = layer_lines(&out);
        assert!(
            lines.len() == 1 && lines[0].contains(why) && lines[0].contains("IPVIRT_POLICY"),
            "{}: {}",
            policy.display(),
            text(&out)
        );
        assert!(
            took < Duration::from_secs(5),
            "{} took {took:?}",
            policy.display()
        );
    }
}

// ---- 5. non-UTF-8 paths ----------------------------------------------------------------------------

#[test]
fn policy_path_that_is_not_utf8_is_read() {
    let Some(f) = fixture("non-utf8") else {
        return;
    };
    let path = f.dir.join(OsStr::from_bytes(b"policy-\xff.toml"));
    std::fs::copy(f.policy(), &path).unwrap();
    let out = run(f.session(7, &path, &["quiet"]));
    assert_eq!(
        stdout(&out),
        "sigpipe default\nbound 127.0.0.8",
        "{}",
        text(&out)
    );
    assert!(layer_lines(&out).is_empty(), "{}", text(&out));
}

// ---- 6. descriptor numbers reused behind the layer's back ----------------------------------------

#[test]
fn reused_descriptor_numbers_get_their_source_bound() {
    let Some(f) = fixture("fds") else {
        return;
    };
    let port = free_port().to_string();
    let out = run(f.session(7, &f.policy(), &["fds", &port]));
    let want = [
        "close_range+F_DUPFD      source 127.0.0.8",
        "close_range+F_DUPFD_CLOEXEC source 127.0.0.8",
        "dup2                     source 127.0.0.8",
        "dup3                     source 127.0.0.8",
        "dup2 over implicit       same name",
        "fcntl F_SETFL            ok",
    ]
    .join("\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), want, "{}", text(&out));
}

// ---- 7. silent when unconfigured, one line when misconfigured ------------------------------------

#[test]
fn unconfigured_is_silent_and_misconfigured_says_one_line() {
    let Some(f) = fixture("silent") else {
        return;
    };
    // Only LD_PRELOAD (a shell that exported it, say): nothing on stderr.
    let out = run(f.bare(&["quiet"]));
    assert_eq!(
        stdout(&out),
        "sigpipe default\nbound 127.0.0.1",
        "{}",
        text(&out)
    );
    assert!(out.stderr.is_empty(), "{}", text(&out));
    // IPVIRT_DEBUG=1 says why nothing happens.
    let mut c = f.bare(&["quiet"]);
    c.env("IPVIRT_DEBUG", "1");
    let out = run(c);
    let lines = layer_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("IPVIRT_SESSION is not set"),
        "{}",
        text(&out)
    );
    // Present but wrong: exactly one line each.
    let mut only_policy = f.bare(&["quiet"]);
    only_policy.env("IPVIRT_POLICY", f.policy());
    let mut only_session = f.bare(&["quiet"]);
    only_session.env("IPVIRT_SESSION", "7");
    for (c, want) in [
        (only_policy, "IPVIRT_SESSION is not set"),
        (only_session, "IPVIRT_POLICY is not set"),
    ] {
        let out = run(c);
        let lines = layer_lines(&out);
        assert!(
            lines.len() == 1 && lines[0].contains(want),
            "{}",
            text(&out)
        );
        assert_eq!(
            stdout(&out),
            "sigpipe default\nbound 127.0.0.1",
            "{}",
            text(&out)
        );
    }
}
