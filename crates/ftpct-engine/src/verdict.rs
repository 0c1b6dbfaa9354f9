//! What the engine decides: a packet's verdict, where it was seen, and
//! what a step or the timers hand the driver.

use crate::command::Command;
use crate::event::Event;

/// Where the packet was seen (the two raw-table hooks ftpct queues from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Arriving from a network (forwarded or for this host).
    Prerouting,
    /// Sent by this host.
    Output,
}

/// What to do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Accept these bytes instead.
    Replace(Vec<u8>),
    Drop,
}

/// The engine's decision on one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub events: Vec<Event>,
    /// For the kernel, in order, before the verdict.
    pub commands: Vec<Command>,
}

/// What the timers decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub events: Vec<Event>,
    pub commands: Vec<Command>,
}
