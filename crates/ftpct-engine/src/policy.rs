//! Policy: which announced data connections may pass, and the names of the
//! rules that refuse the others (every refusal is logged with its rule).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::expect::ExpectRefusal;

/// Operator choices. Defaults are the kernel's, stronger where it protects
/// users (privileged data ports are refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Data ports below this are refused (bounce to port 25 and friends).
    pub min_data_port: u16,
    /// Third-party addresses allowed in announcements (FXP).
    pub allow_fxp: Vec<IpNet>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_data_port: 1024,
            allow_fxp: Vec::new(),
        }
    }
}

impl Policy {
    pub fn fxp_allowed(&self, addr: IpAddr) -> bool {
        self.allow_fxp.iter().any(|net| net.contains(&addr))
    }
}

/// Why an announcement got no expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the announcer's own address and not an allowed FXP peer.
    ForeignAddress {
        announced: IpAddr,
        expected: IpAddr,
    },
    PrivilegedPort {
        port: u16,
    },
    /// No free port on the public side near the announced one.
    NoFreePort {
        port: u16,
    },
    Limit(ExpectRefusal),
    /// The line had to be rewritten but its start already left unchanged.
    SplitLine,
    /// The NAT address is of a family the announcement cannot carry.
    FamilyMismatch,
    /// A 227/229 where the protocol puts none: not a single-line reply to
    /// a PASV/EPSV still waiting for its answer (e.g. a line inside a
    /// multi-line listing that quotes a crafted file name).
    Unsolicited,
    /// A 227/229 answering a PASV/EPSV that the client pipelined behind
    /// commands still waiting for their replies, one of which may quote
    /// text that forges it (see `dialogue`).
    Pipelined,
    /// Too many rewrites of this direction not yet acknowledged.
    TooManyEdits,
    /// The rewrite would make the segment longer than its receiver accepts.
    SegmentTooLong,
    /// The kernel keeps this connection's fix-ups, with one correction
    /// point per direction, and an earlier rewrite of this direction is
    /// not acknowledged yet: a second point would misplace retransmissions
    /// of the first.
    EditInFlight,
}

impl Refusal {
    /// Short stable name, for logs, JSON and counters.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::ForeignAddress { .. } => "foreign-address",
            Refusal::PrivilegedPort { .. } => "privileged-port",
            Refusal::NoFreePort { .. } => "no-free-port",
            Refusal::Limit(ExpectRefusal::GlobalLimit) => "global-expect-limit",
            Refusal::Limit(ExpectRefusal::Taken) => "expectation-taken",
            Refusal::SplitLine => "split-line",
            Refusal::FamilyMismatch => "family-mismatch",
            Refusal::Unsolicited => "unsolicited-reply",
            Refusal::Pipelined => "pipelined-passive",
            Refusal::TooManyEdits => "too-many-edits-in-flight",
            Refusal::SegmentTooLong => "segment-too-long",
            Refusal::EditInFlight => "edit-while-unacknowledged",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ForeignAddress {
                announced,
                expected,
            } => write!(
                f,
                "announced address {announced} is not the sender's own ({expected}) nor an allowed FXP peer (--allow-fxp)"
            ),
            Refusal::PrivilegedPort { port } => {
                write!(f, "data port {port} is privileged (--min-data-port)")
            }
            Refusal::NoFreePort { port } => {
                write!(f, "no free public port near {port}")
            }
            Refusal::Limit(ExpectRefusal::GlobalLimit) => {
                write!(f, "too many pending data connections in total")
            }
            Refusal::Limit(ExpectRefusal::Taken) => {
                write!(f, "another session expects the same address and port")
            }
            Refusal::FamilyMismatch => write!(
                f,
                "the NAT address is of a family this command cannot carry"
            ),
            Refusal::SplitLine => write!(
                f,
                "the line arrived split and its first part could not be held; left unchanged"
            ),
            Refusal::TooManyEdits => write!(
                f,
                "{} rewrites of this direction are not acknowledged yet; left unchanged",
                crate::seqadj::MAX_IN_FLIGHT
            ),
            Refusal::SegmentTooLong => write!(
                f,
                "rewriting it would make its segment longer than the receiver's MSS; left unchanged"
            ),
            Refusal::EditInFlight => write!(
                f,
                "an earlier rewrite of this direction is not acknowledged yet and the kernel keeps one correction point; left unchanged"
            ),
            Refusal::Pipelined => write!(
                f,
                "answers a PASV/EPSV pipelined behind other commands, whose replies may quote forged text; no data connection"
            ),
            Refusal::Unsolicited => write!(
                f,
                "not a single-line reply to a PASV/EPSV waiting for its answer (inside a multi-line reply, or nothing asked for it)"
            ),
        }
    }
}
