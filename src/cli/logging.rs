//! Log output of `ftpct run` and `ftpct rules`: tracing to stderr, as text
//! for people or one JSON object per line for log collectors.
//!
//! Levels: info by default (one line per expectation, rewrite, data
//! connection and refusal), `-v` debug (every packet), `-vv` trace.
//! `RUST_LOG` overrides the level when set (e.g. `RUST_LOG=ftpct=debug`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people
    #[default]
    Text,
    /// One JSON object per line, for log collectors
    Json,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels() {
        assert_eq!(level_name(0), "info");
        assert_eq!(level_name(1), "debug");
        assert_eq!(level_name(5), "trace");
    }
}
