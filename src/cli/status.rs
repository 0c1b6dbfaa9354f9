//! `ftpct status`: asks a running `ftpct run` over its unix socket and
//! prints its control connections, pending expectations (in the layout of
//! `conntrack -L expect`) and counters, or the JSON as it came.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::config::{ConfigError, ConfigPath};
use crate::daemon::status::{Refusal, Snapshot};
use crate::daemon::status_address::StatusAddress;

const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// The JSON snapshot instead of tables
    #[arg(long)]
    pub json: bool,
    /// Where `ftpct run` answers: @NAME (abstract, this network
    /// namespace's) or PATH [default: the configuration's status_socket,
    /// @ftpct-status]
    #[arg(long, value_name = "@NAME|PATH")]
    pub socket: Option<StatusAddress>,
    #[command(flatten)]
    pub config: ConfigPath,
}

impl StatusArgs {
    /// --socket, else the file's status_socket, else the default.
    pub fn address(&self) -> Result<StatusAddress, ConfigError> {
        match &self.socket {
            Some(a) => Ok(a.clone()),
            None => Ok(self.config.file().load()?.status_socket),
        }
    }
}

#[derive(Debug)]
pub enum StatusError {
    Config(ConfigError),
    Connect {
        address: StatusAddress,
        source: io::Error,
    },
    Read {
        address: StatusAddress,
        source: io::Error,
    },
    /// The daemon answered but not to this user.
    Refused {
        address: StatusAddress,
        why: String,
    },
    Json(serde_json::Error),
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusError::Config(e) => write!(f, "{e}"),
            StatusError::Connect { address, source } => write!(
                f,
                "no ftpct run answers at {address} ({source}): is it running in this network namespace, with this status_socket (--socket)? (root only)"
            ),
            StatusError::Read { address, source } => {
                write!(f, "{address}: no complete answer: {source}")
            }
            StatusError::Refused { address, why } => write!(f, "{address}: refused: {why}"),
            StatusError::Json(e) => write!(f, "the daemon's answer is not a snapshot: {e}"),
        }
    }
}

impl std::error::Error for StatusError {}

/// Prints the daemon's snapshot.
pub fn run(args: &StatusArgs) -> Result<(), StatusError> {
    let address = args.address().map_err(StatusError::Config)?;
    let json = fetch(&address)?;
    if args.json {
        println!("{json}");
        return Ok(());
    }
    let snap: Snapshot = serde_json::from_str(&json).map_err(StatusError::Json)?;
    print!("{}", render(&snap));
    Ok(())
}

/// The snapshot's JSON, as the daemon sent it, or its refusal as an error.
pub fn fetch(address: &StatusAddress) -> Result<String, StatusError> {
    let mut stream = address.connect().map_err(|source| StatusError::Connect {
        address: address.clone(),
        source,
    })?;
    let read_err = |source| StatusError::Read {
        address: address.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(read_err)?;
    let mut json = String::new();
    stream.read_to_string(&mut json).map_err(read_err)?;
    if let Ok(Refusal { refused }) = serde_json::from_str::<Refusal>(&json) {
        return Err(StatusError::Refused {
            address: address.clone(),
            why: refused,
        });
    }
    Ok(json)
}

/// Tables for people.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "control connections: {} (ftpct run pid {}, up {:.0}s)",
        s.control_connections.len(),
        s.pid,
        s.uptime
    );
    for c in &s.control_connections {
        let _ = writeln!(out, "  {}", control_line(c));
    }
    let _ = writeln!(out, "expectations: {}", s.expectations.len());
    for e in &s.expectations {
        let _ = writeln!(out, "  {}", expect_line(e));
    }
    let counters: Vec<String> = s.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "counters: {}", counters.join(" "));
    out
}

