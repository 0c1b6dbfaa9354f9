//! Selective queueing: the kernel queues only the segments that can hold
//! part of an announcement, and the continuations of lines (the guard
//! ipset). The engine follows a session from those alone and says, after
//! each packet, whether it still needs every segment of its direction.

use ftpct_engine::command::{Command, QueuedDirection};
use ftpct_engine::engine::{
    Answer, CommandOutcome, Config, ConntrackEvent, Input, KernelNote, Question,
};
use ftpct_engine::event::Event;
use ftpct_engine::nat::{SnatRule, StaticNat};
use ftpct_engine::policy::Refusal;
use ftpct_engine::stream::DropReason;
use ftpct_engine::tuple::Dir;
use ftpct_engine::{Outcome, Verdict};
use ftpct_testkit::{tuple, Control, Gateway, Side};

fn selective(kernel_fixups: bool) -> Config {
    Config {
        kernel_fixups,
        keep_state: true,
        selective: true,
        ..Config::default()
    }
}

/// A client behind SNAT past its handshake; its greeting and login passed
/// unseen (they hold nothing the kernel queues).
fn session(cfg: Config) -> (Gateway<StaticNat>, Control) {
    let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    let mut gw = Gateway::new(cfg, StaticNat::new(vec![rule], Vec::new()));
    let mut c = Control::snat_session();
    c.handshake(&mut gw);
    c.passed_unseen(Side::Server, b"220 ready\r\n");
    c.passed_unseen(Side::Client, b"USER anonymous\r\n");
    c.passed_unseen(Side::Server, b"331 password\r\n");
    c.passed_unseen(Side::Client, b"PASS x\r\n");
    c.passed_unseen(Side::Server, b"230 in\r\n");
    (gw, c)
}

fn client_key() -> QueuedDirection {
    QueuedDirection::of(&tuple("192.0.2.10:40000", "198.51.100.20:21"), Dir::Orig)
}

/// The server's packets go to the client's public address and port.
fn server_key() -> QueuedDirection {
    QueuedDirection::of(&tuple("198.51.100.20:21", "198.51.100.1:40000"), Dir::Reply)
}

/// Whether the engine still needs every segment of `key`, as it says after
/// a packet of that direction.
fn guard(out: &Outcome, key: QueuedDirection) -> Option<bool> {
    out.commands.iter().find_map(|c| match c {
        Command::Guard {
            direction, needed, ..
        } if *direction == key => Some(*needed),
        _ => None,
    })
}

fn resynced(out: &Outcome) -> bool {
    out.events
        .iter()
        .any(|e| matches!(e, Event::Resynced { .. }))
}

fn refused(out: &Outcome, refusal: Refusal) -> bool {
    out.events
        .iter()
        .any(|e| matches!(e, Event::Refused { refusal: r, .. } if *r == refusal))
}

fn expects(out: &Outcome) -> bool {
    out.commands
        .iter()
        .any(|c| matches!(c, Command::ExpectDst { .. }))
}

#[test]
fn announcements_after_unseen_lines_are_followed_and_the_server_reply_is_queued_for_its_ack() {
    let (mut gw, mut c) = session(selective(true));
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(!resynced(&port), "unseen lines before it are no loss");
    let Verdict::Replace(_) = port.verdict else {
        panic!("rewritten: {port:?}");
    };
    assert!(expects(&port));
    assert_eq!(
        guard(&port, client_key()),
        Some(false),
        "the line is complete"
    );
    let at = |what: fn(&Command) -> bool| port.commands.iter().position(what);
    let guard_on =
        at(|c| matches!(c, Command::GuardOn { direction } if *direction == server_key()));
    let adoption = at(|c| matches!(c, Command::AdoptControl(_)));
    assert!(
        guard_on.is_some(),
        "the reply that acknowledges the edit must be seen"
    );
    assert!(
        guard_on < adoption,
        "the server's direction is queued before its entry is made anew: {:?}",
        port.commands
    );
    let Some(Command::AdoptControl(a)) = adoption.map(|i| &port.commands[i]) else {
        panic!(
            "the first rewrite hands the fix-ups over: {:?}",
            port.commands
        );
    };
    assert_eq!(a.directions, [client_key(), server_key()]);
    let ok = c.server_says(&mut gw, b"200 ok\r\n");
    assert_eq!(guard(&ok, server_key()), Some(false), "acknowledged");
    c.passed_unseen(Side::Client, b"RETR f\r\n");
    c.passed_unseen(Side::Server, b"150 go\r\n226 done\r\n");
    let again = c.client_says(&mut gw, b"PORT 192,0,2,10,156,65\r\n");
    assert!(!refused(&again, Refusal::EditInFlight), "{again:?}");
    assert!(matches!(again.verdict, Verdict::Replace(_)));
}

