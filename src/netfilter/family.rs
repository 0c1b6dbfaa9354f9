//! The address families the rules, sets and lookups are written for, and
//! what each is called by the tools that speak of it.

use std::net::IpAddr;

use ftpct_engine::classifier::Ip;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }

    /// The classifier's name for it.
    pub fn ip(self) -> Ip {
        match self {
            Family::V4 => Ip::V4,
            Family::V6 => Ip::V6,
        }
    }

    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    pub(crate) fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    pub(crate) fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// `--family 4|6|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Families {
    /// IPv4 only (iptables)
    #[value(name = "4")]
    V4,
    /// IPv6 only (ip6tables)
    #[value(name = "6")]
    V6,
    /// Both
    #[default]
    All,
}

impl Families {
    pub fn list(self) -> Vec<Family> {
        match self {
            Families::V4 => vec![Family::V4],
            Families::V6 => vec![Family::V6],
            Families::All => vec![Family::V4, Family::V6],
        }
    }
}
