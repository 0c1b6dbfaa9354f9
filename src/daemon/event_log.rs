//! The daemon's log lines about events and packets: one line per
//! decision at info, refused attacks and a full table at warning (an
//! operator's `journalctl -p warning` finds them), the rest at debug;
//! lines that anyone can cause by sending bytes go through a rate limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ftpct_engine::event::Event;
use ftpct_engine::wire::TcpPacket;
use ftpct_engine::{Origin, Verdict};
use tracing::{debug, info, warn};

/// Lines of each kind of hostile input logged per window, at most.
pub const HOSTILE_LINES_BURST: u32 = 20;
pub const HOSTILE_LINES_WINDOW: Duration = Duration::from_secs(10);

/// Events that anyone can cause at will by sending bytes.
pub fn is_hostile(e: &Event) -> bool {
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

/// One line per decision at info, refusals (bounce, foreign address,
/// privileged port, unsolicited or pipelined replies) and a full table at
/// warning, the rest at debug.
pub fn log_event(e: &Event) {
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
        Event::TableFull { .. } | Event::Refused { .. } => {
            warn!(event = e.kind(), flow = %flow, "{e}")
        }
        _ => info!(event = e.kind(), flow = %flow, "{e}"),
    }
}

pub fn log_packet(queue: u16, origin: Origin, bytes: &[u8], verdict: &Verdict) {
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
            ?origin,
            "{} seq {} len {}: {verdict}",
            p.tuple,
            p.seq,
            p.payload().len()
        ),
        Err(_) => debug!(queue, ?origin, "{} bytes, not TCP: {verdict}", bytes.len()),
    }
}

/// Lets at most `burst` lines of each kind through per `window`; the rest
/// are counted and reported once the window is over. Lines about hostile
/// input (malformed or overlong lines, refusals, a full table) go through
/// it, so that whoever sends garbage cannot flood the log.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    kinds: HashMap<&'static str, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    shown: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(window: Duration, burst: u32) -> Self {
        RateLimit {
            window,
            burst,
            kinds: HashMap::new(),
        }
    }

    /// True if a line of `kind` may be written at `now`.
    pub fn admit(&mut self, kind: &'static str, now: Instant) -> bool {
        let w = self.kinds.entry(kind).or_insert(Window {
            start: now,
            shown: 0,
            suppressed: 0,
        });
        if w.shown < self.burst {
            w.shown += 1;
            return true;
        }
        w.suppressed += 1;
        false
    }

    /// Ends the windows that are over: the kinds and how many of their
    /// lines were held back in them.
    pub fn expire(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let window = self.window;
        let mut report = Vec::new();
        self.kinds.retain(|kind, w| {
            if now.duration_since(w.start) < window {
                return true;
            }
            if w.suppressed > 0 {
                report.push((*kind, w.suppressed));
            }
            false
        });
        report.sort_unstable();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_a_burst_through_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10), 3);
        let shown = (0..1000).filter(|_| r.admit("malformed", t0)).count();
        assert_eq!(shown, 3);
        assert!(r.admit("refused", t0), "each kind has its own budget");
        assert!(r.expire(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(r.expire(t0 + Duration::from_secs(10)), [("malformed", 997)]);
        assert!(r.admit("malformed", t0 + Duration::from_secs(10)));
    }
}
