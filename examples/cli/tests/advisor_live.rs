//! The advisor live on Linux, end to end with real programs: `socat` listening on `127.0.0.1:P` and
//! OpenBSD netcat, started as `nc` (the Debian alternatives symlink to `nc.openbsd`), on
//! `0.0.0.0:Q`. `advise --live --twice` samples, the test restarts both programs, the advisor
//! samples again, and its proposal names the executables (`nc.openbsd`, not the `nc` that `ss`
//! prints) with hard-coded ports. Then the proposal, unedited, is the policy of the session
//! launcher in a network namespace: two sessions run the very same programs on the same ports, on
//! 127.0.0.8 / 127.0.0.9 and on their VIPs.
//!
//! Not restarting between the samples gives "no evidence yet", and the `ss -tlpn` text of the same
//! programs is marked unverified. Every wait is on a condition with a deadline.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ipvirt::Policy;
use ipvirt::advisor::{AdviceOptions, NameSource, advise as analyse, parse};
use ipvirt_host::live;
use ipvirt_testkit::require;
use ipvirt_testkit::{Guard, free_port, preload_lib};

const DEADLINE: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `nc` on the PATH, when it is OpenBSD netcat (`/usr/bin/nc.openbsd` behind a symlink).
fn nc_is_openbsd() -> bool {
    Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v nc)\""])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with("/nc.openbsd")
        })
}

