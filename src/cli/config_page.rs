//! ftpct.toml(5): the man page of the configuration file, made from the
//! packaged file itself (scripts/ftpct.toml), whose comments document each
//! key beside its default: one text, so the page cannot disagree with it.

use super::man_sections::{escape, extra_sections};

/// The packaged configuration, comments and defaults.
const SHIPPED: &str = include_str!("../../scripts/ftpct.toml");

/// A key of the file: its comment, the line that sets it (commented out
/// when it has no default) and the table it is in.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    table: Option<String>,
    name: String,
    line: String,
    about: Vec<String>,
}

/// The page, in roff, dated and versioned like the others.
pub fn page(version: &str) -> String {
    let (intro, keys) = read(SHIPPED);
    let mut out = format!(".TH ftpct.toml 5 \"\" \"ftpct {version}\"\n");
    out.push_str(".SH NAME\nftpct.toml \\- configuration of ftpct(8)\n");
    out.push_str(".SH SYNOPSIS\n/etc/ftpct/ftpct.toml\n.SH DESCRIPTION\n");
    out.push_str(&escape(&intro.join(" ")));
    out.push_str("\n.SH KEYS\n");
    let mut table = None;
    for k in &keys {
        if k.table != table {
            table = k.table.clone();
            let name = table.as_deref().unwrap_or_default();
            out.push_str(&format!(".SS \"[{name}]\"\n"));
        }
        out.push_str(".TP\n\\fB");
        out.push_str(&escape(&k.line));
        out.push_str("\\fR\n");
        out.push_str(&escape(&k.about.join(" ")));
        out.push('\n');
    }
    out.push_str(&extra_sections("ftpct.toml"));
    out
}

/// The header's lines, then every key in order.
fn read(text: &str) -> (Vec<String>, Vec<Key>) {
    let mut intro = Vec::new();
    let mut keys = Vec::new();
    let mut about = Vec::new();
    let mut table = None;
    let mut in_header = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            in_header = false;
            about.clear();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = Some(name.to_string());
        } else if let Some((name, set)) = key_line(line) {
            keys.push(Key {
                table: table.clone(),
                name,
                line: set,
                about: std::mem::take(&mut about),
            });
        } else if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim().to_string();
            if in_header {
                intro.push(comment);
            } else {
                about.push(comment);
            }
        }
    }
    (intro, keys)
}

/// `key = value`, or `# key = value` (a key without a default, shown as
/// an example): the key and the setting as written.
fn key_line(line: &str) -> Option<(String, String)> {
    let set = line.strip_prefix("# ").unwrap_or(line);
    let (name, value) = set.split_once(" = ")?;
    let is_key = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    (is_key && !value.is_empty()).then(|| (name.to_string(), set.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_shipped_file_is_on_the_page() {
        let (intro, keys) = read(SHIPPED);
        assert!(intro.join(" ").contains("/etc/ftpct/ftpct.toml"));
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        for name in [
            "queues",
            "status_socket",
            "metrics",
            "mark",
            "min_data_port",
            "max_expect_per_session",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(keys.iter().all(|k| !k.about.is_empty()), "{keys:?}");
        let policy = keys.iter().find(|k| k.name == "expect_timeout");
        assert_eq!(policy.and_then(|k| k.table.as_deref()), Some("policy"));
        let page = page("1.2.3");
        assert!(page.starts_with(".TH ftpct.toml 5"), "{page}");
        assert!(page.contains("\\fBmax_line = 1024\\fR"), "{page}");
        assert!(page.contains(".SH \"FILES\""), "{page}");
    }

    #[test]
    fn key_lines() {
        assert_eq!(
            key_line("max_line = 1024"),
            Some(("max_line".into(), "max_line = 1024".into()))
        );
        assert_eq!(
            key_line("# mark = \"0x10/0xff\""),
            Some(("mark".into(), "mark = \"0x10/0xff\"".into()))
        );
        assert_eq!(key_line("# Seconds between lines, 0 to 86400."), None);
    }
}
