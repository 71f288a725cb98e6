//! The refusals the programs report, for the service's log (SPEC §11: every refusal the layers
//! make for a session is logged once, with the session and the program).
//!
//! Each time a program refuses a call (isolation, no connectivity, a session without an entry),
//! it writes a [`Refused`] event to the `ipv_refusals` ring buffer (64 KiB, about 1 100 events).
//! A task writes an event only when it differs from the last one it wrote (the per-task cache
//! keeps a fingerprint), so a program that retries a refused call in a loop costs one event; the
//! reader keeps the first of each kind per session. When the ring is full (nobody reads: no
//! service runs), new events are dropped by the kernel; the refusal itself still happens.
//!
//! There is one reader: the `ipvirt` service ([`Layer::refusals`](crate::Layer::refusals)). A
//! ring buffer has one consumer position, so a second reader would take events from the first.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! # let layer: ipvirt_kernel::Layer = unimplemented!();
//! let mut ring = layer.refusals()?.expect("attached programs with a refusal ring");
//! loop {
//!     ring.wait(None).map_err(|e| e.to_string())?;
//!     while let Some(event) = ring.next() {
//!         match event {
//!             Ok(r) => println!("{r}"),
//!             Err(e) => eprintln!("{e}"),
//!         }
//!     }
//! }
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// The size of one event (`struct ipv_refusal` in `ipvirt.bpf.c`).
pub const EVENT_LEN: usize = 88;

/// Which call a program refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusedCall {
    /// `bind`.
    Bind,
    /// `connect` (also the implicit source bind a connect needs).
    Connect,
    /// `sendto` / `sendmsg` to a destination.
    SendTo,
    /// `sendmsg` with a source chosen in `IP_PKTINFO` / `IPV6_PKTINFO`.
    SendSource,
}

impl fmt::Display for RefusedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusedCall::Bind => "bind",
            RefusedCall::Connect => "connect",
            RefusedCall::SendTo => "sendto",
            RefusedCall::SendSource => "sendmsg (IP_PKTINFO source)",
        })
    }
}

/// One refusal, as a program reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The calling task's cgroup id (the inode number of its cgroup2 directory).
    pub cgroup: u64,
    /// The session's number; `None` when the task's cgroup had no session entry (the layer
    /// failed closed with `EPERM`).
    pub session: Option<u32>,
    /// The errno the call got (positive).
    pub errno: i32,
    /// The calling process.
    pub pid: u32,
    /// The call.
    pub call: RefusedCall,
    /// The address the program gave (the destination, or the source it chose).
    pub addr: SocketAddr,
    /// The task's name, as the kernel keeps it (at most 15 bytes; informational: a process may
    /// set it).
    pub comm: String,
    /// The basename of the task's executable, as the kernel has it (at most 31 bytes): the
    /// program, also when the process has exited before the event is read.
    pub exe: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.session {
            Some(s) => write!(f, "session {s}: ")?,
            None => write!(f, "cgroup {} (no session entry): ", self.cgroup)?,
        }
        write!(
            f,
            "{} {} refused with {} ({} pid {})",
            self.call,
            self.addr,
            errno_name(self.errno),
            self.exe,
            self.pid
        )
    }
}

/// The name of the errnos the programs return, else the number.
pub fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        n => format!("errno {n}"),
    }
}

/// An event that is not a refusal this version writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// The event is not [`EVENT_LEN`] bytes long.
    Length {
        /// Its length.
        len: usize,
    },
    /// The call field names no call.
    Call {
        /// The field's value.
        call: u16,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Length { len } => write!(
                f,
                "a refusal event of {len} bytes (this version reads {EVENT_LEN}): the attached programs come from another ipvirt version"
            ),
            EventError::Call { call } => write!(f, "a refusal event with unknown call {call}"),
        }
    }
}

impl std::error::Error for EventError {}

