//! The endpoint under clients that trickle: scrapes still pass, the
//! trickler is cut at the deadline, connections beyond the limit are
//! turned away at once. Loopback only; outcomes are asserted, with bounds
//! (client timeouts, give-up times) far above what they need, so that a
//! busy machine does not make them flake.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::{serve_with, Limits};

/// What a scrape may take here: far more than it needs, far less than the
/// deadline a trickler holds a serial server for.
const CLIENT_PATIENCE: Duration = Duration::from_secs(10);

fn endpoint(limits: Limits) -> SocketAddr {
    let mut r = Registry::default();
    let c: Counter = Counter::default();
    c.inc();
    r.register("ftpct_test", "a test counter", c);
    serve_with("127.0.0.1:0".parse().expect("addr"), r, limits).expect("bind")
}

/// One GET /metrics: the whole answer, or why not.
fn scrape(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(CLIENT_PATIENCE))?;
    s.set_write_timeout(Some(CLIENT_PATIENCE))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut got = String::new();
    s.read_to_string(&mut got)?;
    Ok(got)
}

fn scraped(addr: SocketAddr) -> bool {
    scrape(addr).is_ok_and(|got| got.starts_with("HTTP/1.0 200 OK") && got.contains("ftpct_test"))
}

/// Whether the server closed `s` (EOF or reset), waiting at most `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    if s.set_read_timeout(Some(wait)).is_err() {
        return true;
    }
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Sends the start of a request a byte at a time, every `every`, until
/// `stop` or the server cuts it (then true) or `give_up` passes (false).
fn trickle(addr: SocketAddr, every: Duration, give_up: Duration, stop: &AtomicBool) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let request = b"GET /metrics HTTP/1.0\r\nX-Slow: "
        .iter()
        .chain([b'a'; 64].iter().cycle());
    let start = Instant::now();
    for &byte in request {
        if stop.load(Ordering::Relaxed) || start.elapsed() > give_up {
            return false;
        }
        if s.write_all(&[byte]).is_err() || closed_by_server(&mut s, every) {
            return true;
        }
    }
    false
}

fn tricklers(
    addr: SocketAddr,
    n: usize,
    every: Duration,
    give_up: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<bool>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || trickle(addr, every, give_up, &stop))
        })
        .collect()
}

/// Scrapes pass while three clients trickle a byte every 200 ms and are
/// given 30 s each: a serial server would make every scrape wait that long.
#[test]
fn scrapes_pass_while_clients_trickle() {
    let addr = endpoint(Limits {
        deadline: Duration::from_secs(30),
        connections: 8,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let slow = tricklers(
        addr,
        3,
        Duration::from_millis(200),
        Duration::from_secs(60),
        &stop,
    );
    std::thread::sleep(Duration::from_millis(500));
    let passed = (0..5).filter(|_| scraped(addr)).count();
    stop.store(true, Ordering::Relaxed);
    let cut: Vec<bool> = slow
        .into_iter()
        .map(|t| t.join().expect("trickler"))
        .collect();
    assert_eq!(passed, 5, "scrapes that passed while clients trickled");
    assert_eq!(cut, [false; 3], "tricklers cut before their deadline");
}

/// A client trickling a byte every 200 ms is cut once the whole request's
/// deadline (1 s) passes, though each byte comes well within any per-read
/// timeout.
#[test]
fn a_trickling_client_is_cut_at_the_deadline() {
    let addr = endpoint(Limits {
        deadline: Duration::from_secs(1),
        connections: 8,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let slow = tricklers(
        addr,
        2,
        Duration::from_millis(200),
        Duration::from_secs(60),
        &stop,
    );
    for t in slow {
        assert!(t.join().expect("trickler"), "a trickler was not cut");
    }
    assert!(scraped(addr), "a scrape after the tricklers");
}

/// With every slot held, one more connection is turned away at once (not
/// held until a deadline 60 s away); once the holders leave, scrapes pass.
#[test]
fn excess_connections_are_turned_away_at_once() {
    let addr = endpoint(Limits {
        deadline: Duration::from_secs(60),
        connections: 2,
    });
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("holder");
            s.write_all(b"G").expect("a byte");
            s
        })
        .collect();
    let mut third = TcpStream::connect(addr).expect("third");
    assert!(
        closed_by_server(&mut third, CLIENT_PATIENCE),
        "the connection beyond the limit was held"
    );
    drop(holders);
    let start = Instant::now();
    while !scraped(addr) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no scrape after the holders left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
