//! NAT: how a control connection is mapped, and what an announcement
//! becomes through that mapping.
//!
//! The mapping comes through [`NatLookup`]: live from conntrack, offline
//! from rules the user gives ([`StaticNat`]). [`plan`] turns an
//! announcement into the expectation (with follow-master bindings, as the
//! kernel's `nf_nat_follow_master`) and the rewrite, or a refusal.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::expect::NatBindings;
use crate::policy::{Policy, Refusal};
use crate::tuple::{Dir, Tuple};

/// The two tuples conntrack keeps for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtMapping {
    pub orig: Tuple,
    pub reply: Tuple,
}

impl CtMapping {
    /// A connection without NAT.
    pub fn identity(orig: Tuple) -> Self {
        CtMapping {
            orig,
            reply: orig.reversed(),
        }
    }

    pub fn is_natted(&self) -> bool {
        self.reply != self.orig.reversed()
    }

    /// Headers of an original-direction packet after the gateway's NAT.
    pub fn translated_orig(&self) -> Tuple {
        self.reply.reversed()
    }
}

/// Where the NAT mapping of a connection comes from.
pub trait NatLookup {
    /// The connection that has `seen` as its original or its reply tuple.
    /// `None` when unknown (not NATed, or not yet in conntrack).
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping>;

    /// The mapping of a connection whose first packet (a SYN) is being
    /// seen, before conntrack saw it. Rules know it; live conntrack cannot
    /// yet (the engine asks again when the first reply arrives).
    fn lookup_new(&mut self, orig: &Tuple) -> Option<CtMapping> {
        self.lookup(orig)
    }

    /// The connection of mapping `m` is gone (its tuples now belong to a
    /// new one): forget any answer kept about them.
    fn forget(&mut self, _m: &CtMapping) {}
}

/// No NAT anywhere: a routing firewall.
pub struct NoNat;

impl NatLookup for NoNat {
    fn lookup(&mut self, _: &Tuple) -> Option<CtMapping> {
        None
    }
}

/// `--snat CIDR=ADDR`: sources in CIDR leave as ADDR, ports kept (as
/// MASQUERADE does when the port is free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatRule {
    pub inside: IpNet,
    pub public: IpAddr,
}

/// `--dnat PUBLIC[:PORT]=PRIVATE[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnatRule {
    pub public: IpAddr,
    pub public_port: Option<u16>,
    pub private: IpAddr,
    pub private_port: Option<u16>,
}

/// Offline NAT from rules: answers for original tuples from the rules and
/// remembers what it answered, so the reply tuples are known too.
#[derive(Debug, Default)]
pub struct StaticNat {
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    by_reply: HashMap<Tuple, CtMapping>,
}

impl StaticNat {
    pub fn new(snat: Vec<SnatRule>, dnat: Vec<DnatRule>) -> Self {
        StaticNat {
            snat,
            dnat,
            by_reply: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.snat.is_empty() && self.dnat.is_empty()
    }

    /// True if `ip` is on the inside of a rule (behind the gateway).
    pub fn is_inside(&self, ip: IpAddr) -> bool {
        self.snat.iter().any(|r| r.inside.contains(&ip))
            || self.dnat.iter().any(|r| r.private == ip)
    }

    fn as_orig(&self, seen: &Tuple) -> Option<CtMapping> {
        let mut translated = *seen;
        if let Some(r) = self.dnat.iter().find(|r| r.matches_public(seen.dst)) {
            translated.dst = SocketAddr::new(r.private, r.private_port.unwrap_or(seen.dst.port()));
        }
        if let Some(r) = self.snat.iter().find(|r| r.inside.contains(&seen.src.ip())) {
            translated.src = SocketAddr::new(r.public, seen.src.port());
        }
        (translated != *seen).then(|| CtMapping {
            orig: *seen,
            reply: translated.reversed(),
        })
    }

    fn as_dnat_reply(&self, seen: &Tuple) -> Option<CtMapping> {
        let r = self.dnat.iter().find(|r| r.matches_private(seen.src))?;
        let public = SocketAddr::new(r.public, r.public_port.unwrap_or(seen.src.port()));
        Some(CtMapping {
            orig: Tuple::new(seen.dst, public),
            reply: *seen,
        })
    }
}

impl DnatRule {
    fn matches_public(&self, dst: SocketAddr) -> bool {
        dst.ip() == self.public && self.public_port.is_none_or(|p| p == dst.port())
    }

