//! The sans-IO engine: a packet, the time and where it was seen go in; a
//! verdict, the rewritten packet, events (what was decided and why) and
//! commands for the kernel come out. When the packet's fate depends on its
//! connection's NAT mapping, which only conntrack knows, the engine asks
//! for it ([`Step::NeedMapping`]) and the driver feeds the answer back.
//! The NFQUEUE loop, the pcap replay, the fuzz targets and the tests all
//! drive this.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use crate::classifier::may_hold_an_announcement;
use crate::command::{Adoption, Command, DataConnection, GuardKey, Mark, Related, SeqAdj};
use crate::dialogue::{Asked, Dialogue, ReplyLine};
use crate::event::{Event, RemoveReason, ResyncReason, Stats};
use crate::expect::{ExpectTable, Expectation};
use crate::flow::{Fixups, Flow, FlowId, FlowTable};
use crate::grammar::{self, Announce, AnnounceKind, ClientLine, ServerLine};
use crate::kept::{self, Kept};
use crate::nat::{plan, CtMapping, NatLookup};
use crate::policy::{Policy, Refusal};
use crate::stream::{Arrival, DropReason, Fate, GapFate, Line};
use crate::tuple::{Dir, Tuple};
use crate::wire::{Rebuild, TcpPacket};

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

/// What the driver knows of a packet's NAT mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Not asked yet: the engine says if it needs it.
    NotAsked,
    /// Conntrack's answer to [`Step::NeedMapping`] (None: no entry).
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

/// One step of the engine on a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Decided(Outcome),
    /// Ask conntrack, then call [`Engine::step`] again with the answer
    /// (nothing changed meanwhile: the packet is processed from the start).
    NeedMapping(MappingQuestion),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub control_ports: Vec<u16>,
    pub max_line: usize,
    pub expect_timeout: Duration,
    pub max_expect_per_session: usize,
    pub max_expect_total: usize,
    pub max_flows: usize,
    /// Flows not established yet (see `flow`), at most; the oldest makes
    /// room for a new one.
    pub max_unestablished: usize,
    pub idle_timeout: Duration,
    /// Idle time after which an unestablished flow goes (conntrack's
    /// SYN_SENT timeout).
    pub unestablished_timeout: Duration,
    /// How long a flow stays after FIN both ways (late ACKs need fix-ups).
    pub close_linger: Duration,
    pub policy: Policy,
    /// Report every complete line as an event (replay, debug logs).
    pub report_lines: bool,
    /// `--mark`: conntrack mark bits of data connections.
    pub data_mark: Option<Mark>,
    /// Hand each NATed control connection's sequence fix-ups to the kernel
    /// ([`Command::AdoptControl`], [`Command::SetSeqAdj`]) instead of
    /// applying them to every packet (the live daemon; never the replay).
    pub kernel_fixups: bool,
    /// Keep each session's state in its conntrack labels from this bit on
    /// (see `kept`; the live daemon), or not at all (None: the replay).
    pub label_base: Option<u8>,
    /// Selective queueing (the live default): the kernel queues only the
    /// segments that can hold part of an announcement, AUTH or a
    /// multi-line opener, and those that do not end a line and their
    /// continuations (the guard ipset, [`Command::Guard`]). Bytes that pass
    /// unseen between two queued segments are complete lines, so a gap
    /// met between lines is no loss; replies are paired with the latest
    /// passive request (see `dialogue`). False: every control packet is
    /// queued (`--queue-all`, the replay).
    pub selective: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control_ports: vec![21],
            max_line: 1024,
            expect_timeout: Duration::from_secs(300),
            max_expect_per_session: 16,
            max_expect_total: 100_000,
            max_flows: 100_000,
            max_unestablished: 8192,
            idle_timeout: Duration::from_secs(7200),
            unestablished_timeout: Duration::from_secs(120),
            close_linger: Duration::from_secs(10),
            policy: Policy::default(),
            report_lines: false,
            data_mark: None,
            kernel_fixups: false,
            label_base: None,
            selective: false,
        }
    }
}

/// How much the MSS that each end of a control connection announces is
/// lowered: the most a rewrite can add to a segment (an EPRT of the
/// longest IPv6 address and port for the shortest: 40 bytes), rounded up.
/// A full-size segment whose announcement grows then still fits the path
/// (the kernel helper lets such a segment exceed the MTU, and it stalls).
pub const MSS_HEADROOM: u16 = 48;
/// MSS values at or below this are left alone (IPv4's default MSS).
const MIN_MSS: u16 = 536;

/// How often timers run at most.
const TICK: Duration = Duration::from_secs(1);
/// How often the whole flow table is scanned for idle flows (the idle
/// timeout is hours; closing flows have their own list).
const IDLE_SCAN: Duration = Duration::from_secs(30);

pub struct Engine {
    cfg: Config,
    flows: FlowTable,
    expects: ExpectTable,
    stats: Stats,
    next_tick: Duration,
    next_idle_scan: Duration,
    /// Flows that saw FIN both ways or RST, with the time they go.
    closing: Vec<(Duration, FlowId)>,
    /// Guard entries without timeout of flows that went: released with
    /// the next commands.
    unguard: Vec<GuardKey>,
}

