//! Low-level netlink for the netfilter subsystems (ctnetlink, ipset):
//! building requests, walking replies and a blocking socket with a receive
//! timeout. Message building and parsing are pure functions over bytes so
//! they can be tested without root; only [`NlSocket`] touches the kernel.
//!
//! Netlink headers and attribute headers are in host byte order; the values
//! inside netfilter attributes are big-endian (network order).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::netfilter::error::{BadRequest, Error, Malformed, Op, Subsystem, Target};
use crate::netfilter::op_errors::OpErrors;
use crate::netfilter::op_requests::OpRequests;
use crate::netfilter::unwaited::{refused, Sent, Unwaited};

pub const NETLINK_NETFILTER: i32 = 12;

pub const NLMSG_HDRLEN: usize = 16;
pub const NFGENMSG_LEN: usize = 4;
pub const NLA_HDRLEN: usize = 4;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
/// NLM_F_ROOT | NLM_F_MATCH: every entry.
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

pub const NFNETLINK_V0: u8 = 0;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Questions sent in one datagram by [`NlSocket::ask_all`], at most: their
/// answers, each a datagram of its own, must fit the receive buffer.
pub const MAX_ASKED_TOGETHER: usize = 16;

/// How long a request waits for the kernel's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Netlink messages are padded to 4 bytes, and so are attributes.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Netfilter message type: subsystem in the high byte, command in the low.
pub fn nfnl_msg_type(subsys: u8, cmd: u8) -> u16 {
    (u16::from(subsys) << 8) | u16::from(cmd)
}

/// Builds one nfnetlink request: nlmsghdr, nfgenmsg, then attributes.
/// The sequence number is left at 0; [`NlSocket`] fills it in.
#[derive(Debug)]
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    pub fn new(msg_type: u16, flags: u16, family: u8) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel fills it
        buf.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]); // nfgenmsg, res_id 0
        MsgBuilder { buf }
    }

    pub fn put(&mut self, attr_type: u16, data: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + data.len();
        let len16 = u16::try_from(len).expect("netlink attribute larger than 64 KiB");
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn put_u8(&mut self, attr_type: u16, v: u8) -> &mut Self {
        self.put(attr_type, &[v])
    }

    pub fn put_be16(&mut self, attr_type: u16, v: u16) -> &mut Self {
        self.put(attr_type, &v.to_be_bytes())
    }

    pub fn put_be32(&mut self, attr_type: u16, v: u32) -> &mut Self {
        self.put(attr_type, &v.to_be_bytes())
    }

    /// A NUL-terminated string, as the kernel's NLA_NUL_STRING expects.
    pub fn put_strz(&mut self, attr_type: u16, s: &str) -> &mut Self {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.put(attr_type, &data)
    }

    /// Opens a nested attribute (flagged NLA_F_NESTED: strict kernel
    /// parsers such as NAT's and ipset's reject nests without it).
    pub fn nest_start(&mut self, attr_type: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(attr_type | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    pub fn nest_end(&mut self, nest: Nest) -> &mut Self {
        let len = self.buf.len() - nest.0;
        let len16 = u16::try_from(len).expect("nested netlink attribute larger than 64 KiB");
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len16.to_ne_bytes());
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).expect("netlink message larger than 4 GiB");
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        let padded = align4(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// Position of an open nested attribute; close it with [`MsgBuilder::nest_end`].
#[must_use]
#[derive(Debug)]
pub struct Nest(usize);

/// One netlink attribute: its type with the flag bits removed, and its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn u8(&self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    pub fn be16(&self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn be32(&self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// The value as a fixed-size array; the attribute must have exactly N bytes.
    pub fn array<const N: usize>(&self) -> Result<[u8; N], Malformed> {
        self.data.try_into().map_err(|_| Malformed::ValueSize {
            kind: self.kind,
            len: self.data.len(),
            expected: N,
        })
    }

    /// The attributes nested inside this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.data)
    }
}

/// Iterator over a run of attributes. Yields an error (then stops) when a
/// length field does not fit the buffer.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }

    /// The first attribute of the given type, if any.
    pub fn find(&self, kind: u16) -> Result<Option<Attr<'a>>, Malformed> {
        for attr in self.clone() {
            let attr = attr?;
            if attr.kind == kind {
                return Ok(Some(attr));
            }
        }
        Ok(None)
    }

    /// Like [`Attrs::find`], but a missing attribute is an error.
    pub fn require(&self, kind: u16, what: &'static str) -> Result<Attr<'a>, Malformed> {
        self.find(kind)?.ok_or(Malformed::Missing { what, kind })
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLA_HDRLEN {
            return None; // trailing padding
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(Malformed::AttrLength { kind, len }));
        }
        let data = &self.rest[NLA_HDRLEN..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some(Ok(Attr { kind, data }))
    }
}

