//! The rewrites: what each intercepted socket call should do instead (SPEC §5, §6).
//!
//! A [`Rewriter`] is built once per process and session by [`Engine::rewriter`] from the process's
//! [`ProcessPlan`] and the session's VIP. It then answers, for each intercepted call, with plain
//! values: the address to use instead, and for `connect`/`sendto` the source to bind first. It holds
//! only `Copy` state and a reference to the engine: no method allocates, locks, or compares strings.
//!
//! "L" = virtual loopback applies to the process; "V" = virtual IP applies and the session has a VIP.
//!
//! | call | input | result |
//! |---|---|---|
//! | [`bind`](Rewriter::bind) | the localhost address (`127.0.0.1`), L, port not excluded | session loopback, same port |
//! | [`bind`](Rewriter::bind) | `0.0.0.0`, or one of the server's addresses, V | the VIP, same port |
//! | [`bind_dual_stack`](Rewriter::bind_dual_stack) | `::` on a socket with `IPV6_V6ONLY` off, V | `::ffff:VIP`, same port |
//! | [`connect`](Rewriter::connect), [`send_to`](Rewriter::send_to) | destination localhost, L, port not excluded | destination session loopback; source session loopback, port 0 |
//! | same | any destination, V, socket not bound | source VIP, port 0 |
//! | same | loopback destination, V, preferred loopback lists the process | source not the VIP: session loopback (L) or the kernel's choice |
//! | same | another session's loopback, L, isolation on | [`RewriteError::Isolated`] (`ECONNREFUSED`) |
//! | [`bind`](Rewriter::bind) | another session's loopback, L, port not excluded, isolation on | [`RewriteError::Isolated`] (`EACCES`) |
//! | [`reported`](Rewriter::reported) | the session's own loopback, L | the localhost address |
//! | [`resolved`](Rewriter::resolved) | the server's address, V | the VIP |
//! | [`reverse_lookup`](Rewriter::reverse_lookup) | the VIP / the session loopback | the server's primary address / the localhost address |
//!
//! Everything else passes through unchanged. IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are
//! treated as their IPv4 address and stay IPv4-mapped; `::1` is never rewritten (there is no
//! per-session IPv6 loopback); `::` is rewritten only on a dual-stack socket.
//!
//! ## Sessions without a VIP
//!
//! When V applies to the process but the session has no VIP (`vip` is `None`), the policy's
//! `virtual_ip.on_lease_failure` decides: `use-server-address` passes the call through (the session
//! uses the server's address), `no-connectivity` fails every call that would have put the VIP on the
//! network — a bind to `0.0.0.0`, `::` (dual stack) or a server address, and a connect or send to a
//! non-loopback destination — with [`RewriteError::NoConnectivity`], which the hook maps to
//! `EADDRNOTAVAIL` (POSIX) / `WSAEADDRNOTAVAIL` (Winsock). Connections to loopback destinations still
//! work (with the session loopback as their source under virtual loopback): the session is cut off
//! the network, not from the programs of its own session.
//!
//! ## Port exclusions
//!
//! A port in `virtual_loopback.excluded_ports` leaves loopback traffic on that port entirely alone:
//! no rewrite, no implicit source bind to the session loopback, no isolation check, and
//! [`reported`](Rewriter::reported) does not map the session loopback back on that port. Virtual IP is
//! not affected by the exclusions (they are a loopback setting).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::engine::{Engine, ProcessPlan};
use crate::error::RewriteError;
use crate::host::contains_bits;
use crate::policy::LeaseFailure;
use crate::session::{Session, SessionId};

/// What a `connect`, `WSAConnect`, `sendto` or `WSASendTo` should do instead.
///
/// ```
/// use ipvirt::Connect;
///
/// let c = Connect { dest: "127.0.0.8:9000".parse()?, source: Some("127.0.0.8:0".parse()?) };
/// assert_eq!(c.dest.port(), 9000);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connect {
    /// The destination to connect or send to.
    pub dest: SocketAddr,
    /// When the socket is not bound yet: bind it to this address first (always port 0, so the
    /// kernel picks the port). `None`: leave the source to the kernel. A socket that is already
    /// bound ignores it.
    pub source: Option<SocketAddr>,
}

/// Whether an `AF_INET6` socket also carries IPv4 (`IPV6_V6ONLY` off). Only the hooking layer knows;
/// it decides what `::` means for a bind.
///
/// ```
/// use ipvirt::Stack;
///
/// assert_ne!(Stack::Single, Stack::Dual);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stack {
    /// An `AF_INET` socket, or an `AF_INET6` socket with `IPV6_V6ONLY` on (the Windows default).
    #[default]
    Single,
    /// An `AF_INET6` socket with `IPV6_V6ONLY` off (the Linux default): `::` accepts IPv4 too.
    Dual,
}

