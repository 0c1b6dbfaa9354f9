//! `ftpct run`: the live driver around the engine.
//!
//! One thread per NFQUEUE queue, blocking in `recv` (a sleep-and-poll loop
//! would delay every packet). The engine is shared behind one mutex: after
//! NAT the two directions of a control connection can hash to different
//! queues. The kernel actions an event asks for (ipset add/del, the data
//! connection's conntrack entry) run under that mutex too, in event order,
//! before the packet's verdict: the expected SYN must find its ipset entry.
//!
//! The main thread keeps SIGINT/SIGTERM/SIGHUP blocked and waits for them
//! with `sigtimedwait`, waking once a second to run the engine's timers. To
//! stop, it sets a flag and sends SIGUSR1 to each queue thread: the handler
//! does nothing, but it is installed without SA_RESTART, so a `recv` that
//! blocks returns EINTR (nfq 0.2.5 gives no access to its socket to poll).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nfq::{Message, Queue};
use tracing::{debug, error, info, warn};

use crate::cli::logging::RateLimit;
use crate::cli::report;
use crate::netfilter::conntrack_lookup::LiveNat;
use crate::netfilter::ctnetlink::{CtDir, Ctnetlink, DataConnection, NatBinding};
use crate::netfilter::ipset::Ipset;
use crate::netfilter::rule_watch::RuleWatch;
use crate::netfilter::rules::{self, SetNames};
use ftpct_engine::engine::{Config, Engine, Hook, Outcome, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::expect::Expectation;
use ftpct_engine::nat::NatLookup;
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::TcpPacket;

/// Conntrack timeout of a data connection created at its SYN; conntrack's
/// TCP tracking takes over from the first answer.
pub const DATA_TIMEOUT_SECS: u32 = 120;
/// How often the engine's timers run when no packet comes.
const TICK: Duration = Duration::from_secs(1);
/// How often freed memory is given back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);
/// Kernel queue length per queue (packets waiting for a verdict).
const QUEUE_MAX_LEN: u32 = 4096;
/// Receive buffer asked for each queue's netlink socket (the kernel doubles
/// it). The default, net.core.rmem_default (208 KiB), holds only ~200
/// queued packets: a longer burst overflowed the socket, and with fail-open
/// those packets passed uninspected (measured by scripts/bench.sh: a third
/// of a streaming control connection; a connection with a rewrite then
/// loses its sequence fix-up and its stream is corrupted). This holds
/// QUEUE_MAX_LEN full-size packets; memory is only taken while they wait.
const QUEUE_RCVBUF: usize = 16 << 20;
/// Consecutive `recv` failures after which a queue is given up.
const MAX_RECV_ERRORS: u32 = 1000;
/// How long the queue threads get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Netfilter hook numbers (enum nf_inet_hooks) that nfq reports.
const NF_INET_LOCAL_OUT: u8 = 3;
/// CAP_NET_ADMIN's bit in /proc/self/status CapEff.
const CAP_NET_ADMIN: u32 = 12;

/// `--mark VALUE[/MASK]`: conntrack mark bits given to data connections;
/// the other bits are inherited from the control connection, as the
/// kernel does for an expected connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

impl Mark {
    /// The mark of a data connection whose master carries `inherited`.
    pub fn apply(&self, inherited: u32) -> u32 {
        (inherited & !self.mask) | (self.value & self.mask)
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("'{s}' is not a 32-bit number (decimal or 0x hex)"))
}

impl FromStr for Mark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (value, mask) = match s.split_once('/') {
            Some((v, m)) => (parse_u32(v)?, parse_u32(m)?),
            None => (parse_u32(s)?, u32::MAX),
        };
        if value & !mask != 0 {
            return Err(format!("--mark {s}: the value has bits outside the mask"));
        }
        Ok(Mark { value, mask })
    }
}

/// The data connection's mark: `--mark` over the master's, or the master's.
pub fn data_mark(mark: Option<Mark>, inherited: Option<u32>) -> Option<u32> {
    let inherited = inherited.unwrap_or(0);
    match mark {
        Some(m) => Some(m.apply(inherited)),
        None => (inherited != 0).then_some(inherited),
    }
}

/// The conntrack entry to create for a data connection whose SYN has
/// `tuple` and matched `exp`: the follow-master NAT bindings the engine
/// planned (source address only; destination address and port).
pub fn data_connection(tuple: &Tuple, exp: &Expectation, mark: Option<u32>) -> DataConnection {
    DataConnection {
        tuple: *tuple,
        master: exp.master,
        nat_src: exp.nat.src.map(|addr| NatBinding { addr, port: None }),
        nat_dst: exp.nat.dst.map(|d| NatBinding {
            addr: d.ip(),
            port: Some(d.port()),
        }),
        timeout_secs: DATA_TIMEOUT_SECS,
        mark,
    }
}

/// What `ftpct run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub queues: Vec<u16>,
    pub config: Config,
    pub mark: Option<Mark>,
    /// Base name of the ipsets (IPv4; IPv6 adds "6").
    pub ipset: String,
    /// How often a `state:` line with the live figures is logged (None: never).
    pub state_interval: Option<Duration>,
    /// SCHED_RR priority of ftpct's threads (0: the normal scheduler).
    pub realtime_priority: u8,
}

/// Why the daemon could not start, or stopped on its own: one line that
/// says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonError(pub String);

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonError {}

fn fail<T>(msg: String) -> Result<T, DaemonError> {
    Err(DaemonError(msg))
}

/// The kernel operations events turn into (a trait so the mapping is
/// testable without root).
pub trait Kernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout_secs: u32) -> io::Result<()>;
    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> io::Result<()>;
    /// The conntrack mark of the connection whose original tuple is `orig`.
    fn ct_mark(&mut self, orig: &Tuple) -> io::Result<Option<u32>>;
    fn create_related(&mut self, dc: &DataConnection) -> io::Result<()>;
    /// No TCP window checks on the control connection `orig` any more.
    fn set_liberal(&mut self, orig: &Tuple) -> io::Result<()>;
    /// The entry that holds `tuple` in either direction: its original
    /// tuple and TCP state.
    fn ct_entry(&mut self, tuple: &Tuple) -> io::Result<Option<(Tuple, Option<u8>)>>;
    fn ct_delete(&mut self, orig: &Tuple) -> io::Result<()>;
    /// Creates the set when it is missing; true if it had to.
    fn ensure_set(&mut self, set: &str, v6: bool) -> io::Result<bool>;
    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> io::Result<bool>;
}

