//! A simulated FTP control connection: a client and a server talking
//! through a [`Gateway`].

use ftpct_engine::engine::{Engine, Outcome};
use ftpct_engine::nat::NatLookup;
use ftpct_engine::tuple::Tuple;

use crate::gateway::Gateway;
use crate::packet::Segment;

/// One end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// What one end has sent, in its own numbering (before the gateway's
/// edits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The sequence number of its SYN.
    pub isn: u32,
    /// The sequence number of its next byte.
    pub next: u32,
}

impl Peer {
    /// An end whose SYN is at `isn` (its first byte after it).
    pub fn new(isn: u32) -> Self {
        Peer {
            isn,
            next: isn.wrapping_add(1),
        }
    }

    /// `n` more bytes sent.
    pub fn advance(&mut self, n: usize) {
        self.next = self.next.wrapping_add(n as u32);
    }
}

/// A simulated FTP control connection: a client and a server, each with
/// its own sequence numbers, whose segments go through a [`Gateway`].
/// Every segment but the client's SYN acknowledges all that the other end
/// sent, as it reached the sender after the engine's edits
/// ([`Engine::acknowledged_by`]). Several connections can share one
/// gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The client's packets as the gateway sees them.
    pub c2s: Tuple,
    /// The server's packets as the gateway sees them (to the client's
    /// public address when the client is SNATed).
    pub s2c: Tuple,
    pub client: Peer,
    pub server: Peer,
    /// The MSS both ends announce in their SYNs; none by default.
    pub mss: Option<u16>,
    /// Whether every segment carries TCP timestamps, as Linux sends them
    /// (value: the segment's sequence number, echo: 1); off by default.
    pub timestamps: bool,
}

impl Control {
    pub fn new(c2s: Tuple, s2c: Tuple, client_isn: u32, server_isn: u32) -> Self {
        Control {
            c2s,
            s2c,
            client: Peer::new(client_isn),
            server: Peer::new(server_isn),
            mss: None,
            timestamps: false,
        }
    }

    /// Both ends announce `mss` in their SYNs.
    /// The tests' usual session: client 192.0.2.10:40000 behind SNAT to
    /// 198.51.100.1, server 198.51.100.20:21, ISNs 1000 and 9000.
    pub fn snat_session() -> Self {
        Control::new(
            crate::packet::tuple("192.0.2.10:40000", "198.51.100.20:21"),
            crate::packet::tuple("198.51.100.20:21", "198.51.100.1:40000"),
            1000,
            9000,
        )
    }

    pub fn with_mss(self, mss: u16) -> Self {
        Control {
            mss: Some(mss),
            ..self
        }
    }

    /// Every segment carries TCP timestamps.
    pub fn with_timestamps(self) -> Self {
        Control {
            timestamps: true,
            ..self
        }
    }

    /// The tuple of `side`'s packets as the gateway sees them.
    pub fn tuple(&self, side: Side) -> Tuple {
        match side {
            Side::Client => self.c2s,
            Side::Server => self.s2c,
        }
    }

    pub fn peer(&self, side: Side) -> &Peer {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    pub fn peer_mut(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// The acknowledgement number `side` sends: all that the other end
    /// sent, as it reached `side` after the engine's edits.
    pub fn acknowledges(&self, side: Side, engine: &Engine) -> u32 {
        engine.acknowledged_by(&self.tuple(side), self.peer(side.other()).next)
    }

    /// The client's SYN (no ACK) or the server's SYN-ACK, at its ISN.
    pub fn syn(&self, side: Side, engine: &Engine) -> Segment<'static> {
        let seg = Segment {
            syn: true,
            mss: self.mss,
            ..self.at(side, self.peer(side).isn)
        };
        match side {
            Side::Client => seg,
            Side::Server => seg.ack(self.acknowledges(side, engine)),
        }
    }

    /// `side`'s next segment, without payload: at its next sequence
    /// number, acknowledging what it received. Not sent, nothing counted.
    pub fn segment(&self, side: Side, engine: &Engine) -> Segment<'static> {
        self.at(side, self.peer(side).next)
            .ack(self.acknowledges(side, engine))
    }

