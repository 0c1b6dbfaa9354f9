//! A segment as a row of the ladder: one arrow from the sender to the
//! gateway and one from the gateway to the receiver, each labelled with
//! the segment as it is on that side (payload above; ports, flags,
//! seq/ack, length below), and what the gateway changed in the numbers.

use std::fmt::Write as _;
use std::time::Duration;

use ftpct_engine::event::Event;

use super::crossing::{Crossing, Segment};
use super::layout::{half_chars, ARROW_ROW, TIME_RIGHT, WIDTH, X_GATEWAY, X_INSIDE, X_OUTSIDE};
use super::record::Conn;
use super::text::{html, signed, visible_bytes, visible_text};

const Y_PAYLOAD: u32 = 15;
const Y_LINE: u32 = 22;
const Y_META: u32 = 36;

/// The row's HTML: an SVG with both arrows (`leftward`: toward the
/// inside host) and a tooltip with the whole segment.
pub fn render(conn: Conn, crossing: &Crossing, start: Duration, leftward: bool) -> String {
    let mut svg = String::new();
    let time = crossing.time.saturating_sub(start).as_secs_f64();
    let _ = write!(
        svg,
        r#"<text class="time" x="{x}" y="{Y_LINE}" text-anchor="end">{time:.6}</text>"#,
        x = TIME_RIGHT - 8
    );
    if let Conn::Data(n) = conn {
        let _ = write!(
            svg,
            r#"<text class="conn" x="{x}" y="{Y_META}" text-anchor="end">data {n}</text>"#,
            x = TIME_RIGHT - 8
        );
    }
    let (sent, received) = sides(crossing);
    svg.push_str(&half(sent, None, leftward));
    match received {
        Some(r) => svg.push_str(&half(r, Some(crossing), leftward)),
        None => svg.push_str(&not_let_out(leftward)),
    }
    format!(
        r#"<div class="row seg {class}"><svg width="{WIDTH}" height="{ARROW_ROW}" viewBox="0 0 {WIDTH} {ARROW_ROW}" role="img"><title>{title}</title>{svg}</svg></div>"#,
        class = row_class(conn, crossing),
        title = html(&tooltip(crossing)),
    )
}

/// One side's arrow: the segment as it is there, between its lifeline
/// and the gateway's.
#[derive(Clone, Copy)]
struct Half<'a> {
    segment: &'a Segment,
    on_inside: bool,
}

/// The sending side's half first.
fn sides(c: &Crossing) -> (Half<'_>, Option<Half<'_>>) {
    let inside = Half {
        segment: &c.inside,
        on_inside: true,
    };
    let outside = c.outside.as_ref().map(|segment| Half {
        segment,
        on_inside: false,
    });
    if c.toward_inside {
        match outside {
            Some(o) => (o, Some(inside)),
            // Not built by the replay (the far side always has a form);
            // the inside form alone then.
            None => (inside, None),
        }
    } else {
        (inside, outside)
    }
}

/// The arrow of one half; `shifts` on the receiving half, where the
/// gateway's changes to the numbers show.
fn half(h: Half<'_>, shifts: Option<&Crossing>, leftward: bool) -> String {
    let (host, gateway) = if h.on_inside {
        (X_INSIDE, X_GATEWAY)
    } else {
        (X_OUTSIDE, X_GATEWAY)
    };
    let (from, to) = if leftward == h.on_inside {
        (gateway, host)
    } else {
        (host, gateway)
    };
    let mid = (from + to) / 2;
    let s = h.segment;
    let mut out = format!(
        r#"<line class="arrow" x1="{from}" y1="{Y_LINE}" x2="{to}" y2="{Y_LINE}"/>{head}"#,
        head = arrow_head(to, from > to)
    );
    if s.len > 0 {
        let _ = write!(
            out,
            r#"<text class="payload" x="{mid}" y="{Y_PAYLOAD}" text-anchor="middle">{}</text>"#,
            html(&visible_bytes(&s.payload, s.len, half_chars()))
        );
    }
    let shift = shifts.map(shift_label).unwrap_or_default();
    let _ = write!(
        out,
        r#"<text class="meta" x="{mid}" y="{Y_META}" text-anchor="middle">{}{shift}</text>"#,
        html(&meta(s))
    );
    out
}

/// Ports, flags, numbers and length, as on the wire on that side.
fn meta(s: &Segment) -> String {
    let mut m = format!(
        "{}→{} [{}] seq {}",
        s.tuple.src.port(),
        s.tuple.dst.port(),
        s.flags,
        s.seq
    );
    if let Some(ack) = s.ack {
        let _ = write!(m, " ack {ack}");
    }
    let _ = write!(m, " len {}", s.len);
    m
}

