//! `ipvirt run`, the session launcher, and its lease state under faults (SPEC §10), with
//! real processes: sharing and release, killed launchers, a kill at every step of a save, a full
//! disk, a corrupt state, and 200 launches under random SIGKILLs.
//!
//! Every wait is on a condition with a deadline; the tests read the lease state only through the
//! launcher's `--status` (which takes the lock) or after every writer is gone, and the commands
//! publish what they saw by renaming a finished file into place.

// kill(2) on the processes the tests start.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvirt_testkit::preload_lib;
use ipvirt_testkit::require;

/// What a test needs: the launcher, the layer, a scratch directory and a policy with a pool.
struct Setup {
    launcher: PathBuf,
    lib: PathBuf,
    dir: PathBuf,
    policy: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new(name: &str, pool: &str) -> Option<Setup> {
        let lib = preload_lib();
        let launcher = PathBuf::from(env!("CARGO_BIN_EXE_ipvirt"));
        let dir = std::env::temp_dir().join(format!("ipvirt-launch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\npool = [\"{pool}\"]\n"
            ),
        )
        .unwrap();
        let state = dir.join("leases.json");
        Some(Setup {
            launcher,
            lib,
            dir,
            policy,
            state,
        })
    }

    fn with_state(mut self, state: PathBuf) -> Setup {
        self.state = state;
        self
    }

    /// `session --id ID … -- sh -c SCRIPT`, run in the scratch directory.
    fn launch(&self, id: u32, script: &str) -> Command {
        let mut c = Command::new(&self.launcher);
        c.args(["run", "--id", &id.to_string(), "--policy"])
            .arg(&self.policy)
            .arg("--lease-book")
            .arg(&self.state)
            .arg("--preload")
            .arg(&self.lib)
            .args(["--", "sh", "-c", script])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// The live leases after reclaiming: (session, VIP, holders).
    fn status(&self) -> Vec<(u32, String, usize)> {
        let out = self.status_output();
        assert!(out.status.success(), "--status failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 4, "{l}");
                (
                    f[1].parse().unwrap(),
                    f[2].to_string(),
                    f[3].trim_start_matches("holders=").parse().unwrap(),
                )
            })
            .collect()
    }

