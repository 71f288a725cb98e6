//! SPEC §8 end to end: Node.js resolves `localhost` to `::1`, so two sessions' `node` servers on
//! `localhost:PORT` clash on `[::1]:PORT` even with virtual loopback on — unless
//! `virtual_loopback.ipv6 = "map"`. With it, each session's server gets its own IPv4-mapped
//! loopback address, and each session's `curl http://localhost:PORT/` reaches its own server.
//!
//! Skips with a printed reason when `node` or `curl` is missing (`.ci/run` installs them).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipvirt_testkit::require;
use ipvirt_testkit::{Guard, free_port, have, in_session, preload_lib};

const SERVER: &str = r#"
const http = require('http');
const [port, session] = process.argv.slice(1);
const server = http.createServer((req, res) => res.end(`session ${session}\n`));
server.on('error', (e) => { console.log(`error ${e.code}`); process.exit(3); });
// What Node >= 17 does with "localhost" where the resolver puts ::1 first (Windows, most
// desktops): it listens on ::1. (This machine's resolver may put 127.0.0.1 first, so the test
// names ::1 itself; the clients below still say "localhost".)
server.listen(Number(port), '::1', () => {
  const a = server.address();
  console.log(`listening ${a.address} ${a.port}`);
});
"#;

/// `curl http://localhost:PORT/` in `session`, retried until it answers (the server may still be
/// starting), with a deadline.
fn get(lib: &Path, policy: &Path, session: u32, port: u16) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = in_session(lib, policy, session, "curl")
            .stdin(Stdio::null())
            .args(["-s", "-m", "5", &format!("http://localhost:{port}/")])
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(lib: &Path, policy: &Path, session: u32, port: u16) -> (Guard, std::process::ChildStdout) {
    let mut child = in_session(lib, policy, session, "node")
        .stdin(Stdio::null())
        .args(["-e", SERVER, &port.to_string(), &session.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    (Guard(child), out)
}

/// The first line the server prints (it prints one when it listens, or one error), read with a
/// deadline by a helper thread.
fn first_line(out: std::process::ChildStdout) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| "timeout".into())
}

#[test]
fn two_sessions_node_servers_on_localhost_coexist_with_the_ipv6_mapping() {
    require!("node", "curl");
    let lib = preload_lib();
    let dir = std::env::temp_dir().join(format!("ipvirt-ipv6-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, ipv6: &str| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!(
                "[virtual_loopback]\nenabled = true\nprograms = [\"node\", \"nodejs\", \"curl\"]\nipv6 = \"{ipv6}\"\n"
            ),
        )
        .unwrap();
        p
    };
    let mapped = write("map.toml", "map");
    let unchanged = write("unchanged.toml", "unchanged");

    // With the mapping: both servers listen, each on its own address, and each reports ::1.
    let port = free_port();
    let (_s7, out7) = start(&lib, &mapped, 7, port);
    let l7 = first_line(out7);
    let (_s8, out8) = start(&lib, &mapped, 8, port);
    let l8 = first_line(out8);
    assert_eq!(l7.trim(), format!("listening ::1 {port}"), "session 7");
    assert_eq!(l8.trim(), format!("listening ::1 {port}"), "session 8");
    let a7 = get(&lib, &mapped, 7, port);
    let a8 = get(&lib, &mapped, 8, port);
    assert_eq!(String::from_utf8_lossy(&a7.stdout), "session 7\n", "{a7:?}");
    assert_eq!(String::from_utf8_lossy(&a8.stdout), "session 8\n", "{a8:?}");
    if have("ss") {
        let ss = Command::new("ss").args(["-ltnH"]).output().unwrap();
        let ss = String::from_utf8_lossy(&ss.stdout);
        assert!(ss.contains(&format!("[::ffff:127.0.0.8]:{port}")), "{ss}");
        assert!(ss.contains(&format!("[::ffff:127.0.0.9]:{port}")), "{ss}");
    }
    drop((_s7, _s8));

    // Without it (the vendors' behaviour): the second server cannot listen.
    let port = free_port();
    let (_u7, out7) = start(&lib, &unchanged, 7, port);
    let l7 = first_line(out7);
    let (_u8, out8) = start(&lib, &unchanged, 8, port);
    let l8 = first_line(out8);
    assert_eq!(l7.trim(), format!("listening ::1 {port}"));
    assert_eq!(l8.trim(), "error EADDRINUSE", "the clash SPEC §8 describes");
    let _ = std::fs::remove_dir_all(&dir);
}
