//! Offline replay: a capture taken on the inside of a gateway (the side of
//! the NATed hosts) runs through the engine as the gateway would see it,
//! and comes out as the far side of the gateway would see it.
//!
//! Packets from the inside enter the gateway as captured: the engine
//! decides, and the result leaves with the NAT applied to its headers.
//! Packets toward the inside were captured after the gateway: their
//! arriving form is rebuilt (NAT undone, acknowledgements put back in the
//! numbering the far side uses) and that form is both fed to the engine and
//! written out, since it is what the far side sent. The engine's verdict on
//! it must give back the captured packet (sequence and acknowledgement
//! numbers, SACK blocks, flags, payload): every difference is reported as a
//! [`Mismatch`].
//!
//! The replay carries out the engine's commands the way the kernel would
//! for its own output: a data connection's NAT, from `CreateRelated`,
//! translates that connection's headers.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::driver::{self, DriverKernel, NoKernel};
use crate::offline::capture::{Capture, Frame};
use crate::offline::selection::Selection;
use ftpct_engine::engine::{
    Answer, CommandOutcome, Config, Engine, Input, KernelNote, Origin, Outcome, Question, Verdict,
};
use ftpct_engine::event::{Event, Stats};
use ftpct_engine::nat::{DnatRule, NatLookup, SnatRule, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{Rebuild, TcpPacket};
use ftpct_engine::Command;

/// An event and when it happened (capture time).
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub time: Duration,
    pub event: Event,
}

/// A packet toward the inside that the engine's verdict does not turn
/// into the packet captured there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub time: Duration,
    /// The packet's tuple as captured.
    pub tuple: Tuple,
    /// What differs: "seq", "ack", "sack", "flags", "payload" or "dropped".
    pub field: &'static str,
    pub engine: String,
    pub captured: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} toward the inside: {} {} after the engine, {} in the capture",
            self.tuple, self.field, self.engine, self.captured
        )
    }
}

/// What a replay produced.
#[derive(Debug)]
pub struct Replayed {
    /// The capture as the far side of the gateway sees it.
    pub far_side: Vec<Frame>,
    pub events: Vec<TimedEvent>,
    pub stats: Stats,
    /// Packets toward the inside that came out of the engine otherwise
    /// than captured (none when the engine matches the gateway).
    pub mismatches: Vec<Mismatch>,
}

/// Header translations kept at most (four per connection: both tuples,
/// both sides): past it new connections are still decided, but their
/// far side is not rewritten (a live monitor stays bounded in memory).
const MAX_TRANSLATIONS: usize = 400_000;
/// How often translations unused for the engine's idle timeout go.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The emulated gateway: the engine, the NAT rules, and the header
/// translations learned from the engine's decisions. Frames go in one at
/// a time (a capture file, or a live interface for `ftpct monitor`).
pub struct Gateway {
    engine: Engine,
    nat: StaticNat,
    /// Tuple as captured -> tuple on the far side, both ways, and when
    /// it was last used.
    far: HashMap<Tuple, (Tuple, Duration)>,
    next_prune: Duration,
    /// The engine's timers have been given a time (see `timers_until`).
    clock_started: bool,
    /// Selective queueing emulated (`Config::selective`): the engine sees
    /// only what the kernel's rules would queue.
    selection: Option<Selection>,
}

/// What one frame gave.
#[derive(Debug, Default)]
pub struct Passed {
    /// The frame as the far side of the gateway sees it (None: dropped).
    pub far_side: Option<Frame>,
    pub events: Vec<Event>,
    pub mismatch: Option<Mismatch>,
    /// The packet came from the far side (the frame is its delivered form).
    pub toward_inside: bool,
}

/// Watches the gateway frame by frame (the HTML ladder of `--html`).
pub trait Observer {
    /// A frame as captured, and what the gateway made of it.
    fn frame(&mut self, captured: &Frame, passed: &Passed);
    /// What the engine's timers did at `now`.
    fn timers(&mut self, now: Duration, events: &[Event]);
}

/// Nobody watching.
impl Observer for () {
    fn frame(&mut self, _: &Frame, _: &Passed) {}
    fn timers(&mut self, _: Duration, _: &[Event]) {}
}

