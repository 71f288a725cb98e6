//! The rewrites: what each intercepted socket call should do instead (SPEC §5, §6).
//!
//! A [`Rewriter`] is built once per process and session by [`Engine::rewriter`] from the process's
//! [`ProcessPlan`] and the session's VIP. It then answers, for each intercepted call, with plain
//! values: the address to use instead, and for `connect`/`sendto` the source to bind first, or a
//! [`Refusal`]. It owns what it reads — the [`PolicyTable`] behind an `Arc` and copies of the
//! session's and the program's entries (SPEC §7) — so a hook stores it for the life of the process;
//! no method allocates, locks, or compares strings. [`Rewriter::raw`] answers the same calls on raw
//! `sockaddr` bytes.
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
//! | same | another session's loopback, L, isolation on | [`Refusal::Isolated`] (`ECONNREFUSED`) |
//! | [`bind`](Rewriter::bind) | another session's loopback, L, isolation on | [`Refusal::OtherSession`] (`EACCES`) |
//! | `connect`, `send_to` | `0.0.0.0:p` (this host: Linux and Windows send it to `127.0.0.1`) | decided as `127.0.0.1:p`: the session loopback under L, else `127.0.0.1:p` written out (SPEC §12) |
//! | `bind`, `connect`, `send_to` | `127.0.0.0` (no session's), L, isolation on | [`Refusal::BindUnowned`] / [`Refusal::Unowned`] |
//! | `bind`, `connect`, `send_to` | `[::1]:p`, L, `virtual_loopback.ipv6 = "map"`, socket takes IPv4-mapped addresses | `[::ffff:session_loopback]:p` (SPEC §8) |
//! | [`reported`](Rewriter::reported) | the session's own loopback, L | the localhost address |
//! | [`resolved`](Rewriter::resolved) | the server's address, V | the VIP |
//! | [`reverse_lookup`](Rewriter::reverse_lookup) | the VIP / the session loopback | the server's primary address / the localhost address |
//!
//! A source the program chooses in ancillary data (`IP_PKTINFO`, `IPV6_PKTINFO`) is decided as a
//! [`bind`](Rewriter::bind) of that source on the socket's port: the hook calls `bind` for it.
//! Isolation applies to every process virtual loopback applies to, also one whose session has no
//! loopback address of its own.
//!
//! Everything else passes through unchanged. IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are
//! treated as their IPv4 address and stay IPv4-mapped; `::1` is rewritten only with
//! `virtual_loopback.ipv6 = "map"` (SPEC §8; the vendors leave it alone); `::` is rewritten only on a
//! dual-stack socket.
//!
//! ## Sessions without a VIP
//!
//! When V applies to the process but the session has no VIP (`vip` is `None`), the policy's
//! `virtual_ip.on_lease_failure` decides: `use-server-address` passes the call through (the session
//! uses the server's address), `no-connectivity` fails every call that would have put the VIP on the
//! network — a bind to `0.0.0.0`, `::` (dual stack) or a server address, and a connect or send to a
//! non-loopback destination — with [`Refusal::NoConnectivity`], which the hook maps to
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
//!
//! ## Sessions without a loopback address
//!
//! A session id past [`SessionId::MAX`](crate::SessionId::MAX) has no loopback address. When virtual
//! loopback applies to it, the calls that would use the session loopback are refused with
//! [`Refusal::NoLoopback`] (`EADDRNOTAVAIL`): the session fails closed instead of sharing
//! `127.0.0.1` with every other session.

use alloc::sync::Arc;
use core::net::Ipv4Addr;

use crate::addr::Vip;
use crate::engine::{Engine, ProcessPlan};
use crate::session::{Session, SessionId};
use crate::table::{
    MAX_SERVERS, POLICY_IPV6_MAP, POLICY_ISOLATE, PROGRAM_LOOPBACK, PROGRAM_PREFER_LOOPBACK,
    PROGRAM_VIRTUAL_IP, PolicyTable, ProgramEntry, SESSION_NO_CONNECTIVITY, SESSION_NO_LOOPBACK,
    SessionEntry,
};

mod explain;
mod net;
pub(crate) mod raw;
pub(crate) mod rules;

pub use explain::{Call, Explanation, Outcome, Rule};
pub use raw::{Raw, RawConnect, RawError, RawOutcome};

/// The session's VIP state as the rewriter sees it (VIP bits when it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VipState {
    /// Virtual IP does not apply (feature off, process not listed, session not virtualized).
    Off,
    /// The session's VIP.
    Addr(u32),
    /// V applies, no VIP, `use-server-address`.
    ServerAddress,
    /// V applies, no VIP, `no-connectivity`.
    NoConnectivity,
}

