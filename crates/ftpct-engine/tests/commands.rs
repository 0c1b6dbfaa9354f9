//! The commands the engine gives the kernel, and the NAT question it asks:
//! what the live executor and the replay carry out.

use std::time::Duration;

use ftpct_engine::command::{Command, DataConnection, Mark, NatBinding, DATA_TIMEOUT};
use ftpct_engine::engine::{Answer, CommandOutcome, Config, ConntrackEvent, Input, Question};
use ftpct_engine::event::Event;
use ftpct_engine::kept::Kept;
use ftpct_engine::nat::CtMapping;
use ftpct_engine::nat::{NoNat, SnatRule, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_testkit::{addr, tuple, Control, Gateway, Segment};

const EXPECT: Duration = Duration::from_secs(300);

/// The live daemon's settings: kernel fix-ups, state kept in conntrack.
fn live() -> Config {
    Config {
        kernel_fixups: true,
        keep_state: true,
        ..Config::default()
    }
}

/// What an input gives, at the gateway's clock.
fn outcome_of(gw: &mut Gateway<StaticNat>, outcome: CommandOutcome) -> Vec<Command> {
    gw.input(Input::Outcome(outcome)).commands
}

/// A session taken up from its kept state (ftpct restarted).
fn resume(gw: &mut Gateway<StaticNat>, mapping: CtMapping, kept: Kept) -> Vec<Command> {
    let seqadj = [None, None];
    let picked_up = ConntrackEvent::Kept {
        mapping,
        seqadj,
        kept,
    };
    gw.input_at(Duration::ZERO, Input::Conntrack(picked_up))
        .commands
}

fn snat() -> StaticNat {
    let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    StaticNat::new(vec![rule], Vec::new())
}

/// A client behind SNAT, logged in far enough to announce.
fn session(cfg: Config) -> (Gateway<StaticNat>, Control) {
    let mut gw = Gateway::new(cfg, snat());
    let mut c = Control::snat_session();
    c.handshake(&mut gw);
    c.server_says(&mut gw, b"220 ready\r\n");
    (gw, c)
}

fn data_syn(port: u16) -> Segment<'static> {
    Segment::new(
        Tuple::new(
            addr("198.51.100.20:20"),
            addr(&format!("198.51.100.1:{port}")),
        ),
        77,
    )
    .syn()
}

#[test]
fn a_rewritten_port_expects_its_public_destination_and_turns_window_checks_off_once() {
    let (mut gw, mut c) = session(Config::default());
    let out = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert_eq!(
        out.commands,
        [
            Command::ExpectDst {
                dst: addr("198.51.100.1:40000"),
                timeout: EXPECT,
            },
            Command::SetLiberal { orig: c.c2s },
        ]
    );
    c.server_says(&mut gw, b"200 ok\r\n");
    let again = c.client_says(&mut gw, b"PORT 192,0,2,10,156,65\r\n");
    assert_eq!(
        again.commands,
        [Command::ExpectDst {
            dst: addr("198.51.100.1:40001"),
            timeout: EXPECT,
        }],
        "window checks are already off"
    );
}

#[test]
fn a_matched_data_syn_creates_its_entry_and_forgets_its_destination() {
    let mark: Mark = "0x10/0xf0".parse().expect("mark");
    let (mut gw, mut c) = session(Config {
        data_mark: Some(mark),
        ..Config::default()
    });
    c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    let out = gw.send(&data_syn(40000));
    let [Command::CreateRelated(r), Command::ForgetDst { dst }] = out.commands.as_slice() else {
        panic!("{:?}", out.commands);
    };
    assert_eq!(*dst, addr("198.51.100.1:40000"));
    assert_eq!(r.mark, Some(mark));
    assert_eq!(r.exp.master, c.c2s);
    assert_eq!(
        r.conn,
        DataConnection {
            tuple: data_syn(40000).tuple,
            master: c.c2s,
            // Follow-master, as the kernel's nf_nat_follow_master: the
            // source is the master's peer.
            nat_src: Some(NatBinding {
                addr: "198.51.100.20".parse().expect("ip"),
                port: None,
            }),
            nat_dst: Some(NatBinding {
                addr: "192.0.2.10".parse().expect("ip"),
                port: Some(40000),
            }),
            timeout_secs: DATA_TIMEOUT.as_secs() as u32,
            mark: None,
        }
    );
    assert_eq!(
        r.conn.translated(),
        tuple("198.51.100.20:20", "192.0.2.10:40000")
    );
    assert_eq!(r.with_master_mark(Some(0x0f)).mark, Some(0x1f));
    // A data connection the kernel could not make goes back, ipset entry too.
    assert_eq!(
        outcome_of(&mut gw, CommandOutcome::NotCreated(r.exp.clone())),
        [Command::ExpectDst {
            dst: *dst,
            timeout: EXPECT,
        }]
    );
    assert_eq!(gw.engine.pending_dsts(), [*dst]);
}

