//! Virtual IPs leased from a real DHCP server, as Microsoft RD IP Virtualization gets them
//! (feature `dhcp`).
//!
//! [`DhcpSource`] is a **sans-I/O** DHCPv4 client for many sessions at once: it never opens a
//! socket, reads a clock or sleeps. The caller (a hooking layer, a session service, or the
//! `ipvirt_host::dhcp_driver::DhcpDriver` on Linux) feeds it:
//!
//! - [`handle_datagram(now, bytes)`](DhcpSource::handle_datagram): every datagram that arrived on
//!   UDP port 68 of the VIP adapter;
//! - [`handle_timeout(now)`](DhcpSource::handle_timeout): when [`poll_timeout`](DhcpSource::poll_timeout)
//!   said so (calling it early or late is harmless);
//!
//! and drains:
//!
//! - [`poll_transmit()`](DhcpSource::poll_transmit): datagrams to send to UDP port 67, each to
//!   [`Destination::Broadcast`] (`255.255.255.255` out of the adapter) or to one server;
//! - [`poll_event()`](DhcpSource::poll_event): what happened to which lease (bound, renewed, lost…),
//!   for configuring the address on the adapter and persisting the leases.
//!
//! # Time
//!
//! `now` is a [`Duration`] since an epoch the caller chooses, and must be the same epoch for every
//! call. Leases that are persisted ([`DhcpSource::snapshot`]) and restored after a restart need a
//! wall clock: `ipvirt_host::dhcp_driver::DhcpDriver` uses the time since the UNIX epoch. A clock that **jumps forward** is
//! time that passed (leases may expire at once: the safe reading). A clock that **goes back** is
//! not: every deadline the machine holds moves back by the same amount, so a lease keeps the time it
//! had left.
//!
//! # Sessions and client identifiers
//!
//! Each session is a DHCP client of its own, sharing the adapter's hardware address: its client
//! identifier (option 61) is type 0 followed by the policy's prefix and the session id in decimal
//! (`ipvirt-host1-7`), so the server keeps one lease per session, and a session that comes back
//! is the same client and asks for its previous address (option 50 in its DISCOVER).
//!
//! # States
//!
//! A session is in one of the [`DhcpState`]s of RFC 2131 §4.4. `R` is the retransmission delay:
//! [`DhcpConfig::first_retransmit`] (4 s) doubling up to [`DhcpConfig::max_retransmit`] (64 s). A
//! reply "matches" when it is a BOOTREPLY with the session's current transaction id, the adapter's
//! hardware address and the session's client identifier (when the server echoes one); anything
//! else is ignored and counted ([`DhcpStats`]).
//!
//! | state | event | action | next state |
//! |---|---|---|---|
//! | (none) | [`lease`](AddressSource::lease) / [`start`](DhcpSource::start) | DISCOVER, broadcast, with the previous address (option 50) if remembered | `Selecting` |
//! | `Init` | timer | DISCOVER, broadcast, new transaction | `Selecting` |
//! | `Selecting` | OFFER, address not held or requested by another session | REQUEST, broadcast, server id + requested address | `Requesting` |
//! | `Selecting` | OFFER of an address another session holds or requests | ignored (counted as a conflict) | `Selecting` |
//! | `Selecting` | timer | DISCOVER again, after `R` | `Selecting` |
//! | `Requesting` | ACK from the chosen server, address free | event `Bound`; lease starts when the first REQUEST left | `Bound` |
//! | `Requesting`, `Rebooting` | ACK of an address another session holds | DECLINE, broadcast; event `Declined` | `Init` (wait [`DhcpConfig::decline_wait`]) |
//! | `Requesting` | NAK from the chosen server | event `Nak` | `Init` (at once) |
//! | `Requesting` | timer, fewer than [`DhcpConfig::request_attempts`] sent | REQUEST again, after `R` | `Requesting` |
//! | `Requesting`, `Rebooting` | timer, all attempts sent | — | `Init` (at once) |
//! | (restored, expired) | [`restore`](DhcpSource::restore) | REQUEST, broadcast, requested address, no server id (INIT-REBOOT) | `Rebooting` |
//! | `Rebooting` | ACK, address free | event `Bound` | `Bound` |
//! | `Rebooting` | NAK | event `Nak` | `Init` (at once) |
//! | `Rebooting` | timer, attempts left | REQUEST again | `Rebooting` |
//! | `Bound` | T1 | REQUEST unicast to the server, `ciaddr` = the address | `Renewing` |
//! | `Renewing` | ACK | event `Renewed` (new T1, T2, expiry) | `Bound` |
//! | `Renewing` | timer before T2 | REQUEST again after half the time left to T2 (at least [`DhcpConfig::min_renew_retransmit`]) | `Renewing` |
//! | `Renewing` | T2 | REQUEST broadcast | `Rebinding` |
//! | `Rebinding` | ACK (any server) | event `Renewed` | `Bound` |
//! | `Rebinding` | timer before expiry | REQUEST again after half the time left (at least the minimum) | `Rebinding` |
//! | `Renewing`, `Rebinding` | ACK of another address | the new address, if no other session holds it (event `Renewed`); else DECLINE and event `Lost` | `Bound` / `Init` |
//! | `Renewing`, `Rebinding` | NAK | event `Lost` | `Init` (at once, asking for the old address) |
//! | `Bound`, `Renewing`, `Rebinding` | expiry | event `Lost` | `Init` (at once, asking for the old address) |
//! | `Bound`, `Renewing`, `Rebinding` | [`decline`](DhcpSource::decline) (the caller found the address in use) | DECLINE, broadcast; event `Declined` | `Init` (wait) |
//! | any | [`release`](AddressSource::release) | RELEASE unicast to the server if an address is held; event `Released`; the address is remembered | (none) |
//! | any | clock goes back | every deadline moves back by as much | unchanged |
//! | any | a datagram that does not match, or is malformed | ignored, counted | unchanged |
//!
//! # What the rewriter sees
//!
//! [`AddressSource::lease`] returns the session's address while it holds an unexpired lease
//! (`Bound`, `Renewing`, `Rebinding`: renewing does not take the address away). Otherwise it returns
//! [`LeaseError::Pending`] (no address yet: starting, waiting for a server, pool exhausted) or
//! [`LeaseError::Lost`] (the lease expired or was refused); the caller passes no VIP to the
//! rewriter, and the policy's `on_lease_failure` applies, exactly as for an exhausted static pool.
//!
//! # Never two sessions on one address
//!
//! An address is held by at most one session: an OFFER of an address another session holds or is
//! requesting is not taken up, and an ACK of such an address is DECLINEd. Whatever a server answers
//! (a property test drives a hostile one), [`address_of`](AddressSource::address_of) never gives
//! two live sessions the same address.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ipvirt::dhcp::{DhcpConfig, DhcpSource, Destination};
//! use ipvirt::{AddressSource, LeaseError, SessionId};
//!
//! let mut dhcp = DhcpSource::new(DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]));
//! let now = Duration::from_secs(1_000);
//! dhcp.handle_timeout(now);
//! // The first call starts the exchange: no address yet, the policy's on_lease_failure applies.
//! assert_eq!(dhcp.lease(SessionId::new(7)), Err(LeaseError::Pending { session: SessionId::new(7) }));
//! let discover = dhcp.poll_transmit().unwrap();
//! assert_eq!(discover.destination, Destination::Broadcast);
//! assert_eq!(dhcp.poll_timeout(), Some(now + Duration::from_secs(4))); // retransmission
//! ```

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde::{Deserialize, Serialize};

