//! `StateFile` (SPEC §10): atomic replace, a separate lock, and clear errors that name the file and
//! leave it as it is. The kill-at-every-step and full-disk cases with real processes are in
//! `tests/session_launcher.rs`.

use std::path::PathBuf;
use std::sync::Arc;

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
    let err = StateFile::new(&dir).read::<PoolSnapshot>().unwrap_err();
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
