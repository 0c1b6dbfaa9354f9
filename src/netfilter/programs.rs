//! The xt_bpf programs of the selective rules by name: what each rule's
//! programs are called (its comment names them), which generator of
//! `bpf.rs` writes them, and what `ftpct rules --explain` says each lets
//! pass and why, worded from the classifier's data
//! (`ftpct_engine::classifier`), so the text cannot drift from the
//! programs.

use std::fmt::Write as _;

use ftpct_engine::classifier::{
    common_payload_at, plain_max, Ip, Side, Trigger, CLIENT_WORDS, MULTI_LINE_OPENER, PASSIVE_MAX,
    PASSIVE_WORDS, PLAIN_PROGRAMS, QUICK_PLAIN_MAX, QUICK_PLAIN_MIN, SERVER_CODES, TCP_HEADER_MIN,
    TCP_HEADER_WITH_TIMESTAMPS,
};

use crate::netfilter::bpf;
use crate::netfilter::family::Family;
use crate::netfilter::sets::UNSEEN_BUDGET;

/// Programs of the plain-line rule for short lines.
const SHORT_PLAIN_PROGRAMS: usize = 2;

/// The kinds of program the rules carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One program: no payload, or a short plain line, common shape.
    Quick,
    /// Two programs: no payload, or a plain line of up to 28 bytes.
    Short,
    /// Five programs: a plain line of up to 79 bytes.
    Long,
    /// A passive request alone in its segment.
    Passive,
    /// A segment ending inside a line, or unreadable headers.
    OpenLine,
}

/// In the order the rules meet them.
pub const KINDS: [Kind; 5] = [
    Kind::Quick,
    Kind::Short,
    Kind::Long,
    Kind::Passive,
    Kind::OpenLine,
];

impl Kind {
    /// The programs' name: one per side where they differ by side.
    pub fn name(self, side: Side) -> String {
        let base = match self {
            Kind::Quick => "quick",
            Kind::Short => "short",
            Kind::Long => "long",
            Kind::Passive => return "passive".into(),
            Kind::OpenLine => return "open-line".into(),
        };
        format!("{base}-{}", side_name(side))
    }

    /// What a rule's comment says of its programs: `bpf NAME`, or `bpf
    /// NAME/1-N` for N programs.
    pub fn label(self, side: Side) -> String {
        match self.count() {
            1 => format!("bpf {}", self.name(side)),
            n => format!("bpf {}/1-{n}", self.name(side)),
        }
    }

    /// How many programs a rule of this kind carries (all must match).
    pub fn count(self) -> usize {
        match self {
            Kind::Short => SHORT_PLAIN_PROGRAMS,
            Kind::Long => PLAIN_PROGRAMS,
            Kind::Quick | Kind::Passive | Kind::OpenLine => 1,
        }
    }

