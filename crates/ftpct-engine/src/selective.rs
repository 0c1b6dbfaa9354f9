//! Selective queueing's notes from the kernel: a PASV let through
//! unqueued, a client's FIN seen by the rules, a server segment of a
//! session not followed yet.

use std::time::Duration;

use crate::classifier::may_hold_an_announcement;
use crate::command::QueuedDirection;
use crate::engine::Engine;
use crate::event::Event;
use crate::guards::queued_directions;
use crate::nat::CtMapping;
use crate::segment::plausible;
use crate::tuple::{Dir, Tuple};
use crate::verdict::Origin;
use crate::wire::TcpPacket;

impl Engine {
    /// The client of control connection `orig` sent its FIN, seen by the
    /// kernel's rules instead of queued (selective queueing): the session
    /// ends for ftpct after the linger, as when the engine sees that FIN.
    /// True if `orig` is tracked and was not closing yet.
    pub(crate) fn client_finished(&mut self, orig: &Tuple, now: Duration) -> bool {
        let Some((id, Dir::Orig)) = self.flows.locate(orig) else {
            return false;
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return false;
        };
        if flow.closing_at.is_some() {
            return false;
        }
        let at = now + self.cfg.close_linger;
        flow.closing_at = Some(at);
        self.closing.push((at, id));
        true
    }

    /// Selective queueing: the kernel's rule lets a segment holding just a
    /// PASV or EPSV pass unqueued and notes its session in the passive set
    /// instead. A server segment of a followed session that may hold an
    /// announcement, with no passive request seen or noted, needs that
    /// note: the client's direction to take it by, and the
    /// session's original tuple for its answer ([`crate::question::Answer`]). `known`:
    /// conntrack's answer about the packet's connection, when it was asked
    /// ([`crate::question::Question::Mapping`]): a segment whose tuple the
    /// engine does not know yet (NAT gave a reused client port a new public
    /// port) is then found by the entry's original tuple. Inlined: without
    /// selective queueing (every packet's path) it costs one test.
    #[inline]
    pub fn passive_note_wanted(
        &self,
        bytes: &[u8],
        known: Option<&CtMapping>,
    ) -> Option<(QueuedDirection, Tuple)> {
        if !self.cfg.selective {
            return None;
        }
        self.selective_note_wanted(bytes, known)
    }

    fn selective_note_wanted(
        &self,
        bytes: &[u8],
        known: Option<&CtMapping>,
    ) -> Option<(QueuedDirection, Tuple)> {
        let pkt = TcpPacket::parse(bytes).ok()?;
        let by_answer = known
            .filter(|m| m.reply == pkt.tuple)
            .and_then(|m| self.flows.locate(&m.orig))
            .map(|(id, _)| (id, Dir::Reply));
        let (id, Dir::Reply) = self.flows.locate(&pkt.tuple).or(by_answer)? else {
            return None;
        };
        let flow = self.flows.get(id)?;
        // A segment the engine will not read (spoofed, or of an older
        // connection on the tuple) must not use the note up.
        let unread = !flow.inspecting || !plausible(flow, Dir::Reply, &pkt);
        if unread || flow.dialogue.passive_asked() {
            return None;
        }
        let unfinished = flow.stream(Dir::Reply).unfinished_line();
        may_hold_an_announcement(unfinished, pkt.payload())
            .then(|| (queued_directions(&flow.mapping)[0], flow.mapping.orig))
    }

    /// Selective queueing: a server segment of a connection the engine does
    /// not follow (ftpct restarted, or lost the flow), that may hold an
    /// announcement, and conntrack's answer about it (`known`): the flow is
    /// started now, as deciding the segment would start it, so that its
    /// passive note can be taken first (the PASV passed unqueued, and a
    /// session picked up at its 227 would refuse it). The events to log.
    pub(crate) fn track_reply(
        &mut self,
        bytes: &[u8],
        known: &CtMapping,
        now: Duration,
        origin: Origin,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let Ok(pkt) = TcpPacket::parse(bytes) else {
            return events;
        };
        let unknown =
            self.flows.locate(&pkt.tuple).is_none() && self.flows.locate(&known.orig).is_none();
        let from_server = known.reply == pkt.tuple
            && self.is_control_port(known.orig.dst.port())
            && !pkt.flags.syn
            && !pkt.flags.rst;
        if self.cfg.selective
            && unknown
            && from_server
            && may_hold_an_announcement(&[], pkt.payload())
        {
            self.track(*known, true, now, origin, &mut events, Dir::Reply);
        }
        events
    }

    /// The kernel had noted a passive request of session `orig` (taken
    /// from its set): the next 227 or 229 answers it.
    pub(crate) fn passive_noted(&mut self, orig: &Tuple) {
        if let Some((id, Dir::Orig)) = self.flows.locate(orig) {
            if let Some(flow) = self.flows.get_mut(id) {
                flow.dialogue.passive_noted();
                self.stats.passive_notes += 1;
            }
        }
    }
}
