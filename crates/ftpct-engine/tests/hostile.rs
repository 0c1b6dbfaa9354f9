//! The engine under hostile and messy traffic: spoofed handshake floods, a
//! full flow table, NAT giving a stale flow's reply tuple to a new client,
//! bytes that passed without ftpct (queue overflow, fail-open), and
//! rewrites that would make a full-size segment too long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use etherparse::{PacketBuilder, TcpOptionElement};
use ftpct_engine::engine::{Config, Engine, Hook, Outcome, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::nat::{CtMapping, NatLookup};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{checksums_valid, TcpPacket};

const SERVER: &str = "198.51.100.20:21";
const PUBLIC: &str = "198.51.100.1";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Conntrack as the engine would read it: connections by either tuple,
/// and answers kept as the live lookup keeps them (until told to forget).
#[derive(Default)]
struct Conntrack {
    by_tuple: HashMap<Tuple, CtMapping>,
    answered: HashMap<Tuple, CtMapping>,
}

impl Conntrack {
    /// A client connection to the server, MASQUERADEd to `public_port`.
    fn masquerade(&mut self, client: &str, public_port: u16) -> CtMapping {
        let orig = Tuple::new(addr(client), addr(SERVER));
        let public = SocketAddr::new(PUBLIC.parse().expect("ip"), public_port);
        let m = CtMapping {
            orig,
            reply: Tuple::new(addr(SERVER), public),
        };
        self.by_tuple.insert(m.orig, m);
        self.by_tuple.insert(m.reply, m);
        m
    }
}

impl NatLookup for Conntrack {
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping> {
        if let Some(m) = self.answered.get(seen) {
            return Some(*m);
        }
        let m = self.by_tuple.get(seen).copied()?;
        self.answered.insert(m.orig, m);
        self.answered.insert(m.reply, m);
        Some(m)
    }

    fn forget(&mut self, m: &CtMapping) {
        self.answered.remove(&m.orig);
        self.answered.remove(&m.reply);
    }

    /// At a SYN the raw table is before conntrack: nothing known yet.
    fn lookup_new(&mut self, _: &Tuple) -> Option<CtMapping> {
        None
    }
}

#[derive(Clone, Copy)]
struct Seg<'a> {
    tuple: Tuple,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    payload: &'a [u8],
}

/// The MSS both ends announce in their SYNs.
const MSS: u16 = 1460;
/// Every segment carries TCP timestamps, as Linux sends them: 12 bytes of
/// options (with padding) that an MSS does not cover.
const TIMESTAMPS: usize = 12;

fn packet(s: Seg<'_>) -> Vec<u8> {
    let v4 = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets(),
        std::net::IpAddr::V6(_) => panic!("IPv4 only here"),
    };
    let mut b = PacketBuilder::ipv4(v4(s.tuple.src), v4(s.tuple.dst), 64).tcp(
        s.tuple.src.port(),
        s.tuple.dst.port(),
        s.seq,
        64240,
    );
    let timestamps = TcpOptionElement::Timestamp(s.seq, 1);
    b = if s.syn {
        b.syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(MSS), timestamps])
    } else {
        b.options(&[timestamps])
    }
    .expect("options fit");
    if let Some(ack) = s.ack {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, s.payload).expect("write");
    out
}

struct Lab {
    engine: Engine,
    ct: Conntrack,
    t: Duration,
}

impl Lab {
    fn new(cfg: Config) -> Self {
        Lab {
            engine: Engine::new(cfg),
            ct: Conntrack::default(),
            t: Duration::ZERO,
        }
    }

    fn send(&mut self, s: Seg<'_>) -> Outcome {
        self.t += Duration::from_millis(1);
        self.engine
            .process(&packet(s), self.t, Hook::Prerouting, &mut self.ct)
    }
}

/// One control connection: its client side before NAT, its server side
/// as the raw table sees replies (to the public address).
struct Session {
    m: CtMapping,
    c: u32,
    s: u32,
    /// How much longer the client's stream is on the server's side.
    shift: u32,
}

impl Session {
    fn new(lab: &mut Lab, client: &str, public_port: u16, isn: u32) -> Session {
        let m = lab.ct.masquerade(client, public_port);
        Session {
            m,
            c: isn,
            s: isn.wrapping_mul(7),
            shift: 0,
        }
    }

    fn handshake(&mut self, lab: &mut Lab) -> Vec<Outcome> {
        let (c, s) = (self.c, self.s);
        let out = vec![
            lab.send(self.client_seg(c, None, true, b"")),
            lab.send(self.server_seg(s, Some(c.wrapping_add(1)), true, b"")),
            lab.send(self.client_seg(c.wrapping_add(1), Some(s.wrapping_add(1)), false, b"")),
        ];
        self.c = c.wrapping_add(1);
        self.s = s.wrapping_add(1);
        out
    }