/// What the gateway added to seq and ack, when it changed them.
fn shift_label(c: &Crossing) -> String {
    [("seq", c.seq_shift()), ("ack", c.ack_shift())]
        .into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|(name, d)| format!(r#" <tspan class="shift">{name} {}</tspan>"#, signed(d)))
        .collect()
}

/// A filled triangle pointing at `x`.
fn arrow_head(x: u32, pointing_left: bool) -> String {
    let back = if pointing_left { x + 9 } else { x - 9 };
    format!(
        r#"<polygon class="head" points="{x},{Y_LINE} {back},{} {back},{}"/>"#,
        Y_LINE - 4,
        Y_LINE + 4
    )
}

/// Where the receiving half would be: a cross at the gateway.
fn not_let_out(leftward: bool) -> String {
    let x = X_GATEWAY;
    let label_x = if leftward {
        (X_INSIDE + X_GATEWAY) / 2
    } else {
        (X_GATEWAY + X_OUTSIDE) / 2
    };
    format!(
        r#"<path class="cross" d="M{a},{t} L{b},{u} M{a},{u} L{b},{t}"/><text class="dropped" x="{label_x}" y="{Y_LINE}" text-anchor="middle">not let through</text>"#,
        a = x - 6,
        b = x + 6,
        t = Y_LINE - 6,
        u = Y_LINE + 6
    )
}

/// Classes for colour: data connections, rewritten and refused lines.
fn row_class(conn: Conn, c: &Crossing) -> String {
    let mut class = match conn {
        Conn::Control => "control".to_string(),
        Conn::Data(_) => "data".to_string(),
    };
    for e in &c.events {
        let extra = match e {
            Event::Rewritten { .. } => " rewritten",
            Event::Refused { .. } | Event::Malformed { .. } => " refused",
            _ => "",
        };
        if !class.contains(extra) {
            class.push_str(extra);
        }
    }
    if c.outside.is_none() {
        class.push_str(" dropped");
    }
    class
}

/// The whole segment on both sides, and the lines it completed: what a
/// label had to leave out.
fn tooltip(c: &Crossing) -> String {
    let mut t = String::new();
    let mut side = |name: &str, s: &Segment| {
        let _ = writeln!(
            t,
            "{name}: {} {} '{}'",
            s.tuple,
            meta(s),
            visible_bytes(&s.payload, s.len, usize::MAX)
        );
    };
    side("inside", &c.inside);
    match &c.outside {
        Some(o) => side("outside", o),
        None => t.push_str("outside: not let through\n"),
    }
    for e in &c.events {
        if let Event::Line { dir, text, .. } = e {
            let _ = writeln!(t, "{} line: {}", dir.name(), visible_text(text));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::crossing::tests::{natted, packet};
    use ftpct_engine::tuple::Dir;

    fn port_out() -> Crossing {
        let inside =
            Segment::parse(&packet(true, 100, 7, b"PORT 192,0,2,10,1,2\r\n")).expect("tcp");
        Crossing {
            time: Duration::from_millis(1500),
            toward_inside: false,
            events: vec![Event::Line {
                flow: inside.tuple,
                dir: Dir::Orig,
                text: "PORT 192,0,2,10,1,2".into(),
            }],
            inside,
            outside: Segment::parse(&natted(102, 7, b"PORT 198,51,100,1,1,2\r\n")),
        }
    }

    #[test]
    fn both_halves_are_labelled_with_their_own_form() {
        let row = render(Conn::Control, &port_out(), Duration::from_secs(1), false);
        assert!(row.contains(r">0.500000<"), "time from the start: {row}");
        assert!(row.contains(r"PORT 192,0,2,10,1,2\r\n"), "{row}");
        assert!(row.contains(r"PORT 198,51,100,1,1,2\r\n"), "{row}");
        assert!(row.contains("40000→21 [P.] seq 100 ack 7 len 21"), "{row}");
        assert!(row.contains("40000→21 [P.] seq 102 ack 7 len 23"), "{row}");
        assert!(
            row.contains(r#"<tspan class="shift">seq +2</tspan>"#),
            "{row}"
        );
        assert!(row.contains("client line: PORT 192,0,2,10,1,2"), "tooltip");
        assert_eq!(row.matches("<line ").count(), 2);
    }

    #[test]
    fn arrows_point_the_way_the_segment_goes() {
        let out = render(Conn::Control, &port_out(), Duration::ZERO, false);
        assert!(out.contains(&format!(r#"x1="{X_INSIDE}" y1="22" x2="{X_GATEWAY}""#)));
        assert!(out.contains(&format!(r#"x1="{X_GATEWAY}" y1="22" x2="{X_OUTSIDE}""#)));
        let reply = Segment::parse(&packet(false, 5, 1, b"200 ok\r\n")).expect("tcp");
        let back = Crossing {
            toward_inside: true,
            inside: reply.clone(),
            outside: Some(reply),
            events: Vec::new(),
            time: Duration::ZERO,
        };
        let row = render(Conn::Data(2), &back, Duration::ZERO, true);
        assert!(row.contains(&format!(r#"x1="{X_OUTSIDE}" y1="22" x2="{X_GATEWAY}""#)));
        assert!(row.contains(&format!(r#"x1="{X_GATEWAY}" y1="22" x2="{X_INSIDE}""#)));
        assert!(row.contains(">data 2<") && row.contains("row seg data"));
    }

    #[test]
    fn a_segment_kept_in_is_crossed_out() {
        let dropped = Crossing {
            outside: None,
            ..port_out()
        };
        let row = render(Conn::Control, &dropped, Duration::ZERO, false);
        assert!(row.contains("not let through") && row.contains(" dropped"));
        assert_eq!(row.matches("<line ").count(), 1);
    }

    #[test]
    fn payload_markup_is_escaped() {
        let hostile =
            Segment::parse(&packet(false, 5, 1, b"<script>x</script>\x1b\r\n")).expect("tcp");
        let c = Crossing {
            toward_inside: true,
            inside: hostile.clone(),
            outside: Some(hostile),
            events: Vec::new(),
            time: Duration::ZERO,
        };
        let row = render(Conn::Control, &c, Duration::ZERO, true);
        assert!(!row.contains("<script"), "{row}");
        assert!(
            row.contains(r"&lt;script&gt;x&lt;/script&gt;\x1b\r\n"),
            "{row}"
        );
    }
}
