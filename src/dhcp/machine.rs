//! The machine: one DHCP client per session (RFC 2131 §4.4, the table in the [module](super)),
//! each state holding the data it needs ([`Phase`]: the transaction inside the states that have
//! one, the offer inside `Requesting`, the lease inside `Bound`, `Renewing` and `Rebinding`).
//!
//! A session is looked up once per call: a reply's transaction id finds its session in an index
//! (`by_xid`), and every transition then works on that one [`Client`] beside the rest of the
//! machine ([`Core`]), which keeps the indices right in one place ([`Core::set_phase`]).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use super::wire::{Outgoing, Reply};
use super::{
    DatagramError, Destination, DhcpConfig, DhcpEvent, DhcpLease, DhcpState, DhcpStats,
    MessageKind, Transmit, Unusable,
};
use crate::addr::Vip;
use crate::pool::{AddressSource, LeaseError};
use crate::session::SessionId;

/// How many released sessions' previous addresses are remembered.
const REMEMBERED: usize = 65_536;

/// One exchange: a transaction and its retransmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exchange {
    /// The transaction id.
    pub(super) xid: u32,
    /// Messages sent in this exchange.
    pub(super) attempts: u32,
    /// When it started (`secs` counts from here).
    pub(super) started: Duration,
    /// When its first REQUEST left (the start of the lease it gets).
    pub(super) requested_at: Duration,
}

impl Exchange {
    /// A new exchange with transaction `xid`, starting at `now`.
    pub(super) fn new(xid: u32, now: Duration) -> Exchange {
        Exchange {
            xid,
            attempts: 0,
            started: now,
            requested_at: now,
        }
    }
}

/// The offer a session took up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    /// The address offered.
    pub(super) addr: Ipv4Addr,
    /// The server that offered it (option 54).
    pub(super) server: Ipv4Addr,
}

/// A session's state with the data that state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting to (re)start, after a DECLINE.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting(Exchange),
    /// REQUEST for the offer sent, waiting for the ACK.
    Requesting(Exchange, Offer),
    /// REQUEST for a remembered address sent (INIT-REBOOT), waiting for the ACK.
    Rebooting(Exchange, Ipv4Addr),
    /// Holding a lease; renewal starts at its T1.
    Bound(DhcpLease),
    /// Past T1: renewing with the server that granted the lease.
    Renewing(Exchange, DhcpLease),
    /// Past T2: asking any server to extend the lease.
    Rebinding(Exchange, DhcpLease),
}

impl Phase {
    /// The public name of the state.
    pub(super) fn state(&self) -> DhcpState {
        match self {
            Phase::Init => DhcpState::Init,
            Phase::Selecting(_) => DhcpState::Selecting,
            Phase::Requesting(..) => DhcpState::Requesting,
            Phase::Rebooting(..) => DhcpState::Rebooting,
            Phase::Bound(_) => DhcpState::Bound,
            Phase::Renewing(..) => DhcpState::Renewing,
            Phase::Rebinding(..) => DhcpState::Rebinding,
        }
    }

    /// The lease held, in the states that hold one.
    pub(super) fn lease(&self) -> Option<DhcpLease> {
        match *self {
            Phase::Bound(l) | Phase::Renewing(_, l) | Phase::Rebinding(_, l) => Some(l),
            _ => None,
        }
    }

    fn exchange(&self) -> Option<&Exchange> {
        match self {
            Phase::Selecting(e)
            | Phase::Requesting(e, _)
            | Phase::Rebooting(e, _)
            | Phase::Renewing(e, _)
            | Phase::Rebinding(e, _) => Some(e),
            Phase::Init | Phase::Bound(_) => None,
        }
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match self {
            Phase::Selecting(e)
            | Phase::Requesting(e, _)
            | Phase::Rebooting(e, _)
            | Phase::Renewing(e, _)
            | Phase::Rebinding(e, _) => Some(e),
            Phase::Init | Phase::Bound(_) => None,
        }
    }

    fn lease_mut(&mut self) -> Option<&mut DhcpLease> {
        match self {
            Phase::Bound(l) | Phase::Renewing(_, l) | Phase::Rebinding(_, l) => Some(l),
            _ => None,
        }
    }

    /// The address this state claims — held, taken up from an offer, or asked back — which no
    /// other session may get.
    fn claim(&self) -> Option<Ipv4Addr> {
        match *self {
            Phase::Requesting(_, o) => Some(o.addr),
            Phase::Rebooting(_, a) => Some(a),
            _ => self.lease().map(|l| l.addr),
        }
    }
}