/// Why the server's 200 after a rewritten PORT crosses (issue 24 asked
/// whether it could pass): it carries the only acknowledgement of the
/// edit ftpct sees, and the kernel's one correction point per direction
/// takes a second edit only once the first is acknowledged. Unseen, the
/// session's next PORT is refused and leaves unrewritten.
#[test]
fn without_the_200_that_acknowledges_a_port_the_next_port_is_refused() {
    let (mut gw, mut c) = session(selective(true));
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(port.verdict, Verdict::Replace(_)));
    c.passed_unseen(Side::Server, b"200 ok\r\n");
    c.passed_unseen(Side::Client, b"RETR f\r\n");
    c.passed_unseen(Side::Server, b"150 go\r\n226 done\r\n");
    let again = c.client_says(&mut gw, b"PORT 192,0,2,10,156,65\r\n");
    assert!(refused(&again, Refusal::EditInFlight), "{again:?}");
    assert_eq!(again.verdict, Verdict::Accept, "left as the client sent it");
}

#[test]
fn a_split_line_keeps_its_direction_queued_until_it_ends() {
    let (mut gw, mut c) = session(selective(true));
    let head = c.client_says(&mut gw, b"PO");
    assert_eq!(guard(&head, client_key()), Some(true));
    let tail = c.client_says(&mut gw, b"RT 192,0,2,10,156,64\r\n");
    assert!(matches!(tail.verdict, Verdict::Replace(_)), "{tail:?}");
    assert!(expects(&tail));
    assert_eq!(guard(&tail, client_key()), Some(false));
}

#[test]
fn a_gap_inside_a_line_is_a_loss_not_a_line_start() {
    let (mut gw, mut c) = session(selective(true));
    c.client_says(&mut gw, b"NOOP x");
    c.passed_unseen(Side::Client, b"\r\n");
    let after = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert_eq!(after.verdict, Verdict::Drop, "waits for the missing bytes");
    assert!(after.events.iter().any(|e| matches!(
        e,
        Event::Dropped {
            reason: DropReason::OutOfOrder,
            ..
        }
    )));
}

#[test]
fn a_227_counts_only_after_a_seen_pasv() {
    let (mut gw, mut c) = session(selective(true));
    let unsolicited = c.server_says(
        &mut gw,
        b"227 Entering Passive Mode (198,51,100,20,200,10)\r\n",
    );
    assert!(refused(&unsolicited, Refusal::Unsolicited));
    assert!(!expects(&unsolicited));
    c.client_says(&mut gw, b"PASV\r\n");
    let answer = c.server_says(
        &mut gw,
        b"227 Entering Passive Mode (198,51,100,20,200,11)\r\n",
    );
    assert!(!refused(&answer, Refusal::Unsolicited), "{answer:?}");
    assert!(expects(&answer));
}

