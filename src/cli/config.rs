//! The one configuration of `ftpct rules` and `ftpct run`:
//! `/etc/ftpct/ftpct.toml` (or `--config PATH`), then the flags over it.
//!
//! An absent default file means the defaults, an absent `--config PATH`
//! is an error; a malformed file is an error that names the file, the
//! line, the column and the key; every number has a range (`ranges`),
//! checked once the flags are over the file. `ftpct config check` prints
//! the configuration in force, in the file's own syntax.

mod describe;
mod error;
pub mod ranges;

pub use error::ConfigError;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ftpct_engine::command::Mark;
use ftpct_engine::engine::Config;
use ftpct_engine::policy::Policy;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::daemon::status_address::StatusAddress;
use crate::netfilter::kept_labels::DEFAULT_LABEL_BASE;
use crate::netfilter::rules::{QueueTarget, DEFAULT_SET};

/// Where the configuration is read from unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/ftpct/ftpct.toml";

/// NFQUEUE queue numbers: `N`, `FIRST:LAST` or `N,M,...` (flags and file
/// alike; the file also takes a number or a list of numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues(Vec<u16>);

impl Queues {
    /// Sorted, without duplicates; never empty.
    pub fn list(&self) -> &[u16] {
        &self.0
    }

    fn new(mut nums: Vec<u16>) -> Result<Self, String> {
        nums.sort_unstable();
        nums.dedup();
        if nums.is_empty() {
            return Err("no queue given".into());
        }
        Ok(Queues(nums))
    }

    /// What the iptables rules send to: one queue, or a balance over
    /// consecutive ones (iptables cannot spread over a gap).
    pub fn target(&self) -> Result<QueueTarget, ConfigError> {
        let (first, last) = match (self.0.first(), self.0.last()) {
            (Some(&f), Some(&l)) => (f, l),
            _ => return Err(ConfigError::Queues(self.joined())),
        };
        if first == last {
            Ok(QueueTarget::Num(first))
        } else if usize::from(last - first) + 1 == self.0.len() {
            Ok(QueueTarget::Balance(first, last))
        } else {
            Err(ConfigError::Queues(self.joined()))
        }
    }

    /// "N,M,..." (what Display falls back to).
    fn joined(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(u16::to_string).collect();
        parts.join(",")
    }
}

impl Default for Queues {
    fn default() -> Self {
        Queues(vec![0])
    }
}

impl fmt::Display for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target() {
            Ok(QueueTarget::Num(n)) => write!(f, "{n}"),
            Ok(QueueTarget::Balance(a, b)) => write!(f, "{a}:{b}"),
            Err(_) => f.write_str(&self.joined()),
        }
    }
}

impl FromStr for Queues {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim().parse::<u16>().map_err(|_| {
                format!("'{s}': expected N, FIRST:LAST or N,M,... (queue numbers 0-65535)")
            })
        };
        let mut nums = Vec::new();
        for part in s.split(',') {
            match part.split_once(':') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("'{s}': the first queue must not be above the last"));
                    }
                    nums.extend(a..=b);
                }
                None => nums.push(num(part)?),
            }
        }
        Queues::new(nums)
    }
}

impl Serialize for Queues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Queues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u16),
            Text(String),
            List(Vec<u16>),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::One(n) => Ok(Queues(vec![n])),
            Raw::Text(t) => t.parse(),
            Raw::List(l) => Queues::new(l),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// The policy that SIGHUP reloads: what the engine allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// Data ports below this are refused.
    pub min_data_port: u16,
    /// Third-party networks allowed in announcements (FXP).
    pub allow_fxp: Vec<IpNet>,
    /// Seconds a pending data connection is expected.
    pub expect_timeout: u64,
    /// Pending data connections per control connection.
    pub max_expect_per_session: usize,
}

impl Default for PolicySettings {
    fn default() -> Self {
        let c = Config::default();
        PolicySettings {
            min_data_port: c.policy.min_data_port,
            allow_fxp: c.policy.allow_fxp,
            expect_timeout: c.expect_timeout.as_secs(),
            max_expect_per_session: c.max_expect_per_session,
        }
    }
}

