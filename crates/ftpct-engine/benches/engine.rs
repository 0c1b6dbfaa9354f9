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
//!      rewritten, packet rebuild and expectation included; only that
//!      packet is timed, each after the other side's `200 OK` or `PASV`
//!      (untimed), which acknowledges the earlier rewrites and, for the
//!      227, is the command it answers;
//!    - `fixup/*`: the `NOOP`/`200 OK` exchange on a flow that had a PORT
//!      rewritten earlier (every packet shifted or un-shifted, rebuilt).
//!
//! `BENCH_MEM=only` runs only part 1, `BENCH_MEM=skip` skips it; criterion
//! options and filters go after `--` as usual. `BENCH_ITERS=N` runs
//! instead each case whose name contains a filter given (all without
//! one) N times, untimed, for an instruction count that a noisy machine
//! does not move: under `valgrind --tool=callgrind
//! --toggle-collect='engine::Repeat::send'`, the instructions of the
//! timed packet alone (see BENCHMARKS.md). Packets are built once;
//! each iteration only patches sequence and acknowledgement numbers in
//! place (the engine does not verify input checksums), so the figures are
//! the engine's own cost.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::Criterion;
use ftpct_engine::engine::{Config, Input, Verdict};
use ftpct_engine::nat::{CtMapping, NatLookup, NoNat, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_testkit::{set_seq_ack, tuple, Control, Gateway, Segment, Side};

/// Flows and expectations in the table-size measurement.
const TABLE: u32 = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mem-variant") {
        // A child process: one table measurement on a fresh heap.
        match args.get(i + 1).map(String::as_str) {
            Some("snat") => table_run("SNAT, PORT rewritten", true, PrefixSnat),
            _ => table_run("no NAT", false, NoNat),
        }
        return;
    }
    if let Some(iters) = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        let filters = args.into_iter().skip(1).filter(|a| !a.starts_with("--"));
        return cases(&mut Runner::Count {
            iters,
            filters: filters.collect(),
        });
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
    let c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .without_plots()
        .configure_from_args();
    let mut runner = Runner::Criterion(Box::new(c));
    cases(&mut runner);
    if let Runner::Criterion(c) = runner {
        c.final_summary();
    }
}

fn cases(r: &mut Runner) {
    plain(r);
    rewrite(r);
    fixup(r);
}

/// How each case runs.
enum Runner {
    /// Timed by criterion (boxed: the other way is two words).
    Criterion(Box<Criterion>),
    /// `iters` times each, untimed, the cases named by a filter.
    Count { iters: u64, filters: Vec<String> },
}

impl Runner {
    /// How many times case `name` runs untimed: none unless counted and
    /// chosen.
    fn count(&self, name: &str) -> u64 {
        match self {
            Runner::Count { iters, filters }
                if filters.is_empty() || filters.iter().any(|f| name.contains(f)) =>
            {
                *iters
            }
            _ => 0,
        }
    }
}

// ------------------------------------------------------ one control flow

/// One control connection driven through an engine, in the gateway's
/// clock (1 µs a packet).
struct Session {
    gw: Gateway<StaticNat>,
    ctl: Control,
}

impl Session {
    /// Handshake and banner.
    fn open(nat: StaticNat, c2s: Tuple, s2c: Tuple) -> Session {
        let gw = Gateway::new(Config::default(), nat)
            .clock(Duration::from_secs(1), Duration::from_micros(1));
        let mut s = Session {
            gw,
            ctl: Control::new(c2s, s2c, 1_000_000, 5_000_000),
        };
        s.ctl.handshake(&mut s.gw);
        s.ctl.server_says(&mut s.gw, b"220 ready\r\n");
        s.ctl.client_says(&mut s.gw, b"");
        s
    }

    fn send(&mut self, side: Side, payload: &[u8]) -> Verdict {
        self.ctl.says(&mut self.gw, side, payload).verdict
    }
}

/// A prepared packet that is sent again and again with new numbers.
struct Repeat {
    bytes: Vec<u8>,
    side: Side,
    len: usize,
    /// What the receiver's numbering adds to the other direction's
    /// positions (edits made before the benchmark), so that no engine
    /// call but the packet's is timed.
    ack_shift: u32,
}

impl Repeat {
    fn new(s: &Session, side: Side, payload: &[u8]) -> Repeat {
        let other = s.ctl.peer(side.other()).next;
        Repeat {
            bytes: Segment::new(s.ctl.tuple(side), 0)
                .ack(0)
                .payload(payload)
                .build(),
            side,
            len: payload.len(),
            ack_shift: s.ctl.acknowledges(side, &s.gw.engine).wrapping_sub(other),
        }
    }

