//! What the engine asks of the kernel. The engine decides; a driver (the
//! live daemon's executor, the replay, a test) carries the commands out, in
//! order, before it gives the packet's verdict: the expected SYN must find
//! its ipset entry, the data connection its conntrack entry.
//!
//! FTP and conntrack semantics live here, not in the drivers: how long a
//! destination stays expected, when its ipset entry goes (with the last
//! expectation that wants it), the data connection's NAT, timeout and mark.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::expect::Expectation;
use crate::kept::Kept;
use crate::tuple::{Dir, Tuple};

/// Conntrack timeout of a data connection's entry made at its SYN;
/// conntrack's TCP tracking takes over from the first answer.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// One thing for the kernel to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Let SYNs to `dst` reach ftpct (the ipset of expected destinations),
    /// for `timeout`; again for a destination already there refreshes it.
    ExpectDst { dst: SocketAddr, timeout: Duration },
    /// No expectation wants `dst` any more.
    ForgetDst { dst: SocketAddr },
    /// Make the data connection's conntrack entry, RELATED to its control
    /// connection, with its NAT.
    CreateRelated(Box<Related>),
    /// Stop TCP window checks on the control connection whose original
    /// tuple is `orig`: a rewrite changed lengths before conntrack saw the
    /// segment, so its window tracking would be off by the shift.
    SetLiberal { orig: Tuple },
    /// Replace the control connection's conntrack entry, which its SYN
    /// made, by the same entry made through ctnetlink, which can carry a
    /// sequence adjustment: the kernel then does the fix-ups of this
    /// connection. Sent at the connection's first rewrite, while the
    /// rewritten segment waits in the queue (the peer waits for it: the
    /// connection is quiet), and only then: a session without a rewrite
    /// keeps the entry its SYN made. Drivers answer with
    /// [`crate::CommandOutcome::Adopted`] or
    /// [`crate::CommandOutcome::NotAdopted`].
    AdoptControl(Box<Adoption>),
    /// Set the sequence adjustment of direction `dir` of the control
    /// connection whose original tuple is `orig` (an adopted one), before
    /// the verdict on the rewritten segment.
    SetSeqAdj { orig: Tuple, dir: Dir, adj: SeqAdj },
    /// Keep `kept` in the conntrack entry of the control connection
    /// `orig`: what a restarted ftpct or a standby gateway takes the
    /// session up from (see [`crate::kept`]; the driver encodes it, as
    /// conntrack labels live).
    Keep { orig: Tuple, kept: Kept },
    /// Selective queueing, after a segment of `direction` (which the
    /// kernel queued): whether ftpct still needs to see every segment of
    /// it, and whether it needs every segment of the connection's `other`
    /// direction. Not needed lets the direction go, but only after the
    /// verdict and once the queue holds no more packets: an unqueued
    /// segment must never overtake a queued one of its direction (it would
    /// leave with the sequence adjustment of before the edit). Needed
    /// cancels a pending release.
    Guard {
        direction: QueuedDirection,
        needed: bool,
        other: QueuedDirection,
        other_needed: bool,
    },
    /// Selective queueing: a direction of a closed session, queued whole
    /// until now, that no longer needs to be (let go like a `Guard` not
    /// needed).
    Unguard { direction: QueuedDirection },
    /// Selective queueing: queue every segment of this direction from now
    /// on, before the verdict (the guard entry, with the set's timeout;
    /// released by a later `Guard` that does not need it).
    GuardOn { direction: QueuedDirection },
    /// Selective queueing: every segment of this direction must cross
    /// (ftpct applies the connection's fix-ups itself): a guard entry
    /// without timeout, released with `Unguard` when the connection goes.
    GuardAlways { direction: QueuedDirection },
    /// Selective queueing: ftpct has just seen this connection after lines
    /// passed it unseen; the kernel's count of the bytes it let pass
    /// unseen starts again for both directions (the kernel queues a
    /// segment of a direction once its count is over its budget, so that
    /// no more than [`crate::stream::MAX_UNSEEN`] ever passes between two
    /// segments ftpct sees; how it counts them is the driver's business).
    RecountUnseen { directions: [QueuedDirection; 2] },
}