/// The real kernel: one ctnetlink and one ipset socket.
pub struct LiveKernel {
    ct: Ctnetlink,
    ipset: Ipset,
}

impl Kernel for LiveKernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout_secs: u32) -> io::Result<()> {
        self.ipset.add(set, dst.ip(), dst.port(), timeout_secs)
    }

    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> io::Result<()> {
        self.ipset.del(set, dst.ip(), dst.port())
    }

    fn ct_mark(&mut self, orig: &Tuple) -> io::Result<Option<u32>> {
        Ok(self.ct.get(orig, CtDir::Orig)?.map(|e| e.mark))
    }

    fn create_related(&mut self, dc: &DataConnection) -> io::Result<()> {
        self.ct.create_related(dc)
    }

    fn set_liberal(&mut self, orig: &Tuple) -> io::Result<()> {
        self.ct.set_liberal(orig)
    }

    fn ct_entry(&mut self, tuple: &Tuple) -> io::Result<Option<(Tuple, Option<u8>)>> {
        for dir in [CtDir::Orig, CtDir::Reply] {
            if let Some(info) = self.ct.get_info(tuple, dir)? {
                return Ok(Some((info.entry.orig, info.tcp_state)));
            }
        }
        Ok(None)
    }

    fn ct_delete(&mut self, orig: &Tuple) -> io::Result<()> {
        self.ct.delete(orig)
    }

    fn ensure_set(&mut self, set: &str, v6: bool) -> io::Result<bool> {
        rules::ensure_set(&mut self.ipset, set, v6)
    }

    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> io::Result<bool> {
        self.ipset.test(set, dst.ip(), dst.port())
    }
}

impl LiveKernel {
    /// Opens both sockets, checks that the kernel answers, and makes sure
    /// the sets exist (created if missing) and start empty.
    pub fn open(sets: &SetNames) -> Result<Self, DaemonError> {
        let ct = open_ctnetlink()?;
        let mut ipset = Ipset::open().or_else(|e| {
            fail(format!(
                "ipset is not usable ({e}): load it with `modprobe ip_set_hash_ipport`"
            ))
        })?;
        for (name, v6) in sets.both() {
            rules::ensure_set(&mut ipset, name, v6).or_else(|e| {
                fail(format!(
                    "ipset {name}: {e}: remove it (ipset destroy {name}) or choose another --ipset"
                ))
            })?;
            // Entries left by an earlier run expect nothing any more.
            ipset
                .flush(name)
                .or_else(|e| fail(format!("ipset {name}: flush failed: {e}")))?;
        }
        Ok(LiveKernel { ct, ipset })
    }
}

/// A ctnetlink socket that has answered one lookup.
fn open_ctnetlink() -> Result<Ctnetlink, DaemonError> {
    let mut ct = Ctnetlink::open().or_else(|e| fail(format!("ctnetlink: {e}")))?;
    // Finding nothing proves that conntrack answers over netlink.
    let probe = Tuple::new(
        SocketAddr::from(([192, 0, 2, 0], 9)),
        SocketAddr::from(([192, 0, 2, 0], 9)),
    );
    ct.get(&probe, CtDir::Orig).or_else(|e| {
        fail(format!(
            "conntrack does not answer over netlink ({e}): load it with `modprobe nf_conntrack_netlink`"
        ))
    })?;
    Ok(ct)
}

/// TCP conntrack states in which a SYN opens the tuple again (conntrack
/// itself then replaces the entry): TIME_WAIT and CLOSE.
const TCP_TIME_WAIT: u8 = 7;
const TCP_CLOSE: u8 = 8;

/// conntrack's name of a TCP state number.
fn tcp_state_name(state: Option<u8>) -> &'static str {
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    state
        .and_then(|s| NAMES.get(usize::from(s)).copied())
        .unwrap_or("unknown")
}

/// Pending destinations checked against the kernel's sets per second (a
/// flushed set is noticed within pending/64 seconds).
const SET_CHECKS_PER_TICK: usize = 64;

/// Turns events into kernel operations, and remembers the ipset entries
/// it added so they can be removed at exit.
pub struct Actions<K: Kernel> {
    kernel: K,
    sets: SetNames,
    expect_timeout_secs: u32,
    mark: Option<Mark>,
    /// Destinations in the sets, with the peers expected there (an FXP
    /// destination can expect several): the entry goes with the last one.
    pending: HashMap<SocketAddr, HashSet<IpAddr>>,
    /// Control connections whose conntrack entry no longer checks windows.
    liberal: HashSet<Tuple>,
    /// Where the round-robin check of pending destinations goes on.
    check_cursor: usize,
}