/// What the per-packet work needs besides the flow itself (borrowed
/// from the engine's other fields, so one flow lookup serves a packet).
struct Ctx<'a> {
    /// The flow's slot: expectations are owned by it.
    id: FlowId,
    cfg: &'a Config,
    expects: &'a mut ExpectTable,
    stats: &'a mut Stats,
    events: &'a mut Vec<Event>,
    now: Duration,
    /// How many bytes the segment being handled may still grow by before
    /// it exceeds what its receiver accepts (None: its MSS is unknown).
    room: Option<usize>,
    /// The segment may leave shorter than it came (it carries no FIN).
    may_cut: bool,
    /// Where the segment's data starts (original numbering).
    segment_start: u32,
    /// For the kernel, decided while handling the packet.
    commands: Vec<Command>,
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
        }
    }

    /// A new policy while running (SIGHUP): what is allowed, how long and
    /// how many expectations; it applies to announcements from now on.
    pub fn set_policy(&mut self, policy: Policy, expect_timeout: Duration, per_session: usize) {
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
            .map_or(pos, |(f, dir)| f.stream(other(dir)).adj().shift(pos))
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
    pub fn reinstate(&mut self, exp: Expectation) -> Vec<Command> {
        let Some((owner, Dir::Orig)) = self.flows.locate(&exp.master) else {
            return Vec::new();
        };
        match self.expects.insert(&exp, owner) {
            Ok(None) => vec![self.expect_dst(exp.dst)],
            _ => Vec::new(),
        }
    }

    /// The kernel took the fix-ups of control connection `orig`
    /// ([`Command::AdoptControl`] worked): from now on ftpct only edits
    /// payloads and sets correction points.
    pub fn adopted(&mut self, orig: &Tuple) -> Vec<Command> {
        if let Some(flow) = self.flows.by_tuple_mut(orig) {
            flow.fixups = Fixups::Kernel;
            flow.adopt_asked = true;
        }
        self.keep_in_labels(orig).into_iter().collect()
    }

    /// The kernel could not take the fix-ups of control connection `orig`
    /// ([`Command::AdoptControl`] failed): ftpct shifts its packets itself
    /// from the rewrite that asked (the rewritten segment itself and what
    /// came before it need no shift either way). Returns what that needs:
    /// the connection queued whole, no window checks, its labels.
    pub fn not_adopted(&mut self, orig: &Tuple) -> Vec<Command> {
        let Some(flow) = self.flows.by_tuple_mut(orig) else {
            return Vec::new();
        };
        flow.fixups = Fixups::Own;
        let mut commands = self.first_rewrite(orig);
        commands.extend(self.keep_in_labels(orig));
        commands
    }

    /// The flow whose original tuple is `orig`, as a token that tells it
    /// from another flow of the same tuple later (see
    /// [`Engine::conntrack_destroyed`]).
    pub fn flow_of(&self, orig: &Tuple) -> Option<u64> {
        match self.flows.locate(orig) {
            Some((id, Dir::Orig)) => self.flows.get(id).map(Flow::generation),
            _ => None,
        }
    }

    /// Conntrack removed the entry whose original tuple is `orig` (it timed
    /// out, was deleted or flushed) while `flow` ([`Engine::flow_of`]) was
    /// its flow: that control connection is gone even if ftpct never saw
    /// its FIN or RST. A later connection on the tuple (whose SYN may be
    /// what ended the old entry) is not touched. True if it was tracked.
    pub fn conntrack_destroyed(&mut self, orig: &Tuple, flow: u64) -> (bool, Effects) {
        let mut events = Vec::new();
        let tracked = match self.flows.locate(orig) {
            Some((id, Dir::Orig)) if self.flows.get(id).map(Flow::generation) == Some(flow) => {
                self.close_flow(id, &mut events);
                true
            }
            _ => false,
        };
        let commands = self.commands_for(&events);
        (tracked, Effects { events, commands })
    }

    /// The client of control connection `orig` sent its FIN, seen by the
    /// kernel's rules instead of queued (selective queueing): the session
    /// ends for ftpct after the linger, as when the engine sees that FIN.
    /// True if `orig` is tracked and was not closing yet.
    pub fn client_finished(&mut self, orig: &Tuple, now: Duration) -> bool {
        let Some((id, Dir::Orig)) = self.flows.locate(orig) else {
            return false;
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return false;
        };
        if flow.closing_at.is_some() {
            return false;
        }
        let at = now + self.cfg.close_linger;
        flow.closing_at = Some(at);
        self.closing.push((at, id));
        true
    }

    /// Selective queueing: the kernel's rule lets a segment holding just a
    /// PASV or EPSV pass unqueued and notes its session in the passive set
    /// instead. A server segment of a followed session that may hold an
    /// announcement, with no passive request seen or noted, needs that
    /// note: the guard key of the client's direction to take it by, and the
    /// session's original tuple for [`Engine::passive_noted`]. `known`:
    /// conntrack's answer about the packet's connection, when it was asked
    /// ([`Step::NeedMapping`]): a segment whose tuple the engine does not
    /// know yet (NAT gave a reused client port a new public port) is then
    /// found by the entry's original tuple.
    pub fn passive_note_wanted(
        &self,
        bytes: &[u8],
        known: Option<&CtMapping>,
    ) -> Option<(GuardKey, Tuple)> {
        if !self.cfg.selective {
            return None;
        }
        let pkt = TcpPacket::parse(bytes).ok()?;
        let by_answer = known
            .filter(|m| m.reply == pkt.tuple)
            .and_then(|m| self.flows.locate(&m.orig))
            .map(|(id, _)| (id, Dir::Reply));
        let (id, Dir::Reply) = self.flows.locate(&pkt.tuple).or(by_answer)? else {
            return None;
        };
        let flow = self.flows.get(id)?;
        // A segment the engine will not read (spoofed, or of an older
        // connection on the tuple) must not use the note up.
        let unread = !flow.inspecting || !plausible(flow, Dir::Reply, &pkt);
        if unread || flow.dialogue.passive_asked() {
            return None;
        }
        let unfinished = flow.stream(Dir::Reply).unfinished_line();
        may_hold_an_announcement(unfinished, pkt.payload())
            .then(|| (guard_keys(&flow.mapping)[0], flow.mapping.orig))
    }

    /// Selective queueing: a server segment of a connection the engine does
    /// not follow (ftpct restarted, or lost the flow), that may hold an
    /// announcement, and conntrack's answer about it (`known`): the flow is
    /// started now, as deciding the segment would start it, so that its
    /// passive note can be taken first (the PASV passed unqueued, and a
    /// session picked up at its 227 would refuse it). The events to log.
    pub fn track_reply(
        &mut self,
        bytes: &[u8],
        known: &CtMapping,
        now: Duration,
        hook: Hook,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let Ok(pkt) = TcpPacket::parse(bytes) else {
            return events;
        };
        let unknown =
            self.flows.locate(&pkt.tuple).is_none() && self.flows.locate(&known.orig).is_none();
        let from_server = known.reply == pkt.tuple
            && self.is_control_port(known.orig.dst.port())
            && !pkt.flags.syn
            && !pkt.flags.rst;
        if self.cfg.selective
            && unknown
            && from_server
            && may_hold_an_announcement(&[], pkt.payload())
        {
            self.track(*known, true, now, hook, &mut events, Dir::Reply);
        }
        events
    }

    /// The kernel had noted a passive request of session `orig` (taken
    /// from its set): the next 227 or 229 answers it.
    pub fn passive_noted(&mut self, orig: &Tuple) {
        if let Some((id, Dir::Orig)) = self.flows.locate(orig) {
            if let Some(flow) = self.flows.get_mut(id) {
                flow.dialogue.passive_noted();
                self.stats.passive_notes += 1;
            }
        }
    }

    /// True when `orig` is the original tuple of a tracked control connection.
    pub fn tracks(&self, orig: &Tuple) -> bool {
        matches!(self.flows.locate(orig), Some((_, Dir::Orig)))
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

    fn expect_dst(&self, dst: std::net::SocketAddr) -> Command {
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

    /// Runs expiry timers. Drivers call it about once a second when idle;
    /// `process` calls it too.
    pub fn tick(&mut self, now: Duration) -> Effects {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        let commands = self.commands_for(&events);
        Effects { events, commands }
    }

    /// What the kernel must do after `events`: the ipset follows the
    /// expectations (an entry goes with the last expectation of its
    /// destination: in FXP two peers may be expected at one address and
    /// port), a matched data SYN gets its entry, and a rewrite turns off
    /// window checks on its control connection (once per connection).
    fn commands_for(&mut self, events: &[Event]) -> Vec<Command> {
        let mut commands: Vec<Command> = self
            .unguard
            .drain(..)
            .map(|key| Command::Guard { key, needed: false })
            .collect();
        for e in events {
            match e {
                Event::ExpectationAdded(exp) => commands.push(self.expect_dst(exp.dst)),
                Event::ExpectationRemoved { exp, .. } => self.forget_dst(exp, &mut commands),
                Event::DataMatched { tuple, exp } => {
                    commands.push(Command::CreateRelated(Box::new(Related {
                        conn: DataConnection::for_match(tuple, exp),
                        mark: self.cfg.data_mark,
                        exp: exp.clone(),
                    })));
                    self.forget_dst(exp, &mut commands);
                }
                Event::Rewritten { flow, .. } => commands.extend(self.first_rewrite(flow)),
                _ => {}
            }
        }
        for e in events {
            if let Event::ExpectationAdded(exp)
            | Event::ExpectationRemoved { exp, .. }
            | Event::DataMatched { exp, .. } = e
            {
                commands.extend(self.keep_in_labels(&exp.master));
            }
            // ftpct's own fix-ups moved: a restart must go on with them.
            if let Event::Rewritten { flow, .. } = e {
                commands.extend(self.keep_in_labels(flow));
            }
        }
        commands
    }

    /// Labels for the control connection `orig` when what they keep
    /// changed (see `kept`).
    fn keep_in_labels(&mut self, orig: &Tuple) -> Option<Command> {
        let base = self.cfg.label_base?;
        let (id, _) = self.flows.locate(orig)?;
        let flow = self.flows.get(id)?;
        let pending = self
            .expects
            .latest_of(id, flow.mapping.orig)
            .and_then(|exp| kept::keep(&flow.mapping, &exp));
        let kernel = flow.fixups == Fixups::Kernel;
        let own_shift = if kernel {
            [0, 0]
        } else {
            [Dir::Orig, Dir::Reply].map(|d| flow.stream(d).adj().total_shift())
        };
        let mut kept = Kept {
            kernel_fixups: kernel,
            pending,
            own_shift,
        };
        if !kept.fits() {
            // Too far for its bits: a restart will not shift it.
            kept.own_shift = [0, 0];
        }
        let bits = kept.to_bits();
        let flow = self.flows.get_mut(id)?;
        if std::mem::replace(&mut flow.kept, bits) == bits {
            return None;
        }
        let (labels, mask) = kept.labels(base);
        Some(Command::SetLabels {
            orig: *orig,
            labels,
            mask,
        })
    }

    /// Takes up again a session that conntrack kept for ftpct (at start:
    /// a restart, or a standby gateway taking over): its mapping, the
    /// kernel's sequence corrections, and its label bits. Returns the
    /// commands its pending expectation needs (its ipset entry).
    pub fn resume(
        &mut self,
        mapping: CtMapping,
        seqadj: [Option<SeqAdj>; 2],
        labels: &[u8; 16],
        now: Duration,
    ) -> Vec<Command> {
        let Some(kept) = self
            .cfg
            .label_base
            .and_then(|base| Kept::from_labels(labels, base))
        else {
            return Vec::new();
        };
        if self.flows.locate(&mapping.orig).is_some() {
            return Vec::new();
        }
        let Some(id) = self.flows.insert(self.new_flow(mapping, true, now)) else {
            return Vec::new();
        };
        self.stats.flows += 1;
        // Established: it is past its handshake.
        self.flows.spoke(id, Dir::Orig, false);
        self.flows.spoke(id, Dir::Reply, false);
        let Some(flow) = self.flows.get_mut(id) else {
            return Vec::new();
        };
        flow.kept = kept.to_bits();
        // Past its greeting: the next final reply answers the next command.
        flow.dialogue.lost_track();
        // Shifted so far: by the kernel (its seqadj), or by ftpct itself
        // (the labels), and from now on by the same.
        let shifts = if kept.kernel_fixups {
            flow.fixups = Fixups::Kernel;
            seqadj.map(|a| a.map_or(0, |a| a.offset_after))
        } else {
            kept.own_shift
        };
        flow.liberal = kept.kernel_fixups || shifts != [0, 0];
        // Adopted already, or shifted by ftpct: too late to hand over.
        flow.adopt_asked = flow.liberal;
        for dir in [Dir::Orig, Dir::Reply] {
            flow.streams[dir.index()].resume_offset(shifts[dir.index()]);
        }
        let mut commands = if shifts != [0, 0] && flow.fixups == Fixups::Own {
            guard_always(flow, self.cfg.selective)
        } else {
            Vec::new()
        };
        let Some(p) = kept.pending else {
            return commands;
        };
        let exp = kept::restore(&mapping, &p, now + self.cfg.expect_timeout);
        if self.expects.insert(&exp, id).is_ok() {
            self.stats.expectations += 1;
            commands.push(self.expect_dst(exp.dst));
        }
        commands
    }

    fn forget_dst(&self, exp: &Expectation, commands: &mut Vec<Command>) {
        let forget = Command::ForgetDst { dst: exp.dst };
        if !self.expects.expects_dst(exp.dst) && !commands.contains(&forget) {
            commands.push(forget);
        }
    }

    fn first_rewrite(&mut self, orig: &Tuple) -> Vec<Command> {
        let Some(flow) = self.flows.by_tuple_mut(orig) else {
            return Vec::new();
        };
        // An adopted entry was made liberal.
        if flow.fixups == Fixups::Kernel || std::mem::replace(&mut flow.liberal, true) {
            return Vec::new();
        }
        let mut commands = guard_always(flow, self.cfg.selective);
        commands.push(Command::SetLiberal { orig: *orig });
        commands
    }

    fn run_timers(&mut self, now: Duration, events: &mut Vec<Event>) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let flows = &self.flows;
        let master_of = |id: FlowId| flows.get(id).map(|f| f.mapping.orig);
        for e in self.expects.expire(now, master_of) {
            self.stats.expectations_expired += 1;
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::Expired,
            });
        }
        let (due, later): (Vec<_>, Vec<_>) = self.closing.iter().partition(|(t, _)| *t <= now);
        self.closing = later;
        for (t, id) in due {
            // The slot may hold a newer flow by now: close only the one that was closing.
            if self.flows.get(id).is_some_and(|f| f.closing_at == Some(t)) {
                self.close_flow(id, events);
            }
        }
        if now >= self.next_idle_scan {
            self.next_idle_scan = now + IDLE_SCAN;
            let idle = self
                .flows
                .idle(now, self.cfg.idle_timeout, self.cfg.unestablished_timeout);
            for id in idle {
                self.close_flow(id, events);
            }
            self.flows.shrink();
        }
    }

    fn close_flow(&mut self, id: FlowId, events: &mut Vec<Event>) {
        let Some(flow) = self.flows.remove(id) else {
            return;
        };
        let orig = flow.mapping.orig;
        // The guard entries of directions still queued whole go with the
        // flow: left to the set's timeout (or none, for a connection queued
        // whole), a client that opens lines and leaves would fill the set.
        let queued_whole = [Dir::Orig, Dir::Reply]
            .map(|dir| flow.guard_always || self.cfg.selective && needs_every_segment(&flow, dir));
        for (key, whole) in guard_keys(&flow.mapping).into_iter().zip(queued_whole) {
            if whole {
                self.unguard.push(key);
            }
        }
        for e in self.expects.remove_owner(id, orig) {
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::MasterClosed,
            });
        }
        events.push(Event::FlowClosed { flow: orig });
    }

    /// Processes one IP packet seen at `hook` at time `now`, with a NAT
    /// answerer that answers at once (rules offline, tests).
    pub fn process(
        &mut self,
        bytes: &[u8],
        now: Duration,
        hook: Hook,
        nat: &mut dyn NatLookup,
    ) -> Outcome {
        match self.step(bytes, now, hook, Known::NotAsked) {
            Step::Decided(out) => out,
            Step::NeedMapping(q) => {
                let answer = q.answer_with(nat);
                let lookup = Lookup {
                    answer,
                    located: None,
                };
                self.decide(TcpPacket::parse(bytes).ok(), now, hook, &lookup)
            }
        }
    }

    /// One IP packet seen at `hook` at time `now`: decided, or a question
    /// first. Asking changes nothing in the engine.
    pub fn step(&mut self, bytes: &[u8], now: Duration, hook: Hook, known: Known) -> Step {
        // Parsed once: the question and the decision look at the same view.
        let pkt = TcpPacket::parse(bytes);
        let (answer, located) = match (known, &pkt) {
            (Known::Answer(answer), _) => (answer, None),
            (Known::NotAsked, Ok(p)) => match self.mapping_question(p) {
                Err(q) => return Step::NeedMapping(*q),
                Ok(located) => (None, located),
            },
            (Known::NotAsked, Err(_)) => (None, None),
        };
        Step::Decided(self.decide(pkt.ok(), now, hook, &Lookup { answer, located }))
    }

    fn decide(
        &mut self,
        pkt: Option<TcpPacket<'_>>,
        now: Duration,
        hook: Hook,
        lookup: &Lookup,
    ) -> Outcome {
        let mut out = self.decide_events(pkt, now, hook, lookup);
        if !out.events.is_empty() {
            let from_events = self.commands_for(&out.events);
            out.commands.extend(from_events);
            labels_into_adoption(&mut out.commands);
        }
        out
    }

    fn decide_events(
        &mut self,
        pkt: Option<TcpPacket<'_>>,
        now: Duration,
        hook: Hook,
        lookup: &Lookup,
    ) -> Outcome {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        self.stats.packets += 1;
        let Some(pkt) = pkt else {
            self.stats.not_tcp += 1;
            return accept(events);
        };
        if pkt.flags.syn && !pkt.flags.ack {
            let flows = &self.flows;
            let master_of = |id: FlowId| flows.get(id).map(|f| f.mapping.orig);
            if let Some(exp) = self.expects.take_match(&pkt.tuple, master_of) {
                self.stats.data_matched += 1;
                events.push(Event::DataMatched {
                    tuple: pkt.tuple,
                    exp,
                });
                return accept(events);
            }
        }
        let Some((id, dir)) = self.locate_or_track(&pkt, now, hook, lookup, &mut events) else {
            return accept(events);
        };
        self.flows.spoke(id, dir, pkt.flags.syn && !pkt.flags.ack);
        let Engine {
            cfg,
            flows,
            expects,
            stats,
            closing,
            ..
        } = self;
        let Some(flow) = flows.get_mut(id) else {
            return accept(events);
        };
        let was_closing = flow.closing_at.is_some();
        let mut ctx = Ctx {
            id,
            cfg,
            expects,
            stats,
            events: &mut events,
            now,
            room: None,
            may_cut: !pkt.flags.fin,
            segment_start: pkt.seq.wrapping_add(u32::from(pkt.flags.syn)),
            commands: Vec::new(),
        };
        let verdict = handle(flow, dir, &pkt, &mut ctx);
        // Guards first: the other direction is queued before an adoption
        // takes its entry away.
        let mut commands = if cfg.selective && !pkt.flags.syn && !flow.guard_always {
            guard_commands(flow, dir, &pkt.tuple)
        } else {
            Vec::new()
        };
        commands.extend(ctx.commands);
        if let (false, Some(t)) = (was_closing, flow.closing_at) {
            closing.push((t, id));
        }
        Outcome {
            verdict,
            events,
            commands,
        }
    }

    /// What [`Self::locate_or_track`] will need to know of conntrack: a
    /// packet on a control port of a connection not tracked yet, or of one
    /// whose tuple NAT gave to a new connection.
    /// The packet's flow when it is tracked and still its own (found
    /// once for the question and the decision).
    fn mapping_question(
        &self,
        pkt: &TcpPacket<'_>,
    ) -> Result<Option<(FlowId, Dir)>, Box<MappingQuestion>> {
        let seen = pkt.tuple;
        let forget = match self.flows.locate(&seen) {
            None => None,
            Some((id, dir)) => match self.reuse_of(id, dir, pkt) {
                Reuse::Same if !self.learns_mapping(id, pkt) => return Ok(Some((id, dir))),
                Reuse::Same => None,
                Reuse::Reopened { .. } => return Ok(None),
                Reuse::Stale => self.flows.get(id).map(|f| f.mapping),
            },
        };
        // A server's segment from any port may be of a control connection
        // (port-translating DNAT): only conntrack knows; a first SYN never is.
        let first_syn = pkt.flags.syn && !pkt.flags.ack;
        let on_control = self.is_control_port(seen.dst.port())
            || self.is_control_port(seen.src.port())
            || !first_syn;
        if !on_control || pkt.flags.rst {
            return Ok(None);
        }
        // Boxed: asked once per new connection, not per packet.
        Err(Box::new(MappingQuestion {
            seen,
            first_syn,
            forget,
        }))
    }

    /// Finds the flow of a packet, starting to track a new control
    /// connection (or one already running) when it is one.
    fn locate_or_track(
        &mut self,
        pkt: &TcpPacket<'_>,
        now: Duration,
        hook: Hook,
        lookup: &Lookup,
        events: &mut Vec<Event>,
    ) -> Option<(FlowId, Dir)> {
        let seen = pkt.tuple;
        if let Some((id, dir)) = lookup.located {
            self.note_syn(id, dir, pkt);
            return Some((id, dir));
        }
        let known = lookup.answer;
        if let Some((id, dir)) = self.flows.locate(&seen) {
            match self.reuse_of(id, dir, pkt) {
                Reuse::Same => {
                    if self.learns_mapping(id, pkt) {
                        self.learn_mapping(id, known);
                    }
                    self.note_syn(id, dir, pkt);
                    return Some((id, dir));
                }
                Reuse::Reopened { client_isn } => {
                    return self.reopen(id, client_isn, now, hook, events)
                }
                Reuse::Stale => {
                    // Conntrack gave this reply tuple to a new connection
                    // (the driver forgot its answers about the old one).
                    self.stats.flows_stale += 1;
                    self.close_flow(id, events);
                }
            }
        }
        let to_control = self.is_control_port(seen.dst.port());
        // The server's side, whatever its port after NAT: the reply of a
        // connection whose original direction went to a control port.
        let reply_of_control =
            known.is_some_and(|m| m.reply == seen && self.is_control_port(m.orig.dst.port()));
        let from_control = self.is_control_port(seen.src.port()) || reply_of_control;
        if !(to_control || from_control) || pkt.flags.rst {
            return None;
        }
        if from_control && !to_control {
            // A reply whose tuple conntrack translated: link it to its flow.
            if let Some(m) = known.filter(|m| m.reply == seen) {
                if let Some((id, Dir::Orig)) = self.flows.locate(&m.orig) {
                    return self.flows.set_mapping(id, m).then_some((id, Dir::Reply));
                }
                return self.track(m, true, now, hook, events, Dir::Reply);
            }
            let m = CtMapping::identity(seen.reversed());
            return self.track(m, false, now, hook, events, Dir::Reply);
        }
        let (m, mapping_known) = match known.filter(|m| m.orig == seen) {
            Some(m) => (m, true),
            None => (CtMapping::identity(seen), false),
        };
        self.track(m, mapping_known, now, hook, events, Dir::Orig)
    }

    /// A flow tracked from its SYN, before conntrack had an entry, learns
    /// its NAT mapping from the next packet of either direction: usually
    /// the SYN-ACK, whose reply tuple is unknown until then; with selective
    /// queueing (or a SYN-ACK over the handshake budget) the next queued
    /// packet may be the client's announcement itself.
    fn learns_mapping(&self, id: FlowId, pkt: &TcpPacket<'_>) -> bool {
        let first_syn = pkt.flags.syn && !pkt.flags.ack;
        !first_syn && self.flows.get(id).is_some_and(|f| !f.mapping_known)
    }

    /// Takes conntrack's answer for a located flow (none: the connection is
    /// not NATed, or conntrack lost it; asked once all the same).
    fn learn_mapping(&mut self, id: FlowId, answer: Option<CtMapping>) {
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let orig = flow.mapping.orig;
        match answer.filter(|m| m.orig == orig) {
            Some(m) => {
                self.flows.set_mapping(id, m);
            }
            None => flow.mapping_known = true,
        }
    }

    /// Port reuse. A SYN on a tracked flow is remembered; the flow is
    /// replaced only when it was closing, or when the server answers that
    /// SYN (so a stray or spoofed SYN cannot wipe a live session, as
    /// conntrack ignores a SYN on an established connection). A SYN-ACK
    /// that answers neither the flow's SYN nor a remembered one belongs to
    /// another connection that NAT gave the same reply tuple (the old one
    /// never closed cleanly): the flow is stale.
    fn reuse_of(&self, id: FlowId, dir: Dir, pkt: &TcpPacket<'_>) -> Reuse {
        let Some(flow) = self.flows.get(id) else {
            return Reuse::Same;
        };
        match dir {
            Dir::Orig if pkt.flags.syn && !pkt.flags.ack => {
                if flow.closing_at.is_some() || flow.streams.iter().any(|s| s.has_fin()) {
                    return Reuse::Reopened {
                        client_isn: pkt.seq,
                    };
                }
                Reuse::Same
            }
            Dir::Reply if pkt.flags.syn && pkt.flags.ack => {
                let answers = |isn: u32| isn.wrapping_add(1) == pkt.ack;
                if let Some(client_isn) = flow.reopen_isn.filter(|&isn| answers(isn)) {
                    return Reuse::Reopened { client_isn };
                }
                let ours = match flow.client_isn {
                    Some(isn) => answers(isn),
                    // Picked up without its SYN: only a young flow may
                    // still see its handshake.
                    None => !flow.is_established(),
                };
                if ours {
                    Reuse::Same
                } else {
                    Reuse::Stale
                }
            }
            _ => Reuse::Same,
        }
    }

    /// Remembers a SYN on a live flow that is not its own: a new
    /// connection if the server answers it.
    fn note_syn(&mut self, id: FlowId, dir: Dir, pkt: &TcpPacket<'_>) {
        if dir != Dir::Orig || !pkt.flags.syn || pkt.flags.ack {
            return;
        }
        if let Some(flow) = self.flows.get_mut(id) {
            if flow.client_isn != Some(pkt.seq) {
                flow.reopen_isn = Some(pkt.seq);
            }
        }
    }

    fn reopen(
        &mut self,
        id: FlowId,
        client_isn: u32,
        now: Duration,
        hook: Hook,
        events: &mut Vec<Event>,
    ) -> Option<(FlowId, Dir)> {
        let (mapping, dir_of_packet) = {
            let flow = self.flows.get(id)?;
            let replying = flow.reopen_isn == Some(client_isn) && flow.closing_at.is_none();
            let dir = if replying { Dir::Reply } else { Dir::Orig };
            (flow.mapping, dir)
        };
        self.close_flow(id, events);
        let (new_id, _) = self.track(mapping, true, now, hook, events, Dir::Orig)?;
        if let Some(flow) = self.flows.get_mut(new_id) {
            flow.streams[Dir::Orig.index()].syn(client_isn);
        }
        Some((new_id, dir_of_packet))
    }

    fn track(
        &mut self,
        mapping: CtMapping,
        mapping_known: bool,
        now: Duration,
        hook: Hook,
        events: &mut Vec<Event>,
        dir: Dir,
    ) -> Option<(FlowId, Dir)> {
        self.make_room(events);
        if self.flows.is_full() {
            self.stats.flows_untracked += 1;
            events.push(Event::TableFull {
                flow: mapping.orig,
                flows: self.flows.len(),
            });
            return None;
        }
        let Some(id) = self
            .flows
            .insert(self.new_flow(mapping, mapping_known, now))
        else {
            // A stray packet whose guessed tuples belong to a tracked flow.
            self.stats.flows_untracked += 1;
            return None;
        };
        self.stats.flows += 1;
        events.push(Event::FlowNew {
            mapping,
            local: hook == Hook::Output,
        });
        Some((id, dir))
    }

    fn new_flow(&self, mapping: CtMapping, mapping_known: bool, now: Duration) -> Flow {
        let mut flow = Flow::new(mapping, mapping_known, now);
        if self.cfg.selective {
            flow.dialogue = Dialogue::partial();
        }
        flow
    }

    /// Evicts the oldest unestablished flow when they are at their limit
    /// or the table is full: a flood of handshakes that never complete
    /// must not keep real sessions out.
    fn make_room(&mut self, events: &mut Vec<Event>) {
        let crowded = self.flows.unestablished() >= self.cfg.max_unestablished;
        if !(crowded || self.flows.is_full()) {
            return;
        }
        if let Some(id) = self.flows.oldest_unestablished() {
            self.stats.flows_evicted += 1;
            self.close_flow(id, events);
        }
    }

    fn is_control_port(&self, port: u16) -> bool {
        self.cfg.control_ports.contains(&port)
    }
}

