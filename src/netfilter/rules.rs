//! `ftpct rules`: the iptables/ip6tables rules and ipsets ftpct needs,
//! printed as commands, or applied and removed idempotently.
//!
//! Every rule goes in the raw table (before conntrack) and is appended
//! after the user's own raw rules: an NFQUEUE accept resumes the packet at
//! the next hook, so rules after ours in the same chain never see it.
//! Per family:
//! - a rule with a conntrack match and no target: it only makes the kernel
//!   run conntrack in this namespace (a fresh one runs none until a rule
//!   needs it). Its comment also records whether ftpct created the raw
//!   table, so `--delete` can remove an empty table it created;
//! - PREROUTING and OUTPUT: TCP from or to a control port -> NFQUEUE;
//! - PREROUTING and OUTPUT: a SYN whose destination address and port are in
//!   the ipset of expected data connections -> NFQUEUE.
//!
//! `--queue-bypass` lets packets through when ftpct is not running. Works
//! with iptables-nft and iptables-legacy alike (it calls `iptables` and
//! `ip6tables`, and reads `iptables -V` to know which save tool to use).

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use crate::netfilter::ipset::{self, Ipset};
use crate::netfilter::netlink::kernel_errno;

/// Default timeout of the sets (each entry carries its own).
pub const SET_TIMEOUT_SECS: u32 = 300;
/// Default base name of the sets.
pub const DEFAULT_SET: &str = "ftpct";
const TABLE: &str = "raw";
/// At most this many ports fit one multiport match.
const MULTIPORT_MAX: usize = 15;
const COMMENT_CT: &str = "ftpct: turns conntrack on";
const COMMENT_CT_CREATED: &str = "ftpct: turns conntrack on (raw table created by ftpct)";
const COMMENT_CONTROL: &str = "ftpct: FTP control channel";
const COMMENT_HANDSHAKE: &str = "ftpct: FTP control handshakes, within the budget";
const COMMENT_HANDSHAKE_EXCESS: &str =
    "ftpct: FTP control handshakes over the budget (a flood) pass unqueued";
/// Packets with SYN set (SYN, SYN-ACK) of control connections queued per
/// second at most: far above what real sessions open, far below what the
/// queue holds. Beyond it (a spoofed SYN flood) they pass unqueued, so the
/// queue keeps room for real sessions' commands; a session whose handshake
/// was not queued is picked up at its next packet.
pub const HANDSHAKE_BUDGET: &str = "2000/sec";
const HANDSHAKE_BURST: &str = "4000";
const COMMENT_SYN: &str = "ftpct: expected FTP data connections";

/// The two sets: `NAME` (IPv4) and `NAME6` (IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetNames {
    pub v4: String,
    pub v6: String,
}

impl SetNames {
    pub fn new(base: &str) -> io::Result<Self> {
        let names = SetNames {
            v4: base.to_string(),
            v6: format!("{base}6"),
        };
        ipset::check_name(&names.v4)?;
        ipset::check_name(&names.v6)?;
        Ok(names)
    }

    /// The set for a destination address of that family.
    pub fn for_ip(&self, ip: IpAddr) -> &str {
        self.of(Family::of(ip))
    }

    pub fn of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Both names, with "is IPv6".
    pub fn both(&self) -> [(&str, bool); 2] {
        [(&self.v4, false), (&self.v6, true)]
    }
}

/// Makes sure the `hash:ip,port` set `name` exists; true if created here.
pub fn ensure_set(ipset: &mut Ipset, name: &str, v6: bool) -> io::Result<bool> {
    let probe: IpAddr = if v6 {
        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0])
    } else {
        IpAddr::from([192, 0, 2, 0])
    };
    match ipset.test(name, probe, 9) {
        Ok(_) => Ok(false),
        Err(e) if kernel_errno(&e) == Some(libc::ENOENT) => {
            ipset.create(name, v6, SET_TIMEOUT_SECS)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }

    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// `--family 4|6|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Families {
    /// IPv4 only (iptables)
    #[value(name = "4")]
    V4,
    /// IPv6 only (ip6tables)
    #[value(name = "6")]
    V6,
    /// Both
    #[default]
    All,
}