    fn matches_private(&self, src: SocketAddr) -> bool {
        src.ip() == self.private && self.private_port.is_none_or(|p| p == src.port())
    }
}

impl NatLookup for StaticNat {
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping> {
        if let Some(m) = self.by_reply.get(seen) {
            return Some(*m);
        }
        let m = self.as_orig(seen).or_else(|| self.as_dnat_reply(seen))?;
        self.by_reply.insert(m.reply, m);
        Some(m)
    }
}

/// A command-line NAT rule that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// No `=` between the two sides; `usage` shows the form.
    NoEquals {
        rule: String,
        usage: &'static str,
    },
    /// An address where a network is needed (it would mean one host).
    NoPrefix {
        addr: IpAddr,
    },
    NotCidr {
        text: String,
    },
    NotAddress {
        text: String,
    },
    NotEndpoint {
        text: String,
    },
    PortZero {
        text: String,
    },
    MixedFamilies {
        flag: &'static str,
        rule: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::NoEquals { rule, usage } => write!(f, "'{rule}': expected {usage}"),
            RuleError::NoPrefix { addr } => {
                let host = if addr.is_ipv4() { 32 } else { 128 };
                write!(
                    f,
                    "--snat: '{addr}' has no prefix length: write {addr}/24 (or the network's own length) for a network, {addr}/{host} for one host"
                )
            }
            RuleError::NotCidr { text } => {
                write!(f, "--snat: '{text}' is not a CIDR (e.g. 192.0.2.0/24)")
            }
            RuleError::NotAddress { text } => write!(f, "--snat: '{text}' is not an IP address"),
            RuleError::NotEndpoint { text } => write!(
                f,
                "'{text}' is not ADDR or ADDR:PORT (IPv6 with a port: [ADDR]:PORT)"
            ),
            RuleError::PortZero { text } => write!(f, "'{text}': port 0"),
            RuleError::MixedFamilies { flag, rule } => {
                write!(f, "{flag} {rule}: mixes IPv4 and IPv6")
            }
        }
    }
}

impl std::error::Error for RuleError {}

impl FromStr for SnatRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let (cidr, addr) = split_rule(s, "--snat CIDR=ADDR, e.g. 192.0.2.0/24=198.51.100.1")?;
        let inside = cidr
            .parse::<IpNet>()
            .map_err(|_| match cidr.parse::<IpAddr>() {
                // A bare address would silently mean one host (/32 or /128).
                Ok(addr) => RuleError::NoPrefix { addr },
                Err(_) => RuleError::NotCidr { text: cidr.into() },
            })?;
        let public = addr
            .parse::<IpAddr>()
            .map_err(|_| RuleError::NotAddress { text: addr.into() })?;
        if inside.addr().is_ipv4() != public.is_ipv4() {
            return Err(RuleError::MixedFamilies {
                flag: "--snat",
                rule: s.into(),
            });
        }
        Ok(SnatRule { inside, public })
    }
}

impl FromStr for DnatRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let (public, private) = split_rule(
            s,
            "--dnat PUBLIC[:PORT]=PRIVATE[:PORT], e.g. 198.51.100.1=192.0.2.20",
        )?;
        let (public, public_port) = parse_endpoint(public)?;
        let (private, private_port) = parse_endpoint(private)?;
        if public.is_ipv4() != private.is_ipv4() {
            return Err(RuleError::MixedFamilies {
                flag: "--dnat",
                rule: s.into(),
            });
        }
        Ok(DnatRule {
            public,
            public_port,
            private,
            private_port,
        })
    }
}

fn split_rule<'a>(s: &'a str, usage: &'static str) -> Result<(&'a str, &'a str), RuleError> {
    s.split_once('=').ok_or_else(|| RuleError::NoEquals {
        rule: s.into(),
        usage,
    })
}

/// `ADDR`, `ADDR:PORT` or `[V6]:PORT`.
fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), RuleError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sa = s
        .parse::<SocketAddr>()
        .map_err(|_| RuleError::NotEndpoint { text: s.into() })?;
    if sa.port() == 0 {
        return Err(RuleError::PortZero { text: s.into() });
    }
    Ok((sa.ip(), Some(sa.port())))
}

/// What an announcement becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Source address of the data connection's SYN, as the gateway sees it.
    pub peer: IpAddr,
    /// Its destination as the gateway sees it (the public side).
    pub public: SocketAddr,
    pub nat: NatBindings,
    /// New address and port to write in the line, if it must change.
    pub rewrite: Option<SocketAddr>,
}

/// How many ports after the announced one to try when it is taken.
const PORT_ATTEMPTS: u16 = 16;