/// Which intercepted call [`Rewriter::explain`] explains.
///
/// ```
/// use ipvirt::Call;
///
/// assert_eq!(Call::SendTo.to_string(), "sendto");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// `bind` on an `AF_INET` or v6-only socket.
    Bind,
    /// `bind` on a dual-stack `AF_INET6` socket.
    BindDualStack,
    /// `connect` / `WSAConnect`.
    Connect,
    /// `sendto` / `WSASendTo` / `sendmsg`.
    SendTo,
    /// An address handed back to the application: `getsockname`, `getpeername`, `accept`,
    /// `recvfrom` / `recvmsg`.
    Reported,
    /// A name-resolution result: `getaddrinfo`, `gethostbyname`.
    Resolved,
    /// The input of a reverse lookup: `gethostbyaddr`, `getnameinfo`.
    ReverseLookup,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Bind => "bind",
            Call::BindDualStack => "bind (dual-stack socket)",
            Call::Connect => "connect",
            Call::SendTo => "sendto",
            Call::Reported => "reported address",
            Call::Resolved => "name-resolution result",
            Call::ReverseLookup => "reverse lookup",
        })
    }
}

/// The rule that decided a rewrite: what [`Rewriter::explain`] puts into words.
///
/// ```
/// use ipvirt::Rule;
///
/// assert!(Rule::LocalhostToSessionLoopback.to_string().contains("session's loopback"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The session is a console/administrative session or session 0: nothing is rewritten.
    SessionNotVirtualized,
    /// No rule applies: the address passes through.
    Unchanged,
    /// The localhost address became the session's loopback address (L).
    LocalhostToSessionLoopback,
    /// The port is in `virtual_loopback.excluded_ports`: loopback traffic on it is left alone.
    PortExcluded,
    /// `0.0.0.0` became the VIP (V).
    UnspecifiedToVip,
    /// One of the server's own addresses became the VIP (V).
    ServerAddressToVip,
    /// `::` on a dual-stack socket became `::ffff:VIP` (V).
    DualStackUnspecifiedToVip,
    /// `::` on a v6-only socket: IPv4 cannot reach it, so it is left alone.
    V6OnlyUnspecified,
    /// `::1`: there is no per-session IPv6 loopback, so it is left alone (and not isolated).
    Ipv6Loopback,
    /// V applies but the session has no VIP and `on_lease_failure = "use-server-address"`.
    NoVipUseServerAddress,
    /// V applies but the session has no VIP and `on_lease_failure = "no-connectivity"`.
    NoVipNoConnectivity,
    /// Outgoing traffic originates from the VIP: bind the source to `VIP:0` first (V).
    SourceVip,
    /// A connection to the session's own loopback originates from it: bind the source to
    /// `session_loopback:0` first (L).
    SourceSessionLoopback,
    /// Preferred loopback lists the process: loopback traffic does not take the VIP as its source.
    PreferLoopback,
    /// The address is another session's loopback address; isolation is off, so it passes.
    OtherSessionLoopback,
    /// The address is another session's loopback address and isolation is on: refused (a bind,
    /// a connect or a send alike).
    Isolated,
    /// The session's loopback address is reported as the localhost address the application used.
    SessionLoopbackToLocalhost,
    /// A name-resolution result that is the server's address became the VIP (V).
    ResolvedServerAddressToVip,
    /// A reverse lookup of the VIP looks up the server's primary address instead (V).
    ReverseVipToServer,
    /// A reverse lookup of the session loopback looks up the localhost address instead (L).
    ReverseSessionLoopbackToLocalhost,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::SessionNotVirtualized => {
                "the session is not virtualized (console, administrative or session 0): nothing is rewritten"
            }
            Rule::Unchanged => "no rule applies: the address passes through unchanged",
            Rule::LocalhostToSessionLoopback => {
                "virtual loopback: the localhost address is replaced by the session's loopback address"
            }
            Rule::PortExcluded => {
                "the port is in virtual_loopback.excluded_ports: loopback traffic on it is never rewritten"
            }
            Rule::UnspecifiedToVip => "virtual IP: 0.0.0.0 is replaced by the session's VIP",
            Rule::ServerAddressToVip => "virtual IP: the server's own address is replaced by the session's VIP",
            Rule::DualStackUnspecifiedToVip => {
                "virtual IP: :: on a dual-stack socket is replaced by the session's VIP (IPv4-mapped)"
            }
            Rule::V6OnlyUnspecified => "virtual IP: :: on a v6-only socket is left alone (there is no IPv6 VIP)",
            Rule::Ipv6Loopback => "::1 is left alone: there is no per-session IPv6 loopback address",
            Rule::NoVipUseServerAddress => {
                "virtual IP applies but the session has no VIP: on_lease_failure = use-server-address, so the server's address is used"
            }
            Rule::NoVipNoConnectivity => {
                "virtual IP applies but the session has no VIP: on_lease_failure = no-connectivity, so the call fails (EADDRNOTAVAIL)"
            }
            Rule::SourceVip => "virtual IP: outgoing traffic originates from the session's VIP (bind VIP:0 first)",
            Rule::SourceSessionLoopback => {
                "virtual loopback: the connection originates from the session's loopback address (bind it, port 0, first)"
            }
            Rule::PreferLoopback => {
                "preferred loopback: loopback traffic of this process does not take the VIP as its source"
            }
            Rule::OtherSessionLoopback => {
                "the address is another session's loopback address; virtual_loopback.isolate is off, so it passes"
            }
            Rule::Isolated => {
                "the address is another session's loopback address and virtual_loopback.isolate is on: refused (ECONNREFUSED for a connect or send, EACCES for a bind)"
            }
            Rule::SessionLoopbackToLocalhost => {
                "the session's loopback address is reported as the localhost address the application used"
            }
            Rule::ResolvedServerAddressToVip => {
                "virtual IP: a name lookup that returns the server's address returns the session's VIP"
            }
            Rule::ReverseVipToServer => "a reverse lookup of the session's VIP looks up the server's address",
            Rule::ReverseSessionLoopbackToLocalhost => {
                "a reverse lookup of the session's loopback address looks up the localhost address"
            }
        })
    }
}

