//! Golden tests on the crafted captures (pcaps/crafted, see its README):
//! the cases real clients rarely produce.

mod common;
use common::*;
use ftpct::offline::replay::Replayed;

const SNAT4: &[&str] = &["192.0.2.0/24=198.51.100.1"];
const SNAT6: &[&str] = &["2001:db8:1::/64=2001:db8:2::1"];
const PORT_AFTER: &str = "PORT 198,51,100,1,156,64";

#[test]
fn split_port_is_held_and_sent_whole_once() {
    let r = run("crafted/split-port.pcap", SNAT4, &[]);
    assert_eq!(rewrites(&r).len(), 1);
    assert_eq!(count(&r, "expect"), 1);
    assert_eq!(count(&r, "data-matched"), 1);
    assert_eq!(r.stats.dropped, 1, "the head is held once");
    let payloads = far_payloads(&r);
    assert!(payloads.iter().any(|p| p == &format!("{PORT_AFTER}\r\n")));
    assert!(
        !far_text(&r).contains("192,0,2"),
        "no private address leaks"
    );
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn split_port_retransmitted_head_gets_the_same_bytes() {
    let r = run("crafted/split-port-retrans.pcap", SNAT4, &[]);
    assert_eq!(rewrites(&r).len(), 1);
    assert_eq!(count(&r, "expect"), 1);
    assert!(!far_text(&r).contains("192,0,2"));
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn pipelined_commands_in_one_segment() {
    let r = run("crafted/pipelined.pcap", SNAT4, &[]);
    assert_eq!(rewrites(&r).len(), 1);
    assert_eq!(count(&r, "data-matched"), 1);
    let text = far_text(&r);
    assert!(text.contains(&format!("TYPE I\r\n{PORT_AFTER}\r\nRETR file\r\n")));
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn retransmitted_port_is_rewritten_identically_and_expected_once() {
    let r = run("crafted/retrans-port.pcap", SNAT4, &[]);
    assert_eq!(count(&r, "expect"), 1, "no second expectation");
    assert_eq!(rewrites(&r).len(), 1);
    let copies = far_payloads(&r)
        .into_iter()
        .filter(|p| p.starts_with(PORT_AFTER))
        .count();
    assert_eq!(copies, 2, "both copies leave rewritten");
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn out_of_order_port_waits_for_its_turn() {
    let r = run("crafted/ooo-port.pcap", SNAT4, &[]);
    assert_eq!(r.stats.dropped, 1, "the early copy is dropped");
    assert_eq!(rewrites(&r).len(), 1);
    assert_eq!(count(&r, "expect"), 1);
    assert!(!far_text(&r).contains("192,0,2"));
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn overlong_line_passes_unparsed() {
    let r = run("crafted/overlong.pcap", SNAT4, &[]);
    assert_eq!(r.stats.overlong_lines, 1);
    assert_eq!(rewrites(&r).len(), 1, "only the real PORT");
    assert!(
        far_text(&r).contains(",192,0,2,10,1,2"),
        "text inside SITE untouched"
    );
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn bounce_to_third_party_is_refused_and_unchanged() {
    let r = run("crafted/bounce-thirdparty.pcap", SNAT4, &[]);
    assert_eq!(refusal_rules(&r), ["foreign-address"]);
    assert_eq!(count(&r, "expect"), 0);
    assert_eq!(r.stats.refused, 1);
    assert!(far_text(&r).contains("PORT 203,0,113,5,0,25"));
}

#[test]
fn bounce_to_port_25_is_refused() {
    let r = run("crafted/bounce-port25.pcap", SNAT4, &[]);
    assert_eq!(refusal_rules(&r), ["privileged-port"]);
    assert_eq!(count(&r, "expect"), 0);
    assert!(
        far_text(&r).contains("PORT 192,0,2,10,0,25"),
        "not rewritten"
    );
}

#[test]
fn privileged_port_allowed_when_configured() {
    let cfg = ftpct_engine::engine::Config {
        policy: ftpct_engine::policy::Policy {
            min_data_port: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run_with("crafted/bounce-port25.pcap", SNAT4, &[], cfg);
    assert_eq!(count(&r, "expect"), 1);
}

#[test]
fn malformed_lines_are_counted_and_passed() {
    let r = run("crafted/malformed.pcap", SNAT4, &[]);
    assert_eq!(r.stats.malformed, 4);
    assert_eq!(rewrites(&r).len(), 1);
    assert!(far_text(&r).contains("PORT 192,0,2,300,1,2"));
    assert_eq!(r.stats.dropped, 0, "never dropped");
}

#[test]
fn inspection_stops_after_auth_tls() {
    let r = run("crafted/auth-tls.pcap", SNAT4, &[]);
    assert_eq!(count(&r, "inspection-stopped"), 1);
    assert_eq!(count(&r, "expect"), 0);
    assert_eq!(rewrites(&r).len(), 0);
    assert!(
        far_text(&r).contains("PORT 192,0,2,10,1,2"),
        "ciphertext untouched"
    );
}

#[test]
fn pasv_227_variants_through_snat() {
    let r = run("crafted/pasv-227-variants.pcap", SNAT4, &[]);
    assert_eq!(count(&r, "expect"), 3);
    assert_eq!(count(&r, "data-matched"), 3);
    assert_eq!(
        rewrites(&r).len(),
        0,
        "the server's own address needs no rewrite"
    );
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn eprt_v6_rewritten_in_rfc5952_form() {
    let r = run("crafted/eprt-v6.pcap", SNAT6, &[]);
    assert_eq!(
        rewrites(&r),
        [(
            "EPRT |2|2001:db8:1::10|40100|".to_string(),
            "EPRT |2|2001:db8:2::1|40100|".to_string()
        )]
    );
    assert_eq!(count(&r, "data-matched"), 1);
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn epsv_v6_expected_without_rewrite() {
    let r = run("crafted/epsv-v6.pcap", SNAT6, &[]);
    assert_eq!(count(&r, "expect"), 1);
    assert_eq!(count(&r, "data-matched"), 1);
    assert_eq!(rewrites(&r).len(), 0);
}

#[test]
fn odd_delimiter_and_lowercase() {
    let r = run("crafted/eprt-odd-delim.pcap", SNAT4, &[]);
    let after: Vec<String> = rewrites(&r).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        after,
        ["EPRT !1!198.51.100.1!40300!", "port 198,51,100,1,157,200"]
    );
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn several_rewrites_keep_the_stream_consistent() {
    // The capture has a segment (NOOP) that arrives before the lost PWD and
    // is never sent again because the server SACKed it. ftpct drops the
    // out-of-order segment so that it comes again in order; here it never
    // does, and the server's ACK after PWD covers it: bytes that passed
    // without ftpct. The stream is followed again from that ACK at once
    // (no drop loop), the offsets of the earlier rewrites kept.
    let r = run("crafted/several-rewrites.pcap", SNAT4, &[]);
    assert_eq!(rewrites(&r).len(), 3);
    assert_eq!(r.stats.dropped, 1, "only the out-of-order NOOP");
    assert_eq!(r.stats.resyncs, 1);
    assert_far_side_bytes_consistent(&r.far_side);
}

#[test]
fn dnat_227_rewritten_229_kept() {
    let r = run("crafted/dnat-pasv.pcap", &[], &["198.51.100.1=192.0.2.20"]);
    let after: Vec<String> = rewrites(&r).into_iter().map(|(_, a)| a).collect();
    assert_eq!(after, ["227 Entering Passive Mode (198,51,100,1,195,80)."]);
    assert_eq!(count(&r, "data-matched"), 2);
    assert!(far_text(&r).contains("(|||50001|)"));
    assert!(!far_text(&r).contains("192,0,2,20"));
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn reused_port_starts_a_new_flow() {
    let r = run("crafted/fin-then-new.pcap", SNAT4, &[]);
    assert_eq!(count(&r, "flow-new"), 2);
    assert_eq!(count(&r, "flow-closed"), 1);
    assert_eq!(count(&r, "expect"), 2);
    assert_eq!(count(&r, "data-matched"), 2);
}

#[test]
fn without_nat_nothing_is_rewritten_but_expectations_exist() {
    let r = run("crafted/several-rewrites.pcap", &[], &[]);
    assert_eq!(rewrites(&r).len(), 0);
    assert!(count(&r, "expect") >= 2);
    assert_eq!(r.stats.fixed_up, 0);
}

#[test]
fn fxp_allowed_only_for_listed_networks() {
    let fxp = "lab/fxp-v4-fxp-python-vsftpd-fxp.inside.pcap";
    let refused = run(fxp, &[], &[]);
    assert_eq!(refusal_rules(&refused), ["foreign-address"]);
    let cfg = ftpct_engine::engine::Config {
        policy: ftpct_engine::policy::Policy {
            allow_fxp: vec!["198.51.100.0/24".parse().expect("cidr")],
            ..Default::default()
        },
        ..Default::default()
    };
    let allowed = run_with(fxp, &[], &[], cfg);
    assert!(refusal_rules(&allowed).is_empty());
    assert_eq!(
        count(&allowed, "expect"),
        2,
        "PASV on A, PORT to B naming A"
    );
}

/// The same capture as raw IP, Linux cooked (SLL) and SLL2 replays to the
/// same far side as the Ethernet original.
#[test]
fn every_link_type_replays_the_same() {
    use ftpct::offline::capture::{self, Frame};
    use pcap_file::DataLink;

    let original = "lab/snat-v4-port-curl-vsftpd-download.inside.pcap";
    let want = run(original, SNAT4, &[]);
    let cap = capture::read(&pcap(original)).expect("reads");
    let dir = std::env::temp_dir().join(format!("ftpct-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let ipv4 = 0x0800u16.to_be_bytes();
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&ipv4);
    let mut sll2 = ipv4.to_vec();
    sll2.resize(20, 0);
    // Ethernet with an 802.1ad outer and an 802.1Q inner tag (QinQ).
    let mut qinq = vec![0u8; 12];
    qinq.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
    qinq.extend_from_slice(&ipv4);
    for (link, header) in [
        (DataLink::RAW, vec![]),
        (DataLink::LINUX_SLL, sll),
        (DataLink::LINUX_SLL2, sll2),
        (DataLink::ETHERNET, qinq),
    ] {
        let frames: Vec<Frame> = cap
            .frames
            .iter()
            .map(|f| Frame {
                link_header: header.clone(),
                ..f.clone()
            })
            .collect();
        let path = dir.join(format!("{link:?}.pcap"));
        capture::write(&path, link, &frames).expect("writes");
        let got = run(path.to_str().expect("utf-8 path"), SNAT4, &[]);
        let ips = |r: &ftpct::offline::replay::Replayed| -> Vec<Vec<u8>> {
            r.far_side.iter().map(|f| f.ip.clone()).collect()
        };
        assert_eq!(ips(&got), ips(&want), "{link:?}");
    }
    // The same frames in a pcapng file.
    let path = dir.join("capture.pcapng");
    write_pcapng(&path, &cap);
    let got = run(path.to_str().expect("utf-8 path"), SNAT4, &[]);
    assert_eq!(got.far_side.len(), want.far_side.len());
    for (g, w) in got.far_side.iter().zip(&want.far_side) {
        assert_eq!((g.time, &g.ip), (w.time, &w.ip), "pcapng");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn write_pcapng(path: &std::path::Path, cap: &ftpct::offline::capture::Capture) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    let file = std::fs::File::create(path).expect("create");
    let mut w = PcapNgWriter::new(file).expect("pcapng writer");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: cap.datalink,
        snaplen: 0,
        options: vec![],
    })
    .expect("interface");
    for f in &cap.frames {
        let mut data = f.link_header.clone();
        data.extend_from_slice(&f.ip);
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: f.time,
            original_len: data.len() as u32,
            data: data.into(),
            options: vec![],
        })
        .expect("packet");
    }
}

const DNAT4: &[&str] = &["198.51.100.1=192.0.2.20"];

fn expected_ports(r: &Replayed) -> Vec<u16> {
    r.events
        .iter()
        .filter_map(|te| match &te.event {
            ftpct_engine::event::Event::ExpectationAdded(e) => Some(e.dst.port()),
            _ => None,
        })
        .collect()
}

#[test]
fn announcements_quoted_in_a_listing_open_nothing() {
    let r = run("crafted/listing-227.pcap", &[], DNAT4);
    assert_eq!(expected_ports(&r), [50000], "only the real answer to PASV");
    assert_eq!(
        refusal_rules(&r),
        ["unsolicited-reply"; 3],
        "two quoted lines, one after a forged block end"
    );
    assert_eq!(count(&r, "data-matched"), 1);
    assert_eq!(rewrites(&r).len(), 1, "only the real 227");
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn replies_that_answer_no_pasv_or_epsv_open_nothing() {
    let r = run("crafted/unsolicited-227.pcap", &[], DNAT4);
    assert_eq!(expected_ports(&r), [50001], "only the real answer to EPSV");
    assert_eq!(refusal_rules(&r), ["unsolicited-reply"; 2]);
    assert_eq!(count(&r, "data-matched"), 1);
    assert_far_side_consistent(&r.far_side);
}

#[test]
fn many_pipelined_ports_all_rewritten_with_consistent_numbers() {
    let r = run("crafted/many-pipelined-ports.pcap", SNAT4, &[]);
    assert_eq!(rewrites(&r).len(), 40);
    assert!(
        !far_text(&r).contains("192,0,2"),
        "no private address leaks"
    );
    assert_eq!(count(&r, "data-matched"), 1);
    assert_far_side_consistent(&r.far_side);
}
