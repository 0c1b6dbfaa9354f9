//! The live [`NatLookup`]: a control connection's NAT mapping read from
//! conntrack over ctnetlink, with a small cache so that a burst of packets
//! of a flow the engine does not know yet costs one netlink round trip,
//! not one per packet.
//!
//! `None` is a normal answer: at the SYN of a new control connection, seen
//! in raw PREROUTING (before conntrack), there is no entry yet. The engine
//! asks again, with the reply tuple, when the first answer comes back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::netfilter::ctnetlink::{CtEntry, Ctnetlink};
use crate::netfilter::Error;
use ftpct_engine::nat::{CtMapping, NatLookup, NoNat, StaticNat};
use ftpct_engine::tuple::{Dir, Tuple};

/// How long an answer is reused. Short: a mapping never changes during a
/// connection, but a port reused by a new connection may map differently.
pub const POSITIVE_TTL: Duration = Duration::from_secs(2);
/// How long "no entry" is reused: short, the entry may appear any moment.
pub const NEGATIVE_TTL: Duration = Duration::from_millis(500);
/// Entries kept at most; past that, expired ones go, then all.
pub const MAX_ENTRIES: usize = 16_384;

/// What the cache needs from conntrack: [`Ctnetlink::get`].
pub trait CtGet {
    fn get(&mut self, tuple: &Tuple, dir: Dir) -> Result<Option<CtEntry>, Error>;
}

impl CtGet for Ctnetlink {
    fn get(&mut self, tuple: &Tuple, dir: Dir) -> Result<Option<CtEntry>, Error> {
        Ctnetlink::get(self, tuple, dir)
    }
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    answer: Option<CtMapping>,
    /// The entry's conntrack mark when it was read.
    mark: u32,
    until: Instant,
}

/// A control connection's conntrack mark when it is known without asking
/// conntrack (a data connection's entry inherits it).
pub trait KnownMarks {
    fn known_mark(&self, orig: &Tuple) -> Option<u32>;
}

impl KnownMarks for NoNat {
    fn known_mark(&self, _: &Tuple) -> Option<u32> {
        None
    }
}

impl KnownMarks for StaticNat {
    fn known_mark(&self, _: &Tuple) -> Option<u32> {
        None
    }
}

/// The mark read with the connection's mapping, at most [`POSITIVE_TTL`]
/// ago: a mark set by a rule at the connection's first packet (the usual
/// CONNMARK) is there; one changed later shows after the TTL at most.
impl<C: CtGet> KnownMarks for LiveNat<C> {
    fn known_mark(&self, orig: &Tuple) -> Option<u32> {
        self.known_mark_at(orig, Instant::now())
    }
}

/// Counters, for the log at exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupStats {
    pub hits: u64,
    pub queries: u64,
    pub errors: u64,
}

impl LookupStats {
    pub fn add(&mut self, other: &LookupStats) {
        self.hits += other.hits;
        self.queries += other.queries;
        self.errors += other.errors;
    }
}

/// Conntrack lookups with a per-tuple cache.
pub struct LiveNat<C: CtGet = Ctnetlink> {
    ct: C,
    cache: HashMap<Tuple, Cached>,
    stats: LookupStats,
    /// A packet to none of these ports is a server's (from a control port,
    /// or from the port NAT gave it): its tuple is its entry's reply,
    /// asked first.
    control_ports: Vec<u16>,
}

impl<C: CtGet> LiveNat<C> {
    pub fn new(ct: C, control_ports: &[u16]) -> Self {
        LiveNat {
            ct,
            cache: HashMap::new(),
            stats: LookupStats::default(),
            control_ports: control_ports.to_vec(),
        }
    }

    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    /// [`KnownMarks::known_mark`] at a given time: the mark of the entry
    /// whose original tuple is `orig`, if its answer is still cached.
    pub fn known_mark_at(&self, orig: &Tuple, now: Instant) -> Option<u32> {
        let c = self.cache.get(orig).filter(|c| c.until > now)?;
        c.answer.filter(|m| m.orig == *orig).map(|_| c.mark)
    }

