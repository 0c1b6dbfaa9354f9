//! Header shapes beyond the common one (IPv4 without options, IPv6 with
//! TCP right after its header): IPv4 options, IPv6 extension headers and
//! longer TCP headers, put into a [`Segment`]'s packet, for the tests of
//! what the kernel's selection rules read.

use crate::Segment;

/// An IPv6 extension header, 8 bytes, that asks nothing of a router:
/// options that are padding, a routing header with no segment left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Ext {
    HopByHop,
    DestinationOptions,
    Routing,
}

impl Ipv6Ext {
    fn number(self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => 0,
            Ipv6Ext::DestinationOptions => 60,
            Ipv6Ext::Routing => 43,
        }
    }

    fn bytes(self, next: u8) -> [u8; 8] {
        match self {
            // One PadN option of 4 bytes after the 2 of the header.
            Ipv6Ext::HopByHop | Ipv6Ext::DestinationOptions => [next, 0, 1, 4, 0, 0, 0, 0],
            // Type 0, segments left 0: nothing to route.
            Ipv6Ext::Routing => [next, 0, 0, 0, 0, 0, 0, 0],
        }
    }
}

/// What [`reshape`] makes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Bytes of IPv4 options (a multiple of 4, at most 40): no-operations,
    /// then the end of the list.
    pub ipv4_options: usize,
    /// IPv6 extension headers, in this order before TCP.
    pub ipv6_ext: &'static [Ipv6Ext],
    /// The TCP header's length (20 to 60): the segment's options after
    /// no-operations that fill the rest.
    pub tcp_header: usize,
}

impl Shape {
    /// IPv4 without options or IPv6 without extension headers, and a TCP
    /// header of `tcp_header` bytes.
    pub const fn tcp(tcp_header: usize) -> Shape {
        Shape {
            ipv4_options: 0,
            ipv6_ext: &[],
            tcp_header,
        }
    }

    /// `segment` built in this shape, with the timestamps option when the
    /// TCP header has room for it (32 bytes or more), as Linux sends it.
    pub fn build(self, segment: Segment<'_>) -> Vec<u8> {
        let segment = if self.tcp_header >= 32 {
            segment.timestamps(7, 9)
        } else {
            segment
        };
        reshape(&segment.build(), self)
    }
}

const IPPROTO_TCP: u8 = 6;
const TCP_NOP: u8 = 1;
const IPV4_NOP: u8 = 1;

/// `packet` (built by [`Segment`]: IPv4 without options or
/// IPv6 without extension headers) in `shape`, lengths and checksums
/// rewritten. Panics on a shape that does not fit the packet.
pub fn reshape(packet: &[u8], shape: Shape) -> Vec<u8> {
    let v6 = packet[0] >> 4 == 6;
    let ip_len = if v6 { 40 } else { 20 };
    assert!(
        v6 || packet[0] == 0x45,
        "an IPv4 header without options to start from"
    );
    assert!(!v6 || packet[6] == IPPROTO_TCP, "IPv6 with TCP next");
    let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
    let added = shape
        .tcp_header
        .checked_sub(tcp_len)
        .expect("a longer TCP header");
    assert!(
        shape.tcp_header <= 60 && added % 4 == 0,
        "a TCP header of {} bytes",
        shape.tcp_header
    );
    assert!(shape.ipv4_options <= 40 && shape.ipv4_options % 4 == 0);
    assert!(
        v6 || shape.ipv6_ext.is_empty(),
        "extension headers are IPv6's"
    );
    assert!(!v6 || shape.ipv4_options == 0, "options are IPv4's here");

    let mut out = packet[..ip_len].to_vec();
    if shape.ipv4_options > 0 {
        out.extend(std::iter::repeat_n(IPV4_NOP, shape.ipv4_options - 1));
        out.push(0);
        out[0] = 0x40 | ((20 + shape.ipv4_options) / 4) as u8;
    }
    let mut next_at = 6;
    for ext in shape.ipv6_ext {
        out[next_at] = ext.number();
        next_at = out.len();
        out.extend(ext.bytes(IPPROTO_TCP));
    }
    let tcp_at = out.len();
    out.extend(&packet[ip_len..ip_len + 20]);
    out.extend(std::iter::repeat_n(TCP_NOP, added));
    out.extend(&packet[ip_len + 20..]);
    out[tcp_at + 12] = ((shape.tcp_header / 4) as u8) << 4 | (out[tcp_at + 12] & 0x0f);

    let total = out.len();
    if v6 {
        out[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    } else {
        out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        out[10..12].fill(0);
        let sum = checksum(&[&out[..tcp_at]]);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    out[tcp_at + 16..tcp_at + 18].fill(0);
    let segment_len = (total - tcp_at) as u32;
    let (src, dst) = if v6 {
        (&out[8..24], &out[24..40])
    } else {
        (&out[12..16], &out[16..20])
    };
    let pseudo = [segment_len.to_be_bytes(), [0, 0, 0, IPPROTO_TCP]].concat();
    let sum = checksum(&[src, dst, &pseudo, &out[tcp_at..]]);
    out[tcp_at + 16..tcp_at + 18].copy_from_slice(&sum.to_be_bytes());
    out
}

/// The Internet checksum of the parts, one after the other (each part of
/// even length but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// etherparse reads each shape back: the same ports and payload, the
    /// TCP header as long as asked, the IPv4 header checksum right.
    #[test]
    fn shapes_parse_back() {
        let v4 = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let v6 = tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21");
        let exts: &[&[Ipv6Ext]] = &[
            &[Ipv6Ext::HopByHop],
            &[Ipv6Ext::DestinationOptions],
            &[Ipv6Ext::Routing],
            &[
                Ipv6Ext::HopByHop,
                Ipv6Ext::Routing,
                Ipv6Ext::DestinationOptions,
            ],
        ];
        let with = |ipv4_options, ipv6_ext, tcp_header| Shape {
            ipv4_options,
            ipv6_ext,
            tcp_header,
        };
        let mut cases = Vec::new();
        for tcp_header in [20, 32, 40, 60] {
            cases.push((v4, with(4, &[], tcp_header)));
            cases.push((v4, with(40, &[], tcp_header)));
            for ext in exts {
                cases.push((v6, with(0, ext, tcp_header)));
            }
        }
        for (t, shape) in cases {
            let packet = shape.build(Segment::new(t, 7).ack(1).payload(b"PORT x\r\n"));
            let sliced = SlicedPacket::from_ip(&packet).expect("parses");
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("TCP in {shape:?}");
            };
            assert_eq!(tcp.payload(), b"PORT x\r\n", "{shape:?}");
            assert_eq!(tcp.header_len(), shape.tcp_header);
            assert_eq!((tcp.source_port(), tcp.destination_port()), (40000, 21));
            let tcp_sum = match sliced.net {
                Some(NetSlice::Ipv4(ip)) => {
                    let header = ip.header();
                    assert_eq!(header.ihl() as usize * 4, 20 + shape.ipv4_options);
                    let mut zeroed = header.to_header();
                    zeroed.header_checksum = 0;
                    assert_eq!(zeroed.calc_header_checksum(), header.header_checksum());
                    tcp.calc_checksum_ipv4(header.source(), header.destination())
                }
                Some(NetSlice::Ipv6(ip)) => {
                    let header = ip.header();
                    tcp.calc_checksum_ipv6(header.source(), header.destination())
                }
                _ => panic!("IP in {shape:?}"),
            };
            assert_eq!(tcp_sum.expect("fits"), tcp.checksum(), "{shape:?}");
        }
    }
}
