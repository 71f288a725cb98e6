//! Every login its own identity (SPEC §11), end to end with real components: the `ipvirt`
//! service in the foreground, `pam_ipvirt.so` in a private `sshd`'s PAM stack (a private
//! `/etc/pam.d` bind-mounted in a mount namespace: the host's is never changed), and two test
//! users created for the test and removed after.
//!
//! Needs root, the kernel layer (cgroup2, BTF), `sshd`, `ssh`, `ssh-keygen`, `useradd`, `curl`,
//! `ss`, python3 and busybox-static (`.ci/run` installs them); skips with a printed reason
//! elsewhere. Each test has its own socket, state directory, kernel root, port and users, so the
//! tests run in parallel.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipvirt_host::control::{self, Request, Response, SessionInfo};
use ipvirt_testkit::logins::{AuthLog, STEP, Sshd, User};
use ipvirt_testkit::{Guard, cdylib, free_port, have, kernel_unavailable, require, wait_until};

const IPVIRT: &str = env!("CARGO_BIN_EXE_ipvirt");

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if let Some(why) = kernel_unavailable() {
        return Some(why);
    }
    for cmd in [
        "/usr/sbin/sshd",
        "ssh",
        "ssh-keygen",
        "useradd",
        "userdel",
        "curl",
        "ss",
        "busybox",
        "unshare",
        "pamtester",
    ] {
        if !have(cmd) && !Path::new(cmd).exists() {
            return Some(format!("`{cmd}` is not installed"));
        }
    }
    if !Path::new("/usr/bin/python3").exists() {
        return Some("/usr/bin/python3 is not installed".into());
    }
    None
}

