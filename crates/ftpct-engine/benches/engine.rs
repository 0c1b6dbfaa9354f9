//! Engine benchmarks (criterion), and a memory/lookup measurement.
//!
//! `cargo bench --bench engine` runs, in one process:
//! 1. the memory and table-size figures (printed, not criterion): RSS
//!    growth for 100,000 idle tracked control connections and 100,000
//!    pending expectations, the cost of a packet and of a data SYN spread
//!    over those tables, and of one timer tick;
//! 2. criterion benchmarks, one packet per iteration:
//!    - `plain/*`: an established control connection exchanging
//!      `NOOP`/`200 OK`, both directions alternately;
//!    - `rewrite/*`: a PORT (SNAT), a 227 (DNAT) or an EPRT (IPv6 SNAT)
//!      rewritten, packet rebuild and expectation included;
//!    - `fixup/*`: the `NOOP`/`200 OK` exchange on a flow that had a PORT
//!      rewritten earlier (every packet shifted or un-shifted, rebuilt).
//!
//! `BENCH_MEM=only` runs only part 1, `BENCH_MEM=skip` skips it; criterion
//! options and filters go after `--` as usual. Packets are built once;
//! each iteration only patches sequence and acknowledgement numbers in
//! place (the engine does not verify input checksums), so the figures are
//! the engine's own cost.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::Criterion;
use etherparse::PacketBuilder;
use ftpct_engine::engine::{Config, Engine, Hook, Verdict};
use ftpct_engine::nat::{CtMapping, NatLookup, NoNat, StaticNat};
use ftpct_engine::tuple::Tuple;

/// Flows and expectations in the table-size measurement.
const TABLE: u32 = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mem-variant") {
        // A child process: one table measurement on a fresh heap.
        match args.get(i + 1).map(String::as_str) {
            Some("snat") => table_run("SNAT, PORT rewritten", true, &mut PrefixSnat),
            _ => table_run("no NAT", false, &mut NoNat),
        }
        return;
    }
    // Criterion owns the command line: the memory part is chosen by
    // environment (BENCH_MEM=only or BENCH_MEM=skip).
    let mem = std::env::var("BENCH_MEM").unwrap_or_default();
    if mem != "skip" {
        memory_and_tables();
    }
    if mem == "only" {
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .without_plots()
        .configure_from_args();
    plain(&mut c);
    rewrite(&mut c);
    fixup(&mut c);
    c.final_summary();
}

// ---------------------------------------------------------------- packets

#[derive(Clone, Copy)]
struct Flags {
    syn: bool,
    ack: bool,
}

const SYN: Flags = Flags {
    syn: true,
    ack: false,
};
const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
};
const ACK: Flags = Flags {
    syn: false,
    ack: true,
};

