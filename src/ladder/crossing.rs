//! One TCP segment crossing the gateway, as the replay saw it on each
//! side: the captured packet and the far side's (the packet `replay
//! --out` writes). Every number shown comes from these two packets.

use std::time::Duration;

use ftpct_engine::event::Event;
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::TcpPacket;

/// Payload bytes kept per segment: a command or reply line fits, a data
/// connection's megabytes are not kept.
pub const KEPT_PAYLOAD: usize = 512;

/// A TCP segment as seen on one side of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub tuple: Tuple,
    /// tcpdump's letters: `S`, `F`, `P`, `R`, `U`, `.` for ACK.
    pub flags: String,
    pub seq: u32,
    /// None when the ACK flag is not set.
    pub ack: Option<u32>,
    /// The payload's first [`KEPT_PAYLOAD`] bytes.
    pub payload: Vec<u8>,
    /// The payload's full length.
    pub len: usize,
}

impl Segment {
    /// The segment in IP packet `ip`; None when it is not TCP.
    pub fn parse(ip: &[u8]) -> Option<Segment> {
        let pkt = TcpPacket::parse(ip).ok()?;
        let payload = pkt.payload();
        Some(Segment {
            tuple: pkt.tuple,
            flags: flag_letters(&pkt),
            seq: pkt.seq,
            ack: pkt.flags.ack.then_some(pkt.ack),
            payload: payload[..payload.len().min(KEPT_PAYLOAD)].to_vec(),
            len: payload.len(),
        })
    }
}

/// The flags as tcpdump prints them (`S.`, `P.`, `F.`), read from the
/// header byte: the engine's own flags leave out PSH and URG.
fn flag_letters(pkt: &TcpPacket<'_>) -> String {
    let bytes = pkt.bytes();
    let tcp_start = bytes.len() - pkt.payload().len() - pkt.tcp_header_len();
    let bits = bytes.get(tcp_start + 13).copied().unwrap_or(0);
    [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x08, 'P'),
        (0x04, 'R'),
        (0x20, 'U'),
        (0x10, '.'),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, letter)| letter)
    .collect()
}

/// A segment through the gateway: its form on the inside (as captured
/// there) and on the outside (as the far side sends or receives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub time: Duration,
    /// It came from the outside host.
    pub toward_inside: bool,
    pub inside: Segment,
    /// None: the gateway did not let it out.
    pub outside: Option<Segment>,
    /// What the engine reported on it, for its own session.
    pub events: Vec<Event>,
}

impl Crossing {
    /// Its tuples on both sides.
    pub fn tuples(&self) -> impl Iterator<Item = Tuple> + '_ {
        std::iter::once(self.inside.tuple).chain(self.outside.as_ref().map(|o| o.tuple))
    }

    /// True when `t` names its connection, in either direction, on
    /// either side.
    pub fn is_of(&self, t: &Tuple) -> bool {
        self.tuples().any(|own| own == *t || own == t.reversed())
    }

    /// What the gateway added to the sequence number on the way through
    /// (0 when the segment did not come out).
    pub fn seq_shift(&self) -> i64 {
        self.shift(|s| Some(s.seq))
    }

    /// What the gateway added to the acknowledgement number.
    pub fn ack_shift(&self) -> i64 {
        self.shift(|s| s.ack)
    }

    /// The received form's number minus the sent form's, read off the
    /// two packets (modulo 2^32, as a signed offset).
    fn shift(&self, number: impl Fn(&Segment) -> Option<u32>) -> i64 {
        let Some(outside) = &self.outside else {
            return 0;
        };
        let (sent, received) = if self.toward_inside {
            (outside, &self.inside)
        } else {
            (&self.inside, outside)
        };
        match (number(sent), number(received)) {
            (Some(s), Some(r)) => i64::from(r.wrapping_sub(s) as i32),
            _ => 0,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    /// An IPv4 segment 192.0.2.10:40000 -> 198.51.100.20:21 (or back).
    pub fn packet(from_client: bool, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let (client, server) = ([192, 0, 2, 10], [198, 51, 100, 20]);
        let (src, dst, sport, dport) = if from_client {
            (client, server, 40000, 21)
        } else {
            (server, client, 21, 40000)
        };
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 64240)
            .psh()
            .ack(ack)
            .write(&mut out, payload)
            .expect("build");
        out
    }

    /// The same packet leaving through SNAT to 198.51.100.1, renumbered.
    pub fn natted(seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 1], [198, 51, 100, 20], 63)
            .tcp(40000, 21, seq, 64240)
            .psh()
            .ack(ack)
            .write(&mut out, payload)
            .expect("build");
        out
    }

    #[test]
    fn a_segment_keeps_its_numbers_flags_and_the_start_of_its_payload() {
        let long = vec![b'x'; KEPT_PAYLOAD + 10];
        let s = Segment::parse(&packet(true, 7, 9, &long)).expect("tcp");
        assert_eq!((s.seq, s.ack, s.flags.as_str()), (7, Some(9), "P."));
        assert_eq!((s.payload.len(), s.len), (KEPT_PAYLOAD, KEPT_PAYLOAD + 10));
        assert!(Segment::parse(&[0x45, 0, 0]).is_none());
    }

    #[test]
    fn shifts_are_read_off_both_forms() {
        let out = Crossing {
            time: Duration::ZERO,
            toward_inside: false,
            inside: Segment::parse(&packet(true, 100, 50, b"NOOP\r\n")).expect("tcp"),
            outside: Segment::parse(&natted(102, 50, b"NOOP\r\n")),
            events: Vec::new(),
        };
        assert_eq!((out.seq_shift(), out.ack_shift()), (2, 0));
        let back = Crossing {
            toward_inside: true,
            inside: Segment::parse(&packet(false, 50, 106, b"200 ok\r\n")).expect("tcp"),
            outside: Segment::parse(&packet(false, 50, 108, b"200 ok\r\n")),
            ..out.clone()
        };
        assert_eq!((back.seq_shift(), back.ack_shift()), (0, -2));
        let dropped = Crossing {
            outside: None,
            ..out
        };
        assert_eq!(dropped.seq_shift(), 0);
    }

    #[test]
    fn a_crossing_is_of_its_connection_both_ways() {
        let c = Crossing {
            time: Duration::ZERO,
            toward_inside: false,
            inside: Segment::parse(&packet(true, 1, 1, b"")).expect("tcp"),
            outside: Segment::parse(&natted(1, 1, b"")),
            events: Vec::new(),
        };
        let inside = c.inside.tuple;
        assert!(c.is_of(&inside) && c.is_of(&inside.reversed()));
        let outside = Segment::parse(&natted(1, 1, b"")).expect("tcp").tuple;
        assert!(c.is_of(&outside.reversed()));
        assert!(!c.is_of(&Tuple::new(inside.src, outside.src)));
    }
}