#[test]
fn a_multi_line_reply_is_followed_to_its_end() {
    let (mut gw, mut c) = session(selective(true));
    c.client_says(&mut gw, b"PASV\r\n");
    let open = c.server_says(&mut gw, b"213-status\r\n");
    assert_eq!(guard(&open, server_key()), Some(true), "the block is open");
    let inside = c.server_says(
        &mut gw,
        b"227 Entering Passive Mode (198,51,100,20,200,10)\r\n",
    );
    assert!(refused(&inside, Refusal::Unsolicited));
    assert_eq!(guard(&inside, server_key()), Some(true));
    let end = c.server_says(&mut gw, b"213 end\r\n");
    assert_eq!(guard(&end, server_key()), Some(false));
}

#[test]
fn own_fix_ups_queue_the_whole_connection_until_it_goes() {
    let (mut gw, mut c) = session(selective(false));
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    for key in [client_key(), server_key()] {
        assert!(
            port.commands
                .contains(&Command::GuardAlways { direction: key }),
            "{port:?}"
        );
    }
    let ok = c.server_says(&mut gw, b"200 ok\r\n");
    assert_eq!(guard(&ok, server_key()), None, "always queued now");
    let flow = gw.engine.flow_of(&c.c2s).expect("tracked");
    let gone = gw.input(Input::Conntrack(ConntrackEvent::Destroyed {
        orig: c.c2s,
        flow,
    }));
    for key in [client_key(), server_key()] {
        assert!(gone.commands.contains(&Command::Unguard { direction: key }));
    }
}

#[test]
fn a_flow_whose_handshake_answer_was_not_queued_learns_its_nat_at_its_announcement() {
    use ftpct_engine::nat::CtMapping;

    let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    let mut gw = Gateway::new(selective(true), StaticNat::new(vec![rule], Vec::new()));
    let mut c = Control::snat_session();
    // The SYN crosses before conntrack has an entry: no mapping yet.
    let syn = c.syn(Side::Client, &gw.engine).build();
    let Some(Question::Mapping(q)) = gw.ask(&syn) else {
        panic!("a new connection's mapping is asked");
    };
    assert!(q.first_syn);
    assert_eq!(gw.answer(Answer::Mapping(None)), None);
    gw.outcome();
    // The SYN-ACK (over the handshake budget) and the login pass unseen.
    c.passed_unseen(Side::Server, b"220 ready\r\n");
    let port = c
        .segment(Side::Client, &gw.engine)
        .payload(b"PORT 192,0,2,10,156,64\r\n")
        .build();
    let Some(Question::Mapping(q)) = gw.ask(&port) else {
        panic!("the flow asks for the mapping it never learned");
    };
    assert!(!q.first_syn);
    let nat = CtMapping {
        orig: c.c2s,
        reply: c.s2c,
    };
    assert_eq!(
        gw.answer(Answer::Mapping(Some(nat))),
        None,
        "followed: no kept state asked"
    );
    let out = gw.outcome();
    let Verdict::Replace(bytes) = &out.verdict else {
        panic!("rewritten for the NAT: {out:?}");
    };
    let leaving = ftpct_engine::wire::TcpPacket::parse(bytes).expect("tcp");
    assert_eq!(leaving.payload(), b"PORT 198,51,100,1,156,64\r\n");
    // Asked once: the next packet needs no question.
    let next = c.segment(Side::Client, &gw.engine).build();
    assert_eq!(gw.ask(&next), None);
}

/// Whether the engine needs every segment of the connection's other
/// direction, as it says after a packet of `key`.
fn other_guard(out: &Outcome, key: QueuedDirection) -> Option<bool> {
    out.commands.iter().find_map(|c| match c {
        Command::Guard {
            direction,
            other_needed,
            ..
        } if *direction == key => Some(*other_needed),
        _ => None,
    })
}

