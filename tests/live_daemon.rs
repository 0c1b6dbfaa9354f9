//! `ftpct rules` and `ftpct run` on a live gateway in network namespaces:
//!
//! ```text
//!  client 192.0.2.10 ── vcli|vgwin ── gateway ── vgwout|vsrv ── server 198.51.100.20
//!    2001:db8:1::10         192.0.2.1       198.51.100.1            2001:db8:2::20
//!                           2001:db8:1::1   2001:db8:2::1           vsftpd
//!                                     MASQUERADE (v4 and v6)
//! ```
//!
//! The gateway forwards only ESTABLISHED,RELATED and new connections to
//! port 21, so a data connection passes only if ftpct makes it RELATED.
//! curl downloads a 1 KiB file in active (PORT, EPRT) and passive (PASV,
//! EPSV) mode over IPv4, and EPRT/EPSV over IPv6 (where the rewritten EPRT
//! is shorter: conntrack must not see the shift as an error); the same
//! active download fails with ftpct stopped. Then
//! `ftpct rules --delete` must leave `iptables-save` as it was.
//!
//! Needs root, curl, iptables, ipset and vsftpd unpacked beside the system
//! (scripts/install-deps.sh: $FTPCT_LAB_OPT/vsftpd, default /opt/ftpct-lab).
//! Not root: the tests are skipped and say so (an error under CI=true).
//! Every namespace, process and file is removed on drop, even on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod root;
use root::scrape::Scrape;
use root::{kernel_tests_enabled, output, run_ok};

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");
const SERVER: &str = "198.51.100.20";
const SERVER6: &str = "[2001:db8:2::20]";
const WAIT: Duration = Duration::from_secs(10);
const METRICS_URL: &str = "http://127.0.0.1:9641/metrics";

fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("ftpct-t-{}-{n}-{tag}", std::process::id())
}

