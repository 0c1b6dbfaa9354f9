//! TCP/IP packets: IPv4 or IPv6 by the family of the tuple.

use std::net::{IpAddr, SocketAddr};

use etherparse::{PacketBuilder, TcpOptionElement};
use ftpct_engine::tuple::Tuple;

/// The window every built segment announces.
pub const WINDOW: u16 = 64240;
/// The TTL (hop limit) of every built packet.
pub const TTL: u8 = 64;

/// One TCP segment to build. Start from [`Segment::new`] and add what it
/// carries; the fields are public so that values can be set as they come
/// (`Segment { ack, fin, ..Segment::new(t, seq) }`).
///
/// Options are written in this order: MSS, timestamps, then two NOPs and
/// the SACK blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub tuple: Tuple,
    pub seq: u32,
    /// The acknowledgement number; `None`: no ACK flag.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub mss: Option<u16>,
    /// (value, echo reply).
    pub timestamps: Option<(u32, u32)>,
    /// Up to four SACK blocks (left edge, right edge).
    pub sack: &'a [(u32, u32)],
    pub payload: &'a [u8],
}

impl<'a> Segment<'a> {
    /// A segment with no flag, no option and no payload.
    pub fn new(tuple: Tuple, seq: u32) -> Self {
        Segment {
            tuple,
            seq,
            ack: None,
            syn: false,
            fin: false,
            rst: false,
            mss: None,
            timestamps: None,
            sack: &[],
            payload: &[],
        }
    }

    /// Sets the ACK flag and the acknowledgement number.
    pub fn ack(self, ack: u32) -> Self {
        Segment {
            ack: Some(ack),
            ..self
        }
    }

    pub fn syn(self) -> Self {
        Segment { syn: true, ..self }
    }

    pub fn fin(self) -> Self {
        Segment { fin: true, ..self }
    }

    pub fn rst(self) -> Self {
        Segment { rst: true, ..self }
    }

    pub fn mss(self, mss: u16) -> Self {
        Segment {
            mss: Some(mss),
            ..self
        }
    }

    pub fn timestamps(self, value: u32, echo: u32) -> Self {
        Segment {
            timestamps: Some((value, echo)),
            ..self
        }
    }

    pub fn sack(self, blocks: &'a [(u32, u32)]) -> Self {
        Segment {
            sack: blocks,
            ..self
        }
    }

    pub fn payload(self, payload: &'a [u8]) -> Self {
        Segment { payload, ..self }
    }

    /// The IP packet, checksums included.
    pub fn build(&self) -> Vec<u8> {
        let t = &self.tuple;
        let b = match (t.src.ip(), t.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), TTL),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), TTL),
            _ => panic!("a tuple of two address families: {t}"),
        };
        let mut b = b.tcp(t.src.port(), t.dst.port(), self.seq, WINDOW);
        if let Some(ack) = self.ack {
            b = b.ack(ack);
        }
        if self.syn {
            b = b.syn();
        }
        if self.fin {
            b = b.fin();
        }
        if self.rst {
            b = b.rst();
        }
        let options = self.options();
        if !options.is_empty() {
            b = b.options(&options).expect("TCP options fit in 40 bytes");
        }
        let mut out = Vec::with_capacity(80 + self.payload.len());
        b.write(&mut out, self.payload).expect("write to a Vec");
        out
    }

    fn options(&self) -> Vec<TcpOptionElement> {
        let mut options = Vec::new();
        if let Some(mss) = self.mss {
            options.push(TcpOptionElement::MaximumSegmentSize(mss));
        }
        if let Some((value, echo)) = self.timestamps {
            options.push(TcpOptionElement::Timestamp(value, echo));
        }
        if let Some((first, more)) = self.sack.split_first() {
            assert!(more.len() <= 3, "at most four SACK blocks");
            let mut rest = [None; 3];
            for (slot, block) in rest.iter_mut().zip(more) {
                *slot = Some(*block);
            }
            options.extend([
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgement(*first, rest),
            ]);
        }
        options
    }
}

/// Writes sequence and acknowledgement numbers into a built packet (IPv4,
/// or IPv6 without extension headers) and leaves its checksum as it was:
/// the engine does not verify input checksums, so a loop can send one
/// packet again and again at no cost but the engine's.
#[inline]
pub fn set_seq_ack(packet: &mut [u8], seq: u32, ack: u32) {
    let tcp = match packet[0] >> 4 {
        4 => usize::from(packet[0] & 0x0f) * 4,
        6 => 40,
        v => panic!("not an IP packet (version {v})"),
    };
    packet[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    packet[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
}

/// `"192.0.2.10:40000"` or `"[2001:db8::1]:21"`.
pub fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("test address {s:?}: {e}"))
}

/// The tuple from `src` to `dst`, both written as for [`addr`].
pub fn tuple(src: &str, dst: &str) -> Tuple {
    Tuple::new(addr(src), addr(dst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::wire::{checksums_valid, TcpPacket};

    #[test]
    fn builds_what_the_engine_parses() {
        let t = tuple("[2001:db8:1::10]:40000", "[2001:db8:2::20]:21");
        let sack = [(10, 20), (30, 40)];
        let bytes = Segment::new(t, 7)
            .ack(9)
            .fin()
            .timestamps(7, 1)
            .sack(&sack)
            .payload(b"QUIT\r\n")
            .build();
        assert!(checksums_valid(&bytes));
        let p = TcpPacket::parse(&bytes).expect("parses");
        assert_eq!(p.tuple, t);
        assert_eq!((p.seq, p.ack), (7, 9));
        assert!(p.flags.ack && p.flags.fin && !p.flags.syn && !p.flags.rst);
        assert_eq!(p.sack_blocks(), sack.to_vec());
        assert_eq!(p.payload(), b"QUIT\r\n");

        let syn = Segment::new(tuple("192.0.2.10:40000", "198.51.100.20:21"), 1)
            .syn()
            .mss(1460)
            .build();
        let p = TcpPacket::parse(&syn).expect("parses");
        assert!(p.flags.syn && !p.flags.ack);
        assert_eq!(p.mss(), Some(1460));
    }

    #[test]
    fn renumbers_in_place() {
        for t in [
            tuple("192.0.2.10:40000", "198.51.100.20:21"),
            tuple("[2001:db8:1::10]:40000", "[2001:db8:2::20]:21"),
        ] {
            let mut bytes = Segment::new(t, 0)
                .ack(0)
                .timestamps(1, 1)
                .payload(b"NOOP\r\n")
                .build();
            set_seq_ack(&mut bytes, 1234, 5678);
            let p = TcpPacket::parse(&bytes).expect("parses");
            assert_eq!((p.seq, p.ack), (1234, 5678));
        }
    }
}