#[test]
fn each_direction_says_whether_it_stays_queued_also_when_the_other_does() {
    let mut gw = Gateway::new(selective(true), StaticNat::new(Vec::new(), Vec::new()));
    let mut c = Control::new(
        tuple("192.0.2.10:40000", "198.51.100.20:21"),
        tuple("198.51.100.20:21", "192.0.2.10:40000"),
        1000,
        9000,
    );
    c.handshake(&mut gw);
    c.passed_unseen(Side::Server, b"220 ready\r\n");
    let client = client_key();
    let server = QueuedDirection::of(&c.s2c, Dir::Reply);
    let open = c.server_says(&mut gw, b"213-status\r\n");
    assert_eq!(guard(&open, server), Some(true));
    // The client's line is complete, but the server's reply is still open:
    // whether the kernel keeps one entry for both is the driver's business.
    let pasv = c.client_says(&mut gw, b"PASV\r\n");
    assert_eq!(guard(&pasv, client), Some(false), "{pasv:?}");
    assert_eq!(other_guard(&pasv, client), Some(true), "{pasv:?}");
    let end = c.server_says(&mut gw, b"213 end\r\n");
    assert_eq!(guard(&end, server), Some(false));
    assert_eq!(other_guard(&end, server), Some(false));
}

#[test]
fn two_sessions_of_one_nated_client_have_entries_of_their_own() {
    let (mut gw, mut first) = session(selective(true));
    let mut second = Control::new(
        tuple("192.0.2.10:40001", "198.51.100.20:21"),
        tuple("198.51.100.20:21", "198.51.100.1:40001"),
        5000,
        7000,
    );
    second.handshake(&mut gw);
    gw.input(Input::Outcome(CommandOutcome::Adopted { orig: second.c2s }));
    let edit = first.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(edit.commands.contains(&Command::GuardOn {
        direction: server_key()
    }));
    // The other session's server, at rest, releases only its own entry.
    second.passed_unseen(Side::Server, b"220 ready\r\n");
    let other = second.server_says(
        &mut gw,
        b"227 Entering Passive Mode (198,51,100,20,200,10)\r\n",
    );
    let other_key =
        QueuedDirection::of(&tuple("198.51.100.20:21", "198.51.100.1:40001"), Dir::Reply);
    assert_eq!(guard(&other, other_key), Some(false));
    assert_ne!(other_key, server_key());
}

#[test]
fn the_clients_fin_alone_ends_the_session() {
    let (mut gw, c) = session(selective(true));
    assert_eq!(gw.engine.flow_count(), 1);
    // QUIT, 221 and the server's FIN pass unseen; the client's FIN is queued.
    let fin = c.segment(Side::Client, &gw.engine).fin().build();
    gw.process(&fin);
    let later = gw.now + gw.engine.config().close_linger + std::time::Duration::from_secs(2);
    gw.input_at(later, Input::Timeout);
    assert_eq!(gw.engine.flow_count(), 0);
}

#[test]
fn a_direction_still_queued_whole_is_released_when_its_session_goes() {
    let (mut gw, mut c) = session(selective(true));
    let head = c.client_says(&mut gw, b"PO");
    assert_eq!(guard(&head, client_key()), Some(true));
    let fin = c.segment(Side::Client, &gw.engine).fin().build();
    gw.process(&fin);
    let later = gw.now + gw.engine.config().close_linger + std::time::Duration::from_secs(2);
    let effects = gw.input_at(later, Input::Timeout);
    assert_eq!(gw.engine.flow_count(), 0);
    let released = Command::Unguard {
        direction: client_key(),
    };
    assert!(effects.commands.contains(&released), "{effects:?}");
    let server_released = Command::Unguard {
        direction: server_key(),
    };
    assert!(
        !effects.commands.contains(&server_released),
        "the server's direction was not queued: no kernel call for it"
    );
}

/// A segment that guesses the connection's addresses and ports but not its
/// numbers, before conntrack's window check can mark it INVALID.
fn spoofed(
    c: &Control,
    side: Side,
    gw: &Gateway<StaticNat>,
    shift: u32,
) -> ftpct_testkit::Segment<'static> {
    let next = c.peer(side).next.wrapping_add(shift);
    ftpct_testkit::Segment::new(c.tuple(side), next).ack(c.acknowledges(side, &gw.engine))
}

