//! Which flow a packet belongs to: a new control connection tracked, a
//! reused tuple told from its old connection, a NAT mapping learnt.

use std::time::Duration;

use crate::dialogue::Dialogue;
use crate::engine::Engine;
use crate::event::Event;
use crate::flow::{Flow, FlowId};
use crate::nat::CtMapping;
use crate::question::MappingQuestion;
use crate::tuple::Dir;
use crate::verdict::Origin;
use crate::wire::TcpPacket;

/// What a packet on a tracked tuple means for its flow.
/// What the driver and the question found out about a packet's flow.
#[derive(Clone, Copy)]
pub(crate) struct Lookup {
    /// Conntrack's answer to the question.
    pub(crate) answer: Option<CtMapping>,
    /// The packet's tracked flow, still its own.
    pub(crate) located: Option<(FlowId, Dir)>,
}

pub(crate) enum Reuse {
    Same,
    /// A new connection on the same tuples, its client's ISN.
    Reopened {
        client_isn: u32,
    },
    /// The tuple now belongs to a connection this flow is not.
    Stale,
}

impl Engine {
    /// What [`Self::locate_or_track`] will need to know of conntrack: a
    /// packet on a control port of a connection not tracked yet, or of one
    /// whose tuple NAT gave to a new connection.
    /// The packet's flow when it is tracked and still its own (found
    /// once for the question and the decision).
    pub(crate) fn mapping_question(
        &self,
        pkt: &TcpPacket<'_>,
    ) -> Result<Option<(FlowId, Dir)>, Box<MappingQuestion>> {
        let seen = pkt.tuple;
        let forget = match self.flows.locate(&seen) {
            None => None,
            Some((id, dir)) => match self.reuse_of(id, dir, pkt) {
                Reuse::Same if !self.learns_mapping(id, pkt) => return Ok(Some((id, dir))),
                Reuse::Same => None,
                Reuse::Reopened { .. } => return Ok(None),
                Reuse::Stale => self.flows.get(id).map(|f| f.mapping),
            },
        };
        // A server's segment from any port may be of a control connection
        // (port-translating DNAT): only conntrack knows; a first SYN never is.
        let first_syn = pkt.flags.syn && !pkt.flags.ack;
        let on_control = self.is_control_port(seen.dst.port())
            || self.is_control_port(seen.src.port())
            || !first_syn;
        if !on_control || pkt.flags.rst {
            return Ok(None);
        }
        // Boxed: asked once per new connection, not per packet.
        Err(Box::new(MappingQuestion {
            seen,
            first_syn,
            forget,
        }))
    }

    /// Finds the flow of a packet, starting to track a new control
    /// connection (or one already running) when it is one.
    pub(crate) fn locate_or_track(
        &mut self,
        pkt: &TcpPacket<'_>,
        now: Duration,
        origin: Origin,
        lookup: &Lookup,
        events: &mut Vec<Event>,
    ) -> Option<(FlowId, Dir)> {
        let seen = pkt.tuple;
        if let Some((id, dir)) = lookup.located {
            self.note_syn(id, dir, pkt);
            return Some((id, dir));
        }
        let known = lookup.answer;
        if let Some((id, dir)) = self.flows.locate(&seen) {
            match self.reuse_of(id, dir, pkt) {
                Reuse::Same => {
                    if self.learns_mapping(id, pkt) {
                        self.learn_mapping(id, known);
                    }
                    self.note_syn(id, dir, pkt);
                    return Some((id, dir));
                }
                Reuse::Reopened { client_isn } => {
                    return self.reopen(id, client_isn, now, origin, events)
                }
                Reuse::Stale => {
                    // Conntrack gave this reply tuple to a new connection
                    // (the driver forgot its answers about the old one).
                    self.stats.flows_stale += 1;
                    self.close_flow(id, events);
                }
            }
        }
        let to_control = self.is_control_port(seen.dst.port());
        // The server's side, whatever its port after NAT: the reply of a
        // connection whose original direction went to a control port.
        let reply_of_control =
            known.is_some_and(|m| m.reply == seen && self.is_control_port(m.orig.dst.port()));
        let from_control = self.is_control_port(seen.src.port()) || reply_of_control;
        if !(to_control || from_control) || pkt.flags.rst {
            return None;
        }
        if from_control && !to_control {
            // A reply whose tuple conntrack translated: link it to its flow.
            if let Some(m) = known.filter(|m| m.reply == seen) {
                if let Some((id, Dir::Orig)) = self.flows.locate(&m.orig) {
                    return self.flows.set_mapping(id, m).then_some((id, Dir::Reply));
                }
                return self.track(m, true, now, origin, events, Dir::Reply);
            }
            let m = CtMapping::identity(seen.reversed());
            return self.track(m, false, now, origin, events, Dir::Reply);
        }
        let (m, mapping_known) = match known.filter(|m| m.orig == seen) {
            Some(m) => (m, true),
            None => (CtMapping::identity(seen), false),
        };
        self.track(m, mapping_known, now, origin, events, Dir::Orig)
    }

    /// A flow tracked from its SYN, before conntrack had an entry, learns
    /// its NAT mapping from the next packet of either direction: usually
    /// the SYN-ACK, whose reply tuple is unknown until then; with selective
    /// queueing (or a SYN-ACK over the handshake budget) the next queued
    /// packet may be the client's announcement itself.
    pub(crate) fn learns_mapping(&self, id: FlowId, pkt: &TcpPacket<'_>) -> bool {
        let first_syn = pkt.flags.syn && !pkt.flags.ack;
        !first_syn && self.flows.get(id).is_some_and(|f| !f.mapping_known)
    }

