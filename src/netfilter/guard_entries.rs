//! The guard ipsets' view of control connections (`hash:ip,port,ip`): an
//! entry names one direction of a connection by its client's address and
//! port and its server's address, as the raw table sees its packets,
//! before NAT. The client's segments match it as `src,src,dst`, the
//! server's as `dst,dst,src`. The engine speaks of directions
//! ([`QueuedDirection`]); this is how they become entries, and how the
//! kernel's rules find them in packets.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ftpct_engine::classifier::{classify, Selection, Side};
use ftpct_engine::command::QueuedDirection;
use ftpct_engine::tuple::{Dir, Tuple};
use ftpct_engine::wire::TcpPacket;

use crate::netfilter::ipset::Element;

/// A guard set entry: the client's address and port and the server's
/// address, as the raw table sees the packets, before NAT. The client's
/// port tells connections apart: named by the server's side, every
/// connection of one NATed client to one server would share it, and one
/// session's release would stop another's queueing. The server's port is
/// not in it (ipset has no type with two ports): without NAT both
/// directions of a connection are one entry ([`entry_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardEntry {
    pub client: SocketAddr,
    pub server: IpAddr,
}

impl GuardEntry {
    /// The entry of packets with tuple `seen` going in direction `dir`
    /// (Orig: from the client).
    pub fn of_packets(seen: &Tuple, dir: Dir) -> Self {
        match dir {
            Dir::Orig => GuardEntry {
                client: seen.src,
                server: seen.dst.ip(),
            },
            Dir::Reply => GuardEntry {
                client: seen.dst,
                server: seen.src.ip(),
            },
        }
    }

    /// The entry that keeps `direction` queued.
    pub fn of(direction: &QueuedDirection) -> Self {
        Self::of_packets(&direction.seen, direction.dir)
    }

    /// The set element: client address and port, server address.
    pub fn element(&self) -> Element {
        Element {
            addr: self.client.ip(),
            port: self.client.port(),
            addr2: Some(self.server),
        }
    }
}

impl fmt::Display for GuardEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} server {}", self.client, self.server)
    }
}

/// Selective queueing, after a segment of `direction` (the engine's
/// `Command::Guard`): its entry, and whether that entry must stay.
/// Without NAT the connection's `other` direction has the same entry: it
/// stays while either direction needs it.
pub fn entry_after(
    direction: &QueuedDirection,
    needed: bool,
    other: &QueuedDirection,
    other_needed: bool,
) -> (GuardEntry, bool) {
    let entry = GuardEntry::of(direction);
    let shared = other_needed && GuardEntry::of(other) == entry;
    (entry, needed || shared)
}

/// The guard entries a queued raw packet matches in the kernel's rules: as
/// a client segment when it goes to a control port, else as a server
/// segment (the rules queue no other, whatever port NAT gave the server),
/// unless it is a first SYN (a data connection's).
pub fn guard_entries_of_packet(
    bytes: &[u8],
    is_control_port: impl Fn(u16) -> bool,
) -> Vec<GuardEntry> {
    let Ok(pkt) = TcpPacket::parse(bytes) else {
        return Vec::new();
    };
    let seen = pkt.tuple;
    let dir = if is_control_port(seen.dst.port()) {
        Dir::Orig
    } else if pkt.flags.syn && !pkt.flags.ack {
        return Vec::new();
    } else {
        Dir::Reply
    };
    vec![GuardEntry::of_packets(&seen, dir)]
}

