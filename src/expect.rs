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

/// Keyed by destination: one pending data connection per public address
/// and port, which is also what the kernel ipset that queues their SYNs holds.
#[derive(Debug, Default)]
pub struct ExpectTable {
    entries: HashMap<SocketAddr, Expectation>,
    per_master: HashMap<Tuple, Vec<SocketAddr>>,
    global_limit: usize,
    session_limit: usize,
}

impl ExpectTable {
    pub fn new(global_limit: usize, session_limit: usize) -> Self {
        ExpectTable {
            entries: HashMap::new(),
            per_master: HashMap::new(),
            global_limit,
            session_limit,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if no other control connection expects a connection to `dst`.
    pub fn is_free(&self, dst: SocketAddr, master: &Tuple) -> bool {
        self.entries.get(&dst).is_none_or(|e| e.master == *master)
    }

    /// Adds `e`, replacing an entry of the same master for the same
    /// destination (a repeated PORT). Returns what it replaced.
    pub fn insert(&mut self, e: Expectation) -> Result<Option<Expectation>, ExpectRefusal> {
        if let Some(old) = self.entries.get(&e.dst) {
            if old.master != e.master {
                return Err(ExpectRefusal::Taken);
            }
            return Ok(self.entries.insert(e.dst, e));
        }
        if self.entries.len() >= self.global_limit {
            return Err(ExpectRefusal::GlobalLimit);
        }
        let dsts = self.per_master.entry(e.master).or_default();
        if dsts.len() >= self.session_limit {
            return Err(ExpectRefusal::SessionLimit);
        }
        dsts.push(e.dst);
        self.entries.insert(e.dst, e);
        Ok(None)
    }

    /// The expectation a data connection's first packet matches, removed.
    pub fn take_match(&mut self, data: &Tuple) -> Option<Expectation> {
        let e = self.entries.get(&data.dst)?;
        if e.peer != data.src.ip() {
            return None;
        }
        let e = self.entries.remove(&data.dst)?;
        self.forget(&e.master, e.dst);
        Some(e)
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
        let due: Vec<SocketAddr> = self
            .entries
            .values()
            .filter(|e| e.expires <= now)
            .map(|e| e.dst)
            .collect();
        due.into_iter().filter_map(|d| self.remove(d)).collect()
    }

    /// Removes and returns all expectations of a control connection.
    pub fn remove_master(&mut self, master: &Tuple) -> Vec<Expectation> {
        let dsts = self.per_master.remove(master).unwrap_or_default();
        dsts.into_iter()
            .filter_map(|d| self.entries.remove(&d))
            .collect()
    }

    fn remove(&mut self, dst: SocketAddr) -> Option<Expectation> {
        let e = self.entries.remove(&dst)?;
        self.forget(&e.master, dst);
        Some(e)
    }

    fn forget(&mut self, master: &Tuple, dst: SocketAddr) {
        if let Some(dsts) = self.per_master.get_mut(master) {
            dsts.retain(|d| *d != dst);
            if dsts.is_empty() {
                self.per_master.remove(master);
            }
        }
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
        assert!(!table.is_free("198.51.100.1:5000".parse().expect("a"), &other));
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
