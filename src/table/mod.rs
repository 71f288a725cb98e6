//! The flat rule tables of SPEC §7: the compiled policy as data, for layers that cannot call Rust.
//!
//! A cgroup-BPF program, a WFP callout driver in C or a C++ hook DLL needs the decisions of SPEC §5
//! as **data**. The compiled policy splits into three `#[repr(C)]` tables with a fixed layout,
//! declared the same way in `ipvirt.h` (sizes and offsets checked with `_Static_assert` in the C
//! test):
//!
//! | table | one per | holds |
//! |---|---|---|
//! | [`PolicyTable`] | policy and host | the localhost address, the server's addresses, the excluded-ports bitmap, isolation, the IPv6 setting |
//! | [`SessionEntry`] | session | the session loopback, the VIP or what to do without one, flags |
//! | [`ProgramEntry`] | executable | which of L, V and preferred loopback apply |
//!
//! **Byte order**: every IPv4 address is a `u32` holding the address's numeric value
//! (`Ipv4Addr::to_bits`: `127.0.0.1` is `0x7F00_0001`) in the host's byte order; a BPF program
//! converts `user_ip4` with `bpf_ntohl`. Ports are numbers in host byte order.
//!
//! The [`Rewriter`](crate::Rewriter) evaluates exactly these tables (it holds a [`PolicyTable`]
//! and copies of the two entries), so a Rust hook, a C hook and a kernel program decide alike by
//! construction. [`reference`](mod@reference) is a second, deliberately plain evaluator of the same tables, written
//! from the SPEC's tables rather than from the rewriter's code: a property test checks that the two
//! agree on every call, and a kernel or C layer can be checked against it the same way.

/// The layout version of the tables; bumped whenever a field moves.
pub const TABLE_VERSION: u32 = 1;

/// How many server addresses a [`PolicyTable`] holds.
pub const MAX_SERVERS: usize = 64;

/// [`PolicyTable::flags`]: `virtual_loopback.isolate` is on.
pub const POLICY_ISOLATE: u32 = 1;
/// [`PolicyTable::flags`]: `virtual_loopback.ipv6 = "map"`.
pub const POLICY_IPV6_MAP: u32 = 2;

/// [`SessionEntry::flags`]: the session is virtualized (a remote session other than session 0).
pub const SESSION_VIRTUALIZED: u32 = 1;
/// [`SessionEntry::flags`]: the session has no VIP and `on_lease_failure = "no-connectivity"`:
/// calls that would put the VIP on the network are refused.
pub const SESSION_NO_CONNECTIVITY: u32 = 2;
/// [`SessionEntry::flags`]: the session is virtualized but has no loopback address (its id is past
/// [`SessionId::MAX`](crate::SessionId::MAX)): loopback calls that would use it are refused rather
/// than sharing `127.0.0.1` with every other session.
pub const SESSION_NO_LOOPBACK: u32 = 4;

/// [`ProgramEntry::flags`]: virtual loopback applies ("L").
pub const PROGRAM_LOOPBACK: u32 = 1;
/// [`ProgramEntry::flags`]: virtual IP applies ("V", before the session's VIP is known).
pub const PROGRAM_VIRTUAL_IP: u32 = 2;
/// [`ProgramEntry::flags`]: preferred loopback lists the program.
pub const PROGRAM_PREFER_LOOPBACK: u32 = 4;

/// The policy and host as one flat table (8 480 bytes), shared by every session and program.
///
/// ```
/// use ipvirt::{Host, Policy, table};
///
/// let policy = Policy::from_toml("[virtual_loopback]\nexcluded_ports = [27000]\nisolate = true\n")?;
/// let engine = policy.compile(Host::new(["192.0.2.10".parse()?]))?;
/// let t = engine.tables();
/// assert_eq!(t.localhost, 0x7F00_0001);
/// assert_eq!(t.servers(), [0xC000_020A]);
/// assert!(t.is_port_excluded(27000));
/// assert_ne!(t.flags & table::POLICY_ISOLATE, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
    /// [`TABLE_VERSION`].
    pub version: u32,
    /// `POLICY_*` bits.
    pub flags: u32,
    /// The localhost address that is replaced (`virtual_loopback.localhost`).
    pub localhost: u32,
    /// The server's primary IPv4 address (what a reverse lookup of a VIP looks up), 0 if none.
    pub primary_server: u32,
    /// How many entries of `servers` are used.
    pub server_count: u32,
    /// Padding; zero.
    pub reserved: u32,
    /// The server's IPv4 addresses, sorted ascending; entries past `server_count` are zero.
    pub servers: [u32; MAX_SERVERS],
    /// One bit per port, `excluded_ports[port / 64] >> (port % 64) & 1`.
    pub excluded_ports: [u64; 1024],
}

/// One session as the rules see it (16 bytes).
///
/// ```
/// use ipvirt::{Host, Policy, Session, SessionId, Vip, table};
///
/// let engine = Policy::default().compile(Host::default())?;
/// let e = engine.session_entry(Session::remote(SessionId::new(7)), Some(Vip::new("192.0.2.107".parse()?)?));
/// assert_eq!((e.session, e.loopback, e.vip), (7, 0x7F00_0008, 0xC000_026B));
/// assert_eq!(e.flags, table::SESSION_VIRTUALIZED);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionEntry {
    /// The session id.
    pub session: u32,
    /// The session's loopback address; 0 when the session is not virtualized or has none.
    pub loopback: u32,
    /// The session's VIP; 0 when it has none.
    pub vip: u32,
    /// `SESSION_*` bits.
    pub flags: u32,
}

/// One executable as the rules see it (4 bytes).
///
/// ```
/// use ipvirt::{Host, Policy, table};
///
/// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n")?
///     .compile(Host::default())?;
/// assert_eq!(engine.process("crm.exe").entry().flags, table::PROGRAM_LOOPBACK);
/// assert_eq!(engine.process("other.exe").entry().flags, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProgramEntry {
    /// `PROGRAM_*` bits.
    pub flags: u32,
}

impl PolicyTable {
    /// A table in which nothing is excluded, no server address is known, isolation and the IPv6
    /// mapping are off, and localhost is `127.0.0.1`.
    #[must_use]
    pub const fn new() -> PolicyTable {
        PolicyTable {
            version: TABLE_VERSION,
            flags: 0,
            localhost: 0x7F00_0001,
            primary_server: 0,
            server_count: 0,
            reserved: 0,
            servers: [0; MAX_SERVERS],
            excluded_ports: [0; 1024],
        }
    }

    /// The used part of `servers`.
    #[must_use]
    pub fn servers(&self) -> &[u32] {
        let n = (self.server_count as usize).min(MAX_SERVERS);
        self.servers.get(..n).unwrap_or(&[])
    }

    /// Whether `addr` (numeric) is one of the server's addresses.
    #[inline]
    #[must_use]
    pub fn is_server(&self, addr: u32) -> bool {
        self.servers().binary_search(&addr).is_ok()
    }

    /// Whether loopback traffic on `port` is never rewritten.
    #[inline]
    #[must_use]
    pub fn is_port_excluded(&self, port: u16) -> bool {
        self.excluded_ports
            .get(usize::from(port >> 6))
            .is_some_and(|w| (w >> (port & 63)) & 1 != 0)
    }
}

impl Default for PolicyTable {
    fn default() -> PolicyTable {
        PolicyTable::new()
    }
}

impl SessionEntry {
    /// Whether the session is virtualized.
    #[must_use]
    pub const fn is_virtualized(&self) -> bool {
        self.flags & SESSION_VIRTUALIZED != 0
    }
}

pub mod reference;