    /// The sides whose programs differ (the open-line program is the
    /// same for both).
    fn sides(self) -> &'static [Side] {
        match self {
            Kind::Passive | Kind::OpenLine => &[Side::Client],
            Kind::Quick | Kind::Short | Kind::Long => &[Side::Client, Side::Server],
        }
    }

    /// The programs, as xt_bpf's `--bytecode` takes them.
    pub fn programs(self, family: Family, side: Side) -> Vec<String> {
        match self {
            Kind::Quick => vec![bpf::quick_plain_line(family, side)],
            Kind::Short => bpf::empty_or_plain_line(family, side, SHORT_PLAIN_PROGRAMS),
            Kind::Long => bpf::plain_line(family, side, PLAIN_PROGRAMS),
            Kind::Passive => vec![bpf::passive_request(family)],
            Kind::OpenLine => vec![bpf::not_ending_a_line(family)],
        }
    }

    /// What a segment of `side` must be for the programs to match, and
    /// what the rule then does with it.
    fn explain(self, side: Side) -> String {
        let plain = |max: usize| {
            format!(
                "one line (ending with CR LF, no other line feed) of 4 to {max} bytes {}",
                harmless_start(side)
            )
        };
        let who = side_name(side);
        match self {
            Kind::Quick => format!(
                "a {who} segment of the common shape ({}), without SYN, FIN or RST, with no payload \
                 or whose payload is one line of {QUICK_PLAIN_MIN} to {QUICK_PLAIN_MAX} bytes \
                 {}. It reads the payload by words at fixed places (cheap). The rule lets it \
                 pass unqueued.",
                common_shape(),
                harmless_start(side)
            ),
            Kind::Short => format!(
                "a {who} segment in a readable shape with no payload, or whose payload is {}. The rule \
                 lets it pass unqueued.",
                plain(plain_max(SHORT_PLAIN_PROGRAMS))
            ),
            Kind::Long => format!(
                "a {who} segment in a readable shape whose payload is {}. The rule lets it pass \
                 unqueued.",
                plain(plain_max(PLAIN_PROGRAMS))
            ),
            Kind::Passive => format!(
                "a client segment in a readable shape whose payload is one line of 4 to \
                 {PASSIVE_MAX} bytes starting with {} in any case. One rule notes its session \
                 in the passive set, the next lets it pass unqueued: ftpct takes the note when \
                 the {} answering it comes (an announcement counts only when asked for).",
                PASSIVE_WORDS.join(" or "),
                codes_of(&SERVER_CODES[..2]),
            ),
            Kind::OpenLine => "a segment whose payload does not end with CR LF (it ends inside a \
                 line, whose rest must be seen: the line's start may be in this segment and the \
                 word in the next), or whose headers the programs do not read (IPv6 extension \
                 headers). The rule puts its direction in the guard set: it and every later \
                 segment of that direction cross, until ftpct takes the direction out. Run on \
                 both sides."
                .to_string(),
        }
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Server => "server",
    }
}

fn codes_of(triggers: &[Trigger]) -> String {
    let texts: Vec<&str> = triggers.iter().map(|t| t.text).collect();
    texts.join(" or ")
}

/// The condition on a line's start that makes it unable to matter.
fn harmless_start(side: Side) -> String {
    match side {
        Side::Client => format!(
            "whose first four bytes are none of {} in any case",
            codes_of(&CLIENT_WORDS)
        ),
        Side::Server => format!(
            "that starts with none of {} and whose fourth byte is not '{}'",
            codes_of(&SERVER_CODES),
            MULTI_LINE_OPENER.text
        ),
    }
}

/// The common header shape, with where its payload starts.
fn common_shape() -> String {
    format!(
        "IPv4 without options or IPv6 followed by TCP, a TCP header of \
         {TCP_HEADER_WITH_TIMESTAMPS} bytes (timestamps), as Linux sends them: payload at byte \
         {} (IPv4) or {} (IPv6)",
        common_payload_at(Ip::V4),
        common_payload_at(Ip::V6)
    )
}

/// The instructions of a program (the count `--bytecode` starts with).
fn instructions(program: &str) -> &str {
    program.split(',').next().unwrap_or_default()
}

