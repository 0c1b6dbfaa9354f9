//! Verdicts wait while their connection's conntrack entry is made anew.
//!
//! An adoption deletes a control connection's entry and creates it again
//! through ctnetlink (`Command::AdoptControl`). A packet of that connection
//! reaching conntrack in between would make an entry of its own (conntrack
//! picks connections up mid-stream), without ftpct's NAT bindings, and
//! the create would then fail. The rewritten segment that asked for the
//! adoption waits in its queue, and its direction's next segments queue
//! behind it; the other direction is guarded first, so its segments are
//! queued too, but another queue thread may decide them. So every verdict
//! passes this gate: it is sent under a shared lock, and an adoption marks
//! its connection under the exclusive one, which waits for the verdicts
//! already being sent; a verdict on a marked connection waits until the
//! entry is back (bounded: a stuck adoption must not stall the queue).
//!
//! Whoever asks conntrack whether a control connection's entry exists
//! passes it too (`outside`): in the middle of an adoption the entry is
//! missing although the connection lives.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::netfilter::guard_entries::GuardEntry;
use ftpct_engine::tuple::{Dir, Tuple};
use tracing::warn;

/// How long a verdict waits for an adoption (one takes ~50 µs).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long a look at an entry waits for an adoption: nothing waits for
/// the look, it can afford to outlast a slow one.
const MAX_LOOK_WAIT: Duration = Duration::from_secs(1);
/// How often a waiting verdict or look tries again.
const POLL: Duration = Duration::from_micros(20);

#[derive(Default)]
pub struct AdoptionGate {
    /// The guard entries of the connections being adopted.
    adopting: RwLock<HashSet<GuardEntry>>,
}

impl AdoptionGate {
    /// Runs `send` on `packet` (its verdict) once none of the directions
    /// `keys_of` finds in it is being adopted, or after `MAX_WAIT`. The
    /// packet is looked at only while some adoption runs: most verdicts
    /// cost a read lock and nothing more.
    pub fn pass<P, T>(
        &self,
        packet: P,
        keys_of: impl Fn(&P) -> Vec<GuardEntry>,
        send: impl FnOnce(P) -> T,
    ) -> T {
        let busy =
            |adopting: &HashSet<GuardEntry>| keys_of(&packet).iter().any(|k| adopting.contains(k));
        // Sent under the shared lock: an adoption starting now waits
        // until this packet is through conntrack.
        let (_shared, waited_out) = self.clear_of(busy, MAX_WAIT);
        if waited_out {
            warn!("a verdict waited {MAX_WAIT:?} for its connection's entry to be made anew: it goes on");
        }
        send(packet)
    }

    /// Runs `look` (a question to conntrack about control connection
    /// `orig`) once no adoption of it is under way, and with none starting
    /// meanwhile: an entry deleted to be made anew is not taken for gone.
    pub fn outside<T>(&self, orig: &Tuple, look: impl FnOnce() -> T) -> T {
        // An adoption's keys hold its client's direction.
        let key = GuardEntry::of_packets(orig, Dir::Orig);
        let busy = |adopting: &HashSet<GuardEntry>| adopting.contains(&key);
        let (_shared, waited_out) = self.clear_of(busy, MAX_LOOK_WAIT);
        if waited_out {
            warn!("an adoption took more than {MAX_LOOK_WAIT:?}: its connection's entry is looked at all the same");
        }
        look()
    }

    /// Like [`AdoptionGate::outside`], for a look at several control
    /// connections at once.
    pub fn outside_all<T>(&self, origs: &[Tuple], look: impl FnOnce() -> T) -> T {
        let keys: Vec<GuardEntry> = origs
            .iter()
            .map(|o| GuardEntry::of_packets(o, Dir::Orig))
            .collect();
        let busy = |adopting: &HashSet<GuardEntry>| keys.iter().any(|k| adopting.contains(k));
        let (_shared, waited_out) = self.clear_of(busy, MAX_LOOK_WAIT);
        if waited_out {
            warn!("an adoption took more than {MAX_LOOK_WAIT:?}: its connection's entry is looked at all the same");
        }
        look()
    }

    /// The shared lock, once `busy` finds none of its directions being
    /// adopted, or after `max_wait` (then with true: waited out). Busy is
    /// asked only while some adoption runs: most callers cost a read lock
    /// and nothing more.
    fn clear_of(
        &self,
        busy: impl Fn(&HashSet<GuardEntry>) -> bool,
        max_wait: Duration,
    ) -> (RwLockReadGuard<'_, HashSet<GuardEntry>>, bool) {
        let deadline = Instant::now() + max_wait;
        loop {
            let adopting = self.adopting.read().unwrap_or_else(PoisonError::into_inner);
            let waits = !adopting.is_empty() && busy(&adopting);
            if !waits || Instant::now() >= deadline {
                return (adopting, waits);
            }
            drop(adopting);
            std::thread::sleep(POLL);
        }
    }

    /// Runs `adopt` with verdicts on the directions `keys` held back.
    pub fn during<T>(&self, keys: &[GuardEntry], adopt: impl FnOnce() -> T) -> T {
        self.adopting
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(keys.iter().copied());
        let out = adopt();
        let mut adopting = self
            .adopting
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        keys.iter().for_each(|k| {
            adopting.remove(k);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;

    use super::*;

    fn key(port: u16) -> GuardEntry {
        GuardEntry {
            client: format!("192.0.2.10:{port}").parse().expect("addr"),
            server: "198.51.100.20".parse().expect("addr"),
        }
    }

    #[test]
    fn a_verdict_on_a_connection_being_adopted_waits_for_the_entry() {
        let gate = Arc::new(AdoptionGate::default());
        let (inside_tx, inside) = mpsc::channel();
        let (finish_tx, finish) = mpsc::channel::<()>();
        let adopter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                gate.during(&[key(40000)], || {
                    inside_tx.send(()).expect("send");
                    finish.recv().expect("recv");
                    Instant::now()
                })
            })
        };
        inside.recv().expect("adopting");
        // Another connection's verdict does not wait.
        assert!(gate.pass(key(40001), |k| vec![*k], |_| true));
        let waiter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.pass(key(40000), |k| vec![*k], |_| Instant::now()))
        };
        thread::sleep(Duration::from_millis(5));
        finish_tx.send(()).expect("finish");
        let adopted_at = adopter.join().expect("adopter");
        let sent_at = waiter.join().expect("waiter");
        assert!(
            sent_at >= adopted_at,
            "the verdict went after the entry was back"
        );
    }
}