impl<K: Kernel> Actions<K> {
    pub fn new(kernel: K, sets: SetNames, expect_timeout: Duration, mark: Option<Mark>) -> Self {
        Actions {
            kernel,
            sets,
            expect_timeout_secs: u32::try_from(expect_timeout.as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
            mark,
            pending: HashMap::new(),
            liberal: HashSet::new(),
            check_cursor: 0,
        }
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Number of destinations currently in the sets because of us.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Carries out what `e` asks of the kernel; failures are logged.
    /// Returns an expectation the engine must take back: its data
    /// connection could not be created, and the client's retried SYN
    /// must find it again (ipset entry included).
    pub fn apply(&mut self, e: &Event) -> Option<Expectation> {
        match e {
            Event::ExpectationAdded(exp) => self.expect(exp),
            Event::ExpectationRemoved { exp, .. } => self.forget(exp),
            Event::DataMatched { tuple, exp } => {
                if !self.create(tuple, exp) {
                    return Some(exp.clone());
                }
                self.forget(exp);
            }
            Event::Rewritten { flow, .. } => self.make_liberal(flow),
            Event::FlowClosed { flow } => {
                self.liberal.remove(flow);
            }
            _ => {}
        }
        None
    }

    fn expect(&mut self, exp: &Expectation) {
        self.pending.entry(exp.dst).or_default().insert(exp.peer);
        let set = self.sets.for_ip(exp.dst.ip());
        // Re-adding refreshes the timeout of an entry already there.
        if let Err(e) = self
            .kernel
            .ipset_add(set, exp.dst, self.expect_timeout_secs)
        {
            warn!(flow = %exp.master, "ipset add {} to {set} failed: {e}: that data connection will not be helped", exp.dst);
        }
    }

    fn forget(&mut self, exp: &Expectation) {
        let Some(peers) = self.pending.get_mut(&exp.dst) else {
            return;
        };
        peers.remove(&exp.peer);
        if !peers.is_empty() {
            return;
        }
        self.pending.remove(&exp.dst);
        let set = self.sets.for_ip(exp.dst.ip());
        if let Err(e) = self.kernel.ipset_del(set, exp.dst) {
            warn!(flow = %exp.master, "ipset del {} from {set} failed: {e}", exp.dst);
        }
    }

    /// A rewrite changes lengths before conntrack sees the segment, so its
    /// window tracking of this connection would be off by the shift (see
    /// `ctnetlink::encode_set_liberal`): turned off, once per connection.
    fn make_liberal(&mut self, flow: &Tuple) {
        if !self.liberal.insert(*flow) {
            return;
        }
        if let Err(e) = self.kernel.set_liberal(flow) {
            warn!(flow = %flow, "turning off conntrack's window checks failed: {e}: the session may stall after this rewrite");
        }
    }

    /// Creates the data connection's entry; true when it is in conntrack
    /// as ftpct made it (or as it already was, in a state a SYN does not
    /// reopen). Says what happened, and only that.
    fn create(&mut self, tuple: &Tuple, exp: &Expectation) -> bool {
        let inherited = self.kernel.ct_mark(&exp.master).unwrap_or_else(|e| {
            debug!(flow = %exp.master, "reading the control connection's mark failed: {e}");
            None
        });
        let dc = data_connection(tuple, exp, data_mark(self.mark, inherited));
        let mut replaced = None;
        let mut result = self.kernel.create_related(&dc);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
            match self.reopen(tuple) {
                Ok(Reopen::Replaced(state)) => {
                    replaced = Some(state);
                    result = self.kernel.create_related(&dc);
                }
                Ok(Reopen::Live(state)) => {
                    info!(flow = %exp.master, "data connection {tuple}: conntrack already tracks it ({}): left as it is, not made RELATED by ftpct", tcp_state_name(state));
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
                info!(flow = %exp.master, event = "data-matched", "data connection {tuple} matched, RELATED, {}{reuse}", exp.nat);
                true
            }
            Err(e) => {
                warn!(
                    flow = %exp.master,
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
    fn reopen(&mut self, tuple: &Tuple) -> io::Result<Reopen> {
        let Some((orig, state)) = self.kernel.ct_entry(tuple)? else {
            // Gone meanwhile (it timed out): create again.
            return Ok(Reopen::Replaced(None));
        };
        if !matches!(state, Some(TCP_TIME_WAIT | TCP_CLOSE)) {
            return Ok(Reopen::Live(state));
        }
        match self.kernel.ct_delete(&orig) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(Reopen::Replaced(state)),
        }
    }

    /// Makes sure the sets exist and hold every pending destination: a
    /// `rules --delete`, `ipset destroy` or `ipset flush` under a running
    /// ftpct is noticed, said, and repaired (a part of the pending
    /// destinations is checked on each call).
    pub fn check_sets(&mut self) {
        let sets = self.sets.clone();
        for (set, v6) in sets.both() {
            match self.kernel.ensure_set(set, v6) {
                Ok(false) => {}
                Ok(true) => {
                    warn!("ipset {set} was gone (ftpct rules --delete, ipset destroy?): created it again and restored its pending entries; the rules that use it may be gone too: ftpct rules --apply");
                    self.restore(|dst| dst.is_ipv6() == v6);
                }
                Err(e) => warn!("ipset {set} cannot be checked: {e}"),
            }
        }
        let mut dsts: Vec<SocketAddr> = self.pending.keys().copied().collect();
        if dsts.is_empty() {
            return;
        }
        dsts.sort_unstable();
        let start = self.check_cursor % dsts.len();
        let batch: Vec<SocketAddr> = dsts
            .iter()
            .cycle()
            .skip(start)
            .take(SET_CHECKS_PER_TICK.min(dsts.len()))
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
            warn!(
                "{} pending data connection(s) were missing from the ipsets (ipset flush?): added again",
                missing.len()
            );
            self.restore(|dst| missing.contains(dst));
        }
    }

    fn restore(&mut self, which: impl Fn(&SocketAddr) -> bool) {
        let dsts: Vec<SocketAddr> = self.pending.keys().copied().filter(|d| which(d)).collect();
        for dst in dsts {
            let set = self.sets.for_ip(dst.ip());
            if let Err(e) = self.kernel.ipset_add(set, dst, self.expect_timeout_secs) {
                warn!("ipset add {dst} to {set} failed: {e}");
            }
        }
    }

    /// Removes every set entry we added; returns how many.
    pub fn cleanup(&mut self) -> usize {
        let dsts: Vec<SocketAddr> = self.pending.drain().map(|(dst, _)| dst).collect();
        for dst in &dsts {
            let set = self.sets.for_ip(dst.ip());
            if let Err(e) = self.kernel.ipset_del(set, *dst) {
                warn!("ipset del {dst} from {set} failed: {e}");
            }
        }
        dsts.len()
    }
}

/// What an existing entry of a data connection's tuple turned out to be.
enum Reopen {
    /// It was closing (or gone): removed; its state.
    Replaced(Option<u8>),
    /// A live connection: left alone; its state.
    Live(Option<u8>),
}

/// What the queue threads share.
struct Core<K: Kernel, N: NatLookup> {
    engine: Engine,
    nat: N,
    actions: Actions<K>,
}

impl<K: Kernel, N: NatLookup> Core<K, N> {
    /// The engine's decision on one packet, its kernel actions carried out.
    fn step(&mut self, bytes: &[u8], now: Duration, hook: Hook) -> Outcome {
        let Core {
            engine,
            nat,
            actions,
        } = self;
        // A bug must cost one packet's inspection, not the gateway's FTP.
        let out = catch_unwind(AssertUnwindSafe(|| engine.process(bytes, now, hook, nat)))
            .unwrap_or_else(|_| {
                error!(
                    "the engine panicked on a packet: passed unchanged (a bug, please report it)"
                );
                Outcome {
                    verdict: Verdict::Accept,
                    events: Vec::new(),
                    commands: Vec::new(),
                }
            });
        for e in &out.events {
            if let Some(exp) = actions.apply(e) {
                engine.reinstate(exp);
            }
        }
        out
    }

    fn tick(&mut self, now: Duration) -> Vec<Event> {
        let events = self.engine.tick(now).events;
        for e in &events {
            self.actions.apply(e);
        }
        self.actions.check_sets();
        events
    }
}

type LiveCore = Core<LiveKernel, LiveNat>;

struct Shared {
    core: Mutex<LiveCore>,
    /// Log lines about hostile input, limited per kind.
    hostile_lines: Mutex<RateLimit>,
    start: Instant,
    /// Set by a queue thread that gave up: the daemon stops with this.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LiveCore> {
        // A panic is caught inside `step`; a poisoned lock still holds usable state.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn process(&self, queue: u16, bytes: &[u8], hook: Hook) -> Verdict {
        let out = self.lock().step(bytes, self.now(), hook);
        out.events.iter().for_each(|e| self.log_event(e));
        log_packet(queue, hook, bytes, &out.verdict);
        out.verdict
    }

    fn tick(&self) {
        let events = self.lock().tick(self.now());
        events.iter().for_each(|e| self.log_event(e));
        let held_back = self
            .hostile_lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expire(Instant::now());
        for (kind, n) in held_back {
            warn!(
                event = kind,
                "{n} more '{kind}' lines held back (at most {HOSTILE_LINES_BURST} per {}s)",
                HOSTILE_LINES_WINDOW.as_secs()
            );
        }
    }

    /// Logs an event; those about hostile input within their rate limit.
    fn log_event(&self, e: &Event) {
        if is_hostile(e) {
            let admitted = self
                .hostile_lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(e.kind(), Instant::now());
            if !admitted {
                return;
            }
        }
        log_event(e);
    }

    fn set_failure(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert(why);
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live figures on one line: what is held now, then the counters.
    fn log_state(&self) {
        let core = self.lock();
        info!(
            "state: flows={} expectations={} ipset_entries={} {}",
            core.engine.flow_count(),
            core.engine.expectation_count(),
            core.actions.pending(),
            report::stats_line(core.engine.stats())
        );
    }

    fn finish(&self) {
        let mut core = self.lock();
        let removed = core.actions.cleanup();
        let lookups = core.nat.stats();
        info!(
            "stopped: {removed} ipset entries removed; {}; conntrack lookups {} (cache hits {}, errors {})",
            report::stats_line(core.engine.stats()),
            lookups.queries,
            lookups.hits,
            lookups.errors
        );
    }
}

/// Lines of each kind of hostile input logged per window, at most.
const HOSTILE_LINES_BURST: u32 = 20;
const HOSTILE_LINES_WINDOW: Duration = Duration::from_secs(10);

/// Events that anyone can cause at will by sending bytes.
fn is_hostile(e: &Event) -> bool {
    matches!(
        e,
        Event::Malformed { .. }
            | Event::Overlong { .. }
            | Event::Refused { .. }
            | Event::TableFull { .. }
            | Event::Resynced { .. }
            | Event::HeldLineReleased { .. }
    )
}

/// One line per decision at info, the rest at debug.
fn log_event(e: &Event) {
    let flow = e.flow();
    match e {
        // FlowNew at a SYN cannot know the NAT mapping yet: it would mislead.
        Event::FlowNew { .. }
        | Event::FlowClosed { .. }
        | Event::Line { .. }
        | Event::Recognised { .. }
        | Event::Dropped { .. }
        // The kernel actions say whether the data connection was made.
        | Event::DataMatched { .. }
        | Event::ExpectationRemoved { .. } => debug!(event = e.kind(), flow = %flow, "{e}"),
        Event::TableFull { .. } => warn!(event = e.kind(), flow = %flow, "{e}"),
        _ => info!(event = e.kind(), flow = %flow, "{e}"),
    }
}

fn log_packet(queue: u16, hook: Hook, bytes: &[u8], verdict: &Verdict) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let verdict = match verdict {
        Verdict::Accept => "accept",
        Verdict::Replace(_) => "accept rewritten",
        Verdict::Drop => "drop",
    };
    match TcpPacket::parse(bytes) {
        Ok(p) => debug!(
            queue,
            ?hook,
            "{} seq {} len {}: {verdict}",
            p.tuple,
            p.seq,
            p.payload().len()
        ),
        Err(_) => debug!(queue, ?hook, "{} bytes, not TCP: {verdict}", bytes.len()),
    }
}

/// Where nfq says the packet was queued: raw OUTPUT, or else PREROUTING.
fn hook_of(nf_hook: u8) -> Hook {
    if nf_hook == NF_INET_LOCAL_OUT {
        Hook::Output
    } else {
        Hook::Prerouting
    }
}

/// One queue and its thread.
struct Worker {
    num: u16,
    queue: Queue,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        let mut errors = 0;
        while !self.stop.load(Ordering::Acquire) {
            match self.queue.recv() {
                Ok(msg) => {
                    errors = 0;
                    self.handle(msg);
                }
                // The wake-up signal, or any other: look at the stop flag.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        let why = format!("queue {}: receiving keeps failing: {e}", self.num);
                        error!("{why}");
                        self.shared.set_failure(why);
                        break;
                    }
                    // It can be the kernel's answer to an earlier verdict.
                    debug!(queue = self.num, "recv: {e}");
                }
            }
        }
        if let Err(e) = self.queue.unbind(self.num) {
            debug!(queue = self.num, "unbind: {e}");
        }
    }

