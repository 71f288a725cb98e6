//! The Windows layer end to end, under Wine: the hook DLL and the launcher (crates
//! `ipvirt-winhook` and `ipvirt-winsession`) built for `x86_64-pc-windows-gnu`, Winsock programs
//! in C (mingw) and in Rust (`std::net`), a private Wine prefix booted for this run.
//!
//! The programs (`tests/programs/`): `cprobe.c` and `rprobe.rs` are a TCP server and client that
//! print what they see, and spawners (`spawn HOW COMMAND…`: `CreateProcessW`, `cmd.exe /c`,
//! `system()`, and from C `_spawnv`, `_execv`, `ShellExecuteExW`, libuv's way, detached);
//! `iocp.c` is a client and a server as libuv and Go write them (a wildcard bind before
//! `ConnectEx`; mswsock's exported `AcceptEx` and `GetAcceptExSockaddrs`), on IPv4 or dual-stack
//! IPv6. Each is built here with mingw or `rustc`, never with cargo.
//!
//! Wine maps Winsock onto Linux sockets created by `wineserver`, so `ss` on the host shows where a
//! Windows program really bound. The Windows artefacts are built beforehand, never by the test:
//! `cargo build --target x86_64-pc-windows-gnu -p ipvirt-winhook -p ipvirt-winsession` (`.ci/run`
//! does it, with the same profile as the tests). Skips with a printed reason when they are not
//! built, or when Wine, mingw, the Rust target, `ss` or `unshare` is missing (`.ci/run` installs
//! them). One test function runs the scenarios in
//! order: they share one prefix and one `wineserver`, which is killed (`wineserver -k`) at the end,
//! and the virtual-IP scenario needs a `wineserver` started inside its own network namespace.
//!
//! Debian's Wine 8.0 lacks `bcryptprimitives.dll!ProcessPrng`, which Rust std imports: the stub
//! `examples/windows/prng_stub.c` is built and placed in the prefix's `system32`.
//!
//! It drives Wine from a Unix host (`ss`, `unshare`, `wineserver`): on Windows it builds to
//! nothing.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ipvirt_testkit::require;
use ipvirt_testkit::{free_port, have};

const TARGET: &str = "x86_64-pc-windows-gnu";
const MINGW: &str = "x86_64-w64-mingw32-gcc";
/// How long any one step may take (a cold Wine start of a program is a second or two).
const DEADLINE: Duration = Duration::from_secs(60);

/// The Wine loader: `wine64` is not on Debian's PATH.
fn wine_loader() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/lib/wine/wine64");
    if fixed.exists() {
        return Some(fixed);
    }
    have("wine").then(|| PathBuf::from("wine"))
}

/// Whether the Rust standard library for the Windows target is installed.
fn have_target() -> bool {
    Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|dir| {
            std::fs::read_dir(dir.trim()).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
            })
        })
}

/// `target/` of the running test binary (`target/<profile>/deps/<test>`).
fn target_root() -> PathBuf {
    ipvirt_testkit::profile_dir()
        .parent()
        .expect("target/<profile>")
        .to_path_buf()
}

/// Where the Windows artefacts of this profile are: `target/x86_64-pc-windows-gnu/<profile>/`.
fn windows_artefacts() -> PathBuf {
    let profile = ipvirt_testkit::profile_dir();
    target_root()
        .join(TARGET)
        .join(profile.file_name().expect("a profile directory"))
}