/// Polls `ready` every 50 ms for at most `limit`.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// A network namespace; on drop its processes are killed and it is removed.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    fn sh(&self, args: &[&str]) -> String {
        run_ok(&mut self.cmd(args))
    }

    fn output(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A directory under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process, stopped with SIGTERM (then SIGKILL) on drop.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut status = None;
        wait_until(WAIT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(
            status.is_some(),
            "{} did not stop within {WAIT:?} of SIGTERM",
            self.what
        );
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Creates a veth pair whose ends land directly in two namespaces.
fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) {
    run_ok(Command::new("ip").args([
        "link", "add", a_name, "netns", &a.name, "type", "veth", "peer", "name", b_name, "netns",
        &b.name,
    ]));
    a.sh(&["ip", "link", "set", a_name, "up"]);
    b.sh(&["ip", "link", "set", b_name, "up"]);
}

/// iptables-save output without its dated comment lines and counters.
fn saved(ns: &Netns, tool: &str) -> String {
    ns.sh(&[tool])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Lab {
    // Fields drop in order: processes first, then namespaces, then files.
    _vsftpd: Proc,
    client: Netns,
    gw: Netns,
    _server: Netns,
    dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let client = Netns::new("cli");
        let gw = Netns::new("gw");
        let server = Netns::new("srv");
        veth(&client, "vcli", &gw, "vgwin");
        veth(&server, "vsrv", &gw, "vgwout");
        for (ns, dev, addrs) in [
            (&client, "vcli", ["192.0.2.10/24", "2001:db8:1::10/64"]),
            (&gw, "vgwin", ["192.0.2.1/24", "2001:db8:1::1/64"]),
            (&gw, "vgwout", ["198.51.100.1/24", "2001:db8:2::1/64"]),
            (&server, "vsrv", ["198.51.100.20/24", "2001:db8:2::20/64"]),
        ] {
            for a in addrs {
                ns.sh(&["ip", "addr", "add", a, "dev", dev, "nodad"]);
            }
        }
        client.sh(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
        client.sh(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
        ]);
        gw.sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        gw.sh(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        gw_policy(&gw, "iptables");
        gw_policy(&gw, "ip6tables");
        let dir = TempDir::new("files");
        let vsftpd = start_vsftpd(&server, &dir);
        Lab {
            _vsftpd: vsftpd,
            client,
            gw,
            _server: server,
            dir,
        }
    }

    /// Downloads 1k.bin with curl's extra `mode` options; the file's hash or
    /// curl's error.
    fn download(&self, host: &str, mode: &[&str], name: &str) -> Result<String, String> {
        let file = self.dir.path(name);
        let url = format!("ftp://{host}/1k.bin");
        let file_arg = file.to_string_lossy().into_owned();
        let mut args = vec![
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--connect-timeout",
            "3",
            "-o",
            &file_arg,
        ];
        args.extend_from_slice(mode);
        args.push(&url);
        let out = self.client.output(&args);
        if !out.status.success() {
            return Err(format!(
                "curl {mode:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(sha256(&file))
    }

    fn start_ftpct(&self, log: &str) -> Proc {
        self.start_ftpct_with(log, &[])
    }

    /// `ftpct run` with `extra` flags, once it says it runs.
    fn start_ftpct_with(&self, log: &str, extra: &[&str]) -> Proc {
        let log_path = self.dir.path(log);
        let log_file = fs::File::create(&log_path).expect("log file");
        let mut args = vec![FTPCT, "run", "--log-format", "json"];
        args.extend_from_slice(extra);
        let child = self
            .gw
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start ftpct run");
        let mut p = Proc {
            child,
            what: "ftpct run",
        };
        let ready = wait_until(WAIT, || {
            fs::read_to_string(&log_path).is_ok_and(|s| s.contains("running: queues"))
                || !matches!(p.child.try_wait(), Ok(None))
        });
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            ready && text.contains("running: queues"),
            "ftpct run did not start:\n{text}"
        );
        p
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path(name)).unwrap_or_default()
    }
}

/// Strict forwarding policy and MASQUERADE on the outside.
fn gw_policy(gw: &Netns, tool: &str) {
    let ipt = |args: &[&str]| {
        let mut a = vec![tool];
        a.extend_from_slice(args);
        gw.sh(&a);
    };
    ipt(&[
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "vgwout",
        "-j",
        "MASQUERADE",
    ]);
    ipt(&["-P", "FORWARD", "DROP"]);
    ipt(&[
        "-A",
        "FORWARD",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
    ]);
    ipt(&[
        "-A",
        "FORWARD",
        "-p",
        "tcp",
        "--dport",
        "21",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "ACCEPT",
    ]);
}

/// Debian's vsftpd as scripts/install-deps.sh unpacks it (FTPCT_VSFTPD
/// overrides): not the package, which installing another FTP server removes.
fn vsftpd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FTPCT_VSFTPD") {
        return PathBuf::from(bin);
    }
    let opt = std::env::var_os("FTPCT_LAB_OPT").unwrap_or_else(|| "/opt/ftpct-lab".into());
    Path::new(&opt).join("vsftpd/usr/sbin/vsftpd")
}

/// vsftpd, anonymous, serving `dir/ftp/1k.bin`, in the foreground.
fn start_vsftpd(server: &Netns, dir: &TempDir) -> Proc {
    let root = dir.path("ftp");
    let empty = dir.path("empty");
    fs::create_dir_all(&root).expect("ftp root");
    fs::create_dir_all(&empty).expect("chroot dir");
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + i / 13) as u8).collect();
    fs::write(root.join("1k.bin"), data).expect("1k.bin");
    let conf = dir.path("vsftpd.conf");
    // The ftp user must not be able to write the anonymous root.
    fs::write(
        &conf,
        format!(
            "listen=NO\nlisten_ipv6=YES\nbackground=NO\nanonymous_enable=YES\n\
             local_enable=NO\nno_anon_password=YES\nanon_root={}\n\
             secure_chroot_dir={}\nseccomp_sandbox=NO\nconnect_from_port_20=YES\n\
             pasv_enable=YES\nport_enable=YES\nxferlog_enable=NO\n",
            root.display(),
            empty.display()
        ),
    )
    .expect("vsftpd.conf");
    let conf_arg = conf.to_string_lossy().into_owned();
    let bin = vsftpd_bin();
    assert!(
        bin.is_file(),
        "vsftpd missing at {}: run scripts/install-deps.sh",
        bin.display()
    );
    let child = server
        .cmd(&[&bin.to_string_lossy(), &conf_arg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vsftpd");
    let p = Proc {
        child,
        what: "vsftpd",
    };
    let listening = wait_until(WAIT, || {
        !server
            .output(&["ss", "-ltnH", "sport = :21"])
            .stdout
            .is_empty()
    });
    assert!(listening, "vsftpd did not listen on port 21");
    p
}

const ACTIVE: &[&str] = &["-P", "-", "--disable-eprt"];
const ACTIVE_EPRT: &[&str] = &["-P", "-"];
const PASSIVE: &[&str] = &["--disable-epsv"];
const PASSIVE_EPSV: &[&str] = &[];

#[test]
fn ftpct_makes_active_and_passive_ftp_pass_a_strict_nat_gateway() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let want = sha256(&lab.dir.path("ftp/1k.bin"));
    let before4 = saved(&lab.gw, "iptables-save");
    let before6 = saved(&lab.gw, "ip6tables-save");
    lab.gw.sh(&[FTPCT, "rules", "--apply"]);

    // Rules in place, ftpct not running: the packets bypass the queue.
    let refused = lab.download(SERVER, ACTIVE, "no-ftpct.bin");
    assert!(refused.is_err(), "active FTP passed without ftpct");

    let mut ftpct = lab.start_ftpct("ftpct.log");
    let second = lab.gw.output(&[FTPCT, "run"]);
    assert!(!second.status.success(), "a second ftpct bound the queue");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already bound"),
        "{second:?}"
    );
    let cases = [
        (SERVER, ACTIVE, "port.bin"),
        (SERVER, PASSIVE, "pasv.bin"),
        (SERVER, ACTIVE_EPRT, "eprt.bin"),
        (SERVER, PASSIVE_EPSV, "epsv.bin"),
        (SERVER6, ACTIVE_EPRT, "eprt6.bin"),
        (SERVER6, PASSIVE_EPSV, "epsv6.bin"),
    ];
    for (host, mode, name) in cases {
        let got = lab.download(host, mode, name);
        assert_eq!(
            got.as_deref(),
            Ok(want.as_str()),
            "{host} {mode:?}\n{}",
            lab.log("ftpct.log")
        );
    }
    // The log is written in batches: each decision is in the file within
    // a bounded delay (100 ms after the first line of its batch), ftpct
    // still running.
    let matched = |log: &str| log.matches(r#""event":"data-matched""#).count();
    let shown = wait_until(Duration::from_secs(1), || {
        matched(&lab.log("ftpct.log")) == cases.len()
    });
    let log = lab.log("ftpct.log");
    assert!(shown, "{log}");
    assert!(log.contains(r#""event":"rewrite""#), "{log}");

    let status = ftpct.terminate();
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    let log = lab.log("ftpct.log");
    assert!(log.contains("stopped:"), "{log}");
    assert_eq!(matched(&log), cases.len(), "{log}");
    let queues = lab.gw.sh(&["cat", "/proc/net/netfilter/nfnetlink_queue"]);
    assert!(queues.trim().is_empty(), "queue still bound: {queues}");
    let members = lab.gw.sh(&["ipset", "list", "ftpct"]);
    assert!(members.trim_end().ends_with("Members:"), "{members}");

    // Stopped again: active FTP fails again, so ftpct is what made it pass.
    assert!(lab.download(SERVER, ACTIVE, "after.bin").is_err());

    lab.gw.sh(&[FTPCT, "rules", "--delete"]);
    assert_eq!(saved(&lab.gw, "iptables-save"), before4);
    assert_eq!(saved(&lab.gw, "ip6tables-save"), before6);
    assert!(lab.gw.sh(&["ipset", "list", "-n"]).trim().is_empty());
}

/// A firewall reload under a running ftpct (`iptables -t raw -F; -X`
/// takes its chains and jumps): the rules are back within 3 s, said at
/// warning level and counted, and a transfer started afterwards passes.
/// `ftpct rules --delete` is refused meanwhile.
#[test]
fn rules_flushed_under_a_running_ftpct_are_put_back_and_transfers_pass() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let want = sha256(&lab.dir.path("ftp/1k.bin"));
    lab.gw.sh(&[FTPCT, "rules", "--apply"]);
    let mut ftpct = lab.start_ftpct_with("ftpct.log", &["--metrics", "127.0.0.1:9641"]);
    let refused = lab.gw.output(&[FTPCT, "rules", "--delete"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it first"),
        "{refused:?}"
    );
    lab.gw.sh(&["iptables", "-t", "raw", "-F"]);
    lab.gw.sh(&["iptables", "-t", "raw", "-X"]);
    let flushed = Instant::now();
    let mut listed = String::new();
    let back = wait_until(Duration::from_secs(3), || {
        listed = lab.gw.sh(&["iptables", "-t", "raw", "-S"]);
        listed.contains("-j ftpct-pre") && listed.contains("-j ftpct-out")
    });
    assert!(
        back,
        "not back after 3 s:\n{listed}\n{}",
        lab.log("ftpct.log")
    );
    eprintln!("rules back after {:?}", flushed.elapsed());
    assert!(listed.contains("-A ftpct-pre"), "{listed}");
    let got = lab.download(SERVER, ACTIVE, "after-flush.bin");
    assert_eq!(
        got.as_deref(),
        Ok(want.as_str()),
        "{}",
        lab.log("ftpct.log")
    );
    let got = lab.download(SERVER, PASSIVE, "after-flush-pasv.bin");
    assert_eq!(
        got.as_deref(),
        Ok(want.as_str()),
        "{}",
        lab.log("ftpct.log")
    );
    let log = lab.log("ftpct.log");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("put back in one transaction")),
        "{log}"
    );
    let scrape = Scrape::parse(&lab.gw.sh(&["curl", "-sS", "--max-time", "5", METRICS_URL]));
    assert_eq!(scrape.value("ftpct_rules_restored_total"), 1.0);
    let status = ftpct.terminate();
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    lab.gw.sh(&[FTPCT, "rules", "--delete"]);
}