    fn handle(&mut self, mut msg: Message) {
        let hook = hook_of(msg.get_hook());
        // Never edit a truncated copy (not expected: GSO is not asked for).
        let verdict = if msg.get_original_len() > msg.get_payload().len() {
            Verdict::Accept
        } else {
            self.shared.process(self.num, msg.get_payload(), hook)
        };
        match verdict {
            Verdict::Accept => msg.set_verdict(nfq::Verdict::Accept),
            Verdict::Replace(bytes) => {
                msg.set_payload(bytes);
                msg.set_verdict(nfq::Verdict::Accept);
            }
            Verdict::Drop => msg.set_verdict(nfq::Verdict::Drop),
        }
        if let Err(e) = self.queue.verdict(msg) {
            warn!(queue = self.num, "verdict failed: {e}");
        }
    }
}

/// Tells the supervisor a queue thread ended, even when it panicked.
struct ExitReport {
    num: u16,
    done: mpsc::Sender<u16>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let _ = self.done.send(self.num);
    }
}

/// True unless /proc says we lack CAP_NET_ADMIN.
fn has_net_admin() -> bool {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        });
    caps.is_none_or(|c| c & (1 << CAP_NET_ADMIN) != 0)
}

fn bind_error(num: u16, e: &io::Error) -> DaemonError {
    let why = match e.raw_os_error() {
        // With CAP_NET_ADMIN checked, EPERM means another socket owns it.
        Some(libc::EPERM) | Some(libc::EBUSY) => format!(
            "NFQUEUE queue {num} is already bound by another program (another ftpct?): stop it or use another --queue"
        ),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOENT) | Some(libc::EPROTONOSUPPORT) => format!(
            "the kernel has no NFQUEUE support ({e}): load it with `modprobe nfnetlink_queue` (CONFIG_NETFILTER_NETLINK_QUEUE)"
        ),
        _ => format!("cannot bind NFQUEUE queue {num}: {e}"),
    };
    DaemonError(why)
}