use super::{AddressSource, LeaseError};
use crate::addr::Vip;
use crate::session::SessionId;

/// The settings of a [`DhcpSource`].
///
/// ```
/// use std::time::Duration;
/// use ipvirt::dhcp::DhcpConfig;
///
/// let c = DhcpConfig::new(b"ipvirt-host1-".to_vec(), [2, 0, 0, 0, 0, 1]);
/// assert_eq!(c.first_retransmit, Duration::from_secs(4));
/// assert_eq!(c.client_id(ipvirt::SessionId::new(7)), b"\0ipvirt-host1-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpConfig {
    /// The stable part of every session's client identifier (the policy's
    /// `virtual_ip.dhcp.client_id_prefix`). Two servers on one network need different prefixes.
    pub client_id_prefix: Vec<u8>,
    /// The adapter's hardware (MAC) address, `chaddr` of every message.
    pub hardware_addr: [u8; 6],
    /// The first retransmission delay (RFC 2131: 4 s). dnsmasq pings an address before it offers
    /// it, so much shorter delays retransmit before the first offer can come.
    pub first_retransmit: Duration,
    /// The largest retransmission delay (RFC 2131: 64 s).
    pub max_retransmit: Duration,
    /// How many REQUESTs a session sends in `Requesting` or `Rebooting` before it starts over.
    pub request_attempts: u32,
    /// The shortest delay between two REQUESTs while renewing or rebinding (RFC 2131: 60 s).
    pub min_renew_retransmit: Duration,
    /// How long a session waits after a DECLINE before it asks again (RFC 2131: 10 s).
    pub decline_wait: Duration,
    /// Seeds the transaction ids (any value; the driver mixes in the time and the process id).
    pub seed: u64,
}

impl DhcpConfig {
    /// The RFC 2131 defaults with this client-id prefix and hardware address.
    #[must_use]
    pub fn new(client_id_prefix: Vec<u8>, hardware_addr: [u8; 6]) -> DhcpConfig {
        DhcpConfig {
            client_id_prefix,
            hardware_addr,
            first_retransmit: Duration::from_secs(4),
            max_retransmit: Duration::from_secs(64),
            request_attempts: 4,
            min_renew_retransmit: Duration::from_secs(60),
            decline_wait: Duration::from_secs(10),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The session's client identifier (option 61): type 0, the prefix, the session id in decimal.
    #[must_use]
    pub fn client_id(&self, session: SessionId) -> Vec<u8> {
        let mut id = Vec::with_capacity(self.client_id_prefix.len() + 9);
        id.push(0);
        id.extend_from_slice(&self.client_id_prefix);
        id.extend_from_slice(alloc::format!("{session}").as_bytes());
        id
    }
}

/// Where a [`Transmit`] goes (always UDP port 67).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `255.255.255.255`, out of the VIP adapter.
    Broadcast,
    /// One server, unicast.
    Server(Ipv4Addr),
}

/// A datagram for the caller to send from UDP port 68 to port 67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The session it is for.
    pub session: SessionId,
    /// The message type (DISCOVER, REQUEST, DECLINE, RELEASE).
    pub kind: MessageKind,
    /// Where it goes.
    pub destination: Destination,
    /// The encoded DHCP message.
    pub payload: Vec<u8>,
}

