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

use ftpct_engine::engine::{ConntrackEvent, Input};
use ftpct_engine::event::Event;
use ftpct_engine::tuple::Tuple;
use tracing::{debug, warn};

use super::executor::Executor;
use super::kernel::{Kernel, LiveKernel};
use super::shared::Shared;
use super::DaemonError;
use crate::driver;
use crate::netfilter::ct_events::{DestroyEvents, Destroyed};

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
    exec: Executor<LiveKernel>,
    stop: Arc<AtomicBool>,
    adopters: Vec<u32>,
) -> Result<JoinHandle<()>, DaemonError> {
    let mut events = DestroyEvents::open().map_err(DaemonError::Conntrack)?;
    let control_ports = shared
        .with_engine(|e| e.config().control_ports.clone())
        .unwrap_or_default();
    match events.only_to_ports(&control_ports, &adopters) {
        Ok(true) => {}
        Ok(false) => {
            debug!("too many control ports or queues for a filter: every destroy event is read")
        }
        Err(e) => debug!("destroy events: {e}: every one is read"),
    }
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
            forget_if_gone(&self.shared, &mut self.exec, &orig, flow);
        }
    }
}

/// Forgets control connection `orig` if `flow` still has its tuple and
/// conntrack holds no entry of it; `exec` carries out what follows.
fn forget_if_gone<K: Kernel>(shared: &Shared, exec: &mut Executor<K>, orig: &Tuple, flow: u64) {
    // A later connection on the tuple has its own flow now.
    if shared.with_engine(|e| e.flow_of(orig)) != Some(Some(flow)) {
        return;
    }
    if entry_exists(shared, exec.kernel_mut(), orig) {
        return;
    }
    let destroyed = Input::Conntrack(ConntrackEvent::Destroyed { orig: *orig, flow });
    let now = shared.now();
    let out = exec.batched(|exec| {
        let out = driver::input(&mut { shared }, exec, now, destroyed);
        exec.release_all_guards();
        out
    });
    exec.settle();
    let forgotten = Event::FlowClosed { flow: *orig };
    if out.events.contains(&forgotten) {
        debug!(flow = %orig, "its conntrack entry is gone: forgotten");
    }
    out.events.iter().for_each(|e| shared.log_event(e));
}

/// True when conntrack has an entry of `orig`: the connection lives on (an
/// adoption made it anew, or its next packet did). Asked outside the
/// connection's adoptions: in one the entry is missing for a moment, and
/// a session taken for gone then would lose its expectation while its
/// announcement's ipset entry is being added.
fn entry_exists<K: Kernel>(shared: &Shared, kernel: &mut K, orig: &Tuple) -> bool {
    let look = || matches!(kernel.ct_entry(orig), Ok(Some(_)));
    shared.adoptions().outside(orig, look)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::thread;

    use crate::netfilter::guard_entries::GuardEntry;
    use ftpct_engine::grammar::AnnounceKind;
    use ftpct_engine::kept::{Kept, PendingKept};
    use ftpct_engine::nat::CtMapping;
    use ftpct_engine::tuple::Dir;
    use ftpct_engine::{Config, Engine};

    use super::*;
    use crate::daemon::fake_kernel::FakeKernel;
    use crate::daemon::metrics::Metrics;
    use crate::netfilter::kept_labels::KeptLabels;
    use crate::netfilter::sets::SetNames;

    fn t(src: &str, dst: &str) -> Tuple {
        Tuple::new(src.parse().expect("addr"), dst.parse().expect("addr"))
    }

    /// A session of `m` that announced EPRT port 43189, taken up from its
    /// labels: a flow, an expectation and its ipset entry; the flow's
    /// generation and the executor that made the entry.
    fn session_with_eprt(
        m: CtMapping,
        kernel: FakeKernel,
    ) -> (Arc<Shared>, u64, Executor<FakeKernel>) {
        let cfg = Config {
            keep_state: true,
            ..Config::default()
        };
        let shared = Arc::new(Shared::new(Engine::new(cfg), Metrics::default()));
        let kept = Kept {
            kernel_fixups: false,
            pending: Some(PendingKept {
                kind: AnnounceKind::Eprt,
                announced_port: 43189,
                public_port: 43189,
            }),
            own_shift: [0, 0],
        };
        let now = shared.now();
        let sets = SetNames::new("ftpct").expect("names");
        let mut exec = Executor::new(kernel, sets, KeptLabels::default());
        let picked_up = Input::Conntrack(ConntrackEvent::Kept {
            mapping: m,
            seqadj: [None, None],
            kept,
        });
        driver::input(&mut &*shared, &mut exec, now, picked_up);
        let flow = shared.with_engine(|e| e.flow_of(&m.orig)).flatten();
        (shared, flow.expect("the session is followed"), exec)
    }

    /// The destroy event of the tuple's previous entry (ended in TIME_WAIT
    /// by this session's SYN) is read once the session holds the tuple;
    /// when it is believed, the session's first rewrite is adopting its
    /// entry: deleted, not made anew yet. The session lives on: it keeps
    /// its expectation, and its announcement its ipset entry.
    #[test]
    fn an_entry_being_made_anew_is_not_taken_for_gone() {
        let orig = t("[2001:db8:1::10]:46964", "[2001:db8:2::20]:21");
        let nat = CtMapping {
            orig,
            reply: t("[2001:db8:2::20]:21", "[2001:db8:2::1]:46964"),
        };
        let mut kernel = FakeKernel::default();
        kernel.entries.insert(orig, 3);
        let adopting = Arc::clone(&kernel.adopting);
        let (shared, flow, mut exec) = session_with_eprt(nat, kernel);
        let dst = "[2001:db8:2::1]:43189".parse().expect("addr");
        assert!(exec.kernel().sets["ftpct6"].contains(&dst));
        let (inside_tx, inside) = mpsc::channel();
        let adopter = {
            let shared = Arc::clone(&shared);
            let keys = [
                GuardEntry::of_packets(&orig, Dir::Orig),
                GuardEntry::of_packets(&nat.reply, Dir::Reply),
            ];
            thread::spawn(move || {
                shared.adoptions().during(&keys, || {
                    adopting.store(true, Ordering::Release);
                    inside_tx.send(()).expect("send");
                    thread::sleep(Duration::from_millis(20));
                    adopting.store(false, Ordering::Release);
                });
            })
        };
        inside.recv().expect("the adoption deleted the entry");
        forget_if_gone(&shared, &mut exec, &orig, flow);
        adopter.join().expect("adopter");
        assert_eq!(shared.with_engine(|e| e.flow_of(&orig)), Some(Some(flow)));
        assert_eq!(shared.with_engine(|e| e.expects_dst(dst)), Some(true));
        let calls = &exec.kernel().calls;
        assert!(exec.kernel().sets["ftpct6"].contains(&dst), "{calls:?}");
    }

    #[test]
    fn a_session_whose_entry_is_gone_is_forgotten() {
        let orig = t("192.0.2.10:40000", "198.51.100.20:21");
        let (shared, flow, mut exec) =
            session_with_eprt(CtMapping::identity(orig), FakeKernel::default());
        assert_eq!(exec.kernel().sets["ftpct"].len(), 1);
        forget_if_gone(&shared, &mut exec, &orig, flow);
        assert_eq!(shared.with_engine(|e| e.flow_of(&orig)), Some(None));
        assert_eq!(shared.with_engine(|e| e.pending_dst_count()), Some(0));
        assert!(exec.kernel().sets["ftpct"].is_empty());
    }
}