/// What a packet on a tracked tuple means for its flow.
/// What the driver and the question found out about a packet's flow.
#[derive(Clone, Copy)]
struct Lookup {
    /// Conntrack's answer to the question.
    answer: Option<CtMapping>,
    /// The packet's tracked flow, still its own.
    located: Option<(FlowId, Dir)>,
}

enum Reuse {
    Same,
    /// A new connection on the same tuples, its client's ISN.
    Reopened {
        client_isn: u32,
    },
    /// The tuple now belongs to a connection this flow is not.
    Stale,
}

fn other(dir: Dir) -> Dir {
    match dir {
        Dir::Orig => Dir::Reply,
        Dir::Reply => Dir::Orig,
    }
}

/// The segment's fate in its stream, the lines it completes handled, and
/// the verdict with fix-ups.
fn handle(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, ctx: &mut Ctx<'_>) -> Verdict {
    if !plausible(flow, dir, pkt) {
        // Seen here, in the raw table, before conntrack's window check
        // marks it INVALID: it must not move a stream (a gap skipped to a
        // spoofed PORT, an acknowledgement far ahead) nor end the session.
        ctx.stats.implausible += 1;
        return Verdict::Accept;
    }
    flow.last_seen = ctx.now;
    if pkt.flags.ack {
        skip_unseen(flow, other(dir), pkt.ack, ctx);
    }
    let orig = flow.mapping.orig;
    let payload = pkt.payload();
    let mss = clamp_mss(flow, dir, pkt, ctx.stats);
    // Data on a SYN starts after the SYN's own number.
    let data_seq = pkt.seq.wrapping_add(u32::from(pkt.flags.syn));
    let partial_view = sees_part(flow, ctx.cfg);
    let stream = &mut flow.streams[dir.index()];
    if pkt.flags.syn {
        if dir == Dir::Orig && !pkt.flags.ack && flow.client_isn.is_none() {
            flow.client_isn = Some(pkt.seq);
        }
        if !stream.is_started() {
            stream.syn(pkt.seq);
        } else if payload.is_empty() {
            // A retransmitted (or stray) SYN: nothing to learn; its MSS
            // is lowered as the first one's was.
            return fix_up(flow, dir, pkt, data_seq, &[], mss, ctx.stats);
        }
        // A repeated SYN with data: its bytes are old ones, and leave with
        // the same edits as the first time.
    }
    // What the segment may grow by: its receiver's MSS, less its options
    // (TCP timestamps...) and any held line head that leaves in front of it.
    let leaving = stream.held_len() + payload.len() + pkt.option_bytes();
    // What leaves starts with the held head of an incomplete line, if any:
    // the kernel's correction point must cover an edit inside it.
    ctx.segment_start = data_seq.wrapping_sub(stream.held_len() as u32);
    ctx.room = flow.mss[other(dir).index()].map(|mss| usize::from(mss).saturating_sub(leaving));
    let fate = match stream.classify(data_seq, payload.len()) {
        Arrival::Empty => Fate::Forward {
            start: data_seq,
            bytes: Cow::Borrowed(payload),
        },
        Arrival::Old => {
            let (fate, gave_up) = stream.retransmission(data_seq, payload);
            if gave_up {
                ctx.stats.held_given_up += 1;
                ctx.events.push(Event::HeldLineReleased { flow: orig, dir });
            }
            fate
        }
        // Selective queueing: complete lines passed unseen in between.
        Arrival::Gap if partial_view && stream.at_rest() => {
            stream.skip_to(data_seq);
            stream.classify(data_seq, payload.len());
            new_data(flow, dir, data_seq, payload, 0, ctx)
        }
        Arrival::Gap => {
            let gap = stream.on_gap(data_seq);
            if gap == GapFate::Wait {
                Fate::Drop(DropReason::OutOfOrder)
            } else {
                let why = match gap {
                    GapFate::ResyncHere => ResyncReason::UnseenBytes,
                    _ => ResyncReason::GapNotFilled,
                };
                resynced(flow, dir, data_seq, why, ctx);
                // Parse this segment (from its next line start, when
                // the stream gave up waiting).
                flow.streams[dir.index()].classify(data_seq, payload.len());
                new_data(flow, dir, data_seq, payload, 0, ctx)
            }
        }
        Arrival::New { skip } => new_data(flow, dir, data_seq, payload, skip, ctx),
    };
    track_close(flow, dir, pkt, ctx);
    let verdict = match fate {
        Fate::Drop(reason) => {
            ctx.stats.dropped += 1;
            ctx.events.push(Event::Dropped {
                flow: orig,
                dir,
                seq: pkt.seq,
                reason,
            });
            Verdict::Drop
        }
        Fate::Forward { start, bytes } => fix_up(flow, dir, pkt, start, &bytes, mss, ctx.stats),
    };
    if pkt.flags.ack {
        let peer = &mut flow.streams[other(dir).index()];
        let acked = peer.adj().unshift(pkt.ack);
        peer.forget_acked(acked);
    }
    verdict
}