/// Decides the expectation and rewrite for an announcement of
/// `addr`/`port` (`addr` None: 229, the server's own address) sent in
/// direction `who`: Orig for PORT/EPRT (the client), Reply for 227/229.
pub fn plan(
    m: &CtMapping,
    who: Dir,
    addr: Option<IpAddr>,
    port: u16,
    policy: &Policy,
    is_free: impl Fn(SocketAddr, IpAddr) -> bool,
) -> Result<Plan, Refusal> {
    let (own, own_public, peer) = match who {
        // The client is known as orig.src inside and reply.dst outside.
        Dir::Orig => (m.orig.src.ip(), m.reply.dst.ip(), m.reply.src.ip()),
        // The server is reply.src on its side, orig.dst on the client's.
        Dir::Reply => (m.reply.src.ip(), m.orig.dst.ip(), m.orig.src.ip()),
    };
    // 229 names no address: only its port can need a rewrite.
    let carries_addr = addr.is_some();
    let addr = addr.unwrap_or(own);
    // A foreign address is the graver finding: check it first.
    let third_party = addr != own && addr != own_public;
    if third_party && !policy.fxp_allowed(addr) {
        return Err(Refusal::ForeignAddress {
            announced: addr,
            expected: own,
        });
    }
    if port < policy.min_data_port {
        return Err(Refusal::PrivilegedPort { port });
    }
    if third_party {
        return Ok(fxp_plan(addr, port, peer));
    }
    if !m.is_natted() {
        return Ok(Plan {
            peer,
            public: SocketAddr::new(addr, port),
            nat: NatBindings::NONE,
            rewrite: None,
        });
    }
    let public_port = free_port(own_public, port, policy, |dst| is_free(dst, peer))?;
    let public = SocketAddr::new(own_public, public_port);
    let nat = follow_master(m, who, SocketAddr::new(own, port));
    let rewrite = ((carries_addr && addr != own_public) || public_port != port).then_some(public);
    Ok(Plan {
        peer,
        public,
        nat,
        rewrite,
    })
}

/// An allowed third-party address (FXP): no rewrite, no NAT.
fn fxp_plan(addr: IpAddr, port: u16, peer: IpAddr) -> Plan {
    Plan {
        peer,
        public: SocketAddr::new(addr, port),
        nat: NatBindings::NONE,
        rewrite: None,
    }
}

/// The announced port if free on the public side, else one of the next few.
fn free_port(
    public: IpAddr,
    port: u16,
    policy: &Policy,
    is_free: impl Fn(SocketAddr) -> bool,
) -> Result<u16, Refusal> {
    (0..PORT_ATTEMPTS)
        .filter_map(|i| port.checked_add(i))
        .filter(|p| *p >= policy.min_data_port)
        .find(|p| is_free(SocketAddr::new(public, *p)))
        .ok_or(Refusal::NoFreePort { port })
}

