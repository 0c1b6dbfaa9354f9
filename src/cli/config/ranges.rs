//! The range of every number in the configuration, in one table, and the
//! one check of a configuration against it: the file and the flags alike
//! (the flags are applied over the file first, then this runs).
//!
//! A hostile or mistaken value is refused before anything starts: an
//! unbounded `max_line` lets one client's unterminated line grow the
//! daemon without end, `expect_timeout = 0` or `max_expect_per_session =
//! 0` break every transfer, a huge `expect_timeout` overflows the clock,
//! `min_data_port = 0` opens privileged ports, `queues = "0:65535"` would
//! start 65,536 threads.

use std::fmt;

use super::Settings;

/// The bounds of one number: `min..=max`, with the file's key and the
/// command line's flag that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The key in the file (`policy.` for the `[policy]` table).
    pub key: &'static str,
    /// The flag of `ftpct run` (or `rules`) that sets it, if any.
    pub flag: Option<&'static str>,
    /// The part of the value that is bounded ("port" of an address,
    /// "number of queues"), or "" for the value itself.
    pub part: &'static str,
    pub min: u64,
    pub max: u64,
    /// What the number counts ("bytes", "seconds"...), for the messages.
    pub unit: &'static str,
}

impl Bounds {
    /// "MIN to MAX", as the help texts, the README and the shipped file
    /// write it.
    pub fn span(&self) -> String {
        format!("{} to {}", self.min, self.max)
    }

    /// "MIN to MAX UNIT" (the unit if any).
    pub fn described(&self) -> String {
        match self.unit {
            "" => self.span(),
            unit => format!("{} {unit}", self.span()),
        }
    }

    /// "[PART ]MIN to MAX[ UNIT]": the range of what a key holds.
    pub fn of_what(&self) -> String {
        match self.part {
            "" => self.described(),
            part => format!("{part} {}", self.described()),
        }
    }

    fn check(&self, value: u64) -> Result<(), RangeError> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(RangeError::Outside {
                bounds: *self,
                value,
            })
        }
    }

    /// "key (--flag)", or the key alone.
    fn name(&self) -> String {
        match self.flag {
            Some(flag) => format!("{} ({flag})", self.key),
            None => self.key.to_string(),
        }
    }
}

const fn bounds(
    key: &'static str,
    flag: Option<&'static str>,
    min: u64,
    max: u64,
    unit: &'static str,
) -> Bounds {
    Bounds {
        key,
        flag,
        part: "",
        min,
        max,
        unit,
    }
}

const fn of_part(b: Bounds, part: &'static str) -> Bounds {
    Bounds { part, ..b }
}

/// How many queues `run` binds: a thread and a 16 MiB socket buffer each.
pub const QUEUE_COUNT: Bounds = of_part(
    bounds("queues", Some("--queues"), 1, 64, ""),
    "number of queues",
);
/// Each control port: 0 is no port.
pub const CONTROL_PORT: Bounds = of_part(
    bounds("control_ports", Some("--control-ports"), 1, 65535, ""),
    "port",
);
/// How many control ports (the rules hold 15 per multiport match).
pub const CONTROL_PORT_COUNT: Bounds = of_part(
    bounds("control_ports", Some("--control-ports"), 1, 64, ""),
    "number of ports",
);
/// Seconds between `state:` lines; 0: never; at most a day.
pub const STATE_INTERVAL: Bounds = bounds(
    "state_interval",
    Some("--state-interval"),
    0,
    86_400,
    "seconds",
);
/// The metrics endpoint's port: 0 would be a port nobody knows.
pub const METRICS_PORT: Bounds =
    of_part(bounds("metrics", Some("--metrics"), 1, 65535, ""), "port");
/// SCHED_RR priorities are 1 to 99; 0 keeps the normal scheduler.
pub const REALTIME_PRIORITY: Bounds =
    bounds("realtime_priority", Some("--realtime-priority"), 0, 99, "");
/// Microseconds of polling an empty queue: 10 ms at most.
pub const BUSY_POLL: Bounds = bounds("busy_poll", Some("--busy-poll"), 0, 10_000, "microseconds");
/// Bytes of one control line: at least the longest announcement (an EPRT
/// with a full IPv6 address is 62 bytes, a 227 with its text about 60)
/// with room; at most twice a command naming a 4096-byte path. Each
/// direction of each session buffers up to this much.
pub const MAX_LINE: Bounds = bounds("max_line", Some("--max-line"), 128, 8192, "bytes");
/// ftpct's 64 label bits must fit conntrack's 128.
pub const LABEL_BIT: Bounds = bounds("label_bit", None, 0, 64, "");
/// Data ports below 1024 are the privileged services a bounce attacks.
pub const MIN_DATA_PORT: Bounds = bounds(
    "policy.min_data_port",
    Some("--min-data-port"),
    1024,
    65535,
    "",
);
/// Seconds a pending data connection waits: at least one, at most an hour
/// (the kernel's helper: 5 minutes).
pub const EXPECT_TIMEOUT: Bounds = bounds(
    "policy.expect_timeout",
    Some("--expect-timeout"),
    1,
    3600,
    "seconds",
);
/// Pending data connections per control connection.
pub const MAX_EXPECT_PER_SESSION: Bounds = bounds(
    "policy.max_expect_per_session",
    Some("--max-expect-per-session"),
    1,
    1024,
    "",
);

