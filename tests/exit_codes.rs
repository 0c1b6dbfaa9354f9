//! Every exit code of `ftpct` that `--help` documents, from each
//! subcommand that can give it, through the built binary: 0 success, 1 a
//! failure while running, 2 a wrong command line, 78 a configuration
//! error, 77 no permission (as the user nobody, in a network namespace of
//! its own), 69 the kernel's tools unavailable.
//!
//! Needs root (a namespace, setpriv); CI runs it as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output};

mod root;
use root::kernel_tests_enabled;
use root::netns::Netns;

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");
const OK: i32 = 0;
const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const KERNEL: i32 = 69;
const NO_PERMISSION: i32 = 77;
const CONFIG: i32 = 78;

/// A directory anyone may enter, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ftpct-exit-{}-{tag}", std::process::id()));
        fs::create_dir_all(&p).expect("temporary directory");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        Dir(p)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` and checks its exit code; its stderr for the next checks.
fn exits(cmd: &mut Command, want: i32) -> String {
    let shown = format!("{cmd:?}");
    let out: Output = cmd
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(want), "{shown}: {err}");
    err
}

fn ftpct(args: &[&str]) -> Command {
    let mut c = Command::new(FTPCT);
    c.args(args);
    c
}

/// `bin args` in `ns` as the user nobody, without capabilities.
fn as_nobody(ns: &Netns, bin: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name()])
        .args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin)
        .args(args);
    c
}

fn capture() -> String {
    format!(
        "{}/pcaps/lab/snat-v4-port-curl-vsftpd-download.inside.pcap",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn success_is_0() {
    exits(&mut ftpct(&["replay", &capture()]), OK);
    exits(&mut ftpct(&["rules"]), OK);
    exits(&mut ftpct(&["config", "check"]), OK);
    let dir = Dir::new("man");
    exits(&mut ftpct(&["generate", "man", &dir.path("")]), OK);
}

#[test]
fn a_failure_while_running_is_1() {
    let err = exits(
        &mut ftpct(&["replay", "/nonexistent/capture.pcap"]),
        FAILURE,
    );
    assert!(err.contains("/nonexistent/capture.pcap"), "{err}");
    let err = exits(
        &mut ftpct(&["status", "--socket", "/nonexistent/ftpct.sock"]),
        FAILURE,
    );
    assert!(err.contains("is it running"), "{err}");
}

#[test]
fn a_wrong_command_line_is_2() {
    for args in [
        &["replay"][..],
        &["run", "--no-such-flag"],
        &["rules", "--apply", "--delete"],
        &["status", "--what"],
        &["monitor"],
        &["config"],
        &["no-such-command"],
    ] {
        exits(&mut ftpct(args), USAGE);
    }
}

#[test]
fn a_configuration_error_is_78() {
    let dir = Dir::new("config");
    let missing = dir.path("missing.toml");
    for args in [
        &["config", "check", "--config", &missing][..],
        &["rules", "--config", &missing],
        &["rules", "--apply", "--config", &missing],
        &["run", "--config", &missing],
        &["replay", &capture(), "--min-data-port", "80"],
        &["monitor", "--interface", "lo", "--min-data-port", "80"],
    ] {
        let err = exits(&mut ftpct(args), CONFIG);
        assert!(err.contains("ftpct:"), "{args:?}: {err}");
    }
}

/// Without the capability each needs, every command that changes or
/// reads the kernel says so and exits 77, before it touches anything.
#[test]
fn no_permission_is_77() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("perm");
    // A copy that the user nobody can reach whatever the checkout's path.
    let dir = Dir::new("perm");
    let bin = dir.path("ftpct");
    // By another process: a copy written here could be held open by a
    // child another test thread forks meanwhile (ETXTBSY at exec).
    root::run_ok(Command::new("install").args(["-m", "0755", FTPCT, &bin]));
    for (args, says) in [
        (&["rules", "--apply"][..], "needs CAP_NET_ADMIN"),
        (&["rules", "--delete"], "needs CAP_NET_ADMIN"),
        (&["run"], "needs CAP_NET_ADMIN"),
        (&["monitor", "--interface", "lo"], "needs CAP_NET_RAW"),
    ] {
        let err = exits(&mut as_nobody(&ns, &bin, args), NO_PERMISSION);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The daemon's socket is root's alone (mode 0600).
    let socket = dir.path("status.sock");
    let _listener = UnixListener::bind(&socket).expect("bind a status socket");
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let err = exits(
        &mut as_nobody(&ns, &bin, &["status", "--socket", &socket]),
        NO_PERMISSION,
    );
    assert!(err.contains("root only"), "{err}");
    assert!(
        ns.sh(&["iptables-save"])
            .lines()
            .all(|l| !l.contains("ftpct")),
        "nothing was applied"
    );
}

/// iptables missing (an empty PATH): the kernel's tools are unavailable.
#[test]
fn the_kernel_tools_unavailable_is_69() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("kern");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "env", "PATH=/nonexistent"])
        .args([FTPCT, "rules", "--apply"]);
    let err = exits(&mut cmd, KERNEL);
    assert!(err.contains("iptables"), "{err}");
}
