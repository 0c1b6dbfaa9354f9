//! The ladder page of `--html` on every lab and crafted capture: a
//! section per control connection, every decision of the engine as a
//! note with its own wording, every rewrite's line before and after,
//! every line, every TCP segment drawn or counted; and, on the active
//! SNAT capture of the README's picture, the details a reader looks for;
//! on a keep-alive session made here, its NOOP exchanges folded.

mod common;

use std::time::Duration;

use etherparse::PacketBuilder;
use ftpct::ladder::text::{html, signed, visible_text};
use ftpct::ladder::{render, Heading, Recorder};
use ftpct::offline::capture::{self, Capture, Frame};
use ftpct::offline::replay::{replay_watched, Replayed};
use ftpct_engine::engine::Config;
use ftpct_engine::event::Event;
use ftpct_engine::wire::TcpPacket;
use pcap_file::DataLink;

/// The README's picture: active mode (PORT) through SNAT.
const ACTIVE_SNAT: &str = "lab/snat-v4-port-curl-vsftpd-download.inside.pcap";

#[test]
fn every_capture_draws_every_decision_line_and_segment() {
    let all = common::captures();
    assert!(all.len() >= 50, "lab and crafted captures: {}", all.len());
    let mut failures = Vec::new();
    for (rel, args) in &all {
        let (r, page) = common::ladder_page(rel, args);
        let problems: Vec<String> = [
            sections_are_sessions(&r, &page),
            notes_are_events(&r, &page),
            rewrites_show_before_and_after(&r, &page),
            lines_are_shown(&r, &page),
            segments_are_accounted_for(rel, &page),
            nothing_runs_or_loads(&page),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!("{rel}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One section (and one contents entry) per new control connection.
fn sections_are_sessions(r: &Replayed, page: &str) -> Vec<String> {
    let flows = r
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::FlowNew { .. }))
        .count();
    let sections = page.matches("<section class=\"session\"").count();
    let entries = page.matches("<li><a href=\"#session-").count();
    if (sections, entries) == (flows, flows) {
        Vec::new()
    } else {
        vec![format!(
            "{flows} control connections, {sections} sections, {entries} contents entries"
        )]
    }
}

/// Every event but lines is a note with the engine's wording as its
/// tooltip, as many times as it happened.
fn notes_are_events(r: &Replayed, page: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let events: Vec<&Event> = r
        .events
        .iter()
        .map(|e| &e.event)
        .filter(|e| !matches!(e, Event::Line { .. }))
        .collect();
    let note = |e: &Event| {
        format!(
            "data-kind=\"{}\" title=\"{}\"",
            e.kind(),
            html(&visible_text(&e.to_string()))
        )
    };
    // Events alike in wording (two connections without NAT) share a note text.
    let wordings: Vec<String> = events.iter().map(|e| note(e)).collect();
    for (e, wording) in events.iter().zip(&wordings) {
        let want = wordings.iter().filter(|w| *w == wording).count();
        let drawn = page.matches(wording.as_str()).count();
        if drawn != want {
            problems.push(format!("{e}: {want} events, {drawn} notes"));
        }
    }
    let notes = page.matches("<div class=\"note ").count();
    if notes != events.len() {
        problems.push(format!("{} events, {notes} notes", events.len()));
    }
    problems
}

/// Each rewrite: both lines (the changed middle marked) and the length
/// change; a length change shows as a shift of later sequence numbers.
fn rewrites_show_before_and_after(r: &Replayed, page: &str) -> Vec<String> {
    let befores = code_texts(page, "before");
    let afters = code_texts(page, "after");
    let mut problems = Vec::new();
    let mut grew = false;
    for e in &r.events {
        let Event::Rewritten { before, after, .. } = &e.event else {
            continue;
        };
        if !befores.contains(&html(&visible_text(before))) {
            problems.push(format!("rewrite of '{before}': no before line"));
        }
        if !afters.contains(&html(&visible_text(after))) {
            problems.push(format!("rewrite to '{after}': no after line"));
        }
        let delta = after.len() as i64 - before.len() as i64;
        if !page.contains(&format!("length {} bytes", signed(delta))) {
            problems.push(format!("rewrite to '{after}': no length change {delta}"));
        }
        grew |= delta != 0;
    }
    if grew && !page.contains("<tspan class=\"shift\">seq ") {
        problems.push("rewrites changed lengths, no sequence shift shown".into());
    }
    problems
}

/// The texts of `<code class="CLASS">` elements, marks taken out.
fn code_texts(page: &str, class: &str) -> Vec<String> {
    let open = format!("<code class=\"{class}\">");
    page.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split("</code>").next())
        .map(|marked| {
            ["<del>", "</del>", "<ins>", "</ins>"]
                .iter()
                .fold(marked.to_string(), |t, tag| t.replace(tag, ""))
        })
        .collect()
}

/// Every line the engine read is in its segment's tooltip.
fn lines_are_shown(r: &Replayed, page: &str) -> Vec<String> {
    r.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Line { dir, text, .. } => Some(format!(
                "{} line: {}",
                dir.name(),
                html(&visible_text(text))
            )),
            _ => None,
        })
        .filter(|shown| !page.contains(shown.as_str()))
        .map(|missing| format!("not shown: {missing}"))
        .collect()
}

