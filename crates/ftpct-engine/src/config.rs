//! The engine's settings.

use std::time::Duration;

use crate::command::Mark;
use crate::policy::Policy;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub control_ports: Vec<u16>,
    pub max_line: usize,
    pub expect_timeout: Duration,
    pub max_expect_per_session: usize,
    pub max_expect_total: usize,
    pub max_flows: usize,
    /// Flows not established yet (see `flow`), at most; the oldest makes
    /// room for a new one.
    pub max_unestablished: usize,
    pub idle_timeout: Duration,
    /// Idle time after which an unestablished flow goes (conntrack's
    /// SYN_SENT timeout).
    pub unestablished_timeout: Duration,
    /// How long a flow stays after FIN both ways (late ACKs need fix-ups).
    pub close_linger: Duration,
    pub policy: Policy,
    /// Report every complete line as an event (replay, debug logs).
    pub report_lines: bool,
    /// `--mark`: conntrack mark bits of data connections.
    pub data_mark: Option<Mark>,
    /// Hand each NATed control connection's sequence fix-ups to the kernel
    /// ([`Command::AdoptControl`](crate::command::Command::AdoptControl), [`Command::SetSeqAdj`](crate::command::Command::SetSeqAdj)) instead of
    /// applying them to every packet (the live daemon; never the replay).
    pub kernel_fixups: bool,
    /// Keep each session's state in its conntrack entry (see `kept`; the
    /// live daemon), or not at all (the replay).
    pub keep_state: bool,
    /// Selective queueing (the live default): the kernel queues only the
    /// segments that can hold part of an announcement, AUTH or a
    /// multi-line opener, and those that do not end a line and their
    /// continuations (the guard ipset, [`Command::Guard`](crate::command::Command::Guard)). Bytes that pass
    /// unseen between two queued segments are complete lines, so a gap
    /// met between lines is no loss; replies are paired with the latest
    /// passive request (see `dialogue`). False: every control packet is
    /// queued (`--queue-all`, the replay).
    pub selective: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control_ports: vec![21],
            max_line: 1024,
            expect_timeout: Duration::from_secs(300),
            max_expect_per_session: 16,
            max_expect_total: 100_000,
            max_flows: 100_000,
            max_unestablished: 8192,
            idle_timeout: Duration::from_secs(7200),
            unestablished_timeout: Duration::from_secs(120),
            close_linger: Duration::from_secs(10),
            policy: Policy::default(),
            report_lines: false,
            data_mark: None,
            kernel_fixups: false,
            keep_state: false,
            selective: false,
        }
    }
}