impl Families {
    pub fn list(self) -> Vec<Family> {
        match self {
            Families::V4 => vec![Family::V4],
            Families::V6 => vec![Family::V6],
            Families::All => vec![Family::V4, Family::V6],
        }
    }
}

/// Where the rules send packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTarget {
    Num(u16),
    /// `--queue-balance N:M`: one queue per core, `ftpct run --queue N ... --queue M`.
    Balance(u16, u16),
}

impl QueueTarget {
    fn args(self) -> Vec<String> {
        let mut a = match self {
            QueueTarget::Num(n) => vec!["--queue-num".to_string(), n.to_string()],
            QueueTarget::Balance(lo, hi) => vec!["--queue-balance".into(), format!("{lo}:{hi}")],
        };
        a.push("--queue-bypass".into());
        a
    }

    /// The queues `ftpct run` must bind.
    pub fn queues(self) -> Vec<u16> {
        match self {
            QueueTarget::Num(n) => vec![n],
            QueueTarget::Balance(lo, hi) => (lo..=hi).collect(),
        }
    }
}

/// `N:M` for --queue-balance.
pub fn parse_balance(s: &str) -> Result<QueueTarget, String> {
    let err = || format!("'{s}': expected FIRST:LAST queue numbers, e.g. 0:1");
    let (lo, hi) = s.split_once(':').ok_or_else(err)?;
    let lo: u16 = lo.parse().map_err(|_| err())?;
    let hi: u16 = hi.parse().map_err(|_| err())?;
    if lo >= hi {
        return Err(format!("'{s}': the first queue must be below the last"));
    }
    Ok(QueueTarget::Balance(lo, hi))
}

/// What a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ConntrackOn,
    /// Control handshakes, queued within a rate budget.
    Handshake,
    /// Control handshakes over the budget, accepted unqueued.
    HandshakeExcess,
    Control,
    ExpectedSyn,
}

/// One rule of the raw table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    pub role: Role,
    /// The rule specification, after `-A CHAIN`.
    pub spec: Vec<String>,
}

/// Everything the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub families: Vec<Family>,
    pub queue: QueueTarget,
    pub control_ports: Vec<u16>,
    pub sets: SetNames,
}

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

/// The conntrack rule, with the comment saying who created the table.
fn conntrack_on(table_created: bool) -> Rule {
    let comment = if table_created {
        COMMENT_CT_CREATED
    } else {
        COMMENT_CT
    };
    Rule {
        chain: "PREROUTING",
        role: Role::ConntrackOn,
        spec: words(&[
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "comment",
            "--comment",
            comment,
        ]),
    }
}

impl RuleSet {
    /// The rules of one family, in the order they are appended.
    pub fn rules(&self, family: Family, table_created: bool) -> Vec<Rule> {
        let mut rules = vec![conntrack_on(table_created)];
        for chain in ["PREROUTING", "OUTPUT"] {
            for ports in self.control_ports.chunks(MULTIPORT_MAX) {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                let ports = ["-m", "multiport", "--ports", &list.join(",")];
                let mut control = words(&["-p", "tcp"]);
                control.extend(words(&ports));
                let mut handshake = words(&["-p", "tcp", "--tcp-flags", "SYN", "SYN"]);
                handshake.extend(words(&ports));
                let mut within = handshake.clone();
                within.extend(words(&["-m", "limit", "--limit", HANDSHAKE_BUDGET]));
                within.extend(words(&["--limit-burst", HANDSHAKE_BURST]));
                within.extend(words(&["-m", "comment", "--comment", COMMENT_HANDSHAKE]));
                within.extend(self.target());
                handshake.extend(words(&[
                    "-m",
                    "comment",
                    "--comment",
                    COMMENT_HANDSHAKE_EXCESS,
                ]));
                handshake.extend(words(&["-j", "ACCEPT"]));
                control.extend(words(&["-m", "comment", "--comment", COMMENT_CONTROL]));
                control.extend(self.target());
                for (role, spec) in [
                    (Role::Handshake, within),
                    (Role::HandshakeExcess, handshake),
                    (Role::Control, control),
                ] {
                    rules.push(Rule { chain, role, spec });
                }
            }
            let mut spec = words(&["-p", "tcp", "--syn", "-m", "set", "--match-set"]);
            spec.push(self.sets.of(family).to_string());
            spec.extend(words(&[
                "dst,dst",
                "-m",
                "comment",
                "--comment",
                COMMENT_SYN,
            ]));
            spec.extend(self.target());
            rules.push(Rule {
                chain,
                role: Role::ExpectedSyn,
                spec,
            });
        }
        rules
    }

