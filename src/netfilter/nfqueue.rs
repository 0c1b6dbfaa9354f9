//! NFQUEUE: binding a queue the way a gateway needs it (fail-open, a long
//! queue, a large socket buffer), and what nfq reports about a packet.

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use ftpct_engine::Origin;
use nfq::Queue;
use tracing::{debug, warn};

use crate::netfilter::netlink::sockopt;

/// Kernel queue length per queue (packets waiting for a verdict).
const QUEUE_MAX_LEN: u32 = 4096;
/// Receive buffer asked for each queue's netlink socket (the kernel doubles
/// it). The default, net.core.rmem_default (208 KiB), holds only ~200
/// queued packets: a longer burst overflowed the socket, and with fail-open
/// those packets passed uninspected (measured by the gateway benchmarks: a third
/// of a streaming control connection; a connection with a rewrite then
/// loses its sequence fix-up and its stream is corrupted). This holds
/// QUEUE_MAX_LEN full-size packets; memory is only taken while they wait.
const QUEUE_RCVBUF: usize = 16 << 20;
/// Netfilter hook numbers (enum nf_inet_hooks) that nfq reports.
const NF_INET_LOCAL_OUT: u8 = 3;
/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// Why a queue could not be opened.
#[derive(Debug)]
pub enum QueueError {
    /// No NFQUEUE socket at all.
    Open(io::Error),
    /// Another socket owns the queue (EPERM, EBUSY).
    Busy {
        num: u16,
    },
    /// The kernel has no NFQUEUE support.
    Unsupported {
        num: u16,
        source: io::Error,
    },
    Bind {
        num: u16,
        source: io::Error,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Open(e) => write!(f, "cannot open an NFQUEUE socket: {e}"),
            QueueError::Busy { num } => write!(
                f,
                "NFQUEUE queue {num} is already bound by another program (another ftpct?): stop it or use another --queue"
            ),
            QueueError::Unsupported { source, .. } => write!(
                f,
                "the kernel has no NFQUEUE support ({source}): load it with `modprobe nfnetlink_queue` (CONFIG_NETFILTER_NETLINK_QUEUE)"
            ),
            QueueError::Bind { num, source } => write!(f, "cannot bind NFQUEUE queue {num}: {source}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// Where a queued packet came from, by the hook nfq says it was queued
/// at: raw OUTPUT is this host's, PREROUTING a network's.
pub fn origin_of(nf_hook: u8) -> Origin {
    if nf_hook == NF_INET_LOCAL_OUT {
        Origin::ThisHost
    } else {
        Origin::Network
    }
}

/// True unless the kernel says we lack CAP_NET_ADMIN (asked with
/// capget(2): no /proc needed, so it holds under ProtectProc= or hidepid).
pub fn has_net_admin() -> bool {
    effective_caps().is_none_or(|c| c & (1 << CAP_NET_ADMIN) != 0)
}

/// The effective capability set of this thread (None: capget failed).
fn effective_caps() -> Option<u64> {
    /// _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads the header and, for version 3, writes exactly
    // two Data structs (repr(C), the kernel's layout) into `data`, which
    // outlives the call; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    (rc == 0).then(|| u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

fn bind_error(num: u16, e: io::Error) -> QueueError {
    match e.raw_os_error() {
        // With CAP_NET_ADMIN checked, EPERM means another socket owns it.
        Some(libc::EPERM) | Some(libc::EBUSY) => QueueError::Busy { num },
        Some(libc::EINVAL)
        | Some(libc::EOPNOTSUPP)
        | Some(libc::ENOENT)
        | Some(libc::EPROTONOSUPPORT) => QueueError::Unsupported { num, source: e },
        _ => QueueError::Bind { num, source: e },
    }
}

/// Binds queue `num`: fail-open, long, with a large socket buffer.
pub fn open_queue(num: u16) -> Result<Queue, QueueError> {
    let next_fd = lowest_free_fd();
    let mut q = Queue::open().map_err(QueueError::Open)?;
    // The queue's socket took the lowest free descriptor (no other thread
    // opens files while the queues are bound); checked below.
    let own_fd = next_fd.filter(|&fd| is_netfilter_socket(fd));
    q.bind(num).map_err(|e| bind_error(num, e))?;
    // A full queue lets packets through rather than dropping them.
    if let Err(e) = q.set_fail_open(num, true) {
        warn!(queue = num, "fail-open not set: {e}");
    }
    if let Err(e) = q.set_queue_max_len(num, QUEUE_MAX_LEN) {
        warn!(queue = num, "queue length not set: {e}");
    }
    match grow_rcvbuf(num, own_fd, QUEUE_RCVBUF) {
        Ok(bytes) => debug!(queue = num, "socket receive buffer: {bytes} bytes"),
        Err(e) => warn!(
            queue = num,
            "socket receive buffer not enlarged to {} MiB ({e}; SO_RCVBUFFORCE needs CAP_NET_ADMIN): bursts over ~200 packets pass uninspected",
            QUEUE_RCVBUF >> 20
        ),
    }
    Ok(q)
}

// The queue's netlink socket, which nfq 0.2.5 does not expose, is found by
// its netlink port id: the one the kernel lists as the queue's peer.

/// The port id bound to queue `num` in this network namespace.
fn peer_portid(num: u16) -> io::Result<u32> {
    let table = std::fs::read_to_string("/proc/self/net/netfilter/nfnetlink_queue")?;
    table
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()?.parse::<u16>().ok()? == num).then(|| f.next()?.parse().ok())?
        })
        .ok_or_else(|| io::Error::other(format!("queue {num} not in nfnetlink_queue")))
}

/// The port id of `fd` if it is a netlink socket.
fn netlink_portid(fd: RawFd) -> Option<u32> {
    // SAFETY: a zeroed sockaddr_nl is valid; getsockname writes at most
    // `len` bytes into it and fails harmlessly on a descriptor that is
    // not a socket.
    unsafe {
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        let rc = libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len);
        (rc == 0 && i32::from(sa.nl_family) == libc::AF_NETLINK).then_some(sa.nl_pid)
    }
}

