//! Zero-copy view of an IPv4/IPv6 TCP packet and the one way we rebuild it.
//!
//! Parsing borrows the caller's bytes (etherparse slices, no copies). A
//! rebuild writes a new packet: addresses, ports, sequence and
//! acknowledgement numbers, SACK blocks and payload as asked, with full IP
//! and TCP checksums, because after a change the kernel trusts the packet
//! as given.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use etherparse::{IpNumber, IpSlice};

use crate::tuple::Tuple;

const TCP_MIN_HEADER: usize = 20;
const TCP_OPT_END: u8 = 0;
const TCP_OPT_NOP: u8 = 1;
const TCP_OPT_MSS: u8 = 2;
const TCP_OPT_SACK: u8 = 5;

/// Why a packet could not be read as TCP over IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Ip(String),
    NotTcp,
    Fragment,
    BadTcpHeader,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Ip(e) => write!(f, "bad IP header: {e}"),
            WireError::NotTcp => write!(f, "not TCP"),
            WireError::Fragment => write!(f, "IP fragment"),
            WireError::BadTcpHeader => write!(f, "bad TCP header"),
        }
    }
}

/// TCP flags the engine cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.syn, 'S'),
            (self.fin, 'F'),
            (self.rst, 'R'),
            (self.ack, '.'),
        ];
        for (set, c) in names {
            if set {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A parsed TCP segment, borrowing the packet bytes.
#[derive(Debug, Clone)]
pub struct TcpPacket<'a> {
    bytes: &'a [u8],
    tcp_offset: usize,
    payload_offset: usize,
    payload_end: usize,
    pub tuple: Tuple,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
}

impl<'a> TcpPacket<'a> {
    /// Reads an IP packet (no link layer). Trailing bytes beyond the IP
    /// length (Ethernet padding) are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let ip = IpSlice::from_slice(bytes).map_err(|e| WireError::Ip(e.to_string()))?;
        let (src, dst) = match &ip {
            IpSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            IpSlice::Ipv6(v6) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
            ),
        };
        let payload = ip.payload();
        if payload.ip_number != IpNumber::TCP {
            return Err(WireError::NotTcp);
        }
        if payload.fragmented {
            return Err(WireError::Fragment);
        }
        let tcp_offset = offset_in(bytes, payload.payload);
        let tcp = payload.payload;
        if tcp.len() < TCP_MIN_HEADER {
            return Err(WireError::BadTcpHeader);
        }
        let header_len = usize::from(tcp[12] >> 4) * 4;
        if header_len < TCP_MIN_HEADER || header_len > tcp.len() {
            return Err(WireError::BadTcpHeader);
        }
        let flag_bits = tcp[13];
        Ok(TcpPacket {
            bytes,
            tcp_offset,
            payload_offset: tcp_offset + header_len,
            payload_end: tcp_offset + tcp.len(),
            tuple: Tuple::new(
                SocketAddr::new(src, be16(tcp, 0)),
                SocketAddr::new(dst, be16(tcp, 2)),
            ),
            seq: be32(tcp, 4),
            ack: be32(tcp, 8),
            flags: TcpFlags {
                fin: flag_bits & 0x01 != 0,
                syn: flag_bits & 0x02 != 0,
                rst: flag_bits & 0x04 != 0,
                ack: flag_bits & 0x10 != 0,
            },
        })
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_offset..self.payload_end]
    }

    /// The IP packet bytes as given (without trailing padding).
    pub fn bytes(&self) -> &'a [u8] {
        &self.bytes[..self.payload_end]
    }

    /// How much sequence space this segment takes (payload, SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload().len() as u32 + u32::from(self.flags.syn) + u32::from(self.flags.fin)
    }

    pub fn is_ipv6(&self) -> bool {
        self.bytes.first().map(|b| b >> 4) == Some(6)
    }

    /// The TCP header's length, options included.
    pub fn tcp_header_len(&self) -> usize {
        self.payload_offset - self.tcp_offset
    }

    /// Header bytes beyond the fixed IP and TCP headers (IP and TCP
    /// options, IPv6 extension headers): what an MSS does not cover.
    pub fn option_bytes(&self) -> usize {
        let fixed_ip = if self.is_ipv6() { 40 } else { 20 };
        self.payload_offset
            .saturating_sub(fixed_ip + TCP_MIN_HEADER)
    }

    fn options(&self) -> &'a [u8] {
        &self.bytes[self.tcp_offset + TCP_MIN_HEADER..self.payload_offset]
    }

    /// The maximum segment size option (SYN and SYN-ACK), if any.
    pub fn mss(&self) -> Option<u16> {
        let options = self.options();
        let mut mss = None;
        walk_options(options, |kind, start, len| {
            if kind == TCP_OPT_MSS && len == 4 {
                mss = Some(be16(options, start + 2));
            }
        });
        mss
    }

    /// SACK blocks carried in the TCP options, as (left, right) edges.
    pub fn sack_blocks(&self) -> Vec<(u32, u32)> {
        let mut blocks = Vec::new();
        let options = &self.bytes[self.tcp_offset + TCP_MIN_HEADER..self.payload_offset];
        for_each_sack_edge_offset(options, |off| {
            blocks.push((be32(options, off), be32(options, off + 4)));
        });
        blocks
    }
}