#[test]
fn a_spoofed_segment_far_from_the_stream_changes_nothing() {
    let (mut gw, mut c) = session(selective(true));
    // A PORT at a guessed sequence number: not a line start ftpct skips to.
    let port = spoofed(&c, Side::Client, &gw, 1 << 24).payload(b"PORT 192,0,2,10,156,64\r\n");
    let out = gw.send(&port);
    assert_eq!(out.verdict, Verdict::Accept);
    assert!(!expects(&out), "{out:?}");
    assert_eq!(gw.engine.stats().implausible, 1);
    // An acknowledgement far ahead does not move the client's stream.
    let ack =
        spoofed(&c, Side::Server, &gw, 0).ack(c.peer(Side::Client).next.wrapping_add(1 << 24));
    gw.send(&ack);
    // A FIN far ahead does not end the session.
    let fin = spoofed(&c, Side::Client, &gw, 1 << 30).fin();
    gw.send(&fin);
    let later = gw.now + gw.engine.config().close_linger + std::time::Duration::from_secs(2);
    gw.input_at(later, Input::Timeout);
    assert_eq!(gw.engine.flow_count(), 1);
    assert_eq!(gw.engine.stats().implausible, 3);
    // The real client, after unseen lines, is followed as before.
    c.passed_unseen(Side::Client, b"TYPE I\r\n");
    let real = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(real.verdict, Verdict::Replace(_)), "{real:?}");
    assert!(expects(&real));
}

#[test]
fn a_fin_the_kernel_saw_ends_the_session_after_the_linger() {
    let (mut gw, c) = session(selective(true));
    let linger = gw.engine.config().close_linger;
    let closing = |gw: &Gateway<StaticNat>| gw.engine.flows().find_map(|f| f.closing_at);
    let fin = |orig| Input::Note(KernelNote::ClientFinished { orig });
    let server_side = tuple("198.51.100.20:21", "198.51.100.1:40000");
    gw.input(fin(server_side));
    assert_eq!(
        closing(&gw),
        None,
        "only the client's direction names a session"
    );
    assert!(!gw.engine.closing(&c.c2s));
    gw.input(fin(c.c2s));
    let first = closing(&gw);
    assert_eq!(first, Some(gw.now + linger));
    assert!(
        gw.engine.closing(&c.c2s),
        "the daemon tells the first FIN only"
    );
    gw.input_at(gw.now + linger, fin(c.c2s));
    assert_eq!(closing(&gw), first, "the first end stays");
    gw.input_at(gw.now + linger / 2, Input::Timeout);
    assert_eq!(gw.engine.flow_count(), 1, "still within the linger");
    gw.input_at(
        gw.now + linger + std::time::Duration::from_secs(1),
        Input::Timeout,
    );
    assert_eq!(gw.engine.flow_count(), 0);
}

