//! Virtual IP pools and leases.
//!
//! This module is being built (issue 5); today it holds the pool entry type the policy reads.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::ParsePoolEntryError;

/// One entry of a static VIP pool: an inclusive range, a CIDR network, or a single address.
///
/// Text forms: `192.0.2.100-192.0.2.199` (inclusive, spaces around `-` allowed), `192.0.2.0/24`,
/// `192.0.2.7`. A CIDR's network and broadcast addresses are never handed out (except in a /31 or
/// /32, which have none, RFC 3021).
///
/// # Examples
///
/// ```
/// use std::net::Ipv4Addr;
/// use ipvirt::PoolEntry;
///
/// let range: PoolEntry = "192.0.2.100-192.0.2.199".parse()?;
/// assert_eq!(range.first(), Ipv4Addr::new(192, 0, 2, 100));
/// assert_eq!(range.last(), Ipv4Addr::new(192, 0, 2, 199));
///
/// let net: PoolEntry = "192.0.2.0/24".parse()?;
/// assert_eq!(net.first(), Ipv4Addr::new(192, 0, 2, 1));   // network address skipped
/// assert_eq!(net.last(), Ipv4Addr::new(192, 0, 2, 254));  // broadcast skipped
/// assert_eq!(net.to_string(), "192.0.2.0/24");
/// # Ok::<(), ipvirt::ParsePoolEntryError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PoolEntry {
    /// An inclusive range of addresses (a single address is a range of one).
    Range {
        /// The first address of the range.
        first: Ipv4Addr,
        /// The last address of the range (inclusive, `>= first`).
        last: Ipv4Addr,
    },
    /// A CIDR network; its usable hosts are leased.
    Net(Ipv4Net),
}

impl PoolEntry {
    /// The first address that can be leased from this entry.
    #[must_use]
    pub fn first(&self) -> Ipv4Addr {
        match *self {
            PoolEntry::Range { first, .. } => first,
            PoolEntry::Net(net) if net.prefix_len() >= 31 => net.network(),
            PoolEntry::Net(net) => Ipv4Addr::from_bits(net.network().to_bits() + 1),
        }
    }

    /// The last address that can be leased from this entry (inclusive).
    #[must_use]
    pub fn last(&self) -> Ipv4Addr {
        match *self {
            PoolEntry::Range { last, .. } => last,
            PoolEntry::Net(net) if net.prefix_len() >= 31 => net.broadcast(),
            PoolEntry::Net(net) => Ipv4Addr::from_bits(net.broadcast().to_bits() - 1),
        }
    }

    /// How many addresses can be leased from this entry.
    ///
    /// ```
    /// use ipvirt::PoolEntry;
    ///
    /// assert_eq!("192.0.2.0/24".parse::<PoolEntry>()?.len(), 254);
    /// assert_eq!("192.0.2.0/31".parse::<PoolEntry>()?.len(), 2);
    /// assert_eq!("192.0.2.9".parse::<PoolEntry>()?.len(), 1);
    /// # Ok::<(), ipvirt::ParsePoolEntryError>(())
    /// ```
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // never empty: a parsed entry holds at least one address
    pub fn len(&self) -> u64 {
        u64::from(self.last().to_bits()) - u64::from(self.first().to_bits()) + 1
    }

    /// Whether `addr` can be leased from this entry.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use ipvirt::PoolEntry;
    ///
    /// let net: PoolEntry = "192.0.2.0/24".parse()?;
    /// assert!(net.contains(Ipv4Addr::new(192, 0, 2, 1)));
    /// assert!(!net.contains(Ipv4Addr::new(192, 0, 2, 255)));
    /// # Ok::<(), ipvirt::ParsePoolEntryError>(())
    /// ```
    #[must_use]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&addr)
    }
}

impl fmt::Display for PoolEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolEntry::Range { first, last } if first == last => write!(f, "{first}"),
            PoolEntry::Range { first, last } => write!(f, "{first}-{last}"),
            PoolEntry::Net(net) => write!(f, "{net}"),
        }
    }
}

impl FromStr for PoolEntry {
    type Err = ParsePoolEntryError;

    fn from_str(s: &str) -> Result<PoolEntry, ParsePoolEntryError> {
        let err = |reason| ParsePoolEntryError {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        if let Some((a, b)) = t.split_once('-') {
            let first: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| err("the range start is not an IPv4 address"))?;
            let last: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| err("the range end is not an IPv4 address"))?;
            if last < first {
                return Err(err("the range ends before it starts"));
            }
            Ok(PoolEntry::Range { first, last })
        } else if t.contains('/') {
            let net: Ipv4Net = t
                .parse()
                .map_err(|_| err("not an IPv4 CIDR (a.b.c.d/0-32)"))?;
            if net.addr() != net.network() {
                return Err(err(
                    "the CIDR has host bits set (write the network address)",
                ));
            }
            Ok(PoolEntry::Net(net))
        } else {
            let addr: Ipv4Addr = t.parse().map_err(|_| {
                err("expected an IPv4 address, a range a.b.c.d-e.f.g.h, or a CIDR a.b.c.d/n")
            })?;
            Ok(PoolEntry::Range {
                first: addr,
                last: addr,
            })
        }
    }
}

impl TryFrom<String> for PoolEntry {
    type Error = ParsePoolEntryError;

    fn try_from(s: String) -> Result<PoolEntry, ParsePoolEntryError> {
        s.parse()
    }
}

impl From<PoolEntry> for String {
    fn from(e: PoolEntry) -> String {
        e.to_string()
    }
}
