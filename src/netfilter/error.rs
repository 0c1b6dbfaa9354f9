//! What can go wrong between ftpct and the kernel's netlink interfaces
//! (ctnetlink, ipset): the kernel refuses a request (its operation, what it
//! was about and the errno are kept as they came), the socket fails, the
//! answer makes no sense, or ftpct refuses to send a request. Callers match
//! the variants; the messages are for people.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ftpct_engine::tuple::Tuple;

pub use crate::netfilter::request::{Op, Subsystem, Target};
use crate::netfilter::{ctnetlink_errors, ipset_errors};

/// What was wrong with an answer of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// An attribute whose length field does not fit the buffer.
    AttrLength { kind: u16, len: usize },
    /// An attribute whose value has the wrong size.
    ValueSize {
        kind: u16,
        len: usize,
        expected: usize,
    },
    /// A required attribute is missing.
    Missing { what: &'static str, kind: u16 },
    /// A message whose length field does not fit the datagram.
    MessageLength { len: usize, received: usize },
    /// A netfilter message shorter than its nfgenmsg header.
    NoNfgenmsg,
    /// An NLMSG_ERROR without its error code.
    NoErrorCode,
    /// A query answered with an acknowledgement alone.
    NoData,
    /// A tuple that must be TCP is another protocol's.
    NotTcp { what: &'static str },
    /// A set type whose oldest revision is above its newest.
    RevisionRange { min: u8, max: u8 },
}

impl Malformed {
    /// The error of an answer to `op`.
    pub fn at(self, op: Op) -> Error {
        Error::Malformed { op, what: self }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::AttrLength { kind, len } => {
                write!(f, "attribute {kind} has bad length {len}")
            }
            Malformed::ValueSize {
                kind,
                len,
                expected,
            } => write!(f, "attribute {kind} has {len} bytes, expected {expected}"),
            Malformed::Missing { what, kind } => write!(f, "missing {what} (attribute {kind})"),
            Malformed::MessageLength { len, received } => write!(
                f,
                "message length {len} does not fit the {received} bytes received"
            ),
            Malformed::NoNfgenmsg => {
                f.write_str("netfilter message shorter than its nfgenmsg header")
            }
            Malformed::NoErrorCode => f.write_str("NLMSG_ERROR without an error code"),
            Malformed::NoData => f.write_str("answered without data"),
            Malformed::NotTcp { what } => write!(f, "{what} is not a TCP tuple"),
            Malformed::RevisionRange { min, max } => {
                write!(f, "set type revision min {min} above max {max}")
            }
        }
    }
}

/// A request ftpct does not send, because the kernel could only refuse it
/// or misread it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// A tuple with an IPv4 end and an IPv6 end.
    MixedTuple(Tuple),
    /// A data connection and its master of different families (boxed as
    /// in [`Target::Related`]).
    MasterFamily { tuple: Tuple, master: Box<Tuple> },
    /// A NAT address of the other family than the connection's.
    NatFamily { addr: IpAddr, tuple: Tuple },
    /// A set name that is empty, too long, or holds a NUL.
    SetName(String),
    /// A message shorter than a netlink header.
    NoHeader,
    /// An entry to re-make with a first sequence adjustment already has
    /// one (set before ftpct started): the new entry would lose it.
    AlreadyAdjusted(Tuple),
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::MixedTuple(t) => write!(f, "ctnetlink: tuple {t} mixes IPv4 and IPv6"),
            BadRequest::MasterFamily { tuple, master } => write!(
                f,
                "ctnetlink: data connection {tuple} and master {master} are not the same family"
            ),
            BadRequest::NatFamily { addr, tuple } => write!(
                f,
                "ctnetlink: NAT address {addr} is not the family of {tuple}"
            ),
            BadRequest::SetName(name) => write!(
                f,
                "ipset: bad set name {name:?} (1 to {} bytes, no NUL)",
                ipset_errors::MAX_NAME_LEN
            ),
            BadRequest::NoHeader => f.write_str("netlink: request shorter than a header"),
            BadRequest::AlreadyAdjusted(t) => write!(
                f,
                "ctnetlink: entry {t} already has a sequence adjustment, which re-making it would lose"
            ),
        }
    }
}

/// Why a request to the kernel failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel refused the request with this (positive) errno; ipset's
    /// own codes start at 4097 (`ipset::IPSET_ERR_*`).
    Kernel { op: Op, target: Target, errno: i32 },
    /// The netlink socket could not be opened or set up.
    Socket {
        subsystem: Subsystem,
        source: io::Error,
    },
    /// Sending the request failed.
    Send { op: Op, source: io::Error },
    /// The kernel took only part of the request.
    ShortSend { op: Op, sent: usize, len: usize },
    /// Receiving the answer failed.
    Receive { op: Op, source: io::Error },
    /// No answer within the socket's timeout.
    Timeout { op: Op, after: Duration },
    /// The answer to `op` makes no sense.
    Malformed { op: Op, what: Malformed },
    /// Refused before sending.
    BadRequest(BadRequest),
    /// The kernel speaks only ipset protocols older than this program's.
    IpsetProtocol { kernel: u8 },
    /// A set of that name exists with another type or family.
    SetMismatch {
        name: String,
        type_name: String,
        family: u8,
    },
}

