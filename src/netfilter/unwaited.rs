//! Requests sent without waiting for their answer: those whose outcome
//! changes nothing for their sender (a guard or destination taken out of
//! a set, labels or window checks updated). They go without NLM_F_ACK, so
//! the kernel answers only a refusal; nfnetlink handles a request while
//! its `send` runs, so by the time the next request is answered (or a
//! non-blocking read finds nothing) every earlier refusal is already in
//! the socket. Refusals are counted and logged when they are read.

use std::collections::VecDeque;

use tracing::{debug, warn};

use super::error::{Error, Op, Target};
use super::op_errors::{is_an_answer, OpErrors};

/// Requests not waited for whose refusals may still be unread: beyond
/// this many, the socket is read (without blocking) before the next one.
pub const MAX_UNWAITED: usize = 256;

/// One request sent without waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub seq: u32,
    pub op: Op,
    pub target: Target,
    /// What its failure means, for the log.
    pub note: &'static str,
}

/// The requests sent without waiting since the socket was last read to
/// the end, oldest first.
#[derive(Debug, Default)]
pub struct Unwaited {
    sent: VecDeque<Sent>,
}

impl Unwaited {
    pub fn push(&mut self, sent: Sent) {
        self.sent.push_back(sent);
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.sent.len() >= MAX_UNWAITED
    }

    /// The request a refusal with sequence number `seq` answers, if it
    /// is one of these.
    pub fn take(&mut self, seq: u32) -> Option<Sent> {
        let at = self.sent.iter().position(|s| s.seq == seq)?;
        self.sent.remove(at)
    }

    /// Everything sent so far is answered (no refusal means done).
    pub fn settled(&mut self) {
        self.sent.clear();
    }

    /// The operation of the last one sent.
    pub fn last_op(&self) -> Option<Op> {
        self.sent.back().map(|s| s.op)
    }

    /// Everything sent so far is lost (a read failed under it): each is
    /// counted as failed with `e`, and said once.
    pub fn lost(&mut self, e: &Error, errors: Option<&OpErrors>) {
        self.lost_last(self.sent.len(), e, errors);
    }

    /// The last `n` sent are lost (their datagram could not be sent).
    pub fn lost_last(&mut self, n: usize, e: &Error, errors: Option<&OpErrors>) {
        let n = n.min(self.sent.len());
        if n == 0 {
            return;
        }
        for s in self.sent.drain(self.sent.len() - n..) {
            if let Some(errors) = errors {
                errors.count(s.op, e);
            }
        }
        warn!("{n} netlink request(s) not waited for may have failed: {e}");
    }
}

/// A refusal of `sent` read later: counted in `errors` and logged, but
/// those that answer a question (an element not in the set).
pub fn refused(sent: Sent, errno: i32, errors: Option<&OpErrors>) -> Error {
    let e = Error::Kernel {
        op: sent.op,
        target: sent.target,
        errno,
    };
    if let Some(errors) = errors {
        errors.count(sent.op, &e);
    }
    if is_an_answer(sent.op, &e) {
        return e;
    }
    if is_expected(sent.op, errno) {
        debug!("{e}: {}", sent.note);
    } else {
        warn!("{e}: {}", sent.note);
    }
    e
}

/// Refusals that happen in normal operation: a session's last labels
/// after its entry went.
fn is_expected(op: Op, errno: i32) -> bool {
    matches!((op, errno), (Op::CtSetLabels, libc::ENOENT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::ipset_errors::IPSET_ERR_EXIST;
    use crate::netfilter::op_errors::Cause;

    fn sent(seq: u32, op: Op) -> Sent {
        Sent {
            seq,
            op,
            target: Target::Set("ftpct-guard".into()),
            note: "test",
        }
    }

    /// An empty error table, and requests of `ops` sent from seq 1 on.
    fn two_sent(ops: [Op; 2]) -> (OpErrors, Unwaited) {
        let mut u = Unwaited::default();
        for (seq, op) in (1..).zip(ops) {
            u.push(sent(seq, op));
        }
        (OpErrors::default(), u)
    }

    #[test]
    fn a_refusal_finds_its_request_and_is_counted() {
        let (errors, mut u) = two_sent([Op::IpsetDel, Op::IpsetAdd]);
        assert_eq!(u.take(9), None, "not one of them");
        let s = u.take(2).expect("the add");
        let e = refused(s, libc::ENOENT, Some(&errors));
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert_eq!(
            errors.snapshot(),
            vec![(Op::IpsetAdd, Cause::Refused(libc::ENOENT), 1)]
        );
        assert_eq!(u.len(), 1);
        u.settled();
        assert!(u.is_empty());
    }

    #[test]
    fn an_element_already_gone_is_no_failure() {
        let errors = OpErrors::default();
        refused(sent(1, Op::IpsetDel), IPSET_ERR_EXIST, Some(&errors));
        assert!(errors.snapshot().is_empty());
    }

    #[test]
    fn requests_lost_under_a_failed_read_are_counted() {
        let (errors, mut u) = two_sent([Op::IpsetDel; 2]);
        let e = Error::Timeout {
            op: Op::IpsetDel,
            after: std::time::Duration::from_secs(1),
        };
        u.lost(&e, Some(&errors));
        assert_eq!(errors.snapshot(), vec![(Op::IpsetDel, Cause::Timeout, 2)]);
        assert!(u.is_empty());
        // A batch that could not be sent: only its own requests.
        u.push(sent(3, Op::IpsetAdd));
        u.push(sent(4, Op::CtSetLabels));
        u.lost_last(1, &e, Some(&errors));
        assert_eq!(u.last_op(), Some(Op::IpsetAdd));
    }

    #[test]
    fn it_is_full_at_its_bound() {
        let mut u = Unwaited::default();
        for seq in 0..MAX_UNWAITED as u32 {
            assert!(!u.is_full());
            u.push(sent(seq, Op::CtSetLabels));
        }
        assert!(u.is_full());
    }
}