/// Everything the file may say; also the configuration in force. Every
/// number has its range in [`ranges`] ([`validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Queues the rules feed and `run` binds.
    pub queues: Queues,
    pub control_ports: Vec<u16>,
    /// Base name of the ipsets (IPv4; IPv6 adds "6").
    pub ipset: String,
    /// Conntrack mark of data connections, VALUE[/MASK].
    #[serde(with = "mark_text", skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// Seconds between `state:` lines (0: never).
    pub state_interval: u64,
    /// Address of the metrics endpoint (none: no endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Where `ftpct status` asks `run`: `@NAME` (abstract: one per
    /// network namespace) or a file's path.
    pub status_socket: StatusAddress,
    /// SCHED_RR priority of the queue threads (0: normal scheduler).
    pub realtime_priority: u8,
    /// Microseconds a queue thread polls its empty queue before it sleeps
    /// (0: it sleeps at once).
    pub busy_poll: u64,
    /// Longest control line parsed, in bytes.
    pub max_line: usize,
    /// First of the 64 conntrack label bits where `run` keeps each
    /// session's state (0 to 64).
    pub label_bit: u8,
    /// Queue every control packet instead of only those that can hold an
    /// announcement (the rules and `run` must agree).
    pub queue_all: bool,
    /// `run` puts ftpct's rules back when a firewall reload takes them.
    pub restore_rules: bool,
    /// The conntrack zone of the FTP connections `run` follows (0: the
    /// default zone).
    pub conntrack_zone: u16,
    pub policy: PolicySettings,
}

impl Default for Settings {
    fn default() -> Self {
        let c = Config::default();
        Settings {
            queues: Queues::default(),
            control_ports: c.control_ports,
            ipset: DEFAULT_SET.to_string(),
            mark: None,
            state_interval: 0,
            metrics: None,
            status_socket: StatusAddress::default(),
            realtime_priority: 0,
            busy_poll: 0,
            max_line: c.max_line,
            label_bit: DEFAULT_LABEL_BASE,
            queue_all: false,
            restore_rules: true,
            conntrack_zone: 0,
            policy: PolicySettings::default(),
        }
    }
}

impl Settings {
    /// The engine's settings.
    pub fn engine_config(&self) -> Config {
        Config {
            control_ports: self.control_ports.clone(),
            max_line: self.max_line,
            data_mark: self.mark,
            keep_state: true,
            selective: !self.queue_all,
            ..Config::default()
        }
        .with_policy(&self.policy)
    }

    /// The file's text for these settings (what `config check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot be shown: {e}\n"))
    }

    /// The `state:` line period, if any.
    pub fn state_every(&self) -> Option<Duration> {
        (self.state_interval > 0).then(|| Duration::from_secs(self.state_interval))
    }
}

/// Puts a policy into an engine configuration.
pub trait WithPolicy {
    fn with_policy(self, p: &PolicySettings) -> Self;
}

impl WithPolicy for Config {
    fn with_policy(self, p: &PolicySettings) -> Self {
        Config {
            expect_timeout: Duration::from_secs(p.expect_timeout),
            max_expect_per_session: p.max_expect_per_session,
            policy: Policy {
                min_data_port: p.min_data_port,
                allow_fxp: p.allow_fxp.clone(),
            },
            ..self
        }
    }
}

mod mark_text {
    use super::*;

    pub fn serialize<S: Serializer>(m: &Option<Mark>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(&format!("{:#x}/{:#x}", m.value, m.mask)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mark>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<Mark>()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("mark '{text}': {e}")))
    }
}

/// The file a configuration is read from, and whether it must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Named with `--config`: its absence is an error. The default path
    /// may be absent (the defaults then).
    pub explicit: bool,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            path: PathBuf::from(DEFAULT_PATH),
            explicit: false,
        }
    }
}

impl ConfigFile {
    /// A file named on the command line.
    pub fn explicit(path: &Path) -> Self {
        ConfigFile {
            path: path.to_path_buf(),
            explicit: true,
        }
    }

