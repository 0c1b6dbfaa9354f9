//! What waits in the engine to be polled (see `protocol`): verdicts,
//! commands, events, the question a packet asks, and that packet.

use std::collections::VecDeque;
use std::time::Duration;

use crate::command::Command;
use crate::event::Event;
use crate::nat::CtMapping;
use crate::question::Question;
use crate::tuple::Tuple;
use crate::verdict::{Origin, Verdict};

/// A packet waiting for the answer to its question.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) bytes: Vec<u8>,
    pub(crate) origin: Origin,
    pub(crate) now: Duration,
    pub(crate) stage: Stage,
}

/// Which question the waiting packet asked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// The passive note, before the packet is looked at.
    NoteFirst { orig: Tuple },
    /// Its mapping.
    Mapping { first_syn: bool },
    /// The kept state of the session conntrack's answer names.
    Kept { answer: CtMapping },
    /// The passive note, once conntrack answered.
    NoteAfter { orig: Tuple, answer: CtMapping },
}

/// What waits to be polled.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) verdicts: VecDeque<Verdict>,
    pub(crate) commands: VecDeque<Command>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) question: Option<Question>,
    pub(crate) waiting: Option<Waiting>,
}

impl Outputs {
    /// A packet's decision: its events and commands, then its verdict.
    #[inline]
    pub(crate) fn decided(&mut self, verdict: Verdict, events: Vec<Event>, commands: Vec<Command>) {
        // Most packets bring neither: no call then.
        if !(events.is_empty() && commands.is_empty()) {
            self.emit(events, commands);
        }
        self.verdicts.push_back(verdict);
    }

    /// Events and commands to be polled after those waiting.
    #[inline]
    pub(crate) fn emit(&mut self, events: Vec<Event>, commands: Vec<Command>) {
        append(&mut self.events, events);
        append(&mut self.commands, commands);
    }
}

/// Appends `items` to `queue`; most often both are empty, or the queue
/// is, and the vector becomes it as it is (no copy: the packet path's
/// cost).
#[inline]
fn append<T>(queue: &mut VecDeque<T>, items: Vec<T>) {
    if items.is_empty() {
        return;
    }
    if queue.is_empty() {
        *queue = VecDeque::from(items);
    } else {
        queue.extend(items);
    }
}