    /// Sends it once as the next segment of its direction; returns the
    /// verdict's size so that nothing is optimised away. Never inlined:
    /// callgrind counts its instructions alone.
    #[inline(never)]
    fn send(&mut self, s: &mut Session) -> usize {
        let seq = s.ctl.peer(self.side).next;
        let ack = s
            .ctl
            .peer(self.side.other())
            .next
            .wrapping_add(self.ack_shift);
        set_seq_ack(&mut self.bytes, seq, ack);
        let verdict = s.gw.verdict(black_box(&self.bytes));
        s.ctl.peer_mut(self.side).advance(self.len);
        match verdict {
            Verdict::Replace(b) => b.len(),
            Verdict::Accept => 1,
            Verdict::Drop => 0,
        }
    }
}

fn snat(rule: &str) -> StaticNat {
    StaticNat::new(vec![rule.parse().expect("bench rule")], vec![])
}

fn dnat(rule: &str) -> StaticNat {
    StaticNat::new(vec![], vec![rule.parse().expect("bench rule")])
}

/// Benchmarks alternate packets from `packets` on session `s`.
fn bench_exchange(r: &mut Runner, name: &str, mut s: Session, mut packets: Vec<Repeat>) {
    let mut i = 0usize;
    let mut once = || {
        let n = packets.len();
        let p = &mut packets[i % n];
        i += 1;
        black_box(p.send(&mut s))
    };
    match r {
        Runner::Criterion(c) => {
            c.bench_function(name, |b| b.iter(&mut once));
        }
        Runner::Count { .. } => (0..r.count(name)).for_each(|_| {
            once();
        }),
    }
}

/// Benchmarks `timed` alone, each time right after the other side said
/// `before` (untimed): a 227 counts only as the answer of a waiting PASV,
/// and the other side's segment acknowledges the rewritten lines, as a
/// real peer does (past 1024 unacknowledged rewrites the engine refuses
/// the next ones, and the figure would be a refusal's).
fn bench_after(r: &mut Runner, name: &str, mut s: Session, before: &[u8], mut timed: Repeat) {
    let mut once = || {
        black_box(s.send(timed.side.other(), before));
        let start = Instant::now();
        black_box(timed.send(&mut s));
        start.elapsed()
    };
    match r {
        Runner::Criterion(c) => {
            c.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| once()).sum())
            });
        }
        Runner::Count { .. } => (0..r.count(name)).for_each(|_| {
            once();
        }),
    }
}

fn snat_v4() -> Session {
    Session::open(
        snat("192.0.2.0/24=198.51.100.1"),
        tuple("192.0.2.10:40000", "198.51.100.20:21"),
        tuple("198.51.100.20:21", "198.51.100.1:40000"),
    )
}

