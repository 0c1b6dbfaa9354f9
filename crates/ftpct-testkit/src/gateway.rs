//! The engine as a gateway runs it: one packet at a time, with a clock.

use std::time::Duration;

use ftpct_engine::command::Command;
use ftpct_engine::engine::{
    Answer, Config, Effects, Engine, Input, Origin, Outcome, Question, Verdict,
};
use ftpct_engine::nat::NatLookup;

use crate::packet::Segment;

/// The gateway under test: the engine, the NAT it reads, and the clock of
/// the packets it is given. The fields are public: tests look at the
/// engine (`stats`, `acknowledged_by`) and at their NAT.
pub struct Gateway<N> {
    pub engine: Engine,
    pub nat: N,
    /// The time of the last packet.
    pub now: Duration,
    /// How far the clock moves before each packet.
    pub step: Duration,
    /// Where every packet comes from.
    pub origin: Origin,
}

impl<N: NatLookup> Gateway<N> {
    /// A fresh engine; the clock at zero, moving 1 ms a packet; packets
    /// from the network.
    pub fn new(cfg: Config, nat: N) -> Self {
        Gateway {
            engine: Engine::new(cfg),
            nat,
            now: Duration::ZERO,
            step: Duration::from_millis(1),
            origin: Origin::Network,
        }
    }

    /// The clock starts at `start` and moves `step` before each packet.
    pub fn clock(self, start: Duration, step: Duration) -> Self {
        Gateway {
            now: start,
            step,
            ..self
        }
    }

    /// One packet through the engine, `step` after the last one.
    #[inline]
    pub fn process(&mut self, packet: &[u8]) -> Outcome {
        self.now += self.step;
        crate::drive::process(
            &mut self.engine,
            packet,
            self.now,
            self.origin,
            &mut self.nat,
        )
    }

    /// One packet through the engine as `process`: its verdict alone.
    #[inline]
    pub fn verdict(&mut self, packet: &[u8]) -> Verdict {
        self.now += self.step;
        crate::drive::verdict(
            &mut self.engine,
            packet,
            self.now,
            self.origin,
            &mut self.nat,
        )
    }

    /// Builds `segment` and processes it.
    pub fn send(&mut self, segment: &Segment<'_>) -> Outcome {
        self.process(&segment.build())
    }

    /// Any other input at the gateway's clock; what came out of it.
    pub fn input(&mut self, input: Input<'_>) -> Effects {
        self.input_at(self.now, input)
    }

    /// An input at `now` (the clock stays).
    pub fn input_at(&mut self, now: Duration, input: Input<'_>) -> Effects {
        crate::drive::input(&mut self.engine, now, input)
    }

    /// A packet handed over without answering for it: the question it
    /// asks, if any (answer with [`Gateway::answer`], then
    /// [`Gateway::outcome`]).
    pub fn ask(&mut self, packet: &[u8]) -> Option<Question> {
        self.now += self.step;
        let (bytes, origin) = (packet, self.origin);
        self.engine
            .handle(self.now, Input::Packet { bytes, origin });
        self.engine.poll_question()
    }

    /// Answers the question asked; the next one, if any.
    pub fn answer(&mut self, answer: Answer) -> Option<Question> {
        self.engine.handle(self.now, Input::Answer(answer));
        self.engine.poll_question()
    }

    /// What came out since, with the verdict (Accept when none came).
    pub fn outcome(&mut self) -> Outcome {
        let Effects { events, commands } = crate::drive::drain(&mut self.engine);
        Outcome {
            verdict: self.engine.poll_verdict().unwrap_or(Verdict::Accept),
            events,
            commands,
        }
    }
}

/// The ports of the data connections an outcome expects (its
/// `ExpectDst` commands), in order.
pub fn expected_ports(out: &Outcome) -> Vec<u16> {
    out.commands
        .iter()
        .filter_map(|c| match c {
            Command::ExpectDst { dst, .. } => Some(dst.port()),
            _ => None,
        })
        .collect()
}

/// What leaves the gateway for packet `input` given `verdict`: the input
/// itself, its replacement, or nothing.
pub fn leaving<'a>(input: &'a [u8], verdict: &'a Verdict) -> Option<&'a [u8]> {
    match verdict {
        Verdict::Accept => Some(input),
        Verdict::Replace(bytes) => Some(bytes),
        Verdict::Drop => None,
    }
}