impl Command {
    /// True when no packet needs it carried out before its verdict: the
    /// kept state is what a restarted ftpct or a standby gateway reads, not
    /// what the packet's path through the kernel depends on. A driver may
    /// run these after the verdict (in order, before the next packet), so
    /// the packet waits for fewer kernel round trips.
    pub fn may_follow_verdict(&self) -> bool {
        matches!(self, Command::Keep { .. })
    }
}

/// One direction of a control connection that must stay queued (or may
/// stop being), named as its packets show it before NAT: their tuple and
/// which way they go. How the kernel keeps it queued (the guard sets'
/// entries, and that both directions of a connection without NAT share
/// one) is the driver's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueuedDirection {
    /// The tuple of the direction's packets before NAT.
    pub seen: Tuple,
    /// Orig: the client's packets; Reply: the server's.
    pub dir: Dir,
}

impl QueuedDirection {
    /// The direction of a packet with tuple `seen` going in direction `dir`.
    pub fn of(seen: &Tuple, dir: Dir) -> Self {
        QueuedDirection { seen: *seen, dir }
    }
}

/// Conntrack's sequence adjustment of one direction (struct
/// nf_ct_seqadj): segments that start after `correction_pos` move by
/// `offset_after`, the others by `offset_before`; acknowledgements of the
/// other direction move back the same way. One correction point per
/// direction, as the kernel keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqAdj {
    pub correction_pos: u32,
    pub offset_before: i32,
    pub offset_after: i32,
}

/// A control connection's entry to make anew through ctnetlink
/// ([`Command::AdoptControl`]), with what the new entry carries from the
/// start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub orig: Tuple,
    /// Both directions (the packets' view before NAT, by `Dir::index`):
    /// verdicts on the connection's other packets wait while the entry is
    /// gone, or conntrack would make one of its own from them.
    pub directions: [QueuedDirection; 2],
    /// The correction point of the rewrite that asked for the adoption,
    /// by direction (`Dir::index`).
    pub seqadj: [Option<SeqAdj>; 2],
    /// The session's kept state the new entry carries (see [`crate::kept`]).
    pub kept: Option<Kept>,
}

/// A data connection to create, with what its creation needs from the
/// kernel first (the master's mark) and what to do if it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// The entry, its mark not yet known.
    pub conn: DataConnection,
    /// `--mark`: bits the data connection gets over its master's mark.
    pub mark: Option<Mark>,
    /// The expectation the SYN matched: given back to the engine
    /// ([`crate::CommandOutcome::NotCreated`]) when the entry cannot be made, so
    /// that the client's retried SYN finds it again.
    pub exp: Expectation,
}

impl Related {
    /// The entry to create, given the mark its control connection has in
    /// conntrack (None: unknown or zero).
    pub fn with_master_mark(&self, inherited: Option<u32>) -> DataConnection {
        DataConnection {
            mark: data_mark(self.mark, inherited),
            ..self.conn
        }
    }
}

/// One NAT binding: translate to `addr`, and to `port` when given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatBinding {
    pub addr: IpAddr,
    /// None keeps the port (the kernel changes it only on a clash).
    pub port: Option<u16>,
}

/// The data connection's conntrack entry, RELATED to its control connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataConnection {
    /// Exact original-direction tuple of the data connection (from its SYN).
    pub tuple: Tuple,
    /// The control connection's ORIGINAL tuple.
    pub master: Tuple,
    pub nat_src: Option<NatBinding>,
    pub nat_dst: Option<NatBinding>,
    pub timeout_secs: u32,
    pub mark: Option<u32>,
}

