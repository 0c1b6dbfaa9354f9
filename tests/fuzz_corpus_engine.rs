//! Runs every input of the `engine` fuzz corpus through the fuzz target's
//! own harness (the file is included as a module), so the corpus guards
//! against regressions in a plain `cargo test`.
//!
//! The seeds `seed-*` are the crafted captures' dialogues translated into
//! the target's input format; regenerate them with
//! `cargo test --test fuzz_corpus_engine -- --ignored write_seed_corpus`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ftpct_engine::wire::TcpPacket;

#[path = "../fuzz/fuzz_targets/engine.rs"]
mod engine_target;

use engine_target::{
    run, Summary, F_ACK, F_FIN, F_RST, F_SACK, KIND_CLOCK, KIND_DATA_SYN, KIND_FLIP, KIND_RAW,
    KIND_SEGMENT, KIND_SYN,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/engine");
const PCAPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/crafted");

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(CORPUS)
        .expect("engine fuzz corpus directory")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let files = corpus_files();
    let mut failed = Vec::new();
    for path in &files {
        let data = fs::read(path).expect("corpus file");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "corpus inputs failed: {failed:?}");
    assert!(
        files.len() >= 20,
        "corpus unexpectedly small: {}",
        files.len()
    );
}

/// What the seeds made from the crafted captures must keep doing.
#[test]
fn seeds_keep_their_meaning() {
    let summary = |name: &str| -> Summary {
        let data = fs::read(Path::new(CORPUS).join(name)).expect("seed file");
        run(&data)
    };
    // (seed, rewrites, expectations added, data connections matched)
    let expected = [
        ("seed-split-port", 1, 1, 1),
        ("seed-split-port-retrans", 1, 1, 1),
        ("seed-pipelined", 1, 1, 1),
        ("seed-retrans-port", 1, 1, 1),
        ("seed-ooo-port", 1, 1, 1),
        ("seed-overlong", 1, 1, 1),
        // The seed never retransmits the out-of-order NOOP that the engine
        // drops, and its receiver acknowledges only what reached it, so the
        // gap stays open until the bounded resynchronisation, which skips
        // the third PORT: two rewrites. (In the capture the server did get
        // the NOOP and acknowledged it, so `ftpct replay` follows on at
        // once and rewrites all three.)
        ("seed-several-rewrites", 2, 2, 2),
        ("seed-dnat-pasv", 1, 2, 2),
        ("seed-eprt-v6", 1, 1, 1),
        ("seed-epsv-v6", 0, 1, 1),
        ("seed-eprt-odd-delim", 2, 2, 2),
        ("seed-fin-then-new", 2, 2, 2),
        ("seed-pasv-227-variants", 0, 3, 3),
        ("seed-bounce-port25", 0, 0, 0),
        ("seed-bounce-thirdparty", 0, 0, 0),
        ("seed-auth-tls", 0, 0, 0),
        ("seed-malformed", 1, 1, 1),
        ("seed-split-port-nonat", 0, 1, 1),
    ];
    let mut wrong = Vec::new();
    for (name, rewrites, expectations, matched) in expected {
        let s = summary(name);
        let got = (s.rewrites, s.expectations, s.data_matched);
        if got != (rewrites, expectations, matched) {
            wrong.push(format!(
                "{name}: got {got:?}, want {:?}",
                (rewrites, expectations, matched)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// One record of the target's input format.
fn record(out: &mut Vec<u8>, op: u8, flags: u8, delta: i8, payload: &[u8]) {
    let len = u8::try_from(payload.len()).expect("record payload up to 255 bytes");
    out.extend_from_slice(&[op, flags, delta as u8, len]);
    out.extend_from_slice(payload);
}

/// Sequence state of one direction of a capture, relative to its ISN.
#[derive(Clone, Copy)]
struct Side {
    isn: u32,
    /// Highest relative position sent so far (the harness sender's `next`).
    next: i64,
}

/// Translates a crafted capture into the engine target's input format:
/// control-connection segments become records with their direction, flags,
/// position relative to the sender's next byte and payload; data
/// connections become "data SYN to the pending expectation" records.
fn translate(pcap: &str, mode: u8, cfg: u8) -> Vec<u8> {
    let capture =
        ftpct::offline::capture::read(&Path::new(PCAPS).join(pcap)).expect("crafted pcap");
    let mut out = vec![mode, cfg];
    let mut sides: HashMap<bool, Side> = HashMap::new();
    let mut last = None;
    for frame in &capture.frames {
        let Ok(p) = TcpPacket::parse(&frame.ip) else {
            continue;
        };
        if let Some(prev) = last {
            let gap = frame.time.saturating_sub(prev).as_secs();
            if gap >= 4 {
                let steps = u8::try_from(gap / 4).unwrap_or(u8::MAX);
                record(
                    &mut out,
                    KIND_CLOCK << 3,
                    0,
                    0,
                    &vec![0; usize::from(steps)],
                );
            }
        }
        last = Some(frame.time);
        let server = p.tuple.src.port() == 21;
        if !server && p.tuple.dst.port() != 21 {
            if p.flags.syn && !p.flags.ack {
                record(&mut out, KIND_DATA_SYN << 3, 0, 0, &[]);
            }
            continue;
        }
        let op_dir = if server { 4 } else { 0 };
        let mut flags = 0;
        if p.flags.ack {
            flags |= F_ACK;
        }
        if p.flags.fin {
            flags |= F_FIN;
        }
        if p.flags.rst {
            flags |= F_RST;
        }
        if !p.sack_blocks().is_empty() {
            flags |= F_SACK;
        }
        if p.flags.syn {
            let delta = match sides.get(&server) {
                Some(s) if s.isn != p.seq => 1,
                _ => 0,
            };
            sides.insert(
                server,
                Side {
                    isn: p.seq,
                    next: 1,
                },
            );
            record(&mut out, (KIND_SYN << 3) | op_dir, flags, delta, &[]);
            continue;
        }
        let side = sides.entry(server).or_insert(Side {
            isn: p.seq.wrapping_sub(1),
            next: 1,
        });
        let mut pos = i64::from(p.seq.wrapping_sub(side.isn));
        let payload = p.payload();
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(255).collect()
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let delta = i8::try_from(pos - side.next).expect("capture offsets fit an i8");
            // FIN only on the last piece of a split segment.
            let f = if i + 1 < n { flags & !F_FIN } else { flags };
            record(&mut out, (KIND_SEGMENT << 3) | op_dir, f, delta, chunk);
            let end = pos + chunk.len() as i64;
            side.next = side.next.max(end);
            if f & F_FIN != 0 && end >= side.next {
                side.next = end + 1;
            }
            pos = end;
        }
    }
    out
}

/// Writes the seed corpus (deterministic). Not a check: run it by hand
/// after changing the input format or the crafted captures.
#[test]
#[ignore = "writes fuzz/corpus/engine; run by hand"]
fn write_seed_corpus() {
    const SNAT: u8 = 1;
    const DNAT: u8 = 2;
    const V6: u8 = 0x80;
    const TIGHT: u8 = 0x04;
    const SHORT_LINES: u8 = 0x08;
    const REPORT: u8 = 0x40;
    const WRAP: u8 = 0x80;
    let seeds: &[(&str, &str, u8, u8)] = &[
        ("seed-split-port", "split-port.pcap", SNAT, 0),
        (
            "seed-split-port-retrans",
            "split-port-retrans.pcap",
            SNAT,
            0,
        ),
        ("seed-pipelined", "pipelined.pcap", SNAT, 0),
        ("seed-retrans-port", "retrans-port.pcap", SNAT, 0),
        ("seed-ooo-port", "ooo-port.pcap", SNAT, 0),
        ("seed-overlong", "overlong.pcap", SNAT, 0),
        ("seed-several-rewrites", "several-rewrites.pcap", SNAT, 0),
        ("seed-dnat-pasv", "dnat-pasv.pcap", DNAT, 0),
        ("seed-eprt-v6", "eprt-v6.pcap", SNAT | V6, 0),
        ("seed-epsv-v6", "epsv-v6.pcap", SNAT | V6, 0),
        ("seed-eprt-odd-delim", "eprt-odd-delim.pcap", SNAT, 0),
        ("seed-fin-then-new", "fin-then-new.pcap", SNAT, 0),
        ("seed-pasv-227-variants", "pasv-227-variants.pcap", SNAT, 0),
        ("seed-bounce-port25", "bounce-port25.pcap", SNAT, 0),
        ("seed-bounce-thirdparty", "bounce-thirdparty.pcap", SNAT, 0),
        ("seed-auth-tls", "auth-tls.pcap", SNAT, 0),
        ("seed-malformed", "malformed.pcap", SNAT, REPORT),
        // Variants: no NAT, wrapping ISNs, IPv6, tight limits, short lines,
        // both NATs at once, three connections.
        ("seed-split-port-nonat", "split-port.pcap", 0, 0),
        (
            "seed-several-rewrites-wrap",
            "several-rewrites.pcap",
            SNAT,
            WRAP,
        ),
        ("seed-dnat-pasv-v6", "dnat-pasv.pcap", DNAT | V6, 0),
        ("seed-dnat-pasv-tight", "dnat-pasv.pcap", DNAT, TIGHT),
        ("seed-overlong-short", "overlong.pcap", SNAT, SHORT_LINES),
        ("seed-split-port-both", "split-port.pcap", 3, 0),
        ("seed-pipelined-3conn", "pipelined.pcap", SNAT, 2),
        ("seed-eprt-v6-nonat", "eprt-v6.pcap", V6, REPORT),
    ];
    fs::create_dir_all(CORPUS).expect("corpus directory");
    for (name, pcap, mode, cfg) in seeds {
        let data = translate(pcap, *mode, *cfg);
        fs::write(Path::new(CORPUS).join(name), data).expect("write seed");
    }
    // Hand-made: raw garbage and a corrupted segment amid a PORT dialogue,
    // several connections interleaved, and expiry by the clock.
    let mut raw = vec![SNAT, 1];
    record(&mut raw, KIND_SYN << 3, 0, 0, &[]);
    record(&mut raw, (KIND_SYN << 3) | 4, F_ACK, 0, &[]);
    record(&mut raw, KIND_SEGMENT << 3, F_ACK, 0, b"PORT 192,0,2,");
    record(
        &mut raw,
        KIND_RAW << 3,
        0,
        0,
        &[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6],
    );
    record(&mut raw, KIND_RAW << 3, 0, 0, &[0x60, 0, 0, 0, 0, 0, 6, 64]);
    record(&mut raw, KIND_FLIP << 3, F_ACK | 0x60, 9, b"10,156,64\r\n");
    record(&mut raw, KIND_SEGMENT << 3, F_ACK, 0, b"10,156,64\r\n");
    record(
        &mut raw,
        (KIND_SEGMENT << 3) | 1,
        F_ACK,
        0,
        b"PORT 192,0,2,11,156,65\r\n",
    );
    record(
        &mut raw,
        (KIND_SEGMENT << 3) | 4,
        F_ACK | F_SACK,
        0,
        b"200 ok\r\n",
    );
    record(&mut raw, KIND_DATA_SYN << 3, 0, 1, &[]);
    record(&mut raw, KIND_CLOCK << 3, 0, 0, &[0; 100]);
    record(&mut raw, KIND_SEGMENT << 3, F_ACK, 0, b"PASV\r\n");
    record(
        &mut raw,
        (KIND_SEGMENT << 3) | 4,
        F_ACK,
        0,
        b"227 (198,51,100,20,195,80)\r\n",
    );
    record(&mut raw, KIND_SEGMENT << 3, F_ACK | F_RST, 0, &[]);
    record(&mut raw, KIND_CLOCK << 3, 0, 0, &[0; 1]);
    fs::write(Path::new(CORPUS).join("seed-raw-and-clock"), raw).expect("write seed");
}
