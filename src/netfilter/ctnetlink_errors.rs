//! What ctnetlink's refusals mean, said for people: beside the codec
//! (ctnetlink.rs) and below the error type (error.rs) that shows them.

use std::io;

use crate::netfilter::request::{Op, Target};

/// Why the kernel refused `op` on `target`, said for people.
pub fn explain(op: Op, errno: i32, target: &Target) -> String {
    match errno {
        libc::EPERM => "permission denied (run as root or with CAP_NET_ADMIN)".to_string(),
        libc::ENOENT if op == Op::CtCreate => format!(
            "the master (control connection) of {target} is not in the conntrack table"
        ),
        libc::ENOENT => format!("no conntrack entry for {target}"),
        libc::EEXIST => format!("a conntrack entry for {target} already exists"),
        libc::EINVAL => format!("the kernel rejected the request for {target} as invalid"),
        libc::EOPNOTSUPP => format!(
            "operation not supported for {target} (NAT support missing, or NAT/master given on an existing entry)"
        ),
        libc::ENOMEM => "the kernel is out of memory or the conntrack table is full".into(),
        e => format!(
            "{} {target} failed: {}",
            op.verb(),
            io::Error::from_raw_os_error(e)
        ),
    }
}
