//! The engine's timers: expectations expire, closing and idle flows go.

use std::time::Duration;

use crate::engine::Engine;
use crate::engine::{IDLE_SCAN, TICK};
use crate::event::{Event, RemoveReason};
use crate::flow::{Flow, FlowId};
use crate::guards::{needs_every_segment, queued_directions};
use crate::tuple::{Dir, Tuple};
use crate::verdict::Effects;

impl Engine {
    /// Runs expiry timers. Drivers call it about once a second when idle;
    /// `process` calls it too.
    pub(crate) fn tick(&mut self, now: Duration) -> Effects {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        let commands = self.commands_for(&events);
        Effects { events, commands }
    }

    /// Conntrack removed the entry whose original tuple is `orig` (it timed
    /// out, was deleted or flushed) while `flow` ([`Engine::flow_of`]) was
    /// its flow: that control connection is gone even if ftpct never saw
    /// its FIN or RST. A later connection on the tuple (whose SYN may be
    /// what ended the old entry) is not touched. True if it was tracked.
    pub(crate) fn conntrack_destroyed(&mut self, orig: &Tuple, flow: u64) -> (bool, Effects) {
        let mut events = Vec::new();
        let tracked = match self.flows.locate(orig) {
            Some((id, Dir::Orig)) if self.flows.get(id).map(Flow::generation) == Some(flow) => {
                self.close_flow(id, &mut events);
                true
            }
            _ => false,
        };
        let commands = self.commands_for(&events);
        (tracked, Effects { events, commands })
    }

    pub(crate) fn run_timers(&mut self, now: Duration, events: &mut Vec<Event>) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let flows = &self.flows;
        let master_of = |id: FlowId| flows.get(id).map(|f| f.mapping.orig);
        for e in self.expects.expire(now, master_of) {
            self.stats.expectations_expired += 1;
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::Expired,
            });
        }
        let (due, later): (Vec<_>, Vec<_>) = self.closing.iter().partition(|(t, _)| *t <= now);
        self.closing = later;
        for (t, id) in due {
            // The slot may hold a newer flow by now: close only the one that was closing.
            if self.flows.get(id).is_some_and(|f| f.closing_at == Some(t)) {
                self.close_flow(id, events);
            }
        }
        if now >= self.next_idle_scan {
            self.next_idle_scan = now + IDLE_SCAN;
            let idle = self
                .flows
                .idle(now, self.cfg.idle_timeout, self.cfg.unestablished_timeout);
            for id in idle {
                self.close_flow(id, events);
            }
            self.flows.shrink();
        }
    }

    pub(crate) fn close_flow(&mut self, id: FlowId, events: &mut Vec<Event>) {
        let Some(flow) = self.flows.remove(id) else {
            return;
        };
        let orig = flow.mapping.orig;
        // The guard entries of directions still queued whole go with the
        // flow: left to the set's timeout (or none, for a connection queued
        // whole), a client that opens lines and leaves would fill the set.
        let queued_whole = [Dir::Orig, Dir::Reply]
            .map(|dir| flow.guard_always || self.cfg.selective && needs_every_segment(&flow, dir));
        for (direction, whole) in queued_directions(&flow.mapping)
            .into_iter()
            .zip(queued_whole)
        {
            if whole {
                self.unguard.push(direction);
            }
        }
        for e in self.expects.remove_owner(id, orig) {
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::MasterClosed,
            });
        }
        events.push(Event::FlowClosed { flow: orig });
    }
}
