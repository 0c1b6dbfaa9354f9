//! ftpct's own chains in the raw table: their names, the one jump into
//! each from the built-in chain it hangs off, the fingerprint that tells
//! an apply whether what is loaded is what it would load, and the
//! `iptables-restore --noflush` text that loads them in one transaction.
//!
//! Every rule of ftpct's lives in `ftpct-pre` (reached from PREROUTING)
//! or `ftpct-out` (from OUTPUT); the built-in chains hold one rule of
//! ftpct's each, appended after the user's own rules (an NFQUEUE accept
//! resumes the packet at the next hook: rules after ours never see it).
//! Declaring a user chain in a `--noflush` restore empties it, so an
//! upgrade swaps a chain's content in the same transaction that fills it.

use std::fmt::Write as _;

use crate::netfilter::family::Family;
use crate::netfilter::rules::{Rule, RuleSet, TABLE};
use crate::netfilter::sets::{create_command, family_sets, DEFAULT_SET};
use crate::netfilter::shell_words::shell_word;

/// The built-in chains ftpct hangs its chains off.
pub const HOOKS: [&str; 2] = ["PREROUTING", "OUTPUT"];
/// What every chain of ftpct's is called first.
pub const CHAIN_PREFIX: &str = "ftpct";
/// xtables chain names hold at most this many bytes.
const CHAIN_NAME_MAX: usize = 28;
/// What every comment of the jumps starts with.
pub const COMMENT_JUMP: &str = "ftpct: to ftpct's rules";

/// The chain of ftpct's that `hook` jumps to: `ftpct-pre` and `ftpct-out`
/// for the default set name, `ftpct-NAME-pre` for another (two ftpcts in
/// one namespace keep apart by their set names), and for a name too long
/// for that, `ftpct-HASH-pre` (HASH: 8 hex digits of the name).
pub fn own_chain(rs: &RuleSet, hook: &str) -> String {
    let end = if hook == "OUTPUT" { "out" } else { "pre" };
    let base = &rs.sets.v4;
    if base == DEFAULT_SET {
        return format!("{CHAIN_PREFIX}-{end}");
    }
    let named = format!("{CHAIN_PREFIX}-{base}-{end}");
    if named.len() <= CHAIN_NAME_MAX {
        named
    } else {
        format!("{CHAIN_PREFIX}-{:08x}-{end}", fnv1a(base))
    }
}

/// FNV-1a, 32 bits: stable across builds and machines, enough to tell one
/// rule set from another.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// What the jump's comment carries: the fingerprint of every rule of the
/// family (ports, queues, sets, mode and this ftpct's way of writing
/// them), so an apply that finds it knows the chains hold these rules.
pub fn jump_comment(rules: &[Rule]) -> String {
    let text: String = rules
        .iter()
        .map(|r| format!("{} {}\n", r.chain, r.spec.join(" ")))
        .collect();
    format!("{COMMENT_JUMP} (rule set {:08x})", fnv1a(&text))
}

/// The jump from `hook` to ftpct's chain (TCP only: every rule of ftpct's
/// is about TCP, and other packets need not enter).
pub fn jump_spec(rs: &RuleSet, hook: &str, comment: &str) -> Vec<String> {
    let own = own_chain(rs, hook);
    [
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        &own,
    ]
    .iter()
    .map(|w| w.to_string())
    .collect()
}

