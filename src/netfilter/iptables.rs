//! Running iptables/ip6tables (and nft, for a raw table ftpct created):
//! which backend the system has, reading its save output, and applying or
//! deleting a [`RuleSet`] idempotently. Works with iptables-nft and
//! iptables-legacy alike (it calls `iptables` and `ip6tables`, and reads
//! `iptables -V` to know which save tool to use).

use std::io;
use std::process::Command;

use crate::netfilter::family::Family;
use crate::netfilter::rules::{
    conntrack_on, labels_on, rule_args, words, Action, Role, Rule, RuleSet, COMMENT_CT,
    COMMENT_CT_CREATED, COMMENT_LABELS, TABLE,
};
use crate::netfilter::rules_error::RulesError;
use crate::netfilter::shell_words::command_line;

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs programs (a trait so the apply/delete logic is testable).
pub trait Exec {
    fn exec(&mut self, prog: &str, args: &[String]) -> io::Result<Ran>;
}

/// Runs real programs.
pub struct System;

impl Exec for System {
    fn exec(&mut self, prog: &str, args: &[String]) -> io::Result<Ran> {
        let out = Command::new(prog).args(args).output()?;
        Ok(Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Which iptables a system has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

/// The firewall of one family as the tools see it.
struct Tables<'a, E: Exec> {
    exec: &'a mut E,
    family: Family,
    backend: Backend,
    /// What was done, one line each, for the user.
    log: Vec<String>,
}

impl<'a, E: Exec> Tables<'a, E> {
    fn open(exec: &'a mut E, family: Family) -> Result<Self, RulesError> {
        let tool = family.tool();
        let v = exec
            .exec(tool, &words(&["-V"]))
            .map_err(|source| RulesError::NoTool { tool, source })?;
        let backend = if v.stdout.contains("legacy") {
            Backend::Legacy
        } else if v.stdout.contains("nf_tables") {
            Backend::Nft
        } else {
            return Err(RulesError::UnknownBackend {
                tool,
                version: v.stdout.trim().to_string(),
            });
        };
        Ok(Tables {
            exec,
            family,
            backend,
            log: Vec::new(),
        })
    }

    fn run(&mut self, args: &[String]) -> Result<Ran, RulesError> {
        let tool = self.family.tool();
        self.exec
            .exec(tool, args)
            .map_err(|source| RulesError::Exec {
                prog: tool.to_string(),
                source,
            })
    }

    /// `iptables-save` of the backend `iptables` uses.
    fn save(&mut self) -> Result<String, RulesError> {
        let tool = self.family.tool();
        let specific = match self.backend {
            Backend::Nft => format!("{tool}-nft-save"),
            Backend::Legacy => format!("{tool}-legacy-save"),
        };
        for prog in [specific, format!("{tool}-save")] {
            match self.exec.exec(&prog, &[]) {
                Ok(r) if r.ok => return Ok(r.stdout),
                Ok(r) => {
                    return Err(RulesError::SaveFailed {
                        prog,
                        stderr: r.stderr,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(RulesError::Exec { prog, source }),
            }
        }
        Err(RulesError::NoSaveTool { tool })
    }

    fn has(&mut self, rule: &Rule) -> Result<bool, RulesError> {
        Ok(self.run(&rule_args("-C", rule))?.ok)
    }

    fn change(&mut self, op: &str, rule: &Rule) -> Result<(), RulesError> {
        self.must(&rule_args(op, rule))
    }

    /// Runs a command that must succeed, and logs it.
    fn must(&mut self, args: &[String]) -> Result<(), RulesError> {
        let line = command_line(self.family.tool(), args);
        let r = self.run(args)?;
        if !r.ok {
            return Err(RulesError::Refused {
                command: line,
                stderr: r.stderr,
            });
        }
        self.log.push(line);
        Ok(())
    }

    /// Appends each rule that is not there yet, after taking out those of
    /// the other queueing mode.
    fn apply(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        // Before any -C: with legacy, -C itself instantiates the table.
        let created = !has_table(&self.save()?);
        let wanted = rs.rules(self.family, created);
        for rule in other_mode_rules(rs, self.family) {
            if !wanted.contains(&rule) {
                self.remove_every_copy(&rule)?;
            }
        }
        let mut present = Vec::with_capacity(wanted.len());
        for rule in &wanted {
            present.push(if rule.role == Role::ConntrackOn {
                self.has(&conntrack_on(false))? || self.has(&conntrack_on(true))?
            } else {
                self.has(rule)?
            });
        }
        self.reorder(&Owner::of(rs, self.family), &wanted, &mut present)?;
        for (rule, present) in wanted.into_iter().zip(present) {
            if present {
                let line = command_line(self.family.tool(), &rule_args("-A", &rule));
                self.log.push(format!("# already there: {line}"));
            } else {
                self.change("-A", &rule)?;
            }
        }
        self.move_untargeted_last(&Owner::of(rs, self.family))
    }

    /// The rules without a target belong after the queueing rules (see
    /// `RuleSet::rules`). One found before a queueing rule (an older ftpct
    /// put them first, or the queueing rules went in again after them)
    /// gets a copy at the end first, then goes: conntrack never stops
    /// meanwhile.
    fn move_untargeted_last(&mut self, owner: &Owner<'_>) -> Result<(), RulesError> {
        for kind in [&[COMMENT_CT, COMMENT_CT_CREATED][..], &[COMMENT_LABELS][..]] {
            let save = self.save()?;
            let chain: Vec<(usize, &str)> = chain_rules(&save, "PREROUTING").collect();
            let Some(last) = chain
                .iter()
                .filter(|(_, l)| owner.queueing(l))
                .map(|(n, _)| *n)
                .max()
            else {
                continue;
            };
            let of_kind: Vec<(usize, &str)> = chain
                .iter()
                .filter(|(_, l)| saved_comment(l).is_some_and(|c| kind.contains(&c)))
                .copied()
                .collect();
            // One after them is enough (another ftpct's, before them, stays).
            let Some(&(early, line)) = of_kind
                .first()
                .filter(|_| of_kind.iter().all(|(n, _)| *n < last))
            else {
                continue;
            };
            let rule = match saved_comment(line) {
                Some(COMMENT_LABELS) => labels_on(),
                comment => conntrack_on(comment == Some(COMMENT_CT_CREATED)),
            };
            self.change("-A", &rule)?;
            self.must(&words(&[
                "-t",
                TABLE,
                "-D",
                "PREROUTING",
                &early.to_string(),
            ]))?;
        }
        Ok(())
    }

    /// When some of the queueing rules are there and some not (an older
    /// ftpct's, or an apply cut short), or ftpct's rules are not exactly
    /// the wanted ones in order (an older ftpct wrote them otherwise, or
    /// twice), one appended now would land after the others: every rule
    /// carrying one of ftpct's comments is taken out (by its number: an
    /// older spelling is not found by its spec), so all go in again in
    /// order. The rules without a target stay.
    fn reorder(
        &mut self,
        owner: &Owner<'_>,
        wanted: &[Rule],
        present: &mut [bool],
    ) -> Result<(), RulesError> {
        let some_missing = wanted
            .iter()
            .zip(present.iter())
            .any(|(r, &p)| ordered(r) && !p);
        let save = self.save()?;
        let queueing = |line: &str| owner.queueing(line);
        if !some_missing && in_order(&save, wanted, &queueing) {
            return Ok(());
        }
        if ours_in(&save, &queueing).is_empty() {
            return Ok(());
        }
        self.log.push(
            "# ftpct's rules are not all there, or not as this ftpct writes them: all go in again, in order".into(),
        );
        self.remove_ours(&save, &queueing)?;
        for (rule, there) in wanted.iter().zip(present.iter_mut()) {
            if ordered(rule) {
                *there = false;
            }
        }
        Ok(())
    }

    /// Takes out, by number, every rule of the save output that `pick`
    /// takes (last first, so the numbers hold); true if one said ftpct
    /// created the raw table.
    fn remove_ours(&mut self, save: &str, pick: &dyn Fn(&str) -> bool) -> Result<bool, RulesError> {
        let mut created = false;
        for (chain, number, line) in ours_in(save, pick).into_iter().rev() {
            created |= saved_comment(line) == Some(COMMENT_CT_CREATED);
            self.must(&words(&["-t", TABLE, "-D", chain, &number.to_string()]))?;
        }
        Ok(created)
    }

    /// Removes our rules (every copy), then the raw table if we created
    /// it and nothing else is in it.
    fn delete(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        if !has_table(&self.save()?) {
            return Ok(());
        }
        let mut created = false;
        let mut rules = rs.rules(self.family, false);
        rules.extend(other_mode_rules(rs, self.family));
        rules.push(conntrack_on(true));
        for rule in rules.iter().rev() {
            if self.remove_every_copy(rule)? {
                created |= rule.spec.iter().any(|w| w == COMMENT_CT_CREATED);
            }
        }
        // Those an older ftpct wrote otherwise.
        let save = self.save()?;
        let owner = Owner::of(rs, self.family);
        created |= self.remove_ours(&save, &|line: &str| owner.any(line))?;
        if created {
            self.drop_created_table()?;
        }
        Ok(())
    }

    /// Deletes a rule as often as it is there; true if it was.
    fn remove_every_copy(&mut self, rule: &Rule) -> Result<bool, RulesError> {
        let mut found = false;
        // Bounded: a rule appended N times is removed N times.
        for _ in 0..64 {
            if !self.has(rule)? {
                break;
            }
            self.change("-D", rule)?;
            found = true;
        }
        Ok(found)
    }

    fn drop_created_table(&mut self) -> Result<(), RulesError> {
        if !raw_table_is_empty(&self.save()?) {
            self.log
                .push("# the raw table has other rules now: kept".into());
            return Ok(());
        }
        match self.backend {
            Backend::Legacy => self.log.push(
                "# iptables-legacy: the kernel keeps the (empty) raw table until the namespace goes"
                    .into(),
            ),
            Backend::Nft => self.drop_nft_table()?,
        }
        Ok(())
    }

    /// `nft delete table`, after checking nft sees nothing but empty chains.
    fn drop_nft_table(&mut self) -> Result<(), RulesError> {
        let fam = self.family.nft_family();
        let list = words(&["list", "table", fam, TABLE]);
        let listed = match self.exec.exec("nft", &list) {
            Ok(r) if r.ok => r.stdout,
            Ok(_) => return Ok(()),
            Err(_) => {
                self.log.push(format!(
                    "# nft not found: the empty table {fam} {TABLE} stays (`nft delete table {fam} {TABLE}` removes it)"
                ));
                return Ok(());
            }
        };
        if !nft_table_is_bare(&listed) {
            return Ok(());
        }
        let del = words(&["delete", "table", fam, TABLE]);
        let r = self
            .exec
            .exec("nft", &del)
            .map_err(|source| RulesError::Exec {
                prog: "nft".into(),
                source,
            })?;
        let command = command_line("nft", &del);
        if !r.ok {
            return Err(RulesError::Refused {
                command,
                stderr: r.stderr,
            });
        }
        self.log.push(command);
        Ok(())
    }
}

/// The rules whose place matters (all but those without a target).
fn ordered(rule: &Rule) -> bool {
    !matches!(rule.role, Role::ConntrackOn | Role::Labels)
}

/// The comment a rule carries.
fn comment_of(spec: &[String]) -> Option<&str> {
    let at = spec.iter().position(|w| w == "--comment")?;
    spec.get(at + 1).map(String::as_str)
}

/// Whether this ftpct's queueing rules in the save output are the
/// `wanted` ones in their order, chain by chain (told apart by their
/// comments, the one part of a rule iptables prints as given): none
/// missing, none more.
fn in_order(save: &str, wanted: &[Rule], queueing: &dyn Fn(&str) -> bool) -> bool {
    ["PREROUTING", "OUTPUT"].iter().all(|chain| {
        let want: Vec<&str> = wanted
            .iter()
            .filter(|r| ordered(r) && r.chain == *chain)
            .filter_map(|r| comment_of(&r.spec))
            .collect();
        let have: Vec<String> = chain_rules(save, chain)
            .filter(|(_, line)| queueing(line))
            .filter_map(|(_, line)| saved_comment(line))
            .map(unescaped)
            .collect();
        have == want
    })
}

/// A saved comment as it was given: iptables-save writes a quote inside
/// one as `\'` (ftpct's "control connections' resets").
fn unescaped(comment: &str) -> String {
    comment.replace("\\'", "'").replace("\\\"", "\"")
}

/// The rules of `chain` in the save output, numbered from 1.
fn chain_rules<'a>(save: &'a str, chain: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    let prefix = format!("-A {chain} ");
    table_section(save)
        .into_iter()
        .filter(move |l| l.starts_with(&prefix))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

/// What every comment of ftpct's rules starts with.
const COMMENT_PREFIX: &str = "ftpct: ";

/// Which rules of a save output are this ftpct's, whatever version wrote
/// them: one of ftpct's comments, and this ftpct's control ports (or its
/// set of expected destinations). Another ftpct in the namespace, with
/// its own ports and sets, keeps its rules.
struct Owner<'a> {
    ports: &'a [u16],
    dst_set: &'a str,
}

impl<'a> Owner<'a> {
    fn of(rs: &'a RuleSet, family: Family) -> Self {
        Owner {
            ports: &rs.control_ports,
            dst_set: rs.sets.of(family),
        }
    }

    /// Any rule of this ftpct's (the two without a target included).
    fn any(&self, line: &str) -> bool {
        let Some(comment) = saved_comment(line) else {
            return false;
        };
        let untargeted = [COMMENT_CT, COMMENT_CT_CREATED, COMMENT_LABELS].contains(&comment);
        comment.starts_with(COMMENT_PREFIX) && (untargeted || self.names_its_ports_or_set(line))
    }

    /// One of this ftpct's queueing rules (those whose place matters).
    fn queueing(&self, line: &str) -> bool {
        let untargeted = saved_comment(line)
            .is_some_and(|c| [COMMENT_CT, COMMENT_CT_CREATED, COMMENT_LABELS].contains(&c));
        self.any(line) && !untargeted
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
            None => after(&["--match-set"]) == Some(self.dst_set),
        }
    }
}

/// The rules of the save output that `pick` takes: chain, number, line.
fn ours_in<'s>(save: &'s str, pick: &dyn Fn(&str) -> bool) -> Vec<(&'static str, usize, &'s str)> {
    ["PREROUTING", "OUTPUT"]
        .into_iter()
        .flat_map(|chain| {
            chain_rules(save, chain)
                .filter(|(_, line)| pick(line))
                .map(move |(n, line)| (chain, n, line))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The comment of a rule as iptables-save prints it (in double quotes
/// when it has spaces).
fn saved_comment(line: &str) -> Option<&str> {
    let rest = line.split_once("--comment ")?.1;
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map(|(c, _)| c),
        None => rest.split_whitespace().next(),
    }
}

/// True if the save output has a raw table.
/// The rules only the other queueing mode has (`--queue-all` or not).
fn other_mode_rules(rs: &RuleSet, family: Family) -> Vec<Rule> {
    rs.with_queue_all(!rs.queue_all)
        .rules(family, false)
        .into_iter()
        .filter(|r| {
            matches!(
                r.role,
                Role::Control
                    | Role::Select
                    | Role::Guarded
                    | Role::Close
                    | Role::Fin
                    | Role::Passive
                    | Role::Plain
            )
        })
        .collect()
}

fn has_table(save: &str) -> bool {
    save.lines().any(|l| l.trim() == format!("*{TABLE}"))
}

/// The raw table's section of a save output.
fn table_section(save: &str) -> Vec<&str> {
    save.lines()
        .skip_while(|l| l.trim() != format!("*{TABLE}"))
        .skip(1)
        .take_while(|l| l.trim() != "COMMIT")
        .collect()
}

/// No rule, no chain of the user's, every policy ACCEPT.
fn raw_table_is_empty(save: &str) -> bool {
    table_section(save).iter().all(|l| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with('#')
            || [":PREROUTING ACCEPT", ":OUTPUT ACCEPT"]
                .iter()
                .any(|p| l.starts_with(p))
    })
}

/// `nft list table` shows base chains without rules and nothing else.
fn nft_table_is_bare(listed: &str) -> bool {
    listed.lines().map(str::trim).all(|l| {
        l.is_empty()
            || l == "}"
            || l.starts_with("table ")
            || l.starts_with("chain ")
            || l.starts_with("type filter hook")
    })
}

/// What `ftpct doctor` finds of one family's rules, without changing any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFound {
    pub family: Family,
    pub wanted: usize,
    /// The rules that are not there, as `iptables -A` would add them.
    pub missing: Vec<String>,
    /// This ftpct's queueing rules are the wanted ones, in their order.
    pub in_order: bool,
    /// The raw table, as the backend's save tool prints it.
    pub save: String,
}

/// Looks at the rules of every family (`iptables -C`, the save output).
pub fn check_rules<E: Exec>(exec: &mut E, rs: &RuleSet) -> Result<Vec<RulesFound>, RulesError> {
    let mut found = Vec::new();
    for &family in &rs.families {
        let mut t = Tables::open(exec, family)?;
        let save = t.save()?;
        let wanted = rs.rules(family, !has_table(&save));
        let mut missing = Vec::new();
        for rule in &wanted {
            let there = if rule.role == Role::ConntrackOn {
                t.has(&conntrack_on(false))? || t.has(&conntrack_on(true))?
            } else {
                t.has(rule)?
            };
            if !there {
                missing.push(command_line(family.tool(), &rule_args("-A", rule)));
            }
        }
        let owner = Owner::of(rs, family);
        let in_order = in_order(&save, &wanted, &|line: &str| owner.queueing(line));
        found.push(RulesFound {
            family,
            wanted: wanted.len(),
            missing,
            in_order,
            save,
        });
    }
    Ok(found)
}

/// Applies or removes the iptables rules of every family; returns what was done.
pub fn change_rules<E: Exec>(
    exec: &mut E,
    rs: &RuleSet,
    action: Action,
) -> Result<Vec<String>, RulesError> {
    let mut log = Vec::new();
    for &f in &rs.families {
        let mut t = Tables::open(exec, f)?;
        log.push(format!(
            "# {} ({})",
            f.name(),
            match t.backend {
                Backend::Nft => "nf_tables",
                Backend::Legacy => "legacy",
            }
        ));
        match action {
            Action::Apply => t.apply(rs)?,
            Action::Delete => t.delete(rs)?,
        }
        log.append(&mut t.log);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_comments_are_read_as_given() {
        assert_eq!(
            unescaped("ftpct: FTP control connections\\' resets"),
            "ftpct: FTP control connections' resets"
        );
        assert_eq!(unescaped("plain"), "plain");
    }
    use crate::netfilter::family::Families;
    use crate::netfilter::rules::tests::ruleset;
    use crate::netfilter::rules::{SetNames, COMMENT_CT, COMMENT_PLAIN};

    /// iptables as a list of rules, `iptables-save` printing them.
    struct FakeIptables {
        backend: &'static str,
        rules: Vec<(String, Vec<String>)>,
        table: bool,
        user_rule: bool,
        nft_deleted: bool,
        /// Every -A and -D fails.
        refuse: bool,
    }

    impl FakeIptables {
        fn new(backend: &'static str) -> Self {
            FakeIptables {
                backend,
                rules: Vec::new(),
                table: false,
                user_rule: false,
                nft_deleted: false,
                refuse: false,
            }
        }
        fn save(&self) -> String {
            if !self.table {
                return String::new();
            }
            let mut s =
                "# Generated\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n".to_string();
            if self.user_rule {
                s.push_str("-A PREROUTING -j NOTRACK\n");
            }
            for (chain, spec) in &self.rules {
                // Quoted as iptables-save quotes.
                let words: Vec<String> = spec
                    .iter()
                    .map(|w| {
                        if w.contains(' ') {
                            format!("\"{w}\"")
                        } else {
                            w.clone()
                        }
                    })
                    .collect();
                s.push_str(&format!("-A {chain} {}\n", words.join(" ")));
            }
            s + "COMMIT\n"
        }
    }

    impl Exec for FakeIptables {
        fn exec(&mut self, prog: &str, args: &[String]) -> io::Result<Ran> {
            let ok = |stdout: String| Ran {
                ok: true,
                stdout,
                stderr: String::new(),
            };
            if prog.ends_with("-save") {
                return Ok(ok(self.save()));
            }
            if prog == "nft" {
                if args[0] == "delete" {
                    self.table = false;
                    self.nft_deleted = true;
                }
                return Ok(ok("table ip raw {\n\tchain PREROUTING {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t}\n}\n".into()));
            }
            if args[0] == "-V" {
                return Ok(ok(format!("iptables v1.8.9 ({})\n", self.backend)));
            }
            let (op, chain, spec) = (&args[2], args[3].clone(), args[4..].to_vec());
            self.table = true;
            if self.refuse && op != "-C" {
                return Ok(Ran {
                    stderr: "no".into(),
                    ..Ran::default()
                });
            }
            // -D CHAIN N: the chain's Nth rule.
            let numbered = match spec.as_slice() {
                [n] => n.parse::<usize>().ok().and_then(|n| {
                    let mut in_chain = self.rules.iter().enumerate().filter(|r| r.1 .0 == chain);
                    in_chain.nth(n.checked_sub(1)?).map(|(i, _)| i)
                }),
                _ => None,
            };
            let pos =
                numbered.or_else(|| self.rules.iter().position(|r| r.0 == chain && r.1 == spec));
            let done = match (op.as_str(), pos) {
                ("-C", p) => p.is_some(),
                ("-A", _) => {
                    self.rules.push((chain, spec));
                    true
                }
                ("-D", Some(p)) => {
                    self.rules.remove(p);
                    true
                }
                _ => false,
            };
            Ok(Ran {
                ok: done,
                ..Ran::default()
            })
        }
    }

    #[test]
    fn apply_is_idempotent_and_delete_restores() {
        let rs = ruleset(Families::V4);
        let mut fw = FakeIptables::new("nf_tables");
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        // conntrack on, labels on; per chain: handshakes within and over
        // the budget, the control channel, the expected SYNs.
        assert_eq!(fw.rules.len(), 10, "{log:?}");
        assert!(
            fw.rules[8].1.iter().any(|w| w == COMMENT_CT_CREATED),
            "last"
        );
        change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.rules.len(), 10, "applied twice, added once");
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(fw.rules.is_empty());
        assert!(fw.nft_deleted, "the table ftpct created is removed");
        assert_eq!(fw.save(), "");
    }

    #[test]
    fn rules_missing_from_an_older_apply_go_in_in_order() {
        let mut rs = ruleset(Families::V4);
        rs.queue_all = false;
        let mut fw = FakeIptables::new("nf_tables");
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        let wanted = fw.rules.clone();
        // An older ftpct had no plain-line rules.
        fw.rules
            .retain(|(_, spec)| !spec.iter().any(|w| w == COMMENT_PLAIN));
        assert!(fw.rules.len() < wanted.len());
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.rules, wanted, "{log:?}");
        // Present but appended after the rest (an apply of an older ftpct
        // put them there).
        let plain: Vec<_> = fw
            .rules
            .iter()
            .filter(|(_, spec)| spec.iter().any(|w| w == COMMENT_PLAIN))
            .cloned()
            .collect();
        fw.rules
            .retain(|(_, spec)| !spec.iter().any(|w| w == COMMENT_PLAIN));
        fw.rules.extend(plain);
        assert_ne!(fw.rules, wanted);
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("once more");
        assert_eq!(fw.rules, wanted, "{log:?}");
    }

    #[test]
    fn an_older_ftpcts_rules_written_otherwise_are_replaced_and_deleted() {
        let mut rs = ruleset(Families::V4);
        rs.queue_all = false;
        let mut fw = FakeIptables::new("nf_tables");
        // Another ftpct in the namespace, with its own port and sets.
        let mut other = rs.clone();
        other.control_ports = vec![2121];
        other.sets = SetNames::new("other").expect("names");
        change_rules(&mut fw, &other, Action::Apply).expect("the other");
        let theirs = fw.rules.clone();
        fw.rules.clear();
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        let wanted = fw.rules.clone();
        fw.rules = theirs.iter().chain(&wanted).cloned().collect();
        let both = fw.rules.clone();
        change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.rules, both, "all there in order: nothing moves");
        fw.rules = wanted.clone();
        // The same rules as an older ftpct spelled them.
        for (_, spec) in fw.rules.iter_mut() {
            for w in spec.iter_mut() {
                if w == "--dport" {
                    *w = "--dports".into();
                }
            }
        }
        assert_ne!(fw.rules, wanted);
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("upgrade");
        assert_eq!(fw.rules, wanted, "{log:?}");
        fw.rules.push(wanted[5].clone());
        change_rules(&mut fw, &rs, Action::Apply).expect("a copy too many");
        assert_eq!(fw.rules, wanted);
        for (_, spec) in fw.rules.iter_mut() {
            spec.push("-m".into());
        }
        let untargeted = |(_, spec): &&(String, Vec<String>)| !spec.iter().any(|w| w == "-j");
        let their_queueing: Vec<_> = theirs.iter().filter(|r| !untargeted(r)).cloned().collect();
        fw.rules.extend(their_queueing.iter().cloned());
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        let left = their_queueing;
        assert_eq!(
            fw.rules, left,
            "only the other ftpct's queueing rules are left"
        );
    }

    #[test]
    fn rules_without_a_target_move_after_the_queueing_rules() {
        let mut rs = ruleset(Families::V4);
        rs.queue_all = false;
        let mut fw = FakeIptables::new("nf_tables");
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        let wanted = fw.rules.clone();
        let untargeted = |(_, spec): &(String, Vec<String>)| !spec.iter().any(|w| w == "-j");
        assert!(wanted.iter().rev().take(2).all(untargeted), "the last two");
        // An older ftpct put them first.
        let (first, rest): (Vec<_>, Vec<_>) = wanted.iter().cloned().partition(untargeted);
        fw.rules = first.into_iter().chain(rest).collect();
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("upgrade");
        assert_eq!(fw.rules, wanted, "{log:?}");
        change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.rules, wanted, "nothing moves");
    }