/// One session's client.
#[derive(Debug, Clone)]
pub(super) struct Client {
    /// Its state and the state's data.
    pub(super) phase: Phase,
    /// The next deadline (retransmission, T1, T2, expiry, end of a wait).
    pub(super) next: Duration,
    /// The address to ask for (its previous one).
    pub(super) want: Option<Ipv4Addr>,
    /// The address lost last, while no new one is held.
    pub(super) lost: Option<Ipv4Addr>,
}

impl Client {
    /// A client that has not sent anything yet, asking for `want`.
    pub(super) fn new(now: Duration, want: Option<Ipv4Addr>) -> Client {
        Client {
            phase: Phase::Init,
            next: now,
            want,
            lost: None,
        }
    }
}

/// Everything of the machine but the clients: what a transition of one client reads and writes
/// besides the client itself.
#[derive(Debug, Clone)]
pub(super) struct Core {
    pub(super) config: DhcpConfig,
    /// Transaction id → the session whose exchange it is (exactly the exchanges under way).
    by_xid: BTreeMap<u32, SessionId>,
    /// Address → the session that claims it ([`Phase::claim`]).
    by_addr: BTreeMap<Ipv4Addr, SessionId>,
    remembered: BTreeMap<SessionId, Ipv4Addr>,
    /// The remembered sessions, oldest first.
    pub(super) remembered_order: VecDeque<SessionId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhcpEvent>,
    stats: DhcpStats,
    /// The latest time the machine was given.
    pub(super) now: Duration,
    rng: u64,
}

/// A sans-I/O DHCP client for every session's VIP: see the [module](super).
///
/// Its snapshot and restore ([`snapshot`](Self::snapshot), [`restore`](Self::restore)) are
/// defined in `dhcp/snapshot.rs`, beside the format they write and read.
#[derive(Debug, Clone)]
pub struct DhcpSource {
    pub(super) core: Core,
    pub(super) clients: BTreeMap<SessionId, Client>,
}

