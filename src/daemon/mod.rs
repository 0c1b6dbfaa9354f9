//! `ftpct run`: the live driver around the engine.
//!
//! One thread per NFQUEUE queue (`queue_loop`), each with its own kernel
//! sockets: it hands the packet to the engine under the engine's lock
//! (`shared`), answers the engine's NAT question and carries out its
//! commands without it (`packet_path`, `executor`), then gives the verdict.
//! A kernel call that hangs holds up its own queue only.
//!
//! The main thread keeps SIGINT/SIGTERM/SIGHUP blocked and waits for them
//! with `sigtimedwait`, waking once a second to run the engine's timers
//! (and their commands), check the ipsets and the rules. To stop, it sets a
//! flag and sends SIGUSR1 to each queue thread: the handler does nothing,
//! but it is installed without SA_RESTART, so a `recv` that blocks returns
//! EINTR (nfq 0.2.5 gives no access to its socket to poll).

mod adds_under_way;
mod adoption_gate;
mod conntrack_watch;
pub(crate) mod event_log;
mod executor;
#[cfg(test)]
mod fake_kernel;
mod http;
mod kernel;
#[cfg(test)]
mod kernels_agree;
mod metrics;
mod packet_path;
mod peer;
mod queue_loop;
mod resume;
mod service;
mod session_ends;
mod shared;
pub(crate) mod signals;
pub mod status;
pub mod status_address;

use std::fmt;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ftpct_engine::engine::{Config, Engine, Input};
use tracing::{debug, info, warn};

pub use executor::Executor;
pub use kernel::{Kernel, LiveKernel};
pub use packet_path::PacketPath;
pub use shared::Shared;

use crate::driver::{self, EngineHost};
use crate::netfilter;
use crate::netfilter::conntrack_lookup::LiveNat;
use crate::netfilter::helper_watch::HelperWatch;
use crate::netfilter::iptables;
use crate::netfilter::kept_labels::KeptLabels;
use crate::netfilter::nfqueue::{has_net_admin, open_queue, QueueError};
use crate::netfilter::rule_watch::RuleWatch;
use crate::netfilter::ruleset_events::RulesetEvents;
use crate::netfilter::sets::SetNames;
use metrics::{EngineFigures, Metrics};
use queue_loop::{spawn_workers, stop_workers, Worker};

/// How often the supervisor's duties run (the engine's timers run when
/// `poll_timeout` says, see [`wait_for_duties`]). One second because the
/// FIN sets are read and half-closed sessions looked at again once a
/// second (`session_ends`), pending guard releases and the expected
/// destinations' ipset entries are put right within a second, and a
/// queue thread's failure is noticed only when the supervisor looks
/// (`Shared::failure`: nothing wakes it).
const TICK: Duration = Duration::from_secs(1);
/// How often freed memory is given back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// What `ftpct run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub queues: Vec<u16>,
    /// The engine's settings (`--mark` is its `data_mark`).
    pub config: Config,
    /// First of the 64 conntrack label bits that keep each session's state.
    pub label_bit: u8,
    /// Base name of the ipsets (IPv4; IPv6 adds "6").
    pub ipset: String,
    /// How often a `state:` line with the live figures is logged (None: never).
    pub state_interval: Option<Duration>,
    /// SCHED_RR priority of ftpct's threads (0: the normal scheduler).
    pub realtime_priority: u8,
    /// How long a queue thread polls its empty queue before it sleeps.
    pub busy_poll: Duration,
    /// Where SIGHUP reads the policy again (None: SIGHUP stops).
    pub reload: Option<crate::cli::config::Reload>,
    /// Serve Prometheus metrics over HTTP here (None: no endpoint).
    pub metrics: Option<std::net::SocketAddr>,
    /// The unix socket of `ftpct status` (None: none).
    pub status_socket: Option<status_address::StatusAddress>,
    /// The rules `run` puts back when a firewall reload takes them (None:
    /// `restore_rules = false`, only said).
    pub restore_rules: Option<crate::netfilter::rules::RuleSet>,
    /// The conntrack zone of the FTP connections (0: the default zone).
    pub conntrack_zone: u16,
}

