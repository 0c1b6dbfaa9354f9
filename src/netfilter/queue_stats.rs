//! The kernel's figures for each NFQUEUE queue bound in this network
//! namespace, from /proc/net/netfilter/nfnetlink_queue: packets waiting
//! for a verdict, packets dropped because the queue was full (without
//! fail-open) or because ftpct's socket could not take them, and the last
//! packet id handed out (one per packet sent to user space).

use std::io;

pub const PROC_PATH: &str = "/proc/net/netfilter/nfnetlink_queue";

/// One line of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub queue: u16,
    /// Packets queued and not given a verdict yet.
    pub waiting: u64,
    /// Dropped: the queue was full (fail-open not set).
    pub dropped: u64,
    /// Not delivered to the socket (its buffer was full); with fail-open
    /// they passed uninspected instead and are not counted here.
    pub user_dropped: u64,
    /// Packet ids handed out: packets sent (or tried) to user space.
    pub sent: u64,
}

/// Reads the file; queues not bound are absent.
pub fn read() -> io::Result<Vec<QueueStats>> {
    std::fs::read_to_string(PROC_PATH).map(|text| parse(&text))
}

/// Columns: queue, peer portid, waiting, copy mode, copy range, dropped,
/// user dropped, id sequence, 1. Lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<QueueStats> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<QueueStats> {
    let cols: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [queue, _portid, waiting, _mode, _range, dropped, user_dropped, sent, ..] = cols[..] else {
        return None;
    };
    Some(QueueStats {
        queue: u16::try_from(queue).ok()?,
        waiting,
        dropped,
        user_dropped,
        sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_lines() {
        let text = "    0 3141592     2 2 65531     7     1      1234  1\n\
                    65535   8      0 2 65531     0     0         0  1\ngarbage\n";
        assert_eq!(
            parse(text),
            vec![
                QueueStats {
                    queue: 0,
                    waiting: 2,
                    dropped: 7,
                    user_dropped: 1,
                    sent: 1234
                },
                QueueStats {
                    queue: 65535,
                    ..QueueStats::default()
                }
            ]
        );
    }
}
