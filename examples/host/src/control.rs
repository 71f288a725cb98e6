//! The `ipvirt` service's control protocol: what the PAM module, `ipvirt run`, `ipvirt status`
//! and `ipvirt reload` say to the service over its Unix socket, and what it answers.
//!
//! - **Transport**: a stream connection to [`DEFAULT_SOCKET`] (`/run/ipvirt/control.sock`); one
//!   request per connection. The client writes one JSON object ([`Request`]) and a newline; the
//!   service answers one JSON object ([`Response`]) and a newline, and closes.
//! - **Bounds**: a request is at most [`MAX_REQUEST`] bytes, and must arrive within the
//!   service's read deadline; anything longer, slower, not UTF-8 or not a request is answered
//!   with [`Response::Refused`] naming what was wrong, and the connection closed. A bad client
//!   never stalls or harms the service.
//! - **Who may ask what** is decided by the peer's credentials (`SO_PEERCRED`), never by what a
//!   request claims: root may open, close and list every session and reload the policy; another
//!   user may list the sessions it owns; anything else is refused. A session is opened for the
//!   **peer process itself** (the PAM module runs in the login's process; `ipvirt run` in the
//!   launcher), so a caller cannot move someone else's process into a session.
//!
//! ```
//! use ipvirt_host::control::{Request, Response};
//!
//! let req = Request::Open { user: "alice".into(), service: Some("sshd".into()), tty: Some("ssh".into()),
//!                           rhost: None, id: None };
//! let line = serde_json::to_string(&req)?;
//! assert_eq!(line, r#"{"op":"open","user":"alice","service":"sshd","tty":"ssh","rhost":null,"id":null}"#);
//! let back: Request = serde_json::from_str(&line)?;
//! assert_eq!(back, req);
//! let refused: Response = serde_json::from_str(r#"{"result":"refused","error":"no"}"#)?;
//! assert!(matches!(refused, Response::Refused { .. }));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the service listens.
pub const DEFAULT_SOCKET: &str = "/run/ipvirt/control.sock";

/// The largest request the service reads: 64 KiB (a request names a user, a PAM service, a tty
/// and a host: a few hundred bytes).
pub const MAX_REQUEST: usize = 64 << 10;

/// The largest response a client reads: 16 MiB (a list of 10 000 sessions is about 3 MB).
pub const MAX_RESPONSE: usize = 16 << 20;

/// What a client asks the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// Make the calling process a session (root only): the PAM module at `pam_open_session`,
    /// `ipvirt run` before it starts its command. The service answers [`Response::Opened`] (and
    /// the process is in the session when it reads the answer) or [`Response::Console`].
    Open {
        /// The login's user (`PAM_USER`); for `ipvirt run`, the user it runs as.
        user: String,
        /// The PAM service (`PAM_SERVICE`): `sshd`, `xrdp-sesman`, `login`…
        service: Option<String>,
        /// The tty (`PAM_TTY`): `ssh`, `/dev/pts/3`, `tty1`…
        tty: Option<String>,
        /// The remote host (`PAM_RHOST`).
        rhost: Option<String>,
        /// A session number to join or take (`ipvirt run --id`); `None`: the service chooses.
        id: Option<u32>,
    },
    /// The login that opened `session` has ended (`pam_close_session`; root only). The session
    /// itself ends when its last process has.
    Close {
        /// The session number [`Response::Opened`] gave.
        session: u32,
    },
    /// The live sessions: all of them for root, the caller's own for another user.
    List {},
    /// Re-read the policy (root only).
    Reload {},
    /// A refusal the `LD_PRELOAD` layer made in the caller's own process, for the service's log
    /// (SPEC §11: every refusal is logged once with the session and the program). Anyone may
    /// send it: the service attributes it to the session the caller's process is in (by its
    /// cgroup) and to the caller's executable, never to what the request says, and logs each
    /// kind once per session. Answered with [`Response::Noted`].
    Refusal {
        /// The refusal, in words (the library's [`ipvirt::Refusal`] text); at most
        /// [`MAX_REASON`] bytes.
        reason: String,
        /// The errno the call got.
        errno: i32,
    },
}

/// The longest reason a [`Request::Refusal`] may give.
pub const MAX_REASON: usize = 512;

/// What the service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Response {
    /// The caller's process is in the session.
    Opened {
        /// The session.
        session: SessionInfo,
        /// Variables for the login's environment (`IPVIRT_SESSION`, `IPVIRT_VIP`; with the
        /// `LD_PRELOAD` layer also `LD_PRELOAD` and `IPVIRT_POLICY`).
        environment: Vec<(String, String)>,
    },
    /// The login is a console session (or virtualization is off): nothing was changed.
    Console {
        /// Why, in words.
        reason: String,
    },
    /// The login's hold on the session ended.
    Closed {
        /// The session.
        session: u32,
        /// Whether the session ended with it (no process of it was left).
        ended: bool,
    },
    /// The live sessions.
    Sessions {
        /// One entry per session, by number.
        sessions: Vec<SessionInfo>,
    },
    /// The policy was re-read.
    Reloaded {
        /// What changed and what did not, in words.
        notes: Vec<String>,
    },
    /// A [`Request::Refusal`] was taken note of.
    Noted {},
    /// The request was not allowed, or not understood: nothing was changed.
    Refused {
        /// Why, in words naming what was wrong.
        error: String,
    },
    /// The request was understood and allowed but could not be carried out.
    Failed {
        /// Why, in words.
        error: String,
    },
}

