//! Checks a command makes before it asks the kernel for what only a
//! privileged process gets, so that it says what is missing (exit 77)
//! instead of relaying a tool's refusal (which would read as a kernel error).

use std::fmt;

use crate::netfilter::nfqueue::has_net_admin;

/// A command that needs CAP_NET_ADMIN was started without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingNetAdmin {
    /// The command as the user typed it, e.g. `ftpct rules --apply`.
    pub command: &'static str,
}

impl fmt::Display for MissingNetAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} needs CAP_NET_ADMIN (it changes iptables rules and ipsets): run it as root (or with sudo)",
            self.command
        )
    }
}

impl std::error::Error for MissingNetAdmin {}

/// Ok if this process may change the kernel's rules and sets.
pub fn need_net_admin(command: &'static str) -> Result<(), MissingNetAdmin> {
    if has_net_admin() {
        Ok(())
    } else {
        Err(MissingNetAdmin { command })
    }
}
