//! ftpct: a userspace FTP connection-tracking and NAT helper for Linux.
//!
//! The decisions are made by the sans-IO engine (the `ftpct-engine`
//! crate). This crate holds what carries them out:
//! - `driver`: the one way the engine is driven (inputs fed, questions
//!   answered, commands carried out), shared by the daemon, the replay
//!   and the monitor;
//! - `netfilter`: netlink, ctnetlink, ipset and the iptables rules;
//! - `daemon`: the NFQUEUE workers, signals, and the executor of the
//!   engine's commands;
//! - `offline`: pcap reading and writing, and replay through the engine;
//! - `doctor`: what the machine lacks for ftpct;
//! - `cli`: log output and the replay report;
//! - `log_batch`: `ftpct run`'s log lines written in batches;
//! - `ladder`: the HTML ladder diagram of `--html`.

pub mod cli;
pub mod daemon;
pub mod doctor;
pub mod driver;
pub mod ladder;
pub mod log_batch;
pub mod monitor;
pub mod netfilter;
pub mod offline;
