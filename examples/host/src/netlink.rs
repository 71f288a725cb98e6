//! The adapter's IPv4 addresses through rtnetlink (`RTM_NEWADDR`, `RTM_DELADDR`, `RTM_GETADDR`),
//! written over libc: what `ip -4 addr add|del A/32 dev IF` does, with the kernel's own answer
//! instead of a message to parse.
//!
//! An address is added with `NLM_F_EXCL`, so "it is there already" is `EEXIST`, not an error
//! text that changes between iproute2 versions ("File exists", "Address already assigned"); and
//! with `IFA_PROTO` set to [`PROTO`] (Linux ≥ 6.1), so that an address ipvirt added can be told
//! from one the administrator configured, also by a later process (a restarted launcher).

#![allow(unsafe_code)] // socket(2), sendto(2), recv(2) on a netlink socket

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The `IFA_PROTO` value of the addresses ipvirt adds ("the protocol that installed the address";
/// 0–3 are the kernel's). `ip addr` shows it as `proto 0x49`.
pub(crate) const PROTO: u8 = 0x49;

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_PROTO: u16 = 11;
const HEADER: usize = 16;
const IFADDRMSG: usize = 8;

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// The address was added (by this call).
    Added,
    /// The address was on the interface already.
    AlreadyThere,
}

/// The index of interface `name`.
///
/// # Errors
///
/// `NotFound` when there is no such interface.
pub(crate) fn index_of(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is NUL-terminated.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// Adds `addr/32` to interface `index`, tagged [`PROTO`]; `AlreadyThere` when it is there.
///
/// # Errors
///
/// The kernel's error (`EPERM` without `CAP_NET_ADMIN`, ...).
pub(crate) fn add(index: u32, addr: Ipv4Addr) -> io::Result<Added> {
    let mut msg = request(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        index,
    );
    attr(&mut msg, IFA_LOCAL, &addr.octets());
    attr(&mut msg, IFA_ADDRESS, &addr.octets());
    attr(&mut msg, IFA_PROTO, &[PROTO]);
    match Socket::open()?.ack(&mut msg) {
        Ok(()) => Ok(Added::Added),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Added::AlreadyThere),
        Err(e) => Err(e),
    }
}

/// Removes `addr/32` from interface `index`; `Ok(false)` when it was not there.
///
/// # Errors
///
/// The kernel's error.
pub(crate) fn remove(index: u32, addr: Ipv4Addr) -> io::Result<bool> {
    let mut msg = request(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, index);
    attr(&mut msg, IFA_LOCAL, &addr.octets());
    attr(&mut msg, IFA_ADDRESS, &addr.octets());
    match Socket::open()?.ack(&mut msg) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ESRCH)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `addr/32` is on interface `index`, and its `IFA_PROTO` if the kernel reports one:
/// `None` when it is not there, `Some(None)` when it is there untagged.
///
/// # Errors
///
/// The kernel's error.
pub(crate) fn find(index: u32, addr: Ipv4Addr) -> io::Result<Option<Option<u8>>> {
    let mut msg = request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 0);
    let sock = Socket::open()?;
    let seq = sock.send(&mut msg)?;
    let mut found = None;
    sock.each(seq, |kind, body| {
        if kind != RTM_NEWADDR || body.len() < IFADDRMSG {
            return;
        }
        let prefix = body[1];
        let ifindex = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
        if ifindex != index || prefix != 32 {
            return;
        }
        let (mut local, mut proto) = (None, None);
        for (t, data) in attrs(&body[IFADDRMSG..]) {
            match (t, data.len()) {
                (IFA_LOCAL, 4) => local = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
                (IFA_PROTO, 1) => proto = Some(data[0]),
                _ => {}
            }
        }
        if local == Some(addr) {
            found = Some(proto);
        }
    })?;
    Ok(found)
}

/// A request: the header (length filled in by [`Socket::send`]) and an `ifaddrmsg` for IPv4,
/// prefix 32, universe scope, on interface `index`.
fn request(kind: u16, flags: u16, index: u32) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m.push(libc::AF_INET as u8);
    m.push(if kind == RTM_GETADDR { 0 } else { 32 });
    m.push(0); // flags
    m.push(0); // RT_SCOPE_UNIVERSE
    m.extend_from_slice(&index.to_ne_bytes());
    m
}

/// Appends a route attribute (padded to 4 bytes).
fn attr(m: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(m.len().next_multiple_of(4), 0);
}

/// The attributes of a message body: (type, data).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3FFF;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    out
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2); the descriptor is checked and then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        let s = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: tv is a timeval of the size given.
        unsafe {
            libc::setsockopt(
                s.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(s)
    }

    /// Sends `msg` to the kernel with a fresh sequence number, which it returns.
    fn send(&self, msg: &mut [u8]) -> io::Result<u32> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        // SAFETY: sockaddr_nl is plain data; zero is a valid value, the kernel's address.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and to are live for the given lengths.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(seq)
    }

    /// Sends a request that asks for an acknowledgement, and returns the kernel's answer.
    fn ack(&self, msg: &mut [u8]) -> io::Result<()> {
        let seq = self.send(msg)?;
        let mut result = Err(io::Error::other("netlink: no acknowledgement"));
        self.each_error(seq, &mut result, |_, _| {})?;
        result
    }

    /// Calls `f(type, body)` for each answer to `seq` until the dump is done.
    fn each(&self, seq: u32, f: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut result = Ok(());
        self.each_error(seq, &mut result, f)?;
        result
    }

    fn each_error(
        &self,
        seq: u32,
        result: &mut io::Result<()>,
        mut f: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: buf is writable for its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut b = &buf[..n as usize];
            while b.len() >= HEADER {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < HEADER || len > b.len() {
                    return Err(io::Error::other("netlink: a truncated message"));
                }
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let their = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                let body = &b[HEADER..len];
                b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
                if their != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                        *result = if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                        return Ok(());
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => f(kind, body),
                }
            }
        }
    }
}
