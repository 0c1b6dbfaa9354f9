//! Running iptables/ip6tables (and nft, for a raw table ftpct created):
//! which backend the system has, reading its save output, and loading or
//! unloading a [`RuleSet`] in one `iptables-restore --noflush` transaction
//! per family, after one save: an apply that finds the rules in place runs
//! no restore at all. Works with iptables-nft and iptables-legacy alike
//! (it reads `iptables -V` to know which save and restore tools to use).

use std::io::{self, Write as _};
use std::process::{Command, Stdio};

use crate::netfilter::chains::{self, load_text, own_chain, unload_text, HOOKS};
use crate::netfilter::family::Family;
use crate::netfilter::loaded::{has_table, raw_table_is_empty, Loaded};
use crate::netfilter::rules::{words, Action, Rule, RuleSet, TABLE};
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

    /// Runs `prog` with `input` on its standard input (a restore).
    fn exec_with_input(&mut self, prog: &str, args: &[String], input: &str) -> io::Result<Ran> {
        let _ = (prog, args, input);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Runs real programs.
pub struct System;

impl Exec for System {
    fn exec(&mut self, prog: &str, args: &[String]) -> io::Result<Ran> {
        let out = Command::new(prog).args(args).output()?;
        Ok(ran(out))
    }

    fn exec_with_input(&mut self, prog: &str, args: &[String], input: &str) -> io::Result<Ran> {
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        Ok(ran(child.wait_with_output()?))
    }
}

fn ran(out: std::process::Output) -> Ran {
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Which iptables a system has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    /// The backend `iptables -V` (or `ip6tables -V`) names.
    pub fn of<E: Exec>(exec: &mut E, family: Family) -> Result<Backend, RulesError> {
        let tool = family.tool();
        let v = exec
            .exec(tool, &words(&["-V"]))
            .map_err(|source| RulesError::NoTool { tool, source })?;
        if v.stdout.contains("legacy") {
            Ok(Backend::Legacy)
        } else if v.stdout.contains("nf_tables") {
            Ok(Backend::Nft)
        } else {
            Err(RulesError::UnknownBackend {
                tool,
                version: v.stdout.trim().to_string(),
            })
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nf_tables",
            Backend::Legacy => "legacy",
        }
    }

    /// `iptables-nft-save`, then `iptables-save` (`what`: save, restore).
    fn tools(self, family: Family, what: &str) -> [String; 2] {
        let tool = family.tool();
        let kind = match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        };
        [format!("{tool}-{kind}-{what}"), format!("{tool}-{what}")]
    }
}

/// The firewall of one family as the tools see it.
pub struct Tables<'a, E: Exec> {
    exec: &'a mut E,
    family: Family,
    backend: Backend,
    /// What was done, one line each, for the user.
    log: Vec<String>,
}

impl<'a, E: Exec> Tables<'a, E> {
    pub fn new(exec: &'a mut E, family: Family, backend: Backend) -> Self {
        Tables {
            exec,
            family,
            backend,
            log: Vec::new(),
        }
    }

    fn open(exec: &'a mut E, family: Family) -> Result<Self, RulesError> {
        let backend = Backend::of(exec, family)?;
        Ok(Tables::new(exec, family, backend))
    }

