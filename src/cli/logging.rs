//! Log output of `ftpct run` and `ftpct rules`: tracing to stderr, as text
//! for people or one JSON object per line for log collectors.
//!
//! Levels: info by default (one line per expectation, rewrite, data
//! connection and refusal), `-v` debug (every packet), `-vv` trace.
//! `RUST_LOG` overrides the level when set (e.g. `RUST_LOG=ftpct=debug`).

use std::fmt;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