/// The Windows path of a host path (Wine's `Z:` drive is `/`).
fn win(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(what: &str, out: Output) -> Output {
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    out
}

/// A private Wine prefix with the artefacts built for it; `wineserver -k` and the directory removed
/// when dropped.
struct Wine {
    dir: PathBuf,
    loader: PathBuf,
    prefix: PathBuf,
    launcher: PathBuf,
    cprobe: PathBuf,
    rprobe: PathBuf,
    iocp: PathBuf,
}

impl Drop for Wine {
    fn drop(&mut self) {
        self.kill_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Wine {
    fn setup() -> Wine {
        let root = target_root();
        let dir = root
            .join("wine-e2e")
            .join(format!("run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let built = windows_artefacts();
        // The launcher finds the DLL beside itself.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for f in ["ipvirt_winhook.dll", "winsession.exe"] {
            std::fs::copy(built.join(f), bin.join(f)).unwrap();
        }

        let src = Path::new(env!("CARGO_MANIFEST_DIR"));
        let stub_source = src.join("../prng_stub.c");
        let cprobe = bin.join("cprobe.exe");
        check(
            "mingw: cprobe.c",
            Command::new(MINGW)
                .args(["-O2", "-o"])
                .arg(&cprobe)
                .arg(src.join("tests/programs/cprobe.c"))
                .args(["-lws2_32", "-lshell32"])
                .output()
                .unwrap(),
        );
        let iocp = bin.join("iocp.exe");
        check(
            "mingw: iocp.c",
            Command::new(MINGW)
                .args(["-O2", "-o"])
                .arg(&iocp)
                .arg(src.join("tests/programs/iocp.c"))
                .args(["-lws2_32", "-lmswsock"])
                .output()
                .unwrap(),
        );
        let rprobe = bin.join("rprobe.exe");
        check(
            "rustc: rprobe.rs",
            Command::new("rustc")
                .args(["--edition", "2021", "--target", TARGET, "-o"])
                .arg(&rprobe)
                .arg(src.join("tests/programs/rprobe.rs"))
                .output()
                .unwrap(),
        );
        let stub = dir.join("bcryptprimitives.dll");
        check(
            "mingw: prng_stub.c",
            Command::new(MINGW)
                .args(["-shared", "-O2", "-o"])
                .arg(&stub)
                .arg(&stub_source)
                .arg("-ladvapi32")
                .output()
                .unwrap(),
        );

        let wine = Wine {
            prefix: dir.join("prefix"),
            loader: wine_loader().unwrap(),
            launcher: bin.join("winsession.exe"),
            cprobe,
            rprobe,
            iocp,
            dir,
        };
        check(
            "wineboot -i",
            wine.env(&mut Command::new("wineboot"))
                .arg("-i")
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        );
        std::fs::copy(
            &stub,
            wine.prefix
                .join("drive_c/windows/system32/bcryptprimitives.dll"),
        )
        .unwrap();
        wine
    }

    /// The environment every Wine command of this run gets: the private prefix, no debug output,
    /// no display, no Mono/Gecko installers.
    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
    }

    /// `wine PROGRAM ARGS…`.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.loader);
        self.env(&mut c)
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// The launcher running `program ARGS…` in a session (`--id`, `--console`, …: `opts`).
    fn session(&self, opts: &[&str], program: &Path, args: &[&str]) -> Command {
        let mut all: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        all.push("--".into());
        all.push(win(program));
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.command(&self.launcher, &all)
    }

    fn kill_server(&self) {
        let _ = self
            .env(&mut Command::new("wineserver"))
            .arg("-k")
            .stdin(Stdio::null())
            .status();
    }
}

/// A running program whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    /// Its stdin, when it was started with [`Running::with_stdin`]; dropped, the program sees
    /// the end of its input.
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Running {
    fn start(c: Command, what: &str) -> Running {
        Running::spawn(c, what, Stdio::null())
    }

    /// As [`Running::start`], with a pipe on the program's stdin ([`Running::close_stdin`]).
    fn with_stdin(c: Command, what: &str) -> Running {
        Running::spawn(c, what, Stdio::piped())
    }

    /// Ends the program's input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Writes `line` and a newline on the program's input.
    fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started with_stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn spawn(mut c: Command, what: &str, stdin: Stdio) -> Running {
        let mut child = c
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            what: what.into(),
        }
    }

    /// Waits until the program printed `line` (or fails the test at the deadline).
    fn wait_for(&mut self, line: &str) {
        let end = Instant::now() + DEADLINE;
        while !self.seen.iter().any(|l| l == line) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l.trim_end().to_string()),
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output_lossy();
                    panic!(
                        "{}: no line {line:?} within {DEADLINE:?}; saw {:?}\n{out}",
                        self.what, self.seen
                    );
                }
            }
        }
    }

    /// Waits for the program to end (killing it at the deadline) and returns all its stdout lines.
    fn finish(mut self) -> Vec<String> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends at end of file: take every line it read.
                while let Ok(l) = self.lines.recv_timeout(DEADLINE) {
                    self.seen.push(l.trim_end().to_string());
                }
                let err = self.child.wait_with_output_lossy();
                assert!(
                    status.success(),
                    "{}: {status:?}; stdout {:?}\n{err}",
                    self.what,
                    self.seen
                );
                return self.seen;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let err = self.child.wait_with_output_lossy();
                panic!(
                    "{}: still running after {DEADLINE:?}; stdout {:?}\n{err}",
                    self.what, self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

trait StderrText {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl StderrText for Child {
    /// The stderr of an ended (or killed) child.
    fn wait_with_output_lossy(&mut self) -> String {
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        format!("--- stderr\n{s}")
    }
}

/// A client run to its end; its stdout lines.
fn client(c: Command, what: &str) -> Vec<String> {
    Running::start(c, what).finish()
}

/// The local addresses of the TCP listeners on `port` (`ss -ltn`).
fn listeners(port: u16) -> Vec<String> {
    let out = Command::new("ss").arg("-ltnH").output().unwrap();
    let mut found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .filter(|a| a.ends_with(&format!(":{port}")))
        .collect();
    found.sort();
    found
}

fn has(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

/// Two sessions run the same server on `127.0.0.1:PORT`; each ends up on its session's loopback,
/// each session's client reaches its own, and every address the programs see is `127.0.0.1`.
fn two_sessions(w: &Wine, policy: &Path, server: &Path, client_for: [(&Path, &[&str]); 2]) {
    let port = free_port();
    let p = port.to_string();
    let pol = win(policy);
    let mut servers = Vec::new();
    for (id, tag) in [("7", "s7"), ("8", "s8")] {
        let mut s = Running::start(
            w.session(
                &["--id", id, "--policy", &pol],
                server,
                &["server", &p, tag],
            ),
            &format!("session {id} server {}", server.display()),
        );
        s.wait_for("ready");
        servers.push(s);
    }
    assert_eq!(
        listeners(port),
        [format!("127.0.0.8:{port}"), format!("127.0.0.9:{port}")]
    );
    for ((id, tag), (program, extra)) in [("7", "s7"), ("8", "s8")].into_iter().zip(client_for) {
        let mut args = vec!["client", &p];
        args.extend_from_slice(extra);
        let out = client(
            w.session(&["--id", id, "--policy", &pol], program, &args),
            &format!("session {id} client {}", program.display()),
        );
        assert!(out.contains(&format!("got {tag}")), "session {id}: {out:?}");
        assert!(out.contains(&format!("peer 127.0.0.1:{port}")), "{out:?}");
        assert!(has(&out, "local 127.0.0.1:"), "{out:?}");
    }
    for s in servers {
        let out = s.finish();
        assert!(out.contains(&format!("bound 127.0.0.1:{port}")), "{out:?}");
        assert!(has(&out, "accepted 127.0.0.1:"), "{out:?}");
        assert!(has(&out, "peer 127.0.0.1:"), "{out:?}");
    }
}

/// The TCP connections to `port` that are not listeners, as `LOCAL PEER` (`ss -tn`).
fn connections(port: u16) -> Vec<String> {
    let out = Command::new("ss").arg("-tnH").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{} {}", f.get(3)?, f.get(4)?))
        })
        .filter(|c| c.ends_with(&format!(":{port}")))
        .collect()
}

/// A libuv/Go-style client and an IOCP server in session 7: the client binds the wildcard with
/// port 0 itself and then connects with `ConnectEx`; the server accepts with mswsock's exported
/// `AcceptEx` and reads the addresses with mswsock's `GetAcceptExSockaddrs`. On the wire the
/// connection is the session's (`127.0.0.8` at both ends); both programs see the localhost
/// address they used, as they would natively. `six`: dual-stack IPv6 sockets on `[::1]` with
/// `ipv6 = "map"` in the policy (Node's `localhost`), `[::ffff:127.0.0.8]` on the wire.
fn iocp_programs(w: &Wine, policy: &Path, six: bool) {
    let port = free_port();
    let p = port.to_string();
    let (server_mode, client_mode, seen, wire) = if six {
        ("server6", "client6", "[::1]", "[::ffff:127.0.0.8]")
    } else {
        ("server", "client", "127.0.0.1", "127.0.0.8")
    };
    let opts = ["--id", "7", "--policy", &win(policy)];
    let mut server = Running::start(
        w.session(&opts, &w.iocp, &[server_mode, &p, "s7"]),
        "session 7 IOCP server",
    );
    server.wait_for("ready");
    assert_eq!(listeners(port), [format!("{wire}:{port}")]);
    let mut client = Running::with_stdin(
        w.session(&opts, &w.iocp, &[client_mode, &p, "hold"]),
        "session 7 IOCP client",
    );
    client.wait_for("holding");
    assert!(
        client.seen.contains(&"got s7".to_string()),
        "{:?}",
        client.seen
    );
    assert!(
        client.seen.contains(&format!("peer {seen}:{port}")),
        "{:?}",
        client.seen
    );
    let local = client
        .seen
        .iter()
        .find_map(|l| l.strip_prefix(&format!("local {seen}:")))
        .unwrap_or_else(|| panic!("no local {seen}:P in {:?}", client.seen))
        .to_string();
    // The connection is still open: on the wire it leaves from the session's loopback.
    assert!(
        connections(port).contains(&format!("{wire}:{local} {wire}:{port}")),
        "{:?}",
        connections(port)
    );
    client.close_stdin();
    client.finish();
    let out = server.finish();
    assert!(out.contains(&format!("accepted {seen}:{local}")), "{out:?}");
    assert!(out.contains(&format!("local {seen}:{port}")), "{out:?}");
}

/// The port of the `spawner 127.0.0.1:PORT` line a `spawn` probe printed.
fn spawner_port(lines: &[String]) -> u16 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("spawner 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no spawner line in {lines:?}"))
}

