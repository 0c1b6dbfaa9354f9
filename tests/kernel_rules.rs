//! ftpct's rules in a namespace, with iptables-nft and iptables-legacy:
//! one apply runs a handful of processes and loads everything in one
//! transaction; a second changes nothing (`iptables-save -c` byte for byte
//! the same); the built-in chains hold one rule of ftpct's each; an older
//! ftpct's rules in the built-in chains are taken out in the same
//! transaction, another ftpct's stay; `--delete` leaves the tables as they
//! were.

mod root;

use std::collections::HashSet;
use std::path::PathBuf;

use root::kernel_tests_enabled;
use root::netns::{legacy_tools, Netns};

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");

/// The tools ftpct and the test use: PATH as given, or legacy links first.
struct Tools {
    path: String,
    dir: Option<PathBuf>,
}

impl Tools {
    fn nft() -> Tools {
        Tools {
            path: std::env::var("PATH").unwrap_or_default(),
            dir: None,
        }
    }

    fn legacy(tag: &str) -> Tools {
        let dir = std::env::temp_dir().join(format!("ftpct-rules-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        legacy_tools(&dir);
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Tools {
            path,
            dir: Some(dir),
        }
    }

    /// `args` run in `ns` with these tools.
    fn sh(&self, ns: &Netns, args: &[&str]) -> String {
        let path = format!("PATH={}", self.path);
        let mut all = vec!["env", path.as_str()];
        all.extend_from_slice(args);
        ns.sh(&all)
    }

    /// Both families' save with counters, its dated comments left out.
    fn saved(&self, ns: &Netns) -> String {
        ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|tool| {
                self.sh(ns, &[tool, "-c"])
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            })
            .collect()
    }

    /// `ftpct rules ARGS`, under strace: its output and how many processes
    /// it started.
    fn rules_counted(&self, ns: &Netns, args: &[&str]) -> (String, usize) {
        let trace = std::env::temp_dir().join(format!(
            "ftpct-rules-trace-{}-{}",
            std::process::id(),
            ns.name()
        ));
        let trace_arg = trace.display().to_string();
        let mut all = vec!["strace", "-f", "-e", "trace=execve", "-o", &trace_arg];
        all.extend_from_slice(&[FTPCT, "rules"]);
        all.extend_from_slice(args);
        let out = self.sh(ns, &all);
        let text = std::fs::read_to_string(&trace).expect("strace output");
        let _ = std::fs::remove_file(&trace);
        // Each process that ran a program: ftpct's own pid counts once.
        let pids: HashSet<&str> = text
            .lines()
            .filter(|l| l.contains("execve(") && l.trim_end().ends_with("= 0"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        (out, pids.len().saturating_sub(1))
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The rules of raw `chain` that mention ftpct.
fn ftpcts_in(tools: &Tools, ns: &Netns, ip6: bool, chain: &str) -> Vec<String> {
    let tool = if ip6 { "ip6tables" } else { "iptables" };
    tools
        .sh(ns, &[tool, "-t", "raw", "-S", chain])
        .lines()
        .filter(|l| l.contains("ftpct"))
        .map(str::to_string)
        .collect()
}

fn apply_twice_then_delete(tools: &Tools, ns: &Netns, backend: &str) {
    // A user's rule first: ftpct's go after it.
    let user = "iptables -t raw -A PREROUTING -p udp -j CT --notrack";
    tools.sh(ns, &user.split_whitespace().collect::<Vec<_>>());
    if tools.dir.is_some() {
        // The kernel keeps a legacy table once made: make it before.
        tools.sh(ns, &["ip6tables", "-t", "raw", "-S"]);
    }
    let before = tools.saved(ns);
    let (out, processes) = tools.rules_counted(ns, &["--apply"]);
    assert!(out.contains(backend), "{out}");
    assert!(processes <= 10, "{processes} processes:\n{out}");
    assert_eq!(
        out.matches("--noflush: ").count(),
        2,
        "one transaction per family:\n{out}"
    );
    for ip6 in [false, true] {
        for (hook, own) in [("PREROUTING", "ftpct-pre"), ("OUTPUT", "ftpct-out")] {
            let ours = ftpcts_in(tools, ns, ip6, hook);
            assert_eq!(ours.len(), 1, "{hook}: {ours:?}");
            assert!(ours[0].ends_with(&format!("-j {own}")), "{ours:?}");
            assert!(ftpcts_in(tools, ns, ip6, own).len() > 30, "{own}");
        }
    }
    let applied = tools.saved(ns);
    let (again, processes) = tools.rules_counted(ns, &["--apply"]);
    assert!(again.contains("nothing changed"), "{again}");
    assert!(processes <= 4, "{processes} processes:\n{again}");
    assert_eq!(tools.saved(ns), applied, "a second apply changed something");
    tools.sh(ns, &[FTPCT, "rules", "--delete"]);
    assert_eq!(tools.saved(ns), before);
}

#[test]
fn one_apply_in_one_transaction_and_a_second_changes_nothing_nft() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("rules-nft");
    apply_twice_then_delete(&Tools::nft(), &ns, "(nf_tables)");
}

#[test]
fn one_apply_in_one_transaction_and_a_second_changes_nothing_legacy() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("rules-leg");
    apply_twice_then_delete(&Tools::legacy("apply"), &ns, "(legacy)");
}

/// Rules as an older ftpct appended them to the built-in chains (its
/// comments, its control port), and another ftpct's (port 2121).
fn older_layout(tools: &Tools, ns: &Netns) {
    // `-A chain MATCHES -m comment --comment COMMENT TARGET`.
    let rule = |chain: &str, matches: &str, comment: &str, target: &str| {
        let mut args = vec!["iptables", "-t", "raw", "-A", chain];
        args.extend(matches.split_whitespace());
        if !comment.is_empty() {
            args.extend(["-m", "comment", "--comment", comment]);
        }
        args.extend(target.split_whitespace());
        tools.sh(ns, &args);
    };
    let queue = "-j NFQUEUE --queue-num 0 --queue-bypass";
    rule("PREROUTING", "-p udp", "", "-j CT --notrack");
    for chain in ["PREROUTING", "OUTPUT"] {
        for port in ["21", "2121"] {
            let ports = format!("-p tcp -m multiport --ports {port}");
            rule(chain, &ports, "ftpct: FTP control channel", queue);
        }
        let resets = "ftpct: FTP control connections' resets, within the budget";
        let rst = "-p tcp --tcp-flags RST RST -m multiport --ports 21";
        rule(chain, rst, resets, queue);
    }
    let new = "-m conntrack --ctstate NEW";
    rule("PREROUTING", new, "ftpct: turns conntrack on", "");
}

fn migrates(tools: &Tools, ns: &Netns) {
    older_layout(tools, ns);
    let (out, _) = tools.rules_counted(ns, &["--apply", "--family", "4"]);
    assert!(out.contains("rules of an older ftpct"), "{out}");
    let pre = tools.sh(ns, &["iptables", "-t", "raw", "-S", "PREROUTING"]);
    let lines: Vec<&str> = pre.lines().skip(1).collect();
    assert!(lines[0].contains("--notrack"), "{pre}");
    assert_eq!(
        lines.len(),
        3,
        "the user's rule, the other ftpct's, one jump:\n{pre}"
    );
    assert!(lines[1].contains("--ports 2121"), "{pre}");
    assert!(lines[2].ends_with("-j ftpct-pre"), "{pre}");
    let out_chain = tools.sh(ns, &["iptables", "-t", "raw", "-S", "OUTPUT"]);
    assert_eq!(out_chain.lines().count(), 3, "{out_chain}");
    let again = tools.sh(ns, &[FTPCT, "rules", "--apply", "--family", "4"]);
    assert!(again.contains("nothing changed"), "{again}");
}

#[test]
fn an_older_ftpcts_rules_are_migrated_in_the_same_transaction_nft() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("migr-nft");
    migrates(&Tools::nft(), &ns);
}

#[test]
fn an_older_ftpcts_rules_are_migrated_in_the_same_transaction_legacy() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("migr-leg");
    migrates(&Tools::legacy("migr"), &ns);
}

/// The rules without a target work from ftpct's chain: conntrack runs in
/// the namespace (a fresh one runs none until a rule needs it).
#[test]
fn conntrack_runs_with_its_rule_in_ftpcts_chain() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("ct-on");
    ns.add_addr("192.0.2.10/32");
    ns.sh(&[FTPCT, "rules", "--apply", "--family", "4"]);
    ns.run(|| {
        let listener = std::net::TcpListener::bind("192.0.2.10:0").expect("listen");
        let to = listener.local_addr().expect("addr");
        let _c = std::net::TcpStream::connect(to).expect("connect");
    });
    let listed = ns.sh(&["conntrack", "-L", "-p", "tcp"]);
    assert!(
        listed.contains("192.0.2.10"),
        "no conntrack entry:\n{listed}"
    );
}
