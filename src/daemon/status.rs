//! `ftpct status`: what the daemon holds now, over a unix socket: an
//! abstract one by default (one per network namespace), or a file (mode
//! 0600). Root or the daemon's own user only (SO_PEERCRED); others get a
//! refusal. The daemon writes one JSON snapshot to each client and
//! closes; `ftpct status` prints it as tables (or passes the JSON).
//! The snapshot is copied under the engine's lock (no kernel call, no
//! string made there) and written out after.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ftpct_engine::event::Stats;
use ftpct_engine::expect::Expectation;
use ftpct_engine::flow::Flow;
use ftpct_engine::nat::CtMapping;
use ftpct_engine::tuple::Dir;
use ftpct_engine::Engine;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::peer;
use super::shared::Shared;
use super::status_address::StatusAddress;

const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the daemon holds now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// The process that answered (which daemon, when there are several).
    #[serde(default)]
    pub pid: u32,
    /// Seconds since `ftpct run` started (the engine's clock).
    pub uptime: f64,
    pub control_connections: Vec<ControlConnection>,
    pub expectations: Vec<PendingExpectation>,
    /// The engine's counters, by name (as in the `state:` log line).
    pub counters: BTreeMap<String, u64>,
}

/// A control connection and its NAT mapping, as conntrack has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControlConnection {
    /// The original tuple (client to server, before NAT).
    pub orig: String,
    /// The reply tuple (server to client, after NAT).
    pub reply: String,
    pub natted: bool,
    pub established: bool,
    pub closing: bool,
    /// False after AUTH TLS: sequence fix-ups only.
    pub inspecting: bool,
    /// Conntrack's window checks are off (after a rewrite).
    pub liberal: bool,
    pub idle: f64,
    /// The rewrites each direction carries: client to server, then
    /// server to client.
    pub edits: [Edits; 2],
}

/// The rewrites of one direction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Edits {
    /// Edits kept in the history (unacknowledged ones, and a few more).
    pub kept: usize,
    /// Bytes the direction grew (negative: shrank) through its rewrites.
    pub shift: i32,
}

/// An expectation as text, for `ftpct status` and the JSON events: a data
/// connection expected from `peer` (any port) to `dst`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpectationView {
    pub peer: String,
    pub dst: String,
    pub nat_src: Option<String>,
    pub nat_dst: Option<String>,
    /// The announcement: Port, Eprt, Pasv227, Epsv229.
    pub kind: String,
    /// Its control connection's original tuple.
    pub master: String,
}

impl From<&Expectation> for ExpectationView {
    fn from(e: &Expectation) -> Self {
        ExpectationView {
            peer: e.peer.to_string(),
            dst: e.dst.to_string(),
            nat_src: e.nat.src.map(|a| a.to_string()),
            nat_dst: e.nat.dst.map(|a| a.to_string()),
            kind: format!("{:?}", e.kind),
            master: e.master.to_string(),
        }
    }
}

/// A pending expectation and the seconds until it expires.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingExpectation {
    #[serde(flatten)]
    pub expectation: ExpectationView,
    pub expires_in: f64,
}

/// What the snapshot is made of, copied under the engine's lock (plain
/// values: the strings are made after the lock is released, so that a
/// large table holds up the packets for a copy only).
pub struct Taken {
    now: Duration,
    flows: Vec<FlowFacts>,
    expectations: Vec<Expectation>,
    stats: Stats,
}

#[derive(Clone, Copy)]
struct FlowFacts {
    mapping: CtMapping,
    established: bool,
    closing: bool,
    inspecting: bool,
    liberal: bool,
    last_seen: Duration,
    /// Edits kept and total shift, client to server then server to client.
    edits: [(usize, i32); 2],
}

/// Copies what a snapshot shows from `engine` at engine time `now`.
pub fn take(engine: &Engine, now: Duration) -> Taken {
    Taken {
        now,
        flows: engine.flows().map(facts).collect(),
        expectations: engine.expectations(),
        stats: engine.stats().clone(),
    }
}

fn facts(f: &Flow) -> FlowFacts {
    let edits = |dir| {
        let adj = f.stream(dir).adj();
        (adj.edit_count(), adj.total_shift())
    };
    FlowFacts {
        mapping: f.mapping,
        established: f.is_established(),
        closing: f.closing_at.is_some(),
        inspecting: f.inspecting,
        liberal: f.liberal,
        last_seen: f.last_seen,
        edits: [edits(Dir::Orig), edits(Dir::Reply)],
    }
}