/// Two sessions' programs start the same server on `127.0.0.1:PORT` as a child, `how` says
/// (`create`: `CreateProcessW`, from Rust with an environment of its own; `cmd`: through
/// `cmd.exe /c`, which is not listed; `system`: the C runtime's `system()`, which runs
/// `cmd.exe`; from C also `spawnv`, `execv`, `shell`: `_spawnv`, `_execv`, `ShellExecuteExW`, and
/// `uv`: what libuv's `uv_spawn` does, suspended, with an environment block without the
/// session's variables, in a job of its own): each child lands on its session's loopback and serves its session's client. The
/// spawners are listed too: their own listeners are on their sessions' loopbacks.
fn children(w: &Wine, policy: &Path, spawner: &Path, server: &Path, how: &str) {
    let port = free_port();
    let p = port.to_string();
    let pol = win(policy);
    let srv = win(server);
    let mut running = Vec::new();
    for (id, tag) in [("7", "c7"), ("8", "c8")] {
        let what = format!("session {id}: {} spawn {how}", spawner.display());
        let mut r = Running::start(
            w.session(
                &["--id", id, "--policy", &pol],
                spawner,
                &["spawn", how, &srv, "server", &p, tag],
            ),
            &what,
        );
        r.wait_for("ready");
        running.push(r);
    }
    assert_eq!(
        listeners(port),
        [format!("127.0.0.8:{port}"), format!("127.0.0.9:{port}")],
        "spawn {how}"
    );
    // (After _execv the spawner is gone.)
    for (r, lo) in running.iter().zip(["127.0.0.8", "127.0.0.9"]) {
        let q = spawner_port(&r.seen);
        if how != "execv" {
            assert_eq!(
                listeners(q),
                [format!("{lo}:{q}")],
                "spawn {how}: the spawner"
            );
        }
    }
    for (id, tag) in [("7", "c7"), ("8", "c8")] {
        let out = client(
            w.session(&["--id", id, "--policy", &pol], &w.cprobe, &["client", &p]),
            &format!("session {id} client of a spawned server"),
        );
        assert!(out.contains(&format!("got {tag}")), "spawn {how}: {out:?}");
    }
    for r in running {
        let out = r.finish();
        assert!(out.contains(&format!("bound 127.0.0.1:{port}")), "{out:?}");
        assert!(has(&out, "accepted 127.0.0.1:"), "{out:?}");
    }
}