/// Every TCP segment of the capture is an arrow, or counted in a folded
/// row, or counted as of no session.
fn segments_are_accounted_for(rel: &str, page: &str) -> Vec<String> {
    let cap = capture::read(&common::pcap(rel)).expect("capture reads");
    let tcp = cap
        .frames
        .iter()
        .filter(|f| TcpPacket::parse(&f.ip).is_ok())
        .count();
    let arrows = page.matches("<div class=\"row seg ").count();
    let folded: usize = page
        .split("⋮ ")
        .skip(1)
        .map(|row| {
            let words: Vec<&str> = row.split_whitespace().collect();
            let number = |i: usize| words.get(i).and_then(|w| w.parse::<usize>().ok());
            match (number(0), number(2), number(5)) {
                // "N more segments of data connection ..."
                (Some(n), _, _) => n,
                // "the LEN segment(s) above came TIMES more times ..."
                (None, Some(len), Some(times)) => len * times,
                _ => 0,
            }
        })
        .sum();
    let unrelated = page
        .split("<p>")
        .find_map(|p| {
            p.strip_suffix(" TCP segments of connections no session owns are not drawn.</p>")
        })
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if arrows + folded + unrelated == tcp {
        Vec::new()
    } else {
        vec![format!(
            "{tcp} TCP segments: {arrows} arrows, {folded} folded, {unrelated} of no session"
        )]
    }
}

fn nothing_runs_or_loads(page: &str) -> Vec<String> {
    [
        "<script", "http://", "https://", "@import", "url(", "<link", "<img", "<iframe",
    ]
    .into_iter()
    .filter(|banned| page.contains(banned))
    .map(|banned| format!("page holds {banned}"))
    .collect()
}

#[test]
fn the_active_snat_ladder_shows_the_rewrite_the_expectation_and_the_shift() {
    let args = ["--snat", "192.0.2.0/24=198.51.100.1"].map(String::from);
    let (_, page) = common::ladder_page(ACTIVE_SNAT, &args);
    for want in [
        // The hosts, and the gateway's address outside.
        ">192.0.2.10</text>",
        ">198.51.100.1 outside</text>",
        ">198.51.100.20</text>",
        // The PORT line on each side of the gateway.
        r"PORT 192,0,2,10,136,111\r\n</text>",
        r"PORT 198,51,100,1,136,111\r\n</text>",
        // Before and after, the changed bytes marked, 2 bytes longer.
        "PORT 19<del>2,0,2,10</del>,136,111",
        "PORT 19<ins>8,51,100,1</ins>,136,111",
        "length +2 bytes",
        // Who may connect where, with its NAT; the connection that came.
        "198.51.100.20 may connect, from any port, to 198.51.100.1:34927; NAT: snat to 198.51.100.20, dnat to 192.0.2.10:34927",
        "198.51.100.20:20 -&gt; 198.51.100.1:34927 is the connection 198.51.100.20 was expected to open",
        ">data 1</text>",
        // Later client segments leave 2 further on; the server's
        // acknowledgements come back 2 lower.
        "<tspan class=\"shift\">seq +2</tspan>",
        "<tspan class=\"shift\">ack -2</tspan>",
    ] {
        assert!(page.contains(want), "missing {want}");
    }
    // The PORT's own segment keeps its number: the shift follows it.
    let port_row = page
        .split("<div class=\"row seg ")
        .find(|row| row.contains("PORT 192,0,2,10"))
        .expect("the PORT segment");
    assert!(port_row.starts_with("control rewritten"), "{port_row}");
    assert!(!port_row.contains("class=\"shift\""), "{port_row}");
}

