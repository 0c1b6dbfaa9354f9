//! The metrics endpoint: a tiny HTTP/1.0 server (std TcpListener, no
//! async runtime). `GET /metrics` (or `/`) answers the registry in
//! Prometheus text; anything else is 404 or 405.
//!
//! No client can hold it: the accept thread hands each connection to a
//! thread of its own, at most [`Limits::connections`] at once (more are
//! answered 503 and closed at once), and each connection has
//! [`Limits::deadline`] for the whole request, reading its head and
//! writing the answer (`deadline`), and a few kilobytes of head.

mod deadline;
mod slots;
#[cfg(test)]
mod trickle_tests;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tracing::{debug, info, warn};

use super::metrics;
use deadline::DeadlineStream;
use slots::Slots;

const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How long and how many.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a whole request: its head read, its answer written.
    pub deadline: Duration,
    /// Connections served at once.
    pub connections: usize,
}

impl Default for Limits {
    /// 5 s (a scrape on a loopback or LAN takes milliseconds; Prometheus
    /// waits 10 s by default) and 8 connections.
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(5),
            connections: 8,
        }
    }
}

/// Binds `addr` (an error here stops `ftpct run` before it starts) and
/// serves from a thread that lives as long as the process.
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<SocketAddr> {
    serve_with(addr, registry, Limits::default())
}

/// [`serve`] with other limits (the tests).
pub fn serve_with(addr: SocketAddr, registry: Registry, limits: Limits) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || accept_loop(&listener, &registry, limits))?;
    info!("metrics: http://{bound}/metrics");
    Ok(bound)
}

fn accept_loop(listener: &TcpListener, registry: &Arc<Registry>, limits: Limits) {
    let slots = Slots::new(limits.connections);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => dispatch(stream, registry, &slots, limits.deadline),
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves `stream` from a thread of its own, or turns it away when every
/// slot is taken.
fn dispatch(stream: TcpStream, registry: &Arc<Registry>, slots: &Slots, deadline: Duration) {
    let Some(slot) = slots.take() else {
        debug!("metrics: every connection slot is taken; one turned away");
        turn_away(stream);
        return;
    };
    let registry = Arc::clone(registry);
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = answer(DeadlineStream::new(stream, deadline), &registry) {
                debug!("metrics: a request failed: {e}");
            }
        });
    if let Err(e) = spawned {
        // The closure, its slot and the connection are dropped with it.
        warn!("metrics: cannot start a thread for a connection: {e}");
    }
}

/// A 503 if the socket takes it at once (it never waits), then closed.
fn turn_away(mut stream: TcpStream) {
    let busy = "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write(busy.as_bytes());
    }
}

fn answer(mut stream: DeadlineStream, registry: &Registry) -> io::Result<()> {
    let head = read_head(&mut stream)?;
    let (status, body) = match request_line(&head) {
        Some(("GET", "/metrics" | "/")) => ("200 OK", metrics::render(registry)),
        Some(("GET", _)) => ("404 Not Found", "not found: try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "GET /metrics only\n".into()),
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// The request up to its blank line (or what came of it within the limits).
fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Method and path, without the query string.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let mut words = head.lines().next()?.split_whitespace();
    let method = words.next()?;
    let target = words.next()?;
    Some((method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line("POST / HTTP/1.0\r\n"), Some(("POST", "/")));
        assert_eq!(request_line(""), None);
    }

    #[test]
    fn serves_the_registry_over_tcp() {
        let mut r = Registry::default();
        let c: prometheus_client::metrics::counter::Counter = Default::default();
        c.inc();
        r.register("ftpct_test", "a test counter", c);
        let addr = serve("127.0.0.1:0".parse().expect("addr"), r).expect("bind");
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got}");
        assert!(got.contains("ftpct_test_total 1"), "{got}");
    }
}
