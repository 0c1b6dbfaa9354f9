//! Helpers shared by the capture-driven tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ftpct::offline::capture::{self, Frame};
use ftpct::offline::replay::{replay_watched, Observer, Replayed};
use ftpct_engine::engine::Config;
use ftpct_engine::event::Event;
use ftpct_engine::nat::{DnatRule, SnatRule};
use ftpct_engine::seqadj::seq_after;
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::{checksums_valid, TcpPacket};
use ftpct_testkit::Received;

pub fn pcap(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(rel)
}

/// (capture relative to pcaps/, NAT arguments) for every capture.
pub fn captures() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let lab = std::fs::read_to_string(pcap("lab/MANIFEST")).expect("lab manifest");
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
    let crafted = std::fs::read_to_string(pcap("crafted/README.md")).expect("crafted README");
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

/// The values of `flag` in command-line arguments (`--snat A --snat B`).
pub fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.chunks(2)
        .filter(|p| p[0] == flag)
        .filter_map(|p| p.get(1).map(String::as_str))
        .collect()
}

/// Replays a capture with NAT rules given as on the command line.
pub fn run(rel: &str, snat: &[&str], dnat: &[&str]) -> Replayed {
    run_with(rel, snat, dnat, Config::default())
}

pub fn run_with(rel: &str, snat: &[&str], dnat: &[&str], cfg: Config) -> Replayed {
    run_watched(rel, snat, dnat, cfg, &mut ())
}

/// [`run_with`], every frame shown to `observer` (the HTML ladder).
pub fn run_watched(
    rel: &str,
    snat: &[&str],
    dnat: &[&str],
    cfg: Config,
    observer: &mut dyn Observer,
) -> Replayed {
    let cap = capture::read(&pcap(rel)).expect("capture reads");
    let snat: Vec<SnatRule> = snat.iter().map(|s| s.parse().expect("snat rule")).collect();
    let dnat: Vec<DnatRule> = dnat.iter().map(|s| s.parse().expect("dnat rule")).collect();
    replay_watched(&cap, snat, dnat, cfg, observer)
}

/// The replay of a capture given with its NAT arguments, and its ladder page.
pub fn ladder_page(rel: &str, args: &[String]) -> (Replayed, String) {
    let mut rec = ftpct::ladder::Recorder::new();
    let r = run_watched(
        rel,
        &flag_values(args, "--snat"),
        &flag_values(args, "--dnat"),
        Config::default(),
        &mut rec,
    );
    let heading = ftpct::ladder::Heading {
        title: format!("ftpct replay pcaps/{rel} {}", args.join(" ")),
        lines: Vec::new(),
    };
    (r, ftpct::ladder::render(&rec, &heading))
}

pub fn count(r: &Replayed, kind: &str) -> usize {
    r.events.iter().filter(|e| e.event.kind() == kind).count()
}

pub fn rewrites(r: &Replayed) -> Vec<(String, String)> {
    r.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Rewritten { before, after, .. } => Some((before.clone(), after.clone())),
            _ => None,
        })
        .collect()
}

pub fn refusal_rules(r: &Replayed) -> Vec<&'static str> {
    r.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Refused { refusal, .. } => Some(refusal.rule()),
            _ => None,
        })
        .collect()
}

/// Payloads of the far side's TCP segments, as text.
pub fn far_payloads(r: &Replayed) -> Vec<String> {
    r.far_side
        .iter()
        .filter_map(|f| TcpPacket::parse(&f.ip).ok())
        .map(|p| String::from_utf8_lossy(p.payload()).into_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every direction's bytes on the far side, by position, whatever the
/// segments that carried them.
pub fn far_streams(r: &Replayed) -> Vec<(Tuple, Vec<u8>)> {
    let mut received: HashMap<Tuple, (Received, u32)> = HashMap::new();
    let parsed = r
        .far_side
        .iter()
        .filter_map(|f| TcpPacket::parse(&f.ip).ok());
    for p in parsed.filter(|p| !p.payload().is_empty()) {
        let (bytes, first) = received
            .entry(p.tuple)
            .or_insert((Received::default(), p.seq));
        if seq_after(*first, p.seq) {
            *first = p.seq;
        }
        let _ = bytes.record(p.seq, p.payload());
    }
    let mut streams: Vec<(Tuple, Vec<u8>)> = received
        .into_iter()
        .map(|(t, (bytes, first))| (t, bytes.stream_from(first)))
        .collect();
    streams.sort_by_key(|(t, _)| (t.src, t.dst));
    streams
}

pub fn far_text(r: &Replayed) -> String {
    far_payloads(r).concat()
}

/// Every far-side packet has valid checksums; for every direction of
/// every connection, no two segments disagree on the byte at a sequence
/// position; no acknowledgement runs ahead of what the other side sent.
pub fn assert_far_side_consistent(frames: &[Frame]) {
    check_far_side(frames, true);
}

/// The same without the acknowledgement check, for captures where the
/// gateway drops what the original peer received (so later ACKs in the
/// capture cover bytes the far side never got).
pub fn assert_far_side_bytes_consistent(frames: &[Frame]) {
    check_far_side(frames, false);
}

fn check_far_side(frames: &[Frame], check_acks: bool) {
    let mut bytes: HashMap<Tuple, Received> = HashMap::new();
    let mut highest: HashMap<Tuple, u32> = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        let Ok(p) = TcpPacket::parse(&f.ip) else {
            continue;
        };
        assert!(checksums_valid(&f.ip), "frame {i}: bad checksum");
        let recorded = bytes.entry(p.tuple).or_default().record(p.seq, p.payload());
        assert_eq!(
            recorded,
            Ok(()),
            "frame {i}: a byte differs from an earlier copy"
        );
        let end = p.seq.wrapping_add(p.seq_len());
        let h = highest.entry(p.tuple).or_insert(end);
        if seq_after(end, *h) {
            *h = end;
        }
        if p.flags.ack && check_acks {
            if let Some(sent) = highest.get(&p.tuple.reversed()) {
                assert!(
                    !seq_after(p.ack, *sent),
                    "frame {i}: ack {} beyond what the peer sent ({sent})",
                    p.ack
                );
            }
        }
    }
}