/// Replays `capture` through a gateway with the given NAT rules.
pub fn replay(
    capture: &Capture,
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    cfg: Config,
) -> Replayed {
    replay_watched(capture, snat, dnat, cfg, &mut ())
}

/// [`replay`], showing every frame and timer to `observer`.
pub fn replay_watched(
    capture: &Capture,
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    cfg: Config,
    observer: &mut dyn Observer,
) -> Replayed {
    let mut gw = Gateway::new(snat, dnat, cfg);
    let mut far_side = Vec::with_capacity(capture.frames.len());
    let mut events = Vec::new();
    let mut mismatches = Vec::new();
    for frame in &capture.frames {
        for (at, fired) in gw.timers_until(frame.time) {
            observer.timers(at, &fired);
            events.extend(
                fired
                    .into_iter()
                    .map(|event| TimedEvent { time: at, event }),
            );
        }
        let passed = gw.frame(frame);
        observer.frame(frame, &passed);
        far_side.extend(passed.far_side);
        mismatches.extend(passed.mismatch);
        events.extend(passed.events.into_iter().map(|event| TimedEvent {
            time: frame.time,
            event,
        }));
    }
    let last = capture.frames.last().map_or(Duration::ZERO, |f| f.time);
    let tail = gw.tick(last + Duration::from_secs(1));
    observer.timers(last, &tail);
    events.extend(
        tail.into_iter()
            .map(|event| TimedEvent { time: last, event }),
    );
    Replayed {
        far_side,
        events,
        stats: gw.stats().clone(),
        mismatches,
    }
}

impl Gateway {
    /// A gateway doing this NAT; every line is reported.
    pub fn new(snat: Vec<SnatRule>, dnat: Vec<DnatRule>, mut cfg: Config) -> Self {
        cfg.report_lines = true;
        // Offline: ftpct's own fix-ups, nothing kept in conntrack.
        cfg.kernel_fixups = false;
        cfg.keep_state = false;
        let selection = cfg.selective.then(|| Selection::new(&cfg.control_ports));
        Gateway {
            engine: Engine::new(cfg),
            nat: StaticNat::new(snat, dnat),
            far: HashMap::new(),
            next_prune: PRUNE_EVERY,
            clock_started: false,
            selection,
        }
    }

    pub fn stats(&self) -> &Stats {
        self.engine.stats()
    }

    /// Runs the engine's timers at `now` (frame time); forgets header
    /// translations unused for the engine's idle timeout.
    pub fn tick(&mut self, now: Duration) -> Vec<Event> {
        self.prune(now);
        let mut kernel = RulesKernel {
            nat: &mut self.nat,
            selection: self.selection.as_mut(),
        };
        driver::input(&mut self.engine, &mut kernel, now, Input::Timeout).events
    }

    /// The engine's timers due by `now` (a frame's time), each run at its
    /// deadline, in order: what those that did something gave, and when.
    pub fn timers_until(&mut self, now: Duration) -> Vec<(Duration, Vec<Event>)> {
        let mut kernel = RulesKernel {
            nat: &mut self.nat,
            selection: self.selection.as_mut(),
        };
        if !std::mem::replace(&mut self.clock_started, true) {
            driver::start_clock(&mut self.engine, &mut kernel, now);
            return Vec::new();
        }
        driver::timers_until(&mut self.engine, &mut kernel, now)
            .into_iter()
            .map(|(at, fired)| (at, fired.events))
            .filter(|(_, events)| !events.is_empty())
            .collect()
    }