#[test]
fn an_expired_expectation_forgets_its_destination() {
    let (mut gw, mut c) = session(Config::default());
    c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    let effects = gw.input_at(gw.now + EXPECT + Duration::from_secs(2), Input::Timeout);
    assert_eq!(
        effects.commands,
        [Command::ForgetDst {
            dst: addr("198.51.100.1:40000")
        }]
    );
    assert!(gw.engine.pending_dsts().is_empty());
}

#[test]
fn an_unknown_connection_asks_for_its_mapping_and_asking_changes_nothing() {
    let mut gw = Gateway::new(Config::default(), NoNat);
    let c = Control::snat_session();
    let syn = c.syn(ftpct_testkit::Side::Client, &gw.engine).build();
    let Some(Question::Mapping(q)) = gw.ask(&syn) else {
        panic!("a new control connection needs its mapping");
    };
    assert_eq!((q.seen, q.first_syn, q.forget), (c.c2s, true, None));
    assert_eq!(gw.engine.stats().packets, 0, "nothing counted yet");
    assert_eq!(gw.engine.flow_count(), 0);
    assert_eq!(gw.answer(Answer::Mapping(None)), None, "an answer decides");
    gw.outcome();
    assert_eq!(gw.engine.flow_count(), 1);
    // Tracked now: its next packet needs no question.
    assert_eq!(gw.ask(&syn), None);
    // Not a control port: no question either.
    let other = Segment::new(tuple("192.0.2.10:40001", "198.51.100.20:80"), 5)
        .syn()
        .build();
    assert_eq!(gw.ask(&other), None);
}

/// With the kernel's fix-ups: the first rewrite asks for the entry to be
/// made anew, carrying its correction point and labels; rewrites set
/// correction points instead of shifting packets.
#[test]
fn with_kernel_fixups_rewrites_set_correction_points_and_packets_keep_their_numbers() {
    use ftpct_engine::command::SeqAdj;
    use ftpct_engine::policy::Refusal;
    use ftpct_engine::tuple::Dir;
    use ftpct_engine::wire::TcpPacket;
    use ftpct_engine::{event::Event, Verdict};

    let cfg = live();
    let mut gw = Gateway::new(cfg, snat());
    let mut c = Control::snat_session();
    let [syn, syn_ack, ack] = c.handshake(&mut gw);
    let adoptions = |cs: &[Command]| {
        cs.iter()
            .filter(|c| matches!(c, Command::AdoptControl(_)))
            .count()
    };
    for step in [&syn, &syn_ack, &ack] {
        assert_eq!(adoptions(&step.commands), 0, "not before a rewrite");
    }
    c.server_says(&mut gw, b"220 ready\r\n");
    // Client data starts at 1001: "PORT " is 5 bytes, the address at 1006.
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    let set = SeqAdj {
        correction_pos: 1006,
        offset_before: 0,
        offset_after: 2,
    };
    let Some(Command::AdoptControl(a)) = port
        .commands
        .iter()
        .find(|c| matches!(c, Command::AdoptControl(_)))
    else {
        panic!("the first rewrite asks: {:?}", port.commands);
    };
    assert_eq!((a.orig, a.seqadj), (c.c2s, [Some(set), None]));
    assert_eq!(
        a.kept.map(|k| (k.kernel_fixups, k.pending.is_some())),
        Some((true, true)),
        "the kept state rides in the new entry"
    );
    assert!(!port
        .commands
        .iter()
        .any(|c| matches!(c, Command::SetSeqAdj { .. } | Command::Keep { .. })));
    assert_eq!(
        outcome_of(&mut gw, CommandOutcome::Adopted { orig: c.c2s }),
        [],
        "nothing more to set"
    );
    assert!(!port
        .commands
        .iter()
        .any(|c| matches!(c, Command::SetLiberal { .. })));
    let Verdict::Replace(bytes) = &port.verdict else {
        panic!("rewritten");
    };
    let out = TcpPacket::parse(bytes).expect("tcp");
    assert_eq!(out.seq, 1001, "the kernel shifts, not ftpct");
    assert_eq!(out.payload(), b"PORT 198,51,100,1,156,64\r\n");
    // A second PORT before the first is acknowledged: one correction
    // point cannot place both, refused.
    let second = c.client_says(&mut gw, b"PORT 192,0,2,10,156,65\r\n");
    assert!(second.events.iter().any(|e| matches!(
        e,
        Event::Refused {
            refusal: Refusal::EditInFlight,
            ..
        }
    )));
    // The server acknowledges both (in the numbering it received): the
    // acknowledgement passes as it is, and the next PORT moves the point.
    let ack = c.server_says(&mut gw, b"200 ok\r\n200 ok\r\n");
    assert_eq!(ack.verdict, Verdict::Accept, "the kernel moves it back");
    let third = c.client_says(&mut gw, b"PORT 192,0,2,10,156,66\r\n");
    // Positions are the sender's: two 24-byte lines, then "PORT ".
    let pos = 1001 + 24 + 24 + 5;
    assert_eq!(
        third.commands.first(),
        Some(&Command::SetSeqAdj {
            orig: c.c2s,
            dir: Dir::Orig,
            adj: SeqAdj {
                correction_pos: pos,
                offset_before: 2,
                offset_after: 4,
            }
        })
    );
}