    /// Reads and parses the file (unchecked: the flags come over it, then
    /// [`validate`]).
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let path = &self.path;
        match std::fs::read_to_string(path) {
            Ok(text) => parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => {
                Ok(Settings::default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::Missing {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Parses a configuration text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe::describe(&e, text),
    })
}

/// `--config PATH`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigPath {
    /// Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which
    /// may be absent: the defaults then; a PATH given must exist]; the
    /// flags override what it says
    #[arg(long = "config", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl ConfigPath {
    /// The file named, or the default one.
    pub fn file(&self) -> ConfigFile {
        self.path
            .as_deref()
            .map_or_else(ConfigFile::default, ConfigFile::explicit)
    }
}

/// Flags shared by `rules` and `run`: where the packets go.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QueueFlags {
    /// NFQUEUE queues: N, FIRST:LAST or N,M,..., 1 to 64 queues (a thread
    /// each) [file: queues; default: 0] (`--queue` and `--queue-balance`
    /// are the same flag; repeatable)
    #[arg(
        long = "queues",
        visible_alias = "queue",
        alias = "queue-balance",
        value_name = "QUEUES",
        action = clap::ArgAction::Append
    )]
    pub queues: Vec<Queues>,
    /// Control-channel ports, comma-separated: 1 to 64 ports, each 1 to
    /// 65535, none twice [file: control_ports; default: 21]
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    pub control_ports: Option<Vec<u16>>,
    /// ipsets: NAME (IPv4) and NAME6 (IPv6) of expected data connections,
    /// NAME-guard and NAME-guard6 of the directions ftpct follows
    /// [file: ipset; default: ftpct]
    #[arg(long, value_name = "NAME")]
    pub ipset: Option<String>,
    /// Queue every control-channel packet, as before selective queueing
    /// (for comparison, or a kernel without xt_string, xt_bpf or u32)
    /// [file: queue_all = true; default: false]
    #[arg(long, conflicts_with = "selective")]
    pub queue_all: bool,
    /// Queue only the segments that can hold part of an announcement, AUTH
    /// or a multi-line reply, or that end inside a line, and every segment
    /// of a connection while ftpct needs it (the default). `rules` and `run`
    /// must agree [file: queue_all = false]
    #[arg(long)]
    pub selective: bool,
}

impl QueueFlags {
    pub fn apply(&self, s: &mut Settings) {
        if !self.queues.is_empty() {
            let all: Vec<u16> = self.queues.iter().flat_map(|q| q.0.clone()).collect();
            if let Ok(q) = Queues::new(all) {
                s.queues = q;
            }
        }
        if let Some(p) = &self.control_ports {
            s.control_ports = p.clone();
        }
        if let Some(i) = &self.ipset {
            s.ipset = i.clone();
        }
        if self.queue_all {
            s.queue_all = true;
        }
        if self.selective {
            s.queue_all = false;
        }
    }
}

/// The engine's policy flags (`run` and `replay`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PolicyFlags {
    /// Allow announcements of third-party addresses in CIDR (FXP); repeatable
    /// [file: policy.allow_fxp]
    #[arg(long = "allow-fxp", value_name = "CIDR")]
    pub allow_fxp: Vec<IpNet>,
    /// Refuse data ports below this (bounce attacks on 25 and friends),
    /// 1024 to 65535 [file: policy.min_data_port; default: 1024]
    #[arg(long, value_name = "PORT")]
    pub min_data_port: Option<u16>,
    /// Seconds a pending data connection is expected, 1 to 3600
    /// [file: policy.expect_timeout; default: 300]
    #[arg(long, value_name = "SECS")]
    pub expect_timeout: Option<u64>,
    /// Pending data connections per control connection, 1 to 1024 (beyond
    /// it the oldest makes room, as in the kernel)
    /// [file: policy.max_expect_per_session; default: 16]
    #[arg(long, value_name = "N")]
    pub max_expect_per_session: Option<usize>,
    /// Longest control line parsed, 128 to 8192 bytes (each direction of
    /// each session buffers up to this much); longer lines pass unchanged
    /// [file: max_line; default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub max_line: Option<usize>,
}

