//! The plain evaluator of the tables: what each call becomes, written straight from the tables of
//! SPEC §5, §6 and §8 on `std::net`-style values, with no attention to speed.
//!
//! It is the yardstick the [`Rewriter`](crate::Rewriter) is checked against (a property test with
//! more than 100 000 cases per call), and the one a kernel or C layer can be checked against: feed
//! the same tables and addresses to both and compare.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{
    POLICY_IPV6_MAP, POLICY_ISOLATE, PROGRAM_LOOPBACK, PROGRAM_PREFER_LOOPBACK, PROGRAM_VIRTUAL_IP,
    PolicyTable, ProgramEntry, SESSION_NO_CONNECTIVITY, SESSION_NO_LOOPBACK, SessionEntry,
};
use crate::session::SessionId;
use crate::verdict::{Connect, Refusal, Stack};

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
    let lo_missing = l && (t.session.loopback == 0 || t.session.flags & SESSION_NO_LOOPBACK != 0);
    Scope {
        lo: (l && !lo_missing).then(|| Ipv4Addr::from_bits(t.session.loopback)),
        lo_missing,
        v,
        vip: (v && t.session.vip != 0).then(|| Ipv4Addr::from_bits(t.session.vip)),
        no_connectivity: v && t.session.vip == 0 && t.session.flags & SESSION_NO_CONNECTIVITY != 0,
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
    match foreign(t, &s, ip, excluded) {
        Some(Foreign::Session(owner)) => Err(Refusal::OtherSession { owner }),
        Some(Foreign::Nobody) => Err(Refusal::BindUnowned { addr: ip }),
        None => Ok(addr),
    }
}

/// Why isolation refuses an address.
enum Foreign {
    /// It is another session's loopback address.
    Session(SessionId),
    /// It is in 127.0.0.0/8 but belongs to no session (`127.0.0.0`).
    Nobody,
}

/// Whether isolation refuses `ip` to this process (SPEC §12): isolation is on, virtual loopback
/// applies (with or without a loopback address of the session's own), the port is not excluded,
/// and `ip` is a loopback address that is neither the localhost address, nor session 0's
/// `127.0.0.1`, nor the session's own.
fn foreign(t: &Tables<'_>, s: &Scope, ip: Ipv4Addr, excluded: bool) -> Option<Foreign> {
    let l = s.lo.is_some() || s.lo_missing;
    if t.policy.flags & POLICY_ISOLATE == 0 || !l || excluded || !ip.is_loopback() {
        return None;
    }
    if ip == localhost(t) || Some(ip) == s.lo {
        return None;
    }
    match SessionId::from_loopback(ip) {
        None => Some(Foreign::Nobody),
        Some(owner) if owner.get() == 0 => None,
        Some(owner) => Some(Foreign::Session(owner)),
    }
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
    // SPEC §12: `0.0.0.0` as a destination is this host, which Linux and Windows reach at
    // `127.0.0.1`; `::` likewise is `::1`.
    let mut unspecified = false;
    let ip = match dest.ip() {
        IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST || a == Ipv6Addr::UNSPECIFIED => {
            if map_v6(t) && (s.lo.is_some() || s.lo_missing) && !excluded {
                localhost(t)
            } else {
                return Ok(unchanged);
            }
        }
        other => match v4_of(other) {
            Some(ip) if ip.is_unspecified() => {
                unspecified = true;
                Ipv4Addr::LOCALHOST
            }
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
            }
        }
    }
    match foreign(t, &s, ip, excluded) {
        Some(Foreign::Session(owner)) => return Err(Refusal::Isolated { owner }),
        Some(Foreign::Nobody) => return Err(Refusal::Unowned { addr: ip }),
        None => {}
    }
    // (Only where some rule applies: a process out of every scope is never rewritten.)
    if unspecified && new_dest == dest && (s.lo.is_some() || s.lo_missing || s.v) {
        // Sent where the kernel sends it, whatever source is bound first.
        new_dest = put(dest, Ipv4Addr::LOCALHOST);
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
