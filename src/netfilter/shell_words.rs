//! Commands printed for a person to read or paste into a shell.

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// `prog` and its `args`, each quoted when it needs it.
pub(crate) fn command_line(prog: &str, args: &[String]) -> String {
    let mut line = prog.to_string();
    for a in args {
        line.push(' ');
        line.push_str(&shell_word(a));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_word("dst,dst"), "dst,dst");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