fn packet(t: &Tuple, seq: u32, ack: u32, f: Flags, payload: &[u8]) -> Vec<u8> {
    let b = match (t.src.ip(), t.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut b = b.tcp(t.src.port(), t.dst.port(), seq, 64240);
    if f.syn {
        b = b.syn();
    }
    if f.ack {
        b = b.ack(ack);
    }
    let mut out = Vec::with_capacity(80 + payload.len());
    b.write(&mut out, payload).expect("write to a Vec");
    out
}

/// Writes sequence and acknowledgement numbers into a built packet.
fn patch(buf: &mut [u8], seq: u32, ack: u32) {
    let tcp = if buf[0] >> 4 == 6 { 40 } else { 20 };
    buf[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    buf[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
}

fn tuple(src: &str, dst: &str) -> Tuple {
    Tuple::new(
        src.parse().expect("bench address"),
        dst.parse().expect("bench address"),
    )
}

fn snat(rule: &str) -> StaticNat {
    StaticNat::new(vec![rule.parse().expect("bench rule")], vec![])
}

fn dnat(rule: &str) -> StaticNat {
    StaticNat::new(vec![], vec![rule.parse().expect("bench rule")])
}

// ------------------------------------------------------ one control flow

/// One control connection driven through an engine: the client and
/// server tuples as the gateway sees them, and each side's next sequence
/// number in its own (original) numbering.
struct Session {
    engine: Engine,
    nat: StaticNat,
    c2s: Tuple,
    s2c: Tuple,
    client_next: u32,
    server_next: u32,
    now: Duration,
}

impl Session {
    /// Handshake and banner.
    fn open(nat: StaticNat, c2s: Tuple, s2c: Tuple) -> Session {
        let mut s = Session {
            engine: Engine::new(Config::default()),
            nat,
            c2s,
            s2c,
            client_next: 1_000_001,
            server_next: 5_000_001,
            now: Duration::from_secs(1),
        };
        s.send_raw(true, SYN, &[], 1_000_000);
        s.send_raw(false, SYN_ACK, &[], 5_000_000);
        s.send(true, b"");
        s.send(false, b"220 ready\r\n");
        s.send(true, b"");
        s
    }

    fn send_raw(&mut self, client: bool, f: Flags, payload: &[u8], seq: u32) -> Verdict {
        let (t, ack) = if client {
            (self.c2s, self.server_next)
        } else {
            (self.s2c, self.client_next)
        };
        let ack = self.engine.acknowledged_by(&t, ack);
        let bytes = packet(&t, seq, ack, f, payload);
        self.now += Duration::from_micros(1);
        let out = self
            .engine
            .process(&bytes, self.now, Hook::Prerouting, &mut self.nat);
        out.verdict
    }

    fn send(&mut self, client: bool, payload: &[u8]) -> Verdict {
        let seq = if client {
            self.client_next
        } else {
            self.server_next
        };
        let v = self.send_raw(client, ACK, payload, seq);
        let n = payload.len() as u32;
        if client {
            self.client_next = self.client_next.wrapping_add(n);
        } else {
            self.server_next = self.server_next.wrapping_add(n);
        }
        v
    }
}

/// A prepared packet that is sent again and again with new numbers.
struct Repeat {
    bytes: Vec<u8>,
    client: bool,
    len: u32,
    /// What the receiver's numbering adds to the other direction's
    /// positions (edits made before the benchmark), so that no engine
    /// call but `process` is timed.
    ack_shift: u32,
}

impl Repeat {
    fn new(s: &Session, client: bool, payload: &[u8]) -> Repeat {
        let (t, other) = if client {
            (s.c2s, s.server_next)
        } else {
            (s.s2c, s.client_next)
        };
        Repeat {
            bytes: packet(&t, 0, 0, ACK, payload),
            client,
            len: payload.len() as u32,
            ack_shift: s.engine.acknowledged_by(&t, other).wrapping_sub(other),
        }
    }

    /// Sends it once as the next segment of its direction; returns the
    /// verdict's size so that nothing is optimised away.
    fn send(&mut self, s: &mut Session) -> usize {
        let (seq, other) = if self.client {
            (s.client_next, s.server_next)
        } else {
            (s.server_next, s.client_next)
        };
        let ack = other.wrapping_add(self.ack_shift);
        patch(&mut self.bytes, seq, ack);
        s.now += Duration::from_micros(1);
        let out = s
            .engine
            .process(black_box(&self.bytes), s.now, Hook::Prerouting, &mut s.nat);
        if self.client {
            s.client_next = s.client_next.wrapping_add(self.len);
        } else {
            s.server_next = s.server_next.wrapping_add(self.len);
        }
        match out.verdict {
            Verdict::Replace(b) => b.len(),
            Verdict::Accept => 1,
            Verdict::Drop => 0,
        }
    }
}

/// Benchmarks alternate packets from `packets` on session `s`.
fn bench_exchange(c: &mut Criterion, name: &str, mut s: Session, mut packets: Vec<Repeat>) {
    c.bench_function(name, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let n = packets.len();
            let r = &mut packets[i % n];
            i += 1;
            black_box(r.send(&mut s))
        })
    });
}