/// The descriptor number the next socket or file will get.
fn lowest_free_fd() -> Option<RawFd> {
    // SAFETY: socket() takes no pointer; the descriptor it returns is
    // ours and closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        libc::close(fd);
        Some(fd)
    }
}

/// True if `fd` is a NETLINK_NETFILTER socket.
fn is_netfilter_socket(fd: RawFd) -> bool {
    netlink_portid(fd).is_some()
        && sockopt(fd, libc::SO_PROTOCOL, None).ok() == Some(libc::NETLINK_NETFILTER)
}

/// Queue `num`'s socket: `own` when known, else found through /proc.
fn queue_fd(num: u16, own: Option<RawFd>) -> io::Result<RawFd> {
    if let Some(fd) = own {
        return Ok(fd);
    }
    let portid = peer_portid(num)?;
    std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .find(|&fd| netlink_portid(fd) == Some(portid))
        .ok_or_else(|| io::Error::other("its socket was not found"))
}

/// Sets the receive buffer of queue `num`'s socket (SO_RCVBUFFORCE:
/// above net.core.rmem_max, with CAP_NET_ADMIN); returns the size now in
/// force.
fn grow_rcvbuf(num: u16, own: Option<RawFd>, bytes: usize) -> io::Result<usize> {
    let fd = queue_fd(num, own)?;
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    sockopt(fd, libc::SO_RCVBUFFORCE, Some(want))?;
    let now = sockopt(fd, libc::SO_RCVBUF, None)?;
    Ok(usize::try_from(now).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin_of(0), Origin::Network);
        assert_eq!(origin_of(NF_INET_LOCAL_OUT), Origin::ThisHost);
    }

    #[test]
    fn bind_errors_say_what_to_do() {
        let busy = bind_error(3, io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(busy, QueueError::Busy { num: 3 }));
        assert!(busy.to_string().contains("already bound"), "{busy}");
        let missing = bind_error(3, io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(missing, QueueError::Unsupported { num: 3, .. }));
        assert!(
            missing.to_string().contains("modprobe nfnetlink_queue"),
            "{missing}"
        );
    }
}