/// What to change when rebuilding a packet. `None` keeps the original.
pub struct Rebuild<'p, F: Fn(u32) -> u32> {
    pub tuple: Option<Tuple>,
    pub seq: u32,
    pub ack: u32,
    /// Applied to every SACK edge (acknowledgement space).
    pub map_sack: F,
    pub payload: Option<&'p [u8]>,
    pub decrement_ttl: bool,
    /// A new value for the MSS option, when the packet has one.
    pub mss: Option<u16>,
}

impl TcpPacket<'_> {
    /// Writes a new packet with the changes in `r` and full checksums.
    pub fn rebuild<F: Fn(u32) -> u32>(&self, r: &Rebuild<'_, F>) -> Vec<u8> {
        let payload = r.payload.unwrap_or_else(|| self.payload());
        let mut out = Vec::with_capacity(self.payload_offset + payload.len());
        out.extend_from_slice(&self.bytes[..self.payload_offset]);
        out.extend_from_slice(payload);
        let tuple = r.tuple.unwrap_or(self.tuple);
        let v6 = self.is_ipv6();
        write_ip_addresses(&mut out, v6, tuple.src.ip(), tuple.dst.ip());
        write_ip_length(&mut out, v6);
        if r.decrement_ttl {
            let ttl_at = if v6 { 7 } else { 8 };
            out[ttl_at] = out[ttl_at].saturating_sub(1);
        }
        if !v6 {
            write_ipv4_checksum(&mut out);
        }
        let t = self.tcp_offset;
        out[t..t + 2].copy_from_slice(&tuple.src.port().to_be_bytes());
        out[t + 2..t + 4].copy_from_slice(&tuple.dst.port().to_be_bytes());
        out[t + 4..t + 8].copy_from_slice(&r.seq.to_be_bytes());
        out[t + 8..t + 12].copy_from_slice(&r.ack.to_be_bytes());
        let options = &mut out[t + TCP_MIN_HEADER..self.payload_offset];
        map_sack_edges(options, &r.map_sack);
        if let Some(mss) = r.mss {
            write_mss(options, mss);
        }
        write_tcp_checksum(&mut out, t, tuple.src.ip(), tuple.dst.ip());
        out
    }
}

fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    // Both slices come from the same allocation: the difference of their
    // start addresses is the offset of `inner` within `outer`.
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Calls `f` with the kind, offset and length of every TCP option (up to
/// the end option or the first malformed length).
fn walk_options(options: &[u8], mut f: impl FnMut(u8, usize, usize)) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            TCP_OPT_END => return,
            TCP_OPT_NOP => i += 1,
            kind => {
                let Some(&len) = options.get(i + 1) else {
                    return;
                };
                let len = usize::from(len);
                if len < 2 || i + len > options.len() {
                    return;
                }
                f(kind, i, len);
                i += len;
            }
        }
    }
}