/// A word as iptables-restore reads it: in double quotes when it holds a
/// space or a quote (a backslash escapes inside them).
fn restore_word(w: &str) -> String {
    let plain = !w.is_empty() && !w.contains([' ', '"', '\'', '\\', '\t', '#']);
    if plain {
        w.to_string()
    } else {
        format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `-D CHAIN N` for each rule of `remove`, the highest numbers first so
/// the others keep theirs.
fn write_removals(s: &mut String, remove: &[(&'static str, usize)]) {
    let mut remove = remove.to_vec();
    remove.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (chain, number) in remove {
        let _ = writeln!(s, "-D {chain} {number}");
    }
}

/// One line of a restore: `op chain spec...`.
pub fn restore_line(op: &str, chain: &str, spec: &[String]) -> String {
    let mut line = format!("{op} {chain}");
    for w in spec {
        line.push(' ');
        line.push_str(&restore_word(w));
    }
    line
}

/// The comment a rule carries, for the line above it.
fn comment_of(spec: &[String]) -> Option<&str> {
    let at = spec.iter().position(|w| w == "--comment")?;
    spec.get(at + 1).map(String::as_str)
}

/// What a transaction does, besides filling the chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rules of the built-in chains to take out, by chain and number
    /// (older ftpct's rules, stale jumps), in the order found.
    pub remove: Vec<(&'static str, usize)>,
    /// The hooks whose jump goes in (appended).
    pub jumps: Vec<&'static str>,
}

/// The restore text that makes the chains hold `rules` (declared, so
/// emptied, then filled), takes out `changes.remove` (last first in each
/// chain, so the numbers hold) and appends the jumps `changes.jumps`:
/// all in one transaction.
pub fn load_text(rs: &RuleSet, rules: &[Rule], changes: &Changes, readable: bool) -> String {
    let mut s = format!("*{TABLE}\n");
    for hook in HOOKS {
        let _ = writeln!(s, ":{} - [0:0]", own_chain(rs, hook));
    }
    write_removals(&mut s, &changes.remove);
    for rule in rules {
        if readable {
            if let Some(c) = comment_of(&rule.spec) {
                let _ = writeln!(s, "# {}", c.trim_start_matches("ftpct: "));
            }
        }
        let own = own_chain(rs, rule.chain);
        let _ = writeln!(s, "{}", restore_line("-A", &own, &rule.spec));
    }
    let comment = jump_comment(rules);
    for hook in &changes.jumps {
        if readable {
            let _ = writeln!(s, "# {hook}: one rule, after your own, into ftpct's chain");
        }
        let _ = writeln!(
            s,
            "{}",
            restore_line("-A", hook, &jump_spec(rs, hook, &comment))
        );
    }
    s.push_str("COMMIT\n");
    s
}

/// The restore text that takes out the jumps and rules `remove` and
/// ftpct's chains (`present`: those that exist), in one transaction.
pub fn unload_text(rs: &RuleSet, remove: &[(&'static str, usize)], present: &[String]) -> String {
    let mut s = format!("*{TABLE}\n");
    write_removals(&mut s, remove);
    for hook in HOOKS {
        let own = own_chain(rs, hook);
        if present.contains(&own) {
            let _ = writeln!(s, "-F {own}\n-X {own}");
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// The restore program of a family.
pub fn restore_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    }
}

/// `ftpct rules`: what `--apply` loads in a namespace without ftpct's
/// rules, as a script a person can read (a comment above each rule) and
/// run.
pub fn render_apply(rs: &RuleSet) -> String {
    let mut s = format!(
        "# ftpct: queue the FTP control channel (tcp ports {}) and the expected data\n\
         # connections from the raw table. ftpct's rules live in its own chains\n\
         # ({} and {}), each reached by one rule appended to PREROUTING and OUTPUT\n\
         # after your own raw rules; `ftpct rules --apply` loads them in one\n\
         # transaction (iptables-restore --noflush), and changes nothing when they\n\
         # are in place. A rule carrying BPF programs names them at the end of its\n\
         # comment; `ftpct rules --explain` says what each lets pass and why.\n",
        rs.port_list(),
        own_chain(rs, "PREROUTING"),
        own_chain(rs, "OUTPUT"),
    );
    for &f in &rs.families {
        let _ = writeln!(s, "\n# {}", f.name());
        for (name, set_type, timeout) in family_sets(&rs.sets, f) {
            let _ = writeln!(s, "{} -exist", create_command(name, set_type, f, timeout));
        }
        let rules = rs.rules(f, false);
        let changes = Changes {
            remove: Vec::new(),
            jumps: HOOKS.to_vec(),
        };
        let _ = write!(
            s,
            "{} --noflush <<'EOF'\n{}EOF\n",
            restore_tool(f),
            load_text(rs, &rules, &changes, true)
        );
    }
    s.push_str(&example_policy(rs));
    s
}

/// The commands that remove everything, as a shell script.
pub fn render_delete(rs: &RuleSet) -> String {
    let mut s = String::from("# ftpct: remove the rules and sets of `ftpct rules --apply`\n");
    for &f in &rs.families {
        let t = f.tool();
        let _ = writeln!(s, "\n# {}", f.name());
        for hook in HOOKS {
            let own = own_chain(rs, hook);
            let comment = jump_comment(&rs.rules(f, false));
            let jump = restore_line("-D", hook, &jump_spec(rs, hook, &comment));
            let _ = writeln!(s, "# {t} -t {TABLE} {jump}");
            let _ = writeln!(s, "{t} -t {TABLE} -F {own}\n{t} -t {TABLE} -X {own}");
        }
        for (name, _, _) in family_sets(&rs.sets, f) {
            let _ = writeln!(s, "ipset destroy {}", shell_word(name));
        }
    }
    s
}

fn example_policy(rs: &RuleSet) -> String {
    let mut s = String::from(
        "\n# Example filter policy (not applied by --apply): a data connection passes\n\
         # only as RELATED, which ftpct makes it.\n",
    );
    for &f in &rs.families {
        let t = f.tool();
        let _ = write!(
            s,
            "# {t} -P FORWARD DROP\n\
             # {t} -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
             # {t} -A FORWARD -p tcp -m multiport --dports {} -m conntrack --ctstate NEW -j ACCEPT\n",
            rs.port_list()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::family::Families;
    use crate::netfilter::rules::tests::ruleset;
    use crate::netfilter::sets::SetNames;

    #[test]
    fn printed_script() {
        let s = render_apply(&ruleset(Families::All));
        assert!(s.contains("ipset create ftpct hash:ip,port family inet timeout 300 -exist"));
        assert!(s.contains("ip6tables-restore --noflush <<'EOF'\n*raw\n:ftpct-pre - [0:0]\n:ftpct-out - [0:0]\n"), "{s}");
        assert!(s.contains(
            "# FTP control channel\n-A ftpct-pre -p tcp -m comment --comment \"ftpct: FTP control channel\" -j NFQUEUE --queue-num 0 --queue-bypass\n"
        ), "{s}");
        // Past the gate every packet is FTP control: a server's on any port.
        assert!(s.contains(
            "-A ftpct-pre -p tcp --dport 21 -m comment --comment \"ftpct: FTP clients noted, so their servers' side is followed whatever its port after NAT\" -j SET --add-set ftpct-ctl src,src --exist\n"
        ), "{s}");
        assert!(s.contains(
            "-A ftpct-out -p tcp ! --dport 21 -m tcp ! --sport 21 -m set ! --match-set ftpct-ctl6 dst,dst -m comment --comment \"ftpct: not FTP control: leaves ftpct's chain\" -j RETURN\n"
        ), "{s}");
        assert!(
            s.contains(
                "-A PREROUTING -p tcp -m comment --comment \"ftpct: to ftpct's rules (rule set "
            ),
            "{s}"
        );
        assert!(s.contains(")\" -j ftpct-out\nCOMMIT\nEOF\n"), "{s}");
        assert!(s.contains(
            "# iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        ));
        let d = render_delete(&ruleset(Families::V4));
        assert!(d.contains("iptables -t raw -F ftpct-pre\niptables -t raw -X ftpct-pre"));
        assert!(d.contains("ipset destroy ftpct"));
        assert!(!d.contains("ip6tables"));
    }

    #[test]
    fn chain_names_follow_the_set_name_and_fit() {
        let mut rs = ruleset(Families::V4);
        assert_eq!(own_chain(&rs, "OUTPUT"), "ftpct-out");
        rs.sets = SetNames::new("other").expect("names");
        assert_eq!(own_chain(&rs, "PREROUTING"), "ftpct-other-pre");
        rs.sets = SetNames::new(&"x".repeat(24)).expect("names");
        let long = own_chain(&rs, "PREROUTING");
        assert_eq!(long.len(), "ftpct-12345678-pre".len(), "{long}");
        rs.sets = SetNames::new(&"y".repeat(24)).expect("names");
        assert_ne!(own_chain(&rs, "PREROUTING"), long);
    }

    #[test]
    fn the_fingerprint_follows_every_rule() {
        let rs = ruleset(Families::V4);
        let a = jump_comment(&rs.rules(Family::V4, false));
        assert_eq!(a, jump_comment(&rs.rules(Family::V4, false)));
        let mut other = rs.clone();
        other.control_ports = vec![2121];
        assert_ne!(a, jump_comment(&other.rules(Family::V4, false)));
        assert!(a.starts_with(COMMENT_JUMP));
    }

    #[test]
    fn restore_words_are_quoted_as_iptables_restore_reads_them() {
        assert_eq!(restore_word("dst,dst"), "dst,dst");
        assert_eq!(restore_word("a b"), "\"a b\"");
        assert_eq!(restore_word("it's"), "\"it's\"");
        assert_eq!(restore_word("say \"x\""), "\"say \\\"x\\\"\"");
        assert_eq!(
            unload_text(
                &ruleset(Families::V4),
                &[("PREROUTING", 2), ("PREROUTING", 5)],
                &["ftpct-pre".into()]
            ),
            "*raw\n-D PREROUTING 5\n-D PREROUTING 2\n-F ftpct-pre\n-X ftpct-pre\nCOMMIT\n"
        );
    }
}
