//! Differential check against the kernel's own FTP helper.
//!
//! pcaps/lab holds captures of real transfers through a namespace gateway
//! running nf_conntrack_ftp + nf_nat_ftp, recorded on both sides
//! (`python3 -m lab record-pcaps`, tests/lab/record.py). Replaying the
//! inside capture must reproduce the outside capture's control-connection
//! packets exactly: addresses, ports, seq, ack, flags and payload. One
//! exception, as the kernel writes IPv6 in EPRT uncompressed where we write
//! RFC 5952: there the parsed address and port are compared, and the length
//! difference is carried into the later sequence and acknowledgement
//! numbers.

mod common;

use std::collections::HashMap;
use std::fs;

use ftpct::offline::capture;
use ftpct_engine::engine::Config;
use ftpct_engine::grammar::{parse_client_line, ClientLine};
use ftpct_engine::seqadj::seq_after;
use ftpct_engine::tuple::Tuple;
use ftpct_engine::wire::TcpPacket;

struct Scenario {
    name: String,
    snat: Vec<String>,
    dnat: Vec<String>,
}

fn scenarios() -> Vec<Scenario> {
    let manifest = fs::read_to_string(common::pcap("lab/MANIFEST")).expect("pcaps/lab/MANIFEST");
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let nat: Vec<&str> = cols
                .get(7)
                .copied()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let mut s = Scenario {
                name: cols[0].to_string(),
                snat: Vec::new(),
                dnat: Vec::new(),
            };
            for pair in nat.chunks(2) {
                match pair {
                    ["--snat", rule] => s.snat.push(rule.to_string()),
                    ["--dnat", rule] => s.dnat.push(rule.to_string()),
                    other => panic!("{}: bad NAT arguments {other:?}", s.name),
                }
            }
            s
        })
        .collect()
}

/// A control-connection segment, the fields the comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

/// Control-connection segments per direction, in capture order.
fn control_segments(ips: &[Vec<u8>]) -> HashMap<Tuple, Vec<Seg>> {
    let mut out: HashMap<Tuple, Vec<Seg>> = HashMap::new();
    for ip in ips {
        let Ok(p) = TcpPacket::parse(ip) else {
            continue;
        };
        if p.tuple.src.port() != 21 && p.tuple.dst.port() != 21 {
            continue;
        }
        let tcp_flags = u8::from(p.flags.fin)
            | u8::from(p.flags.syn) << 1
            | u8::from(p.flags.rst) << 2
            | u8::from(p.flags.ack) << 4;
        out.entry(p.tuple).or_default().push(Seg {
            seq: p.seq,
            ack: p.ack,
            flags: tcp_flags,
            payload: p.payload().to_vec(),
        });
    }
    out
}

/// Both EPRT lines announce the same endpoint (text may differ).
fn same_eprt(ours: &[u8], kernel: &[u8]) -> bool {
    match (parse_client_line(ours), parse_client_line(kernel)) {
        (Ok(ClientLine::Announce(a)), Ok(ClientLine::Announce(b))) => {
            a.addr == b.addr && a.port == b.port
        }
        _ => false,
    }
}

fn compare(name: &str, ours: &HashMap<Tuple, Vec<Seg>>, kernel: &HashMap<Tuple, Vec<Seg>>) {
    let mut ours_keys: Vec<_> = ours.keys().collect();
    let mut kernel_keys: Vec<_> = kernel.keys().collect();
    ours_keys.sort();
    kernel_keys.sort();
    assert_eq!(
        ours_keys, kernel_keys,
        "{name}: control connections and their addresses differ"
    );
    // Length differences of IPv6 EPRT text, per direction: (where our
    // segment started, cumulative difference after it).
    let mut deltas: HashMap<Tuple, Vec<(u32, u32)>> = HashMap::new();
    for dir in kernel.keys() {
        let (o, k) = (&ours[dir], &kernel[dir]);
        assert_eq!(o.len(), k.len(), "{name} {dir}: number of segments");
        let mut d = 0u32;
        for (i, (a, b)) in o.iter().zip(k).enumerate() {
            assert_eq!(a.seq.wrapping_add(d), b.seq, "{name} {dir} #{i}: seq");
            assert_eq!(a.flags, b.flags, "{name} {dir} #{i}: flags");
            if a.payload != b.payload {
                assert!(
                    same_eprt(&a.payload, &b.payload),
                    "{name} {dir} #{i}: payload\n ours:   {:?}\n kernel: {:?}",
                    String::from_utf8_lossy(&a.payload),
                    String::from_utf8_lossy(&b.payload)
                );
                d = d.wrapping_add((b.payload.len() as u32).wrapping_sub(a.payload.len() as u32));
                deltas.entry(*dir).or_default().push((a.seq, d));
            }
        }
    }
    for dir in kernel.keys() {
        let edits = deltas
            .get(&dir.reversed())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (i, (a, b)) in ours[dir].iter().zip(&kernel[dir]).enumerate() {
            // The difference of every edit the acknowledgement is past.
            let back = edits
                .iter()
                .rev()
                .find(|(start, _)| seq_after(a.ack, *start))
                .map_or(0, |(_, d)| *d);
            assert_eq!(
                a.ack.wrapping_add(back),
                b.ack,
                "{name} {dir} #{i}: ack ours {} (+{back})",
                a.ack
            );
        }
    }
}

/// The far side as recorded: the outside interface, and the second one
/// of the fxp topology (its second server) when there is one.
fn outside_packets(name: &str) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for side in ["outside", "outside2"] {
        let path = common::pcap(&format!("lab/{name}.{side}.pcap"));
        if side == "outside2" && !path.exists() {
            continue;
        }
        let cap = capture::read(&path).expect("outside capture");
        packets.extend(cap.frames.into_iter().map(|f| f.ip));
    }
    packets
}

#[test]
fn replay_reproduces_the_kernel_helper_far_side() {
    let all = scenarios();
    assert!(
        all.len() >= 30,
        "expected the lab captures, found {}",
        all.len()
    );
    // Every packet through the engine, and selective queueing emulated
    // (what the live gateway does by default).
    for selective in [false, true] {
        let cfg = Config {
            selective,
            ..Config::default()
        };
        for s in &all {
            let snat: Vec<&str> = s.snat.iter().map(String::as_str).collect();
            let dnat: Vec<&str> = s.dnat.iter().map(String::as_str).collect();
            let inside = format!("lab/{}.inside.pcap", s.name);
            let r = common::run_with(&inside, &snat, &dnat, cfg.clone());
            let ours: Vec<Vec<u8>> = r.far_side.iter().map(|f| f.ip.clone()).collect();
            let kernel = outside_packets(&s.name);
            let name = format!("{} (selective: {selective})", s.name);
            compare(&name, &control_segments(&ours), &control_segments(&kernel));
            common::assert_far_side_consistent(&r.far_side);
        }
    }
}

#[test]
fn every_lab_announcement_gets_an_expectation_or_a_named_refusal() {
    for s in scenarios() {
        let snat: Vec<&str> = s.snat.iter().map(String::as_str).collect();
        let dnat: Vec<&str> = s.dnat.iter().map(String::as_str).collect();
        let r = common::run(&format!("lab/{}.inside.pcap", s.name), &snat, &dnat);
        let decided = common::count(&r, "expect") + common::count(&r, "refused");
        assert!(decided >= 1, "{}: no decision at all", s.name);
        if !s.name.starts_with("fxp") {
            assert!(
                common::count(&r, "data-matched") >= 1,
                "{}: no data connection matched",
                s.name
            );
        }
    }
}
