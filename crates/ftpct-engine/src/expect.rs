//! The expectation table: data connections announced on a control
//! connection and not yet seen.
//!
//! Tuple and mask as the kernel's: from the peer's address, any source
//! port, to one address and port, TCP. Entries leave the table when used,
//! when they expire, and when their control connection ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use foldhash::fast::RandomState;

use crate::grammar::AnnounceKind;
use crate::tuple::Tuple;

/// Where conntrack must send a data connection (follow-master NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatBindings {
    /// Source NAT: new source address (port kept).
    pub src: Option<IpAddr>,
    /// Destination NAT: new destination address and port.
    pub dst: Option<SocketAddr>,
}

impl NatBindings {
    pub const NONE: NatBindings = NatBindings {
        src: None,
        dst: None,
    };

    pub fn is_none(&self) -> bool {
        self.src.is_none() && self.dst.is_none()
    }
}

impl fmt::Display for NatBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.src, self.dst) {
            (None, None) => write!(f, "no NAT"),
            (src, dst) => {
                if let Some(s) = src {
                    write!(f, "snat to {s}")?;
                }
                if let Some(d) = dst {
                    let sep = if src.is_some() { ", " } else { "" };
                    write!(f, "{sep}dnat to {d}")?;
                }
                Ok(())
            }
        }
    }
}

/// A pending data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The data connection's source address (any source port).
    pub peer: IpAddr,
    /// Its destination as it reaches the gateway (before NAT).
    pub dst: SocketAddr,
    pub nat: NatBindings,
    /// The control connection's original tuple.
    pub master: Tuple,
    pub kind: AnnounceKind,
    pub expires: Duration,
}

impl Expectation {
    /// The stored form, without the master tuple (its owner slot stands
    /// for it: 64 bytes less per pending expectation).
    fn pending(&self) -> Pending {
        Pending {
            peer: self.peer,
            dst: self.dst,
            nat: self.nat,
            kind: self.kind,
            expires: self.expires,
        }
    }
}

/// An expectation as the table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    peer: IpAddr,
    dst: SocketAddr,
    nat: NatBindings,
    kind: AnnounceKind,
    expires: Duration,
}

impl Pending {
    fn with_master(&self, master: Tuple) -> Expectation {
        Expectation {
            peer: self.peer,
            dst: self.dst,
            nat: self.nat,
            master,
            kind: self.kind,
            expires: self.expires,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:* -> {} ({})", self.peer, self.dst, self.nat)
    }
}

/// Why an expectation could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectRefusal {
    GlobalLimit,
    /// Another control connection already expects this address and port.
    Taken,
}

type Key = (SocketAddr, IpAddr);

/// Who owns an expectation: the slot of its control connection.
pub type Owner = u32;

#[derive(Debug)]
struct Entry {
    pending: Pending,
    owner: Owner,
}

/// Keyed as the kernel's (destination and peer address). Side indexes:
/// how many expectations want each destination (the kernel ipset holds
/// destinations), each owner's keys, and a heap of deadlines so expiry
/// costs nothing while nothing is due. Expectations come out with the
/// owner's slot; the caller knows the master tuple of each slot.
///
/// Memory follows the live expectations: deadlines of used, replaced or
/// removed entries are dropped from the heap once they outnumber the live
/// ones, and the maps give their room back after a flood.
#[derive(Debug, Default)]
pub struct ExpectTable {
    entries: HashMap<Key, Entry, RandomState>,
    dst_refs: HashMap<SocketAddr, u32, RandomState>,
    by_owner: HashMap<Owner, Vec<Key>, RandomState>,
    deadlines: BinaryHeap<Reverse<(Duration, Key)>>,
    global_limit: usize,
    session_limit: usize,
}

impl ExpectTable {
    pub fn new(global_limit: usize, session_limit: usize) -> Self {
        ExpectTable {
            global_limit,
            session_limit,
            ..ExpectTable::default()
        }
    }

