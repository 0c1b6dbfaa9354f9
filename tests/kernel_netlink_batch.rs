//! Requests not waited for, against the live kernel: a refusal of one is
//! still read, counted and told apart from its neighbours', and requests
//! held together go out in one datagram, each carried out. Each test runs
//! in its own network namespace (`ftpct-t-*`): root only (see
//! tests/root).

use std::net::IpAddr;

use ftpct::netfilter::error::Op;
use ftpct::netfilter::ipset::{Element, Ipset};
use ftpct::netfilter::netlink::NlCounters;
use ftpct::netfilter::op_errors::Cause;

mod root;
use root::kernel_tests_enabled;
use root::netns::Netns;

fn element(last: u8, port: u16) -> Element {
    Element::dst(IpAddr::from([192, 0, 2, last]), port)
}

/// The failures counted for `op`, by cause.
fn failures(c: &NlCounters, op: Op) -> Vec<(Cause, u64)> {
    c.errors
        .snapshot()
        .into_iter()
        .filter(|(o, _, _)| *o == op)
        .map(|(_, cause, n)| (cause, n))
        .collect()
}

/// (not waited for, waited for) requests of `op`.
fn requests(c: &NlCounters, op: Op) -> (u64, u64) {
    let snap = c.requests.snapshot();
    let (_, unwaited, waited) = snap.into_iter().find(|(o, _, _)| *o == op).expect("op");
    (unwaited, waited)
}

/// Runs `f` (as root) in a namespace of its own (`ftpct-t-*`) with an
/// ipset socket that counts in fresh tables, and a set name for it.
fn with_counted_ipset(tag: &str, f: impl FnOnce(&mut Ipset, &NlCounters, &str) + Send) {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new(tag);
    let name = format!("ftpct-t-{tag}");
    ns.run(|| {
        let counters = NlCounters::default();
        let mut set = Ipset::open().expect("open ipset");
        set.count_in(counters.clone());
        f(&mut set, &counters, &name);
    });
}

#[test]
fn a_refusal_not_waited_for_is_still_counted() {
    with_counted_ipset("unwaited", |set, counters, name| {
        // No such set: the kernel refuses, nobody waits.
        set.tell_del("ftpct-t-none", &element(1, 21), "test")
            .expect("sent");
        assert_eq!(set.socket().unwaited(), 1);
        set.socket().settle();
        assert_eq!(set.socket().unwaited(), 0);
        assert_eq!(
            failures(counters, Op::IpsetDel),
            [(Cause::Refused(libc::ENOENT), 1)]
        );
        // Read by the next request waited for, too.
        set.tell_add("ftpct-t-none", (&element(1, 21), 30), "test")
            .expect("sent");
        set.create(name, false, 300).expect("create");
        assert_eq!(set.socket().unwaited(), 0);
        assert_eq!(
            failures(counters, Op::IpsetAdd),
            [(Cause::Refused(libc::ENOENT), 1)]
        );
        // A deletion of an element not in the set answers, it does not fail.
        set.tell_del(name, &element(2, 21), "test").expect("sent");
        set.socket().settle();
        assert_eq!(failures(counters, Op::IpsetDel).len(), 1);
        assert_eq!(requests(counters, Op::IpsetDel), (2, 0));
        assert_eq!(requests(counters, Op::IpsetAdd), (1, 0));
        assert_eq!(requests(counters, Op::IpsetCreate), (0, 1));
        set.destroy(name).expect("destroy");
    });
}

#[test]
fn requests_held_together_go_in_one_datagram_and_each_is_carried_out() {
    with_counted_ipset("batch", |set, counters, name| {
        set.create(name, false, 300).expect("create");
        let before = set.socket().datagrams();
        set.socket().hold();
        set.tell_add(name, (&element(1, 2001), 60), "test")
            .expect("held");
        // A refusal in the middle of the batch.
        set.tell_add("ftpct-t-none", (&element(2, 2002), 60), "test")
            .expect("held");
        set.tell_add(name, (&element(3, 2003), 60), "test")
            .expect("held");
        set.tell_del(name, &element(1, 2001), "test").expect("held");
        assert_eq!(set.socket().datagrams(), before, "nothing sent yet");
        // The request waited for goes in the same datagram, last.
        let there = set.test_element(name, &element(3, 2003)).expect("test");
        assert!(there, "the element added before it in the batch");
        assert_eq!(set.socket().datagrams(), before + 1, "one datagram");
        assert_eq!(set.socket().unwaited(), 0, "every answer read");
        assert_eq!(
            failures(counters, Op::IpsetAdd),
            [(Cause::Refused(libc::ENOENT), 1)],
            "only the refused one"
        );
        assert!(!set.test_element(name, &element(1, 2001)).expect("test"));
        // Held ones with nothing waited for after them: sent at the end.
        set.tell_add(name, (&element(4, 2004), 60), "test")
            .expect("held");
        set.tell_add(name, (&element(5, 2005), 60), "test")
            .expect("held");
        let before = set.socket().datagrams();
        set.socket().end_hold();
        assert_eq!(set.socket().datagrams(), before + 1);
        let listed = set.list(name).expect("list");
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert_eq!(requests(counters, Op::IpsetAdd), (5, 0));
        assert_eq!(requests(counters, Op::IpsetTest), (0, 2));
        set.destroy(name).expect("destroy");
    });
}
