//! The gate of the tests that need the real kernel (network namespaces,
//! NFQUEUE, conntrack): they run as root, as CI does, and fail loudly
//! otherwise unless told to skip. Also how they run commands.

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

/// True when the test should run; panics when it cannot and was not told to skip.
pub fn kernel_tests_enabled() -> bool {
    if std::env::var("FTPCT_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("kernel test skipped: FTPCT_SKIP_KERNEL_TESTS=1");
        return false;
    }
    assert!(
        is_root(),
        "kernel tests need root (network namespaces, NFQUEUE, CAP_NET_ADMIN): run as root, \
         or set FTPCT_SKIP_KERNEL_TESTS=1 to skip them"
    );
    true
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