/// Why the daemon could not start, or stopped on its own: each says what
/// to do in one line.
#[derive(Debug)]
pub enum DaemonError {
    /// SIGINT, SIGTERM and SIGHUP could not be blocked.
    Signals(io::Error),
    /// The SIGUSR1 handler that wakes the queue threads.
    WakeHandler(io::Error),
    /// Not root: no CAP_NET_ADMIN.
    NeedsRoot,
    /// `--ipset` names no valid set.
    SetName(netfilter::Error),
    /// A queue could not be bound.
    Queue(QueueError),
    /// The name of the claim on the ipsets.
    ClaimName { name: String, source: io::Error },
    /// Another run in this network namespace owns the ipsets.
    SetsTaken { v4: String, v6: String },
    /// The claim on the ipsets failed otherwise.
    Claim {
        v4: String,
        v6: String,
        source: io::Error,
    },
    /// ipset does not answer.
    Ipset(netfilter::Error),
    /// A set cannot be made or used.
    SetUnusable {
        name: String,
        source: netfilter::Error,
    },
    /// A set could not be emptied at start.
    SetFlush {
        name: String,
        source: netfilter::Error,
    },
    /// No ctnetlink socket.
    Ctnetlink(netfilter::Error),
    /// conntrack does not answer over netlink.
    Conntrack(netfilter::Error),
    /// A thread (a queue's, the conntrack events') could not start.
    Thread { what: String, source: io::Error },
    /// A queue thread stopped on this failure.
    QueueFailed(String),
    /// The metrics endpoint could not listen.
    Metrics {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Signals(e) => write!(f, "cannot block stop signals: {e}"),
            DaemonError::WakeHandler(e) => {
                write!(f, "cannot install the SIGUSR1 handler: {e}")
            }
            DaemonError::NeedsRoot => f.write_str(
                "ftpct run needs CAP_NET_ADMIN: run it as root (or with sudo), or give it the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN)",
            ),
            DaemonError::SetName(e) => write!(f, "--ipset: {e}"),
            DaemonError::Queue(e) => write!(f, "{e}"),
            DaemonError::ClaimName { name, source } => {
                write!(f, "cannot name the ipset claim {name}: {source}")
            }
            DaemonError::SetsTaken { v4, v6 } => write!(
                f,
                "another ftpct run in this network namespace uses the ipsets {v4} and {v6}: stop it, or give this one its own sets (--ipset NAME here and in `ftpct rules --ipset NAME`)"
            ),
            DaemonError::Claim { v4, v6, source } => {
                write!(f, "cannot claim the ipsets {v4} and {v6}: {source}")
            }
            DaemonError::Ipset(e) => write!(
                f,
                "ipset is not usable ({e}): load it with `modprobe ip_set_hash_ipport`"
            ),
            DaemonError::SetUnusable { name, source } => write!(
                f,
                "ipset {name}: {source}: remove it (ipset destroy {name}) or choose another --ipset"
            ),
            DaemonError::SetFlush { name, source } => {
                write!(f, "ipset {name}: flush failed: {source}")
            }
            DaemonError::Ctnetlink(e) => write!(f, "{e}"),
            DaemonError::Conntrack(e) => write!(
                f,
                "conntrack does not answer over netlink ({e}): load it with `modprobe nf_conntrack_netlink`"
            ),
            DaemonError::Thread { what, source } => {
                write!(f, "cannot start the thread of {what}: {source}")
            }
            DaemonError::QueueFailed(why) => f.write_str(why),
            DaemonError::Metrics { addr, source } => {
                write!(f, "--metrics {addr}: cannot listen there: {source}")
            }
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Signals(e)
            | DaemonError::WakeHandler(e)
            | DaemonError::ClaimName { source: e, .. }
            | DaemonError::Claim { source: e, .. }
            | DaemonError::Thread { source: e, .. }
            | DaemonError::Metrics { source: e, .. } => Some(e),
            DaemonError::SetName(e)
            | DaemonError::Ipset(e)
            | DaemonError::SetUnusable { source: e, .. }
            | DaemonError::SetFlush { source: e, .. }
            | DaemonError::Ctnetlink(e)
            | DaemonError::Conntrack(e) => Some(e),
            DaemonError::Queue(e) => Some(e),
            DaemonError::NeedsRoot
            | DaemonError::SetsTaken { .. }
            | DaemonError::QueueFailed(_) => None,
        }
    }
}

