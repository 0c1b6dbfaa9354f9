//! Offline replay: a capture taken on the inside of a gateway (the side of
//! the NATed hosts) runs through the engine as the gateway would see it,
//! and comes out as the far side of the gateway would see it.
//!
//! Packets from the inside enter the gateway as captured: the engine
//! decides, and the result leaves with the NAT applied to its headers.
//! Packets toward the inside were captured after the gateway: their
//! arriving form is rebuilt (NAT undone, acknowledgements put back in the
//! numbering the far side uses) and that form is both fed to the engine and
//! written out, since it is what the far side sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::offline::capture::{Capture, Frame};
use ftpct_engine::engine::{Config, Engine, Hook, Verdict};
use ftpct_engine::event::{Event, Stats};
use ftpct_engine::expect::Expectation;
use ftpct_engine::nat::{DnatRule, NatLookup, SnatRule, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{Rebuild, TcpPacket};

/// An event and when it happened (capture time).
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub time: Duration,
    pub event: Event,
}

/// What a replay produced.
#[derive(Debug)]
pub struct Replayed {
    /// The capture as the far side of the gateway sees it.
    pub far_side: Vec<Frame>,
    pub events: Vec<TimedEvent>,
    pub stats: Stats,
}

/// The emulated gateway: the engine, the NAT rules, and the header
/// translations learned from the engine's decisions.
struct Gateway {
    engine: Engine,
    nat: StaticNat,
    /// Tuple as captured -> tuple on the far side, both ways.
    far: HashMap<Tuple, Tuple>,
}

/// Replays `capture` through a gateway with the given NAT rules.
pub fn replay(
    capture: &Capture,
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    mut cfg: Config,
) -> Replayed {
    cfg.report_lines = true;
    let mut gw = Gateway {
        engine: Engine::new(cfg),
        nat: StaticNat::new(snat, dnat),
        far: HashMap::new(),
    };
    let mut far_side = Vec::with_capacity(capture.frames.len());
    let mut events = Vec::new();
    for frame in &capture.frames {
        let (out, evs) = gw.frame(frame);
        far_side.extend(out);
        events.extend(evs.into_iter().map(|event| TimedEvent {
            time: frame.time,
            event,
        }));
    }
    let last = capture.frames.last().map_or(Duration::ZERO, |f| f.time);
    let tail = gw.engine.tick(last + Duration::from_secs(1)).events;
    events.extend(
        tail.into_iter()
            .map(|event| TimedEvent { time: last, event }),
    );
    Replayed {
        far_side,
        events,
        stats: gw.engine.stats().clone(),
    }
}

impl Gateway {
    fn frame(&mut self, frame: &Frame) -> (Option<Frame>, Vec<Event>) {
        let Ok(pkt) = TcpPacket::parse(&frame.ip) else {
            // Not TCP: the gateway forwards it, we have nothing to say.
            return (Some(frame.clone()), Vec::new());
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

    fn leaving_inside(
        &mut self,
        frame: &Frame,
        pkt: &TcpPacket<'_>,
    ) -> (Option<Frame>, Vec<Event>) {
        let outcome = self
            .engine
            .process(&frame.ip, frame.time, Hook::Prerouting, &mut self.nat);
        self.learn(&outcome.events);
        let bytes = match &outcome.verdict {
            Verdict::Drop => return (None, outcome.events),
            Verdict::Accept => &frame.ip,
            Verdict::Replace(b) => b,
        };
        let Ok(decided) = TcpPacket::parse(bytes) else {
            return (None, outcome.events);
        };
        let far_tuple = self.far.get(&pkt.tuple).copied().unwrap_or(pkt.tuple);
        let ip = decided.rebuild(&Rebuild {
            tuple: Some(far_tuple),
            seq: decided.seq,
            ack: decided.ack,
            map_sack: |e| e,
            payload: None,
            decrement_ttl: true,
            mss: None,
        });
        (Some(with_ip(frame, ip)), outcome.events)
    }

    fn toward_inside(&mut self, frame: &Frame, pkt: &TcpPacket<'_>) -> (Option<Frame>, Vec<Event>) {
        let far_tuple = self.arriving_tuple(&pkt.tuple);
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
        let outcome = self
            .engine
            .process(&arriving, frame.time, Hook::Prerouting, &mut self.nat);
        self.learn(&outcome.events);
        (Some(with_ip(frame, arriving)), outcome.events)
    }

    /// The tuple a packet captured behind the gateway had when it arrived.
    fn arriving_tuple(&mut self, captured: &Tuple) -> Tuple {
        if let Some(t) = self.far.get(captured) {
            return *t;
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

    /// Learns header translations from new flows and data connections.
    fn learn(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::FlowNew { mapping, .. } if mapping.is_natted() => {
                    self.pair(mapping.orig, mapping.translated_orig());
                }
                Event::DataMatched { tuple, exp } => {
                    self.pair(*tuple, translated_data(tuple, exp));
                }
                _ => {}
            }
        }
    }

    /// Records that `a` on one side is `b` on the other, both directions.
    fn pair(&mut self, a: Tuple, b: Tuple) {
        if a == b {
            return;
        }
        self.far.insert(a, b);
        self.far.insert(b, a);
        self.far.insert(a.reversed(), b.reversed());
        self.far.insert(b.reversed(), a.reversed());
    }
}

/// A data connection's tuple after its follow-master NAT.
fn translated_data(t: &Tuple, exp: &Expectation) -> Tuple {
    let src = exp
        .nat
        .src
        .map_or(t.src, |ip| SocketAddr::new(ip, t.src.port()));
    Tuple::new(src, exp.nat.dst.unwrap_or(t.dst))
}

fn with_ip(frame: &Frame, ip: Vec<u8>) -> Frame {
    Frame {
        time: frame.time,
        link_header: frame.link_header.clone(),
        ip,
    }
}