/// One message of a reply, payload starting after the nlmsghdr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    /// The port id it names: in an event, the socket whose request
    /// caused it (0: the kernel's own doing).
    pub pid: u32,
    pub payload: Vec<u8>,
}

impl Message {
    /// The attributes of a netfilter message (after the nfgenmsg header).
    pub fn nf_attrs(&self) -> Result<Attrs<'_>, Malformed> {
        self.payload
            .get(NFGENMSG_LEN..)
            .map(Attrs::new)
            .ok_or(Malformed::NoNfgenmsg)
    }

    /// For NLMSG_ERROR: the (positive) errno, 0 for an acknowledgement.
    pub fn error_code(&self) -> Result<i32, Malformed> {
        let raw: [u8; 4] = self
            .payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(Malformed::NoErrorCode)?;
        Ok(i32::from_ne_bytes(raw).saturating_neg())
    }
}

/// Splits one received datagram into its messages.
pub fn parse_messages(mut buf: &[u8]) -> Result<Vec<Message>, Malformed> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(Malformed::MessageLength {
                len,
                received: buf.len(),
            });
        }
        out.push(Message {
            msg_type: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            pid: u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]),
            payload: buf[NLMSG_HDRLEN..len].to_vec(),
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// The attributes of the first message of an answer (a query's data).
pub fn first_attrs(answer: &[Message]) -> Result<Attrs<'_>, Malformed> {
    answer.first().ok_or(Malformed::NoData)?.nf_attrs()
}

/// Where a socket counts its requests and their failures (the daemon's
/// metrics read both tables).
#[derive(Debug, Clone, Default)]
pub struct NlCounters {
    pub errors: Arc<OpErrors>,
    pub requests: Arc<OpRequests>,
}

/// Gives `msg` its sequence number; without `ack`, the kernel answers it
/// only if it refuses it (no NLM_F_ACK).
pub fn stamp(msg: &mut [u8], seq: u32, ack: bool) -> Result<(), BadRequest> {
    if msg.len() < NLMSG_HDRLEN {
        return Err(BadRequest::NoHeader);
    }
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    let flags = u16::from_ne_bytes([msg[6], msg[7]]);
    let flags = if ack {
        flags | NLM_F_ACK
    } else {
        flags & !NLM_F_ACK
    };
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    Ok(())
}

/// A blocking NETLINK_NETFILTER socket. A request is either waited for
/// ([`NlSocket::transact`]: its answer comes back) or not
/// ([`NlSocket::tell`]: a refusal is read later, see [`crate::netfilter::unwaited`]);
/// while held ([`NlSocket::hold`]), requests not waited for go out
/// together, in the datagram of the next request or at [`NlSocket::send_held`].
#[derive(Debug)]
pub struct NlSocket {
    sock: Socket,
    seq: u32,
    timeout: Duration,
    buf: Vec<u8>,
    subsystem: Subsystem,
    /// Where requests and failed requests are counted, if anywhere.
    counters: Option<NlCounters>,
    unwaited: Unwaited,
    /// Requests not waited for, not sent yet (whole messages, in order):
    /// the last `held_count` of `unwaited`.
    held: Vec<u8>,
    held_count: usize,
    holding: bool,
    /// Datagrams sent so far (each may carry several requests).
    datagrams: u64,
    /// Buffers of [`NlSocket::ask_all`]'s receives (made at its first use).
    several: Vec<u8>,
}

