//! What an `iptables-save` output holds of ftpct's: its chains and their
//! rules, the jumps into them, and rules an older ftpct appended to the
//! built-in chains themselves. Read once per apply, per check of a running
//! ftpct, per `--delete`: the one save before the one restore.

use crate::netfilter::chains::{jump_comment, own_chain, COMMENT_JUMP, HOOKS};
use crate::netfilter::family::Family;
use crate::netfilter::rules::{
    Rule, RuleSet, COMMENT_CT, COMMENT_CT_CREATED, COMMENT_LABELS, TABLE,
};

/// What every comment of ftpct's rules starts with.
const COMMENT_PREFIX: &str = "ftpct: ";

/// ftpct's part of one family's raw table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The save output has a raw table.
    pub table: bool,
    /// Jumps into ftpct's chains: built-in chain, rule number, comment.
    pub jumps: Vec<(&'static str, usize, String)>,
    /// Rules of an older ftpct in the built-in chains: chain, number.
    pub old: Vec<(&'static str, usize)>,
    /// ftpct's chains that exist.
    pub chains: Vec<String>,
    /// The comments of the rules in ftpct's chain of each hook, in order
    /// (None: a rule without one).
    pub content: [Vec<Option<String>>; 2],
    /// A conntrack rule of ftpct's says ftpct created the raw table.
    pub created: bool,
}

impl Loaded {
    pub fn read(save: &str, rs: &RuleSet) -> Loaded {
        let section = table_section(save);
        let owner = Owner::of(rs);
        let mut found = Loaded {
            table: has_table(save),
            ..Loaded::default()
        };
        for (i, hook) in HOOKS.into_iter().enumerate() {
            let own = own_chain(rs, hook);
            if section
                .iter()
                .any(|l| l.split_whitespace().next() == Some(&format!(":{own}")))
            {
                found.chains.push(own.clone());
            }
            let jump_target = format!("-j {own}");
            for (n, line) in chain_rules(&section, hook) {
                let comment = saved_comment(line).map(unescaped);
                if line.trim_end().ends_with(&jump_target) {
                    found.jumps.push((hook, n, comment.unwrap_or_default()));
                } else if owner.any(line) {
                    found.created |= comment.as_deref() == Some(COMMENT_CT_CREATED);
                    found.old.push((hook, n));
                }
            }
            for (_, line) in chain_rules(&section, &own) {
                let comment = saved_comment(line).map(unescaped);
                found.created |= comment.as_deref() == Some(COMMENT_CT_CREATED);
                found.content[i].push(comment);
            }
        }
        found
    }

    /// The comments `rules` would leave in the chain of each hook.
    fn wanted_content(rules: &[Rule]) -> [Vec<Option<String>>; 2] {
        HOOKS.map(|hook| {
            rules
                .iter()
                .filter(|r| r.chain == hook)
                .map(|r| comment_of(&r.spec).map(str::to_string))
                .collect()
        })
    }

    /// Whether the chains hold `rules`, each reached by one jump that
    /// carries their fingerprint, and no older ftpct's rule is left.
    pub fn in_place(&self, rules: &[Rule]) -> bool {
        self.gone(rules).is_empty()
    }

    /// What is not as `rules` want it, one phrase each ("the jump from
    /// PREROUTING", "chain ftpct-pre"...): empty when in place.
    pub fn gone(&self, rules: &[Rule]) -> Vec<String> {
        let mut gone = Vec::new();
        let comment = jump_comment(rules);
        let wanted = Self::wanted_content(rules);
        for (i, hook) in HOOKS.into_iter().enumerate() {
            let jumps: Vec<&String> = self
                .jumps
                .iter()
                .filter(|(h, _, _)| *h == hook)
                .map(|(_, _, c)| c)
                .collect();
            match jumps.as_slice() {
                [] => gone.push(format!("the jump from {hook}")),
                [one] if **one == comment => {}
                [_] => gone.push(format!("the jump from {hook} is of another rule set")),
                _ => gone.push(format!("{} jumps from {hook}", jumps.len())),
            }
            if self.content[i] != wanted[i] {
                let have = self.content[i].len();
                let want = wanted[i].len();
                gone.push(match (self.chains.len(), have) {
                    (0, _) => format!("ftpct's chain for {hook}"),
                    (_, 0) => format!("the {want} rules of ftpct's chain for {hook}"),
                    _ => format!(
                        "ftpct's chain for {hook} holds {have} rules, not the {want} wanted"
                    ),
                });
            }
        }
        if !self.old.is_empty() {
            gone.push(format!(
                "{} rules of an older ftpct in the built-in chains",
                self.old.len()
            ));
        }
        gone
    }

    /// The rules of the built-in chains an apply takes out: an older
    /// ftpct's, and every jump but one that carries `rules`' fingerprint.
    /// With it, the hooks whose jump goes in.
    pub fn changes(&self, rules: &[Rule]) -> crate::netfilter::chains::Changes {
        let comment = jump_comment(rules);
        let mut changes = crate::netfilter::chains::Changes {
            remove: self.old.clone(),
            jumps: Vec::new(),
        };
        for hook in HOOKS {
            let mut kept = false;
            for (h, n, c) in &self.jumps {
                if *h != hook {
                    continue;
                }
                if !kept && *c == comment {
                    kept = true;
                } else {
                    changes.remove.push((hook, *n));
                }
            }
            if !kept {
                changes.jumps.push(hook);
            }
        }
        changes
    }

    /// What `--delete` takes out of the built-in chains: every jump into
    /// ftpct's chains and an older ftpct's rules.
    pub fn all_of_ours(&self) -> Vec<(&'static str, usize)> {
        let mut all = self.old.clone();
        all.extend(self.jumps.iter().map(|(h, n, _)| (*h, *n)));
        all
    }

    /// Nothing of ftpct's is there.
    pub fn nothing(&self) -> bool {
        self.jumps.is_empty() && self.old.is_empty() && self.chains.is_empty()
    }
}

/// The comment a rule carries.
fn comment_of(spec: &[String]) -> Option<&str> {
    let at = spec.iter().position(|w| w == "--comment")?;
    spec.get(at + 1).map(String::as_str)
}

/// A saved comment as it was given: iptables-save writes a quote inside
/// one as `\'` (ftpct's "control connections' resets").
pub fn unescaped(comment: &str) -> String {
    comment.replace("\\'", "'").replace("\\\"", "\"")
}

/// The rules of `chain` in a table's section, numbered from 1.
fn chain_rules<'a>(section: &'a [&'a str], chain: &str) -> Vec<(usize, &'a str)> {
    let prefix = format!("-A {chain} ");
    section
        .iter()
        .copied()
        .filter(|l| l.starts_with(&prefix))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// The comment of a rule as iptables-save prints it (in double quotes
/// when it has spaces; a quote inside escaped).
pub fn saved_comment(line: &str) -> Option<&str> {
    let rest = line.split_once("--comment ")?.1;
    match rest.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let end = quoted.char_indices().find(|&(_, c)| {
                let end = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })?;
            Some(&quoted[..end.0])
        }
        None => rest.split_whitespace().next(),
    }
}

