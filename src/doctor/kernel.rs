//! The kernel's side: the iptables matches and targets ftpct's rules use
//! (the kernel lists those it has, built in or loaded, in
//! /proc/net/ip_tables_matches and _targets; a module not loaded yet but
//! installed is loaded on first use), conntrack, ctnetlink, NAT, NFQUEUE
//! and the two ipset types.

use std::path::Path;

use super::Finding;
use crate::netfilter::ctnetlink::Ctnetlink;
use crate::netfilter::ipset::{Ipset, SetType};

/// What the rules need: (what, listed name, module).
const MATCHES: [(&str, &str, &str); 9] = [
    ("bpf match (selective queueing)", "bpf", "xt_bpf"),
    ("string match (selective queueing)", "string", "xt_string"),
    ("u32 match (selective queueing)", "u32", "xt_u32"),
    (
        "connlabel match (session state in conntrack labels)",
        "connlabel",
        "xt_connlabel",
    ),
    ("set match (ipsets)", "set", "xt_set"),
    ("conntrack match", "conntrack", "xt_conntrack"),
    ("multiport match", "multiport", "xt_multiport"),
    ("limit match", "limit", "xt_limit"),
    ("comment match", "comment", "xt_comment"),
];
const TARGETS: [(&str, &str, &str); 3] = [
    ("NFQUEUE target", "NFQUEUE", "xt_NFQUEUE"),
    ("SET target (FIN and passive notes)", "SET", "xt_set"),
    ("MASQUERADE/SNAT/DNAT targets (NAT)", "MASQUERADE", "nf_nat"),
];

/// Every kernel feature, found or not.
pub fn features() -> Vec<Finding> {
    let matches = listed("/proc/net/ip_tables_matches");
    let targets = listed("/proc/net/ip_tables_targets");
    let mut out = Vec::new();
    for (what, name, module) in MATCHES {
        out.push(extension(what, name, module, &matches));
    }
    for (what, name, module) in TARGETS {
        out.push(extension(what, name, module, &targets));
    }
    out.push(conntrack());
    out.push(ctnetlink());
    out.push(nfqueue());
    out.extend(ipset_types());
    out.push(Finding::ok(
        "TCPMSS target not needed: ftpct lowers the MSS of control handshakes itself",
    ));
    out
}

/// The names a /proc list holds (empty when it cannot be read).
fn listed(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn extension(what: &str, name: &str, module: &str, have: &[String]) -> Finding {
    if have.iter().any(|h| h == name) {
        Finding::ok(format!("{what}: {name}"))
    } else if module_installed(module) {
        Finding::ok(format!(
            "{what}: {module} not loaded yet, installed (loaded on first use)"
        ))
    } else {
        Finding::missing(
            format!("{what}: {name} unknown to the kernel, module {module} not installed"),
            format!(
                "install a kernel with {module} (CONFIG_NETFILTER_XT_*), or `modprobe {module}`"
            ),
        )
    }
}

/// Whether /lib/modules of the running kernel has the module (as a file).
fn module_installed(module: &str) -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dep = Path::new("/lib/modules")
        .join(release.trim())
        .join("modules.dep");
    std::fs::read_to_string(dep).is_ok_and(|text| {
        text.lines().any(|l| {
            let file = l.split(':').next().unwrap_or_default();
            let base = file.rsplit('/').next().unwrap_or_default();
            base.split('.').next() == Some(module)
        })
    })
}

fn conntrack() -> Finding {
    if Path::new("/proc/sys/net/netfilter/nf_conntrack_max").exists() {
        Finding::ok("conntrack (nf_conntrack)")
    } else {
        Finding::missing(
            "conntrack (nf_conntrack) not loaded",
            "`modprobe nf_conntrack` (a stateful rule loads it too)",
        )
    }
}

fn ctnetlink() -> Finding {
    match Ctnetlink::open() {
        Ok(_) => Finding::ok("ctnetlink (nf_conntrack_netlink)"),
        Err(e) => Finding::missing(
            format!("ctnetlink: {e}"),
            "`modprobe nf_conntrack_netlink` (CONFIG_NF_CT_NETLINK)",
        ),
    }
}

fn nfqueue() -> Finding {
    if Path::new(crate::netfilter::queue_stats::PROC_PATH).exists() {
        Finding::ok("NFQUEUE (nfnetlink_queue)")
    } else {
        Finding::missing(
            "NFQUEUE (nfnetlink_queue) not loaded",
            "`modprobe nfnetlink_queue` (CONFIG_NETFILTER_NETLINK_QUEUE)",
        )
    }
}

fn ipset_types() -> Vec<Finding> {
    let mut ipset = match Ipset::open() {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::missing(
                format!("ipset: {e}"),
                "`modprobe ip_set` (CONFIG_IP_SET)",
            )]
        }
    };
    [SetType::Dst, SetType::Guard]
        .into_iter()
        .map(|t| match ipset.type_revision(false, t) {
            Ok(rev) => Finding::ok(format!("ipset type {} (revision {rev})", t.name())),
            Err(e) => Finding::missing(
                format!("ipset type {}: {e}", t.name()),
                format!(
                    "`modprobe ip_set_{}` (CONFIG_IP_SET_HASH_*)",
                    t.name().replace([':', ','], "")
                ),
            ),
        })
        .collect()
}