/// A server behind DNAT (198.51.100.1 to 192.0.2.20), kernel fix-ups; the
/// client's PASV lines pass unqueued, noted by the kernel's rule.
#[test]
fn a_rewritten_227_keeps_the_client_queued_until_it_is_acknowledged() {
    use ftpct_engine::nat::DnatRule;
    let rule: DnatRule = "198.51.100.1=192.0.2.20".parse().expect("rule");
    let mut gw = Gateway::new(selective(true), StaticNat::new(Vec::new(), vec![rule]));
    let mut c = Control::new(
        tuple("203.0.113.5:40000", "198.51.100.1:21"),
        tuple("192.0.2.20:21", "203.0.113.5:40000"),
        1000,
        9000,
    );
    c.handshake(&mut gw);
    gw.input(Input::Outcome(CommandOutcome::Adopted { orig: c.c2s }));
    c.passed_unseen(Side::Server, b"220 ready\r\n");
    let client = QueuedDirection::of(&tuple("203.0.113.5:40000", "198.51.100.1:21"), Dir::Orig);
    for round in 0..2u8 {
        c.passed_unseen(Side::Client, b"PASV\r\n");
        let reply = format!(
            "227 Entering Passive Mode (192,0,2,20,156,{})\r\n",
            64 + round
        );
        let bytes = c
            .segment(Side::Server, &gw.engine)
            .payload(reply.as_bytes())
            .build();
        let (key, orig) = gw
            .engine
            .passive_note_wanted(&bytes, None)
            .expect("a note is wanted");
        assert_eq!((key, orig), (client, c.c2s));
        gw.input(Input::Note(KernelNote::PassiveLetThrough { orig }));
        assert_eq!(
            gw.engine.passive_note_wanted(&bytes, None),
            None,
            "noted already"
        );
        let announced = c.server_says(&mut gw, reply.as_bytes());
        assert!(
            matches!(announced.verdict, Verdict::Replace(_)),
            "round {round}: {announced:?}"
        );
        assert!(
            announced
                .commands
                .contains(&Command::GuardOn { direction: client }),
            "the client's acknowledgement must be seen: {:?}",
            announced.commands
        );
        let ack = c.segment(Side::Client, &gw.engine).build();
        let acked = gw.process(&ack);
        assert_eq!(guard(&acked, client), Some(false), "{acked:?}");
    }
    assert_eq!(gw.engine.stats().passive_notes, 2);
    assert_eq!(gw.engine.stats().refused, 0);
}