    /// Forgets header translations unused for the engine's idle timeout
    /// (looked at every [`PRUNE_EVERY`]).
    pub fn prune(&mut self, now: Duration) {
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            let idle = self.engine.config().idle_timeout;
            self.far
                .retain(|_, (_, used)| now.saturating_sub(*used) <= idle);
        }
    }

    /// One frame through the gateway.
    pub fn frame(&mut self, frame: &Frame) -> Passed {
        let Ok(pkt) = TcpPacket::parse(&frame.ip) else {
            // Not TCP: the gateway forwards it, we have nothing to say.
            return Passed {
                far_side: Some(frame.clone()),
                ..Passed::default()
            };
        };
        if self.is_toward_inside(&pkt.tuple) {
            self.toward_inside(frame, &pkt)
        } else {
            self.leaving_inside(frame, &pkt)
        }
    }

    fn is_toward_inside(&self, t: &Tuple) -> bool {
        self.nat.is_inside(t.dst.ip()) && !self.nat.is_inside(t.src.ip())
    }

    /// The engine's decision on `ip`, or an accept the engine never made
    /// when the kernel's rules would not queue the packet.
    fn decide(&mut self, ip: &[u8], now: Duration) -> Outcome {
        if let Some(sel) = &mut self.selection {
            let (queued, fin) = TcpPacket::parse(ip).map_or((true, None), |pkt| {
                let fin = sel.ends_session(&pkt).then_some(pkt.tuple);
                (sel.queues(ip, &pkt), fin)
            });
            if !queued {
                if let Some(orig) = fin {
                    // Read from the FIN set a moment later, live.
                    let note = Input::Note(KernelNote::ClientFinished { orig });
                    driver::input(&mut self.engine, &mut NoKernel, now, note);
                }
                return Outcome {
                    verdict: Verdict::Accept,
                    events: Vec::new(),
                    commands: Vec::new(),
                };
            }
        }
        let mut kernel = RulesKernel {
            nat: &mut self.nat,
            selection: self.selection.as_mut(),
        };
        driver::packet(&mut self.engine, &mut kernel, now, ip, Origin::Network)
    }

    fn leaving_inside(&mut self, frame: &Frame, pkt: &TcpPacket<'_>) -> Passed {
        let outcome = self.decide(&frame.ip, frame.time);
        self.learn(&outcome, frame.time);
        let dropped = Passed {
            events: outcome.events.clone(),
            ..Passed::default()
        };
        let bytes = match &outcome.verdict {
            Verdict::Drop => return dropped,
            Verdict::Accept => &frame.ip,
            Verdict::Replace(b) => b,
        };
        let Ok(decided) = TcpPacket::parse(bytes) else {
            return dropped;
        };
        let far_tuple = self.far_of(&pkt.tuple, frame.time).unwrap_or(pkt.tuple);
        let ip = decided.rebuild(&Rebuild {
            tuple: Some(far_tuple),
            seq: decided.seq,
            ack: decided.ack,
            map_sack: |e| e,
            payload: None,
            decrement_ttl: true,
            mss: None,
        });
        Passed {
            far_side: Some(with_ip(frame, ip)),
            events: outcome.events,
            mismatch: None,
            toward_inside: false,
        }
    }

    fn toward_inside(&mut self, frame: &Frame, pkt: &TcpPacket<'_>) -> Passed {
        let far_tuple = self.arriving_tuple(&pkt.tuple, frame.time);
        // The acknowledgement the far side sent is in the numbering it
        // received, after our edits of the other direction.
        let acked = |pos: u32| self.engine.acknowledged_by(&far_tuple, pos);
        let arriving = pkt.rebuild(&Rebuild {
            tuple: Some(far_tuple),
            seq: pkt.seq,
            ack: if pkt.flags.ack {
                acked(pkt.ack)
            } else {
                pkt.ack
            },
            map_sack: acked,
            payload: None,
            decrement_ttl: false,
            mss: None,
        });
        let outcome = self.decide(&arriving, frame.time);
        self.learn(&outcome, frame.time);
        let delivered = match &outcome.verdict {
            Verdict::Accept => Some(arriving.as_slice()),
            Verdict::Replace(b) => Some(b.as_slice()),
            Verdict::Drop => None,
        };
        let mismatch = compare_with_capture(frame.time, pkt, delivered);
        Passed {
            far_side: Some(with_ip(frame, arriving)),
            events: outcome.events,
            mismatch,
            toward_inside: true,
        }
    }

    /// The far side of `captured`, if learned; marks it used at `now`.
    fn far_of(&mut self, captured: &Tuple, now: Duration) -> Option<Tuple> {
        let (far, used) = self.far.get_mut(captured)?;
        *used = now;
        Some(*far)
    }

    /// The tuple a packet captured behind the gateway had when it arrived.
    fn arriving_tuple(&mut self, captured: &Tuple, now: Duration) -> Tuple {
        if let Some(t) = self.far_of(captured, now) {
            return t;
        }
        // A new connection to a DNATed server: the rules tell its public side.
        if let Some(m) = self.nat.lookup(&captured.reversed()) {
            if m.reply == captured.reversed() {
                return m.orig;
            }
        }
        // A data connection NAT sent inside: its expectation tells.
        if let Some(public) = self
            .engine
            .expected_public_dst(captured.src.ip(), captured.dst)
        {
            return Tuple::new(captured.src, public);
        }
        *captured
    }

    /// Learns header translations: a new control connection's from its
    /// mapping, a data connection's from the entry the engine asks for.
    fn learn(&mut self, outcome: &Outcome, now: Duration) {
        for e in &outcome.events {
            if let Event::FlowNew { mapping, .. } = e {
                if mapping.is_natted() {
                    self.pair(mapping.orig, mapping.translated_orig(), now);
                }
            }
        }
        for c in &outcome.commands {
            if let Command::CreateRelated(r) = c {
                self.pair(r.conn.tuple, r.conn.translated(), now);
            }
        }
    }

    /// Records that `a` on one side is `b` on the other, both directions
    /// (nothing once the table is full).
    fn pair(&mut self, a: Tuple, b: Tuple, now: Duration) {
        if a == b || self.far.len() >= MAX_TRANSLATIONS {
            return;
        }
        for (x, y) in [
            (a, b),
            (b, a),
            (a.reversed(), b.reversed()),
            (b.reversed(), a.reversed()),
        ] {
            self.far.insert(x, (y, now));
        }
    }
}

