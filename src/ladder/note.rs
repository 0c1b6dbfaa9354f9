//! An engine event as a note across the ladder: the rewrite of a line
//! (before and after, what changed, the length change), the expectation
//! created (who may connect where, with its NAT), the data connection
//! that matched it, a refusal and its rule. The engine's own wording of
//! the event is the note's tooltip.

use std::fmt::Write as _;
use std::time::Duration;

use ftpct_engine::event::Event;
use ftpct_engine::expect::Expectation;

use super::text::{changed_middle, html, signed, visible_text, Piece};

/// The note's HTML; `start` is time zero.
pub fn render(event: &Event, time: Duration, start: Duration) -> String {
    let (class, label, body) = describe(event);
    format!(
        r#"<div class="note {class}" data-kind="{kind}" title="{title}"><span class="time">{t:.6}</span><span class="label">{label}</span> {body}</div>"#,
        kind = event.kind(),
        title = html(&visible_text(&event.to_string())),
        t = time.saturating_sub(start).as_secs_f64(),
        label = html(&label),
    )
}

/// CSS class, label and body (HTML) of a note.
fn describe(event: &Event) -> (&'static str, String, String) {
    match event {
        Event::FlowNew { mapping, local } => (
            "flow",
            "new control connection".into(),
            plain(&format!(
                "{}, {}; original direction {}, reply direction {}",
                if *local { "local" } else { "forwarded" },
                if mapping.is_natted() { "NAT" } else { "no NAT" },
                mapping.orig,
                mapping.reply
            )),
        ),
        Event::ExpectationAdded(exp) => (
            "expect",
            format!("expectation ({:?})", exp.kind),
            plain(&who_may_connect(exp)),
        ),
        Event::ExpectationRemoved { exp, reason } => (
            "expect",
            format!("expectation removed ({reason:?})"),
            plain(&who_may_connect(exp)),
        ),
        Event::DataMatched { tuple, exp } => (
            "matched",
            "data connection matched".into(),
            plain(&format!(
                "{tuple} is the connection {} was expected to open to {}: RELATED, NAT: {}",
                exp.peer, exp.dst, exp.nat
            )),
        ),
        Event::Rewritten {
            dir, before, after, ..
        } => (
            "rewrite",
            format!("{} line rewritten", dir.name()),
            before_after(before, after),
        ),
        Event::Refused { line, refusal, .. } => (
            "refused",
            format!("refused [{}]", refusal.rule()),
            plain(&format!("'{line}': {refusal}")),
        ),
        Event::Malformed { line, why, .. } => (
            "refused",
            format!("malformed [{}]", why.name()),
            plain(&format!("'{line}': passed unchanged")),
        ),
        other => ("info", other.kind().into(), plain(&other.to_string())),
    }
}

/// Text with its control characters escaped, as HTML.
fn plain(s: &str) -> String {
    format!(r#"<span class="body">{}</span>"#, html(&visible_text(s)))
}

/// An expectation in words.
fn who_may_connect(exp: &Expectation) -> String {
    format!(
        "{} may connect, from any port, to {}; NAT: {}",
        exp.peer, exp.dst, exp.nat
    )
}

/// Both lines, the changed middle marked, and the length change.
fn before_after(before: &str, after: &str) -> String {
    let (b, a) = changed_middle(before, after);
    let delta = after.len() as i64 - before.len() as i64;
    format!(
        r#"<div class="lines"><div><span class="which">before</span><code class="before">{}</code></div><div><span class="which">after</span><code class="after">{}</code></div><div class="delta">length {} bytes</div></div>"#,
        marked(&b, "del"),
        marked(&a, "ins"),
        signed(delta)
    )
}

/// Pieces of a line, the changed ones in `tag`.
fn marked(pieces: &[Piece], tag: &str) -> String {
    let mut out = String::new();
    for p in pieces {
        let text = html(&visible_text(&p.text));
        if p.changed {
            let _ = write!(out, "<{tag}>{text}</{tag}>");
        } else {
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ftpct_engine::expect::NatBindings;
    use ftpct_engine::grammar::AnnounceKind;
    use ftpct_engine::tuple::{Dir, Tuple};

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn flow() -> Tuple {
        Tuple::new(addr("192.0.2.10:40000"), addr("198.51.100.20:21"))
    }

    #[test]
    fn a_rewrite_shows_both_lines_marked_and_the_length_change() {
        let e = Event::Rewritten {
            flow: flow(),
            dir: Dir::Orig,
            before: "PORT 192,0,2,10,136,111".into(),
            after: "PORT 198,51,100,1,136,111".into(),
        };
        let n = render(&e, Duration::from_secs(2), Duration::from_secs(1));
        assert!(n.contains(r#"data-kind="rewrite""#), "{n}");
        assert!(n.contains("PORT 19<del>2,0,2,10</del>,136,111"), "{n}");
        assert!(n.contains("PORT 19<ins>8,51,100,1</ins>,136,111"), "{n}");
        assert!(
            n.contains("length +2 bytes") && n.contains(">1.000000<"),
            "{n}"
        );
        assert!(n.contains("client line rewritten"));
    }

    #[test]
    fn an_expectation_says_who_may_connect_where_with_its_nat() {
        let exp = Expectation {
            peer: "198.51.100.20".parse().expect("ip"),
            dst: addr("198.51.100.1:34927"),
            nat: NatBindings {
                src: None,
                dst: Some(addr("192.0.2.10:34927")),
            },
            master: flow(),
            kind: AnnounceKind::Port,
            expires: Duration::ZERO,
        };
        let n = render(
            &Event::ExpectationAdded(exp.clone()),
            Duration::ZERO,
            Duration::ZERO,
        );
        assert!(
            n.contains("198.51.100.20 may connect, from any port, to 198.51.100.1:34927; NAT: dnat to 192.0.2.10:34927"),
            "{n}"
        );
        let tuple = Tuple::new(addr("198.51.100.20:20"), addr("198.51.100.1:34927"));
        let m = render(
            &Event::DataMatched { tuple, exp },
            Duration::ZERO,
            Duration::ZERO,
        );
        assert!(
            m.contains("198.51.100.20:20 -&gt; 198.51.100.1:34927 is the connection 198.51.100.20 was expected to open to 198.51.100.1:34927: RELATED, NAT: dnat to 192.0.2.10:34927"),
            "{m}"
        );
    }

    #[test]
    fn the_engine_wording_is_the_tooltip_and_hostile_text_is_escaped() {
        let e = Event::Malformed {
            flow: flow(),
            dir: Dir::Reply,
            line: "227 <b>\u{7}".into(),
            why: ftpct_engine::grammar::Malformed::BadNumber,
        };
        let n = render(&e, Duration::ZERO, Duration::ZERO);
        assert!(!n.contains("<b>"), "{n}");
        assert!(n.contains(r"227 &lt;b&gt;\x07"), "{n}");
        assert!(n.contains(r#"class="note refused""#));
    }
}