/// The DHCP message types the machine sends or reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPOFFER.
    Offer,
    /// DHCPREQUEST.
    Request,
    /// DHCPDECLINE.
    Decline,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
    /// DHCPRELEASE.
    Release,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Discover => "DISCOVER",
            MessageKind::Offer => "OFFER",
            MessageKind::Request => "REQUEST",
            MessageKind::Decline => "DECLINE",
            MessageKind::Ack => "ACK",
            MessageKind::Nak => "NAK",
            MessageKind::Release => "RELEASE",
        })
    }
}

/// A session's state (RFC 2131 §4.4; see the [module](self) for the transition table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhcpState {
    /// Waiting to (re)start: after a DECLINE, for [`DhcpConfig::decline_wait`].
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offered address sent, waiting for the ACK.
    Requesting,
    /// REQUEST for a remembered address sent (INIT-REBOOT), waiting for the ACK.
    Rebooting,
    /// Holding a lease.
    Bound,
    /// Past T1: renewing with the server that granted the lease.
    Renewing,
    /// Past T2: asking any server to extend the lease.
    Rebinding,
}

impl fmt::Display for DhcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhcpState::Init => "init",
            DhcpState::Selecting => "selecting",
            DhcpState::Requesting => "requesting",
            DhcpState::Rebooting => "rebooting",
            DhcpState::Bound => "bound",
            DhcpState::Renewing => "renewing",
            DhcpState::Rebinding => "rebinding",
        })
    }
}

/// A lease a server granted: the address, the server, and the deadlines (on the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpLease {
    /// The address.
    pub addr: Ipv4Addr,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// When the lease started (when its REQUEST left).
    pub acquired: Duration,
    /// When renewal starts (T1).
    pub t1: Duration,
    /// When rebinding starts (T2).
    pub t2: Duration,
    /// When the lease ends.
    pub expiry: Duration,
}

/// What happened to a session's lease (from [`DhcpSource::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhcpEvent {
    /// The session got an address (configure it on the adapter).
    Bound {
        /// The session.
        session: SessionId,
        /// The lease.
        lease: DhcpLease,
    },
    /// The session's lease was extended (or moved to a new address).
    Renewed {
        /// The session.
        session: SessionId,
        /// The address held before.
        previous: Ipv4Addr,
        /// The lease now.
        lease: DhcpLease,
    },
    /// The session lost its address (expired, or the server refused to extend it).
    Lost {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
    },
    /// A server refused a REQUEST of a session that held no address.
    Nak {
        /// The session.
        session: SessionId,
    },
    /// The session declined an address (another session holds it, or the caller found it in use).
    Declined {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
        /// Whether the session held it until now (so it must be taken off the adapter).
        was_held: bool,
    },
    /// The session released its address (logoff).
    Released {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
    },
}

/// Why [`DhcpSource::handle_datagram`] did not use a datagram. Nothing changed; the datagram is
/// counted in [`DhcpStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The bytes are not a DHCP message.
    #[error("malformed DHCP datagram ({len} bytes): {reason}")]
    Malformed {
        /// The datagram's length.
        len: usize,
        /// What is wrong.
        reason: String,
    },
    /// A BOOTREQUEST (another client's message), or a message type a client never receives.
    #[error("not a DHCP reply for a client: {what}")]
    NotAReply {
        /// The opcode or message type.
        what: String,
    },
    /// No session waits for this transaction id (late, duplicate, or another client's).
    #[error("no session waits for transaction {xid:#010x}")]
    UnknownTransaction {
        /// The transaction id.
        xid: u32,
    },
    /// The transaction id matches but the hardware address or client identifier does not.
    #[error(
        "transaction {xid:#010x} matches session {session}, but the reply is for another client"
    )]
    OtherClient {
        /// The transaction id.
        xid: u32,
        /// The session with that transaction id.
        session: SessionId,
    },
    /// The session is not in a state that takes this message type (an OFFER while requesting, an
    /// ACK from another server than the chosen one…).
    #[error("session {session} ({state}) does not take this {kind}")]
    Unexpected {
        /// The session.
        session: SessionId,
        /// Its state.
        state: DhcpState,
        /// The message type.
        kind: MessageKind,
    },
    /// The reply gives an address that can never be a VIP, or an ACK without a lease time.
    #[error("session {session}: unusable {kind}: {reason}")]
    Unusable {
        /// The session.
        session: SessionId,
        /// The message type.
        kind: MessageKind,
        /// What is wrong.
        reason: String,
    },
}

/// Counters of what the machine ignored or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DhcpStats {
    /// Datagrams that were not DHCP messages.
    pub malformed: u64,
    /// Well-formed datagrams that were not for a waiting session, or not in the right state.
    pub ignored: u64,
    /// Offers and acks of an address another session holds or requests.
    pub conflicts: u64,
}

/// The leases of a [`DhcpSource`], for persisting them ([`DhcpSource::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSnapshot {
    /// The format's version ([`DhcpSnapshot::VERSION`]).
    pub version: u32,
    /// The sessions that hold a lease.
    pub leases: Vec<(SessionId, DhcpLease)>,
    /// Released sessions and the address each held last, oldest first.
    pub remembered: Vec<(SessionId, Ipv4Addr)>,
}

impl DhcpSnapshot {
    /// The format version this crate writes.
    pub const VERSION: u32 = 1;
}

