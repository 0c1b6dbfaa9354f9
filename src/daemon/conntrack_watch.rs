//! Forgets control connections whose conntrack entry is gone (a thread of
//! its own reading conntrack's destroy events): a session that vanished
//! without FIN or RST no longer holds a flow, its expectations or their
//! ipset entries until the idle timeout (hours).
//!
//! An event is acted on a second after it came, only on the flow that had
//! the tuple when it came (a new connection's SYN on a tuple in TIME_WAIT
//! is what ends the old entry), and only if no entry of that tuple exists
//! then (something else, conntrackd on a backup, may make it anew). ftpct
//! itself deletes and re-creates the entry of every NATed control
//! connection it adopts: those destroy events name the queue thread's
//! socket that deleted (its netlink port id), are no end and are dropped
//! at once, without asking conntrack a second later.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftpct_engine::tuple::Tuple;
use tracing::{debug, warn};

use super::executor::Executor;
use super::kernel::{Kernel, LiveKernel};
use super::shared::Shared;
use super::DaemonError;
use crate::netfilter::ct_events::{DestroyEvents, Destroyed};
use crate::netfilter::sets::SetNames;

/// How long an event waits before it is believed.
const SETTLE: Duration = Duration::from_secs(1);
/// Events held at most; beyond, the oldest are dropped (the idle timeout
/// still forgets their flows).
const MAX_HELD: usize = 65_536;

struct Watch {
    shared: Arc<Shared>,
    exec: Executor<LiveKernel>,
    events: DestroyEvents,
    /// Events waiting to be believed: when, the tuple, its flow then.
    held: VecDeque<(Instant, Tuple, u64)>,
    /// Only entries to these ports can be control connections: the others
    /// (most of a busy gateway's) never take the engine lock.
    control_ports: Vec<u16>,
    /// The port ids of the sockets that adopt entries (see the top).
    adopters: Vec<u32>,
}

pub fn spawn(
    shared: Arc<Shared>,
    sets: SetNames,
    stop: Arc<AtomicBool>,
    adopters: Vec<u32>,
) -> Result<JoinHandle<()>, DaemonError> {
    let events = DestroyEvents::open().map_err(DaemonError::Conntrack)?;
    let exec = Executor::new(LiveKernel::open(shared.metrics().netlink_counters())?, sets);
    let control_ports = shared
        .with_engine(|e| e.config().control_ports.clone())
        .unwrap_or_default();
    let mut watch = Watch {
        shared,
        exec,
        events,
        held: VecDeque::new(),
        control_ports,
        adopters,
    };
    std::thread::Builder::new()
        .name("ct-events".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                watch.step();
            }
        })
        .map_err(|source| DaemonError::Thread {
            what: "conntrack's destroy events".into(),
            source,
        })
}

impl Watch {
    fn step(&mut self) {
        match self.events.destroyed() {
            Ok(gone) => {
                let now = Instant::now();
                let ends = |d: &Destroyed| {
                    self.control_ports.contains(&d.orig.dst.port())
                        && !self.adopters.contains(&d.by)
                };
                for orig in gone.into_iter().filter(ends).map(|d| d.orig) {
                    if let Some(Some(flow)) = self.shared.with_engine(|e| e.flow_of(&orig)) {
                        if self.held.len() >= MAX_HELD {
                            self.held.pop_front();
                        }
                        self.held.push_back((now, orig, flow));
                    }
                }
            }
            // ENOBUFS (a burst of events overflowed the socket) among them.
            Err(e) => warn!("conntrack destroy events: {e}: flows that vanished meanwhile go at their idle timeout"),
        }
        while let Some(&(at, orig, flow)) = self.held.front() {
            if at.elapsed() < SETTLE {
                break;
            }
            self.held.pop_front();
            self.forget(&orig, flow);
        }
    }

    fn forget(&mut self, orig: &Tuple, flow: u64) {
        // A later connection on the tuple has its own flow now.
        if self.shared.with_engine(|e| e.flow_of(orig)) != Some(Some(flow)) {
            return;
        }
        // Re-created meanwhile: the connection lives on.
        if matches!(self.exec.kernel_mut().ct_entry(orig), Ok(Some(_))) {
            return;
        }
        let Some((true, effects)) = self
            .shared
            .with_engine(|e| e.conntrack_destroyed(orig, flow))
        else {
            return;
        };
        debug!(flow = %orig, "its conntrack entry is gone: forgotten");
        self.exec.batched(|exec| {
            for c in &effects.commands {
                exec.run(c);
            }
            exec.release_all_guards();
        });
        self.exec.settle();
        effects.events.iter().for_each(|e| self.shared.log_event(e));
    }
}
