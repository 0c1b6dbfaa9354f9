//! Flow tracking: the control connections the engine follows, each with
//! its two directions, found by the tuple a packet carries in either
//! direction (before NAT, as the raw table sees it).
//!
//! Flows live in a slab; one index maps both tuples of every flow to its
//! slot, so a packet costs one hash lookup. The hasher is seeded at random
//! (tuples are chosen by remote peers: no predictable collisions).
//!
//! A flow is unestablished until its client has sent a packet that is not
//! a SYN and its server has sent anything: what a spoofed SYN (or SYN-ACK)
//! flood creates never gets there. Unestablished flows are kept in order of
//! creation, bounded on their own, and evicted first, oldest first, so a
//! flood cannot fill the table against real sessions (an evicted real
//! session is picked up again at its next packet).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use foldhash::fast::RandomState;

use crate::dialogue::Dialogue;
use crate::kept::Kept;
use crate::nat::CtMapping;
use crate::stream::Stream;
use crate::tuple::{Dir, Tuple};

/// Who applies a connection's sequence fix-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixups {
    /// ftpct, on every packet it sees (offline replay; connections the
    /// kernel could not take).
    Own,
    /// Conntrack's seqadj on an entry made through ctnetlink: ftpct edits
    /// payloads and sets the correction point; every packet is shifted by
    /// the kernel, queued or not, whether ftpct runs or not.
    Kernel,
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
    /// The client sent a packet other than a SYN.
    pub client_spoke: bool,
    /// The server sent a packet.
    pub server_spoke: bool,
    /// The client's initial sequence number, when its SYN was seen.
    pub client_isn: Option<u32>,
    /// The MSS each side announced (what it accepts), by direction of
    /// its SYN, before ftpct lowered it.
    pub mss: [Option<u16>; 2],
    /// Conntrack was asked to stop window checks on this connection.
    pub liberal: bool,
    /// Who shifts sequence numbers after a rewrite.
    pub fixups: Fixups,
    /// The kernel was asked to take this connection's fix-ups.
    pub adopt_asked: bool,
    /// Selective queueing: every packet of this connection is queued (its
    /// guard entries have no timeout), because ftpct applies its fix-ups.
    pub guard_always: bool,
    /// What its conntrack entry keeps (see `kept`), as last set.
    pub kept: Kept,
    /// Tells this flow from a later one in the same slot.
    generation: u64,
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
            client_spoke: false,
            server_spoke: false,
            client_isn: None,
            mss: [None, None],
            liberal: false,
            fixups: Fixups::Own,
            adopt_asked: false,
            guard_always: false,
            kept: Kept::default(),
            generation: 0,
        }
    }

    pub fn is_established(&self) -> bool {
        self.client_spoke && self.server_spoke
    }

    /// The stream of `dir` and the other one.
    pub fn streams_mut(&mut self, dir: Dir) -> (&mut Stream, &mut Stream) {
        let [orig, reply] = &mut self.streams;
        match dir {
            Dir::Orig => (orig, reply),
            Dir::Reply => (reply, orig),
        }
    }

    /// Tells this flow from any other, earlier or later, of the same tuple.
    pub fn generation(&self) -> u64 {
        self.generation
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
    /// Unestablished flows in order of creation (entries of flows that
    /// established or went since are skipped when met).
    unestablished: VecDeque<(FlowId, u64)>,
    unestablished_len: usize,
    next_generation: u64,
}

impl FlowTable {
    pub fn new(max: usize) -> Self {
        FlowTable {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            len: 0,
            max,
            unestablished: VecDeque::new(),
            unestablished_len: 0,
            next_generation: 0,
        }
    }

    /// How many flows are not established yet.
    pub fn unestablished(&self) -> usize {
        self.unestablished_len
    }

    /// Records that a packet of `dir` was seen on flow `id` (`syn_only`:
    /// a SYN without ACK); the flow may become established.
    pub fn spoke(&mut self, id: FlowId, dir: Dir, syn_only: bool) {
        let Some(flow) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let was = flow.is_established();
        match dir {
            Dir::Orig if !syn_only => flow.client_spoke = true,
            Dir::Orig => {}
            Dir::Reply => flow.server_spoke = true,
        }
        if !was && flow.is_established() {
            self.unestablished_len -= 1;
        }
    }

