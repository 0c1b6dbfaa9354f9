//! What the engine reports: kernel actions for the live driver, decisions
//! for logs and the replay table, and counters.

use std::fmt;

use crate::expect::Expectation;
use crate::grammar::Malformed;
use crate::nat::CtMapping;
use crate::policy::Refusal;
use crate::stream::DropReason;
use crate::tuple::Dir;
use crate::tuple::Tuple;

/// Why a direction was resynchronised (followed again from a later line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// Out-of-order segments kept coming and the missing bytes did not.
    GapNotFilled,
    /// Bytes passed uninspected (a queue overflow with fail-open) and will
    /// not come again: the receiver acknowledged them, or the sender sent
    /// a later segment again instead of them.
    UnseenBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    Expired,
    MasterClosed,
    /// The session's oldest, to make room at the per-session limit.
    Evicted,
}

/// One thing the engine did or decided. `flow` is always the control
/// connection's original tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    FlowNew {
        mapping: CtMapping,
        local: bool,
    },
    FlowClosed {
        flow: Tuple,
    },
    /// A complete line (only with `Config::report_lines`).
    Line {
        flow: Tuple,
        dir: Dir,
        text: String,
    },
    /// Kernel action: queue and create the data connection when it comes.
    ExpectationAdded(Expectation),
    /// Kernel action: forget the pending data connection.
    ExpectationRemoved {
        exp: Expectation,
        reason: RemoveReason,
    },
    /// Kernel action: create this data connection's conntrack entry.
    DataMatched {
        tuple: Tuple,
        exp: Expectation,
    },
    Rewritten {
        flow: Tuple,
        dir: Dir,
        before: String,
        after: String,
    },
    Refused {
        flow: Tuple,
        dir: Dir,
        line: String,
        refusal: Refusal,
    },
    Malformed {
        flow: Tuple,
        dir: Dir,
        line: String,
        why: Malformed,
    },
    Recognised {
        flow: Tuple,
        dir: Dir,
        what: &'static str,
    },
    Overlong {
        flow: Tuple,
        dir: Dir,
    },
    InspectionStopped {
        flow: Tuple,
        why: &'static str,
    },
    Dropped {
        flow: Tuple,
        dir: Dir,
        seq: u32,
        reason: DropReason,
    },
    HeldLineReleased {
        flow: Tuple,
        dir: Dir,
    },
    Resynced {
        flow: Tuple,
        dir: Dir,
        seq: u32,
        why: ResyncReason,
        /// The direction had rewrites: its offsets are kept, but an
        /// announcement in the bytes not seen was not rewritten.
        had_edits: bool,
    },
    /// The flow table is full of established sessions: this control
    /// connection is not tracked (its data connections are not helped).
    TableFull {
        flow: Tuple,
        flows: usize,
    },
}