/// `ftpct rules --explain`: what must cross to ftpct and why, then each
/// named program: what it lets pass, and its size.
pub fn explain() -> String {
    let mut s = String::from(
        "# What ftpct's selective rules let cross to ftpct, and the BPF programs that decide\n\
         # it. Generated from the selection rule (ftpct_engine::classifier); the programs\n\
         # are named in their rules' comments (`ftpct rules`).\n\n\
         A control segment crosses (its direction is put in the guard set) when it holds:\n",
    );
    for w in CLIENT_WORDS {
        let _ = writeln!(s, "  from a client, {} (any case): {}", w.text, w.why);
    }
    for c in SERVER_CODES {
        let _ = writeln!(s, "  from a server, {}: {}", c.text, c.why);
    }
    let _ = writeln!(
        s,
        "  from a server, '{}': {}",
        MULTI_LINE_OPENER.text, MULTI_LINE_OPENER.why
    );
    let _ = write!(
        s,
        "or when it ends inside a line (no CR LF last), or its headers are not read. The word\n\
         searches (xt_string, not BPF) look anywhere from where the payload starts (byte {} or\n\
         {} for IPv4 with or without TCP timestamps, {} or {} for IPv6), never after it: a word\n\
         past a line's start makes a segment cross for nothing, never the other way. Every\n\
         other segment passes unqueued, by one of the programs below. Shapes read: IPv4 with any\n\
         options, IPv6 with TCP right after its header, TCP headers of {TCP_HEADER_MIN} to 60 bytes.\n",
        common_payload_at(Ip::V4),
        Ip::V4.fixed_header() + TCP_HEADER_MIN,
        common_payload_at(Ip::V6),
        Ip::V6.fixed_header() + TCP_HEADER_MIN,
    );
    let _ = write!(
        s,
        "A control direction also crosses, whatever its segments hold, once the packets it\n\
         passed unseen since ftpct last saw it count over {UNSEEN_BUDGET} bytes (the counting set):\n\
         ftpct takes a segment more than 1 MiB from where it last saw its direction for a\n\
         blind forgery.\n",
    );
    for kind in KINDS {
        for &side in kind.sides() {
            let sizes: Vec<String> = [Family::V4, Family::V6]
                .iter()
                .map(|&f| {
                    let programs = kind.programs(f, side);
                    let counts: Vec<&str> = programs.iter().map(|p| instructions(p)).collect();
                    format!("{} {}", f.name(), counts.join("+"))
                })
                .collect();
            let _ = write!(
                s,
                "\n{} ({} program{}; instructions {}):\n  matches {}\n",
                kind.label(side).trim_start_matches("bpf "),
                kind.count(),
                if kind.count() == 1 {
                    ""
                } else {
                    "s, all must match"
                },
                sizes.join(", "),
                kind.explain(side)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule with programs names them in its comment, and the name
    /// stands for exactly the programs it carries.
    #[test]
    fn each_rule_names_the_programs_it_carries() {
        use crate::netfilter::family::Families;
        use crate::netfilter::rules::tests::ruleset;
        let rs = crate::netfilter::rules::RuleSet {
            queue_all: false,
            ..ruleset(Families::All)
        };
        let mut named = 0;
        for family in [Family::V4, Family::V6] {
            for rule in rs.rules(family, false) {
                let spec = &rule.spec;
                let carried: Vec<&String> = spec
                    .iter()
                    .zip(spec.iter().skip(1))
                    .filter(|(w, _)| *w == "--bytecode")
                    .map(|(_, p)| p)
                    .collect();
                if carried.is_empty() {
                    continue;
                }
                let comment = spec.iter().skip_while(|w| *w != "--comment").nth(1);
                let comment = comment.expect("a comment");
                let (kind, side) = KINDS
                    .iter()
                    .flat_map(|&k| [Side::Client, Side::Server].map(|s| (k, s)))
                    .find(|(k, s)| comment.ends_with(&format!("({})", k.label(*s))))
                    .unwrap_or_else(|| panic!("no program named in {comment:?}"));
                let programs = kind.programs(family, side);
                assert_eq!(programs.iter().collect::<Vec<_>>(), carried, "{comment}");
                named += 1;
            }
        }
        // Per family and chain: quick, short, long for each side, two
        // passive rules, the open-line rule for each side.
        assert_eq!(named, 2 * 2 * (3 * 2 + 2 + 2));
    }

    #[test]
    fn every_program_is_named_and_explained() {
        let text = explain();
        for kind in KINDS {
            for &side in kind.sides() {
                let name = kind.label(side);
                assert!(text.contains(name.trim_start_matches("bpf ")), "{name}");
            }
        }
        for w in CLIENT_WORDS.iter().chain(&SERVER_CODES) {
            assert!(text.contains(w.why), "{}", w.text);
        }
        assert!(text.contains("long-client/1-5 (5 programs, all must match"));
        assert!(text.contains("of 4 to 79 bytes"), "{text}");
        assert!(text.contains("IPv4 59, IPv6 "), "{text}");
    }
}
