//! Property tests of the engine: however a client cuts its command stream
//! into segments, and whatever it retransmits, the far side receives the
//! same rewritten stream, one expectation per announcement, and
//! acknowledgements that map back to the client's own numbering.

use ftpct_engine::engine::Config;
use ftpct_engine::nat::StaticNat;
use ftpct_engine::wire::TcpPacket;
use ftpct_testkit::{leaving, tuple, Control, Gateway, Received, Segment, Side};
use proptest::prelude::*;

const ISN: u32 = 0xffff_ff00; // wraps during the session on purpose
const SERVER_ISN: u32 = 5000;

#[derive(Debug, Clone)]
enum Cmd {
    Noop,
    Port(u16),
    Eprt(u16),
}

impl Cmd {
    fn original(&self) -> String {
        match self {
            Cmd::Noop => "NOOP\r\n".into(),
            Cmd::Port(p) => format!("PORT 192,0,2,10,{},{}\r\n", p >> 8, p & 0xff),
            Cmd::Eprt(p) => format!("EPRT |1|192.0.2.10|{p}|\r\n"),
        }
    }
    fn rewritten(&self) -> String {
        match self {
            Cmd::Noop => "NOOP\r\n".into(),
            Cmd::Port(p) => format!("PORT 198,51,100,1,{},{}\r\n", p >> 8, p & 0xff),
            Cmd::Eprt(p) => format!("EPRT |1|198.51.100.1|{p}|\r\n"),
        }
    }
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        Just(Cmd::Noop),
        (1024u16..=65535).prop_map(Cmd::Port),
        (1024u16..=65535).prop_map(Cmd::Eprt),
    ]
}

struct Session {
    gw: Gateway<StaticNat>,
    ctl: Control,
    /// Far-side client bytes by (shifted) sequence number.
    far: Received,
}

impl Session {
    fn new() -> Self {
        let nat = StaticNat::new(
            vec!["192.0.2.0/24=198.51.100.1".parse().expect("rule")],
            vec![],
        );
        let mut s = Session {
            gw: Gateway::new(Config::default(), nat),
            ctl: Control::new(
                tuple("192.0.2.10:40000", "198.51.100.20:21"),
                tuple("198.51.100.20:21", "198.51.100.1:40000"),
                ISN,
                SERVER_ISN,
            ),
            far: Received::default(),
        };
        for side in [Side::Client, Side::Server] {
            let syn = s.ctl.syn(side, &s.gw.engine);
            s.send(&syn);
        }
        s
    }

    fn send(&mut self, seg: &Segment<'_>) -> Option<Vec<u8>> {
        let bytes = seg.build();
        let out = self.gw.process(&bytes);
        leaving(&bytes, &out.verdict).map(<[u8]>::to_vec)
    }

    /// A client segment of original stream bytes at offset `off`.
    fn client(&mut self, off: u32, data: &[u8]) {
        let seq = ISN.wrapping_add(1).wrapping_add(off);
        let seg = self.ctl.segment(Side::Client, &self.gw.engine);
        if let Some(out) = self.send(&Segment { seq, ..seg }.payload(data)) {
            let p = TcpPacket::parse(&out).expect("output parses");
            assert!(ftpct_engine::wire::checksums_valid(&out));
            let recorded = self.far.record(p.seq, p.payload());
            assert_eq!(recorded, Ok(()), "a byte changed between copies");
        }
    }

    /// The server acknowledges far-side position `far_ack`; returns the ack the client sees.
    fn server_ack(&mut self, far_ack: u32) -> u32 {
        let seg = self.ctl.segment(Side::Server, &self.gw.engine);
        let out = self
            .send(&Segment {
                ack: Some(far_ack),
                ..seg
            })
            .expect("acks pass");
        TcpPacket::parse(&out).expect("parses").ack
    }

    /// How much of its stream the client has seen acknowledged, if the
    /// server acknowledges all it received in order.
    fn client_acked(&mut self) -> usize {
        let far_end = self.far.end_from(ISN.wrapping_add(1));
        self.server_ack(far_end).wrapping_sub(ISN.wrapping_add(1)) as usize
    }

    fn far_stream(&self) -> Vec<u8> {
        self.far.stream_from(ISN.wrapping_add(1))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_segmentation_gives_the_same_far_stream(
        cmds in proptest::collection::vec(cmd(), 1..8),
        cuts in proptest::collection::vec(1usize..40, 1..30),
        retransmit_every in 0usize..4,
    ) {
        let original: String = cmds.iter().map(Cmd::original).collect();
        let expected: String = cmds.iter().map(Cmd::rewritten).collect();
        let data = original.as_bytes();
        let mut s = Session::new();
        let mut off = 0usize;
        let mut segments = Vec::new();
        for (i, len) in cuts.iter().cycle().enumerate() {
            if off >= data.len() { break; }
            let end = (off + len).min(data.len());
            s.client(off as u32, &data[off..end]);
            segments.push((off, end));
            // Now and then a spurious retransmission of a segment the
            // server already acknowledged (what TCP may resend).
            if retransmit_every > 0 && i % retransmit_every == 0 {
                let acked = s.client_acked();
                if let Some(&(a, b)) = segments.iter().rev().find(|(_, b)| *b <= acked) {
                    s.client(a as u32, &data[a..b]);
                }
            }
            off = end;
        }
        let far = String::from_utf8_lossy(&s.far_stream()).into_owned();
        prop_assert_eq!(far, expected.clone());
        let announcements = cmds.iter().filter(|c| !matches!(c, Cmd::Noop)).count();
        prop_assert_eq!(s.gw.engine.stats().rewrites as usize, announcements);
        // The server acknowledges everything it got: the client sees its own end.
        let far_end = ISN.wrapping_add(1).wrapping_add(expected.len() as u32);
        let client_end = ISN.wrapping_add(1).wrapping_add(original.len() as u32);
        prop_assert_eq!(s.server_ack(far_end), client_end);
    }
}