impl PolicyFlags {
    pub fn apply(&self, s: &mut Settings) {
        let p = &mut s.policy;
        if !self.allow_fxp.is_empty() {
            p.allow_fxp = self.allow_fxp.clone();
        }
        set(&mut p.min_data_port, self.min_data_port);
        set(&mut p.expect_timeout, self.expect_timeout);
        set(&mut p.max_expect_per_session, self.max_expect_per_session);
        set(&mut s.max_line, self.max_line);
    }
}

/// The flags of `ftpct run` beyond queues and policy.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Conntrack mark for data connections (bits outside MASK are
    /// inherited from the control connection) [file: mark]
    #[arg(long, value_name = "VALUE[/MASK]")]
    pub mark: Option<Mark>,
    /// Log a `state:` line every SECS seconds: flows, pending
    /// expectations, ipset entries and the counters; 0 to 86400 (0: never)
    /// [file: state_interval; default: 0]
    #[arg(long, value_name = "SECS")]
    pub state_interval: Option<u64>,
    /// Real-time (SCHED_RR) priority of ftpct's threads, 0 to 99, so that
    /// queued packets do not wait behind busy processes on a gateway
    /// whose CPUs are saturated (the kernel's helper runs ahead of every
    /// process); 0 keeps the normal scheduler [file: realtime_priority; default: 0]
    #[arg(long, value_name = "PRIO")]
    pub realtime_priority: Option<u8>,
    /// Microseconds a queue thread keeps polling its empty queue before it
    /// sleeps, 0 to 10000: the next packet then needs no wake-up (on a
    /// virtual machine a wake-up on another CPU can cost ~100 us per
    /// crossing), at the price of a CPU kept busy meanwhile; 0 sleeps at
    /// once [file: busy_poll; default: 0]
    #[arg(long, value_name = "USEC")]
    pub busy_poll: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (PORT 1 to
    /// 65535) [file: metrics]
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Where `ftpct status` asks: @NAME, an abstract unix socket (one per
    /// network namespace; root or ftpct's own user only), or PATH, a file
    /// (mode 0600) [file: status_socket; default: @ftpct-status]
    #[arg(long, value_name = "@NAME|PATH")]
    pub socket: Option<StatusAddress>,
    /// Do not put ftpct's rules back when a firewall reload takes them
    /// (they are then looked at every 30 s and their absence logged)
    /// [file: restore_rules = false; default: true]
    #[arg(long)]
    pub no_restore_rules: bool,
    /// The conntrack zone of the FTP connections, 0 to 65535: the zone
    /// your raw-table rules give them (`-j CT --zone N`, both directions);
    /// ftpct looks their entries up, re-creates them and makes their data
    /// connections' entries there. One zone per ftpct
    /// [file: conntrack_zone; default: 0]
    #[arg(long, value_name = "ZONE")]
    pub conntrack_zone: Option<u16>,
}

impl RunFlags {
    pub fn apply(&self, s: &mut Settings) {
        if self.mark.is_some() {
            s.mark = self.mark;
        }
        set(&mut s.state_interval, self.state_interval);
        set(&mut s.realtime_priority, self.realtime_priority);
        set(&mut s.busy_poll, self.busy_poll);
        if self.metrics.is_some() {
            s.metrics = self.metrics;
        }
        if let Some(a) = &self.socket {
            s.status_socket = a.clone();
        }
        if self.no_restore_rules {
            s.restore_rules = false;
        }
        set(&mut s.conntrack_zone, self.conntrack_zone);
    }
}

fn set<T>(slot: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *slot = v;
    }
}

/// What SIGHUP re-reads: the file, with the policy flags of the command
/// line over it again (a flag keeps winning over the file).
#[derive(Debug, Clone)]
pub struct Reload {
    pub file: ConfigFile,
    pub flags: PolicyFlags,
}

impl Reload {
    /// The policy now in the file, with the flags over it, if the whole
    /// is still valid.
    pub fn policy(&self) -> Result<PolicySettings, ConfigError> {
        let mut s = self.file.load()?;
        self.flags.apply(&mut s);
        validate(&s)?;
        Ok(s.policy)
    }
}

