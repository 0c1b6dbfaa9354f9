//! Flow tracking: the control connections the engine follows, each with
//! its two directions, found by the tuple a packet carries in either
//! direction (before NAT, as the raw table sees it).
//!
//! Flows live in a slab; one index maps both tuples of every flow to its
//! slot, so a packet costs one hash lookup. The hasher is seeded at random
//! (tuples are chosen by remote peers: no predictable collisions).

use std::collections::HashMap;
use std::time::Duration;

use foldhash::fast::RandomState;

use crate::dialogue::Dialogue;
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

/// Slot of a flow in the table.
pub type FlowId = u32;

/// What the engine knows of one control connection.
#[derive(Debug)]
pub struct Flow {
    pub mapping: CtMapping,
    pub streams: [Stream; 2],
    pub last_seen: Duration,
    /// Remove the flow at this time (after FIN both ways or RST).
    pub closing_at: Option<Duration>,
    /// False while the reply tuple is only a guess (conntrack had no entry yet).
    pub mapping_known: bool,
    /// The client asked for TLS; a 234 reply turns inspection off.
    pub auth_requested: bool,
    /// Encrypted from here on: sequence fix-ups only, no parsing.
    pub inspecting: bool,
    /// A SYN arrived for this tuple while it was live: a new connection
    /// if the server answers it (port reuse after a FIN we missed).
    pub reopen_isn: Option<u32>,
    /// Which command each reply answers.
    pub dialogue: Dialogue,
}

impl Flow {
    pub fn new(mapping: CtMapping, mapping_known: bool, now: Duration) -> Self {
        Flow {
            mapping,
            streams: [Stream::default(), Stream::default()],
            last_seen: now,
            closing_at: None,
            mapping_known,
            auth_requested: false,
            inspecting: true,
            reopen_isn: None,
            dialogue: Dialogue::default(),
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

    pub fn stream(&self, dir: Dir) -> &Stream {
        &self.streams[dir.index()]
    }
}

/// All tracked control connections. Bounded: when full, new connections
/// are not tracked (and counted by the engine).
#[derive(Debug)]
pub struct FlowTable {
    slots: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    index: HashMap<Tuple, (FlowId, Dir), RandomState>,
    len: usize,
    max: usize,
}

impl FlowTable {
    pub fn new(max: usize) -> Self {
        FlowTable {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.max
    }

    /// The flow a packet with tuple `seen` belongs to, and its direction.
    pub fn locate(&self, seen: &Tuple) -> Option<(FlowId, Dir)> {
        self.index.get(seen).copied()
    }

    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// True if either tuple of `m` already belongs to a tracked flow.
    pub fn clashes(&self, m: &CtMapping) -> bool {
        self.index.contains_key(&m.orig) || self.index.contains_key(&m.reply)
    }

    /// Adds a flow; refused (None) when one of its tuples is tracked
    /// already: a stray packet must never replace a flow's state.
    pub fn insert(&mut self, flow: Flow) -> Option<FlowId> {
        if self.clashes(&flow.mapping) {
            return None;
        }
        let (orig, reply) = (flow.mapping.orig, flow.mapping.reply);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(flow);
                id
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as FlowId
            }
        };
        self.index.insert(orig, (id, Dir::Orig));
        self.index.insert(reply, (id, Dir::Reply));
        self.len += 1;
        Some(id)
    }

    /// Replaces a guessed reply tuple with the one conntrack knows.
    /// Refused when that tuple belongs to another flow.
    pub fn set_mapping(&mut self, id: FlowId, mapping: CtMapping) -> bool {
        if self
            .index
            .get(&mapping.reply)
            .is_some_and(|(other, _)| *other != id)
        {
            return false;
        }
        let Some(flow) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return false;
        };
        self.index.remove(&flow.mapping.reply);
        flow.mapping = mapping;
        flow.mapping_known = true;
        self.index.insert(mapping.reply, (id, Dir::Reply));
        true
    }

    pub fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.slots.get_mut(id as usize)?.take()?;
        self.index.remove(&flow.mapping.orig);
        self.index.remove(&flow.mapping.reply);
        self.free.push(id);
        self.len -= 1;
        Some(flow)
    }

    /// Flows idle for longer than `idle` at `now`.
    pub fn idle(&self, now: Duration, idle: Duration) -> Vec<FlowId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                let f = slot.as_ref()?;
                (now.saturating_sub(f.last_seen) > idle).then_some(id as FlowId)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(client: &str, public: &str) -> CtMapping {
        let orig = Tuple::new(
            client.parse().expect("a"),
            "198.51.100.20:21".parse().expect("a"),
        );
        let reply = Tuple::new(
            "198.51.100.20:21".parse().expect("a"),
            public.parse().expect("a"),
        );
        CtMapping { orig, reply }
    }

    #[test]
    fn both_tuples_find_the_flow_and_slots_are_reused() {
        let mut t = FlowTable::new(10);
        let m = mapping("192.0.2.10:40000", "198.51.100.1:40000");
        let id = t
            .insert(Flow::new(m, true, Duration::ZERO))
            .expect("inserted");
        assert_eq!(t.locate(&m.orig), Some((id, Dir::Orig)));
        assert_eq!(t.locate(&m.reply), Some((id, Dir::Reply)));
        assert!(t.remove(id).is_some());
        assert_eq!(t.locate(&m.orig), None);
        let again = t
            .insert(Flow::new(m, true, Duration::ZERO))
            .expect("inserted");
        assert_eq!(again, id, "slot reused");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_clashing_flow_is_refused() {
        let mut t = FlowTable::new(10);
        let m = mapping("192.0.2.10:40000", "198.51.100.1:40000");
        let id = t
            .insert(Flow::new(m, true, Duration::ZERO))
            .expect("inserted");
        // A stray packet guessing the identity mapping of the same client.
        let stray = CtMapping::identity(m.orig);
        assert!(t.insert(Flow::new(stray, false, Duration::ZERO)).is_none());
        let other = mapping("192.0.2.11:40000", "198.51.100.1:40000");
        assert!(
            t.insert(Flow::new(other, true, Duration::ZERO)).is_none(),
            "same reply tuple"
        );
        assert_eq!(t.locate(&m.reply), Some((id, Dir::Reply)));
    }
}
