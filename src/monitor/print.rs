//! The monitor's standard output: the replay's table rows or JSON lines,
//! one per event, written as they happen.

use std::io::Write as _;
use std::time::Duration;

use ftpct_engine::event::{Event, Stats};

use crate::cli::report::{self, FlowNames};

pub struct Printer {
    json: bool,
    names: FlowNames,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            names: FlowNames::default(),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One event: a table row at `since_start`, or a JSON line at `wall`.
    pub fn event(&mut self, since_start: Duration, wall: Duration, e: &Event) {
        let line = if self.json {
            report::event_json(wall, e)
        } else {
            report::table_row(&mut self.names, Duration::ZERO, since_start, e)
        };
        if let Event::FlowClosed { flow } = e {
            // Numbers of closed connections are not kept: memory stays bounded.
            self.names.forget(flow);
        }
        self.line(&line);
    }

    pub fn summary(&mut self, stats: &Stats) {
        self.line(&format!("summary: {stats}"));
    }

    /// A closed pipe (`| head`) is not an error worth stopping for.
    fn line(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}