/// Both bindings, as `nf_nat_follow_master`: the data connection's source
/// becomes where the master sends to, its destination where the master
/// comes from, with the announced port. A conntrack entry created by us is
/// already confirmed, so NAT must be complete at creation.
fn follow_master(m: &CtMapping, who: Dir, announced: SocketAddr) -> NatBindings {
    let src = match who {
        Dir::Orig => m.orig.dst.ip(),
        Dir::Reply => m.reply.dst.ip(),
    };
    NatBindings {
        src: Some(src),
        dst: Some(announced),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snat_needs_a_prefix_length() {
        let e = "192.0.2.0=198.51.100.1".parse::<SnatRule>().unwrap_err();
        assert_eq!(
            e,
            RuleError::NoPrefix {
                addr: "192.0.2.0".parse().expect("ip")
            }
        );
        let said = e.to_string();
        assert!(
            said.contains("192.0.2.0/24") && said.contains("192.0.2.0/32"),
            "{said}"
        );
        assert!("192.0.2.0/24=198.51.100.1".parse::<SnatRule>().is_ok());
        assert!("192.0.2.10/32=198.51.100.1".parse::<SnatRule>().is_ok());
    }

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    fn snat_mapping() -> CtMapping {
        let mut nat = StaticNat::new(
            vec!["192.0.2.0/24=198.51.100.1".parse().expect("rule")],
            vec![],
        );
        nat.lookup(&t("192.0.2.10:40000", "198.51.100.20:21"))
            .expect("mapped")
    }

    fn dnat_mapping() -> CtMapping {
        let mut nat = StaticNat::new(
            vec![],
            vec!["198.51.100.1=192.0.2.20".parse().expect("rule")],
        );
        nat.lookup(&t("198.51.100.10:40000", "198.51.100.1:21"))
            .expect("mapped")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// `plan` with the default policy and every port free.
    fn plan_free(m: &CtMapping, who: Dir, addr: Option<&str>, port: u16) -> Plan {
        plan(m, who, addr.map(ip), port, &Policy::default(), |_, _| true).expect("plan")
    }

    #[test]
    fn static_snat_and_dnat_tuples() {
        let m = snat_mapping();
        assert_eq!(m.reply, t("198.51.100.20:21", "198.51.100.1:40000"));
        let m = dnat_mapping();
        assert_eq!(m.reply, t("192.0.2.20:21", "198.51.100.10:40000"));
        let mut nat = StaticNat::new(
            vec![],
            vec!["198.51.100.1=192.0.2.20".parse().expect("rule")],
        );
        assert_eq!(
            nat.lookup(&m.reply),
            Some(m),
            "reply side found from the rule"
        );
    }

    #[test]
    fn snat_port_rewrites_to_public_address() {
        let p = plan_free(&snat_mapping(), Dir::Orig, Some("192.0.2.10"), 5000);
        assert_eq!(p.rewrite, Some("198.51.100.1:5000".parse().expect("a")));
        assert_eq!(p.peer, ip("198.51.100.20"));
        assert_eq!(p.nat.dst, Some("192.0.2.10:5000".parse().expect("a")));
    }

    #[test]
    fn taken_port_moves_to_next_free() {
        let p = plan(
            &snat_mapping(),
            Dir::Orig,
            Some(ip("192.0.2.10")),
            5000,
            &Policy::default(),
            |a, _| a.port() != 5000,
        )
        .expect("plan");
        assert_eq!(p.public.port(), 5001);
    }

    #[test]
    fn dnat_227_and_229() {
        let m = dnat_mapping();
        let p = plan_free(&m, Dir::Reply, Some("192.0.2.20"), 50000);
        assert_eq!(p.rewrite, Some("198.51.100.1:50000".parse().expect("a")));
        assert_eq!(p.peer, ip("198.51.100.10"));
        assert_eq!(p.nat.dst, Some("192.0.2.20:50000".parse().expect("a")));
        let p229 = plan_free(&m, Dir::Reply, None, 50001);
        assert_eq!(p229.rewrite, None, "229 keeps its port when free");
        // A server announcing the public address of its own DNAT mapping.
        let public = plan_free(&m, Dir::Reply, Some("198.51.100.1"), 50002);
        assert_eq!(public.rewrite, None);
    }

    #[test]
    fn refusals() {
        let m = snat_mapping();
        let policy = Policy::default();
        assert_eq!(
            plan(
                &m,
                Dir::Orig,
                Some(ip("203.0.113.5")),
                5000,
                &policy,
                |_, _| true
            ),
            Err(Refusal::ForeignAddress {
                announced: ip("203.0.113.5"),
                expected: ip("192.0.2.10")
            })
        );
        assert_eq!(
            plan(
                &m,
                Dir::Orig,
                Some(ip("192.0.2.10")),
                25,
                &policy,
                |_, _| true
            ),
            Err(Refusal::PrivilegedPort { port: 25 })
        );
        let fxp = Policy {
            allow_fxp: vec!["203.0.113.0/24".parse().expect("net")],
            ..Policy::default()
        };
        let p = plan(
            &m,
            Dir::Orig,
            Some(ip("203.0.113.5")),
            5000,
            &fxp,
            |_, _| true,
        )
        .expect("fxp");
        assert_eq!(p.rewrite, None);
        assert!(p.nat.is_none());
    }

    #[test]
    fn rule_parsing() {
        assert!("192.0.2.0/24=198.51.100.1".parse::<SnatRule>().is_ok());
        assert!("2001:db8:1::/64=2001:db8:2::1".parse::<SnatRule>().is_ok());
        assert!(matches!(
            "192.0.2.0/24=2001:db8::1".parse::<SnatRule>(),
            Err(RuleError::MixedFamilies { flag: "--snat", .. })
        ));
        assert!(matches!(
            "nonsense".parse::<SnatRule>(),
            Err(RuleError::NoEquals { .. })
        ));
        assert!(matches!(
            "x/24=198.51.100.1".parse::<SnatRule>(),
            Err(RuleError::NotCidr { .. })
        ));
        assert!(matches!(
            "198.51.100.1:0=192.0.2.20".parse::<DnatRule>(),
            Err(RuleError::PortZero { .. })
        ));
        let d: DnatRule = "[2001:db8:2::1]:2121=[2001:db8:1::20]:21"
            .parse()
            .expect("v6 dnat");
        assert_eq!((d.public_port, d.private_port), (Some(2121), Some(21)));
    }
}