    fn client_seg<'a>(&self, seq: u32, ack: Option<u32>, syn: bool, p: &'a [u8]) -> Seg<'a> {
        Seg {
            tuple: self.m.orig,
            seq,
            ack,
            syn,
            payload: p,
        }
    }

    fn server_seg<'a>(&self, seq: u32, ack: Option<u32>, syn: bool, p: &'a [u8]) -> Seg<'a> {
        Seg {
            tuple: self.m.reply,
            seq,
            ack,
            syn,
            payload: p,
        }
    }

    fn client_says(&mut self, lab: &mut Lab, line: &[u8]) -> Outcome {
        let out = lab.send(self.client_seg(self.c, Some(self.s), false, line));
        self.c = self.c.wrapping_add(line.len() as u32);
        out
    }

    fn server_says(&mut self, lab: &mut Lab, line: &[u8]) -> Outcome {
        let ack = self.c.wrapping_add(self.shift);
        let out = lab.send(self.server_seg(self.s, Some(ack), false, line));
        self.s = self.s.wrapping_add(line.len() as u32);
        out
    }

    /// Client bytes that crossed the gateway without reaching ftpct.
    fn client_unseen(&mut self, line: &[u8]) {
        self.c = self.c.wrapping_add(line.len() as u32);
    }
}

fn expectations(out: &Outcome) -> Vec<SocketAddr> {
    out.events
        .iter()
        .filter_map(|e| match e {
            Event::ExpectationAdded(x) => x.nat.dst,
            _ => None,
        })
        .collect()
}

fn spoofed_syn(lab: &mut Lab, i: u32) {
    let src = SocketAddr::from(([192, 0, 2, (i % 250) as u8 + 1], 1024 + (i % 60000) as u16));
    lab.send(Seg {
        tuple: Tuple::new(src, addr(SERVER)),
        seq: i.wrapping_mul(2_654_435_761),
        ack: None,
        syn: true,
        payload: b"",
    });
}

#[test]
fn a_spoofed_syn_flood_cannot_keep_a_real_session_out() {
    let cfg = Config {
        max_flows: 1000,
        max_unestablished: 100,
        ..Config::default()
    };
    let mut lab = Lab::new(cfg);
    for i in 0..20_000 {
        spoofed_syn(&mut lab, i);
    }
    assert!(
        lab.engine.flow_count() <= 100,
        "unestablished flows bounded"
    );
    let mut real = Session::new(&mut lab, "192.0.2.200:50000", 50000, 1000);
    real.handshake(&mut lab);
    for i in 20_000..40_000 {
        spoofed_syn(&mut lab, i);
    }
    real.server_says(&mut lab, b"220 ready\r\n");
    let out = real.client_says(&mut lab, b"PORT 192,0,2,200,156,64\r\n");
    assert_eq!(expectations(&out), [addr("192.0.2.200:40000")]);
    assert!(matches!(out.verdict, Verdict::Replace(_)), "rewritten");
    assert!(lab.engine.stats().flows_evicted >= 39_000);
    assert_eq!(lab.engine.stats().flows_untracked, 0);
}

#[test]
fn a_table_full_of_real_sessions_is_reported() {
    let cfg = Config {
        max_flows: 10,
        ..Config::default()
    };
    let mut lab = Lab::new(cfg);
    for i in 0..10u16 {
        let mut s = Session::new(&mut lab, &format!("192.0.2.{}:40000", i + 1), 40000 + i, 1);
        s.handshake(&mut lab);
    }
    let mut late = Session::new(&mut lab, "192.0.2.99:40000", 41000, 1);
    let first = late.handshake(&mut lab).remove(0);
    assert!(first
        .events
        .iter()
        .any(|e| matches!(e, Event::TableFull { flows: 10, .. })));
    assert_eq!(lab.engine.stats().flows_untracked, 3, "each of its packets");
}

#[test]
fn nat_reusing_a_stale_flows_reply_tuple_starts_afresh() {
    let mut lab = Lab::new(Config::default());
    let mut old = Session::new(&mut lab, "192.0.2.10:40000", 40000, 5000);
    old.handshake(&mut lab);
    old.server_says(&mut lab, b"220 ready\r\n");
    old.client_says(&mut lab, b"USER x\r\n");
    // The old client vanishes without FIN; later NAT gives its public port
    // to another client.
    let mut new = Session::new(&mut lab, "192.0.2.11:41000", 40000, 900_000);
    new.handshake(&mut lab);
    let greeting = new.server_says(&mut lab, b"220 ready\r\n");
    assert_eq!(greeting.verdict, Verdict::Accept, "not held as a gap");
    assert_eq!(lab.engine.stats().flows_stale, 1);
    let out = new.client_says(&mut lab, b"PORT 192,0,2,11,156,64\r\n");
    assert_eq!(
        expectations(&out),
        [addr("192.0.2.11:40000")],
        "for the new client"
    );
    assert!(matches!(out.verdict, Verdict::Replace(_)));
}