/// Labels keep the session's state; a fresh engine takes it up from them.
#[test]
fn labels_keep_the_pending_expectation_and_a_new_engine_resumes_from_them() {
    let cfg = live();
    let (mut gw, mut c) = session(cfg.clone());
    let commands = outcome_of(&mut gw, CommandOutcome::Adopted { orig: c.c2s });
    let Some(Command::Keep { kept, .. }) = commands.first() else {
        panic!("adoption is kept: {commands:?}");
    };
    assert_eq!((kept.kernel_fixups, kept.pending.is_none()), (true, true));
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    let Some(Command::Keep { kept, .. }) = port
        .commands
        .iter()
        .find(|c| matches!(c, Command::Keep { .. }))
        .cloned()
    else {
        panic!("the expectation is kept: {:?}", port.commands);
    };
    // ftpct restarts: a new engine, the entry's mapping and labels.
    let mapping = CtMapping {
        orig: c.c2s,
        reply: c.s2c,
    };
    let mut fresh = Gateway::new(cfg, snat());
    let resumed = resume(&mut fresh, mapping, kept);
    assert_eq!(
        resumed,
        [Command::ExpectDst {
            dst: addr("198.51.100.1:40000"),
            timeout: EXPECT,
        }]
    );
    // The server's data SYN finds the expectation, NAT as before.
    let out = fresh.send(&data_syn(40000));
    let Some(Command::CreateRelated(r)) = out.commands.first() else {
        panic!("matched: {:?}", out.commands);
    };
    assert_eq!(
        r.conn.translated(),
        tuple("198.51.100.20:20", "192.0.2.10:40000")
    );
    let cleared = out.commands.iter().find_map(|c| match c {
        Command::Keep { kept, .. } => Some(*kept),
        _ => None,
    });
    assert_eq!(
        cleared.map(|k| k.pending),
        Some(None),
        "matched: no longer pending"
    );
}

/// A line split over two segments: its edit lies in the held first part,
/// which leaves in front of the second; the correction point covers it.
#[test]
fn with_kernel_fixups_an_edit_in_a_held_line_head_gets_its_correction_point() {
    use ftpct_engine::command::SeqAdj;
    use ftpct_engine::tuple::Dir;

    let cfg = live();
    let (mut gw, mut c) = session(cfg);
    outcome_of(&mut gw, CommandOutcome::Adopted { orig: c.c2s });
    c.client_says(&mut gw, b"PORT 192,0,2");
    let rest = c.client_says(&mut gw, b",10,156,64\r\n");
    assert!(
        rest.commands.contains(&Command::SetSeqAdj {
            orig: c.c2s,
            dir: Dir::Orig,
            adj: SeqAdj {
                correction_pos: 1006,
                offset_before: 0,
                offset_after: 2,
            }
        }),
        "{:?}",
        rest.commands
    );
}

