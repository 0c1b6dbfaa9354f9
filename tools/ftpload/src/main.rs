//! `ftpload`: the load generator, minimal FTP server and stream sink that
//! the gateway benchmarks (`python3 -m lab bench`, tests/lab/bench.py) drive
//! through the lab's gateway.
//!
//! Not part of ftpct: a benchmark tool. Every subcommand that measures
//! prints one JSON object on standard output when it is done.
//!
//! - `server`: a small, fast FTP server (one thread per control connection;
//!   USER/PASS accept anyone; PASV, EPSV, PORT, EPRT; RETR of files under
//!   `--root` or of generated `gen-N.bin` files (N bytes, see `gen`); and
//!   `XSINK`, which turns the control connection into a sink for the
//!   streaming test). It must never be the bottleneck of the gateway tests.
//! - `rtt`: one session, N commands (NOOP, PASV, EPSV, PORT or EPRT), the
//!   round trip of each (command sent to reply read): median, p99.
//! - `sessions`: K client threads, each running complete sessions (login,
//!   PASV / EPSV / PORT / EPRT in turn, RETR of a small file, QUIT) until
//!   the duration is over: sessions per second, failures.
//! - `bulk`: one RETR, SHA-256 of what arrived checked: throughput.
//! - `stream`: a control connection that streams short lines (`NOOP\r\n`,
//!   pipelined, in small segments) to the server's `XSINK`: the sink counts
//!   the lines it got, so a lost or altered line is seen.
//! - `gen`: writes the content of `gen-N.bin` (a fixed pseudo-random stream).
//!
//! Every socket operation has a timeout and every loop a bound, so a
//! gateway that drops packets makes a run fail, never hang.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Timeout of any single socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A control connection idle this long is closed by the server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections the server serves at once (more are refused with 421).
const MAX_CONNECTIONS: usize = 2048;
/// Longest control line the server or the client accepts.
const MAX_LINE: usize = 4096;
/// Lines of a multi-line reply, at most.
const MAX_REPLY_LINES: usize = 100;
/// Commands `rtt` sends before it starts recording.
const WARMUP: usize = 200;
/// Size of the buffers that move file data.
const CHUNK: usize = 256 * 1024;