/// True when the segment's sequence number is near its direction's stream
/// and its acknowledgement near the other's (`stream::MAX_UNSEEN`).
fn plausible(flow: &Flow, dir: Dir, pkt: &TcpPacket<'_>) -> bool {
    let peer = flow.stream(other(dir));
    flow.stream(dir).plausible(pkt.seq)
        && (!pkt.flags.ack || peer.plausible(peer.adj().unshift(pkt.ack)))
}

/// True when the kernel queues only part of the flow's segments (selective
/// queueing, and not a connection queued whole): bytes passing unseen
/// between lines are then no loss.
fn sees_part(flow: &Flow, cfg: &Config) -> bool {
    cfg.selective && !flow.guard_always
}

/// Selective queueing, after a packet of `dir` (seen as `seen`): whether
/// ftpct still needs every segment of that direction, and the other
/// direction's segments queued while an edit of this one is
/// unacknowledged.
fn guard_commands(flow: &Flow, dir: Dir, seen: &Tuple) -> Vec<Command> {
    let key = GuardKey::of(seen, dir);
    // Without NAT the other direction has the same entry.
    let [orig, reply] = guard_keys(&flow.mapping);
    let shared = orig == reply && needs_every_segment(flow, other(dir));
    let mut commands = vec![Command::Guard {
        key,
        needed: needs_every_segment(flow, dir) || shared,
    }];
    if flow.stream(dir).adj().has_unacked_edits() {
        let acknowledger = if dir == Dir::Orig { reply } else { orig };
        commands.push(Command::GuardOn { key: acknowledger });
    }
    commands
}

