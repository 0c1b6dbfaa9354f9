//! The kernel's selective queueing (the raw-table rules of `ftpct rules`),
//! emulated for the replay: which control segments the rules queue, and
//! the guard set that the rules' SET target fills and the engine's
//! `Guard` commands empty. A segment the rules would not queue passes the
//! gateway as it is, unseen by the engine. Offline the queue is empty after
//! every verdict, so a release takes effect at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use ftpct_engine::command::{Command, QueuedDirection};
use ftpct_engine::tuple::Dir;
use ftpct_engine::wire::TcpPacket;

use crate::netfilter::guard_entries::{entry_after, GuardEntry};
use ftpct_engine::classifier::{classify, Selection as Fate, Side};

use crate::netfilter::sets::UNSEEN_BUDGET;

/// What the rules do with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queueing {
    Queued,
    /// It passes unqueued.
    Passes,
    /// It passes unqueued, its session noted in the passive set (a PASV
    /// or EPSV), under this entry.
    Noted(GuardEntry),
}

pub struct Selection {
    control_ports: Vec<u16>,
    guarded: HashSet<GuardEntry>,
    /// The passive set: sessions with a PASV or EPSV let pass unqueued.
    passive: HashSet<GuardEntry>,
    /// The client set: whoever sent to a control port (its timeout is not
    /// emulated). A segment to one is a server's, whatever its port.
    clients: HashSet<SocketAddr>,
    /// The unseen sets' counts (their timeout is not emulated): bytes of
    /// a direction's packets since it was added or recounted.
    unseen: HashMap<GuardEntry, u64>,
}

impl Selection {
    pub fn new(control_ports: &[u16]) -> Self {
        Selection {
            control_ports: control_ports.to_vec(),
            guarded: HashSet::new(),
            passive: HashSet::new(),
            clients: HashSet::new(),
            unseen: HashMap::new(),
        }
    }

    /// Whether the rules queue the packet `ip` (as it reaches the raw
    /// table); a selected segment's direction is guarded from then on, a
    /// passive request noted here.
    pub fn queues(&mut self, ip: &[u8], pkt: &TcpPacket<'_>) -> bool {
        match self.fate(ip, pkt) {
            Queueing::Queued => true,
            Queueing::Passes => false,
            Queueing::Noted(key) => {
                self.passive.insert(key);
                false
            }
        }
    }

    /// What the rules do with the packet `ip`; a passive request's note is
    /// the caller's to keep (the passive set).
    pub fn fate(&mut self, ip: &[u8], pkt: &TcpPacket<'_>) -> Queueing {
        let to_control = self.control_ports.contains(&pkt.tuple.dst.port());
        if to_control {
            self.clients.insert(pkt.tuple.src);
        }
        let from_control = !to_control
            && (self.control_ports.contains(&pkt.tuple.src.port())
                || self.clients.contains(&pkt.tuple.dst));
        // Handshakes and resets have their own rules (budgets are not
        // emulated); other ports are not this emulation's business (the
        // engine lets them pass). A client's FIN goes on through the rules
        // (see [`Self::ends_session`]).
        let own_rule = pkt.flags.syn || pkt.flags.rst;
        if !(to_control || from_control) || own_rule {
            return Queueing::Queued;
        }
        let dir = if to_control { Dir::Orig } else { Dir::Reply };
        let key = GuardEntry::of_packets(&pkt.tuple, dir);
        let len = ip.len() as u64;
        // The budget rule's match counts the packet, then compares.
        if let Some(count) = self.unseen.get_mut(&key) {
            *count += len;
            if *count > UNSEEN_BUDGET {
                self.guarded.insert(key);
            }
        }
        if self.guarded.contains(&key) {
            return Queueing::Queued;
        }
        // The counting rule adds an element missing, with this packet.
        self.unseen.entry(key).or_insert(len);
        let side = if to_control {
            Side::Client
        } else {
            Side::Server
        };
        match classify(ip, side) {
            Fate::Passes => Queueing::Passes,
            Fate::Noted => Queueing::Noted(key),
            Fate::Crosses(_) => {
                self.guarded.insert(key);
                Queueing::Queued
            }
        }
    }

