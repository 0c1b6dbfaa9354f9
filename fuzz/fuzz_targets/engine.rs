//! Fuzz target: the whole engine, fed real TCP/IP packets of one to three
//! FTP control connections (and some raw byte strings), must never panic
//! and must keep its invariants after every packet.
//!
//! The fuzz input is a small program (all numbers are bytes):
//!
//! ```text
//! header   [mode] [cfg]
//!   mode   bits 0-1: NAT (0 none, 1 SNAT, 2 DNAT, 3 SNAT+DNAT); bit 7: IPv6
//!   cfg    bits 0-1: connections - 1 (3 reads as 1); bit 2: tight limits;
//!          bit 3: max_line 64; bit 4: FXP allowed for 203.0.113.0/24;
//!          bit 5: privileged data ports allowed; bit 6: report lines;
//!          bit 7: ISNs just before the 2^32 wrap
//! record   [op] [flags] [delta] [len] payload (len bytes, fewer at the end)
//!   op     bits 0-1: connection (modulo the count); bit 2: 0 client to
//!          server, 1 server to client; bits 3-5: kind
//!   flags  bit 0 ACK, 1 FIN, 2 RST, 3 a SACK block, 4 the address of the
//!          wrong side of the NAT, 5 (kinds other than 5) spoofed (client:
//!          from its public address; server: from the address the client
//!          talks to, to the client's own); in kind 5, bits 5-7 choose the
//!          bit it flips
//!   delta  i8: sequence number relative to the sender's next byte
//! kinds    0-2 segment; 3 SYN (client) or SYN-ACK (server), delta 0 keeps
//!          the ISN, else a new one; 4 the payload as raw IP bytes; 5 the
//!          segment with one bit flipped; 6 a data-connection SYN to pending
//!          expectation number `delta` (from a wrong address if bit 2 of
//!          op is set); 7 the clock jumps `len` * 4 s
//! ```
//!
//! Every record advances the clock by 1 ms. Senders are consistent TCP
//! senders: bytes sent again at a position are the bytes first sent there,
//! and nothing is sent after a FIN. Set `ENGINE_FUZZ_TRACE` to print every
//! packet, verdict and event of a run.
//!
//! Invariants checked after each packet ([`run`] panics when one fails):
//! - a `Replace` verdict parses as TCP, has valid checksums and the tuple
//!   of the input;
//! - its payload differs from the input only on a flow whose direction
//!   had a PORT/EPRT/227/229 line rewritten, or when a held line head is
//!   released in front of the segment (then the segment is a suffix);
//! - while all packets came from consistent senders, the far side never
//!   gets two different bytes at one sequence position;
//! - the flow and expectation tables stay within the configured limits, and
//!   the events (which drive the kernel) account for every entry;
//! - a data SYN from the announced peer to a pending expectation matches it.
//!
//! `tests/fuzz_corpus_engine.rs` includes this file and runs the corpus
//! through [`run`] as an ordinary test.
#![cfg_attr(not(test), no_main)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ftpct_engine::engine::{Config, Engine, Input, Origin, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::expect::Expectation;
use ftpct_engine::nat::StaticNat;
use ftpct_engine::policy::Policy;
use ftpct_engine::seqadj::seq_after;
use ftpct_engine::stream::DropReason;
use ftpct_engine::tuple::Dir;
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{checksums_valid, TcpPacket};
use ftpct_testkit::{drive, Received, Segment};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// Record kinds (bits 3-5 of `op`).
pub const KIND_SEGMENT: u8 = 0;
pub const KIND_SYN: u8 = 3;
pub const KIND_RAW: u8 = 4;
pub const KIND_FLIP: u8 = 5;
pub const KIND_DATA_SYN: u8 = 6;
pub const KIND_CLOCK: u8 = 7;

/// Record flags.
pub const F_ACK: u8 = 1;
pub const F_FIN: u8 = 2;
pub const F_RST: u8 = 4;
pub const F_SACK: u8 = 8;
pub const F_WRONG_SIDE: u8 = 16;
pub const F_SPOOF: u8 = 32;