impl Event {
    /// Short stable name, for JSON and log filtering.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::FlowNew { .. } => "flow-new",
            Event::FlowClosed { .. } => "flow-closed",
            Event::Line { .. } => "line",
            Event::ExpectationAdded(_) => "expect",
            Event::ExpectationRemoved { .. } => "expect-removed",
            Event::DataMatched { .. } => "data-matched",
            Event::Rewritten { .. } => "rewrite",
            Event::Refused { .. } => "refused",
            Event::Malformed { .. } => "malformed",
            Event::Recognised { .. } => "recognised",
            Event::Overlong { .. } => "overlong",
            Event::InspectionStopped { .. } => "inspection-stopped",
            Event::Dropped { .. } => "dropped",
            Event::HeldLineReleased { .. } => "held-line-released",
            Event::Resynced { .. } => "resynced",
            Event::TableFull { .. } => "table-full",
        }
    }

    /// The control connection it concerns.
    pub fn flow(&self) -> Tuple {
        self.subject().0
    }

    /// The direction, for events about a line or segment of one direction.
    pub fn dir(&self) -> Option<Dir> {
        self.subject().1
    }

    fn subject(&self) -> (Tuple, Option<Dir>) {
        match self {
            Event::FlowNew { mapping, .. } => (mapping.orig, None),
            Event::ExpectationAdded(exp)
            | Event::ExpectationRemoved { exp, .. }
            | Event::DataMatched { exp, .. } => (exp.master, None),
            Event::FlowClosed { flow }
            | Event::InspectionStopped { flow, .. }
            | Event::TableFull { flow, .. } => (*flow, None),
            Event::Line { flow, dir, .. }
            | Event::Rewritten { flow, dir, .. }
            | Event::Refused { flow, dir, .. }
            | Event::Malformed { flow, dir, .. }
            | Event::Recognised { flow, dir, .. }
            | Event::Overlong { flow, dir }
            | Event::Dropped { flow, dir, .. }
            | Event::HeldLineReleased { flow, dir }
            | Event::Resynced { flow, dir, .. } => (*flow, Some(*dir)),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::FlowNew { mapping, local } => {
                let origin = if *local { "local" } else { "forwarded" };
                if mapping.is_natted() {
                    write!(
                        f,
                        "new {origin} control connection, NAT reply {}",
                        mapping.reply
                    )
                } else {
                    write!(f, "new {origin} control connection, no NAT")
                }
            }
            Event::FlowClosed { .. } => write!(f, "control connection closed"),
            Event::Line { dir, text, .. } => write!(f, "{}: {text}", dir.name()),
            Event::ExpectationAdded(e) => write!(f, "expect {e}, {:?}", e.kind),
            Event::ExpectationRemoved { exp, reason } => {
                write!(f, "expectation {exp} removed ({reason:?})")
            }
            Event::DataMatched { tuple, exp } => {
                write!(f, "data connection {tuple} matched, RELATED, {}", exp.nat)
            }
            Event::Rewritten { before, after, .. } => write!(f, "rewrite '{before}' -> '{after}'"),
            Event::Refused { line, refusal, .. } => {
                write!(f, "refused [{}] '{line}': {refusal}", refusal.rule())
            }
            Event::Malformed { line, why, .. } => {
                write!(f, "malformed [{}] '{line}': passed unchanged", why.name())
            }
            Event::Recognised { what, .. } => write!(f, "{what}"),
            Event::Overlong { .. } => write!(f, "overlong line passed unchanged, not parsed"),
            Event::InspectionStopped { why, .. } => write!(f, "inspection stopped: {why}"),
            Event::Dropped { seq, reason, .. } => {
                write!(f, "segment seq {seq} dropped: {reason:?}")
            }
            Event::HeldLineReleased { .. } => write!(
                f,
                "held line head retransmitted too often: passed unchanged, line not rewritable"
            ),
            Event::Resynced {
                seq,
                why,
                had_edits,
                ..
            } => {
                match why {
                    ResyncReason::GapNotFilled => write!(f, "gap did not fill")?,
                    ResyncReason::UnseenBytes => write!(
                        f,
                        "bytes before seq {seq} passed uninspected (queue overflow?) and will not come again"
                    )?,
                }
                write!(f, ": resynchronised at seq {seq}")?;
                if *had_edits {
                    write!(
                        f,
                        "; earlier rewrites keep their offsets, an announcement in the unseen bytes was not rewritten"
                    )?;
                }
                Ok(())
            }
            Event::TableFull { flows, .. } => write!(
                f,
                "flow table full ({flows} established sessions): control connection not tracked"
            ),
        }
    }
}

/// Counters, for logs and the replay summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub not_tcp: u64,
    pub flows: u64,
    pub flows_untracked: u64,
    /// Unestablished flows evicted to make room.
    pub flows_evicted: u64,
    /// Flows replaced because NAT gave their reply tuple to a new connection.
    pub flows_stale: u64,
    /// SYNs and SYN-ACKs whose MSS was lowered by the rewrite headroom.
    pub mss_clamped: u64,
    /// Segments of a tracked connection whose sequence or acknowledgement
    /// number is far from its stream (spoofed): passed without a look.
    pub implausible: u64,
    /// Passive requests the kernel's rule noted unqueued, taken for the
    /// announcement that answered them.
    pub passive_notes: u64,
    pub expectations: u64,
    pub expectations_expired: u64,
    pub data_matched: u64,
    pub rewrites: u64,
    pub fixed_up: u64,
    pub refused: u64,
    pub malformed: u64,
    pub overlong_lines: u64,
    pub dropped: u64,
    pub held_given_up: u64,
    pub resyncs: u64,
    pub tls_sessions: u64,
}

/// One line, `name=value` pairs: the `state:` and `stopped:` log lines and
/// the replay summary. Counts since the start end in `_total`, so that the
/// `state:` line's `flows=` and `expectations=` (held now) keep one meaning.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        write!(
            f,
            "packets={} flows_total={} expectations_total={} data_matched={} rewrites={} fixed_up={} refused={} malformed={} overlong={} dropped={} held_given_up={} resyncs={} tls={} expired={} untracked={} evicted={} stale={} mss_clamped={} implausible={} passive_notes={}",
            s.packets,
            s.flows,
            s.expectations,
            s.data_matched,
            s.rewrites,
            s.fixed_up,
            s.refused,
            s.malformed,
            s.overlong_lines,
            s.dropped,
            s.held_given_up,
            s.resyncs,
            s.tls_sessions,
            s.expectations_expired,
            s.flows_untracked,
            s.flows_evicted,
            s.flows_stale,
            s.mss_clamped,
            s.implausible,
            s.passive_notes,
        )
    }
}