/// Conntrack destroyed the entry: the flow goes, and its expectations'
/// ipset entries with it.
#[test]
fn a_destroyed_conntrack_entry_forgets_its_flow_and_expectations() {
    let (mut gw, mut c) = session(Config::default());
    c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(gw.engine.tracks(&c.c2s));
    assert!(!gw.engine.tracks(&c.s2c), "by its original tuple only");
    let flow = gw.engine.flow_of(&c.c2s).expect("tracked");
    let destroyed = |flow| Input::Conntrack(ConntrackEvent::Destroyed { orig: c.c2s, flow });
    let other = gw.input(destroyed(flow + 1));
    assert!(
        other.events.is_empty(),
        "another flow of the tuple is not touched"
    );
    let effects = gw.input(destroyed(flow));
    assert!(effects.events.contains(&Event::FlowClosed { flow: c.c2s }));
    assert_eq!(
        effects.commands,
        [Command::ForgetDst {
            dst: addr("198.51.100.1:40000")
        }]
    );
    assert_eq!(
        (gw.engine.flow_count(), gw.engine.expectation_count()),
        (0, 0)
    );
    assert!(gw.input(destroyed(flow)).events.is_empty(), "already gone");
}

/// A resumed session is past its greeting: a PASV's 227 is its answer.
#[test]
fn a_resumed_session_answers_its_next_pasv() {
    use ftpct_engine::kept::{Kept, PendingKept};
    use ftpct_engine::nat::{CtMapping, DnatRule};
    use ftpct_engine::Verdict;

    let rule: DnatRule = "198.51.100.1=192.0.2.20".parse().expect("rule");
    let cfg = live();
    let mut gw = Gateway::new(cfg, StaticNat::new(Vec::new(), vec![rule]));
    let mapping = CtMapping {
        orig: tuple("198.51.100.10:40000", "198.51.100.1:21"),
        reply: tuple("192.0.2.20:21", "198.51.100.10:40000"),
    };
    let kept = Kept {
        kernel_fixups: true,
        pending: None::<PendingKept>,
        own_shift: [0, 0],
    };
    resume(&mut gw, mapping, kept);
    let mut c = Control::new(mapping.orig, mapping.reply, 5000, 8000);
    c.client.next = 5100;
    c.server.next = 8100;
    c.client_says(&mut gw, b"PASV\r\n");
    let reply = c.server_says(
        &mut gw,
        b"227 Entering Passive Mode (192,0,2,20,195,80).\r\n",
    );
    assert!(
        matches!(reply.verdict, Verdict::Replace(_)),
        "{:?}",
        reply.events
    );
}

/// A session the kernel could not take keeps ftpct's own fix-ups; its
/// labels keep how far each direction moved, and a restarted ftpct goes on
/// shifting it.
#[test]
fn own_fixups_are_kept_in_labels_and_a_new_engine_goes_on_with_them() {
    use ftpct_engine::wire::TcpPacket;
    use ftpct_engine::Verdict;

    let cfg = live();
    let (mut gw, mut c) = session(cfg.clone());
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(port
        .commands
        .iter()
        .any(|c| matches!(c, Command::AdoptControl(_))));
    // The entry could not be re-created: ftpct keeps the fix-ups.
    let own = outcome_of(&mut gw, CommandOutcome::NotAdopted { orig: c.c2s });
    assert!(
        own.contains(&Command::SetLiberal { orig: c.c2s }),
        "{own:?}"
    );
    let kept = own
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Keep { kept, .. } => Some(*kept),
            _ => None,
        })
        .expect("kept state set");
    assert_eq!((kept.kernel_fixups, kept.own_shift), (false, [2, 0]));
    let mapping = CtMapping {
        orig: c.c2s,
        reply: c.s2c,
    };
    let mut fresh = Gateway::new(cfg, snat());
    resume(&mut fresh, mapping, kept);
    // The client's next command, in its own numbering, leaves 2 further.
    let seq = c.client.next;
    let noop = Segment::new(c.c2s, seq)
        .ack(c.server.next)
        .payload(b"NOOP\r\n");
    let out = fresh.send(&noop);
    let Verdict::Replace(bytes) = &out.verdict else {
        panic!("shifted: {:?}", out.verdict);
    };
    assert_eq!(
        TcpPacket::parse(bytes).expect("tcp").seq,
        seq.wrapping_add(2)
    );
}

/// Where a packet came from is a fact the driver tells: a connection this
/// host opened is reported as local, one from a network as forwarded.
#[test]
fn a_control_connection_from_this_host_is_local() {
    use ftpct_engine::engine::Origin;
    let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
    for (origin, local) in [(Origin::Network, false), (Origin::ThisHost, true)] {
        let mut gw = Gateway::new(Config::default(), snat());
        gw.origin = origin;
        let out = gw.send(&Segment::new(c2s, 1).syn());
        let new = out.events.iter().find_map(|e| match e {
            Event::FlowNew { local, .. } => Some(*local),
            _ => None,
        });
        assert_eq!(new, Some(local), "{origin:?}: {:?}", out.events);
    }
}
