//! Replay and gateway agree: every lab and crafted capture runs through the
//! driver core twice, once with the replay's kernel (the capture's NAT
//! rules) and once with a queue thread's kernel (the daemon's executor on
//! the fake kernel, the same rules for conntrack's answers), and the
//! verdicts and events are the same, packet by packet, the timers fired
//! between them included. Twice each: every packet queued, and selective
//! queueing (the rules' choice as `replay --selective` emulates it; the
//! passive notes held by the replay's emulation on one side, by the fake
//! kernel's passive set on the other).

use std::path::{Path, PathBuf};

use std::time::Duration;

use ftpct_engine::engine::{Config, Engine, Input, KernelNote, Origin, Outcome, Verdict};
use ftpct_engine::event::Event;
use ftpct_engine::nat::{DnatRule, SnatRule, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::TcpPacket;

use super::executor::Executor;
use super::fake_kernel::FakeKernel;
use super::metrics::Metrics;
use super::packet_path::QueueKernel;
use super::shared::Shared;
use crate::driver::{self, DriverKernel, EngineHost};
use crate::netfilter::kept_labels::KeptLabels;
use crate::netfilter::sets::SetNames;
use crate::offline::capture::{self, Frame};
use crate::offline::replay::RulesKernel;
use crate::offline::selection::{Queueing, Selection};

/// The crafted captures' NAT (see pcaps/crafted/README.md).
const CRAFTED_SNAT: &str = "192.0.2.0/24=198.51.100.1";

/// What a capture gave, packet by packet (the timers' firings among them).
type Decisions = Vec<(Verdict, Vec<Event>)>;

/// A capture's NAT rules.
type Rules = (Vec<SnatRule>, Vec<DnatRule>);

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

/// Both kernels answer and act alike here: ftpct's own fix-ups, nothing
/// kept (what the replay can emulate); every packet queued, or only those
/// the kernel's rules of selective queueing would queue.
fn config(selective: bool) -> Config {
    Config {
        report_lines: true,
        selective,
        ..Config::default()
    }
}

/// What the kernel's rules do with a frame: None, queued; else it passes
/// unqueued, and the session it ends (a client's FIN: the FIN set).
type Unqueued = Option<Option<Tuple>>;

/// The verdict and events of one frame through the driver core.
fn decide<H: EngineHost, K: DriverKernel>(
    host: &mut H,
    kernel: &mut K,
    f: &Frame,
    unqueued: Unqueued,
) -> Outcome {
    match unqueued {
        None => driver::packet(host, kernel, f.time, &f.ip, Origin::Network),
        // Read from the FIN set a moment later, live.
        Some(Some(orig)) => {
            let note = Input::Note(KernelNote::ClientFinished { orig });
            driver::input(host, kernel, f.time, note)
        }
        Some(None) => Outcome {
            verdict: Verdict::Accept,
            events: Vec::new(),
            commands: Vec::new(),
        },
    }
}

/// The timers due before a frame, then the frame: what each gave.
fn push(out: &mut Decisions, timers: Vec<(Duration, Outcome)>, frame: &Outcome) {
    for (_, fired) in timers {
        out.push((Verdict::Accept, fired.events));
    }
    out.push((frame.verdict.clone(), frame.events.clone()));
}

/// The session a frame's FIN ends, if the rules put it in the FIN set.
fn fin_of(sel: &Selection, pkt: &TcpPacket<'_>) -> Option<Tuple> {
    sel.ends_session(pkt).then_some(pkt.tuple)
}

fn through_replay(frames: &[Frame], rules: &Rules, selective: bool) -> Decisions {
    let cfg = config(selective);
    let mut selection = selective.then(|| Selection::new(&cfg.control_ports));
    let mut engine = Engine::new(cfg);
    let mut nat = StaticNat::new(rules.0.clone(), rules.1.clone());
    let mut out = Vec::new();
    for f in frames {
        let mut kernel = RulesKernel {
            nat: &mut nat,
            selection: selection.as_mut(),
        };
        if out.is_empty() {
            driver::start_clock(&mut engine, &mut kernel, f.time);
        }
        let timers = driver::timers_until(&mut engine, &mut kernel, f.time);
        let pkt = TcpPacket::parse(&f.ip).ok();
        let unqueued = match (kernel.selection.as_deref_mut(), &pkt) {
            (Some(sel), Some(pkt)) => (!sel.queues(&f.ip, pkt)).then(|| fin_of(sel, pkt)),
            _ => None,
        };
        let decided = decide(&mut engine, &mut kernel, f, unqueued);
        push(&mut out, timers, &decided);
    }
    out
}

/// The daemon's side: the rules' guard set emulated as for the replay (a
/// release takes effect once the queue is empty: after each verdict),
/// the passive notes held by the fake kernel's passive set as the real
/// ipset holds them, taken by the executor.
fn through_gateway(frames: &[Frame], rules: &Rules, selective: bool) -> (Decisions, u64) {
    let cfg = config(selective);
    let mut selection = selective.then(|| Selection::new(&cfg.control_ports));
    let shared = Shared::new(Engine::new(cfg), Metrics::default());
    let sets = SetNames::new("ftpct").expect("names");
    let mut exec = Executor::new(FakeKernel::default(), sets.clone(), KeptLabels::default());
    let mut nat = StaticNat::new(rules.0.clone(), rules.1.clone());
    let (mut after_verdict, mut carried) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for f in frames {
        let mut kernel = QueueKernel {
            shared: &shared,
            exec: &mut exec,
            nat: &mut nat,
            after_verdict: &mut after_verdict,
            carried: &mut carried,
        };
        if out.is_empty() {
            driver::start_clock(&mut &shared, &mut kernel, f.time);
        }
        let timers = driver::timers_until(&mut &shared, &mut kernel, f.time);
        let pkt = TcpPacket::parse(&f.ip).ok();
        let unqueued = match (selection.as_mut(), &pkt) {
            (Some(sel), Some(pkt)) => match sel.fate(&f.ip, pkt) {
                Queueing::Queued => None,
                Queueing::Passes => Some(fin_of(sel, pkt)),
                Queueing::Noted(key) => {
                    let set = sets.passive_for(key.client.ip());
                    kernel.exec.kernel_mut().rule_adds(set, key);
                    Some(fin_of(sel, pkt))
                }
            },
            _ => None,
        };
        let decided = decide(&mut &shared, &mut kernel, f, unqueued);
        exec.release_all_guards();
        if let Some(sel) = selection.as_mut() {
            let commands = timers.iter().flat_map(|(_, t)| &t.commands);
            sel.follow(
                &commands
                    .chain(&decided.commands)
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        push(&mut out, timers, &decided);
    }
    let notes = shared.with_engine(|e| e.stats().passive_notes);
    (out, notes.unwrap_or_default())
}

#[test]
fn every_capture_gets_the_same_verdicts_and_events_from_both_kernels() {
    for selective in [false, true] {
        let (mut rewrites, mut captures_run, mut notes) = (0, 0, 0);
        for (path, snat, dnat) in captures() {
            let capture = capture::read(&path).expect("capture");
            let rules = (snat, dnat);
            let replayed = through_replay(&capture.frames, &rules, selective);
            let (live, taken) = through_gateway(&capture.frames, &rules, selective);
            notes += taken;
            assert_eq!(replayed.len(), live.len(), "{}", path.display());
            for (i, (r, l)) in replayed.iter().zip(&live).enumerate() {
                assert_eq!(r, l, "{} (selective {selective}): {i}", path.display());
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
        // Selective: PASV and EPSV pass unqueued, noted in the fake
        // kernel's passive set, and their answers take the notes.
        assert_eq!(notes > 0, selective, "passive notes taken: {notes}");
    }
}