    /// The oldest unestablished flow, if any (to evict).
    pub fn oldest_unestablished(&mut self) -> Option<FlowId> {
        while let Some(&(id, generation)) = self.unestablished.front() {
            let live = self
                .get(id)
                .is_some_and(|f| f.generation == generation && !f.is_established());
            if live {
                return Some(id);
            }
            self.unestablished.pop_front();
        }
        None
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

    /// The flow that has tuple `seen` (either direction).
    pub fn by_tuple_mut(&mut self, seen: &Tuple) -> Option<&mut Flow> {
        let (id, _) = self.locate(seen)?;
        self.get_mut(id)
    }

    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Every flow, in slot order (a status snapshot).
    pub fn iter(&self) -> impl Iterator<Item = &Flow> + '_ {
        self.slots.iter().flatten()
    }

    /// True if either tuple of `m` already belongs to a tracked flow.
    pub fn clashes(&self, m: &CtMapping) -> bool {
        self.index.contains_key(&m.orig) || self.index.contains_key(&m.reply)
    }

    /// Adds a flow; refused (None) when one of its tuples is tracked
    /// already: a stray packet must never replace a flow's state.
    pub fn insert(&mut self, mut flow: Flow) -> Option<FlowId> {
        if self.clashes(&flow.mapping) {
            return None;
        }
        self.next_generation += 1;
        flow.generation = self.next_generation;
        let established = flow.is_established();
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
        if !established {
            self.unestablished_len += 1;
            self.unestablished.push_back((id, self.next_generation));
            self.compact_unestablished();
        }
        Some(id)
    }

    /// Drops the order entries of flows that established or went, once
    /// they outnumber the live ones (each flow leaves one behind).
    fn compact_unestablished(&mut self) {
        if self.unestablished.len() <= 2 * self.unestablished_len + 64 {
            return;
        }
        let slots = &self.slots;
        self.unestablished.retain(|&(id, generation)| {
            slots
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|f| f.generation == generation && !f.is_established())
        });
        self.unestablished.shrink_to_fit();
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
        if !flow.is_established() {
            self.unestablished_len -= 1;
        }
        Some(flow)
    }

    /// Flows idle for longer than `idle` (`unestablished` for flows not
    /// established yet) at `now`.
    pub fn idle(&self, now: Duration, idle: Duration, unestablished: Duration) -> Vec<FlowId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                let f = slot.as_ref()?;
                let limit = if f.is_established() {
                    idle
                } else {
                    unestablished
                };
                (now.saturating_sub(f.last_seen) > limit).then_some(id as FlowId)
            })
            .collect()
    }

    /// Gives memory back after a peak (a flood, a busy hour): the index
    /// and the slab's free tail shrink once mostly empty.
    pub fn shrink(&mut self) {
        if self.index.capacity() > 4 * self.index.len() + 1024 {
            self.index.shrink_to_fit();
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        let slots = self.slots.len();
        self.free.retain(|&id| (id as usize) < slots);
        if self.slots.capacity() > 4 * self.slots.len() + 1024 {
            self.slots.shrink_to_fit();
            self.free.shrink_to_fit();
        }
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
    fn unestablished_flows_are_found_oldest_first_and_counted() {
        let mut t = FlowTable::new(10);
        let a = t
            .insert(Flow::new(
                mapping("192.0.2.10:40000", "198.51.100.1:1"),
                true,
                Duration::ZERO,
            ))
            .expect("a");
        let b = t
            .insert(Flow::new(
                mapping("192.0.2.11:40000", "198.51.100.1:2"),
                true,
                Duration::ZERO,
            ))
            .expect("b");
        assert_eq!(t.unestablished(), 2);
        t.spoke(a, Dir::Orig, true);
        t.spoke(a, Dir::Reply, false);
        assert_eq!(
            t.unestablished(),
            2,
            "a SYN and a SYN-ACK establish nothing"
        );
        t.spoke(a, Dir::Orig, false);
        assert_eq!(t.unestablished(), 1);
        assert_eq!(t.oldest_unestablished(), Some(b));
        t.remove(b);
        assert_eq!(t.unestablished(), 0);
        assert_eq!(t.oldest_unestablished(), None);
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
