//! The wire layer of the DHCP client: bytes to a [`Reply`] and an [`Outgoing`] message to bytes,
//! with `dhcproto`. The machine never sees a packet, only these two values (smoltcp keeps its
//! `wire::dhcpv4` `Packet`/`Repr` apart from its client the same way).
//!
//! A datagram from the network is untrusted: [`sanitize`] checks its framing and keeps only the
//! options a client reads, with the lengths RFC 2132 gives them, before the decoder sees it
//! (`dhcproto` 0.15 panics on some malformed options: a hardware-address length over 16, or in
//! debug builds a fixed-size option of another length).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::{DatagramError, MessageKind};

/// What the machine reads of a server's reply (an OFFER, ACK or NAK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// OFFER, ACK or NAK.
    pub(super) kind: MessageKind,
    /// The transaction id.
    pub(super) xid: u32,
    /// The first six bytes of `chaddr` (`None` when the field is shorter).
    pub(super) hardware_addr: Option<[u8; 6]>,
    /// The client identifier the server echoed (option 61), if any.
    pub(super) client_id: Option<Vec<u8>>,
    /// The address offered or acknowledged (`yiaddr`).
    pub(super) addr: Ipv4Addr,
    /// The server identifier (option 54).
    pub(super) server: Option<Ipv4Addr>,
    /// The lease time in seconds (option 51).
    pub(super) lease_secs: Option<u32>,
    /// T1 in seconds (option 58).
    pub(super) renewal_secs: Option<u32>,
    /// T2 in seconds (option 59).
    pub(super) rebinding_secs: Option<u32>,
}

impl Reply {
    /// Reads a datagram that arrived on UDP port 68.
    ///
    /// # Errors
    ///
    /// [`DatagramError::Malformed`] for bytes that are not a DHCP message (or lack a message
    /// type), [`DatagramError::NotAReply`] for a BOOTREQUEST or a type a client never receives.
    pub(super) fn decode(bytes: &[u8]) -> Result<Reply, DatagramError> {
        let malformed = |reason: String| DatagramError::Malformed {
            len: bytes.len(),
            reason,
        };
        let clean = sanitize(bytes).map_err(malformed)?;
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
        let secs = |code| match m.opts().get(code) {
            Some(
                DhcpOption::AddressLeaseTime(t) | DhcpOption::Renewal(t) | DhcpOption::Rebinding(t),
            ) => Some(*t),
            _ => None,
        };
        Ok(Reply {
            kind,
            xid: m.xid(),
            hardware_addr: m.chaddr().get(..6).and_then(|c| c.try_into().ok()),
            client_id: match m.opts().get(OptionCode::ClientIdentifier) {
                Some(DhcpOption::ClientIdentifier(c)) => Some(c.clone()),
                _ => None,
            },
            addr: m.yiaddr(),
            server: match m.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
                _ => None,
            },
            lease_secs: secs(OptionCode::AddressLeaseTime),
            renewal_secs: secs(OptionCode::Renewal),
            rebinding_secs: secs(OptionCode::Rebinding),
        })
    }
}

/// A message the client sends (DISCOVER, REQUEST, DECLINE, RELEASE), as RFC 2131's table 5 fills
/// its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outgoing {
    /// DISCOVER, REQUEST, DECLINE or RELEASE.
    pub(super) kind: MessageKind,
    /// The transaction id.
    pub(super) xid: u32,
    /// Seconds since the exchange started.
    pub(super) secs: u16,
    /// Whether to ask the server to broadcast its reply (the client has no address yet).
    pub(super) broadcast: bool,
    /// `ciaddr`: the address held (renewing, rebinding, releasing), else unspecified.
    pub(super) ciaddr: Ipv4Addr,
    /// Option 50, the requested address.
    pub(super) requested: Option<Ipv4Addr>,
    /// Option 54, the server identifier.
    pub(super) server: Option<Ipv4Addr>,
    /// Option 61, the client identifier.
    pub(super) client_id: Vec<u8>,
}