/// `tcp 6 orig: src= dst= sport= dport= reply: src= dst= sport= dport=`, as
/// `conntrack -L` writes a connection, then ftpct's own fields.
fn control_line(c: &crate::daemon::status::ControlConnection) -> String {
    let state = match (c.established, c.closing) {
        (_, true) => "CLOSING",
        (true, _) => "ESTABLISHED",
        _ => "OPENING",
    };
    let mut line = format!(
        "tcp 6 {state} {} reply: {}",
        endpoints(&c.orig),
        endpoints(&c.reply)
    );
    line.push_str(if c.natted { " [NAT]" } else { " [no NAT]" });
    let [cs, sc] = &c.edits;
    let _ = write!(
        line,
        " edits c->s={}({:+}) s->c={}({:+}) idle={:.0}s",
        cs.kept, cs.shift, sc.kept, sc.shift, c.idle
    );
    if c.liberal {
        line.push_str(" liberal");
    }
    if !c.inspecting {
        line.push_str(" not-inspecting(TLS)");
    }
    line
}

/// `conntrack -L expect`'s layout: timeout, protocol, the expected tuple
/// (any source port), the master, then where NAT sends it.
fn expect_line(pending: &crate::daemon::status::PendingExpectation) -> String {
    let e = &pending.expectation;
    let (dst_ip, dport) = split(&e.dst);
    let mut line = format!(
        "{:.0} proto=6 src={} dst={dst_ip} sport=0 dport={dport} master: {} kind={}",
        pending.expires_in.ceil(),
        e.peer,
        endpoints(&e.master),
        e.kind
    );
    if let Some(s) = &e.nat_src {
        let _ = write!(line, " snat={s}");
    }
    if let Some(d) = &e.nat_dst {
        let _ = write!(line, " dnat={d}");
    }
    line
}

/// "A:p -> B:q" as `src=A dst=B sport=p dport=q`.
fn endpoints(tuple: &str) -> String {
    let Some((a, b)) = tuple.split_once(" -> ") else {
        return tuple.to_string();
    };
    let ((sa, sp), (da, dp)) = (split(a), split(b));
    format!("src={sa} dst={da} sport={sp} dport={dp}")
}

fn split(addr: &str) -> (String, String) {
    match addr.parse::<SocketAddr>() {
        Ok(a) => (a.ip().to_string(), a.port().to_string()),
        Err(_) => (addr.to_string(), "?".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{ControlConnection, Edits, ExpectationView, PendingExpectation};

    #[test]
    fn lines_in_the_layout_of_conntrack() {
        let snap = Snapshot {
            pid: 4242,
            uptime: 12.0,
            control_connections: vec![ControlConnection {
                orig: "192.0.2.10:40000 -> 198.51.100.20:21".into(),
                reply: "198.51.100.20:21 -> 198.51.100.1:40000".into(),
                natted: true,
                established: true,
                closing: false,
                inspecting: true,
                liberal: true,
                idle: 1.2,
                edits: [Edits { kept: 1, shift: 2 }, Edits { kept: 0, shift: 0 }],
            }],
            expectations: vec![PendingExpectation {
                expectation: ExpectationView {
                    peer: "198.51.100.20".into(),
                    dst: "198.51.100.1:34927".into(),
                    nat_src: Some("198.51.100.20".into()),
                    nat_dst: Some("192.0.2.10:34927".into()),
                    kind: "Port".into(),
                    master: "192.0.2.10:40000 -> 198.51.100.20:21".into(),
                },
                expires_in: 299.2,
            }],
            counters: [("packets".to_string(), 9)].into_iter().collect(),
        };
        let text = render(&snap);
        assert!(text.contains(
            "tcp 6 ESTABLISHED src=192.0.2.10 dst=198.51.100.20 sport=40000 dport=21 reply: src=198.51.100.20 dst=198.51.100.1 sport=21 dport=40000 [NAT] edits c->s=1(+2) s->c=0(+0)"
        ), "{text}");
        assert!(text.contains(
            "300 proto=6 src=198.51.100.20 dst=198.51.100.1 sport=0 dport=34927 master: src=192.0.2.10 dst=198.51.100.20 sport=40000 dport=21 kind=Port snat=198.51.100.20 dnat=192.0.2.10:34927"
        ), "{text}");
        assert!(text.contains("counters: packets=9"), "{text}");
    }
}