    /// Whether the FIN rule puts the packet's session in the FIN set: a
    /// client's FIN, queued or not (ftpct reads the set and ends the
    /// session; conntrack's window check, which it asks first, is not
    /// emulated).
    pub fn ends_session(&self, pkt: &TcpPacket<'_>) -> bool {
        pkt.flags.fin && self.control_ports.contains(&pkt.tuple.dst.port())
    }

    /// Takes the note of a passive request the client of `client` sent;
    /// true if there was one.
    pub fn take_passive_note(&mut self, client: &QueuedDirection) -> bool {
        self.passive.remove(&GuardEntry::of(client))
    }

    /// Carries out the engine's guard commands.
    pub fn follow(&mut self, commands: &[Command]) {
        for c in commands {
            match c {
                Command::Guard {
                    direction,
                    needed,
                    other,
                    other_needed,
                } => {
                    if let (entry, false) = entry_after(direction, *needed, other, *other_needed) {
                        self.guarded.remove(&entry);
                    }
                }
                Command::Unguard { direction } => {
                    self.guarded.remove(&GuardEntry::of(direction));
                }
                Command::GuardOn { direction } | Command::GuardAlways { direction } => {
                    self.guarded.insert(GuardEntry::of(direction));
                }
                // Without NAT both directions are one element.
                Command::RecountUnseen { directions } => {
                    for direction in directions {
                        self.unseen.insert(GuardEntry::of(direction), 0);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_testkit::{tuple, Segment};

    fn shown(sel: &mut Selection, seg: Segment<'_>) -> bool {
        let ip = seg.build();
        let pkt = TcpPacket::parse(&ip).expect("tcp");
        sel.queues(&ip, &pkt)
    }

    #[test]
    fn the_shapes_the_rules_queue() {
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let s2c = tuple("198.51.100.20:21", "192.0.2.10:40000");
        let mut sel = Selection::new(&[21]);
        let seg = |t, p: &'static [u8]| Segment::new(t, 1).ack(1).payload(p);
        assert!(!shown(&mut sel, seg(c2s, b"NOOP\r\n")));
        assert!(
            !shown(&mut sel, seg(s2c, b"200 PORT ok\r\n")),
            "PORT in a reply"
        );
        assert!(shown(&mut sel, seg(c2s, b"noop\r\nepsv\r\n")));
        // Guarded now: anything of that direction, until released.
        assert!(shown(&mut sel, seg(c2s, b"NOOP\r\n")));
        sel.follow(&[Command::Guard {
            direction: QueuedDirection::of(&c2s, Dir::Orig),
            needed: false,
            other: QueuedDirection::of(&s2c, Dir::Reply),
            other_needed: false,
        }]);
        assert!(!shown(&mut sel, seg(c2s, b"NOOP\r\n")));
        assert!(shown(&mut sel, seg(c2s, b"NO")), "ends inside a line");
        assert!(shown(&mut sel, seg(s2c, b"213-status\r\n")));
        assert!(
            shown(&mut sel, Segment::new(c2s, 3).ack(1)),
            "a bare ACK of a guarded direction"
        );
    }

    /// Plain lines pass unqueued until their direction's count goes over
    /// the budget; that segment is queued, and its direction until ftpct
    /// releases it and asks for a recount.
    #[test]
    fn a_direction_over_its_unseen_budget_is_queued_until_recounted() {
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let client = QueuedDirection::of(&c2s, Dir::Orig);
        // Without NAT: one element for both directions.
        let server = QueuedDirection::of(&c2s.reversed(), Dir::Reply);
        let mut sel = Selection::new(&[21]);
        let line = Segment::new(c2s, 1).ack(1).payload(b"SIZE some/file\r\n");
        let len = line.build().len() as u64;
        let under = UNSEEN_BUDGET / len;
        for _ in 0..under {
            assert!(!shown(&mut sel, line));
        }
        assert!(shown(&mut sel, line), "over the budget");
        assert!(shown(&mut sel, line), "guarded");
        sel.follow(&[
            Command::Guard {
                direction: client,
                needed: false,
                other: server,
                other_needed: false,
            },
            Command::RecountUnseen {
                directions: [client, server],
            },
        ]);
        assert!(!shown(&mut sel, line), "counted afresh");
    }

    /// Port-translating DNAT: the server answers from 2121; its segments
    /// to a client that sent to port 21 are selected as from port 21.
    #[test]
    fn a_server_on_a_translated_port_is_selected_by_its_client() {
        let c2s = tuple("203.0.113.5:40000", "198.51.100.1:21");
        let s2c = tuple("192.0.2.20:2121", "203.0.113.5:40000");
        let other = tuple("192.0.2.20:2121", "203.0.113.5:40001");
        let seg = |t, p: &'static [u8]| Segment::new(t, 1).ack(1).payload(p);
        let mut sel = Selection::new(&[21]);
        assert!(!shown(&mut sel, seg(c2s, b"NOOP\r\n")));
        assert!(!shown(&mut sel, seg(s2c, b"200 ok\r\n")));
        assert!(shown(&mut sel, seg(s2c, b"227 x\r\n")));
        assert!(
            shown(&mut sel, seg(other, b"227 x\r\n")),
            "not this emulation's business (passes to the engine)"
        );
    }

    /// A line ends only at CR LF: a segment ending in a bare LF (a server
    /// echoing a client's), a CR or a lone LF ends inside a line, is
    /// queued, and its direction stays guarded for what follows.
    #[test]
    fn a_segment_ends_a_line_only_with_cr_lf() {
        let s2c = tuple("198.51.100.20:21", "192.0.2.10:40000");
        let seg = |p: &'static [u8]| Segment::new(s2c, 1).ack(1).payload(p);
        for open in [&b"550 /x\n"[..], b"\n", b"550 /x\r", b"550 /x\n\r"] {
            let mut sel = Selection::new(&[21]);
            assert!(
                shown(&mut sel, seg(open)),
                "{:?}",
                String::from_utf8_lossy(open)
            );
            assert!(shown(&mut sel, seg(b"200 ok\r\n")), "the rest of the line");
        }
        let mut sel = Selection::new(&[21]);
        assert!(!shown(&mut sel, seg(b"550 /x\r\n")));
        assert!(!shown(&mut sel, seg(b"200 ok\r\n")));
    }

    /// IPv4 options and TCP headers of every length are read where they
    /// put the payload, as the programs read them; IPv6 extension headers
    /// are queued whatever the segment holds, an ACK too, as the kernel's
    /// selector of open lines picks them.
    #[test]
    fn every_header_shape_is_read_or_queued() {
        use ftpct_testkit::{Ipv6Ext, Shape};
        let v4 = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let v6 = tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21");
        let mut readable = Vec::new();
        for tcp_header in [20, 32, 40, 60] {
            let options = Shape {
                ipv4_options: 8,
                ..Shape::tcp(tcp_header)
            };
            readable.extend([(v4, Shape::tcp(tcp_header)), (v4, options)]);
            readable.push((v6, Shape::tcp(tcp_header)));
        }
        let behind = |ipv6_ext, tcp_header| Shape {
            ipv6_ext,
            ..Shape::tcp(tcp_header)
        };
        let unreadable = [
            (v6, behind(&[Ipv6Ext::HopByHop], 32)),
            (v6, behind(&[Ipv6Ext::DestinationOptions], 20)),
            (v6, behind(&[Ipv6Ext::Routing], 40)),
        ];
        let check = |(t, shape): (ftpct_engine::tuple::Tuple, Shape), payload: &[u8], queued| {
            let ip = shape.build(Segment::new(t, 0x8000_0001).ack(1).payload(payload));
            let pkt = TcpPacket::parse(&ip).expect("tcp");
            let mut sel = Selection::new(&[21]);
            let what = String::from_utf8_lossy(payload);
            assert_eq!(sel.queues(&ip, &pkt), queued, "{shape:?} {what:?}");
        };
        for case in readable {
            check(case, b"NOOP\r\n", false);
            check(case, b"", false);
            check(case, b"PORT 192,0,2,10,156,64\r\n", true);
            check(case, b"NOOP", true);
            check(case, b"NOOP\n", true);
        }
        for case in unreadable {
            for payload in [&b"NOOP\r\n"[..], b"", b"PORT 1,2\r\n", b"NOOP"] {
                check(case, payload, true);
            }
        }
    }
}
