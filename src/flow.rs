//! Flow tracking: the control connections the engine follows, each with
//! its two directions, found by the tuple a packet carries in either
//! direction (before NAT, as the raw table sees it).

use std::collections::HashMap;
use std::time::Duration;

use crate::lines::Stream;
use crate::nat::CtMapping;
use crate::tuple::Tuple;

/// Direction of a packet relative to the control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server: commands.
    Orig,
    /// Server to client: replies.
    Reply,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::Orig => 0,
            Dir::Reply => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dir::Orig => "client",
            Dir::Reply => "server",
        }
    }
}

/// What the engine knows of one control connection.
#[derive(Debug)]
pub struct Flow {
    pub mapping: CtMapping,
    /// False while the reply tuple is only a guess (conntrack had no entry yet).
    pub mapping_known: bool,
    pub streams: [Stream; 2],
    pub last_seen: Duration,
    /// The client asked for TLS; a 234 reply turns inspection off.
    pub auth_requested: bool,
    /// Encrypted from here on: sequence fix-ups only, no parsing.
    pub inspecting: bool,
    /// Remove the flow at this time (after FIN both ways or RST).
    pub closing_at: Option<Duration>,
}

impl Flow {
    pub fn new(mapping: CtMapping, mapping_known: bool, now: Duration) -> Self {
        Flow {
            mapping,
            mapping_known,
            streams: [Stream::default(), Stream::default()],
            last_seen: now,
            auth_requested: false,
            inspecting: true,
            closing_at: None,
        }
    }

    /// The stream of `dir` and the other one.
    pub fn streams_mut(&mut self, dir: Dir) -> (&mut Stream, &mut Stream) {
        let [orig, reply] = &mut self.streams;
        match dir {
            Dir::Orig => (orig, reply),
            Dir::Reply => (reply, orig),
        }
    }
}

/// All tracked control connections, keyed by original tuple, with an
/// index of reply tuples. Bounded: when full, new connections are not
/// tracked (and counted by the engine).
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<Tuple, Flow>,
    by_reply: HashMap<Tuple, Tuple>,
    max: usize,
}

impl FlowTable {
    pub fn new(max: usize) -> Self {
        FlowTable {
            flows: HashMap::new(),
            by_reply: HashMap::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.flows.len() >= self.max
    }

    /// The flow a packet with tuple `seen` belongs to: its original tuple and direction.
    pub fn locate(&self, seen: &Tuple) -> Option<(Tuple, Dir)> {
        if self.flows.contains_key(seen) {
            return Some((*seen, Dir::Orig));
        }
        self.by_reply.get(seen).map(|orig| (*orig, Dir::Reply))
    }

    pub fn get_mut(&mut self, orig: &Tuple) -> Option<&mut Flow> {
        self.flows.get_mut(orig)
    }

    pub fn get(&self, orig: &Tuple) -> Option<&Flow> {
        self.flows.get(orig)
    }

    pub fn insert(&mut self, flow: Flow) {
        let orig = flow.mapping.orig;
        self.by_reply.insert(flow.mapping.reply, orig);
        self.flows.insert(orig, flow);
    }

    /// Replaces a guessed reply tuple with the one conntrack knows.
    pub fn set_mapping(&mut self, mapping: CtMapping) {
        let Some(flow) = self.flows.get_mut(&mapping.orig) else {
            return;
        };
        self.by_reply.remove(&flow.mapping.reply);
        flow.mapping = mapping;
        flow.mapping_known = true;
        self.by_reply.insert(mapping.reply, mapping.orig);
    }

    pub fn remove(&mut self, orig: &Tuple) -> Option<Flow> {
        let flow = self.flows.remove(orig)?;
        self.by_reply.remove(&flow.mapping.reply);
        Some(flow)
    }

    /// Original tuples of flows closed, or idle for longer than `idle`, at `now`.
    pub fn due(&self, now: Duration, idle: Duration) -> Vec<Tuple> {
        self.flows
            .iter()
            .filter(|(_, f)| {
                f.closing_at.is_some_and(|t| t <= now) || now.saturating_sub(f.last_seen) > idle
            })
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Tuple, &Flow)> {
        self.flows.iter()
    }
}