/// The supervisor's share of the work: the engine's timers and their
/// commands, the ipsets' upkeep, the periodic state line.
struct Timers {
    shared: Arc<Shared>,
    exec: Executor<LiveKernel>,
    expect_timeout: Duration,
    /// The FIN sets to read (selective queueing), None with --queue-all.
    fin_sets: Option<SetNames>,
    session_ends: session_ends::SessionEnds,
}

impl Timers {
    /// How long until the engine's timers are due (None: it cannot say).
    fn until_engine_due(&self) -> Option<Duration> {
        let at = (&*self.shared).deadline()?;
        Some(at.saturating_sub(self.shared.now()))
    }

    /// The engine's timers, when they are due (`poll_timeout`): their
    /// commands carried out, their events logged.
    fn engine_timers(&mut self) {
        let now = self.shared.now();
        let mut host = &*self.shared;
        if host.deadline().is_none_or(|t| t > now) {
            return;
        }
        let events = self
            .exec
            .batched(|exec| driver::input(&mut host, exec, now, Input::Timeout).events);
        events.iter().for_each(|e| self.shared.log_event(e));
        self.exec.settle();
    }

    fn tick(&mut self) {
        if let Some(sets) = &self.fin_sets {
            self.session_ends.tick(&self.shared, &mut self.exec, sets);
        }
        self.engine_timers();
        self.exec.batched(|exec| exec.release_all_guards());
        let Some(pending) = self.shared.with_engine(|e| e.pending_dsts()) else {
            return;
        };
        // Read after the snapshot: an entry asked for in it and still on
        // its way is not missing.
        let pending = self.shared.adds_under_way().settled(pending);
        let shared = Arc::clone(&self.shared);
        let still_expected = move |dst| shared.with_engine(|e| e.expects_dst(dst)) == Some(true);
        self.exec
            .check_sets(&pending, self.expect_timeout, &still_expected);
        self.exec.settle();
        self.shared.report_held_back();
    }

    /// The live figures on one line: what is held now, then the counters.
    fn log_state(&self) {
        let state = self.shared.with_engine(|e| {
            format!(
                "state: flows={} expectations={} ipset_entries={} {}",
                e.flow_count(),
                e.expectation_count(),
                e.pending_dst_count(),
                e.stats()
            )
        });
        if let Some(line) = state {
            info!("{line}");
        }
    }

    /// Empties the sets of what this run added; logs the last figures.
    fn finish(&mut self, lookups: crate::netfilter::conntrack_lookup::LookupStats) {
        let Some((pending, stats)) = self
            .shared
            .with_engine(|e| (e.pending_dsts(), e.stats().clone()))
        else {
            return;
        };
        let removed = self.exec.cleanup(&pending);
        self.exec.settle();
        info!(
            "stopped: {removed} ipset entries removed; {stats}; conntrack lookups {} (cache hits {}, errors {})",
            lookups.queries, lookups.hits, lookups.errors
        );
    }
}

/// Runs the timers until a stop signal or a queue failure; returns the failure.
fn supervise(
    timers: &mut Timers,
    signals: &signals::StopSignals,
    state_interval: Option<Duration>,
    rules: &mut RuleWatch,
    reload: Option<&crate::cli::config::Reload>,
) -> Option<String> {
    let mut next_state = state_interval.map(|i| Instant::now() + i);
    let mut next_trim = Instant::now() + TRIM_EVERY;
    let mut helpers = HelperWatch::default();
    loop {
        if Instant::now() >= next_trim {
            give_back_memory();
            next_trim += TRIM_EVERY;
        }
        rules.check(&mut iptables::System, Instant::now());
        timers.shared.metrics().queues_without_rule(rules.unfed());
        timers
            .shared
            .metrics()
            .rules_restored(rules.take_restored());
        helpers.check(&mut iptables::System, Instant::now());
        if let (Some(at), Some(every)) = (next_state, state_interval) {
            if Instant::now() >= at {
                timers.log_state();
                next_state = Some(at + every);
            }
        }
        match (wait_for_duties(timers, signals), reload) {
            (Some(libc::SIGHUP), Some(r)) => {
                timers.reload(r);
                // A standby gateway taking over: conntrackd brought the
                // sessions' entries; take up those ftpct does not track.
                resume::resume_sessions(&timers.shared, &mut timers.exec);
            }
            (Some(sig), _) => {
                info!("signal {sig}: stopping");
                service::notify_stopping();
                return None;
            }
            (None, _) => {}
        }
        if let Some(why) = timers.shared.failure() {
            return Some(why);
        }
        timers.tick();
    }
}

