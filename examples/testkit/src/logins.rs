//! What the login tests need of a host: test users with SSH keys (removed after), a private
//! `sshd` running the host's PAM stack from a private `/etc/pam.d` (a mount namespace: the host's
//! is never changed), and a receiver for the auth log when the host has no syslog.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Guard, free_port, wait_until};

/// How long a test step may take.
pub const STEP: Duration = Duration::from_secs(30);

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A user made for the test (`useradd -m`), with an SSH key; removed with its home on drop.
#[derive(Debug)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The private key that logs in as the user.
    pub key: PathBuf,
    /// The user's id.
    pub uid: u32,
    /// The home directory.
    pub home: PathBuf,
}

impl User {
    /// Makes user `name` (at most 32 characters) with a key in `dir`.
    pub fn new(name: &str, dir: &Path) -> User {
        let _ = Command::new("userdel").args(["-r", name]).output();
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", name]));
        let key = dir.join(format!("key-{name}"));
        let _ = std::fs::remove_file(&key);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        let id = run(Command::new("id").args(["-u", name]));
        let uid: u32 = String::from_utf8_lossy(&id.stdout)
            .trim()
            .parse()
            .expect("a uid");
        let home = PathBuf::from(format!("/home/{name}"));
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("~/.ssh");
        std::fs::copy(key.with_extension("pub"), ssh.join("authorized_keys")).expect("the key");
        run(Command::new("chown")
            .args(["-R", &format!("{name}:{name}")])
            .arg(&ssh));
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("0700");
        User {
            name: name.to_owned(),
            key,
            uid,
            home,
        }
    }

    /// `ssh` as this user to `sshd`, running `cmd` (no pty, no host key checks).
    pub fn ssh(&self, sshd: &Sshd, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&self.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-p",
                &sshd.port.to_string(),
            ])
            .arg(format!("{}@127.0.0.1", self.name))
            .arg(cmd)
            .stdin(Stdio::null());
        c
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .output();
        wait_until("the user's processes to end", STEP, || {
            !Command::new("pgrep")
                .args(["-u", &self.name])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// A private `sshd` on a loopback port with `UsePAM yes` and the host's PAM stack, from a copy of
/// `/etc/pam.d` with the test's lines added (bind-mounted in a mount namespace of its own).
#[derive(Debug)]
pub struct Sshd {
    /// Its port on `127.0.0.1`.
    pub port: u16,
    /// Its scratch directory.
    pub dir: PathBuf,
    _child: Guard,
}

impl Sshd {
    /// Starts it; `session_lines` are appended to the private `pam.d/sshd`.
    pub fn start(dir: &Path, session_lines: &[String]) -> Sshd {
        std::fs::create_dir_all(dir).expect("the scratch directory");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let pam = dir.join("pam.d");
        let _ = std::fs::remove_dir_all(&pam);
        run(Command::new("cp").arg("-r").arg("/etc/pam.d").arg(&pam));
        let mut sshd_pam = std::fs::read_to_string(pam.join("sshd")).expect("pam.d/sshd");
        for l in session_lines {
            sshd_pam.push_str(l);
            sshd_pam.push('\n');
        }
        std::fs::write(pam.join("sshd"), sshd_pam).expect("pam.d/sshd");
        let hostkey = dir.join("hostkey");
        let _ = std::fs::remove_file(&hostkey);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey));
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nUsePAM yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nPidFile {}\nStrictModes no\nUseDNS no\n\
                 PrintMotd no\nLogLevel ERROR\n",
                hostkey.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .expect("sshd_config");
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /etc/pam.d && exec /usr/sbin/sshd -D -e -f '{}'",
                pam.display(),
                config.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).expect("sshd.log"))
            .spawn()
            .expect("sshd starts");
        let guard = Guard(child);
        wait_until("sshd to listen", STEP, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd {
            port,
            dir: dir.to_path_buf(),
            _child: guard,
        }
    }
}

/// The auth log's lines while this receiver lives, when the host has no syslog: it binds
/// `/dev/log` (and removes it on drop). `None` when something else already owns `/dev/log`.
#[derive(Debug)]
pub struct AuthLog {
    lines: Arc<Mutex<Vec<String>>>,
    _socket: Arc<UnixDatagram>,
}

impl AuthLog {
    /// Starts receiving.
    pub fn start() -> Option<AuthLog> {
        let path = Path::new("/dev/log");
        if path.exists() {
            return None;
        }
        let sock = Arc::new(UnixDatagram::bind(path).ok()?);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (Arc::clone(&sock), Arc::clone(&lines));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = s.recv(&mut buf) {
                if let Ok(mut v) = l.lock() {
                    v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Some(AuthLog {
            lines,
            _socket: sock,
        })
    }

    /// The lines received so far that contain `what`.
    pub fn matching(&self, what: &str) -> Vec<String> {
        self.lines
            .lock()
            .map(|v| v.iter().filter(|l| l.contains(what)).cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for AuthLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
    }
}