/// The session's VIP state as the rewriter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vip {
    /// Virtual IP does not apply (feature off, process not listed, session not virtualized).
    Off,
    /// The session's VIP.
    Addr(Ipv4Addr),
    /// V applies, no VIP, `use-server-address`.
    ServerAddress,
    /// V applies, no VIP, `no-connectivity`.
    NoConnectivity,
}

/// Answers, for one process in one session, what each intercepted socket call should do instead.
///
/// Built by [`Engine::rewriter`]; cheap to copy; every method is allocation-free.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use ipvirt::{Host, Policy, Session, SessionId};
///
/// let policy = Policy::from_toml(r#"
///     [virtual_loopback]
///     enabled = true
///     programs = ["crm.exe"]
///     [virtual_ip]
///     enabled = true
///     mode = "per-session"
///     adapter = "192.0.2.0/24"
/// "#)?;
/// let engine = policy.compile(Host::new(["192.0.2.10".parse()?]))?;
/// let plan = engine.process(r"C:\Apps\crm.exe");
/// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &plan, Some("192.0.2.107".parse()?))?;
///
/// let a = |s: &str| s.parse::<SocketAddr>().unwrap();
/// assert_eq!(rw.bind(a("127.0.0.1:9000"))?, a("127.0.0.8:9000"));
/// assert_eq!(rw.bind(a("0.0.0.0:9000"))?, a("192.0.2.107:9000"));
/// assert_eq!(rw.bind(a("192.0.2.10:9000"))?, a("192.0.2.107:9000"));
/// let c = rw.connect(a("198.51.100.5:443"))?;
/// assert_eq!((c.dest, c.source), (a("198.51.100.5:443"), Some(a("192.0.2.107:0"))));
/// assert_eq!(rw.reported(a("127.0.0.8:9000")), a("127.0.0.1:9000"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Rewriter<'e> {
    engine: &'e Engine,
    /// The server's IPv4 addresses as sorted integers (the engine's).
    host_v4: &'e [u32],
    /// The excluded-ports bitmap (the engine's).
    excluded: &'e [u64],
    session: Session,
    /// Whether any rule can apply: the session is virtualized and L or V applies.
    active: bool,
    /// The session's loopback address as an integer when L applies, else 0 (never a loopback address).
    lo: u32,
    /// The localhost address that is replaced, as an integer.
    localhost: u32,
    vip: Vip,
    /// Preferred loopback lists the process (and V applies).
    prefer_loopback: bool,
    isolate: bool,
}

impl Engine {
    /// The rewriter for a process (its `plan`) in `session`, whose VIP is `vip` (`None`: the session
    /// has none — the policy's `on_lease_failure` decides what that means).
    ///
    /// A session that is not virtualized (console, administrative, session 0) gets a rewriter that
    /// passes everything through.
    ///
    /// # Errors
    ///
    /// - [`RewriteError::Session`] when virtual loopback applies and the session id is past
    ///   [`SessionId::MAX`]: it has no loopback address.
    /// - [`RewriteError::InvalidVip`] when virtual IP applies and `vip` is not a usable unicast
    ///   address (unspecified, loopback, multicast or broadcast): it would break the rule that
    ///   non-loopback addresses never become loopback ones.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n")?
    ///     .compile(Host::default())?;
    /// let plan = engine.process("crm.exe");
    /// let console = engine.rewriter(Session::console(SessionId::new(1)), &plan, None)?;
    /// let addr: SocketAddr = "127.0.0.1:9000".parse()?;
    /// assert_eq!(console.bind(addr)?, addr); // console sessions are never rewritten
    /// assert!(engine.rewriter(Session::remote(SessionId::new(20_000_000)), &plan, None).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewriter(
        &self,
        session: Session,
        plan: &ProcessPlan,
        vip: Option<Ipv4Addr>,
    ) -> Result<Rewriter<'_>, RewriteError> {
        let policy = self.policy();
        let active = session.is_virtualized();
        let lo = if active && plan.loopback().applies() {
            session
                .id()
                .loopback()
                .map_err(RewriteError::Session)?
                .to_bits()
        } else {
            0
        };
        let vip = if !(active && plan.virtual_ip().applies()) {
            Vip::Off
        } else {
            match vip {
                Some(v)
                    if v.is_unspecified()
                        || v.is_loopback()
                        || v.is_multicast()
                        || v.is_broadcast() =>
                {
                    return Err(RewriteError::InvalidVip { vip: v });
                }
                Some(v) => Vip::Addr(v),
                None => match policy.virtual_ip.on_lease_failure {
                    LeaseFailure::UseServerAddress => Vip::ServerAddress,
                    LeaseFailure::NoConnectivity => Vip::NoConnectivity,
                },
            }
        };
        Ok(Rewriter {
            engine: self,
            host_v4: self.host().v4_bits(),
            excluded: self.excluded_words(),
            session,
            active: lo != 0 || vip != Vip::Off,
            lo,
            vip,
            prefer_loopback: vip != Vip::Off && plan.prefer_loopback().applies(),
            localhost: policy.virtual_loopback.localhost.to_bits(),
            isolate: policy.virtual_loopback.isolate,
        })
    }
}

