//! ftpct's ipsets: their names ([`SetNames`]), and creating, flushing and
//! destroying them for `ftpct rules` and `ftpct run`.

use std::net::IpAddr;
use std::time::Duration;

use crate::netfilter::family::Family;
use crate::netfilter::ipset::{self, Element, Ipset, SetType};
use crate::netfilter::rules_error::RulesError;
use crate::netfilter::shell_words::shell_word;
use crate::netfilter::Error;

/// Default timeout of the sets (each entry carries its own).
pub const SET_TIMEOUT_SECS: u32 = 300;
/// Default base name of the sets.
pub const DEFAULT_SET: &str = "ftpct";

/// Default timeout of the guard sets. ftpct takes a direction out once it
/// has seen what it needed; an entry it could not take out (ftpct
/// stopped) goes after this.
pub const GUARD_TIMEOUT_SECS: u32 = 600;

/// Default timeout of the sets of ended sessions. ftpct empties them every
/// second; what a stopped ftpct leaves goes after this.
pub const FIN_TIMEOUT_SECS: u32 = 60;

/// Default timeout of the client sets. Each segment of a client to a
/// control port puts its address and port back for this long: a command
/// always renews it before the reply that answers it.
pub const CLIENT_TIMEOUT_SECS: u32 = 600;

/// Default timeout of the counting sets. The counting rule adds an
/// element at the first segment past the guard rules without one; only
/// ftpct's recounts renew it (a rule's re-add would reset its count): a
/// direction that stays under its budget longer starts counting again from
/// nothing (see [`UNSEEN_BUDGET`] for what that costs).
pub const UNSEEN_TIMEOUT_SECS: u32 = 600;

/// Selective queueing: the bytes (whole packets, headers included) a
/// direction of a control connection may pass unqueued, counted since
/// ftpct last saw it (its recount); the segment that goes over is queued.
/// ftpct judges a segment by where it last saw its direction and takes one
/// more than `MAX_UNSEEN` (1 MiB) away for a blind forgery, so what passes
/// unseen stays below that: at most this budget while the count lives,
/// twice it when the count's element times out unrenewed (600 s after its
/// add or last recount: counted again from nothing by the next segment),
/// the packet that goes over excluded (seen; a GRO'd one of up to 64 KiB
/// counts once, whole). 2 x 256 KiB leaves 512 KiB of MAX_UNSEEN for the
/// other direction's acknowledged bytes in flight.
pub const UNSEEN_BUDGET: u64 = 256 << 10;

/// Default timeout of the passive sets: a PASV or EPSV not answered by a
/// 227 or 229 is forgotten after this.
pub const PASSIVE_TIMEOUT_SECS: u32 = 60;

/// The sets: expected data connections `NAME` (IPv4) and `NAME6` (IPv6),
/// the guard sets of selective queueing `NAME-guard`, `NAME-guard6`, and
/// the sessions whose client sent its FIN, `NAME-fin`, `NAME-fin6` (filled
/// by a rule) with the sets they are swapped with to be read,
/// `NAME-finx`, `NAME-finx6`, and the sessions whose client asked for a
/// passive data connection unqueued, `NAME-pasv`, `NAME-pasv6`, and the
/// clients of control connections, `NAME-ctl`, `NAME-ctl6` (filled by a
/// rule: the server's side of a connection is followed by its client's
/// address and port, whatever NAT does to the server's port), and the
/// bytes of control directions the rules let pass unseen, `NAME-count`,
/// `NAME-count6` (counters, keyed as the guard sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetNames {
    pub v4: String,
    pub v6: String,
    pub guard_v4: String,
    pub guard_v6: String,
    pub fin_v4: String,
    pub fin_v6: String,
    pub fin_read_v4: String,
    pub fin_read_v6: String,
    pub passive_v4: String,
    pub passive_v6: String,
    pub client_v4: String,
    pub client_v6: String,
    pub unseen_v4: String,
    pub unseen_v6: String,
}

impl SetNames {
    pub fn new(base: &str) -> Result<Self, Error> {
        let names = SetNames {
            v4: base.to_string(),
            v6: format!("{base}6"),
            guard_v4: format!("{base}-guard"),
            guard_v6: format!("{base}-guard6"),
            fin_v4: format!("{base}-fin"),
            fin_v6: format!("{base}-fin6"),
            fin_read_v4: format!("{base}-finx"),
            fin_read_v6: format!("{base}-finx6"),
            passive_v4: format!("{base}-pasv"),
            passive_v6: format!("{base}-pasv6"),
            client_v4: format!("{base}-ctl"),
            client_v6: format!("{base}-ctl6"),
            unseen_v4: format!("{base}-count"),
            unseen_v6: format!("{base}-count6"),
        };
        for f in [Family::V4, Family::V6] {
            for (name, _, _) in family_sets(&names, f) {
                ipset::check_name(name)?;
            }
        }
        Ok(names)
    }