    fn target(&self) -> Vec<String> {
        let mut t = words(&["-j", "NFQUEUE"]);
        t.extend(self.queue.args());
        t
    }

    fn port_list(&self) -> String {
        let list: Vec<String> = self.control_ports.iter().map(u16::to_string).collect();
        list.join(",")
    }
}

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

fn command_line(prog: &str, args: &[String]) -> String {
    let mut line = prog.to_string();
    for a in args {
        line.push(' ');
        line.push_str(&shell_word(a));
    }
    line
}

fn rule_args(op: &str, rule: &Rule) -> Vec<String> {
    let mut args = words(&["-t", TABLE, op, rule.chain]);
    args.extend(rule.spec.iter().cloned());
    args
}

/// The commands that set everything up, as a shell script.
pub fn render_apply(rs: &RuleSet) -> String {
    let mut s = format!(
        "# ftpct: queue the FTP control channel (tcp ports {}) and the expected data\n\
         # connections from the raw table, after your own raw rules.\n",
        rs.port_list()
    );
    for &f in &rs.families {
        let _ = writeln!(s, "\n# {}", f.name());
        let _ = writeln!(
            s,
            "ipset create {} hash:ip,port family {} timeout {SET_TIMEOUT_SECS} -exist",
            shell_word(rs.sets.of(f)),
            f.ipset_family()
        );
        for rule in rs.rules(f, false) {
            let _ = writeln!(s, "{}", command_line(f.tool(), &rule_args("-A", &rule)));
        }
    }
    s.push_str(&example_policy(rs));
    s
}

/// The commands that remove everything, as a shell script.
pub fn render_delete(rs: &RuleSet) -> String {
    let mut s = String::from("# ftpct: remove the rules and sets of `ftpct rules --apply`\n");
    for &f in &rs.families {
        let _ = writeln!(s, "\n# {}", f.name());
        for rule in rs.rules(f, false).iter().rev() {
            let _ = writeln!(s, "{}", command_line(f.tool(), &rule_args("-D", rule)));
        }
        let _ = writeln!(s, "ipset destroy {}", shell_word(rs.sets.of(f)));
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

/// Why `--apply` or `--delete` failed: one line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError(pub String);

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RulesError {}

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
            .map_err(|e| RulesError(format!("cannot run {tool} ({e}): install iptables")))?;
        let backend = if v.stdout.contains("legacy") {
            Backend::Legacy
        } else if v.stdout.contains("nf_tables") {
            Backend::Nft
        } else {
            return Err(RulesError(format!(
                "{tool} -V says '{}': neither nf_tables nor legacy",
                v.stdout.trim()
            )));
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
            .map_err(|e| RulesError(format!("cannot run {tool}: {e}")))
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
                Ok(r) => return Err(RulesError(format!("{prog} failed: {}", r.stderr))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RulesError(format!("cannot run {prog}: {e}"))),
            }
        }
        Err(RulesError(format!(
            "{tool}-save not found: install iptables"
        )))
    }

    fn has(&mut self, rule: &Rule) -> Result<bool, RulesError> {
        Ok(self.run(&rule_args("-C", rule))?.ok)
    }

    fn change(&mut self, op: &str, rule: &Rule) -> Result<(), RulesError> {
        let args = rule_args(op, rule);
        let line = command_line(self.family.tool(), &args);
        let r = self.run(&args)?;
        if !r.ok {
            return Err(RulesError(format!("{line}: {}", r.stderr)));
        }
        self.log.push(line);
        Ok(())
    }

    /// Appends each rule that is not there yet.
    fn apply(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        // Before any -C: with legacy, -C itself instantiates the table.
        let created = !has_table(&self.save()?);
        for rule in rs.rules(self.family, created) {
            let present = if rule.role == Role::ConntrackOn {
                self.has(&conntrack_on(false))? || self.has(&conntrack_on(true))?
            } else {
                self.has(&rule)?
            };
            if present {
                let line = command_line(self.family.tool(), &rule_args("-A", &rule));
                self.log.push(format!("# already there: {line}"));
            } else {
                self.change("-A", &rule)?;
            }
        }
        Ok(())
    }

    /// Removes our rules (every copy), then the raw table if we created
    /// it and nothing else is in it.
    fn delete(&mut self, rs: &RuleSet) -> Result<(), RulesError> {
        if !has_table(&self.save()?) {
            return Ok(());
        }
        let mut created = false;
        let mut rules = rs.rules(self.family, false);
        rules.push(conntrack_on(true));
        for rule in rules.iter().rev() {
            // Bounded: a rule appended N times is removed N times.
            for _ in 0..64 {
                if !self.has(rule)? {
                    break;
                }
                self.change("-D", rule)?;
                created |= rule.spec.iter().any(|w| w == COMMENT_CT_CREATED);
            }
        }
        if created {
            self.drop_created_table()?;
        }
        Ok(())
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
            .map_err(|e| RulesError(format!("nft: {e}")))?;
        if !r.ok {
            return Err(RulesError(format!(
                "nft delete table {fam} {TABLE}: {}",
                r.stderr
            )));
        }
        self.log.push(command_line("nft", &del));
        Ok(())
    }
}

