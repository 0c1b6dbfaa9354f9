//! ipset entries on their way to the kernel. A queue thread takes an
//! announcement's `ExpectDst` from the engine under its lock and carries
//! it out after (no kernel call runs under the lock), sometimes behind a
//! slow one: an adoption takes milliseconds. The supervisor's check of the
//! sets reads the engine's pending destinations, and found such an entry
//! missing ("ipset flush?") and added it itself. A destination is noted
//! here in the engine call that asked for its entry, crossed off once the
//! entry is added; the check passes it by meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ftpct_engine::Command;

#[derive(Debug, Default)]
pub struct AddsUnderWay {
    /// Counted: two threads may each carry one for a destination.
    dsts: Mutex<HashMap<SocketAddr, u32>>,
}

impl AddsUnderWay {
    /// Notes the entries `commands` add; called under the engine lock, in
    /// the call that returned them.
    pub fn note(&self, commands: &[Command]) {
        let mut dsts = None;
        for c in commands {
            if let Command::ExpectDst { dst, .. } = c {
                let dsts = dsts.get_or_insert_with(|| self.lock());
                *dsts.entry(*dst).or_insert(0) += 1;
            }
        }
    }

    /// `c` was carried out: the entry it adds, if any, is in the kernel.
    pub fn done(&self, c: &Command) {
        let Command::ExpectDst { dst, .. } = c else {
            return;
        };
        let mut dsts = self.lock();
        if let Some(n) = dsts.get_mut(dst) {
            *n -= 1;
            if *n == 0 {
                dsts.remove(dst);
            }
        }
    }

    /// Those of `pending` (the engine's, read before) whose entries are
    /// not on their way: what the kernel's sets must hold now.
    pub fn settled(&self, mut pending: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let dsts = self.lock();
        if !dsts.is_empty() {
            pending.retain(|d| !dsts.contains_key(d));
        }
        pending
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, u32>> {
        self.dsts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn expect(dst: SocketAddr) -> Command {
        Command::ExpectDst {
            dst,
            timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_destination_is_under_way_until_each_of_its_adds_is_done() {
        let adds = AddsUnderWay::default();
        let a: SocketAddr = "198.51.100.1:40001".parse().expect("a");
        let b: SocketAddr = "[2001:db8:2::1]:43189".parse().expect("b");
        adds.note(&[expect(a), Command::ForgetDst { dst: b }]);
        adds.note(&[expect(a)]);
        assert_eq!(adds.settled(vec![a, b]), [b]);
        adds.done(&expect(a));
        assert_eq!(
            adds.settled(vec![a, b]),
            [b],
            "another add of a is under way"
        );
        adds.done(&expect(a));
        adds.done(&expect(a));
        assert_eq!(adds.settled(vec![a, b]), [a, b]);
    }
}
