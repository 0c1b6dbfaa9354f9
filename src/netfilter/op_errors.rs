//! How many netlink requests failed, by operation and by cause: every
//! request goes through `NlSocket::transact`, which counts its failures in
//! the table its owner gave it (the daemon's metrics show them), except
//! refusals that answer the question (no such entry, not in the set). The
//! table holds one entry per operation and cause: a few dozen at most.

use std::sync::{Mutex, PoisonError};

use super::error::{Error, Op};
use super::ipset_errors::IPSET_ERR_EXIST;

/// Failures by (operation, cause), in order of first failure. Shared by
/// the sockets of one daemon (`Arc`).
#[derive(Debug, Default)]
pub struct OpErrors {
    failures: Mutex<Vec<(Op, Cause, u64)>>,
}

/// Why a request failed, coarsely (the errno of a kernel refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The kernel refused with this errno (ipset's own codes from 4097).
    Refused(i32),
    Timeout,
    /// Sending or receiving failed, or the answer made no sense.
    Socket,
}

impl Cause {
    pub fn of(e: &Error) -> Cause {
        match e {
            Error::Kernel { errno, .. } => Cause::Refused(*errno),
            Error::Timeout { .. } => Cause::Timeout,
            _ => Cause::Socket,
        }
    }

    /// Its label value: the errno's number, "timeout" or "socket".
    pub fn label(self) -> String {
        match self {
            Cause::Refused(errno) => errno.to_string(),
            Cause::Timeout => "timeout".into(),
            Cause::Socket => "socket".into(),
        }
    }
}

impl OpErrors {
    /// Counts a failed request, unless the refusal is the answer its
    /// caller asked for (no such entry, not in the set).
    pub fn count(&self, op: Op, e: &Error) {
        if is_an_answer(op, e) {
            return;
        }
        let cause = Cause::of(e);
        let mut t = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match t.iter_mut().find(|(o, c, _)| *o == op && *c == cause) {
            Some((_, _, n)) => *n += 1,
            None => t.push((op, cause, 1)),
        }
    }

    /// Every (operation, cause) that failed, and how often.
    pub fn snapshot(&self) -> Vec<(Op, Cause, u64)> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Refusals that mean "no": a lookup that finds no entry, a set test or
/// removal of an element not in it, the removal of a set that is gone.
pub fn is_an_answer(op: Op, e: &Error) -> bool {
    matches!(
        (op, e.errno()),
        (Op::CtGet, Some(libc::ENOENT))
            | (Op::IpsetTest | Op::IpsetDel, Some(IPSET_ERR_EXIST))
            | (Op::IpsetDestroy, Some(libc::ENOENT))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_operation_and_cause() {
        let refused = Error::Kernel {
            op: Op::IpsetTest,
            target: crate::netfilter::error::Target::None,
            errno: 4101,
        };
        let errors = OpErrors::default();
        errors.count(Op::IpsetTest, &refused);
        errors.count(Op::IpsetTest, &refused);
        assert_eq!(
            errors.snapshot(),
            vec![(Op::IpsetTest, Cause::Refused(4101), 2)]
        );
        let not_member = Error::Kernel {
            op: Op::IpsetTest,
            target: crate::netfilter::error::Target::None,
            errno: IPSET_ERR_EXIST,
        };
        errors.count(Op::IpsetTest, &not_member);
        assert_eq!(
            errors.snapshot().len(),
            1,
            "a test's 'not in the set' is an answer"
        );
        assert_eq!(Cause::Refused(2).label(), "2");
    }
}
