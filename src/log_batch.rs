//! `ftpct run`'s log lines written in batches: each line is a `write` of
//! its own otherwise, 2.5 system calls per FTP session on the packet path
//! (issue 24). Nothing is lost or held for long:
//! - a warning or an error goes out at once, with every line before it;
//! - so does the batch once it holds [`MAX_PENDING`] bytes;
//! - else a thread of its own writes it out [`FLUSH_AFTER`] after its first
//!   line (it sleeps while nothing waits: an idle ftpct does not wake);
//! - and at exit, and before a panic's message.
//!
//! Only a `kill -9` loses what waits: at most [`FLUSH_AFTER`] of lines.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes waiting at most before they are written.
pub const MAX_PENDING: usize = 32 * 1024;
/// How long the first line of a batch waits at most.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Lines waiting to be written to `sink`.
#[derive(Debug)]
pub struct Batched<W: Write> {
    state: Mutex<Pending<W>>,
    /// Told when a batch starts (see [`Batched::write_out_later`]).
    started: Condvar,
}

#[derive(Debug)]
struct Pending<W> {
    sink: W,
    bytes: Vec<u8>,
}

impl<W: Write> Batched<W> {
    pub fn new(sink: W) -> Self {
        Batched {
            state: Mutex::new(Pending {
                sink,
                bytes: Vec::with_capacity(MAX_PENDING),
            }),
            started: Condvar::new(),
        }
    }

    /// Takes one line; writes out what waits when the line is `urgent` (a
    /// warning or an error) or the batch is full. The first line of a
    /// batch wakes [`Batched::write_out_later`].
    pub fn line(&self, line: &[u8], urgent: bool) -> io::Result<()> {
        let mut p = self.lock();
        let first = p.bytes.is_empty();
        p.bytes.extend_from_slice(line);
        if urgent || p.bytes.len() >= MAX_PENDING {
            return p.write_out();
        }
        if first {
            self.started.notify_one();
        }
        Ok(())
    }

    /// Waits for a batch to start, lets it fill for `after`, then writes
    /// it out (a thread's loop: see [`spawn_flusher`]).
    pub fn write_out_later(&self, after: Duration) -> io::Result<()> {
        let mut p = self.lock();
        while p.bytes.is_empty() {
            p = self.started.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        drop(p);
        std::thread::sleep(after);
        self.flush()
    }

    /// Writes out every line waiting.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().write_out()
    }

    /// Bytes waiting.
    pub fn pending(&self) -> usize {
        self.lock().bytes.len()
    }

    /// The sink, to look at (tests).
    pub fn with_sink<T>(&self, f: impl FnOnce(&W) -> T) -> T {
        f(&self.lock().sink)
    }

    /// A panic while a line was taken in leaves whole lines: go on.
    fn lock(&self) -> MutexGuard<'_, Pending<W>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<W: Write> Pending<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let written = self
            .sink
            .write_all(&self.bytes)
            .and_then(|()| self.sink.flush());
        // Dropped even when the write failed: a full disk must not grow
        // the daemon's memory.
        self.bytes.clear();
        written
    }
}

/// The one batch of `ftpct run`, over stderr.
fn stderr_batch() -> &'static Batched<io::Stderr> {
    static BATCH: OnceLock<Batched<io::Stderr>> = OnceLock::new();
    BATCH.get_or_init(|| Batched::new(io::stderr()))
}

/// Writes out the lines waiting on stderr (nothing if none wait, or if
/// the log is not batched).
pub fn flush() {
    let _ = stderr_batch().flush();
}

/// Starts the thread that writes each batch out [`FLUSH_AFTER`] after its
/// first line.
pub fn spawn_flusher() -> io::Result<()> {
    std::thread::Builder::new()
        .name("log".into())
        .spawn(|| loop {
            let _ = stderr_batch().write_out_later(FLUSH_AFTER);
        })
        .map(drop)
}

/// The writer the log's subscriber writes each line with.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStderr;

/// One line, on its way into the batch.
pub struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        stderr_batch().line(buf, self.urgent)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Writes out what waits before a panic's message (which goes straight
/// to stderr), then panics as before.
pub fn flush_before_panics() {
    let before = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        before(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batched<Vec<u8>> {
        Batched::new(Vec::new())
    }

    fn written(b: &Batched<Vec<u8>>) -> String {
        b.with_sink(|s| String::from_utf8_lossy(s).into_owned())
    }

    #[test]
    fn lines_wait_until_flushed_and_none_is_lost() {
        let b = batch();
        b.line(b"one\n", false).unwrap();
        b.line(b"two\n", false).unwrap();
        assert_eq!(written(&b), "", "info lines wait");
        b.flush().unwrap();
        assert_eq!(written(&b), "one\ntwo\n");
        assert_eq!(b.pending(), 0);
        b.flush().unwrap();
        assert_eq!(written(&b), "one\ntwo\n", "nothing written twice");
    }

    #[test]
    fn a_warning_goes_out_at_once_with_the_lines_before_it() {
        let b = batch();
        b.line(b"info\n", false).unwrap();
        b.line(b"warn\n", true).unwrap();
        assert_eq!(written(&b), "info\nwarn\n");
    }

    #[test]
    fn a_batch_is_written_out_soon_after_its_first_line() {
        let b = std::sync::Arc::new(batch());
        let flusher = {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                b.write_out_later(Duration::from_millis(50)).unwrap();
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(written(&b), "", "no batch yet: nothing written");
        b.line(b"a\n", false).unwrap();
        b.line(b"b\n", false).unwrap();
        let waited = flusher.join().unwrap();
        assert_eq!(written(&b), "a\nb\n");
        assert!(
            waited >= Duration::from_millis(150),
            "it slept until the batch: {waited:?}"
        );
    }

    #[test]
    fn a_full_batch_is_written_out() {
        let b = batch();
        let line = [b'x'; 1000];
        for _ in 0..MAX_PENDING / line.len() - 1 {
            b.line(&line, false).unwrap();
        }
        assert_eq!(written(&b), "");
        b.line(&line, false).unwrap();
        b.line(&line, false).unwrap();
        assert!(written(&b).len() >= MAX_PENDING - line.len());
        assert!(b.pending() < MAX_PENDING);
    }

    #[test]
    fn a_failed_write_drops_the_batch_and_says_so() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let b = Batched::new(Full);
        b.line(b"x\n", false).unwrap();
        assert!(b.flush().is_err());
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn warnings_and_errors_are_urgent_info_and_debug_are_not() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let urgent = |level| {
            let meta = Metadata::new(
                "t",
                "t",
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&SITE)),
                Kind::EVENT,
            );
            BatchedStderr.make_writer_for(&meta).urgent
        };
        assert!(urgent(Level::ERROR));
        assert!(urgent(Level::WARN));
        assert!(!urgent(Level::INFO));
        assert!(!urgent(Level::DEBUG));
    }
}
