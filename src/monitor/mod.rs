//! `ftpct monitor`: the engine, read-only, on the frames an interface sees
//! (a gateway's interface or a mirror port). It drives the same emulated
//! gateway as `ftpct replay`, frame by frame, and prints the same decision
//! lines; refused announcements are also logged as alerts. Nothing it
//! decides reaches the kernel: no verdict, no conntrack entry, no ipset
//! entry. It needs CAP_NET_RAW only, and its memory is bounded (the
//! engine's tables, the gateway's translations, the flow numbers).

mod link;
mod print;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ftpct_engine::engine::Config;
use ftpct_engine::event::{Event, Stats};
use ftpct_engine::nat::{DnatRule, SnatRule};
use pcap_file::DataLink;
use tracing::{info, warn};

use crate::daemon::event_log::{RateLimit, HOSTILE_LINES_BURST, HOSTILE_LINES_WINDOW};
use crate::daemon::signals::StopSignals;
use crate::ladder::{self, Heading, LadderError, Recorder};
use crate::offline::capture::{self, CaptureError, Frame};
use crate::offline::replay::{Gateway, Mismatch, Observer};
use link::{Link, Read};
pub use print::Printer;

/// How often the translations and the alerts held back are looked at (the
/// engine's timers run when `poll_timeout` says).
const TICK: Duration = Duration::from_secs(1);
const SIGNAL_CHECK: Duration = link::READ_TIMEOUT;
/// Consecutive read failures after which the interface is given up.
const MAX_READ_ERRORS: u32 = 100;

/// What `ftpct monitor` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub interface: String,
    /// The NAT the gateway does, as for `ftpct replay` (none: decisions
    /// without NAT, expectations but no rewrites).
    pub snat: Vec<SnatRule>,
    pub dnat: Vec<DnatRule>,
    pub config: Config,
    pub json: bool,
    /// Also write the frames seen to this pcap file.
    pub write: Option<PathBuf>,
    /// Draw the sessions seen in this HTML file when stopped.
    pub html: Option<PathBuf>,
    pub promiscuous: bool,
}

#[derive(Debug)]
pub enum MonitorError {
    Signals(io::Error),
    NoSuchInterface {
        name: String,
        known: Vec<String>,
    },
    NotEthernet(String),
    Open {
        interface: String,
        source: io::Error,
    },
    Read {
        interface: String,
        source: io::Error,
    },
    Capture(CaptureError),
    Ladder(LadderError),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::Signals(e) => write!(f, "cannot block stop signals: {e}"),
            MonitorError::NoSuchInterface { name, known } => write!(
                f,
                "no interface {name} in this network namespace (there are: {})",
                known.join(", ")
            ),
            MonitorError::NotEthernet(name) => {
                write!(f, "{name} does not give Ethernet frames")
            }
            MonitorError::Open { interface, source } => write!(
                f,
                "cannot capture on {interface}: {source} (needs CAP_NET_RAW: run as root or give ftpct that capability)"
            ),
            MonitorError::Read { interface, source } => {
                write!(f, "reading from {interface} keeps failing: {source}")
            }
            MonitorError::Capture(e) => write!(f, "{e}"),
            MonitorError::Ladder(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MonitorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MonitorError::Signals(e)
            | MonitorError::Open { source: e, .. }
            | MonitorError::Read { source: e, .. } => Some(e),
            MonitorError::Capture(e) => Some(e),
            MonitorError::Ladder(e) => Some(e),
            MonitorError::NoSuchInterface { .. } | MonitorError::NotEthernet(_) => None,
        }
    }
}

/// What a monitor saw, for its last line.
#[derive(Debug, Default)]
pub struct Seen {
    pub frames: u64,
    pub not_ip: u64,
    pub mismatches: u64,
    pub stats: Stats,
}