/// What a run did, for tests that want a seed to keep exercising a path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub packets: usize,
    pub replaced: usize,
    pub dropped: usize,
    pub rewrites: usize,
    pub expectations: usize,
    pub data_matched: usize,
}

/// One control connection's addresses as the gateway sees its packets.
struct Conn {
    c2s: Tuple,
    s2c: Tuple,
    /// The same packets from the other side of the NAT (pre-NAT forms).
    c2s_wrong: Tuple,
    s2c_wrong: Tuple,
    c2s_spoof: Tuple,
    s2c_spoof: Tuple,
    senders: [Sender; 2],
}

/// A TCP sender that keeps what it sent, so that retransmissions repeat it.
struct Sender {
    isn: u32,
    next: u32,
    sent: HashMap<u32, u8>,
    /// Where its FIN is, once sent: no data after it.
    fin: Option<u32>,
}

impl Sender {
    fn new(isn: u32) -> Self {
        Sender {
            isn,
            next: isn.wrapping_add(1),
            sent: HashMap::new(),
            fin: None,
        }
    }

    /// The segment a consistent sender sends at `seq`: positions already
    /// sent keep their old byte, nothing goes past its FIN, and a FIN only
    /// comes at the end of the stream. Returns the bytes and the FIN flag.
    fn send(&mut self, seq: u32, payload: &[u8], fin: bool) -> (Vec<u8>, bool) {
        let mut out = payload.to_vec();
        if let Some(f) = self.fin {
            let room = if seq_after(f, seq) {
                f.wrapping_sub(seq)
            } else {
                0
            };
            out.truncate(room as usize);
        }
        for (i, b) in out.iter_mut().enumerate() {
            let at = seq.wrapping_add(i as u32);
            *b = *self.sent.entry(at).or_insert(*b);
        }
        let end = seq.wrapping_add(out.len() as u32);
        if seq_after(end, self.next) {
            self.next = end;
        }
        let fin = fin
            && match self.fin {
                Some(f) => f == end,
                None if end == self.next => {
                    self.fin = Some(end);
                    self.next = end.wrapping_add(1);
                    true
                }
                None => false,
            };
        (out, fin)
    }
}

/// The NAT rules and addresses of one mode.
struct Topology {
    snat: Vec<&'static str>,
    dnat: Vec<&'static str>,
    client: &'static str,
    /// Where clients send to.
    server_seen: &'static str,
    /// Where server packets come from.
    server_real: &'static str,
    /// Where server packets go to, when the client is SNATed.
    client_public: Option<&'static str>,
}

fn topology(mode: u8) -> Topology {
    let v6 = mode & 0x80 != 0;
    let t = |snat: Vec<&'static str>, dnat, client, seen, real, public| Topology {
        snat,
        dnat,
        client,
        server_seen: seen,
        server_real: real,
        client_public: public,
    };
    match (mode & 3, v6) {
        (0, false) => t(
            vec![],
            vec![],
            "192.0.2.10",
            "198.51.100.20",
            "198.51.100.20",
            None,
        ),
        (1, false) => t(
            vec!["192.0.2.0/24=198.51.100.1"],
            vec![],
            "192.0.2.10",
            "198.51.100.20",
            "198.51.100.20",
            Some("198.51.100.1"),
        ),
        (2, false) => t(
            vec![],
            vec!["198.51.100.1=192.0.2.20"],
            "198.51.100.10",
            "198.51.100.1",
            "192.0.2.20",
            None,
        ),
        (_, false) => t(
            vec!["192.0.2.0/24=198.51.100.1"],
            vec!["203.0.113.1=198.51.100.20"],
            "192.0.2.10",
            "203.0.113.1",
            "198.51.100.20",
            Some("198.51.100.1"),
        ),
        (0, true) => t(
            vec![],
            vec![],
            "2001:db8:1::10",
            "2001:db8:2::20",
            "2001:db8:2::20",
            None,
        ),
        (1, true) => t(
            vec!["2001:db8:1::/64=2001:db8:2::1"],
            vec![],
            "2001:db8:1::10",
            "2001:db8:2::20",
            "2001:db8:2::20",
            Some("2001:db8:2::1"),
        ),
        (2, true) => t(
            vec![],
            vec!["2001:db8:2::1=2001:db8:1::20"],
            "2001:db8:2::10",
            "2001:db8:2::1",
            "2001:db8:1::20",
            None,
        ),
        (_, true) => t(
            vec!["2001:db8:1::/64=2001:db8:2::1"],
            vec!["2001:db8:3::1=2001:db8:2::20"],
            "2001:db8:1::10",
            "2001:db8:3::1",
            "2001:db8:2::20",
            Some("2001:db8:2::1"),
        ),
    }
}