/// An error restoring a [`DhcpSnapshot`]. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhcpRestoreError {
    /// A newer format.
    #[error("the DHCP lease snapshot has format version {version}; this ipvirt reads version 1")]
    UnsupportedVersion {
        /// Its version.
        version: u32,
    },
    /// Two leases of one address, or two of one session.
    #[error("the DHCP lease snapshot names {what} twice")]
    Duplicate {
        /// The session or address.
        what: String,
    },
    /// A lease whose deadlines are out of order or whose address cannot be a VIP.
    #[error("the DHCP lease snapshot's lease of {addr} for session {session} is invalid: {reason}")]
    Invalid {
        /// The session.
        session: SessionId,
        /// The address.
        addr: Ipv4Addr,
        /// What is wrong.
        reason: &'static str,
    },
}

/// How many released sessions' previous addresses are remembered.
const REMEMBERED: usize = 65_536;

#[derive(Debug, Clone)]
struct Session {
    state: DhcpState,
    xid: u32,
    /// Messages sent in this exchange.
    attempts: u32,
    /// The next deadline (retransmission, T1, T2, expiry, end of a wait).
    next: Duration,
    /// When this exchange started (`secs`).
    started: Duration,
    /// When the first REQUEST of this exchange left (the lease's start).
    requested_at: Duration,
    /// The offer taken up: (address, server).
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The lease held (`Bound`, `Renewing`, `Rebinding`).
    lease: Option<DhcpLease>,
    /// The address to ask for (previous one).
    want: Option<Ipv4Addr>,
    /// The address lost last, while no new one is held.
    lost: Option<Ipv4Addr>,
}

/// A sans-I/O DHCP client for every session's VIP: see the [module](self).
#[derive(Debug, Clone)]
pub struct DhcpSource {
    config: DhcpConfig,
    sessions: BTreeMap<SessionId, Session>,
    remembered: BTreeMap<SessionId, Ipv4Addr>,
    remembered_order: VecDeque<SessionId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhcpEvent>,
    stats: DhcpStats,
    now: Duration,
    rng: u64,
}

impl DhcpSource {
    /// A machine with no sessions.
    #[must_use]
    pub fn new(config: DhcpConfig) -> DhcpSource {
        let rng = config.seed | 1;
        DhcpSource {
            config,
            sessions: BTreeMap::new(),
            remembered: BTreeMap::new(),
            remembered_order: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: DhcpStats::default(),
            now: Duration::ZERO,
            rng,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The counters of ignored and refused datagrams.
    #[must_use]
    pub fn stats(&self) -> DhcpStats {
        self.stats
    }

    /// The latest time the machine was given.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The session's state, `None` when it is not a client (never started, or released).
    #[must_use]
    pub fn state(&self, session: SessionId) -> Option<DhcpState> {
        self.sessions.get(&session).map(|s| s.state)
    }

    /// The session's lease, while it holds one.
    #[must_use]
    pub fn lease_of(&self, session: SessionId) -> Option<DhcpLease> {
        self.sessions.get(&session).and_then(|s| s.lease)
    }

    /// Every session that holds a lease, with it.
    #[must_use]
    pub fn leases(&self) -> Vec<(SessionId, DhcpLease)> {
        self.sessions
            .iter()
            .filter_map(|(id, s)| s.lease.map(|l| (*id, l)))
            .collect()
    }

    /// The sessions that are clients (holding a lease or trying to get one).
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened to a lease.
    pub fn poll_event(&mut self) -> Option<DhcpEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next (`None`: no session).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.sessions.values().map(|s| s.next).min()
    }

    /// Makes `session` a client: it starts asking for an address (its previous one, if
    /// remembered). Does nothing if it already is one.
    pub fn start(&mut self, now: Duration, session: SessionId) {
        self.advance(now);
        if self.sessions.contains_key(&session) {
            return;
        }
        let want = self.remembered.get(&session).copied();
        self.sessions.insert(
            session,
            Session {
                state: DhcpState::Init,
                xid: 0,
                attempts: 0,
                next: now,
                started: now,
                requested_at: now,
                offer: None,
                lease: None,
                want,
                lost: None,
            },
        );
        self.discover(session);
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance(now);
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.on_timer(id);
        }
    }