/// `addr` with its IP replaced by `ip`, keeping the family (IPv4-mapped for IPv6), port, flow info
/// and scope id.
#[inline(always)]
fn with_ip(addr: SocketAddr, ip: Ipv4Addr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(ip, a.port())),
        SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
            ip.to_ipv6_mapped(),
            a.port(),
            a.flowinfo(),
            a.scope_id(),
        )),
    }
}

/// `addr` with its IP replaced by `ip` and port 0: an implicit source bind.
#[inline(always)]
fn source(addr: SocketAddr, ip: Ipv4Addr) -> SocketAddr {
    let mut s = with_ip(addr, ip);
    s.set_port(0);
    if let SocketAddr::V6(v6) = &mut s {
        v6.set_flowinfo(0);
        v6.set_scope_id(0);
    }
    s
}

#[inline(always)]
fn with_ip_addr(like: IpAddr, ip: Ipv4Addr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(ip),
        IpAddr::V6(_) => IpAddr::V6(ip.to_ipv6_mapped()),
    }
}

type Decided<T> = (Result<T, RewriteError>, Rule);

impl Rewriter<'_> {
    /// The session this rewriter is for.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(3)), &ProcessPlan::NONE, None)?;
    /// assert_eq!(rw.session().id(), SessionId::new(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn session(&self) -> Session {
        self.session
    }

    /// The session's loopback address when virtual loopback applies to this process, else `None`.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// assert_eq!(rw.session_loopback(), Some(Ipv4Addr::new(127, 0, 0, 8)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn session_loopback(&self) -> Option<Ipv4Addr> {
        (self.lo != 0).then(|| Ipv4Addr::from_bits(self.lo))
    }

    /// The session's VIP when virtual IP applies to this process and the session has one.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None)?;
    /// assert_eq!(rw.vip(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn vip(&self) -> Option<Ipv4Addr> {
        match self.vip {
            Vip::Addr(v) => Some(v),
            _ => None,
        }
    }

    /// Whether this rewriter can change anything at all (false for sessions that are not virtualized
    /// and processes no feature applies to). A hook may skip calling it when false.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// assert!(!engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None)?.is_active());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The address a `bind` on an `AF_INET` or v6-only `AF_INET6` socket should use instead of
    /// `addr`. The port never changes.
    ///
    /// # Errors
    ///
    /// - [`RewriteError::NoConnectivity`] when the bind would take the VIP (`0.0.0.0` or a server
    ///   address, V) but the session has none and `on_lease_failure = "no-connectivity"`.
    /// - [`RewriteError::Isolated`] when `addr` is another session's loopback address (L, port not
    ///   excluded) and `virtual_loopback.isolate` is on: a listener there would receive that
    ///   session's connections to its localhost. A hook fails the bind with `EACCES` / `WSAEACCES`,
    ///   what POSIX says a bind to "a protected address the caller may not use" fails with (not
    ///   `EADDRNOTAVAIL`: the address exists on this machine; not `ECONNREFUSED`: nothing was
    ///   refused by a peer).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\nexcluded_ports = [27000]\n")?
    ///     .compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    /// assert_eq!(rw.bind(a("127.0.0.1:9000"))?, a("127.0.0.8:9000"));
    /// assert_eq!(rw.bind(a("[::ffff:127.0.0.1]:9000"))?, a("[::ffff:127.0.0.8]:9000"));
    /// assert_eq!(rw.bind(a("127.0.0.1:27000"))?, a("127.0.0.1:27000")); // excluded port
    /// assert_eq!(rw.bind(a("[::1]:9000"))?, a("[::1]:9000"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind(&self, addr: SocketAddr) -> Result<SocketAddr, RewriteError> {
        self.decide_bind(addr, Stack::Single).0
    }

    /// [`bind`](Self::bind) on a socket of the given [`Stack`]: on a dual-stack `AF_INET6` socket,
    /// `::` is treated like `0.0.0.0` and becomes `::ffff:VIP` (V).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId, Stack};
    ///
    /// let engine = Policy::from_toml("[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n")?
    ///     .compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("x"), Some("192.0.2.107".parse()?))?;
    /// let any: SocketAddr = "[::]:9000".parse()?;
    /// assert_eq!(rw.bind_on(any, Stack::Dual)?, "[::ffff:192.0.2.107]:9000".parse()?);
    /// assert_eq!(rw.bind_on(any, Stack::Single)?, any);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind_on(&self, addr: SocketAddr, stack: Stack) -> Result<SocketAddr, RewriteError> {
        self.decide_bind(addr, stack).0
    }

    /// Shorthand for [`bind_on(addr, Stack::Dual)`](Self::bind_on).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None)?;
    /// let any: SocketAddr = "[::]:9000".parse()?;
    /// assert_eq!(rw.bind_dual_stack(any)?, any); // virtual IP does not apply here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind_dual_stack(&self, addr: SocketAddr) -> Result<SocketAddr, RewriteError> {
        self.decide_bind(addr, Stack::Dual).0
    }

    /// What a `connect` / `WSAConnect` to `dest` should do instead: the destination to use, and the
    /// source to bind first if the socket is not bound yet.
    ///
    /// # Errors
    ///
    /// - [`RewriteError::Isolated`] (map to `ECONNREFUSED` / `WSAECONNREFUSED`): `dest` is another
    ///   session's loopback address and `virtual_loopback.isolate` is on.
    /// - [`RewriteError::NoConnectivity`] (map to `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`): the
    ///   connection would originate from the VIP, the session has none, and
    ///   `on_lease_failure = "no-connectivity"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// let c = rw.connect("127.0.0.1:9000".parse()?)?;
    /// assert_eq!(c.dest, "127.0.0.8:9000".parse::<SocketAddr>()?);
    /// assert_eq!(c.source, Some("127.0.0.8:0".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn connect(&self, dest: SocketAddr) -> Result<Connect, RewriteError> {
        self.decide_connect(dest).0
    }

    /// What a `sendto` / `WSASendTo` / `sendmsg` to `dest` should do instead: the same rules as
    /// [`connect`](Self::connect) (an unbound UDP socket is bound implicitly by the send).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// assert_eq!(rw.send_to("127.0.0.1:53".parse()?)?.dest, "127.0.0.8:53".parse::<SocketAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send_to(&self, dest: SocketAddr) -> Result<Connect, RewriteError> {
        self.decide_connect(dest).0
    }

    /// What the application should see for an address the system hands back: the result of
    /// `getsockname`, `getpeername`, `accept`, `recvfrom` / `recvmsg`. The session's own loopback
    /// address is shown as the localhost address the application used; everything else, VIPs
    /// included, is shown as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// assert_eq!(rw.reported("127.0.0.8:5353".parse()?), "127.0.0.1:5353".parse::<SocketAddr>()?);
    /// assert_eq!(rw.reported("127.0.0.9:5353".parse()?), "127.0.0.9:5353".parse::<SocketAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn reported(&self, addr: SocketAddr) -> SocketAddr {
        self.decide_reported(addr).0
    }

    /// Rewrites name-resolution results (`getaddrinfo`, `gethostbyname`) in place: each of the
    /// server's own addresses becomes the session's VIP (V). Returns how many were rewritten.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n")?
    ///     .compile(Host::new(["192.0.2.10".parse()?]))?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("x"), Some("192.0.2.107".parse()?))?;
    /// let mut addrs: [IpAddr; 2] = ["192.0.2.10".parse()?, "198.51.100.1".parse()?];
    /// assert_eq!(rw.resolved(&mut addrs), 1);
    /// assert_eq!(addrs, ["192.0.2.107".parse::<IpAddr>()?, "198.51.100.1".parse()?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolved(&self, addrs: &mut [IpAddr]) -> usize {
        let mut n = 0;
        for a in addrs {
            let (b, _) = self.decide_resolved(*a);
            if b != *a {
                *a = b;
                n += 1;
            }
        }
        n
    }

    /// [`resolved`](Self::resolved) for one address.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None)?;
    /// let ip: IpAddr = "192.0.2.10".parse()?;
    /// assert_eq!(rw.resolved_addr(ip), ip);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn resolved_addr(&self, addr: IpAddr) -> IpAddr {
        self.decide_resolved(addr).0
    }

    /// The address a reverse lookup (`gethostbyaddr`, `getnameinfo`) of `addr` should look up
    /// instead, so it finds the real name: the session's VIP → the server's primary IPv4 address
    /// (when the host has one), the session's loopback → the localhost address.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// assert_eq!(rw.reverse_lookup("127.0.0.8".parse()?), "127.0.0.1".parse::<IpAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn reverse_lookup(&self, addr: IpAddr) -> IpAddr {
        self.decide_reverse(addr).0
    }

    /// Explains, in words, what `call` does with `addr` and which rule decided.
    ///
    /// For [`Call::Resolved`] and [`Call::ReverseLookup`] the port of `addr` is ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipvirt::{Call, Host, Policy, Rule, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None)?;
    /// let e = rw.explain(Call::Bind, "127.0.0.1:9000".parse()?);
    /// assert_eq!(e.rule(), Rule::LocalhostToSessionLoopback);
    /// assert_eq!(e.to_string(), "bind 127.0.0.1:9000 → 127.0.0.8:9000: virtual loopback: the localhost address is replaced by the session's loopback address");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn explain(&self, call: Call, addr: SocketAddr) -> Explanation {
        let (outcome, rule) = match call {
            Call::Bind | Call::BindDualStack => {
                let stack = if call == Call::Bind {
                    Stack::Single
                } else {
                    Stack::Dual
                };
                let (r, rule) = self.decide_bind(addr, stack);
                (r.map(Outcome::Addr), rule)
            }
            Call::Connect | Call::SendTo => {
                let (r, rule) = self.decide_connect(addr);
                (r.map(Outcome::Connect), rule)
            }
            Call::Reported => {
                let (a, rule) = self.decide_reported(addr);
                (Ok(Outcome::Addr(a)), rule)
            }
            Call::Resolved => {
                let (a, rule) = self.decide_resolved(addr.ip());
                (Ok(Outcome::Ip(a)), rule)
            }
            Call::ReverseLookup => {
                let (a, rule) = self.decide_reverse(addr.ip());
                (Ok(Outcome::Ip(a)), rule)
            }
        };
        Explanation {
            call,
            input: addr,
            outcome,
            rule,
        }
    }

    // ---- the rules ----------------------------------------------------------------------------
    //
    // Each `*_core` decides on the compact form of an address (`Ip`: IPv4 bits, or what kind of
    // IPv6 address it is) and returns the new IPv4 bits to put in its place, with the rule that
    // decided. The `std::net` methods above and the raw `sockaddr` methods both call them, so the
    // two can never disagree; `#[inline(always)]` lets the compiler drop the rule where only the
    // address is used.

    #[inline(always)]
    fn excluded(&self, port: u16) -> bool {
        self.excluded
            .get(usize::from(port >> 6))
            .is_some_and(|w| w & (1u64 << (port & 63)) != 0)
    }

    /// The session whose loopback address `bits` is, when it is another session's (not this
    /// session's, not session 0's `127.0.0.1`), virtual loopback applies and `port` is not
    /// excluded: the one definition of "another session's loopback" that isolation checks, for
    /// binds, connects and sends alike.
    #[inline(always)]
    fn other_session(&self, bits: u32, port: u16) -> Option<SessionId> {
        if self.lo == 0 || bits == self.lo || bits == self.localhost || self.excluded(port) {
            return None;
        }
        SessionId::from_loopback(Ipv4Addr::from_bits(bits)).filter(|owner| owner.get() != 0)
    }

    /// The VIP for a bind that takes it, by the rewriter's VIP state.
    #[inline(always)]
    fn vip_bind(&self, rule: Rule) -> (Result<Option<u32>, Fail>, Rule) {
        match self.vip {
            Vip::Addr(v) => (Ok(Some(v.to_bits())), rule),
            Vip::ServerAddress => (Ok(None), Rule::NoVipUseServerAddress),
            Vip::NoConnectivity => (Err(Fail::NoConnectivity), Rule::NoVipNoConnectivity),
            Vip::Off => (Ok(None), Rule::Unchanged),
        }
    }

    #[inline(always)]
    pub(crate) fn bind_core(
        &self,
        ip: Ip,
        port: u16,
        stack: Stack,
    ) -> (Result<Option<u32>, Fail>, Rule) {
        if !self.active {
            return (Ok(None), self.inactive_rule());
        }
        let bits = match ip {
            Ip::V4(bits) => bits,
            Ip::V6Unspecified if self.vip != Vip::Off => {
                return match stack {
                    Stack::Dual => self.vip_bind(Rule::DualStackUnspecifiedToVip),
                    Stack::Single => (Ok(None), Rule::V6OnlyUnspecified),
                };
            }
            Ip::V6Loopback => return (Ok(None), Rule::Ipv6Loopback),
            Ip::V6Unspecified | Ip::V6Other => return (Ok(None), Rule::Unchanged),
        };
        if bits == self.localhost && self.lo != 0 {
            if self.excluded(port) {
                return (Ok(None), Rule::PortExcluded);
            }
            return (Ok(Some(self.lo)), Rule::LocalhostToSessionLoopback);
        }
        // Isolation holds for binds too (SPEC §6): a listener on another session's loopback address
        // would receive that session's own connections to its localhost.
        if let Some(owner) = self.other_session(bits, port) {
            if self.isolate {
                return (Err(Fail::Isolated(owner)), Rule::Isolated);
            }
            return (Ok(None), Rule::OtherSessionLoopback);
        }
        if self.vip != Vip::Off {
            if bits == 0 {
                return self.vip_bind(Rule::UnspecifiedToVip);
            }
            if contains_bits(self.host_v4, bits) {
                return self.vip_bind(Rule::ServerAddressToVip);
            }
        }
        (Ok(None), Rule::Unchanged)
    }

    #[inline(always)]
    pub(crate) fn connect_core(&self, ip: Ip, port: u16) -> (Result<ConnectCore, Fail>, Rule) {
        const UNCHANGED: ConnectCore = ConnectCore {
            dest: None,
            source: None,
        };
        if !self.active {
            return (Ok(UNCHANGED), self.inactive_rule());
        }
        let bits = match ip {
            Ip::V4(bits) => bits,
            Ip::V6Loopback => return (Ok(UNCHANGED), Rule::Ipv6Loopback),
            Ip::V6Unspecified | Ip::V6Other => return (Ok(UNCHANGED), Rule::Unchanged),
        };
        if bits >> 24 != 127 {
            // A non-loopback destination: only the source can change (V).
            return match self.vip {
                Vip::Addr(v) => (
                    Ok(ConnectCore {
                        dest: None,
                        source: Some(v.to_bits()),
                    }),
                    Rule::SourceVip,
                ),
                Vip::ServerAddress => (Ok(UNCHANGED), Rule::NoVipUseServerAddress),
                Vip::NoConnectivity => (Err(Fail::NoConnectivity), Rule::NoVipNoConnectivity),
                Vip::Off => (Ok(UNCHANGED), Rule::Unchanged),
            };
        }

        // A loopback destination.
        let mut dest = None;
        let mut rule = Rule::Unchanged;
        let mut own_loopback = false;
        if self.lo != 0 {
            if self.excluded(port) {
                rule = Rule::PortExcluded;
            } else if bits == self.localhost || bits == self.lo {
                if bits != self.lo {
                    dest = Some(self.lo);
                }
                own_loopback = true;
                rule = if bits == self.lo {
                    Rule::SourceSessionLoopback
                } else {
                    Rule::LocalhostToSessionLoopback
                };
            } else if let Some(owner) = self.other_session(bits, port) {
                if self.isolate {
                    return (Err(Fail::Isolated(owner)), Rule::Isolated);
                }
                rule = Rule::OtherSessionLoopback;
            }
        }
        let source = match self.vip {
            Vip::Addr(v) if !self.prefer_loopback => {
                if rule != Rule::LocalhostToSessionLoopback {
                    rule = Rule::SourceVip;
                }
                Some(v.to_bits())
            }
            // Without a VIP, loopback traffic stays on the machine and needs none: "no
            // connectivity" cuts the session off the network, not from its own loopback.
            _ => {
                if self.prefer_loopback && rule == Rule::Unchanged {
                    rule = Rule::PreferLoopback;
                }
                if own_loopback { Some(self.lo) } else { None }
            }
        };
        (Ok(ConnectCore { dest, source }), rule)
    }

    #[inline(always)]
    pub(crate) fn reported_core(&self, ip: Ip, port: u16) -> (Option<u32>, Rule) {
        match ip {
            Ip::V4(bits) if bits == self.lo && self.lo != 0 => {
                if self.excluded(port) {
                    (None, Rule::PortExcluded)
                } else {
                    (Some(self.localhost), Rule::SessionLoopbackToLocalhost)
                }
            }
            _ if !self.active => (None, self.inactive_rule()),
            _ => (None, Rule::Unchanged),
        }
    }

    #[inline(always)]
    fn resolved_core(&self, ip: Ip) -> (Option<u32>, Rule) {
        match (self.vip, ip) {
            (Vip::Addr(v), Ip::V4(bits)) if contains_bits(self.host_v4, bits) => {
                (Some(v.to_bits()), Rule::ResolvedServerAddressToVip)
            }
            _ if !self.active => (None, self.inactive_rule()),
            _ => (None, Rule::Unchanged),
        }
    }

    #[inline(always)]
    fn reverse_core(&self, ip: Ip) -> (Option<u32>, Rule) {
        if let Ip::V4(bits) = ip {
            if let Vip::Addr(v) = self.vip
                && bits == v.to_bits()
                && let Some(server) = self.engine.host().primary_v4()
            {
                return (Some(server.to_bits()), Rule::ReverseVipToServer);
            }
            if bits == self.lo && self.lo != 0 {
                return (
                    Some(self.localhost),
                    Rule::ReverseSessionLoopbackToLocalhost,
                );
            }
        }
        (
            None,
            if self.active {
                Rule::Unchanged
            } else {
                self.inactive_rule()
            },
        )
    }

    #[inline(always)]
    fn inactive_rule(&self) -> Rule {
        if self.session.is_virtualized() {
            Rule::Unchanged
        } else {
            Rule::SessionNotVirtualized
        }
    }

    /// The public error for a failed decision on `addr`.
    #[inline(always)]
    pub(crate) fn error(&self, fail: Fail, addr: SocketAddr) -> RewriteError {
        let session = self.session.id();
        match fail {
            Fail::NoConnectivity => RewriteError::NoConnectivity { session, addr },
            Fail::Isolated(owner) => RewriteError::Isolated {
                session,
                dest: addr,
                owner,
            },
        }
    }

    // ---- std::net adapters -----------------------------------------------------------------------

    #[inline(always)]
    fn decide_bind(&self, addr: SocketAddr, stack: Stack) -> Decided<SocketAddr> {
        let (r, rule) = self.bind_core(Ip::of(addr.ip()), addr.port(), stack);
        (
            r.map(|new| new.map_or(addr, |b| with_ip(addr, Ipv4Addr::from_bits(b))))
                .map_err(|f| self.error(f, addr)),
            rule,
        )
    }

    #[inline(always)]
    fn decide_connect(&self, dest: SocketAddr) -> Decided<Connect> {
        let (r, rule) = self.connect_core(Ip::of(dest.ip()), dest.port());
        let r = match r {
            Ok(c) => {
                let out = c
                    .dest
                    .map_or(dest, |b| with_ip(dest, Ipv4Addr::from_bits(b)));
                Ok(Connect {
                    dest: out,
                    source: c.source.map(|b| source(dest, Ipv4Addr::from_bits(b))),
                })
            }
            Err(f) => Err(self.error(f, dest)),
        };
        (r, rule)
    }

    #[inline(always)]
    fn decide_reported(&self, addr: SocketAddr) -> (SocketAddr, Rule) {
        let (new, rule) = self.reported_core(Ip::of(addr.ip()), addr.port());
        (
            new.map_or(addr, |b| with_ip(addr, Ipv4Addr::from_bits(b))),
            rule,
        )
    }

    #[inline(always)]
    fn decide_resolved(&self, addr: IpAddr) -> (IpAddr, Rule) {
        let (new, rule) = self.resolved_core(Ip::of(addr));
        (
            new.map_or(addr, |b| with_ip_addr(addr, Ipv4Addr::from_bits(b))),
            rule,
        )
    }

    #[inline(always)]
    fn decide_reverse(&self, addr: IpAddr) -> (IpAddr, Rule) {
        let (new, rule) = self.reverse_core(Ip::of(addr));
        (
            new.map_or(addr, |b| with_ip_addr(addr, Ipv4Addr::from_bits(b))),
            rule,
        )
    }
}

