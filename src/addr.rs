//! Addresses with a meaning: [`Vip`], the one definition of "a usable virtual IP" that the policy
//! validator, the pools and the rewriter share, and [`PoolEntry`], the ranges a static pool is
//! built from.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The IPv4 blocks that can never hold a VIP, with their names: a VIP is what a network bind
/// becomes, so it must be a unicast address of a real interface (a loopback VIP would turn a
/// network bind into a loopback one, SPEC §5).
const RESERVED: [(u32, u32, &str); 4] = [
    (0x0000_0000, 0x00FF_FFFF, "0.0.0.0/8 (\"this network\")"),
    (0x7F00_0000, 0x7FFF_FFFF, "127.0.0.0/8 (loopback)"),
    (0xE000_0000, 0xEFFF_FFFF, "224.0.0.0/4 (multicast)"),
    (
        0xF000_0000,
        0xFFFF_FFFF,
        "240.0.0.0/4 (reserved and broadcast)",
    ),
];

/// The reserved block that the addresses `first..=last` overlap, by name, if any.
pub(crate) const fn reserved_block(first: Ipv4Addr, last: Ipv4Addr) -> Option<&'static str> {
    let (a, b) = (first.to_bits(), last.to_bits());
    let mut i = 0;
    while i < RESERVED.len() {
        // `get` is not const; `i < RESERVED.len()` holds.
        #[allow(clippy::indexing_slicing)]
        let (lo, hi, name) = RESERVED[i];
        if a <= hi && b >= lo {
            return Some(name);
        }
        i += 1;
    }
    None
}

/// A virtual IP: an IPv4 address that a session's network binds may become. Checked where it is
/// made, so everything that holds one (a pool's lease, a [`Rewriter`](crate::Rewriter), the
/// session entry of the rule tables) can rely on it.
///
/// Refused: 0.0.0.0/8, 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved,
/// with the broadcast address).
///
/// # Examples
///
/// ```
/// use std::net::Ipv4Addr;
/// use ipvirt::Vip;
///
/// let vip = Vip::new(Ipv4Addr::new(192, 0, 2, 107))?;
/// assert_eq!(vip.addr(), Ipv4Addr::new(192, 0, 2, 107));
/// assert_eq!(vip, Ipv4Addr::new(192, 0, 2, 107));
/// let err = Vip::new(Ipv4Addr::new(127, 0, 0, 8)).unwrap_err();
/// assert_eq!(err.to_string(), "127.0.0.8 cannot be a virtual IP: it is in 127.0.0.0/8 (loopback)");
/// assert!("240.0.0.1".parse::<Vip>().is_err());
/// # Ok::<(), ipvirt::VipError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Ipv4Addr", into = "Ipv4Addr")]
pub struct Vip(Ipv4Addr);

impl Vip {
    /// `addr` as a VIP.
    ///
    /// # Errors
    ///
    /// [`VipError`] when `addr` is in a block that can never hold a VIP.
    pub const fn new(addr: Ipv4Addr) -> Result<Vip, VipError> {
        match reserved_block(addr, addr) {
            Some(block) => Err(VipError { addr, block }),
            None => Ok(Vip(addr)),
        }
    }

    /// An address already checked (a pool checks its whole range when it is built).
    pub(crate) fn checked(addr: Ipv4Addr) -> Vip {
        debug_assert!(reserved_block(addr, addr).is_none(), "{addr} is not a VIP");
        Vip(addr)
    }

    /// The address.
    #[must_use]
    pub const fn addr(self) -> Ipv4Addr {
        self.0
    }

    /// The address as an integer (`Ipv4Addr::to_bits`).
    #[must_use]
    pub const fn to_bits(self) -> u32 {
        self.0.to_bits()
    }
}

impl From<Vip> for Ipv4Addr {
    fn from(v: Vip) -> Ipv4Addr {
        v.0
    }
}

impl TryFrom<Ipv4Addr> for Vip {
    type Error = VipError;

    fn try_from(addr: Ipv4Addr) -> Result<Vip, VipError> {
        Vip::new(addr)
    }
}

impl PartialEq<Ipv4Addr> for Vip {
    fn eq(&self, other: &Ipv4Addr) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Vip> for Ipv4Addr {
    fn eq(&self, other: &Vip) -> bool {
        *self == other.0
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Vip {
    type Err = ParseVipError;

    /// Parses and checks an address.
    ///
    /// ```
    /// use ipvirt::{ParseVipError, Vip};
    ///
    /// assert_eq!("192.0.2.7".parse::<Vip>().unwrap(), std::net::Ipv4Addr::new(192, 0, 2, 7));
    /// let e = "300.1.1.1".parse::<Vip>().unwrap_err();
    /// assert_eq!(e.to_string(), "\"300.1.1.1\" is not an IPv4 address");
    /// assert!(matches!("127.0.0.8".parse::<Vip>(), Err(ParseVipError::Unusable(_))));
    /// ```
    fn from_str(s: &str) -> Result<Vip, ParseVipError> {
        let addr: Ipv4Addr = s.trim().parse().map_err(|_| ParseVipError::Syntax {
            text: s.to_string(),
        })?;
        Ok(Vip::new(addr)?)
    }
}

/// Text that is not a usable virtual IP ([`Vip`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseVipError {
    /// The text is not an IPv4 address at all.
    #[error("{text:?} is not an IPv4 address")]
    Syntax {
        /// What was given.
        text: String,
    },
    /// An IPv4 address that cannot be a virtual IP.
    #[error(transparent)]
    Unusable(#[from] VipError),
}

/// An address that cannot be a virtual IP ([`Vip::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{addr} cannot be a virtual IP: it is in {block}")]
pub struct VipError {
    /// The address.
    pub addr: Ipv4Addr,
    /// The block it is in, in words.
    pub block: &'static str,
}

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

/// An error parsing a VIP pool entry (`192.0.2.10-192.0.2.20`, `192.0.2.0/24` or `192.0.2.7`).
///
/// # Examples
///
/// ```
/// use ipvirt::PoolEntry;
///
/// let err = "192.0.2.20-192.0.2.10".parse::<PoolEntry>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid pool entry \"192.0.2.20-192.0.2.10\": the range ends before it starts"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool entry {input:?}: {reason}")]
pub struct ParsePoolEntryError {
    /// The text that was given.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}
