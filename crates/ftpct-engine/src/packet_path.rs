//! The packet path: one IP packet, the question about its mapping when
//! its flow needs one, and the decision.

use std::time::Duration;

use crate::command::Command;
use crate::effects::kept_into_adoption;
use crate::engine::Engine;
use crate::event::Event;
use crate::flow::FlowId;
use crate::guards::guard_commands;
use crate::lines::Ctx;
use crate::question::{Known, MappingQuestion};
use crate::segment::handle;
use crate::tracking::Lookup;
use crate::verdict::{Origin, Verdict};
use crate::wire::TcpPacket;

impl Engine {
    /// One IP packet from `origin` at time `now`: decided (its verdict,
    /// events and commands wait to be polled), or the question about its
    /// mapping first (boxed: asked once per new connection, and the
    /// decided packet's result stays a word). Asking changes nothing in
    /// the engine.
    pub(crate) fn step(
        &mut self,
        bytes: &[u8],
        now: Duration,
        origin: Origin,
        known: Known,
    ) -> Result<(), Box<MappingQuestion>> {
        // Parsed once: the question and the decision look at the same view.
        let pkt = TcpPacket::parse(bytes);
        let (answer, located) = match (known, &pkt) {
            (Known::Answer(answer), _) => (answer, None),
            (Known::NotAsked, Ok(p)) => (None, self.mapping_question(p)?),
            (Known::NotAsked, Err(_)) => (None, None),
        };
        self.decide(pkt.ok(), now, origin, &Lookup { answer, located });
        Ok(())
    }

    /// The decision, with what the kernel must do after its events, queued
    /// to be polled.
    fn decide(
        &mut self,
        pkt: Option<TcpPacket<'_>>,
        now: Duration,
        origin: Origin,
        lookup: &Lookup,
    ) {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        self.stats.packets += 1;
        let (verdict, mut commands) = match pkt {
            Some(pkt) => self.decide_tcp(&mut events, &pkt, now, origin, lookup),
            None => {
                self.stats.not_tcp += 1;
                (Verdict::Accept, Vec::new())
            }
        };
        if !events.is_empty() {
            let from_events = self.commands_for(&events);
            commands.extend(from_events);
            kept_into_adoption(&mut commands);
        }
        self.out.decided(verdict, events, commands);
    }

    /// A TCP packet's verdict and the commands its flow needs.
    fn decide_tcp(
        &mut self,
        events: &mut Vec<Event>,
        pkt: &TcpPacket<'_>,
        now: Duration,
        origin: Origin,
        lookup: &Lookup,
    ) -> (Verdict, Vec<Command>) {
        let pass = || (Verdict::Accept, Vec::new());
        if pkt.flags.syn && !pkt.flags.ack {
            let flows = &self.flows;
            let master_of = |id: FlowId| flows.get(id).map(|f| f.mapping.orig);
            if let Some(exp) = self.expects.take_match(&pkt.tuple, master_of) {
                self.stats.data_matched += 1;
                events.push(Event::DataMatched {
                    tuple: pkt.tuple,
                    exp,
                });
                return pass();
            }
        }
        let Some((id, dir)) = self.locate_or_track(pkt, now, origin, lookup, events) else {
            return pass();
        };
        self.flows.spoke(id, dir, pkt.flags.syn && !pkt.flags.ack);
        let Engine {
            cfg,
            flows,
            expects,
            stats,
            closing,
            ..
        } = self;
        let Some(flow) = flows.get_mut(id) else {
            return pass();
        };
        let was_closing = flow.closing_at.is_some();
        let mut ctx = Ctx {
            id,
            cfg,
            expects,
            stats,
            events,
            now,
            room: None,
            may_cut: !pkt.flags.fin,
            segment_start: pkt.seq.wrapping_add(u32::from(pkt.flags.syn)),
            commands: Vec::new(),
        };
        let verdict = handle(flow, dir, pkt, &mut ctx);
        // Guards first: the other direction is queued before an adoption
        // takes its entry away.
        let mut commands = if cfg.selective && !pkt.flags.syn && !flow.guard_always {
            guard_commands(flow, dir, &pkt.tuple)
        } else {
            Vec::new()
        };
        commands.extend(ctx.commands);
        if let (false, Some(t)) = (was_closing, flow.closing_at) {
            closing.push((t, id));
        }
        (verdict, commands)
    }
}