/// An address as the rules see it: the IPv4 address (of an IPv4 or IPv4-mapped IPv6 address) as an
/// integer, or which kind of IPv6 address it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ip {
    V4(u32),
    V6Unspecified,
    V6Loopback,
    V6Other,
}

impl Ip {
    #[inline(always)]
    pub(crate) fn of(ip: IpAddr) -> Ip {
        match ip {
            IpAddr::V4(v4) => Ip::V4(v4.to_bits()),
            IpAddr::V6(v6) => Ip::of_v6(v6.to_bits()),
        }
    }

    #[inline(always)]
    pub(crate) fn of_v6(bits: u128) -> Ip {
        if bits >> 32 == 0xFFFF {
            // ::ffff:a.b.c.d — the low 32 bits are the IPv4 address.
            Ip::V4(bits as u32)
        } else if bits == 0 {
            Ip::V6Unspecified
        } else if bits == 1 {
            Ip::V6Loopback
        } else {
            Ip::V6Other
        }
    }
}

/// Why a decision fails, before it is dressed as a [`RewriteError`] with the caller's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    NoConnectivity,
    Isolated(SessionId),
}

/// A connect decision: the new destination and the source to bind, as IPv4 bits (`None`: unchanged
/// / no source bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectCore {
    pub(crate) dest: Option<u32>,
    pub(crate) source: Option<u32>,
}