fn plain(c: &mut Runner) {
    let exchange = |s: &Session| {
        vec![
            Repeat::new(s, Side::Client, b"NOOP\r\n"),
            Repeat::new(s, Side::Server, b"200 OK\r\n"),
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

fn rewrite(c: &mut Runner) {
    let s = snat_v4();
    let mut port = Repeat::new(&s, Side::Client, b"PORT 192,0,2,10,156,64\r\n");
    let mut check = snat_v4();
    assert!(port.send(&mut check) > 1, "the PORT must be rewritten");
    bench_after(c, "rewrite/port_v4_snat", s, b"200 OK\r\n", port);

    let open_dnat = || {
        Session::open(
            dnat("198.51.100.1=192.0.2.20"),
            tuple("198.51.100.10:40000", "198.51.100.1:21"),
            tuple("192.0.2.20:21", "198.51.100.10:40000"),
        )
    };
    let s = open_dnat();
    let line = b"227 Entering Passive Mode (192,0,2,20,195,80).\r\n";
    let mut pasv = Repeat::new(&s, Side::Server, line);
    let mut check = open_dnat();
    check.send(Side::Client, b"PASV\r\n");
    assert!(pasv.send(&mut check) > 1, "the 227 must be rewritten");
    bench_after(c, "rewrite/227_v4_dnat", s, b"PASV\r\n", pasv);

    let open_v6 = || {
        Session::open(
            snat("2001:db8:1::/64=2001:db8:2::1"),
            tuple("[2001:db8:1::10]:40000", "[2001:db8:2::20]:21"),
            tuple("[2001:db8:2::20]:21", "[2001:db8:2::1]:40000"),
        )
    };
    let s = open_v6();
    let mut eprt = Repeat::new(&s, Side::Client, b"EPRT |2|2001:db8:1::10|40100|\r\n");
    let mut check = open_v6();
    assert!(eprt.send(&mut check) > 1, "the EPRT must be rewritten");
    bench_after(c, "rewrite/eprt_v6_snat", s, b"200 OK\r\n", eprt);
}

fn fixup(c: &mut Runner) {
    let mut s = snat_v4();
    let v = s.send(Side::Client, b"PORT 192,0,2,10,156,64\r\n");
    assert!(matches!(v, Verdict::Replace(_)), "PORT rewritten");
    s.send(Side::Server, b"200 PORT command successful.\r\n");
    let p = vec![
        Repeat::new(&s, Side::Client, b"NOOP\r\n"),
        Repeat::new(&s, Side::Server, b"200 OK\r\n"),
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

fn table_run<N: NatLookup>(label: &str, natted: bool, nat: N) {
    let cfg = Config {
        max_flows: 2 * TABLE as usize,
        max_expect_total: 2 * TABLE as usize,
        ..Config::default()
    };
    let mut gw = Gateway::new(cfg, nat).clock(Duration::from_secs(10), Duration::from_micros(1));
    let feed = |gw: &mut Gateway<N>, bytes: &[u8]| {
        black_box(gw.process(bytes));
    };
    let c2s = |i: u32| Tuple::new(client(i), server());
    let s2c = |i: u32| Tuple::new(server(), public_of(client(i), natted));
    let c1 = CLIENT_ISN + 1;
    let s2 = SERVER_ISN + 1 + BANNER.len() as u32;
    // A segment of client `i` after the banner, its next byte at `seq`.
    let client_sends = |i: u32, seq: u32, payload: &[u8]| -> Vec<u8> {
        Segment::new(c2s(i), seq).ack(s2).payload(payload).build()
    };

    let before = (rss(), heap_in_use());
    for i in 0..TABLE {
        let mut ctl = Control::new(c2s(i), s2c(i), CLIENT_ISN, SERVER_ISN);
        black_box(ctl.handshake(&mut gw));
        black_box(ctl.server_says(&mut gw, BANNER));
        black_box(ctl.client_says(&mut gw, b""));
    }
    let flows = (rss(), heap_in_use());
    assert_eq!(gw.engine.flow_count(), TABLE as usize, "all flows tracked");

    let mut port_len = 0;
    for i in 0..TABLE {
        let line = port_line(client(i));
        port_len = line.len() as u32;
        feed(&mut gw, &client_sends(i, c1, &line));
    }
    let expects = (rss(), heap_in_use());
    assert_eq!(
        gw.engine.expectation_count(),
        TABLE as usize,
        "all expected"
    );

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
        .map(|i| client_sends(i, c3, b"NOOP\r\n"))
        .collect();
    let start = Instant::now();
    for p in &noops {
        feed(&mut gw, p);
    }
    let per_packet = start.elapsed().as_nanos() as f64 / f64::from(TABLE);
    drop(noops);

    // A packet of no tracked flow on the control port (table miss).
    let miss = Segment::new(tuple("192.0.2.250:9999", "203.0.113.99:2121"), 1)
        .ack(1)
        .payload(b"x")
        .build();
    let start = Instant::now();
    for _ in 0..TABLE {
        feed(&mut gw, &miss);
    }
    let per_miss = start.elapsed().as_nanos() as f64 / f64::from(TABLE);

    // One timer pass over both tables (nothing due): what a packet that
    // crosses a second boundary pays.
    gw.now += Duration::from_secs(2);
    let start = Instant::now();
    let events = gw.input(Input::Timeout).events;
    let tick = start.elapsed();
    assert!(events.is_empty(), "nothing expires");

    // The data SYN of every expectation: lookup, removal, event.
    let syns: Vec<Vec<u8>> = (0..TABLE)
        .map(|i| {
            let dst = public_of(client(i), natted);
            let t = Tuple::new("203.0.113.20:20".parse().expect("a"), dst);
            Segment::new(t, 42).syn().build()
        })
        .collect();
    let start = Instant::now();
    for p in &syns {
        feed(&mut gw, p);
    }
    let per_syn = start.elapsed().as_nanos() as f64 / f64::from(TABLE);
    assert_eq!(gw.engine.expectation_count(), 0, "every data SYN matched");
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