/// Waits a [`TICK`] for a stop signal, running the engine's timers in
/// between when `poll_timeout` says they are due; the signal, if one came.
fn wait_for_duties(timers: &mut Timers, signals: &signals::StopSignals) -> Option<libc::c_int> {
    let duties = Instant::now() + TICK;
    // An engine whose deadline stays past after its timers ran (it
    // panicked in them) is not asked again until the duties.
    let mut stuck = false;
    loop {
        let left = duties.saturating_duration_since(Instant::now());
        let due = timers.until_engine_due().filter(|_| !stuck);
        let wait = due.map_or(left, |due| due.min(left));
        if let Some(sig) = signals.wait(wait) {
            return Some(sig);
        }
        if Instant::now() >= duties {
            return None;
        }
        timers.engine_timers();
        stuck = timers.until_engine_due().is_some_and(|d| d.is_zero());
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
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(|source| {
            DaemonError::ClaimName {
                name: name.clone(),
                source,
            }
        })?;
    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|source| {
        let (v4, v6) = (sets.v4.clone(), sets.v6.clone());
        if source.kind() == io::ErrorKind::AddrInUse {
            DaemonError::SetsTaken { v4, v6 }
        } else {
            DaemonError::Claim { v4, v6, source }
        }
    })
}

/// Starts the metrics endpoint (its address must be free) and the status
/// socket (without it `ftpct run` still runs: a warning says why).
fn observe(
    metrics: &Option<std::net::SocketAddr>,
    socket: &Option<status_address::StatusAddress>,
    shared: &Arc<Shared>,
    queues: &[u16],
) -> Result<Option<status::StatusSocket>, DaemonError> {
    if let Some(addr) = *metrics {
        let engine_of = Arc::clone(shared);
        let read_engine = Box::new(move || engine_of.with_engine(|e| EngineFigures::of(e)));
        let registry = metrics::registry(shared.metrics().clone(), read_engine, queues.to_vec());
        http::serve(addr, registry).map_err(|source| DaemonError::Metrics { addr, source })?;
    }
    let Some(address) = socket else {
        return Ok(None);
    };
    match status::serve(address, Arc::clone(shared)) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            warn!(
                "status socket {address}: {e}: `ftpct status` will not answer (another ftpct run in this network namespace? give this one another status_socket or --socket)"
            );
            Ok(None)
        }
    }
}