    /// Takes in a datagram that arrived on UDP port 68.
    ///
    /// # Errors
    ///
    /// [`DatagramError`] when the datagram was not used (malformed, not a reply, no session waits
    /// for it, another client's, unexpected in the session's state, unusable). The machine is
    /// unchanged and the datagram is counted; a caller usually just logs it.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        bytes: &[u8],
    ) -> Result<SessionId, DatagramError> {
        self.advance(now);
        let result = self.datagram(bytes);
        match &result {
            Err(DatagramError::Malformed { .. }) => self.stats.malformed += 1,
            Err(_) => self.stats.ignored += 1,
            Ok(_) => {}
        }
        result
    }

    /// The caller found `session`'s address in use (e.g. by an ARP probe): DECLINE it and start
    /// over. Returns the address declined, `None` if the session held none.
    pub fn decline(&mut self, now: Duration, session: SessionId) -> Option<Ipv4Addr> {
        self.advance(now);
        let lease = self.sessions.get(&session).and_then(|s| s.lease)?;
        self.send_decline(session, lease.addr, lease.server, true);
        Some(lease.addr)
    }

    /// The leases and remembered addresses, for persisting them.
    #[must_use]
    pub fn snapshot(&self) -> DhcpSnapshot {
        DhcpSnapshot {
            version: DhcpSnapshot::VERSION,
            leases: self.leases(),
            remembered: self
                .remembered_order
                .iter()
                .filter_map(|s| self.remembered.get(s).map(|a| (*s, *a)))
                .collect(),
        }
    }

    /// Takes back the leases of a snapshot (after a restart): an unexpired lease is held again and
    /// renewed at its T1 (at once if T1 has passed), so a restarted caller renews rather than
    /// starting over; an expired one is asked for again with an INIT-REBOOT REQUEST. Sessions
    /// already known are left as they are.
    ///
    /// # Errors
    ///
    /// [`DhcpRestoreError`] for a newer format, duplicates, or an invalid lease; nothing changes.
    pub fn restore(
        &mut self,
        now: Duration,
        snapshot: &DhcpSnapshot,
    ) -> Result<(), DhcpRestoreError> {
        if snapshot.version > DhcpSnapshot::VERSION {
            return Err(DhcpRestoreError::UnsupportedVersion {
                version: snapshot.version,
            });
        }
        let mut seen_s = alloc::collections::BTreeSet::new();
        let mut seen_a = alloc::collections::BTreeSet::new();
        for (s, l) in &snapshot.leases {
            if !seen_s.insert(*s) {
                return Err(DhcpRestoreError::Duplicate {
                    what: alloc::format!("session {s}"),
                });
            }
            if !seen_a.insert(l.addr) {
                return Err(DhcpRestoreError::Duplicate {
                    what: alloc::format!("address {}", l.addr),
                });
            }
            let invalid = |reason| DhcpRestoreError::Invalid {
                session: *s,
                addr: l.addr,
                reason,
            };
            if Vip::new(l.addr).is_err() {
                return Err(invalid("the address can never be a VIP"));
            }
            if !(l.acquired <= l.t1 && l.t1 <= l.t2 && l.t2 <= l.expiry) {
                return Err(invalid(
                    "its times are not in the order acquired <= t1 <= t2 <= expiry",
                ));
            }
        }
        self.advance(now);
        for &(s, a) in &snapshot.remembered {
            self.remember(s, a);
        }
        for &(session, l) in &snapshot.leases {
            if self.sessions.contains_key(&session) || self.holder_of(l.addr, None).is_some() {
                continue;
            }
            // A lease from the future (the clock went back while we were down) keeps its length.
            let shift = l.acquired.saturating_sub(now);
            let lease = DhcpLease {
                acquired: l.acquired - shift,
                t1: l.t1 - shift,
                t2: l.t2 - shift,
                expiry: l.expiry - shift,
                ..l
            };
            let mut s = Session {
                state: DhcpState::Bound,
                xid: self.new_xid(),
                attempts: 0,
                next: lease.t1,
                started: now,
                requested_at: now,
                offer: None,
                lease: Some(lease),
                want: Some(lease.addr),
                lost: None,
            };
            if lease.expiry <= now {
                s.lease = None;
                s.state = DhcpState::Rebooting;
                s.next = now;
                self.sessions.insert(session, s);
                self.send_request(session);
            } else {
                self.sessions.insert(session, s);
                if lease.t1 <= now {
                    self.on_timer(session);
                }
            }
        }
        Ok(())
    }

    // ----- internals -----

    /// Moves the clock to `now`; a clock that went back moves every deadline back as much.
    fn advance(&mut self, now: Duration) {
        if now < self.now {
            let back = self.now - now;
            for s in self.sessions.values_mut() {
                s.next = s.next.saturating_sub(back);
                s.started = s.started.saturating_sub(back);
                s.requested_at = s.requested_at.saturating_sub(back);
                if let Some(l) = &mut s.lease {
                    l.acquired = l.acquired.saturating_sub(back);
                    l.t1 = l.t1.saturating_sub(back);
                    l.t2 = l.t2.saturating_sub(back);
                    l.expiry = l.expiry.saturating_sub(back);
                }
            }
        }
        self.now = now;
    }

    fn new_xid(&mut self) -> u32 {
        loop {
            // xorshift64*
            let mut x = self.rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng = x;
            let xid = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
            if xid != 0 && !self.sessions.values().any(|s| s.xid == xid) {
                return xid;
            }
        }
    }

    fn remember(&mut self, session: SessionId, addr: Ipv4Addr) {
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

    /// The session other than `except` that holds `addr` (or, with offers, is requesting it).
    fn holder_of(&self, addr: Ipv4Addr, except: Option<SessionId>) -> Option<SessionId> {
        self.sessions
            .iter()
            .find(|(id, s)| {
                Some(**id) != except
                    && (s.lease.is_some_and(|l| l.addr == addr)
                        || (s.state == DhcpState::Requesting
                            && s.offer.is_some_and(|(a, _)| a == addr))
                        || (s.state == DhcpState::Rebooting && s.want == Some(addr)))
            })
            .map(|(id, _)| *id)
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

    fn message(
        &self,
        session: SessionId,
        xid: u32,
        kind: MessageType,
        started: Duration,
    ) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(xid)
            .set_chaddr(&self.config.hardware_addr)
            .set_secs(
                u16::try_from(self.now.saturating_sub(started).as_secs()).unwrap_or(u16::MAX),
            );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(self.config.client_id(session)));
        m
    }

    fn push(
        &mut self,
        session: SessionId,
        kind: MessageKind,
        destination: Destination,
        m: &Message,
    ) {
        let mut payload = Vec::with_capacity(300);
        // Encoding into a Vec only fails on values a message built here never has.
        if m.encode(&mut Encoder::new(&mut payload)).is_ok() {
            self.transmits.push_back(Transmit {
                session,
                kind,
                destination,
                payload,
            });
        }
    }

    /// Starts (or restarts) a DISCOVER exchange: `Selecting`.
    fn discover(&mut self, id: SessionId) {
        let xid = self.new_xid();
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.state = DhcpState::Selecting;
        s.xid = xid;
        s.attempts = 0;
        s.started = now;
        s.offer = None;
        s.lease = None;
        self.send_discover(id);
    }

    fn send_discover(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let mut m = self.message(id, s.xid, MessageType::Discover, s.started);
        m.set_flags(Flags::default().set_broadcast());
        if let Some(want) = s.want {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(want));
        }
        m.opts_mut()
            .insert(DhcpOption::ParameterRequestList(alloc::vec![
                OptionCode::SubnetMask,
                OptionCode::AddressLeaseTime,
                OptionCode::Renewal,
                OptionCode::Rebinding,
            ]));
        let attempts = s.attempts + 1;
        self.push(id, MessageKind::Discover, Destination::Broadcast, &m);
        let next = self.now + self.backoff(attempts);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.attempts = attempts;
            s.next = next;
        }
    }

    /// Sends the REQUEST of the session's state (`Requesting`, `Rebooting`, `Renewing`,
    /// `Rebinding`) and sets the next deadline.
    fn send_request(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let mut m = self.message(id, s.xid, MessageType::Request, s.started);
        let destination = match s.state {
            DhcpState::Requesting => {
                let Some((addr, server)) = s.offer else {
                    return;
                };
                m.set_flags(Flags::default().set_broadcast());
                m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
                m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
                Destination::Broadcast
            }
            DhcpState::Rebooting => {
                let Some(addr) = s.want else {
                    return;
                };
                m.set_flags(Flags::default().set_broadcast());
                m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
                Destination::Broadcast
            }
            DhcpState::Renewing | DhcpState::Rebinding => {
                let Some(l) = s.lease else {
                    return;
                };
                m.set_ciaddr(l.addr);
                if s.state == DhcpState::Renewing {
                    Destination::Server(l.server)
                } else {
                    Destination::Broadcast
                }
            }
            _ => return,
        };
        let now = self.now;
        let attempts = s.attempts + 1;
        let first = s.attempts == 0;
        let next = match (s.state, s.lease) {
            (DhcpState::Renewing, Some(l)) => {
                now + (l.t2.saturating_sub(now) / 2).max(self.config.min_renew_retransmit)
            }
            (DhcpState::Rebinding, Some(l)) => {
                now + (l.expiry.saturating_sub(now) / 2).max(self.config.min_renew_retransmit)
            }
            _ => now + self.backoff(attempts),
        };
        self.push(id, MessageKind::Request, destination, &m);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.attempts = attempts;
            if first {
                s.requested_at = now;
            }
            s.next = match (s.state, s.lease) {
                (DhcpState::Renewing, Some(l)) => next.min(l.t2),
                (DhcpState::Rebinding, Some(l)) => next.min(l.expiry),
                _ => next,
            };
        }
    }

    fn send_decline(&mut self, id: SessionId, addr: Ipv4Addr, server: Ipv4Addr, was_held: bool) {
        let xid = self.new_xid();
        let now = self.now;
        let wait = self.config.decline_wait;
        let mut m = self.message(id, xid, MessageType::Decline, now);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        self.push(id, MessageKind::Decline, Destination::Broadcast, &m);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.state = DhcpState::Init;
            s.lease = None;
            s.offer = None;
            s.attempts = 0;
            s.xid = xid;
            // Do not ask for the declined address again.
            s.want = None;
            s.next = now + wait;
        }
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

    /// The lease is gone (expiry or NAK while held): back to `Init`, asking for it again after an
    /// expiry (`ask_again`), not after a NAK.
    fn lose(&mut self, id: SessionId, ask_again: bool) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(l) = s.lease.take() {
            s.lost = Some(l.addr);
            s.want = ask_again.then_some(l.addr);
            self.events.push_back(DhcpEvent::Lost {
                session: id,
                addr: l.addr,
            });
        }
        self.discover(id);
    }

    fn on_timer(&mut self, id: SessionId) {
        let now = self.now;
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        if s.next > now {
            return;
        }
        match s.state {
            DhcpState::Init => self.discover(id),
            DhcpState::Selecting => self.send_discover(id),
            DhcpState::Requesting | DhcpState::Rebooting => {
                if s.attempts >= self.config.request_attempts.max(1) {
                    self.discover(id);
                } else {
                    self.send_request(id);
                }
            }
            DhcpState::Bound | DhcpState::Renewing | DhcpState::Rebinding => {
                let Some(l) = s.lease else {
                    self.discover(id);
                    return;
                };
                let state = s.state;
                if now >= l.expiry {
                    self.lose(id, true);
                } else if now >= l.t2 {
                    if state != DhcpState::Rebinding {
                        self.enter(id, DhcpState::Rebinding);
                    }
                    self.send_request(id);
                } else if now >= l.t1 {
                    if state == DhcpState::Bound {
                        self.enter(id, DhcpState::Renewing);
                    }
                    self.send_request(id);
                } else if let Some(s) = self.sessions.get_mut(&id) {
                    // The clock went back past T1: wait for it again.
                    s.state = DhcpState::Bound;
                    s.next = l.t1;
                }
            }
        }
    }

    /// Enters `Renewing` or `Rebinding`: a new transaction.
    fn enter(&mut self, id: SessionId, state: DhcpState) {
        let xid = self.new_xid();
        let now = self.now;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.state = state;
            s.attempts = 0;
            s.xid = xid;
            s.started = now;
        }
    }

    fn datagram(&mut self, bytes: &[u8]) -> Result<SessionId, DatagramError> {
        let malformed = |reason: String| DatagramError::Malformed {
            len: bytes.len(),
            reason,
        };
        let clean = sanitize(bytes).map_err(&malformed)?;
        let m = Message::decode(&mut Decoder::new(&clean))
            .map_err(|e| malformed(alloc::format!("{e}")))?;
        if m.opcode() != Opcode::BootReply {
            return Err(DatagramError::NotAReply {
                what: alloc::format!("{:?}", m.opcode()),
            });
        }
        let kind = match m.opts().get(OptionCode::MessageType) {
            Some(DhcpOption::MessageType(MessageType::Offer)) => MessageKind::Offer,
            Some(DhcpOption::MessageType(MessageType::Ack)) => MessageKind::Ack,
            Some(DhcpOption::MessageType(MessageType::Nak)) => MessageKind::Nak,
            Some(DhcpOption::MessageType(other)) => {
                return Err(DatagramError::NotAReply {
                    what: alloc::format!("{other:?}"),
                });
            }
            _ => return Err(malformed("no message type (option 53)".into())),
        };
        let xid = m.xid();
        let (&id, s) = self
            .sessions
            .iter()
            .find(|(_, s)| s.xid == xid)
            .ok_or(DatagramError::UnknownTransaction { xid })?;
        let cid_ok = match m.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(c)) => *c == self.config.client_id(id),
            _ => true,
        };
        if m.chaddr().get(..6) != Some(&self.config.hardware_addr[..]) || !cid_ok {
            return Err(DatagramError::OtherClient { xid, session: id });
        }
        let server = match m.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
            _ => None,
        };
        let state = s.state;
        let unexpected = DatagramError::Unexpected {
            session: id,
            state,
            kind,
        };
        let unusable = |reason: String| DatagramError::Unusable {
            session: id,
            kind,
            reason,
        };
        match (state, kind) {
            (DhcpState::Selecting, MessageKind::Offer) => {
                let addr = m.yiaddr();
                Vip::new(addr).map_err(|e| unusable(alloc::format!("{e}")))?;
                let server =
                    server.ok_or_else(|| unusable("no server identifier (option 54)".into()))?;
                if self.holder_of(addr, Some(id)).is_some() {
                    self.stats.conflicts += 1;
                    return Err(unusable(alloc::format!(
                        "{addr} is held or requested by another session"
                    )));
                }
                let xid2 = s.xid;
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.state = DhcpState::Requesting;
                    s.offer = Some((addr, server));
                    s.attempts = 0;
                    s.xid = xid2;
                }
                self.send_request(id);
                Ok(id)
            }
            (DhcpState::Requesting, MessageKind::Ack | MessageKind::Nak)
                if server.is_some() && server != s.offer.map(|o| o.1) =>
            {
                Err(unexpected)
            }
            (DhcpState::Requesting | DhcpState::Rebooting, MessageKind::Nak) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    // A refused remembered address is not asked for again.
                    s.want = None;
                }
                self.events.push_back(DhcpEvent::Nak { session: id });
                self.discover(id);
                Ok(id)
            }
            (DhcpState::Renewing | DhcpState::Rebinding, MessageKind::Nak) => {
                // The server refused the address: not asked for again.
                self.lose(id, false);
                Ok(id)
            }
            (
                DhcpState::Requesting
                | DhcpState::Rebooting
                | DhcpState::Renewing
                | DhcpState::Rebinding,
                MessageKind::Ack,
            ) => {
                let addr = m.yiaddr();
                Vip::new(addr).map_err(|e| unusable(alloc::format!("{e}")))?;
                let secs = match m.opts().get(OptionCode::AddressLeaseTime) {
                    Some(DhcpOption::AddressLeaseTime(t)) if *t > 0 => *t,
                    _ => return Err(unusable("no lease time (option 51)".into())),
                };
                let server = server
                    .or(s.offer.map(|o| o.1))
                    .or(s.lease.map(|l| l.server))
                    .ok_or_else(|| unusable("no server identifier (option 54)".into()))?;
                let start = s.requested_at;
                let previous = s.lease;
                let lease = lease_times(addr, server, start, secs, &m);
                if self.holder_of(addr, Some(id)).is_some() {
                    self.stats.conflicts += 1;
                    if let Some(p) = previous {
                        // Moved onto another session's address: the old one is gone too.
                        if let Some(s) = self.sessions.get_mut(&id) {
                            s.lease = None;
                            s.lost = Some(p.addr);
                        }
                        self.events.push_back(DhcpEvent::Lost {
                            session: id,
                            addr: p.addr,
                        });
                    }
                    self.send_decline(id, addr, server, false);
                    return Ok(id);
                }
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.state = DhcpState::Bound;
                    s.lease = Some(lease);
                    s.offer = None;
                    s.want = Some(addr);
                    s.lost = None;
                    s.attempts = 0;
                    s.next = lease.t1;
                }
                self.events.push_back(match previous {
                    Some(p) => DhcpEvent::Renewed {
                        session: id,
                        previous: p.addr,
                        lease,
                    },
                    None => DhcpEvent::Bound { session: id, lease },
                });
                // A lease so short that T1 has passed already.
                self.on_timer(id);
                Ok(id)
            }
            _ => Err(unexpected),
        }
    }
}