/// The two servers: socat on 127.0.0.1:p, nc on 0.0.0.0:q.
fn servers(p: u16, q: u16) -> (Guard, Guard) {
    let socat = Command::new("socat")
        .arg(format!("TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork"))
        .arg("EXEC:cat")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nc = Command::new("nc")
        .args(["-l", "0.0.0.0", &q.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Guard(socat), Guard(nc))
}

/// Waits until a live sample shows both listening, held by these very processes.
fn wait_listening(p: u16, q: u16, socat: &Guard, nc: &Guard) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let snap = live::sample().unwrap();
        let held = |port: u16, ip: &str, pid: u32| {
            snap.records.iter().any(|r| {
                r.local.port() == port
                    && r.local.ip().to_string() == ip
                    && r.state.as_deref() == Some("LISTEN")
                    && r.pid == Some(pid)
            })
        };
        if held(p, "127.0.0.1", socat.0.id()) && held(q, "0.0.0.0", nc.0.id()) {
            return;
        }
        assert!(Instant::now() < deadline, "socat and nc did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The advisor, running: its stdin, and its stdout line by line.
struct Advisor {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Advisor {
    fn start(exe: &Path, extra: &[&str]) -> Advisor {
        let mut child = Command::new(exe)
            .args([
                "advise",
                "--live",
                "--twice",
                "--process",
                "socat",
                "--process",
                "nc.openbsd",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Advisor {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`.
    fn wait_line(&mut self, prefix: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!(
                    "no line {prefix:?} ({e}); so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Presses Enter and reads the rest of the output until the advisor exits.
    fn finish(mut self) -> String {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
        drop(stdin);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!(
                    "the advisor did not finish ({e}):\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        let status = self.child.wait().unwrap();
        let out = self.seen.join("\n");
        assert!(status.success(), "{status}\n{out}");
        out
    }
}

/// The proposed policy in the advisor's output.
fn proposal(out: &str) -> String {
    let start = out
        .find("proposed policy:\n")
        .unwrap_or_else(|| panic!("{out}"));
    let rest = &out[start + "proposed policy:\n".len()..];
    let end = rest
        .find("validation of the proposal:")
        .unwrap_or(rest.len());
    rest[..end].trim().to_string() + "\n"
}

/// Two sessions run socat and nc under the launcher with `policy`, in an unprivileged network
/// namespace whose `lo` has the VIPs; prints what `ss` sees.
const SESSIONS: &str = r#"
set -u
ip link set lo up
ip addr add 192.0.2.101/32 dev lo
ip addr add 192.0.2.102/32 dev lo
PIDS=""
trap 'kill $PIDS 2>/dev/null; wait' EXIT
run() { # session command...
  id=$1; shift
  "$LAUNCHER" run --id "$id" --policy "$POLICY" --lease-book "$DIR/leases.json" --preload "$LIB" \
      -- "$@" </dev/null >"$DIR/s$id-$1.log" 2>&1 &
  PIDS="$PIDS $!"
}
run 7 socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork" EXEC:cat
run 8 socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork" EXEC:cat
run 7 nc -l 0.0.0.0 "$Q"
run 8 nc -l 0.0.0.0 "$Q"
for i in $(seq 200); do
  [ "$(ss -Hltn "( sport = :$P or sport = :$Q )" | wc -l)" -ge 4 ] && break
  sleep 0.1
done
echo "LISTEN $(ss -Hltnp "( sport = :$P or sport = :$Q )" | awk '{print $4, $6}' | sort | tr '\n' ';')"
for f in "$DIR"/s*.log; do echo "LOG $f: $(tr '\n' ' ' < "$f")"; done
"#;

#[test]
fn live_samples_name_executables_and_the_proposal_virtualizes_them() {
    require!("socat", "nc", "ss", "ip", "unshare");
    if !nc_is_openbsd() {
        eprintln!("skipped: `nc` is not OpenBSD netcat (install netcat-openbsd)");
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ipvirt"));
    let (launcher, lib) = (exe.clone(), preload_lib());
    let dir = scratch("e2e");
    let (p, q) = (free_port(), free_port());

    // The first run of both programs, and the advisor's first sample.
    let (socat, nc) = servers(p, q);
    wait_listening(p, q, &socat, &nc);
    // What `ss -tlpn` says of the same programs: the command name `nc`, unverified.
    let ss = Command::new("ss").args(["-Htlpn"]).output().unwrap();
    let ss = parse(&String::from_utf8_lossy(&ss.stdout)).unwrap();
    let by_ss = ss
        .records
        .iter()
        .find(|r| r.local.port() == q)
        .unwrap_or_else(|| panic!("{ss:?}"));
    if by_ss.process.is_some() {
        assert_eq!(by_ss.process.as_deref(), Some("nc"));
        assert_eq!(by_ss.name_source, NameSource::Comm);
        let advice = analyse(
            &ss,
            None,
            &AdviceOptions {
                only: vec!["nc".into()],
                ..AdviceOptions::default()
            },
        );
        assert!(
            advice
                .policy_toml()
                .contains("# UNVERIFIED: \"nc\" is the command name"),
            "{}",
            advice.policy_toml()
        );
    } else {
        eprintln!("note: ss shows no process names for this user; the ss comparison is skipped");
    }

    let opts = [
        "--adapter",
        "192.0.2.0/24",
        "--pool",
        "192.0.2.101-192.0.2.102",
    ];
    let mut advisor = Advisor::start(&exe, &opts);
    advisor.wait_line("restart the application");
    let first_pids = (socat.0.id(), nc.0.id());
    drop((socat, nc));
    // The second run: new processes, the same ports.
    let (socat, nc) = servers(p, q);
    assert_ne!((socat.0.id(), nc.0.id()), first_pids);
    wait_listening(p, q, &socat, &nc);
    let out = advisor.finish();

    let socat_exe = std::fs::canonicalize(format!("/proc/{}/exe", socat.0.id())).unwrap();
    for want in [
        format!("socat holds tcp 127.0.0.1:{p} in both snapshots: the port is hard-coded"),
        format!("nc.openbsd holds tcp 0.0.0.0:{q} in both snapshots: the port is hard-coded"),
        format!("LISTEN pid {}", first_pids.1),
        socat_exe.display().to_string(),
        "/nc.openbsd".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} not in:\n{out}");
    }
    assert!(!out.contains("no evidence yet"), "{out}");
    assert!(!out.contains("UNVERIFIED"), "{out}");
    let toml = proposal(&out);
    let policy = Policy::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(policy.virtual_loopback.programs, ["socat"]);
    assert_eq!(policy.virtual_ip.programs, ["nc.openbsd"]);
    assert!(policy.virtual_ip.enabled);

    // Not restarted between the samples: no evidence yet.
    let mut again = Advisor::start(&exe, &opts);
    again.wait_line("restart the application");
    let out2 = again.finish();
    assert!(
        out2.contains(&format!(
            "socat holds tcp 127.0.0.1:{p} in both snapshots, but it is the same process (pid {})",
            socat.0.id()
        )),
        "{out2}"
    );
    assert!(!out2.contains("the port is hard-coded"), "{out2}");
    drop((socat, nc));

    // The proposal, unedited, runs two sessions of each program on the same port.
    let probe = Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped the sessions: no unprivileged network namespace (unshare -rn)");
        return;
    }
    let policy_file = dir.join("proposal.toml");
    std::fs::write(&policy_file, &toml).unwrap();
    let run = Command::new("timeout")
        .args(["60", "unshare", "-rn", "sh", "-c", SESSIONS])
        .env("LAUNCHER", &launcher)
        .env("LIB", &lib)
        .env("POLICY", &policy_file)
        .env("DIR", &dir)
        .env("P", p.to_string())
        .env("Q", q.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let listen = t
        .lines()
        .find_map(|l| l.strip_prefix("LISTEN "))
        .unwrap_or_else(|| panic!("{t}"));
    let rows: Vec<&str> = listen.split(';').filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 4, "{t}");
    for (addr, program) in [
        (format!("127.0.0.8:{p}"), "socat"),
        (format!("127.0.0.9:{p}"), "socat"),
        (format!("192.0.2.101:{q}"), "nc"),
        (format!("192.0.2.102:{q}"), "nc"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.starts_with(&format!("{addr} "))
                    && r.contains(&format!("((\"{program}\","))),
            "{addr} ({program}) not in {rows:?}\n{t}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command line: bad values are named, options that need `--live` say so, and `--interval`
/// takes the second sample by itself.
#[test]
fn advise_live_options() {
    let exe = env!("CARGO_BIN_EXE_ipvirt");
    let run = |args: &[&str]| {
        let out = Command::new(exe)
            .arg("advise")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for (args, want) in [
        (
            &["--live", "--interval", "soon"][..],
            "\"soon\" is not a number of seconds",
        ),
        (
            &["--live", "--interval", "-1"][..],
            "\"-1\" is not a number",
        ),
        (
            &["--twice", "a.txt"][..],
            "--twice and --interval need --live",
        ),
        (&["--live", "a.txt"][..], "cannot be used with"),
    ] {
        let (code, t) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: {t}");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, t) = run(&["--live", "--interval", "0"]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("live sample 1: ") && t.contains("live sample 2: "),
        "{t}"
    );
    drop(listener);
}