/// Which rules of the built-in chains an older ftpct wrote, whatever its
/// version: one of ftpct's comments, and this ftpct's control ports (or
/// its set of expected destinations). Another ftpct in the namespace,
/// with its own ports and sets, keeps its rules.
struct Owner<'a> {
    ports: &'a [u16],
    dst_sets: [&'a str; 2],
}

impl<'a> Owner<'a> {
    fn of(rs: &'a RuleSet) -> Self {
        Owner {
            ports: &rs.control_ports,
            dst_sets: [rs.sets.of(Family::V4), rs.sets.of(Family::V6)],
        }
    }

    /// Any rule of this ftpct's (the two without a target included).
    fn any(&self, line: &str) -> bool {
        let Some(comment) = saved_comment(line) else {
            return false;
        };
        let untargeted = [COMMENT_CT, COMMENT_CT_CREATED, COMMENT_LABELS].contains(&comment);
        comment.starts_with(COMMENT_PREFIX)
            && !comment.starts_with(COMMENT_JUMP)
            && (untargeted || self.names_its_ports_or_set(line))
    }

    fn names_its_ports_or_set(&self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flags: &[&str]| {
            words
                .windows(2)
                .find(|w| flags.contains(&w[0]))
                .map(|w| w[1].trim_matches('"'))
        };
        match after(&["--dport", "--sport", "--dports", "--sports", "--ports"]) {
            Some(list) => list
                .split(',')
                .all(|p| p.parse::<u16>().is_ok_and(|p| self.ports.contains(&p))),
            None => after(&["--match-set"]).is_some_and(|s| self.dst_sets.contains(&s)),
        }
    }
}

pub fn has_table(save: &str) -> bool {
    save.lines().any(|l| l.trim() == format!("*{TABLE}"))
}

/// The raw table's section of a save output.
pub fn table_section(save: &str) -> Vec<&str> {
    save.lines()
        .skip_while(|l| l.trim() != format!("*{TABLE}"))
        .skip(1)
        .take_while(|l| l.trim() != "COMMIT")
        .collect()
}

/// No rule, no chain of the user's, every policy ACCEPT.
pub fn raw_table_is_empty(save: &str) -> bool {
    table_section(save).iter().all(|l| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with('#')
            || [":PREROUTING ACCEPT", ":OUTPUT ACCEPT"]
                .iter()
                .any(|p| l.starts_with(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_comments_are_read_as_given() {
        assert_eq!(
            saved_comment(
                "-A X -m comment --comment \"ftpct: FTP control connections\\' resets\" -j NFQUEUE"
            )
            .map(unescaped)
            .as_deref(),
            Some("ftpct: FTP control connections' resets")
        );
        assert_eq!(
            saved_comment("-A X -m comment --comment \"a \\\"b\\\" c\" -j X"),
            Some("a \\\"b\\\" c")
        );
        assert_eq!(
            saved_comment("-A X -m comment --comment plain -j X"),
            Some("plain")
        );
        assert_eq!(unescaped("plain"), "plain");
    }

    #[test]
    fn empty_table_detection() {
        let empty = "*raw\n:PREROUTING ACCEPT [3:120]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert!(raw_table_is_empty(empty));
        assert!(!raw_table_is_empty(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\nCOMMIT\n"
        ));
        assert!(!raw_table_is_empty(
            "*raw\n:PREROUTING DROP [0:0]\nCOMMIT\n"
        ));
        assert!(!raw_table_is_empty("*raw\n:mine - [0:0]\nCOMMIT\n"));
    }
}