/// Watches until SIGINT or SIGTERM (or SIGHUP).
pub fn run(opts: Options) -> Result<Seen, MonitorError> {
    let signals = StopSignals::block().map_err(MonitorError::Signals)?;
    let mut link = Link::open(&opts.interface, opts.promiscuous)?;
    let mut writer = match &opts.write {
        Some(path) => {
            Some(capture::Writer::create(path, DataLink::ETHERNET).map_err(MonitorError::Capture)?)
        }
        None => None,
    };
    info!(
        "monitoring {} (read-only: no verdict, no kernel change)",
        opts.interface
    );
    let mut watch = Watch::new(&opts);
    let mut errors = 0;
    let mut next_signal_check = Instant::now();
    loop {
        if Instant::now() >= next_signal_check {
            if let Some(sig) = signals.wait(Duration::ZERO) {
                info!("signal {sig}: stopping");
                break;
            }
            next_signal_check = Instant::now() + SIGNAL_CHECK;
        }
        let now = watch.elapsed();
        match link.read() {
            Ok(Read::Frame(bytes)) => {
                errors = 0;
                let frame = watch.frame(bytes, now);
                if let (Some(w), Some(f)) = (writer.as_mut(), frame) {
                    w.write(&f).map_err(MonitorError::Capture)?;
                }
            }
            Ok(Read::Idle) => {}
            Err(source) => {
                errors += 1;
                if errors >= MAX_READ_ERRORS {
                    return Err(MonitorError::Read {
                        interface: opts.interface.clone(),
                        source,
                    });
                }
            }
        }
        watch.tick(now);
    }
    if let Some(w) = writer {
        w.finish().map_err(MonitorError::Capture)?;
    }
    let ladder = watch.ladder.take();
    let seen = watch.finish();
    if let (Some(path), Some(rec)) = (&opts.html, ladder) {
        let heading = Heading {
            title: format!("ftpct monitor -i {}", opts.interface),
            lines: vec![format!(
                "stopped after {} frames: {}",
                seen.frames, seen.stats
            )],
        };
        ladder::write(path, &rec, &heading).map_err(MonitorError::Ladder)?;
        info!("ladder diagram written to {}", path.display());
    }
    Ok(seen)
}

/// The gateway being watched and what is printed about it.
struct Watch {
    gw: Gateway,
    printer: Printer,
    start: Instant,
    /// The wall clock at `start`: the times printed and written.
    wall_start: Duration,
    next_tick: Duration,
    alerts: RateLimit,
    seen: Seen,
    /// What `--html` draws.
    ladder: Option<Recorder>,
}

impl Watch {
    fn new(opts: &Options) -> Watch {
        Watch {
            gw: Gateway::new(opts.snat.clone(), opts.dnat.clone(), opts.config.clone()),
            printer: Printer::new(opts.json),
            start: Instant::now(),
            wall_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            next_tick: TICK,
            alerts: RateLimit::new(HOSTILE_LINES_WINDOW, HOSTILE_LINES_BURST),
            seen: Seen::default(),
            ladder: opts.html.as_ref().map(|_| Recorder::new()),
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// One frame through the engine; the frame as seen (wall-clock time)
    /// for the capture file.
    fn frame(&mut self, bytes: &[u8], now: Duration) -> Option<Frame> {
        self.seen.frames += 1;
        self.fire_timers(now);
        let time = self.wall_start + now;
        let Some((link, ip)) = capture::split_frame(DataLink::ETHERNET, bytes) else {
            self.seen.not_ip += 1;
            return Some(Frame {
                time,
                link_header: bytes.to_vec(),
                ip: Vec::new(),
            });
        };
        let frame = Frame {
            time: now,
            link_header: link.to_vec(),
            ip: ip.to_vec(),
        };
        let passed = self.gw.frame(&frame);
        if let Some(rec) = &mut self.ladder {
            rec.frame(&frame, &passed);
        }
        self.show(&passed.events, now);
        if let Some(m) = passed.mismatch {
            self.mismatch(&m);
        }
        Some(Frame { time, ..frame })
    }

    /// The engine's timers when they are due; the translations' upkeep
    /// and the alerts held back once a [`TICK`].
    fn tick(&mut self, now: Duration) {
        self.fire_timers(now);
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        self.gw.prune(now);
        for (kind, n) in self.alerts.expire(Instant::now()) {
            warn!("{n} more '{kind}' alerts held back");
        }
    }

    /// The engine's timers due by `now`, each at its deadline.
    fn fire_timers(&mut self, now: Duration) {
        for (at, events) in self.gw.timers_until(now) {
            if let Some(rec) = &mut self.ladder {
                rec.timers(at, &events);
            }
            self.show(&events, at);
        }
    }

    fn show(&mut self, events: &[Event], now: Duration) {
        for e in events {
            self.printer.event(now, self.wall_start + now, e);
            if let Event::Refused { flow, .. } = e {
                if self.alerts.admit(e.kind(), Instant::now()) {
                    warn!(event = e.kind(), flow = %flow, "alert: {e}");
                }
            }
        }
    }

    fn mismatch(&mut self, m: &Mismatch) {
        self.seen.mismatches += 1;
        if self.alerts.admit("mismatch", Instant::now()) {
            warn!(
                event = "mismatch",
                "the gateway did otherwise than ftpct would: {m} (is the NAT given right?)"
            );
        }
    }

    fn finish(mut self) -> Seen {
        self.seen.stats = self.gw.stats().clone();
        if !self.printer.is_json() {
            self.printer.summary(&self.seen.stats);
        }
        self.seen
    }
}
