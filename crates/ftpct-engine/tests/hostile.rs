//! The engine under hostile and messy traffic: spoofed handshake floods, a
//! full flow table, NAT giving a stale flow's reply tuple to a new client,
//! bytes that passed without ftpct (queue overflow, fail-open), and
//! rewrites that would make a full-size segment too long.

use std::collections::HashMap;
use std::net::SocketAddr;

use ftpct_engine::engine::{Config, Outcome, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::nat::{CtMapping, NatLookup};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{checksums_valid, TcpPacket};
use ftpct_testkit::{addr, leaving, Control, Gateway, Segment, Side};

const SERVER: &str = "198.51.100.20:21";
const PUBLIC: &str = "198.51.100.1";

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

/// The MSS both ends announce in their SYNs.
const MSS: u16 = 1460;
/// Every segment carries TCP timestamps, as Linux sends them: 12 bytes of
/// options (with padding) that an MSS does not cover.
const TIMESTAMPS: usize = 12;

/// The engine with conntrack as it would read it; 1 ms between packets.
type Lab = Gateway<Conntrack>;

fn lab_with(cfg: Config) -> Lab {
    Gateway::new(cfg, Conntrack::default())
}

/// One control connection: its client side before NAT, its server side
/// as the raw table sees replies (to the public address). Both ends
/// announce MSS and send timestamps; the server's ISN is seven times the
/// client's.
fn session(lab: &mut Lab, client: &str, public_port: u16, isn: u32) -> Control {
    let m = lab.nat.masquerade(client, public_port);
    Control::new(m.orig, m.reply, isn, isn.wrapping_mul(7))
        .with_mss(MSS)
        .with_timestamps()
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
    let seq = i.wrapping_mul(2_654_435_761);
    lab.send(
        &Segment::new(Tuple::new(src, addr(SERVER)), seq)
            .syn()
            .mss(MSS)
            .timestamps(seq, 1),
    );
}

#[test]
fn a_spoofed_syn_flood_cannot_keep_a_real_session_out() {
    let cfg = Config {
        max_flows: 1000,
        max_unestablished: 100,
        ..Config::default()
    };
    let mut lab = lab_with(cfg);
    for i in 0..20_000 {
        spoofed_syn(&mut lab, i);
    }
    assert!(
        lab.engine.flow_count() <= 100,
        "unestablished flows bounded"
    );
    let mut real = session(&mut lab, "192.0.2.200:50000", 50000, 1000);
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
    let mut lab = lab_with(cfg);
    for i in 0..10u16 {
        let mut s = session(&mut lab, &format!("192.0.2.{}:40000", i + 1), 40000 + i, 1);
        s.handshake(&mut lab);
    }
    let mut late = session(&mut lab, "192.0.2.99:40000", 41000, 1);
    let [first, ..] = late.handshake(&mut lab);
    assert!(first
        .events
        .iter()
        .any(|e| matches!(e, Event::TableFull { flows: 10, .. })));
    assert_eq!(lab.engine.stats().flows_untracked, 3, "each of its packets");
}

#[test]
fn nat_reusing_a_stale_flows_reply_tuple_starts_afresh() {
    let mut lab = lab_with(Config::default());
    let mut old = session(&mut lab, "192.0.2.10:40000", 40000, 5000);
    old.handshake(&mut lab);
    old.server_says(&mut lab, b"220 ready\r\n");
    old.client_says(&mut lab, b"USER x\r\n");
    // The old client vanishes without FIN; later NAT gives its public port
    // to another client.
    let mut new = session(&mut lab, "192.0.2.11:41000", 40000, 900_000);
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
    let mut lab = lab_with(Config::default());
    let mut s = session(&mut lab, "192.0.2.10:40000", 40000, 77);
    s.handshake(&mut lab);
    s.server_says(&mut lab, b"220 ready\r\n");
    let port = s.client_says(&mut lab, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(port.verdict, Verdict::Replace(_)));
    s.server_says(&mut lab, b"200 ok\r\n");
    // A queue overflow: NOOP passes with fail-open; the server answers it,
    // acknowledging it.
    s.passed_unseen(Side::Client, b"NOOP\r\n");
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
    let bytes = leaving(input, &out.verdict)?;
    assert!(checksums_valid(bytes));
    TcpPacket::parse(bytes).expect("parses").mss()
}

#[test]
fn both_ends_announce_an_mss_with_room_for_a_rewrite() {
    let mut lab = lab_with(Config::default());
    let s = session(&mut lab, "192.0.2.10:40000", 40000, 1);
    let syn = s.syn(Side::Client, &lab.engine);
    let out = lab.send(&syn);
    let want = Some(MSS - ftpct_engine::engine::MSS_HEADROOM);
    assert_eq!(mss_of(&out, &syn.build()), want);
    let again = lab.send(&syn);
    assert_eq!(
        again.verdict, out.verdict,
        "a retransmitted SYN leaves the same"
    );
    let syn_ack = s.syn(Side::Server, &lab.engine);
    let out = lab.send(&syn_ack);
    assert_eq!(mss_of(&out, &syn_ack.build()), want);
    assert_eq!(lab.engine.stats().mss_clamped, 3);
}

#[test]
fn rewrites_never_make_a_segment_longer_than_its_receiver_accepts() {
    let mut lab = lab_with(Config::default());
    let mut s = session(&mut lab, "192.0.2.10:40000", 40000, 1);
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
    let mut lab = lab_with(Config::default());
    let mut s = session(&mut lab, "192.0.2.10:40000", 40000, 77);
    s.handshake(&mut lab);
    s.server_says(&mut lab, b"220 ready\r\n");
    // NOOP passes unseen, and the server's acknowledgement of it too.
    s.passed_unseen(Side::Client, b"NOOP\r\n");
    let port = b"PORT 192,0,2,10,156,64\r\n";
    let first = lab.send(&s.segment(Side::Client, &lab.engine).payload(port));
    assert_eq!(
        first.verdict,
        Verdict::Drop,
        "a gap: the NOOP may still come"
    );
    // The client sends the PORT again, not the NOOP: the server has it.
    let again = lab.send(&s.segment(Side::Client, &lab.engine).payload(port));
    assert!(
        matches!(again.verdict, Verdict::Replace(_)),
        "followed and rewritten: {:?}",
        again.events
    );
    assert_eq!(lab.engine.stats().dropped, 1);
}