/// The result of one rewrite, as [`Explanation`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The address to use (bind, reported).
    Addr(SocketAddr),
    /// The destination and source (connect, sendto).
    Connect(Connect),
    /// The IP to use (resolved, reverse lookup).
    Ip(IpAddr),
}

/// What [`Rewriter::explain`] returns: the call, its input, its outcome, and the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    call: Call,
    input: SocketAddr,
    outcome: Result<Outcome, RewriteError>,
    rule: Rule,
}

impl Explanation {
    /// The rule that decided.
    ///
    /// ```
    /// use ipvirt::{Call, Host, Policy, ProcessPlan, Rule, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::console(SessionId::new(1)), &ProcessPlan::NONE, None)?;
    /// assert_eq!(rw.explain(Call::Bind, "0.0.0.0:80".parse()?).rule(), Rule::SessionNotVirtualized);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The outcome: what the call should do, or the error it should fail with.
    ///
    /// ```
    /// use ipvirt::{Call, Host, Outcome, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(1)), &ProcessPlan::NONE, None)?;
    /// let addr = "0.0.0.0:80".parse()?;
    /// assert_eq!(rw.explain(Call::Bind, addr).outcome(), Ok(Outcome::Addr(addr)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outcome(&self) -> Result<Outcome, RewriteError> {
        self.outcome
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input: &dyn fmt::Display = match self.call {
            Call::Resolved | Call::ReverseLookup => &self.input.ip(),
            _ => &self.input,
        };
        write!(f, "{} {input} → ", self.call)?;
        match self.outcome {
            Ok(Outcome::Addr(a)) => write!(f, "{a}")?,
            Ok(Outcome::Ip(a)) => write!(f, "{a}")?,
            Ok(Outcome::Connect(Connect { dest, source: None })) => write!(f, "{dest}")?,
            Ok(Outcome::Connect(Connect {
                dest,
                source: Some(s),
            })) => {
                write!(
                    f,
                    "{dest}, binding the source to {s} first if the socket is not bound"
                )?;
            }
            Err(e) => write!(f, "error ({e})")?,
        }
        write!(f, ": {}", self.rule)
    }
}