impl NlSocket {
    /// A socket for `subsystem`, which its errors name.
    pub fn open(subsystem: Subsystem) -> Result<Self, Error> {
        let failed = |source| Error::Socket { subsystem, source };
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_NETFILTER)),
        )
        .map_err(failed)?;
        sock.set_read_timeout(Some(DEFAULT_TIMEOUT))
            .map_err(failed)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(NlSocket {
            sock,
            seq: seed,
            timeout: DEFAULT_TIMEOUT,
            buf: vec![0; 64 * 1024],
            subsystem,
            counters: None,
            unwaited: Unwaited::default(),
            held: Vec::new(),
            held_count: 0,
            holding: false,
            datagrams: 0,
            several: Vec::new(),
        })
    }

    /// Counts this socket's requests and failed requests in `counters`
    /// from now on.
    pub fn count_in(&mut self, counters: NlCounters) {
        self.counters = Some(counters);
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.sock
            .set_read_timeout(Some(timeout))
            .map_err(|source| Error::Socket {
                subsystem: self.subsystem,
                source,
            })?;
        self.timeout = timeout;
        Ok(())
    }

    /// Sends `msg` (from [`MsgBuilder::finish`]) as `op` and returns the
    /// data messages that answer it, up to the acknowledgement. Replies to
    /// earlier, timed-out requests are skipped; refusals of requests not
    /// waited for are counted and logged on the way.
    /// A refusal is [`Error::Kernel`] without a target: the caller knows it
    /// (see [`Error::about`]).
    /// Failures are counted where [`NlSocket::count_in`] said.
    pub fn transact(&mut self, op: Op, msg: Vec<u8>) -> Result<Vec<Message>, Error> {
        self.waited(op, msg, Ends::Ack)
    }

    /// Like [`NlSocket::transact`], for a question answered by one data
    /// message (a lookup, not a listing): sent without NLM_F_ACK, so that
    /// message (or a refusal) is the whole answer, read in one receive
    /// instead of two (the data, then the acknowledgement).
    pub fn ask(&mut self, op: Op, msg: Vec<u8>) -> Result<Vec<Message>, Error> {
        self.waited(op, msg, Ends::FirstMessage)
    }

    /// Like [`NlSocket::ask`] for each of `msgs`, all sent in one datagram
    /// ([`MAX_ASKED_TOGETHER`] at most per datagram) and their answers read
    /// several datagrams per receive: the answers in the order asked, each
    /// counted (and its failure) as one request.
    pub fn ask_all(&mut self, op: Op, msgs: Vec<Vec<u8>>) -> Vec<Result<Vec<Message>, Error>> {
        let mut answers = Vec::with_capacity(msgs.len());
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let chunk: Vec<Vec<u8>> = msgs.by_ref().take(MAX_ASKED_TOGETHER).collect();
            chunk.iter().for_each(|_| self.count_sent(op, true));
            let n = chunk.len();
            let got = self
                .exchange_all(op, chunk)
                .unwrap_or_else(|e| (0..n).map(|_| Err(each_asked(&e, op))).collect());
            for answer in &got {
                if let (Err(e), Some(c)) = (answer, &self.counters) {
                    c.errors.count(op, e);
                }
            }
            answers.extend(got);
        }
        answers
    }

    /// One datagram of questions (each answered by one message or a
    /// refusal) and their answers, by position.
    fn exchange_all(
        &mut self,
        op: Op,
        msgs: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Vec<Message>, Error>>, Error> {
        let mut batch = std::mem::take(&mut self.held);
        let first = self.seq.wrapping_add(1);
        for mut msg in msgs {
            let seq = self.next_seq();
            stamp(&mut msg, seq, false)?;
            batch.extend_from_slice(&msg);
        }
        let count = self.seq.wrapping_sub(first).wrapping_add(1) as usize;
        let sent = self.send(op, &batch);
        if let Err(e) = &sent {
            self.lose_held(e);
        }
        self.held_count = 0;
        sent?;
        let mut answers: Vec<Option<Result<Vec<Message>, Error>>> = Vec::new();
        answers.resize_with(count, || None);
        let mut left = count;
        while left > 0 {
            for m in self.recv_several(op)? {
                let at = m.seq.wrapping_sub(first) as usize;
                let Some(slot) = answers.get_mut(at).filter(|a| a.is_none()) else {
                    self.late_refusal(&m);
                    continue;
                };
                *slot = Some(match m.msg_type {
                    NLMSG_ERROR => match m.error_code().map_err(|w| w.at(op))? {
                        0 => Ok(Vec::new()),
                        errno => Err(Error::Kernel {
                            op,
                            target: Target::None,
                            errno,
                        }),
                    },
                    _ => Ok(vec![m]),
                });
                left -= 1;
            }
        }
        // Answered in order: every earlier request was too.
        self.unwaited.settled();
        Ok(answers.into_iter().flatten().collect())
    }

    /// What a failed receive means: None to try again (a signal came),
    /// else the timeout (nothing came in time) or the failure.
    fn receive_error(&self, op: Op, e: io::Error) -> Option<Error> {
        match e.kind() {
            io::ErrorKind::Interrupted => None,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Some(Error::Timeout {
                op,
                after: self.timeout,
            }),
            _ => Some(Error::Receive { op, source: e }),
        }
    }

    /// The messages of the next datagrams: waits for one (at most the
    /// socket's timeout), then takes what else is there, in one call.
    fn recv_several(&mut self, op: Op) -> Result<Vec<Message>, Error> {
        const SLOT: usize = 8 * 1024;
        if self.several.len() < SLOT * MAX_ASKED_TOGETHER {
            self.several = vec![0; SLOT * MAX_ASKED_TOGETHER];
        }
        let mut iov: Vec<libc::iovec> = self
            .several
            .chunks_mut(SLOT)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: a zeroed mmsghdr is valid (no name, no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let n = loop {
            // SAFETY: each header points at one iovec of `iov`, which points
            // into `self.several`; all outlive the call, and their count is given.
            let rc = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            match usize::try_from(rc) {
                Ok(n) => break n,
                Err(_) => match self.receive_error(op, io::Error::last_os_error()) {
                    None => continue,
                    Some(e) => return Err(e),
                },
            }
        };
        let mut out = Vec::new();
        for (h, slot) in hdrs.iter().zip(self.several.chunks(SLOT)).take(n) {
            let len = (h.msg_len as usize).min(slot.len());
            out.extend(parse_messages(&slot[..len]).map_err(|w| w.at(op))?);
        }
        Ok(out)
    }

    fn waited(&mut self, op: Op, msg: Vec<u8>, ends: Ends) -> Result<Vec<Message>, Error> {
        self.count_sent(op, true);
        let answer = self.exchange(op, msg, ends);
        if let (Err(e), Some(c)) = (&answer, &self.counters) {
            c.errors.count(op, e);
        }
        answer
    }

    /// Sends `msg` as `op` without waiting for its answer (held back while
    /// [`NlSocket::hold`] lasts). The kernel has carried it out when this
    /// returns (unless held); a refusal is read later, counted and logged
    /// with `target` and `note` (what the failure means).
    pub fn tell(
        &mut self,
        op: Op,
        mut msg: Vec<u8>,
        target: Target,
        note: &'static str,
    ) -> Result<(), Error> {
        if self.unwaited.is_full() {
            self.settle();
        }
        let seq = self.next_seq();
        stamp(&mut msg, seq, false)?;
        self.count_sent(op, false);
        self.unwaited.push(Sent {
            seq,
            op,
            target,
            note,
        });
        if self.holding {
            self.held.extend_from_slice(&msg);
            self.held_count += 1;
            return Ok(());
        }
        self.send(op, &msg).inspect_err(|e| {
            self.unwaited.take(seq);
            if let Some(c) = &self.counters {
                c.errors.count(op, e);
            }
        })
    }

    /// From now on, requests not waited for wait to go out together.
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Sends what is held, and holds no more.
    pub fn end_hold(&mut self) {
        self.holding = false;
        self.send_held();
    }

    /// Sends what is held, in one datagram (holding goes on).
    pub fn send_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.held);
        let op = self.held_op();
        if let Err(e) = self.send(op, &batch) {
            self.lose_held(&e);
        }
        self.held_count = 0;
    }

    /// Reads, without blocking, the refusals of the requests not waited
    /// for (held ones are sent first): they are counted and logged.
    pub fn settle(&mut self) {
        self.send_held();
        while !self.unwaited.is_empty() {
            match self.recv_now() {
                Ok(msgs) => msgs.iter().for_each(|m| self.late_refusal(m)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.unwaited.settled(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let op = self.held_op();
                    let e = Error::Receive { op, source };
                    self.unwaited
                        .lost(&e, self.counters.as_ref().map(|c| &*c.errors));
                }
            }
        }
    }

    /// Requests not waited for whose refusals may still be unread.
    pub fn unwaited(&self) -> usize {
        self.unwaited.len()
    }

    /// The socket's netlink port id (the kernel gives it at the first
    /// send), as events caused by its requests name it.
    pub fn port_id(&self) -> Result<u32, Error> {
        // SAFETY: a zeroed sockaddr_nl is valid; getsockname writes at
        // most `len` bytes into it; the descriptor belongs to this socket.
        let (rc, sa) = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let rc = libc::getsockname(
                self.sock.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_nl).cast(),
                &mut len,
            );
            (rc, sa)
        };
        if rc != 0 {
            return Err(Error::Socket {
                subsystem: self.subsystem,
                source: io::Error::last_os_error(),
            });
        }
        Ok(sa.nl_pid)
    }

    /// Datagrams sent so far.
    pub fn datagrams(&self) -> u64 {
        self.datagrams
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn count_sent(&self, op: Op, waited: bool) {
        if let Some(c) = &self.counters {
            c.requests.sent(op, waited);
        }
    }

    /// A refusal of a request not waited for; other messages are skipped.
    fn late_refusal(&mut self, m: &Message) {
        if m.msg_type != NLMSG_ERROR {
            return;
        }
        let Ok(errno @ 1..) = m.error_code() else {
            return;
        };
        if let Some(sent) = self.unwaited.take(m.seq) {
            refused(sent, errno, self.counters.as_ref().map(|c| &*c.errors));
        }
    }

    /// The held requests could not be sent: each counts as failed.
    fn lose_held(&mut self, e: &Error) {
        let errors = self.counters.as_ref().map(|c| &*c.errors);
        self.unwaited.lost_last(self.held_count, e, errors);
        self.held_count = 0;
    }

    /// The operation a failure of the held datagram is named after.
    fn held_op(&self) -> Op {
        self.unwaited.last_op().unwrap_or(Op::CtEvents)
    }

    fn exchange(&mut self, op: Op, mut msg: Vec<u8>, ends: Ends) -> Result<Vec<Message>, Error> {
        let seq = self.next_seq();
        stamp(&mut msg, seq, ends == Ends::Ack)?;
        if !self.held.is_empty() {
            // The held requests first, in the same datagram.
            let mut batch = std::mem::take(&mut self.held);
            batch.extend_from_slice(&msg);
            msg = batch;
        }
        let sent = self.send(op, &msg);
        if let Err(e) = &sent {
            self.lose_held(e);
        }
        self.held_count = 0;
        sent?;
        let mut answer = Vec::new();
        loop {
            for m in self.recv(op)? {
                if m.seq != seq {
                    self.late_refusal(&m);
                    continue;
                }
                let done = match m.msg_type {
                    NLMSG_ERROR => match m.error_code().map_err(|w| w.at(op))? {
                        0 => Ok(std::mem::take(&mut answer)),
                        errno => Err(Error::Kernel {
                            op,
                            target: Target::None,
                            errno,
                        }),
                    },
                    NLMSG_DONE => Ok(std::mem::take(&mut answer)),
                    _ if ends == Ends::FirstMessage => Ok(vec![m]),
                    _ => {
                        answer.push(m);
                        continue;
                    }
                };
                // Answered in order: every earlier request was too.
                self.unwaited.settled();
                return done;
            }
        }
    }

    fn send(&mut self, op: Op, msg: &[u8]) -> Result<(), Error> {
        self.datagrams += 1;
        let sent = self
            .sock
            .send(msg)
            .map_err(|source| Error::Send { op, source })?;
        if sent != msg.len() {
            return Err(Error::ShortSend {
                op,
                sent,
                len: msg.len(),
            });
        }
        Ok(())
    }

    /// Joins multicast group `group` (NFNLGRP_*): the kernel's events of
    /// that group then arrive on this socket, read with [`Self::events`].
    pub fn join_group(&mut self, group: u32) -> Result<(), Error> {
        const SOL_NETLINK: libc::c_int = 270;
        const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
        let failed = |source| Error::Socket {
            subsystem: self.subsystem,
            source,
        };
        // SAFETY: a zeroed sockaddr_nl is valid (pid 0: the kernel picks the
        // port id); bind reads exactly its size from it.
        let rc = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::bind(
                self.sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        // SAFETY: the option value is a u32 that outlives the call, and its
        // size is given; the descriptor belongs to this socket.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        // A burst of events must not overflow it: 16 MiB (a busy gateway's
        // table turns over tens of thousands of entries a second), above
        // net.core.rmem_max with CAP_NET_ADMIN, else what rmem_max allows.
        let fd = self.sock.as_raw_fd();
        if sockopt(fd, libc::SO_RCVBUFFORCE, Some(EVENT_BUFFER)).is_err() {
            self.sock.set_recv_buffer_size(1 << 20).map_err(failed)?;
        }
        Ok(())
    }

    /// Attaches a classic BPF `program` (SO_ATTACH_FILTER): the kernel
    /// queues to this socket only the messages it keeps.
    pub fn attach_filter(&mut self, program: &[libc::sock_filter]) -> Result<(), Error> {
        let failed = |source| Error::Socket {
            subsystem: self.subsystem,
            source,
        };
        let len = u16::try_from(program.len())
            .map_err(|_| failed(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `program`, which outlives the call (the
        // kernel copies it); its size is given; the descriptor is ours.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The next messages the kernel sent on its own (events), waiting at
    /// most the socket's timeout: an empty list when none came.
    pub fn events(&mut self, op: Op) -> Result<Vec<Message>, Error> {
        match self.recv(op) {
            Err(Error::Timeout { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    fn recv(&mut self, op: Op) -> Result<Vec<Message>, Error> {
        loop {
            match (&self.sock).read(&mut self.buf) {
                Ok(n) => return parse_messages(&self.buf[..n]).map_err(|w| w.at(op)),
                Err(e) => match self.receive_error(op, e) {
                    None => continue,
                    Some(e) => return Err(e),
                },
            }
        }
    }
}

impl NlSocket {
    /// Reads what is waiting (at most `max` datagrams), without blocking:
    /// how many messages it held. An overflow (ENOBUFS: messages were
    /// lost) is an error.
    pub fn drain(&mut self, max: usize) -> io::Result<usize> {
        let mut messages = 0;
        for _ in 0..max {
            match self.recv_now() {
                Ok(got) => messages += got.len().max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(messages)
    }

    /// One datagram if one is there, without waiting.
    fn recv_now(&mut self) -> io::Result<Vec<Message>> {
        // SAFETY: the buffer is this socket's own, valid for its length,
        // and the descriptor belongs to this socket.
        let n = unsafe {
            libc::recv(
                self.sock.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        parse_messages(&self.buf[..n])
            .map_err(|w| io::Error::new(io::ErrorKind::InvalidData, w.to_string()))
    }
}

/// The failure of a datagram of questions, as each question's.
fn each_asked(e: &Error, op: Op) -> Error {
    match e {
        Error::Timeout { after, .. } => Error::Timeout { op, after: *after },
        other => Error::Receive {
            op,
            source: io::Error::other(other.to_string()),
        },
    }
}

/// What ends the answer to a request waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// The acknowledgement (or NLMSG_DONE, or a refusal): NLM_F_ACK asked.
    Ack,
    /// Its first message: no NLM_F_ACK, a refusal comes instead of it.
    FirstMessage,
}

/// Receive buffer of an event socket, in bytes.
const EVENT_BUFFER: libc::c_int = 16 << 20;

/// Reads (`value` None) or sets a SOL_SOCKET option of `fd`.
pub(crate) fn sockopt(
    fd: RawFd,
    opt: libc::c_int,
    value: Option<libc::c_int>,
) -> io::Result<libc::c_int> {
    let mut v = value.unwrap_or(0);
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let p = (&mut v as *mut libc::c_int).cast();
    // SAFETY: `v` is a c_int that outlives the call, and `len` its size.
    let rc = unsafe {
        match value {
            Some(_) => libc::setsockopt(fd, libc::SOL_SOCKET, opt, p, len),
            None => libc::getsockopt(fd, libc::SOL_SOCKET, opt, p, &mut len),
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_writes_header_nfgenmsg_and_padded_attributes() {
        let mut b = MsgBuilder::new(nfnl_msg_type(1, 1), NLM_F_ACK, AF_INET);
        b.put_u8(7, 6);
        let msg = b.finish();
        assert_eq!(msg.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0101);
        assert_eq!(
            u16::from_ne_bytes([msg[6], msg[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(&msg[16..20], &[AF_INET, 0, 0, 0]);
        // nla_len 5 (header + 1 byte), type 7, value, 3 bytes padding
        assert_eq!(&msg[20..22], &5u16.to_ne_bytes());
        assert_eq!(&msg[22..24], &7u16.to_ne_bytes());
        assert_eq!(&msg[24..28], &[6, 0, 0, 0]);
    }

    #[test]
    fn nests_carry_the_nested_flag_and_their_length() {
        let mut b = MsgBuilder::new(0, 0, 0);
        let n = b.nest_start(1);
        b.put_be16(2, 0x1234);
        b.nest_end(n);
        let msg = b.finish();
        let attrs: Vec<_> = Attrs::new(&msg[20..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].kind, 1);
        assert_eq!(
            u16::from_ne_bytes([msg[22], msg[23]]),
            1 | NLA_F_NESTED,
            "raw type keeps NLA_F_NESTED"
        );
        let inner = attrs[0].nested().require(2, "inner").unwrap();
        assert_eq!(inner.be16().unwrap(), 0x1234);
    }

    #[test]
    fn strings_are_nul_terminated() {
        let mut b = MsgBuilder::new(0, 0, 0);
        b.put_strz(2, "abc");
        let msg = b.finish();
        let a = Attrs::new(&msg[20..]).require(2, "s").unwrap();
        assert_eq!(a.data, b"abc\0");
    }

    #[test]
    fn attribute_with_bad_length_is_an_error_not_a_panic() {
        let buf = [200u8, 0, 1, 0, 0, 0, 0, 0];
        let mut it = Attrs::new(&buf);
        assert_eq!(
            it.next(),
            Some(Err(Malformed::AttrLength { kind: 1, len: 200 }))
        );
        assert!(it.next().is_none());
        let tiny = [2u8, 0, 1, 0];
        assert_eq!(
            Attrs::new(&tiny).next(),
            Some(Err(Malformed::AttrLength { kind: 1, len: 2 }))
        );
    }

    #[test]
    fn wrong_size_values_are_errors() {
        let a = Attr {
            kind: 3,
            data: &[1, 2, 3],
        };
        let wrong = |expected| Malformed::ValueSize {
            kind: 3,
            len: 3,
            expected,
        };
        assert_eq!(a.be32(), Err(wrong(4)));
        assert_eq!(a.be16(), Err(wrong(2)));
    }

    #[test]
    fn parses_error_and_ack_messages() {
        let mut dgram = Vec::new();
        for (seq, err) in [(5u32, 0i32), (6, -17)] {
            dgram.extend_from_slice(&20u32.to_ne_bytes());
            dgram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            dgram.extend_from_slice(&0u16.to_ne_bytes());
            dgram.extend_from_slice(&seq.to_ne_bytes());
            dgram.extend_from_slice(&0u32.to_ne_bytes());
            dgram.extend_from_slice(&err.to_ne_bytes());
        }
        let msgs = parse_messages(&dgram).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].error_code().unwrap(), 0);
        assert_eq!(msgs[1].seq, 6);
        assert_eq!(msgs[1].error_code().unwrap(), 17);
    }

    #[test]
    fn a_stamp_sets_the_sequence_and_asks_for_an_ack_or_not() {
        let mut msg = MsgBuilder::new(nfnl_msg_type(6, 9), NLM_F_ACK, AF_INET).finish();
        stamp(&mut msg, 41, false).unwrap();
        let parsed = parse_messages(&msg).unwrap();
        assert_eq!(parsed[0].seq, 41);
        assert_eq!(
            parsed[0].flags, NLM_F_REQUEST,
            "no NLM_F_ACK: only a refusal answers"
        );
        stamp(&mut msg, 42, true).unwrap();
        let parsed = parse_messages(&msg).unwrap();
        assert_eq!(parsed[0].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(stamp(&mut [0; 8], 1, true), Err(BadRequest::NoHeader));
    }

    #[test]
    fn a_batch_is_its_messages_end_to_end_each_with_its_sequence() {
        let mut batch = Vec::new();
        for (seq, ack) in [(7u32, false), (8, false), (9, true)] {
            let mut b = MsgBuilder::new(nfnl_msg_type(6, 9), NLM_F_ACK, AF_INET6);
            b.put_u8(1, 3); // odd length: padding between messages
            let mut msg = b.finish();
            stamp(&mut msg, seq, ack).unwrap();
            batch.extend_from_slice(&msg);
        }
        let parsed = parse_messages(&batch).unwrap();
        let seqs: Vec<(u32, bool)> = parsed
            .iter()
            .map(|m| (m.seq, m.flags & NLM_F_ACK != 0))
            .collect();
        assert_eq!(seqs, [(7, false), (8, false), (9, true)]);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let mut dgram = 100u32.to_ne_bytes().to_vec();
        dgram.extend_from_slice(&[0; 12]);
        assert_eq!(
            parse_messages(&dgram),
            Err(Malformed::MessageLength {
                len: 100,
                received: 16
            })
        );
        assert_eq!(
            Attrs::new(&[]).require(7, "x"),
            Err(Malformed::Missing { what: "x", kind: 7 })
        );
        assert_eq!(first_attrs(&[]).map(|_| ()), Err(Malformed::NoData));
    }
}
