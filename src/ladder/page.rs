//! The HTML page: a heading, a legend, a table of contents, and one
//! section per session with its ladder. Self-contained: the style is
//! inline, there is no script, no font or image to fetch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ftpct_engine::event::Event;

use super::crossing::Crossing;
use super::fold::{rows, DataRun, Row};
use super::layout::{
    ARROW_ROW, FONT_PX, HOST_BOX, PAGE_MARGIN, TIME_RIGHT, WIDTH, X_GATEWAY, X_INSIDE, X_OUTSIDE,
};
use super::record::{Conn, Item, Recorder, Session, MAX_ITEMS};
use super::text::html;
use super::{arrow, note};

/// What the page says it shows: a title (the command) and lines under
/// it (the NAT given, the counters).
#[derive(Debug, Clone, Default)]
pub struct Heading {
    pub title: String,
    pub lines: Vec<String>,
}

/// The whole page.
pub fn render(rec: &Recorder, heading: &Heading) -> String {
    let mut body = String::new();
    body.push_str(&header(heading));
    body.push_str(LEGEND);
    body.push_str(&contents(rec.sessions()));
    for (i, s) in rec.sessions().iter().enumerate() {
        body.push_str(&section(i + 1, s, rec.start()));
    }
    body.push_str(&footer(rec));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        html(&heading.title),
        style()
    )
}

fn header(h: &Heading) -> String {
    let mut out = format!("<header><h1>{}</h1>", html(&h.title));
    for l in &h.lines {
        let _ = write!(out, "<p class=\"sub\">{}</p>", html(l));
    }
    out.push_str("</header>\n");
    out
}

const LEGEND: &str = "<section class=\"legend\"><h2>Reading the ladder</h2><p>Three lifelines: the inside host \
(the side the capture was taken on), the gateway, the outside host; time goes down. Each segment crosses \
the gateway as two arrows: left, as captured on the inside; right, as it is outside the gateway (the packet \
<code>replay --out</code> writes). Above an arrow its payload (bytes shown escaped: <code>\\r\\n</code> ends a line), \
below it the ports, flags as tcpdump prints them, the sequence and acknowledgement numbers as on the wire on that \
side, and the payload length. <span class=\"shift\">seq +2</span> / <span class=\"shift\">ack -2</span>: what the \
gateway changed in that number. Orange: a rewritten line; dashed blue: a data connection; red: a refused line. \
Boxes are the helper's decisions. Hover an arrow for the whole segment.</p></section>\n";

/// The table of contents: a line per session with what was decided.
fn contents(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return "<nav class=\"toc\"><h2>Sessions</h2><p>No FTP session was followed.</p></nav>\n"
            .into();
    }
    let mut out = String::from("<nav class=\"toc\"><h2>Sessions</h2><ol>");
    for (i, s) in sessions.iter().enumerate() {
        let _ = write!(
            out,
            "<li><a href=\"#session-{n}\">Session {n}</a>: {} <span class=\"counts\">{}</span></li>",
            html(&s.flow.to_string()),
            html(&counts(s)),
            n = i + 1
        );
    }
    out.push_str("</ol></nav>\n");
    out
}

/// Segments, then each kind of decision and how many.
fn counts(s: &Session) -> String {
    let segments = s
        .items
        .iter()
        .filter(|i| matches!(i, Item::Crossing { .. }))
        .count();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in s.events().filter(|e| !matches!(e, Event::Line { .. })) {
        *kinds.entry(e.kind()).or_default() += 1;
    }
    let mut out = format!("{segments} segments");
    for (kind, n) in kinds {
        let _ = write!(out, ", {kind} {n}");
    }
    out
}

fn section(n: usize, s: &Session, start: Duration) -> String {
    let mut out = format!(
        "<section class=\"session\" id=\"session-{n}\"><h2>Session {n}: {}</h2><p class=\"counts\">{}</p><div class=\"ladder\">",
        html(&s.flow.to_string()),
        html(&counts(s))
    );
    let hosts = Hosts::of(s);
    out.push_str(&hosts_row(&hosts));
    for row in rows(&s.items) {
        out.push_str(&row_html(&row, &hosts, start));
    }
    out.push_str("</div></section>\n");
    out
}