/// Selective queueing: true while ftpct must see every segment of `dir`:
/// a line is incomplete (or held, or being skipped); for the server, a
/// multi-line reply is open (its end and what it quotes must be seen);
/// and while the other direction's latest edit is unacknowledged (the
/// acknowledgement, which this direction carries, lets the next edit of
/// the other one have the kernel's one correction point: the server's 200
/// after a rewritten PORT, the client's ACK or next command after a
/// rewritten 227, whose PASV the kernel's rule notes unqueued).
fn needs_every_segment(flow: &Flow, dir: Dir) -> bool {
    let in_block = dir == Dir::Reply && flow.dialogue.in_block();
    let acknowledges_an_edit = flow.stream(other(dir)).adj().has_unacked_edits();
    !flow.stream(dir).at_rest() || in_block || acknowledges_an_edit
}

/// The guard entries of both directions of a connection, as its packets
/// show them before NAT.
fn guard_keys(m: &CtMapping) -> [GuardKey; 2] {
    [
        GuardKey::of(&m.orig, Dir::Orig),
        GuardKey::of(&m.reply, Dir::Reply),
    ]
}

/// Selective queueing on a connection whose fix-ups ftpct applies itself:
/// from now on every packet of it must cross.
fn guard_always(flow: &mut Flow, selective: bool) -> Vec<Command> {
    if !selective || std::mem::replace(&mut flow.guard_always, true) {
        return Vec::new();
    }
    guard_keys(&flow.mapping)
        .into_iter()
        .map(|key| Command::GuardAlways { key })
        .collect()
}