impl Error {
    /// The errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// A refusal for want of privilege (not root, no CAP_NET_ADMIN).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Error::Kernel { errno, .. } => *errno == libc::EPERM || *errno == libc::EACCES,
            Error::Socket { source, .. }
            | Error::Send { source, .. }
            | Error::Receive { source, .. } => source.kind() == io::ErrorKind::PermissionDenied,
            _ => false,
        }
    }

    /// A kernel refusal said about `target` (the socket does not know it).
    pub fn about(self, target: impl FnOnce() -> Target) -> Self {
        match self {
            Error::Kernel { op, errno, .. } => Error::Kernel {
                op,
                errno,
                target: target(),
            },
            other => other,
        }
    }
}

impl From<BadRequest> for Error {
    fn from(b: BadRequest) -> Self {
        Error::BadRequest(b)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel { op, target, errno } => match op.subsystem() {
                Subsystem::Ctnetlink => {
                    write!(
                        f,
                        "ctnetlink: {}",
                        ctnetlink_errors::explain(*op, *errno, target)
                    )
                }
                Subsystem::Ipset => {
                    write!(f, "ipset: {}", ipset_errors::explain(*op, *errno, target))
                }
                Subsystem::Nftables => {
                    let e = std::io::Error::from_raw_os_error(*errno);
                    write!(f, "nf_tables: {} {target}: {e}", op.verb())
                }
            },
            Error::Socket { subsystem, source } => write!(
                f,
                "{subsystem}: cannot open a NETLINK_NETFILTER socket: {source}"
            ),
            Error::Send { op, source } => {
                write!(f, "{}: netlink send failed: {source}", op.subsystem())
            }
            Error::ShortSend { op, sent, len } => {
                write!(f, "{}: short send ({sent} of {len} bytes)", op.subsystem())
            }
            Error::Receive { op, source } => {
                write!(f, "{}: netlink receive failed: {source}", op.subsystem())
            }
            Error::Timeout { op, after } => write!(
                f,
                "{}: no answer from the kernel within {after:?}",
                op.subsystem()
            ),
            Error::Malformed { op, what } => write!(
                f,
                "{} {}: malformed reply from the kernel: {what}",
                op.subsystem(),
                op.verb()
            ),
            Error::BadRequest(b) => write!(f, "{b}"),
            Error::IpsetProtocol { kernel } => write!(
                f,
                "ipset: kernel speaks protocol {kernel}, this program needs {} to {}",
                ipset_errors::PROTOCOL_MIN,
                ipset_errors::PROTOCOL_MAX
            ),
            Error::SetMismatch {
                name,
                type_name,
                family,
            } => write!(
                f,
                "ipset: set {name} already exists as {type_name}, family {family}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Socket { source, .. }
            | Error::Send { source, .. }
            | Error::Receive { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    #[test]
    fn a_refusal_keeps_its_facts_and_takes_its_target_later() {
        let e = Error::Kernel {
            op: Op::CtDelete,
            target: Target::None,
            errno: libc::ENOENT,
        };
        let tuple = t("192.0.2.1:1", "192.0.2.2:2");
        let e = e.about(|| Target::Conn(tuple));
        assert!(matches!(
            e,
            Error::Kernel { op: Op::CtDelete, target: Target::Conn(c), errno: libc::ENOENT } if c == tuple
        ));
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let timeout = Error::Timeout {
            op: Op::CtGet,
            after: Duration::from_secs(5),
        }
        .about(|| unreachable!("only refusals have a target"));
        assert!(matches!(timeout, Error::Timeout { op: Op::CtGet, .. }));
        assert_eq!(timeout.errno(), None);
    }

    #[test]
    fn permission_denied_by_the_kernel_or_the_socket() {
        let refused = |errno| Error::Kernel {
            op: Op::IpsetProtocol,
            target: Target::None,
            errno,
        };
        assert!(refused(libc::EPERM).is_permission_denied());
        assert!(!refused(libc::ENOENT).is_permission_denied());
        let socket = |errno| Error::Socket {
            subsystem: Subsystem::Ipset,
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(socket(libc::EACCES).is_permission_denied());
        assert!(!socket(libc::EPROTONOSUPPORT).is_permission_denied());
    }

    #[test]
    fn messages_name_the_subsystem_and_what_failed() {
        let e = Malformed::NoData.at(Op::IpsetType);
        assert_eq!(
            e.to_string(),
            "ipset type: malformed reply from the kernel: answered without data"
        );
        let e = Error::Timeout {
            op: Op::CtGet,
            after: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "ctnetlink: no answer from the kernel within 5s"
        );
        let e = Error::from(BadRequest::SetName(String::new()));
        assert_eq!(
            e.to_string(),
            "ipset: bad set name \"\" (1 to 31 bytes, no NUL)"
        );
    }
}
