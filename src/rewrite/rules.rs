//! The decisions, on the compact form of an address: the hot path that the `std::net` methods
//! ([`net`](super::net)) and the raw `sockaddr` methods ([`raw`](super::raw)) share, so the two can
//! never disagree.
//!
//! Each `*_core` decides on an [`Ip`] (the IPv4 address of an IPv4 or IPv4-mapped address as an
//! integer, or which kind of IPv6 address it is) and returns the new IPv4 bits to put in its place,
//! with the [`Rule`] that decided. `#[inline(always)]` lets the compiler drop the rule where only
//! the address is used. Every input read here comes from the rule tables of SPEC §7 (see
//! [`Rewriter`]'s fields).

use core::net::{IpAddr, Ipv4Addr};

use super::{Rewriter, Rule, VipState};
use crate::session::SessionId;
use crate::verdict::{Refusal, Stack};

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

/// A connect decision: the new destination and the source to bind, as IPv4 bits (`None`: unchanged
/// / no source bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectCore {
    pub(crate) dest: Option<u32>,
    pub(crate) source: Option<u32>,
}

/// What a bind decides: the new IPv4 bits (`None`: unchanged), or a refusal.
pub(crate) type BindCore = (Result<Option<u32>, Refusal>, Rule);

impl Rewriter {
    #[inline(always)]
    fn excluded(&self, port: u16) -> bool {
        self.policy.is_port_excluded(port)
    }

    /// The VIP for a bind that takes it, by the rewriter's VIP state.
    #[inline(always)]
    fn vip_bind(&self, rule: Rule) -> BindCore {
        match self.vip {
            VipState::Addr(v) => (Ok(Some(v)), rule),
            VipState::ServerAddress => (Ok(None), Rule::NoVipUseServerAddress),
            VipState::NoConnectivity => (Err(Refusal::NoConnectivity), Rule::NoVipNoConnectivity),
            VipState::Off => (Ok(None), Rule::Unchanged),
        }
    }

    /// With isolation on, what makes the loopback address `bits` one this process may not use
    /// (SPEC §12): it is another session's (not session 0's `127.0.0.1`, not our own), or it
    /// belongs to no session (`127.0.0.0`). `None`: it may use it. Isolation concerns the
    /// processes virtual loopback applies to, with or without a loopback address of their own;
    /// an excluded port is never isolated.
    #[inline(always)]
    fn foreign(&self, bits: u32, port: u16) -> Option<Foreign> {
        if !self.isolate
            || (self.lo == 0 && !self.lo_missing)
            || bits >> 24 != 127
            || self.excluded(port)
        {
            return None;
        }
        match SessionId::from_loopback(Ipv4Addr::from_bits(bits)) {
            None => Some(Foreign::Nobody),
            Some(owner) if owner.get() == 0 || bits == self.lo || bits == self.localhost => None,
            Some(owner) => Some(Foreign::Session(owner)),
        }
    }

    /// Whether `::1` stands for the localhost address here (SPEC §8: the mapping is on and L
    /// applies).
    #[inline(always)]
    fn maps_v6_loopback(&self) -> bool {
        self.map_v6 && (self.lo != 0 || self.lo_missing)
    }

