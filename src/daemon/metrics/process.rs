//! The process's own figures under the names every Prometheus client
//! uses (`process_*`), so that dashboards made for them work: CPU time,
//! resident memory, open files and their limit, start time. CPU and the
//! limit come from system calls; memory and open files from /proc/self,
//! and are left out when /proc is not mounted (ProtectProc=, a tmpfs).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What a scrape reads about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// The figures now.
pub fn read() -> Figures {
    Figures {
        cpu_seconds: cpu_seconds(),
        resident_bytes: std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| resident_pages(&s))
            .map(|pages| pages.saturating_mul(page_size())),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: max_fds(),
    }
}

/// The start of the process as a Unix time, taken once by the caller.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes the figures, and `started` (Unix seconds).
pub fn encode(enc: &mut DescriptorEncoder, f: &Figures, started: f64) -> std::fmt::Result {
    let cpu = ConstCounter::new(f.cpu_seconds);
    cpu.encode(enc.encode_descriptor(
        "process_cpu_seconds",
        "User and system CPU time spent, in seconds",
        None,
        cpu.metric_type(),
    )?)?;
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size, in bytes",
            f.resident_bytes,
        ),
        ("process_open_fds", "Open file descriptors", f.open_fds),
        (
            "process_max_fds",
            "The limit of open file descriptors (RLIMIT_NOFILE)",
            f.max_fds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
    }
    let start = ConstGauge::new(started);
    start.encode(enc.encode_descriptor(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds",
        None,
        start.metric_type(),
    )?)
}

/// The second field of /proc/self/statm: resident pages.
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`, which outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_resident_pages() {
        assert_eq!(resident_pages("1024 300 100 10 0 200 0\n"), Some(300));
        assert_eq!(resident_pages("garbage"), None);
        assert_eq!(resident_pages(""), None);
    }

    #[test]
    fn this_process_has_figures() {
        let f = read();
        assert!(f.cpu_seconds >= 0.0);
        assert!(f.resident_bytes.is_some_and(|b| b > 0), "{f:?}");
        assert!(f.open_fds.is_some_and(|n| n >= 3), "{f:?}");
        assert!(f.max_fds.is_some_and(|n| n >= 3), "{f:?}");
    }
}
