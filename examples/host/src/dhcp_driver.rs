//! The Linux driver of a [`DhcpSource`]: sockets, timers, the adapter's addresses and the lease file.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, Socket, Type};

use ipvirt::dhcp::{
    Destination, DhcpConfig, DhcpEvent, DhcpRestoreError, DhcpSnapshot, DhcpSource,
};
use ipvirt::{AddressSource, LeaseError};

use crate::netlink;
use crate::{StateError, StateFile};
use ipvirt::{SessionId, Vip};

/// The clock a [`DhcpDriver`] reads: a [`Duration`] since an epoch (the wall clock by default).
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// An error opening or running a [`DhcpDriver`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The interface does not exist or has no hardware address.
    #[error("DHCP interface {interface:?}: {reason}")]
    Interface {
        /// The interface.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// A socket operation failed.
    #[error("DHCP socket on {interface:?}: {what}: {source}")]
    Socket {
        /// The interface.
        interface: String,
        /// What was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The lease file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The lease file's content does not restore.
    #[error("lease file {path}: {source}")]
    Restore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DhcpRestoreError,
    },
}

/// One socket and the thread that reads it into the driver's channel.
#[derive(Debug)]
struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn spawn(socket: UdpSocket, tx: Sender<Vec<u8>>) -> std::io::Result<Reader> {
        // The thread checks `stop` at least this often.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (socket, Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("ipvirt-dhcp".into())
            .spawn(move || {
                let mut buf = vec![0u8; 1500];
                while !st.load(Ordering::Relaxed) {
                    match s.recv(&mut buf) {
                        Ok(n) => {
                            if tx.send(buf.get(..n).unwrap_or_default().to_vec()).is_err() {
                                return;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => return,
                    }
                }
            })?;
        Ok(Reader {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Drives a [`DhcpSource`] on one Linux interface (the VIP adapter).
///
/// - **Sockets**: UDP port 68 bound to `0.0.0.0` with `SO_BINDTODEVICE` (so DISCOVERs, broadcasts
///   and RELEASEs leave through the adapter whatever the routes say), `SO_BROADCAST` and
///   `SO_REUSEADDR` (several drivers, one per launcher, share the port: broadcast replies reach all
///   of them and each takes the ones whose transaction is its own). While a session holds an
///   address, a second socket is bound to `address:68`, so that a server's unicast reply to the
///   address (renewals) reaches this driver rather than another one on the port.
/// - **Addresses**: with `configure_addresses`, a bound address is added to the adapter (`A/32`,
///   through rtnetlink, tagged `IFA_PROTO` 0x49) and removed when it is released, lost or
///   declined — only if ipvirt added it (SPEC §10): an address the administrator configured
///   before is left on the interface, also at the end of the session. (An address with ipvirt's
///   tag was added by an earlier ipvirt process, a killed launcher's: it is ipvirt's to remove.)
///   A server answers a renewal by unicast to the address, which only arrives when the address is
///   the host's (and the hooking layer can bind a socket to a VIP only then).
/// - **Timers**: [`step`](Self::step) waits for a datagram or the machine's next deadline, at most
///   the time given; the [`Clock`] is the wall clock (`SystemTime` since the UNIX epoch) unless
///   another is given.
/// - **Lease file**: with a [`StateFile`], every change of a lease is written (atomically, under
///   the file's lock) as a [`DhcpSnapshot`], merged with the leases of sessions other drivers hold;
///   [`lease`](Self::lease) of a session whose unexpired lease is in the file takes it back and
///   renews it (a restarted launcher does not start over), and a session that comes back asks for
///   the address the file remembers.
///
/// Needs `CAP_NET_RAW` (for `SO_BINDTODEVICE`), `CAP_NET_BIND_SERVICE` (port 68) and, to configure
/// addresses, `CAP_NET_ADMIN`.
///
/// The driver keeps time itself (its [`Clock`]), so it is not an [`AddressSource`] (whose calls
/// take the caller's `now`): its own [`lease`](Self::lease) and [`release`](Self::release) read
/// the clock and pass it to the machine.
#[derive(Debug)]
pub struct DhcpDriver {
    interface: String,
    socket: Arc<UdpSocket>,
    _reader: Reader,
    rx: Receiver<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    by_address: HashMap<Ipv4Addr, Reader>,
    machine: DhcpSource,
    state: Option<StateFile>,
    configure_addresses: bool,
    /// Sessions whose entries in the lease file this driver owns.
    managed: BTreeSet<SessionId>,
    /// Addresses ipvirt put on the interface (the only ones it removes).
    added: BTreeSet<Ipv4Addr>,
    clock: ClockBox,
    notes: Vec<String>,
}

struct ClockBox(Clock);

impl std::fmt::Debug for ClockBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The wall clock: time since the UNIX epoch.
fn wall() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

impl DhcpDriver {
    /// Opens the driver on `interface` with `config` (its hardware address is replaced by the
    /// interface's, and every IPv4 address of the host, with its prefix, is added to its
    /// [`host_addresses`](DhcpConfig::host_addresses): none of them, nor a network or broadcast
    /// address of their subnets, is ever taken as a VIP), keeping leases in `state` if given. Set
    /// [`DhcpConfig::adapter`] to the policy's `virtual_ip.adapter` so that an address outside it
    /// is refused too.
    ///
    /// # Errors
    ///
    /// [`DriverError::Interface`] when the interface has no hardware address,
    /// [`DriverError::Socket`] when the socket cannot be set up (not root, port taken without
    /// `SO_REUSEADDR`…).
    pub fn open(
        interface: &str,
        mut config: DhcpConfig,
        state: Option<StateFile>,
        configure_addresses: bool,
    ) -> Result<DhcpDriver, DriverError> {
        config.hardware_addr = hardware_addr(interface)?;
        // The host's own addresses are never a VIP; those the lease file names as leases are
        // VIPs ipvirt configured (a restarted driver finds them on the interface), not the
        // host's.
        let vips: BTreeSet<Ipv4Addr> = state
            .as_ref()
            .and_then(|f| f.read::<DhcpSnapshot>().ok().flatten())
            .map(|s| s.leases.iter().map(|(_, l)| l.addr).collect())
            .unwrap_or_default();
        let own = host_networks().map_err(|e| DriverError::Interface {
            interface: interface.to_owned(),
            reason: format!("cannot list the host's addresses (getifaddrs): {e}"),
        })?;
        config
            .host_addresses
            .extend(own.into_iter().filter(|n| !vips.contains(&n.addr())));
        config.seed ^= wall().as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
        let sock_err = |what: &str| {
            let interface = interface.to_owned();
            let what = what.to_owned();
            move |source| DriverError::Socket {
                interface,
                what,
                source,
            }
        };
        let socket = bound_socket(interface, Ipv4Addr::UNSPECIFIED)
            .map_err(sock_err("binding 0.0.0.0:68"))?;
        let socket = Arc::new(socket);
        let (tx, rx) = channel();
        let reader = Reader::spawn(
            socket.try_clone().map_err(sock_err("cloning the socket"))?,
            tx.clone(),
        )
        .map_err(sock_err("starting its reader"))?;
        Ok(DhcpDriver {
            interface: interface.to_owned(),
            socket,
            _reader: reader,
            rx,
            tx,
            by_address: HashMap::new(),
            machine: DhcpSource::new(config),
            state,
            configure_addresses,
            managed: BTreeSet::new(),
            added: BTreeSet::new(),
            clock: ClockBox(Arc::new(wall)),
            notes: Vec::new(),
        })
    }

    /// Replaces the clock (tests drive renewals with a clock that jumps).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = ClockBox(clock);
    }

    /// The time on the driver's clock.
    #[must_use]
    pub fn now(&self) -> Duration {
        (self.clock.0)()
    }

    /// The interface.
    #[must_use]
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The machine (states, leases, counters).
    #[must_use]
    pub fn machine(&self) -> &DhcpSource {
        &self.machine
    }

    /// What went wrong without stopping the driver since the last call (a send that failed, an
    /// address that could not be configured, an address a server offered that this host cannot
    /// use, [`DhcpEvent::Refused`]); the caller logs them.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The session's VIP, as [`AddressSource::lease`] at the driver's clock: its address while it
    /// holds a lease, else [`LeaseError::Pending`] or [`LeaseError::Lost`] after starting it. A session whose
    /// unexpired lease is in the lease file takes it back (and renews it at T1).
    ///
    /// # Errors
    ///
    /// [`LeaseError`] as above; a lease file that cannot be read is noted and ignored.
    pub fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
        let now = self.now();
        if self.machine.state(session).is_none() {
            self.adopt(now, session);
            self.managed.insert(session);
        }
        self.machine.handle_timeout(now);
        let result = self.machine.lease(now, session);
        self.flush();
        self.apply_events();
        result
    }

    /// Takes the session's lease (or remembered address) from the lease file into the machine.
    fn adopt(&mut self, now: Duration, session: SessionId) {
        let Some(file) = &self.state else { return };
        let snap = match file.read::<DhcpSnapshot>() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                self.notes.push(format!("{e}; starting without it"));
                return;
            }
        };
        let mine = DhcpSnapshot {
            version: snap.version,
            leases: snap
                .leases
                .iter()
                .filter(|(s, l)| *s == session && l.expiry > now)
                .copied()
                .collect(),
            // An expired lease in the file is the address to ask for.
            remembered: snap
                .remembered
                .iter()
                .copied()
                .chain(snap.leases.iter().map(|(s, l)| (*s, l.addr)))
                .filter(|(s, _)| *s == session)
                .collect(),
        };
        if let Err(source) = self.machine.restore(now, &mine) {
            self.notes.push(
                DriverError::Restore {
                    path: file.path().to_owned(),
                    source,
                }
                .to_string(),
            );
        }
    }

    /// Releases the session's lease (RELEASE through the adapter, then the address comes off the
    /// adapter) and records it in the lease file.
    pub fn release(&mut self, session: SessionId) -> Option<Vip> {
        let now = self.now();
        self.machine.handle_timeout(now);
        let got = self.machine.release(now, session);
        self.flush();
        self.apply_events();
        got
    }

    /// The caller found the session's address in use: DECLINE it.
    pub fn decline(&mut self, session: SessionId) -> Option<Ipv4Addr> {
        let now = self.now();
        let got = self.machine.decline(now, session);
        self.flush();
        self.apply_events();
        got
    }

    /// Runs the machine for at most `wait`: sends what is due, waits for a datagram or the next
    /// deadline, takes in what arrived, and applies what happened (addresses, lease file).
    /// Returns the events.
    pub fn step(&mut self, wait: Duration) -> Vec<DhcpEvent> {
        let now = self.now();
        self.machine.handle_timeout(now);
        self.flush();
        let mut events = self.apply_events();
        let until = self
            .machine
            .poll_timeout()
            .map_or(wait, |t| t.saturating_sub(now).min(wait));
        match self.rx.recv_timeout(until.max(Duration::from_millis(1))) {
            Ok(bytes) => {
                let mut all = vec![bytes];
                while let Ok(b) = self.rx.try_recv() {
                    all.push(b);
                }
                for b in all {
                    let now = self.now();
                    let _ = self.machine.handle_datagram(now, &b);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        let now = self.now();
        self.machine.handle_timeout(now);
        self.flush();
        events.extend(self.apply_events());
        events
    }

    fn flush(&mut self) {
        while let Some(t) = self.machine.poll_transmit() {
            let to = match t.destination {
                Destination::Broadcast => Ipv4Addr::BROADCAST,
                Destination::Server(a) => a,
            };
            if let Err(e) = self.socket.send_to(&t.payload, SocketAddrV4::new(to, 67)) {
                self.notes.push(format!(
                    "session {}: {} to {to} through {}: {e}",
                    t.session, t.kind, self.interface
                ));
            }
        }
    }

    /// Configures addresses and writes the lease file for what happened.
    fn apply_events(&mut self) -> Vec<DhcpEvent> {
        let mut events = Vec::new();
        while let Some(e) = self.machine.poll_event() {
            match e {
                DhcpEvent::Bound { lease, .. } => self.add_address(lease.addr),
                DhcpEvent::Renewed {
                    previous, lease, ..
                } if previous != lease.addr => {
                    self.remove_address(previous);
                    self.add_address(lease.addr);
                }
                DhcpEvent::Refused { .. } => self.notes.push(e.to_string()),
                DhcpEvent::Lost { addr, .. }
                | DhcpEvent::Released { addr, .. }
                | DhcpEvent::Declined {
                    addr,
                    was_held: true,
                    ..
                } => self.remove_address(addr),
                _ => {}
            }
            events.push(e);
        }
        if !events.is_empty()
            && let Err(e) = self.persist()
        {
            self.notes.push(e.to_string());
        }
        events
    }

    fn add_address(&mut self, addr: Ipv4Addr) {
        if self.configure_addresses {
            self.configure(addr);
        }
        if !self.by_address.contains_key(&addr) {
            match bound_socket(&self.interface, addr)
                .and_then(|s| Reader::spawn(s, self.tx.clone()))
            {
                Ok(r) => {
                    self.by_address.insert(addr, r);
                }
                Err(e) => self.notes.push(format!(
                    "cannot listen on {addr}:68 ({e}): renewals answered by unicast may reach another driver"
                )),
            }
        }
    }

    fn remove_address(&mut self, addr: Ipv4Addr) {
        self.by_address.remove(&addr);
        if !self.configure_addresses {
            return;
        }
        // Ours: added by this driver, or tagged as ipvirt's by an earlier driver whose lease this
        // one took over (a restarted launcher or service: the address is on the interface
        // already, and no Bound event put it there again).
        let added = self.added.remove(&addr);
        let removed = netlink::index_of(&self.interface).and_then(|i| {
            if added || netlink::find(i, addr)? == Some(Some(netlink::PROTO)) {
                netlink::remove(i, addr).map(drop)
            } else {
                Ok(())
            }
        });
        if let Err(e) = removed {
            self.notes.push(format!(
                "cannot remove {addr}/32 from {}: {e}",
                self.interface
            ));
        }
    }

    /// Puts `addr/32` on the interface, remembering it as ipvirt's only when ipvirt put it there.
    fn configure(&mut self, addr: Ipv4Addr) {
        let iface = self.interface.clone();
        let added = netlink::index_of(&iface).and_then(|i| {
            Ok(match netlink::add(i, addr)? {
                netlink::Added::Added => true,
                // Another ipvirt process's (a killed launcher's): tagged, so ipvirt's; else the
                // administrator's, never removed.
                netlink::Added::AlreadyThere => {
                    netlink::find(i, addr)? == Some(Some(netlink::PROTO))
                }
            })
        });
        match added {
            Ok(true) => {
                self.added.insert(addr);
            }
            Ok(false) => self.notes.push(format!(
                "{addr}/32 is on {iface} already, not put there by ipvirt: it is used and left \
                 there when the lease ends"
            )),
            Err(e) => self
                .notes
                .push(format!("cannot add {addr}/32 to {iface}: {e}")),
        }
    }

    /// Writes this driver's sessions into the lease file, keeping the other entries.
    fn persist(&mut self) -> Result<(), StateError> {
        let Some(file) = &self.state else {
            return Ok(());
        };
        let lock = file.lock()?;
        let mut snap: DhcpSnapshot = match lock.read::<DhcpSnapshot>() {
            Ok(Some(s)) => s,
            Ok(None) => DhcpSnapshot::default(),
            Err(e) => return Err(e),
        };
        let mine = self.machine.snapshot();
        let managed = &self.managed;
        snap.version = DhcpSnapshot::VERSION;
        snap.leases.retain(|(s, _)| !managed.contains(s));
        snap.leases.extend(mine.leases.iter().copied());
        let ours: BTreeSet<SessionId> = mine.remembered.iter().map(|(s, _)| *s).collect();
        snap.remembered
            .retain(|(s, _)| !ours.contains(s) && !mine.leases.iter().any(|(m, _)| m == s));
        snap.remembered.extend(mine.remembered.iter().copied());
        // One entry per address: a newer lease of an address wins over an older one elsewhere.
        let held: BTreeSet<Ipv4Addr> = mine.leases.iter().map(|(_, l)| l.addr).collect();
        snap.leases
            .retain(|(s, l)| managed.contains(s) || !held.contains(&l.addr));
        lock.write(&snap)
    }
}

/// The interface that `VIPAdapter` selects: the one with a directly connected route (no gateway,
/// not the default route) to `adapter`'s address, the longest prefix winning; read from
/// `/proc/net/route`.
///
/// # Errors
///
/// [`DriverError::Interface`] when no such route exists or the route table cannot be read.
pub fn interface_for(adapter: ipnet::Ipv4Net) -> Result<String, DriverError> {
    let err = |reason: String| DriverError::Interface {
        interface: format!("(the one with a route to {adapter})"),
        reason,
    };
    let table = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| err(format!("/proc/net/route: {e}")))?;
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    let target = adapter.addr();
    let mut best: Option<(u32, String)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(gw), Some(mask)) = (
            f.first(),
            f.get(1).and_then(|s| hex(s)),
            f.get(2).and_then(|s| hex(s)),
            f.get(7).and_then(|s| hex(s)),
        ) else {
            continue;
        };
        let m = mask.to_bits();
        let len = m.count_ones();
        if len == 0 || !gw.is_unspecified() || target.to_bits() & m != dest.to_bits() {
            continue;
        }
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, (*iface).to_owned()));
        }
    }
    best.map(|(_, i)| i)
        .ok_or_else(|| err("no interface has a directly connected route to it".into()))
}

