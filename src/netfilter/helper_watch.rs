//! Whether the kernel's own FTP helper is attached too: a `CT --helper
//! ftp` rule in the raw table (iptables or ip6tables), or an nft `ct helper
//! set` statement naming an ftp helper (firewalld's ftp service). Both
//! would then rewrite the same announcements and shift sequence numbers
//! twice. Checked at start and now and then; every change is logged.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::netfilter::iptables::Exec;

/// How often the rules are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

/// The lines of an `iptables-save -t raw` or `nft list ruleset` output
/// that attach a kernel FTP helper.
pub fn ftp_helper_rules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| attaches_ftp_helper(l))
        .map(str::to_string)
        .collect()
}

fn attaches_ftp_helper(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let helper_after = |i: usize| words.get(i + 1).is_some_and(|h| names_ftp(h));
    let iptables = words.contains(&"CT")
        && words
            .iter()
            .enumerate()
            .any(|(i, w)| *w == "--helper" && helper_after(i));
    // nft: `ct helper set "ftp"` (or a named object such as "helper-ftp-tcp").
    let nft = words
        .windows(3)
        .enumerate()
        .any(|(i, w)| w == ["ct", "helper", "set"] && helper_after(i + 2));
    iptables || nft
}

/// "ftp", "ftp-2121", "helper-ftp-tcp"; not "tftp".
fn names_ftp(helper: &str) -> bool {
    helper
        .trim_matches('"')
        .split(['-', '_'])
        .any(|part| part.eq_ignore_ascii_case("ftp"))
}

/// Watches for kernel FTP helper rules.
pub struct HelperWatch {
    /// The helper rules found at the last check (None before the first).
    seen: Option<Vec<String>>,
    next: Instant,
}

impl Default for HelperWatch {
    fn default() -> Self {
        HelperWatch {
            seen: None,
            next: Instant::now(),
        }
    }
}

impl HelperWatch {
    /// Looks when a check is due; warns when helper rules appear, says so
    /// when they are gone. Returns the rules found (empty: none).
    pub fn check<E: Exec>(&mut self, exec: &mut E, now: Instant) -> &[String] {
        if now >= self.next {
            self.next = now + CHECK_EVERY;
            let found = Self::look(exec);
            self.report(found);
        }
        self.seen.as_deref().unwrap_or_default()
    }

    fn look<E: Exec>(exec: &mut E) -> Vec<String> {
        let raw = ["-t".to_string(), "raw".to_string()];
        let nft = ["list".to_string(), "ruleset".to_string()];
        let mut found = Vec::new();
        for (tool, args) in [
            ("iptables-save", &raw[..]),
            ("ip6tables-save", &raw[..]),
            ("nft", &nft[..]),
        ] {
            if let Ok(ran) = exec.exec(tool, args) {
                if ran.ok {
                    found.extend(ftp_helper_rules(&ran.stdout));
                }
            }
        }
        // iptables-nft rules are listed by nft too: count each once.
        found.sort();
        found.dedup();
        found
    }

    fn report(&mut self, found: Vec<String>) {
        if self.seen.as_ref() == Some(&found) {
            return;
        }
        if found.is_empty() {
            if self.seen.as_ref().is_some_and(|s| !s.is_empty()) {
                info!("the kernel's FTP helper rules are gone: ftpct alone helps FTP again");
            }
        } else {
            warn!(
                "the kernel's FTP helper is attached to FTP connections too ({}): both would rewrite the same announcements and sequence numbers; remove that rule (or firewalld's ftp service), or stop ftpct",
                found.join("; ")
            );
        }
        self.seen = Some(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::iptables::Ran;
    use std::io;

    /// Each tool prints what the test says (nft: nothing).
    struct Saved(String);

    impl Exec for Saved {
        fn exec(&mut self, tool: &str, _: &[String]) -> io::Result<Ran> {
            let stdout = if tool == "nft" {
                String::new()
            } else {
                self.0.clone()
            };
            Ok(Ran {
                ok: true,
                stdout,
                stderr: String::new(),
            })
        }
    }

    #[test]
    fn helper_rules_are_found_in_both_syntaxes() {
        let save = "*raw\n\
            -A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\n\
            -A PREROUTING -p tcp -m multiport --ports 21 -j NFQUEUE --queue-num 0\n\
            -A PREROUTING -p udp --dport 69 -j CT --helper tftp\n\
            COMMIT\n";
        assert_eq!(
            ftp_helper_rules(save),
            ["-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp"]
        );
        let nft = "table inet firewalld {\n\
            \tchain x {\n\
            \t\ttcp dport 21 ct helper set \"helper-ftp-tcp\"\n\
            \t\tudp dport 5060 ct helper set \"sip\"\n\
            \t}\n}\n";
        assert_eq!(
            ftp_helper_rules(nft),
            ["tcp dport 21 ct helper set \"helper-ftp-tcp\""]
        );
        assert!(ftp_helper_rules("*raw\nCOMMIT\n").is_empty());
    }

    #[test]
    fn a_helper_rule_is_noticed_at_the_next_check() {
        let mut exec = Saved("*raw\nCOMMIT\n".into());
        let mut w = HelperWatch::default();
        let t0 = Instant::now();
        assert!(w.check(&mut exec, t0).is_empty());
        exec.0 = "-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\n".into();
        assert!(
            w.check(&mut exec, t0 + Duration::from_secs(1)).is_empty(),
            "not due yet"
        );
        assert_eq!(w.check(&mut exec, t0 + CHECK_EVERY).len(), 1);
        exec.0 = String::new();
        assert!(w.check(&mut exec, t0 + 2 * CHECK_EVERY).is_empty());
    }
}
