//! How many netlink requests failed, by operation and by cause, since the
//! start: every request goes through `NlSocket::transact`, which counts
//! its failures here (the metrics endpoint shows them). The table holds
//! one entry per operation and cause: a few dozen at most.

use std::sync::{Mutex, PoisonError};

use super::error::{Error, Op};

/// Failures by (operation, cause), in order of first failure.
static FAILURES: Mutex<Vec<(Op, Cause, u64)>> = Mutex::new(Vec::new());

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

/// Counts a failed request.
pub fn count(op: Op, e: &Error) {
    let cause = Cause::of(e);
    let mut t = FAILURES.lock().unwrap_or_else(PoisonError::into_inner);
    match t.iter_mut().find(|(o, c, _)| *o == op && *c == cause) {
        Some((_, _, n)) => *n += 1,
        None => t.push((op, cause, 1)),
    }
}

/// Every (operation, cause) that failed, and how often.
pub fn snapshot() -> Vec<(Op, Cause, u64)> {
    FAILURES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
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
        let before = snapshot()
            .iter()
            .find(|(op, c, _)| *op == Op::IpsetTest && *c == Cause::Refused(4101))
            .map_or(0, |s| s.2);
        count(Op::IpsetTest, &refused);
        count(Op::IpsetTest, &refused);
        let after = snapshot()
            .iter()
            .find(|(op, c, _)| *op == Op::IpsetTest && *c == Cause::Refused(4101))
            .map_or(0, |s| s.2);
        assert_eq!(after - before, 2);
        assert_eq!(Cause::Refused(2).label(), "2");
    }
}