fn parse_rules<R: std::str::FromStr>(rules: &[&str]) -> Vec<R> {
    rules
        .iter()
        .map(|r| r.parse().ok().expect("harness rule"))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("harness address")
}

/// The `i`th address after `base`.
fn nth(base: IpAddr, i: u8) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(u32::from(i)).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(u128::from(i)).into()),
    }
}

fn conns(topo: &Topology, count: u8, wrap: bool) -> Vec<Conn> {
    (0..count)
        .map(|i| {
            let port = 40000 + u16::from(i);
            let client = SocketAddr::new(nth(ip(topo.client), i), port);
            let seen = SocketAddr::new(ip(topo.server_seen), 21);
            let real = SocketAddr::new(ip(topo.server_real), 21);
            let client_public = topo
                .client_public
                .map_or(client, |p| SocketAddr::new(ip(p), port));
            let isn = |base: u32| {
                if wrap {
                    base.wrapping_sub(0x60 * (u32::from(i) + 1))
                } else {
                    base.wrapping_add(0x0100_0000 * u32::from(i))
                }
            };
            Conn {
                c2s: Tuple::new(client, seen),
                s2c: Tuple::new(real, client_public),
                c2s_wrong: Tuple::new(client, real),
                s2c_wrong: Tuple::new(real, client),
                c2s_spoof: Tuple::new(client_public, seen),
                s2c_spoof: Tuple::new(seen, client),
                senders: [Sender::new(isn(0x1000_0000)), Sender::new(isn(0x7000_0000))],
            }
        })
        .collect()
}

fn config(cfg: u8) -> Config {
    let mut c = Config {
        report_lines: cfg & 0x40 != 0,
        idle_timeout: Duration::from_secs(900),
        ..Config::default()
    };
    if cfg & 0x04 != 0 {
        c.max_flows = 2;
        c.max_expect_total = 3;
        c.max_expect_per_session = 2;
    } else {
        c.max_flows = 16;
        c.max_expect_total = 32;
        c.max_expect_per_session = 8;
    }
    if cfg & 0x08 != 0 {
        c.max_line = 64;
    }
    c.policy = Policy {
        min_data_port: if cfg & 0x20 != 0 { 0 } else { 1024 },
        allow_fxp: if cfg & 0x10 != 0 {
            vec!["203.0.113.0/24".parse().expect("net")]
        } else {
            Vec::new()
        },
    };
    c
}

/// Per flow direction: what the harness knows of the engine's decisions.
#[derive(Default)]
struct FlowDirState {
    rewritten: bool,
    held: bool,
    /// The bytes that left the gateway, by outside sequence position.
    far: Received,
}

/// The harness state besides the engine.
struct Checker {
    cfg: Config,
    flows: HashSet<Tuple>,
    dirs: HashMap<(Tuple, Dir), FlowDirState>,
    /// Pending expectations as the events told them, keyed as the
    /// engine's table (destination and peer).
    expects: BTreeMap<(SocketAddr, IpAddr), Expectation>,
    /// False once a raw or corrupted packet went in.
    consistent: bool,
    summary: Summary,
}

