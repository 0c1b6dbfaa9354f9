//! The gate of the tests that need the real kernel (network namespaces,
//! NFQUEUE, conntrack): they run as root, as CI does, and fail loudly
//! otherwise unless told to skip.

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
