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

/// (capture relative to pcaps/, NAT arguments) for every capture.
fn captures() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let lab = fs::read_to_string(common::pcap("lab/MANIFEST")).expect("lab manifest");
    for l in lab
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = l.split('\t').collect();
        let args = cols
            .get(7)
            .copied()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from);
        out.push((format!("lab/{}.inside.pcap", cols[0]), args.collect()));
    }
    let crafted = fs::read_to_string(common::pcap("crafted/README.md")).expect("crafted README");
    for l in crafted
        .lines()
        .filter_map(|l| l.strip_prefix("Replay: `ftpct replay pcaps/"))
    {
        let mut words = l.trim_end_matches('`').split_whitespace().map(String::from);
        let file = words.next().expect("capture name");
        out.push((file, words.collect()));
    }
    out
}

fn decision_log(rel: &str, args: &[String]) -> String {
    let pick = |flag: &str| -> Vec<&str> {
        args.chunks(2)
            .filter(|p| p[0] == flag)
            .map(|p| p[1].as_str())
            .collect()
    };
    let r = common::run(rel, &pick("--snat"), &pick("--dnat"));
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
    let all = captures();
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
    for (rel, args) in captures() {
        let pick = |flag: &str| -> Vec<&str> {
            args.chunks(2)
                .filter(|p| p[0] == flag)
                .map(|p| p[1].as_str())
                .collect()
        };
        let (snat, dnat) = (pick("--snat"), pick("--dnat"));
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
