//! Network namespaces for the kernel tests, and TCP connections with a
//! known tuple. Each test binary uses the part it needs.
#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::run_ok;

/// How long a test's socket waits for its peer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A network namespace that exists for the life of the value.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ftpct-t-{}-{n}-{tag}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics with its stderr on failure.
    pub fn sh(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// Runs a command inside the namespace and returns whether it succeeded.
    pub fn try_sh(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn add_addr(&self, cidr: &str) {
        self.sh(&["ip", "addr", "add", cidr, "dev", "lo"]);
    }

    /// Runs `f` on a thread that has entered the namespace: netlink and
    /// TCP sockets it opens belong to the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns(2) reads an fd we own (`ns` is alive across the
                // call) and a flag; it moves only the calling thread, which
                // exists for this closure alone and ends with it.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Packet count of the rule tagged with `--comment tag` in table/chain.
    pub fn counter(&self, ip6: bool, table: &str, chain: &str, tag: &str) -> u64 {
        let cmd = if ip6 { "ip6tables" } else { "iptables" };
        let out = self.sh(&[cmd, "-t", table, "-nvxL", chain]);
        let marker = format!("/* {tag} */");
        let line = out
            .lines()
            .find(|l| l.contains(&marker))
            .unwrap_or_else(|| panic!("no rule {tag} in {table} {chain}:\n{out}"));
        line.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {line:?}"))
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair from `a` (interface `a_if`, address `a_cidr`) to `b`.
pub fn veth(a: &Netns, a_if: &str, a_cidr: &str, b: &Netns, b_if: &str, b_cidr: &str) {
    run_ok(Command::new("ip").args([
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]));
    for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        ns.sh(&["ip", "addr", "add", cidr, "dev", ifname]);
        ns.sh(&["ip", "link", "set", ifname, "up"]);
    }
}

/// A TCP connection from `src` (exact port) to `dst`, made from a socket
/// bound before connect so the tuple is known in advance.
pub fn connect_from(src: SocketAddr, dst: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(src), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&src.into())?;
    sock.connect_timeout(&dst.into(), IO_TIMEOUT)?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

pub fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(false).unwrap();
    let (s, peer) = listener.accept().expect("accept");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    (s, peer)
}

/// Makes `dir` hold `iptables`, `ip6tables` and their save and restore
/// tools as links to the legacy ones: with `dir` first in PATH, ftpct and
/// the test see iptables-legacy.
pub fn legacy_tools(dir: &std::path::Path) {
    for tool in ["iptables", "ip6tables"] {
        for (link, target) in [
            (tool.to_string(), format!("{tool}-legacy")),
            (format!("{tool}-save"), format!("{tool}-legacy-save")),
            (format!("{tool}-restore"), format!("{tool}-legacy-restore")),
        ] {
            let found = ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(&target))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{target} not found: install iptables"));
            std::os::unix::fs::symlink(found, dir.join(&link)).expect("symlink");
        }
    }
}