/// Children's children, through unlisted intermediates: an unlisted C program runs `cmd.exe /c`
/// of the Rust probe, which runs the C server with `system()` (another `cmd.exe`). The server, a
/// great-great-grandchild, lands on the session's loopback; the listed Rust spawner does too; the
/// unlisted C spawner stays on `127.0.0.1` (it passes the layer on without being rewritten).
fn grandchildren(w: &Wine, policy: &Path, unlisted: &Path) {
    let port = free_port();
    let p = port.to_string();
    let mut r = Running::start(
        w.session(
            &["--id", "7", "--policy", &win(policy)],
            unlisted,
            &[
                "spawn",
                "cmd",
                &win(&w.rprobe),
                "spawn",
                "system",
                &win(&w.cprobe),
                "server",
                &p,
                "deep",
            ],
        ),
        "session 7: a chain of spawners",
    );
    r.wait_for("ready");
    assert_eq!(listeners(port), [format!("127.0.0.8:{port}")]);
    let ports: Vec<u16> = r
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix("spawner 127.0.0.1:"))
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(ports.len(), 2, "{:?}", r.seen);
    assert_eq!(listeners(ports[0]), [format!("127.0.0.1:{}", ports[0])]);
    assert_eq!(listeners(ports[1]), [format!("127.0.0.8:{}", ports[1])]);
    let out = client(
        w.session(
            &["--id", "7", "--policy", &win(policy)],
            &w.cprobe,
            &["client", &p],
        ),
        "session 7 client of the chain's server",
    );
    assert!(out.contains(&"got deep".to_string()), "{out:?}");
    r.finish();
}

