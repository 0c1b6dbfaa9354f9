//! Whether iptables still feeds ftpct's queues: a firewall reload (`nft
//! flush ruleset`, `iptables-restore`, `netfilter-persistent reload`)
//! removes its rules, and ftpct then sees nothing while saying it runs.
//! With `restore_rules` (the default) the rules are looked at every second
//! and put back when their chains or jumps are gone, in the family where
//! this run has seen them; without, looked at every 30 s and the change
//! logged. One `iptables-save -t raw` per family per look; when told of
//! nf_tables' changes (see [`crate::netfilter::ruleset_events`]) and the
//! rules are nf_tables', a second's look is skipped when nothing changed
//! (one still every 30 s).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::netfilter::chains::HOOKS;
use crate::netfilter::family::Family;
use crate::netfilter::iptables::{Backend, Exec, Tables};
use crate::netfilter::loaded::Loaded;
use crate::netfilter::rules::{RuleSet, COMMENT_CONTROL, COMMENT_GUARDED};
use crate::netfilter::ruleset_events::RulesetChanges;
use crate::netfilter::sets;

/// How often the rules are looked at when ftpct does not put them back.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// How often they are looked at when it does (`restore_rules`).
pub const RESTORE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The queues that the NFQUEUE rules in an `iptables-save` output send to.
pub fn queues_fed(save: &str) -> Vec<u16> {
    let mut fed = Vec::new();
    for line in save.lines().filter(|l| l.contains("-j NFQUEUE")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
        };
        if let Some(range) = after("--queue-balance") {
            let bounds = range
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
            if let Some((first, last)) = bounds {
                fed.extend(first..=last);
            }
        } else if let Some(num) = after("--queue-num") {
            fed.extend(num.parse::<u16>().ok());
        } else {
            // NFQUEUE without a number sends to queue 0.
            fed.push(0);
        }
    }
    fed.sort_unstable();
    fed.dedup();
    fed
}

/// Watches the rules that feed a set of queues.
pub struct RuleWatch {
    queues: Vec<u16>,
    /// The queues found unfed at the last check (None before the first).
    unfed: Option<Vec<u16>>,
    /// The last check could read the raw table.
    readable: bool,
    /// `run --queue-all`: the engine expects every control packet.
    queue_all: bool,
    /// The queueing mode of the rules as last said (None: not said).
    mode_said: Option<RulesMode>,
    next: Instant,
    /// What puts the rules back (None: `restore_rules = false`).
    restore: Option<Restore>,
    /// What says whether the ruleset changed (None: every check looks).
    changes: Option<Box<dyn RulesetChanges>>,
    /// When the rules were last looked at.
    looked_at: Option<Instant>,
    /// That look found the rules of every family in nf_tables, whose
    /// changes are announced.
    nft_only: bool,
}

/// Puts ftpct's rules back in the families where this run has seen them.
struct Restore {
    rules: RuleSet,
    /// Per family: its backend once known, whether its rules were seen.
    backends: Vec<(Family, Option<Backend>, bool)>,
    /// The last restore's failure, said once.
    failed: Option<String>,
    /// Families restored since the last `take_restored`.
    restored: usize,
    /// Makes the sets the rules name (a test's does nothing).
    ensure_sets: EnsureSets,
}

/// Creates the sets of the families given that do not exist.
type EnsureSets = fn(
    &sets::SetNames,
    &[Family],
) -> Result<Vec<String>, crate::netfilter::rules_error::RulesError>;

/// How the rules found in the raw table queue the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesMode {
    Selective,
    All,
    /// Neither kind of ftpct rule (their absence is said as unfed queues).
    None,
}

impl RulesMode {
    /// The mode of ftpct's rules in an `iptables-save` output.
    pub fn of(save: &str) -> RulesMode {
        if save.contains(COMMENT_CONTROL) {
            RulesMode::All
        } else if save.contains(COMMENT_GUARDED) {
            RulesMode::Selective
        } else {
            RulesMode::None
        }
    }
}

impl RuleWatch {
    pub fn new(queues: &[u16], queue_all: bool) -> Self {
        RuleWatch {
            queues: queues.to_vec(),
            unfed: None,
            readable: false,
            queue_all,
            mode_said: None,
            next: Instant::now(),
            restore: None,
            changes: None,
            looked_at: None,
            nft_only: false,
        }
    }