    #[inline(always)]
    pub(crate) fn bind_core(&self, ip: Ip, port: u16, stack: Stack) -> BindCore {
        if !self.active {
            return (Ok(None), self.inactive_rule());
        }
        let bits = match ip {
            Ip::V4(bits) => bits,
            Ip::V6Unspecified if self.vip != VipState::Off => {
                return match stack {
                    Stack::Dual => self.vip_bind(Rule::DualStackUnspecifiedToVip),
                    Stack::Single => (Ok(None), Rule::V6OnlyUnspecified),
                };
            }
            Ip::V6Loopback if self.maps_v6_loopback() => match stack {
                Stack::Dual => self.localhost,
                Stack::Single => return (Ok(None), Rule::V6OnlyIpv6Loopback),
            },
            Ip::V6Loopback => return (Ok(None), Rule::Ipv6Loopback),
            Ip::V6Unspecified | Ip::V6Other => return (Ok(None), Rule::Unchanged),
        };
        if bits == self.localhost && (self.lo != 0 || self.lo_missing) {
            if self.excluded(port) {
                return (Ok(None), Rule::PortExcluded);
            }
            if self.lo_missing {
                return (Err(Refusal::NoLoopback), Rule::NoSessionLoopback);
            }
            let rule = if matches!(ip, Ip::V6Loopback) {
                Rule::Ipv6LoopbackToSessionLoopback
            } else {
                Rule::LocalhostToSessionLoopback
            };
            return (Ok(Some(self.lo)), rule);
        }
        if self.vip != VipState::Off {
            if bits == 0 {
                return self.vip_bind(Rule::UnspecifiedToVip);
            }
            if self.policy.is_server(bits) {
                return self.vip_bind(Rule::ServerAddressToVip);
            }
        }
        match self.foreign(bits, port) {
            Some(Foreign::Session(owner)) => (Err(Refusal::OtherSession { owner }), Rule::Isolated),
            Some(Foreign::Nobody) => (
                Err(Refusal::BindUnowned {
                    addr: Ipv4Addr::from_bits(bits),
                }),
                Rule::IsolatedUnowned,
            ),
            None => (Ok(None), Rule::Unchanged),
        }
    }

    /// With `R` false the rule is not tracked (the hot path); `explain` asks for it with `R` true.
    #[inline(always)]
    pub(crate) fn connect_core<const R: bool>(
        &self,
        ip: Ip,
        port: u16,
    ) -> (Result<ConnectCore, Refusal>, Rule) {
        const UNCHANGED: ConnectCore = ConnectCore {
            dest: None,
            source: None,
        };
        if !self.active {
            return (Ok(UNCHANGED), self.inactive_rule());
        }
        // SPEC §12: a destination of `0.0.0.0` means this host, where Linux and Windows send it to
        // `127.0.0.1` (`::` likewise means `::1`): it is decided as that address. Like `::1` with
        // the IPv6 mapping, it is always written out when it is rewritten.
        let (bits, literal) = match ip {
            Ip::V4(0) => (LOCALHOST_V4, false),
            Ip::V4(bits) => (bits, true),
            Ip::V6Loopback | Ip::V6Unspecified
                if self.maps_v6_loopback() && !self.excluded(port) =>
            {
                (self.localhost, false)
            }
            Ip::V6Loopback => return (Ok(UNCHANGED), Rule::Ipv6Loopback),
            Ip::V6Unspecified | Ip::V6Other => return (Ok(UNCHANGED), Rule::Unchanged),
        };
        if bits >> 24 != 127 {
            // A non-loopback destination: only the source can change (V).
            return match self.vip {
                VipState::Addr(v) => (
                    Ok(ConnectCore {
                        dest: None,
                        source: Some(v),
                    }),
                    Rule::SourceVip,
                ),
                VipState::ServerAddress => (Ok(UNCHANGED), Rule::NoVipUseServerAddress),
                VipState::NoConnectivity => {
                    (Err(Refusal::NoConnectivity), Rule::NoVipNoConnectivity)
                }
                VipState::Off => (Ok(UNCHANGED), Rule::Unchanged),
            };
        }

        // A loopback destination.
        let mut dest = None;
        let mut rule = Rule::Unchanged;
        let mut own_loopback = false;
        if self.lo_missing && bits == self.localhost && !self.excluded(port) {
            return (Err(Refusal::NoLoopback), Rule::NoSessionLoopback);
        }
        if self.lo != 0 {
            if self.excluded(port) {
                if R {
                    rule = Rule::PortExcluded;
                }
            } else if bits == self.localhost || bits == self.lo {
                if bits != self.lo || !literal {
                    dest = Some(self.lo);
                }
                own_loopback = true;
                rule = match ip {
                    Ip::V6Loopback | Ip::V6Unspecified => Rule::Ipv6LoopbackToSessionLoopback,
                    Ip::V4(0) => Rule::UnspecifiedDestinationToSessionLoopback,
                    _ if bits == self.lo => Rule::SourceSessionLoopback,
                    _ => Rule::LocalhostToSessionLoopback,
                };
            } else if R
                && bits != LOCALHOST_V4
                && SessionId::from_loopback(Ipv4Addr::from_bits(bits)).is_some()
            {
                rule = Rule::OtherSessionLoopback;
            }
        }
        match self.foreign(bits, port) {
            Some(Foreign::Session(owner)) => {
                return (Err(Refusal::Isolated { owner }), Rule::Isolated);
            }
            Some(Foreign::Nobody) => {
                let addr = Ipv4Addr::from_bits(bits);
                return (Err(Refusal::Unowned { addr }), Rule::IsolatedUnowned);
            }
            None => {}
        }
        if !literal && dest.is_none() {
            // `0.0.0.0` that no rule rewrote: sent to `127.0.0.1`, as the kernel would, so that a
            // source bound first cannot make it go elsewhere (Linux sends it to the source).
            dest = Some(bits);
            if R && rule == Rule::Unchanged {
                rule = Rule::UnspecifiedDestinationToLocalhost;
            }
        }
        let source = match self.vip {
            VipState::Addr(v) if !self.prefer_loopback => {
                // (Decided on `dest`, not on `rule`, so the rule costs nothing where it is unused.)
                if R && dest.is_none() {
                    rule = Rule::SourceVip;
                }
                Some(v)
            }
            // Without a VIP, loopback traffic stays on the machine and needs none: "no
            // connectivity" cuts the session off the network, not from its own loopback.
            _ => {
                if R && self.prefer_loopback && rule == Rule::Unchanged {
                    rule = Rule::PreferLoopback;
                }
                if own_loopback { Some(self.lo) } else { None }
            }
        };
        (Ok(ConnectCore { dest, source }), rule)
    }

