//! The kernel's interfaces ftpct uses: netlink sockets, conntrack
//! (ctnetlink), ipset, and the iptables rules that feed the queues.

pub mod bpf;
#[cfg(test)]
mod chain_model;
pub mod chains;
pub mod conntrack_lookup;
pub mod ct_events;
pub mod ctnetlink;
pub mod ctnetlink_errors;
pub mod error;
pub mod event_filter;
pub mod family;
pub mod guard_entries;
pub mod helper_watch;
pub mod ipset;
pub mod ipset_errors;
pub mod iptables;
pub mod kept_labels;
pub mod loaded;
pub mod netlink;
pub mod nfqueue;
pub mod op_errors;
pub mod op_requests;
pub mod programs;
pub mod queue_stats;
pub mod request;
pub mod rule_watch;
pub mod rules;
pub mod rules_error;
pub mod ruleset_events;
pub mod sets;
pub mod shell_words;
pub mod unwaited;

pub use error::Error;
