//! Every rule a refusal can name, so that `ftpct_refusals_total` has a
//! series per rule from the start (a rate over a series that appears at
//! its first event misses that event, and an alert cannot tell "never"
//! from "not scraped").

/// What `Refusal::rule()` can return.
pub const REFUSAL_RULES: [&str; 12] = [
    "foreign-address",
    "privileged-port",
    "no-free-port",
    "global-expect-limit",
    "expectation-taken",
    "split-line",
    "family-mismatch",
    "unsolicited-reply",
    "pipelined-passive",
    "too-many-edits-in-flight",
    "segment-too-long",
    "edit-while-unacknowledged",
];

#[cfg(test)]
mod tests {
    use super::REFUSAL_RULES;
    use ftpct_engine::expect::ExpectRefusal;
    use ftpct_engine::policy::Refusal;
    use std::net::{IpAddr, Ipv4Addr};

    /// One refusal of each kind. The match has no wildcard: a new kind
    /// does not compile until it is listed here, and then in the table.
    fn one_of_each() -> Vec<Refusal> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let all = vec![
            Refusal::ForeignAddress {
                announced: ip,
                expected: ip,
            },
            Refusal::PrivilegedPort { port: 25 },
            Refusal::NoFreePort { port: 40000 },
            Refusal::Limit(ExpectRefusal::GlobalLimit),
            Refusal::Limit(ExpectRefusal::Taken),
            Refusal::SplitLine,
            Refusal::FamilyMismatch,
            Refusal::Unsolicited,
            Refusal::Pipelined,
            Refusal::TooManyEdits,
            Refusal::SegmentTooLong,
            Refusal::EditInFlight,
        ];
        for r in &all {
            match r {
                Refusal::ForeignAddress { .. }
                | Refusal::PrivilegedPort { .. }
                | Refusal::NoFreePort { .. }
                | Refusal::Limit(ExpectRefusal::GlobalLimit | ExpectRefusal::Taken)
                | Refusal::SplitLine
                | Refusal::FamilyMismatch
                | Refusal::Unsolicited
                | Refusal::Pipelined
                | Refusal::TooManyEdits
                | Refusal::SegmentTooLong
                | Refusal::EditInFlight => {}
            }
        }
        all
    }

    #[test]
    fn the_table_names_every_rule_once() {
        let rules: Vec<&str> = one_of_each().iter().map(Refusal::rule).collect();
        assert_eq!(rules, REFUSAL_RULES);
    }
}