/// True if the save output has a raw table.
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

/// Whether to add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    Delete,
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

fn open_ipset() -> Result<Ipset, RulesError> {
    Ipset::open().map_err(|e| ipset_unusable(&e))
}

/// Why ipset cannot be used, and what to do: a missing privilege is not a
/// missing module.
fn ipset_unusable(e: &io::Error) -> RulesError {
    let denied = e.kind() == io::ErrorKind::PermissionDenied
        || kernel_errno(e).is_some_and(|n| n == libc::EPERM || n == libc::EACCES);
    RulesError(if denied {
        format!("ipset refused ({e}): ftpct rules needs root (CAP_NET_ADMIN): run it as root, or with sudo")
    } else {
        format!("ipset is not usable ({e}): load it with `modprobe ip_set_hash_ipport`")
    })
}

/// Creates the sets that do not exist yet (before the rules naming them).
pub fn apply_sets(rs: &RuleSet) -> Result<Vec<String>, RulesError> {
    let mut ipset = open_ipset()?;
    let mut log = Vec::new();
    for &f in &rs.families {
        let name = rs.sets.of(f);
        let created = ensure_set(&mut ipset, name, f == Family::V6)
            .map_err(|e| RulesError(format!("ipset {name}: {e}")))?;
        log.push(if created {
            format!(
                "ipset create {} hash:ip,port family {} timeout {SET_TIMEOUT_SECS}",
                shell_word(name),
                f.ipset_family()
            )
        } else {
            format!("# already there: ipset {}", shell_word(name))
        });
    }
    Ok(log)
}

/// Destroys the sets (after the rules naming them are gone). A set still
/// in use by another rule is kept, with a note.
pub fn delete_sets(rs: &RuleSet) -> Result<Vec<String>, RulesError> {
    let mut ipset = open_ipset()?;
    let mut log = Vec::new();
    for &f in &rs.families {
        let name = rs.sets.of(f);
        match destroy_set(&mut ipset, name) {
            Ok(()) => log.push(format!("ipset destroy {}", shell_word(name))),
            Err(e) => log.push(format!("# ipset {name} kept: {e}")),
        }
    }
    Ok(log)
}

