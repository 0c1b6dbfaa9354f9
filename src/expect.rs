//! The expectation table: data connections announced on a control
//! connection and not yet seen.
//!
//! Tuple and mask as the kernel's: from the peer's address, any source
//! port, to one address and port, TCP. Entries leave the table when used,
//! when they expire, and when their control connection ends.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:* -> {} ({})", self.peer, self.dst, self.nat)
    }
}

/// Why an expectation could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectRefusal {
    SessionLimit,
    GlobalLimit,
    /// Another control connection already expects this address and port.
    Taken,
}

type Key = (SocketAddr, IpAddr);

/// Keyed as the kernel's (destination and peer address). A destination
/// index tells which control connections expect a public address and
/// port, so NAT can pick a port nobody else expects.
#[derive(Debug, Default)]
pub struct ExpectTable {
    entries: HashMap<Key, Expectation>,
    masters_by_dst: HashMap<SocketAddr, Vec<Tuple>>,
    per_master: HashMap<Tuple, Vec<Key>>,
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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if no other control connection expects a connection to `dst`
    /// from `peer` (the kernel's clash rule: the same tuple and mask).
    pub fn is_free(&self, dst: SocketAddr, peer: IpAddr, master: &Tuple) -> bool {
        self.entries
            .get(&(dst, peer))
            .is_none_or(|e| e.master == *master)
    }

    /// Adds `e`, replacing an entry of the same master for the same tuple
    /// (a repeated PORT), as the kernel does. Returns what it replaced.
    pub fn insert(&mut self, e: Expectation) -> Result<Option<Expectation>, ExpectRefusal> {
        let key = (e.dst, e.peer);
        if let Some(old) = self.entries.get(&key) {
            if old.master != e.master {
                return Err(ExpectRefusal::Taken);
            }
            return Ok(self.entries.insert(key, e));
        }
        if self.entries.len() >= self.global_limit {
            return Err(ExpectRefusal::GlobalLimit);
        }
        let keys = self.per_master.entry(e.master).or_default();
        if keys.len() >= self.session_limit {
            return Err(ExpectRefusal::SessionLimit);
        }
        keys.push(key);
        self.masters_by_dst.entry(e.dst).or_default().push(e.master);
        self.entries.insert(key, e);
        Ok(None)
    }

    /// The expectation a data connection's first packet matches, removed.
    pub fn take_match(&mut self, data: &Tuple) -> Option<Expectation> {
        self.remove(&(data.dst, data.src.ip()))
    }

    /// True if some expectation still wants connections to `dst` (several
    /// may, from different peers, in FXP).
    pub fn expects_dst(&self, dst: SocketAddr) -> bool {
        self.masters_by_dst.contains_key(&dst)
    }

    /// The pending expectation whose destination NAT leads to `inside` from
    /// `peer` (used to undo NAT on a capture taken behind the gateway).
    pub fn find_by_nat_dst(&self, peer: IpAddr, inside: SocketAddr) -> Option<&Expectation> {
        self.entries
            .values()
            .find(|e| e.peer == peer && e.nat.dst == Some(inside))
    }

    /// Removes and returns the expectations that expired at `now`.
    pub fn expire(&mut self, now: Duration) -> Vec<Expectation> {
        let due: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        due.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Removes and returns all expectations of a control connection.
    pub fn remove_master(&mut self, master: &Tuple) -> Vec<Expectation> {
        let keys = self.per_master.get(master).cloned().unwrap_or_default();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    fn remove(&mut self, key: &Key) -> Option<Expectation> {
        let e = self.entries.remove(key)?;
        if let Some(keys) = self.per_master.get_mut(&e.master) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.per_master.remove(&e.master);
            }
        }
        if let Some(ms) = self.masters_by_dst.get_mut(&e.dst) {
            if let Some(i) = ms.iter().position(|m| *m == e.master) {
                ms.swap_remove(i);
            }
            if ms.is_empty() {
                self.masters_by_dst.remove(&e.dst);
            }
        }
        Some(e)
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
            .insert(exp(m, "198.51.100.1:5000", 300))
            .expect("inserted");
        let data = t("198.51.100.20:20", "198.51.100.1:5000");
        assert!(table.take_match(&data).is_some());
        assert!(table.take_match(&data).is_none(), "used once");
        assert!(table.is_empty());
    }

    #[test]
    fn limits_and_expiry() {
        let m = t("192.0.2.10:40000", "198.51.100.20:21");
        let mut table = ExpectTable::new(3, 2);
        table.insert(exp(m, "198.51.100.1:5000", 10)).expect("1");
        table.insert(exp(m, "198.51.100.1:5001", 20)).expect("2");
        assert_eq!(
            table.insert(exp(m, "198.51.100.1:5002", 20)),
            Err(ExpectRefusal::SessionLimit)
        );
        let other = t("192.0.2.11:40000", "198.51.100.20:21");
        assert_eq!(
            table.insert(exp(other, "198.51.100.1:5000", 20)),
            Err(ExpectRefusal::Taken)
        );
        let server = "198.51.100.20".parse().expect("ip");
        assert!(!table.is_free("198.51.100.1:5000".parse().expect("a"), server, &other));
        table
            .insert(exp(other, "198.51.100.1:6000", 20))
            .expect("3");
        assert_eq!(
            table.insert(exp(other, "198.51.100.1:6001", 20)),
            Err(ExpectRefusal::GlobalLimit)
        );
        assert_eq!(table.expire(Duration::from_secs(15)).len(), 1);
        assert_eq!(table.remove_master(&m).len(), 1);
        assert_eq!(table.len(), 1);
    }
}
