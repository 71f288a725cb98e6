//! The kernel layer end to end (SPEC §9): real programs — statically linked ones included — in
//! sessions started by `ipvirt run --layer kernel`, on loopback and in network namespaces of
//! the test's own.
//!
//! Needs root, a cgroup2 hierarchy, kernel BTF, and the programs (busybox-static, go, python3,
//! curl, ss, unshare, ip); `.ci/run` installs them. Elsewhere every test prints why it skips.
//! Each test attaches the layer at a root cgroup of its own (`ipvirt-test-<pid>-<name>`) and
//! detaches it at the end, so tests run in parallel without sharing a policy.

// geteuid(2).
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipvirt_kernel::sys;
use ipvirt_testkit::{Guard, free_port, have};

const DEADLINE: Duration = Duration::from_secs(20);

/// Why the kernel layer cannot be tested here, if it cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = ipvirt_testkit::kernel_unavailable() {
        return Some(why);
    }
    for cmd in [
        "busybox", "go", "python3", "curl", "ss", "ip", "unshare", "gcc",
    ] {
        if !have(cmd) {
            return Some(format!("`{cmd}` is not installed"));
        }
    }
    None
}

macro_rules! require_kernel {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-kernel-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tests/programs/netprobe.go`, built once, statically (CGO_ENABLED=0).
fn netprobe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("ipvirt-netprobe-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join("netprobe");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/netprobe.go");
            let o = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .env("CGO_ENABLED", "0")
                .env("GOCACHE", dir.join("gocache"))
                .env("GOPATH", dir.join("gopath"))
                .env("GO111MODULE", "off")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "go build: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            out
        })
        .clone()
}

/// The basename of python's executable (what the layers match).
fn python_image() -> String {
    let o = Command::new("python3")
        .args([
            "-c",
            "import os; print(os.path.basename(os.readlink('/proc/self/exe')))",
        ])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// One attachment root with its policy; detached (after its sessions end) on drop.
struct Root {
    name: String,
    dir: PathBuf,
    policy: PathBuf,
    launcher: PathBuf,
    children: Vec<Guard>,
}

impl Root {
    fn new(test: &str, policy: &str) -> Root {
        let dir = scratch(test);
        let path = dir.join("policy.toml");
        std::fs::write(&path, policy).unwrap();
        Root {
            name: format!("ipvirt-test-{}-{test}", std::process::id()),
            dir,
            policy: path,
            launcher: PathBuf::from(env!("CARGO_BIN_EXE_ipvirt")),
            children: Vec::new(),
        }
    }

    fn cgroup(&self) -> PathBuf {
        ipvirt_testkit::cgroup2_mount().unwrap().join(&self.name)
    }

    /// `ipvirt run --layer kernel --id ID ... -- PROGRAM ARGS`.
    fn session(&self, id: u32, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.launcher);
        c.args([
            "run",
            "--layer",
            "kernel",
            "--kernel-root",
            &self.name,
            "--id",
            &id.to_string(),
        ])
        .arg("--policy")
        .arg(&self.policy)
        .arg("--lease-book")
        .arg(self.dir.join("leases.json"))
        .arg("--")
        .arg(program)
        .args(args);
        c
    }

    /// Starts a long-running command; returns its stdout's lines.
    fn start(&mut self, mut cmd: Command) -> mpsc::Receiver<String> {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.children.push(Guard(child));
        rx
    }

    /// Starts a server and waits for its "listening" line.
    fn serve(&mut self, cmd: Command) -> String {
        let rx = self.start(cmd);
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the server says it listens");
        assert!(line.starts_with("listening "), "{line}");
        line
    }

    fn detach(&self) -> Output {
        Command::new(&self.launcher)
            .args(["kernel", "detach", "--root", &self.name])
            .output()
            .unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Kill the launchers and everything left in the sessions, then detach.
        self.children.clear();
        kill_sessions(&self.cgroup());
        let _ = self.detach();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills every process in the root's session cgroups, and waits until they are empty.
fn kill_sessions(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for d in rd.flatten().filter(|d| d.path().is_dir()) {
        let kill = d.path().join("cgroup.kill");
        let _ = std::fs::write(&kill, "1");
        wait_for(|| !populated(&d.path()), "a killed session cgroup empties");
    }
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|s| s.lines().any(|l| l == "populated 1"))
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The local addresses `ss` lists for `port` (`-l`: listening TCP, or `-u`: UDP).
fn ss(flags: &str, port: u16) -> Vec<String> {
    let o = Command::new("ss")
        .args([flags, "-Hn", "sport", "=", &format!(":{port}")])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect();
    v.sort();
    v
}

fn wait_listening(flags: &str, port: u16, want: &[&str]) {
    let start = Instant::now();
    loop {
        let got = ss(flags, port);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "ss {flags} for port {port}: {got:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(mut cmd: Command) -> String {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() || out.starts_with("error "),
        "{cmd:?} failed: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn loopback_policy(programs: &[&str], extra: &str) -> String {
    format!(
        "platform = \"other\"\n[virtual_loopback]\nenabled = true\nprograms = {programs:?}\n{extra}"
    )
}

#[test]
fn two_sessions_run_static_and_dynamic_servers_on_one_port() {
    require_kernel!();
    let probe = netprobe();
    let py = python_image();
    let mut root = Root::new(
        "servers",
        &loopback_policy(&["busybox", "netprobe", &py, "curl"], ""),
    );
    let probe = probe.to_str().unwrap();

    // The static Go server: what it prints (getsockname, accept's peer) is 127.0.0.1.
    let port = free_port();
    for id in [7, 8] {
        let line = root.serve(root.session(
            id,
            probe,
            &["serve-tcp", &format!("127.0.0.1:{port}"), &format!("s{id}")],
        ));
        assert_eq!(line, format!("listening 127.0.0.1:{port}"));
    }
    wait_listening(
        "-lt",
        port,
        &[&format!("127.0.0.8:{port}"), &format!("127.0.0.9:{port}")],
    );
    for id in [7, 8] {
        let out = run(root.session(id, probe, &["get-tcp", &format!("127.0.0.1:{port}")]));
        let mut lines = out.lines();
        let server = lines.next().unwrap();
        assert!(
            server.starts_with(&format!("s{id} peer=127.0.0.1:")),
            "{out}"
        );
        assert!(
            server.ends_with(&format!("local=127.0.0.1:{port}")),
            "{out}"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .ends_with(&format!("remote=127.0.0.1:{port}")),
            "{out}"
        );
    }

    // busybox httpd (static) and python's http.server, each session serving its own file.
    for (kind, port) in [("busybox", free_port()), ("python", free_port())] {
        for id in [7u32, 8] {
            let www = root.dir.join(format!("{kind}-{id}"));
            std::fs::create_dir_all(&www).unwrap();
            std::fs::write(www.join("who"), format!("{kind} session {id}\n")).unwrap();
            let cmd = if kind == "busybox" {
                root.session(
                    id,
                    "busybox",
                    &[
                        "httpd",
                        "-f",
                        "-p",
                        &format!("127.0.0.1:{port}"),
                        "-h",
                        www.to_str().unwrap(),
                    ],
                )
            } else {
                root.session(
                    id,
                    "python3",
                    &[
                        "-m",
                        "http.server",
                        "--bind",
                        "127.0.0.1",
                        "-d",
                        www.to_str().unwrap(),
                        &port.to_string(),
                    ],
                )
            };
            root.start(cmd);
        }
        wait_listening(
            "-lt",
            port,
            &[&format!("127.0.0.8:{port}"), &format!("127.0.0.9:{port}")],
        );
        for id in [7u32, 8] {
            let body = run(root.session(
                id,
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "10",
                    &format!("http://127.0.0.1:{port}/who"),
                ],
            ));
            assert_eq!(body, format!("{kind} session {id}\n"));
        }
    }
}

#[test]
fn udp_replies_come_back_from_localhost() {
    require_kernel!();
    let probe = netprobe();
    let mut root = Root::new("udp", &loopback_policy(&["netprobe"], ""));
    let probe = probe.to_str().unwrap();
    let port = free_port();
    for id in [7, 8] {
        root.serve(root.session(id, probe, &["serve-udp", &format!("127.0.0.1:{port}")]));
    }
    wait_listening(
        "-lu",
        port,
        &[&format!("127.0.0.8:{port}"), &format!("127.0.0.9:{port}")],
    );
    for id in [7, 8] {
        let out = run(root.session(id, probe, &["udp-sendto", &format!("127.0.0.1:{port}")]));
        assert!(
            out.starts_with(&format!(
                "reply from=127.0.0.1:{port} data=echo from=127.0.0.1:"
            )),
            "{out}"
        );
        let out = run(root.session(id, probe, &["udp-connected", &format!("127.0.0.1:{port}")]));
        assert!(out.starts_with("reply local=127.0.0.1:"), "{out}");
        assert!(
            out.contains(&format!(
                "remote=127.0.0.1:{port} data=echo from=127.0.0.1:"
            )),
            "{out}"
        );
    }
}

#[test]
fn isolation_exclusions_and_per_program_scope() {
    require_kernel!();
    let probe = netprobe();
    let excluded = free_port();
    let mut root = Root::new(
        "isolation",
        &loopback_policy(
            &["netprobe"],
            &format!("isolate = true\nexcluded_ports = [{excluded}]\n"),
        ),
    );
    let probe = probe.to_str().unwrap();
    let port = free_port();
    root.serve(root.session(8, probe, &["serve-tcp", &format!("127.0.0.1:{port}"), "s8"]));
    wait_listening("-lt", port, &[&format!("127.0.0.9:{port}")]);
    // Session 7 may not reach session 8's loopback address, nor bind it.
    let out = run(root.session(7, probe, &["get-tcp", &format!("127.0.0.9:{port}")]));
    assert_eq!(out.trim(), "error 111");
    let out = run(root.session(7, probe, &["bind", &format!("127.0.0.9:{}", free_port())]));
    assert_eq!(out.trim(), "error 13");
    // An excluded port stays on the shared address.
    root.serve(root.session(
        7,
        probe,
        &["serve-tcp", &format!("127.0.0.1:{excluded}"), "x"],
    ));
    wait_listening("-lt", excluded, &[&format!("127.0.0.1:{excluded}")]);
    // An unlisted program (busybox) in the same session is left alone.
    let p2 = free_port();
    root.start(root.session(
        7,
        "busybox",
        &["httpd", "-f", "-p", &format!("127.0.0.1:{p2}"), "-h", "/"],
    ));
    wait_listening("-lt", p2, &[&format!("127.0.0.1:{p2}")]);
}

#[test]
fn virtual_ips_dual_stack_and_ipv6_localhost_in_a_namespace() {
    require_kernel!();
    let probe = netprobe();
    let py = python_image();
    let pref = probe.with_file_name("netprobe-pref");
    if !pref.exists() {
        std::fs::copy(&probe, &pref).unwrap();
    }
    let root = Root::new(
        "vip",
        &format!(
            "platform = \"other\"\n[virtual_loopback]\nenabled = true\nprograms = [\"netprobe\", \"netprobe-pref\", \"{py}\", \"busybox\"]\nipv6 = \"map\"\n\
             [virtual_ip]\nenabled = true\nmode = \"per-program\"\nprograms = [\"netprobe\", \"netprobe-pref\", \"busybox\"]\n\
             adapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100-192.0.2.101\"]\n\
             [prefer_loopback]\nenabled = true\nprocesses = [\"netprobe-pref\"]\n"
        ),
    );
    let (p1, p2, p3, p4, p5) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let s = |id: u32, args: &str| {
        let c = root.session(id, "PROG", &[]);
        let words: Vec<String> = std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        format!("{} {args}", words[..words.len() - 1].join(" "))
    };
    let probe = probe.to_str().unwrap();
    let pref = pref.to_str().unwrap();
    // Everything runs inside a network namespace of our own, with the VIPs on its lo.
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 192.0.2.100/32 dev lo
ip addr add 192.0.2.101/32 dev lo
wait_ss() {{ for i in $(seq 500); do [ "$(ss -Hltn sport = :$1 | wc -l)" -ge "$2" ] && return 0; sleep 0.02; done; echo "timeout waiting for $1"; exit 1; }}
# The servers' output goes to files: the test reads this script's output to its end.
# Session 7 leases first (192.0.2.100), then session 8 (192.0.2.101).
{s7} {probe} serve-tcp 0.0.0.0:{p1} s7 > s7.out 2>&1 & A=$!
wait_ss {p1} 1
{s8} {probe} serve-tcp :{p1} s8 > s8.out 2>&1 & B=$!
{s7} python3 -c "import socket,time; s=socket.socket(socket.AF_INET6); s.bind(('::1',{p2})); s.listen(); o=socket.socket(socket.AF_INET6); o.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); o.bind(('::1',{p5})); o.listen(); print('v6', s.getsockname()[0], flush=True); c,a=s.accept(); c.send(a[0].encode()); time.sleep(1)" > v6.out 2>&1 & C=$!
{s8} {probe} serve-tcp 127.0.0.1:{p3} s8-lo > s8lo.out 2>&1 & D=$!
{s7} busybox httpd -f -p 0.0.0.0:{p4} -h . > httpd.out 2>&1 & E=$!
wait_ss {p1} 2; wait_ss {p2} 1; wait_ss {p3} 1; wait_ss {p4} 1; wait_ss {p5} 1
echo "ss $(ss -Hltn sport = :{p1} or sport = :{p2} or sport = :{p4} or sport = :{p5} | awk '{{print $4}}' | sort | tr '\n' ' ')"
echo "get7 $({s7} {probe} get-tcp 192.0.2.101:{p1} | head -1)"
echo "pref $({s8} {pref} get-tcp 127.0.0.1:{p3} | head -1)"
echo "nopref $({s8} {probe} get-tcp 127.0.0.1:{p3} | head -1)"
echo "v6client $({s7} python3 -c "import socket; s=socket.create_connection(('::1',{p2})); print(s.getpeername()[0], s.recv(100).decode())")"
echo "v6server $(grep ^v6 v6.out)"
kill $A $B $C $D $E 2>/dev/null || true
wait
"#,
        s7 = s(7, ""),
        s8 = s(8, ""),
    );
    let o = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .current_dir(&root.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{out}\n{err}");
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} line in:\n{out}\n{err}"))
            .trim()
            .to_string()
    };
    // 0.0.0.0 becomes the VIP (busybox: an AF_INET socket); Go listens on an AF_INET6 "::"
    // socket for both "0.0.0.0:P" and ":P", bound to ::ffff:VIP; ::1 is mapped to the session's
    // loopback address (SPEC §8) on a dual-stack socket, and left alone on a v6-only one.
    let mut want = [
        format!("[::1]:{p5}"),
        format!("192.0.2.100:{p4}"),
        format!("[::ffff:127.0.0.8]:{p2}"),
        format!("[::ffff:192.0.2.100]:{p1}"),
        format!("[::ffff:192.0.2.101]:{p1}"),
    ];
    want.sort();
    assert_eq!(line("ss"), want.join(" "), "{out}");
    // Session 7 reaches session 8's server on its VIP, from its own VIP.
    assert!(
        line("get7").starts_with("s8 peer=[::ffff:192.0.2.100]:")
            || line("get7").starts_with("s8 peer=192.0.2.100:"),
        "{out}"
    );
    // Preferred loopback: the loopback source; otherwise the VIP is the source of everything.
    assert!(line("pref").starts_with("s8-lo peer=127.0.0.1:"), "{out}");
    assert!(
        line("nopref").starts_with("s8-lo peer=192.0.2.101:"),
        "{out}"
    );
    // Both ends of the mapped ::1 connection see ::1.
    assert_eq!(line("v6client"), "::1 ::1");
    assert_eq!(line("v6server"), "v6 ::1");
}

/// The programs attached at a root, by id.
fn attached_ids(root: &Path) -> Vec<u32> {
    let dir: OwnedFd = std::fs::File::open(root).unwrap().into();
    let mut ids = Vec::new();
    for ty in [8, 9, 10, 11, 14, 15, 19, 20, 29, 30, 31, 32] {
        ids.extend(sys::prog_query(dir.as_raw_fd(), ty).unwrap());
    }
    ids.sort_unstable();
    ids
}

#[test]
fn a_killed_launcher_leaves_the_session_virtualized_and_detach_restores_the_host() {
    require_kernel!();
    let probe = netprobe();
    let root = Root::new("faults", &loopback_policy(&["netprobe"], ""));
    let probe = probe.to_str().unwrap();
    let port = free_port();
    // The command waits for a line on stdin, then starts a server.
    let mut launcher = root
        .session(
            7,
            "sh",
            &[
                "-c",
                &format!("read go; exec {probe} serve-tcp 127.0.0.1:{port} s7"),
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = launcher.stdin.take().unwrap();
    let session = root.cgroup().join("session-7");
    wait_for(
        || populated(&session),
        "the session's cgroup has its command",
    );
    let before = attached_ids(&root.cgroup());
    assert_eq!(before.len(), 12, "all twelve programs are attached");
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    // The launcher is gone; its command binds only now, and is still virtualized.
    writeln!(stdin, "go").unwrap();
    wait_listening("-lt", port, &[&format!("127.0.0.8:{port}")]);
    // A second launcher reuses the attached programs.
    let out = run(root.session(7, probe, &["get-tcp", &format!("127.0.0.1:{port}")]));
    assert!(out.starts_with("s7 peer=127.0.0.1:"), "{out}");
    assert_eq!(attached_ids(&root.cgroup()), before);
    // Detaching is refused while the session runs…
    let o = root.detach();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("session 7"),
        "{o:?}"
    );
    // …and once it has ended, restores the host: no cgroup, no programs left.
    kill_sessions(&root.cgroup());
    let o = root.detach();
    assert!(o.status.success(), "{o:?}");
    assert!(!root.cgroup().exists());
    for id in before {
        let e = sys::prog_fd_by_id(id).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOENT),
            "program {id} still exists"
        );
    }
    drop(stdin);
}

#[test]
fn the_layer_is_invisible_to_a_static_program() {
    require_kernel!();
    let mut root = Root::new("fidelity", &loopback_policy(&["fidelity"], ""));
    let exe = root.dir.join("fidelity");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../preload/tests/c/fidelity.c");
    let cc = Command::new("gcc")
        .args([
            "-static", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let port = free_port();
    let native = run({
        let mut c = Command::new(&exe);
        c.arg(port.to_string());
        c
    });
    let kernel = run(root.session(7, exe.to_str().unwrap(), &[&port.to_string()]));
    assert_eq!(
        native.lines().count(),
        kernel.lines().count(),
        "native:\n{native}\nkernel:\n{kernel}"
    );
    for (a, b) in native.lines().zip(kernel.lines()) {
        assert_eq!(
            a, b,
            "native vs kernel session differ\nnative:\n{native}\nkernel:\n{kernel}"
        );
    }
    root.children.clear();
}

/// The per-task cache (the programs keep each task's session and program entries in task
/// storage) follows the task: a move to another session's cgroup, and an `execve` of another
/// executable, each give the new answer at the very next call.
#[test]
fn the_per_task_cache_follows_cgroup_moves_and_exec() {
    require_kernel!();
    let probe = netprobe();
    let probe = probe.to_str().unwrap();
    let python = python_image();
    // python binds twice (in session 7, then moved into session 8), waits for a line on stdin,
    // then becomes netprobe serving on a third port.
    const SCRIPT: &str = r#"
import os, socket, sys
procs, p1, p2, probe, p3 = sys.argv[1:6]
def listen(port):
    s = socket.socket()
    s.bind(("127.0.0.1", int(port)))
    s.listen()
    return s
a = listen(p1)
print("first", flush=True)
with open(procs, "w") as f:
    f.write("0")
b = listen(p2)
print("second", flush=True)
sys.stdin.readline()
os.execv(probe, [probe, "serve-tcp", "127.0.0.1:" + p3, "x"])
"#;
    // listed: python; netprobe is unlisted. Then the other way round.
    for (test, listed, want_python, want_probe) in [
        (
            "cache-listed",
            &python,
            ["127.0.0.8", "127.0.0.9"],
            "127.0.0.1",
        ),
        (
            "cache-unlisted",
            &"netprobe".to_string(),
            ["127.0.0.1", "127.0.0.1"],
            "127.0.0.9",
        ),
    ] {
        let mut root = Root::new(test, &loopback_policy(&[listed], ""));
        // Session 8 exists while a sleeper holds it.
        root.start(root.session(8, "sleep", &["600"]));
        let s8 = root.cgroup().join("session-8");
        wait_for(|| populated(&s8), "session 8 starts");
        let (p1, p2, p3) = (free_port(), free_port(), free_port());
        let procs = s8.join("cgroup.procs");
        let mut cmd = root.session(
            7,
            "python3",
            &[
                "-c",
                SCRIPT,
                procs.to_str().unwrap(),
                &p1.to_string(),
                &p2.to_string(),
                probe,
                &p3.to_string(),
            ],
        );
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        root.children.push(Guard(child));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next = || rx.recv_timeout(DEADLINE).expect("a line from the program");
        assert_eq!(next(), "first", "{test}");
        wait_listening("-lt", p1, &[&format!("{}:{p1}", want_python[0])]);
        assert_eq!(next(), "second", "{test}");
        wait_listening("-lt", p2, &[&format!("{}:{p2}", want_python[1])]);
        writeln!(stdin, "go").unwrap();
        assert!(next().starts_with("listening "), "{test}");
        // After the exec the task is still in session 8's cgroup.
        wait_listening("-lt", p3, &[&format!("{want_probe}:{p3}")]);
    }
}

/// Issue 23, item 8: a process outside every session that uses a socket a session made and passed
/// to it (`SCM_RIGHTS`; a socket keeps the cgroup it was made in, and the kernel runs that
/// cgroup's programs) is left alone (SPEC §12): its bind, connect and send work as natively,
/// where they failed with EPERM. The sockets are made by python in session 7 (listed, so its own
/// calls are virtualized) and used by python outside.
#[test]
fn a_process_outside_every_session_is_left_alone_with_a_sessions_socket() {
    require_kernel!();
    let python = python_image();
    let mut root = Root::new("passed", &loopback_policy(&[&python], "isolate = true\n"));
    let path = root.dir.join("fds.sock");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = r#"
import socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1]); srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 2)
udp = socket.socket(fileno=fds[0]); tcp = socket.socket(fileno=fds[1])
out = []
for what, f in [("bind", lambda: udp.bind(("127.0.0.1", 0)) or udp.getsockname()[0]),
                ("send", lambda: udp.sendto(b"x", ("127.0.0.1", int(sys.argv[2]))) and "ok"),
                ("connect", lambda: tcp.connect(("127.0.0.1", int(sys.argv[2]))) or tcp.getsockname()[0] + ">" + tcp.getpeername()[0])]:
    try:
        out.append(what + "=" + f())
    except OSError as e:
        out.append(what + "=errno" + str(e.errno))
print(" ".join(out), flush=True)
conn.sendall(b"done")
"#;
    let sender = r#"
import socket, sys
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sys.argv[1])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
socket.send_fds(c, [b"x"], [udp.fileno(), tcp.fileno()])
c.recv(4)
print("sent")
"#;
    let mut outside = Command::new("python3");
    outside
        .args(["-c", receiver])
        .arg(&path)
        .arg(port.to_string());
    let lines = root.start(outside);
    assert_eq!(
        lines.recv_timeout(DEADLINE).expect("the receiver listens"),
        "listening"
    );
    let sent = run(root.session(7, "python3", &["-c", sender, path.to_str().unwrap()]));
    assert_eq!(sent.trim(), "sent");
    let got = lines.recv_timeout(DEADLINE).expect("the receiver reports");
    assert_eq!(got, "bind=127.0.0.1 send=ok connect=127.0.0.1>127.0.0.1");
    drop(listener);
}
