//! What the ladder keeps while the gateway works: each session the
//! engine followed (one control connection and its data connections),
//! with its segments in both forms and the engine's events, in order.
//!
//! A segment belongs to a session through the engine's own events: a
//! control connection's tuples are those of the segments its events came
//! with, a data connection's those of the segment its `DataMatched` came
//! with. Segments of nothing the engine followed are only counted.

use std::collections::HashMap;
use std::time::Duration;

use ftpct_engine::event::Event;
use ftpct_engine::tuple::Tuple;

use super::crossing::{Crossing, Segment};
use crate::offline::capture::Frame;
use crate::offline::replay::{Observer, Passed};

/// Segments and notes kept in all: a live monitor stays bounded in
/// memory (about 1 KB each at most); past it they are counted only.
pub const MAX_ITEMS: usize = 50_000;

/// Which connection of its session a segment is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    Control,
    /// The session's data connections, numbered from 1 as they match.
    Data(u32),
}

/// One thing in a session's ladder, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Crossing {
        conn: Conn,
        crossing: Crossing,
    },
    /// An event that came with no segment of its session: the engine's
    /// timers, or a segment of another connection.
    Note {
        time: Duration,
        event: Event,
    },
}

/// A control connection as the engine followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its original tuple (the flow of its events).
    pub flow: Tuple,
    pub items: Vec<Item>,
    data_conns: u32,
}

impl Session {
    /// Every event of the session, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.items.iter().flat_map(|item| match item {
            Item::Crossing { crossing, .. } => crossing.events.iter().collect::<Vec<_>>(),
            Item::Note { event, .. } => vec![event],
        })
    }
}

/// Collects sessions from the frames the gateway passes.
#[derive(Debug, Default)]
pub struct Recorder {
    sessions: Vec<Session>,
    /// The session a flow's events go to (the latest with that flow).
    by_flow: HashMap<Tuple, usize>,
    /// Both sides' tuples, both directions, of every connection drawn.
    by_tuple: HashMap<Tuple, (usize, Conn)>,
    start: Option<Duration>,
    items: usize,
    /// TCP segments of no session the engine followed.
    pub unrelated: u64,
    /// Segments and events past [`MAX_ITEMS`].
    pub not_drawn: u64,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// The time of the first segment: times are shown from it.
    pub fn start(&self) -> Duration {
        self.start.unwrap_or_default()
    }

    /// A segment through the gateway and the events it brought.
    pub fn crossing(&mut self, mut crossing: Crossing, events: &[Event]) {
        self.start.get_or_insert(crossing.time);
        if self.items >= MAX_ITEMS {
            self.not_drawn += 1 + events.len() as u64;
            return;
        }
        let targets: Vec<usize> = events.iter().map(|e| self.learn(e, &crossing)).collect();
        let home = crossing
            .tuples()
            .find_map(|t| self.by_tuple.get(&t).copied());
        let mut foreign = Vec::new();
        for (event, target) in events.iter().zip(targets) {
            match home {
                Some((session, _)) if session == target => crossing.events.push(event.clone()),
                _ => foreign.push((target, event.clone())),
            }
        }
        let time = crossing.time;
        match home {
            Some((session, conn)) => self.push(session, Item::Crossing { conn, crossing }),
            None => self.unrelated += 1,
        }
        for (target, event) in foreign {
            self.push(target, Item::Note { time, event });
        }
    }

    /// Events of the engine's timers at `now`.
    pub fn notes(&mut self, now: Duration, events: &[Event]) {
        for event in events {
            if self.items >= MAX_ITEMS {
                self.not_drawn += 1;
                continue;
            }
            let target = self.session_of(event.flow());
            self.push(
                target,
                Item::Note {
                    time: now,
                    event: event.clone(),
                },
            );
        }
    }

    /// The session `event` is about; the tuples it tells of `crossing`.
    fn learn(&mut self, event: &Event, crossing: &Crossing) -> usize {
        let flow = event.flow();
        let session = match event {
            // The same tuple again is a new connection (after a close).
            Event::FlowNew { .. } => self.new_session(flow),
            _ => self.session_of(flow),
        };
        if crossing.is_of(&flow) {
            self.claim(crossing, session, Conn::Control);
        }
        if let Event::DataMatched { tuple, .. } = event {
            if crossing.is_of(tuple) {
                let s = &mut self.sessions[session];
                s.data_conns += 1;
                let conn = Conn::Data(s.data_conns);
                self.claim(crossing, session, conn);
            }
        }
        session
    }

    /// Marks the connection of `crossing` (both sides, both directions)
    /// as `conn` of `session`.
    fn claim(&mut self, crossing: &Crossing, session: usize, conn: Conn) {
        for t in crossing.tuples() {
            self.by_tuple.insert(t, (session, conn));
            self.by_tuple.insert(t.reversed(), (session, conn));
        }
    }