/// A user's raw rule stays first; apply twice then delete restores the rule set.
fn apply_delete_round_trip(ns: &Netns, path: &str, expect_backend: &str, legacy: bool) {
    let env_path = format!("PATH={path}");
    let rules = |args: &[&str]| {
        let mut a = vec!["env", env_path.as_str(), FTPCT, "rules"];
        a.extend_from_slice(args);
        ns.sh(&a)
    };
    let ipt = |tool: &str, args: &[&str]| {
        let mut a = vec!["env", env_path.as_str(), tool];
        a.extend_from_slice(args);
        ns.sh(&a)
    };
    ipt(
        "iptables",
        &[
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "-j",
            "CT",
            "--notrack",
        ],
    );
    if legacy {
        // The kernel keeps a legacy table once made: make it before.
        ipt("ip6tables", &["-t", "raw", "-S"]);
    }
    let save4 = |ns: &Netns| saved_with(ns, &env_path, "iptables-save");
    let save6 = |ns: &Netns| saved_with(ns, &env_path, "ip6tables-save");
    let (before4, before6) = (save4(ns), save6(ns));
    let applied = rules(&["--apply", "--control-ports", "21,2121", "--selective"]);
    assert!(applied.contains(expect_backend), "{applied}");
    rules(&["--apply", "--control-ports", "21,2121", "--selective"]);
    let hook = ipt("iptables", &["-t", "raw", "-S", "PREROUTING"]);
    let lines: Vec<&str> = hook.lines().collect();
    assert!(lines[1].contains("--notrack"), "user rule first:\n{hook}");
    assert_eq!(lines.len(), 3, "the user's rule, one jump:\n{hook}");
    assert!(lines[2].ends_with("-j ftpct-pre"), "{hook}");
    let listed = ipt("iptables", &["-t", "raw", "-S", "ftpct-pre"]);
    // Selective queueing: a queue rule for the followed directions of
    // clients, one for those of servers.
    assert_eq!(
        listed
            .matches("ftpct: FTP control directions ftpct follows")
            .count(),
        2
    );
    assert!(!listed.contains("ftpct: FTP control channel"), "{listed}");
    // The gate: what is neither to nor from a control port, nor to a
    // noted client, leaves the chain.
    assert!(
        listed.contains("-m multiport ! --dports 21,2121 -m multiport ! --sports 21,2121"),
        "{listed}"
    );
    // --queue-all replaces the selection by the one queue-everything rule.
    rules(&["--apply", "--control-ports", "21,2121", "--queue-all"]);
    let all = ipt("iptables", &["-t", "raw", "-S", "ftpct-pre"]);
    assert_eq!(
        all.matches("ftpct: FTP control channel").count(),
        1,
        "{all}"
    );
    // No selector; the client set (the gate's) is noted in both modes.
    assert!(!all.contains("--add-set ftpct-guard"), "{all}");
    assert!(all.contains("--add-set ftpct-ctl"), "{all}");
    // --delete takes out the rules of either mode.
    rules(&["--apply", "--control-ports", "21,2121", "--selective"]);
    rules(&["--delete", "--control-ports", "21,2121"]);
    assert_eq!(save4(ns), before4);
    assert_eq!(save6(ns), before6);
}