/// Fail closed: a child whose layer cannot start (here: the policy it reads became invalid after
/// its parent started) is not run, and the parent's `CreateProcessW` fails with
/// `ERROR_DLL_INIT_FAILED` (1114), the reason on stderr.
fn child_not_virtualized(w: &Wine, good: &str) {
    let policy = w.dir.join("child-policy.toml");
    std::fs::write(&policy, good).unwrap();
    let port = free_port();
    let p = port.to_string();
    let mut r = Running::with_stdin(
        w.session(
            &["--id", "7", "--policy", &win(&policy)],
            &w.cprobe,
            &["spawn", "wait-create", &win(&w.cprobe), "server", &p, "x"],
        ),
        "session 7: a spawner whose child cannot be virtualized",
    );
    r.wait_for("waiting");
    std::fs::write(&policy, "[virtual_loopback]\nenabled = maybe\n").unwrap();
    r.send_line("go");
    r.wait_for("error CreateProcess 1114");
    let status = r.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let err = r.child.wait_with_output_lossy();
    assert!(
        err.contains("child process") && err.contains("not started"),
        "{err}"
    );
    assert!(
        !r.seen.iter().any(|l| l.starts_with("bound")),
        "{:?}",
        r.seen
    );
    assert_eq!(listeners(port), Vec::<String>::new());
}

/// A server that must stay on `127.0.0.1:port` (out of scope), checked with `ss`, then ended by a
/// client outside any session.
fn left_alone(w: &Wine, session_opts: &[&str], server: &Path, port: u16, what: &str) {
    let p = port.to_string();
    let mut s = Running::start(w.session(session_opts, server, &["server", &p, "x"]), what);
    s.wait_for("ready");
    assert_eq!(listeners(port), [format!("127.0.0.1:{port}")], "{what}");
    let out = client(w.command(&w.cprobe, &["client", &p]), "plain client");
    assert!(out.contains(&"got x".to_string()), "{what}: {out:?}");
    s.finish();
}