/// The replay's kernel: the capture's NAT rules answer conntrack's part,
/// the emulated rules of selective queueing the passive notes; nothing is
/// kept. Its commands change only what the rules queue next.
pub(crate) struct RulesKernel<'a> {
    pub(crate) nat: &'a mut StaticNat,
    pub(crate) selection: Option<&'a mut Selection>,
}

impl DriverKernel for RulesKernel<'_> {
    fn answer(&mut self, q: &Question) -> Answer {
        match q {
            Question::Mapping(q) => Answer::Mapping(q.answer_with(self.nat)),
            Question::PassiveNote { client } => {
                let noted = self
                    .selection
                    .as_mut()
                    .is_some_and(|s| s.take_passive_note(client));
                Answer::PassiveNote(noted)
            }
            Question::KeptState { .. } => Answer::KeptState(None),
        }
    }

    fn carry_out(&mut self, c: &Command) -> Option<CommandOutcome> {
        if let Some(sel) = self.selection.as_mut() {
            sel.follow(std::slice::from_ref(c));
        }
        None
    }
}

/// The first difference between what the engine let through toward the
/// inside (`delivered`, None: dropped) and what was captured there.
fn compare_with_capture(
    time: Duration,
    captured: &TcpPacket<'_>,
    delivered: Option<&[u8]>,
) -> Option<Mismatch> {
    let mismatch = |field, engine: String, captured_value: String| Mismatch {
        time,
        tuple: captured.tuple,
        field,
        engine,
        captured: captured_value,
    };
    let Some(Ok(d)) = delivered.map(TcpPacket::parse) else {
        return Some(mismatch("dropped", "nothing".into(), "a packet".into()));
    };
    let c = captured;
    if d.seq != c.seq {
        return Some(mismatch("seq", d.seq.to_string(), c.seq.to_string()));
    }
    if d.flags.ack && d.ack != c.ack {
        return Some(mismatch("ack", d.ack.to_string(), c.ack.to_string()));
    }
    if d.sack_blocks() != c.sack_blocks() {
        return Some(mismatch(
            "sack",
            format!("{:?}", d.sack_blocks()),
            format!("{:?}", c.sack_blocks()),
        ));
    }
    if d.flags != c.flags {
        return Some(mismatch(
            "flags",
            format!("{:?}", d.flags),
            format!("{:?}", c.flags),
        ));
    }
    if d.payload() != c.payload() {
        return Some(mismatch(
            "payload",
            summary(d.payload()),
            summary(c.payload()),
        ));
    }
    None
}

