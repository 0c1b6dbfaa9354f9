//! The kernel facts that keeping a session's fix-ups in conntrack rests
//! on, each checked on a live NAT gateway (three namespaces joined by veth:
//! conntrack skips sequence adjustment on loopback):
//! - a sequence adjustment set through ctnetlink on an entry a packet made
//!   is accepted and ignored (no seqadj extension without a kernel helper);
//! - the same entry re-created through ctnetlink (`Ctnetlink::adopt`) keeps
//!   its NAT and carries the connection on;
//! - on the re-created entry the kernel applies the adjustment to every
//!   packet: the client's segments move, the server's acknowledgements move
//!   back, the connection goes on;
//! - label bits can be set on an entry only while some rule uses labels
//!   (ftpct's rules have one): they are where ftpct keeps a session's
//!   pending expectation, and they survive the entry's re-creation.
//!
//! The adjustment used is -5 on every client segment (before = after):
//! the server then takes the first 5 bytes of the next segment for bytes it
//! already has, and its application reads the rest. What the server reads
//! proves whether the kernel shifted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use ftpct::netfilter::ctnetlink::{Ctnetlink, IPS_SRC_NAT};
use ftpct::netfilter::error::BadRequest;
use ftpct::netfilter::Error;
use ftpct_engine::command::SeqAdj;
use ftpct_engine::tuple::{Dir, Tuple};

mod root;
use root::kernel_tests_enabled;
use root::netns::{accept, connect_from, veth, Netns};

const CLIENT: &str = "192.0.2.10";
const PUBLIC: &str = "198.51.100.1";
const SERVER: &str = "198.51.100.20";

/// Client behind a MASQUERADE gateway, server outside.
struct Gateway {
    client: Netns,
    gw: Netns,
    server: Netns,
}

impl Gateway {
    fn new(tag: &str) -> Gateway {
        let g = Gateway {
            client: Netns::new(&format!("{tag}-c")),
            gw: Netns::new(&format!("{tag}-g")),
            server: Netns::new(&format!("{tag}-s")),
        };
        veth(
            &g.client,
            "c0",
            "192.0.2.10/24",
            &g.gw,
            "gin",
            "192.0.2.1/24",
        );
        veth(
            &g.gw,
            "gout",
            "198.51.100.1/24",
            &g.server,
            "s0",
            "198.51.100.20/24",
        );
        g.client
            .sh(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
        g.gw.sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        g.gw.sh(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "gout",
            "-j",
            "MASQUERADE",
        ]);
        g
    }

    /// A connection from the client to the server, through the NAT; its
    /// original tuple, both ends.
    fn connect(&self) -> (Tuple, TcpStream, TcpStream) {
        let server_at: SocketAddr = format!("{SERVER}:2121").parse().expect("addr");
        let listener = self
            .server
            .run(|| TcpListener::bind(server_at).expect("bind"));
        let client_at: SocketAddr = format!("{CLIENT}:0").parse().expect("addr");
        let client = self
            .client
            .run(|| connect_from(client_at, server_at).expect("connect"));
        let (server, _) = accept(&listener);
        let orig = Tuple::new(client.local_addr().expect("local"), server_at);
        (orig, client, server)
    }

    fn ctnetlink<T: Send>(&self, f: impl FnOnce(&mut Ctnetlink) -> T + Send) -> T {
        self.gw
            .run(|| f(&mut Ctnetlink::open().expect("ctnetlink")))
    }
}

/// Sends `data` from one end and returns what the other end's application
/// reads of it (at most `data.len()` bytes; less when the kernel dropped
/// the front as already received).
fn say(from: &mut TcpStream, to: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    from.write_all(data).expect("write");
    let mut got = vec![0u8; data.len()];
    let n = to.read(&mut got).expect("read");
    got.truncate(n);
    got
}

const MINUS_FIVE: SeqAdj = SeqAdj {
    correction_pos: 0,
    offset_before: -5,
    offset_after: -5,
};

#[test]
fn a_seqadj_update_on_a_packet_made_entry_is_ignored() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Gateway::new("sqa");
    let (orig, mut client, mut server) = lab.connect();
    let info = lab.ctnetlink(|ct| {
        ct.set_seqadj(&orig, Dir::Orig, &MINUS_FIVE)
            .expect("the update is accepted");
        ct.get_info(&orig, Dir::Orig).expect("get").expect("entry")
    });
    assert_eq!(info.seqadj, [None, None], "nothing was set");
    assert_eq!(say(&mut client, &mut server, b"0123456789"), b"0123456789");
}