/// The virtual-IP scenario in a network namespace of its own: VIPs on `lo`, two sessions' servers
/// on `0.0.0.0:PORT` land on their VIPs, and a client of session 7 (connecting to session 8's
/// server) leaves from session 7's VIP.
const VIP_SCRIPT: &str = r#"
set -u
ip link set lo up
ip addr add 192.0.2.10/24 dev lo
ip addr add 192.0.2.101/32 dev lo
ip addr add 192.0.2.102/32 dev lo
export WINEPREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
trap 'wineserver -k' EXIT
serve() { # id tag log port address
  "$WINE" "$LAUNCHER" --id "$1" --policy "$POLICY" --lease-book "$STATE" -- "$PROBE" server "$4" "$2" "$5" >"$3" 2>&1 &
}
ready() { for i in $(seq 600); do grep -q '^ready' "$1" && return 0; sleep 0.1; done; echo "TIMEOUT $1"; cat "$1"; exit 1; }
serve 7 s7 "$DIR/a.log" "$PORT" 0.0.0.0; ready "$DIR/a.log"
serve 8 s8 "$DIR/b.log" "$PORT" 0.0.0.0; ready "$DIR/b.log"
# The server's own address (an address of the host, found with GetAdaptersAddresses) also
# becomes the session's VIP.
serve 7 own "$DIR/c.log" "$PORT2" 192.0.2.10; ready "$DIR/c.log"
echo "LISTEN $(ss -ltnH | awk '{print $4}' | grep ":$PORT\$" | sort | tr '\n' ' ')"
echo "LISTEN2 $(ss -ltnH | awk '{print $4}' | grep ":$PORT2\$" | sort | tr '\n' ' ')"
"$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>&1 | sed 's/^/LIVE /' 
"$WINE" "$LAUNCHER" --id 7 --policy "$POLICY" --lease-book "$STATE" -- "$PROBE" client "$PORT" 192.0.2.102 2>&1 | sed 's/^/CLIENT7 /'
"$WINE" "$CPROBE" client "$PORT" 192.0.2.101 2>&1 | sed 's/^/PLAIN /'
"$WINE" "$CPROBE" client "$PORT2" 192.0.2.101 2>&1 | sed 's/^/PLAIN2 /'
wait
"$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>&1 | sed 's/^/AFTER /'
echo "AFTER end"
# A launcher killed while its program runs: the program keeps the lease; once it is gone too, the
# next look reclaims it.
"$WINE" "$LAUNCHER" --id 9 --policy "$POLICY" --lease-book "$STATE" -- "$PROBE" server "$PORT3" s9 0.0.0.0 >"$DIR/d.log" 2>&1 &
LPID=$!
ready "$DIR/d.log"
kill -9 "$LPID"; wait "$LPID" 2>/dev/null
"$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>&1 | sed 's/^/ORPHAN /'
ADDR=$(sed -n 's/^bound \(.*\):.*/\1/p' "$DIR/d.log")
"$WINE" "$CPROBE" client "$PORT3" "$ADDR" 2>&1 | sed 's/^/PLAIN3 /'
for i in $(seq 100); do
  LEFT=$("$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>/dev/null)
  [ -z "$LEFT" ] && break
  sleep 0.2
done
echo "RECLAIMED [$LEFT]"
# A program that starts a server and ends at once: the server (in the session's job object) holds
# the lease after the program and its launcher are gone, and releases it when it ends. Its output
# comes through a FIFO, read with a deadline.
mkfifo "$DIR/e.fifo"
"$WINE" "$LAUNCHER" --id 10 --policy "$POLICY" --lease-book "$STATE" -- "$PROBE" spawn detach "$PROBE" server "$PORT4" s10 0.0.0.0 >"$DIR/e.fifo" 2>&1 &
LPID=$!
exec 3<"$DIR/e.fifo"
ADDR4=
while IFS= read -t 60 -r l <&3; do
  echo "E $l"
  case "$l" in bound*) ADDR4=$(echo "$l" | sed -n 's/^bound \(.*\):.*/\1/p');; ready*) break;; esac
done
wait "$LPID"; echo "DETACHED $?"
"$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>&1 | sed 's/^/HELD /'
"$WINE" "$CPROBE" client "$PORT4" "$ADDR4" 2>&1 | sed 's/^/PLAIN4 /'
while IFS= read -t 60 -r l <&3; do echo "E $l"; done
exec 3<&-
for i in $(seq 100); do
  LEFT=$("$WINE" "$LAUNCHER" --policy "$POLICY" --lease-book "$STATE" --status 2>/dev/null)
  [ -z "$LEFT" ] && break
  sleep 0.2
done
echo "RELEASED [$LEFT]"
sed 's/^/A /' "$DIR/a.log"
sed 's/^/B /' "$DIR/b.log"
"#;