fn saved_with(ns: &Netns, env_path: &str, tool: &str) -> String {
    let text = ns.sh(&["env", env_path, tool]);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rules_apply_then_delete_restores_iptables_nft() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("nft");
    let path = std::env::var("PATH").unwrap_or_default();
    // The raw tables of IPv6 do not exist before: ftpct must remove its own.
    apply_delete_round_trip(&ns, &path, "(nf_tables)", false);
}

#[test]
fn rules_apply_then_delete_restores_iptables_legacy() {
    if !kernel_tests_enabled() {
        return;
    }
    let bin = TempDir::new("legacy");
    root::netns::legacy_tools(&bin.0);
    let ns = Netns::new("legacy");
    let path = format!(
        "{}:{}",
        bin.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    apply_delete_round_trip(&ns, &path, "(legacy)", true);
}

/// `ftpct monitor` on the gateway's inside interface while `ftpct run`
/// helps an active and a passive download: it prints their expectations
/// and the PORT rewrite, alerts on a bounce attempt (PORT to port 25)
/// only, writes what it saw, and stops on SIGTERM.
#[test]
fn monitor_on_the_inside_interface_shows_the_decisions_of_live_transfers() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let want = sha256(&lab.dir.path("ftp/1k.bin"));
    lab.gw.sh(&[FTPCT, "rules", "--apply"]);
    let _ftpct = lab.start_ftpct("ftpct.log");
    let pcap = lab.dir.path("monitor.pcap");
    let pcap_arg = pcap.to_string_lossy().into_owned();
    let (out_path, err_path) = (lab.dir.path("monitor.out"), lab.dir.path("monitor.err"));
    let child = lab
        .gw
        .cmd(&[
            FTPCT,
            "monitor",
            "--interface",
            "vgwin",
            "--snat",
            "192.0.2.0/24=198.51.100.1",
            "--write",
            &pcap_arg,
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start ftpct monitor");
    let mut monitor = Proc {
        child,
        what: "ftpct monitor",
    };
    let started = wait_until(WAIT, || {
        fs::read_to_string(&err_path).is_ok_and(|s| s.contains("monitoring vgwin"))
    });
    assert!(started, "{}", lab.log("monitor.err"));
    for (mode, name) in [(ACTIVE, "port.bin"), (PASSIVE, "pasv.bin")] {
        let got = lab.download(SERVER, mode, name);
        assert_eq!(got.as_deref(), Ok(want.as_str()), "{mode:?}");
    }
    // A bounce attempt: PORT naming port 25.
    let bounce = "exec 3<>/dev/tcp/198.51.100.20/21; \
        printf 'USER anonymous\\r\\nPASS x\\r\\nPORT 192,0,2,10,0,25\\r\\nQUIT\\r\\n' >&3; \
        timeout 3 cat <&3";
    lab.client.output(&["bash", "-c", bounce]);
    let out_of = || lab.log("monitor.out");
    let both = wait_until(WAIT, || {
        let out = out_of();
        out.matches("-> data connection").count() >= 2 && out.contains("!! refused")
    });
    let status = monitor.terminate();
    let out = out_of();
    assert!(both, "{out}");
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    assert!(
        out.contains("-> expect 198.51.100.20:* -> 198.51.100.1:"),
        "{out}"
    );
    assert!(
        out.contains("-> expect 192.0.2.10:* -> 198.51.100.20:"),
        "{out}"
    );
    assert!(out.contains("-> rewrite 'PORT 192,0,2,10,"), "{out}");
    assert!(out.contains("' -> 'PORT 198,51,100,1,"), "{out}");
    assert!(out.contains("summary: packets="), "{out}");
    assert_eq!(out.matches("!! refused").count(), 1, "{out}");
    assert!(out.contains("'PORT 192,0,2,10,0,25'"), "{out}");
    let err = lab.log("monitor.err");
    assert_eq!(err.matches("alert: refused").count(), 1, "{err}");
    assert!(!err.contains("mismatch"), "{err}");
    let seen = ftpct::offline::capture::read(&pcap).expect("the monitor's pcap");
    let on_21 = seen
        .frames
        .iter()
        .filter(|f| f.ip.len() > 24 && f.ip[9] == 6 && f.ip[22..24] == [0, 21])
        .count();
    assert!(on_21 >= 10, "{on_21} control packets written");
}

/// `ftpct run --metrics --socket` on the lab gateway: while a client holds
/// a control connection open after a PORT, `ftpct status` lists it with its
/// NAT mapping and rewrite, and the pending expectation; after an active
/// download an HTTP GET of the metrics shows the verdicts, the rewrites,
/// the matched expectation and the kernel queue's figures.
#[test]
fn metrics_and_status_of_a_live_daemon() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let want = sha256(&lab.dir.path("ftp/1k.bin"));
    lab.gw.sh(&[FTPCT, "rules", "--apply"]);
    let socket = lab.dir.path("status.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    // Its queue thread polls an empty queue 200 us before it sleeps.
    let _ftpct = lab.start_ftpct_with(
        "ftpct.log",
        &[
            "--metrics",
            "127.0.0.1:9641",
            "--socket",
            &socket_arg,
            "--busy-poll",
            "200",
        ],
    );
    let mode =
        fs::metadata(&socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(
        mode.ok().map(|m| m & 0o777),
        Some(0o600),
        "{}",
        lab.log("ftpct.log")
    );
    let scrape = || Scrape::parse(&lab.gw.sh(&["curl", "-sS", "--max-time", "5", METRICS_URL]));
    metrics_right_after_start(&scrape());

    // A session that announces port 40000 and waits.
    let held = "exec 3<>/dev/tcp/198.51.100.20/21; \
        printf 'USER anonymous\\r\\nPASS x\\r\\nPORT 192,0,2,10,156,64\\r\\n' >&3; \
        sleep 6; printf 'QUIT\\r\\n' >&3; timeout 3 cat <&3 >/dev/null";
    let session = lab
        .client
        .cmd(&["bash", "-c", held])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the held session");
    let _session = Proc {
        child: session,
        what: "held FTP session",
    };
    let status = |json: bool| {
        let mut args = vec![FTPCT, "status", "--socket", &socket_arg];
        if json {
            args.push("--json");
        }
        lab.gw.sh(&args)
    };
    let mut text = String::new();
    let listed = wait_until(WAIT, || {
        text = status(false);
        text.contains("expectations: 1")
    });
    assert!(listed, "{text}\n{}", lab.log("ftpct.log"));
    assert!(
        text.contains("tcp 6 ESTABLISHED src=192.0.2.10 dst=198.51.100.20 sport="),
        "{text}"
    );
    assert!(
        text.contains("reply: src=198.51.100.20 dst=198.51.100.1 sport=21"),
        "{text}"
    );
    assert!(text.contains("[NAT] edits c->s=1(+2) s->c=0(+0)"), "{text}");
    assert!(
        text.contains(
            "proto=6 src=198.51.100.20 dst=198.51.100.1 sport=0 dport=40000 master: src=192.0.2.10"
        ),
        "{text}"
    );
    assert!(
        text.contains("kind=Port snat=198.51.100.20 dnat=192.0.2.10:40000"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&status(true)).expect("status --json");
    assert_eq!(
        json["expectations"][0]["dst"], "198.51.100.1:40000",
        "{json}"
    );
    assert!(
        json["expectations"][0]["expires_in"]
            .as_f64()
            .is_some_and(|t| t > 250.0),
        "{json}"
    );
    assert_eq!(
        json["control_connections"][0]["edits"][0]["shift"], 2,
        "{json}"
    );
    // A FIN forged for the held session, far outside its window: the FIN
    // rule notes it, and conntrack's entry (TCP-liberal, as every entry the
    // kernel took over) goes to FIN_WAIT; the connection never closes
    // meanwhile, so ftpct keeps the session.
    let orig = json["control_connections"][0]["orig"]
        .as_str()
        .expect("orig")
        .to_string();
    spoof_fin(&lab.client, &orig);
    let sport = orig
        .split_once(" -> ")
        .and_then(|(c, _)| c.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("client port");
    let entry = lab
        .gw
        .sh(&["conntrack", "-L", "-p", "tcp", "--sport", &sport]);
    let half_closed = ["FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"];
    assert!(
        half_closed.iter().any(|s| entry.contains(s)),
        "the forged FIN reached conntrack and moved its state: {entry}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let json: serde_json::Value = serde_json::from_str(&status(true)).expect("status --json");
    assert_eq!(
        json["control_connections"][0]["closing"], false,
        "a forged FIN does not end the session: {json}"
    );

    assert_eq!(
        lab.download(SERVER, ACTIVE, "port.bin").as_deref(),
        Ok(want.as_str())
    );
    let metrics = lab.gw.sh(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:9641/metrics",
    ]);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    // Selective queueing: handshakes, the announcements, their replies and
    // the data SYNs cross, the rest stays in the kernel.
    assert!(value("ftpct_verdicts_total{kind=\"accept\"}") >= 1.0);
    // The two PORTs; the later segments of their directions shifted, and
    // the handshakes' MSS clamped, are adjusted.
    assert_eq!(value("ftpct_verdicts_total{kind=\"rewritten\"}"), 2.0);
    assert_eq!(value("ftpct_rewrites_total"), 2.0);
    assert!(value("ftpct_verdicts_total{kind=\"adjusted\"}") >= 2.0);
    metrics_after_sessions(&Scrape::parse(&metrics));
    assert_eq!(value("ftpct_expectations_created_total"), 2.0);
    assert_eq!(value("ftpct_expectations_matched_total"), 1.0);
    assert!(value("ftpct_queue_received_total{queue=\"0\"}") >= 6.0);
    assert_eq!(value("ftpct_queue_dropped_total{queue=\"0\"}"), 0.0);
    assert_eq!(
        value("ftpct_queue_fail_open_passes_total{queue=\"0\"}"),
        0.0
    );
    assert!(value("ftpct_packet_handling_seconds_count") >= 6.0);
    assert!(value("ftpct_flows") >= 1.0);
    assert_eq!(
        value("ftpct_queues_without_rule"),
        0.0,
        "its rules are in place"
    );
    assert!(
        metrics.contains("# TYPE ftpct_netlink_errors_total counter"),
        "{metrics}"
    );
    // Lookups that find nothing and set tests that say "not in it" are answers.
    assert!(
        !metrics.contains("ftpct_netlink_errors_total{"),
        "{metrics}"
    );
    // A passive download: its PASV alone in its segment was not queued
    // but noted by the kernel's rule, and the note taken for the 227.
    assert_eq!(
        lab.download(SERVER, PASSIVE, "pasv.bin").as_deref(),
        Ok(want.as_str())
    );
    // The downloads' clients closed their control connections: the FINs
    // were not queued but put in the FIN set, which ftpct reads every
    // second.
    let fins = || {
        let now = lab.gw.sh(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9641/metrics",
        ]);
        let count = |name: &str| {
            now.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        (
            count("ftpct_session_fins_total"),
            count("ftpct_session_fins_refused_total"),
            count("ftpct_passive_notes_total"),
        )
    };
    let mut seen = (None, None, None);
    let ended = wait_until(WAIT, || {
        seen = fins();
        seen.0.is_some_and(|n| n >= 2.0)
    });
    assert!(ended, "{seen:?}\n{}", lab.log("ftpct.log"));
    assert_eq!(
        seen.1,
        Some(0.0),
        "the forged FIN was followed by the real end"
    );
    assert_eq!(seen.2, Some(1.0), "the PASV's note taken");
    // The entries of the two sessions with a rewritten PORT were made anew
    // at it; the passive one (its 227 not rewritten: SNAT) kept its own.
    let adoptions = lab.gw.sh(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:9641/metrics",
    ]);
    assert!(
        adoptions.contains("ftpct_adoptions_total{outcome=\"done\"} 2\n"),
        "{adoptions}"
    );
    assert!(
        adoptions.contains("ftpct_adoptions_total{outcome=\"failed\"} 0\n"),
        "{adoptions}"
    );
    let missing = lab.gw.output(&[
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9641/nothing",
    ]);
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
}

/// Every family with its type, before any packet: the labelled series at
/// zero, the configuration applied, the rules found, the process's figures.
fn metrics_right_after_start(m: &Scrape) {
    let families = [
        ("ftpct_build_info", "gauge"),
        ("ftpct_verdicts_total", "counter"),
        ("ftpct_refusals_total", "counter"),
        ("ftpct_adoptions_total", "counter"),
        ("ftpct_config_reloads_total", "counter"),
        ("ftpct_config_last_reload_successful", "gauge"),
        (
            "ftpct_config_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("ftpct_conntrack_lookups_total", "counter"),
        ("ftpct_conntrack_lookup_cache_hits_total", "counter"),
        ("ftpct_overlong_lines_total", "counter"),
        ("ftpct_tls_sessions_total", "counter"),
        ("ftpct_control_connections_stale_total", "counter"),
        ("ftpct_held_lines_given_up_total", "counter"),
        ("ftpct_mss_clamped_total", "counter"),
        ("ftpct_queues_without_rule", "gauge"),
        ("ftpct_rules_readable", "gauge"),
        ("ftpct_rules_restored_total", "counter"),
        ("ftpct_packet_handling_seconds", "histogram"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ];
    for (family, kind) in families {
        m.has(family, kind);
    }
    let version = format!(
        "ftpct_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.value(&version), 1.0);
    for rule in [
        "privileged-port",
        "foreign-address",
        "unsolicited-reply",
        "pipelined-passive",
    ] {
        assert_eq!(
            m.value(&format!("ftpct_refusals_total{{rule=\"{rule}\"}}")),
            0.0
        );
    }
    for kind in ["accept", "rewritten", "adjusted", "drop"] {
        assert_eq!(
            m.value(&format!("ftpct_verdicts_total{{kind=\"{kind}\"}}")),
            0.0
        );
    }
    for outcome in ["done", "failed"] {
        assert_eq!(
            m.value(&format!("ftpct_adoptions_total{{outcome=\"{outcome}\"}}")),
            0.0
        );
        assert_eq!(
            m.value(&format!(
                "ftpct_config_reloads_total{{outcome=\"{outcome}\"}}"
            )),
            0.0
        );
    }
    assert_eq!(m.value("ftpct_config_last_reload_successful"), 1.0);
    let started = m.value("process_start_time_seconds");
    assert!(started > 1.6e9, "a Unix time: {started}");
    assert_eq!(
        m.value("ftpct_config_last_reload_success_timestamp_seconds"),
        started
    );
    assert_eq!(m.value("ftpct_rules_readable"), 1.0);
    assert_eq!(
        m.value("ftpct_queues_without_rule"),
        0.0,
        "its rules are in place"
    );
    assert!(m.value("process_resident_memory_bytes") > 1e6);
    assert!(m.value("process_open_fds") >= 3.0);
    assert!(m.value("process_max_fds") >= m.value("process_open_fds"));
    assert_eq!(m.value("ftpct_mss_clamped_total"), 0.0);
    assert!(!m.text().contains(" -1\n"), "no sentinel value");
}

/// After the held session and an active download: the handshakes' MSS
/// clamped, the NAT mappings asked of conntrack, nothing refused.
fn metrics_after_sessions(m: &Scrape) {
    assert!(m.value("ftpct_mss_clamped_total") >= 2.0);
    let lookups = m.value("ftpct_conntrack_lookups_total");
    assert!(lookups >= 1.0, "{}", m.text());
    assert!(m.value("ftpct_conntrack_lookup_cache_hits_total") <= lookups);
    assert_eq!(
        m.value("ftpct_refusals_total{rule=\"privileged-port\"}"),
        0.0
    );
    assert_eq!(m.value("ftpct_overlong_lines_total"), 0.0);
    assert_eq!(m.value("ftpct_tls_sessions_total"), 0.0);
    assert!(m.value("process_cpu_seconds_total") > 0.0);
}

/// `ftpct monitor` runs as an unprivileged user given CAP_NET_RAW alone,
/// and says what it needs without it.
#[test]
fn monitor_needs_only_cap_net_raw() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("caps");
    // A copy that the unprivileged user can reach whatever the checkout's path.
    let dir = TempDir::new("caps");
    let bin = dir.path("ftpct");
    fs::copy(FTPCT, &bin).expect("copy ftpct");
    let bin_arg = bin.to_string_lossy().into_owned();
    let as_nobody = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ];
    let mut refused = as_nobody.to_vec();
    refused.extend([bin_arg.as_str(), "monitor", "--interface", "lo"]);
    let out = ns.output(&refused);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs CAP_NET_RAW"), "{err}");

    let mut args = as_nobody.to_vec();
    args.extend(["--inh-caps=+net_raw", "--ambient-caps=+net_raw"]);
    args.extend([bin_arg.as_str(), "monitor", "--interface", "lo"]);
    let err_path = dir.path("monitor.err");
    let child = ns
        .cmd(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start ftpct monitor as nobody");
    let mut monitor = Proc {
        child,
        what: "ftpct monitor as nobody",
    };
    let started = wait_until(WAIT, || {
        fs::read_to_string(&err_path).is_ok_and(|s| s.contains("monitoring lo"))
            || !matches!(monitor.child.try_wait(), Ok(None))
    });
    let status = monitor.terminate();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(started && err.contains("monitoring lo"), "{err}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}: {err}"
    );
}

/// Sends, from `ns`, a FIN of the control connection `orig` ("client ->
/// server", as `ftpct status --json` writes it) whose sequence number is
/// nowhere near the connection's (a raw socket, by python3).
fn spoof_fin(ns: &Netns, orig: &str) {
    let (client, server) = orig.split_once(" -> ").expect("a tuple");
    let tuple = ftpct_testkit::tuple(client, server);
    let packet = ftpct_testkit::Segment::new(tuple, 0x5eed_0000)
        .ack(0x5eed_0000)
        .fin()
        .build();
    let hex: String = packet.iter().map(|b| format!("{b:02x}")).collect();
    let send = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW); \
         s.sendto(bytes.fromhex('{hex}'), ('{}', 0))",
        tuple.dst.ip()
    );
    ns.sh(&["python3", "-c", &send]);
}
