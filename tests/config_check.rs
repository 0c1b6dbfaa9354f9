//! `ftpct config check` (and `run`, `rules`) on hostile settings, through
//! the built binary: each value is refused with exit 78 (EX_CONFIG) and a
//! message that names its key; an explicit `--config` path that does not
//! exist is refused the same way. No root, no kernel: the configuration is
//! checked before anything else happens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");
const EX_CONFIG: i32 = 78;

/// A directory of this test's own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ftpct-config-{}-{tag}", std::process::id()));
        fs::create_dir_all(&p).expect("temporary directory");
        Dir(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).expect("write the configuration");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ftpct(args: &[&str]) -> Output {
    Command::new(FTPCT)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run ftpct")
}

fn check(path: &Path) -> Output {
    ftpct(&["config", "check", "--config", &path.to_string_lossy()])
}

/// Exits 78 and says `words` on standard error.
fn refused(out: &Output, words: &[&str], what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{what}: {err}");
    for w in words {
        assert!(err.contains(w), "{what}: no '{w}' in: {err}");
    }
}

#[test]
fn config_check_refuses_each_hostile_value() {
    let dir = Dir::new("hostile");
    let cases: [(&str, &[&str]); 11] = [
        (
            "max_line = 4294967295",
            &["max_line", "4294967295", "128 to 8192"],
        ),
        ("max_line = 0", &["max_line", "128 to 8192"]),
        (
            "[policy]\nexpect_timeout = 0",
            &["policy.expect_timeout", "1 to 3600"],
        ),
        (
            "[policy]\nmin_data_port = 0",
            &["policy.min_data_port", "1024 to 65535"],
        ),
        (
            "[policy]\nmax_expect_per_session = 0",
            &["policy.max_expect_per_session", "1 to 1024"],
        ),
        (
            "[policy]\nmax_expect_per_session = 1e8",
            &["policy.max_expect_per_session", "1 to 1024"],
        ),
        (
            "[policy]\nmax_expect_per_session = 100000000",
            &["policy.max_expect_per_session", "100000000", "1 to 1024"],
        ),
        (
            "control_ports = [21, 21, 0]",
            &["control_ports", "1 to 65535"],
        ),
        (
            "control_ports = [21, 21]",
            &["control_ports", "21 is listed twice"],
        ),
        (
            "realtime_priority = 150",
            &["realtime_priority", "150", "0 to 99"],
        ),
        ("busy_poll = 20000", &["busy_poll", "20000", "0 to 10000"]),
    ];
    for (i, (text, words)) in cases.into_iter().enumerate() {
        let path = dir.file(&format!("{i}.toml"), &format!("{text}\n"));
        refused(&check(&path), words, text);
    }
}

#[test]
fn config_check_accepts_values_in_range() {
    let dir = Dir::new("valid");
    let path = dir.file(
        "ok.toml",
        "max_line = 128\ncontrol_ports = [21, 2121]\nrealtime_priority = 99\nbusy_poll = 10000\n\n\
         [policy]\nmin_data_port = 1024\nexpect_timeout = 1\nmax_expect_per_session = 1024\n",
    );
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_line = 128"));
}

#[test]
fn an_explicit_config_that_does_not_exist_is_an_error() {
    let dir = Dir::new("missing");
    let path = dir.0.join("absent.toml");
    refused(
        &check(&path),
        &["absent.toml", "no such file"],
        "missing file",
    );
}

/// The flags go through the same check as the file, before `run` or
/// `rules` touch the kernel (so no root is needed to see it).
#[test]
fn hostile_flags_are_refused_alike() {
    let dir = Dir::new("flags");
    let path = dir.file("empty.toml", "");
    let conf = path.to_string_lossy();
    let out = ftpct(&["run", "--config", &conf, "--busy-poll", "20000"]);
    refused(
        &out,
        &["busy_poll (--busy-poll) = 20000", "0 to 10000"],
        "--busy-poll",
    );
    let out = ftpct(&["run", "--config", &conf, "--realtime-priority", "150"]);
    refused(
        &out,
        &["--realtime-priority", "0 to 99"],
        "--realtime-priority",
    );
    let out = ftpct(&["run", "--config", &conf, "--max-line", "4294967295"]);
    refused(
        &out,
        &["max_line (--max-line)", "128 to 8192"],
        "--max-line",
    );
    let out = ftpct(&["rules", "--config", &conf, "--control-ports", "21,21,0"]);
    refused(
        &out,
        &["control_ports (--control-ports)"],
        "--control-ports",
    );
}