fn snat_v4() -> Session {
    Session::open(
        snat("192.0.2.0/24=198.51.100.1"),
        tuple("192.0.2.10:40000", "198.51.100.20:21"),
        tuple("198.51.100.20:21", "198.51.100.1:40000"),
    )
}

fn plain(c: &mut Criterion) {
    let exchange = |s: &Session| {
        vec![
            Repeat::new(s, true, b"NOOP\r\n"),
            Repeat::new(s, false, b"200 OK\r\n"),
        ]
    };
    let s = snat_v4();
    let p = exchange(&s);
    bench_exchange(c, "plain/noop_200_v4_snat", s, p);

    let s = Session::open(
        StaticNat::new(vec![], vec![]),
        tuple("192.0.2.10:40000", "198.51.100.20:21"),
        tuple("198.51.100.20:21", "192.0.2.10:40000"),
    );
    let p = exchange(&s);
    bench_exchange(c, "plain/noop_200_v4_no_nat", s, p);

    let s = Session::open(
        snat("2001:db8:1::/64=2001:db8:2::1"),
        tuple("[2001:db8:1::10]:40000", "[2001:db8:2::20]:21"),
        tuple("[2001:db8:2::20]:21", "[2001:db8:2::1]:40000"),
    );
    let p = exchange(&s);
    bench_exchange(c, "plain/noop_200_v6_snat", s, p);
}

fn rewrite(c: &mut Criterion) {
    let s = snat_v4();
    let mut port = Repeat::new(&s, true, b"PORT 192,0,2,10,156,64\r\n");
    let mut check = snat_v4();
    assert!(port.send(&mut check) > 1, "the PORT must be rewritten");
    bench_exchange(c, "rewrite/port_v4_snat", s, vec![port]);

    let open_dnat = || {
        Session::open(
            dnat("198.51.100.1=192.0.2.20"),
            tuple("198.51.100.10:40000", "198.51.100.1:21"),
            tuple("192.0.2.20:21", "198.51.100.10:40000"),
        )
    };
    let s = open_dnat();
    let line = b"227 Entering Passive Mode (192,0,2,20,195,80).\r\n";
    let mut pasv = Repeat::new(&s, false, line);
    let mut check = open_dnat();
    assert!(pasv.send(&mut check) > 1, "the 227 must be rewritten");
    bench_exchange(c, "rewrite/227_v4_dnat", s, vec![pasv]);

    let open_v6 = || {
        Session::open(
            snat("2001:db8:1::/64=2001:db8:2::1"),
            tuple("[2001:db8:1::10]:40000", "[2001:db8:2::20]:21"),
            tuple("[2001:db8:2::20]:21", "[2001:db8:2::1]:40000"),
        )
    };
    let s = open_v6();
    let mut eprt = Repeat::new(&s, true, b"EPRT |2|2001:db8:1::10|40100|\r\n");
    let mut check = open_v6();
    assert!(eprt.send(&mut check) > 1, "the EPRT must be rewritten");
    bench_exchange(c, "rewrite/eprt_v6_snat", s, vec![eprt]);
}

fn fixup(c: &mut Criterion) {
    let mut s = snat_v4();
    let v = s.send(true, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(v, Verdict::Replace(_)), "PORT rewritten");
    s.send(false, b"200 PORT command successful.\r\n");
    let p = vec![
        Repeat::new(&s, true, b"NOOP\r\n"),
        Repeat::new(&s, false, b"200 OK\r\n"),
    ];
    bench_exchange(c, "fixup/noop_200_after_port_rewrite", s, p);
}

// ------------------------------------------------ memory and table sizes

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).expect("page size")
}

/// Bytes malloc has handed out and not taken back (glibc's mallinfo2):
/// the live heap, without allocator overhead or freed-but-kept memory.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// SNAT without a cache: 192.0.2.k:p leaves as 198.51.100.k:p. Unlike
/// `StaticNat` it stores nothing, so RSS growth is the engine's alone.
struct PrefixSnat;