macro_rules! require_logins {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A short tag unique to this test run (user names are at most 32 characters).
fn tag(test: &str) -> String {
    format!("{}{}", test, std::process::id() % 100_000)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-logins-{}", tag(test)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The service in the foreground, with its own socket, state and kernel root; stopped (and the
/// root detached) on drop.
struct Daemon {
    socket: PathBuf,
    root: String,
    child: Option<Guard>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Every complete line the service wrote to stderr, in order (read from a pipe by a thread:
    /// a test never reads a file the service is writing).
    lines: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(dir: &Path, test: &str, policy: &str) -> Daemon {
        Daemon::start_with(dir, test, policy, &[])
    }

    /// [`start`](Self::start) with more arguments.
    fn start_with(dir: &Path, test: &str, policy: &str, more: &[String]) -> Daemon {
        let policy_path = dir.join("policy.toml");
        std::fs::write(&policy_path, policy).unwrap();
        let root = format!("ipvirt-test-{}", tag(test));
        let socket = dir.join("run/control.sock");
        let mut args = vec![
            "daemon".to_owned(),
            "--policy".to_owned(),
            policy_path.display().to_string(),
            "--state-dir".to_owned(),
            dir.join("state").display().to_string(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--kernel-root".to_owned(),
            root.clone(),
            "--log".to_owned(),
            "stderr".to_owned(),
        ];
        args.extend_from_slice(more);
        let mut d = Daemon {
            socket,
            root,
            child: None,
            args,
            env: Vec::new(),
            log: dir.join("daemon.log"),
            lines: Arc::default(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(IPVIRT)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&self.lines);
        // Copies each line to the test's record and to the log file kept for a failed run.
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Ok(mut l) = lines.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        self.child = Some(Guard(child));
        wait_until("the service to answer", STEP, || {
            matches!(
                self.call(&Request::List {}),
                Some(Response::Sessions { .. })
            )
        });
    }

    /// SIGKILL, as the OOM killer would.
    fn kill(&mut self) {
        self.child = None;
    }

    fn call(&self, r: &Request) -> Option<Response> {
        control::call(&self.socket, r, Duration::from_secs(20)).ok()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        match self.call(&Request::List {}) {
            Some(Response::Sessions { sessions }) => sessions,
            other => panic!("list: {other:?}; the service said:\n{}", self.said()),
        }
    }

    fn said(&self) -> String {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(g) = self.child.take() {
            // SAFETY: the service's pid; it has not been reaped.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(g.0.id() as i32, libc::SIGTERM)
            };
            drop(g);
        }
        let root = ipvirt_testkit::cgroup2_mount().unwrap().join(&self.root);
        if let Ok(rd) = std::fs::read_dir(&root) {
            for d in rd.flatten().filter(|d| d.path().is_dir()) {
                let _ = std::fs::write(d.path().join("cgroup.kill"), "1");
            }
        }
        wait_until("the sessions' processes to end", STEP, || {
            std::fs::read_dir(&root).map_or(true, |rd| {
                rd.flatten().filter(|d| d.path().is_dir()).all(|d| {
                    std::fs::read_to_string(d.path().join("cgroup.events"))
                        .is_ok_and(|e| e.contains("populated 0"))
                })
            })
        });
        let _ = Command::new(IPVIRT)
            .args(["kernel", "detach", "--root", &self.root])
            .output();
    }
}

/// The addresses listening on TCP `port`.
fn listeners(port: u16) -> Vec<String> {
    let o = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    v.sort();
    v
}

const PAM_MODULE: &str = "pam_ipvirt";

fn module() -> PathBuf {
    cdylib(PAM_MODULE)
}

fn policy(isolate: bool, identity: &str) -> String {
    format!(
        "[virtual_loopback]\nenabled = true\nprograms = [\"python3.11\", \"curl\", \"busybox\"]\n\
         isolate = {isolate}\n\n\
         [virtual_ip]\nenabled = true\nmode = \"per-program\"\nprograms = [\"no-such-program\"]\n\
         adapter = \"192.0.2.0/24\"\npool = [\"192.0.2.100-192.0.2.101\"]\n\n\
         [sessions]\nidentity = \"{identity}\"\n"
    )
}

fn pam_line(daemon: &Daemon) -> String {
    format!(
        "session required {} socket={} debug",
        module().display(),
        daemon.socket.display()
    )
}

/// A long-running ssh command, killed on drop.
fn background(u: &User, sshd: &Sshd, cmd: &str) -> Guard {
    Guard(
        u.ssh(sshd, cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn stdout_of(u: &User, sshd: &Sshd, cmd: &str) -> String {
    let o = u.ssh(sshd, cmd).output().unwrap();
    assert!(o.status.success(), "{}: {}", u.name, text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn two_users_logging_in_over_ssh_get_their_own_loopback_and_vip() {
    require_logins!();
    let dir = scratch("ssh");
    let daemon = Daemon::start(&dir, "ssh", &policy(true, "user"));
    let sshd = Sshd::start(&dir.join("sshd"), &[pam_line(&daemon)]);
    let a = User::new(&format!("ipva{}", tag("")), &dir);
    let b = User::new(&format!("ipvb{}", tag("")), &dir);
    let c = User::new(&format!("ipvx{}", tag("")), &dir);
    for u in [&a, &b] {
        std::fs::write(u.home.join("whoami.txt"), &u.name).unwrap();
    }
    let port = free_port();
    let serve = |u: &User| {
        background(
            u,
            &sshd,
            &format!(
                "exec /usr/bin/python3 -m http.server --bind 127.0.0.1 {port} --directory {}",
                u.home.display()
            ),
        )
    };
    let _sa = serve(&a);
    let _sb = serve(&b);
    wait_until("both servers to listen", STEP, || {
        listeners(port).len() == 2
    });
    let l = listeners(port);
    assert!(
        l.iter().all(|a| !a.starts_with("127.0.0.1:")) && l[0] != l[1],
        "each login listens on its own loopback: {l:?}"
    );
    // The service's view: two sessions, one per user, each with its own VIP.
    let s = daemon.sessions();
    assert_eq!(s.len(), 2, "{s:?}");
    let of = |u: &User| s.iter().find(|x| x.user == u.name).cloned().unwrap();
    let (sa, sb) = (of(&a), of(&b));
    for x in [&sa, &sb] {
        assert_eq!(x.service.as_deref(), Some("sshd"));
        assert_eq!(x.tty.as_deref(), Some("ssh"));
        assert!(x.processes >= 1, "{x:?}");
        assert!(l.contains(&format!("{}:{port}", x.loopback)), "{l:?} {x:?}");
    }
    assert!(
        sa.vip.is_some() && sb.vip.is_some() && sa.vip != sb.vip,
        "{s:?}"
    );
    // `ipvirt status` prints the same, one line per session.
    let st = Command::new(IPVIRT)
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    let st_text = String::from_utf8_lossy(&st.stdout);
    assert!(
        st_text.contains(&format!(
            "user={} service=sshd tty=ssh loopback={} vip={}",
            a.name,
            sa.loopback,
            sa.vip.unwrap()
        )),
        "{st_text}"
    );

    // With identity = "user", each user's other logins are the same session: its client reaches
    // its own server on 127.0.0.1, and the login's environment says where it is.
    for (u, x) in [(&a, &sa), (&b, &sb)] {
        let out = stdout_of(
            u,
            &sshd,
            &format!(
                "echo \"$IPVIRT_SESSION $IPVIRT_VIP\"; curl -s http://127.0.0.1:{port}/whoami.txt"
            ),
        );
        assert_eq!(
            out,
            format!("{} {}\n{}", x.number, x.vip.unwrap(), u.name),
            "{}",
            daemon.said()
        );
    }
    // Isolation: neither reaches the other's server.
    let out = stdout_of(
        &a,
        &sshd,
        &format!(
            "curl -s -o /dev/null http://{}:{port}/whoami.txt; echo rc=$?",
            sb.loopback
        ),
    );
    assert_eq!(out.trim(), "rc=7", "A must not reach B's server");
    // A static binary started in a login is in scope too.
    let q = free_port();
    let _st = background(
        &a,
        &sshd,
        &format!("exec busybox httpd -f -p 127.0.0.1:{q}"),
    );
    wait_until("busybox httpd to listen", STEP, || listeners(q).len() == 1);
    assert_eq!(listeners(q), [format!("{}:{q}", sa.loopback)]);

    // The pool has two addresses: a third user gets none while A and B hold them; once B has
    // logged out of everything, its session ends and its address is free for the next login.
    let out = stdout_of(&c, &sshd, "echo \"VIP=$IPVIRT_VIP\"");
    assert_eq!(out, "VIP=\n", "{}", daemon.said());
    let _ = Command::new("pkill").args(["-u", &b.name]).output();
    wait_until("B's session to end", STEP, || {
        daemon.sessions().iter().all(|x| x.user != b.name)
    });
    let out = stdout_of(&c, &sshd, "echo \"VIP=$IPVIRT_VIP\"");
    assert_eq!(
        out,
        format!("VIP={}\n", sb.vip.unwrap()),
        "{}",
        daemon.said()
    );
    // Logging out of everything ends every session.
    let _ = Command::new("pkill").args(["-u", &a.name]).output();
    wait_until("every session to end", STEP, || {
        daemon.sessions().is_empty()
    });
    let said = daemon.said();
    assert!(
        said.contains(&format!("opened for {} (sshd, tty ssh", a.name)),
        "{said}"
    );
    assert!(said.contains("ended: its last process ended"), "{said}");
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_users_two_logins_are_two_sessions_with_their_own_servers() {
    require_logins!();
    let dir = scratch("two");
    let daemon = Daemon::start(&dir, "two", &policy(false, "session"));
    let sshd = Sshd::start(&dir.join("sshd"), &[pam_line(&daemon)]);
    let u = User::new(&format!("ipvt{}", tag("")), &dir);
    let port = free_port();
    // Each login serves a directory naming its session, and asks its own 127.0.0.1 which
    // session answers.
    let script = format!(
        "d=$HOME/s$IPVIRT_SESSION; mkdir -p $d; echo $IPVIRT_SESSION > $d/who; \
         /usr/bin/python3 -m http.server --bind 127.0.0.1 {port} --directory $d >/dev/null 2>&1 & \
         for i in $(seq 300); do r=$(curl -s http://127.0.0.1:{port}/who) && break; sleep 0.1; done; \
         echo \"$IPVIRT_SESSION $r\"; exec sleep 60"
    );
    let mut logins: Vec<Guard> = (0..2)
        .map(|_| {
            Guard(
                u.ssh(&sshd, &script)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mut seen = Vec::new();
    for g in &mut logins {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(g.0.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let (mine, answered) = line.trim().split_once(' ').unwrap_or(("", ""));
        assert_eq!(mine, answered, "a login reaches its own server: {line:?}");
        seen.push(mine.to_owned());
    }
    assert_ne!(seen[0], seen[1], "two logins, two sessions");
    let l = listeners(port);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l.iter().all(|a| !a.starts_with("127.0.0.1:")), "{l:?}");
    drop(logins);
    let _ = Command::new("pkill").args(["-u", &u.name]).output();
    wait_until("both sessions to end", STEP, || {
        daemon.sessions().is_empty()
    });
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optional_lets_the_login_in_unvirtualized_and_required_fails_closed() {
    require_logins!();
    let dir = scratch("pamopt");
    let u = User::new(&format!("ipvo{}", tag("")), &dir);
    let log = AuthLog::start();
    let pamd = dir.join("pam.d");
    std::fs::create_dir_all(&pamd).unwrap();
    let nobody = dir.join("no-service.sock");
    for (name, control) in [("ipvirt-opt", "optional"), ("ipvirt-req", "required")] {
        std::fs::write(
            pamd.join(name),
            format!(
                "auth required pam_permit.so\naccount required pam_permit.so\n\
                 session required pam_permit.so\nsession {control} {} socket={}\n",
                module().display(),
                nobody.display()
            ),
        )
        .unwrap();
    }
    let pamtester = |service: &str| {
        Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /etc/pam.d && exec pamtester -I tty=/dev/pts/7 {service} {} open_session close_session",
                pamd.display(),
                u.name
            ))
            .output()
            .unwrap()
    };
    let o = pamtester("ipvirt-opt");
    assert!(
        o.status.success(),
        "optional: the login proceeds: {}",
        text(&o)
    );
    let o = pamtester("ipvirt-req");
    assert!(
        !o.status.success(),
        "required: the login fails closed: {}",
        text(&o)
    );
    match log {
        Some(log) => {
            wait_until("the auth log's lines", STEP, || {
                log.matching("is not virtualized").len() >= 2
            });
            let lines = log.matching(&format!("the login of {} is not virtualized", u.name));
            assert!(
                lines
                    .iter()
                    .all(|l| l.contains("ipvirt service is not running")),
                "{lines:?}"
            );
        }
        None => eprintln!(
            "note: /dev/log belongs to the host's syslog; the auth log's line is not checked"
        ),
    }
    drop(u);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_refusal_is_logged_once_with_the_session_and_the_program() {
    refusals_logged("kernel");
}

#[test]
fn every_refusal_of_the_preload_layer_is_logged_once_with_the_session_and_the_program() {
    refusals_logged("preload");
}

/// With isolation, 127.0.0.50 is another session's loopback: the same refused bind from two
/// processes of one program, then a refused connect; the service logs each kind once, naming the
/// session, its user and the program's executable.
fn refusals_logged(layer: &str) {
    require_logins!();
    let test = format!("refusals-{layer}");
    let dir = scratch(&test);
    let policy = format!("{}layer = \"{layer}\"\n", policy(true, "session"));
    let more = if layer == "preload" {
        // A copy the test user can read: the build directory may be private (a mktemp -d).
        let lib = dir.join("libipvirt_preload.so");
        std::fs::copy(ipvirt_testkit::preload_lib(), &lib).unwrap();
        vec!["--preload".to_owned(), lib.display().to_string()]
    } else {
        Vec::new()
    };
    let daemon = Daemon::start_with(&dir, &test, &policy, &more);
    let sshd = Sshd::start(&dir.join("sshd"), &[pam_line(&daemon)]);
    let u = User::new(&format!("ipvr{}", tag(&layer[..1])), &dir);
    let port = free_port();
    let py = |code: String| format!("/usr/bin/python3 -c \"import socket; {code}\" 2>/dev/null;");
    let bind = py(format!("socket.socket().bind(('127.0.0.50', {port}))"));
    let connect = py(format!("socket.socket().connect(('127.0.0.51', {port}))"));
    let out = stdout_of(
        &u,
        &sshd,
        &format!("{bind} {bind} {connect} echo $IPVIRT_SESSION"),
    );
    let n = out.trim();
    assert!(n.parse::<u32>().is_ok(), "the login is a session: {out:?}");
    // The executable's name as the kernel has it (the line shows the full path while the process
    // still runs, the name after it exited).
    let exe = std::fs::canonicalize("/usr/bin/python3").unwrap();
    let exe = exe.file_name().unwrap().to_string_lossy().into_owned();
    let who = format!("session {n} (user {}): ", u.name);
    let (bind_line, connect_line) = if layer == "kernel" {
        (
            format!("{who}bind 127.0.0.50:{port} refused with EACCES: "),
            format!("{who}connect 127.0.0.51:{port} refused with"),
        )
    } else {
        (
            format!(
                "{who}refused: the address is session 49's loopback address and virtual_loopback.isolate is on, so it may not be bound (errno 13): "
            ),
            format!(
                "{who}refused: the address is session 50's loopback address and virtual_loopback.isolate is on (errno"
            ),
        )
    };
    let end = std::time::Instant::now() + STEP;
    loop {
        let said = daemon.said();
        if said.contains(&connect_line) && said.contains(&bind_line) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out after {STEP:?} waiting for\n  {bind_line}\n  {connect_line}\nthe service said:\n{said}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever the order the reports arrive in, a kind is logged once: a late duplicate is
    // dropped, never logged.
    let said = daemon.said();
    assert_eq!(
        said.matches(&bind_line).count(),
        1,
        "the same refusal twice in a session is logged once:\n{said}"
    );
    for what in [&bind_line, &connect_line] {
        assert!(
            said.lines()
                .any(|l| l.contains(what.as_str()) && l.contains(&exe)),
            "the program is named: {said}"
        );
    }
    let _ = Command::new("pkill").args(["-u", &u.name]).output();
    drop(sshd);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn console_logins_are_left_alone_and_su_style_logins_are_sessions() {
    require_logins!();
    let dir = scratch("console");
    let daemon = Daemon::start(&dir, "console", &policy(false, "session"));
    let u = User::new(&format!("ipvc{}", tag("")), &dir);
    let pamd = dir.join("pam.d");
    std::fs::create_dir_all(&pamd).unwrap();
    for name in ["login", "su-l"] {
        std::fs::write(
            pamd.join(name),
            format!(
                "auth required pam_permit.so\naccount required pam_permit.so\n\
                 session required pam_permit.so\nsession required {} socket={} debug\n",
                module().display(),
                daemon.socket.display()
            ),
        )
        .unwrap();
    }
    // What the service made of each login is in its log.
    for (service, tty) in [("login", "tty3"), ("su-l", "/dev/pts/5")] {
        let o = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /etc/pam.d && exec pamtester -I tty={tty} {service} {} open_session close_session",
                pamd.display(),
                u.name
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{service}: {}", text(&o));
    }
    let said = daemon.said();
    assert!(
        !said.contains("(login, tty tty3)"),
        "a console login is not a session: {said}"
    );
    assert!(
        said.contains(&format!("opened for {} (su-l, tty /dev/pts/5)", u.name)),
        "{said}"
    );
    drop(u);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_callers_are_refused_and_the_service_keeps_serving() {
    require_logins!();
    require!("setpriv");
    let dir = scratch("hostile");
    let daemon = Daemon::start(&dir, "hostile", &policy(false, "session"));
    let u = User::new(&format!("ipvh{}", tag("")), &dir);
    let as_user = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={}", u.uid),
                &format!("--regid={}", u.uid),
                "--clear-groups",
                IPVIRT,
            ])
            .args(args)
            .arg("--socket")
            .arg(&daemon.socket)
            .output()
            .unwrap()
    };
    // Another user may list (its own: none) but not open, close or reload.
    let o = as_user(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    let o = as_user(&["reload"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "only root may reload the policy (uid {} asked)",
            u.uid
        )),
        "{}",
        text(&o)
    );
    // Raw clients: garbage, an unknown op, a request that never ends, one far too large, one
    // that says nothing, and many at once.
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let raw = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(raw(b"\x00\xff garbage\n").contains("\"result\":\"refused\""));
    assert!(raw(b"{\"op\":\"format-disk\"}\n").contains("not a request"));
    assert!(raw(b"{\"op\":\"close\",\"session\":1,\"extra\":2}\n").contains("refused"));
    // Far too large: refused after the limit, whatever follows.
    {
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&vec![b'x'; 8 << 20]);
        });
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.contains("longer than"), "{out}");
        drop(s);
        writer.join().unwrap();
    }
    // Another user floods the socket with connections that say nothing: root is still served.
    let flood = Command::new("setpriv")
        .args([
            &format!("--reuid={}", u.uid),
            &format!("--regid={}", u.uid),
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            &format!(
                "import socket, sys, time\n\
                 s = [socket.socket(socket.AF_UNIX) for _ in range(200)]\n\
                 [x.connect({:?}) for x in s]\n\
                 print('connected', flush=True)\n\
                 time.sleep(60)\n",
                daemon.socket.display().to_string()
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut flood = Guard(flood);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "connected");
    assert!(daemon.sessions().is_empty());
    drop(flood);
    // An open for a user that does not exist names it.
    match daemon.call(&Request::Open {
        user: "no-such-user-x".into(),
        service: Some("sshd".into()),
        tty: Some("ssh".into()),
        rhost: None,
        id: None,
    }) {
        Some(Response::Refused { error }) => {
            assert!(error.contains("\"no-such-user-x\""), "{error}")
        }
        other => panic!("{other:?}"),
    }
    drop(u);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ipvirt run` through the service: the same open path as a PAM login.
fn run_through(daemon: &Daemon, id: u32, script: &str) -> Guard {
    Guard(
        Command::new(IPVIRT)
            .args(["run", "--socket"])
            .arg(&daemon.socket)
            .args([
                "--id",
                &id.to_string(),
                "--policy",
                "/dev/null",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The IPv4 addresses on `interface`.
fn addresses(interface: &str) -> Vec<String> {
    let o = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", interface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next().map(str::to_owned))
        .collect()
}

#[test]
fn one_dhcp_client_for_every_session_and_a_killed_service_loses_nothing() {
    require_logins!();
    require!("dnsmasq", "ip");
    use ipvirt_testkit::dhcp::DhcpNet;
    let net = DhcpNet::new(41, 150, false);
    let dir = scratch("dhcp");
    let policy = "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"10.231.41.0/24\"\n\
         source = \"dhcp\"\n[virtual_ip.dhcp]\nclient_id_prefix = \"ipvirt-svc-\"\n";
    // Thirty times faster (T1 of the 120 s lease after 2 s), on one timeline across restarts.
    let origin = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut daemon = {
        let policy_path = dir.join("policy.toml");
        std::fs::write(&policy_path, policy).unwrap();
        let mut d = Daemon {
            socket: dir.join("run/control.sock"),
            root: format!("ipvirt-test-{}", tag("dhcp")),
            child: None,
            args: Vec::new(),
            env: Vec::new(),
            log: dir.join("daemon.log"),
            lines: Arc::default(),
        };
        d.args = [
            "daemon",
            "--policy",
            &policy_path.display().to_string(),
            "--state-dir",
            &dir.join("state").display().to_string(),
            "--socket",
            &d.socket.display().to_string(),
            "--kernel-root",
            &d.root,
            "--log",
            "stderr",
        ]
        .map(str::to_owned)
        .to_vec();
        d.env = vec![
            ("IPVIRT_TEST_DHCP_CLOCK_SCALE".into(), "30".into()),
            ("IPVIRT_TEST_DHCP_CLOCK_ORIGIN".into(), origin.to_string()),
        ];
        d.spawn();
        d
    };
    let vip_of = |s: &[SessionInfo], n: u32| s.iter().find(|x| x.number == n).and_then(|x| x.vip);
    let mut runs: Vec<Guard> = [11, 12, 13]
        .into_iter()
        .map(|id| run_through(&daemon, id, "exec sleep 300"))
        .collect();
    wait_until("three sessions with their leases", STEP, || {
        let s = daemon.sessions();
        s.len() == 3 && s.iter().all(|x| x.vip.is_some())
    });
    let before = daemon.sessions();
    let vips: Vec<String> = [11, 12, 13]
        .iter()
        .map(|&n| vip_of(&before, n).unwrap().to_string())
        .collect();
    let mut unique = vips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        3,
        "three addresses for three sessions: {vips:?}"
    );
    for v in &vips {
        assert!(v.starts_with("10.231.41."), "{vips:?}");
        assert!(
            addresses(&net.client_if).contains(v),
            "{v} is on the interface"
        );
    }
    // One client identifier per session, from one service.
    assert_eq!(net.server_leases().len(), 3);
    // The service is SIGKILLed and comes back: the sessions keep their addresses (still on the
    // interface while their servers run), and their leases are renewed after the restart.
    daemon.kill();
    for v in &vips {
        assert!(
            addresses(&net.client_if).contains(v),
            "{v} stays while the service is away"
        );
    }
    let acks = |addr: &str| {
        std::fs::read_to_string(net.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DHCPACK(") && l.contains(&format!(" {addr} ")))
            .count()
    };
    let acked: Vec<usize> = vips.iter().map(|v| acks(v)).collect();
    daemon.spawn();
    let after = daemon.sessions();
    for (i, n) in [11, 12, 13].into_iter().enumerate() {
        assert_eq!(
            vip_of(&after, n).map(|v| v.to_string()).as_ref(),
            Some(&vips[i]),
            "session {n} keeps its address: {after:?}\n{}",
            daemon.said()
        );
    }
    wait_until("every lease renewed after the restart", STEP, || {
        vips.iter().zip(&acked).all(|(v, &n)| acks(v) > n)
    });
    // A fourth session gets a fourth address: no address is ever held by two sessions.
    runs.push(run_through(&daemon, 14, "exec sleep 300"));
    wait_until("the fourth lease", STEP, || {
        vip_of(&daemon.sessions(), 14).is_some()
    });
    let v14 = vip_of(&daemon.sessions(), 14).unwrap().to_string();
    assert!(!vips.contains(&v14), "{v14} is new: {vips:?}");
    // When the sessions end, their leases are released and their addresses leave the interface.
    drop(runs);
    let root = ipvirt_testkit::cgroup2_mount().unwrap().join(&daemon.root);
    for n in [11, 12, 13, 14] {
        let _ = std::fs::write(root.join(format!("session-{n}/cgroup.kill")), "1");
    }
    wait_until("every session to end", STEP, || {
        daemon.sessions().is_empty()
    });
    wait_until("every lease released", STEP, || {
        net.server_leases().is_empty()
    });
    // The RELEASE goes out first, then the address leaves the interface: wait for both.
    wait_until(
        "the released addresses to leave the interface",
        STEP,
        || {
            let on = addresses(&net.client_if);
            vips.iter().chain([&v14]).all(|v| !on.contains(v))
        },
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_systemd_the_login_scope_is_the_session() {
    logind_layout("session");
}

#[test]
fn under_systemd_with_identity_user_the_user_slice_is_the_session() {
    logind_layout("user");
}

/// logind's layout, built by hand: `user.slice/user-UID.slice/session-N.scope`, and a pam_exec
/// step (standing in for pam_systemd) that moves the login's process into the scope. The service
/// registers the scope (`identity = "session"`) or the user's slice (`"user"`) as the session,
/// and moves nothing out of logind's tree.
fn logind_layout(identity: &str) {
    require_logins!();
    if std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd") {
        eprintln!("skipped: PID 1 is systemd; this test builds logind's cgroup tree by hand");
        return;
    }
    let test = format!("logind{}", &identity[..1]);
    let dir = scratch(&test);
    let daemon = Daemon::start(&dir, &test, &policy(false, identity));
    let u = User::new(&format!("ipvl{}{}", &identity[..1], tag("")), &dir);
    let mount = ipvirt_testkit::cgroup2_mount().unwrap();
    let slice = mount
        .join("user.slice")
        .join(format!("user-{}.slice", u.uid));
    let scope = slice.join(format!("session-{}.scope", tag(identity)));
    std::fs::create_dir_all(&scope).unwrap();
    let script = dir.join("enter-scope.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$PAM_TYPE\" = open_session ] && echo $PPID > '{}/cgroup.procs'\nexit 0\n",
            scope.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sshd = Sshd::start(
        &dir.join("sshd"),
        &[
            format!("session required pam_exec.so {}", script.display()),
            pam_line(&daemon),
        ],
    );
    let port = free_port();
    let _srv = background(
        &u,
        &sshd,
        &format!("exec /usr/bin/python3 -m http.server --bind 127.0.0.1 {port}"),
    );
    wait_until("the server to listen", STEP, || listeners(port).len() == 1);
    let s = daemon.sessions();
    assert_eq!(s.len(), 1, "{s:?}");
    let registered = if identity == "user" { &slice } else { &scope };
    let rel = format!("/{}", registered.strip_prefix(&mount).unwrap().display());
    assert_eq!(
        s[0].cgroups,
        [rel],
        "logind's cgroup is registered, nothing moved out of it"
    );
    assert_eq!(listeners(port), [format!("{}:{port}", s[0].loopback)]);
    let procs = std::fs::read_to_string(scope.join("cgroup.procs")).unwrap();
    assert!(
        !procs.trim().is_empty(),
        "the login's processes stay in logind's scope"
    );
    let _ = Command::new("pkill").args(["-u", &u.name]).output();
    wait_until("the session to end", STEP, || daemon.sessions().is_empty());
    drop(sshd);
    drop(u);
    // logind would remove the scope; here the test does.
    wait_until("the scope to empty", STEP, || {
        std::fs::read_to_string(scope.join("cgroup.events"))
            .is_ok_and(|e| e.contains("populated 0"))
    });
    let _ = std::fs::remove_dir(&scope);
    let _ = std::fs::remove_dir(&slice);
    let _ = std::fs::remove_dir(mount.join("user.slice"));
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