#[test]
fn a_refusal_says_which_rule_and_why() {
    let args = ["--snat", "192.0.2.0/24=198.51.100.1"].map(String::from);
    let (_, page) = common::ladder_page("crafted/bounce-thirdparty.pcap", &args);
    assert!(page.contains("<div class=\"row seg control refused\">"));
    assert!(page.contains(">refused [foreign-address]</span>"));
    assert!(page.contains(
        "&#39;PORT 203,0,113,5,0,25&#39;: announced address 203.0.113.5 is not the sender&#39;s own (192.0.2.10)"
    ));
    assert!(!page.contains("data-kind=\"expect\""), "no expectation");
}

#[test]
fn several_control_connections_are_sections_of_one_page() {
    let args = ["--snat", "192.0.2.0/24=198.51.100.1"].map(String::from);
    let (_, page) = common::ladder_page("crafted/fin-then-new.pcap", &args);
    assert!(page.contains("<a href=\"#session-1\">") && page.contains("<a href=\"#session-2\">"));
    let second = page
        .split("id=\"session-2\"")
        .nth(1)
        .expect("second section");
    assert!(second.contains("PORT 19<ins>8,51,100,1</ins>,156,65"));
    assert!(
        !second.contains(",156,64"),
        "the first session's PORT is not in the second"
    );
}

/// A control connection made here: the client 192.0.2.10:40000 behind
/// SNAT, the server 198.51.100.20:21, as captured on the inside.
struct Dialogue {
    frames: Vec<Frame>,
    client_seq: u32,
    server_seq: u32,
    time: Duration,
}

impl Dialogue {
    const CLIENT: [u8; 4] = [192, 0, 2, 10];
    const SERVER: [u8; 4] = [198, 51, 100, 20];

    /// Opened: the handshake and the server's banner, acknowledged.
    fn opened() -> Dialogue {
        let mut d = Dialogue {
            frames: Vec::new(),
            client_seq: 1000,
            server_seq: 5000,
            time: Duration::from_secs(1),
        };
        d.segment(true, |b| b.syn(), b"");
        d.segment(false, |b| b.syn().ack(1001), b"");
        d.client_seq += 1;
        d.server_seq += 1;
        d.exchange(None, b"220 ready\r\n");
        d
    }

    /// The client's line (if any), the server's reply, the client's ACK.
    fn exchange(&mut self, command: Option<&[u8]>, reply: &[u8]) {
        if let Some(c) = command {
            self.say(true, c);
        }
        self.say(false, reply);
        self.say(true, b"");
    }

    fn say(&mut self, from_client: bool, payload: &[u8]) {
        let ack = if from_client {
            self.server_seq
        } else {
            self.client_seq
        };
        self.segment(from_client, |b| b.psh().ack(ack), payload);
    }

    fn segment(
        &mut self,
        from_client: bool,
        flags: impl FnOnce(TcpHeaderBuilder) -> TcpHeaderBuilder,
        payload: &[u8],
    ) {
        let (src, dst, sport, dport, seq) = if from_client {
            (Self::CLIENT, Self::SERVER, 40000, 21, self.client_seq)
        } else {
            (Self::SERVER, Self::CLIENT, 21, 40000, self.server_seq)
        };
        let builder = flags(PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 64240));
        let mut ip = Vec::new();
        builder.write(&mut ip, payload).expect("packet");
        let len = payload.len() as u32;
        if from_client {
            self.client_seq += len;
        } else {
            self.server_seq += len;
        }
        self.time += Duration::from_millis(100);
        self.frames.push(Frame {
            time: self.time,
            link_header: Vec::new(),
            ip,
        });
    }
}

type TcpHeaderBuilder = etherparse::PacketBuilderStep<etherparse::TcpHeader>;

#[test]
fn a_keepalive_session_shows_its_noop_exchange_once_with_a_count() {
    let mut d = Dialogue::opened();
    for _ in 0..20 {
        d.exchange(Some(b"NOOP\r\n"), b"200 NOOP ok.\r\n");
    }
    d.exchange(Some(b"QUIT\r\n"), b"221 bye\r\n");
    let capture = Capture {
        datalink: DataLink::RAW,
        frames: d.frames,
        skipped: 0,
    };
    let snat = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    let mut rec = Recorder::new();
    let r = replay_watched(
        &capture,
        vec![snat],
        Vec::new(),
        Config::default(),
        &mut rec,
    );
    assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
    let page = render(&rec, &Heading::default());
    assert!(
        page.contains("the 3 segment(s) above came 19 more times alike"),
        "not folded"
    );
    assert_eq!(
        page.matches(r"NOOP\r\n</text>").count(),
        2,
        "one exchange drawn, on both sides of the gateway"
    );
    assert!(page.contains(r"QUIT\r\n</text>"), "what follows is drawn");
    assert!(lines_are_shown(&r, &page).is_empty());
}