/// Sets up, runs until SIGINT/SIGTERM/SIGHUP, cleans up.
pub fn run(opts: Options) -> Result<(), DaemonError> {
    let signals = signals::StopSignals::block().map_err(DaemonError::Signals)?;
    signals::install_wake_handler().map_err(DaemonError::WakeHandler)?;
    if !has_net_admin() {
        return Err(DaemonError::NeedsRoot);
    }
    let mut queues_wanted = opts.queues.clone();
    queues_wanted.sort_unstable();
    queues_wanted.dedup();
    let sets = SetNames::new(&opts.ipset).map_err(DaemonError::SetName)?;
    // Queues first: a second instance must fail before it flushes the sets.
    let queues = queues_wanted
        .iter()
        .map(|&n| open_queue(n).map(|q| (n, q)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::Queue)?;
    let _owner = claim_sets(&sets)?;
    let metrics = Metrics::default();
    let mut kernel = LiveKernel::open(metrics.netlink_counters(), opts.conntrack_zone)?;
    kernel.prepare_sets(&sets)?;
    let mut config = opts.config;
    config.report_lines = tracing::enabled!(tracing::Level::DEBUG);
    // Live, the kernel keeps each NATed session's fix-ups (they survive a
    // restart of ftpct); only the replay applies them itself.
    config.kernel_fixups = true;
    config.keep_state = true;
    let labels = KeptLabels::at(opts.label_bit);
    let shared = Arc::new(Shared::new(Engine::new(config.clone()), metrics.clone()));
    let mut exec = Executor::new(kernel, sets.clone(), labels);
    resume::resume_sessions(&shared, &mut exec);
    let _status = observe(&opts.metrics, &opts.status_socket, &shared, &queues_wanted)?;
    let stop = Arc::new(AtomicBool::new(false));
    // The sockets that adopt entries: their deletes' destroy events are
    // not ends of sessions.
    let mut adopters = Vec::new();
    let workers = queues
        .into_iter()
        .map(|(num, queue)| {
            let kernel = LiveKernel::open(metrics.netlink_counters(), opts.conntrack_zone)?;
            let exec = Executor::new(kernel, sets.clone(), labels);
            adopters.extend(exec.kernel().ct_port());
            let nat = LiveNat::new(
                kernel::open_ctnetlink(metrics.netlink_counters(), opts.conntrack_zone)?,
                &config.control_ports,
            );
            Ok(Worker {
                num,
                queue,
                path: PacketPath::new(Arc::clone(&shared), exec, nat),
                stop: Arc::clone(&stop),
                metrics: shared.metrics().for_queue(num),
                busy_poll: opts.busy_poll,
            })
        })
        .collect::<Result<Vec<_>, DaemonError>>()?;
    if opts.realtime_priority > 0 {
        match set_realtime(opts.realtime_priority) {
            Ok(()) => debug!("scheduling: SCHED_RR priority {}", opts.realtime_priority),
            Err(e) => warn!(
                "cannot run at real-time priority {} ({e}; needs CAP_SYS_NICE): on a busy gateway queued packets may wait for the CPU",
                opts.realtime_priority
            ),
        }
    }
    let (done_tx, done_rx) = mpsc::channel();
    let on_failure = {
        let shared = Arc::clone(&shared);
        move |why: String| shared.set_failure(why)
    };
    // Listening before the first packet: only entries made while someone
    // listens report their end.
    let watch_exec = Executor::new(
        LiveKernel::open(metrics.netlink_counters(), opts.conntrack_zone)?,
        sets.clone(),
        labels,
    );
    let watch =
        conntrack_watch::spawn(Arc::clone(&shared), watch_exec, Arc::clone(&stop), adopters)?;
    let running = spawn_workers(workers, on_failure, &done_tx)?;
    let queueing = if config.selective {
        format!(
            "selective (directions followed in ipsets {} and {})",
            sets.guard_v4, sets.guard_v6
        )
    } else {
        "every control packet (--queue-all)".to_string()
    };
    // Looked at before "running" is said, so that the metrics tell from
    // the first scrape whether rules feed the queues.
    let mut rules = RuleWatch::new(&queues_wanted, !config.selective);
    if let Some(rs) = opts.restore_rules.clone() {
        rules = rules.restoring(rs);
    }
    match RulesetEvents::open() {
        Ok(events) => rules = rules.told_of_changes(Box::new(events)),
        Err(e) => debug!("nf_tables' change events: {e}: the rules are looked at every second"),
    }
    rules.check(&mut iptables::System, Instant::now());
    shared.metrics().queues_without_rule(rules.unfed());
    info!(
        "running: queues {queues_wanted:?}, control ports {:?}, ipsets {} and {}, queueing {queueing}",
        config.control_ports, sets.v4, sets.v6
    );
    let mut timers = Timers {
        shared,
        exec,
        expect_timeout: config.expect_timeout,
        fin_sets: config.selective.then(|| sets.clone()),
        session_ends: session_ends::SessionEnds::default(),
    };
    service::notify_ready(&queues_wanted);
    let failure = supervise(
        &mut timers,
        &signals,
        opts.state_interval,
        &mut rules,
        opts.reload.as_ref(),
    );
    let lookups = stop_workers(running, &stop, &done_rx);
    // It sees the stop flag within a second (its receive timeout).
    let _ = watch.join();
    timers.finish(lookups);
    match failure {
        Some(why) => Err(DaemonError::QueueFailed(why)),
        None => Ok(()),
    }
}
