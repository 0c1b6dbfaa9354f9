//! One thread per NFQUEUE queue, blocking in `recv` (a sleep-and-poll loop
//! would delay every packet; `--busy-poll` polls an empty queue a while
//! first), and how they are started and stopped.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftpct_engine::Verdict;
use nfq::{Message, Queue};
use tracing::{debug, error, warn};

use super::kernel::LiveKernel;
use super::metrics::{QueueMetrics, VerdictKind};
use super::packet_path::PacketPath;
use super::{signals, DaemonError};
use crate::netfilter::conntrack_lookup::{LiveNat, LookupStats};
use crate::netfilter::nfqueue::origin_of;

/// Consecutive `recv` failures after which a queue is given up.
const MAX_RECV_ERRORS: u32 = 1000;
/// Packets read ahead of their verdicts while looking for an empty queue
/// (the kernel's default queue length).
const MAX_UNDECIDED: usize = 1024;
/// How often at most a queue thread reads the refusals of its requests
/// not waited for (between times, its next waited request reads them).
const SETTLE_EVERY: Duration = Duration::from_secs(1);
/// How long the queue threads get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub type LivePath = PacketPath<LiveKernel, LiveNat>;

/// One queue and its thread.
pub struct Worker {
    pub num: u16,
    pub queue: Queue,
    pub path: LivePath,
    pub stop: Arc<AtomicBool>,
    pub metrics: QueueMetrics,
    /// How long an empty queue is polled before `recv` blocks.
    pub busy_poll: Duration,
}

impl Worker {
    /// Receives until told to stop; returns its conntrack lookup counts.
    fn run(mut self, failure: impl Fn(String)) -> LookupStats {
        let mut errors = 0;
        let mut settled = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            match self.next_message() {
                Ok(msg) => {
                    errors = 0;
                    self.handle(msg);
                    self.release_guards_when_drained();
                    if settled.elapsed() >= SETTLE_EVERY {
                        self.path.settle();
                        settled = Instant::now();
                    }
                }
                // The wake-up signal, or any other: look at the stop flag.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        let why = format!("queue {}: receiving keeps failing: {e}", self.num);
                        error!("{why}");
                        failure(why);
                        break;
                    }
                    // It can be the kernel's answer to an earlier verdict.
                    debug!(queue = self.num, "recv: {e}");
                }
            }
        }
        self.path.settle();
        if let Err(e) = self.queue.unbind(self.num) {
            debug!(queue = self.num, "unbind: {e}");
        }
        self.path.nat().stats()
    }

    /// The next packet: polled for while `busy_poll` lasts, then waited for.
    fn next_message(&mut self) -> io::Result<Message> {
        if self.busy_poll.is_zero() {
            return self.queue.recv();
        }
        let until = Instant::now() + self.busy_poll;
        self.queue.set_nonblocking(true);
        let polled = loop {
            match self.queue.recv() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::hint::spin_loop();
                }
                other => break other,
            }
        };
        self.queue.set_nonblocking(false);
        match polled {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queue.recv(),
            other => other,
        }
    }

    /// Selective queueing: a guard entry goes only while its direction has
    /// no packet in the queue (one left there could be overtaken by the
    /// next, unqueued, segment). What waits in the queue is read without
    /// deciding it until the queue is found empty; the entries of the
    /// directions with nothing among it go, then it is decided, and again
    /// while releases wait. Under load the queue is seldom empty after a
    /// decision, so waiting for that (as a first version did) kept every
    /// session's entry until the load stopped: the set overflowed and the
    /// kernel's adds failed (an announcement passed unqueued).
    fn release_guards_when_drained(&mut self) {
        while self.path.has_releases() {
            let (undecided, drained) = self.read_waiting();
            if drained {
                let packets: Vec<&[u8]> = undecided.iter().map(Message::get_payload).collect();
                self.path.release_guards(&packets);
            }
            let done = undecided.is_empty() || !drained;
            undecided.into_iter().for_each(|m| self.handle(m));
            if done {
                return;
            }
        }
    }

    /// The packets waiting in the queue, read without a verdict, and
    /// whether the queue was then found empty (not when stopping, nor past
    /// `MAX_UNDECIDED`).
    fn read_waiting(&mut self) -> (Vec<Message>, bool) {
        let mut undecided = Vec::new();
        self.queue.set_nonblocking(true);
        let drained = loop {
            if self.stop.load(Ordering::Acquire) || undecided.len() >= MAX_UNDECIDED {
                break false;
            }
            match self.queue.recv() {
                Ok(msg) => undecided.push(msg),
                Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
            }
        };
        self.queue.set_nonblocking(false);
        (undecided, drained)
    }

    fn handle(&mut self, mut msg: Message) {
        let origin = origin_of(msg.get_hook());
        // Never edit a truncated copy (not expected: GSO is not asked for).
        let arrived = Instant::now();
        let (verdict, kind) = if msg.get_original_len() > msg.get_payload().len() {
            (Verdict::Accept, VerdictKind::Accept)
        } else {
            self.path
                .verdict_and_kind(self.num, msg.get_payload(), origin)
        };
        self.metrics.packet(kind, arrived.elapsed());
        self.metrics.lookups(self.path.nat().stats());
        match verdict {
            Verdict::Accept => msg.set_verdict(nfq::Verdict::Accept),
            Verdict::Replace(bytes) => {
                msg.set_payload(bytes);
                msg.set_verdict(nfq::Verdict::Accept);
            }
            Verdict::Drop => msg.set_verdict(nfq::Verdict::Drop),
        }
        let queue = &mut self.queue;
        let sent = self
            .path
            .send_verdict(msg, Message::get_payload, |m| queue.verdict(m));
        if let Err(e) = sent {
            warn!(queue = self.num, "verdict failed: {e}");
        }
        self.path.after_verdict();
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

pub type Running = HashMap<u16, JoinHandle<LookupStats>>;

pub fn spawn_workers(
    workers: Vec<Worker>,
    on_failure: impl Fn(String) + Clone + Send + 'static,
    done: &mpsc::Sender<u16>,
) -> Result<Running, DaemonError> {
    let mut handles = HashMap::new();
    for worker in workers {
        let num = worker.num;
        let report = ExitReport {
            num,
            done: done.clone(),
        };
        let failure = on_failure.clone();
        let handle = std::thread::Builder::new()
            .name(format!("queue-{num}"))
            .spawn(move || {
                let _report = report;
                worker.run(failure)
            })
            .map_err(|source| DaemonError::Thread {
                what: format!("queue {num}"),
                source,
            })?;
        handles.insert(num, handle);
    }
    Ok(handles)
}

/// Stops the queue threads: flag, then wake-ups until each has reported
/// (a wake-up can land just before `recv` blocks, so it is repeated).
/// Returns their conntrack lookup counts, summed.
pub fn stop_workers(
    mut running: Running,
    stop: &AtomicBool,
    done: &mpsc::Receiver<u16>,
) -> LookupStats {
    stop.store(true, Ordering::Release);
    let mut total = LookupStats::default();
    let deadline = Instant::now() + STOP_GRACE;
    while !running.is_empty() && Instant::now() < deadline {
        running.values().for_each(signals::wake);
        if let Ok(num) = done.recv_timeout(Duration::from_millis(50)) {
            if let Some(Ok(s)) = running.remove(&num).map(JoinHandle::join) {
                total.add(&s);
            }
        }
    }
    if !running.is_empty() {
        let left: Vec<u16> = running.keys().copied().collect();
        warn!("queue threads {left:?} did not stop in time");
    }
    total
}
