//! Carries out the engine's commands on the kernel. It decides nothing
//! about FTP: which destinations are expected, when one goes, what the data
//! connection's NAT, timeout and mark are, all come in the commands. What
//! it knows is the kernel: a create that meets an entry of the same tuple,
//! sets that vanished or were flushed under it.
//!
//! It runs without the engine lock: each queue thread has its own executor
//! and its own sockets, so a slow kernel answer holds up only the packet
//! that asked for it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use ftpct_engine::command::{secs, Adoption, Command, QueuedDirection, Related, SeqAdj};
use ftpct_engine::engine::{Answer, CommandOutcome, Question};
use ftpct_engine::kept::Kept;
use ftpct_engine::tuple::{Dir, Tuple};
use tracing::{debug, info, warn};

use super::kernel::{tcp_state_name, Kernel, TCP_CLOSE, TCP_TIME_WAIT};
use crate::driver::{nothing_known, DriverKernel};
use crate::netfilter::guard_entries::{entry_after, GuardEntry};
use crate::netfilter::kept_labels::KeptLabels;
use crate::netfilter::sets::{SetNames, GUARD_TIMEOUT_SECS};
use crate::netfilter::Error;

/// Pending destinations checked against the kernel's sets per call of
/// [`Executor::check_sets`] (a flushed set is noticed within pending/64 s).
const SET_CHECKS_PER_TICK: usize = 64;

pub struct Executor<K: Kernel> {
    kernel: K,
    sets: SetNames,
    /// Where sessions' kept state goes in their conntrack labels.
    labels: KeptLabels,
    /// Where the round-robin check of pending destinations goes on.
    check_cursor: usize,
    /// Guard entries to take out once this thread's queue holds no more
    /// packets ([`Command::Guard`]).
    releases: HashSet<GuardEntry>,
    /// Entries taken out while segments of theirs that cannot matter still
    /// waited for a verdict: should deciding one of them make the engine
    /// need its direction after all, the entry goes back at once.
    released_ahead: HashSet<GuardEntry>,
}

/// What an existing entry of a data connection's tuple turned out to be.
enum Reopen {
    /// It was closing (or gone): removed; its state.
    Replaced(Option<u8>),
    /// A live connection: left alone; its state.
    Live(Option<u8>),
}

/// The supervisor's and the watches' kernel, as the driver core sees it:
/// their inputs (timers, conntrack events, kernel notes) raise no question.
impl<K: Kernel> DriverKernel for Executor<K> {
    fn answer(&mut self, q: &Question) -> Answer {
        nothing_known(q)
    }

    fn carry_out(&mut self, c: &Command) -> Option<CommandOutcome> {
        self.run(c)
    }
}

impl<K: Kernel> Executor<K> {
    pub fn new(kernel: K, sets: SetNames, labels: KeptLabels) -> Self {
        Executor {
            kernel,
            sets,
            labels,
            check_cursor: 0,
            releases: HashSet::new(),
            released_ahead: HashSet::new(),
        }
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// Carries out one command; failures are logged. Returns what the
    /// engine must be told of the outcome.
    pub fn run(&mut self, c: &Command) -> Option<CommandOutcome> {
        match c {
            Command::ExpectDst { dst, timeout } => self.expect(*dst, *timeout),
            Command::ForgetDst { dst } => self.forget(*dst),
            Command::CreateRelated(r) => return self.create_related(r, None),
            Command::SetLiberal { orig } => self.set_liberal(orig),
            Command::AdoptControl(a) => {
                return Some(match self.adopt(a) {
                    true => CommandOutcome::Adopted { orig: a.orig },
                    false => CommandOutcome::NotAdopted { orig: a.orig },
                });
            }
            Command::SetSeqAdj { orig, dir, adj } => self.set_seqadj(orig, *dir, adj),
            Command::Keep { orig, kept } => self.keep(orig, kept),
            Command::Guard {
                direction,
                needed,
                other,
                other_needed,
            } => match entry_after(direction, *needed, other, *other_needed) {
                (entry, true) => self.keep_guard(&entry),
                (entry, false) => {
                    self.releases.insert(entry);
                }
            },
            Command::Unguard { direction } => {
                self.releases.insert(GuardEntry::of(direction));
            }
            Command::GuardOn { direction } => {
                self.guard(&GuardEntry::of(direction), GUARD_TIMEOUT_SECS)
            }
            Command::GuardAlways { direction } => self.guard(&GuardEntry::of(direction), 0),
            Command::RecountUnseen { directions } => self.recount_unseen(directions),
        }
        None
    }

    /// Creates a data connection's entry; its master's mark is `known`
    /// (read moments ago with its NAT mapping), else asked of conntrack.
    pub fn create_related(&mut self, r: &Related, known: Option<u32>) -> Option<CommandOutcome> {
        (!self.create(r, known)).then(|| CommandOutcome::NotCreated(r.exp.clone()))
    }

    /// Runs `f` with the requests whose answer changes nothing held back,
    /// then sends them together (one datagram per socket).
    pub fn batched<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.kernel.hold();
        let out = f(self);
        self.kernel.send_held();
        out
    }