impl Taken {
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now;
        Snapshot {
            pid: std::process::id(),
            uptime: now.as_secs_f64(),
            control_connections: self.flows.iter().map(|f| control(f, now)).collect(),
            expectations: self
                .expectations
                .iter()
                .map(|e| PendingExpectation {
                    expectation: e.into(),
                    expires_in: e.expires.saturating_sub(now).as_secs_f64(),
                })
                .collect(),
            counters: counters(&self.stats.to_string()),
        }
    }
}

fn control(f: &FlowFacts, now: Duration) -> ControlConnection {
    let edits = |(kept, shift)| Edits { kept, shift };
    ControlConnection {
        orig: f.mapping.orig.to_string(),
        reply: f.mapping.reply.to_string(),
        natted: f.mapping.is_natted(),
        established: f.established,
        closing: f.closing,
        inspecting: f.inspecting,
        liberal: f.liberal,
        idle: now.saturating_sub(f.last_seen).as_secs_f64(),
        edits: f.edits.map(edits),
    }
}

/// `name=value` pairs (the counters' one-line form) as a map.
fn counters(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The listening socket; a socket file goes when the daemon stops (if it
/// is still this one's); an abstract name goes with the listener.
pub struct StatusSocket {
    file: Option<(PathBuf, u64)>,
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        let Some((path, inode)) = &self.file else {
            return;
        };
        if std::fs::metadata(path).is_ok_and(|m| m.ino() == *inode) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Listens at `address` (a file: mode 0600) and answers from a thread
/// that lives as long as the process.
pub fn serve(address: &StatusAddress, shared: Arc<Shared>) -> io::Result<StatusSocket> {
    let listener = bind(address)?;
    let file = match address {
        StatusAddress::Path(path) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Some((path.clone(), std::fs::metadata(path)?.ino()))
        }
        StatusAddress::Abstract(_) => None,
    };
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || accept_loop(&listener, &shared))?;
    info!("status: {address}");
    Ok(StatusSocket { file })
}

/// Binds, replacing a socket file nobody answers on (left by a crash);
/// a live one is an error (AddrInUse), as is an abstract name in use.
fn bind(address: &StatusAddress) -> io::Result<UnixListener> {
    match (address.bind(), address) {
        (Err(e), StatusAddress::Path(path)) if e.kind() == io::ErrorKind::AddrInUse => {
            if address.connect().is_ok() {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            address.bind()
        }
        (other, _) => other,
    }
}

/// A client refused: `{"refused": "why"}`, which `ftpct status` reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refusal {
    pub refused: String,
}

fn accept_loop(listener: &UnixListener, shared: &Shared) {
    for conn in listener.incoming() {
        let sent = conn.and_then(|mut stream| {
            stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
            let json = match peer::admit(&stream)? {
                Ok(()) => {
                    let snap = shared
                        .with_engine(|e| take(e, shared.now()))
                        .map(|t| t.snapshot());
                    serde_json::to_string(&snap)
                }
                Err(refused) => {
                    debug!("status: {refused}");
                    serde_json::to_string(&Refusal {
                        refused: refused.to_string(),
                    })
                }
            }
            .map_err(io::Error::other)?;
            stream.write_all(json.as_bytes())
        });
        if let Err(e) = sent {
            debug!("status: a client was not answered: {e}");
        }
    }
    warn!("status: the socket stopped accepting");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::metrics::Metrics;

    #[test]
    fn counters_come_from_their_line() {
        let c = counters("packets=3 flows=1 rewrites=0");
        assert_eq!(c.get("packets"), Some(&3));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn serves_a_snapshot_over_its_socket() {
        use ftpct_engine::Config;
        use std::io::Read as _;
        use std::os::unix::net::UnixStream;
        let dir = std::env::temp_dir().join(format!("ftpct-status-{}", std::process::id()));
        let path = dir.join("s.sock");
        let shared = Arc::new(Shared::new(
            Engine::new(Config::default()),
            Metrics::default(),
        ));
        let guard = serve(&StatusAddress::Path(path.clone()), shared).expect("serve");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut got = String::new();
        UnixStream::connect(&path)
            .and_then(|mut s| s.read_to_string(&mut got))
            .expect("read");
        let snap: Snapshot = serde_json::from_str(&got).expect("json");
        assert!(snap.control_connections.is_empty());
        assert_eq!(snap.counters.get("packets"), Some(&0));
        assert_eq!(snap.pid, std::process::id());
        drop(guard);
        assert!(!path.exists(), "the socket file goes with the daemon");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
