//! What the ipset protocol's refusals mean, and the numbers they are
//! about: the protocol versions ftpct speaks, the longest set name, the
//! set types it asks for, the kernel's own error codes. Below both the
//! codec (ipset.rs) and the error type (error.rs), which speak of them.

use std::io;

use crate::netfilter::request::{Op, Target};

/// The newest protocol this module speaks, and the oldest.
pub const PROTOCOL_MAX: u8 = 7;
pub const PROTOCOL_MIN: u8 = 6;

/// The longest set name, in bytes (IPSET_MAXNAMELEN less the NUL).
pub const MAX_NAME_LEN: usize = 31;

// enum ipset_errno (positive here), as `Error::Kernel` carries them
pub const IPSET_ERR_PROTOCOL: i32 = 4097;
pub const IPSET_ERR_FIND_TYPE: i32 = 4098;
pub const IPSET_ERR_MAX_SETS: i32 = 4099;
pub const IPSET_ERR_BUSY: i32 = 4100;
pub const IPSET_ERR_EXIST_SETNAME2: i32 = 4101;
pub const IPSET_ERR_TYPE_MISMATCH: i32 = 4102;
pub const IPSET_ERR_EXIST: i32 = 4103;
pub const IPSET_ERR_INVALID_FAMILY: i32 = 4106;
pub const IPSET_ERR_TIMEOUT: i32 = 4107;
pub const IPSET_ERR_REFERENCED: i32 = 4108;
pub const IPSET_ERR_HASH_FULL: i32 = 4352;

pub const SET_TYPE: &str = "hash:ip,port";
pub const GUARD_SET_TYPE: &str = "hash:ip,port,ip";

/// Why the kernel refused `op` on the set `target`, said for people
/// (errno standard or IPSET_ERR_*).
pub fn explain(op: Op, errno: i32, target: &Target) -> String {
    let (op, name) = (op.verb(), target);
    match errno {
        libc::EPERM => "permission denied (run as root or with CAP_NET_ADMIN)".to_string(),
        libc::ENOENT => format!("set {name} does not exist"),
        libc::EEXIST | IPSET_ERR_EXIST_SETNAME2 => {
            format!("set {name} already exists with a different type or options")
        }
        IPSET_ERR_PROTOCOL => format!(
            "the kernel rejected the {op} message for set {name} (protocol error: wrong address family for the set?)"
        ),
        IPSET_ERR_FIND_TYPE => format!(
            "set type {SET_TYPE} or {GUARD_SET_TYPE} is not available in the kernel"
        ),
        IPSET_ERR_MAX_SETS => "the kernel's maximal number of sets is reached".into(),
        IPSET_ERR_BUSY | IPSET_ERR_REFERENCED => format!("set {name} is in use by a rule"),
        IPSET_ERR_TYPE_MISMATCH => format!("set {name} has a different type"),
        IPSET_ERR_EXIST => format!("element already in set {name}, or not in it"),
        IPSET_ERR_INVALID_FAMILY => format!("invalid address family for set {name}"),
        IPSET_ERR_TIMEOUT => format!("set {name} was created without timeout support"),
        IPSET_ERR_HASH_FULL => format!("set {name} is full"),
        e if e < 4096 => format!(
            "{op} on set {name} failed: {}",
            io::Error::from_raw_os_error(e)
        ),
        e => format!("{op} on set {name} failed: ipset error {e}"),
    }
}
