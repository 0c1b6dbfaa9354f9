//! Log output of `ftpct run` and `ftpct rules`: tracing to stderr, as text
//! for people or one JSON object per line for log collectors.
//!
//! Levels: info by default (one line per expectation, rewrite, data
//! connection and refusal), `-v` debug (every packet), `-vv` trace.
//! `RUST_LOG` overrides the level when set (e.g. `RUST_LOG=ftpct=debug`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format '{other}' (text or json)")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The level that `-v` given `verbosity` times asks for.
pub fn level_name(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// The filter: `RUST_LOG` if set and valid, else the `-v` level.
fn filter(verbosity: u8) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level_name(verbosity)))
}

/// Colours only for a person at a terminal (not journald, files, pipes),
/// and never with NO_COLOR set.
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(format: LogFormat, verbosity: u8) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity))
        .with_writer(std::io::stderr)
        .with_ansi(use_colour())
        .with_target(false);
    // try_init: an already installed subscriber is not an error worth dying for.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(level_name(0), "info");
        assert_eq!(level_name(1), "debug");
        assert_eq!(level_name(5), "trace");
    }
}