    /// What a reported address becomes. `v6` says the address came in an IPv6 socket address
    /// (with the mapping on, the session loopback is reported there as `::1`).
    #[inline(always)]
    pub(crate) fn reported_core(&self, ip: Ip, port: u16, v6: bool) -> (ReportedCore, Rule) {
        match ip {
            Ip::V4(bits) if bits == self.lo && self.lo != 0 => {
                if self.excluded(port) {
                    (ReportedCore::Unchanged, Rule::PortExcluded)
                } else if v6 && self.map_v6 {
                    (
                        ReportedCore::Ipv6Loopback,
                        Rule::SessionLoopbackToIpv6Loopback,
                    )
                } else {
                    (
                        ReportedCore::V4(self.localhost),
                        Rule::SessionLoopbackToLocalhost,
                    )
                }
            }
            _ if !self.active => (ReportedCore::Unchanged, self.inactive_rule()),
            _ => (ReportedCore::Unchanged, Rule::Unchanged),
        }
    }

    #[inline(always)]
    pub(crate) fn resolved_core(&self, ip: Ip) -> (Option<u32>, Rule) {
        match (self.vip, ip) {
            (VipState::Addr(v), Ip::V4(bits)) if self.policy.is_server(bits) => {
                (Some(v), Rule::ResolvedServerAddressToVip)
            }
            _ if !self.active => (None, self.inactive_rule()),
            _ => (None, Rule::Unchanged),
        }
    }

    #[inline(always)]
    pub(crate) fn reverse_core(&self, ip: Ip) -> (Option<u32>, Rule) {
        if let Ip::V4(bits) = ip {
            if let VipState::Addr(v) = self.vip
                && bits == v
                && self.policy.primary_server != 0
            {
                return (Some(self.policy.primary_server), Rule::ReverseVipToServer);
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
    pub(crate) fn inactive_rule(&self) -> Rule {
        if self.session.is_virtualized() {
            Rule::Unchanged
        } else {
            Rule::SessionNotVirtualized
        }
    }
}

/// `127.0.0.1`, where Linux and Windows send a `0.0.0.0` destination.
const LOCALHOST_V4: u32 = 0x7F00_0001;

/// Why isolation refuses an address (see [`Rewriter::foreign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Foreign {
    /// It is this other session's loopback address.
    Session(SessionId),
    /// It belongs to no session (`127.0.0.0`).
    Nobody,
}

/// What a reported address becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportedCore {
    Unchanged,
    /// These IPv4 bits, in the address's own family (IPv4-mapped for IPv6).
    V4(u32),
    /// `::1` (an IPv6 address only).
    Ipv6Loopback,
}
