//! `ftpct status`: asks a running `ftpct run` over its unix socket and
//! prints its control connections, pending expectations (in the layout of
//! `conntrack -L expect`) and counters, or the JSON as it came.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::status::{Snapshot, DEFAULT_SOCKET};

const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// The JSON snapshot instead of tables
    #[arg(long)]
    pub json: bool,
    /// The status socket of `ftpct run` (its --socket)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug)]
pub enum StatusError {
    Connect { path: PathBuf, source: io::Error },
    Read { path: PathBuf, source: io::Error },
    Json(serde_json::Error),
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusError::Connect { path, source } => write!(
                f,
                "no ftpct run answers at {} ({source}): is it running, with this --socket? (root only)",
                path.display()
            ),
            StatusError::Read { path, source } => {
                write!(f, "{}: no complete answer: {source}", path.display())
            }
            StatusError::Json(e) => write!(f, "the daemon's answer is not a snapshot: {e}"),
        }
    }
}

impl std::error::Error for StatusError {}

/// Prints the daemon's snapshot.
pub fn run(args: &StatusArgs) -> Result<(), StatusError> {
    let json = fetch(&args.socket)?;
    if args.json {
        println!("{json}");
        return Ok(());
    }
    let snap: Snapshot = serde_json::from_str(&json).map_err(StatusError::Json)?;
    print!("{}", render(&snap));
    Ok(())
}

/// The snapshot's JSON, as the daemon sent it.
pub fn fetch(path: &std::path::Path) -> Result<String, StatusError> {
    let mut stream = UnixStream::connect(path).map_err(|source| StatusError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let read_err = |source| StatusError::Read {
        path: path.to_path_buf(),
        source,
    };
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(read_err)?;
    let mut json = String::new();
    stream.read_to_string(&mut json).map_err(read_err)?;
    Ok(json)
}

/// Tables for people.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "control connections: {} (up {:.0}s)",
        s.control_connections.len(),
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
