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

/// The plain evaluator of the tables: what each call becomes, written straight from the tables of
/// SPEC §5, §6 and §8 on `std::net`-style values, with no attention to speed.
///
/// It is the yardstick the [`Rewriter`](crate::Rewriter) is checked against (a property test with
/// more than 100 000 cases per call), and the one a kernel or C layer can be checked against: feed
/// the same tables and addresses to both and compare.
pub mod reference {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    use super::{
        POLICY_IPV6_MAP, POLICY_ISOLATE, PROGRAM_LOOPBACK, PROGRAM_PREFER_LOOPBACK,
        PROGRAM_VIRTUAL_IP, PolicyTable, ProgramEntry, SESSION_NO_CONNECTIVITY,
        SESSION_NO_LOOPBACK, SessionEntry,
    };
    use crate::rewrite::{Connect, Refusal, Stack};
    use crate::session::SessionId;

    /// The three tables a decision reads.
    #[derive(Debug, Clone, Copy)]
    pub struct Tables<'a> {
        /// The policy table.
        pub policy: &'a PolicyTable,
        /// The session's entry.
        pub session: SessionEntry,
        /// The program's entry.
        pub program: ProgramEntry,
    }

    /// What the session and program make of the tables.
    struct Scope {
        /// L applies and the session has a loopback address: that address.
        lo: Option<Ipv4Addr>,
        /// L applies but the session has no loopback address.
        lo_missing: bool,
        /// V applies.
        v: bool,
        vip: Option<Ipv4Addr>,
        no_connectivity: bool,
        prefer: bool,
    }

    fn scope(t: &Tables<'_>) -> Scope {
        let on = t.session.is_virtualized();
        let l = on && t.program.flags & PROGRAM_LOOPBACK != 0;
        let v = on && t.program.flags & PROGRAM_VIRTUAL_IP != 0;
        let lo_missing =
            l && (t.session.loopback == 0 || t.session.flags & SESSION_NO_LOOPBACK != 0);
        Scope {
            lo: (l && !lo_missing).then(|| Ipv4Addr::from_bits(t.session.loopback)),
            lo_missing,
            v,
            vip: (v && t.session.vip != 0).then(|| Ipv4Addr::from_bits(t.session.vip)),
            no_connectivity: v
                && t.session.vip == 0
                && t.session.flags & SESSION_NO_CONNECTIVITY != 0,
            prefer: v && t.program.flags & PROGRAM_PREFER_LOOPBACK != 0,
        }
    }

    /// The IPv4 address an address stands for: itself, or the IPv4 address inside an IPv4-mapped
    /// IPv6 address.
    fn v4_of(ip: IpAddr) -> Option<Ipv4Addr> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        }
    }

    /// `like` with its address replaced by `ip`, in `like`'s family (IPv4-mapped for IPv6).
    fn put(like: SocketAddr, ip: Ipv4Addr) -> SocketAddr {
        match like {
            SocketAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(ip, a.port())),
            SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
                ip.to_ipv6_mapped(),
                a.port(),
                a.flowinfo(),
                a.scope_id(),
            )),
        }
    }

    fn source_of(like: SocketAddr, ip: Ipv4Addr) -> SocketAddr {
        match like {
            SocketAddr::V4(_) => SocketAddr::V4(SocketAddrV4::new(ip, 0)),
            SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), 0, 0, 0)),
        }
    }

    fn localhost(t: &Tables<'_>) -> Ipv4Addr {
        Ipv4Addr::from_bits(t.policy.localhost)
    }

    fn map_v6(t: &Tables<'_>) -> bool {
        t.policy.flags & POLICY_IPV6_MAP != 0
    }

    /// `bind(addr)` on a socket of `stack`.
    ///
    /// # Errors
    ///
    /// The refusals of SPEC §5/§6.
    pub fn bind(t: &Tables<'_>, addr: SocketAddr, stack: Stack) -> Result<SocketAddr, Refusal> {
        let s = scope(t);
        let excluded = t.policy.is_port_excluded(addr.port());
        let ip = match addr.ip() {
            // SPEC §8: with the mapping on, `::1` on a socket that takes IPv4-mapped addresses is
            // the localhost address.
            IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => {
                if map_v6(t) && stack == Stack::Dual && (s.lo.is_some() || s.lo_missing) {
                    localhost(t)
                } else {
                    return Ok(addr);
                }
            }
            // `::` on a dual-stack socket is `0.0.0.0`; on a v6-only one it is left alone.
            IpAddr::V6(a) if a == Ipv6Addr::UNSPECIFIED => {
                if stack == Stack::Dual {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    return Ok(addr);
                }
            }
            other => match v4_of(other) {
                Some(ip) => ip,
                None => return Ok(addr),
            },
        };
        if ip == localhost(t) && (s.lo.is_some() || s.lo_missing) && !excluded {
            return match s.lo {
                Some(lo) => Ok(put(addr, lo)),
                None => Err(Refusal::NoLoopback),
            };
        }
        if s.v && (ip == Ipv4Addr::UNSPECIFIED || t.policy.is_server(ip.to_bits())) {
            return match (s.vip, s.no_connectivity) {
                (Some(vip), _) => Ok(put(addr, vip)),
                (None, true) => Err(Refusal::NoConnectivity),
                (None, false) => Ok(addr),
            };
        }
        if let Some(owner) = other_session(t, &s, ip, excluded) {
            return Err(Refusal::OtherSession { owner });
        }
        Ok(addr)
    }

    /// The session owning `ip` when it is another session's loopback address and isolation
    /// refuses it (an in-scope process, port not excluded).
    fn other_session(t: &Tables<'_>, s: &Scope, ip: Ipv4Addr, excluded: bool) -> Option<SessionId> {
        if t.policy.flags & POLICY_ISOLATE == 0 || s.lo.is_none() || excluded {
            return None;
        }
        let owner = SessionId::from_loopback(ip)?;
        (owner.get() != 0 && Some(ip) != s.lo).then_some(owner)
    }

    /// `connect(dest)` (and `sendto`, which decides alike). With the IPv6 mapping on, the hook
    /// makes sure the socket takes IPv4-mapped addresses (clears `IPV6_V6ONLY` before it is bound).
    ///
    /// # Errors
    ///
    /// The refusals of SPEC §5/§6.
    pub fn connect(t: &Tables<'_>, dest: SocketAddr) -> Result<Connect, Refusal> {
        let s = scope(t);
        let excluded = t.policy.is_port_excluded(dest.port());
        let unchanged = Connect { dest, source: None };
        let ip = match dest.ip() {
            IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => {
                if map_v6(t) && (s.lo.is_some() || s.lo_missing) && !excluded {
                    localhost(t)
                } else {
                    return Ok(unchanged);
                }
            }
            other => match v4_of(other) {
                Some(ip) => ip,
                None => return Ok(unchanged),
            },
        };
        if !ip.is_loopback() {
            // Off the machine: only the source changes (V).
            return match (s.v, s.vip, s.no_connectivity) {
                (true, Some(vip), _) => Ok(Connect {
                    dest,
                    source: Some(source_of(dest, vip)),
                }),
                (true, None, true) => Err(Refusal::NoConnectivity),
                _ => Ok(unchanged),
            };
        }
        // A loopback destination.
        let mut new_dest = dest;
        let mut own = None;
        if !excluded {
            if s.lo_missing && ip == localhost(t) {
                return Err(Refusal::NoLoopback);
            }
            if let Some(lo) = s.lo {
                if ip == localhost(t) {
                    new_dest = put(dest, lo);
                    own = Some(lo);
                } else if ip == lo {
                    own = Some(lo);
                } else if let Some(owner) = other_session(t, &s, ip, excluded) {
                    return Err(Refusal::Isolated { owner });
                }
            }
        }
        let source = match s.vip {
            // The VIP is the source of everything, loopback included, unless preferred loopback
            // lists the program; without a VIP, loopback traffic needs none ("no connectivity"
            // cuts the session off the network, not from its own loopback).
            Some(vip) if !s.prefer => Some(source_of(dest, vip)),
            _ => own.map(|lo| source_of(dest, lo)),
        };
        Ok(Connect {
            dest: new_dest,
            source,
        })
    }

    /// What `getsockname`, `getpeername`, `accept` or `recvfrom` report for `addr`.
    #[must_use]
    pub fn reported(t: &Tables<'_>, addr: SocketAddr) -> SocketAddr {
        let s = scope(t);
        let Some(lo) = s.lo else {
            return addr;
        };
        if t.policy.is_port_excluded(addr.port()) || v4_of(addr.ip()) != Some(lo) {
            return addr;
        }
        match addr {
            SocketAddr::V6(a) if map_v6(t) => SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                a.port(),
                a.flowinfo(),
                a.scope_id(),
            )),
            _ => put(addr, localhost(t)),
        }
    }

    /// A name-resolution result (`getaddrinfo`, `gethostbyname`).
    #[must_use]
    pub fn resolved(t: &Tables<'_>, addr: IpAddr) -> IpAddr {
        let s = scope(t);
        match (s.vip, v4_of(addr)) {
            (Some(vip), Some(ip)) if t.policy.is_server(ip.to_bits()) => match addr {
                IpAddr::V4(_) => IpAddr::V4(vip),
                IpAddr::V6(_) => IpAddr::V6(vip.to_ipv6_mapped()),
            },
            _ => addr,
        }
    }

    /// The address a reverse lookup (`gethostbyaddr`, `getnameinfo`) looks up instead.
    #[must_use]
    pub fn reverse_lookup(t: &Tables<'_>, addr: IpAddr) -> IpAddr {
        let s = scope(t);
        let Some(ip) = v4_of(addr) else {
            return addr;
        };
        let new = if s.vip == Some(ip) && t.policy.primary_server != 0 {
            Ipv4Addr::from_bits(t.policy.primary_server)
        } else if s.lo == Some(ip) {
            localhost(t)
        } else {
            return addr;
        };
        match addr {
            IpAddr::V4(_) => IpAddr::V4(new),
            IpAddr::V6(_) => IpAddr::V6(new.to_ipv6_mapped()),
        }
    }
}