    /// Takes conntrack's answer for a located flow (none: the connection is
    /// not NATed, or conntrack lost it; asked once all the same).
    pub(crate) fn learn_mapping(&mut self, id: FlowId, answer: Option<CtMapping>) {
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let orig = flow.mapping.orig;
        match answer.filter(|m| m.orig == orig) {
            Some(m) => {
                self.flows.set_mapping(id, m);
            }
            None => flow.mapping_known = true,
        }
    }

    /// Port reuse. A SYN on a tracked flow is remembered; the flow is
    /// replaced only when it was closing, or when the server answers that
    /// SYN (so a stray or spoofed SYN cannot wipe a live session, as
    /// conntrack ignores a SYN on an established connection). A SYN-ACK
    /// that answers neither the flow's SYN nor a remembered one belongs to
    /// another connection that NAT gave the same reply tuple (the old one
    /// never closed cleanly): the flow is stale.
    pub(crate) fn reuse_of(&self, id: FlowId, dir: Dir, pkt: &TcpPacket<'_>) -> Reuse {
        let Some(flow) = self.flows.get(id) else {
            return Reuse::Same;
        };
        match dir {
            Dir::Orig if pkt.flags.syn && !pkt.flags.ack => {
                if flow.closing_at.is_some() || flow.streams.iter().any(|s| s.has_fin()) {
                    return Reuse::Reopened {
                        client_isn: pkt.seq,
                    };
                }
                Reuse::Same
            }
            Dir::Reply if pkt.flags.syn && pkt.flags.ack => {
                let answers = |isn: u32| isn.wrapping_add(1) == pkt.ack;
                if let Some(client_isn) = flow.reopen_isn.filter(|&isn| answers(isn)) {
                    return Reuse::Reopened { client_isn };
                }
                let ours = match flow.client_isn {
                    Some(isn) => answers(isn),
                    // Picked up without its SYN: only a young flow may
                    // still see its handshake.
                    None => !flow.is_established(),
                };
                if ours {
                    Reuse::Same
                } else {
                    Reuse::Stale
                }
            }
            _ => Reuse::Same,
        }
    }

    /// Remembers a SYN on a live flow that is not its own: a new
    /// connection if the server answers it.
    pub(crate) fn note_syn(&mut self, id: FlowId, dir: Dir, pkt: &TcpPacket<'_>) {
        if dir != Dir::Orig || !pkt.flags.syn || pkt.flags.ack {
            return;
        }
        if let Some(flow) = self.flows.get_mut(id) {
            if flow.client_isn != Some(pkt.seq) {
                flow.reopen_isn = Some(pkt.seq);
            }
        }
    }

    pub(crate) fn reopen(
        &mut self,
        id: FlowId,
        client_isn: u32,
        now: Duration,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> Option<(FlowId, Dir)> {
        let (mapping, dir_of_packet) = {
            let flow = self.flows.get(id)?;
            let replying = flow.reopen_isn == Some(client_isn) && flow.closing_at.is_none();
            let dir = if replying { Dir::Reply } else { Dir::Orig };
            (flow.mapping, dir)
        };
        self.close_flow(id, events);
        let (new_id, _) = self.track(mapping, true, now, origin, events, Dir::Orig)?;
        if let Some(flow) = self.flows.get_mut(new_id) {
            flow.streams[Dir::Orig.index()].syn(client_isn);
        }
        Some((new_id, dir_of_packet))
    }

    pub(crate) fn track(
        &mut self,
        mapping: CtMapping,
        mapping_known: bool,
        now: Duration,
        origin: Origin,
        events: &mut Vec<Event>,
        dir: Dir,
    ) -> Option<(FlowId, Dir)> {
        self.make_room(events);
        if self.flows.is_full() {
            self.stats.flows_untracked += 1;
            events.push(Event::TableFull {
                flow: mapping.orig,
                flows: self.flows.len(),
            });
            return None;
        }
        let Some(id) = self
            .flows
            .insert(self.new_flow(mapping, mapping_known, now))
        else {
            // A stray packet whose guessed tuples belong to a tracked flow.
            self.stats.flows_untracked += 1;
            return None;
        };
        self.stats.flows += 1;
        events.push(Event::FlowNew {
            mapping,
            local: origin == Origin::ThisHost,
        });
        Some((id, dir))
    }

    pub(crate) fn new_flow(&self, mapping: CtMapping, mapping_known: bool, now: Duration) -> Flow {
        let mut flow = Flow::new(mapping, mapping_known, now);
        if self.cfg.selective {
            flow.dialogue = Dialogue::partial();
        }
        flow
    }

    /// Evicts the oldest unestablished flow when they are at their limit
    /// or the table is full: a flood of handshakes that never complete
    /// must not keep real sessions out.
    pub(crate) fn make_room(&mut self, events: &mut Vec<Event>) {
        let crowded = self.flows.unestablished() >= self.cfg.max_unestablished;
        if !(crowded || self.flows.is_full()) {
            return;
        }
        if let Some(id) = self.flows.oldest_unestablished() {
            self.stats.flows_evicted += 1;
            self.close_flow(id, events);
        }
    }
}