#[test]
fn bytes_that_passed_unseen_do_not_stall_the_session() {
    let mut lab = Lab::new(Config::default());
    let mut s = Session::new(&mut lab, "192.0.2.10:40000", 40000, 77);
    s.handshake(&mut lab);
    s.server_says(&mut lab, b"220 ready\r\n");
    let port = s.client_says(&mut lab, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(port.verdict, Verdict::Replace(_)));
    s.shift = 2;
    s.server_says(&mut lab, b"200 ok\r\n");
    // A queue overflow: NOOP passes with fail-open; the server answers it,
    // acknowledging it.
    s.client_unseen(b"NOOP\r\n");
    let reply = s.server_says(&mut lab, b"200 noop\r\n");
    assert!(reply
        .events
        .iter()
        .any(|e| matches!(e, Event::Resynced { .. })));
    let next = s.client_says(&mut lab, b"PORT 192,0,2,10,156,65\r\n");
    assert!(
        matches!(next.verdict, Verdict::Replace(_)),
        "followed at once, rewritten: {:?}",
        next.events
    );
    assert_eq!(lab.engine.stats().dropped, 0, "nothing dropped");
}

fn mss_of(out: &Outcome, input: &[u8]) -> Option<u16> {
    let bytes = match &out.verdict {
        Verdict::Replace(b) => b.as_slice(),
        Verdict::Accept => input,
        Verdict::Drop => return None,
    };
    assert!(checksums_valid(bytes));
    TcpPacket::parse(bytes).expect("parses").mss()
}

#[test]
fn both_ends_announce_an_mss_with_room_for_a_rewrite() {
    let mut lab = Lab::new(Config::default());
    let s = Session::new(&mut lab, "192.0.2.10:40000", 40000, 1);
    let syn = s.client_seg(1, None, true, b"");
    let out = lab.send(syn);
    let want = Some(MSS - ftpct_engine::engine::MSS_HEADROOM);
    assert_eq!(mss_of(&out, &packet(syn)), want);
    let again = lab.send(syn);
    assert_eq!(
        again.verdict, out.verdict,
        "a retransmitted SYN leaves the same"
    );
    let syn_ack = s.server_seg(7, Some(2), true, b"");
    let out = lab.send(syn_ack);
    assert_eq!(mss_of(&out, &packet(syn_ack)), want);
    assert_eq!(lab.engine.stats().mss_clamped, 3);
}

#[test]
fn rewrites_never_make_a_segment_longer_than_its_receiver_accepts() {
    let mut lab = Lab::new(Config::default());
    let mut s = Session::new(&mut lab, "192.0.2.10:40000", 40000, 1);
    s.handshake(&mut lab);
    s.server_says(&mut lab, b"220 ready\r\n");
    // A client that ignores the lowered MSS: a segment 10 bytes short of
    // the server's MSS (its options count), full of PORT lines that each
    // grow by 2 bytes.
    let size = usize::from(MSS) - TIMESTAMPS - 10;
    let line = |i: usize| format!("PORT 192,0,2,10,{},{}\r\n", 160 + i / 256, i % 256);
    let mut burst = String::new();
    let mut lines = 0;
    while burst.len() + line(lines).len() + 4 <= size {
        burst.push_str(&line(lines));
        lines += 1;
    }
    burst.insert_str(0, &format!("{}\r\n", "X".repeat(size - burst.len() - 2)));
    assert_eq!(burst.len(), size);
    let out = s.client_says(&mut lab, burst.as_bytes());
    let Verdict::Replace(bytes) = &out.verdict else {
        panic!("the fitting rewrites are made: {:?}", out.verdict);
    };
    let leaving = TcpPacket::parse(bytes).expect("parses").payload().len();
    assert_eq!(
        leaving + TIMESTAMPS,
        usize::from(MSS),
        "five rewrites fit, exactly"
    );
    let kinds: Vec<&str> = out.events.iter().map(Event::kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "rewrite").count(), 5);
    let too_long = out
        .events
        .iter()
        .filter(
            |e| matches!(e, Event::Refused { refusal, .. } if refusal.rule() == "segment-too-long"),
        )
        .count();
    assert_eq!(too_long, lines - 5, "the rest are refused, and said so");
}

#[test]
fn a_segment_sent_again_over_a_gap_nobody_fills_is_followed_at_once() {
    let mut lab = Lab::new(Config::default());
    let mut s = Session::new(&mut lab, "192.0.2.10:40000", 40000, 77);
    s.handshake(&mut lab);
    s.server_says(&mut lab, b"220 ready\r\n");
    // NOOP passes unseen, and the server's acknowledgement of it too.
    s.client_unseen(b"NOOP\r\n");
    let port = b"PORT 192,0,2,10,156,64\r\n";
    let first = lab.send(s.client_seg(s.c, Some(s.s), false, port));
    assert_eq!(
        first.verdict,
        Verdict::Drop,
        "a gap: the NOOP may still come"
    );
    // The client sends the PORT again, not the NOOP: the server has it.
    let again = lab.send(s.client_seg(s.c, Some(s.s), false, port));
    assert!(
        matches!(again.verdict, Verdict::Replace(_)),
        "followed and rewritten: {:?}",
        again.events
    );
    assert_eq!(lab.engine.stats().dropped, 1);
}