impl DhcpSource {
    /// A machine with no sessions.
    ///
    /// ```
    /// use ipvirt::dhcp::{DhcpConfig, DhcpSource};
    ///
    /// let dhcp = DhcpSource::new(DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]));
    /// assert!(dhcp.sessions().is_empty());
    /// assert_eq!(dhcp.poll_timeout(), None);
    /// ```
    #[must_use]
    pub fn new(config: DhcpConfig) -> DhcpSource {
        let rng = config.seed | 1;
        DhcpSource {
            core: Core {
                config,
                by_xid: BTreeMap::new(),
                by_addr: BTreeMap::new(),
                remembered: BTreeMap::new(),
                remembered_order: VecDeque::new(),
                transmits: VecDeque::new(),
                events: VecDeque::new(),
                stats: DhcpStats::default(),
                now: Duration::ZERO,
                rng,
            },
            clients: BTreeMap::new(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &DhcpConfig {
        &self.core.config
    }

    /// The counters of ignored and refused datagrams.
    #[must_use]
    pub fn stats(&self) -> DhcpStats {
        self.core.stats
    }

    /// The latest time the machine was given (what the queries answer for).
    #[must_use]
    pub fn now(&self) -> Duration {
        self.core.now
    }

    /// The session's state, `None` when it is not a client (never started, or released).
    #[must_use]
    pub fn state(&self, session: SessionId) -> Option<DhcpState> {
        self.clients.get(&session).map(|c| c.phase.state())
    }

    /// The session's lease, while it holds one.
    #[must_use]
    pub fn lease_of(&self, session: SessionId) -> Option<DhcpLease> {
        self.clients.get(&session).and_then(|c| c.phase.lease())
    }

    /// Every session that holds a lease, with it.
    #[must_use]
    pub fn leases(&self) -> Vec<(SessionId, DhcpLease)> {
        self.clients
            .iter()
            .filter_map(|(id, c)| c.phase.lease().map(|l| (*id, l)))
            .collect()
    }

    /// The sessions that are clients (holding a lease or trying to get one).
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionId> {
        self.clients.keys().copied().collect()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.transmits.pop_front()
    }

    /// The next thing that happened to a lease.
    pub fn poll_event(&mut self) -> Option<DhcpEvent> {
        self.core.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next (`None`: no session).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.clients.values().map(|c| c.next).min()
    }

    /// Makes `session` a client at `now`: it starts asking for an address (its previous one, if
    /// remembered). Does nothing but take the time if it already is one.
    pub fn start(&mut self, now: Duration, session: SessionId) {
        self.advance(now);
        if self.clients.contains_key(&session) {
            return;
        }
        let mut c = Client::new(now, self.core.remembered.get(&session).copied());
        self.core.discover(session, &mut c);
        self.clients.insert(session, c);
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance(now);
        let due: Vec<SessionId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(c) = self.clients.get_mut(&id) {
                self.core.on_timer(id, c);
            }
        }
    }

    /// Takes in a datagram that arrived on UDP port 68 at `now`.
    ///
    /// # Errors
    ///
    /// [`DatagramError`] when the datagram was not used (malformed, not a reply, no session waits
    /// for it, another client's, unexpected in the session's state, unusable). The machine is
    /// unchanged and the datagram is counted; a caller usually just logs it. (An offer of an
    /// address this host cannot use is also reported as a [`DhcpEvent::Refused`], so a caller
    /// that logs only events sees it.)
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        bytes: &[u8],
    ) -> Result<SessionId, DatagramError> {
        self.advance(now);
        let result = self.datagram(bytes);
        match &result {
            Err(DatagramError::Malformed { .. }) => self.core.stats.malformed += 1,
            Err(_) => self.core.stats.ignored += 1,
            Ok(_) => {}
        }
        result
    }

    /// The caller found `session`'s address in use at `now` (e.g. by an ARP probe): DECLINE it
    /// and start over. Returns the address declined, `None` if the session held none.
    pub fn decline(&mut self, now: Duration, session: SessionId) -> Option<Ipv4Addr> {
        self.advance(now);
        let c = self.clients.get_mut(&session)?;
        let lease = c.phase.lease()?;
        self.core
            .send_decline(session, c, lease.addr, lease.server, true);
        Some(lease.addr)
    }

    /// One reply: its session found by transaction id, then handled by that session's state.
    fn datagram(&mut self, bytes: &[u8]) -> Result<SessionId, DatagramError> {
        let reply = Reply::decode(bytes)?;
        let xid = reply.xid;
        let unknown = || DatagramError::UnknownTransaction { xid };
        let id = *self.core.by_xid.get(&xid).ok_or_else(unknown)?;
        let c = self.clients.get_mut(&id).ok_or_else(unknown)?;
        let cid_ok = reply
            .client_id
            .as_ref()
            .is_none_or(|cid| *cid == self.core.config.client_id(id));
        if reply.hardware_addr != Some(self.core.config.hardware_addr) || !cid_ok {
            return Err(DatagramError::OtherClient { xid, session: id });
        }
        self.core.on_reply(id, c, &reply)?;
        Ok(id)
    }

    /// Moves the clock to `now`; a clock that went back moves every deadline back as much.
    pub(super) fn advance(&mut self, now: Duration) {
        if now < self.core.now {
            let back = self.core.now - now;
            for c in self.clients.values_mut() {
                c.next = c.next.saturating_sub(back);
                if let Some(e) = c.phase.exchange_mut() {
                    e.started = e.started.saturating_sub(back);
                    e.requested_at = e.requested_at.saturating_sub(back);
                }
                if let Some(l) = c.phase.lease_mut() {
                    l.acquired = l.acquired.saturating_sub(back);
                    l.t1 = l.t1.saturating_sub(back);
                    l.t2 = l.t2.saturating_sub(back);
                    l.expiry = l.expiry.saturating_sub(back);
                }
            }
        }
        self.core.now = now;
    }
}

impl Core {
    /// Changes `c`'s state to `phase`, keeping the transaction and address indices right: the
    /// one place a state changes.
    pub(super) fn set_phase(&mut self, id: SessionId, c: &mut Client, phase: Phase) {
        self.unindex(id, c);
        c.phase = phase;
        if let Some(e) = c.phase.exchange() {
            self.by_xid.insert(e.xid, id);
        }
        if let Some(a) = c.phase.claim() {
            // Never two claims of one address: every transition that claims one checks
            // `holder_of` first.
            self.by_addr.entry(a).or_insert(id);
        }
    }

