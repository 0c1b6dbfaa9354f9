//! How many netlink requests the daemon sent, by operation, and how many
//! of them it waited for (a round trip: send, then receive the answer).
//! Every request goes through `NlSocket`, which counts it in the table its
//! owner gave it (the daemon's metrics show them): the figures say what a
//! session costs in netlink, whatever the machine's load.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::Op;

/// Requests by operation and by waited or not. Shared by the sockets of
/// one daemon (`Arc`); a request costs one atomic increment.
#[derive(Debug, Default)]
pub struct OpRequests {
    counts: [[AtomicU64; 2]; Op::ALL.len()],
}

impl OpRequests {
    /// A request of `op` went out; `waited`: its sender waits for the answer.
    pub fn sent(&self, op: Op, waited: bool) {
        self.counts[op.index()][usize::from(waited)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every operation, with its requests not waited for and waited for.
    pub fn snapshot(&self) -> Vec<(Op, u64, u64)> {
        Op::ALL
            .iter()
            .map(|&op| {
                let [unwaited, waited] = &self.counts[op.index()];
                let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
                (op, read(unwaited), read(waited))
            })
            .collect()
    }

    /// All requests, and those waited for.
    pub fn totals(&self) -> (u64, u64) {
        self.snapshot()
            .iter()
            .fold((0, 0), |(all, w), (_, u, v)| (all + u + v, w + v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_waiting() {
        let requests = OpRequests::default();
        requests.sent(Op::CtGet, true);
        requests.sent(Op::IpsetDel, false);
        requests.sent(Op::IpsetDel, false);
        let snap = requests.snapshot();
        assert_eq!(snap.len(), Op::ALL.len(), "every operation, at zero too");
        assert!(snap.contains(&(Op::CtGet, 0, 1)));
        assert!(snap.contains(&(Op::IpsetDel, 2, 0)));
        assert_eq!(requests.totals(), (3, 1));
    }
}
