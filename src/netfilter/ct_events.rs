//! Conntrack's destroy events (multicast group NFNLGRP_CONNTRACK_DESTROY):
//! a control connection whose entry conntrack removed (timed out, deleted
//! by `conntrack -D`, flushed) is forgotten even when ftpct never saw its
//! FIN or RST.

use ftpct_engine::tuple::Tuple;

use crate::netfilter::ctnetlink::decode_tuple;
use crate::netfilter::error::{Error, Op, Subsystem};
use crate::netfilter::event_filter;
use crate::netfilter::netlink::NlSocket;

const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
const CTA_TUPLE_ORIG: u16 = 1;

/// One destroyed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destroyed {
    /// Its original tuple.
    pub orig: Tuple,
    /// The netlink port id of the socket whose delete destroyed it (0:
    /// conntrack itself, a timeout or a close).
    pub by: u32,
}

/// A socket that receives destroy events.
pub struct DestroyEvents {
    sock: NlSocket,
}

impl DestroyEvents {
    pub fn open() -> Result<Self, Error> {
        let mut sock = NlSocket::open(Subsystem::Ctnetlink)?;
        sock.join_group(NFNLGRP_CONNTRACK_DESTROY)?;
        sock.set_timeout(std::time::Duration::from_secs(1))?;
        Ok(DestroyEvents { sock })
    }

    /// From now on, only the events of TCP entries to one of `ports`
    /// come, but those of deletes by the sockets of port ids `ignored`
    /// (a filter in the kernel; see [`crate::netfilter::event_filter`]);
    /// false when they are too many for one (all events still come).
    pub fn only_to_ports(&mut self, ports: &[u16], ignored: &[u32]) -> Result<bool, Error> {
        let Some(program) = event_filter::control_port_events(ports, ignored) else {
            return Ok(false);
        };
        self.sock.attach_filter(&program)?;
        Ok(true)
    }

    /// The TCP entries destroyed since the last call, waiting at most a
    /// second for the first.
    pub fn destroyed(&mut self) -> Result<Vec<Destroyed>, Error> {
        let messages = self.sock.events(Op::CtEvents)?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                let attrs = m.nf_attrs().ok()?;
                let orig = attrs.find(CTA_TUPLE_ORIG).ok()??;
                let orig = decode_tuple(orig.nested()).ok()??;
                Some(Destroyed { orig, by: m.pid })
            })
            .collect())
    }
}
