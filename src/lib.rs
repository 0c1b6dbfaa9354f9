//! ftpct: a userspace FTP connection-tracking and NAT helper.
//!
//! The engine (`engine`) is sans-IO: packets and time in, verdicts,
//! rewritten packets and kernel actions out. Drivers (`queue` for NFQUEUE,
//! `replay` for pcap files) only move bytes in and out of it.

pub mod capture;
pub mod ctnetlink;
pub mod daemon;
pub mod ipset;
pub mod live_nat;
pub mod logging;
pub mod netlink;
pub mod replay;
pub mod report;
pub mod rule_watch;
pub mod rules;
