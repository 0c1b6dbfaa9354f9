//! nf_tables' change events (multicast group NFNLGRP_NFTABLES), so that
//! the rule watch looks at the raw table (an `iptables-save` per family,
//! some 1,500 system calls a look) when the ruleset changed, not every
//! second. iptables-nft's rules are nf_tables objects: every change of
//! them (a reload, `iptables -F`, `nft flush ruleset`) is announced to
//! the group's members. Legacy iptables' changes are not: the watch
//! trusts the events only while the raw table's saves say nf_tables.

use crate::netfilter::error::{Error, Subsystem};
use crate::netfilter::netlink::NlSocket;

/// The multicast group of nf_tables' ruleset events.
const NFNLGRP_NFTABLES: u32 = 7;
/// Datagrams read at most per call: past that, a change is said anyway.
const MAX_READ: usize = 1024;

/// Whether the ruleset may have changed since the last call.
pub trait RulesetChanges {
    fn changed(&mut self) -> bool;
}

/// A socket that receives nf_tables' events.
pub struct RulesetEvents {
    sock: NlSocket,
}

impl RulesetEvents {
    /// Joins the group (CAP_NET_ADMIN; nf_tables loaded).
    pub fn open() -> Result<Self, Error> {
        let mut sock = NlSocket::open(Subsystem::Nftables)?;
        sock.join_group(NFNLGRP_NFTABLES)?;
        Ok(RulesetEvents { sock })
    }
}

impl RulesetChanges for RulesetEvents {
    /// True when an event came since the last call, or some were lost
    /// (the socket overflowed): the events are read to their end.
    fn changed(&mut self) -> bool {
        !matches!(self.sock.drain(MAX_READ), Ok(0))
    }
}
