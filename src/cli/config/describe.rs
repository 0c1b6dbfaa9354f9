//! What a TOML error says to the person who wrote the file: the line, the
//! column, the key there, toml's message and, for a wrong value of a
//! number of the range table, its range ("line 3, column 26: policy.max_expect_per_session:
//! invalid type: floating point `100000000.0`, expected usize (1 to 1024)").

use super::ranges;

/// "line L, column C: [key: ]what[ (range)]" from toml's error and the text.
pub fn describe(e: &toml::de::Error, text: &str) -> String {
    let what = e.message();
    let Some(span) = e.span() else {
        return what.to_string();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let mut out = format!("line {line}, column {column}: ");
    if let Some(key) = key_at(text, before.len()) {
        out.push_str(&key);
        out.push_str(": ");
        out.push_str(what);
        let about_the_value = what.starts_with("invalid");
        if let Some(b) = ranges::of_key(&key).filter(|_| about_the_value) {
            out.push_str(&format!(" ({})", b.of_what()));
        }
    } else {
        out.push_str(what);
    }
    out
}

/// The full key (`policy.expect_timeout`) of the `key = value` line that
/// holds byte `at`, if that line is one.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if key.is_empty() || !key.chars().all(bare) {
        return None;
    }
    Some(match table_at(text.get(..start)?) {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

/// The `[table]` that the text before a line leaves open.
fn table_at(before: &str) -> Option<&str> {
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))?;
    let name = header.trim_start_matches('[').split(']').next()?.trim();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let e = toml::from_str::<super::super::Settings>(text).expect_err("invalid");
        describe(&e, text)
    }

    #[test]
    fn names_the_key_and_its_range() {
        let msg = error_of("\n[policy]\nmax_expect_per_session = 1e8\n");
        assert!(
            msg.starts_with("line 3, column 26: policy.max_expect_per_session: "),
            "{msg}"
        );
        assert!(msg.ends_with("(1 to 1024)"), "{msg}");
        let msg = error_of("realtime_priority = 300\n");
        assert!(msg.contains("realtime_priority: "), "{msg}");
        assert!(msg.ends_with("(0 to 99)"), "{msg}");
        let msg = error_of("max_line = -1\n");
        assert!(msg.ends_with("(128 to 8192 bytes)"), "{msg}");
        let msg = error_of("control_ports = [21, -1]\n");
        assert!(msg.ends_with("(port 1 to 65535)"), "{msg}");
    }

    #[test]
    fn lines_without_a_key_say_what_alone() {
        let msg = error_of("queues = [\n");
        assert!(msg.starts_with("line 1"), "{msg}");
        assert!(
            !msg.contains("1 to 64"),
            "a syntax error, not a value: {msg}"
        );
        let msg = error_of("control_ports = [\n  21,\n  -1,\n]\n");
        assert!(msg.starts_with("line 3, column 3: invalid value"), "{msg}");
    }

    #[test]
    fn keys_and_tables() {
        assert_eq!(key_at("a = 1\n", 4).as_deref(), Some("a"));
        assert_eq!(
            key_at("x = 1\n[policy]\nb = 2\n", 19).as_deref(),
            Some("policy.b")
        );
        assert_eq!(key_at("[policy]\n", 3), None);
        assert_eq!(key_at("\"a b\" = 1\n", 8), None);
    }
}