    fn status_output(&self) -> Output {
        Command::new(&self.launcher)
            .arg("status")
            .arg("--policy")
            .arg(&self.policy)
            .arg("--lease-book")
            .arg(&self.state)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Waits until `--status` satisfies `ok`.
    fn wait_status(&self, what: &str, ok: impl Fn(&[(u32, String, usize)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status();
            if ok(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the file `name` in the scratch directory exists, and returns its text.
    fn wait_file(&self, name: &str) -> String {
        let path = self.dir.join(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "timed out waiting for {name}");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::read_to_string(path).unwrap()
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.join(name), b"").unwrap();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A script that publishes `$IPVIRT_VIP` and its pid in `name` (renamed into place), then waits
/// for the file `go` (at most 30 s).
fn hold(name: &str) -> String {
    format!(
        "echo \"${{IPVIRT_VIP:-none}} $$\" > {name}.tmp && mv {name}.tmp {name}; \
         i=0; while [ ! -e go ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done"
    )
}

fn vip_of(published: &str) -> String {
    published
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

fn pid_of(published: &str) -> i32 {
    published
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn concurrent_launchers_share_a_lease_and_the_last_releases_it() {
    require!("sh", "sleep", "mv");
    let Some(t) = Setup::new("share", "192.0.2.100-192.0.2.101") else {
        return;
    };
    let a = t.launch(7, &hold("a")).spawn().unwrap();
    t.wait_status("session 7's lease", |s| s.len() == 1);
    let b = t.launch(7, &hold("b")).spawn().unwrap();
    t.wait_status("a second holder", |s| s == [(7, "192.0.2.100".into(), 2)]);
    let c = t.launch(8, &hold("c")).spawn().unwrap();
    let (va, vb, vc) = (t.wait_file("a"), t.wait_file("b"), t.wait_file("c"));
    assert_eq!(vip_of(&va), "192.0.2.100");
    assert_eq!(vip_of(&vb), "192.0.2.100", "one session, one VIP");
    assert_eq!(vip_of(&vc), "192.0.2.101");
    // The pool is exhausted: session 9 still runs, without a VIP.
    let out = t.launch(9, "echo \"vip=[$IPVIRT_VIP]\"").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let o = text(&out);
    assert!(
        o.contains("vip=[]") && o.contains("no virtual IP left"),
        "{o}"
    );
    t.touch("go");
    for child in [a, b, c] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(t.status(), []);

    // The command's exit code passes through.
    let out = t.launch(7, "exit 3").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(t.status(), []);
}

#[test]
fn forwarded_signals_stop_the_command_and_release_the_lease() {
    require!("sh", "sleep", "mv");
    let Some(t) = Setup::new("signals", "192.0.2.100-192.0.2.101") else {
        return;
    };
    for (n, sig) in [libc::SIGTERM, libc::SIGUSR1, libc::SIGALRM, libc::SIGHUP]
        .into_iter()
        .enumerate()
    {
        let name = format!("s{n}");
        let child = t.launch(7, &hold(&name)).spawn().unwrap();
        t.wait_file(&name);
        kill(child.id() as i32, sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(128 + sig),
            "signal {sig}: {}",
            text(&out)
        );
        // The script's last `sleep` (not signalled: it is not the launcher's child) may outlive
        // the launcher by a few milliseconds, and it is a process of the session: the lease ends
        // with it, released by the launcher or reclaimed by the next look.
        t.wait_status("the lease to end", <[_]>::is_empty);
    }
}

#[test]
fn a_killed_launcher_keeps_the_lease_while_its_command_runs() {
    require!("sh", "sleep", "mv");
    let Some(t) = Setup::new("killed", "192.0.2.100-192.0.2.101") else {
        return;
    };
    // Session 7's launcher is SIGKILLed (as the OOM killer would); its command keeps running.
    let mut a = t.launch(7, &hold("a")).spawn().unwrap();
    let orphan = pid_of(&t.wait_file("a"));
    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(t.status(), [(7, "192.0.2.100".into(), 1)]);
    // Relaunching session 7 joins the lease; when that launch ends, the orphan still holds it.
    let out = t.launch(7, "echo \"vip=$IPVIRT_VIP\"").output().unwrap();
    assert!(text(&out).contains("vip=192.0.2.100"), "{}", text(&out));
    assert_eq!(t.status(), [(7, "192.0.2.100".into(), 1)]);
    // Nobody else gets that address while the orphan runs.
    let b = t.launch(8, &hold("b")).spawn().unwrap();
    assert_eq!(vip_of(&t.wait_file("b")), "192.0.2.101");
    let out = t.launch(9, "echo \"vip=[$IPVIRT_VIP]\"").output().unwrap();
    assert!(text(&out).contains("vip=[]"), "{}", text(&out));
    // Once the orphan is gone, the next look reclaims its lease, and session 9 gets it.
    kill(orphan, libc::SIGKILL);
    t.wait_status("the orphan's lease to be reclaimed", |s| {
        s.iter().all(|l| l.0 != 7)
    });
    let out = t.launch(9, "echo \"vip=[$IPVIRT_VIP]\"").output().unwrap();
    assert!(text(&out).contains("vip=[192.0.2.100]"), "{}", text(&out));
    t.touch("go");
    b.wait_with_output().unwrap();
    assert_eq!(t.status(), []);
}

#[test]
fn a_daemon_that_outlives_its_command_keeps_the_lease() {
    require!("sh", "sleep", "mv", "setsid");
    let Some(t) = Setup::new("daemon", "192.0.2.100") else {
        return;
    };
    // The command starts a daemon in a new session (out of the process group) and exits.
    let out = t
        .launch(
            7,
            &format!("setsid sh -c '{}' >/dev/null 2>&1 < /dev/null &", hold("d")),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let daemon = pid_of(&t.wait_file("d"));
    assert!(text(&out).contains("still run"), "{}", text(&out));
    assert_eq!(t.status(), [(7, "192.0.2.100".into(), 1)]);
    kill(daemon, libc::SIGKILL);
    t.wait_status("the daemon's lease to be reclaimed", <[_]>::is_empty);
}

/// Runs the launcher under strace, killing it at the `when`-th `syscall` on `path`.
fn killed_at(t: &Setup, id: u32, syscall: &str, path: &Path, when: u32, marker: &str) -> Output {
    let mut c = Command::new("strace");
    c.args(["-o", "/dev/null", "-P"])
        .arg(path)
        // The state file's steps name it relative to its directory's descriptor (openat,
        // renameat): strace matches those by the name as written.
        .arg("-P")
        .arg(path.file_name().unwrap_or_default())
        .args([
            "-e",
            &format!("trace={syscall}"),
            "-e",
            &format!("inject={syscall}:signal=KILL:when={when}"),
        ])
        .arg(&t.launcher)
        .args(["run", "--id", &id.to_string(), "--policy"])
        .arg(&t.policy)
        .arg("--lease-book")
        .arg(&t.state)
        .arg("--preload")
        .arg(&t.lib)
        .args(["--", "sh", "-c", &format!("touch {marker}")])
        .current_dir(&t.dir)
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn a_kill_at_any_step_of_a_save_leaves_the_old_or_the_new_state() {
    require!("sh", "sleep", "mv", "strace");
    let Some(t) = Setup::new("kill-steps", "192.0.2.100-192.0.2.103") else {
        return;
    };
    // A live session holds .100 throughout.
    let live = t.launch(3, &hold("live")).spawn().unwrap();
    assert_eq!(vip_of(&t.wait_file("live")), "192.0.2.100");
    let tmp = {
        let mut s = t.state.clone().into_os_string();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let steps: [(&str, &Path); 5] = [
        ("openat", &tmp),
        ("write", &tmp),
        ("fsync", &tmp),
        ("rename,renameat,renameat2", &tmp),
        ("fsync", &t.dir),
    ];
    let mut n = 0;
    // when=1: the save that records the lease (before the command); when=2: the release's.
    for when in [1, 2] {
        for (syscall, path) in steps {
            n += 1;
            let marker = format!("ran{n}");
            let out = killed_at(&t, 8, syscall, path, when, &marker);
            assert!(
                !out.status.success(),
                "{syscall} #{when} was not hit: {}",
                text(&out)
            );
            let ran = t.dir.join(&marker).exists();
            assert_eq!(ran, when == 2, "{syscall} #{when}: the command ran = {ran}");
            // The state parses, session 3 still holds .100, and session 8's lease, if the save got
            // that far, is reclaimed: its launcher is dead and none of its processes runs.
            let s = t.status();
            assert_eq!(s, [(3, "192.0.2.100".into(), 1)], "after {syscall} #{when}");
            // The next launch works and is handed a free address.
            let out = t.launch(9, "echo \"vip=$IPVIRT_VIP\"").output().unwrap();
            assert!(
                out.status.success(),
                "after {syscall} #{when}: {}",
                text(&out)
            );
            assert!(
                text(&out).contains("vip=192.0.2.10") && !text(&out).contains("vip=192.0.2.100"),
                "after {syscall} #{when}: {}",
                text(&out)
            );
        }
    }
    t.touch("go");
    live.wait_with_output().unwrap();
    assert_eq!(t.status(), []);
}

/// A tmpfs of `kib` KiB mounted at `dir` (root only), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            // mode 0700: a state directory must be private (a tmpfs is 1777 by default).
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_next_launch_works_once_space_is_back() {
    require!("sh", "mount", "umount");
    let Some(t) = Setup::new("enospc", "192.0.2.100-192.0.2.103") else {
        return;
    };
    let disk = t.dir.join("disk");
    let Some(_mount) = Tmpfs::mount(&disk, 8) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let t = t.with_state(disk.join("leases.json"));
    let out = t.launch(3, "true").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let before = std::fs::read(&t.state).unwrap();
    // Fill the disk: the state takes one page of two.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 4096]).unwrap();
    let out = t.launch(8, "touch ran").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let o = text(&out);
    assert!(o.contains("No space left on device"), "{o}");
    assert!(o.contains("leases.json"), "the error names the file: {o}");
    assert!(
        !t.dir.join("ran").exists(),
        "the command ran without a recorded lease"
    );
    assert_eq!(
        std::fs::read(&t.state).unwrap(),
        before,
        "the old state changed"
    );
    assert!(!disk.join("leases.json.tmp").exists());
    // Space is back: the next launch works.
    std::fs::remove_file(&filler).unwrap();
    let out = t.launch(8, "touch ran").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(t.dir.join("ran").exists());
    assert_eq!(t.status(), []);
}

/// Issue 23, item 5: a launch that waits for the lease book's lock (another process holds it)
/// ends at a SIGTERM with an error naming the lock and its holder, without running the command;
/// and a lease book in a shared directory (`/tmp`) is refused before anything is written.
#[test]
fn a_sigterm_ends_a_wait_for_the_lock_and_a_shared_directory_is_refused() {
    require!("sh", "flock");
    let Some(t) = Setup::new("sigterm", "192.0.2.100-192.0.2.103") else {
        return;
    };
    // Make the book (and its lock file), then hold its lock from another process.
    let out = t.launch(3, "true").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lock = t.dir.join("leases.json.lock");
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["-c", "echo locked; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "locked\n");
    let launch = t.launch(4, "touch ran").spawn().unwrap();
    let pid = launch.id() as i32;
    // It waits for the lock once it has the lock file open.
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == lock))
    }) {
        assert!(
            Instant::now() < end,
            "the launcher never opened {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(pid, libc::SIGTERM);
    let out = launch.wait_with_output().unwrap();
    let o = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(
        o.contains("leases.json.lock") && o.contains("stopped"),
        "{o}"
    );
    assert!(
        o.contains("held by process"),
        "the error names the holder: {o}"
    );
    assert!(!t.dir.join("ran").exists(), "the command ran: {o}");
    drop(holder.stdin.take());
    holder.wait().unwrap();

    // The book straight in /tmp: refused, nothing created there.
    let shared = std::env::temp_dir().join(format!("ipvirt-shared-{}.json", std::process::id()));
    let t = t.with_state(shared.clone());
    let out = t.launch(5, "touch ran").output().unwrap();
    let o = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(o.contains("can be written by other users"), "{o}");
    assert!(!t.dir.join("ran").exists(), "the command ran: {o}");
    assert!(!shared.exists() && !shared.with_extension("json.lock").exists());
}

#[test]
fn a_corrupt_state_is_a_clear_error_and_is_kept() {
    require!("sh");
    let Some(t) = Setup::new("corrupt", "192.0.2.100-192.0.2.103") else {
        return;
    };
    let out = t.launch(3, "true").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let good = std::fs::read(&t.state).unwrap();
    let half = good.get(..good.len() / 2).unwrap().to_vec();
    for bad in [Vec::new(), half, b"not json".to_vec()] {
        std::fs::write(&t.state, &bad).unwrap();
        let out = t.launch(8, "touch ran").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let o = text(&out);
        assert!(
            o.contains("corrupt") && o.contains(&t.state.display().to_string()),
            "{o}"
        );
        assert!(!t.dir.join("ran").exists());
        assert_eq!(
            std::fs::read(&t.state).unwrap(),
            bad,
            "the corrupt file was changed"
        );
    }
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

#[test]
fn random_kills_never_put_two_live_sessions_on_one_address() {
    require!("sh", "sleep", "mv", "date");
    let Some(t) = Setup::new("chaos", "192.0.2.100-192.0.2.109") else {
        return;
    };
    const LAUNCHES: usize = 200;
    const WORKERS: usize = 20;
    let t = Arc::new(t);
    // Each worker's running launcher, shared with the killer.
    type Slots = Arc<Mutex<Vec<Option<Arc<Mutex<Child>>>>>>;
    let slots: Slots = Arc::new(Mutex::new(vec![None; WORKERS]));
    let next = Arc::new(Mutex::new(0usize));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kills = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let killer = {
        let (slots, done, kills) = (Arc::clone(&slots), Arc::clone(&done), Arc::clone(&kills));
        std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
                let victim = slots.lock().unwrap()[rng.below(WORKERS as u64) as usize].clone();
                if let Some(child) = victim {
                    let mut child = child.lock().unwrap();
                    // Only a launcher not yet reaped: kill() is then never a recycled pid.
                    if matches!(child.try_wait(), Ok(None)) && child.kill().is_ok() {
                        kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (t, slots, next) = (Arc::clone(&t), Arc::clone(&slots), Arc::clone(&next));
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + w as u64);
                loop {
                    let n = {
                        let mut next = next.lock().unwrap();
                        if *next >= LAUNCHES {
                            return;
                        }
                        *next += 1;
                        *next
                    };
                    let session = 1 + rng.below(25) as u32;
                    let nap = format!("0.{:02}", 2 + rng.below(15));
                    let script = format!(
                        "s=$(date +%s%N); sleep {nap}; e=$(date +%s%N); \
                         echo \"$IPVIRT_SESSION ${{IPVIRT_VIP:-none}} $s $e\" > r{n}.tmp && mv r{n}.tmp r{n}"
                    );
                    let mut c = t.launch(session, &script);
                    c.stdout(Stdio::null()).stderr(Stdio::null());
                    let child = Arc::new(Mutex::new(c.spawn().unwrap()));
                    slots.lock().unwrap()[w] = Some(Arc::clone(&child));
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        if child.lock().unwrap().try_wait().unwrap().is_some() {
                            break;
                        }
                        assert!(Instant::now() < deadline, "a launcher never ended");
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    slots.lock().unwrap()[w] = None;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    killer.join().unwrap();

    // Every address is free once all commands are gone (orphans of killed launchers included).
    t.wait_status("every lease to be released or reclaimed", <[_]>::is_empty);
    // The state parses as JSON (nobody writes it now).
    let state: Option<serde_json::Value> = ipvirt_host::StateFile::new(&t.state).read().unwrap();
    assert!(state.is_some());

    // No address was ever held by two live sessions; one session never had two addresses.
    let mut records: Vec<(u32, String, u128, u128)> = Vec::new();
    for n in 1..=LAUNCHES {
        if let Ok(line) = std::fs::read_to_string(t.dir.join(format!("r{n}"))) {
            let f: Vec<&str> = line.split_whitespace().collect();
            records.push((
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            ));
        }
    }
    let mut by_vip: HashMap<&str, Vec<&(u32, String, u128, u128)>> = HashMap::new();
    for r in records.iter().filter(|r| r.1 != "none") {
        by_vip.entry(r.1.as_str()).or_default().push(r);
    }
    for (vip, rs) in &by_vip {
        for a in rs {
            for b in rs {
                let overlap = a.2 <= b.3 && b.2 <= a.3;
                assert!(
                    a.0 == b.0 || !overlap,
                    "{vip} held by sessions {} and {} at once",
                    a.0,
                    b.0
                );
            }
        }
    }
    for a in records.iter().filter(|r| r.1 != "none") {
        for b in records.iter().filter(|r| r.1 != "none") {
            if a.0 == b.0 && a.2 <= b.3 && b.2 <= a.3 {
                assert_eq!(a.1, b.1, "session {} on two addresses at once", a.0);
            }
        }
    }
    let with_vip = records.iter().filter(|r| r.1 != "none").count();
    eprintln!(
        "chaos: {LAUNCHES} launches, {} launchers killed, {} commands ran ({with_vip} with a VIP, {} addresses used)",
        kills.load(std::sync::atomic::Ordering::SeqCst),
        records.len(),
        by_vip.len()
    );
    // Not vacuous: enough commands ran between the kills (the killer strikes every 5-25 ms, and
    // a debug build's launcher takes some of that to start its command on a loaded machine).
    assert!(
        records.len() > LAUNCHES / 10,
        "too few commands ran: {}",
        records.len()
    );
}

#[test]
fn non_utf8_and_relative_paths_work_and_are_exported_absolute() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    require!("sh");
    let Some(t) = Setup::new("paths", "192.0.2.100") else {
        return;
    };
    // A policy whose file name is not UTF-8, named by a relative path from the scratch directory.
    let name = OsStr::from_bytes(b"pol\xffcy.toml");
    std::fs::copy(&t.policy, t.dir.join(name)).unwrap();
    let out = Command::new(&t.launcher)
        .args(["run", "--id", "7", "--policy"])
        .arg(name)
        .args(["--lease-book", "leases.json", "--preload"])
        .arg(&t.lib)
        .args(["--", "sh", "-c", "printf '%s\\n' \"$IPVIRT_POLICY\""])
        .current_dir(&t.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let exported = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    let mut want = std::fs::canonicalize(&t.dir).unwrap().into_os_string();
    want.push("/");
    want.push(name);
    assert_eq!(
        exported,
        want.as_bytes(),
        "IPVIRT_POLICY is the absolute path"
    );
    // The relative state path was made absolute too: the lease is in the scratch directory.
    assert!(t.dir.join("leases.json").exists());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{}", t.dir.display())),
        "{}",
        text(&out)
    );
}