/// Calls `f` with the offset of every SACK block (8 bytes: left, right).
fn for_each_sack_edge_offset(options: &[u8], mut f: impl FnMut(usize)) {
    walk_options(options, |kind, start, len| {
        if kind == TCP_OPT_SACK {
            let mut block = start + 2;
            while block + 8 <= start + len {
                f(block);
                block += 8;
            }
        }
    });
}

fn write_mss(options: &mut [u8], mss: u16) {
    let mut at = None;
    walk_options(options, |kind, start, len| {
        if kind == TCP_OPT_MSS && len == 4 {
            at = Some(start + 2);
        }
    });
    if let Some(at) = at {
        options[at..at + 2].copy_from_slice(&mss.to_be_bytes());
    }
}

fn map_sack_edges(options: &mut [u8], map: &impl Fn(u32) -> u32) {
    let mut offsets = [0usize; 4];
    let mut n = 0;
    for_each_sack_edge_offset(options, |off| {
        if n < offsets.len() {
            offsets[n] = off;
            n += 1;
        }
    });
    for &off in &offsets[..n] {
        for edge in [off, off + 4] {
            let mapped = map(be32(options, edge));
            options[edge..edge + 4].copy_from_slice(&mapped.to_be_bytes());
        }
    }
}

fn write_ip_addresses(out: &mut [u8], v6: bool, src: IpAddr, dst: IpAddr) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if !v6 => {
            out[12..16].copy_from_slice(&s.octets());
            out[16..20].copy_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) if v6 => {
            out[8..24].copy_from_slice(&s.octets());
            out[24..40].copy_from_slice(&d.octets());
        }
        // A tuple of the other family would be a caller bug; keep the
        // packet's own addresses rather than write a broken header.
        _ => {}
    }
}

