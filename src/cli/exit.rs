//! Exit codes of `ftpct`, after sysexits.h, so that systemd and scripts
//! can tell a configuration to fix from a kernel that refuses.

/// Success.
pub const OK: u8 = 0;
/// A failure while running (a queue thread stopped, a capture unreadable).
pub const FAILURE: u8 = 1;
/// Wrong command line (clap's own code).
pub const USAGE: u8 = 2;
/// The configuration file or a value in it is wrong (EX_CONFIG).
pub const CONFIG: u8 = 78;
/// Not allowed: a capability is missing (CAP_NET_ADMIN for `run` and
/// `rules --apply/--delete`, CAP_NET_RAW for `monitor`), or the status
/// socket refuses this user (EX_NOPERM).
pub const NO_PERMISSION: u8 = 77;
/// The kernel refused or lacks something: NFQUEUE, conntrack, ipset,
/// iptables (EX_UNAVAILABLE).
pub const KERNEL: u8 = 69;

/// Each code and what it means, for the man pages' EXIT STATUS.
pub const TABLE: [(u8, &str); 6] = [
    (OK, "Success."),
    (FAILURE, "A failure while running: a queue thread stopped, a capture unreadable, no daemon answering status."),
    (USAGE, "A wrong command line."),
    (CONFIG, "The configuration file (malformed, or named with --config and missing) or a value in it or in a flag out of its range (EX_CONFIG)."),
    (NO_PERMISSION, "No permission: CAP_NET_ADMIN missing (run, rules --apply, rules --delete), CAP_NET_RAW missing (monitor), or a status socket that refuses this user (EX_NOPERM)."),
    (KERNEL, "The kernel refused or lacks something: NFQUEUE, conntrack, ipset or iptables unavailable or refusing, a queue already bound (EX_UNAVAILABLE)."),
];

/// The table printed at the end of `--help` and in the README.
pub const HELP: &str = "Exit codes: 0 success, 1 failure while running, 2 wrong command line, \
78 configuration error (file or value), 77 no permission (CAP_NET_ADMIN or CAP_NET_RAW \
missing, or a status socket that refuses this user), \
69 kernel error (NFQUEUE, conntrack, ipset or iptables unavailable or refusing).";

/// The exit code of a daemon error.
pub fn of_daemon(e: &crate::daemon::DaemonError) -> u8 {
    use crate::daemon::DaemonError as E;
    match e {
        E::NeedsRoot => NO_PERMISSION,
        E::SetName(_) => CONFIG,
        E::QueueFailed(_) | E::Metrics { .. } => FAILURE,
        E::Signals(_)
        | E::WakeHandler(_)
        | E::Queue(_)
        | E::ClaimName { .. }
        | E::SetsTaken { .. }
        | E::Claim { .. }
        | E::Ipset(_)
        | E::SetUnusable { .. }
        | E::SetFlush { .. }
        | E::Ctnetlink(_)
        | E::Conntrack(_)
        | E::Thread { .. } => KERNEL,
    }
}

/// The exit code of a monitor error: a capture socket refused for want of
/// CAP_NET_RAW is a permission matter, the rest a failure.
pub fn of_monitor(e: &crate::monitor::MonitorError) -> u8 {
    match e {
        crate::monitor::MonitorError::Open { source, .. } if is_permission(source) => NO_PERMISSION,
        _ => FAILURE,
    }
}

/// The exit code of `ftpct status`: a socket that refuses this user is a
/// permission matter, a wrong file a configuration one, no daemon behind
/// it a failure.
pub fn of_status(e: &crate::cli::status::StatusError) -> u8 {
    use crate::cli::status::StatusError as E;
    match e {
        E::Connect { source, .. } if is_permission(source) => NO_PERMISSION,
        E::Refused { .. } => NO_PERMISSION,
        E::Config(_) => CONFIG,
        _ => FAILURE,
    }
}

/// EPERM or EACCES.
fn is_permission(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_code_of_the_table() {
        for (code, _) in TABLE {
            assert!(HELP.contains(&format!("{code} ")), "{code}");
        }
    }
}
