//! ftpct: a userspace FTP connection-tracking and NAT helper.
//!
//! The engine (`engine`) is sans-IO: packets and time in, verdicts,
//! rewritten packets and kernel actions out. Drivers (`queue` for NFQUEUE,
//! `replay` for pcap files) only move bytes in and out of it.

pub mod grammar;
pub mod tuple;
pub mod ctnetlink;
pub mod ipset;
pub mod netlink;
