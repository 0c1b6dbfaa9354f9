//! What the queue threads and the supervisor share: the engine behind one
//! lock (after NAT the two directions of a control connection can hash to
//! different queues), the clock, the log rate limit, the metrics, and a
//! failure that stops the daemon, the gate verdicts pass while entries are
//! made anew, the ipset entries on their way. Only engine calls run under
//! the lock; kernel calls never do.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ftpct_engine::engine::Input;
use ftpct_engine::event::Event;
use ftpct_engine::Engine;
use tracing::{error, warn};

use super::adds_under_way::AddsUnderWay;
use super::adoption_gate::AdoptionGate;
use super::event_log::{self, RateLimit, HOSTILE_LINES_BURST, HOSTILE_LINES_WINDOW};
use super::metrics::Metrics;
use crate::driver::{EngineHost, Round};

pub struct Shared {
    engine: Mutex<Engine>,
    /// Log lines about hostile input, limited per kind.
    hostile_lines: Mutex<RateLimit>,
    start: Instant,
    /// Set by a queue thread that gave up: the daemon stops with this.
    failure: Mutex<Option<String>>,
    metrics: Metrics,
    adoptions: AdoptionGate,
    adds: AddsUnderWay,
}

impl Shared {
    pub fn new(engine: Engine, metrics: Metrics) -> Self {
        Shared {
            engine: Mutex::new(engine),
            hostile_lines: Mutex::new(RateLimit::new(HOSTILE_LINES_WINDOW, HOSTILE_LINES_BURST)),
            start: Instant::now(),
            failure: Mutex::new(None),
            metrics,
            adoptions: AdoptionGate::default(),
            adds: AddsUnderWay::default(),
        }
    }

    /// What the packet path and the events count, for `--metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Verdicts wait here while their connection's entry is made anew.
    pub fn adoptions(&self) -> &AdoptionGate {
        &self.adoptions
    }

    /// ipset entries asked for and not added yet.
    pub fn adds_under_way(&self) -> &AddsUnderWay {
        &self.adds
    }

    /// The engine's clock: time since the daemon started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs `f` on the engine under its lock. None when the engine
    /// panicked: a bug must cost one packet's inspection, not the
    /// gateway's FTP (the state it leaves is still usable).
    pub fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> Option<T> {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        catch_unwind(AssertUnwindSafe(|| f(&mut engine)))
            .map_err(|_| {
                error!("the engine panicked: the packet passes unchanged (a bug, please report it)")
            })
            .ok()
    }

    /// Logs an event; those about hostile input within their rate limit.
    pub fn log_event(&self, e: &Event) {
        self.metrics.event(e);
        if event_log::is_hostile(e) {
            let admitted = self
                .hostile_lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(e.kind(), Instant::now());
            if !admitted {
                return;
            }
        }
        event_log::log_event(e);
    }

    /// Says how many hostile-input lines each ended window held back.
    pub fn report_held_back(&self) {
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

    pub fn set_failure(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert(why);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The engine behind the lock, as the driver core drives it: one input and
/// what comes out of it under one lock, the ipset adds among its commands
/// noted under way in the same lock (until they are carried out).
impl EngineHost for &Shared {
    fn round(&mut self, now: Duration, input: Input<'_>) -> Option<Round> {
        let adds = self.adds_under_way();
        self.with_engine(|e| {
            e.handle(now, input);
            let round = Round::drain(e);
            adds.note(&round.commands);
            round
        })
    }

    fn deadline(&mut self) -> Option<Duration> {
        self.with_engine(|e| e.poll_timeout()).flatten()
    }
}
