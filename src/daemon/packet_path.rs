//! One queued packet, from bytes to verdict, through the driver core
//! (`crate::driver`): the engine decides under its lock (once for most
//! packets), the questions it may ask are answered and the commands it
//! gives are carried out without the lock, then the verdict goes back.
//! Commands run before the verdict: the expected SYN must find its ipset
//! entry, the data connection its conntrack entry. What this adds to the
//! core: the lock, the sockets, and when held requests go out.

use std::collections::HashSet;
use std::sync::Arc;

use ftpct_engine::engine::{Answer, CommandOutcome, Question};
use ftpct_engine::nat::NatLookup;
use ftpct_engine::{Command, Origin, Verdict};

use super::event_log::log_packet;
use super::executor::Executor;
use super::kernel::Kernel;
use super::metrics::VerdictKind;
use super::shared::Shared;
use crate::driver::{self, DriverKernel};
use crate::netfilter::conntrack_lookup::KnownMarks;
use crate::netfilter::guard_entries::{guard_entries_of_packet, passes_unguarded, GuardEntry};

/// A queue thread's own tools: its executor and its conntrack lookups.
pub struct PacketPath<K: Kernel, N: NatLookup> {
    shared: Arc<Shared>,
    exec: Executor<K>,
    nat: N,
    /// The engine's control ports (fixed while it runs): which guard entry
    /// a packet matches.
    control_ports: Vec<u16>,
    /// Commands carried out once the verdict is sent
    /// ([`Command::may_follow_verdict`]).
    after_verdict: Vec<Command>,
    /// Commands carried out in this crossing whose requests may still be
    /// held (not waited for): their ipset entries count as in the kernel
    /// once the held requests are sent.
    carried: Vec<Command>,
}

impl<K: Kernel, N: NatLookup + KnownMarks> PacketPath<K, N> {
    pub fn new(shared: Arc<Shared>, exec: Executor<K>, nat: N) -> Self {
        let control_ports = shared
            .with_engine(|e| e.config().control_ports.clone())
            .unwrap_or_default();
        PacketPath {
            shared,
            exec,
            nat,
            control_ports,
            after_verdict: Vec::new(),
            carried: Vec::new(),
        }
    }

    pub fn nat(&self) -> &N {
        &self.nat
    }

    /// Guard entries wait to be taken out (see `release_guards`).
    pub fn has_releases(&self) -> bool {
        self.exec.has_releases()
    }

    /// Takes out the waiting guard entries of the directions that have no
    /// packet among `undecided` that must not be overtaken: every packet of
    /// this queue still without a verdict (read from a queue just found
    /// empty). One left in the queue could be overtaken by its direction's
    /// next, unqueued, segment; that is harmless only for a segment the
    /// rules would have let pass unqueued anyway
    /// ([`passes_unguarded`]: an ACK, whole lines that cannot matter). A
    /// direction streaming such lines always has one waiting, and would
    /// otherwise stay queued for as long as it streams.
    pub fn release_guards(&mut self, undecided: &[&[u8]]) {
        let control = |p: u16| self.control_ports.contains(&p);
        let (plain, busy): (Vec<&[u8]>, Vec<&[u8]>) = undecided
            .iter()
            .partition(|bytes| passes_unguarded(bytes, control));
        let entries = |packets: Vec<&[u8]>| -> HashSet<GuardEntry> {
            packets.iter().flat_map(|b| self.guard_entries(b)).collect()
        };
        let (waiting, busy) = (entries(plain), entries(busy));
        self.exec
            .batched(|exec| exec.release_guards_except(&busy, &waiting));
    }

    /// Reads the refusals of the requests not waited for (see `Kernel::settle`).
    pub fn settle(&mut self) {
        self.exec.settle();
    }

    /// The guard entries a packet matches (its direction of a control
    /// connection).
    pub fn guard_entries(&self, bytes: &[u8]) -> Vec<GuardEntry> {
        guard_entries_of_packet(bytes, |p| self.control_ports.contains(&p))
    }

    /// Sends the verdict on `packet` (`send`) once its connection's entry
    /// is not being made anew; `bytes` reads the packet's IP bytes.
    pub fn send_verdict<P, T>(
        &self,
        packet: P,
        bytes: impl Fn(&P) -> &[u8],
        send: impl FnOnce(P) -> T,
    ) -> T {
        let keys_of = |p: &P| self.guard_entries(bytes(p));
        self.shared.adoptions().pass(packet, keys_of, send)
    }

    /// The verdict on a packet from `queue`, come from `origin`.
    pub fn verdict(&mut self, queue: u16, bytes: &[u8], origin: Origin) -> Verdict {
        self.verdict_and_kind(queue, bytes, origin).0
    }