fn row_html(row: &Row<'_>, hosts: &Hosts, start: Duration) -> String {
    match row {
        Row::Arrow { conn, crossing } => {
            let mut out = arrow::render(*conn, crossing, start, hosts.points_left(crossing));
            for e in crossing.events.iter().filter(|e| is_note(e)) {
                out.push_str(&note::render(e, crossing.time, start));
            }
            out
        }
        Row::Note { time, event } if is_note(event) => note::render(event, *time, start),
        Row::Note { .. } => String::new(),
        Row::DataRun(run) => folded("data-run", &data_run_text(run), run.until, start),
        Row::Repeated { len, times, until } => folded(
            "repeated",
            &format!(
                "the {len} segment(s) above came {times} more times alike (seq/ack moving on)"
            ),
            *until,
            start,
        ),
    }
}

/// Lines are the arrows' payload: every other event is a note.
fn is_note(e: &Event) -> bool {
    !matches!(e, Event::Line { .. })
}

fn data_run_text(run: &DataRun) -> String {
    let n = match run.conn {
        Conn::Data(n) => n,
        Conn::Control => 0,
    };
    format!(
        "{} more segments of data connection {n}: {} toward the inside, {} from it; {} payload bytes",
        run.segments(),
        run.toward_inside,
        run.from_inside,
        run.bytes
    )
}

/// A row standing for rows not drawn, timed by its last.
fn folded(kind: &str, text: &str, until: Duration, start: Duration) -> String {
    format!(
        "<div class=\"fold\" data-kind=\"{kind}\"><span class=\"time\">{:.6}</span>⋮ {}</div>",
        until.saturating_sub(start).as_secs_f64(),
        html(text)
    )
}

/// The hosts at the top of the lifelines, read off the session's first
/// segment (its flow when it has none).
struct Hosts {
    inside: IpAddr,
    /// The inside host's address outside the gateway.
    public: IpAddr,
    outside: IpAddr,
}

impl Hosts {
    fn of(s: &Session) -> Hosts {
        let first = s.items.iter().find_map(|i| match i {
            Item::Crossing {
                conn: Conn::Control,
                crossing,
            } => crossing.outside.as_ref().map(|o| (crossing, o)),
            _ => None,
        });
        match first {
            Some((c, o)) if c.toward_inside => Hosts {
                inside: c.inside.tuple.dst.ip(),
                public: o.tuple.dst.ip(),
                outside: o.tuple.src.ip(),
            },
            Some((c, o)) => Hosts {
                inside: c.inside.tuple.src.ip(),
                public: o.tuple.src.ip(),
                outside: o.tuple.dst.ip(),
            },
            None => Hosts {
                inside: s.flow.src.ip(),
                public: s.flow.src.ip(),
                outside: s.flow.dst.ip(),
            },
        }
    }

    /// Whether `c` goes toward the inside host. Without NAT the gateway
    /// cannot tell its sides (every packet passes as from the inside):
    /// a segment to the inside host still goes left.
    fn points_left(&self, c: &Crossing) -> bool {
        let t = c.inside.tuple;
        c.toward_inside || (t.dst.ip() == self.inside && t.src.ip() != self.inside)
    }
}

fn hosts_row(h: &Hosts) -> String {
    let nat = if h.public == h.inside {
        "no address change".to_string()
    } else {
        format!("{} outside", h.public)
    };
    let boxes = [
        (X_INSIDE, "inside host".to_string(), h.inside.to_string()),
        (X_GATEWAY, "gateway".to_string(), nat),
        (X_OUTSIDE, "outside host".to_string(), h.outside.to_string()),
    ];
    let mut svg = String::new();
    for (x, title, detail) in boxes {
        let _ = write!(
            svg,
            "<rect class=\"host\" x=\"{}\" y=\"2\" width=\"{HOST_BOX}\" height=\"40\" rx=\"4\"/><text class=\"host-name\" x=\"{x}\" y=\"18\" text-anchor=\"middle\">{}</text><text class=\"host-addr\" x=\"{x}\" y=\"35\" text-anchor=\"middle\">{}</text>",
            x - HOST_BOX / 2,
            html(&title),
            html(&detail)
        );
    }
    format!("<div class=\"hosts\"><svg width=\"{WIDTH}\" height=\"46\" viewBox=\"0 0 {WIDTH} 46\" role=\"img\"><title>inside host, gateway, outside host</title>{svg}</svg></div>")
}

