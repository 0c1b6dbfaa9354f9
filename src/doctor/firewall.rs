//! The rules: ftpct's, all there and in their order, and no kernel FTP
//! helper attached to the same connections (both would rewrite the same
//! announcements).

use super::Finding;
use crate::netfilter::helper_watch::ftp_helper_rules;
use crate::netfilter::iptables::{self, RulesFound};
use crate::netfilter::rules::RuleSet;

pub fn rules(rs: &RuleSet) -> Vec<Finding> {
    match iptables::check_rules(&mut iptables::System, rs) {
        Ok(found) => found.iter().flat_map(family).collect(),
        Err(e) => vec![Finding::missing(
            format!("the rules cannot be read: {e}"),
            "install iptables (iptables-nft or iptables-legacy), run as root",
        )],
    }
}

fn family(found: &RulesFound) -> Vec<Finding> {
    let tool = found.family.tool();
    let mut out = vec![placed(found, tool)];
    let helpers = ftp_helper_rules(&found.save);
    out.push(if helpers.is_empty() {
        Finding::ok(format!("{tool}: no kernel FTP helper attached in the raw table"))
    } else {
        Finding::missing(
            format!("{tool}: the kernel's FTP helper is attached too: {}", helpers.join("; ")),
            "remove those rules (or firewalld's ftp service): the helper and ftpct would both rewrite",
        )
    });
    out
}

fn placed(found: &RulesFound, tool: &str) -> Finding {
    match found.gone.is_empty() {
        false => Finding::missing(
            format!(
                "{tool}: ftpct's rules are not in place: {}",
                found.gone.join("; ")
            ),
            "`ftpct rules --apply` (the unit does it at start; `ftpct run` puts them back)",
        ),
        true => Finding::ok(format!(
            "{tool}: ftpct's {} rules in place, in their chains",
            found.wanted
        )),
    }
}