    /// The verdict, and what it did to the packet (for the metrics).
    pub fn verdict_and_kind(
        &mut self,
        queue: u16,
        bytes: &[u8],
        origin: Origin,
    ) -> (Verdict, VerdictKind) {
        let now = self.shared.now();
        // What this crossing asks of the kernel without waiting goes in
        // as few datagrams as the order allows.
        self.exec.kernel_mut().hold();
        let mut kernel = QueueKernel {
            shared: &self.shared,
            exec: &mut self.exec,
            nat: &mut self.nat,
            after_verdict: &mut self.after_verdict,
            carried: &mut self.carried,
        };
        let out = driver::packet(&mut &*self.shared, &mut kernel, now, bytes, origin);
        self.exec.kernel_mut().send_held();
        let adds = self.shared.adds_under_way();
        self.carried.drain(..).for_each(|c| adds.done(&c));
        out.events.iter().for_each(|e| self.shared.log_event(e));
        log_packet(queue, origin, bytes, &out.verdict);
        let kind = VerdictKind::of(&out.verdict, &out.events);
        (out.verdict, kind)
    }

    /// Carries out what waited for the verdict (see `after_verdict`).
    pub fn after_verdict(&mut self) {
        let commands = std::mem::take(&mut self.after_verdict);
        self.exec.batched(|exec| {
            for c in &commands {
                exec.run(c);
            }
        });
    }
}

/// A queue thread's kernel, as the driver core sees it: conntrack answers
/// the mapping, the passive set the notes, the entry its kept state; the
/// executor carries out the commands (the labels once the verdict is
/// sent, an adoption while the connection's other packets wait).
pub(super) struct QueueKernel<'a, K: Kernel, N: NatLookup> {
    pub(super) shared: &'a Shared,
    pub(super) exec: &'a mut Executor<K>,
    pub(super) nat: &'a mut N,
    pub(super) after_verdict: &'a mut Vec<Command>,
    pub(super) carried: &'a mut Vec<Command>,
}

