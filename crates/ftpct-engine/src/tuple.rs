//! Connection tuples: the TCP 5-tuple (protocol is always TCP here) as
//! conntrack names it, one per direction.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One direction of a TCP connection: source and destination endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Tuple {
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        Tuple { src, dst }
    }

    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    pub fn src_ip(&self) -> IpAddr {
        self.src.ip()
    }

    pub fn dst_ip(&self) -> IpAddr {
        self.dst.ip()
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

/// Direction of a packet in its connection, as conntrack names them: the
/// one direction type (flows, announcements, conntrack lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server (on a control connection: commands, PORT/EPRT).
    Orig,
    /// Server to client (replies, 227/229).
    Reply,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::Orig => 0,
            Dir::Reply => 1,
        }
    }

    /// The opposite direction.
    pub fn other(self) -> Dir {
        match self {
            Dir::Orig => Dir::Reply,
            Dir::Reply => Dir::Orig,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dir::Orig => "client",
            Dir::Reply => "server",
        }
    }
}
