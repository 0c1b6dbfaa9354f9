//! The engine's question about a packet's NAT mapping, which only
//! conntrack knows, and the driver's answer.

use crate::command::{QueuedDirection, SeqAdj};
use crate::kept::Kept;
use crate::nat::{CtMapping, NatLookup};
use crate::tuple::Tuple;

/// What the driver knows of a packet's NAT mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Not asked yet: the engine says if it needs it.
    NotAsked,
    /// Conntrack's answer to [`Question::Mapping`] (None: no entry).
    Answer(Option<CtMapping>),
}

/// The engine's question about a packet's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingQuestion {
    /// The packet's tuple: conntrack's entry with it as original or reply.
    pub seen: Tuple,
    /// The packet is a connection's first SYN: seen before conntrack, it
    /// has no entry yet (rules offline can still tell its mapping).
    pub first_syn: bool,
    /// A connection that had this tuple is gone (NAT gave it to a new one):
    /// an answer kept about this mapping is wrong now.
    pub forget: Option<CtMapping>,
}

impl MappingQuestion {
    /// Asks an answerer that answers at once.
    pub fn answer_with(&self, nat: &mut dyn NatLookup) -> Option<CtMapping> {
        if let Some(old) = &self.forget {
            nat.forget(old);
        }
        if self.first_syn {
            nat.lookup_new(&self.seen)
        } else {
            nat.lookup(&self.seen)
        }
    }
}

/// What the engine asks before it decides a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// The packet's NAT mapping, which only conntrack knows
    /// ([`Answer::Mapping`]).
    Mapping(MappingQuestion),
    /// Selective queueing: did the kernel note a passive request that the
    /// client of `client` sent unqueued? Taking the note uses it up
    /// ([`Answer::PassiveNote`]).
    PassiveNote { client: QueuedDirection },
    /// A running session ftpct does not follow: what its conntrack entry
    /// keeps for ftpct, if anything ([`Answer::KeptState`]).
    KeptState { orig: Tuple },
}

/// The answer to a [`Question`], given with `Engine::handle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Conntrack's entry (None: none).
    Mapping(Option<CtMapping>),
    /// True when there was a note (and it is taken).
    PassiveNote(bool),
    /// The kept state and the kernel's sequence corrections by direction.
    KeptState(Option<(Kept, [Option<SeqAdj>; 2])>),
}