/// Every row of the table.
pub const TABLE: [Bounds; 12] = [
    QUEUE_COUNT,
    CONTROL_PORT,
    CONTROL_PORT_COUNT,
    STATE_INTERVAL,
    METRICS_PORT,
    REALTIME_PRIORITY,
    BUSY_POLL,
    MAX_LINE,
    LABEL_BIT,
    MIN_DATA_PORT,
    EXPECT_TIMEOUT,
    MAX_EXPECT_PER_SESSION,
];

/// The row of a number as the file writes its key (`max_line`,
/// `policy.expect_timeout`); for a list, the range of its items.
pub fn of_key(key: &str) -> Option<Bounds> {
    TABLE.iter().copied().find(|b| b.key == key)
}

/// A value outside the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// A number outside `bounds`.
    Outside { bounds: Bounds, value: u64 },
    /// A list that names the same value twice.
    Repeated { bounds: Bounds, value: u64 },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Outside { bounds, value } => {
                let (name, range) = (bounds.name(), bounds.described());
                match bounds.part {
                    "" => write!(f, "{name} = {value}: out of range, {range}"),
                    part => write!(f, "{name}: {part} {value}: out of range, {range}"),
                }
            }
            RangeError::Repeated { bounds, value } => {
                write!(f, "{}: {value} is listed twice", bounds.name())
            }
        }
    }
}

impl std::error::Error for RangeError {}

/// Checks every number of `s` against the table.
pub fn check(s: &Settings) -> Result<(), RangeError> {
    for (bounds, value) in numbers(s) {
        bounds.check(value)?;
    }
    for &port in &s.control_ports {
        CONTROL_PORT.check(port.into())?;
    }
    no_repeats(CONTROL_PORT, &s.control_ports)
}

/// The numbers of `s`, each with its row.
fn numbers(s: &Settings) -> Vec<(Bounds, u64)> {
    let p = &s.policy;
    let mut all = vec![
        (QUEUE_COUNT, wide(s.queues.list().len())),
        (CONTROL_PORT_COUNT, wide(s.control_ports.len())),
        (STATE_INTERVAL, s.state_interval),
        (REALTIME_PRIORITY, s.realtime_priority.into()),
        (BUSY_POLL, s.busy_poll),
        (MAX_LINE, wide(s.max_line)),
        (LABEL_BIT, s.label_bit.into()),
        (MIN_DATA_PORT, p.min_data_port.into()),
        (EXPECT_TIMEOUT, p.expect_timeout),
        (MAX_EXPECT_PER_SESSION, wide(p.max_expect_per_session)),
    ];
    if let Some(addr) = s.metrics {
        all.push((METRICS_PORT, addr.port().into()));
    }
    all
}

fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn no_repeats(bounds: Bounds, list: &[u16]) -> Result<(), RangeError> {
    let mut seen = std::collections::BTreeSet::new();
    match list.iter().find(|&&v| !seen.insert(v)) {
        Some(&v) => Err(RangeError::Repeated {
            bounds,
            value: v.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_in_range() {
        assert_eq!(check(&Settings::default()), Ok(()));
    }

    #[test]
    fn keys_are_found_and_spans_written() {
        assert_eq!(of_key("max_line"), Some(MAX_LINE));
        assert_eq!(of_key("policy.expect_timeout"), Some(EXPECT_TIMEOUT));
        assert_eq!(of_key("expect_timeout"), None);
        assert_eq!(MAX_LINE.span(), "128 to 8192");
        assert_eq!(of_key("control_ports"), Some(CONTROL_PORT));
        assert_eq!(CONTROL_PORT.of_what(), "port 1 to 65535");
    }

    #[test]
    fn the_error_names_key_flag_value_and_range() {
        let s = Settings {
            max_line: 4_294_967_295,
            ..Settings::default()
        };
        let e = check(&s).expect_err("too long");
        assert_eq!(
            e,
            RangeError::Outside {
                bounds: MAX_LINE,
                value: 4_294_967_295
            }
        );
        assert_eq!(
            e.to_string(),
            "max_line (--max-line) = 4294967295: out of range, 128 to 8192 bytes"
        );
    }

    #[test]
    fn repeated_and_zero_ports_are_refused() {
        let s = Settings {
            control_ports: vec![21, 21, 0],
            ..Settings::default()
        };
        assert!(matches!(
            check(&s),
            Err(RangeError::Outside {
                bounds: CONTROL_PORT,
                value: 0
            })
        ));
        let s = Settings {
            control_ports: vec![21, 2121, 21],
            ..Settings::default()
        };
        let e = check(&s).expect_err("repeated");
        assert_eq!(
            e,
            RangeError::Repeated {
                bounds: CONTROL_PORT,
                value: 21
            }
        );
        assert!(e.to_string().contains("21 is listed twice"), "{e}");
        let s = Settings {
            control_ports: Vec::new(),
            ..Settings::default()
        };
        assert!(matches!(
            check(&s),
            Err(RangeError::Outside {
                bounds: CONTROL_PORT_COUNT,
                value: 0
            })
        ));
    }

    #[test]
    fn the_metrics_port_is_checked_only_when_given() {
        let s = Settings {
            metrics: Some("127.0.0.1:0".parse().expect("addr")),
            ..Settings::default()
        };
        let e = check(&s).expect_err("port 0");
        assert_eq!(
            e.to_string(),
            "metrics (--metrics): port 0: out of range, 1 to 65535"
        );
    }
}
