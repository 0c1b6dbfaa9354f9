//! The sans-IO engine: a packet, the time and where it was seen go in; a
//! verdict, the rewritten packet and events (kernel actions and decisions)
//! come out. The NFQUEUE loop, the pcap replay and the tests all drive this.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use crate::event::{Event, RemoveReason, Stats};
use crate::expect::{ExpectTable, Expectation};
use crate::flow::{Dir, Flow, FlowTable};
use crate::grammar::{self, Announce, AnnounceKind, ClientLine, ServerLine};
use crate::lines::{Arrival, DropReason, Fate, Line};
use crate::nat::{plan, Announcer, CtMapping, NatLookup};
use crate::policy::{Policy, Refusal};
use crate::tuple::Tuple;
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub events: Vec<Event>,
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
    pub idle_timeout: Duration,
    /// How long a flow stays after FIN both ways (late ACKs need fix-ups).
    pub close_linger: Duration,
    pub policy: Policy,
    /// Report every complete line as an event (replay, debug logs).
    pub report_lines: bool,
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
            idle_timeout: Duration::from_secs(7200),
            close_linger: Duration::from_secs(10),
            policy: Policy::default(),
            report_lines: false,
        }
    }
}

/// How often timers run at most.
const TICK: Duration = Duration::from_secs(1);

pub struct Engine {
    cfg: Config,
    flows: FlowTable,
    expects: ExpectTable,
    stats: Stats,
    next_tick: Duration,
}

