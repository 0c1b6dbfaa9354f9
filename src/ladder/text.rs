//! Text for the page: HTML escaping, bytes shown visibly (control and
//! non-ASCII bytes escaped), and what differs between two lines.

/// `s` safe inside HTML text and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How one byte of a payload is shown: printable ASCII as it is, the
/// usual control bytes as C escapes, anything else as `\xNN`.
fn visible_byte(b: u8) -> String {
    match b {
        b'\r' => "\\r".into(),
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        b'\\' => "\\\\".into(),
        0x20..=0x7e => char::from(b).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

/// Payload bytes as text of at most `budget` characters (escapes are
/// never cut), with `…` when something was left out: `total` is the
/// payload's full length, of which `bytes` may be only the start.
pub fn visible_bytes(bytes: &[u8], total: usize, budget: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    // Room is kept for the ellipsis; every escape is ASCII.
    for &b in bytes {
        let v = visible_byte(b);
        if out.len() + v.len() > budget.saturating_sub(1) {
            break;
        }
        out.push_str(&v);
        shown += 1;
    }
    if shown < total {
        out.push('…');
    }
    out
}

/// A line of text with its control characters escaped (an engine event's
/// line may carry any byte the peer sent).
pub fn visible_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii() => out.push_str(&visible_byte(b)),
            _ if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            _ => out.push(c),
        }
    }
    out
}

/// A piece of a line and whether it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub changed: bool,
}

/// `before` and `after` cut into what they share at the start, what
/// differs, and what they share at the end.
pub fn changed_middle(before: &str, after: &str) -> (Vec<Piece>, Vec<Piece>) {
    let b: Vec<char> = before.chars().collect();
    let a: Vec<char> = after.chars().collect();
    let prefix = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let room = b.len().min(a.len()) - prefix;
    let suffix = b
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    (pieces(&b, prefix, suffix), pieces(&a, prefix, suffix))
}

fn pieces(chars: &[char], prefix: usize, suffix: usize) -> Vec<Piece> {
    let end = chars.len() - suffix;
    [
        (&chars[..prefix], false),
        (&chars[prefix..end], true),
        (&chars[end..], false),
    ]
    .into_iter()
    .filter(|(part, _)| !part.is_empty())
    .map(|(part, changed)| Piece {
        text: part.iter().collect(),
        changed,
    })
    .collect()
}

/// A signed byte count: `+2`, `-1`, `0`.
pub fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_byte_is_visible() {
        assert_eq!(
            visible_bytes(b"PORT 1\r\n", 8, 80),
            "PORT 1\\r\\n",
            "line ends shown"
        );
        assert_eq!(visible_bytes(&[0, 0xff, b'\\'], 3, 80), "\\x00\\xff\\\\");
        assert_eq!(
            visible_bytes("é".as_bytes(), 2, 80),
            "\\xc3\\xa9",
            "bytes, not text"
        );
    }

    #[test]
    fn long_payloads_are_cut_between_escapes() {
        let shown = visible_bytes(b"abc\r\n", 5, 5);
        assert_eq!(shown, "abc…", "the escape does not fit: not cut in half");
        assert_eq!(
            visible_bytes(b"ab", 10, 80),
            "ab…",
            "kept bytes are a start"
        );
    }

    #[test]
    fn control_characters_of_lines_are_escaped() {
        assert_eq!(visible_text("a\u{1b}[0m\r"), "a\\x1b[0m\\r");
        assert_eq!(visible_text("né\u{85}"), "né\\u{85}");
    }

    #[test]
    fn the_changed_middle_is_marked() {
        let (before, after) =
            changed_middle("PORT 192,0,2,10,136,111", "PORT 198,51,100,1,136,111");
        let marked = |p: &[Piece]| -> Vec<(String, bool)> {
            p.iter().map(|x| (x.text.clone(), x.changed)).collect()
        };
        assert_eq!(
            marked(&before),
            [
                ("PORT 19".to_string(), false),
                ("2,0,2,10".to_string(), true),
                (",136,111".to_string(), false)
            ]
        );
        assert_eq!(marked(&after)[1], ("8,51,100,1".to_string(), true));
    }

    #[test]
    fn identical_and_grown_lines() {
        let (b, a) = changed_middle("same", "same");
        assert_eq!(b, a);
        assert!(b.iter().all(|p| !p.changed));
        // Prefix and suffix never overlap when one line contains the other.
        let (b, a) = changed_middle("aa", "aaa");
        assert_eq!(b.iter().map(|p| p.text.len()).sum::<usize>(), 2);
        assert_eq!(a.iter().filter(|p| p.changed).count(), 1);
    }

    #[test]
    fn signs() {
        assert_eq!(
            (signed(2), signed(-25), signed(0)),
            ("+2".into(), "-25".into(), "0".into())
        );
    }
}