    /// Drops `c`'s entries from the indices (it is released, or about to change state).
    pub(super) fn unindex(&mut self, id: SessionId, c: &Client) {
        if let Some(e) = c.phase.exchange()
            && self.by_xid.get(&e.xid) == Some(&id)
        {
            self.by_xid.remove(&e.xid);
        }
        if let Some(a) = c.phase.claim()
            && self.by_addr.get(&a) == Some(&id)
        {
            self.by_addr.remove(&a);
        }
    }

    /// The session other than `except` that holds `addr`, or has taken it up from an offer, or
    /// asks it back.
    pub(super) fn holder_of(&self, addr: Ipv4Addr, except: Option<SessionId>) -> Option<SessionId> {
        self.by_addr
            .get(&addr)
            .copied()
            .filter(|s| Some(*s) != except)
    }

    /// A transaction id no exchange under way has.
    pub(super) fn new_xid(&mut self) -> u32 {
        loop {
            // xorshift64*
            let mut x = self.rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng = x;
            let xid = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
            if xid != 0 && !self.by_xid.contains_key(&xid) {
                return xid;
            }
        }
    }

    /// Remembers `addr` as `session`'s previous address (the newest entry).
    pub(super) fn remember(&mut self, session: SessionId, addr: Ipv4Addr) {
        if self.remembered.insert(session, addr).is_some() {
            self.remembered_order.retain(|s| *s != session);
        }
        self.remembered_order.push_back(session);
        while self.remembered_order.len() > REMEMBERED {
            if let Some(old) = self.remembered_order.pop_front() {
                self.remembered.remove(&old);
            }
        }
    }

    /// The address remembered for `session`.
    pub(super) fn remembered(&self, session: SessionId) -> Option<Ipv4Addr> {
        self.remembered.get(&session).copied()
    }

    /// The delay before retransmission number `attempts` (1-based): first, doubled, capped.
    fn backoff(&self, attempts: u32) -> Duration {
        let mut d = self.config.first_retransmit;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.config.max_retransmit {
                break;
            }
        }
        d.min(self.config.max_retransmit)
            .max(Duration::from_millis(1))
    }

    /// A message of `session`'s for transaction `xid` of an exchange that started at `started`.
    fn outgoing(
        &self,
        session: SessionId,
        kind: MessageKind,
        xid: u32,
        started: Duration,
    ) -> Outgoing {
        let mut m = Outgoing::new(kind, xid, self.config.client_id(session));
        m.secs = u16::try_from(self.now.saturating_sub(started).as_secs()).unwrap_or(u16::MAX);
        m
    }

    fn push(&mut self, session: SessionId, destination: Destination, m: &Outgoing) {
        if let Some(payload) = m.encode(&self.config.hardware_addr) {
            self.transmits.push_back(Transmit {
                session,
                kind: m.kind,
                destination,
                payload,
            });
        }
    }

    /// Starts (or restarts) a DISCOVER exchange: `Selecting`.
    pub(super) fn discover(&mut self, id: SessionId, c: &mut Client) {
        let xid = self.new_xid();
        self.set_phase(id, c, Phase::Selecting(Exchange::new(xid, self.now)));
        self.send_discover(id, c);
    }

    fn send_discover(&mut self, id: SessionId, c: &mut Client) {
        let Phase::Selecting(e) = &mut c.phase else {
            return;
        };
        let mut m = self.outgoing(id, MessageKind::Discover, e.xid, e.started);
        m.broadcast = true;
        m.requested = c.want;
        e.attempts += 1;
        let attempts = e.attempts;
        self.push(id, Destination::Broadcast, &m);
        c.next = self.now + self.backoff(attempts);
    }

