//! A socket with one deadline for everything done on it: each read or
//! write may wait only for what is left of the time, so that a client
//! trickling a byte at a time cannot stretch a request beyond it (a
//! timeout per read would restart at every byte).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct DeadlineStream {
    stream: TcpStream,
    until: Instant,
}

impl DeadlineStream {
    pub fn new(stream: TcpStream, within: Duration) -> Self {
        DeadlineStream {
            stream,
            until: Instant::now() + within,
        }
    }

    /// The time left, or TimedOut once it is gone (a zero timeout would
    /// mean "wait forever" to the socket).
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's deadline passed",
            ))
        } else {
            Ok(left)
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_passed_deadline_times_out_without_waiting() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let mut s = DeadlineStream::new(server, Duration::ZERO);
        let e = s.read(&mut [0u8; 4]).expect_err("deadline passed");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = s.write(b"x").expect_err("deadline passed");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
