//! The queues: whether a program reads them (the kernel lists a queue
//! once a socket is bound to it) and what the kernel dropped.

use super::Finding;
use crate::netfilter::queue_stats;

pub fn queues(wanted: &[u16]) -> Vec<Finding> {
    let Ok(bound) = queue_stats::read() else {
        return Vec::new();
    };
    wanted
        .iter()
        .map(|&q| match bound.iter().find(|s| s.queue == q) {
            None => Finding::note(
                format!("queue {q}: no program reads it"),
                "start ftpct (`systemctl start ftpct`, or `ftpct run`); meanwhile its packets pass unhelped",
            ),
            Some(s) if s.user_dropped > 0 || s.dropped > 0 => Finding::note(
                format!(
                    "queue {q}: read; the kernel dropped {} (queue full) and {} (socket full) packets",
                    s.dropped, s.user_dropped
                ),
                "see ftpct_queue_*_total in the metrics: the machine may be too busy (--busy-poll, --realtime-priority, more --queues)",
            ),
            Some(s) => Finding::ok(format!(
                "queue {q}: read, {} waiting, nothing dropped",
                s.waiting
            )),
        })
        .collect()
}
