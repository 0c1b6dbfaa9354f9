//! The gate of the tests that need the real kernel (network namespaces,
//! NFQUEUE, conntrack): they run as root, as CI does; not root, they are
//! skipped and say so (an error under CI=true). Also how they run commands.

pub mod netns;
pub mod scrape;

use std::process::{Command, Output, Stdio};

pub fn is_root() -> bool {
    // "Uid: real effective saved fs": the effective uid decides.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// True when the test should run (as root). Not root, it says on stderr
/// (past the test harness's capture, so that `cargo test` shows it) that
/// the test is skipped and why, and returns false; unless skipping is an
/// error: under CI=true (or FTPCT_REQUIRE_KERNEL_TESTS=1) it panics, so that
/// CI can never pass with its kernel tests silently skipped.
pub fn kernel_tests_enabled() -> bool {
    if is_root() {
        return true;
    }
    let required = std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("FTPCT_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1");
    assert!(
        !required,
        "kernel tests need root (network namespaces, NFQUEUE, CAP_NET_ADMIN), and CI=true \
         (or FTPCT_REQUIRE_KERNEL_TESTS=1) makes skipping them an error: run as root"
    );
    let name = std::thread::current()
        .name()
        .unwrap_or("kernel test")
        .to_owned();
    let line = format!(
        "{name}: skipped, not root (it needs network namespaces, NFQUEUE, CAP_NET_ADMIN; \
         run as root: sudo cargo test, or scripts/test.sh)\n"
    );
    use std::io::Write;
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// Runs a command with no stdin; panics if it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e} (missing tool? run scripts/install-deps.sh)"))
}

/// Runs a command; panics with its output on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
