//! What a netlink request is: the subsystem it speaks to, its operation
//! and what it is about, as errors and counters name them.

use std::fmt;

use ftpct_engine::tuple::Tuple;

/// The netlink subsystem a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsystem {
    Ctnetlink,
    Ipset,
    /// nf_tables, whose change events the rule watch reads.
    Nftables,
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subsystem::Ctnetlink => "ctnetlink",
            Subsystem::Ipset => "ipset",
            Subsystem::Nftables => "nf_tables",
        })
    }
}

/// A request ftpct sends to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Look a conntrack entry up by one of its tuples.
    CtGet,
    /// Create a data connection's entry, RELATED to its master.
    CtCreate,
    CtDelete,
    /// Turn off TCP window checks on an entry.
    CtSetLiberal,
    /// Set an entry's sequence adjustment.
    CtSetSeqAdj,
    /// Re-create an entry through ctnetlink (same tuples, NAT, state).
    CtAdopt,
    /// Set some of an entry's label bits.
    CtSetLabels,
    /// List every entry.
    CtDump,
    /// Receive conntrack's destroy events.
    CtEvents,
    /// Ask which ipset protocol versions the kernel speaks.
    IpsetProtocol,
    /// Ask which revisions of `hash:ip,port` the kernel has.
    IpsetType,
    /// Ask the type and family of a set.
    IpsetHeader,
    IpsetCreate,
    IpsetAdd,
    IpsetDel,
    IpsetTest,
    IpsetFlush,
    IpsetDestroy,
    /// Exchange two sets (the rules' references follow the names).
    IpsetSwap,
    /// List a set's elements.
    IpsetList,
}

impl Op {
    /// Every operation, in declaration order (see [`Op::index`]).
    pub const ALL: [Op; 20] = [
        Op::CtGet,
        Op::CtCreate,
        Op::CtDelete,
        Op::CtSetLiberal,
        Op::CtSetSeqAdj,
        Op::CtAdopt,
        Op::CtSetLabels,
        Op::CtDump,
        Op::CtEvents,
        Op::IpsetProtocol,
        Op::IpsetType,
        Op::IpsetHeader,
        Op::IpsetCreate,
        Op::IpsetAdd,
        Op::IpsetDel,
        Op::IpsetTest,
        Op::IpsetFlush,
        Op::IpsetDestroy,
        Op::IpsetSwap,
        Op::IpsetList,
    ];

    /// Its place in [`Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn subsystem(self) -> Subsystem {
        match self {
            Op::CtGet
            | Op::CtCreate
            | Op::CtDelete
            | Op::CtSetLiberal
            | Op::CtSetSeqAdj
            | Op::CtAdopt
            | Op::CtSetLabels
            | Op::CtDump
            | Op::CtEvents => Subsystem::Ctnetlink,
            _ => Subsystem::Ipset,
        }
    }

    /// The operation in a message ("create", "del"...).
    pub fn verb(self) -> &'static str {
        match self {
            Op::CtGet => "get",
            Op::CtCreate | Op::IpsetCreate => "create",
            Op::CtDelete => "delete",
            Op::CtSetLiberal | Op::CtSetSeqAdj | Op::CtSetLabels => "update",
            Op::CtAdopt => "re-create",
            Op::CtDump => "list",
            Op::CtEvents => "events",
            Op::IpsetProtocol => "protocol",
            Op::IpsetType => "type",
            Op::IpsetHeader => "header",
            Op::IpsetAdd => "add",
            Op::IpsetDel => "del",
            Op::IpsetTest => "test",
            Op::IpsetFlush => "flush",
            Op::IpsetDestroy => "destroy",
            Op::IpsetSwap => "swap",
            Op::IpsetList => "list",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_at_its_index() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
    }
}

/// What a request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nothing in particular (the protocol and type queries).
    None,
    /// A conntrack entry, by one of its tuples.
    Conn(Tuple),
    /// A data connection's entry and its master (control connection),
    /// boxed to keep every `Result` of this module small.
    Related { tuple: Tuple, master: Box<Tuple> },
    /// An ipset, by name.
    Set(String),
}

impl Target {
    pub fn related(tuple: Tuple, master: Tuple) -> Self {
        Target::Related {
            tuple,
            master: Box::new(master),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::None => f.write_str("-"),
            Target::Conn(t) => write!(f, "{t}"),
            Target::Related { tuple, master } => write!(f, "{tuple} (master {master})"),
            Target::Set(name) => f.write_str(name),
        }
    }
}