/// Reads one event's bytes.
pub fn parse(b: &[u8]) -> Result<Refused, EventError> {
    let b: &[u8; EVENT_LEN] = b
        .try_into()
        .map_err(|_| EventError::Length { len: b.len() })?;
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u16_at = |o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let raw_call = u16_at(20);
    let (call, six) = match raw_call {
        1 => (RefusedCall::Bind, false),
        2 => (RefusedCall::Bind, true),
        3 => (RefusedCall::Connect, false),
        4 => (RefusedCall::Connect, true),
        5 => (RefusedCall::SendTo, false),
        6 => (RefusedCall::SendSource, false),
        7 => (RefusedCall::SendTo, true),
        call => return Err(EventError::Call { call }),
    };
    let port = u16_at(22);
    // The address words are in network order, as the program gave them.
    let word = |i: usize| <[u8; 4]>::try_from(&b[24 + 4 * i..28 + 4 * i]).unwrap_or([0; 4]);
    let addr = if six {
        let mut o = [0u8; 16];
        for i in 0..4 {
            o[4 * i..4 * i + 4].copy_from_slice(&word(i));
        }
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(o), port, 0, 0))
    } else {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(word(0)), port))
    };
    let text = |field: &[u8]| {
        let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    };
    let session = u32_at(8);
    Ok(Refused {
        cgroup: u64_at(0),
        session: (session != 0).then_some(session),
        errno: i32::try_from(u32_at(12)).unwrap_or(i32::MAX),
        pid: u32_at(16),
        call,
        addr,
        comm: text(&b[40..56]),
        exe: text(&b[56..88]),
    })
}

/// The reader of the programs' refusal ring buffer.
pub struct Refusals {
    ring: aya::maps::RingBuf<aya::maps::MapData>,
}

impl fmt::Debug for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusals")
            .field("fd", &self.ring.as_raw_fd())
            .finish()
    }
}

impl Refusals {
    /// The ring buffer behind `fd` (a map fd of type `BPF_MAP_TYPE_RINGBUF`).
    pub(crate) fn open(fd: OwnedFd) -> Result<Refusals, String> {
        let data = aya::maps::MapData::from_fd(fd).map_err(|e| format!("ipv_refusals: {e}"))?;
        let ring = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(data))
            .map_err(|e| format!("ipv_refusals: {e}"))?;
        Ok(Refusals { ring })
    }

    /// The next event, if one is there (never blocks).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Refused, EventError>> {
        self.ring.next().map(|item| parse(&item))
    }

    /// Waits until an event is there, or `timeout` passed (`None`: no limit). `Ok(true)` when one
    /// is there. No CPU is spent while waiting (`poll` on the ring's fd).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut p = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            #[allow(unsafe_code)]
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r >= 0 {
                return Ok(r > 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(call: u16, addr: [u8; 16], port: u16, session: u32) -> Vec<u8> {
        let mut b = vec![0u8; EVENT_LEN];
        b[0..8].copy_from_slice(&4242u64.to_ne_bytes());
        b[8..12].copy_from_slice(&session.to_ne_bytes());
        b[12..16].copy_from_slice(&13u32.to_ne_bytes());
        b[16..20].copy_from_slice(&77u32.to_ne_bytes());
        b[20..22].copy_from_slice(&call.to_ne_bytes());
        b[22..24].copy_from_slice(&port.to_ne_bytes());
        b[24..40].copy_from_slice(&addr);
        b[40..46].copy_from_slice(b"python");
        b[56..66].copy_from_slice(b"python3.11");
        b
    }

    #[test]
    fn an_ipv4_bind_refusal() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[127, 0, 0, 9]);
        let r = parse(&event(1, a, 8080, 8)).unwrap();
        assert_eq!(r.session, Some(8));
        assert_eq!(r.call, RefusedCall::Bind);
        assert_eq!(r.addr, "127.0.0.9:8080".parse().unwrap());
        assert_eq!(r.errno, libc::EACCES);
        assert_eq!(r.comm, "python");
        assert_eq!(r.exe, "python3.11");
        assert_eq!(
            r.to_string(),
            "session 8: bind 127.0.0.9:8080 refused with EACCES (python3.11 pid 77)"
        );
    }

    #[test]
    fn an_ipv6_connect_of_a_task_without_session() {
        let a = "::ffff:127.0.0.9".parse::<Ipv6Addr>().unwrap().octets();
        let r = parse(&event(4, a, 22, 0)).unwrap();
        assert_eq!(r.session, None);
        assert_eq!(r.call, RefusedCall::Connect);
        assert_eq!(r.addr, "[::ffff:127.0.0.9]:22".parse().unwrap());
        assert!(
            r.to_string()
                .starts_with("cgroup 4242 (no session entry): connect")
        );
    }

    #[test]
    fn foreign_events_are_typed_errors() {
        assert_eq!(parse(&[0; 12]), Err(EventError::Length { len: 12 }));
        assert_eq!(
            parse(&event(99, [0; 16], 1, 1)),
            Err(EventError::Call { call: 99 })
        );
        assert!(
            EventError::Length { len: 12 }
                .to_string()
                .contains("12 bytes")
        );
    }
}