    /// `iptables-save` of the backend `iptables` uses, with `args`.
    /// Without `-t raw` a legacy save reads only the tables that exist
    /// (with it, it would make the raw table to print it).
    pub fn save(&mut self, args: &[String]) -> Result<String, RulesError> {
        for prog in self.backend.tools(self.family, "save") {
            match self.exec.exec(&prog, args) {
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
        Err(RulesError::NoSaveTool {
            tool: self.family.tool(),
        })
    }

    /// One `iptables-restore --noflush` transaction: all of `text` or
    /// nothing.
    fn restore(&mut self, text: &str) -> Result<(), RulesError> {
        let args = words(&["-w", "--noflush"]);
        for prog in self.backend.tools(self.family, "restore") {
            match self.exec.exec_with_input(&prog, &args, text) {
                Ok(r) if r.ok => return Ok(()),
                Ok(r) => {
                    return Err(RulesError::Refused {
                        command: format!("{} <<EOF\n{text}EOF", command_line(&prog, &args)),
                        stderr: r.stderr,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(RulesError::Exec { prog, source }),
            }
        }
        Err(RulesError::NoSaveTool {
            tool: self.family.tool(),
        })
    }

    /// The rules `rs` wants in this family, given what is loaded.
    fn wanted(&self, rs: &RuleSet, loaded: &Loaded) -> Vec<Rule> {
        rs.rules(self.family, !loaded.table || loaded.created)
    }

    /// Loads the rules unless they are in place; returns what was not in
    /// place (empty: nothing changed). `save` is the family's save output
    /// (the whole of it, or its raw table) read just before.
    pub fn load(&mut self, rs: &RuleSet, save: &str) -> Result<Vec<String>, RulesError> {
        let loaded = Loaded::read(save, rs);
        let wanted = self.wanted(rs, &loaded);
        let gone = loaded.gone(&wanted);
        let counts = HOOKS.map(|hook| {
            let n = wanted.iter().filter(|r| r.chain == hook).count();
            format!("{n} in {}", own_chain(rs, hook))
        });
        if gone.is_empty() {
            self.log.push(format!(
                "# ftpct's rules are in place ({}, one jump from each of {}): nothing changed",
                counts.join(", "),
                HOOKS.join(" and ")
            ));
            return Ok(gone);
        }
        let changes = loaded.changes(&wanted);
        self.restore(&load_text(rs, &wanted, &changes, false))?;
        self.log
            .push(format!("# not in place: {}", gone.join("; ")));
        self.log.push(format!(
            "{} --noflush: {} rules ({}){}{}, in one transaction",
            chains::restore_tool(self.family),
            wanted.len(),
            counts.join(", "),
            if changes.jumps.is_empty() {
                String::new()
            } else {
                format!(", a jump from {}", changes.jumps.join(" and "))
            },
            if changes.remove.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} rules of the built-in chains taken out",
                    changes.remove.len()
                )
            },
        ));
        Ok(gone)
    }

    fn apply(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        // The whole save: with legacy, `-t raw` would make the table.
        let save = self.save(&[])?;
        self.load(rs, &save).map(drop)
    }

    /// Takes out the jumps, ftpct's chains and an older ftpct's rules in
    /// one transaction, then the raw table if ftpct created it and nothing
    /// else is in it.
    fn delete(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        let save = self.save(&[])?;
        if !has_table(&save) {
            return Ok(());
        }
        let loaded = Loaded::read(&save, rs);
        if loaded.nothing() {
            self.log
                .push("# nothing of ftpct's in the raw table".into());
            return Ok(());
        }
        let remove = loaded.all_of_ours();
        self.restore(&unload_text(rs, &remove, &loaded.chains))?;
        self.log.push(format!(
            "{} --noflush: {} rules of the built-in chains and the chains {} taken out, in one transaction",
            chains::restore_tool(self.family),
            remove.len(),
            loaded.chains.join(", ")
        ));
        if loaded.created {
            self.drop_created_table()?;
        }
        Ok(())
    }

    fn drop_created_table(&mut self) -> Result<(), RulesError> {
        if !raw_table_is_empty(&self.save(&[])?) {
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

    /// What was done, one line each.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
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
    /// What is not as wanted, one phrase each (empty: in place).
    pub gone: Vec<String>,
    /// The save output, as the backend's save tool prints it.
    pub save: String,
}

/// Looks at the rules of every family (one save each).
pub fn check_rules<E: Exec>(exec: &mut E, rs: &RuleSet) -> Result<Vec<RulesFound>, RulesError> {
    let mut found = Vec::new();
    for &family in &rs.families {
        let mut t = Tables::open(exec, family)?;
        let save = t.save(&[])?;
        let loaded = Loaded::read(&save, rs);
        let wanted = t.wanted(rs, &loaded);
        found.push(RulesFound {
            family,
            wanted: wanted.len(),
            gone: loaded.gone(&wanted),
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
        log.push(format!("# {} ({})", f.name(), t.backend.name()));
        match action {
            Action::Apply => t.apply(rs)?,
            Action::Delete | Action::ForceDelete => t.delete(rs)?,
        }
        log.append(&mut t.log);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::family::Families;
    use crate::netfilter::rules::tests::ruleset;
    use crate::netfilter::rules::{SetNames, COMMENT_CT, COMMENT_CT_CREATED};

    /// iptables as chains of rules: `iptables-save` prints them,
    /// `iptables-restore --noflush` changes them (all or nothing).
    struct FakeIptables {
        backend: &'static str,
        table: bool,
        /// User chains, in order of creation.
        chains: Vec<String>,
        rules: Vec<(String, Vec<String>)>,
        nft_deleted: bool,
        /// Every restore fails.
        refuse: bool,
        /// Programs run.
        ran: Vec<String>,
    }

    impl FakeIptables {
        fn new(backend: &'static str) -> Self {
            FakeIptables {
                backend,
                table: false,
                chains: Vec::new(),
                rules: Vec::new(),
                nft_deleted: false,
                refuse: false,
                ran: Vec::new(),
            }
        }

        fn save(&self) -> String {
            if !self.table {
                return String::new();
            }
            let mut s =
                "# Generated\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n".to_string();
            for c in &self.chains {
                s.push_str(&format!(":{c} - [0:0]\n"));
            }
            for chain in ["PREROUTING", "OUTPUT"]
                .iter()
                .map(|c| c.to_string())
                .chain(self.chains.clone())
            {
                for (_, spec) in self.rules.iter().filter(|r| r.0 == chain) {
                    // Quoted as iptables-save quotes.
                    let words: Vec<String> = spec
                        .iter()
                        .map(|w| {
                            if w.contains(' ') || w.contains('\'') {
                                format!("\"{}\"", w.replace('\'', "\\'"))
                            } else {
                                w.clone()
                            }
                        })
                        .collect();
                    s.push_str(&format!("-A {chain} {}\n", words.join(" ")));
                }
            }
            s + "COMMIT\n"
        }

        /// The words of a restore line, as iptables-restore splits them.
        fn split(line: &str) -> Vec<String> {
            let (mut words, mut word, mut quoted, mut escaped) =
                (Vec::new(), String::new(), false, false);
            for c in line.chars() {
                match c {
                    _ if escaped => {
                        word.push(c);
                        escaped = false;
                    }
                    '\\' => escaped = true,
                    '"' => quoted = !quoted,
                    ' ' if !quoted => words.push(std::mem::take(&mut word)),
                    _ => word.push(c),
                }
            }
            words.push(word);
            words.retain(|w| !w.is_empty());
            words
        }

        fn restore(&mut self, text: &str) -> bool {
            let before = (self.chains.clone(), self.rules.clone());
            self.table = true;
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let w = Self::split(line);
                let ok = match w.first().map(String::as_str) {
                    Some("*raw") | Some("COMMIT") => true,
                    Some(decl) if decl.starts_with(':') => {
                        let c = decl[1..].to_string();
                        if self.chains.contains(&c) {
                            self.rules.retain(|r| r.0 != c);
                        } else {
                            self.chains.push(c);
                        }
                        true
                    }
                    Some("-A") => {
                        let exists = ["PREROUTING", "OUTPUT"].contains(&w[1].as_str())
                            || self.chains.contains(&w[1]);
                        let target_ok = w.iter().position(|x| x == "-j").is_none_or(|j| {
                            let t = &w[j + 1];
                            t.chars().any(|c| c.is_ascii_uppercase()) || self.chains.contains(t)
                        });
                        if exists && target_ok {
                            self.rules.push((w[1].clone(), w[2..].to_vec()));
                        }
                        exists && target_ok
                    }
                    Some("-D") => {
                        let n: usize = w[2].parse().expect("by number");
                        let at = self
                            .rules
                            .iter()
                            .enumerate()
                            .filter(|r| r.1 .0 == w[1])
                            .nth(n - 1)
                            .map(|r| r.0);
                        at.map(|i| self.rules.remove(i)).is_some()
                    }
                    Some("-F") => {
                        self.rules.retain(|r| r.0 != w[1]);
                        true
                    }
                    Some("-X") => {
                        let used = self.rules.iter().any(|r| r.1.last() == Some(&w[1]));
                        self.chains.retain(|c| *c != w[1]);
                        !used
                    }
                    other => panic!("restore line {other:?}"),
                };
                if !ok {
                    (self.chains, self.rules) = before;
                    return false;
                }
            }
            true
        }

        fn in_chain(&self, chain: &str) -> Vec<&Vec<String>> {
            self.rules
                .iter()
                .filter(|r| r.0 == chain)
                .map(|r| &r.1)
                .collect()
        }
    }

    impl Exec for FakeIptables {
        fn exec(&mut self, prog: &str, args: &[String]) -> io::Result<Ran> {
            self.ran.push(prog.to_string());
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
            // iptables -t raw -A CHAIN spec (a user's rule, an old ftpct's).
            self.table = true;
            self.rules.push((args[3].clone(), args[4..].to_vec()));
            Ok(ok(String::new()))
        }

        fn exec_with_input(&mut self, prog: &str, _: &[String], input: &str) -> io::Result<Ran> {
            self.ran.push(prog.to_string());
            let ok = !self.refuse && self.restore(input);
            Ok(Ran {
                ok,
                stdout: String::new(),
                stderr: if ok { String::new() } else { "no".into() },
            })
        }
    }

    fn selective(families: Families) -> RuleSet {
        ruleset(families).with_queue_all(false)
    }

    #[test]
    fn one_save_one_restore_then_nothing_changes() {
        // One family: the fake holds one table.
        let rs = selective(Families::V4);
        let mut fw = FakeIptables::new("nf_tables");
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        assert_eq!(
            fw.ran,
            ["iptables", "iptables-nft-save", "iptables-nft-restore"],
            "{log:?}"
        );
        assert_eq!(fw.in_chain("PREROUTING").len(), 1, "one jump");
        assert_eq!(fw.in_chain("OUTPUT").len(), 1, "one jump");
        let pre = fw.in_chain("ftpct-pre");
        assert!(
            pre.last()
                .is_some_and(|r| r.iter().any(|w| w == COMMENT_LABELS_WORD)),
            "labels last"
        );
        assert!(
            pre.iter()
                .any(|r| r.iter().any(|w| w == COMMENT_CT_CREATED)),
            "the table was made by ftpct"
        );
        let before = fw.save();
        fw.ran.clear();
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.save(), before, "{log:?}");
        assert!(
            !fw.ran.iter().any(|p| p.ends_with("-restore")),
            "{:?} {log:?}",
            fw.ran
        );
        assert!(
            log.iter()
                .any(|l| l.contains("in place") && l.contains("nothing changed")),
            "{log:?}"
        );
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(fw.rules.is_empty() && fw.chains.is_empty());
        assert!(fw.nft_deleted, "the table ftpct created is removed");
        assert_eq!(fw.save(), "");
    }

    const COMMENT_LABELS_WORD: &str = crate::netfilter::rules::COMMENT_LABELS;

    #[test]
    fn an_emptied_chain_is_filled_again_behind_its_jump() {
        let rs = selective(Families::V4);
        let mut fw = FakeIptables::new("legacy");
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        let wanted = fw.save();
        fw.rules.retain(|r| r.0 != "ftpct-out");
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.save(), wanted, "{log:?}");
        assert!(
            log.iter().any(|l| l.contains("ftpct's chain for OUTPUT")),
            "{log:?}"
        );
    }

    #[test]
    fn another_rule_set_swaps_the_chains_and_the_jumps() {
        let rs = selective(Families::V4);
        let mut fw = FakeIptables::new("nf_tables");
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        let mut other = rs.clone();
        other.control_ports = vec![2121];
        change_rules(&mut fw, &other, Action::Apply).expect("ports changed");
        assert_eq!(fw.in_chain("PREROUTING").len(), 1);
        assert!(fw
            .in_chain("ftpct-pre")
            .iter()
            .any(|r| r.iter().any(|w| w == "2121")));
        assert!(!fw
            .in_chain("ftpct-pre")
            .iter()
            .any(|r| r.iter().any(|w| w == "21")));
        let log = change_rules(&mut fw, &other, Action::Apply).expect("again");
        assert!(log.iter().any(|l| l.contains("nothing changed")), "{log:?}");
    }

    #[test]
    fn an_older_ftpcts_rules_go_in_the_same_transaction_and_anothers_stay() {
        let rs = selective(Families::V4);
        let mut fw = FakeIptables::new("nf_tables");
        // A user's rule, then the rules as an older ftpct appended them to
        // the built-in chains, then another ftpct's (its own port and sets).
        let add = |fw: &mut FakeIptables, chain: &str, spec: &[String]| {
            let mut args = words(&["-t", "raw", "-A", chain]);
            args.extend(spec.iter().cloned());
            fw.exec("iptables", &args).expect("add");
        };
        add(
            &mut fw,
            "PREROUTING",
            &words(&["-p", "udp", "-j", "CT", "--notrack"]),
        );
        // An older ftpct's rules each named its ports or a set of its own
        // (the port-less rules past today's gate are not among them).
        let older = |r: &Rule| {
            r.spec
                .iter()
                .any(|w| w.ends_with("port") || w.ends_with("ports"))
                || r.spec.iter().any(|w| w == "--match-set")
                || !r.spec.contains(&"-j".to_string())
        };
        for rule in rs.rules(Family::V4, false).into_iter().filter(older) {
            add(&mut fw, rule.chain, &rule.spec);
        }
        let mut theirs = rs.clone();
        theirs.control_ports = vec![2121];
        theirs.sets = SetNames::new("other").expect("names");
        let their_rules: Vec<Rule> = theirs
            .rules(Family::V4, false)
            .into_iter()
            .filter(|r| r.spec.contains(&"-j".to_string()))
            .collect();
        for rule in &their_rules {
            add(&mut fw, rule.chain, &rule.spec);
        }
        let log = change_rules(&mut fw, &rs, Action::Apply).expect("migrate");
        let pre = fw.in_chain("PREROUTING");
        assert_eq!(
            pre[0],
            &words(&["-p", "udp", "-j", "CT", "--notrack"]),
            "{log:?}"
        );
        let ours: Vec<_> = pre
            .iter()
            .filter(|r| r.iter().any(|w| w.starts_with("ftpct: ")))
            .collect();
        let their_pre = their_rules
            .iter()
            .filter(|r| r.chain == "PREROUTING")
            .count();
        assert_eq!(ours.len(), their_pre + 1, "theirs and one jump: {pre:?}");
        assert_eq!(
            pre.last().and_then(|r| r.last()).map(String::as_str),
            Some("ftpct-pre")
        );
        assert!(
            log.iter()
                .any(|l| l.contains("rules of the built-in chains taken out")),
            "{log:?}"
        );
        // The conntrack rule moved into the chain with the rest.
        assert!(!pre.iter().any(|r| r.iter().any(|w| w == COMMENT_CT)));
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        let left = fw
            .rules
            .iter()
            .filter(|r| r.1.iter().any(|w| w.starts_with("ftpct: ")))
            .count();
        assert_eq!(
            left,
            their_rules.len(),
            "only the other ftpct's rules are left"
        );
    }

    #[test]
    fn an_unknown_backend_or_a_refused_restore_is_an_error_that_says_so() {
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
            Err(RulesError::Refused { command, stderr }) if command.starts_with("iptables-legacy-restore -w --noflush <<EOF\n*raw\n:ftpct-pre") && stderr == "no"
        ));
    }

    #[test]
    fn delete_without_a_table_touches_nothing() {
        let rs = ruleset(Families::All);
        let mut fw = FakeIptables::new("legacy");
        let log = change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(!fw.table, "{log:?}");
    }

    #[test]
    fn a_bare_nft_table() {
        assert!(!nft_table_is_bare("table ip raw {\n set s {\n }\n}\n"));
        assert!(nft_table_is_bare(
            "table ip raw {\n\tchain PREROUTING {\n\t}\n}\n"
        ));
    }
}