    #[test]
    fn an_existing_table_and_its_rules_are_kept() {
        let rs = ruleset(Families::V4);
        let mut fw = FakeIptables::new("legacy");
        fw.table = true;
        fw.user_rule = true;
        let before = fw.save();
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        assert!(fw.rules.iter().any(|r| r.1.iter().any(|w| w == COMMENT_CT)));
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(!fw.nft_deleted);
        assert_eq!(fw.save(), before);
    }

    #[test]
    fn an_unknown_backend_or_a_refused_rule_is_an_error_that_says_so() {
        let rs = ruleset(Families::V4);
        let mut fw = FakeIptables::new("weird");
        assert!(matches!(
            change_rules(&mut fw, &rs, Action::Apply),
            Err(RulesError::UnknownBackend { tool: "iptables", version }) if version.ends_with("(weird)")
        ));
        let mut fw = FakeIptables::new("legacy");
        fw.refuse = true;
        assert!(matches!(
            change_rules(&mut fw, &rs, Action::Apply),
            Err(RulesError::Refused { command, stderr }) if command.starts_with("iptables -t raw -A PREROUTING") && stderr == "no"
        ));
    }

    #[test]
    fn delete_without_a_table_touches_nothing() {
        let rs = ruleset(Families::All);
        let mut fw = FakeIptables::new("legacy");
        let log = change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(
            !fw.table,
            "no -C that would instantiate a legacy table: {log:?}"
        );
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
        assert!(!nft_table_is_bare("table ip raw {\n set s {\n }\n}\n"));
    }
}