impl Checker {
    fn absorb(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::FlowNew { mapping, .. } => {
                    assert!(
                        self.flows.insert(mapping.orig),
                        "FlowNew for a flow already tracked: {}",
                        mapping.orig
                    );
                }
                Event::FlowClosed { flow } => {
                    assert!(self.flows.remove(flow), "FlowClosed for unknown {flow}");
                    self.dirs.retain(|(f, _), _| f != flow);
                }
                Event::Rewritten {
                    flow,
                    dir,
                    before,
                    after,
                } => {
                    let upper = before.to_ascii_uppercase();
                    let announces = match dir {
                        Dir::Orig => upper.contains("PORT") || upper.contains("EPRT"),
                        Dir::Reply => upper.contains("227") || upper.contains("229"),
                    };
                    assert!(announces, "rewrote a non-announcement {dir:?}: {before:?}");
                    assert_ne!(before, after, "a rewrite that changes nothing");
                    self.dirs.entry((*flow, *dir)).or_default().rewritten = true;
                    self.summary.rewrites += 1;
                }
                Event::Dropped {
                    flow,
                    dir,
                    reason: DropReason::HeldLineHead,
                    ..
                } => {
                    self.dirs.entry((*flow, *dir)).or_default().held = true;
                }
                Event::ExpectationAdded(exp) => {
                    self.expects.insert((exp.dst, exp.peer), exp.clone());
                    self.summary.expectations += 1;
                }
                Event::ExpectationRemoved { exp, .. } => {
                    assert!(
                        self.expects.remove(&(exp.dst, exp.peer)).is_some(),
                        "removed an unknown expectation {exp}"
                    );
                }
                Event::DataMatched { exp, .. } => {
                    assert!(
                        self.expects.remove(&(exp.dst, exp.peer)).is_some(),
                        "matched an unknown expectation {exp}"
                    );
                    self.summary.data_matched += 1;
                }
                _ => {}
            }
        }
    }

    fn check_tables(&self, engine: &Engine) {
        assert!(engine.flow_count() <= self.cfg.max_flows, "flow limit");
        assert!(
            engine.expectation_count() <= self.cfg.max_expect_total,
            "expectation limit"
        );
        assert_eq!(engine.flow_count(), self.flows.len(), "flows vs events");
        assert_eq!(
            engine.expectation_count(),
            self.expects.len(),
            "expectations vs events"
        );
        let mut per_master: HashMap<Tuple, usize> = HashMap::new();
        for e in self.expects.values() {
            *per_master.entry(e.master).or_default() += 1;
        }
        assert!(
            per_master
                .values()
                .all(|n| *n <= self.cfg.max_expect_per_session),
            "per-session expectation limit"
        );
    }

    /// What the sender of a packet with tuple `t` acknowledges of its
    /// peer's stream: the bytes that reached it in order (a real receiver
    /// never acknowledges a segment the gateway dropped). Everything the
    /// peer sent, when the far side is not followed (after a raw or
    /// corrupted packet) or the flow is not tracked.
    fn received_upto(&self, engine: &Engine, t: &Tuple, peer: &Sender) -> u32 {
        let everything = engine.acknowledged_by(t, peer.next);
        let Some((m, d)) = engine.mapping_of(t).filter(|_| self.consistent) else {
            return everything;
        };
        let start = engine.acknowledged_by(t, peer.isn.wrapping_add(1));
        self.dirs
            .get(&(m.orig, opposite(d)))
            .map_or(start, |state| state.far.end_from(start))
    }

    /// Checks a verdict on packet `input`.
    fn check_verdict(&mut self, engine: &Engine, input: &[u8], verdict: &Verdict) {
        let out = match verdict {
            Verdict::Accept => input,
            Verdict::Drop => {
                self.summary.dropped += 1;
                return;
            }
            Verdict::Replace(out) => {
                self.summary.replaced += 1;
                out
            }
        };
        let Ok(out_pkt) = TcpPacket::parse(out) else {
            assert!(
                !matches!(verdict, Verdict::Replace(_)),
                "a Replace verdict that is not TCP"
            );
            return;
        };
        let in_pkt = TcpPacket::parse(input).expect("the engine only rewrites TCP");
        let key = engine.mapping_of(&in_pkt.tuple).map(|(m, d)| (m.orig, d));
        if let Verdict::Replace(bytes) = verdict {
            assert!(checksums_valid(bytes), "bad checksums in a Replace");
            assert_eq!(out_pkt.tuple, in_pkt.tuple, "a Replace changed the tuple");
            let Some(key) = key else {
                panic!("a Replace on a packet of no tracked flow");
            };
            let (orig, dir) = key;
            let state = |d: Dir| self.dirs.get(&(orig, d));
            let own_rewritten = state(dir).is_some_and(|s| s.rewritten);
            let any_rewritten = own_rewritten || state(opposite(dir)).is_some_and(|s| s.rewritten);
            let (inp, outp) = (in_pkt.payload(), out_pkt.payload());
            // Without a rewrite a payload only changes by a held line head
            // released in front of it, and by its incomplete last line cut
            // off to be held: the output is that head, then the first
            // `kept` bytes of the input (no FIN on a cut segment).
            if inp != outp && !own_rewritten {
                let kept = (1..=inp.len())
                    .rev()
                    .find(|&k| outp.ends_with(&inp[..k]))
                    .unwrap_or(0);
                let head = outp.len() - kept;
                assert!(
                    kept > 0
                        && (head == 0 || state(dir).is_some_and(|s| s.held))
                        && (kept == inp.len() || !in_pkt.flags.fin),
                    "payload changed without an announcement rewrite: {inp:?} -> {outp:?}"
                );
                assert_eq!(
                    out_pkt.seq,
                    in_pkt.seq.wrapping_sub(head as u32),
                    "held head seq"
                );
                if kept < inp.len() {
                    // The cut-off line is held: it leaves in front of a later segment.
                    self.dirs.entry((orig, dir)).or_default().held = true;
                }
            }
            if !any_rewritten {
                assert_eq!(out_pkt.ack, in_pkt.ack, "ack changed without a rewrite");
            }
        }
        if self.consistent {
            if let Some(key) = key {
                let far = &mut self.dirs.entry(key).or_default().far;
                // Data on a SYN starts after it.
                let start = out_pkt.seq.wrapping_add(u32::from(out_pkt.flags.syn));
                let recorded = far.record(start, out_pkt.payload());
                assert_eq!(recorded, Ok(()), "two different bytes left at one seq");
            }
        }
    }
}

