//! Presenting engine events to people (a table) and programs (JSON lines).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use ftpct_engine::event::Event;
use ftpct_engine::expect::Expectation;
use ftpct_engine::tuple::Dir;
use ftpct_engine::tuple::Tuple;

/// Numbers control connections in order of appearance, for short labels.
#[derive(Default)]
pub struct FlowNames {
    ids: HashMap<Tuple, usize>,
}

impl FlowNames {
    pub fn name(&mut self, flow: Tuple) -> usize {
        let next = self.ids.len() + 1;
        *self.ids.entry(flow).or_insert(next)
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

fn expectation_json(e: &Expectation) -> Value {
    json!({
        "peer": e.peer.to_string(),
        "dst": e.dst.to_string(),
        "nat_src": e.nat.src.map(|a| a.to_string()),
        "nat_dst": e.nat.dst.map(|a| a.to_string()),
        "kind": format!("{:?}", e.kind),
        "master": e.master.to_string(),
    })
}

/// One JSON object per event.
pub fn event_json(time: Duration, e: &Event) -> Value {
    let mut v = json!({
        "time": time.as_secs_f64(),
        "event": e.kind(),
        "flow": e.flow().to_string(),
        "text": e.to_string(),
    });
    let dir = direction(e);
    if !dir.is_empty() {
        v["dir"] = json!(dir);
    }
    match e {
        Event::ExpectationAdded(exp) | Event::ExpectationRemoved { exp, .. } => {
            v["expectation"] = expectation_json(exp);
        }
        Event::DataMatched { tuple, exp } => {
            v["data"] = json!(tuple.to_string());
            v["expectation"] = expectation_json(exp);
        }
        Event::Rewritten { before, after, .. } => {
            v["before"] = json!(before);
            v["after"] = json!(after);
        }
        Event::Refused { line, refusal, .. } => {
            v["rule"] = json!(refusal.rule());
            v["line"] = json!(line);
        }
        Event::Malformed { line, why, .. } => {
            v["why"] = json!(why.name());
            v["line"] = json!(line);
        }
        Event::Line { text, .. } => v["line"] = json!(text),
        _ => {}
    }
    v
}
