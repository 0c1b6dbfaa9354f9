//! `ftpct doctor` in a network namespace of its own: without ftpct's
//! rules it says they are missing and what to do (exit 69); after `ftpct
//! rules --apply` nothing is missing (exit 0); a kernel FTP helper
//! attached in the raw table is named (exit 69); without CAP_NET_ADMIN it
//! exits 77. The kernel's features are those of the machine: the test
//! expects every one ftpct needs (the test machines have them).
//!
//! Needs root (a namespace, iptables); CI runs it as root.

use std::process::{Command, Output};

mod root;
use root::kernel_tests_enabled;
use root::netns::Netns;

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");

fn doctor(ns: &Netns, extra: &[&str]) -> (Option<i32>, String) {
    let out: Output = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(extra)
        .args([FTPCT, "doctor"])
        .output()
        .expect("ftpct doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn doctor_names_what_is_missing_and_what_to_do() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("doc");
    let (code, text) = doctor(&ns, &[]);
    assert_eq!(code, Some(69), "{text}");
    assert!(text.contains("MISSING iptables: "), "{text}");
    assert!(
        text.contains("ftpct's rules are not in place: the jump from PREROUTING"),
        "{text}"
    );
    assert!(text.contains("-> `ftpct rules --apply`"), "{text}");
    for needed in [
        "ok      bpf match",
        "ok      NFQUEUE target",
        "ok      ctnetlink",
        "ok      ipset type hash:ip,port,ip",
    ] {
        assert!(text.contains(needed), "{needed}:\n{text}");
    }
    assert!(
        text.contains("note    queue 0: no program reads it"),
        "{text}"
    );

    ns.sh(&[FTPCT, "rules", "--apply"]);
    let (code, text) = doctor(&ns, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("rules in place, in their chains"), "{text}");
    assert!(!text.contains("MISSING"), "{text}");

    ns.sh(&[
        "iptables",
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "21",
        "-j",
        "CT",
        "--helper",
        "ftp",
    ]);
    let (code, text) = doctor(&ns, &[]);
    assert_eq!(code, Some(69), "{text}");
    assert!(
        text.contains("MISSING iptables: the kernel's FTP helper is attached too"),
        "{text}"
    );

    let nobody = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let (code, text) = doctor(&ns, &nobody);
    assert_eq!(code, Some(77), "{text}");
    assert!(text.contains("ftpct doctor needs CAP_NET_ADMIN"), "{text}");
}
