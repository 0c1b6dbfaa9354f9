//! What the engine decides: a packet's verdict, where the packet came
//! from, and what a step or the timers hand the driver.

use crate::command::Command;
use crate::event::Event;

/// Where a packet came from: the fact the engine needs (a connection this
/// host opened or answers is its own, not forwarded), whatever told the
/// driver (the queue's hook, a capture's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From a network: forwarded, or for this host.
    Network,
    /// Sent by this host.
    ThisHost,
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