    /// Reads the refusals of requests not waited for (counted, logged).
    pub fn settle(&mut self) {
        self.kernel.settle();
    }

    /// True when guard entries wait to be taken out.
    pub fn has_releases(&self) -> bool {
        !self.releases.is_empty()
    }

    /// Takes the waiting guard entries out, but those of `busy`: directions
    /// with a packet still in this thread's queue that must not be
    /// overtaken by an unqueued one; they wait for the next call. Those of
    /// `waiting` (segments that cannot matter still wait) are remembered
    /// until the next call (see `released_ahead`).
    pub fn release_guards_except(
        &mut self,
        busy: &HashSet<GuardEntry>,
        waiting: &HashSet<GuardEntry>,
    ) {
        let (wait, go): (HashSet<GuardEntry>, HashSet<GuardEntry>) =
            std::mem::take(&mut self.releases)
                .into_iter()
                .partition(|key| busy.contains(key));
        self.releases = wait;
        self.released_ahead = go.intersection(waiting).copied().collect();
        for key in go {
            let set = self.sets.guard_for(key.client.ip());
            if let Err(e) = self.kernel.guard_del(set, &key) {
                warn!("ipset del {key} from {set} failed: {e}: that direction stays queued until the entry times out");
            }
        }
    }

    /// Takes every waiting guard entry out: for the executors that serve
    /// no queue (timers, conntrack events), whose releases are those of
    /// sessions that ended. Without it an entry without timeout (a
    /// connection queued whole) would stay for good.
    pub fn release_all_guards(&mut self) {
        self.release_guards_except(&HashSet::new(), &HashSet::new());
    }

    /// Takes the kernel's note of a passive request the client of `client`
    /// sent unqueued; true if there was one.
    pub fn take_passive_note(&mut self, client: &QueuedDirection) -> bool {
        let key = &GuardEntry::of(client);
        let set = self.sets.passive_for(key.client.ip());
        match self.kernel.guard_take(set, key) {
            Ok(noted) => noted,
            Err(e) => {
                warn!("ipset del {key} from {set} failed: {e}: an announcement answering it is refused as unsolicited");
                false
            }
        }
    }

    /// A guard entry still needed: a pending release is cancelled, and an
    /// entry released ahead goes back.
    fn keep_guard(&mut self, key: &GuardEntry) {
        if self.released_ahead.remove(key) {
            self.guard(key, GUARD_TIMEOUT_SECS);
        }
        self.releases.remove(key);
    }

    /// Without NAT both directions have one element: recounted once.
    fn recount_unseen(&mut self, directions: &[QueuedDirection; 2]) {
        let entries = directions.map(|d| GuardEntry::of(&d));
        let shared = entries[0] == entries[1];
        let distinct = if shared { &entries[..1] } else { &entries[..] };
        for entry in distinct {
            let set = self.sets.unseen_for(entry.client.ip());
            if let Err(e) = self.kernel.recount_unseen(set, entry) {
                warn!("ipset recount {entry} in {set} failed: {e}: the kernel queues that direction whole until a recount");
            }
        }
    }

