//! Why `ftpct rules --apply` or `--delete` failed.

use std::fmt;
use std::io;

use crate::netfilter::Error;

/// Why `--apply` or `--delete` failed: each says what to do in one line.
#[derive(Debug)]
pub enum RulesError {
    /// `iptables` (or `ip6tables`) cannot be run at all.
    NoTool {
        tool: &'static str,
        source: io::Error,
    },
    /// `iptables -V` names neither backend.
    UnknownBackend { tool: &'static str, version: String },
    /// A program (iptables, a save tool, nft) could not be run.
    Exec { prog: String, source: io::Error },
    /// The save tool ran and failed.
    SaveFailed { prog: String, stderr: String },
    /// Neither save tool of the family is installed.
    NoSaveTool { tool: &'static str },
    /// A command ran and refused (a rule added or deleted, a table deleted).
    Refused { command: String, stderr: String },
    /// ipset refused for want of privilege.
    NeedsRoot(Error),
    /// ipset does not answer (a module missing...).
    IpsetUnusable(Error),
    /// A set could not be made.
    Set { name: String, source: Error },
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::NoTool { tool, source } => {
                write!(f, "cannot run {tool} ({source}): install iptables")
            }
            RulesError::UnknownBackend { tool, version } => write!(
                f,
                "{tool} -V says '{version}': neither nf_tables nor legacy"
            ),
            RulesError::Exec { prog, source } => write!(f, "cannot run {prog}: {source}"),
            RulesError::SaveFailed { prog, stderr } => write!(f, "{prog} failed: {stderr}"),
            RulesError::NoSaveTool { tool } => {
                write!(f, "{tool}-save not found: install iptables")
            }
            RulesError::Refused { command, stderr } => write!(f, "{command}: {stderr}"),
            RulesError::NeedsRoot(e) => write!(
                f,
                "ipset refused ({e}): ftpct rules needs root (CAP_NET_ADMIN): run it as root, or with sudo"
            ),
            RulesError::IpsetUnusable(e) => write!(
                f,
                "ipset is not usable ({e}): load it with `modprobe ip_set_hash_ipport`"
            ),
            RulesError::Set { name, source } => write!(f, "ipset {name}: {source}"),
        }
    }
}

impl std::error::Error for RulesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RulesError::NoTool { source, .. } | RulesError::Exec { source, .. } => Some(source),
            RulesError::NeedsRoot(e)
            | RulesError::IpsetUnusable(e)
            | RulesError::Set { source: e, .. } => Some(e),
            _ => None,
        }
    }
}