    /// [`NatLookup::lookup`] at a given time (tests drive the clock).
    pub fn lookup_at(&mut self, seen: &Tuple, now: Instant) -> Option<CtMapping> {
        if let Some(c) = self.cache.get(seen).filter(|c| c.until > now) {
            self.stats.hits += 1;
            return c.answer;
        }
        let (answer, mark) = match self.query(seen) {
            Some(e) => (
                Some(CtMapping {
                    orig: e.orig,
                    reply: e.reply,
                }),
                e.mark,
            ),
            None => (None, 0),
        };
        self.remember(seen, (answer, mark), now);
        answer
    }

    /// The entry having `seen` as its original tuple, else as its reply
    /// (in the other order for a server's packet: one question, not two,
    /// for each control connection's SYN-ACK).
    fn query(&mut self, seen: &Tuple) -> Option<CtEntry> {
        let dirs = if !self.control_ports.contains(&seen.dst.port()) {
            [Dir::Reply, Dir::Orig]
        } else {
            [Dir::Orig, Dir::Reply]
        };
        for dir in dirs {
            self.stats.queries += 1;
            match self.ct.get(seen, dir) {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
                Err(e) => {
                    // Logged, answered "unknown": the packet passes unchanged.
                    self.stats.errors += 1;
                    tracing::warn!(flow = %seen, "conntrack lookup failed: {e}");
                    return None;
                }
            }
        }
        None
    }

    fn remember(&mut self, seen: &Tuple, (answer, mark): (Option<CtMapping>, u32), now: Instant) {
        if self.cache.len() >= MAX_ENTRIES {
            self.cache.retain(|_, c| c.until > now);
            if self.cache.len() >= MAX_ENTRIES {
                self.cache.clear();
            }
        }
        match answer {
            // Both tuples of the connection: the other direction is next.
            Some(m) => {
                let c = Cached {
                    answer,
                    mark,
                    until: now + POSITIVE_TTL,
                };
                self.cache.insert(m.orig, c);
                self.cache.insert(m.reply, c);
            }
            None => {
                self.cache.insert(
                    *seen,
                    Cached {
                        answer,
                        mark,
                        until: now + NEGATIVE_TTL,
                    },
                );
            }
        }
    }
}

impl<C: CtGet> NatLookup for LiveNat<C> {
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping> {
        self.lookup_at(seen, Instant::now())
    }

    fn forget(&mut self, m: &CtMapping) {
        self.cache.remove(&m.orig);
        self.cache.remove(&m.reply);
    }

    /// Queued from the raw table, a connection's first SYN comes before
    /// conntrack: no entry to ask for, so no netlink round trip.
    fn lookup_new(&mut self, _orig: &Tuple) -> Option<CtMapping> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    /// A conntrack table with one SNATed connection, counting queries.
    struct FakeCt {
        entry: Option<CtEntry>,
        calls: usize,
        fail: bool,
    }

    impl CtGet for FakeCt {
        fn get(&mut self, tuple: &Tuple, dir: Dir) -> Result<Option<CtEntry>, Error> {
            self.calls += 1;
            if self.fail {
                return Err(Error::Timeout {
                    op: crate::netfilter::error::Op::CtGet,
                    after: Duration::from_secs(5),
                });
            }
            Ok(self.entry.filter(|e| match dir {
                Dir::Orig => e.orig == *tuple,
                Dir::Reply => e.reply == *tuple,
            }))
        }
    }

    fn snat_entry() -> CtEntry {
        CtEntry {
            orig: t("192.0.2.10:40000", "198.51.100.20:21"),
            reply: t("198.51.100.20:21", "198.51.100.1:40000"),
            mark: 0,
        }
    }

    fn fake(entry: Option<CtEntry>) -> LiveNat<FakeCt> {
        LiveNat::new(
            FakeCt {
                entry,
                calls: 0,
                fail: false,
            },
            &[21],
        )
    }