    fn guard(&mut self, key: &GuardEntry, timeout_secs: u32) {
        self.releases.remove(key);
        let set = self.sets.guard_for(key.client.ip());
        if let Err(e) = self.kernel.guard_add(set, key, timeout_secs) {
            warn!("ipset add {key} to {set} failed: {e}: ftpct may not see every segment of that direction");
        }
    }

    /// True when the kernel now holds the connection's entry with room for
    /// a sequence adjustment; else ftpct keeps doing its fix-ups.
    fn adopt(&mut self, a: &Adoption) -> bool {
        let orig = &a.orig;
        let started = std::time::Instant::now();
        let labels = a.kept.map(|k| self.labels.encode(&k));
        match self.kernel.adopt(a, labels) {
            Ok(()) => {
                debug!(
                    flow = %orig,
                    "control connection's entry re-created in {} µs: the kernel keeps its fix-ups",
                    started.elapsed().as_micros()
                );
                true
            }
            Err(e) => {
                warn!(flow = %orig, "re-creating the control connection's entry failed: {e}: ftpct keeps its fix-ups (they end if ftpct stops)");
                false
            }
        }
    }

    /// The kept state and sequence corrections of the entry whose original
    /// tuple is `orig` (None: no entry, or nothing of ftpct's in its labels).
    pub fn kept_state(&mut self, orig: &Tuple) -> Option<(Kept, [Option<SeqAdj>; 2])> {
        let (labels, seqadj) = self.kernel.kept_state(orig).ok()??;
        Some((self.labels.decode(&labels)?, seqadj))
    }

    /// What an entry's labels keep (see `kept_labels`).
    pub fn decode_labels(&self, labels: &[u8; 16]) -> Option<Kept> {
        self.labels.decode(labels)
    }