    /// Skips a due look when `changes` says the ruleset has not changed
    /// since the last one (and that look is younger than [`CHECK_EVERY`]
    /// and found only nf_tables' rules).
    pub fn told_of_changes(mut self, changes: Box<dyn RulesetChanges>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Puts `rules` back whenever their chains or jumps are gone from a
    /// family where this run has seen them.
    pub fn restoring(mut self, rules: RuleSet) -> Self {
        let backends = rules.families.iter().map(|&f| (f, None, false)).collect();
        self.restore = Some(Restore {
            rules,
            backends,
            failed: None,
            restored: 0,
            ensure_sets: sets::apply_sets,
        });
        self
    }

    /// How many times rules were put back since the last call.
    pub fn take_restored(&mut self) -> usize {
        self.restore
            .as_mut()
            .map_or(0, |r| std::mem::take(&mut r.restored))
    }

    /// Says when the rules' queueing mode and `run`'s disagree.
    fn check_mode(&mut self, mode: RulesMode) {
        if self.mode_said == Some(mode) {
            return;
        }
        self.mode_said = Some(mode);
        match (mode, self.queue_all) {
            (RulesMode::Selective, true) => warn!(
                "the rules queue only the control segments that can matter, but ftpct runs with --queue-all and expects every one: it will drop and wait for segments it never gets; run it without --queue-all, or apply the rules with `ftpct rules --apply --queue-all`"
            ),
            (RulesMode::All, false) => info!(
                "the rules queue every control packet (ftpct rules --queue-all): ftpct follows them all; `ftpct rules --apply` without --queue-all queues far fewer"
            ),
            _ => {}
        }
    }

    /// How many of the queues no rule fed at the last check; None before
    /// it, or when the rules could not be read.
    pub fn unfed(&self) -> Option<usize> {
        self.unfed.as_ref().filter(|_| self.readable).map(Vec::len)
    }

    /// Looks at the rules when a check is due; logs what changed.
    pub fn check<E: Exec>(&mut self, exec: &mut E, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now
            + if self.restore.is_some() {
                RESTORE_CHECK_EVERY
            } else {
                CHECK_EVERY
            };
        if self.unchanged(now) {
            return;
        }
        self.looked_at = Some(now);
        let mut nft_only = true;
        let mut fed = Vec::new();
        let mut looked = false;
        let mut why = String::new();
        let mut mode = RulesMode::None;
        for (family, tool) in [
            (Family::V4, "iptables-save"),
            (Family::V6, "ip6tables-save"),
        ] {
            match exec.exec(tool, &["-t".into(), "raw".into()]) {
                Ok(mut ran) => {
                    if ran.ok {
                        if let Some(again) = self.put_back(exec, family, &ran.stdout) {
                            ran.stdout = again;
                        }
                    }
                    looked |= ran.ok;
                    nft_only &= ran.ok && saved_from_nf_tables(&ran.stdout);
                    fed.extend(queues_fed(&ran.stdout));
                    if mode == RulesMode::None {
                        mode = RulesMode::of(&ran.stdout);
                    }
                    if !ran.ok && why.is_empty() {
                        why = ran.stderr.lines().next().unwrap_or_default().to_string();
                    }
                }
                Err(e) => {
                    nft_only = false;
                    if why.is_empty() {
                        why = e.to_string();
                    }
                }
            }
        }
        self.nft_only = nft_only;
        self.readable = looked;
        if looked {
            self.check_mode(mode);
        }
        if !looked {
            if self.unfed.is_none() {
                warn!("cannot read the raw table (iptables-save: {why}): ftpct cannot tell whether its rules are in place; without root it needs CAP_NET_RAW besides CAP_NET_ADMIN (iptables opens a raw socket for the ipset match)");
            }
            self.unfed = Some(Vec::new());
            return;
        }
        let unfed: Vec<u16> = self
            .queues
            .iter()
            .copied()
            .filter(|q| !fed.contains(q))
            .collect();
        if self.unfed.as_ref() == Some(&unfed) {
            return;
        }
        if unfed.is_empty() {
            if self.unfed.is_some() {
                info!(
                    "NFQUEUE rules for queues {:?} are in place again",
                    self.queues
                );
            }
        } else {
            warn!(
                "no iptables/ip6tables rule in the raw table sends to queue(s) {unfed:?}: ftpct sees none of their packets (firewall reloaded, `ftpct rules --delete`?): run `ftpct rules --apply`"
            );
        }
        self.unfed = Some(unfed);
    }

    /// True when a look would find what the last one found: nf_tables
    /// said no change since, the last look saw only its rules and is
    /// younger than [`CHECK_EVERY`]. The events are read at every due
    /// check, before the look: a change during a look is looked at again.
    fn unchanged(&mut self, now: Instant) -> bool {
        let Some(changes) = self.changes.as_mut() else {
            return false;
        };
        let changed = changes.changed();
        let recent = self
            .looked_at
            .is_some_and(|at| now.saturating_duration_since(at) < CHECK_EVERY);
        !changed && recent && self.nft_only
    }

    /// When ftpct puts its rules back and `save` (the family's raw table)
    /// lacks a chain or jump of ftpct's it had: puts them back, and returns
    /// the raw table as it is then (None: nothing done).
    fn put_back<E: Exec>(&mut self, exec: &mut E, family: Family, save: &str) -> Option<String> {
        let restore = self.restore.as_mut()?;
        let at = restore.backends.iter().position(|b| b.0 == family)?;
        let loaded = Loaded::read(save, &restore.rules);
        let gone = gone_wholly(&loaded);
        let seen = &mut restore.backends[at].2;
        if gone.is_empty() {
            *seen = true;
            restore.failed = None;
            return None;
        }
        if !*seen {
            return None;
        }
        match restore.load(exec, at, save) {
            Ok(()) => {
                warn!(
                    "ftpct's {} rules gone from the raw table ({}; a firewall reload?): put back in one transaction",
                    family.name(),
                    gone.join(", ")
                );
                restore.failed = None;
                restore.restored += 1;
                let args = ["-t".to_string(), "raw".to_string()];
                exec.exec(&format!("{}-save", family.tool()), &args)
                    .ok()
                    .filter(|r| r.ok)
                    .map(|r| r.stdout)
            }
            Err(e) => {
                let e = e.to_string();
                if restore.failed.as_ref() != Some(&e) {
                    warn!(
                        "ftpct's {} rules gone from the raw table ({}), and cannot be put back: {e}",
                        family.name(),
                        gone.join(", ")
                    );
                }
                restore.failed = Some(e);
                None
            }
        }
    }
}

impl Restore {
    /// The sets (a reload may have taken them too), then the rules in one
    /// transaction.
    fn load<E: Exec>(
        &mut self,
        exec: &mut E,
        at: usize,
        save: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (family, known, _) = self.backends[at];
        let backend = match known {
            Some(b) => b,
            None => Backend::of(exec, family)?,
        };
        self.backends[at].1 = Some(backend);
        (self.ensure_sets)(&self.rules.sets, &[family])?;
        Tables::new(exec, family, backend).load(&self.rules, save)?;
        Ok(())
    }
}

/// Whether an `iptables-save` output comes from iptables-nft (its first
/// line: "# Generated by iptables-save v1.8.9 (nf_tables) on ...").
fn saved_from_nf_tables(save: &str) -> bool {
    save.lines().next().is_some_and(|l| {
        l.starts_with('#') && (l.contains("(nf_tables)") || l.contains("-nft-save"))
    })
}

/// What of ftpct's rules is gone as a reload takes them: a jump, a chain,
/// or all of a chain's rules (not rules of another rule set, which an
/// operator's `ftpct rules --apply` with other settings put there).
fn gone_wholly(loaded: &Loaded) -> Vec<String> {
    let mut gone = Vec::new();
    for (i, hook) in HOOKS.into_iter().enumerate() {
        if !loaded.jumps.iter().any(|(h, _, _)| *h == hook) {
            gone.push(format!("the jump from {hook}"));
        }
        if loaded.content[i].is_empty() {
            gone.push(format!("the rules of ftpct's chain for {hook}"));
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::iptables::Ran;
    use std::cell::Cell;
    use std::io;
    use std::rc::Rc;

    /// iptables-save that prints what the test says.
    struct Saved(String);

    impl Exec for Saved {
        fn exec(&mut self, _: &str, _: &[String]) -> io::Result<Ran> {
            Ok(Ran {
                ok: true,
                stdout: self.0.clone(),
                stderr: String::new(),
            })
        }
    }

    #[test]
    fn vanished_rules_are_noticed_at_the_next_check() {
        let rule = "-A PREROUTING -p tcp -j NFQUEUE --queue-num 0 --queue-bypass\n";
        let mut exec = Saved(rule.into());
        let mut w = RuleWatch::new(&[0], false);
        assert_eq!(w.unfed(), None, "not looked yet");
        let t0 = Instant::now();
        w.check(&mut exec, t0);
        assert_eq!(w.unfed, Some(vec![]));
        assert_eq!(w.unfed(), Some(0));
        exec.0 = "*raw\nCOMMIT\n".into();
        w.check(&mut exec, t0 + Duration::from_secs(1));
        assert_eq!(w.unfed, Some(vec![]), "not due yet");
        w.check(&mut exec, t0 + CHECK_EVERY);
        assert_eq!(w.unfed, Some(vec![0]));
        assert_eq!(w.unfed(), Some(1), "what the metric shows");
        exec.0 = rule.into();
        w.check(&mut exec, t0 + 2 * CHECK_EVERY);
        assert_eq!(w.unfed, Some(vec![]));
    }

    /// iptables whose raw table is a text: a restore makes it what the
    /// restore loads (its removals aside); counts the restores.
    struct Table {
        raw: String,
        restores: usize,
    }

    impl Exec for Table {
        fn exec(&mut self, prog: &str, _: &[String]) -> io::Result<Ran> {
            let stdout = if prog.ends_with("-save") {
                self.raw.clone()
            } else {
                "iptables v1.8.9 (nf_tables)".into()
            };
            Ok(Ran {
                ok: true,
                stdout,
                stderr: String::new(),
            })
        }

        fn exec_with_input(&mut self, _: &str, _: &[String], input: &str) -> io::Result<Ran> {
            self.restores += 1;
            self.raw = input
                .lines()
                .filter(|l| !l.starts_with("-D"))
                .map(|l| format!("{l}\n"))
                .collect();
            Ok(Ran {
                ok: true,
                ..Ran::default()
            })
        }
    }

    #[test]
    fn rules_gone_from_a_family_where_they_were_seen_are_put_back() {
        use crate::netfilter::chains::{load_text, Changes, HOOKS};
        let rs = crate::netfilter::rules::tests::ruleset(crate::netfilter::family::Families::V4);
        let changes = Changes {
            remove: Vec::new(),
            jumps: HOOKS.to_vec(),
        };
        let loaded = load_text(&rs, &rs.rules(Family::V4, false), &changes, false);
        let mut w = RuleWatch::new(&[0], true).restoring(rs.clone());
        if let Some(r) = w.restore.as_mut() {
            r.ensure_sets = |_, _| Ok(Vec::new());
        }
        let t0 = Instant::now();
        // Never seen: not put back (the operator applied none).
        let mut fw = Table {
            raw: "*raw\nCOMMIT\n".into(),
            restores: 0,
        };
        w.check(&mut fw, t0);
        assert_eq!((fw.restores, w.take_restored()), (0, 0));
        fw.raw = loaded.clone();
        w.check(&mut fw, t0 + RESTORE_CHECK_EVERY);
        assert_eq!(fw.restores, 0, "in place");
        assert_eq!(w.unfed(), Some(0));
        // A reload: the raw table emptied.
        fw.raw = "*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".into();
        w.check(&mut fw, t0 + RESTORE_CHECK_EVERY);
        assert_eq!(fw.restores, 0, "not due yet");
        w.check(&mut fw, t0 + 2 * RESTORE_CHECK_EVERY);
        assert_eq!(fw.restores, 1);
        assert_eq!(w.take_restored(), 1);
        assert_eq!(w.take_restored(), 0);
        assert_eq!(w.unfed(), Some(0), "fed again at once");
        let jumps = fw
            .raw
            .lines()
            .filter(|l| l.starts_with("-A PREROUTING"))
            .count();
        assert_eq!(jumps, 1, "{}", fw.raw);
        w.check(&mut fw, t0 + 3 * RESTORE_CHECK_EVERY);
        assert_eq!(fw.restores, 1, "back in place: nothing more");
    }

    /// nf_tables' events as the test sends them: how many since the last read.
    struct Told(Rc<Cell<usize>>);

    impl RulesetChanges for Told {
        fn changed(&mut self) -> bool {
            self.0.replace(0) > 0
        }
    }

    /// iptables-save that prints a text and counts its runs.
    struct Counted {
        save: String,
        runs: usize,
    }

    impl Exec for Counted {
        fn exec(&mut self, _: &str, _: &[String]) -> io::Result<Ran> {
            self.runs += 1;
            Saved(self.save.clone()).exec("", &[])
        }
    }

    /// A restoring watch told of changes by `events` (`pending` waiting
    /// already) over iptables-save printing `save`, after its first look,
    /// and when that was.
    fn told_watch(save: String, pending: usize) -> (RuleWatch, Counted, Rc<Cell<usize>>, Instant) {
        let rs = crate::netfilter::rules::tests::ruleset(crate::netfilter::family::Families::V4);
        let events = Rc::new(Cell::new(pending));
        let mut w = RuleWatch::new(&[0], false)
            .restoring(rs)
            .told_of_changes(Box::new(Told(Rc::clone(&events))));
        let mut exec = Counted { save, runs: 0 };
        let t0 = Instant::now();
        w.check(&mut exec, t0);
        (w, exec, events, t0)
    }

    #[test]
    fn an_unchanged_nf_tables_ruleset_is_not_looked_at_every_second() {
        let nft = "# Generated by iptables-save v1.8.9 (nf_tables) on Mon Dec  7 21:38:41 2026\n";
        let rule = "-A PREROUTING -p tcp -j NFQUEUE --queue-num 0 --queue-bypass\n";
        let (mut w, mut exec, events, t0) = told_watch(format!("{nft}*raw\n{rule}COMMIT\n"), 1);
        assert_eq!((exec.runs, w.unfed()), (2, Some(0)), "both families");
        let second = |n| t0 + n * RESTORE_CHECK_EVERY;
        w.check(&mut exec, second(1));
        assert_eq!(exec.runs, 2, "no event: not looked at");
        // `iptables -F`: an event, and the next second's look sees it.
        exec.save = format!("{nft}*raw\nCOMMIT\n");
        events.set(3);
        w.check(&mut exec, second(2));
        assert_eq!((exec.runs, w.unfed()), (4, Some(1)));
        // Without events, still looked at every CHECK_EVERY.
        exec.save = format!("{nft}*raw\n{rule}COMMIT\n");
        w.check(&mut exec, second(3));
        assert_eq!(w.unfed(), Some(1), "no event, not looked at");
        w.check(&mut exec, second(2) + CHECK_EVERY);
        assert_eq!((exec.runs, w.unfed()), (6, Some(0)));
    }

    #[test]
    fn legacy_rules_are_looked_at_every_second_whatever_the_events() {
        let legacy = "# Generated by iptables-save v1.8.9 (legacy) on Mon Dec  7 21:38:41 2026\n";
        let (mut w, mut exec, _events, t0) = told_watch(format!("{legacy}*raw\nCOMMIT\n"), 0);
        w.check(&mut exec, t0 + RESTORE_CHECK_EVERY);
        assert_eq!(exec.runs, 4, "no event, looked at all the same");
        assert!(!saved_from_nf_tables(""));
        assert!(saved_from_nf_tables(
            "# Generated by ip6tables-nft-save v1.8.11 on Mon Dec  7 21:38:41 2026\n"
        ));
    }

    #[test]
    fn the_rules_queueing_mode_is_read_from_their_comments() {
        let rs = crate::netfilter::rules::tests::ruleset(crate::netfilter::family::Families::V4);
        let save =
            |rs: &crate::netfilter::rules::RuleSet| crate::netfilter::chains::render_apply(rs);
        assert_eq!(RulesMode::of(&save(&rs)), RulesMode::All);
        assert_eq!(
            RulesMode::of(&save(&rs.with_queue_all(false))),
            RulesMode::Selective
        );
        assert_eq!(RulesMode::of("*raw\nCOMMIT\n"), RulesMode::None);
    }

    #[test]
    fn queues_from_rules() {
        let save = "*raw\n\
            -A PREROUTING -p tcp -m multiport --ports 21 -j NFQUEUE --queue-num 3 --queue-bypass\n\
            -A OUTPUT -p tcp -j NFQUEUE --queue-balance 5:7 --queue-bypass\n\
            -A OUTPUT -p udp -j NFQUEUE\n\
            -A PREROUTING -j CT --helper ftp\n\
            COMMIT\n";
        assert_eq!(queues_fed(save), [0, 3, 5, 6, 7]);
        assert!(queues_fed("*raw\nCOMMIT\n").is_empty());
    }
}