/// A NATed control connection's first rewrite, before conntrack sees it:
/// the moment to hand its fix-ups to the kernel (once). Until then its
/// entry is the one its SYN made: a session without a rewrite (a passive
/// one whose server is not behind DNAT, most of them) costs conntrack and
/// its listeners no re-creation. The rewrite is taken to be the kernel's
/// from here (a failure turns it back: [`Engine::not_adopted`]).
fn adopt_at_first_rewrite(flow: &mut Flow, ctx: &mut Ctx<'_>) {
    let worth_it = ctx.cfg.kernel_fixups && flow.mapping_known && flow.mapping.is_natted();
    if !worth_it || std::mem::replace(&mut flow.adopt_asked, true) {
        return;
    }
    flow.fixups = Fixups::Kernel;
    ctx.commands.push(Command::AdoptControl(Box::new(Adoption {
        orig: flow.mapping.orig,
        keys: guard_keys(&flow.mapping),
        seqadj: [None, None],
        labels: None,
    })));
}

/// The peer acknowledged bytes of `dir` that never reached ftpct (they
/// passed uninspected: a queue overflow with fail-open). They will not
/// come again, so waiting for them would stall the session: follow the
/// stream from there at once.
fn skip_unseen(flow: &mut Flow, dir: Dir, ack: u32, ctx: &mut Ctx<'_>) {
    let partial_view = sees_part(flow, ctx.cfg);
    let stream = &mut flow.streams[dir.index()];
    let acked = stream.adj().unshift(ack);
    if !stream.acked_unseen(acked) {
        return;
    }
    let expected = partial_view && stream.at_rest();
    stream.skip_to(acked);
    if !expected {
        resynced(flow, dir, acked, ResyncReason::UnseenBytes, ctx);
    }
}

/// A direction is followed again from `seq`: counted and said; replies
/// are trusted again only for commands seen from now on.
fn resynced(flow: &mut Flow, dir: Dir, seq: u32, why: ResyncReason, ctx: &mut Ctx<'_>) {
    flow.dialogue.lost_track();
    ctx.stats.resyncs += 1;
    ctx.events.push(Event::Resynced {
        flow: flow.mapping.orig,
        dir,
        seq,
        why,
        had_edits: !flow.stream(dir).adj().is_empty(),
    });
}

/// New bytes: their complete lines are handled, then the segment leaves
/// or is held.
fn new_data<'a>(
    flow: &mut Flow,
    dir: Dir,
    data_seq: u32,
    payload: &'a [u8],
    skip: usize,
    ctx: &mut Ctx<'_>,
) -> Fate<'a> {
    let lines = flow
        .streams_mut(dir)
        .0
        .take_lines(&payload[skip..], ctx.cfg.max_line);
    for line in lines {
        on_line(flow, dir, &line, ctx);
    }
    let hold = must_hold(flow, dir);
    flow.streams_mut(dir)
        .0
        .outgoing(data_seq, payload, hold, ctx.may_cut)
}

/// True if the segment ends inside a line that may need a rewrite.
fn must_hold(flow: &Flow, dir: Dir) -> bool {
    if !flow.inspecting || !flow.mapping.is_natted() {
        return false;
    }
    flow.stream(dir)
        .pending_line()
        .is_some_and(|partial| match dir {
            Dir::Orig => grammar::client_prefix_may_announce(partial),
            Dir::Reply => grammar::server_prefix_may_announce(partial),
        })
}

