//! End to end with real programs: the `LD_PRELOAD` layer (`examples/preload/`) in front of
//! python's `http.server`, `curl`, and UDP sockets, as SPEC §1 describes: two instances of a server
//! on the same port in two sessions.
//!
//! Every test picks free ports, kills what it starts, is bounded in time, and is skipped with a
//! printed reason when a program it needs (python3, curl, ss, unshare, ip) is missing or when the
//! machine does not allow an unprivileged network namespace.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipvirt_testkit::require;
use ipvirt_testkit::{Guard, free_port, have, in_session, preload_lib};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The basename python's `/proc/self/exe` has (e.g. `python3.11`): what the layer matches.
fn python_image() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os; print(os.path.basename(os.readlink('/proc/self/exe')))",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_policy(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn loopback_policy(programs: &[&str], excluded: &[u16]) -> String {
    format!(
        "[virtual_loopback]\nenabled = true\nprograms = {programs:?}\nexcluded_ports = {excluded:?}\n"
    )
}

fn http_server(
    lib: &Path,
    policy: &Path,
    session: u32,
    bind: &str,
    port: u16,
    root: &Path,
) -> Guard {
    let child = in_session(lib, policy, session, "python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            bind,
            &port.to_string(),
            "--directory",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Guard(child)
}

fn wait_listening(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn http_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::Write;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ss_listening(proto: &str) -> String {
    let out = Command::new("ss").args([proto, "-n"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_sessions_serve_the_same_loopback_port() {
    require!("python3", "curl");
    let lib = preload_lib();
    let dir = scratch("two-sessions");
    let py = python_image();
    let policy = write_policy(
        &dir,
        "policy.toml",
        &loopback_policy(&["python3", &py, "curl"], &[]),
    );
    for s in [7, 8] {
        std::fs::create_dir_all(dir.join(format!("s{s}"))).unwrap();
        std::fs::write(
            dir.join(format!("s{s}/index.html")),
            format!("page of session {s}\n"),
        )
        .unwrap();
    }
    let port = free_port();
    let _a = http_server(&lib, &policy, 7, "127.0.0.1", port, &dir.join("s7"));
    let _b = http_server(&lib, &policy, 8, "127.0.0.1", port, &dir.join("s8"));
    let (a7, a8): (SocketAddr, SocketAddr) = (
        format!("127.0.0.8:{port}").parse().unwrap(),
        format!("127.0.0.9:{port}").parse().unwrap(),
    );
    assert!(wait_listening(a7), "session 7's server is not on {a7}");
    assert!(wait_listening(a8), "session 8's server is not on {a8}");
    // Straight to the addresses, without the layer: each session's own page.
    assert!(http_get(a7).contains("page of session 7"));
    assert!(http_get(a8).contains("page of session 8"));
    if have("ss") {
        let ss = ss_listening("-ltn");
        assert!(ss.contains(&format!("127.0.0.8:{port}")), "{ss}");
        assert!(ss.contains(&format!("127.0.0.9:{port}")), "{ss}");
        assert!(!ss.contains(&format!("127.0.0.1:{port} ")), "{ss}");
    } else {
        eprintln!("note: `ss` is not installed; checked the listeners by connecting instead");
    }
    // curl asks for 127.0.0.1 and gets its own session's page.
    for s in [7, 8] {
        let mut c = in_session(&lib, &policy, s, "curl");
        c.args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/")]);
        let out = run(c);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("page of session {s}\n"),
            "{}",
            text(&out)
        );
    }
    // Without the layer nobody listens on 127.0.0.1:PORT.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unlisted_program_and_excluded_port_are_left_alone() {
    require!("python3", "curl");
    let lib = preload_lib();
    let dir = scratch("left-alone");
    std::fs::write(dir.join("index.html"), "native\n").unwrap();
    let py = python_image();

    // python is not in the programs list: its bind is not rewritten.
    let unlisted = write_policy(&dir, "unlisted.toml", &loopback_policy(&["curl"], &[]));
    let port = free_port();
    let _a = http_server(&lib, &unlisted, 7, "127.0.0.1", port, &dir);
    assert!(
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap()),
        "unlisted python moved off 127.0.0.1"
    );
    assert!(TcpStream::connect(("127.0.0.8", port)).is_err());

    // python is listed but the port is excluded: its bind and curl's connect stay on 127.0.0.1.
    let port2 = free_port();
    let excluded = write_policy(
        &dir,
        "excluded.toml",
        &loopback_policy(&["python3", &py, "curl"], &[port2]),
    );
    let _b = http_server(&lib, &excluded, 7, "127.0.0.1", port2, &dir);
    assert!(
        wait_listening(format!("127.0.0.1:{port2}").parse().unwrap()),
        "excluded port was rewritten"
    );
    assert!(TcpStream::connect(("127.0.0.8", port2)).is_err());
    let mut c = in_session(&lib, &excluded, 7, "curl");
    c.args(["-s", "-m", "5", &format!("http://127.0.0.1:{port2}/")]);
    let out = run(c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "native\n",
        "{}",
        text(&out)
    );

    // A console session is never rewritten.
    let listed = write_policy(
        &dir,
        "listed.toml",
        &loopback_policy(&["python3", &py], &[]),
    );
    let port3 = free_port();
    let mut c = in_session(&lib, &listed, 7, "python3");
    c.env("IPVIRT_SESSION_KIND", "console")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port3.to_string(),
            "--directory",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _c = Guard(c.spawn().unwrap());
    assert!(
        wait_listening(format!("127.0.0.1:{port3}").parse().unwrap()),
        "console session was rewritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("bound", s.getsockname(), flush=True)
s.settimeout(20)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
port = int(sys.argv[1])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(b"ping", ("127.0.0.1", port))
print("local", c.getsockname()[0], flush=True)
data, src = c.recvfrom(2048)
print("reply", data.decode(), src[0], src[1], flush=True)
"#;

#[test]
fn udp_echo_reply_comes_from_the_address_the_client_used() {
    require!("python3");
    let lib = preload_lib();
    let dir = scratch("udp");
    let py = python_image();
    let policy = write_policy(
        &dir,
        "policy.toml",
        &loopback_policy(&["python3", &py], &[]),
    );
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut server = in_session(&lib, &policy, 7, "python3");
    server
        .args(["-c", UDP_SERVER, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Guard(server.spawn().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    // The server sees the address it asked for…
    assert!(line.contains("('127.0.0.1',"), "{line}");
    // …but really holds the session's: a native probe to 127.0.0.8 gets the echo.
    let probe = std::net::UdpSocket::bind("127.0.0.8:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe.send_to(b"probe", ("127.0.0.8", port)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = probe.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"probe"[..], format!("127.0.0.8:{port}").parse().unwrap())
    );

    let mut client = in_session(&lib, &policy, 7, "python3");
    client.args(["-c", UDP_CLIENT, &port.to_string()]);
    let out = run(client);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // getsockname after the implicit bind reports what the kernel would have: 0.0.0.0.
    assert!(t.contains("local 0.0.0.0"), "{t}");
    // The reply's source is the address the client sent to.
    assert!(t.contains(&format!("reply ping 127.0.0.1 {port}")), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The virtual-IP scenario, inside an unprivileged user + network namespace with documentation
/// addresses on `lo`: 192.0.2.10 is the server's address, .101 and .102 the VIPs of sessions 7 and 8.
const VIP_SCRIPT: &str = r#"
set -u
ip link set lo up
ip addr add 192.0.2.10/24 dev lo
ip addr add 192.0.2.101/32 dev lo
ip addr add 192.0.2.102/32 dev lo
PIDS=""
trap 'kill $PIDS 2>/dev/null' EXIT
serve() { # session vip bind port dir policy log
  ( cd "$5" && IPVIRT_SESSION=$1 IPVIRT_VIP=$2 IPVIRT_POLICY=$6 LD_PRELOAD=$LIB \
      exec timeout 30 python3 -m http.server --bind "$3" "$4" >"$7" 2>&1 ) &
  PIDS="$PIDS $!"
}
client() { # session vip policy url
  IPVIRT_SESSION=$1 IPVIRT_VIP=$2 IPVIRT_POLICY=$3 LD_PRELOAD=$LIB curl -s -m 5 -o /dev/null -w '%{http_code}' "$4"
}
wait_for() { for i in $(seq 100); do curl -s -m 1 -o /dev/null "$1" && return 0; sleep 0.1; done; echo "TIMEOUT $1"; }
serve 7 192.0.2.101 0.0.0.0 $PORT $DIR $POLICY $DIR/a.log
serve 8 192.0.2.102 0.0.0.0 $PORT $DIR $POLICY $DIR/b.log
serve 7 192.0.2.101 127.0.0.1 $PORT2 $DIR $POLICY $DIR/lo.log
wait_for http://192.0.2.101:$PORT/
wait_for http://192.0.2.102:$PORT/
wait_for http://127.0.0.8:$PORT2/
# Only what the clients below log counts, not the readiness probes above.
NB=$(wc -l < $DIR/b.log); NLO=$(wc -l < $DIR/lo.log)
echo "LISTEN $(ss -ltn 2>/dev/null | grep -E ":($PORT|$PORT2) " | awk '{print $4}' | sort | tr '\n' ' ')"
echo "A_FROM_7 $(client 7 192.0.2.101 $POLICY http://192.0.2.102:$PORT/)"
echo "LOOP_PREFER $(client 7 192.0.2.101 $PREFER http://127.0.0.1:$PORT2/)"
echo "LOOP_NOPREFER $(client 7 192.0.2.101 $POLICY http://127.0.0.1:$PORT2/)"
# Stop the servers and wait for them (timeout passes SIGTERM on and waits for python), so no
# process writes the logs while they are read.
kill $PIDS 2>/dev/null; wait
echo "B_LOG $(tail -n +$((NB + 1)) $DIR/b.log | grep -o '^[0-9.]* - - ' | tr '\n' ' ')"
echo "LO_LOG $(tail -n +$((NLO + 1)) $DIR/lo.log | grep -o '^[0-9.]* - - ' | tr '\n' ' ')"
"#;

#[test]
fn virtual_ips_in_a_network_namespace() {
    require!("python3", "curl", "unshare", "ip", "ss");
    let lib = preload_lib();
    let probe = Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!(
            "skipped: this machine does not allow an unprivileged network namespace (unshare -rn)"
        );
        return;
    }
    let dir = scratch("vip");
    std::fs::write(dir.join("index.html"), "hello\n").unwrap();
    let py = python_image();
    let programs = format!("[\"python3\", \"{py}\", \"curl\"]");
    let base = format!(
        "[virtual_loopback]\nenabled = true\nprograms = {programs}\n\n\
         [virtual_ip]\nenabled = true\nmode = \"per-program\"\nprograms = {programs}\n\
         adapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100-192.0.2.199\"]\n"
    );
    let policy = write_policy(&dir, "policy.toml", &base);
    let prefer = write_policy(
        &dir,
        "prefer.toml",
        &format!("{base}\n[prefer_loopback]\nenabled = true\nprocesses = [\"curl\"]\n"),
    );
    let (port, port2) = (free_port(), free_port());
    let out = Command::new("timeout")
        .args(["60", "unshare", "-rn", "sh", "-c", VIP_SCRIPT])
        .env("LIB", &lib)
        .env("DIR", &dir)
        .env("POLICY", &policy)
        .env("PREFER", &prefer)
        .env("PORT", port.to_string())
        .env("PORT2", port2.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    let line = |key: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or("")
            .to_string()
    };
    assert!(!t.contains("TIMEOUT"), "{t}");
    // Two servers on 0.0.0.0:PORT coexist, each on its session's VIP; the loopback one on 127.0.0.8.
    let listen = line("LISTEN");
    for want in [
        format!("192.0.2.101:{port}"),
        format!("192.0.2.102:{port}"),
        format!("127.0.0.8:{port2}"),
    ] {
        assert!(listen.contains(&want), "{want} not in {listen:?}\n{t}");
    }
    // Session 7's curl reaches session 8's server, and its connection originates from its VIP.
    assert_eq!(line("A_FROM_7"), "200", "{t}");
    assert_eq!(line("B_LOG").trim(), "192.0.2.101 - -", "{t}");
    // Loopback connections: with preferred loopback the peer is loopback (shown as 127.0.0.1, the
    // address the server asked for); without it they originate from the VIP.
    assert_eq!(line("LOOP_PREFER"), "200", "{t}");
    assert_eq!(line("LOOP_NOPREFER"), "200", "{t}");
    assert_eq!(
        line("LO_LOG").split_whitespace().collect::<Vec<_>>(),
        ["127.0.0.1", "-", "-", "192.0.2.101", "-", "-"],
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_layer_is_invisible_at_the_edges() {
    require!("cc");
    let lib = preload_lib();
    let dir = scratch("fidelity");
    let exe = dir.join("fidelity");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/fidelity.c");
    let cc = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc failed:\n{}", text(&cc));
    let policy = write_policy(&dir, "policy.toml", &loopback_policy(&["fidelity"], &[]));
    let port = free_port();
    let native = run({
        let mut c = Command::new(&exe);
        c.arg(port.to_string());
        c
    });
    let layered = run({
        let mut c = in_session(&lib, &policy, 7, exe.to_str().unwrap());
        c.env("IPVIRT_DEBUG", "1").arg(port.to_string());
        c
    });
    let (n, l) = (
        String::from_utf8_lossy(&native.stdout),
        String::from_utf8_lossy(&layered.stdout),
    );
    assert!(
        native.status.success() && layered.status.success(),
        "native:\n{n}\nlayered:\n{l}\n{}",
        text(&layered)
    );
    // The layer really acted (its debug lines name the rewrites)…
    let log = String::from_utf8_lossy(&layered.stderr);
    assert!(
        log.contains("bind 127.0.0.1:") && log.contains("127.0.0.8:"),
        "the layer did nothing:\n{log}"
    );
    // …and the program could not tell.
    for (a, b) in n.lines().zip(l.lines()) {
        assert_eq!(
            a, b,
            "native vs layered differ\nnative:\n{n}\nlayered:\n{l}"
        );
    }
    assert_eq!(
        n.lines().count(),
        l.lines().count(),
        "native:\n{n}\nlayered:\n{l}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const BIND_PROBE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind((sys.argv[1], 0))
    print("bound", s.getsockname()[0])
except OSError as e:
    print("errno", e.errno)
"#;

#[test]
fn no_connectivity_fails_with_eaddrnotavail() {
    require!("python3");
    let lib = preload_lib();
    let dir = scratch("no-connectivity");
    let policy = write_policy(
        &dir,
        "policy.toml",
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\non_lease_failure = \"no-connectivity\"\n",
    );
    // No IPVIRT_VIP: the session has no VIP, and the policy says no connectivity.
    let mut c = in_session(&lib, &policy, 7, "python3");
    c.args(["-c", BIND_PROBE, "0.0.0.0"]);
    let out = run(c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("errno {}", libc::EADDRNOTAVAIL),
        "{}",
        text(&out)
    );
    // Loopback still works for such a session.
    let mut c = in_session(&lib, &policy, 7, "python3");
    c.args(["-c", BIND_PROBE, "127.0.0.1"]);
    assert_eq!(
        String::from_utf8_lossy(&run(c).stdout).trim(),
        "bound 127.0.0.1"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_prints_one_line_and_changes_nothing() {
    require!("python3");
    let lib = preload_lib();
    let dir = scratch("bad-config");
    let py = python_image();
    let good = write_policy(&dir, "good.toml", &loopback_policy(&["python3", &py], &[]));
    let broken = write_policy(&dir, "broken.toml", "[virtual_loopback]\nenabled = yes\n");
    let cases: [(&str, Option<&Path>, &str, &str); 4] = [
        (
            "7",
            Some(&dir.join("missing.toml")),
            "IPVIRT_POLICY",
            "missing.toml",
        ),
        (
            "7",
            Some(broken.as_path()),
            "broken.toml: policy line 2",
            "line 2",
        ),
        (
            "seven",
            Some(good.as_path()),
            "IPVIRT_SESSION=\"seven\"",
            "not a decimal number",
        ),
        ("7", None, "IPVIRT_POLICY is not set", "IPVIRT_POLICY"),
    ];
    for (session, policy, want1, want2) in cases {
        let mut c = Command::new("python3");
        c.env("LD_PRELOAD", &lib)
            .env("IPVIRT_SESSION", session)
            .env_remove("IPVIRT_VIP");
        match policy {
            Some(p) => c.env("IPVIRT_POLICY", p),
            None => c.env_remove("IPVIRT_POLICY"),
        };
        c.args(["-c", BIND_PROBE, "127.0.0.1"]);
        let out = run(c);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ipvirt:"))
            .collect();
        // One line per process: python3 through the pyenv shim may run a shell first, which prints its own.
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.contains(want1) && l.contains(want2)),
            "{stderr}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.ends_with("socket calls are left unchanged")),
            "{stderr}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "bound 127.0.0.1",
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