    /// Sends the REQUEST of the session's state (`Requesting`, `Rebooting`, `Renewing`,
    /// `Rebinding`) and sets the next deadline.
    pub(super) fn send_request(&mut self, id: SessionId, c: &mut Client) {
        let now = self.now;
        let (e, deadline) = match &mut c.phase {
            Phase::Requesting(e, o) => {
                let mut m = self.outgoing(id, MessageKind::Request, e.xid, e.started);
                m.broadcast = true;
                m.requested = Some(o.addr);
                m.server = Some(o.server);
                self.push(id, Destination::Broadcast, &m);
                (e, None)
            }
            Phase::Rebooting(e, a) => {
                let mut m = self.outgoing(id, MessageKind::Request, e.xid, e.started);
                m.broadcast = true;
                m.requested = Some(*a);
                self.push(id, Destination::Broadcast, &m);
                (e, None)
            }
            Phase::Renewing(e, l) => {
                let mut m = self.outgoing(id, MessageKind::Request, e.xid, e.started);
                m.ciaddr = l.addr;
                let to = Destination::Server(l.server);
                self.push(id, to, &m);
                (e, Some(l.t2))
            }
            Phase::Rebinding(e, l) => {
                let mut m = self.outgoing(id, MessageKind::Request, e.xid, e.started);
                m.ciaddr = l.addr;
                self.push(id, Destination::Broadcast, &m);
                (e, Some(l.expiry))
            }
            Phase::Init | Phase::Selecting(_) | Phase::Bound(_) => return,
        };
        if e.attempts == 0 {
            e.requested_at = now;
        }
        e.attempts += 1;
        let attempts = e.attempts;
        c.next = match deadline {
            // Renewing and rebinding: half the time left to T2 (or expiry), at least the minimum,
            // never past it.
            Some(end) => {
                (now + (end.saturating_sub(now) / 2).max(self.config.min_renew_retransmit)).min(end)
            }
            None => now + self.backoff(attempts),
        };
    }

    /// DECLINEs `addr` (offered by `server`): `Init`, waiting [`DhcpConfig::decline_wait`].
    pub(super) fn send_decline(
        &mut self,
        id: SessionId,
        c: &mut Client,
        addr: Ipv4Addr,
        server: Ipv4Addr,
        was_held: bool,
    ) {
        let xid = self.new_xid();
        let mut m = self.outgoing(id, MessageKind::Decline, xid, self.now);
        m.requested = Some(addr);
        m.server = Some(server);
        self.push(id, Destination::Broadcast, &m);
        self.set_phase(id, c, Phase::Init);
        // Do not ask for the declined address again.
        c.want = None;
        c.next = self.now + self.config.decline_wait;
        if self.remembered.get(&id) == Some(&addr) {
            self.remembered.remove(&id);
            self.remembered_order.retain(|s| *s != id);
        }
        self.events.push_back(DhcpEvent::Declined {
            session: id,
            addr,
            was_held,
        });
    }

    /// Says why `addr` was refused, and counts it.
    pub(super) fn refuse(
        &mut self,
        id: SessionId,
        kind: MessageKind,
        addr: Ipv4Addr,
        server: Ipv4Addr,
        reason: Unusable,
    ) {
        self.stats.refused += 1;
        self.events.push_back(DhcpEvent::Refused {
            session: id,
            kind,
            addr,
            server,
            reason,
        });
    }

    /// The lease is gone (expiry or NAK while held): back to `Init`, asking for it again after an
    /// expiry (`ask_again`), not after a NAK.
    fn lose(&mut self, id: SessionId, c: &mut Client, ask_again: bool) {
        if let Some(l) = c.phase.lease() {
            c.lost = Some(l.addr);
            c.want = ask_again.then_some(l.addr);
            self.events.push_back(DhcpEvent::Lost {
                session: id,
                addr: l.addr,
            });
        }
        self.discover(id, c);
    }

    /// Enters `Renewing` or `Rebinding` holding `lease`: a new transaction.
    fn enter(&mut self, id: SessionId, c: &mut Client, rebinding: bool, lease: DhcpLease) {
        let e = Exchange::new(self.new_xid(), self.now);
        let phase = if rebinding {
            Phase::Rebinding(e, lease)
        } else {
            Phase::Renewing(e, lease)
        };
        self.set_phase(id, c, phase);
    }

    /// The session's deadline, if it has passed.
    pub(super) fn on_timer(&mut self, id: SessionId, c: &mut Client) {
        let now = self.now;
        if c.next > now {
            return;
        }
        match c.phase {
            Phase::Init => self.discover(id, c),
            Phase::Selecting(_) => self.send_discover(id, c),
            Phase::Requesting(e, _) | Phase::Rebooting(e, _) => {
                if e.attempts >= self.config.request_attempts.max(1) {
                    self.discover(id, c);
                } else {
                    self.send_request(id, c);
                }
            }
            Phase::Bound(l) | Phase::Renewing(_, l) | Phase::Rebinding(_, l) => {
                if now >= l.expiry {
                    self.lose(id, c, true);
                } else if now >= l.t2 {
                    if !matches!(c.phase, Phase::Rebinding(..)) {
                        self.enter(id, c, true, l);
                    }
                    self.send_request(id, c);
                } else if now >= l.t1 {
                    if matches!(c.phase, Phase::Bound(_)) {
                        self.enter(id, c, false, l);
                    }
                    self.send_request(id, c);
                } else {
                    // The clock went back past T1: wait for it again.
                    self.set_phase(id, c, Phase::Bound(l));
                    c.next = l.t1;
                }
            }
        }
    }