    fn keep(&mut self, orig: &Tuple, kept: &Kept) {
        let (labels, mask) = self.labels.encode(kept);
        match self.kernel.set_labels(orig, &labels, &mask) {
            Ok(()) => {}
            // The session ended (its entry went) before its last labels:
            // there is nothing left to keep.
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                debug!(flow = %orig, "session's labels not set: its conntrack entry is gone");
            }
            Err(e) if e.errno() == Some(libc::ENOSPC) => warn!(
                flow = %orig,
                "conntrack has no room for this session's labels (no rule uses labels: ftpct rules --apply): a restarted ftpct will not take it up"
            ),
            Err(e) => warn!(flow = %orig, "setting the session's conntrack labels failed: {e}"),
        }
    }

    fn set_seqadj(&mut self, orig: &Tuple, dir: Dir, adj: &SeqAdj) {
        if let Err(e) = self.kernel.set_seqadj(orig, dir, adj) {
            warn!(flow = %orig, "setting the kernel's sequence adjustment failed: {e}: the session breaks after this rewrite");
        }
    }

    fn expect(&mut self, dst: SocketAddr, timeout: Duration) {
        let set = self.sets.for_ip(dst.ip());
        // Re-adding refreshes the timeout of an entry already there.
        if let Err(e) = self.kernel.ipset_add(set, dst, secs(timeout)) {
            warn!("ipset add {dst} to {set} failed: {e}: that data connection will not be helped");
        }
    }

    fn forget(&mut self, dst: SocketAddr) {
        let set = self.sets.for_ip(dst.ip());
        if let Err(e) = self.kernel.ipset_del(set, dst) {
            warn!("ipset del {dst} from {set} failed: {e}");
        }
    }

    fn set_liberal(&mut self, orig: &Tuple) {
        if let Err(e) = self.kernel.set_liberal(orig) {
            warn!(flow = %orig, "turning off conntrack's window checks failed: {e}: the session may stall after this rewrite");
        }
    }

    /// Creates the data connection's entry; true when it is in conntrack
    /// as ftpct made it (or as it already was, in a state a SYN does not
    /// reopen). Says what happened, and only that.
    fn create(&mut self, r: &Related, known_mark: Option<u32>) -> bool {
        let master = r.exp.master;
        let tuple = r.conn.tuple;
        let inherited = known_mark.or_else(|| {
            self.kernel.ct_mark(&master).unwrap_or_else(|e| {
                debug!(flow = %master, "reading the control connection's mark failed: {e}");
                None
            })
        });
        let dc = r.with_master_mark(inherited);
        let mut replaced = None;
        let mut result = self.kernel.create_related(&dc);
        if matches!(
            result,
            Err(Error::Kernel {
                errno: libc::EEXIST,
                ..
            })
        ) {
            match self.reopen(&tuple) {
                Ok(Reopen::Replaced(state)) => {
                    replaced = Some(state);
                    result = self.kernel.create_related(&dc);
                }
                Ok(Reopen::Live(state)) => {
                    info!(flow = %master, "data connection {tuple}: conntrack already tracks it ({}): left as it is, not made RELATED by ftpct", tcp_state_name(state));
                    return true;
                }
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(()) => {
                let reuse = replaced.map_or(String::new(), |s| {
                    format!(" (its tuple's {} entry replaced)", tcp_state_name(s))
                });
                info!(flow = %master, event = "data-matched", "data connection {tuple} matched, RELATED, {}{reuse}", r.exp.nat);
                true
            }
            Err(e) => {
                warn!(
                    flow = %master,
                    event = "data-create-failed",
                    "creating data connection {tuple} failed: {e}: its SYN passes unchanged (the firewall decides); the expectation stays for the client's retry"
                );
                false
            }
        }
    }

    /// A data SYN met an entry of its tuple. In TIME_WAIT or CLOSE the SYN
    /// reopens the tuple (conntrack would make a NEW entry, without NAT):
    /// the old entry goes so that ftpct's can be created.
    fn reopen(&mut self, tuple: &Tuple) -> Result<Reopen, Error> {
        let Some((orig, state)) = self.kernel.ct_entry(tuple)? else {
            // Gone meanwhile (it timed out): create again.
            return Ok(Reopen::Replaced(None));
        };
        if !matches!(state, Some(TCP_TIME_WAIT | TCP_CLOSE)) {
            return Ok(Reopen::Live(state));
        }
        match self.kernel.ct_delete(&orig) {
            // Gone meanwhile counts as removed.
            Ok(())
            | Err(Error::Kernel {
                errno: libc::ENOENT,
                ..
            }) => Ok(Reopen::Replaced(state)),
            Err(e) => Err(e),
        }
    }

    /// Makes sure the sets exist and hold every destination in `pending`
    /// (the engine's, sorted): a `rules --delete`, `ipset destroy` or
    /// `ipset flush` under a running ftpct is noticed, said, and repaired
    /// (a part of the pending destinations is checked on each call).
    /// `still_expected` asks the engine again: `pending` is a snapshot, and
    /// a queue thread may match and forget a destination meanwhile.
    pub fn check_sets(
        &mut self,
        pending: &[SocketAddr],
        timeout: Duration,
        still_expected: &dyn Fn(SocketAddr) -> bool,
    ) {
        let sets = self.sets.clone();
        for (set, v6) in sets.both() {
            match self.kernel.ensure_set(set, v6) {
                Ok(false) => {}
                Ok(true) => {
                    warn!("ipset {set} was gone (ftpct rules --delete, ipset destroy?): created it again and restored its pending entries; the rules that use it may be gone too: ftpct rules --apply");
                    self.restore(pending.iter().filter(|d| d.is_ipv6() == v6), timeout);
                }
                Err(e) => warn!("ipset {set} cannot be checked: {e}"),
            }
        }
        if pending.is_empty() {
            return;
        }
        let start = self.check_cursor % pending.len();
        let batch: Vec<SocketAddr> = pending
            .iter()
            .cycle()
            .skip(start)
            .take(SET_CHECKS_PER_TICK.min(pending.len()))
            .copied()
            .collect();
        self.check_cursor = start + batch.len();
        let missing: Vec<SocketAddr> = batch
            .into_iter()
            .filter(|dst| {
                let set = self.sets.for_ip(dst.ip());
                matches!(self.kernel.ipset_test(set, *dst), Ok(false))
            })
            .collect();
        if !missing.is_empty() {
            let gone: Vec<SocketAddr> = missing
                .into_iter()
                .filter(|dst| still_expected(*dst))
                .collect();
            if gone.is_empty() {
                return;
            }
            warn!(
                "{} pending data connection(s) were missing from the ipsets (ipset flush?): added again",
                gone.len()
            );
            self.restore(gone.iter(), timeout);
            // Matched and forgotten while being restored: take it out again.
            for dst in gone.into_iter().filter(|d| !still_expected(*d)) {
                self.forget(dst);
            }
        }
    }

    fn restore<'a>(&mut self, dsts: impl Iterator<Item = &'a SocketAddr>, timeout: Duration) {
        for dst in dsts {
            self.expect(*dst, timeout);
        }
    }

    /// Removes the set entries of `pending`; returns how many.
    pub fn cleanup(&mut self, pending: &[SocketAddr]) -> usize {
        for dst in pending {
            self.forget(*dst);
        }
        pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use ftpct_engine::command::{DataConnection, Mark, NatBinding};
    use ftpct_engine::expect::{Expectation, NatBindings};
    use ftpct_engine::grammar::AnnounceKind;

    use super::*;
    use crate::daemon::fake_kernel::FakeKernel;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    fn exp(peer: &str, dst: &str) -> Expectation {
        Expectation {
            peer: peer.parse().expect("ip"),
            dst: dst.parse().expect("addr"),
            nat: NatBindings {
                src: Some("198.51.100.20".parse().expect("ip")),
                dst: Some("192.0.2.10:47201".parse().expect("addr")),
            },
            master: t("192.0.2.10:40000", "198.51.100.20:21"),
            kind: AnnounceKind::Port,
            expires: Duration::from_secs(300),
        }
    }

    fn executor() -> Executor<FakeKernel> {
        Executor::new(
            FakeKernel::default(),
            SetNames::new("ftpct").expect("names"),
            KeptLabels::default(),
        )
    }

    fn expect(e: &Expectation) -> Command {
        Command::ExpectDst {
            dst: e.dst,
            timeout: Duration::from_secs(300),
        }
    }

    fn create(syn: Tuple, e: &Expectation, mark: Option<Mark>) -> Command {
        Command::CreateRelated(Box::new(Related {
            conn: DataConnection::for_match(&syn, e),
            mark,
            exp: e.clone(),
        }))
    }

    const SYN: (&str, &str) = ("198.51.100.20:20", "198.51.100.1:47201");

    #[test]
    fn commands_become_ipset_and_conntrack_calls() {
        let mut x = executor();
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t(SYN.0, SYN.1);
        x.run(&expect(&e));
        assert_eq!(x.run(&create(syn, &e, None)), None);
        x.run(&Command::ForgetDst { dst: e.dst });
        x.run(&Command::SetLiberal { orig: e.master });
        assert_eq!(
            x.kernel().calls,
            [
                "add ftpct 198.51.100.1:47201 300",
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
                "del ftpct 198.51.100.1:47201",
                "liberal 192.0.2.10:40000 -> 198.51.100.20:21",
            ]
        );
        let dc = x.kernel().created[0];
        assert_eq!(dc.master, e.master);
        assert_eq!(dc.timeout_secs, 120);
        assert_eq!(
            dc.nat_dst,
            Some(NatBinding {
                addr: "192.0.2.10".parse().expect("ip"),
                port: Some(47201)
            })
        );
        assert_eq!(
            dc.nat_src,
            Some(NatBinding {
                addr: "198.51.100.20".parse().expect("ip"),
                port: None
            })
        );
        assert_eq!(dc.mark, None);
    }

    #[test]
    fn the_data_connection_inherits_the_masters_mark_under_the_rule() {
        let mut x = executor();
        x.kernel_mut().master_mark = Some(0x0f);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let rule: Mark = "0x10/0xf0".parse().expect("mark");
        x.run(&create(t(SYN.0, SYN.1), &e, Some(rule)));
        assert_eq!(x.kernel().created[0].mark, Some(0x1f));
    }

    #[test]
    fn a_known_master_mark_is_not_asked_for_again() {
        let mut x = executor();
        x.kernel_mut().master_mark = Some(0x0f);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let Command::CreateRelated(r) = create(t(SYN.0, SYN.1), &e, None) else {
            unreachable!()
        };
        assert_eq!(x.create_related(&r, Some(0x2a)), None);
        assert_eq!(x.kernel().created[0].mark, Some(0x2a), "the known mark");
        assert_eq!(x.kernel().marks_asked, 0);
        x.create_related(&r, None);
        assert_eq!(x.kernel().marks_asked, 1, "unknown: asked");
    }

    #[test]
    fn a_data_syn_on_a_time_wait_tuple_replaces_the_old_entry() {
        let mut x = executor();
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t(SYN.0, SYN.1);
        x.kernel_mut().entries.insert(syn, TCP_TIME_WAIT);
        assert_eq!(x.run(&create(syn, &e, None)), None);
        assert_eq!(
            x.kernel().calls,
            [
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
                "delete 198.51.100.20:20 -> 198.51.100.1:47201",
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
            ]
        );
        assert_eq!(x.kernel().created.len(), 1);
    }

    #[test]
    fn an_old_entry_gone_before_its_delete_counts_as_removed() {
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t(SYN.0, SYN.1);
        let mut x = executor();
        x.kernel_mut().entries.insert(syn, TCP_TIME_WAIT);
        x.kernel_mut().delete_errno = Some(libc::ENOENT);
        assert_eq!(x.run(&create(syn, &e, None)), None);
        assert_eq!(x.kernel().created.len(), 1);
        // Any other refusal of the delete: no entry made, the expectation back.
        let mut x = executor();
        x.kernel_mut().entries.insert(syn, TCP_TIME_WAIT);
        x.kernel_mut().delete_errno = Some(libc::EPERM);
        assert_eq!(
            x.run(&create(syn, &e, None)),
            Some(CommandOutcome::NotCreated(e.clone()))
        );
        assert!(x.kernel().created.is_empty());
    }

    #[test]
    fn a_live_entry_of_the_tuple_is_left_alone() {
        let mut x = executor();
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t(SYN.0, SYN.1);
        x.kernel_mut().entries.insert(syn, 3);
        assert_eq!(x.run(&create(syn, &e, None)), None);
        assert!(x.kernel().calls.iter().all(|c| !c.starts_with("delete")));
        assert!(x.kernel().created.is_empty());
    }

    #[test]
    fn a_failed_create_gives_the_expectation_back() {
        let mut x = executor();
        x.kernel_mut().create_errno = Some(libc::ENOMEM);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t(SYN.0, SYN.1);
        assert_eq!(
            x.run(&create(syn, &e, None)),
            Some(CommandOutcome::NotCreated(e.clone()))
        );
        x.kernel_mut().create_errno = None;
        assert_eq!(x.run(&create(syn, &e, None)), None);
    }

    #[test]
    fn vanished_sets_and_flushed_entries_are_restored() {
        let mut x = executor();
        let timeout = Duration::from_secs(300);
        x.kernel_mut().sets.insert("ftpct".into(), HashSet::new());
        x.kernel_mut().sets.insert("ftpct6".into(), HashSet::new());
        let dst: SocketAddr = "198.51.100.1:47201".parse().expect("a");
        x.run(&Command::ExpectDst { dst, timeout });
        x.check_sets(&[dst], timeout, &|_| true);
        assert_eq!(x.kernel().calls.len(), 1, "nothing to repair");
        // ipset flush
        x.kernel_mut().sets.insert("ftpct".into(), HashSet::new());
        x.check_sets(&[dst], timeout, &|_| true);
        assert!(x.kernel().sets["ftpct"].contains(&dst));
        // ipset destroy (ftpct rules --delete)
        x.kernel_mut().sets.remove("ftpct");
        x.check_sets(&[dst], timeout, &|_| true);
        assert!(x.kernel().calls.contains(&"create set ftpct".to_string()));
        assert!(x.kernel().sets["ftpct"].contains(&dst));
    }

    #[test]
    fn a_destination_matched_meanwhile_is_not_restored() {
        let mut x = executor();
        let timeout = Duration::from_secs(300);
        x.kernel_mut().sets.insert("ftpct".into(), HashSet::new());
        x.kernel_mut().sets.insert("ftpct6".into(), HashSet::new());
        let dst: SocketAddr = "198.51.100.1:47201".parse().expect("a");
        // The snapshot still lists it; the engine no longer expects it (a
        // queue thread matched its SYN and took its entry out).
        x.check_sets(&[dst], timeout, &|_| false);
        assert!(!x.kernel().sets["ftpct"].contains(&dst));
        assert!(x.kernel().calls.iter().all(|c| !c.starts_with("add")));
    }

    #[test]
    fn cleanup_removes_the_pending_entries() {
        let mut x = executor();
        let dst: SocketAddr = "[2001:db8::1]:5000".parse().expect("a");
        assert_eq!(x.cleanup(&[dst]), 1);
        assert_eq!(
            x.kernel().calls.last().map(String::as_str),
            Some("del ftpct6 [2001:db8::1]:5000")
        );
    }

    #[test]
    fn an_ipset_timeout_of_zero_is_never_asked_for() {
        let mut x = executor();
        let dst: SocketAddr = "198.51.100.1:47201".parse().expect("a");
        x.run(&Command::ExpectDst {
            dst,
            timeout: Duration::ZERO,
        });
        assert_eq!(
            x.kernel().calls,
            ["add ftpct 198.51.100.1:47201 1"],
            "0 would mean forever"
        );
    }

    /// The client's direction of a connection from `port` without NAT.
    fn client_direction(port: u16) -> QueuedDirection {
        let c2s = t(&format!("192.0.2.10:{port}"), "198.51.100.20:21");
        QueuedDirection::of(&c2s, Dir::Orig)
    }

    /// The server's direction of a connection to 198.51.100.20:21, its
    /// segments going to `to` (the client's address, or its NATed one).
    fn server_direction(to: &str) -> QueuedDirection {
        QueuedDirection::of(&t("198.51.100.20:21", to), Dir::Reply)
    }

    /// The engine's word after a client segment, the server's direction
    /// needing nothing.
    fn client_guard(client: QueuedDirection, needed: bool) -> Command {
        Command::Guard {
            direction: client,
            needed,
            other: QueuedDirection::of(&client.seen.reversed(), Dir::Reply),
            other_needed: false,
        }
    }

    #[test]
    fn a_recount_zeroes_each_direction_once() {
        let mut x = executor();
        let client = client_direction(40000);
        let (plain, nated) = (
            server_direction("192.0.2.10:40000"),
            server_direction("203.0.113.1:40000"),
        );
        x.run(&Command::RecountUnseen {
            directions: [client, nated],
        });
        x.run(&Command::RecountUnseen {
            directions: [client, plain],
        });
        assert_eq!(
            x.kernel().calls,
            [
                "recount ftpct-count client 192.0.2.10:40000 server 198.51.100.20",
                "recount ftpct-count client 203.0.113.1:40000 server 198.51.100.20",
                "recount ftpct-count client 192.0.2.10:40000 server 198.51.100.20",
            ],
            "without NAT both directions are one element"
        );
    }

    #[test]
    fn guard_entries_go_when_their_direction_has_nothing_in_the_queue() {
        let mut x = executor();
        let (a, b, c) = (
            client_direction(40000),
            client_direction(40001),
            client_direction(40002),
        );
        x.run(&Command::GuardAlways { direction: a });
        for d in [a, b, c] {
            x.run(&client_guard(d, false));
        }
        x.run(&client_guard(c, true));
        let busy = HashSet::from([GuardEntry::of(&b)]);
        x.release_guards_except(&busy, &HashSet::new());
        let unguarded = |x: &Executor<FakeKernel>| {
            let calls = &x.kernel().calls;
            calls.iter().filter(|c| c.starts_with("unguard")).count()
        };
        assert_eq!(unguarded(&x), 1, "{:?}", x.kernel().calls);
        assert!(x.kernel().calls.iter().any(|c| c.contains("40000")));
        assert!(x.has_releases(), "the busy one waits");
        x.release_all_guards();
        assert_eq!(unguarded(&x), 2, "c was needed again: kept");
        assert!(!x.has_releases());
    }

    /// Without NAT a connection's two directions are one guard entry: the
    /// client's direction needing nothing keeps it while the server's
    /// does; with NAT each direction's entry goes on its own word.
    #[test]
    fn a_shared_entry_goes_only_when_neither_direction_needs_it() {
        let mut x = executor();
        let client = client_direction(40000);
        let after_client = |server, other_needed| Command::Guard {
            direction: client,
            needed: false,
            other: server,
            other_needed,
        };
        let plain = server_direction("192.0.2.10:40000");
        x.run(&after_client(plain, true));
        assert!(!x.has_releases(), "the server's direction still needs it");
        x.run(&after_client(plain, false));
        assert!(x.has_releases());
        x.release_all_guards();
        let nated = server_direction("198.51.100.1:40000");
        x.run(&Command::GuardOn { direction: nated });
        x.run(&after_client(nated, true));
        x.release_all_guards();
        let calls: Vec<&str> = x.kernel().calls.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            calls,
            [
                "unguard ftpct-guard client 192.0.2.10:40000 server 198.51.100.20",
                "guard ftpct-guard client 198.51.100.1:40000 server 198.51.100.20 600",
                "unguard ftpct-guard client 192.0.2.10:40000 server 198.51.100.20",
            ],
            "with NAT the server's entry stays, the client's goes"
        );
    }

    /// A direction released while segments of it that cannot matter still
    /// waited: should one of them make the engine need it after all, the
    /// entry goes back at once (once: later the kernel's rules add it).
    #[test]
    fn an_entry_released_ahead_of_its_waiting_segments_comes_back_if_needed() {
        let mut x = executor();
        let client = client_direction(40000);
        let needed = |needed| client_guard(client, needed);
        x.run(&needed(false));
        let waiting = HashSet::from([GuardEntry::of(&client)]);
        x.release_guards_except(&HashSet::new(), &waiting);
        x.run(&needed(false));
        x.run(&needed(true));
        x.run(&needed(true));
        let calls: Vec<&str> = x.kernel().calls.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            calls,
            [
                "unguard ftpct-guard client 192.0.2.10:40000 server 198.51.100.20",
                "guard ftpct-guard client 192.0.2.10:40000 server 198.51.100.20 600"
            ]
        );
    }

    #[test]
    fn an_adoption_is_reported_whether_it_worked_or_not() {
        let mut x = executor();
        let orig = t("192.0.2.10:40000", "198.51.100.20:21");
        let adopt = Command::AdoptControl(Box::new(Adoption {
            orig,
            directions: [
                QueuedDirection::of(&orig, Dir::Orig),
                QueuedDirection::of(&orig.reversed(), Dir::Reply),
            ],
            seqadj: [None, None],
            kept: None,
        }));
        assert_eq!(x.run(&adopt), Some(CommandOutcome::Adopted { orig }));
        x.kernel_mut().adopt_errno = Some(libc::ENOENT);
        assert_eq!(x.run(&adopt), Some(CommandOutcome::NotAdopted { orig }));
        let adj = SeqAdj {
            correction_pos: 1006,
            offset_before: 0,
            offset_after: 2,
        };
        x.run(&Command::SetSeqAdj {
            orig,
            dir: Dir::Reply,
            adj,
        });
        assert_eq!(
            x.kernel().calls.last().map(String::as_str),
            Some("seqadj 192.0.2.10:40000 -> 198.51.100.20:21 Reply 1006 0 2")
        );
    }
}
