//! `ftpct doctor`: what this machine lacks for ftpct, and what to do. It
//! looks at the running kernel (the iptables matches and targets the rules
//! use, conntrack and ctnetlink, NAT, the ipset types), the rules in place
//! and their order, a kernel FTP helper attached to the same traffic, and
//! the queues; each finding says what to do. Read-only: it changes nothing.

mod firewall;
mod kernel;
mod queue;

use std::fmt;

use serde::Serialize;

use crate::netfilter::rules::RuleSet;

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    /// Worth knowing, nothing broken (a queue nobody reads yet).
    Note,
    /// ftpct cannot work as configured until it is fixed.
    Missing,
}

/// One thing looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub state: State,
    pub what: String,
    /// What to do about it (none when it is fine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Self {
        Finding {
            state: State::Ok,
            what: what.into(),
            fix: None,
        }
    }

    pub fn note(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            state: State::Note,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn missing(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            state: State::Missing,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.state {
            State::Ok => "ok     ",
            State::Note => "note   ",
            State::Missing => "MISSING",
        };
        write!(f, "{mark} {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n        -> {fix}")?;
        }
        Ok(())
    }
}

/// Everything `doctor` looks at, in order.
pub fn examine(rs: &RuleSet, queues: &[u16]) -> Vec<Finding> {
    let mut all = kernel::features();
    all.extend(firewall::rules(rs));
    all.extend(queue::queues(queues));
    all
}

/// True if nothing is missing.
pub fn healthy(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.state != State::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_finding_says_what_to_do() {
        let f = Finding::missing("xt_bpf", "modprobe xt_bpf");
        assert_eq!(f.to_string(), "MISSING xt_bpf\n        -> modprobe xt_bpf");
        assert!(!healthy(&[Finding::ok("a"), f]));
        assert!(healthy(&[Finding::ok("a"), Finding::note("b", "c")]));
    }
}
