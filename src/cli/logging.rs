//! Log output of `ftpct run` and `ftpct rules`: tracing to stderr, as text
//! for people or one JSON object per line for log collectors.
//!
//! Levels: info by default (one line per expectation, rewrite, data
//! connection and refusal), `-v` debug (every packet), `-vv` trace.
//! `RUST_LOG` overrides the level when set (e.g. `RUST_LOG=ftpct=debug`).
//!
//! Under systemd (JOURNAL_STREAM names our stderr), text logs go to the
//! journal natively instead: each line with its syslog priority (error 3,
//! warning 4, info 6, debug and trace 7; `journalctl -p warning` finds the
//! warnings) and without a second timestamp.

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

/// True if JOURNAL_STREAM ("DEV:INODE", set by systemd) names the file
/// that stderr is.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    meta.is_ok_and(|m| names_stream(&stream.to_string_lossy(), m.dev(), m.ino()))
}

/// Whether a JOURNAL_STREAM value names the file `dev`:`ino`.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The journal's layer, when stderr goes to the journal and its socket
/// answers.
fn journal() -> Option<tracing_journald::Layer> {
    if !stderr_is_journal() {
        return None;
    }
    tracing_journald::layer().ok().map(|l| {
        l.with_syslog_identifier("ftpct".into())
            .with_priority_mappings(priorities())
    })
}

/// Syslog's meaning of the levels: tracing-journald's default maps info
/// to notice (5), which `journalctl -p notice` would count as noteworthy.
fn priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(format: LogFormat, verbosity: u8) {
    install(format, verbosity, std::io::stderr);
}

/// Like [`init`], with the lines written to stderr in batches (`ftpct
/// run`: see `log_batch`, which says when they are written out).
pub fn init_batched(format: LogFormat, verbosity: u8) {
    crate::log_batch::flush_before_panics();
    if let Err(e) = crate::log_batch::spawn_flusher() {
        // Without its thread a batch would wait for the next warning.
        eprintln!("ftpct: log lines written one by one: {e}");
        return install(format, verbosity, std::io::stderr);
    }
    install(format, verbosity, crate::log_batch::BatchedStderr);
}

fn install<W>(format: LogFormat, verbosity: u8, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if format == LogFormat::Text {
        if let Some(layer) = journal() {
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            let _ = tracing_subscriber::registry()
                .with(filter(verbosity))
                .with(layer)
                .try_init();
            return;
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity))
        .with_writer(writer)
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

    #[test]
    fn journal_priorities_are_syslogs() {
        let p = priorities();
        // tracing-journald writes each priority as its ASCII digit.
        let digits = [p.error, p.warn, p.info, p.debug, p.trace].map(|p| p as u8);
        assert_eq!(&digits, b"34677");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(names_stream("64769:123456", 64769, 123456));
        assert!(!names_stream("64769:123456", 64769, 7));
        assert!(!names_stream("garbage", 64769, 123456));
        assert!(!names_stream("", 0, 0));
    }
}
