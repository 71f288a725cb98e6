//! `StateFile` (SPEC §10): atomic replace, a separate lock, and clear errors that name the file and
//! leave it as it is. The kill-at-every-step and full-disk cases with real processes are in
//! `tests/session_launcher.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipvirt::{PoolSnapshot, SessionId};
use ipvirt_host::{StateError, StateFile, StateStep};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvirt-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn snap(n: u32) -> PoolSnapshot {
    PoolSnapshot {
        version: PoolSnapshot::VERSION,
        leases: vec![(SessionId::new(n), "192.0.2.1".parse().unwrap())],
        ..PoolSnapshot::default()
    }
}

#[test]
fn missing_state_reads_as_none_and_writes_replace_it() {
    let dir = scratch("roundtrip");
    let state = StateFile::new(dir.join("s.json"));
    assert_eq!(state.read::<PoolSnapshot>().unwrap(), None);
    let lock = state.lock().unwrap();
    lock.write(&snap(7)).unwrap();
    assert_eq!(lock.read::<PoolSnapshot>().unwrap(), Some(snap(7)));
    lock.write(&snap(8)).unwrap();
    drop(lock);
    assert_eq!(state.read::<PoolSnapshot>().unwrap(), Some(snap(8)));
    // No temporary file is left behind; the lock file stays.
    assert!(!state.temp_path().exists());
    assert!(state.lock_path().exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_leftover_temporary_file_is_never_read_and_is_replaced() {
    let dir = scratch("leftover");
    let state = StateFile::new(dir.join("s.json"));
    state.lock().unwrap().write(&snap(7)).unwrap();
    // A writer killed mid-write leaves a cut-off temporary file.
    std::fs::write(state.temp_path(), b"{\"version\":2,\"lea").unwrap();
    assert_eq!(state.read::<PoolSnapshot>().unwrap(), Some(snap(7)));
    state.lock().unwrap().write(&snap(9)).unwrap();
    assert_eq!(state.read::<PoolSnapshot>().unwrap(), Some(snap(9)));
    assert!(!state.temp_path().exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_state_is_an_error_naming_the_file_and_is_kept() {
    let dir = scratch("corrupt");
    let path = dir.join("s.json");
    let state = StateFile::new(&path);
    for bad in [
        &b""[..],
        b"{\"version\":2,\"leases\":[[7,",
        b"\xff\xfe garbage",
        b"{\"version\": \"two\"}",
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = state.read::<PoolSnapshot>().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("corrupt"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "the file was changed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fifo_or_a_directory_is_refused_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("fifo.json");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let err = StateFile::new(&fifo).read::<PoolSnapshot>().unwrap_err();
        assert!(matches!(err, StateError::NotRegular { .. }), "{err:?}");
    } else {
        eprintln!("skipped the FIFO case: mkfifo is not available");
    }
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let err = StateFile::new(&sub).read::<PoolSnapshot>().unwrap_err();
    assert!(matches!(err, StateError::NotRegular { .. }), "{err:?}");
    assert!(err.to_string().contains("not a regular file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_oversized_state_is_refused() {
    let dir = scratch("large");
    let path = dir.join("s.json");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(StateFile::MAX_BYTES + 1).unwrap(); // sparse: costs no disk
    let err = StateFile::new(&path).read::<PoolSnapshot>().unwrap_err();
    assert!(
        matches!(err, StateError::TooLarge { size, .. } if size == StateFile::MAX_BYTES + 1),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_write_into_a_missing_directory_names_the_step_and_the_file() {
    let dir = scratch("missing");
    let state = StateFile::new(dir.join("s.json"));
    let lock = state.lock().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = lock.write(&snap(7)).unwrap_err();
    match &err {
        StateError::Io { step, path, .. } => {
            assert_eq!(*step, StateStep::CreateTemp);
            assert_eq!(path, state.temp_path());
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("cannot create the temporary file"));
}

#[test]
fn the_lock_serializes_read_modify_write_across_threads() {
    let dir = scratch("lock");
    let state = Arc::new(StateFile::new(dir.join("counter.json")));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let lock = state.lock().unwrap();
                    let n: u32 = lock.read().unwrap().unwrap_or(0);
                    lock.write(&(n + 1)).unwrap();
                }
            })
        })
        .collect();
    // Meanwhile an unlocked reader always sees a whole number.
    for _ in 0..200 {
        let _: Option<u32> = state.read().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(state.read::<u32>().unwrap(), Some(100));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- who may touch the state (SPEC §10; issue 23, item 5) ----------------------------------

/// A second, unprivileged user made for the test, removed on drop.
struct OtherUser {
    name: String,
}

impl OtherUser {
    fn new(tag: &str) -> Option<OtherUser> {
        if !ipvirt_testkit::is_root() || !ipvirt_testkit::have("useradd") {
            eprintln!("skipped: needs root and useradd");
            return None;
        }
        let name = format!("ipvt{}{tag}", std::process::id() % 100_000);
        let _ = std::process::Command::new("userdel").arg(&name).output();
        let ok = std::process::Command::new("useradd")
            .args(["-M", "-N", "-s", "/usr/sbin/nologin", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        Some(OtherUser { name })
    }

    /// Runs `script` with sh as this user.
    fn sh(&self, script: &str) -> std::process::Command {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            &format!("--reuid={}", self.name),
            "--regid=users",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ]);
        c
    }

    fn run(&self, script: &str) {
        let o = self.sh(script).output().unwrap();
        assert!(o.status.success(), "{script}: {o:?}");
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .output();
    }
}

fn unsafe_reason(e: &StateError) -> String {
    match e {
        StateError::Unsafe { source, .. } => source.to_string(),
        other => panic!("expected StateError::Unsafe, got {other:?}"),
    }
}

#[test]
fn links_planted_by_another_user_are_never_followed_and_their_places_refused() {
    let Some(mallory) = OtherUser::new("a") else {
        return;
    };
    let dir = scratch("planted");
    // What root must never touch: a file of root's, and a name where root must create nothing.
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let created = dir.join("created-by-root");
    // Mallory's own directory, in the shared /tmp, with links at the state's temporary file and
    // lock, and a state file of hers.
    let hers = std::env::temp_dir().join(format!("ipvirt-mallory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&hers);
    mallory.run(&format!(
        "mkdir -m 0755 {0} && ln -s {1} {0}/leases.json.tmp && ln -s {2} {0}/leases.json.lock",
        hers.display(),
        victim.display(),
        created.display()
    ));
    let state = StateFile::new(hers.join("leases.json"));
    let e = state.lock().unwrap_err();
    assert!(unsafe_reason(&e).contains("belongs to uid"), "{e}");
    assert!(e.to_string().contains(&hers.display().to_string()), "{e}");
    let e = state.read::<u32>().unwrap_err();
    assert!(unsafe_reason(&e).contains("belongs to uid"), "{e}");
    // The same links straight in /tmp (the 0.2 default): the shared sticky directory is refused.
    let name = format!("ipvirt-shared-{}.json", std::process::id());
    let in_tmp = std::env::temp_dir().join(&name);
    mallory.run(&format!(
        "ln -s {1} {0}.tmp && ln -s {2} {0}.lock",
        in_tmp.display(),
        victim.display(),
        created.display()
    ));
    let state = StateFile::new(&in_tmp);
    let e = state.lock().unwrap_err();
    let why = unsafe_reason(&e);
    assert!(
        why.contains("can be written by other users") && why.contains("sticky"),
        "{e}"
    );
    // A directory of root's that other users can write.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let e = StateFile::new(open.join("s.json")).lock().unwrap_err();
    assert!(unsafe_reason(&e).contains("mode 0777"), "{e}");
    // Nothing was written through a link, nothing was created.
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert!(!created.exists());
    for p in [
        in_tmp.with_extension("json.tmp"),
        in_tmp.with_extension("json.lock"),
    ] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&hers);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn links_and_foreign_files_in_a_private_directory_are_not_used() {
    if !ipvirt_testkit::is_root() {
        eprintln!("skipped: needs root (chown)");
        return;
    }
    let dir = scratch("links");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let path = dir.join("s.json");
    let state = StateFile::new(&path);
    // A link at the temporary file (left by anyone, ever): removed, never written through.
    std::os::unix::fs::symlink(&victim, state.temp_path()).unwrap();
    state.lock().unwrap().write(&snap(7)).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert_eq!(state.read::<PoolSnapshot>().unwrap(), Some(snap(7)));
    // A link at the lock or at the state itself: refused, naming it.
    std::fs::remove_file(state.lock_path()).unwrap();
    std::os::unix::fs::symlink(&victim, state.lock_path()).unwrap();
    let e = state.lock().unwrap_err();
    assert!(unsafe_reason(&e).contains("symbolic link"), "{e}");
    std::fs::remove_file(state.lock_path()).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let e = state.read::<u32>().unwrap_err();
    assert!(unsafe_reason(&e).contains("symbolic link"), "{e}");
    std::fs::remove_file(&path).unwrap();
    // A state file that another user owns, or can write, or that has a second name.
    std::fs::write(&path, b"7\n").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
    let e = state.read::<u32>().unwrap_err();
    assert!(unsafe_reason(&e).contains("belongs to uid 65534"), "{e}");
    std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let e = state.read::<u32>().unwrap_err();
    assert!(
        unsafe_reason(&e).contains("can be written by other users"),
        "{e}"
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::hard_link(&path, dir.join("second-name")).unwrap();
    let e = state.read::<u32>().unwrap_err();
    assert!(unsafe_reason(&e).contains("hard links"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let _ = std::fs::remove_dir_all(&dir);
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_held_lock_is_waited_for_until_a_deadline_or_a_stop_and_names_its_holder() {
    if !ipvirt_testkit::have("flock") {
        eprintln!("skipped: flock is not installed");
        return;
    }
    let dir = scratch("held");
    let state = StateFile::new(dir.join("s.json"));
    drop(state.lock().unwrap()); // makes the lock file
    // Another process holds the lock (flock(1) keeps it while its command runs).
    let mut holder = std::process::Command::new("flock")
        .arg("-x")
        .arg(state.lock_path())
        .args(["-c", "echo locked; exec cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "locked\n");
    let pid = holder.id();

    let short = state
        .clone()
        .with_lock_wait(ipvirt_host::LockWait::new(Duration::from_millis(300)));
    let e = short.lock().unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            &e,
            StateError::Lock {
                source: ipvirt_host::LockError::Timeout { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.contains(&state.lock_path().display().to_string()),
        "{msg}"
    );
    // The holder is the shell flock runs its command in (the lock's owner in /proc/locks).
    assert!(msg.contains("held") && msg.contains("by process "), "{msg}");
    let named: u32 = msg
        .split("by process ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let parent = std::fs::read_to_string(format!("/proc/{named}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(str::to_owned))
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned));
    assert!(
        named == pid || parent.as_deref() == Some(&pid.to_string()),
        "{msg} (flock is {pid})"
    );

    // A stop ends a long wait (what `ipvirt run` does on SIGTERM).
    let long = state.clone().with_lock_wait(
        ipvirt_host::LockWait::new(Duration::from_secs(600)).stopped_by(stop_requested),
    );
    let waiter = std::thread::spawn(move || long.lock().map(drop));
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = waiter.join().unwrap().unwrap_err();
    assert!(
        matches!(
            &e,
            StateError::Lock {
                source: ipvirt_host::LockError::Stopped { .. },
                ..
            }
        ),
        "{e:?}"
    );
    drop(holder.stdin.take());
    holder.wait().unwrap();
    // Free again: taken at once.
    drop(state.lock().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