    /// The passive set for a session whose client has address `ip`.
    pub fn passive_for(&self, ip: IpAddr) -> &str {
        self.passive_of(Family::of(ip))
    }

    /// The passive set of a family.
    pub fn passive_of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.passive_v4,
            Family::V6 => &self.passive_v6,
        }
    }

    /// The set of the clients of control connections, of a family.
    pub fn client_of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.client_v4,
            Family::V6 => &self.client_v6,
        }
    }

    /// The set counting a family's unseen bytes of control directions.
    pub fn unseen_of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.unseen_v4,
            Family::V6 => &self.unseen_v6,
        }
    }

    /// The unseen set for a direction from an address of that family.
    pub fn unseen_for(&self, ip: IpAddr) -> &str {
        self.unseen_of(Family::of(ip))
    }

    /// The set the FIN rule fills, and the one it is swapped with to be
    /// read, of a family.
    pub fn fin_of(&self, family: Family) -> (&str, &str) {
        match family {
            Family::V4 => (&self.fin_v4, &self.fin_read_v4),
            Family::V6 => (&self.fin_v6, &self.fin_read_v6),
        }
    }

    /// The guard set for a direction from an address of that family.
    pub fn guard_for(&self, ip: IpAddr) -> &str {
        self.guard_of(Family::of(ip))
    }

    /// The guard set of a family.
    pub fn guard_of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.guard_v4,
            Family::V6 => &self.guard_v6,
        }
    }

    /// Both guard set names, with "is IPv6".
    pub fn guards(&self) -> [(&str, bool); 2] {
        [(&self.guard_v4, false), (&self.guard_v6, true)]
    }

    /// The set for a destination address of that family.
    pub fn for_ip(&self, ip: IpAddr) -> &str {
        self.of(Family::of(ip))
    }

    pub fn of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Both names, with "is IPv6".
    pub fn both(&self) -> [(&str, bool); 2] {
        [(&self.v4, false), (&self.v6, true)]
    }
}

/// Makes sure the `hash:ip,port` set `name` exists; true if created here.
pub fn ensure_set(ipset: &mut Ipset, name: &str, v6: bool) -> Result<bool, Error> {
    ensure_set_of(ipset, name, (v6, SetType::Dst), SET_TIMEOUT_SECS)
}