/// Checks what the file cannot check by its syntax alone: the ranges of
/// every number (`ranges`), the ipset names. The one check for the file
/// and the flags alike: call it once the flags are over the file.
pub fn validate(s: &Settings) -> Result<(), ConfigError> {
    ranges::check(s)?;
    crate::netfilter::sets::SetNames::new(&s.ipset)
        .map_err(|e| ConfigError::SetName(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ranges::RangeError;
    use super::*;

    const FULL: &str = r#"
queues = "0:3"
control_ports = [21, 2121]
ipset = "ftp_exp"
mark = "0x10/0xff"
state_interval = 60
metrics = "127.0.0.1:9641"
status_socket = "/run/ftpct/ftpct.sock"
realtime_priority = 10
busy_poll = 50
max_line = 2048
label_bit = 32
restore_rules = false

[policy]
min_data_port = 2000
allow_fxp = ["203.0.113.0/24", "2001:db8::/32"]
expect_timeout = 120
max_expect_per_session = 4
"#;

    fn p() -> &'static Path {
        Path::new("test.toml")
    }

    #[test]
    fn round_trip_keeps_every_key() {
        let s = parse(p(), FULL).expect("valid");
        assert_eq!(s.queues.list(), [0, 1, 2, 3]);
        assert_eq!(
            s.mark,
            Some(Mark {
                value: 0x10,
                mask: 0xff
            })
        );
        assert_eq!(s.policy.allow_fxp.len(), 2);
        let again = parse(p(), &s.to_toml()).expect("own output parses");
        assert_eq!(again, s);
        assert_ne!(s, Settings::default());
        let d = Settings::default();
        assert_eq!(parse(p(), &d.to_toml()).expect("defaults"), d);
    }

    #[test]
    fn the_shipped_file_says_the_defaults() {
        let shipped = include_str!("../../scripts/ftpct.toml");
        assert_eq!(parse(p(), shipped).expect("valid"), Settings::default());
    }

    #[test]
    fn empty_and_absent_default_files_are_the_defaults() {
        assert_eq!(parse(p(), "").expect("empty"), Settings::default());
        let absent = ConfigFile {
            path: PathBuf::from("/nonexistent/ftpct.toml"),
            explicit: false,
        };
        assert_eq!(absent.load().expect("absent"), Settings::default());
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let path = Path::new("/nonexistent/ftpct.toml");
        let e = ConfigFile::explicit(path).load().expect_err("missing");
        assert!(matches!(&e, ConfigError::Missing { path: p } if p == path));
        assert!(
            e.to_string()
                .contains("/nonexistent/ftpct.toml: no such file"),
            "{e}"
        );
        let flag = ConfigPath {
            path: Some(path.to_path_buf()),
        };
        assert!(flag.file().explicit);
        assert_eq!(ConfigPath { path: None }.file(), ConfigFile::default());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse(p(), "queues = \"0:1\"\n\n[policy]\nmin_data_port = \"x\"\n")
            .expect_err("bad type");
        let msg = e.to_string();
        assert!(msg.contains("line 4, column 17"), "{msg}");
        let e = parse(p(), "queue = 1\n").expect_err("unknown key");
        assert!(e.to_string().contains("line 1, column 1"), "{e}");
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = parse(p(), "mark = \"0x100/0xff\"\n").expect_err("mark");
        assert!(e.to_string().contains("outside the mask"), "{e}");
        let e = parse(p(), "queues = \"3:1\"\n").expect_err("range");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn queue_syntax() {
        let q: Queues = "2".parse().expect("one");
        assert_eq!(q.target().expect("t"), QueueTarget::Num(2));
        let q: Queues = "0:3".parse().expect("range");
        assert_eq!(q.target().expect("t"), QueueTarget::Balance(0, 3));
        let q: Queues = "1,0,2".parse().expect("list");
        assert_eq!(q.to_string(), "0:2");
        let q: Queues = "0,2".parse().expect("gap");
        assert!(q.target().is_err());
        assert_eq!(q.to_string(), "0,2");
        assert!("x".parse::<Queues>().is_err());
        let s = parse(p(), "queues = [1, 2]").expect("list in file");
        assert_eq!(s.queues.list(), [1, 2]);
        let s = parse(p(), "queues = 5").expect("number in file");
        assert_eq!(s.queues.list(), [5]);
    }

    #[test]
    fn flags_override_the_file() {
        let mut s = parse(p(), FULL).expect("valid");
        let q = QueueFlags {
            queues: vec!["4".parse().expect("q"), "5".parse().expect("q")],
            control_ports: None,
            ipset: Some("other".into()),
            queue_all: true,
            selective: false,
        };
        assert!(!s.queue_all, "selective unless told");
        assert!(s.engine_config().selective);
        q.apply(&mut s);
        assert!(s.queue_all);
        assert!(!s.engine_config().selective);
        PolicyFlags {
            min_data_port: Some(1024),
            ..PolicyFlags::default()
        }
        .apply(&mut s);
        assert_eq!(s.queues.list(), [4, 5]);
        assert_eq!(s.control_ports, [21, 2121], "kept from the file");
        assert_eq!(s.ipset, "other");
        assert_eq!(s.policy.min_data_port, 1024);
        assert_eq!(s.policy.expect_timeout, 120, "kept from the file");
        let c = s.engine_config();
        assert_eq!(c.expect_timeout, Duration::from_secs(120));
        assert_eq!(c.max_line, 2048);
        assert_eq!(c.data_mark, s.mark);
        assert!(c.keep_state);
        assert_eq!(s.label_bit, 32);
    }

    #[test]
    fn label_bits_must_fit_conntracks_128() {
        let s = Settings {
            label_bit: 65,
            ..Settings::default()
        };
        assert!(matches!(
            validate(&s),
            Err(ConfigError::Range(RangeError::Outside {
                bounds: ranges::LABEL_BIT,
                value: 65
            }))
        ));
        assert!(validate(&Settings::default()).is_ok());
    }

    /// The hostile values of issue 20, in the file: each refused, by the
    /// range check (or, when the type cannot hold it, by the parser), the
    /// message naming the key.
    #[test]
    fn hostile_values_in_the_file_are_refused() {
        let cases: [(&str, &str); 13] = [
            ("max_line = 4294967295", "max_line"),
            ("max_line = 0", "max_line"),
            ("[policy]\nexpect_timeout = 0", "policy.expect_timeout"),
            (
                "[policy]\nexpect_timeout = 18446744073709551615",
                "policy.expect_timeout",
            ),
            ("[policy]\nmin_data_port = 0", "policy.min_data_port"),
            (
                "[policy]\nmax_expect_per_session = 0",
                "policy.max_expect_per_session",
            ),
            (
                "[policy]\nmax_expect_per_session = 1e8",
                "policy.max_expect_per_session",
            ),
            (
                "[policy]\nmax_expect_per_session = 100000000",
                "policy.max_expect_per_session",
            ),
            ("control_ports = [21, 21, 0]", "control_ports"),
            ("control_ports = [21, 2121, 21]", "control_ports"),
            ("realtime_priority = 150", "realtime_priority"),
            ("busy_poll = 20000", "busy_poll"),
            ("queues = \"0:65535\"", "queues"),
        ];
        for (text, key) in cases {
            let e = parse(p(), text)
                .and_then(|s| validate(&s).map(|()| s))
                .expect_err(text);
            let msg = e.to_string();
            assert!(msg.contains(key), "{text}: {msg}");
            assert!(
                matches!(e, ConfigError::Range(_) | ConfigError::Parse { .. }),
                "{text}: {e:?}"
            );
        }
    }

    /// The same values given as flags: the same check, the same error.
    #[test]
    fn hostile_values_as_flags_are_refused() {
        let policy = |f: PolicyFlags| {
            let mut s = Settings::default();
            f.apply(&mut s);
            validate(&s)
        };
        let run = |f: RunFlags| {
            let mut s = Settings::default();
            f.apply(&mut s);
            validate(&s)
        };
        let ports = |p: Vec<u16>| {
            let mut s = Settings::default();
            QueueFlags {
                control_ports: Some(p),
                ..QueueFlags::default()
            }
            .apply(&mut s);
            validate(&s)
        };
        let outside = |r: Result<(), ConfigError>, want: ranges::Bounds, value: u64| {
            assert!(
                matches!(&r, Err(ConfigError::Range(RangeError::Outside { bounds, value: v }))
                    if *bounds == want && *v == value),
                "{} {value}: {r:?}",
                want.key
            );
        };
        let max_line = |n| PolicyFlags {
            max_line: Some(n),
            ..PolicyFlags::default()
        };
        outside(
            policy(max_line(4_294_967_295)),
            ranges::MAX_LINE,
            4_294_967_295,
        );
        outside(policy(max_line(0)), ranges::MAX_LINE, 0);
        let timeout = PolicyFlags {
            expect_timeout: Some(0),
            ..PolicyFlags::default()
        };
        outside(policy(timeout), ranges::EXPECT_TIMEOUT, 0);
        let port = PolicyFlags {
            min_data_port: Some(0),
            ..PolicyFlags::default()
        };
        outside(policy(port), ranges::MIN_DATA_PORT, 0);
        for n in [0, 100_000_000] {
            let per = PolicyFlags {
                max_expect_per_session: Some(n),
                ..PolicyFlags::default()
            };
            outside(policy(per), ranges::MAX_EXPECT_PER_SESSION, n as u64);
        }
        outside(ports(vec![21, 0]), ranges::CONTROL_PORT, 0);
        assert!(matches!(
            ports(vec![21, 21]),
            Err(ConfigError::Range(RangeError::Repeated { value: 21, .. }))
        ));
        let prio = RunFlags {
            realtime_priority: Some(150),
            ..RunFlags::default()
        };
        outside(run(prio), ranges::REALTIME_PRIORITY, 150);
        let poll = RunFlags {
            busy_poll: Some(20_000),
            ..RunFlags::default()
        };
        outside(run(poll), ranges::BUSY_POLL, 20_000);
    }

    /// A value in the file that a flag corrects is no error: the check
    /// runs on what is in force.
    #[test]
    fn a_flag_may_correct_the_file() {
        let mut s = parse(p(), "max_line = 0\n").expect("parses");
        PolicyFlags {
            max_line: Some(2048),
            ..PolicyFlags::default()
        }
        .apply(&mut s);
        assert!(validate(&s).is_ok());
    }

    /// SIGHUP: a file with a value out of range keeps the policy in force.
    #[test]
    fn a_reload_checks_the_ranges() {
        let dir = std::env::temp_dir().join(format!("ftpct-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ftpct.toml");
        std::fs::write(&path, "[policy]\nexpect_timeout = 0\n").expect("write");
        let reload = Reload {
            file: ConfigFile::explicit(&path),
            flags: PolicyFlags::default(),
        };
        let e = reload.policy().expect_err("out of range");
        assert!(e.to_string().contains("policy.expect_timeout"), "{e}");
        std::fs::write(&path, "[policy]\nexpect_timeout = 60\n").expect("write");
        assert_eq!(reload.policy().expect("valid").expect_timeout, 60);
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    /// The help of every flag and the shipped file state the table's
    /// ranges (they are written by hand: this keeps them true).
    #[test]
    fn help_and_shipped_file_state_the_ranges() {
        use clap::Args as _;
        let cmd = RunFlags::augment_args(PolicyFlags::augment_args(QueueFlags::augment_args(
            clap::Command::new("t"),
        )));
        let shipped = include_str!("../../scripts/ftpct.toml");
        for b in ranges::TABLE {
            if let Some(flag) = b.flag {
                let long = flag.trim_start_matches("--");
                let arg = cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .unwrap_or_else(|| panic!("no flag {flag}"));
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(help.contains(&b.span()), "{flag}: {help}");
            }
            assert!(shipped.contains(&b.span()), "scripts/ftpct.toml: {}", b.key);
        }
    }
}