    /// A reply that matches `id`'s transaction, hardware address and client identifier.
    fn on_reply(
        &mut self,
        id: SessionId,
        c: &mut Client,
        reply: &Reply,
    ) -> Result<(), DatagramError> {
        let unexpected = DatagramError::Unexpected {
            session: id,
            state: c.phase.state(),
            kind: reply.kind,
        };
        match (c.phase, reply.kind) {
            (Phase::Selecting(e), MessageKind::Offer) => self.on_offer(id, c, e, reply),
            (Phase::Requesting(_, o), MessageKind::Ack | MessageKind::Nak)
                if reply.server.is_some_and(|s| s != o.server) =>
            {
                Err(unexpected)
            }
            (Phase::Requesting(..) | Phase::Rebooting(..), MessageKind::Nak) => {
                // A refused remembered address is not asked for again.
                c.want = None;
                self.events.push_back(DhcpEvent::Nak { session: id });
                self.discover(id, c);
                Ok(())
            }
            (Phase::Renewing(..) | Phase::Rebinding(..), MessageKind::Nak) => {
                // The server refused the address: not asked for again.
                self.lose(id, c, false);
                Ok(())
            }
            (
                Phase::Requesting(..)
                | Phase::Rebooting(..)
                | Phase::Renewing(..)
                | Phase::Rebinding(..),
                MessageKind::Ack,
            ) => self.on_ack(id, c, reply),
            _ => Err(unexpected),
        }
    }

    /// An OFFER while selecting: taken up (REQUEST) if the address is usable and free.
    fn on_offer(
        &mut self,
        id: SessionId,
        c: &mut Client,
        e: Exchange,
        reply: &Reply,
    ) -> Result<(), DatagramError> {
        let unusable = |reason: alloc::string::String| DatagramError::Unusable {
            session: id,
            kind: MessageKind::Offer,
            reason,
        };
        let addr = reply.addr;
        Vip::new(addr).map_err(|e| unusable(alloc::format!("{e}")))?;
        let server = reply
            .server
            .ok_or_else(|| unusable("no server identifier (option 54)".into()))?;
        if let Err(reason) = self.config.usable(addr, server) {
            self.refuse(id, MessageKind::Offer, addr, server, reason);
            return Err(unusable(alloc::format!("{addr}: {reason}")));
        }
        if self.holder_of(addr, Some(id)).is_some() {
            self.stats.conflicts += 1;
            return Err(unusable(alloc::format!(
                "{addr} is held or requested by another session"
            )));
        }
        // The same transaction goes on: the REQUEST answers the OFFER.
        let e = Exchange { attempts: 0, ..e };
        self.set_phase(id, c, Phase::Requesting(e, Offer { addr, server }));
        self.send_request(id, c);
        Ok(())
    }

    /// An ACK of a REQUEST: `Bound` on a usable, free address; else DECLINE.
    fn on_ack(
        &mut self,
        id: SessionId,
        c: &mut Client,
        reply: &Reply,
    ) -> Result<(), DatagramError> {
        let unusable = |reason: alloc::string::String| DatagramError::Unusable {
            session: id,
            kind: MessageKind::Ack,
            reason,
        };
        let addr = reply.addr;
        Vip::new(addr).map_err(|e| unusable(alloc::format!("{e}")))?;
        let secs = reply
            .lease_secs
            .filter(|&t| t > 0)
            .ok_or_else(|| unusable("no lease time (option 51)".into()))?;
        let (e, offered, previous) = match c.phase {
            Phase::Requesting(e, o) => (e, Some(o.server), None),
            Phase::Rebooting(e, _) => (e, None, None),
            Phase::Renewing(e, l) | Phase::Rebinding(e, l) => (e, None, Some(l)),
            Phase::Init | Phase::Selecting(_) | Phase::Bound(_) => return Ok(()),
        };
        let server = reply
            .server
            .or(offered)
            .or(previous.map(|l| l.server))
            .ok_or_else(|| unusable("no server identifier (option 54)".into()))?;
        let lease = lease_times(addr, server, e.requested_at, secs, reply);
        let refused = self.config.usable(addr, server).err();
        if let Some(reason) = refused {
            self.refuse(id, MessageKind::Ack, addr, server, reason);
        } else if self.holder_of(addr, Some(id)).is_some() {
            self.stats.conflicts += 1;
        } else {
            self.set_phase(id, c, Phase::Bound(lease));
            c.want = Some(addr);
            c.lost = None;
            c.next = lease.t1;
            self.events.push_back(match previous {
                Some(p) => DhcpEvent::Renewed {
                    session: id,
                    previous: p.addr,
                    lease,
                },
                None => DhcpEvent::Bound { session: id, lease },
            });
            // A lease so short that T1 has passed already.
            self.on_timer(id, c);
            return Ok(());
        }
        // Unusable, or another session's: DECLINE (RFC 2131 §3.1.5). Moved onto such an
        // address, the old one is gone too.
        if let Some(p) = previous {
            c.lost = Some(p.addr);
            self.events.push_back(DhcpEvent::Lost {
                session: id,
                addr: p.addr,
            });
        }
        self.send_decline(id, c, addr, server, false);
        Ok(())
    }
}

