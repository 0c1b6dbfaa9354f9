//! Golden decision logs: for every capture in pcaps/, the decisions the
//! engine takes (expectations, rewrites, matches, refusals, drops...) as
//! `ftpct replay` prints them, compared with tests/golden/NAME.log.
//! After an intended change, regenerate with `FTPCT_BLESS=1 cargo test --test decision_log`
//! and review the diff.

mod common;

use std::fs;
use std::path::Path;

use ftpct::cli::report::{table_row, FlowNames};
use ftpct_engine::event::Event;

fn decision_log(rel: &str, args: &[String]) -> String {
    let r = common::run(
        rel,
        &common::flag_values(args, "--snat"),
        &common::flag_values(args, "--dnat"),
    );
    // Toward the inside, the engine's verdicts give back what was captured.
    assert!(
        r.mismatches.is_empty(),
        "{rel}: {}",
        r.mismatches
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let start = r.events.first().map(|e| e.time).unwrap_or_default();
    let mut names = FlowNames::default();
    let mut log = String::new();
    for e in r
        .events
        .iter()
        .filter(|e| !matches!(e.event, Event::Line { .. }))
    {
        log.push_str(&table_row(&mut names, start, e.time, &e.event));
        log.push('\n');
    }
    log.push_str(&format!("summary: {}\n", r.stats));
    log
}

#[test]
fn decision_logs_match_the_golden_files() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("FTPCT_BLESS").is_some();
    let mut differ = Vec::new();
    let all = common::captures();
    assert!(
        all.len() >= 50,
        "lab and crafted captures expected, found {}",
        all.len()
    );
    for (rel, args) in all {
        let log = decision_log(&rel, &args);
        let name = rel.trim_end_matches(".pcap").replace('/', "-");
        let path = golden_dir.join(format!("{name}.log"));
        if bless {
            fs::create_dir_all(&golden_dir).expect("golden dir");
            fs::write(&path, &log).expect("write golden");
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(want) if want == log => {}
            Ok(want) => differ.push(format!("{name}:\n--- golden\n{want}--- now\n{log}")),
            Err(_) => differ.push(format!("{name}: no golden file {}", path.display())),
        }
    }
    assert!(
        differ.is_empty(),
        "decision logs changed:\n{}",
        differ.join("\n")
    );
}

/// The decisions that open or refuse something, in order.
fn decisions(r: &ftpct::offline::replay::Replayed) -> Vec<String> {
    r.events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::ExpectationAdded(_)
                    | Event::Rewritten { .. }
                    | Event::DataMatched { .. }
                    | Event::Refused { .. }
            )
        })
        .map(|e| match &e.event {
            // When it was announced is not a decision (a segment that came
            // early can be taken at once when the lines before it pass
            // unseen anyway).
            Event::ExpectationAdded(exp) => format!("expect {} {:?}", exp.dst, exp.nat),
            Event::DataMatched { tuple, exp } => format!("matched {tuple} for {}", exp.dst),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Selective queueing, emulated on every capture (the engine sees only
/// what the kernel's rules would queue): the same expectations, rewrites,
/// matches and refusals as with every packet, the same bytes on the far
/// side, and verdicts toward the inside that give back the capture.
#[test]
fn selective_queueing_decides_as_if_every_packet_were_seen() {
    let (mut differ, mut notes) = (Vec::new(), 0);
    for (rel, args) in common::captures() {
        let (snat, dnat) = (
            common::flag_values(&args, "--snat"),
            common::flag_values(&args, "--dnat"),
        );
        let full = common::run(&rel, &snat, &dnat);
        let selective = ftpct_engine::engine::Config {
            selective: true,
            ..ftpct_engine::engine::Config::default()
        };
        let seen = common::run_with(&rel, &snat, &dnat, selective);
        if decisions(&seen) != decisions(&full) {
            differ.push(format!(
                "{rel}: decisions\n  all:       {:?}\n  selective: {:?}",
                decisions(&full),
                decisions(&seen)
            ));
        }
        // The same bytes at every position (segments may be cut and ordered
        // differently: an early segment can go on at once).
        common::assert_far_side_bytes_consistent(&seen.far_side);
        if common::far_streams(&seen) != common::far_streams(&full) {
            differ.push(format!("{rel}: far side differs"));
        }
        if !seen.mismatches.is_empty() {
            differ.push(format!("{rel}: {}", seen.mismatches[0]));
        }
        notes += seen.stats.passive_notes;
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Lone PASV and EPSV segments passed unqueued, noted for their answer.
    assert!(notes > 0, "no passive request was noted");
}