    fn at(&self, side: Side, seq: u32) -> Segment<'static> {
        Segment {
            timestamps: self.timestamps.then_some((seq, 1)),
            ..Segment::new(self.tuple(side), seq)
        }
    }

    /// The three-way handshake: SYN, SYN-ACK, ACK.
    pub fn handshake<N: NatLookup>(&mut self, gw: &mut Gateway<N>) -> [Outcome; 3] {
        let syn = self.syn(Side::Client, &gw.engine);
        let syn = gw.send(&syn);
        let syn_ack = self.syn(Side::Server, &gw.engine);
        let syn_ack = gw.send(&syn_ack);
        let ack = self.says(gw, Side::Client, b"");
        [syn, syn_ack, ack]
    }

    /// The handshake, a greeting and a login framed with CR LF: seen, or
    /// under selective queueing passed unseen, as plain lines do.
    pub fn logs_in<N: NatLookup>(&mut self, gw: &mut Gateway<N>, selective: bool) {
        self.handshake(gw);
        for (side, line) in [
            (Side::Server, &b"220 ready\r\n"[..]),
            (Side::Client, b"USER anonymous\r\n"),
            (Side::Server, b"230 in\r\n"),
        ] {
            if selective {
                self.passed_unseen(side, line);
            } else {
                self.says(gw, side, line);
            }
        }
    }

    /// `side` sends `bytes` (a line, several, part of one, or nothing) as
    /// its next segment. They count as sent whatever the engine decides.
    pub fn says<N: NatLookup>(&mut self, gw: &mut Gateway<N>, side: Side, bytes: &[u8]) -> Outcome {
        let seg = self.segment(side, &gw.engine).payload(bytes);
        let out = gw.send(&seg);
        self.peer_mut(side).advance(bytes.len());
        out
    }

    pub fn client_says<N: NatLookup>(&mut self, gw: &mut Gateway<N>, bytes: &[u8]) -> Outcome {
        self.says(gw, Side::Client, bytes)
    }

    pub fn server_says<N: NatLookup>(&mut self, gw: &mut Gateway<N>, bytes: &[u8]) -> Outcome {
        self.says(gw, Side::Server, bytes)
    }

    /// `side` sent `bytes` that crossed the gateway without reaching the
    /// engine (a queue overflow with fail-open): the other end has them.
    pub fn passed_unseen(&mut self, side: Side, bytes: &[u8]) {
        self.peer_mut(side).advance(bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tuple;
    use ftpct_engine::engine::{Config, Verdict};
    use ftpct_engine::nat::StaticNat;
    use ftpct_engine::wire::TcpPacket;

    #[test]
    fn acknowledgements_follow_the_engines_edits() {
        let nat = StaticNat::new(
            vec!["192.0.2.0/24=198.51.100.1".parse().expect("rule")],
            vec![],
        );
        let mut gw = Gateway::new(Config::default(), nat);
        let mut c = Control::new(
            tuple("192.0.2.10:40000", "198.51.100.20:21"),
            tuple("198.51.100.20:21", "198.51.100.1:40000"),
            u32::MAX - 3,
            5000,
        )
        .with_mss(1460)
        .with_timestamps();
        for out in c.handshake(&mut gw) {
            assert!(!matches!(out.verdict, Verdict::Drop));
        }
        c.server_says(&mut gw, b"220 ready\r\n");
        let port = b"PORT 192,0,2,10,156,64\r\n";
        let out = c.client_says(&mut gw, port);
        assert!(matches!(out.verdict, Verdict::Replace(_)), "rewritten");
        assert_eq!(
            c.client.next,
            (u32::MAX - 2).wrapping_add(port.len() as u32)
        );
        // "198,51,100,1" is two bytes longer than "192,0,2,10".
        let seg = c.segment(Side::Server, &gw.engine);
        assert_eq!(seg.ack, Some(c.client.next.wrapping_add(2)));
        assert_eq!(seg.timestamps, Some((seg.seq, 1)));
        let out = gw.send(&seg);
        let Verdict::Replace(bytes) = out.verdict else {
            panic!("the acknowledgement is mapped back: {:?}", out.verdict);
        };
        assert_eq!(TcpPacket::parse(&bytes).expect("parses").ack, c.client.next);
    }
}