/// Makes sure the set `name` of `kind` (is IPv6, type) exists, created
/// with the default timeout `timeout`; true if created here.
pub fn ensure_set_of(
    ipset: &mut Ipset,
    name: &str,
    kind: (bool, SetType),
    timeout: u32,
) -> Result<bool, Error> {
    let (v6, set_type) = kind;
    let probe: IpAddr = if v6 {
        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0])
    } else {
        IpAddr::from([192, 0, 2, 0])
    };
    let probe = Element {
        addr: probe,
        port: 9,
        addr2: set_type.has_addr2().then_some(probe),
    };
    match ipset.test_element(name, &probe) {
        Ok(_) => Ok(false),
        Err(Error::Kernel {
            errno: libc::ENOENT,
            ..
        }) => {
            ipset.create_of(name, kind, timeout)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn open_ipset() -> Result<Ipset, RulesError> {
    Ipset::open().map_err(ipset_unusable)
}

/// Why ipset cannot be used, and what to do: a missing privilege is not a
/// missing module.
fn ipset_unusable(e: Error) -> RulesError {
    if e.is_permission_denied() {
        RulesError::NeedsRoot(e)
    } else {
        RulesError::IpsetUnusable(e)
    }
}

/// The sets of a family: name, type, default timeout. The passive and FIN
/// sets are `hash:ip,port,ip` as the guard sets are (client address and
/// port, server address), and sized as they are: a rule's add never grows
/// them; so are the client and unseen sets.
pub fn family_sets(names: &SetNames, f: Family) -> [(&str, SetType, u32); 7] {
    let (fin, fin_read) = names.fin_of(f);
    [
        (names.passive_of(f), SetType::Guard, PASSIVE_TIMEOUT_SECS),
        (names.of(f), SetType::Dst, SET_TIMEOUT_SECS),
        (names.guard_of(f), SetType::Guard, GUARD_TIMEOUT_SECS),
        (fin, SetType::Guard, FIN_TIMEOUT_SECS),
        (fin_read, SetType::Guard, FIN_TIMEOUT_SECS),
        (names.client_of(f), SetType::Client, CLIENT_TIMEOUT_SECS),
        (names.unseen_of(f), SetType::Unseen, UNSEEN_TIMEOUT_SECS),
    ]
}

/// The `ipset create` command of a set, as printed.
pub fn create_command(name: &str, set_type: SetType, f: Family, timeout: u32) -> String {
    let mut command = format!(
        "ipset create {} {} family {} timeout {timeout}",
        shell_word(name),
        set_type.name(),
        f.ipset_family()
    );
    if let Some(size) = set_type.hashsize() {
        command.push_str(&format!(" hashsize {size}"));
    }
    if set_type.counts() {
        command.push_str(" counters");
    }
    command
}

/// Creates the sets that do not exist yet (before the rules naming them).
pub fn apply_sets(names: &SetNames, families: &[Family]) -> Result<Vec<String>, RulesError> {
    let mut ipset = open_ipset()?;
    let mut log = Vec::new();
    for &f in families {
        for (name, set_type, timeout) in family_sets(names, f) {
            let kind = (f == Family::V6, set_type);
            let created = ensure_set_of(&mut ipset, name, kind, timeout).map_err(|source| {
                RulesError::Set {
                    name: name.to_string(),
                    source,
                }
            })?;
            log.push(if created {
                create_command(name, set_type, f, timeout)
            } else {
                format!("# already there: ipset {}", shell_word(name))
            });
        }
    }
    Ok(log)
}

/// Destroys the sets (after the rules naming them are gone). A set still
/// in use by another rule is kept, with a note.
pub fn delete_sets(names: &SetNames, families: &[Family]) -> Result<Vec<String>, RulesError> {
    let mut ipset = open_ipset()?;
    let mut log = Vec::new();
    for &f in families {
        for (name, _, _) in family_sets(names, f) {
            match destroy_set(&mut ipset, name) {
                Ok(()) => log.push(format!("ipset destroy {}", shell_word(name))),
                Err(e) => log.push(format!("# ipset {name} kept: {e}")),
            }
        }
    }
    Ok(log)
}

/// Destroy, retried briefly: a rule just deleted can hold the set a moment.
fn destroy_set(ipset: &mut Ipset, name: &str) -> Result<(), Error> {
    let mut last = Ok(());
    for _ in 0..20 {
        last = ipset.destroy(name);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::error::{BadRequest, Op, Subsystem, Target};

    #[test]
    fn ipset_errors_say_root_or_modprobe() {
        let denied = ipset_unusable(Error::Kernel {
            op: Op::IpsetProtocol,
            target: Target::None,
            errno: libc::EPERM,
        });
        assert!(matches!(
            &denied,
            RulesError::NeedsRoot(Error::Kernel {
                errno: libc::EPERM,
                ..
            })
        ));
        let missing = ipset_unusable(Error::Socket {
            subsystem: Subsystem::Ipset,
            source: std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT),
        });
        assert!(matches!(
            &missing,
            RulesError::IpsetUnusable(Error::Socket { .. })
        ));
        // The words the README and the scripts point users to.
        assert!(denied.to_string().contains("run it as root"), "{denied}");
        assert!(!denied.to_string().contains("modprobe"), "{denied}");
        assert!(missing.to_string().contains("modprobe"), "{missing}");
    }

    #[test]
    fn set_names() {
        let s = SetNames::new("ftpct").expect("names");
        assert_eq!(s.for_ip("2001:db8::1".parse().expect("ip")), "ftpct6");
        assert_eq!(s.for_ip("192.0.2.1".parse().expect("ip")), "ftpct");
        assert_eq!(s.fin_of(Family::V6), ("ftpct-fin6", "ftpct-finx6"));
        // The longest suffix is "-guard6": 24 bytes of base at most.
        assert!(SetNames::new(&"x".repeat(24)).is_ok());
        assert!(
            matches!(
                SetNames::new(&"x".repeat(25)),
                Err(Error::BadRequest(BadRequest::SetName(n))) if n.len() > 31
            ),
            "no room for the suffixes"
        );
    }
}