impl NatLookup for PrefixSnat {
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping> {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (seen.src.ip(), seen.dst.ip()) else {
            return None;
        };
        if src.octets()[..3] == [192, 0, 2] {
            let public = SocketAddr::new(
                Ipv4Addr::new(198, 51, 100, src.octets()[3]).into(),
                seen.src.port(),
            );
            return Some(CtMapping {
                orig: *seen,
                reply: Tuple::new(seen.dst, public),
            });
        }
        if dst.octets()[..3] == [198, 51, 100] {
            let inside = SocketAddr::new(
                Ipv4Addr::new(192, 0, 2, dst.octets()[3]).into(),
                seen.dst.port(),
            );
            return Some(CtMapping {
                orig: Tuple::new(inside, seen.src),
                reply: *seen,
            });
        }
        None
    }
}

/// Client `i` of the table: 192.0.2.(1 + i / 50000), port 10000 + i % 50000.
fn client(i: u32) -> SocketAddr {
    let host = u8::try_from(1 + i / 50_000).expect("few client hosts");
    let port = u16::try_from(10_000 + i % 50_000).expect("port");
    SocketAddr::new(Ipv4Addr::new(192, 0, 2, host).into(), port)
}

fn server() -> SocketAddr {
    "203.0.113.20:21".parse().expect("server")
}

fn public_of(c: SocketAddr, natted: bool) -> SocketAddr {
    match c.ip() {
        IpAddr::V4(a) if natted => {
            SocketAddr::new(Ipv4Addr::new(198, 51, 100, a.octets()[3]).into(), c.port())
        }
        _ => c,
    }
}

fn port_line(c: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(a) = c.ip() else {
        unreachable!("v4 clients")
    };
    let o = a.octets();
    format!(
        "PORT {},{},{},{},{},{}\r\n",
        o[0],
        o[1],
        o[2],
        o[3],
        c.port() >> 8,
        c.port() & 0xff
    )
    .into_bytes()
}

const CLIENT_ISN: u32 = 1_000_000;
const SERVER_ISN: u32 = 7_000_000;
const BANNER: &[u8] = b"220 ready\r\n";