/// Answers, for one process in one session, what each intercepted socket call should do instead.
///
/// Built by [`Engine::rewriter`] (or [`Rewriter::from_tables`]) once per process and stored: it owns
/// what it reads (the policy table behind an `Arc`, the session and program entries), has no
/// lifetime, is `Send + Sync`, clones by bumping a reference count; every method is allocation-free.
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
/// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &plan, Some("192.0.2.107".parse()?));
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
#[derive(Debug, Clone)]
pub struct Rewriter {
    /// The policy table (localhost, the server's addresses, the excluded ports, the flags).
    policy: Arc<PolicyTable>,
    /// The session's entry.
    session: SessionEntry,
    /// The program's entry.
    program: ProgramEntry,
    // What the three entries make of this process in this session, derived once in `from_parts`:
    /// Whether any rule can apply: the session is virtualized and L or V applies.
    active: bool,
    /// The session's loopback address as an integer when L applies, else 0 (never a loopback
    /// address).
    lo: u32,
    /// L applies but the session has no loopback address: loopback calls are refused.
    lo_missing: bool,
    /// The localhost address that is replaced, as an integer.
    localhost: u32,
    vip: VipState,
    /// Preferred loopback lists the process (and V applies).
    prefer_loopback: bool,
    isolate: bool,
    map_v6: bool,
}

/// A [`SessionEntry`] or [`PolicyTable`] value that breaks a rule of the tables (what
/// [`Rewriter::from_tables`] checks in tables that C or a file filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rule table field {field} = {value:#010x}: {reason}")]
pub struct TableError {
    /// The field, as `table.field`.
    pub field: &'static str,
    /// Its value.
    pub value: u32,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Engine {
    /// The rewriter for a process (its `plan`) in `session`, whose VIP is `vip` (`None`: the session
    /// has none — the policy's `on_lease_failure` decides what that means). It cannot fail: every
    /// value was checked where it was made ([`Vip::new`], [`Policy::compile`](crate::Policy::compile)).
    ///
    /// A session that is not virtualized (console, administrative, session 0) gets a rewriter that
    /// passes everything through; a session without a loopback address (id past
    /// [`SessionId::MAX`]) gets refusals where its loopback address would be used.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use ipvirt::{Host, Policy, Refusal, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\"]\n")?
    ///     .compile(Host::default())?;
    /// let plan = engine.process("crm.exe");
    /// let console = engine.rewriter(Session::console(SessionId::new(1)), &plan, None);
    /// let addr: SocketAddr = "127.0.0.1:9000".parse()?;
    /// assert_eq!(console.bind(addr)?, addr); // console sessions are never rewritten
    /// let too_big = engine.rewriter(Session::remote(SessionId::new(20_000_000)), &plan, None);
    /// assert_eq!(too_big.bind(addr), Err(Refusal::NoLoopback));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rewriter(&self, session: Session, plan: &ProcessPlan, vip: Option<Vip>) -> Rewriter {
        Rewriter::from_parts(
            self.policy_table(),
            self.session_entry(session, vip),
            plan.entry(),
        )
    }
}