    /// A new per-session limit; sessions above it shed their oldest at
    /// their next expectation.
    pub fn set_session_limit(&mut self, limit: usize) {
        self.session_limit = limit;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if no other control connection expects a connection to `dst`
    /// from `peer` (the kernel's clash rule: the same tuple and mask).
    pub fn is_free(&self, dst: SocketAddr, peer: IpAddr, owner: Owner) -> bool {
        self.entries
            .get(&(dst, peer))
            .is_none_or(|e| e.owner == owner)
    }

    /// Adds `e` for `owner`, replacing an entry of the same owner for the
    /// same tuple (a repeated PORT), as the kernel does. At the session
    /// limit the owner's oldest expectation makes room, as in the kernel
    /// (servers replace their passive listener on each PASV anyway); it is
    /// returned so its kernel state can go too.
    pub fn insert(
        &mut self,
        e: &Expectation,
        owner: Owner,
    ) -> Result<Option<Expectation>, ExpectRefusal> {
        let key = (e.dst, e.peer);
        if let Some(old) = self.entries.get_mut(&key) {
            if old.owner != owner {
                return Err(ExpectRefusal::Taken);
            }
            old.pending = e.pending();
            self.deadlines.push(Reverse((e.expires, key)));
            self.compact_deadlines();
            return Ok(None);
        }
        let owned = self.by_owner.get(&owner).map_or(&[][..], Vec::as_slice);
        let evict = (owned.len() >= self.session_limit)
            .then(|| owned.first().copied())
            .flatten();
        let evicted = evict
            .and_then(|k| self.remove(&k))
            .map(|(p, _)| p.with_master(e.master));
        if self.entries.len() >= self.global_limit {
            return Err(ExpectRefusal::GlobalLimit);
        }
        self.by_owner
            .entry(owner)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(key);
        *self.dst_refs.entry(e.dst).or_insert(0) += 1;
        self.deadlines.push(Reverse((e.expires, key)));
        self.entries.insert(
            key,
            Entry {
                pending: e.pending(),
                owner,
            },
        );
        self.compact_deadlines();
        Ok(evicted)
    }

    /// Keeps the heap proportional to the live entries: rebuilt from them
    /// when stale deadlines outnumber them.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        self.deadlines = self
            .entries
            .iter()
            .map(|(key, e)| Reverse((e.pending.expires, *key)))
            .collect();
    }

    /// Gives memory back once the table is mostly empty (after a flood).
    fn shrink(&mut self) {
        let sparse = |len: usize, cap: usize| cap > 4 * len + 64;
        if sparse(self.entries.len(), self.entries.capacity()) {
            self.entries.shrink_to_fit();
            self.dst_refs.shrink_to_fit();
            self.by_owner.shrink_to_fit();
        }
        if sparse(self.deadlines.len(), self.deadlines.capacity()) {
            self.deadlines.shrink_to_fit();
        }
    }

    /// Deadlines held (live and stale), for memory checks.
    pub fn deadlines_held(&self) -> usize {
        self.deadlines.len()
    }

    /// The expectation a data connection's first packet matches, removed,
    /// with its owner.
    pub fn take_match(
        &mut self,
        data: &Tuple,
        master_of: impl Fn(Owner) -> Option<Tuple>,
    ) -> Option<Expectation> {
        let (pending, owner) = self.remove(&(data.dst, data.src.ip()))?;
        Some(pending.with_master(master_of(owner)?))
    }

    /// True if some expectation still wants connections to `dst` (several
    /// may, from different peers, in FXP).
    pub fn expects_dst(&self, dst: SocketAddr) -> bool {
        self.dst_refs.contains_key(&dst)
    }

    pub fn dst_count(&self) -> usize {
        self.dst_refs.len()
    }

    /// The most recent pending expectation of `owner`, whose control
    /// connection's original tuple is `master`.
    pub fn latest_of(&self, owner: Owner, master: Tuple) -> Option<Expectation> {
        let key = self.by_owner.get(&owner)?.last()?;
        Some(self.entries.get(key)?.pending.with_master(master))
    }

    /// Every destination some expectation wants, sorted.
    pub fn dsts(&self) -> Vec<SocketAddr> {
        let mut dsts: Vec<SocketAddr> = self.dst_refs.keys().copied().collect();
        dsts.sort_unstable();
        dsts
    }

    /// Every pending expectation with its master tuple (a status
    /// snapshot), soonest deadline first.
    pub fn all(&self, master_of: impl Fn(Owner) -> Option<Tuple>) -> Vec<Expectation> {
        let mut all: Vec<Expectation> = self
            .entries
            .values()
            .filter_map(|e| Some(e.pending.with_master(master_of(e.owner)?)))
            .collect();
        all.sort_by_key(|e| e.expires);
        all
    }

    /// The pending expectation whose destination NAT leads to `inside` from
    /// `peer` (used to undo NAT on a capture taken behind the gateway):
    /// its public destination.
    pub fn public_dst_for(&self, peer: IpAddr, inside: SocketAddr) -> Option<SocketAddr> {
        self.entries
            .values()
            .map(|e| &e.pending)
            .find(|p| p.peer == peer && p.nat.dst == Some(inside))
            .map(|p| p.dst)
    }

