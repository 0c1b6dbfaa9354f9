//! `ftpct status` answers from the daemon of its own network namespace:
//! two namespaces, an `ftpct run` in each with the default status socket
//! (an abstract name, one per namespace); each `ftpct status` names its
//! own daemon's pid; the user nobody is refused (exit 77); with no daemon
//! in the namespace there is no answer (exit 1), whatever runs elsewhere.
//!
//! Needs root (namespaces, NFQUEUE); CI runs it as root.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod root;
use root::kernel_tests_enabled;
use root::netns::Netns;

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");
const WAIT: Duration = Duration::from_secs(10);

/// `ftpct run` in a namespace, its stderr in a file; stopped on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns) -> Daemon {
        let log = std::env::temp_dir().join(format!(
            "ftpct-status-ns-{}-{}.log",
            std::process::id(),
            ns.name()
        ));
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), FTPCT, "run"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ftpct run");
        let mut d = Daemon { child, log };
        let end = Instant::now() + WAIT;
        while Instant::now() < end && !d.says("running: queues") && d.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(d.says("running: queues"), "did not start:\n{}", d.text());
        d
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn says(&self, what: &str) -> bool {
        self.text().contains(what)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + WAIT;
        while Instant::now() < end && self.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// `ftpct status --json` in `ns` (as `user`, if any): exit code, stdout, stderr.
fn status(ns: &Netns, user: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()]);
    if let Some(u) = user {
        cmd.args(["setpriv", &format!("--reuid={u}"), "--regid=nogroup"])
            .arg("--clear-groups");
    }
    let out = cmd
        .args([FTPCT, "status", "--json"])
        .output()
        .expect("ftpct status");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pid_of_answer(ns: &Netns) -> u64 {
    let (code, out, err) = status(ns, None);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("a snapshot");
    json["pid"].as_u64().expect("pid")
}

#[test]
fn each_namespace_asks_its_own_daemon() {
    if !kernel_tests_enabled() {
        return;
    }
    let a = Netns::new("sta");
    let b = Netns::new("stb");
    let empty = Netns::new("st0");
    let da = Daemon::start(&a);
    let db = Daemon::start(&b);
    assert!(da.says("status: @ftpct-status"), "{}", da.text());
    assert_eq!(pid_of_answer(&a), u64::from(da.child.id()));
    assert_eq!(pid_of_answer(&b), u64::from(db.child.id()));

    let (code, _, err) = status(&empty, None);
    assert_eq!(code, Some(1), "no daemon in this namespace: {err}");
    assert!(err.contains("in this network namespace"), "{err}");

    let (code, out, err) = status(&a, Some("nobody"));
    assert_eq!(code, Some(77), "{err}");
    assert!(out.is_empty(), "nothing shown to nobody: {out}");
    assert!(err.contains("refused: uid 65534"), "{err}");
}