#[derive(Parser)]
#[command(
    name = "ftpload",
    about = "FTP load generator and test server for the lab's benchmarks and soak"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Minimal FTP server (thread per connection)
    Server {
        /// Address to listen on (repeatable)
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        /// Directory whose plain files RETR serves (gen-N.bin are generated)
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Round trip of one command, N times in one session
    Rtt {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, value_enum, default_value = "noop")]
        cmd: RttCmd,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// K concurrent clients running complete sessions with a data connection
    Sessions {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Seconds to run
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds each client waits between its sessions (0: none); the
        /// first wait is spread over the clients, so they do not start in step
        #[arg(long, default_value_t = 0.0)]
        pause: f64,
        /// Data connection modes, used in turn
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "pasv,epsv,port,eprt"
        )]
        modes: Vec<DataMode>,
        #[arg(long, default_value = "1k.bin")]
        file: String,
        /// Expected size of the file
        #[arg(long, default_value_t = 1024)]
        size: u64,
        /// Expected SHA-256 of the file (hex), checked on every transfer
        #[arg(long)]
        sha256: Option<String>,
    },
    /// One large RETR, throughput and SHA-256
    Bulk {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        file: String,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        sha256: String,
        #[arg(long, value_enum, default_value = "pasv")]
        mode: DataMode,
    },
    /// Streams short command lines to the server's XSINK
    Stream {
        #[arg(long)]
        target: SocketAddr,
        /// Seconds to stream
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// TCP maximum segment size of the stream (small: many packets)
        #[arg(long, default_value_t = 120)]
        mss: u32,
        /// Lines per write
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Writes the content of gen-N.bin to standard output
    Gen {
        #[arg(long)]
        size: u64,
    },
    /// A do-nothing NFQUEUE program: accepts every packet of the queue (the
    /// floor of any helper that queues the control channel); runs until killed
    NfqNull {
        #[arg(long, default_value_t = 0)]
        queue: u16,
        /// After a packet, poll without sleeping this long before blocking
        #[arg(long, default_value_t = 0)]
        spin_us: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RttCmd {
    Noop,
    Pasv,
    Epsv,
    Port,
    Eprt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DataMode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Server { listen, root } => server::run(&listen, root),
        Cmd::Rtt { target, cmd, count } => rtt(target, cmd, count),
        Cmd::Sessions {
            target,
            clients,
            duration,
            pause,
            modes,
            file,
            size,
            sha256,
        } => sessions(
            target,
            Load {
                clients,
                duration: secs(duration),
                pause: Duration::from_secs_f64(pause.clamp(0.0, 3600.0)),
            },
            &modes,
            &Expected { file, size, sha256 },
        ),
        Cmd::Bulk {
            target,
            file,
            size,
            sha256,
            mode,
        } => bulk(
            target,
            &Expected {
                file,
                size,
                sha256: Some(sha256),
            },
            mode,
        ),
        Cmd::Stream {
            target,
            duration,
            mss,
            batch,
        } => stream(target, secs(duration), mss, batch),
        Cmd::Gen { size } => gen_to_stdout(size),
        Cmd::NfqNull { queue, spin_us } => nfq_null(queue, Duration::from_micros(spin_us)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftpload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.1, 3600.0))
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// --- generated content --------------------------------------------------

/// The content of `gen-N.bin`: the first N bytes of a fixed xorshift64*
/// stream, so any size is a prefix of any larger one.
struct Gen {
    state: u64,
}

impl Gen {
    fn new() -> Self {
        Gen {
            state: 0x6674_7063_745f_6230,
        }
    }

    /// Fills `buf` (a multiple of 8 bytes) with the next bytes.
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_exact_mut(8) {
            let mut x = self.state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.state = x;
            word.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }

    /// Writes `size` bytes to `out`.
    fn write(mut self, size: u64, out: &mut impl Write) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut left = size;
        while left > 0 {
            self.fill(&mut buf);
            let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// `gen-N.bin` -> N.
fn gen_size(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

fn gen_to_stdout(size: u64) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(CHUNK, stdout.lock());
    Gen::new().write(size, &mut out)?;
    out.flush()
}

// --- FTP text -------------------------------------------------------------

/// `h1,h2,h3,h4,p1,p2` of an IPv4 socket address.
fn port_arg(a: SocketAddr) -> io::Result<String> {
    let IpAddr::V4(ip) = a.ip() else {
        return Err(err("PORT and PASV need IPv4: use EPRT and EPSV"));
    };
    let o = ip.octets();
    let p = a.port();
    Ok(format!(
        "{},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        p >> 8,
        p & 0xff
    ))
}

/// `|1|ip|port|` or `|2|ip|port|`.
fn eprt_arg(a: SocketAddr) -> String {
    let af = if a.is_ipv4() { 1 } else { 2 };
    format!("|{af}|{}|{}|", a.ip(), a.port())
}

/// The six numbers of PORT or of a 227 reply (digits anywhere, as the
/// kernel's helper reads them).
fn parse_h1p2(s: &str) -> Option<SocketAddr> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u16> = s[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(6)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some(SocketAddr::new(IpAddr::V4(ip), (nums[4] << 8) | nums[5]))
}

/// `|af|ip|port|` of EPRT (any delimiter).
fn parse_eprt(s: &str) -> Option<SocketAddr> {
    let d = s.chars().next()?;
    let parts: Vec<&str> = s.split(d).collect();
    if parts.len() < 5 {
        return None;
    }
    let ip: IpAddr = parts[2].parse().ok()?;
    let port: u16 = parts[3].parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The port of a 229 reply: `(|||port|)`.
fn parse_229(s: &str) -> Option<u16> {
    let open = s.find('(')?;
    let inner = &s[open + 1..];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    parts.get(3)?.parse().ok()
}

// --- sockets --------------------------------------------------------------

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A listener that can bind over TIME_WAIT leftovers of earlier data
/// connections (thousands of sessions per second exhaust ports otherwise).
fn data_listener(ip: IpAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.listen(4)?;
    Ok(s.into())
}

/// Waits until `fd` is readable, at most `timeout`.
fn wait_readable(fd: i32, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid pollfd, count 1, for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 => return Err(io::Error::new(io::ErrorKind::TimedOut, "accept timed out")),
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Accepts one data connection within the timeout.
fn accept_one(l: &TcpListener) -> io::Result<TcpStream> {
    wait_readable(l.as_raw_fd(), IO_TIMEOUT)?;
    let (s, _) = l.accept()?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Reads one line (without CR LF), bounded in length.
fn read_line(r: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<bool> {
    line.clear();
    let n = r.by_ref().take(MAX_LINE as u64).read_line(line)?;
    if n == 0 {
        return Ok(false);
    }
    if !line.ends_with('\n') {
        return Err(err("control line too long"));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(true)
}

// --- client ----------------------------------------------------------------

/// A client's control connection.
struct Ctrl {
    r: BufReader<TcpStream>,
    w: TcpStream,
    line: String,
}

impl Ctrl {
    fn connect(target: SocketAddr) -> io::Result<Self> {
        let s = connect(target)?;
        let mut c = Ctrl {
            r: BufReader::new(s.try_clone()?),
            w: s,
            line: String::new(),
        };
        c.expect(&[220])?;
        Ok(c)
    }

    fn local_ip(&self) -> io::Result<IpAddr> {
        Ok(self.w.local_addr()?.ip())
    }

    fn peer_ip(&self) -> io::Result<IpAddr> {
        Ok(self.w.peer_addr()?.ip())
    }

    /// The final line of the next reply: its code and text.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        for _ in 0..MAX_REPLY_LINES {
            if !read_line(&mut self.r, &mut self.line)? {
                return Err(err("control connection closed by the server"));
            }
            let l = &self.line;
            if l.len() >= 4 && l.as_bytes()[3] == b' ' {
                if let Ok(code) = l[..3].parse::<u16>() {
                    return Ok((code, l.clone()));
                }
            }
            if l.len() == 3 {
                if let Ok(code) = l.parse::<u16>() {
                    return Ok((code, l.clone()));
                }
            }
        }
        Err(err("reply longer than 100 lines"))
    }

    fn expect(&mut self, codes: &[u16]) -> io::Result<String> {
        let (code, text) = self.reply()?;
        if codes.contains(&code) {
            Ok(text)
        } else {
            Err(err(format!("expected {codes:?}, got: {text}")))
        }
    }

    fn send(&mut self, cmd: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(cmd.len() + 2);
        buf.extend_from_slice(cmd.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.w.write_all(&buf)
    }

    fn cmd(&mut self, cmd: &str, codes: &[u16]) -> io::Result<String> {
        self.send(cmd)?;
        self.expect(codes)
    }

    fn login(&mut self) -> io::Result<()> {
        // vsftpd with no_anon_password logs in at USER.
        self.send("USER anonymous")?;
        let (code, text) = self.reply()?;
        match code {
            230 => {}
            331 => {
                self.cmd("PASS bench@", &[230])?;
            }
            _ => return Err(err(format!("USER: {text}"))),
        }
        self.cmd("TYPE I", &[200])?;
        Ok(())
    }

    fn quit(mut self) -> io::Result<()> {
        self.cmd("QUIT", &[221])?;
        // The server closes first; reading its FIN keeps TIME_WAIT on its side.
        let mut rest = [0u8; 64];
        let _ = self.r.read(&mut rest);
        Ok(())
    }
}

/// A data connection being set up.
enum Data {
    /// Connect there after RETR is sent (passive modes connect before).
    Connected(TcpStream),
    Listening(TcpListener),
}

impl Data {
    fn open(c: &mut Ctrl, mode: DataMode) -> io::Result<Data> {
        match mode {
            DataMode::Pasv => {
                let t = c.cmd("PASV", &[227])?;
                let addr = parse_h1p2(&t[3..]).ok_or_else(|| err(format!("bad 227: {t}")))?;
                Ok(Data::Connected(connect(addr)?))
            }
            DataMode::Epsv => {
                let t = c.cmd("EPSV", &[229])?;
                let port = parse_229(&t).ok_or_else(|| err(format!("bad 229: {t}")))?;
                Ok(Data::Connected(connect(SocketAddr::new(
                    c.peer_ip()?,
                    port,
                ))?))
            }
            DataMode::Port | DataMode::Eprt => {
                let l = data_listener(c.local_ip()?)?;
                let a = l.local_addr()?;
                if mode == DataMode::Port {
                    c.cmd(&format!("PORT {}", port_arg(a)?), &[200])?;
                } else {
                    c.cmd(&format!("EPRT {}", eprt_arg(a)), &[200])?;
                }
                Ok(Data::Listening(l))
            }
        }
    }

    fn stream(self) -> io::Result<TcpStream> {
        match self {
            Data::Connected(s) => Ok(s),
            Data::Listening(l) => accept_one(&l),
        }
    }
}

/// What a RETR must deliver.
struct Expected {
    file: String,
    size: u64,
    sha256: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RETR over a fresh data connection: bytes received and their SHA-256.
/// `buf` is the caller's, reused from one transfer to the next.
fn retr(c: &mut Ctrl, mode: DataMode, file: &str, buf: &mut [u8]) -> io::Result<(u64, String)> {
    let data = step("data connection setup", Data::open(c, mode))?;
    step("RETR", c.send(&format!("RETR {file}")))?;
    let mut s = step("data connection", data.stream())?;
    step("150 reply", c.expect(&[150, 125]))?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = step("data", s.read(buf))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    drop(s);
    step("226 reply", c.expect(&[226]))?;
    Ok((total, hex(&hasher.finalize())))
}

/// Names the step of a session an error comes from (its kind kept).
fn step<T>(what: &str, r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// RETR of a large file: the socket is read in one thread and hashed in
/// another, so that SHA-256 (~1.3 GB/s here) does not set the pace.
fn retr_pipelined(c: &mut Ctrl, mode: DataMode, file: &str) -> io::Result<(u64, String)> {
    const BUFS: usize = 8;
    let data = Data::open(c, mode)?;
    c.send(&format!("RETR {file}"))?;
    let mut s = data.stream()?;
    c.expect(&[150, 125])?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFS);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFS);
    for _ in 0..BUFS {
        free_tx
            .send(vec![0u8; CHUNK])
            .map_err(|_| err("buffer pool"))?;
    }
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut total = 0u64;
        // Ends when the reader drops its sender.
        while let Ok((buf, n)) = full_rx.recv() {
            h.update(&buf[..n]);
            total += n as u64;
            if free_tx.send(buf).is_err() {
                break;
            }
        }
        (total, hex(&h.finalize()))
    });
    let read = (|| -> io::Result<()> {
        loop {
            let mut buf = free_rx
                .recv_timeout(IO_TIMEOUT)
                .map_err(|_| err("hashing stalled"))?;
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            full_tx.send((buf, n)).map_err(|_| err("hasher gone"))?;
        }
    })();
    drop(full_tx);
    let got = hasher.join().map_err(|_| err("hasher panicked"))?;
    read?;
    drop(s);
    c.expect(&[226])?;
    Ok(got)
}

fn check(exp: &Expected, got: (u64, String)) -> io::Result<()> {
    if got.0 != exp.size {
        return Err(err(format!(
            "{}: {} bytes, expected {}",
            exp.file, got.0, exp.size
        )));
    }
    if let Some(want) = &exp.sha256 {
        if !want.eq_ignore_ascii_case(&got.1) {
            return Err(err(format!("{}: SHA-256 {} != {want}", exp.file, got.1)));
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU seconds (user + system) this process has used.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn rtt(target: SocketAddr, which: RttCmd, count: usize) -> io::Result<()> {
    let count = count.clamp(1, 10_000_000);
    let mut c = Ctrl::connect(target)?;
    c.login()?;
    let me = c.local_ip()?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..WARMUP + count {
        // Announce a different port each time, as real sessions do.
        let port = 20_000 + (i % 40_000) as u16;
        let (line, codes): (String, &[u16]) = match which {
            RttCmd::Noop => ("NOOP".into(), &[200]),
            RttCmd::Pasv => ("PASV".into(), &[227]),
            RttCmd::Epsv => ("EPSV".into(), &[229]),
            RttCmd::Port => (
                format!("PORT {}", port_arg(SocketAddr::new(me, port))?),
                &[200],
            ),
            RttCmd::Eprt => (
                format!("EPRT {}", eprt_arg(SocketAddr::new(me, port))),
                &[200],
            ),
        };
        let t0 = Instant::now();
        c.cmd(&line, codes)?;
        let dt = t0.elapsed();
        if i >= WARMUP {
            samples.push(dt.as_secs_f64() * 1e6);
        }
    }
    c.quit()?;
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    samples.sort_by(f64::total_cmp);
    let out = json!({
        "test": "rtt",
        "cmd": format!("{which:?}").to_uppercase(),
        "count": samples.len(),
        "median_us": percentile(&samples, 0.5),
        "p99_us": percentile(&samples, 0.99),
        "p90_us": percentile(&samples, 0.90),
        "mean_us": mean,
        "min_us": samples[0],
        "max_us": samples[samples.len() - 1],
    });
    println!("{out}");
    Ok(())
}

fn one_session(
    target: SocketAddr,
    mode: DataMode,
    exp: &Expected,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut c = step("connect", Ctrl::connect(target))?;
    step("login", c.login())?;
    let got = retr(&mut c, mode, &exp.file, buf)?;
    check(exp, got)?;
    step("QUIT", c.quit())
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    /// Session durations in microseconds.
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// How many clients run sessions, for how long, with what pause between
/// a client's sessions.
struct Load {
    clients: usize,
    duration: Duration,
    pause: Duration,
}

fn sessions(target: SocketAddr, load: Load, modes: &[DataMode], exp: &Expected) -> io::Result<()> {
    let Load {
        clients,
        duration,
        pause,
    } = load;
    let clients = clients.clamp(1, 1024);
    if modes.is_empty() {
        return Err(err("no data connection mode"));
    }
    let tally = Mutex::new(Tally::default());
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let deadline = start + duration;
    // Upper bound on sessions per client, whatever the timing.
    let max_per_client = 10_000_000 / clients;
    std::thread::scope(|scope| {
        for k in 0..clients {
            let tally = &tally;
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    let mut mine = Tally::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut n = k;
                    // Spread the clients over the first pause.
                    let first = pause.mul_f64(k as f64 / clients as f64);
                    std::thread::sleep(
                        first.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    while Instant::now() < deadline && mine.ok + mine.failed < max_per_client {
                        let mode = modes[n % modes.len()];
                        n += 1;
                        let t0 = Instant::now();
                        match one_session(target, mode, exp, &mut buf) {
                            Ok(()) => {
                                mine.ok += 1;
                                mine.latencies.push(t0.elapsed().as_secs_f64() * 1e6);
                            }
                            Err(e) => {
                                mine.failed += 1;
                                if mine.errors.len() < 3 {
                                    mine.errors.push(format!("{mode:?}: {e}"));
                                }
                                // Do not spin on a refusing server.
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(pause.min(left));
                    }
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.ok += mine.ok;
                    t.failed += mine.failed;
                    t.latencies.extend(mine.latencies);
                    if t.errors.len() < 5 {
                        t.errors.extend(mine.errors);
                    }
                })
                .map(|_| ())
                .unwrap_or_else(|e| eprintln!("ftpload: thread {k}: {e}"));
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let mut t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    t.latencies.sort_by(f64::total_cmp);
    t.errors.truncate(5);
    let out = json!({
        "test": "sessions",
        "clients": clients,
        "ok": t.ok,
        "failed": t.failed,
        "secs": elapsed,
        "per_s": t.ok as f64 / elapsed,
        "latency_median_us": percentile(&t.latencies, 0.5),
        "latency_p99_us": percentile(&t.latencies, 0.99),
        "client_cpu_s": cpu,
        "errors": t.errors,
    });
    println!("{out}");
    if t.ok == 0 {
        return Err(err("no session completed"));
    }
    Ok(())
}

fn bulk(target: SocketAddr, exp: &Expected, mode: DataMode) -> io::Result<()> {
    let mut c = Ctrl::connect(target)?;
    c.login()?;
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let got = retr_pipelined(&mut c, mode, &exp.file)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let ok = check(exp, got.clone());
    let _ = c.quit();
    let out = json!({
        "test": "bulk",
        "bytes": got.0,
        "secs": secs,
        "mib_s": got.0 as f64 / secs / (1024.0 * 1024.0),
        "sha256": got.1,
        "sha256_ok": ok.is_ok(),
        "client_cpu_s": cpu,
    });
    println!("{out}");
    ok
}

const STREAM_LINE: &[u8] = b"NOOP\r\n";

fn stream(target: SocketAddr, duration: Duration, mss: u32, batch: usize) -> io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::STREAM, None)?;
    let mss = libc::c_int::try_from(mss.clamp(48, 1460)).unwrap_or(536);
    // SAFETY: TCP_MAXSEG takes an int; the pointer and length describe `mss`.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mss as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sock.connect_timeout(&target.into(), IO_TIMEOUT)?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut c = Ctrl {
        r: BufReader::new(s.try_clone()?),
        w: s,
        line: String::new(),
    };
    c.expect(&[220])?;
    c.cmd("XSINK", &[200])?;
    let chunk: Vec<u8> = STREAM_LINE.repeat(batch.clamp(1, 100_000));
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut lines: u64 = 0;
    // Bounded: by time, and by a count no run can reach.
    while t0.elapsed() < duration && lines < 1 << 40 {
        c.w.write_all(&chunk)?;
        lines += chunk.len() as u64 / STREAM_LINE.len() as u64;
    }
    c.w.shutdown(Shutdown::Write)?;
    let text = c.expect(&[226])?;
    let secs = t0.elapsed().as_secs_f64();
    let received: u64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lines="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| err(format!("sink reply without a count: {text}")))?;
    let bad: u64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bad="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    let ok = received == lines && bad == 0;
    let out = json!({
        "test": "stream",
        "lines_sent": lines,
        "lines_received": received,
        "bad_lines": bad,
        "bytes": lines * STREAM_LINE.len() as u64,
        "secs": secs,
        "mss": mss,
        "ok": ok,
        "client_cpu_s": cpu_secs() - cpu0,
    });
    println!("{out}");
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "stream: sent {lines} lines, sink got {received} ({bad} bad)"
        )))
    }
}

// --- do-nothing queue program ----------------------------------------------------

/// Sets the receive buffer of the netlink socket bound to `queue` (found by
/// the port id the kernel lists for it), as `ftpct run` does.
fn grow_queue_rcvbuf(queue: u16, bytes: libc::c_int) -> io::Result<()> {
    let table = std::fs::read_to_string("/proc/self/net/netfilter/nfnetlink_queue")?;
    let portid: u32 = table
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()?.parse::<u16>().ok()? == queue).then(|| f.next()?.parse().ok())?
        })
        .ok_or_else(|| err("queue not bound"))?;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: a zeroed sockaddr_nl is valid; getsockname writes at most
        // `len` bytes and fails harmlessly on what is not a socket;
        // setsockopt reads the c_int `bytes` for the duration of the call.
        unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let rc = libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len);
            if rc == 0 && i32::from(sa.nl_family) == libc::AF_NETLINK && sa.nl_pid == portid {
                let rc = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&bytes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                return if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
            }
        }
    }
    Err(err("queue socket not found"))
}

fn nfq_null(queue: u16, spin: Duration) -> io::Result<()> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    q.set_fail_open(queue, true)?;
    q.set_queue_max_len(queue, 4096)?;
    grow_queue_rcvbuf(queue, 16 << 20)?;
    eprintln!("ftpload nfq-null: queue {queue} bound, spin {spin:?}");
    let mut last = Instant::now();
    loop {
        if !spin.is_zero() {
            q.set_nonblocking(last.elapsed() < spin);
        }
        match q.recv() {
            Ok(mut msg) => {
                msg.set_verdict(nfq::Verdict::Accept);
                if let Err(e) = q.verdict(msg) {
                    eprintln!("ftpload nfq-null: verdict: {e}");
                }
                last = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Can be the answer to an earlier verdict: not fatal.
            Err(e) => eprintln!("ftpload nfq-null: recv: {e}"),
        }
    }
}

// --- server ----------------------------------------------------------------

/// Sends `size` bytes of `f` with sendfile(2), as vsftpd does (a read and
/// write loop is 3x slower here and made this server the bottleneck).
fn send_file(f: &std::fs::File, sock: &TcpStream, size: u64) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
        // SAFETY: both descriptors are open for the duration of the call;
        // a null offset means the file's own position, which advances.
        let n =
            unsafe { libc::sendfile(sock.as_raw_fd(), f.as_raw_fd(), std::ptr::null_mut(), chunk) };
        match n {
            n if n > 0 => left -= n as u64,
            0 => return Err(err("file shorter than its size")),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

mod server {
    use super::*;

    pub fn run(listen: &[SocketAddr], root: Option<PathBuf>) -> io::Result<()> {
        let root = Arc::new(root);
        let live = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for &addr in listen {
            let l = TcpListener::bind(addr)?;
            let (root, live) = (Arc::clone(&root), Arc::clone(&live));
            handles.push(std::thread::spawn(move || accept_loop(l, root, live)));
        }
        eprintln!("ftpload server: listening on {listen:?}");
        for h in handles {
            let _ = h.join();
        }
        Ok(())
    }

    fn accept_loop(l: TcpListener, root: Arc<Option<PathBuf>>, live: Arc<AtomicUsize>) {
        loop {
            let (s, _) = match l.accept() {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("ftpload server: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if live.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                live.fetch_sub(1, Ordering::AcqRel);
                let mut s = s;
                let _ = s.write_all(b"421 Too many connections.\r\n");
                continue;
            }
            let (root, live2) = (Arc::clone(&root), Arc::clone(&live));
            let spawned = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    if let Err(e) = Session::new(s, root).and_then(Session::serve) {
                        if e.kind() != io::ErrorKind::BrokenPipe
                            && e.kind() != io::ErrorKind::ConnectionReset
                        {
                            eprintln!("ftpload server: session: {e}");
                        }
                    }
                    live2.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    enum DataPlan {
        None,
        Passive(TcpListener),
        Active(SocketAddr),
    }

    struct Session {
        r: BufReader<TcpStream>,
        w: TcpStream,
        root: Arc<Option<PathBuf>>,
        local: IpAddr,
        data: DataPlan,
    }

    impl Session {
        fn new(s: TcpStream, root: Arc<Option<PathBuf>>) -> io::Result<Self> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IDLE_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(Session {
                r: BufReader::new(s.try_clone()?),
                local: s.local_addr()?.ip(),
                w: s,
                root,
                data: DataPlan::None,
            })
        }

        fn say(&mut self, text: &str) -> io::Result<()> {
            self.w.write_all(text.as_bytes())
        }

        fn serve(mut self) -> io::Result<()> {
            self.say("220 ftpload ready.\r\n")?;
            let mut line = String::new();
            while read_line(&mut self.r, &mut line)? {
                let (verb, arg) = match line.split_once(' ') {
                    Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
                    None => (line.to_ascii_uppercase(), String::new()),
                };
                match verb.as_str() {
                    "USER" => self.say("331 Please specify the password.\r\n")?,
                    "PASS" => self.say("230 Login successful.\r\n")?,
                    "TYPE" => self.say("200 Switching to Binary mode.\r\n")?,
                    "NOOP" => self.say("200 NOOP ok.\r\n")?,
                    "SYST" => self.say("215 UNIX Type: L8\r\n")?,
                    "PWD" => self.say("257 \"/\" is the current directory\r\n")?,
                    "PASV" => self.pasv(false)?,
                    "EPSV" => self.pasv(true)?,
                    "PORT" => match parse_h1p2(&arg) {
                        Some(a) => self.active(a)?,
                        None => self.say("501 Illegal PORT command.\r\n")?,
                    },
                    "EPRT" => match parse_eprt(&arg) {
                        Some(a) => self.active(a)?,
                        None => self.say("501 Illegal EPRT command.\r\n")?,
                    },
                    "SIZE" => match self.size_of(&arg) {
                        Some(n) => self.say(&format!("213 {n}\r\n"))?,
                        None => self.say("550 Could not get file size.\r\n")?,
                    },
                    "RETR" => self.retr(&arg)?,
                    "XSINK" => return self.sink(),
                    "QUIT" => {
                        self.say("221 Goodbye.\r\n")?;
                        return Ok(());
                    }
                    _ => self.say("502 Command not implemented.\r\n")?,
                }
            }
            Ok(())
        }

        fn pasv(&mut self, extended: bool) -> io::Result<()> {
            // A new PASV replaces the previous listener, as real servers do.
            self.data = DataPlan::None;
            let l = data_listener(self.local)?;
            let a = l.local_addr()?;
            self.data = DataPlan::Passive(l);
            if extended {
                self.say(&format!(
                    "229 Entering Extended Passive Mode (|||{}|)\r\n",
                    a.port()
                ))
            } else if self.local.is_ipv4() {
                self.say(&format!(
                    "227 Entering Passive Mode ({}).\r\n",
                    port_arg(a)?
                ))
            } else {
                self.data = DataPlan::None;
                self.say("522 Use EPSV for IPv6.\r\n")
            }
        }

        fn active(&mut self, a: SocketAddr) -> io::Result<()> {
            // No check that `a` is the peer's address: the benchmark's
            // no-helper gateway (routing only) needs the client's own.
            self.data = DataPlan::Active(a);
            self.say("200 PORT command successful.\r\n")
        }

        fn path(&self, name: &str) -> Option<PathBuf> {
            let root = (*self.root).as_ref()?;
            let ok = !name.is_empty() && !name.contains('/') && !name.starts_with('.');
            ok.then(|| root.join(name))
        }

        fn size_of(&self, name: &str) -> Option<u64> {
            gen_size(name).or_else(|| std::fs::metadata(self.path(name)?).ok().map(|m| m.len()))
        }

        fn open_data(&mut self) -> io::Result<TcpStream> {
            match std::mem::replace(&mut self.data, DataPlan::None) {
                DataPlan::Passive(l) => accept_one(&l),
                DataPlan::Active(a) => {
                    let s = TcpStream::connect_timeout(&a, IO_TIMEOUT)?;
                    s.set_write_timeout(Some(IO_TIMEOUT))?;
                    Ok(s)
                }
                DataPlan::None => Err(err("no data connection")),
            }
        }

        fn retr(&mut self, name: &str) -> io::Result<()> {
            enum Source {
                Gen(u64),
                File(std::fs::File, u64),
            }
            let source = match gen_size(name) {
                Some(n) => Source::Gen(n),
                None => match self.path(name).map(std::fs::File::open) {
                    Some(Ok(f)) => {
                        let n = f.metadata()?.len();
                        Source::File(f, n)
                    }
                    _ => return self.say("550 Failed to open file.\r\n"),
                },
            };
            let size = match &source {
                Source::Gen(n) | Source::File(_, n) => *n,
            };
            let mut data = match self.open_data() {
                Ok(d) => d,
                Err(_) => return self.say("425 Failed to establish connection.\r\n"),
            };
            self.say(&format!(
                "150 Opening BINARY mode data connection for {name} ({size} bytes).\r\n"
            ))?;
            let sent = match source {
                Source::Gen(n) => Gen::new().write(n, &mut data),
                Source::File(f, n) => send_file(&f, &data, n),
            };
            drop(data);
            match sent {
                Ok(()) => self.say("226 Transfer complete.\r\n"),
                Err(_) => self.say("426 Failure writing network stream.\r\n"),
            }
        }

        /// Reads the rest of the connection, checking each line, then
        /// reports the count and closes.
        fn sink(mut self) -> io::Result<()> {
            self.say("200 sink: send lines, then close your side.\r\n")?;
            self.r.get_ref().set_read_timeout(Some(IO_TIMEOUT))?;
            let mut lines: u64 = 0;
            let mut bad: u64 = 0;
            let mut bytes: u64 = 0;
            // Position within STREAM_LINE of the next expected byte; None
            // after a bad byte, until the next line feed.
            let mut pos = Some(0usize);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = self.r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                for &b in &buf[..n] {
                    pos = match pos {
                        Some(p) if b == STREAM_LINE[p] && p + 1 == STREAM_LINE.len() => {
                            lines += 1;
                            Some(0)
                        }
                        Some(p) if b == STREAM_LINE[p] => Some(p + 1),
                        Some(_) => {
                            bad += 1;
                            (b == b'\n').then_some(0)
                        }
                        None => (b == b'\n').then_some(0),
                    };
                }
            }
            self.say(&format!(
                "226 sink: lines={lines} bad={bad} bytes={bytes}\r\n"
            ))
        }
    }
}