fn on_line(flow: &mut Flow, dir: Dir, line: &Line<'_>, ctx: &mut Ctx<'_>) {
    if !flow.inspecting {
        return;
    }
    let orig = flow.mapping.orig;
    if ctx.cfg.report_lines {
        ctx.events.push(Event::Line {
            flow: orig,
            dir,
            text: printable(&line.bytes),
        });
    }
    if line.overlong {
        ctx.stats.overlong_lines += 1;
        ctx.events.push(Event::Overlong { flow: orig, dir });
        // Not parsed, but still a command or a reply line: a multi-line
        // reply it opens or closes is followed all the same.
        match dir {
            Dir::Orig => flow.dialogue.command(Asked::Other),
            Dir::Reply if !line.bytes.is_empty() => {
                flow.dialogue.reply(&line.bytes);
            }
            Dir::Reply => {}
        }
        return;
    }
    let announce = match dir {
        Dir::Orig => on_command(flow, line, ctx),
        Dir::Reply => on_reply(flow, line, ctx),
    };
    if let Some(a) = announce {
        on_announce(flow, dir, line, &a, ctx);
    }
}

/// A client command: what it asks for is remembered for its reply.
fn on_command(flow: &mut Flow, line: &Line<'_>, ctx: &mut Ctx<'_>) -> Option<Announce> {
    let orig = flow.mapping.orig;
    let parsed = grammar::parse_client_line(&line.bytes);
    flow.dialogue.command(match parsed {
        Ok(ClientLine::Pasv) => Asked::Pasv,
        Ok(ClientLine::Epsv) => Asked::Epsv,
        _ => Asked::Other,
    });
    match parsed {
        Ok(ClientLine::Announce(a)) => Some(a),
        Ok(ClientLine::AuthTls) => {
            flow.auth_requested = true;
            ctx.events.push(recognised(&orig, Dir::Orig, "AUTH"));
            None
        }
        Ok(other) => {
            if let Some(name) = client_keyword(&other) {
                ctx.events.push(recognised(&orig, Dir::Orig, name));
            }
            None
        }
        Err(why) => {
            malformed(&orig, Dir::Orig, line, why, ctx);
            None
        }
    }
}

/// A server reply line: an announcement counts only as a single-line
/// reply to the PASV/EPSV it answers (see `dialogue`).
fn on_reply(flow: &mut Flow, line: &Line<'_>, ctx: &mut Ctx<'_>) -> Option<Announce> {
    let orig = flow.mapping.orig;
    let position = flow.dialogue.reply(&line.bytes);
    let single = matches!(position, ReplyLine::Single(_) | ReplyLine::Pipelined(_));
    match grammar::parse_server_line(&line.bytes) {
        Ok(ServerLine::Announce(a)) => {
            let asked = match a.kind {
                AnnounceKind::Pasv227 => Asked::Pasv,
                _ => Asked::Epsv,
            };
            let refusal = match position {
                ReplyLine::Single(Some(answers)) if answers == asked => return Some(a),
                ReplyLine::Pipelined(answers) if answers == asked => Refusal::Pipelined,
                _ => Refusal::Unsolicited,
            };
            refuse(flow, Dir::Reply, line, refusal, ctx);
            None
        }
        Ok(ServerLine::AuthAccepted) if single && flow.auth_requested => {
            flow.inspecting = false;
            flow.streams.iter_mut().for_each(|s| s.stop_parsing());
            ctx.stats.tls_sessions += 1;
            ctx.events.push(Event::InspectionStopped {
                flow: orig,
                why: "AUTH accepted (234): the control channel is encrypted from here on",
            });
            None
        }
        Ok(_) => None,
        // Lines inside a multi-line reply are text, not replies to parse.
        Err(why) if single => {
            malformed(&orig, Dir::Reply, line, why, ctx);
            None
        }
        Err(_) => None,
    }
}

fn malformed(orig: &Tuple, dir: Dir, line: &Line<'_>, why: grammar::Malformed, ctx: &mut Ctx<'_>) {
    ctx.stats.malformed += 1;
    ctx.events.push(Event::Malformed {
        flow: *orig,
        dir,
        line: printable(&line.bytes),
        why,
    });
}

fn refuse(flow: &Flow, dir: Dir, line: &Line<'_>, refusal: Refusal, ctx: &mut Ctx<'_>) {
    ctx.stats.refused += 1;
    ctx.events.push(Event::Refused {
        flow: flow.mapping.orig,
        dir,
        line: printable(&line.bytes),
        refusal,
    });
}

/// An announcement: plan it, register the expectation, record the edit.
fn on_announce(flow: &mut Flow, dir: Dir, line: &Line<'_>, a: &Announce, ctx: &mut Ctx<'_>) {
    if !announcer_matches(a.kind, dir) {
        return;
    }
    let mapping = flow.mapping;
    let (expects, owner) = (&*ctx.expects, ctx.id);
    let result = plan(
        &mapping,
        dir,
        a.addr,
        a.port,
        &ctx.cfg.policy,
        |dst, peer| expects.is_free(dst, peer, owner),
    );
    let plan = match result {
        Ok(p) => p,
        Err(r) => return refuse(flow, dir, line, r, ctx),
    };
    let edit = match plan.rewrite {
        None => None,
        Some(to) => {
            let addr = (a.kind != AnnounceKind::Epsv229).then_some(to.ip());
            let start = line.start.wrapping_add(a.span.start as u32);
            // A family the kind cannot carry (an IPv6 mapping for a PORT)
            // is a configuration error: refuse, do not garble.
            let Some(text) = grammar::try_format_announce(a.kind, a.delim, addr, to.port()) else {
                return refuse(flow, dir, line, Refusal::FamilyMismatch, ctx);
            };
            if !flow.stream(dir).can_edit_from(start) {
                return refuse(flow, dir, line, Refusal::SplitLine, ctx);
            }
            if flow.stream(dir).adj().is_full() {
                return refuse(flow, dir, line, Refusal::TooManyEdits, ctx);
            }
            let kernel = flow.fixups == Fixups::Kernel;
            if kernel && !flow.stream(dir).adj().acked_before(ctx.segment_start) {
                return refuse(flow, dir, line, Refusal::EditInFlight, ctx);
            }
            let growth = text.len().saturating_sub(a.span.len());
            if ctx.room.is_some_and(|room| growth > room) {
                return refuse(flow, dir, line, Refusal::SegmentTooLong, ctx);
            }
            ctx.room = ctx.room.map(|room| room - growth);
            Some((start, text))
        }
    };
    let exp = Expectation {
        peer: plan.peer,
        dst: plan.public,
        nat: plan.nat,
        master: mapping.orig,
        kind: a.kind,
        expires: ctx.now + ctx.cfg.expect_timeout,
    };
    match ctx.expects.insert(&exp, ctx.id) {
        Err(e) => return refuse(flow, dir, line, Refusal::Limit(e), ctx),
        Ok(Some(evicted)) => ctx.events.push(Event::ExpectationRemoved {
            exp: evicted,
            reason: RemoveReason::Evicted,
        }),
        Ok(None) => {}
    }
    ctx.stats.expectations += 1;
    ctx.events.push(Event::ExpectationAdded(exp));
    if let Some((start, text)) = edit {
        let mut rewritten = line.bytes[..a.span.start].to_vec();
        rewritten.extend_from_slice(&text);
        rewritten.extend_from_slice(&line.bytes[a.span.end..]);
        let end = start.wrapping_add((a.span.end - a.span.start) as u32);
        flow.streams_mut(dir).0.record_edit(start, end, text);
        adopt_at_first_rewrite(flow, ctx);
        if flow.fixups == Fixups::Kernel {
            set_kernel_point(flow, dir, ctx);
        }
        ctx.stats.rewrites += 1;
        ctx.events.push(Event::Rewritten {
            flow: mapping.orig,
            dir,
            before: printable(&line.bytes),
            after: printable(&rewritten),
        });
    }
}