    /// The soonest deadline (maybe of an expectation gone since: an early
    /// look finds nothing due).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.peek().map(|Reverse((when, _))| *when)
    }

    /// Removes and returns the expectations that expired at `now`.
    pub fn expire(
        &mut self,
        now: Duration,
        master_of: impl Fn(Owner) -> Option<Tuple>,
    ) -> Vec<Expectation> {
        let mut expired = Vec::new();
        while let Some(Reverse((when, key))) = self.deadlines.peek().copied() {
            if when > now {
                break;
            }
            self.deadlines.pop();
            // Stale heap entries (used, replaced, removed) are skipped.
            let due = self
                .entries
                .get(&key)
                .is_some_and(|e| e.pending.expires == when);
            if let Some((p, owner)) = due.then(|| self.remove(&key)).flatten() {
                expired.extend(master_of(owner).map(|m| p.with_master(m)));
            }
        }
        self.shrink();
        expired
    }

    /// Removes and returns all expectations of a control connection.
    pub fn remove_owner(&mut self, owner: Owner, master: Tuple) -> Vec<Expectation> {
        let keys = self.by_owner.remove(&owner).unwrap_or_default();
        keys.iter()
            .filter_map(|k| self.remove(k))
            .map(|(p, _)| p.with_master(master))
            .collect()
    }

    fn remove(&mut self, key: &Key) -> Option<(Pending, Owner)> {
        let Entry { pending, owner } = self.entries.remove(key)?;
        if let Some(keys) = self.by_owner.get_mut(&owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
        if let Some(n) = self.dst_refs.get_mut(&pending.dst) {
            *n -= 1;
            if *n == 0 {
                self.dst_refs.remove(&pending.dst);
            }
        }
        Some((pending, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    fn exp(master: Tuple, dst: &str, expires: u64) -> Expectation {
        Expectation {
            peer: "198.51.100.20".parse().expect("ip"),
            dst: dst.parse().expect("addr"),
            nat: NatBindings::NONE,
            master,
            kind: AnnounceKind::Port,
            expires: Duration::from_secs(expires),
        }
    }

    #[test]
    fn match_removes_and_ignores_source_port() {
        let m = t("192.0.2.10:40000", "198.51.100.20:21");
        let mut table = ExpectTable::new(10, 4);
        table
            .insert(&exp(m, "198.51.100.1:5000", 300), 1)
            .expect("inserted");
        let data = t("198.51.100.20:20", "198.51.100.1:5000");
        assert!(table.take_match(&data, |_| Some(m)).is_some());
        assert!(table.take_match(&data, |_| Some(m)).is_none(), "used once");
        assert!(table.is_empty());
    }

    #[test]
    fn deadlines_stay_proportional_to_live_expectations() {
        let m = t("192.0.2.10:40000", "198.51.100.20:21");
        let mut table = ExpectTable::new(100_000, 16);
        // 100,000 announcements, each replacing or evicting an earlier one:
        // at most 16 live at a time.
        for i in 0..100_000u32 {
            let port = 1024 + (i % 40_000) as u16;
            let dst = format!("198.51.100.1:{port}");
            table.insert(&exp(m, &dst, 300), 1).expect("inserted");
            assert!(table.deadlines_held() <= 2 * table.len() + 64 + 1);
        }
        assert_eq!(table.len(), 16);
        table.remove_owner(1, m);
        table.expire(Duration::from_secs(301), |_| Some(m));
        assert_eq!(table.deadlines_held(), 0);
    }

    #[test]
    fn limits_and_expiry() {
        let m = t("192.0.2.10:40000", "198.51.100.20:21");
        let mut table = ExpectTable::new(3, 2);
        let first = exp(m, "198.51.100.1:5000", 10);
        assert_eq!(table.insert(&first, 1), Ok(None));
        assert_eq!(table.insert(&exp(m, "198.51.100.1:5001", 20), 1), Ok(None));
        assert_eq!(
            table.insert(&exp(m, "198.51.100.1:5002", 30), 1),
            Ok(Some(first)),
            "at the session limit the oldest makes room"
        );
        let other = t("192.0.2.11:40000", "198.51.100.20:21");
        assert_eq!(
            table.insert(&exp(other, "198.51.100.1:5001", 20), 2),
            Err(ExpectRefusal::Taken)
        );
        let server = "198.51.100.20".parse().expect("ip");
        assert!(!table.is_free("198.51.100.1:5001".parse().expect("a"), server, 2));
        assert!(table.is_free("198.51.100.1:5000".parse().expect("a"), server, 2));
        assert_eq!(
            table.insert(&exp(other, "198.51.100.1:6000", 20), 2),
            Ok(None)
        );
        assert_eq!(
            table.insert(&exp(other, "198.51.100.1:6001", 20), 2),
            Err(ExpectRefusal::GlobalLimit)
        );
        assert_eq!(table.expire(Duration::from_secs(25), |_| Some(m)).len(), 2);
        assert_eq!(table.remove_owner(1, m).len(), 1);
        assert!(table.is_empty());
    }
}