impl<K: Kernel, N: NatLookup + KnownMarks> DriverKernel for QueueKernel<'_, K, N> {
    fn answer(&mut self, q: &Question) -> Answer {
        match q {
            // Conntrack is asked with the engine unlocked.
            Question::Mapping(q) => Answer::Mapping(q.answer_with(self.nat)),
            Question::PassiveNote { client } => {
                Answer::PassiveNote(self.exec.take_passive_note(client))
            }
            Question::KeptState { orig } => Answer::KeptState(self.exec.kept_state(orig)),
        }
    }

    fn carry_out(&mut self, c: &Command) -> Option<CommandOutcome> {
        if c.may_follow_verdict() {
            self.after_verdict.push(c.clone());
            return None;
        }
        let outcome = match c {
            // Verdicts on the connection's packets wait meanwhile.
            Command::AdoptControl(a) => {
                let exec = &mut *self.exec;
                let entries = a.directions.map(|d| GuardEntry::of(&d));
                self.shared.adoptions().during(&entries, || exec.run(c))
            }
            // The master's mark came with its NAT mapping: not asked again.
            Command::CreateRelated(r) => {
                let known = self.nat.known_mark(&r.exp.master);
                self.exec.create_related(r, known)
            }
            _ => self.exec.run(c),
        };
        // Its ipset entry counts as in the kernel once the held requests
        // are sent (see `carried`).
        if matches!(c, Command::ExpectDst { .. }) {
            self.carried.push(c.clone());
        }
        match &outcome {
            Some(CommandOutcome::Adopted { .. }) => self.shared.metrics().adoption(true),
            Some(CommandOutcome::NotAdopted { .. }) => self.shared.metrics().adoption(false),
            _ => {}
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use crate::daemon::metrics::Metrics;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use etherparse::PacketBuilder;
    use ftpct_engine::nat::NoNat;
    use ftpct_engine::{Config, Engine};

    use super::*;
    use crate::daemon::fake_kernel::FakeKernel;
    use crate::netfilter::kept_labels::KeptLabels;
    use crate::netfilter::rules::SetNames;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

    fn segment(
        src: SocketAddrV4,
        dst: SocketAddrV4,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64).tcp(
            src.port(),
            dst.port(),
            seq,
            64240,
        );
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("build");
        out
    }

    /// A control connection's handshake, then one client line.
    fn session(client_port: u16, line: &[u8]) -> Vec<Vec<u8>> {
        let c = SocketAddrV4::new(CLIENT, client_port);
        let s = SocketAddrV4::new(SERVER, 21);
        vec![
            segment(c, s, 1000, None, true, b""),
            segment(s, c, 5000, Some(1001), true, b""),
            segment(c, s, 1001, Some(5001), false, b""),
            segment(c, s, 1001, Some(5001), false, line),
        ]
    }

    fn path(shared: &Arc<Shared>, kernel: FakeKernel) -> PacketPath<FakeKernel, NoNat> {
        let sets = SetNames::new("ftpct").expect("names");
        let exec = Executor::new(kernel, sets, KeptLabels::default());
        PacketPath::new(Arc::clone(shared), exec, NoNat)
    }

    /// An engine without NAT behind its lock.
    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            Engine::new(Config::default()),
            Metrics::default(),
        ))
    }

    /// The kernel call a test's queue holds: it says it started, then
    /// waits for its release.
    enum HeldCall {
        Create,
        IpsetAdd,
    }

    /// A queue whose kernel holds `call`; the news that one started, and
    /// its release.
    fn held_queue(
        shared: &Arc<Shared>,
        call: HeldCall,
    ) -> (
        PacketPath<FakeKernel, NoNat>,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
    ) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let held = Some((entered_tx, release_rx));
        let kernel = match call {
            HeldCall::Create => FakeKernel {
                create_blocks: held,
                ..FakeKernel::default()
            },
            HeldCall::IpsetAdd => FakeKernel {
                add_blocks: held,
                ..FakeKernel::default()
            },
        };
        (path(shared, kernel), entered, release)
    }

    #[test]
    fn a_kernel_call_that_never_answers_holds_up_only_its_own_queue() {
        let shared = shared();
        let (mut queue0, entered, release) = held_queue(&shared, HeldCall::Create);
        let mut queue1 = path(&shared, FakeKernel::default());
        // Queue 0: a session announces port 40001 (156 * 256 + 65).
        for p in session(40000, b"PORT 192,0,2,10,156,65\r\n") {
            queue0.verdict(0, &p, Origin::Network);
        }
        let data_syn = segment(
            SocketAddrV4::new(SERVER, 20),
            SocketAddrV4::new(CLIENT, 40001),
            7000,
            None,
            true,
            b"",
        );
        let stuck = thread::spawn(move || queue0.verdict(0, &data_syn, Origin::Network));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the data SYN's entry is being created");
        // Queue 1, meanwhile: another session, every packet decided.
        let (done_tx, done) = mpsc::channel();
        thread::spawn(move || {
            let verdicts: Vec<Verdict> = session(40100, b"NOOP\r\n")
                .iter()
                .map(|p| queue1.verdict(1, p, Origin::Network))
                .collect();
            let _ = done_tx.send(verdicts);
        });
        let verdicts = done
            .recv_timeout(Duration::from_secs(10))
            .expect("queue 1 is not held up by queue 0's kernel call");
        assert_eq!(verdicts, vec![Verdict::Accept; 4]);
        assert!(!stuck.is_finished(), "queue 0 still waits for the kernel");
        release.send(()).expect("release");
        assert_eq!(stuck.join().expect("queue 0"), Verdict::Accept);
        let matched = shared.with_engine(|e| e.stats().data_matched);
        assert_eq!(matched, Some(1));
    }

    /// The stream case: a direction guarded for a line cut in two, whose
    /// next segments always wait in the queue, is released once the line
    /// is complete, whatever whole lines that cannot matter still wait; a
    /// segment that could matter (ends inside a line, holds a word) keeps
    /// the entry until it is decided.
    #[test]
    fn a_streaming_direction_is_released_past_lines_that_cannot_matter() {
        let cfg = Config {
            selective: true,
            ..Config::default()
        };
        let c = SocketAddrV4::new(CLIENT, 40000);
        let s = SocketAddrV4::new(SERVER, 21);
        let line = |seq, p: &[u8]| segment(c, s, seq, Some(5009), false, p);
        let released = |waiting: &[u8]| {
            let shared = Arc::new(Shared::new(Engine::new(cfg.clone()), Metrics::default()));
            let mut queue = path(&shared, FakeKernel::default());
            // Without NAT both directions share the entry: the server's
            // is at rest once its greeting was seen.
            let mut packets = session(40000, b"");
            packets.push(segment(s, c, 5001, Some(1001), false, b"220 hi\r\n"));
            packets.push(line(1001, b"NOOP\r\nNO"));
            packets.push(line(1009, b"OP\r\n"));
            for p in &packets {
                queue.verdict(0, p, Origin::Network);
            }
            assert!(queue.has_releases(), "the line is complete");
            queue.release_guards(&[&line(1013, waiting)]);
            let calls = &queue.exec.kernel().calls;
            calls.iter().any(|c| c.starts_with("unguard"))
        };
        assert!(released(b""), "an ACK waits");
        assert!(released(&b"NOOP\r\n".repeat(20)), "whole lines wait");
        assert!(!released(b"NOOP\r\nNO"), "a line cut in two waits");
        assert!(!released(b"PORT 192,0,2,10,156,65\r\n"));
    }

    /// An announcement's ipset entry is on its way while its queue thread
    /// is held up (behind an adoption: milliseconds): the supervisor's
    /// check of the sets neither finds it missing nor adds it itself.
    #[test]
    fn an_entry_on_its_way_is_not_missing_from_the_sets() {
        let shared = shared();
        let (mut queue0, entered, release) = held_queue(&shared, HeldCall::IpsetAdd);
        let announced = thread::spawn(move || {
            for p in session(40000, b"PORT 192,0,2,10,156,65\r\n") {
                queue0.verdict(0, &p, Origin::Network);
            }
        });
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the PORT's ipset entry is being added");
        let check = |shared: &Arc<Shared>| {
            let pending = shared.with_engine(|e| e.pending_dsts()).unwrap_or_default();
            let mut supervisor = path(shared, FakeKernel::default()).exec;
            for set in ["ftpct", "ftpct6"] {
                supervisor
                    .kernel_mut()
                    .sets
                    .insert(set.into(), HashSet::new());
            }
            let settled = shared.adds_under_way().settled(pending);
            supervisor.check_sets(&settled, Duration::from_secs(300), &|_| true);
            supervisor.kernel().calls.clone()
        };
        assert_eq!(check(&shared), Vec::<String>::new());
        release.send(()).expect("release");
        announced.join().expect("queue 0");
        assert_eq!(
            check(&shared),
            ["add ftpct 192.0.2.10:40001 300"],
            "added by now: checked again (here against empty sets)"
        );
    }

    /// A session running before ftpct started, whose entry keeps ftpct's
    /// labels, is taken up at its first packet: its pending expectation
    /// and ipset entry come back without a SIGHUP.
    #[test]
    fn a_running_session_with_labels_is_taken_up_at_its_first_packet() {
        use ftpct_engine::grammar::AnnounceKind;
        use ftpct_engine::kept::{Kept, PendingKept};
        use ftpct_engine::nat::{SnatRule, StaticNat};
        use ftpct_engine::tuple::Tuple;

        let cfg = Config {
            kernel_fixups: true,
            keep_state: true,
            ..Config::default()
        };
        let shared = Arc::new(Shared::new(Engine::new(cfg), Metrics::default()));
        let client = SocketAddrV4::new(CLIENT, 40000);
        let server = SocketAddrV4::new(SERVER, 21);
        let orig = Tuple::new(client.into(), server.into());
        let kept = Kept {
            kernel_fixups: true,
            pending: Some(PendingKept {
                kind: AnnounceKind::Port,
                announced_port: 40001,
                public_port: 40001,
            }),
            own_shift: [0, 0],
        };
        let mut kernel = FakeKernel::default();
        let labels = KeptLabels::at(64).encode(&kept).0;
        kernel.kept.insert(orig, (labels, [None, None]));
        let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
        let sets = SetNames::new("ftpct").expect("names");
        let mut path = PacketPath::new(
            Arc::clone(&shared),
            Executor::new(kernel, sets, KeptLabels::at(64)),
            StaticNat::new(vec![rule], Vec::new()),
        );
        let noop = segment(client, server, 5000, Some(9000), false, b"NOOP\r\n");
        assert_eq!(path.verdict(0, &noop, Origin::Network), Verdict::Accept);
        let held = shared.with_engine(|e| (e.flow_count(), e.expectation_count()));
        assert_eq!(held, Some((1, 1)));
        let calls = &path.exec.kernel().calls;
        assert!(calls.contains(&format!("kept {orig}")), "{calls:?}");
        assert!(
            calls.contains(&"add ftpct 198.51.100.1:40001 300".to_string()),
            "{calls:?}"
        );
        // Tracked now: its next packet asks nothing more of conntrack.
        let again = segment(client, server, 5006, Some(9000), false, b"NOOP\r\n");
        path.verdict(0, &again, Origin::Network);
        let kept_calls = path
            .exec
            .kernel()
            .calls
            .iter()
            .filter(|c| c.starts_with("kept"))
            .count();
        assert_eq!(kept_calls, 1);
        // A new announcement's labels are written after its verdict.
        let labels = |path: &PacketPath<FakeKernel, StaticNat>| {
            let calls = &path.exec.kernel().calls;
            calls.iter().filter(|c| c.starts_with("labels")).count()
        };
        let before = labels(&path);
        let port = segment(
            client,
            server,
            5012,
            Some(9000),
            false,
            b"PORT 192,0,2,10,156,66\r\n",
        );
        assert!(matches!(
            path.verdict(0, &port, Origin::Network),
            Verdict::Replace(_)
        ));
        assert_eq!(labels(&path), before, "not before the verdict");
        path.after_verdict();
        assert_eq!(labels(&path), before + 1, "after it");
    }
}