/// The fixed part of a DHCP message: 236 bytes of BOOTP header, then the magic cookie.
const HEADER: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Checks a datagram's framing and keeps only the options the machine reads (with the lengths
/// RFC 2132 gives them), so that the decoder only ever sees well-formed input: `dhcproto` 0.15
/// panics on some malformed options (a hardware-address length over 16, or in debug builds a
/// fixed-size option of another length), and a client has no use for the others.
fn sanitize(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (head, rest) = bytes
        .split_at_checked(HEADER + MAGIC.len())
        .ok_or_else(|| String::from("shorter than the 240-byte header"))?;
    if head.get(HEADER..) != Some(&MAGIC[..]) {
        return Err("no DHCP magic cookie".into());
    }
    if head.get(2).is_none_or(|&hlen| hlen > 16) {
        return Err("hardware address length over 16".into());
    }
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(head);
    let mut i = 0;
    // RFC 2131 wants an end option; a message without one is still readable.
    while let Some(&code) = rest.get(i) {
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(
            *rest
                .get(i + 1)
                .ok_or_else(|| alloc::format!("option {code} has no length"))?,
        );
        let value = rest
            .get(i + 2..i + 2 + len)
            .ok_or_else(|| alloc::format!("option {code} runs past the end"))?;
        let want = match code {
            53 => Some(1),
            50 | 51 | 54 | 58 | 59 => Some(4),
            61 => None,
            // Not read by a client: dropped.
            _ => {
                i += 2 + len;
                continue;
            }
        };
        if want.is_some_and(|w| w != len) || len == 0 {
            return Err(alloc::format!("option {code} has length {len}"));
        }
        out.push(code);
        out.push(u8::try_from(len).unwrap_or(u8::MAX));
        out.extend_from_slice(value);
        i += 2 + len;
    }
    out.push(255);
    Ok(out)
}