impl DataConnection {
    /// The entry for a data SYN with `tuple` that matched `exp`: the
    /// follow-master NAT bindings the engine planned (source: address
    /// only; destination: address and port).
    pub fn for_match(tuple: &Tuple, exp: &Expectation) -> Self {
        DataConnection {
            tuple: *tuple,
            master: exp.master,
            nat_src: exp.nat.src.map(|addr| NatBinding { addr, port: None }),
            nat_dst: exp.nat.dst.map(|d| NatBinding {
                addr: d.ip(),
                port: Some(d.port()),
            }),
            timeout_secs: secs(DATA_TIMEOUT),
            mark: None,
        }
    }

    /// The data connection's tuple after its NAT (what the far side sees).
    pub fn translated(&self) -> Tuple {
        let src = self.nat_src.map_or(self.tuple.src, |b| {
            SocketAddr::new(b.addr, self.tuple.src.port())
        });
        let dst = self.nat_dst.map_or(self.tuple.dst, |b| {
            SocketAddr::new(b.addr, b.port.unwrap_or(self.tuple.dst.port()))
        });
        Tuple::new(src, dst)
    }
}

/// A duration in whole seconds for the kernel, at least one.
pub fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

/// `--mark VALUE[/MASK]`: conntrack mark bits given to data connections;
/// the other bits are inherited from the control connection, as the
/// kernel does for an expected connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

impl Mark {
    /// The mark of a data connection whose master carries `inherited`.
    pub fn apply(&self, inherited: u32) -> u32 {
        (inherited & !self.mask) | (self.value & self.mask)
    }
}

/// The data connection's mark: `--mark` over the master's, or the master's.
pub fn data_mark(mark: Option<Mark>, inherited: Option<u32>) -> Option<u32> {
    let inherited = inherited.unwrap_or(0);
    match mark {
        Some(m) => Some(m.apply(inherited)),
        None => (inherited != 0).then_some(inherited),
    }
}

/// A `--mark` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkError {
    /// A part is not a 32-bit number.
    NotANumber(String),
    /// The value sets bits the mask does not cover.
    OutsideMask { value: u32, mask: u32 },
}

impl fmt::Display for MarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkError::NotANumber(s) => {
                write!(f, "'{s}' is not a 32-bit number (decimal or 0x hex)")
            }
            MarkError::OutsideMask { value, mask } => write!(
                f,
                "the value {value:#x} has bits outside the mask {mask:#x}"
            ),
        }
    }
}

impl std::error::Error for MarkError {}

fn parse_u32(s: &str) -> Result<u32, MarkError> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| MarkError::NotANumber(s.to_string()))
}

impl FromStr for Mark {
    type Err = MarkError;
    fn from_str(s: &str) -> Result<Self, MarkError> {
        let (value, mask) = match s.split_once('/') {
            Some((v, m)) => (parse_u32(v)?, parse_u32(m)?),
            None => (parse_u32(s)?, u32::MAX),
        };
        if value & !mask != 0 {
            return Err(MarkError::OutsideMask { value, mask });
        }
        Ok(Mark { value, mask })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks() {
        let m: Mark = "0x10/0xf0".parse().expect("mark");
        assert_eq!(m.apply(0x0000_0f0f), 0x0000_0f1f);
        assert_eq!(
            "7".parse::<Mark>(),
            Ok(Mark {
                value: 7,
                mask: u32::MAX
            })
        );
        assert_eq!(
            "0x1f/0xf0".parse::<Mark>(),
            Err(MarkError::OutsideMask {
                value: 0x1f,
                mask: 0xf0
            })
        );
        assert!(matches!("x".parse::<Mark>(), Err(MarkError::NotANumber(_))));
        assert_eq!(data_mark(None, Some(5)), Some(5));
        assert_eq!(data_mark(None, None), None);
        assert_eq!(data_mark(Some(m), None), Some(0x10));
    }
}