/// The default client-identifier prefix: `ipvirt-<host name>-`.
#[must_use]
pub fn default_client_id_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("ipvirt-{}-", if host.is_empty() { "host" } else { host })
}

/// A UDP socket on `addr:68` bound to `interface`, with broadcast and address reuse.
fn bound_socket(interface: &str, addr: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    if !addr.is_unspecified() {
        // The address may not be configured yet (or ever, without `configure_addresses`).
        s.set_freebind_v4(true)?;
    }
    s.bind(&SocketAddr::V4(SocketAddrV4::new(addr, 68)).into())?;
    Ok(s.into())
}

/// Every IPv4 address of the host with its prefix (`10.0.0.2/24`), from `getifaddrs(3)`.
#[allow(unsafe_code)]
fn host_networks() -> std::io::Result<Vec<Ipv4Net>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocated to `list` when it returns 0.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is a node of the list getifaddrs made, which is freed only below.
        let ifa = unsafe { &*node };
        if let (Some(addr), Some(mask)) = (ipv4_of(ifa.ifa_addr), ipv4_of(ifa.ifa_netmask))
            && let Ok(net) = Ipv4Net::new(addr, mask.to_bits().leading_ones() as u8)
        {
            out.push(net);
        }
        node = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once; nothing of it is used after.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

/// The IPv4 address of a `sockaddr` of the `getifaddrs` list (`None`: NULL or another family).
#[allow(unsafe_code)]
fn ipv4_of(sa: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: `sa` points at a sockaddr of the live getifaddrs list; every sockaddr starts with
    // its family.
    if i32::from(unsafe { (*sa).sa_family }) != libc::AF_INET {
        return None;
    }
    // SAFETY: a sockaddr of family AF_INET is a sockaddr_in, allocated by getifaddrs with the
    // alignment of one.
    let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}

/// The interface's MAC address, from sysfs.
fn hardware_addr(interface: &str) -> Result<[u8; 6], DriverError> {
    let bad = |reason: String| DriverError::Interface {
        interface: interface.to_owned(),
        reason,
    };
    if interface.is_empty() || interface.contains('/') || interface == "." || interface == ".." {
        return Err(bad("not an interface name".into()));
    }
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("no such interface ({path}: {e})")))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(bad(format!(
            "{path} holds {:?}, not a MAC address",
            text.trim()
        )));
    }
    for (m, p) in mac.iter_mut().zip(&parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| bad(format!("{path} holds {:?}, not a MAC address", text.trim())))?;
    }
    Ok(mac)
}