fn footer(rec: &Recorder) -> String {
    let mut out = String::from("<footer>");
    if rec.unrelated > 0 {
        let _ = write!(
            out,
            "<p>{} TCP segments of connections no session owns are not drawn.</p>",
            rec.unrelated
        );
    }
    if rec.not_drawn > 0 {
        let _ = write!(
            out,
            "<p>{} segments and events came after the drawing's limit ({MAX_ITEMS}) and are not drawn.</p>",
            rec.not_drawn
        );
    }
    out.push_str("<p>Drawn by ftpct from the engine's events and the packets on both sides of the gateway.</p></footer>\n");
    out
}

/// The style sheet; lifelines are backgrounds of the ladder, so that
/// notes and arrows of any height sit on continuous lines.
fn style() -> String {
    let note_left = X_INSIDE + 12;
    let note_right = WIDTH - X_OUTSIDE + 12;
    format!(
        r#"
* {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; box-sizing: border-box; }}
body {{ font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1b1b1b; background: #fff; margin: {PAGE_MARGIN}px; width: {page}px; }}
code, svg text, .note code {{ font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 18px 0 6px; }}
.sub, .counts {{ color: #555; margin: 2px 0; font-size: 13px; }}
.legend p {{ font-size: 13px; max-width: {WIDTH}px; line-height: 1.45; }}
.toc ol {{ font-size: 14px; }} .toc a {{ color: #1f4f8f; }}
.ladder {{ position: relative; width: {WIDTH}px; padding-bottom: 12px;
  background-image: linear-gradient(#8c8c8c, #8c8c8c), linear-gradient(#444, #444), linear-gradient(#8c8c8c, #8c8c8c);
  background-size: 1px 100%, 2px 100%, 1px 100%; background-repeat: no-repeat;
  background-position: {X_INSIDE}px 0, {gw}px 0, {X_OUTSIDE}px 0; }}
.hosts svg, .row svg {{ display: block; }}
.host {{ fill: #f3f3f3; stroke: #444; }} .host-name {{ font-weight: bold; font-size: 12px; }} .host-addr {{ font-size: 12px; }}
.row {{ height: {ARROW_ROW}px; break-inside: avoid; }}
svg text {{ font-size: {FONT_PX}px; }}
.time {{ fill: #666; color: #666; }} .conn {{ fill: #1f6fb2; }}
.arrow {{ stroke: #333; stroke-width: 1.5; }} .head {{ fill: #333; }}
.payload {{ fill: #111; }} .meta {{ fill: #555; }} .shift {{ fill: #a33c00; color: #a33c00; font-weight: bold; }}
.data .arrow {{ stroke: #1f6fb2; stroke-dasharray: 6 3; }} .data .head {{ fill: #1f6fb2; }}
.rewritten .arrow {{ stroke: #c76a00; stroke-width: 2.5; }} .rewritten .head {{ fill: #c76a00; }}
.refused .arrow {{ stroke: #b3261e; stroke-width: 2.5; }} .refused .head {{ fill: #b3261e; }}
.cross {{ stroke: #b3261e; stroke-width: 2.5; }} .dropped {{ fill: #b3261e; }}
.note, .fold {{ position: relative; margin: 2px {note_right}px 6px {note_left}px; padding: 4px 8px; background: #fff;
  border: 1px solid #999; border-left-width: 5px; font-size: 13px; line-height: 1.4; break-inside: avoid; }}
.note .time, .fold .time {{ position: absolute; left: -{note_left}px; width: {time_w}px; text-align: right; font-family: "DejaVu Sans Mono", monospace; font-size: {FONT_PX}px; }}
.note .label {{ font-weight: bold; }}
.note.expect {{ border-color: #2e7d32; background: #eef7ee; }}
.note.matched {{ border-color: #1f6fb2; background: #eaf2fb; }}
.note.rewrite {{ border-color: #c76a00; background: #fff4e5; }}
.note.refused {{ border-color: #b3261e; background: #fdecea; }}
.note.flow {{ border-color: #666; background: #f5f5f5; }}
.fold {{ border-style: dashed; border-left-width: 1px; color: #555; font-style: italic; text-align: center; }}
.lines {{ margin-top: 2px; }} .lines .which {{ display: inline-block; width: 52px; color: #555; }}
.lines code {{ font-size: 13px; }}
del {{ background: #f7c6c0; text-decoration: none; border-bottom: 2px solid #b3261e; }}
ins {{ background: #c4e8c5; text-decoration: none; border-bottom: 2px solid #2e7d32; }}
footer {{ color: #666; font-size: 12px; margin-top: 24px; }}
@page {{ size: A4 landscape; margin: 8mm; }}
@media print {{ body {{ zoom: 0.85; margin: 0; }} .session {{ break-before: page; }} }}
"#,
        page = WIDTH + 8,
        gw = X_GATEWAY - 1,
        time_w = TIME_RIGHT - 8,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ftpct_engine::nat::CtMapping;

    use super::*;
    use crate::ladder::crossing::tests::packet;
    use crate::ladder::crossing::Segment;

    fn recorder(sessions: usize) -> Recorder {
        let mut r = Recorder::new();
        for i in 0..sessions {
            let mut inside = Segment::parse(&packet(true, 1, 1, b"")).expect("tcp");
            inside.tuple.src.set_port(40000 + i as u16);
            let c = Crossing {
                time: Duration::from_millis(i as u64),
                toward_inside: false,
                outside: Some(inside.clone()),
                inside,
                events: Vec::new(),
            };
            let new = Event::FlowNew {
                mapping: CtMapping::identity(c.inside.tuple),
                local: false,
            };
            r.crossing(c, &[new]);
        }
        r
    }

    #[test]
    fn a_page_has_a_section_per_session_and_a_table_of_contents() {
        let heading = Heading {
            title: "ftpct replay <x>.pcap".into(),
            lines: vec!["--snat 192.0.2.0/24=198.51.100.1".into()],
        };
        let page = render(&recorder(2), &heading);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>ftpct replay &lt;x&gt;.pcap</title>"));
        for n in 1..=2 {
            assert!(page.contains(&format!("href=\"#session-{n}\"")));
            assert!(page.contains(&format!("id=\"session-{n}\"")));
        }
        assert!(page.contains("192.0.2.10:40001 -&gt; 198.51.100.20:21"));
        assert!(page.contains("1 segments, flow-new 1"));
    }

    #[test]
    fn nothing_is_fetched_and_nothing_runs() {
        let page = render(&recorder(1), &Heading::default());
        for banned in [
            "<script", "http:", "https:", "@import", "url(", "<link", "<img",
        ] {
            assert!(!page.contains(banned), "{banned}");
        }
    }

    #[test]
    fn hosts_are_read_off_the_first_segment() {
        let page = render(&recorder(1), &Heading::default());
        assert!(page.contains(">192.0.2.10</text>") && page.contains(">198.51.100.20</text>"));
        assert!(page.contains(">no address change</text>"));
    }

    #[test]
    fn without_nat_replies_still_point_to_the_inside_host() {
        let mut r = recorder(1);
        // Without NAT the gateway passes the reply as from the inside.
        let reply = Segment::parse(&packet(false, 9, 2, b"220 hi\r\n")).expect("tcp");
        let c = Crossing {
            time: Duration::from_millis(3),
            toward_inside: false,
            outside: Some(reply.clone()),
            inside: reply,
            events: Vec::new(),
        };
        r.crossing(c, &[]);
        let page = render(&r, &Heading::default());
        let row = page
            .split("<div class=\"row seg ")
            .find(|row| row.contains("220 hi"))
            .expect("the reply's row");
        let leftward = format!(r#"x1="{X_OUTSIDE}" y1="22" x2="{X_GATEWAY}""#);
        assert!(row.contains(&leftward), "{row}");
    }

    #[test]
    fn an_empty_capture_says_so() {
        let page = render(&Recorder::new(), &Heading::default());
        assert!(page.contains("No FTP session was followed."));
    }
}
