//! [`Rewriter::explain`](crate::Rewriter::explain)(crate::Rewriter::explain): which rule decided a call, in words.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use crate::verdict::{Connect, Refusal};

/// Which intercepted call [`Rewriter::explain`](crate::Rewriter::explain) explains.
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

/// The rule that decided a rewrite: what [`Rewriter::explain`](crate::Rewriter::explain) puts into words.
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
    /// The destination is another session's loopback address; isolation is off, so it passes.
    OtherSessionLoopback,
    /// The destination is another session's loopback address and isolation is on: refused.
    Isolated,
    /// The session's loopback address is reported as the localhost address the application used.
    SessionLoopbackToLocalhost,
    /// A name-resolution result that is the server's address became the VIP (V).
    ResolvedServerAddressToVip,
    /// A reverse lookup of the VIP looks up the server's primary address instead (V).
    ReverseVipToServer,
    /// A reverse lookup of the session loopback looks up the localhost address instead (L).
    ReverseSessionLoopbackToLocalhost,
    /// `::1` became `::ffff:session_loopback` (L, `virtual_loopback.ipv6 = "map"`, SPEC §8).
    Ipv6LoopbackToSessionLoopback,
    /// `::1` on a v6-only socket with the IPv6 mapping on: IPv4-mapped addresses cannot be bound
    /// there, so it is left alone; the hook clears `IPV6_V6ONLY` first to have it mapped.
    V6OnlyIpv6Loopback,
    /// The session's loopback address is reported as `::1` (the IPv6 mapping is on).
    SessionLoopbackToIpv6Loopback,
    /// Virtual loopback applies but the session has no loopback address (its id is past
    /// `SessionId::MAX`): refused rather than shared with every other session.
    NoSessionLoopback,
    /// A `0.0.0.0` destination means this host, which Linux and Windows reach at `127.0.0.1`: it
    /// is decided as `127.0.0.1` and became the session's loopback address (L, SPEC §12).
    UnspecifiedDestinationToSessionLoopback,
    /// A `0.0.0.0` destination means this host: it is sent to `127.0.0.1`, where the kernel would
    /// send it, so that no source bound first can make it go elsewhere (SPEC §12).
    UnspecifiedDestinationToLocalhost,
    /// The address is in 127.0.0.0/8 but belongs to no session (`127.0.0.0`) and isolation is on:
    /// refused (SPEC §12).
    IsolatedUnowned,
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
                "the destination is another session's loopback address; virtual_loopback.isolate is off, so it passes"
            }
            Rule::Isolated => {
                "the address is another session's loopback address and virtual_loopback.isolate is on: refused (ECONNREFUSED for connect and send, EACCES for bind)"
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
            Rule::Ipv6LoopbackToSessionLoopback => {
                "virtual loopback, IPv6 mapped: ::1 is replaced by the session's loopback address (IPv4-mapped)"
            }
            Rule::V6OnlyIpv6Loopback => {
                "::1 on a v6-only socket is left alone: clear IPV6_V6ONLY before the bind to have it mapped"
            }
            Rule::SessionLoopbackToIpv6Loopback => {
                "the session's loopback address is reported as ::1 (virtual_loopback.ipv6 = map)"
            }
            Rule::NoSessionLoopback => {
                "virtual loopback applies but the session has no loopback address (its id is past 16777214): refused (EADDRNOTAVAIL)"
            }
            Rule::UnspecifiedDestinationToSessionLoopback => {
                "a 0.0.0.0 destination means this host (127.0.0.1): virtual loopback replaces it by the session's loopback address"
            }
            Rule::UnspecifiedDestinationToLocalhost => {
                "a 0.0.0.0 destination means this host: it is sent to 127.0.0.1, where the kernel sends it"
            }
            Rule::IsolatedUnowned => {
                "the address belongs to no session (127.0.0.0) and virtual_loopback.isolate is on: refused"
            }
        })
    }
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

/// What [`Rewriter::explain`](crate::Rewriter::explain) returns: the call, its input, its outcome, and the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    pub(crate) call: Call,
    pub(crate) input: SocketAddr,
    pub(crate) outcome: Result<Outcome, Refusal>,
    pub(crate) rule: Rule,
}

impl Explanation {
    /// The rule that decided.
    ///
    /// ```
    /// use ipvirt::{Call, Host, Policy, ProcessPlan, Rule, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::console(SessionId::new(1)), &ProcessPlan::NONE, None);
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(1)), &ProcessPlan::NONE, None);
    /// let addr = "0.0.0.0:80".parse()?;
    /// assert_eq!(rw.explain(Call::Bind, addr).outcome(), Ok(Outcome::Addr(addr)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outcome(&self) -> Result<Outcome, Refusal> {
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
