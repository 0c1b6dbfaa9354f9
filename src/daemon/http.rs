//! The metrics endpoint: a tiny HTTP/1.0 server on its own thread (std
//! TcpListener, one connection at a time, no async runtime). `GET
//! /metrics` (or `/`) answers the registry in Prometheus text; anything
//! else is 404 or 405. Each connection gets a few seconds and a few
//! kilobytes of request, then is closed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tracing::{debug, info, warn};

use super::metrics;

/// What a client gets to send its request line and headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Binds `addr` (an error here stops `ftpct run` before it starts) and
/// serves from a thread that lives as long as the process.
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || accept_loop(&listener, &registry))?;
    info!("metrics: http://{bound}/metrics");
    Ok(bound)
}

fn accept_loop(listener: &TcpListener, registry: &Registry) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = answer(stream, registry) {
                    debug!("metrics: a request failed: {e}");
                }
            }
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
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
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
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
