//! Facts about the server the policy is compiled for: its own addresses.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The server's own addresses: the "server address" of SPEC §5 (a bind to one of them becomes a bind
/// to the VIP; a name lookup that returns one returns the VIP instead).
///
/// The first IPv4 address given is the *primary* one: a reverse lookup of a VIP looks it up instead.
/// Loopback and unspecified addresses are ignored (they are never "the server's address").
///
/// # Examples
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use ipvirt::Host;
///
/// let host = Host::new([IpAddr::from([192, 0, 2, 10]), IpAddr::from([127, 0, 0, 1])]);
/// assert!(host.contains(IpAddr::from([192, 0, 2, 10])));
/// assert!(!host.contains(IpAddr::from([127, 0, 0, 1])));
/// assert_eq!(host.primary_v4(), Some(Ipv4Addr::new(192, 0, 2, 10)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    primary_v4: Option<Ipv4Addr>,
    v4: Vec<Ipv4Addr>,
    /// `v4` as integers, sorted: what the hot path searches.
    v4_bits: Vec<u32>,
    v6: Vec<Ipv6Addr>,
}

impl Host {
    /// A host with the given addresses (any order, duplicates allowed).
    #[must_use]
    pub fn new<I: IntoIterator<Item = IpAddr>>(addrs: I) -> Host {
        let mut host = Host::default();
        for a in addrs {
            if a.is_loopback() || a.is_unspecified() {
                continue;
            }
            match a {
                IpAddr::V4(v4) => {
                    host.primary_v4.get_or_insert(v4);
                    host.v4.push(v4);
                }
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => {
                        host.primary_v4.get_or_insert(v4);
                        host.v4.push(v4);
                    }
                    None => host.v6.push(v6),
                },
            }
        }
        host.v4.sort_unstable();
        host.v4.dedup();
        host.v6.sort_unstable();
        host.v6.dedup();
        host.sync_bits();
        host
    }

    fn sync_bits(&mut self) {
        self.v4_bits = self.v4.iter().map(|a| a.to_bits()).collect();
        self.v4_bits.sort_unstable();
    }

    /// The IPv4 addresses as sorted integers, for the rewriter's hot path.
    #[inline]
    pub(crate) fn v4_bits(&self) -> &[u32] {
        &self.v4_bits
    }

    /// Whether `addr` is one of the server's own addresses (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address). A binary search: no allocation.
    #[inline]
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => self.contains_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.contains_v4(v4),
                None => self.v6.binary_search(&v6).is_ok(),
            },
        }
    }

    /// Whether `addr` is one of the server's own IPv4 addresses.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::Host;
    ///
    /// let host = Host::new([Ipv4Addr::new(192, 0, 2, 10).into()]);
    /// assert!(host.contains_v4(Ipv4Addr::new(192, 0, 2, 10)));
    /// ```
    #[inline]
    #[must_use]
    pub fn contains_v4(&self, addr: Ipv4Addr) -> bool {
        contains_bits(&self.v4_bits, addr.to_bits())
    }

    /// The first IPv4 address given, if any.
    #[inline]
    #[must_use]
    pub fn primary_v4(&self) -> Option<Ipv4Addr> {
        self.primary_v4
    }

    /// Keeps only the IPv4 addresses for which `keep` is true (the primary one too).
    pub(crate) fn retain_v4(&mut self, mut keep: impl FnMut(Ipv4Addr) -> bool) {
        self.v4.retain(|a| keep(*a));
        self.sync_bits();
        if self.primary_v4.is_some_and(|p| !keep(p)) {
            self.primary_v4 = None;
        }
    }

    /// The server's IPv4 addresses, sorted.
    ///
    /// ```
    /// use ipvirt::Host;
    ///
    /// let host = Host::new(["192.0.2.2".parse().unwrap(), "192.0.2.1".parse().unwrap()]);
    /// assert_eq!(host.ipv4().len(), 2);
    /// ```
    #[must_use]
    pub fn ipv4(&self) -> &[Ipv4Addr] {
        &self.v4
    }

    /// The server's IPv6 addresses (not IPv4-mapped), sorted.
    #[must_use]
    pub fn ipv6(&self) -> &[Ipv6Addr] {
        &self.v6
    }
}

/// Whether the sorted `set` holds `bits`: a linear scan for the handful of addresses a server
/// usually has, a binary search past that.
#[inline(always)]
pub(crate) fn contains_bits(set: &[u32], bits: u32) -> bool {
    if set.len() <= 8 {
        set.contains(&bits)
    } else {
        set.binary_search(&bits).is_ok()
    }
}