fn open_queue(num: u16) -> Result<Queue, DaemonError> {
    let mut q = Queue::open().or_else(|e| fail(format!("cannot open an NFQUEUE socket: {e}")))?;
    q.bind(num).map_err(|e| bind_error(num, &e))?;
    // A full queue lets packets through rather than dropping them.
    if let Err(e) = q.set_fail_open(num, true) {
        warn!(queue = num, "fail-open not set: {e}");
    }
    if let Err(e) = q.set_queue_max_len(num, QUEUE_MAX_LEN) {
        warn!(queue = num, "queue length not set: {e}");
    }
    match queue_socket::grow_rcvbuf(num, QUEUE_RCVBUF) {
        Ok(bytes) => debug!(queue = num, "socket receive buffer: {bytes} bytes"),
        Err(e) => warn!(
            queue = num,
            "socket receive buffer not enlarged ({e}): bursts over ~200 packets pass uninspected"
        ),
    }
    Ok(q)
}

/// The queue's netlink socket, which nfq 0.2.5 does not expose: found by
/// its netlink port id, the one the kernel lists as the queue's peer.
mod queue_socket {
    use std::io;
    use std::os::fd::RawFd;

    /// The port id bound to queue `num` in this network namespace.
    fn peer_portid(num: u16) -> io::Result<u32> {
        let table = std::fs::read_to_string("/proc/self/net/netfilter/nfnetlink_queue")?;
        table
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()?.parse::<u16>().ok()? == num).then(|| f.next()?.parse().ok())?
            })
            .ok_or_else(|| io::Error::other(format!("queue {num} not in nfnetlink_queue")))
    }

    /// The port id of `fd` if it is a netlink socket.
    fn netlink_portid(fd: RawFd) -> Option<u32> {
        // SAFETY: a zeroed sockaddr_nl is valid; getsockname writes at most
        // `len` bytes into it and fails harmlessly on a descriptor that is
        // not a socket.
        unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let rc = libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len);
            (rc == 0 && i32::from(sa.nl_family) == libc::AF_NETLINK).then_some(sa.nl_pid)
        }
    }

    fn sockopt(fd: RawFd, opt: libc::c_int, value: Option<libc::c_int>) -> io::Result<libc::c_int> {
        let mut v = value.unwrap_or(0);
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let p = (&mut v as *mut libc::c_int).cast();
        // SAFETY: `v` is a c_int that outlives the call, and `len` its size.
        let rc = unsafe {
            match value {
                Some(_) => libc::setsockopt(fd, libc::SOL_SOCKET, opt, p, len),
                None => libc::getsockopt(fd, libc::SOL_SOCKET, opt, p, &mut len),
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }

    /// Sets the receive buffer of queue `num`'s socket (SO_RCVBUFFORCE:
    /// above net.core.rmem_max, as root); returns the size now in force.
    pub fn grow_rcvbuf(num: u16, bytes: usize) -> io::Result<usize> {
        let portid = peer_portid(num)?;
        let fd = std::fs::read_dir("/proc/self/fd")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            .find(|&fd| netlink_portid(fd) == Some(portid))
            .ok_or_else(|| io::Error::other("its socket was not found"))?;
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        sockopt(fd, libc::SO_RCVBUFFORCE, Some(want))?;
        let now = sockopt(fd, libc::SO_RCVBUF, None)?;
        Ok(usize::try_from(now).unwrap_or(0))
    }
}

/// Signal plumbing; every `unsafe` block here is a plain libc call.
mod signals {
    use std::io;
    use std::os::unix::thread::JoinHandleExt;
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// Sent to a queue thread to interrupt its blocking `recv`.
    pub const WAKE: libc::c_int = libc::SIGUSR1;

    /// SIGINT, SIGTERM and SIGHUP, blocked and waited for.
    pub struct StopSignals {
        set: libc::sigset_t,
    }

    impl StopSignals {
        /// Blocks them in this thread, and so in every thread it starts
        /// afterwards: they stay pending until [`StopSignals::wait`].
        pub fn block() -> io::Result<Self> {
            // SAFETY: a zeroed sigset_t is valid storage; sigemptyset then
            // initialises it, sigaddset only sets bits, and pthread_sigmask
            // reads it and accepts a null pointer for the old mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::sigaddset(&mut set, s);
                }
                let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                if rc != 0 {
                    return Err(io::Error::from_raw_os_error(rc));
                }
                Ok(StopSignals { set })
            }
        }

        /// The stop signal that arrived within `timeout`, if any.
        pub fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(1),
                // Below 10^9: fits every c_long.
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `set` was initialised in block(), `ts` lives across the
            // call, and a null siginfo pointer is allowed.
            let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            (sig > 0).then_some(sig)
        }
    }

    /// Async-signal-safe: does nothing; its only effect is the EINTR.
    extern "C" fn on_wake(_: libc::c_int) {}

    /// Installs the SIGUSR1 handler, without SA_RESTART.
    pub fn install_wake_handler() -> io::Result<()> {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler is an extern "C" fn with the signature sa_handler expects,
        // valid for the life of the program; the old action pointer may be null.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(WAKE, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Interrupts whatever the thread blocks in.
    pub fn wake(thread: &JoinHandle<()>) {
        // SAFETY: the handle is not joined yet, so its pthread_t names a
        // thread that is running or finished-but-unjoined: both are valid
        // targets for pthread_kill. WAKE has a handler, so it cannot kill.
        unsafe {
            libc::pthread_kill(thread.as_pthread_t(), WAKE);
        }
    }
}