impl Outgoing {
    /// A message of `kind` for transaction `xid` with the client identifier `client_id`: no flags,
    /// no addresses, `secs` 0.
    pub(super) fn new(kind: MessageKind, xid: u32, client_id: Vec<u8>) -> Outgoing {
        Outgoing {
            kind,
            xid,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server: None,
            client_id,
        }
    }

    /// The datagram, from the adapter's hardware address `chaddr`. `None` only for a message kind
    /// a client never sends (an OFFER, ACK or NAK), which the machine never builds.
    pub(super) fn encode(&self, chaddr: &[u8; 6]) -> Option<Vec<u8>> {
        let kind = match self.kind {
            MessageKind::Discover => MessageType::Discover,
            MessageKind::Request => MessageType::Request,
            MessageKind::Decline => MessageType::Decline,
            MessageKind::Release => MessageType::Release,
            MessageKind::Offer | MessageKind::Ack | MessageKind::Nak => return None,
        };
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(self.xid)
            .set_chaddr(chaddr)
            .set_secs(self.secs)
            .set_ciaddr(self.ciaddr);
        if self.broadcast {
            m.set_flags(Flags::default().set_broadcast());
        }
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(self.client_id.clone()));
        if let Some(a) = self.requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(a));
        }
        if let Some(a) = self.server {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(a));
        }
        if self.kind == MessageKind::Discover {
            m.opts_mut()
                .insert(DhcpOption::ParameterRequestList(alloc::vec![
                    OptionCode::SubnetMask,
                    OptionCode::AddressLeaseTime,
                    OptionCode::Renewal,
                    OptionCode::Rebinding,
                ]));
        }
        let mut payload = Vec::with_capacity(300);
        // Encoding into a Vec only fails on values a message built here never has.
        m.encode(&mut Encoder::new(&mut payload)).ok()?;
        Some(payload)
    }
}

/// The fixed part of a DHCP message: 236 bytes of BOOTP header, then the magic cookie.
const HEADER: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Checks a datagram's framing and keeps only the options the machine reads (with the lengths
/// RFC 2132 gives them), so that the decoder only ever sees well-formed input.
///
/// # Errors
///
/// What is wrong, in words: too short, no magic cookie, a hardware-address length over 16, an
/// option without a length, running past the end, or of a length its code cannot have.
pub(super) fn sanitize(bytes: &[u8]) -> Result<Vec<u8>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_message_reads_back_as_table_5_fills_it() {
        let mut o = Outgoing::new(MessageKind::Request, 0x1234_5678, b"\0x-7".to_vec());
        o.secs = 3;
        o.broadcast = true;
        o.requested = Some(Ipv4Addr::new(10, 0, 0, 100));
        o.server = Some(Ipv4Addr::new(10, 0, 0, 1));
        let bytes = o.encode(&[2, 0, 0, 0, 0, 1]).unwrap();
        let m = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.secs(), 3);
        assert!(m.flags().broadcast());
        assert_eq!(m.chaddr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                10, 0, 0, 100
            )))
        );
        assert!(m.opts().get(OptionCode::ParameterRequestList).is_none());
        assert!(
            Outgoing::new(MessageKind::Ack, 1, Vec::new())
                .encode(&[0; 6])
                .is_none()
        );
    }

    #[test]
    fn a_reply_keeps_what_the_client_reads() {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(9)
            .set_chaddr(&[2, 0, 0, 0, 0, 1])
            .set_yiaddr(Ipv4Addr::new(10, 0, 0, 100));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
        m.opts_mut().insert(DhcpOption::AddressLeaseTime(600));
        m.opts_mut().insert(DhcpOption::Renewal(100));
        let mut bytes = Vec::new();
        m.encode(&mut Encoder::new(&mut bytes)).unwrap();
        let r = Reply::decode(&bytes).unwrap();
        assert_eq!(
            (r.kind, r.xid, r.hardware_addr, r.addr),
            (
                MessageKind::Ack,
                9,
                Some([2, 0, 0, 0, 0, 1]),
                Ipv4Addr::new(10, 0, 0, 100)
            )
        );
        assert_eq!(
            (r.lease_secs, r.renewal_secs, r.rebinding_secs, r.server),
            (Some(600), Some(100), None, None)
        );
    }
}