/// The kernel's correction point for the edits of this segment (a later
/// edit in the same segment replaces the command of an earlier one).
fn set_kernel_point(flow: &Flow, dir: Dir, ctx: &mut Ctx<'_>) {
    let Some(adj) = flow.stream(dir).adj().kernel_point(ctx.segment_start) else {
        return;
    };
    let orig = flow.mapping.orig;
    // An entry being made anew carries the point from the start.
    for c in &mut ctx.commands {
        if let Command::AdoptControl(a) = c {
            if a.orig == orig {
                a.seqadj[dir.index()] = Some(adj);
                return;
            }
        }
    }
    ctx.commands.retain(
        |c| !matches!(c, Command::SetSeqAdj { orig: o, dir: d, .. } if *o == orig && *d == dir),
    );
    ctx.commands.push(Command::SetSeqAdj { orig, dir, adj });
}

fn accept(events: Vec<Event>) -> Outcome {
    Outcome {
        verdict: Verdict::Accept,
        events,
        commands: Vec::new(),
    }
}

fn recognised(orig: &Tuple, dir: Dir, what: &'static str) -> Event {
    Event::Recognised {
        flow: *orig,
        dir,
        what,
    }
}

fn client_keyword(line: &ClientLine) -> Option<&'static str> {
    match line {
        ClientLine::Pasv => Some("PASV"),
        ClientLine::Epsv => Some("EPSV"),
        ClientLine::EpsvAll => Some("EPSV ALL"),
        ClientLine::Lprt => Some("LPRT (not rewritten)"),
        ClientLine::Lpsv => Some("LPSV"),
        _ => None,
    }
}

/// PORT/EPRT come from clients, 227/229 from servers; the other way round
/// is nonsense and ignored.
fn announcer_matches(kind: AnnounceKind, who: Dir) -> bool {
    matches!(
        (kind, who),
        (AnnounceKind::Port | AnnounceKind::Eprt, Dir::Orig)
            | (AnnounceKind::Pasv227 | AnnounceKind::Epsv229, Dir::Reply)
    )
}

/// FIN and RST bookkeeping: a flow closes after FIN both ways or an RST.
/// The first closing time stays (the engine's closing list holds it).
fn track_close(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, ctx: &Ctx<'_>) {
    if pkt.flags.fin {
        let after_payload = pkt.seq.wrapping_add(pkt.payload().len() as u32);
        flow.streams_mut(dir).0.fin_at(after_payload);
    }
    // Under selective queueing only the client's FIN is queued (the
    // server's may pass unseen): it ends the session for ftpct; whatever
    // the server still sends holds no announcement anyone will use.
    let client_done = sees_part(flow, ctx.cfg) && dir == Dir::Orig && pkt.flags.fin;
    let closing = pkt.flags.rst || client_done || flow.streams.iter().all(|s| s.has_fin());
    let (now, linger) = (ctx.now, ctx.cfg.close_linger);
    if closing && flow.closing_at.is_none() {
        let wait = if pkt.flags.rst {
            linger.min(Duration::from_secs(1))
        } else {
            linger
        };
        flow.closing_at = Some(now + wait);
    }
}

/// Applies edits, shifts the sequence number, un-shifts the
/// acknowledgement and SACK edges. Returns Accept when nothing changed.
fn fix_up(
    flow: &Flow,
    dir: Dir,
    pkt: &TcpPacket<'_>,
    start: u32,
    bytes: &[u8],
    mss: Option<u16>,
    stats: &mut Stats,
) -> Verdict {
    let own = flow.stream(dir).adj();
    let peer = flow.stream(other(dir)).adj();
    let syn = u32::from(pkt.flags.syn);
    let unchanged_data = start == pkt.seq.wrapping_add(syn) && bytes.len() == pkt.payload().len();
    if own.is_empty() && peer.is_empty() && unchanged_data && mss.is_none() {
        return Verdict::Accept;
    }
    let mut edited = own.apply(start, bytes);
    // A retransmission cut differently can carry more edits than any
    // segment did: what does not fit the receiver's MSS is left for the
    // sender to send again (the same bytes always land at the same place).
    let limit =
        flow.mss[other(dir).index()].map(|mss| usize::from(mss).saturating_sub(pkt.option_bytes()));
    if let Some(limit) = limit.filter(|&l| l > 0 && edited.payload.len() > l && !pkt.flags.fin) {
        edited.payload.truncate(limit);
    }
    // With the kernel's fix-ups, numbers stay as the sender wrote them:
    // conntrack shifts them after ftpct, on every packet.
    let kernel = flow.fixups == Fixups::Kernel;
    let seq = if kernel {
        edited.start.wrapping_sub(syn)
    } else {
        own.shift(edited.start).wrapping_sub(syn)
    };
    let ack = if pkt.flags.ack && !kernel {
        peer.unshift(pkt.ack)
    } else {
        pkt.ack
    };
    let sack_changes = !kernel && !peer.is_empty() && !pkt.sack_blocks().is_empty();
    let unchanged = seq == pkt.seq && ack == pkt.ack && edited.payload == pkt.payload();
    if unchanged && !sack_changes && mss.is_none() {
        return Verdict::Accept;
    }
    if !unchanged || sack_changes {
        stats.fixed_up += 1;
    }
    Verdict::Replace(pkt.rebuild(&Rebuild {
        tuple: None,
        seq,
        ack,
        map_sack: |edge| if kernel { edge } else { peer.unshift(edge) },
        payload: Some(&edited.payload),
        decrement_ttl: false,
        mss,
    }))
}

/// A SYN or SYN-ACK: remembers the MSS its sender accepts, and returns
/// the lowered value it must leave with (see `MSS_HEADROOM`).
fn clamp_mss(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, stats: &mut Stats) -> Option<u16> {
    if !pkt.flags.syn {
        return None;
    }
    let mss = pkt.mss()?;
    flow.mss[dir.index()].get_or_insert(mss);
    if mss <= MIN_MSS {
        return None;
    }
    stats.mss_clamped += 1;
    Some(mss.saturating_sub(MSS_HEADROOM).max(MIN_MSS))
}

/// A line for humans: printable ASCII as sent (quotes too: `257 "/"`), the
/// rest and the backslash escaped (so an escape cannot be forged), no
/// terminator.
pub fn printable(bytes: &[u8]) -> String {
    let trimmed = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    let mut out = String::with_capacity(trimmed.len());
    for &b in trimmed {
        match b {
            b'"' | b'\'' => out.push(char::from(b)),
            _ => out.extend(b.escape_ascii().map(char::from)),
        }
    }
    out
}

/// The labels a step sets on a connection whose entry it makes anew ride
/// in the new entry (one netlink round trip less, and no moment where the
/// new entry lacks them).
fn labels_into_adoption(commands: &mut Vec<Command>) {
    let Some(adopted) = commands.iter().find_map(|c| match c {
        Command::AdoptControl(a) => Some(a.orig),
        _ => None,
    }) else {
        return;
    };
    let mut latest = None;
    commands.retain(|c| match c {
        Command::SetLabels { orig, labels, mask } if *orig == adopted => {
            latest = Some((*labels, *mask));
            false
        }
        _ => true,
    });
    for c in commands.iter_mut() {
        if let Command::AdoptControl(a) = c {
            a.labels = latest.or(a.labels);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_keeps_quotes_and_escapes_the_rest() {
        use super::printable;
        assert_eq!(
            printable(b"257 \"/\" is the current directory\r\n"),
            r#"257 "/" is the current directory"#
        );
        assert_eq!(printable(b"230 it's\x07\\\n"), r"230 it's\x07\\");
    }
}