impl Rewriter {
    /// A rewriter for the given tables, as a C or kernel layer holds them. The values are checked:
    /// the localhost address must be in 127.0.0.0/8 (not `127.0.0.0`), the session loopback 0 or
    /// such an address, the VIP 0 or a [`Vip`]; `server_count` at most
    /// [`MAX_SERVERS`](crate::table::MAX_SERVERS) with the servers sorted.
    ///
    /// # Errors
    ///
    /// [`TableError`] naming the first field that breaks a rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ipvirt::{Rewriter, table};
    ///
    /// let policy = Arc::new(table::PolicyTable::new());
    /// let session = table::SessionEntry { session: 7, loopback: 0x7F00_0008, vip: 0, flags: table::SESSION_VIRTUALIZED };
    /// let program = table::ProgramEntry { flags: table::PROGRAM_LOOPBACK };
    /// let rw = Rewriter::from_tables(policy.clone(), session, program)?;
    /// assert_eq!(rw.bind("127.0.0.1:80".parse()?)?, "127.0.0.8:80".parse()?);
    /// let bad = table::SessionEntry { loopback: 0xC000_0201, ..session };
    /// assert_eq!(Rewriter::from_tables(policy, bad, program).unwrap_err().field, "session.loopback");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_tables(
        policy: Arc<PolicyTable>,
        session: SessionEntry,
        program: ProgramEntry,
    ) -> Result<Rewriter, TableError> {
        // The mapping's inverse is the one definition of "an address of 127/8 but 127.0.0.0".
        let is_session_loopback =
            |a: u32| SessionId::from_loopback(Ipv4Addr::from_bits(a)).is_some();
        if !is_session_loopback(policy.localhost) {
            return Err(TableError {
                field: "policy.localhost",
                value: policy.localhost,
                reason: "not an address of 127.0.0.0/8 other than 127.0.0.0",
            });
        }
        if policy.server_count as usize > MAX_SERVERS || !policy.servers().is_sorted() {
            return Err(TableError {
                field: "policy.server_count",
                value: policy.server_count,
                reason: "more than MAX_SERVERS, or the servers are not sorted ascending",
            });
        }
        if session.loopback != 0 && !is_session_loopback(session.loopback) {
            return Err(TableError {
                field: "session.loopback",
                value: session.loopback,
                reason: "neither 0 nor an address of 127.0.0.0/8 other than 127.0.0.0",
            });
        }
        if session.vip != 0 && Vip::new(Ipv4Addr::from_bits(session.vip)).is_err() {
            return Err(TableError {
                field: "session.vip",
                value: session.vip,
                reason: "neither 0 nor a usable VIP (see Vip::new)",
            });
        }
        Ok(Rewriter::from_parts(policy, session, program))
    }

    /// From checked tables: derives what the rules read.
    pub(crate) fn from_parts(
        policy: Arc<PolicyTable>,
        session: SessionEntry,
        program: ProgramEntry,
    ) -> Rewriter {
        let on = session.is_virtualized();
        let l = on && program.flags & PROGRAM_LOOPBACK != 0;
        let v = on && program.flags & PROGRAM_VIRTUAL_IP != 0;
        let lo_missing = l && (session.loopback == 0 || session.flags & SESSION_NO_LOOPBACK != 0);
        let lo = if l && !lo_missing {
            session.loopback
        } else {
            0
        };
        let vip = match (v, session.vip) {
            (false, _) => VipState::Off,
            (true, 0) if session.flags & SESSION_NO_CONNECTIVITY != 0 => VipState::NoConnectivity,
            (true, 0) => VipState::ServerAddress,
            (true, bits) => VipState::Addr(bits),
        };
        Rewriter {
            active: lo != 0 || lo_missing || vip != VipState::Off,
            lo,
            lo_missing,
            localhost: policy.localhost,
            vip,
            prefer_loopback: v && program.flags & PROGRAM_PREFER_LOOPBACK != 0,
            isolate: policy.flags & POLICY_ISOLATE != 0,
            map_v6: policy.flags & POLICY_IPV6_MAP != 0,
            policy,
            session,
            program,
        }
    }

    /// Whether `[::1]` is mapped to the session loopback for this process (SPEC §8:
    /// `virtual_loopback.ipv6 = "map"` and virtual loopback applies). A hook uses it to clear
    /// `IPV6_V6ONLY` on a socket before a bind of `::1`, so the mapped address can be bound.
    #[must_use]
    pub fn maps_ipv6_loopback(&self) -> bool {
        self.map_v6 && self.lo != 0
    }

    /// The session's entry of the rule tables.
    #[must_use]
    pub fn session_entry(&self) -> SessionEntry {
        self.session
    }

    /// The program's entry of the rule tables.
    #[must_use]
    pub fn program_entry(&self) -> ProgramEntry {
        self.program
    }

    /// The policy table.
    #[must_use]
    pub fn policy_table(&self) -> &PolicyTable {
        &self.policy
    }

    /// The id of the session this rewriter is for.
    ///
    /// ```
    /// use ipvirt::{Host, Policy, ProcessPlan, Session, SessionId};
    ///
    /// let engine = Policy::default().compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(3)), &ProcessPlan::NONE, None);
    /// assert_eq!(rw.session_id(), SessionId::new(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        SessionId::new(self.session.session)
    }

    /// The session's loopback address when virtual loopback applies to this process, else `None`.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::{Host, Policy, Session, SessionId};
    ///
    /// let engine = Policy::from_toml("[virtual_loopback]\nenabled = true\nprograms = [\"a\"]\n")?.compile(Host::default())?;
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &engine.process("a"), None);
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
    /// let rw = engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None);
    /// assert_eq!(rw.vip(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn vip(&self) -> Option<Vip> {
        match self.vip {
            VipState::Addr(v) => Some(Vip::checked(Ipv4Addr::from_bits(v))),
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
    /// assert!(!engine.rewriter(Session::remote(SessionId::new(7)), &ProcessPlan::NONE, None).is_active());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active
    }
}