impl Engine {
    pub fn new(cfg: Config) -> Self {
        Engine {
            flows: FlowTable::new(cfg.max_flows),
            expects: ExpectTable::new(cfg.max_expect_total, cfg.max_expect_per_session),
            cfg,
            stats: Stats::default(),
            next_tick: Duration::ZERO,
        }
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

    /// The NAT mapping of the control connection a tuple belongs to.
    pub fn mapping_of(&self, seen: &Tuple) -> Option<(CtMapping, Dir)> {
        let (orig, dir) = self.flows.locate(seen)?;
        Some((self.flows.get(&orig)?.mapping, dir))
    }

    /// The acknowledgement number a packet with tuple `seen` carries when
    /// it acknowledges original position `pos` of the other direction:
    /// its sender received that direction after our edits.
    pub fn acknowledged_by(&self, seen: &Tuple, pos: u32) -> u32 {
        let Some((orig, dir)) = self.flows.locate(seen) else {
            return pos;
        };
        self.flows
            .get(&orig)
            .map_or(pos, |f| f.streams[1 - dir.index()].adj.shift(pos))
    }

    /// True while some expectation still wants connections to `dst`: the
    /// kernel ipset entry for `dst` must stay until none does (in FXP two
    /// peers may be expected at one address and port).
    pub fn expects_dst(&self, dst: std::net::SocketAddr) -> bool {
        self.expects.expects_dst(dst)
    }

    /// The pending expectation that NAT would send from `peer` to `inside`.
    pub fn expectation_to_inside(
        &self,
        peer: IpAddr,
        inside: std::net::SocketAddr,
    ) -> Option<&Expectation> {
        self.expects.find_by_nat_dst(peer, inside)
    }

    /// Runs expiry timers. Drivers call it about once a second when idle;
    /// `process` calls it too.
    pub fn tick(&mut self, now: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        events
    }

    fn run_timers(&mut self, now: Duration, events: &mut Vec<Event>) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        for e in self.expects.expire(now) {
            self.stats.expectations_expired += 1;
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::Expired,
            });
        }
        for orig in self.flows.due(now, self.cfg.idle_timeout) {
            self.close_flow(&orig, events);
        }
    }

    fn close_flow(&mut self, orig: &Tuple, events: &mut Vec<Event>) {
        if self.flows.remove(orig).is_none() {
            return;
        }
        for e in self.expects.remove_master(orig) {
            events.push(Event::ExpectationRemoved {
                exp: e,
                reason: RemoveReason::MasterClosed,
            });
        }
        events.push(Event::FlowClosed { flow: *orig });
    }

    /// Processes one IP packet seen at `hook` at time `now`.
    pub fn process(
        &mut self,
        bytes: &[u8],
        now: Duration,
        hook: Hook,
        nat: &mut dyn NatLookup,
    ) -> Outcome {
        let mut events = Vec::new();
        self.run_timers(now, &mut events);
        self.stats.packets += 1;
        let pkt = match TcpPacket::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.stats.not_tcp += 1;
                return accept(events);
            }
        };
        if pkt.flags.syn && !pkt.flags.ack {
            if let Some(exp) = self.expects.take_match(&pkt.tuple) {
                self.stats.data_matched += 1;
                events.push(Event::DataMatched {
                    tuple: pkt.tuple,
                    exp,
                });
                return accept(events);
            }
        }
        let Some((orig, dir)) = self.locate_or_track(&pkt, now, hook, nat, &mut events) else {
            return accept(events);
        };
        let verdict = self.handle(&orig, dir, &pkt, now, &mut events);
        Outcome { verdict, events }
    }

    /// Finds the flow of a packet, starting to track a new control
    /// connection (or one already running) when it is one.
    fn locate_or_track(
        &mut self,
        pkt: &TcpPacket<'_>,
        now: Duration,
        hook: Hook,
        nat: &mut dyn NatLookup,
        events: &mut Vec<Event>,
    ) -> Option<(Tuple, Dir)> {
        let seen = pkt.tuple;
        let fresh_syn = pkt.flags.syn && !pkt.flags.ack;
        match self.flows.locate(&seen) {
            // Port reuse: a new connection replaces a finished one.
            Some((orig, Dir::Orig)) if fresh_syn => self.close_flow(&orig, events),
            Some(found) => return Some(found),
            None => {}
        }
        let to_control = self.is_control_port(seen.dst.port());
        let from_control = self.is_control_port(seen.src.port());
        if !(to_control || from_control) || pkt.flags.rst {
            return None;
        }
        let known = nat.lookup(&seen);
        if from_control && !to_control {
            // A reply whose tuple conntrack translated: link it to its flow.
            if let Some(m) = known.filter(|m| m.reply == seen) {
                if self.flows.get(&m.orig).is_some() {
                    self.flows.set_mapping(m);
                    return Some((m.orig, Dir::Reply));
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

    fn track(
        &mut self,
        mapping: CtMapping,
        mapping_known: bool,
        now: Duration,
        hook: Hook,
        events: &mut Vec<Event>,
        dir: Dir,
    ) -> Option<(Tuple, Dir)> {
        if self.flows.is_full() {
            self.stats.flows_untracked += 1;
            return None;
        }
        self.stats.flows += 1;
        events.push(Event::FlowNew {
            mapping,
            local: hook == Hook::Output,
        });
        self.flows.insert(Flow::new(mapping, mapping_known, now));
        Some((mapping.orig, dir))
    }

    fn is_control_port(&self, port: u16) -> bool {
        self.cfg.control_ports.contains(&port)
    }

    /// The segment's fate in its stream, the lines it completes handled.
    fn handle(
        &mut self,
        orig: &Tuple,
        dir: Dir,
        pkt: &TcpPacket<'_>,
        now: Duration,
        events: &mut Vec<Event>,
    ) -> Verdict {
        let Some(flow) = self.flows.get_mut(orig) else {
            return Verdict::Accept;
        };
        flow.last_seen = now;
        let payload = pkt.payload();
        let (stream, _) = flow.streams_mut(dir);
        if pkt.flags.syn {
            stream.syn(pkt.seq);
        }
        let arrival = stream.classify(pkt.seq, payload.len());
        let fate = match arrival {
            Arrival::Empty => Fate::Forward {
                start: pkt.seq,
                bytes: Cow::Borrowed(payload),
            },
            Arrival::Old => {
                let (fate, gave_up) = stream.retransmission(pkt.seq, payload);
                if gave_up {
                    self.stats.held_given_up += 1;
                    events.push(Event::HeldLineReleased { flow: *orig, dir });
                }
                fate
            }
            Arrival::Gap => {
                if stream.on_gap(pkt.seq) {
                    Fate::Drop(DropReason::OutOfOrder)
                } else {
                    self.stats.resyncs += 1;
                    events.push(Event::Resynced {
                        flow: *orig,
                        dir,
                        seq: pkt.seq,
                    });
                    // Parse from the next line start of this segment on.
                    stream.classify(pkt.seq, payload.len());
                    let lines = stream.take_lines(payload, self.cfg.max_line);
                    let hold = self.after_lines(orig, dir, lines, now, events);
                    self.stream(orig, dir).outgoing(pkt.seq, payload, hold)
                }
            }
            Arrival::New { skip } => {
                let lines = stream.take_lines(&payload[skip..], self.cfg.max_line);
                let hold = self.after_lines(orig, dir, lines, now, events);
                self.stream(orig, dir).outgoing(pkt.seq, payload, hold)
            }
        };
        let Some(flow) = self.flows.get_mut(orig) else {
            return Verdict::Accept;
        };
        track_close(flow, dir, pkt, now, self.cfg.close_linger);
        match fate {
            Fate::Drop(reason) => {
                self.stats.dropped += 1;
                events.push(Event::Dropped {
                    flow: *orig,
                    dir,
                    seq: pkt.seq,
                    reason,
                });
                Verdict::Drop
            }
            Fate::Forward { start, bytes } => {
                fix_up(flow, dir, pkt, start, &bytes, &mut self.stats)
            }
        }
    }

    fn stream(&mut self, orig: &Tuple, dir: Dir) -> &mut crate::lines::Stream {
        let flow = self
            .flows
            .get_mut(orig)
            .expect("flow exists while its packet is handled");
        flow.streams_mut(dir).0
    }

    /// Handles complete lines; returns whether the segment must be held
    /// because the line it ends inside may need a rewrite.
    fn after_lines(
        &mut self,
        orig: &Tuple,
        dir: Dir,
        lines: Vec<Line<'_>>,
        now: Duration,
        events: &mut Vec<Event>,
    ) -> bool {
        for line in lines {
            self.on_line(orig, dir, &line, now, events);
        }
        let Some(flow) = self.flows.get(orig) else {
            return false;
        };
        if !flow.inspecting || !flow.mapping.is_natted() {
            return false;
        }
        let stream = &flow.streams[dir.index()];
        stream.pending_line().is_some_and(|partial| match dir {
            Dir::Orig => grammar::client_prefix_may_announce(partial),
            Dir::Reply => grammar::server_prefix_may_announce(partial),
        })
    }

    fn on_line(
        &mut self,
        orig: &Tuple,
        dir: Dir,
        line: &Line<'_>,
        now: Duration,
        events: &mut Vec<Event>,
    ) {
        let Some(flow) = self.flows.get_mut(orig) else {
            return;
        };
        if !flow.inspecting {
            return;
        }
        if self.cfg.report_lines {
            events.push(Event::Line {
                flow: *orig,
                dir,
                text: printable(&line.bytes),
            });
        }
        if line.overlong {
            self.stats.overlong_lines += 1;
            events.push(Event::Overlong { flow: *orig, dir });
            return;
        }
        let announce = match dir {
            Dir::Orig => match grammar::parse_client_line(&line.bytes) {
                Ok(ClientLine::Announce(a)) => Some(a),
                Ok(ClientLine::AuthTls) => {
                    flow.auth_requested = true;
                    events.push(recognised(orig, dir, "AUTH"));
                    None
                }
                Ok(other) => {
                    if let Some(name) = client_keyword(&other) {
                        events.push(recognised(orig, dir, name));
                    }
                    None
                }
                Err(why) => {
                    self.malformed(orig, dir, line, why, events);
                    None
                }
            },
            Dir::Reply => match grammar::parse_server_line(&line.bytes) {
                Ok(ServerLine::Announce(a)) => Some(a),
                Ok(ServerLine::AuthAccepted) if flow.auth_requested => {
                    flow.inspecting = false;
                    flow.streams.iter_mut().for_each(|s| s.stop_parsing());
                    self.stats.tls_sessions += 1;
                    events.push(Event::InspectionStopped {
                        flow: *orig,
                        why: "AUTH accepted (234): the control channel is encrypted from here on",
                    });
                    None
                }
                Ok(_) => None,
                Err(why) => {
                    self.malformed(orig, dir, line, why, events);
                    None
                }
            },
        };
        if let Some(a) = announce {
            self.on_announce(orig, dir, line, &a, now, events);
        }
    }

    fn malformed(
        &mut self,
        orig: &Tuple,
        dir: Dir,
        line: &Line<'_>,
        why: grammar::Malformed,
        events: &mut Vec<Event>,
    ) {
        self.stats.malformed += 1;
        events.push(Event::Malformed {
            flow: *orig,
            dir,
            line: printable(&line.bytes),
            why,
        });
    }

    /// An announcement: plan it, register the expectation, record the edit.
    fn on_announce(
        &mut self,
        orig: &Tuple,
        dir: Dir,
        line: &Line<'_>,
        a: &Announce,
        now: Duration,
        events: &mut Vec<Event>,
    ) {
        let Some(flow) = self.flows.get_mut(orig) else {
            return;
        };
        let who = match dir {
            Dir::Orig => Announcer::Client,
            Dir::Reply => Announcer::Server,
        };
        if !announcer_matches(a.kind, who) {
            return;
        }
        let mapping = flow.mapping;
        let expects = &self.expects;
        let result = plan(&mapping, who, a.addr, a.port, &self.cfg.policy, |dst| {
            expects.is_free(dst, &mapping.orig)
        });
        let refuse = |refusal: Refusal, events: &mut Vec<Event>, stats: &mut Stats| {
            stats.refused += 1;
            events.push(Event::Refused {
                flow: mapping.orig,
                dir,
                line: printable(&line.bytes),
                refusal,
            });
        };
        let plan = match result {
            Ok(p) => p,
            Err(r) => return refuse(r, events, &mut self.stats),
        };
        let replacement = match plan.rewrite {
            None => None,
            Some(to) => {
                let addr = (a.kind != AnnounceKind::Epsv229).then_some(to.ip());
                let edit_start = line.start.wrapping_add(a.span.start as u32);
                let stream = &flow.streams[dir.index()];
                match grammar::try_format_announce(a.kind, a.delim, addr, to.port()) {
                    Some(text) if stream.can_edit_from(edit_start) => Some((edit_start, text)),
                    // A family the kind cannot carry (an IPv6 mapping for a
                    // PORT) is a configuration error: refuse, do not garble.
                    Some(_) => return refuse(Refusal::SplitLine, events, &mut self.stats),
                    None => return refuse(Refusal::FamilyMismatch, events, &mut self.stats),
                }
            }
        };
        let exp = Expectation {
            peer: plan.peer,
            dst: plan.public,
            nat: plan.nat,
            master: mapping.orig,
            kind: a.kind,
            expires: now + self.cfg.expect_timeout,
        };
        if let Err(e) = self.expects.insert(exp.clone()) {
            return refuse(Refusal::Limit(e), events, &mut self.stats);
        }
        self.stats.expectations += 1;
        events.push(Event::ExpectationAdded(exp));
        if let Some((edit_start, text)) = replacement {
            let span_len = (a.span.end - a.span.start) as u32;
            let mut rewritten = line.bytes[..a.span.start].to_vec();
            rewritten.extend_from_slice(&text);
            rewritten.extend_from_slice(&line.bytes[a.span.end..]);
            if let Some(flow) = self.flows.get_mut(orig) {
                let stream = flow.streams_mut(dir).0;
                stream
                    .adj
                    .record(edit_start, edit_start.wrapping_add(span_len), text);
            }
            self.stats.rewrites += 1;
            events.push(Event::Rewritten {
                flow: *orig,
                dir,
                before: printable(&line.bytes),
                after: printable(&rewritten),
            });
        }
    }
}

fn accept(events: Vec<Event>) -> Outcome {
    Outcome {
        verdict: Verdict::Accept,
        events,
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
fn announcer_matches(kind: AnnounceKind, who: Announcer) -> bool {
    matches!(
        (kind, who),
        (AnnounceKind::Port | AnnounceKind::Eprt, Announcer::Client)
            | (
                AnnounceKind::Pasv227 | AnnounceKind::Epsv229,
                Announcer::Server
            )
    )
}

/// FIN and RST bookkeeping: a flow closes after FIN both ways or an RST.
fn track_close(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, now: Duration, linger: Duration) {
    if pkt.flags.rst {
        flow.closing_at = Some(now + linger.min(Duration::from_secs(1)));
        return;
    }
    if pkt.flags.fin {
        let after_payload = pkt.seq.wrapping_add(pkt.payload().len() as u32);
        flow.streams_mut(dir).0.fin_at(after_payload);
        if flow.streams.iter().all(|s| s.fin) {
            flow.closing_at = Some(now + linger);
        }
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
    stats: &mut Stats,
) -> Verdict {
    let own = &flow.streams[dir.index()].adj;
    let other = &flow.streams[1 - dir.index()].adj;
    if own.is_empty() && other.is_empty() && start == pkt.seq && bytes.len() == pkt.payload().len()
    {
        return Verdict::Accept;
    }
    let edited = own.apply(start, bytes);
    let seq = own.shift(edited.start);
    let ack = if pkt.flags.ack {
        other.unshift(pkt.ack)
    } else {
        pkt.ack
    };
    let sack_changes = !other.is_empty() && !pkt.sack_blocks().is_empty();
    if seq == pkt.seq && ack == pkt.ack && !sack_changes && edited.payload == pkt.payload() {
        return Verdict::Accept;
    }
    stats.fixed_up += 1;
    Verdict::Replace(pkt.rebuild(&Rebuild {
        tuple: None,
        seq,
        ack,
        map_sack: |edge| other.unshift(edge),
        payload: Some(&edited.payload),
        decrement_ttl: false,
    }))
}

/// A line for humans: printable ASCII, the rest escaped, no terminator.
pub fn printable(bytes: &[u8]) -> String {
    let trimmed = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    trimmed.escape_ascii().to_string()
}