fn table_run(label: &str, natted: bool, nat: &mut dyn NatLookup) {
    let cfg = Config {
        max_flows: 2 * TABLE as usize,
        max_expect_total: 2 * TABLE as usize,
        ..Config::default()
    };
    let mut engine = Engine::new(cfg);
    let mut now = Duration::from_secs(10);
    let mut feed = |engine: &mut Engine, bytes: &[u8], now: &mut Duration| {
        *now += Duration::from_micros(1);
        black_box(engine.process(bytes, *now, Hook::Prerouting, nat));
    };
    let c2s = |i: u32| Tuple::new(client(i), server());
    let s2c = |i: u32| Tuple::new(server(), public_of(client(i), natted));
    let (c1, s1) = (CLIENT_ISN + 1, SERVER_ISN + 1);
    let s2 = s1 + BANNER.len() as u32;

    let before = (rss(), heap_in_use());
    for i in 0..TABLE {
        feed(
            &mut engine,
            &packet(&c2s(i), CLIENT_ISN, 0, SYN, &[]),
            &mut now,
        );
        feed(
            &mut engine,
            &packet(&s2c(i), SERVER_ISN, c1, SYN_ACK, &[]),
            &mut now,
        );
        feed(&mut engine, &packet(&c2s(i), c1, s1, ACK, &[]), &mut now);
        feed(&mut engine, &packet(&s2c(i), s1, c1, ACK, BANNER), &mut now);
        feed(&mut engine, &packet(&c2s(i), c1, s2, ACK, &[]), &mut now);
    }
    let flows = (rss(), heap_in_use());
    assert_eq!(engine.flow_count(), TABLE as usize, "all flows tracked");

    let mut port_len = 0;
    for i in 0..TABLE {
        let line = port_line(client(i));
        port_len = line.len() as u32;
        feed(&mut engine, &packet(&c2s(i), c1, s2, ACK, &line), &mut now);
    }
    let expects = (rss(), heap_in_use());
    assert_eq!(engine.expectation_count(), TABLE as usize, "all expected");

    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(TABLE);
    println!(
        "mem {label}: {TABLE} idle flows: RSS {:.0} B/flow (heap in use {:.0} B/flow); \
         {TABLE} pending expectations: RSS {:.0} B/expectation (heap in use {:.0} B); \
         RSS total +{:.1} MiB",
        per(before.0, flows.0),
        per(before.1, flows.1),
        per(flows.0, expects.0),
        per(flows.1, expects.1),
        expects.0.saturating_sub(before.0) as f64 / 1048576.0,
    );

    // One NOOP per flow, all over the table: lookup + processing.
    let c3 = c1 + port_len;
    let noops: Vec<Vec<u8>> = (0..TABLE)
        .map(|i| packet(&c2s(i), c3, s2, ACK, b"NOOP\r\n"))
        .collect();
    let start = Instant::now();
    for p in &noops {
        feed(&mut engine, p, &mut now);
    }
    let per_packet = start.elapsed().as_nanos() as f64 / f64::from(TABLE);
    drop(noops);

    // A packet of no tracked flow on the control port (table miss).
    let miss = packet(
        &tuple("192.0.2.250:9999", "203.0.113.99:2121"),
        1,
        1,
        ACK,
        b"x",
    );
    let start = Instant::now();
    for _ in 0..TABLE {
        feed(&mut engine, &miss, &mut now);
    }
    let per_miss = start.elapsed().as_nanos() as f64 / f64::from(TABLE);

    // One timer pass over both tables (nothing due): what a packet that
    // crosses a second boundary pays.
    now += Duration::from_secs(2);
    let start = Instant::now();
    let events = engine.tick(now).events;
    let tick = start.elapsed();
    assert!(events.is_empty(), "nothing expires");

    // The data SYN of every expectation: lookup, removal, event.
    let syns: Vec<Vec<u8>> = (0..TABLE)
        .map(|i| {
            let dst = public_of(client(i), natted);
            let t = Tuple::new("203.0.113.20:20".parse().expect("a"), dst);
            packet(&t, 42, 0, SYN, &[])
        })
        .collect();
    let start = Instant::now();
    for p in &syns {
        feed(&mut engine, p, &mut now);
    }
    let per_syn = start.elapsed().as_nanos() as f64 / f64::from(TABLE);
    assert_eq!(engine.expectation_count(), 0, "every data SYN matched");
    println!(
        "lookup {label}: {per_packet:.0} ns/packet spread over {TABLE} flows, \
         {per_miss:.0} ns/packet of no flow, {per_syn:.0} ns/data SYN matched \
         among {TABLE} expectations, {:.2} ms per timer tick over {TABLE} flows \
         + {TABLE} expectations",
        tick.as_secs_f64() * 1e3
    );
}

fn memory_and_tables() {
    println!(
        "sizes: Flow {} B, Stream {} B, Tuple {} B, Expectation {} B",
        std::mem::size_of::<ftpct_engine::flow::Flow>(),
        std::mem::size_of::<ftpct_engine::stream::Stream>(),
        std::mem::size_of::<Tuple>(),
        std::mem::size_of::<ftpct_engine::expect::Expectation>(),
    );
    // Each variant in its own process: memory freed by one run would be
    // reused by the next and hide its growth.
    let exe = std::env::current_exe().expect("own executable");
    for variant in ["nonat", "snat"] {
        let status = std::process::Command::new(&exe)
            .args(["--mem-variant", variant])
            .status()
            .expect("run the memory measurement");
        assert!(status.success(), "memory measurement {variant} failed");
    }
}
