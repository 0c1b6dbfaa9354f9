//! Replay and gateway agree: every lab and crafted capture runs through the
//! driver core twice, once with the replay's kernel (the capture's NAT
//! rules) and once with a queue thread's kernel (the daemon's executor on
//! the fake kernel, the same rules for conntrack's answers), and the
//! verdicts and events are the same, packet by packet.

use std::path::{Path, PathBuf};

use ftpct_engine::engine::{Config, Engine, Origin, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::nat::{DnatRule, SnatRule, StaticNat};

use super::executor::Executor;
use super::fake_kernel::FakeKernel;
use super::metrics::Metrics;
use super::packet_path::QueueKernel;
use super::shared::Shared;
use crate::driver;
use crate::netfilter::kept_labels::KeptLabels;
use crate::netfilter::sets::SetNames;
use crate::offline::capture::{self, Frame};
use crate::offline::replay::RulesKernel;

/// The crafted captures' NAT (see pcaps/crafted/README.md).
const CRAFTED_SNAT: &str = "192.0.2.0/24=198.51.100.1";

/// What a capture gave, packet by packet.
type Decisions = Vec<(Verdict, Vec<Event>)>;

fn pcaps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

/// Each capture with its rules: the lab's inside captures (pcaps/lab/MANIFEST)
/// and the crafted ones.
fn captures() -> Vec<(PathBuf, Vec<SnatRule>, Vec<DnatRule>)> {
    let manifest = std::fs::read_to_string(pcaps().join("lab/MANIFEST")).expect("MANIFEST");
    let mut out = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (snat, dnat) = nat_rules(cols.get(7).copied().unwrap_or(""));
        let inside = pcaps().join(format!("lab/{}.inside.pcap", cols[0]));
        out.push((inside, snat, dnat));
    }
    let crafted = std::fs::read_dir(pcaps().join("crafted")).expect("pcaps/crafted");
    for entry in crafted.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pcap") {
            let snat = vec![CRAFTED_SNAT.parse().expect("rule")];
            out.push((path, snat, Vec::new()));
        }
    }
    out
}

/// The replay's NAT arguments of a MANIFEST line (`--snat R --dnat R`).
fn nat_rules(args: &str) -> (Vec<SnatRule>, Vec<DnatRule>) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let flags = words.iter().step_by(2);
    let rules = words.iter().skip(1).step_by(2);
    let (mut snat, mut dnat) = (Vec::new(), Vec::new());
    for (flag, rule) in flags.zip(rules) {
        if *flag == "--snat" {
            snat.push(rule.parse().expect("snat rule"));
        } else {
            dnat.push(rule.parse().expect("dnat rule"));
        }
    }
    (snat, dnat)
}

/// Both kernels answer and act alike here: ftpct's own fix-ups, every
/// packet queued, nothing kept (what the replay can emulate).
fn config() -> Config {
    Config {
        report_lines: true,
        ..Config::default()
    }
}

fn through_replay(frames: &[Frame], snat: &[SnatRule], dnat: &[DnatRule]) -> Decisions {
    let mut engine = Engine::new(config());
    let mut nat = StaticNat::new(snat.to_vec(), dnat.to_vec());
    let mut kernel = RulesKernel {
        nat: &mut nat,
        selection: None,
    };
    frames
        .iter()
        .map(|f| {
            let out = driver::packet(&mut engine, &mut kernel, f.time, &f.ip, Origin::Network);
            (out.verdict, out.events)
        })
        .collect()
}

fn through_gateway(frames: &[Frame], snat: &[SnatRule], dnat: &[DnatRule]) -> Decisions {
    let shared = Shared::new(Engine::new(config()), Metrics::default());
    let sets = SetNames::new("ftpct").expect("names");
    let mut exec = Executor::new(FakeKernel::default(), sets, KeptLabels::default());
    let mut nat = StaticNat::new(snat.to_vec(), dnat.to_vec());
    let (mut after_verdict, mut carried) = (Vec::new(), Vec::new());
    let mut kernel = QueueKernel {
        shared: &shared,
        exec: &mut exec,
        nat: &mut nat,
        after_verdict: &mut after_verdict,
        carried: &mut carried,
    };
    frames
        .iter()
        .map(|f| {
            let out = driver::packet(&mut &shared, &mut kernel, f.time, &f.ip, Origin::Network);
            (out.verdict, out.events)
        })
        .collect()
}

#[test]
fn every_capture_gets_the_same_verdicts_and_events_from_both_kernels() {
    let (mut rewrites, mut captures_run) = (0, 0);
    for (path, snat, dnat) in captures() {
        let capture = capture::read(&path).expect("capture");
        let replayed = through_replay(&capture.frames, &snat, &dnat);
        let live = through_gateway(&capture.frames, &snat, &dnat);
        assert_eq!(replayed.len(), live.len());
        for (i, (r, l)) in replayed.iter().zip(&live).enumerate() {
            assert_eq!(r, l, "{}: packet {i}", path.display());
        }
        rewrites += replayed
            .iter()
            .flat_map(|(_, events)| events)
            .filter(|e| matches!(e, Event::Rewritten { .. }))
            .count();
        captures_run += 1;
    }
    assert!(
        captures_run > 20,
        "lab and crafted captures: {captures_run}"
    );
    assert!(rewrites > 10, "the captures rewrite: {rewrites}");
    // Same clock for both: the frames' times.
}
