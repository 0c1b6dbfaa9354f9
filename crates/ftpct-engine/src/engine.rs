//! The sans-IO engine: a packet, the time and where it came from go in; a
//! verdict, the rewritten packet, events (what was decided and why) and
//! commands for the kernel come out. When the packet's fate depends on its
//! connection's NAT mapping, which only conntrack knows, the engine asks
//! for it ([`Question::Mapping`]) and the driver feeds the answer back.
//! The NFQUEUE loop, the pcap replay, the fuzz targets and the tests all
//! drive this.

use std::net::IpAddr;
use std::time::Duration;

use crate::command::{Command, QueuedDirection};
pub use crate::config::Config;
use crate::event::Stats;
use crate::expect::{ExpectTable, Expectation};
use crate::flow::{Flow, FlowId, FlowTable};
pub use crate::lines::printable;
use crate::nat::CtMapping;
use crate::outputs::Outputs;
use crate::policy::Policy;
pub use crate::protocol::{CommandOutcome, ConntrackEvent, Input, KernelNote, PolicyUpdate};
pub use crate::question::{Answer, Known, MappingQuestion, Question};
pub use crate::segment::MSS_HEADROOM;
use crate::tuple::{Dir, Tuple};
pub use crate::verdict::{Effects, Origin, Outcome, Verdict};

/// How often timers run at most.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// How often the whole flow table is scanned for idle flows (the idle
/// timeout is hours; closing flows have their own list).
pub(crate) const IDLE_SCAN: Duration = Duration::from_secs(30);

pub struct Engine {
    pub(crate) cfg: Config,
    pub(crate) flows: FlowTable,
    pub(crate) expects: ExpectTable,
    pub(crate) stats: Stats,
    pub(crate) next_tick: Duration,
    pub(crate) next_idle_scan: Duration,
    /// Flows that saw FIN both ways or RST, with the time they go.
    pub(crate) closing: Vec<(Duration, FlowId)>,
    /// Guard entries without timeout of flows that went: released with
    /// the next commands.
    pub(crate) unguard: Vec<QueuedDirection>,
    /// What waits to be polled.
    pub(crate) out: Outputs,
}

impl Engine {
    pub fn new(cfg: Config) -> Self {
        Engine {
            flows: FlowTable::new(cfg.max_flows),
            expects: ExpectTable::new(cfg.max_expect_total, cfg.max_expect_per_session),
            cfg,
            stats: Stats::default(),
            next_tick: Duration::ZERO,
            next_idle_scan: IDLE_SCAN,
            closing: Vec::new(),
            unguard: Vec::new(),
            out: Outputs::default(),
        }
    }

    /// A new policy while running (SIGHUP): what is allowed, how long and
    /// how many expectations; it applies to announcements from now on.
    pub(crate) fn set_policy(
        &mut self,
        policy: Policy,
        expect_timeout: Duration,
        per_session: usize,
    ) {
        self.cfg.policy = policy;
        self.cfg.expect_timeout = expect_timeout;
        self.cfg.max_expect_per_session = per_session;
        self.expects.set_session_limit(per_session);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    pub fn expectation_count(&self) -> usize {
        self.expects.len()
    }

    /// How many destinations the kernel's ipset must hold.
    pub fn pending_dst_count(&self) -> usize {
        self.expects.dst_count()
    }

    /// The NAT mapping of the control connection a tuple belongs to.
    pub fn mapping_of(&self, seen: &Tuple) -> Option<(CtMapping, Dir)> {
        let (id, dir) = self.flows.locate(seen)?;
        Some((self.flows.get(id)?.mapping, dir))
    }

    /// The acknowledgement number a packet with tuple `seen` carries when
    /// it acknowledges original position `pos` of the other direction:
    /// its sender received that direction after our edits.
    pub fn acknowledged_by(&self, seen: &Tuple, pos: u32) -> u32 {
        self.flows
            .locate(seen)
            .and_then(|(id, dir)| Some((self.flows.get(id)?, dir)))
            .map_or(pos, |(f, dir)| f.stream(dir.other()).adj().shift(pos))
    }

    /// True while some expectation still wants connections to `dst`: the
    /// kernel ipset entry for `dst` must stay until none does (in FXP two
    /// peers may be expected at one address and port).
    pub fn expects_dst(&self, dst: std::net::SocketAddr) -> bool {
        self.expects.expects_dst(dst)
    }

    /// Takes back an expectation whose data connection the kernel could
    /// not be given (e.g. a full conntrack table), so that the client's
    /// retried SYN matches it again. False when its control connection
    /// or its room is gone.
    pub(crate) fn reinstate(&mut self, exp: Expectation) -> Vec<Command> {
        let Some((owner, Dir::Orig)) = self.flows.locate(&exp.master) else {
            return Vec::new();
        };
        match self.expects.insert(&exp, owner) {
            Ok(None) => vec![self.expect_dst(exp.dst)],
            _ => Vec::new(),
        }
    }

    /// The flow whose original tuple is `orig`, as a token that tells it
    /// from another flow of the same tuple later (see
    /// a conntrack event, [`crate::ConntrackEvent`]).
    pub fn flow_of(&self, orig: &Tuple) -> Option<u64> {
        match self.flows.locate(orig) {
            Some((id, Dir::Orig)) => self.flows.get(id).map(Flow::generation),
            _ => None,
        }
    }

    /// True when `orig` is the original tuple of a tracked control connection.
    pub fn tracks(&self, orig: &Tuple) -> bool {
        matches!(self.flows.locate(orig), Some((_, Dir::Orig)))
    }

    /// True when the tracked control connection `orig` is closing: its
    /// end is set (both FINs or a reset seen, or the client's FIN noted)
    /// and it lingers until then.
    pub fn closing(&self, orig: &Tuple) -> bool {
        match self.flows.locate(orig) {
            Some((id, Dir::Orig)) => self.flows.get(id).is_some_and(|f| f.closing_at.is_some()),
            _ => false,
        }
    }

    /// Every destination some expectation wants: what the kernel's ipset
    /// must hold (checked against it, removed at exit).
    pub fn pending_dsts(&self) -> Vec<std::net::SocketAddr> {
        self.expects.dsts()
    }

    /// The control connections followed now (a status snapshot).
    pub fn flows(&self) -> impl Iterator<Item = &crate::flow::Flow> + '_ {
        self.flows.iter()
    }

    /// The pending expectations with their control connection's original
    /// tuple, soonest deadline first (a status snapshot).
    pub fn expectations(&self) -> Vec<Expectation> {
        let flows = &self.flows;
        self.expects.all(|id| flows.get(id).map(|f| f.mapping.orig))
    }

    pub(crate) fn expect_dst(&self, dst: std::net::SocketAddr) -> Command {
        Command::ExpectDst {
            dst,
            timeout: self.cfg.expect_timeout,
        }
    }

    /// The public destination of the pending expectation that NAT would
    /// send from `peer` to `inside`.
    pub fn expected_public_dst(
        &self,
        peer: IpAddr,
        inside: std::net::SocketAddr,
    ) -> Option<std::net::SocketAddr> {
        self.expects.public_dst_for(peer, inside)
    }

    pub(crate) fn is_control_port(&self, port: u16) -> bool {
        self.cfg.control_ports.contains(&port)
    }
}
