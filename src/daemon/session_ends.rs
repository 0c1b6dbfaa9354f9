//! Sessions whose client sent its FIN. Under selective queueing the FIN is
//! not queued: the raw table's FIN rule puts the session (client address
//! and port, server address) in the FIN set and the segment goes on. Once
//! a second the supervisor reads the set (swapped with an empty one, so
//! the rule fills that one meanwhile, then listed and emptied) and ends
//! each followed session whose connection conntrack saw close.
//!
//! The rule runs in the raw table, before conntrack's window check, so a
//! spoofed FIN lands in the set too; and the entries of the sessions the
//! kernel took over are TCP-liberal (re-created without window data), so
//! conntrack's state moves on any FIN. What is believed is the end of the
//! whole exchange: conntrack's entry in TIME_WAIT or CLOSE (both FINs and
//! the last ACK), or gone. A session half-way there (FIN_WAIT, CLOSE_WAIT,
//! LAST_ACK: the other side has not closed yet) is looked at again each
//! second, for at most `HALF_CLOSED_FOR`; one that never gets there, or
//! whose entry took no FIN at all, goes on (counted as refused).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ftpct_engine::engine::{Input, KernelNote};
use ftpct_engine::tuple::Tuple;
use tracing::{debug, warn};

use super::executor::Executor;
use super::kernel::{CtEntryState, Kernel, LiveKernel};
use super::shared::Shared;
use crate::driver::EngineHost;
use crate::netfilter::family::Family;
use crate::netfilter::ipset::Element;
use crate::netfilter::sets::SetNames;

/// conntrack's TCP states after one side's FIN, before the exchange ends.
const HALF_CLOSED: std::ops::RangeInclusive<u8> = 4..=6;
/// TIME_WAIT and CLOSE: the connection is over.
const CLOSED: std::ops::RangeInclusive<u8> = 7..=8;
/// How long a half-closed session is looked at again.
const HALF_CLOSED_FOR: Duration = Duration::from_secs(30);
/// Half-closed sessions looked at again, at most (beyond, the newest are
/// left to conntrack's destroy events).
const MAX_HALF_CLOSED: usize = 65_536;

/// What conntrack says of a session named in the FIN set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// TIME_WAIT, CLOSE or no entry: over.
    Closed,
    /// One side closed, not the other yet.
    HalfClosed,
    /// No FIN taken (a forged one, or a new connection on the tuple).
    Open,
    /// Conntrack did not answer.
    Unknown,
}

/// The sessions named in the FIN sets, and those half-closed when looked at.
#[derive(Debug, Default)]
pub struct SessionEnds {
    half_closed: HashMap<Tuple, Instant>,
}

impl SessionEnds {
    /// Reads both FIN sets, looks again at the half-closed sessions, and
    /// ends the sessions that are over.
    pub fn tick(&mut self, shared: &Shared, exec: &mut Executor<LiveKernel>, sets: &SetNames) {
        let ports = shared
            .with_engine(|e| e.config().control_ports.clone())
            .unwrap_or_default();
        for family in [Family::V4, Family::V6] {
            let (fin, read) = sets.fin_of(family);
            match exec.kernel_mut().take_set(fin, read) {
                Ok(entries) => {
                    for orig in entries.iter().flat_map(|e| followed(shared, e, &ports)) {
                        self.half_closed.entry(orig).or_insert_with(Instant::now);
                    }
                }
                Err(e) => warn!("reading the FIN set {fin}: {e}: sessions that ended meanwhile are forgotten when conntrack drops them"),
            }
        }
        let looked_at: Vec<(Tuple, Instant)> = self
            .half_closed
            .drain()
            .filter(|(orig, _)| shared.with_engine(|e| e.tracks(orig)) == Some(true))
            .collect();
        let origs: Vec<Tuple> = looked_at.iter().map(|(orig, _)| *orig).collect();
        let seen = seen_by_conntrack(shared, exec, &origs);
        for ((orig, since), seen) in looked_at.into_iter().zip(seen) {
            self.look_at(shared, orig, since, seen);
        }
    }

    fn look_at(&mut self, shared: &Shared, orig: Tuple, since: Instant, seen: Seen) {
        match seen {
            Seen::Closed => {
                shared.metrics().fin(true);
                let now = shared.now();
                // Told once: a session already closing keeps its end.
                let closing = shared.with_engine(|e| e.closing(&orig)) == Some(true);
                let fin = Input::Note(KernelNote::ClientFinished { orig });
                if (&mut { shared }).round(now, fin).is_some() && !closing {
                    debug!(flow = %orig, "the session closed: forgotten after the linger");
                }
            }
            Seen::HalfClosed | Seen::Unknown
                if since.elapsed() < HALF_CLOSED_FOR
                    && self.half_closed.len() < MAX_HALF_CLOSED =>
            {
                self.half_closed.insert(orig, since);
            }
            seen => {
                shared.metrics().fin(false);
                debug!(flow = %orig, ?seen, "a FIN without the connection's end (forged, or the other side never closed): the session goes on");
            }
        }
    }
}

/// The followed sessions a FIN set entry can name (one per control port).
fn followed(shared: &Shared, entry: &Element, ports: &[u16]) -> Vec<Tuple> {
    let Some(server) = entry.addr2 else {
        return Vec::new();
    };
    let client = std::net::SocketAddr::new(entry.addr, entry.port);
    ports
        .iter()
        .map(|&port| Tuple::new(client, std::net::SocketAddr::new(server, port)))
        .filter(|orig| shared.with_engine(|e| e.tracks(orig)) == Some(true))
        .collect()
}

/// Asked outside the sessions' adoptions: in one its entry is missing for
/// a moment (a FIN set entry of the tuple's previous connection can name a
/// session that just started). All asked together (one datagram).
fn seen_by_conntrack(
    shared: &Shared,
    exec: &mut Executor<LiveKernel>,
    origs: &[Tuple],
) -> Vec<Seen> {
    if origs.is_empty() {
        return Vec::new();
    }
    let kernel = exec.kernel_mut();
    let found = shared
        .adoptions()
        .outside_all(origs, || kernel.ct_entries(origs));
    origs
        .iter()
        .zip(found)
        .map(|(orig, f)| seen_of(orig, f))
        .collect()
}

fn seen_of(orig: &Tuple, found: Result<Option<CtEntryState>, crate::netfilter::Error>) -> Seen {
    match found {
        Ok(None) => Seen::Closed,
        Ok(Some((_, Some(state)))) if CLOSED.contains(&state) => Seen::Closed,
        Ok(Some((_, Some(state)))) if HALF_CLOSED.contains(&state) => Seen::HalfClosed,
        Ok(Some(_)) => Seen::Open,
        Err(e) => {
            warn!(flow = %orig, "conntrack lookup after its FIN: {e}: looked at again");
            Seen::Unknown
        }
    }
}
