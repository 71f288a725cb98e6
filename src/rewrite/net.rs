//! The calls on `std::net` values: [`Rewriter::bind`], [`connect`](Rewriter::connect),
//! [`send_to`](Rewriter::send_to), [`reported`](Rewriter::reported),
//! [`resolved`](Rewriter::resolved), [`reverse_lookup`](Rewriter::reverse_lookup) and
//! [`explain`](Rewriter::explain).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::rules::{Ip, ReportedCore};
use super::{Call, Explanation, Outcome, Rewriter, Rule};
use crate::verdict::{Connect, Refusal, Stack};

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

type Decided<T> = (Result<T, Refusal>, Rule);

impl Rewriter {
    /// The address a `bind` on an `AF_INET` or v6-only `AF_INET6` socket should use instead of
    /// `addr`. The port never changes.
    ///
    /// # Errors
    ///
    /// - [`Refusal::NoConnectivity`] when the bind would take the VIP (`0.0.0.0` or a server
    ///   address, V) but the session has none and `on_lease_failure = "no-connectivity"`.
    /// - [`Refusal::OtherSession`] when `addr` is another session's loopback address and
    ///   `virtual_loopback.isolate` is on (it would receive that session's connections).
    /// - [`Refusal::NoLoopback`] when the session loopback would be used and the session has none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\nexcluded_ports = [27000]\n")?
    ///     .compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
    /// let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    /// assert_eq!(rw.bind(a("127.0.0.1:9000"))?, a("127.0.0.8:9000"));
    /// assert_eq!(rw.bind(a("[::ffff:127.0.0.1]:9000"))?, a("[::ffff:127.0.0.8]:9000"));
    /// assert_eq!(rw.bind(a("127.0.0.1:27000"))?, a("127.0.0.1:27000")); // excluded port
    /// assert_eq!(rw.bind(a("[::1]:9000"))?, a("[::1]:9000"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind(&self, addr: SocketAddr) -> Result<SocketAddr, Refusal> {
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("x"), Some("192.0.2.107".parse()?));
    /// let any: SocketAddr = "[::]:9000".parse()?;
    /// assert_eq!(rw.bind_on(any, Stack::Dual)?, "[::ffff:192.0.2.107]:9000".parse()?);
    /// assert_eq!(rw.bind_on(any, Stack::Single)?, any);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind_on(&self, addr: SocketAddr, stack: Stack) -> Result<SocketAddr, Refusal> {
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None);
    /// let any: SocketAddr = "[::]:9000".parse()?;
    /// assert_eq!(rw.bind_dual_stack(any)?, any); // virtual IP does not apply here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn bind_dual_stack(&self, addr: SocketAddr) -> Result<SocketAddr, Refusal> {
        self.decide_bind(addr, Stack::Dual).0
    }

    /// What a `connect` / `WSAConnect` to `dest` should do instead: the destination to use, and the
    /// source to bind first if the socket is not bound yet.
    ///
    /// # Errors
    ///
    /// - [`Refusal::Isolated`] (map to `ECONNREFUSED` / `WSAECONNREFUSED`): `dest` is another
    ///   session's loopback address and `virtual_loopback.isolate` is on.
    /// - [`Refusal::NoConnectivity`] (map to `EADDRNOTAVAIL` / `WSAEADDRNOTAVAIL`): the
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
    /// let c = rw.connect("127.0.0.1:9000".parse()?)?;
    /// assert_eq!(c.dest, "127.0.0.8:9000".parse::<SocketAddr>()?);
    /// assert_eq!(c.source, Some("127.0.0.8:0".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn connect(&self, dest: SocketAddr) -> Result<Connect, Refusal> {
        self.decide_connect::<false>(dest).0
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
    /// assert_eq!(rw.send_to("127.0.0.1:53".parse()?)?.dest, "127.0.0.8:53".parse::<SocketAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send_to(&self, dest: SocketAddr) -> Result<Connect, Refusal> {
        self.decide_connect::<false>(dest).0
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("x"), Some("192.0.2.107".parse()?));
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None);
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
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
                let (r, rule) = self.decide_connect::<true>(addr);
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

    #[inline(always)]
    fn decide_bind(&self, addr: SocketAddr, stack: Stack) -> Decided<SocketAddr> {
        let (r, rule) = self.bind_core(Ip::of(addr.ip()), addr.port(), stack);
        (
            r.map(|new| new.map_or(addr, |b| with_ip(addr, Ipv4Addr::from_bits(b)))),
            rule,
        )
    }

    #[inline(always)]
    fn decide_connect<const R: bool>(&self, dest: SocketAddr) -> Decided<Connect> {
        let (r, rule) = self.connect_core::<R>(Ip::of(dest.ip()), dest.port());
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
            Err(f) => Err(f),
        };
        (r, rule)
    }

    #[inline(always)]
    fn decide_reported(&self, addr: SocketAddr) -> (SocketAddr, Rule) {
        let (new, rule) = self.reported_core(Ip::of(addr.ip()), addr.port(), addr.is_ipv6());
        let out =
            match (new, addr) {
                (ReportedCore::Unchanged, _) => addr,
                (ReportedCore::V4(b), _) => with_ip(addr, Ipv4Addr::from_bits(b)),
                (ReportedCore::Ipv6Loopback, SocketAddr::V6(a)) => SocketAddr::V6(
                    SocketAddrV6::new(Ipv6Addr::LOCALHOST, a.port(), a.flowinfo(), a.scope_id()),
                ),
                (ReportedCore::Ipv6Loopback, SocketAddr::V4(_)) => addr,
            };
        (out, rule)
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