fn spawn_workers(
    queues: Vec<(u16, Queue)>,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
    done: &mpsc::Sender<u16>,
) -> Result<HashMap<u16, JoinHandle<()>>, DaemonError> {
    let mut handles = HashMap::new();
    for (num, queue) in queues {
        let worker = Worker {
            num,
            queue,
            shared: Arc::clone(shared),
            stop: Arc::clone(stop),
        };
        let report = ExitReport {
            num,
            done: done.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("queue-{num}"))
            .spawn(move || {
                let _report = report;
                worker.run();
            })
            .or_else(|e| fail(format!("cannot start the thread of queue {num}: {e}")))?;
        handles.insert(num, handle);
    }
    Ok(handles)
}

/// Runs the timers until a stop signal or a queue failure; returns the failure.
fn supervise(
    shared: &Shared,
    signals: &signals::StopSignals,
    state_interval: Option<Duration>,
    rules: &mut RuleWatch,
) -> Option<String> {
    let mut next_state = state_interval.map(|i| Instant::now() + i);
    let mut next_trim = Instant::now() + TRIM_EVERY;
    loop {
        if Instant::now() >= next_trim {
            give_back_memory();
            next_trim += TRIM_EVERY;
        }
        rules.check(&mut rules::System, Instant::now());
        if let (Some(at), Some(every)) = (next_state, state_interval) {
            if Instant::now() >= at {
                shared.log_state();
                next_state = Some(at + every);
            }
        }
        if let Some(sig) = signals.wait(TICK) {
            info!("signal {sig}: stopping");
            return None;
        }
        if let Some(why) = shared.failure() {
            return Some(why);
        }
        shared.tick();
    }
}

/// Stops the queue threads: flag, then wake-ups until each has reported
/// (a wake-up can land just before `recv` blocks, so it is repeated).
fn stop_workers(
    mut running: HashMap<u16, JoinHandle<()>>,
    stop: &AtomicBool,
    done: &mpsc::Receiver<u16>,
) {
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + STOP_GRACE;
    while !running.is_empty() && Instant::now() < deadline {
        running.values().for_each(signals::wake);
        if let Ok(num) = done.recv_timeout(Duration::from_millis(50)) {
            if let Some(h) = running.remove(&num) {
                let _ = h.join();
            }
        }
    }
    if !running.is_empty() {
        let left: Vec<u16> = running.keys().copied().collect();
        warn!("queue threads {left:?} did not stop in time");
    }
}

/// Returns the heap memory freed after a peak (a flood, a busy hour) to
/// the system: glibc keeps freed pages otherwise, and the RSS would stay
/// at the peak (the engine's tables shrink on their own).
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it walks glibc's own heap
    // under glibc's own locks and only releases pages nothing uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Puts this thread, and the threads it starts afterwards, in the
/// real-time round-robin class at `priority`: ftpct is on the packet path,
/// where the kernel's own helper runs in softirq, ahead of every process.
/// Under the normal scheduler a busy gateway (here: the lab's 200 client
/// threads and servers on the same two CPUs) kept queued packets waiting
/// for seconds. Programs ftpct starts (iptables-save) go back to normal
/// (SCHED_RESET_ON_FORK). The kernel's RT throttling keeps 5 % of each
/// second for the rest even if ftpct spun.
fn set_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0
    // is the calling thread; the policy and flag are constants the kernel
    // checks itself.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Claims the ipsets for this process, in this network namespace: the
/// run that owns them flushes them at start and empties them at exit, so
/// a second run (on other queues) must not share them. The claim is an
/// abstract unix socket named after the sets: those live per network
/// namespace and go with the process, even after `kill -9`.
fn claim_sets(sets: &SetNames) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ftpct-ipsets-{}-{}", sets.v4, sets.v6);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .or_else(|e| fail(format!("cannot name the ipset claim {name}: {e}")))?;
    std::os::unix::net::UnixListener::bind_addr(&addr).or_else(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            fail(format!(
                "another ftpct run in this network namespace uses the ipsets {} and {}: stop it, or give this one its own sets (--ipset NAME here and in `ftpct rules --ipset NAME`)",
                sets.v4, sets.v6
            ))
        } else {
            fail(format!("cannot claim the ipsets {} and {}: {e}", sets.v4, sets.v6))
        }
    })
}