/// A reused client port that NAT gave another public port: the server's
/// segment has a tuple the engine does not know yet, and is found by
/// conntrack's answer (its original tuple) to take the passive note.
#[test]
fn a_note_is_wanted_for_a_server_segment_found_by_conntracks_answer() {
    use ftpct_engine::nat::CtMapping;
    let (mut gw, c) = session(selective(true));
    let unknown = tuple("198.51.100.20:21", "198.51.100.1:40999");
    let bytes = ftpct_testkit::Segment::new(unknown, 1)
        .ack(1)
        .payload(b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n")
        .build();
    assert_eq!(gw.engine.passive_note_wanted(&bytes, None), None);
    let answer = CtMapping {
        orig: c.c2s,
        reply: unknown,
    };
    assert_eq!(
        gw.engine.passive_note_wanted(&bytes, Some(&answer)),
        Some((client_key(), c.c2s))
    );
    let other = CtMapping {
        orig: c.c2s,
        reply: tuple("198.51.100.20:21", "198.51.100.1:41000"),
    };
    assert_eq!(
        gw.engine.passive_note_wanted(&bytes, Some(&other)),
        None,
        "an answer about another tuple"
    );
    gw.input(Input::Note(KernelNote::PassiveLetThrough { orig: c.c2s }));
    assert_eq!(gw.engine.passive_note_wanted(&bytes, Some(&answer)), None);
}

#[test]
fn a_segment_far_from_its_stream_leaves_the_note_for_the_real_one() {
    let (gw, c) = session(selective(true));
    let far = spoofed(&c, Side::Server, &gw, 2 << 20)
        .payload(b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n")
        .build();
    assert_eq!(gw.engine.passive_note_wanted(&far, None), None);
    let real = c
        .segment(Side::Server, &gw.engine)
        .payload(b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n")
        .build();
    assert_eq!(
        gw.engine.passive_note_wanted(&real, None),
        Some((client_key(), c.c2s))
    );
}

/// The benchmark's reused client port: an active session ends (its FIN
/// is only in the kernel's FIN set, not seen yet), a new session on the
/// same port starts at once, its PASV passes noted; its 227 must take the
/// note and count.
#[test]
fn a_reused_port_before_the_old_sessions_fin_is_read_keeps_its_note() {
    let (mut gw, mut a) = session(selective(true));
    a.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    a.server_says(&mut gw, b"200 PORT command successful.\r\n");
    a.passed_unseen(Side::Client, b"QUIT\r\n");
    a.passed_unseen(Side::Server, b"221 Goodbye.\r\n");
    let old = gw.engine.flow_of(&a.c2s).expect("tracked");
    let mut b = Control::new(a.c2s, a.s2c, 777_000, 555_000);
    b.handshake(&mut gw);
    assert_eq!(gw.engine.flow_count(), 1, "the new session took the tuple");
    // The old entry's destroy event (the new SYN ended its TIME_WAIT),
    // acted on now: the new session's flow stays.
    let gone = gw.input(Input::Conntrack(ConntrackEvent::Destroyed {
        orig: a.c2s,
        flow: old,
    }));
    assert!(gone.events.is_empty(), "{gone:?}");
    assert!(gw.engine.tracks(&b.c2s));
    b.passed_unseen(Side::Server, b"220 ready\r\n");
    b.passed_unseen(Side::Client, b"USER anonymous\r\n");
    b.passed_unseen(Side::Server, b"331 password\r\n");
    b.passed_unseen(Side::Client, b"PASS x\r\nTYPE I\r\n");
    b.passed_unseen(Side::Server, b"230 in\r\n200 binary\r\n");
    b.passed_unseen(Side::Client, b"PASV\r\n");
    let reply = b"227 Entering Passive Mode (198,51,100,20,156,65)\r\n";
    let bytes = b.segment(Side::Server, &gw.engine).payload(reply).build();
    let (_, orig) = gw
        .engine
        .passive_note_wanted(&bytes, None)
        .expect("the new session's 227 asks for its note");
    gw.input(Input::Note(KernelNote::PassiveLetThrough { orig }));
    let out = b.server_says(&mut gw, reply);
    let refused = out
        .events
        .iter()
        .any(|e| matches!(e, Event::Refused { .. }));
    assert!(!refused, "{out:?}");
    assert!(gw.engine.expectation_count() >= 1);
    // The old session's FIN, read from the FIN set a moment later, names
    // the same tuple: the new session goes on for the linger at least.
    gw.input(Input::Note(KernelNote::ClientFinished { orig: a.c2s }));
    assert!(gw.engine.tracks(&b.c2s));
}

/// A session picked up at its 227 (ftpct restarted, or lost the flow): the
/// flow is started from conntrack's answer first, so the PASV's note is
/// taken and the 227 counts.
#[test]
fn a_session_picked_up_at_its_227_takes_its_note() {
    use ftpct_engine::nat::CtMapping;
    let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    let mut gw = Gateway::new(selective(false), StaticNat::new(vec![rule], Vec::new()));
    let c = Control::snat_session();
    let known = CtMapping {
        orig: c.c2s,
        reply: c.s2c,
    };
    let reply = b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n";
    let bytes = c.segment(Side::Server, &gw.engine).payload(reply).build();
    assert_eq!(gw.engine.passive_note_wanted(&bytes, Some(&known)), None);
    let Some(Question::Mapping(_)) = gw.ask(&bytes) else {
        panic!("a connection not followed: its mapping is asked");
    };
    let kept = gw.answer(Answer::Mapping(Some(known)));
    assert_eq!(kept, Some(Question::KeptState { orig: c.c2s }));
    // Nothing kept: the flow is started from conntrack's answer, and the
    // PASV's note is asked for.
    let note = gw.answer(Answer::KeptState(None));
    assert_eq!(
        note,
        Some(Question::PassiveNote {
            client: client_key()
        })
    );
    assert!(gw.engine.tracks(&c.c2s));
    assert_eq!(gw.answer(Answer::PassiveNote(true)), None);
    let out = gw.outcome();
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::FlowNew { .. })),
        "{out:?}"
    );
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, Event::Refused { .. })),
        "{out:?}"
    );
    assert_eq!(gw.engine.expectation_count(), 1);
    // Not for a segment that holds no announcement, nor twice.
    let plain = c
        .segment(Side::Server, &gw.engine)
        .payload(b"200 ok\r\n")
        .build();
    assert_eq!(gw.ask(&plain), None);
    assert!(!gw
        .outcome()
        .events
        .iter()
        .any(|e| matches!(e, Event::FlowNew { .. })));
}

