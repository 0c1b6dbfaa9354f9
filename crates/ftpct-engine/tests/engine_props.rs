//! Property tests of the engine: however a client cuts its command stream
//! into segments, and whatever it retransmits, the far side receives the
//! same rewritten stream, one expectation per announcement, and
//! acknowledgements that map back to the client's own numbering.

use std::collections::BTreeMap;
use std::time::Duration;

use etherparse::PacketBuilder;
use ftpct_engine::engine::{Config, Engine, Hook, Verdict};
use ftpct_engine::nat::StaticNat;
use ftpct_engine::wire::TcpPacket;
use proptest::prelude::*;

const CLIENT: [u8; 4] = [192, 0, 2, 10];
const SERVER: [u8; 4] = [198, 51, 100, 20];
const CPORT: u16 = 40000;
const ISN: u32 = 0xffff_ff00; // wraps during the session on purpose

fn packet(from_client: bool, seq: u32, ack: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        (CLIENT, SERVER, CPORT, 21)
    } else {
        (SERVER, [198, 51, 100, 1], 21, CPORT)
    };
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 64240);
    if syn {
        b = b.syn();
    }
    if ack != 0 || !syn {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("write");
    out
}

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
    engine: Engine,
    nat: StaticNat,
    /// Far-side client bytes by (shifted) sequence number.
    far: BTreeMap<u32, u8>,
    t: u64,
}

impl Session {
    fn new() -> Self {
        let nat = StaticNat::new(
            vec!["192.0.2.0/24=198.51.100.1".parse().expect("rule")],
            vec![],
        );
        let mut s = Session {
            engine: Engine::new(Config::default()),
            nat,
            far: BTreeMap::new(),
            t: 0,
        };
        s.send(&packet(true, ISN, 0, true, b""));
        s.send(&packet(false, 5000, ISN.wrapping_add(1), true, b""));
        s
    }

    fn send(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.t += 1;
        let out = self.engine.process(
            bytes,
            Duration::from_millis(self.t),
            Hook::Prerouting,
            &mut self.nat,
        );
        match out.verdict {
            Verdict::Accept => Some(bytes.to_vec()),
            Verdict::Replace(b) => Some(b),
            Verdict::Drop => None,
        }
    }

    /// A client segment of original stream bytes at offset `off`.
    fn client(&mut self, off: u32, data: &[u8]) {
        let seq = ISN.wrapping_add(1).wrapping_add(off);
        if let Some(out) = self.send(&packet(true, seq, 5001, false, data)) {
            let p = TcpPacket::parse(&out).expect("output parses");
            assert!(ftpct_engine::wire::checksums_valid(&out));
            for (i, b) in p.payload().iter().enumerate() {
                let pos = p.seq.wrapping_add(i as u32);
                if let Some(old) = self.far.insert(pos, *b) {
                    assert_eq!(old, *b, "byte at {pos} changed between copies");
                }
            }
        }
    }

    /// The server acknowledges far-side position `far_ack`; returns the ack the client sees.
    fn server_ack(&mut self, far_ack: u32) -> u32 {
        let out = self
            .send(&packet(false, 5001, far_ack, false, b""))
            .expect("acks pass");
        TcpPacket::parse(&out).expect("parses").ack
    }

    /// How much of its stream the client has seen acknowledged, if the
    /// server acknowledges all it received in order.
    fn client_acked(&mut self) -> usize {
        let far_end = ISN
            .wrapping_add(1)
            .wrapping_add(self.far_stream().len() as u32);
        self.server_ack(far_end).wrapping_sub(ISN.wrapping_add(1)) as usize
    }

    fn far_stream(&self) -> Vec<u8> {
        let start = ISN.wrapping_add(1);
        let mut out = Vec::new();
        let mut pos = start;
        while let Some(b) = self.far.get(&pos) {
            out.push(*b);
            pos = pos.wrapping_add(1);
        }
        out
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
        prop_assert_eq!(s.engine.stats().rewrites as usize, announcements);
        // The server acknowledges everything it got: the client sees its own end.
        let far_end = ISN.wrapping_add(1).wrapping_add(expected.len() as u32);
        let client_end = ISN.wrapping_add(1).wrapping_add(original.len() as u32);
        prop_assert_eq!(s.server_ack(far_end), client_end);
    }
}