#[test]
fn winsock_programs_in_sessions_under_wine() {
    require!(MINGW, "wineboot", "wineserver", "ss", "unshare", "ip");
    if wine_loader().is_none() {
        eprintln!("skipped: Wine (wine64) is not installed on this machine");
        return;
    }
    if !have_target() {
        eprintln!(
            "skipped: the Rust target {TARGET} is not installed (rustup target add {TARGET})"
        );
        return;
    }
    let built = windows_artefacts();
    for f in ["ipvirt_winhook.dll", "winsession.exe"] {
        if !built.join(f).is_file() {
            eprintln!(
                "skipped: {} is not built (cargo build --target {TARGET} -p ipvirt-winhook -p ipvirt-winsession)",
                built.join(f).display()
            );
            return;
        }
    }
    let w = Wine::setup();
    let policy = w.dir.join("policy.toml");
    let excluded = free_port();
    std::fs::write(
        &policy,
        format!(
            "[virtual_loopback]\nenabled = true\nprograms = [\"cprobe.exe\", \"rprobe.exe\", \"iocp.exe\"]\n\
             excluded_ports = [{excluded}]\n"
        ),
    )
    .unwrap();

    // The C server; session 7's client resolves connect with GetProcAddress.
    two_sessions(
        &w,
        &policy,
        &w.cprobe,
        [(&w.cprobe, &["getproc"]), (&w.rprobe, &[])],
    );
    // The Rust std::net server; the C client imports connect.
    two_sessions(&w, &policy, &w.rprobe, [(&w.rprobe, &[]), (&w.cprobe, &[])]);
    // IOCP: ConnectEx after the program's own wildcard bind; mswsock's exported AcceptEx.
    iocp_programs(&w, &policy, false);
    let map = w.dir.join("map.toml");
    std::fs::write(
        &map,
        "[virtual_loopback]\nenabled = true\nipv6 = \"map\"\nprograms = [\"iocp.exe\"]\n",
    )
    .unwrap();
    iocp_programs(&w, &map, true);
    // Children: the C and the Rust probe each start the other's server three ways.
    for how in ["create", "cmd", "system"] {
        children(&w, &policy, &w.cprobe, &w.rprobe, how);
        children(&w, &policy, &w.rprobe, &w.cprobe, how);
    }
    for how in ["spawnv", "execv", "shell", "uv"] {
        children(&w, &policy, &w.cprobe, &w.rprobe, how);
    }

    // Left alone: an excluded port, an unlisted program, the console session (by --console, and by
    // being the session WTSGetActiveConsoleSessionId names: Wine's only session, 1).
    let pol = win(&policy);
    left_alone(
        &w,
        &["--id", "7", "--policy", &pol],
        &w.cprobe,
        excluded,
        "excluded port",
    );
    let other = w.dir.join("bin").join("other.exe");
    std::fs::copy(&w.cprobe, &other).unwrap();
    grandchildren(&w, &policy, &other);
    child_not_virtualized(&w, &std::fs::read_to_string(&policy).unwrap());
    // A launcher started inside a session cannot start another session: its program is the
    // session's already (the hook is in it), and it is not run.
    let out = w
        .session(
            &["--id", "7", "--policy", &pol],
            &w.cprobe,
            &[
                "spawn",
                "create",
                &win(&w.launcher),
                "--id",
                "8",
                "--policy",
                &pol,
                "--",
                &win(&w.cprobe),
                "server",
                &free_port().to_string(),
                "x",
            ],
        )
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("runs inside a session"), "{t}");
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "ready"),
        "the server ran: {t}"
    );
    left_alone(
        &w,
        &["--id", "7", "--policy", &pol],
        &other,
        free_port(),
        "unlisted program",
    );
    left_alone(
        &w,
        &["--id", "7", "--console", "--policy", &pol],
        &w.cprobe,
        free_port(),
        "--console",
    );
    left_alone(
        &w,
        &["--policy", &pol],
        &w.cprobe,
        free_port(),
        "Wine's own (console) session",
    );

    // A wrong policy stops the launch (status 2, the file named): the program never runs.
    let bad = w.dir.join("bad.toml");
    std::fs::write(&bad, "[virtual_loopback]\nenabled = maybe\n").unwrap();
    let out = w
        .session(
            &["--id", "7", "--policy", &win(&bad)],
            &w.cprobe,
            &["client", "1"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("bad.toml") && t.contains("virtual_loopback.enabled"),
        "{t}"
    );
    assert!(!t.contains("error connect"), "the program ran: {t}");

    // The exit code passes through.
    let out = w
        .session(
            &["--id", "7", "--policy", &pol],
            &w.cprobe,
            &["nonsense", "1"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = w
        .session(
            &["--id", "7", "--policy", &pol],
            &w.cprobe,
            &["client", &free_port().to_string()],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("error connect 10061"),
        "{}",
        text(&out)
    );

    // Virtual IPs, per session, with the VIP settings from the registry (SPEC §3's local key) and
    // the pool from the TOML policy. The wineserver must start inside the namespace.
    w.kill_server();
    let reg = w.dir.join("vip.reg");
    std::fs::write(
        &reg,
        "Windows Registry Editor Version 5.00\r\n\r\n\
         [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n\
         \"EnableVirtualIP\"=dword:00000001\r\n\"VirtualMode\"=dword:00000000\r\n\
         \"VIPAdapter\"=\"192.0.2.0/24\"\r\n",
    )
    .unwrap();
    let regedit = w
        .command(Path::new("regedit"), &["/S", &win(&reg)])
        .output()
        .unwrap();
    check("regedit /S vip.reg", regedit);
    w.kill_server();
    let vip_policy = w.dir.join("vip.toml");
    std::fs::write(
        &vip_policy,
        "[virtual_ip]\npool = [\"192.0.2.101-192.0.2.102\"]\n",
    )
    .unwrap();
    let (port, port2, port3, port4) = (free_port(), free_port(), free_port(), free_port());
    let out = w
        .env(&mut Command::new("timeout"))
        .args(["180", "unshare", "-n", "bash", "-c", VIP_SCRIPT])
        .env("WINE", &w.loader)
        .env("LAUNCHER", &w.launcher)
        .env("PROBE", win(&w.cprobe))
        .env("CPROBE", &w.cprobe)
        .env("POLICY", win(&vip_policy))
        .env("STATE", win(&w.dir.join("leases.json")))
        .env("DIR", &w.dir)
        .env("PORT", port.to_string())
        .env("PORT2", port2.to_string())
        .env("PORT3", port3.to_string())
        .env("PORT4", port4.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success() && !t.contains("TIMEOUT"), "{t}");
    let line = |key: &str| {
        t.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key} ")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("LISTEN"),
        [format!("192.0.2.101:{port} 192.0.2.102:{port} ")],
        "{t}"
    );
    // The servers see their VIPs (a VIP is reported unchanged); session 7's client leaves from
    // its VIP, and session 8's server sees it come from there.
    assert!(
        line("A").contains(&format!("bound 192.0.2.101:{port}").as_str()),
        "{t}"
    );
    assert!(
        line("B").contains(&format!("bound 192.0.2.102:{port}").as_str()),
        "{t}"
    );
    let client7 = line("CLIENT7");
    assert!(
        client7.iter().any(|l| l.starts_with("local 192.0.2.101:")),
        "{t}"
    );
    assert!(
        client7.contains(&format!("peer 192.0.2.102:{port}").as_str()),
        "{t}"
    );
    assert!(client7.contains(&"got s8"), "{t}");
    assert!(
        line("B")
            .iter()
            .any(|l| l.starts_with("accepted 192.0.2.101:")),
        "{t}"
    );
    assert!(line("PLAIN").contains(&"got s7"), "{t}");
    assert_eq!(line("LISTEN2"), [format!("192.0.2.101:{port2} ")], "{t}");
    assert!(line("PLAIN2").contains(&"got own"), "{t}");
    assert!(t.contains("session 7: virtual IP 192.0.2.101"), "{t}");
    // While they run, the launchers and their programs hold the leases (session 7: two
    // launchers, each with its program); once they are gone, the leases are released.
    assert_eq!(
        line("LIVE"),
        [
            "session 7 192.0.2.101 holders=4",
            "session 8 192.0.2.102 holders=2"
        ],
        "{t}"
    );
    assert_eq!(line("AFTER"), ["end"], "{t}");
    let orphan = line("ORPHAN");
    assert!(
        orphan.len() == 1
            && orphan[0].starts_with("session 9 192.0.2.10")
            && orphan[0].ends_with(" holders=1"),
        "{t}"
    );
    assert!(line("PLAIN3").contains(&"got s9"), "{t}");
    assert_eq!(line("RECLAIMED"), ["[]"], "{t}");
    // The detached server: its program ended (status 0) while it ran on the session's VIP and
    // held the lease (its job: one holder), and the lease ended with it.
    assert_eq!(line("DETACHED"), ["0"], "{t}");
    let held = line("HELD");
    assert!(
        held.len() == 1
            && held[0].starts_with("session 10 192.0.2.10")
            && held[0].ends_with(" holders=1"),
        "{t}"
    );
    assert!(
        line("E").iter().any(|l| l.starts_with("bound 192.0.2.10")),
        "{t}"
    );
    assert!(line("PLAIN4").contains(&"got s10"), "{t}");
    assert_eq!(line("RELEASED"), ["[]"], "{t}");
    assert!(t.contains("session 8: virtual IP 192.0.2.102"), "{t}");
}