/// The lease's deadlines: T1 and T2 from options 58 and 59 when they are in order, else RFC 2131's
/// defaults (half and seven eighths of the lease).
fn lease_times(
    addr: Ipv4Addr,
    server: Ipv4Addr,
    start: Duration,
    secs: u32,
    m: &Message,
) -> DhcpLease {
    let length = Duration::from_secs(u64::from(secs));
    let opt = |code| match m.opts().get(code) {
        Some(DhcpOption::Renewal(t) | DhcpOption::Rebinding(t)) => {
            Some(Duration::from_secs(u64::from(*t)))
        }
        _ => None,
    };
    let mut t1 = opt(OptionCode::Renewal).unwrap_or(length / 2);
    let mut t2 = opt(OptionCode::Rebinding).unwrap_or(length * 7 / 8);
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
    /// The session's address while it holds an unexpired lease; otherwise starts the session (if
    /// it is not a client yet, at the latest time the machine was given) and returns
    /// [`LeaseError::Pending`], or [`LeaseError::Lost`] when its lease ended.
    fn lease(&mut self, session: SessionId) -> Result<Vip, LeaseError> {
        if session > SessionId::MAX {
            return Err(LeaseError::InvalidSession { session });
        }
        if !self.sessions.contains_key(&session) {
            self.start(self.now, session);
        }
        let s = self
            .sessions
            .get(&session)
            .ok_or(LeaseError::Pending { session })?;
        match s.lease {
            Some(l) if l.expiry > self.now => {
                Vip::new(l.addr).map_err(|_| LeaseError::Pending { session })
            }
            Some(l) => Err(LeaseError::Lost {
                session,
                addr: l.addr,
            }),
            None => match s.lost {
                Some(addr) => Err(LeaseError::Lost { session, addr }),
                None => Err(LeaseError::Pending { session }),
            },
        }
    }

    /// Ends the session's lease: RELEASE to the server that granted it (if one is held), and
    /// forgets the session (its address is remembered, to be asked for when it comes back).
    fn release(&mut self, session: SessionId) -> Option<Vip> {
        let s = self.sessions.remove(&session)?;
        let lease = s.lease?;
        let xid = self.new_xid();
        let mut m = self.message(session, xid, MessageType::Release, self.now);
        m.set_ciaddr(lease.addr);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(lease.server));
        self.push(
            session,
            MessageKind::Release,
            Destination::Server(lease.server),
            &m,
        );
        self.remember(session, lease.addr);
        self.events.push_back(DhcpEvent::Released {
            session,
            addr: lease.addr,
        });
        Vip::new(lease.addr).ok()
    }

    fn address_of(&self, session: SessionId) -> Option<Vip> {
        self.sessions
            .get(&session)
            .and_then(|s| s.lease)
            .filter(|l| l.expiry > self.now)
            .and_then(|l| Vip::new(l.addr).ok())
    }

    fn session_of(&self, addr: Ipv4Addr) -> Option<SessionId> {
        self.sessions
            .iter()
            .find(|(_, s)| {
                s.lease
                    .is_some_and(|l| l.addr == addr && l.expiry > self.now)
            })
            .map(|(id, _)| *id)
    }
}
