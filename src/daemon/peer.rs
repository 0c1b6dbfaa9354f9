//! Who may read the status socket: root, or the user the daemon runs as.
//! An abstract socket has no file mode to keep others out, so each
//! client's credentials are asked of the kernel (SO_PEERCRED), which took
//! them when it connected and cannot be lied to.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// A client the daemon does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub peer_uid: u32,
    pub own_uid: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uid {} may not read ftpct's status: root only (or ftpct's own uid {})",
            self.peer_uid, self.own_uid
        )
    }
}

/// Ok if the client at the other end of `stream` may read the status.
pub fn admit(stream: &UnixStream) -> io::Result<Result<(), Refused>> {
    let peer_uid = peer_uid(stream)?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let own_uid = unsafe { libc::geteuid() };
    Ok(decide(peer_uid, own_uid))
}

fn decide(peer_uid: u32, own_uid: u32) -> Result<(), Refused> {
    if peer_uid == 0 || peer_uid == own_uid {
        Ok(())
    } else {
        Err(Refused { peer_uid, own_uid })
    }
}

/// The uid of the process that connected `stream`.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is the stream's, alive for the call; the kernel
    // writes at most `len` bytes into `cred`, a ucred on our stack.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemons_own_user_only() {
        assert_eq!(decide(0, 61000), Ok(()));
        assert_eq!(decide(61000, 61000), Ok(()));
        assert_eq!(
            decide(65534, 0),
            Err(Refused {
                peer_uid: 65534,
                own_uid: 0
            })
        );
    }

    #[test]
    fn a_socket_pair_names_this_process() {
        let (a, _b) = UnixStream::pair().expect("pair");
        // SAFETY: as above.
        let me = unsafe { libc::geteuid() };
        assert_eq!(peer_uid(&a).expect("SO_PEERCRED"), me);
        assert_eq!(admit(&a).expect("SO_PEERCRED"), Ok(()));
    }
}