/// One live session, as [`Response::Opened`] and [`Response::Sessions`] describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionInfo {
    /// The session number (its loopback is `127.0.0.0 + number + 1`).
    pub number: u32,
    /// The user it belongs to.
    pub user: String,
    /// The user's id.
    pub uid: u32,
    /// The PAM service of its first login (`ipvirt-run` for a session `ipvirt run` opened).
    pub service: Option<String>,
    /// The tty of its first login.
    pub tty: Option<String>,
    /// The remote host of its first login.
    pub rhost: Option<String>,
    /// Its loopback address.
    pub loopback: Ipv4Addr,
    /// Its virtual IP, if it has one.
    pub vip: Option<Ipv4Addr>,
    /// When its VIP's lease expires (seconds since the UNIX epoch; DHCP leases only).
    pub lease_expiry: Option<u64>,
    /// How many processes run in it.
    pub processes: usize,
    /// The logins that opened it and have not closed yet.
    pub logins: usize,
    /// Its cgroup(s), below the cgroup2 mount.
    pub cgroups: Vec<String>,
    /// When it was opened (seconds since the UNIX epoch).
    pub started: u64,
}

/// An error talking to the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The service does not run (no socket, or nobody listening).
    #[error("the ipvirt service is not running (no listener on {path}): {source}")]
    NotRunning {
        /// The socket.
        path: String,
        /// The system's error.
        source: io::Error,
    },
    /// Talking failed midway, or took longer than the deadline.
    #[error("talking to the ipvirt service on {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The system's error.
        source: io::Error,
    },
    /// The answer was not a response.
    #[error("the ipvirt service on {path} answered something that is not a response: {message}")]
    BadResponse {
        /// The socket.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// Sends `request` to the service listening on `path` and waits up to `timeout` for its answer.
///
/// # Errors
///
/// [`ControlError::NotRunning`] when nothing listens; [`ControlError::Io`] when the exchange
/// fails or exceeds `timeout`; [`ControlError::BadResponse`].
#[cfg(unix)]
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, ControlError> {
    use std::os::unix::net::UnixStream;

    let name = path.display().to_string();
    let io = |source| ControlError::Io {
        path: name.clone(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: name.clone(),
        source,
    })?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ControlError::BadResponse {
        path: name.clone(),
        message: format!("the request does not encode: {e}"),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let bytes =
        read_line(&mut stream, MAX_RESPONSE, Instant::now() + timeout).map_err(|e| match e {
            LineError::Io(source) => io(source),
            other => ControlError::BadResponse {
                path: name.clone(),
                message: other.to_string(),
            },
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ControlError::BadResponse {
        path: name.clone(),
        message: e.to_string(),
    })
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than the limit without a newline.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The peer closed before the newline.
    #[error("ended before its newline ({got} bytes)")]
    Truncated {
        /// How much arrived.
        got: usize,
    },
    /// The deadline passed first.
    #[error("not complete within the deadline ({got} bytes so far)")]
    TooSlow {
        /// How much arrived.
        got: usize,
    },
    /// The system's error.
    #[error(transparent)]
    Io(io::Error),
}

/// Reads one newline-terminated line of at most `max` bytes (the newline excluded) from a socket
/// before `deadline`. The socket's read timeout is set as the deadline approaches.
///
/// # Errors
///
/// [`LineError`].
#[cfg(unix)]
pub fn read_line(
    stream: &mut std::os::unix::net::UnixStream,
    max: usize,
    deadline: Instant,
) -> Result<Vec<u8>, LineError> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LineError::TooSlow { got: got.len() });
        }
        stream.set_read_timeout(Some(left)).map_err(LineError::Io)?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(LineError::TooSlow { got: got.len() });
            }
            Err(e) => return Err(LineError::Io(e)),
        };
        if n == 0 {
            return Err(LineError::Truncated { got: got.len() });
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            got.extend_from_slice(chunk.get(..end).unwrap_or_default());
            if got.len() > max {
                return Err(LineError::TooLong { max });
            }
            return Ok(got);
        }
        got.extend_from_slice(chunk);
        if got.len() > max {
            return Err(LineError::TooLong { max });
        }
    }
}

/// Writes `response` and its newline to `stream`.
///
/// # Errors
///
/// The system's error.
pub fn write_response(stream: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn lines_are_bounded_and_deadlined() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"{\"op\":\"list\"}\n").unwrap();
        let line = read_line(&mut a, 100, Instant::now() + Duration::from_secs(5)).unwrap();
        let req: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(req, Request::List {});

        b.write_all(&[b'x'; 200]).unwrap();
        assert!(matches!(
            read_line(&mut a, 100, Instant::now() + Duration::from_secs(5)),
            Err(LineError::TooLong { max: 100 })
        ));

        let (mut a, b) = UnixStream::pair().unwrap();
        let e = read_line(&mut a, 100, Instant::now() + Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, LineError::TooSlow { got: 0 }), "{e}");
        drop(b);
        let e = read_line(&mut a, 100, Instant::now() + Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, LineError::Truncated { got: 0 }), "{e}");
    }

    #[test]
    fn unknown_fields_and_ops_are_errors() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"list","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"format-disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"close"}"#).is_err());
    }
}