/// A payload's length and its start, for a mismatch line.
fn summary(payload: &[u8]) -> String {
    let start = &payload[..payload.len().min(40)];
    format!(
        "{} bytes {:?}",
        payload.len(),
        String::from_utf8_lossy(start)
    )
}

fn with_ip(frame: &Frame, ip: Vec<u8>) -> Frame {
    Frame {
        time: frame.time,
        link_header: frame.link_header.clone(),
        ip,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn reply(ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 20], [192, 0, 2, 10], 63)
            .tcp(21, 40000, 5000, 64240)
            .ack(ack)
            .write(&mut out, payload)
            .expect("build");
        out
    }

    #[test]
    fn translations_unused_for_the_idle_timeout_are_forgotten() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pcaps/lab/snat-v4-port-curl-vsftpd-download.inside.pcap");
        let capture = crate::offline::capture::read(&path).expect("lab capture");
        let snat = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
        let mut gw = Gateway::new(vec![snat], Vec::new(), Config::default());
        let mut last = Duration::ZERO;
        for frame in &capture.frames {
            gw.frame(frame);
            last = frame.time;
        }
        // The control connection and its data connection, four tuples each.
        assert_eq!(gw.far.len(), 8);
        gw.tick(last + Duration::from_secs(60));
        assert_eq!(gw.far.len(), 8, "in use within the idle timeout");
        let idle = Config::default().idle_timeout;
        gw.tick(last + idle + PRUNE_EVERY + Duration::from_secs(1));
        assert!(gw.far.is_empty(), "{} left", gw.far.len());
    }

    /// An expectation that expires between two frames is reported at its
    /// deadline, before the later frame, not at that frame's time.
    #[test]
    fn timers_fire_at_their_deadlines_between_frames() {
        use ftpct_testkit::{tuple, Segment};
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let start = Duration::from_secs(1_700_000_000);
        let frame = |time, ip| Frame {
            time,
            link_header: Vec::new(),
            ip,
        };
        let syn = Segment::new(c2s, 1).syn().build();
        let port = Segment::new(c2s, 2)
            .ack(1)
            .payload(b"PORT 192,0,2,10,156,64\r\n")
            .build();
        let cfg = Config::default();
        let expires = start + cfg.expect_timeout;
        let late = expires + Duration::from_secs(7);
        let noop = Segment::new(c2s, 26).ack(1).payload(b"NOOP\r\n").build();
        let capture = Capture {
            datalink: pcap_file::DataLink::RAW,
            frames: vec![frame(start, syn), frame(start, port), frame(late, noop)],
            skipped: 0,
        };
        let snat = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
        let cfg = Config {
            unestablished_timeout: Duration::from_secs(3600),
            ..cfg
        };
        let replayed = replay(&capture, vec![snat], Vec::new(), cfg);
        let expired = replayed.events.iter().find(|e| {
            matches!(
                e.event,
                Event::ExpectationRemoved {
                    reason: ftpct_engine::event::RemoveReason::Expired,
                    ..
                }
            )
        });
        assert_eq!(
            expired.map(|e| e.time),
            Some(expires),
            "{:?}",
            replayed.events
        );
    }

    #[test]
    fn a_verdict_that_differs_from_the_capture_is_a_mismatch() {
        let captured = reply(1001, b"200 ok\r\n");
        let c = TcpPacket::parse(&captured).expect("tcp");
        let t = Duration::from_secs(1);
        assert_eq!(compare_with_capture(t, &c, Some(&captured)), None);
        let unshifted = reply(1003, b"200 ok\r\n");
        let m = compare_with_capture(t, &c, Some(&unshifted)).expect("ack differs");
        assert_eq!(
            (m.field, m.engine.as_str(), m.captured.as_str()),
            ("ack", "1003", "1001")
        );
        let other = reply(1001, b"200 no\r\n");
        assert_eq!(
            compare_with_capture(t, &c, Some(&other)).map(|m| m.field),
            Some("payload")
        );
        assert_eq!(
            compare_with_capture(t, &c, None).map(|m| m.field),
            Some("dropped")
        );
    }
}