/// The kernel's count of a direction's unseen bytes (the driver's rule:
/// whole packets, headers included), over a budget of 256 KiB: the
/// segment that goes over it is queued, and so is every later one until
/// ftpct asks for a recount.
struct UnseenBudget {
    counted: [usize; 2],
    crossings: usize,
    recounts: usize,
}

impl UnseenBudget {
    const BUDGET: usize = 256 << 10;
    const HEADERS: usize = 40;

    fn new() -> Self {
        UnseenBudget {
            counted: [0, 0],
            crossings: 0,
            recounts: 0,
        }
    }

    /// `side` sends `line`: it passes unseen, or is queued as the rule
    /// would queue it.
    fn send(&mut self, gw: &mut Gateway<StaticNat>, c: &mut Control, side: Side, line: &[u8]) {
        let i = usize::from(side == Side::Server);
        self.counted[i] += line.len() + Self::HEADERS;
        if self.counted[i] <= Self::BUDGET {
            c.passed_unseen(side, line);
            return;
        }
        self.crossings += 1;
        let out = match side {
            Side::Client => c.client_says(gw, line),
            Side::Server => c.server_says(gw, line),
        };
        assert_eq!(out.verdict, Verdict::Accept, "a plain line: {out:?}");
        if out.commands.iter().any(|c| {
            matches!(c, Command::RecountUnseen { directions } if *directions == [client_key(), server_key()])
        }) {
            self.recounts += 1;
            self.counted = [0, 0];
        }
    }
}

#[test]
fn more_than_max_unseen_of_plain_lines_leaves_a_port_followed() {
    let (mut gw, mut c) = session(selective(true));
    let mut budget = UnseenBudget::new();
    // A mirror's walk: 2 MiB of commands and replies, none an announcement.
    let mut sent = 0;
    while sent < 2 << 20 {
        budget.send(&mut gw, &mut c, Side::Client, b"SIZE some/file.txt\r\n");
        budget.send(&mut gw, &mut c, Side::Server, b"213 123456\r\n");
        sent += 32;
    }
    let port = c.client_says(&mut gw, b"PORT 192,0,2,10,156,64\r\n");
    assert!(
        matches!(port.verdict, Verdict::Replace(_)),
        "read and rewritten: {port:?}"
    );
    assert!(expects(&port));
    // Each recount rides the first segment over the budget.
    assert!(budget.recounts >= 2, "{} recounts", budget.recounts);
    assert_eq!(
        budget.crossings, budget.recounts,
        "no segment queued needlessly"
    );
}

#[test]
fn a_noop_session_stays_unqueued_within_the_budget() {
    let (mut gw, mut c) = session(selective(true));
    let mut budget = UnseenBudget::new();
    for _ in 0..2000 {
        budget.send(&mut gw, &mut c, Side::Client, b"NOOP\r\n");
        budget.send(&mut gw, &mut c, Side::Server, b"200 NOOP ok\r\n");
    }
    assert_eq!(budget.crossings, 0, "{} bytes counted", budget.counted[0]);
}

/// Over the budget with bare acknowledgements (headers the kernel counts,
/// no line ftpct misses): every segment is queued and shows no gap; the
/// recount comes after a few segments seen all the same.
#[test]
fn a_count_over_the_budget_without_a_gap_is_recounted_within_a_few_segments() {
    let (mut gw, mut c) = session(selective(true));
    let recounted = |out: &Outcome| {
        out.commands
            .iter()
            .any(|c| matches!(c, Command::RecountUnseen { .. }))
    };
    let mut seen = 0;
    loop {
        seen += 1;
        let out = if seen % 2 == 0 {
            c.server_says(&mut gw, b"200 NOOP ok\r\n")
        } else {
            c.client_says(&mut gw, b"NOOP\r\n")
        };
        if recounted(&out) {
            break;
        }
        assert!(seen < 200, "no recount after {seen} segments seen");
    }
    assert!(seen >= 64, "not at every segment: {seen}");
}