/// The lease's deadlines: T1 and T2 from options 58 and 59 when they are in order, else RFC 2131's
/// defaults (half and seven eighths of the lease).
fn lease_times(
    addr: Ipv4Addr,
    server: Ipv4Addr,
    start: Duration,
    secs: u32,
    reply: &Reply,
) -> DhcpLease {
    let length = Duration::from_secs(u64::from(secs));
    let opt = |t: Option<u32>| t.map(|t| Duration::from_secs(u64::from(t)));
    let mut t1 = opt(reply.renewal_secs).unwrap_or(length / 2);
    let mut t2 = opt(reply.rebinding_secs).unwrap_or(length * 7 / 8);
    if !(t1 <= t2 && t2 <= length) {
        t1 = length / 2;
        t2 = length * 7 / 8;
    }
    DhcpLease {
        addr,
        server,
        acquired: start,
        t1: start.saturating_add(t1),
        t2: start.saturating_add(t2),
        expiry: start.saturating_add(length),
    }
}

impl AddressSource for DhcpSource {
    /// The session's address at `now` while it holds an unexpired lease; otherwise starts the
    /// session at `now` (if it is not a client yet) and returns [`LeaseError::Pending`], or
    /// [`LeaseError::Lost`] when its lease ended.
    fn lease(&mut self, now: Duration, session: SessionId) -> Result<Vip, LeaseError> {
        if session > SessionId::MAX {
            return Err(LeaseError::InvalidSession { session });
        }
        self.start(now, session);
        let c = self
            .clients
            .get(&session)
            .ok_or(LeaseError::Pending { session })?;
        match c.phase.lease() {
            Some(l) if l.expiry > now => {
                Vip::new(l.addr).map_err(|_| LeaseError::Pending { session })
            }
            Some(l) => Err(LeaseError::Lost {
                session,
                addr: l.addr,
            }),
            None => match c.lost {
                Some(addr) => Err(LeaseError::Lost { session, addr }),
                None => Err(LeaseError::Pending { session }),
            },
        }
    }

    /// Ends the session's lease at `now`: RELEASE to the server that granted it (if one is
    /// held), and forgets the session (its address is remembered, to be asked for when it comes
    /// back).
    fn release(&mut self, now: Duration, session: SessionId) -> Option<Vip> {
        self.advance(now);
        let c = self.clients.remove(&session)?;
        self.core.unindex(session, &c);
        let lease = c.phase.lease()?;
        let xid = self.core.new_xid();
        let mut m = self
            .core
            .outgoing(session, MessageKind::Release, xid, self.core.now);
        m.ciaddr = lease.addr;
        m.server = Some(lease.server);
        self.core
            .push(session, Destination::Server(lease.server), &m);
        self.core.remember(session, lease.addr);
        self.core.events.push_back(DhcpEvent::Released {
            session,
            addr: lease.addr,
        });
        Vip::new(lease.addr).ok()
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        self.clients
            .get(&session)
            .and_then(|c| c.phase.lease())
            .filter(|l| l.expiry > self.core.now)
            .and_then(|l| Vip::new(l.addr).ok())
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        let id = self.core.holder_of(addr, None)?;
        self.clients
            .get(&id)
            .and_then(|c| c.phase.lease())
            .is_some_and(|l| l.addr == addr && l.expiry > self.core.now)
            .then_some(id)
    }
}