    #[test]
    fn finds_by_orig_and_by_reply() {
        let e = snat_entry();
        let mut nat = fake(Some(e));
        let now = Instant::now();
        let m = nat.lookup_at(&e.reply, now).expect("by reply");
        assert_eq!((m.orig, m.reply), (e.orig, e.reply));
        assert_eq!(
            nat.ct.calls, 1,
            "a server's packet: its reply tuple asked first"
        );
        let m2 = nat.lookup_at(&e.orig, now).expect("by orig, cached");
        assert_eq!(m, m2);
        assert_eq!(nat.ct.calls, 1, "the other direction came from the cache");
        let mut nat = fake(Some(e));
        let client_side = t("198.51.100.1:40000", "198.51.100.20:21");
        assert_eq!(nat.lookup_at(&client_side, now), None);
        assert_eq!(nat.ct.calls, 2, "a client's packet: orig, then reply");
        let mut nat = fake(Some(e));
        assert!(nat.lookup_at(&e.orig, now).is_some());
        assert_eq!(nat.ct.calls, 1, "found as orig at once");
    }

    #[test]
    fn the_mark_read_with_a_mapping_is_known_while_it_is_cached() {
        let e = CtEntry {
            mark: 0x2a,
            ..snat_entry()
        };
        let mut nat = fake(Some(e));
        let now = Instant::now();
        assert_eq!(nat.known_mark_at(&e.orig, now), None, "not read yet");
        nat.lookup_at(&e.reply, now).expect("found");
        assert_eq!(nat.known_mark_at(&e.orig, now), Some(0x2a));
        assert_eq!(
            nat.known_mark_at(&e.reply, now),
            None,
            "a mark is asked for by the master's original tuple"
        );
        assert_eq!(nat.known_mark_at(&e.orig, now + POSITIVE_TTL), None);
        let mut none = fake(None);
        none.lookup_at(&e.orig, now);
        assert_eq!(none.known_mark_at(&e.orig, now), None, "no entry, no mark");
    }

    #[test]
    fn negative_answers_are_cached_briefly() {
        let e = snat_entry();
        let mut nat = fake(None);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(nat.lookup_at(&e.orig, now), None);
        }
        assert_eq!(nat.ct.calls, 2, "a storm is one query");
        // The entry appears (conntrack saw the SYN): asked again after the TTL.
        nat.ct.entry = Some(e);
        assert_eq!(nat.lookup_at(&e.orig, now + NEGATIVE_TTL / 2), None);
        assert!(nat.lookup_at(&e.orig, now + NEGATIVE_TTL).is_some());
    }

    #[test]
    fn positive_answers_expire() {
        let e = snat_entry();
        let mut nat = fake(Some(e));
        let now = Instant::now();
        assert!(nat.lookup_at(&e.orig, now).is_some());
        nat.ct.entry = None;
        assert!(nat.lookup_at(&e.orig, now + POSITIVE_TTL / 2).is_some());
        assert_eq!(nat.lookup_at(&e.orig, now + POSITIVE_TTL), None);
    }

    #[test]
    fn errors_mean_unknown_and_are_counted() {
        let mut nat = fake(None);
        nat.ct.fail = true;
        let now = Instant::now();
        assert_eq!(nat.lookup_at(&snat_entry().orig, now), None);
        assert_eq!(nat.lookup_at(&snat_entry().orig, now), None);
        assert_eq!(nat.stats().errors, 1, "the failure is cached too");
    }

    #[test]
    fn cache_is_bounded() {
        let mut nat = fake(None);
        let now = Instant::now();
        for port in 0..(MAX_ENTRIES as u16 + 10) {
            let seen = Tuple::new(
                std::net::SocketAddr::from(([192, 0, 2, 1], port)),
                "198.51.100.20:21".parse().expect("addr"),
            );
            nat.lookup_at(&seen, now);
        }
        assert!(nat.cache.len() <= MAX_ENTRIES);
    }
}
