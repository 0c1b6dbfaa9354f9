//! The sections of the man pages that clap cannot write from the command
//! line's definition: FILES, SIGNALS, EXIT STATUS, EXAMPLES, SEE ALSO, in
//! roff. Written by hand here, beside the pages' generator, so that a page
//! and its command cannot drift apart unnoticed (the packaged pages are
//! checked against what `ftpct generate man` writes).

use super::exit;

/// The files every page names.
const FILES: [(&str, &str); 4] = [
    (
        "/etc/ftpct/ftpct.toml",
        "The configuration of rules and run (and where status asks); see ftpct.toml(5). An absent file means the defaults.",
    ),
    (
        "/usr/lib/systemd/system/ftpct.service",
        "The unit: applies the rules, then runs the helper as a dynamic user with CAP_NET_ADMIN and CAP_NET_RAW.",
    ),
    (
        "@ftpct-status",
        "The abstract unix socket status asks, one per network namespace (status_socket in the file).",
    ),
    (
        "/proc/net/netfilter/nfnetlink_queue",
        "The kernel's figures of each queue, which the metrics and doctor read.",
    ),
];

/// The pages with signals to tell about: the daemon and the monitor.
const SIGNALS: &str = "SIGTERM, SIGINT: stop cleanly (queues released, the ipset entries of this run removed; the rules stay, so packets pass unhelped with --queue-bypass). SIGHUP: run reads the policy (min_data_port, allow_fxp, expect_timeout, max_expect_per_session) from the configuration again; a file in error keeps the policy in force. The monitor stops on SIGHUP too.";

/// Command lines worth copying, by page name.
fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "ftpct" => &[
            ("ftpct rules --apply && ftpct run", "Help FTP on this gateway (what the unit does)."),
            ("ftpct doctor", "What this machine lacks for ftpct, and what to do."),
            ("ftpct status", "What the running helper holds now."),
        ],
        "ftpct-doctor" => &[
            ("ftpct doctor", "Say what is missing and what to do; exit 0 when nothing is."),
            ("ftpct doctor --json", "One JSON object per finding, for scripts."),
        ],
        "ftpct-run" => &[
            ("systemctl enable --now ftpct", "Under systemd, as packaged."),
            ("ftpct run -v --metrics 127.0.0.1:9641", "In the foreground, every packet logged, metrics served."),
            ("systemctl reload ftpct", "Read the policy again (SIGHUP)."),
        ],
        "ftpct-rules" => &[
            ("ftpct rules", "Print the rules as a shell script, change nothing."),
            ("ftpct rules --apply", "Add the rules and ipsets that are missing."),
            ("ftpct rules --delete", "Remove them."),
        ],
        "ftpct-status" => &[
            ("ftpct status", "Control connections, pending expectations, counters."),
            ("ip netns exec gw ftpct status --json", "The daemon of network namespace gw, as JSON."),
        ],
        "ftpct-replay" => &[(
            "ftpct replay inside.pcap --snat 192.0.2.0/24=198.51.100.1 --out outside.pcap",
            "What ftpct decides on a capture taken inside a MASQUERADE gateway, and the far side it would send.",
        )],
        "ftpct-monitor" => &[(
            "ftpct monitor --interface eth1 --snat 192.0.2.0/24=198.51.100.1",
            "Watch the inside interface read-only and print the decisions.",
        )],
        "ftpct-config" | "ftpct-config-check" => &[
            ("ftpct config check", "The configuration in force, or the line and key of a mistake."),
            ("ftpct config check --config new.toml", "Check a file before it is installed."),
        ],
        _ => &[],
    }
}

/// The roff of the extra sections of page `page` (e.g. `ftpct-run`).
pub fn extra_sections(page: &str) -> String {
    let mut out = String::new();
    section(&mut out, "EXIT STATUS");
    for (code, meaning) in exit::TABLE {
        item(&mut out, &code.to_string(), meaning);
    }
    if matches!(page, "ftpct" | "ftpct-run" | "ftpct-monitor") {
        section(&mut out, "SIGNALS");
        paragraph(&mut out, SIGNALS);
    }
    section(&mut out, "FILES");
    for (file, what) in FILES {
        item(&mut out, file, what);
    }
    let examples = examples(page);
    if !examples.is_empty() {
        section(&mut out, "EXAMPLES");
        for (command, what) in examples {
            paragraph(&mut out, what);
            out.push_str(".RS 4\n.nf\n");
            out.push_str(&escape(command));
            out.push_str("\n.fi\n.RE\n");
        }
    }
    section(&mut out, "SEE ALSO");
    paragraph(
        &mut out,
        "ftpct(8), ftpct.toml(5), iptables(8), ipset(8), conntrack(8), systemctl(1)",
    );
    out
}

fn section(out: &mut String, name: &str) {
    out.push_str(".SH \"");
    out.push_str(name);
    out.push_str("\"\n");
}

fn item(out: &mut String, tag: &str, text: &str) {
    out.push_str(".TP\n\\fB");
    out.push_str(&escape(tag));
    out.push_str("\\fR\n");
    out.push_str(&escape(text));
    out.push('\n');
}

fn paragraph(out: &mut String, text: &str) {
    out.push_str(".PP\n");
    out.push_str(&escape(text));
    out.push('\n');
}

/// Text as roff shows it: backslashes and hyphens escaped, a line never
/// taken for a request.
pub fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_exit_status_files_and_see_also() {
        for page in ["ftpct", "ftpct-run", "ftpct-rules", "ftpct-status"] {
            let s = extra_sections(page);
            for name in ["EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"] {
                assert!(s.contains(&format!(".SH \"{name}\"")), "{page}: {name}");
            }
            assert!(s.contains("\\fB77\\fR"), "{s}");
        }
        assert!(extra_sections("ftpct-run").contains(".SH \"SIGNALS\""));
        assert!(!extra_sections("ftpct-rules").contains(".SH \"SIGNALS\""));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(escape("--apply"), "\\-\\-apply");
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a\\b"), "a\\eb");
    }
}