fn write_ip_length(out: &mut [u8], v6: bool) {
    if v6 {
        let len = (out.len() - 40) as u16;
        out[4..6].copy_from_slice(&len.to_be_bytes());
    } else {
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

fn write_ipv4_checksum(out: &mut [u8]) {
    let ihl = usize::from(out[0] & 0x0f) * 4;
    out[10..12].copy_from_slice(&[0, 0]);
    let sum = fold(ones_sum(0, &out[..ihl]));
    out[10..12].copy_from_slice(&(!sum).to_be_bytes());
}

fn write_tcp_checksum(out: &mut [u8], tcp_offset: usize, src: IpAddr, dst: IpAddr) {
    out[tcp_offset + 16..tcp_offset + 18].copy_from_slice(&[0, 0]);
    let tcp_len = out.len() - tcp_offset;
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ones_sum(ones_sum(0, &s.octets()), &d.octets()),
        (s, d) => ones_sum(ones_sum(0, &ip_octets(s)), &ip_octets(d)),
    };
    sum += 6 + tcp_len as u64;
    sum = ones_sum(sum, &out[tcp_offset..]);
    let csum = !fold(sum);
    out[tcp_offset + 16..tcp_offset + 18].copy_from_slice(&csum.to_be_bytes());
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// One's complement sum of 16-bit big-endian words, not yet folded.
fn ones_sum(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// True if the packet's IP (v4) and TCP checksums are correct.
pub fn checksums_valid(bytes: &[u8]) -> bool {
    let Ok(p) = TcpPacket::parse(bytes) else {
        return false;
    };
    let mut copy = p.bytes().to_vec();
    if !p.is_ipv6() {
        write_ipv4_checksum(&mut copy);
    }
    write_tcp_checksum(&mut copy, p.tcp_offset, p.tuple.src.ip(), p.tuple.dst.ip());
    copy == p.bytes()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// A TCP/IPv4 packet for tests, with a SACK option.
    pub fn v4_packet(payload: &[u8], seq: u32, ack: u32, sack: Option<(u32, u32)>) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4([192, 0, 2, 10], [198, 51, 100, 20], 64)
            .tcp(40000, 21, seq, 64240)
            .ack(ack);
        if let Some((l, r)) = sack {
            b = b
                .options(&[
                    etherparse::TcpOptionElement::Noop,
                    etherparse::TcpOptionElement::Noop,
                    etherparse::TcpOptionElement::SelectiveAcknowledgement((l, r), [None; 3]),
                ])
                .expect("options fit");
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("write to vec");
        out
    }

    #[test]
    fn parses_tuple_seq_ack_payload() {
        let bytes = v4_packet(b"PORT 1,2,3,4,5,6\r\n", 1000, 2000, None);
        let p = TcpPacket::parse(&bytes).expect("parses");
        assert_eq!(p.tuple.to_string(), "192.0.2.10:40000 -> 198.51.100.20:21");
        assert_eq!((p.seq, p.ack), (1000, 2000));
        assert_eq!(p.payload(), b"PORT 1,2,3,4,5,6\r\n");
        assert!(p.flags.ack && !p.flags.syn);
        assert!(checksums_valid(&bytes));
    }

    #[test]
    fn ignores_ethernet_padding() {
        let mut bytes = v4_packet(b"", 1, 2, None);
        bytes.extend_from_slice(&[0; 6]);
        let p = TcpPacket::parse(&bytes).expect("parses");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn rebuild_changes_fields_and_keeps_checksums_valid() {
        let bytes = v4_packet(b"PORT 192,0,2,10,1,2\r\n", 1000, 2000, Some((5000, 6000)));
        let p = TcpPacket::parse(&bytes).expect("parses");
        let new_tuple: Tuple = Tuple::new(
            "198.51.100.1:40000".parse().expect("addr"),
            "198.51.100.20:21".parse().expect("addr"),
        );
        let out = p.rebuild(&Rebuild {
            tuple: Some(new_tuple),
            seq: 1003,
            ack: 1990,
            map_sack: |edge| edge - 10,
            payload: Some(b"PORT 198,51,100,1,1,2\r\n"),
            decrement_ttl: true,
            mss: None,
        });
        assert!(checksums_valid(&out));
        let q = TcpPacket::parse(&out).expect("parses");
        assert_eq!(q.tuple, new_tuple);
        assert_eq!((q.seq, q.ack), (1003, 1990));
        assert_eq!(q.payload(), b"PORT 198,51,100,1,1,2\r\n");
        assert_eq!(q.sack_blocks(), vec![(4990, 5990)]);
        assert_eq!(out[8], 63);
    }

    #[test]
    fn rejects_non_tcp_and_garbage() {
        assert!(TcpPacket::parse(&[0x45, 0, 0]).is_err());
        let mut udp = Vec::new();
        PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .expect("write");
        assert_eq!(TcpPacket::parse(&udp).err(), Some(WireError::NotTcp));
    }

    #[test]
    fn ipv6_rebuild_checksums() {
        let mut bytes = Vec::new();
        PacketBuilder::ipv6(
            "2001:db8:1::10"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets(),
            "2001:db8:2::20"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets(),
            64,
        )
        .tcp(40000, 21, 7, 100)
        .write(&mut bytes, b"EPRT |2|2001:db8:1::10|40100|\r\n")
        .expect("write");
        let p = TcpPacket::parse(&bytes).expect("parses");
        assert!(p.is_ipv6());
        let out = p.rebuild(&Rebuild {
            tuple: None,
            seq: 8,
            ack: 0,
            map_sack: |e| e,
            payload: Some(b"EPRT |2|2001:db8:2::1|40100|\r\n"),
            decrement_ttl: false,
            mss: None,
        });
        assert!(checksums_valid(&out));
    }
}