/// Sets up, runs until SIGINT/SIGTERM/SIGHUP, cleans up.
pub fn run(opts: Options) -> Result<(), DaemonError> {
    let signals = signals::StopSignals::block()
        .or_else(|e| fail(format!("cannot block stop signals: {e}")))?;
    signals::install_wake_handler()
        .or_else(|e| fail(format!("cannot install the SIGUSR1 handler: {e}")))?;
    if !has_net_admin() {
        return fail("ftpct run needs root (CAP_NET_ADMIN): run it as root, e.g. with sudo".into());
    }
    let mut queues_wanted = opts.queues.clone();
    queues_wanted.sort_unstable();
    queues_wanted.dedup();
    let sets = SetNames::new(&opts.ipset).or_else(|e| fail(format!("--ipset: {e}")))?;
    // Queues first: a second instance must fail before it flushes the sets.
    let queues = queues_wanted
        .iter()
        .map(|&n| open_queue(n).map(|q| (n, q)))
        .collect::<Result<Vec<_>, _>>()?;
    let _owner = claim_sets(&sets)?;
    let kernel = LiveKernel::open(&sets)?;
    let nat = LiveNat::new(open_ctnetlink()?);
    let mut config = opts.config;
    config.report_lines = tracing::enabled!(tracing::Level::DEBUG);
    let actions = Actions::new(kernel, sets.clone(), config.expect_timeout, opts.mark);
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            engine: Engine::new(config.clone()),
            nat,
            actions,
        }),
        hostile_lines: Mutex::new(RateLimit::new(HOSTILE_LINES_WINDOW, HOSTILE_LINES_BURST)),
        start: Instant::now(),
        failure: Mutex::new(None),
    });
    if opts.realtime_priority > 0 {
        match set_realtime(opts.realtime_priority) {
            Ok(()) => debug!("scheduling: SCHED_RR priority {}", opts.realtime_priority),
            Err(e) => warn!(
                "cannot run at real-time priority {} ({e}; needs CAP_SYS_NICE): on a busy gateway queued packets may wait for the CPU",
                opts.realtime_priority
            ),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let workers = spawn_workers(queues, &shared, &stop, &done_tx)?;
    info!(
        "running: queues {queues_wanted:?}, control ports {:?}, ipsets {} and {}",
        config.control_ports, sets.v4, sets.v6
    );
    let mut rules = RuleWatch::new(&queues_wanted);
    let failure = supervise(&shared, &signals, opts.state_interval, &mut rules);
    stop_workers(workers, &stop, &done_rx);
    shared.finish();
    match failure {
        Some(why) => fail(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::event::RemoveReason;
    use ftpct_engine::expect::NatBindings;
    use ftpct_engine::grammar::AnnounceKind;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    /// Conntrack and ipset as far as the actions see them.
    #[derive(Default)]
    struct FakeKernel {
        calls: Vec<String>,
        master_mark: Option<u32>,
        created: Vec<DataConnection>,
        /// Entries in conntrack by original tuple, with their TCP state.
        entries: HashMap<Tuple, u8>,
        /// errno of every create (a full table: ENOMEM).
        create_errno: Option<i32>,
        /// Sets that exist, and their entries.
        sets: HashMap<String, HashSet<SocketAddr>>,
    }

    impl Kernel for FakeKernel {
        fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout: u32) -> io::Result<()> {
            self.calls.push(format!("add {set} {dst} {timeout}"));
            self.sets.entry(set.into()).or_default().insert(dst);
            Ok(())
        }
        fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> io::Result<()> {
            self.calls.push(format!("del {set} {dst}"));
            self.sets.entry(set.into()).or_default().remove(&dst);
            Ok(())
        }
        fn ct_mark(&mut self, _: &Tuple) -> io::Result<Option<u32>> {
            Ok(self.master_mark)
        }
        fn create_related(&mut self, dc: &DataConnection) -> io::Result<()> {
            self.calls.push(format!("create {}", dc.tuple));
            if let Some(errno) = self.create_errno {
                return Err(io::Error::from_raw_os_error(errno));
            }
            if self.entries.contains_key(&dc.tuple) {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            self.entries.insert(dc.tuple, 1);
            self.created.push(*dc);
            Ok(())
        }
        fn set_liberal(&mut self, orig: &Tuple) -> io::Result<()> {
            self.calls.push(format!("liberal {orig}"));
            Ok(())
        }
        fn ct_entry(&mut self, tuple: &Tuple) -> io::Result<Option<(Tuple, Option<u8>)>> {
            Ok(self.entries.get(tuple).map(|s| (*tuple, Some(*s))))
        }
        fn ct_delete(&mut self, orig: &Tuple) -> io::Result<()> {
            self.calls.push(format!("delete {orig}"));
            self.entries.remove(orig);
            Ok(())
        }
        fn ensure_set(&mut self, set: &str, _: bool) -> io::Result<bool> {
            if self.sets.contains_key(set) {
                return Ok(false);
            }
            self.calls.push(format!("create set {set}"));
            self.sets.insert(set.into(), HashSet::new());
            Ok(true)
        }
        fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> io::Result<bool> {
            Ok(self.sets.get(set).is_some_and(|s| s.contains(&dst)))
        }
    }

    #[test]
    fn a_data_syn_on_a_time_wait_tuple_replaces_the_old_entry() {
        let mut a = actions(None);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t("198.51.100.20:20", "198.51.100.1:47201");
        a.kernel.entries.insert(syn, TCP_TIME_WAIT);
        a.apply(&Event::ExpectationAdded(e.clone()));
        let back = a.apply(&Event::DataMatched {
            tuple: syn,
            exp: e.clone(),
        });
        assert_eq!(back, None);
        assert_eq!(
            a.kernel().calls[1..],
            [
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
                "delete 198.51.100.20:20 -> 198.51.100.1:47201",
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
                "del ftpct 198.51.100.1:47201",
            ]
        );
        assert_eq!(a.kernel().created.len(), 1);
    }

    #[test]
    fn a_live_entry_of_the_tuple_is_left_alone() {
        let mut a = actions(None);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        let syn = t("198.51.100.20:20", "198.51.100.1:47201");
        a.kernel.entries.insert(syn, 3);
        a.apply(&Event::ExpectationAdded(e.clone()));
        assert_eq!(a.apply(&Event::DataMatched { tuple: syn, exp: e }), None);
        assert!(a.kernel().calls.iter().all(|c| !c.starts_with("delete")));
        assert!(a.kernel().created.is_empty());
    }

    #[test]
    fn a_failed_create_keeps_the_expectation_for_the_retry() {
        let mut a = actions(None);
        a.kernel.create_errno = Some(libc::ENOMEM);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        a.apply(&Event::ExpectationAdded(e.clone()));
        let syn = t("198.51.100.20:20", "198.51.100.1:47201");
        let back = a.apply(&Event::DataMatched {
            tuple: syn,
            exp: e.clone(),
        });
        assert_eq!(back, Some(e.clone()), "given back to the engine");
        assert_eq!(a.pending(), 1, "its ipset entry stays");
        assert!(a.kernel().calls.iter().all(|c| !c.starts_with("del ")));
        a.kernel.create_errno = None;
        assert_eq!(a.apply(&Event::DataMatched { tuple: syn, exp: e }), None);
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn vanished_sets_and_flushed_entries_are_restored() {
        let mut a = actions(None);
        a.kernel.sets.insert("ftpct".into(), HashSet::new());
        a.kernel.sets.insert("ftpct6".into(), HashSet::new());
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        a.apply(&Event::ExpectationAdded(e));
        a.check_sets();
        let quiet = a.kernel().calls.len();
        assert_eq!(quiet, 1, "nothing to repair");
        // ipset flush
        a.kernel.sets.insert("ftpct".into(), HashSet::new());
        a.check_sets();
        assert!(a.kernel.sets["ftpct"].contains(&"198.51.100.1:47201".parse().expect("a")));
        // ipset destroy (ftpct rules --delete)
        a.kernel.sets.remove("ftpct");
        a.check_sets();
        assert!(a.kernel().calls.contains(&"create set ftpct".to_string()));
        assert!(a.kernel.sets["ftpct"].contains(&"198.51.100.1:47201".parse().expect("a")));
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

    fn actions(mark: Option<Mark>) -> Actions<FakeKernel> {
        let sets = SetNames::new("ftpct").expect("names");
        Actions::new(FakeKernel::default(), sets, Duration::from_secs(300), mark)
    }

    #[test]
    fn expectation_lifecycle_maps_to_ipset_and_conntrack() {
        let mut a = actions(None);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        a.apply(&Event::ExpectationAdded(e.clone()));
        let syn = t("198.51.100.20:20", "198.51.100.1:47201");
        a.apply(&Event::DataMatched {
            tuple: syn,
            exp: e.clone(),
        });
        assert_eq!(
            a.kernel().calls,
            vec![
                "add ftpct 198.51.100.1:47201 300",
                "create 198.51.100.20:20 -> 198.51.100.1:47201",
                "del ftpct 198.51.100.1:47201",
            ]
        );
        let dc = a.kernel().created[0];
        assert_eq!(dc.master, e.master);
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
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn shared_destination_leaves_the_set_with_its_last_peer() {
        let mut a = actions(None);
        let e1 = exp("198.51.100.20", "[2001:db8::1]:5000");
        let e2 = exp("198.51.100.30", "[2001:db8::1]:5000");
        a.apply(&Event::ExpectationAdded(e1.clone()));
        a.apply(&Event::ExpectationAdded(e2.clone()));
        a.apply(&Event::ExpectationAdded(e2.clone()));
        a.apply(&Event::ExpectationRemoved {
            exp: e1,
            reason: RemoveReason::Expired,
        });
        assert!(a.kernel().calls.iter().all(|c| !c.starts_with("del")));
        a.apply(&Event::ExpectationRemoved {
            exp: e2,
            reason: RemoveReason::MasterClosed,
        });
        assert_eq!(
            a.kernel().calls.last().map(String::as_str),
            Some("del ftpct6 [2001:db8::1]:5000")
        );
    }

    #[test]
    fn a_rewrite_makes_the_control_connection_liberal_once() {
        let mut a = actions(None);
        let flow = t("192.0.2.10:40000", "198.51.100.20:21");
        let rewrite = Event::Rewritten {
            flow,
            dir: ftpct_engine::tuple::Dir::Orig,
            before: "PORT 192,0,2,10,184,97".into(),
            after: "PORT 198,51,100,1,184,97".into(),
        };
        a.apply(&rewrite);
        a.apply(&rewrite);
        assert_eq!(
            a.kernel().calls,
            vec!["liberal 192.0.2.10:40000 -> 198.51.100.20:21"]
        );
        a.apply(&Event::FlowClosed { flow });
        a.apply(&rewrite);
        assert_eq!(
            a.kernel().calls.len(),
            2,
            "a new connection on the same tuple"
        );
    }

    #[test]
    fn cleanup_removes_what_is_left() {
        let mut a = actions(None);
        a.apply(&Event::ExpectationAdded(exp(
            "198.51.100.20",
            "198.51.100.1:50000",
        )));
        assert_eq!(a.cleanup(), 1);
        assert_eq!(
            a.kernel().calls.last().map(String::as_str),
            Some("del ftpct 198.51.100.1:50000")
        );
        assert_eq!(a.cleanup(), 0);
    }

    #[test]
    fn marks() {
        let m: Mark = "0x10/0xf0".parse().expect("mark");
        assert_eq!(
            m,
            Mark {
                value: 0x10,
                mask: 0xf0
            }
        );
        assert_eq!(m.apply(0xff), 0x1f);
        assert_eq!("7".parse::<Mark>(), Ok(Mark { value: 7, mask: !0 }));
        assert!("0x100/0xff".parse::<Mark>().is_err());
        assert!("x".parse::<Mark>().is_err());
        assert_eq!(data_mark(None, Some(0)), None);
        assert_eq!(data_mark(None, Some(5)), Some(5));
        assert_eq!(data_mark(Some(m), None), Some(0x10));
        let mut a = actions(Some(m));
        a.kernel.master_mark = Some(0x0f);
        let e = exp("198.51.100.20", "198.51.100.1:47201");
        a.apply(&Event::DataMatched {
            tuple: t("198.51.100.20:20", "198.51.100.1:47201"),
            exp: e,
        });
        assert_eq!(a.kernel().created[0].mark, Some(0x1f));
    }

    #[test]
    fn hooks_and_timeouts() {
        assert_eq!(hook_of(0), Hook::Prerouting);
        assert_eq!(hook_of(NF_INET_LOCAL_OUT), Hook::Output);
        let a = Actions::new(
            FakeKernel::default(),
            SetNames::new("s").expect("names"),
            Duration::ZERO,
            None,
        );
        assert_eq!(
            a.expect_timeout_secs, 1,
            "an ipset timeout of 0 means forever"
        );
    }

    #[test]
    fn bind_errors_say_what_to_do() {
        let busy = bind_error(3, &io::Error::from_raw_os_error(libc::EPERM));
        assert!(busy.0.contains("already bound"), "{busy}");
        let missing = bind_error(3, &io::Error::from_raw_os_error(libc::EINVAL));
        assert!(missing.0.contains("modprobe nfnetlink_queue"), "{missing}");
    }
}