#[test]
fn an_adopted_entry_keeps_its_nat_and_the_kernel_applies_its_seqadj() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Gateway::new("sqb");
    let (orig, mut client, mut server) = lab.connect();
    let (before, after) = lab.ctnetlink(|ct| {
        let before = ct.adopt(&orig, [None, None], None).expect("adopt");
        let after = ct.get_info(&orig, Dir::Orig).expect("get").expect("entry");
        (before, after)
    });
    assert_eq!(after.entry.reply, before.entry.reply, "same NAT mapping");
    assert_eq!(
        after.entry.reply.dst.ip().to_string(),
        PUBLIC,
        "the reply still goes to the gateway's address"
    );
    assert_ne!(after.status & IPS_SRC_NAT, 0);
    assert_eq!(after.tcp_state, before.tcp_state);
    // The connection goes on through the new entry, both ways.
    assert_eq!(say(&mut client, &mut server, b"hello"), b"hello");
    assert_eq!(say(&mut server, &mut client, b"ok"), b"ok");
    let set = lab.ctnetlink(|ct| {
        ct.set_seqadj(&orig, Dir::Orig, &MINUS_FIVE).expect("set");
        ct.get_info(&orig, Dir::Orig).expect("get").expect("entry")
    });
    assert_eq!(set.seqadj[0], Some(MINUS_FIVE));
    // Shifted by -5: the server's stack takes "01234" for bytes it has.
    assert_eq!(say(&mut client, &mut server, b"0123456789"), b"56789");
    // Its acknowledgements move back by 5: the client saw all it sent
    // acknowledged, and the connection carries on both ways.
    assert_eq!(say(&mut server, &mut client, b"ack"), b"ack");
    assert_eq!(say(&mut client, &mut server, b"abcdefghij"), b"abcdefghij");
}

#[test]
fn labels_need_a_rule_that_uses_them_and_survive_adoption() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Gateway::new("sqc");
    let mut mask = [0u8; 16];
    mask[8..].fill(0xff);
    let mut labels = [0u8; 16];
    labels[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let (orig, _c, _s) = lab.connect();
    let refused = lab.ctnetlink(|ct| ct.set_labels(&orig, &labels, &mask));
    assert!(
        matches!(
            refused,
            Err(Error::Kernel {
                errno: libc::ENOSPC,
                ..
            })
        ),
        "no rule uses labels yet: no room in the entry ({refused:?})"
    );
    lab.gw.sh(&[
        "iptables",
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-m",
        "connlabel",
        "--label",
        "127",
    ]);
    let (orig, _c, _s) = lab.connect();
    let kept = lab.ctnetlink(|ct| {
        ct.set_labels(&orig, &labels, &mask).expect("set labels");
        ct.adopt(&orig, [None, None], None).expect("adopt");
        ct.get_info(&orig, Dir::Orig).expect("get").expect("entry")
    });
    assert_eq!(kept.labels, Some(labels));
    // Bits given to the adoption replace those under their mask only.
    let mut more = [0u8; 16];
    more[15] = 0x80;
    let mut more_mask = [0u8; 16];
    more_mask[12..].fill(0xff);
    let merged = lab.ctnetlink(|ct| {
        ct.adopt(&orig, [None, None], Some((more, more_mask)))
            .expect("adopt");
        ct.get_info(&orig, Dir::Orig).expect("get").expect("entry")
    });
    let mut want = labels;
    want[15] = 0x80;
    assert_eq!(merged.labels, Some(want));
}

/// What ftpct does at a session's first rewrite: the entry of a running
/// connection made anew with its first correction point in the create
/// message. The kernel applies it from the next segment; an entry that has
/// one already is not made anew (its offsets would be lost).
#[test]
fn an_entry_made_anew_mid_connection_carries_its_first_correction_point() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Gateway::new("sqe");
    let (orig, mut client, mut server) = lab.connect();
    assert_eq!(say(&mut client, &mut server, b"hello"), b"hello");
    assert_eq!(say(&mut server, &mut client, b"ok"), b"ok");
    let after = lab.ctnetlink(|ct| {
        ct.adopt(&orig, [Some(MINUS_FIVE), None], None)
            .expect("adopt");
        ct.get_info(&orig, Dir::Orig).expect("get").expect("entry")
    });
    assert_eq!(after.seqadj, [Some(MINUS_FIVE), None]);
    assert_eq!(
        after.entry.reply.dst.ip().to_string(),
        PUBLIC,
        "same NAT mapping"
    );
    assert_eq!(say(&mut client, &mut server, b"0123456789"), b"56789");
    assert_eq!(say(&mut server, &mut client, b"ack"), b"ack");
    let again = lab.ctnetlink(|ct| ct.adopt(&orig, [Some(MINUS_FIVE), None], None));
    assert!(
        matches!(
            again,
            Err(Error::BadRequest(BadRequest::AlreadyAdjusted(t))) if t == orig
        ),
        "{again:?}"
    );
    assert_eq!(say(&mut client, &mut server, b"abcdefghij"), b"abcdefghij");
}

#[test]
fn a_deleted_entry_comes_as_a_destroy_event() {
    if !kernel_tests_enabled() {
        return;
    }
    use ftpct::netfilter::ct_events::DestroyEvents;
    let lab = Gateway::new("sqd");
    // Entries made while someone listens carry the event extension (the
    // kernel's default, nf_conntrack_events = 2): ftpct listens from its
    // start, before the sessions it tracks.
    let mut events = lab.gw.run(|| DestroyEvents::open().expect("events"));
    let (orig, _c, _s) = lab.connect();
    let gone = lab.gw.run(|| {
        Ctnetlink::open()
            .expect("ct")
            .delete(&orig)
            .expect("delete");
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(events.destroyed().expect("events").iter().map(|d| d.orig));
            if seen.contains(&orig) {
                break;
            }
        }
        seen
    });
    assert!(gone.contains(&orig), "{gone:?}");
}
