//! Presenting engine events to people (a table) and programs (JSON lines).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::daemon::status::ExpectationView;

use ftpct_engine::event::Event;
use ftpct_engine::tuple::Dir;
use ftpct_engine::tuple::Tuple;

/// Numbers control connections in order of appearance, for short labels.
#[derive(Default)]
pub struct FlowNames {
    ids: HashMap<Tuple, usize>,
    given: usize,
}

impl FlowNames {
    pub fn name(&mut self, flow: Tuple) -> usize {
        let next = self.given + 1;
        let id = *self.ids.entry(flow).or_insert(next);
        self.given = self.given.max(id);
        id
    }

    /// A closed connection's number is not needed any more (its number is
    /// never given again).
    pub fn forget(&mut self, flow: &Tuple) {
        self.ids.remove(flow);
    }
}

fn direction(e: &Event) -> &'static str {
    match e.dir() {
        Some(Dir::Orig) => "C->S",
        Some(Dir::Reply) => "S->C",
        None => "",
    }
}

/// One table row: time since the first packet, control connection, direction, what.
pub fn table_row(names: &mut FlowNames, start: Duration, time: Duration, e: &Event) -> String {
    let t = time.saturating_sub(start).as_secs_f64();
    let mut row = format!(
        "{t:>10.6}  #{:<3} {:<5} ",
        names.name(e.flow()),
        direction(e)
    );
    let marker = match e {
        Event::Line { .. } => "",
        Event::Refused { .. } | Event::Malformed { .. } => "!! ",
        _ => "-> ",
    };
    let _ = write!(row, "{marker}{e}");
    if let Event::FlowNew { mapping, .. } = e {
        let _ = write!(row, " [{}]", mapping.orig);
    }
    row
}

/// One event as a JSON object: what every event has, then the fields of
/// its kind (absent when they do not apply).
#[derive(Serialize, Default)]
pub struct EventRecord<'a> {
    time: f64,
    event: &'static str,
    flow: String,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expectation: Option<ExpectationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
}

impl<'a> EventRecord<'a> {
    pub fn new(time: Duration, e: &'a Event) -> Self {
        let dir = direction(e);
        let mut r = EventRecord {
            time: time.as_secs_f64(),
            event: e.kind(),
            flow: e.flow().to_string(),
            text: e.to_string(),
            dir: (!dir.is_empty()).then_some(dir),
            ..EventRecord::default()
        };
        match e {
            Event::ExpectationAdded(exp) | Event::ExpectationRemoved { exp, .. } => {
                r.expectation = Some(exp.into());
            }
            Event::DataMatched { tuple, exp } => {
                r.data = Some(tuple.to_string());
                r.expectation = Some(exp.into());
            }
            Event::Rewritten { before, after, .. } => {
                r.before = Some(before);
                r.after = Some(after);
            }
            Event::Refused { line, refusal, .. } => {
                r.rule = Some(refusal.rule());
                r.line = Some(line);
            }
            Event::Malformed { line, why, .. } => {
                r.why = Some(why.name());
                r.line = Some(line);
            }
            Event::Line { text, .. } => r.line = Some(text),
            _ => {}
        }
        r
    }
}

/// One JSON line per event.
pub fn event_json(time: Duration, e: &Event) -> String {
    serde_json::to_string(&EventRecord::new(time, e)).unwrap_or_default()
}