    fn session_of(&mut self, flow: Tuple) -> usize {
        match self.by_flow.get(&flow) {
            Some(&i) => i,
            None => self.new_session(flow),
        }
    }

    fn new_session(&mut self, flow: Tuple) -> usize {
        self.sessions.push(Session {
            flow,
            items: Vec::new(),
            data_conns: 0,
        });
        let i = self.sessions.len() - 1;
        self.by_flow.insert(flow, i);
        i
    }

    fn push(&mut self, session: usize, item: Item) {
        self.items += 1;
        self.sessions[session].items.push(item);
    }
}

impl Observer for Recorder {
    fn frame(&mut self, captured: &Frame, passed: &Passed) {
        let Some(inside) = Segment::parse(&captured.ip) else {
            return; // not TCP: nothing of FTP
        };
        let crossing = Crossing {
            time: captured.time,
            toward_inside: passed.toward_inside,
            inside,
            outside: passed.far_side.as_ref().and_then(|f| Segment::parse(&f.ip)),
            events: Vec::new(),
        };
        self.crossing(crossing, &passed.events);
    }

    fn timers(&mut self, now: Duration, events: &[Event]) {
        self.notes(now, events);
    }
}

#[cfg(test)]
mod tests {
    use ftpct_engine::nat::CtMapping;

    use super::*;
    use crate::ladder::crossing::tests::{natted, packet};

    fn crossing(from_client: bool, payload: &[u8]) -> Crossing {
        let inside = Segment::parse(&packet(from_client, 1, 1, payload)).expect("tcp");
        let outside = if from_client {
            Segment::parse(&natted(1, 1, payload))
        } else {
            Some(inside.clone())
        };
        Crossing {
            time: Duration::from_millis(5),
            toward_inside: !from_client,
            inside,
            outside,
            events: Vec::new(),
        }
    }

    fn flow_new(c: &Crossing) -> Event {
        Event::FlowNew {
            mapping: CtMapping::identity(c.inside.tuple),
            local: false,
        }
    }

    #[test]
    fn segments_join_the_session_their_events_name() {
        let mut r = Recorder::new();
        let first = crossing(true, b"");
        let new = flow_new(&first);
        r.crossing(first, std::slice::from_ref(&new));
        r.crossing(crossing(false, b"220 hi\r\n"), &[]);
        r.crossing(crossing(true, b"QUIT\r\n"), &[]);
        assert_eq!(r.sessions().len(), 1);
        let s = &r.sessions()[0];
        assert_eq!(s.items.len(), 3);
        assert!(s.items.iter().all(|i| matches!(
            i,
            Item::Crossing {
                conn: Conn::Control,
                ..
            }
        )));
        assert_eq!(s.events().collect::<Vec<_>>(), [&new]);
    }

    #[test]
    fn segments_of_no_session_are_counted_only() {
        let mut r = Recorder::new();
        r.crossing(crossing(true, b"hello"), &[]);
        assert!(r.sessions().is_empty());
        assert_eq!(r.unrelated, 1);
    }

    #[test]
    fn a_new_connection_on_the_same_tuple_is_a_new_session() {
        let mut r = Recorder::new();
        let c = crossing(true, b"");
        let new = flow_new(&c);
        r.crossing(c.clone(), std::slice::from_ref(&new));
        let closed = Event::FlowClosed {
            flow: c.inside.tuple,
        };
        r.crossing(c.clone(), &[closed.clone(), new.clone()]);
        assert_eq!(r.sessions().len(), 2);
        // The close belongs to the first, the segment to the second.
        assert_eq!(
            r.sessions()[0].items.last(),
            Some(&Item::Note {
                time: c.time,
                event: closed
            })
        );
        assert_eq!(r.sessions()[1].items.len(), 1);
    }

    #[test]
    fn timer_events_are_notes_of_their_session() {
        let mut r = Recorder::new();
        let c = crossing(true, b"");
        let flow = c.inside.tuple;
        r.crossing(c.clone(), &[flow_new(&c)]);
        r.notes(Duration::from_secs(9), &[Event::FlowClosed { flow }]);
        assert!(matches!(
            r.sessions()[0].items.last(),
            Some(Item::Note { time, .. }) if *time == Duration::from_secs(9)
        ));
    }

    #[test]
    fn past_the_limit_nothing_more_is_kept() {
        let mut r = Recorder::new();
        let c = crossing(true, b"");
        r.crossing(c.clone(), &[flow_new(&c)]);
        r.items = MAX_ITEMS;
        r.crossing(c.clone(), &[]);
        r.notes(Duration::ZERO, &[flow_new(&c)]);
        assert_eq!(r.not_drawn, 2);
        assert_eq!(r.sessions()[0].items.len(), 1);
    }
}