/// Whether the rules would let the raw packet pass unqueued were its
/// direction not guarded: a segment without SYN, FIN or RST of a control
/// connection that [`classify`] passes (no payload, or whole lines ending
/// with CR LF that hold no word that matters). Such a segment needs
/// nothing of ftpct but to be read in order, so it may be overtaken by
/// its direction's next unqueued segment: it does not keep its direction's
/// guard entry (the stream case: a direction whose segments always wait in
/// the queue is released once ftpct has caught up with what matters).
pub fn passes_unguarded(bytes: &[u8], is_control_port: impl Fn(u16) -> bool) -> bool {
    let Ok(pkt) = TcpPacket::parse(bytes) else {
        return false;
    };
    if pkt.flags.syn || pkt.flags.fin || pkt.flags.rst {
        return false;
    }
    let side = if is_control_port(pkt.tuple.dst.port()) {
        Side::Client
    } else {
        Side::Server
    };
    classify(bytes, side) == Selection::Passes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_testkit::{tuple, Segment};

    #[test]
    fn a_raw_packet_names_the_guard_entry_its_direction_matches() {
        let control = |p: u16| p == 21;
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let from_client = Segment::new(c2s, 1).payload(b"PASV\r\n").build();
        let client_key = GuardEntry::of_packets(&c2s, Dir::Orig);
        assert_eq!(guard_entries_of_packet(&from_client, control), [client_key]);
        // The server's segments as the raw table sees them: toward the
        // client's public (SNAT) address.
        let s2c = tuple("198.51.100.20:21", "198.51.100.1:40000");
        let from_server = Segment::new(s2c, 1).payload(b"227 x\r\n").build();
        let server_key = GuardEntry::of_packets(&s2c, Dir::Reply);
        assert_eq!(guard_entries_of_packet(&from_server, control), [server_key]);
        // Behind port-translating DNAT the server's port is any: still its.
        assert_eq!(
            guard_entries_of_packet(&from_server, |p| p == 2121),
            [server_key]
        );
        // A data connection's SYN matches no guard entry.
        let data = tuple("198.51.100.1:40001", "192.0.2.20:30000");
        let data_syn = Segment::new(data, 1).syn().build();
        assert!(guard_entries_of_packet(&data_syn, control).is_empty());
        assert!(guard_entries_of_packet(b"not a packet", control).is_empty());
        let e = server_key.element();
        assert_eq!(
            (e.addr, e.port, e.addr2),
            (s2c.dst.ip(), 40000, Some(s2c.src.ip()))
        );
    }

    /// The client's and the server's direction of a connection from
    /// 192.0.2.10:40000 to port 21, the server's segments going to `to`.
    fn directions(to: &str) -> (QueuedDirection, QueuedDirection) {
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let s2c = tuple("198.51.100.20:21", to);
        (
            QueuedDirection::of(&c2s, Dir::Orig),
            QueuedDirection::of(&s2c, Dir::Reply),
        )
    }

    #[test]
    fn without_nat_the_shared_entry_stays_while_either_direction_needs_it() {
        let (client, server) = directions("192.0.2.10:40000");
        let entry = GuardEntry::of(&client);
        assert_eq!(GuardEntry::of(&server), entry, "one entry for both");
        assert_eq!(entry_after(&client, false, &server, true), (entry, true));
        assert_eq!(entry_after(&server, false, &client, true), (entry, true));
        assert_eq!(entry_after(&client, true, &server, false), (entry, true));
        assert_eq!(entry_after(&client, false, &server, false), (entry, false));
    }

    #[test]
    fn with_nat_each_direction_has_its_own_entry() {
        // SNAT: the server's segments go to the client's public address.
        let (client, server) = directions("198.51.100.1:40000");
        let (client_entry, server_entry) = (GuardEntry::of(&client), GuardEntry::of(&server));
        assert_ne!(client_entry, server_entry);
        assert_eq!(
            entry_after(&client, false, &server, true),
            (client_entry, false),
            "the server's needs keep only its own entry"
        );
        assert_eq!(
            entry_after(&server, true, &client, false),
            (server_entry, true)
        );
    }

    #[test]
    fn what_may_be_overtaken_is_what_the_rules_pass_unguarded() {
        let control = |p: u16| p == 21;
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let s2c = tuple("198.51.100.20:21", "192.0.2.10:40000");
        let seg = |t, p: &[u8]| Segment::new(t, 1).ack(1).payload(p).build();
        let passes = |ip: &[u8]| passes_unguarded(ip, control);
        assert!(passes(&seg(c2s, b"")), "an ACK");
        assert!(passes(&seg(c2s, b"NOOP\r\n")));
        assert!(passes(&seg(c2s, &b"NOOP\r\n".repeat(20))), "lines");
        assert!(passes(&seg(s2c, b"200 ok\r\n200 ok\r\n")));
        assert!(!passes(&seg(c2s, b"NOOP\r\nNO")), "ends inside a line");
        assert!(!passes(&seg(c2s, b"NOOP\r\nPORT 1,2,3,4,5,6\r\n")));
        assert!(!passes(&seg(c2s, b"PASV\r\n")), "noted, not passed");
        assert!(!passes(&seg(s2c, b"227 x\r\n")));
        assert!(!passes(&seg(s2c, b"211-Features\r\n")));
        let fin = Segment::new(c2s, 1)
            .ack(1)
            .fin()
            .payload(b"NOOP\r\n")
            .build();
        assert!(!passes(&fin), "a FIN has rules of its own");
        let syn = Segment::new(c2s, 1).syn().build();
        assert!(!passes(&syn));
        assert!(!passes(b"not a packet"));
    }
}