/// A packet for trace output.
fn show(bytes: &[u8]) -> String {
    match TcpPacket::parse(bytes) {
        Ok(p) => format!(
            "{} [{}] seq {} ack {} {:?}",
            p.tuple,
            p.flags,
            p.seq,
            p.ack,
            String::from_utf8_lossy(p.payload())
        ),
        Err(e) => format!("{} bytes, not TCP: {e}", bytes.len()),
    }
}

fn opposite(d: Dir) -> Dir {
    match d {
        Dir::Orig => Dir::Reply,
        Dir::Reply => Dir::Orig,
    }
}

/// Runs one fuzz input through a fresh engine, checking the invariants.
pub fn run(data: &[u8]) -> Summary {
    let (mode, cfg_bits, mut rest) = match data {
        [m, c, rest @ ..] => (*m, *c, rest),
        _ => return Summary::default(),
    };
    let topo = topology(mode);
    let count = 1 + (cfg_bits & 3) % 3;
    let mut conns = conns(&topo, count, cfg_bits & 0x80 != 0);
    let mut nat = StaticNat::new(parse_rules(&topo.snat), parse_rules(&topo.dnat));
    let cfg = config(cfg_bits);
    let mut engine = Engine::new(cfg.clone());
    let mut checker = Checker {
        cfg,
        flows: HashSet::new(),
        dirs: HashMap::new(),
        expects: BTreeMap::new(),
        consistent: true,
        summary: Summary::default(),
    };
    let mut now = Duration::from_secs(1);
    // Set ENGINE_FUZZ_TRACE to see every packet, verdict and event.
    let trace = std::env::var_os("ENGINE_FUZZ_TRACE").is_some();
    while let [op, flags, delta, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(1);
        let kind = (op >> 3) & 7;
        let delta = *delta as i8;
        let index = usize::from(op & 3) % conns.len();
        let conn = &mut conns[index];
        let server = op & 4 != 0;
        let mut new_isn = false;
        let packet = match kind {
            KIND_CLOCK => {
                now += Duration::from_secs(4 * u64::from(*len));
                let events = drive::input(&mut engine, now, Input::Timeout).events;
                checker.absorb(&events);
                checker.check_tables(&engine);
                continue;
            }
            KIND_RAW => {
                checker.consistent = false;
                payload.to_vec()
            }
            KIND_DATA_SYN => {
                let Some(exp) = checker
                    .expects
                    .values()
                    .nth(usize::from(delta as u8) % checker.expects.len().max(1))
                    .cloned()
                else {
                    continue;
                };
                let peer = if server { nth(exp.peer, 1) } else { exp.peer };
                let t = Tuple::new(SocketAddr::new(peer, 30000 + u16::from(*len)), exp.dst);
                let pkt = Segment::new(t, 1).syn().build();
                let outcome = drive::process(&mut engine, &pkt, now, Origin::Network, &mut nat);
                checker.summary.packets += 1;
                let matched = outcome.events.iter().any(|e| {
                    matches!(e, Event::DataMatched { exp: m, .. } if m == &exp)
                        || matches!(e, Event::ExpectationRemoved { exp: m, .. } if m == &exp)
                });
                assert_eq!(
                    matched, !server,
                    "data SYN {t} against pending expectation {exp}"
                );
                checker.absorb(&outcome.events);
                checker.check_verdict(&engine, &pkt, &outcome.verdict);
                checker.check_tables(&engine);
                continue;
            }
            _ => {
                let dir = usize::from(server);
                let spoof = flags & F_SPOOF != 0 && kind != KIND_FLIP;
                let t = match (server, spoof, flags & F_WRONG_SIDE != 0) {
                    (false, true, _) => conn.c2s_spoof,
                    (true, true, _) => conn.s2c_spoof,
                    (false, false, false) => conn.c2s,
                    (false, false, true) => conn.c2s_wrong,
                    (true, false, false) => conn.s2c,
                    (true, false, true) => conn.s2c_wrong,
                };
                let syn = kind == KIND_SYN;
                let s = &mut conn.senders[dir];
                let (seq, data_start) = if syn {
                    if delta != 0 {
                        new_isn = true;
                        *s = Sender::new(s.next.wrapping_add((i32::from(delta) << 24) as u32));
                    }
                    // Data on a SYN starts after it.
                    (s.isn, s.isn.wrapping_add(1))
                } else {
                    let seq = s.next.wrapping_add_signed(i32::from(delta));
                    (seq, seq)
                };
                let (bytes, fin) = s.send(data_start, payload, flags & F_FIN != 0);
                let ack_pos = checker.received_upto(&engine, &t, &conn.senders[1 - dir]);
                // A client SYN carries no ACK; a server's SYN always does.
                let ack = if syn { server } else { flags & F_ACK != 0 }.then_some(ack_pos);
                let block = [(ack_pos.wrapping_add(8), ack_pos.wrapping_add(16))];
                let sack: &[(u32, u32)] = if flags & F_SACK != 0 && ack.is_some() {
                    &block
                } else {
                    &[]
                };
                let rst = flags & F_RST != 0;
                let mut pkt = Segment {
                    ack,
                    syn,
                    fin,
                    rst,
                    sack,
                    ..Segment::new(t, seq)
                }
                .payload(&bytes)
                .build();
                if kind == KIND_FLIP {
                    checker.consistent = false;
                    let at = usize::from(delta as u8) % pkt.len();
                    pkt[at] ^= 1 << (flags >> 5);
                }
                pkt
            }
        };
        if new_isn {
            // A new ISN in this direction: its positions start afresh. The
            // engine keeps the flow (and its edits) until the flow is
            // really replaced (a FlowClosed event), so only the bytes seen
            // are forgotten here.
            let seen = TcpPacket::parse(&packet).map(|p| p.tuple);
            if let Some((m, d)) = seen.ok().and_then(|t| engine.mapping_of(&t)) {
                if let Some(state) = checker.dirs.get_mut(&(m.orig, d)) {
                    state.far.clear();
                }
            }
        }
        let outcome = drive::process(&mut engine, &packet, now, Origin::Network, &mut nat);
        if trace {
            eprintln!(
                "#{} {:?} -> {:?}",
                checker.summary.packets,
                show(&packet),
                outcome.verdict
            );
            for e in &outcome.events {
                eprintln!("    {e:?}");
            }
        }
        checker.summary.packets += 1;
        checker.absorb(&outcome.events);
        checker.check_verdict(&engine, &packet, &outcome.verdict);
        checker.check_tables(&engine);
    }
    checker.summary
}