/// Destroy, retried briefly: a rule just deleted can hold the set a moment.
fn destroy_set(ipset: &mut Ipset, name: &str) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..20 {
        last = ipset.destroy(name);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipset_errors_say_root_or_modprobe() {
        let denied = ipset_unusable(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            denied.0.contains("as root") && !denied.0.contains("modprobe"),
            "{denied}"
        );
        let missing = ipset_unusable(&io::Error::from_raw_os_error(libc::EPROTONOSUPPORT));
        assert!(missing.0.contains("modprobe"), "{missing}");
    }

    fn ruleset(families: Families) -> RuleSet {
        RuleSet {
            families: families.list(),
            queue: QueueTarget::Num(0),
            control_ports: vec![21],
            sets: SetNames::new("ftpct").expect("names"),
        }
    }

    #[test]
    fn printed_commands() {
        let s = render_apply(&ruleset(Families::All));
        assert!(s.contains("ipset create ftpct hash:ip,port family inet timeout 300 -exist"));
        assert!(s.contains("ipset create ftpct6 hash:ip,port family inet6 timeout 300 -exist"));
        assert!(s.contains(
            "iptables -t raw -A PREROUTING -p tcp -m multiport --ports 21 -m comment --comment 'ftpct: FTP control channel' -j NFQUEUE --queue-num 0 --queue-bypass"
        ), "{s}");
        assert!(s.contains(
            "ip6tables -t raw -A OUTPUT -p tcp --syn -m set --match-set ftpct6 dst,dst -m comment --comment 'ftpct: expected FTP data connections' -j NFQUEUE --queue-num 0 --queue-bypass"
        ), "{s}");
        assert!(s.contains(
            "# iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        ));
        let d = render_delete(&ruleset(Families::V4));
        assert!(d.contains("iptables -t raw -D PREROUTING -m conntrack --ctstate NEW"));
        assert!(d.contains("ipset destroy ftpct"));
        assert!(!d.contains("ip6tables"));
    }

    #[test]
    fn queue_balance_and_many_ports() {
        let mut rs = ruleset(Families::V4);
        rs.queue = parse_balance("0:3").expect("balance");
        rs.control_ports = (2100..2120).collect();
        let rules = rs.rules(Family::V4, false);
        let control: Vec<&Rule> = rules.iter().filter(|r| r.role == Role::Control).collect();
        assert_eq!(control.len(), 4, "20 ports: 2 multiport rules per chain");
        assert!(control[0]
            .spec
            .join(" ")
            .contains("--queue-balance 0:3 --queue-bypass"));
        assert_eq!(rs.queue.queues(), vec![0, 1, 2, 3]);
        assert!(parse_balance("3:3").is_err());
        assert!(parse_balance("x").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_word("dst,dst"), "dst,dst");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn set_names() {
        let s = SetNames::new("ftpct").expect("names");
        assert_eq!(s.for_ip("2001:db8::1".parse().expect("ip")), "ftpct6");
        assert_eq!(s.for_ip("192.0.2.1".parse().expect("ip")), "ftpct");
        assert!(SetNames::new(&"x".repeat(31)).is_err(), "no room for the 6");
    }

    /// iptables as a list of rules, `iptables-save` printing them.
    struct FakeIptables {
        backend: &'static str,
        rules: Vec<(String, Vec<String>)>,
        table: bool,
        user_rule: bool,
        nft_deleted: bool,
    }

    impl FakeIptables {
        fn new(backend: &'static str) -> Self {
            FakeIptables {
                backend,
                rules: Vec::new(),
                table: false,
                user_rule: false,
                nft_deleted: false,
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
                s.push_str(&format!("-A {chain} {}\n", spec.join(" ")));
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
            let pos = self.rules.iter().position(|r| r.0 == chain && r.1 == spec);
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
        // conntrack on; per chain: handshakes within and over the budget,
        // the control channel, the expected SYNs.
        assert_eq!(fw.rules.len(), 9, "{log:?}");
        assert!(fw.rules[0].1.iter().any(|w| w == COMMENT_CT_CREATED));
        change_rules(&mut fw, &rs, Action::Apply).expect("again");
        assert_eq!(fw.rules.len(), 9, "applied twice, added once");
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(fw.rules.is_empty());
        assert!(fw.nft_deleted, "the table ftpct created is removed");
        assert_eq!(fw.save(), "");
    }

    #[test]
    fn an_existing_table_and_its_rules_are_kept() {
        let rs = ruleset(Families::V4);
        let mut fw = FakeIptables::new("legacy");
        fw.table = true;
        fw.user_rule = true;
        let before = fw.save();
        change_rules(&mut fw, &rs, Action::Apply).expect("apply");
        assert!(fw.rules[0].1.iter().any(|w| w == COMMENT_CT));
        change_rules(&mut fw, &rs, Action::Delete).expect("delete");
        assert!(!fw.nft_deleted);
        assert_eq!(fw.save(), before);
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
