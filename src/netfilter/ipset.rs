//! ipset over netlink (NFNL_SUBSYS_IPSET): the `hash:ip,port` sets with
//! timeouts that scope ftpct's raw-table queue rule to the data connections
//! it expects, and the `hash:ip,port,ip` guard sets that keep one direction
//! of a control connection queued (selective queueing). Protocol 6 or 7,
//! negotiated when the socket opens.
//!
//! Kernel rules this module follows (ip_set_core.c):
//! - every message carries IPSET_ATTR_PROTOCOL;
//! - ports, timeouts and addresses carry NLA_F_NET_BYTEORDER, nests
//!   NLA_F_NESTED, or the kernel answers IPSET_ERR_PROTOCOL;
//! - without NLM_F_EXCL the kernel sets IPSET_FLAG_EXIST itself: create of
//!   an identical set, add of a present element (timeout refreshed) and del
//!   of a missing element all succeed.
//!
//! The `encode_*` functions are pure; [`Ipset`] sends them.

use std::net::IpAddr;

use crate::netfilter::error::{BadRequest, Error, Malformed, Op, Subsystem, Target};
pub use crate::netfilter::ipset_errors::{
    GUARD_SET_TYPE, IPSET_ERR_BUSY, IPSET_ERR_EXIST, IPSET_ERR_HASH_FULL, IPSET_ERR_PROTOCOL,
    IPSET_ERR_REFERENCED, MAX_NAME_LEN, PROTOCOL_MAX, PROTOCOL_MIN, SET_TYPE,
};
use crate::netfilter::netlink::{
    self, first_attrs, nfnl_msg_type, Attr, Attrs, Message, MsgBuilder, NlCounters, NlSocket,
    NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL,
};

const NFNL_SUBSYS_IPSET: u8 = 6;

// enum ipset_cmd
const IPSET_CMD_PROTOCOL: u8 = 1;
const IPSET_CMD_CREATE: u8 = 2;
const IPSET_CMD_DESTROY: u8 = 3;
const IPSET_CMD_FLUSH: u8 = 4;
const IPSET_CMD_SWAP: u8 = 6;
const IPSET_CMD_LIST: u8 = 7;
const IPSET_CMD_ADD: u8 = 9;
const IPSET_CMD_DEL: u8 = 10;
const IPSET_CMD_TEST: u8 = 11;
const IPSET_CMD_HEADER: u8 = 12;
const IPSET_CMD_TYPE: u8 = 13;

// command-level attributes
const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_TYPENAME: u16 = 3;
/// The second set of a swap (the same number as the type name).
const IPSET_ATTR_SETNAME2: u16 = 3;
const IPSET_ATTR_REVISION: u16 = 4;
const IPSET_ATTR_FAMILY: u16 = 5;
const IPSET_ATTR_DATA: u16 = 7;
/// A listing's elements, each an IPSET_ATTR_DATA.
const IPSET_ATTR_ADT: u16 = 8;
const IPSET_ATTR_REVISION_MIN: u16 = 10;

// attributes inside IPSET_ATTR_DATA
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_PORT: u16 = 4;
const IPSET_ATTR_TIMEOUT: u16 = 6;
const IPSET_ATTR_PROTO: u16 = 7;
const IPSET_ATTR_CADT_FLAGS: u16 = 8;
/// IPSET_FLAG_WITH_COUNTERS: the set's elements count the packets and
/// bytes that match them.
const IPSET_FLAG_WITH_COUNTERS: u32 = 1 << 3;
const IPSET_ATTR_BYTES: u16 = 24;
const IPSET_ATTR_PACKETS: u16 = 25;
/// Create only.
const IPSET_ATTR_HASHSIZE: u16 = 18;
// ADT attributes after IPSET_ATTR_CADT_MAX (16): ETHER, NAME, NAMEREF, IP2
const IPSET_ATTR_IP2: u16 = 20;
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;

/// The kinds of set ftpct keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetType {
    /// Destinations of expected data connections (`hash:ip,port`).
    Dst,
    /// Directions of control connections queued whole (`hash:ip,port,ip`).
    Guard,
    /// The clients of control connections (`hash:ip,port`), filled by a
    /// rule: sized as a guard set, since a rule's add never grows it.
    Client,
    /// The bytes of control directions that the rules let pass unseen
    /// (`hash:ip,port,ip` with counters), filled by a rule as the client
    /// set is.
    Unseen,
}

/// Buckets of a guard set. The SET target's adds never grow a hash set
/// (only an add from user space does): once a bucket holds `bucketsize`
/// (12) entries, an add from a rule fails and its packet is not queued.
/// Sized for tens of thousands of directions followed at once, so no
/// bucket of a set that never grows fills by chance (the key is hashed
/// with a random seed: a client cannot aim at one bucket); 128 KiB of
/// bucket pointers.
pub const GUARD_HASHSIZE: u32 = 16384;

impl SetType {
    pub fn name(self) -> &'static str {
        match self {
            SetType::Dst | SetType::Client => SET_TYPE,
            SetType::Guard | SetType::Unseen => GUARD_SET_TYPE,
        }
    }

    /// True when its elements count what matches them.
    pub fn counts(self) -> bool {
        self == SetType::Unseen
    }

    /// True when its elements name a second address (the server's).
    pub fn has_addr2(self) -> bool {
        matches!(self, SetType::Guard | SetType::Unseen)
    }

    /// The hash size it is created with (None: the kernel's default).
    pub fn hashsize(self) -> Option<u32> {
        match self {
            SetType::Dst => None,
            SetType::Guard | SetType::Client | SetType::Unseen => Some(GUARD_HASHSIZE),
        }
    }
}

/// One element: an address and TCP port, and for a guard set the second
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub addr: IpAddr,
    pub port: u16,
    pub addr2: Option<IpAddr>,
}

impl Element {
    /// An element of a `hash:ip,port` set.
    pub fn dst(addr: IpAddr, port: u16) -> Self {
        Element {
            addr,
            port,
            addr2: None,
        }
    }
}
const IPPROTO_TCP: u8 = 6;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

fn family(ipv6: bool) -> u8 {
    if ipv6 {
        NFPROTO_IPV6
    } else {
        NFPROTO_IPV4
    }
}

/// Set names are at most 31 bytes (32 with the NUL) and hold no NUL.
pub fn check_name(name: &str) -> Result<(), BadRequest> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
        return Err(BadRequest::SetName(name.to_string()));
    }
    Ok(())
}

/// Header plus IPSET_ATTR_PROTOCOL, which every ipset message carries.
fn start(cmd: u8, protocol: u8) -> MsgBuilder {
    start_with(cmd, protocol, NLM_F_ACK)
}

fn start_with(cmd: u8, protocol: u8, flags: u16) -> MsgBuilder {
    let ty = nfnl_msg_type(NFNL_SUBSYS_IPSET, cmd);
    let mut b = MsgBuilder::new(ty, flags, netlink::AF_INET);
    b.put_u8(IPSET_ATTR_PROTOCOL, protocol);
    b
}

fn start_named(cmd: u8, protocol: u8, name: &str) -> Result<MsgBuilder, BadRequest> {
    named(start(cmd, protocol), name)
}

fn named(mut b: MsgBuilder, name: &str) -> Result<MsgBuilder, BadRequest> {
    check_name(name)?;
    b.put_strz(IPSET_ATTR_SETNAME, name);
    Ok(b)
}

/// IPSET_CMD_PROTOCOL: asks which protocol versions the kernel speaks.
pub fn encode_protocol() -> Vec<u8> {
    start(IPSET_CMD_PROTOCOL, PROTOCOL_MAX).finish()
}

/// IPSET_CMD_TYPE: asks which revisions of the set type the kernel has.
pub fn encode_type(protocol: u8, ipv6: bool, set_type: SetType) -> Vec<u8> {
    let mut b = start(IPSET_CMD_TYPE, protocol);
    b.put_strz(IPSET_ATTR_TYPENAME, set_type.name());
    b.put_u8(IPSET_ATTR_FAMILY, family(ipv6));
    b.finish()
}

/// IPSET_CMD_CREATE of a set of `set_type` with the timeout option.
pub fn encode_create(
    protocol: u8,
    name: &str,
    (ipv6, set_type): (bool, SetType),
    revision: u8,
    default_timeout_secs: u32,
) -> Result<Vec<u8>, BadRequest> {
    let mut b = start_named(IPSET_CMD_CREATE, protocol, name)?;
    b.put_strz(IPSET_ATTR_TYPENAME, set_type.name());
    b.put_u8(IPSET_ATTR_REVISION, revision);
    b.put_u8(IPSET_ATTR_FAMILY, family(ipv6));
    let data = b.nest_start(IPSET_ATTR_DATA);
    b.put_be32(
        IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
        default_timeout_secs,
    );
    if let Some(size) = set_type.hashsize() {
        b.put_be32(IPSET_ATTR_HASHSIZE | NLA_F_NET_BYTEORDER, size);
    }
    if set_type.counts() {
        let flags = IPSET_ATTR_CADT_FLAGS | NLA_F_NET_BYTEORDER;
        b.put_be32(flags, IPSET_FLAG_WITH_COUNTERS);
    }
    b.nest_end(data);
    Ok(b.finish())
}

fn put_addr(b: &mut MsgBuilder, attr: u16, addr: IpAddr) {
    let ip = b.nest_start(attr);
    match addr {
        IpAddr::V4(a) => b.put(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, &a.octets()),
        IpAddr::V6(a) => b.put(IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER, &a.octets()),
    };
    b.nest_end(ip);
}

/// IPSET_CMD_ADD, DEL or TEST of the element `addr,tcp:port[,addr2]`.
fn encode_element(
    cmd: u8,
    protocol: u8,
    name: &str,
    e: &Element,
    timeout_secs: Option<u32>,
) -> Result<Vec<u8>, BadRequest> {
    element_into(start_named(cmd, protocol, name)?, e, timeout_secs)
}

fn element_into(
    b: MsgBuilder,
    e: &Element,
    timeout_secs: Option<u32>,
) -> Result<Vec<u8>, BadRequest> {
    element_counted_into(b, e, timeout_secs, None)
}

/// The element, and its counters set to `counted` (packets, bytes).
fn element_counted_into(
    mut b: MsgBuilder,
    e: &Element,
    timeout_secs: Option<u32>,
    counted: Option<(u64, u64)>,
) -> Result<Vec<u8>, BadRequest> {
    let data = b.nest_start(IPSET_ATTR_DATA);
    put_addr(&mut b, IPSET_ATTR_IP, e.addr);
    b.put_be16(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, e.port);
    b.put_u8(IPSET_ATTR_PROTO, IPPROTO_TCP);
    if let Some(addr2) = e.addr2 {
        put_addr(&mut b, IPSET_ATTR_IP2, addr2);
    }
    if let Some(t) = timeout_secs {
        b.put_be32(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, t);
    }
    if let Some((packets, bytes)) = counted {
        b.put(
            IPSET_ATTR_PACKETS | NLA_F_NET_BYTEORDER,
            &packets.to_be_bytes(),
        );
        b.put(IPSET_ATTR_BYTES | NLA_F_NET_BYTEORDER, &bytes.to_be_bytes());
    }
    b.nest_end(data);
    Ok(b.finish())
}

/// Timeout 0: the element never times out.
pub fn encode_add(
    protocol: u8,
    name: &str,
    e: &Element,
    timeout_secs: u32,
) -> Result<Vec<u8>, BadRequest> {
    encode_element(IPSET_CMD_ADD, protocol, name, e, Some(timeout_secs))
}

/// IPSET_CMD_ADD (an element present is overwritten) of `e` with its
/// counters at zero and the set's default timeout: it counts afresh.
pub fn encode_recount(protocol: u8, name: &str, e: &Element) -> Result<Vec<u8>, BadRequest> {
    element_counted_into(
        start_named(IPSET_CMD_ADD, protocol, name)?,
        e,
        None,
        Some((0, 0)),
    )
}

pub fn encode_del(protocol: u8, name: &str, e: &Element) -> Result<Vec<u8>, BadRequest> {
    encode_element(IPSET_CMD_DEL, protocol, name, e, None)
}

/// IPSET_CMD_DEL with NLM_F_EXCL: the kernel refuses it (IPSET_ERR_EXIST)
/// when the element is not in the set, where a plain DEL succeeds.
pub fn encode_take(protocol: u8, name: &str, e: &Element) -> Result<Vec<u8>, BadRequest> {
    let b = named(
        start_with(IPSET_CMD_DEL, protocol, NLM_F_ACK | NLM_F_EXCL),
        name,
    )?;
    element_into(b, e, None)
}

pub fn encode_test(protocol: u8, name: &str, e: &Element) -> Result<Vec<u8>, BadRequest> {
    encode_element(IPSET_CMD_TEST, protocol, name, e, None)
}

pub fn encode_flush(protocol: u8, name: &str) -> Result<Vec<u8>, BadRequest> {
    Ok(start_named(IPSET_CMD_FLUSH, protocol, name)?.finish())
}

pub fn encode_destroy(protocol: u8, name: &str) -> Result<Vec<u8>, BadRequest> {
    Ok(start_named(IPSET_CMD_DESTROY, protocol, name)?.finish())
}

/// IPSET_CMD_SWAP: `name` and `name2` exchange contents; a rule naming
/// one fills, from then on, what the other held.
pub fn encode_swap(protocol: u8, name: &str, name2: &str) -> Result<Vec<u8>, BadRequest> {
    check_name(name2)?;
    let mut b = start_named(IPSET_CMD_SWAP, protocol, name)?;
    b.put_strz(IPSET_ATTR_SETNAME2, name2);
    Ok(b.finish())
}

/// IPSET_CMD_LIST of one set: a dump, answered by messages whose
/// IPSET_ATTR_ADT holds the elements.
pub fn encode_list(protocol: u8, name: &str) -> Result<Vec<u8>, BadRequest> {
    check_name(name)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_IPSET, IPSET_CMD_LIST);
    let mut b = MsgBuilder::new(ty, NLM_F_DUMP, netlink::AF_INET);
    b.put_u8(IPSET_ATTR_PROTOCOL, protocol);
    b.put_strz(IPSET_ATTR_SETNAME, name);
    Ok(b.finish())
}

/// The elements of a listing (the answers to [`encode_list`]), in the
/// order the kernel gave them. Elements of another shape (not TCP, no
/// port) are skipped.
pub fn decode_listing(answer: &[Message]) -> Result<Vec<Element>, Malformed> {
    let mut elements = Vec::new();
    for m in answer {
        let Some(adt) = m.nf_attrs()?.find(IPSET_ATTR_ADT)? else {
            continue; // the header message
        };
        for data in adt.nested() {
            let data = data?;
            if data.kind == IPSET_ATTR_DATA {
                elements.extend(decode_element(data.nested())?);
            }
        }
    }
    Ok(elements)
}

fn decode_element(attrs: Attrs<'_>) -> Result<Option<Element>, Malformed> {
    let proto = attrs.find(IPSET_ATTR_PROTO)?.map(|a| a.u8()).transpose()?;
    let (Some(ip), Some(port), Some(IPPROTO_TCP)) = (
        attrs.find(IPSET_ATTR_IP)?,
        attrs.find(IPSET_ATTR_PORT)?,
        proto,
    ) else {
        return Ok(None);
    };
    let addr2 = attrs.find(IPSET_ATTR_IP2)?.map(decode_addr).transpose()?;
    Ok(Some(Element {
        addr: decode_addr(ip)?,
        port: port.be16()?,
        addr2,
    }))
}

fn decode_addr(nest: Attr<'_>) -> Result<IpAddr, Malformed> {
    let inner = nest.nested();
    if let Some(v4) = inner.find(IPSET_ATTR_IPADDR_IPV4)? {
        return Ok(IpAddr::from(v4.array::<4>()?));
    }
    let v6 = inner.require(IPSET_ATTR_IPADDR_IPV6, "IPSET_ATTR_IPADDR_IPV6")?;
    Ok(IpAddr::from(v6.array::<16>()?))
}

/// IPSET_CMD_HEADER: the type and family of an existing set.
pub fn encode_header(protocol: u8, name: &str) -> Result<Vec<u8>, BadRequest> {
    Ok(start_named(IPSET_CMD_HEADER, protocol, name)?.finish())
}

/// The protocol to use given the kernel's answer to IPSET_CMD_PROTOCOL.
pub fn negotiate_protocol(attrs: Attrs<'_>) -> Result<u8, Error> {
    let kernel = attrs
        .require(IPSET_ATTR_PROTOCOL, "IPSET_ATTR_PROTOCOL")
        .and_then(|a| a.u8())
        .map_err(|w| w.at(Op::IpsetProtocol))?;
    let chosen = kernel.min(PROTOCOL_MAX);
    if chosen < PROTOCOL_MIN {
        return Err(Error::IpsetProtocol { kernel });
    }
    Ok(chosen)
}

/// The newest revision of the type the kernel has (answer to IPSET_CMD_TYPE).
pub fn decode_type_revision(attrs: Attrs<'_>) -> Result<u8, Malformed> {
    let max = attrs
        .require(IPSET_ATTR_REVISION, "IPSET_ATTR_REVISION")?
        .u8()?;
    if let Some(min) = attrs.find(IPSET_ATTR_REVISION_MIN)? {
        let min = min.u8()?;
        if min > max {
            return Err(Malformed::RevisionRange { min, max });
        }
    }
    Ok(max)
}

/// Type name and family of a set (answer to IPSET_CMD_HEADER).
pub fn decode_header(attrs: Attrs<'_>) -> Result<(String, u8), Malformed> {
    let ty = attrs.require(IPSET_ATTR_TYPENAME, "IPSET_ATTR_TYPENAME")?;
    let name = ty.data.split(|&c| c == 0).next().unwrap_or_default();
    let family = attrs
        .require(IPSET_ATTR_FAMILY, "IPSET_ATTR_FAMILY")?
        .u8()?;
    Ok((String::from_utf8_lossy(name).into_owned(), family))
}

fn tell_add_on(
    sock: &mut NlSocket,
    protocol: u8,
    name: &str,
    (e, timeout_secs): (&Element, u32),
    note: &'static str,
) -> Result<(), Error> {
    let msg = encode_add(protocol, name, e, timeout_secs)?;
    sock.tell(Op::IpsetAdd, msg, Target::Set(name.to_string()), note)
}

fn tell_del_on(
    sock: &mut NlSocket,
    protocol: u8,
    name: &str,
    e: &Element,
    note: &'static str,
) -> Result<(), Error> {
    let msg = encode_del(protocol, name, e)?;
    sock.tell(Op::IpsetDel, msg, Target::Set(name.to_string()), note)
}

/// One NETLINK_NETFILTER socket speaking the ipset protocol.
#[derive(Debug)]
pub struct Ipset {
    sock: NlSocket,
    protocol: u8,
}

impl Ipset {
    /// Opens the socket and negotiates the protocol version with the kernel.
    pub fn open() -> Result<Self, Error> {
        let mut sock = NlSocket::open(Subsystem::Ipset)?;
        let replies = sock.transact(Op::IpsetProtocol, encode_protocol())?;
        let attrs = first_attrs(&replies).map_err(|w| w.at(Op::IpsetProtocol))?;
        let protocol = negotiate_protocol(attrs)?;
        Ok(Ipset { sock, protocol })
    }

    /// Counts this socket's requests and failed requests in `counters`
    /// from now on.
    pub fn count_in(&mut self, counters: NlCounters) {
        self.sock.count_in(counters);
    }

    /// The socket, to hold requests not waited for or read their refusals.
    pub fn socket(&mut self) -> &mut NlSocket {
        &mut self.sock
    }

    /// Like [`Ipset::add_element`], not waited for: a refusal is logged
    /// with `note` (what it means) when it is read.
    pub fn tell_add(
        &mut self,
        name: &str,
        (e, timeout_secs): (&Element, u32),
        note: &'static str,
    ) -> Result<(), Error> {
        let protocol = self.protocol;
        tell_add_on(&mut self.sock, protocol, name, (e, timeout_secs), note)
    }

    /// Sets the counters of `e` in the counting set `name` to zero (added
    /// if missing, its timeout renewed), not waited for.
    pub fn tell_recount(
        &mut self,
        name: &str,
        e: &Element,
        note: &'static str,
    ) -> Result<(), Error> {
        let msg = encode_recount(self.protocol, name, e)?;
        self.sock
            .tell(Op::IpsetAdd, msg, Target::Set(name.to_string()), note)
    }

    /// Like [`Ipset::del_element`], not waited for (an element not in the
    /// set is no failure).
    pub fn tell_del(&mut self, name: &str, e: &Element, note: &'static str) -> Result<(), Error> {
        let protocol = self.protocol;
        tell_del_on(&mut self.sock, protocol, name, e, note)
    }

    /// [`Ipset::tell_add`] sent on `sock`, another NETLINK_NETFILTER
    /// socket (nfnetlink routes a message by its subsystem, not by its
    /// socket): with that socket's requests not waited for, in one datagram.
    pub fn tell_add_on(
        &self,
        sock: &mut NlSocket,
        name: &str,
        add: (&Element, u32),
        note: &'static str,
    ) -> Result<(), Error> {
        tell_add_on(sock, self.protocol, name, add, note)
    }

    /// [`Ipset::tell_del`] sent on `sock` (see [`Ipset::tell_add_on`]).
    pub fn tell_del_on(
        &self,
        sock: &mut NlSocket,
        name: &str,
        e: &Element,
        note: &'static str,
    ) -> Result<(), Error> {
        tell_del_on(sock, self.protocol, name, e, note)
    }

    /// The protocol version in use.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Sends `msg`; a refusal names the set.
    fn run(&mut self, op: Op, name: &str, msg: Vec<u8>) -> Result<Vec<Message>, Error> {
        self.sock
            .transact(op, msg)
            .map_err(|e| e.about(|| Target::Set(name.to_string())))
    }

    /// Sends a query about `name` and decodes the first answer.
    fn query<T>(
        &mut self,
        op: Op,
        name: &str,
        msg: Vec<u8>,
        decode: impl FnOnce(Attrs<'_>) -> Result<T, Malformed>,
    ) -> Result<T, Error> {
        let replies = self.run(op, name, msg)?;
        first_attrs(&replies).and_then(decode).map_err(|w| w.at(op))
    }

    /// The newest revision of `set_type` the kernel has (an error if it
    /// has none: the type's module is missing).
    pub fn type_revision(&mut self, ipv6: bool, set_type: SetType) -> Result<u8, Error> {
        self.query(
            Op::IpsetType,
            set_type.name(),
            encode_type(self.protocol, ipv6, set_type),
            decode_type_revision,
        )
    }

    /// Creates a `hash:ip,port` set with the timeout option. Ok if a set of
    /// that name already exists with the same type, family and timeout.
    pub fn create(
        &mut self,
        name: &str,
        ipv6: bool,
        default_timeout_secs: u32,
    ) -> Result<(), Error> {
        self.create_of(name, (ipv6, SetType::Dst), default_timeout_secs)
    }

    /// Creates a set of `set_type`, as [`Self::create`].
    pub fn create_of(
        &mut self,
        name: &str,
        (ipv6, set_type): (bool, SetType),
        default_timeout_secs: u32,
    ) -> Result<(), Error> {
        let revision = self.query(
            Op::IpsetType,
            set_type.name(),
            encode_type(self.protocol, ipv6, set_type),
            decode_type_revision,
        )?;
        let kind = (ipv6, set_type);
        let msg = encode_create(self.protocol, name, kind, revision, default_timeout_secs)?;
        self.run(Op::IpsetCreate, name, msg)?;
        // The kernel's "same set" check ignores the family: check it here.
        let header = encode_header(self.protocol, name)?;
        let (type_name, fam) = self.query(Op::IpsetHeader, name, header, decode_header)?;
        if type_name != set_type.name() || fam != family(ipv6) {
            return Err(Error::SetMismatch {
                name: name.to_string(),
                type_name,
                family: fam,
            });
        }
        Ok(())
    }

    /// Adds `addr,tcp:port`; re-adding an element refreshes its timeout.
    pub fn add(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        timeout_secs: u32,
    ) -> Result<(), Error> {
        self.add_element(name, &Element::dst(addr, port), timeout_secs)
    }

    /// Adds an element of any type; timeout 0: it never times out.
    pub fn add_element(&mut self, name: &str, e: &Element, timeout_secs: u32) -> Result<(), Error> {
        let msg = encode_add(self.protocol, name, e, timeout_secs)?;
        self.run(Op::IpsetAdd, name, msg).map(drop)
    }

    /// Removes `addr,tcp:port`; an element not in the set is not an error.
    pub fn del(&mut self, name: &str, addr: IpAddr, port: u16) -> Result<(), Error> {
        self.del_element(name, &Element::dst(addr, port))
    }

    /// Removes an element of any type; one not in the set is not an error.
    pub fn del_element(&mut self, name: &str, e: &Element) -> Result<(), Error> {
        let msg = encode_del(self.protocol, name, e)?;
        match self.run(Op::IpsetDel, name, msg) {
            Ok(_)
            | Err(Error::Kernel {
                errno: IPSET_ERR_EXIST,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes an element of any type; true if it was in the set (the
    /// test and the removal in one step).
    pub fn take_element(&mut self, name: &str, e: &Element) -> Result<bool, Error> {
        let msg = encode_take(self.protocol, name, e)?;
        self.was_there(Op::IpsetDel, name, msg)
    }

    /// Sends a test or a take: true when the element was in the set, false
    /// when the kernel says it was not (IPSET_ERR_EXIST).
    fn was_there(&mut self, op: Op, name: &str, msg: Vec<u8>) -> Result<bool, Error> {
        match self.run(op, name, msg) {
            Ok(_) => Ok(true),
            Err(Error::Kernel {
                errno: IPSET_ERR_EXIST,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes every element of the set.
    pub fn flush(&mut self, name: &str) -> Result<(), Error> {
        let msg = encode_flush(self.protocol, name)?;
        self.run(Op::IpsetFlush, name, msg).map(drop)
    }

    /// Destroys the set; a set that does not exist is not an error.
    pub fn destroy(&mut self, name: &str) -> Result<(), Error> {
        let msg = encode_destroy(self.protocol, name)?;
        match self.run(Op::IpsetDestroy, name, msg) {
            Ok(_)
            | Err(Error::Kernel {
                errno: libc::ENOENT,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Exchanges the contents of two sets of the same type and family.
    pub fn swap(&mut self, name: &str, name2: &str) -> Result<(), Error> {
        let msg = encode_swap(self.protocol, name, name2)?;
        self.run(Op::IpsetSwap, name, msg).map(drop)
    }

    /// The elements of set `name`.
    pub fn list(&mut self, name: &str) -> Result<Vec<Element>, Error> {
        let msg = encode_list(self.protocol, name)?;
        let answer = self.run(Op::IpsetList, name, msg)?;
        decode_listing(&answer).map_err(|w| w.at(Op::IpsetList))
    }

    /// Whether `addr,tcp:port` is in the set (and not timed out).
    pub fn test(&mut self, name: &str, addr: IpAddr, port: u16) -> Result<bool, Error> {
        self.test_element(name, &Element::dst(addr, port))
    }

    /// Whether an element of any type is in the set (and not timed out).
    pub fn test_element(&mut self, name: &str, e: &Element) -> Result<bool, Error> {
        let msg = encode_test(self.protocol, name, e)?;
        self.was_there(Op::IpsetTest, name, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::netlink::{NFGENMSG_LEN, NLA_F_NESTED, NLMSG_HDRLEN};

    fn attrs(msg: &[u8]) -> Attrs<'_> {
        Attrs::new(&msg[NLMSG_HDRLEN + NFGENMSG_LEN..])
    }

    /// Attribute type as written on the wire, flags included.
    fn raw_types(buf: &[u8]) -> Vec<u16> {
        let mut out = Vec::new();
        let mut rest = buf;
        while rest.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
            out.push(u16::from_ne_bytes([rest[2], rest[3]]));
            rest = &rest[netlink::align4(len).min(rest.len())..];
        }
        out
    }

    #[test]
    fn protocol_query_bytes() {
        let msg = encode_protocol();
        assert_eq!(msg.len(), 16 + 4 + 8);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0601);
        assert_eq!(&msg[16..20], &[netlink::AF_INET, 0, 0, 0]);
        assert_eq!(&msg[20..28], &[5, 0, 1, 0, PROTOCOL_MAX, 0, 0, 0]);
    }

    #[test]
    fn create_v6_with_timeout() {
        let msg = encode_create(7, "ftpct-pasv6", (true, SetType::Dst), 6, 300).unwrap();
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0602);
        let a = attrs(&msg);
        assert_eq!(
            a.require(IPSET_ATTR_PROTOCOL, "p").unwrap().u8().unwrap(),
            7
        );
        assert_eq!(
            a.require(IPSET_ATTR_SETNAME, "n").unwrap().data,
            b"ftpct-pasv6\0"
        );
        assert_eq!(
            a.require(IPSET_ATTR_TYPENAME, "t").unwrap().data,
            b"hash:ip,port\0"
        );
        assert_eq!(
            a.require(IPSET_ATTR_REVISION, "r").unwrap().u8().unwrap(),
            6
        );
        assert_eq!(
            a.require(IPSET_ATTR_FAMILY, "f").unwrap().u8().unwrap(),
            NFPROTO_IPV6
        );
        let data = a.require(IPSET_ATTR_DATA, "d").unwrap();
        let timeout = data.nested().require(IPSET_ATTR_TIMEOUT, "t").unwrap();
        assert_eq!(timeout.be32().unwrap(), 300);
        assert_eq!(
            raw_types(data.data),
            vec![IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER]
        );
        assert!(raw_types(&msg[20..]).contains(&(IPSET_ATTR_DATA | NLA_F_NESTED)));
    }

    #[test]
    fn guard_sets_are_created_with_their_hash_size() {
        let msg = encode_create(7, "g", (false, SetType::Guard), 6, 600).unwrap();
        let data = attrs(&msg).require(IPSET_ATTR_DATA, "d").unwrap();
        let size = data.nested().require(IPSET_ATTR_HASHSIZE, "h").unwrap();
        assert_eq!(size.be32().unwrap(), GUARD_HASHSIZE);
    }

    #[test]
    fn add_v4_element_bytes() {
        let msg = encode_add(
            6,
            "s",
            &Element::dst("192.0.2.1".parse().unwrap(), 2121),
            60,
        )
        .unwrap();
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 0x0609);
        let data = attrs(&msg).require(IPSET_ATTR_DATA, "d").unwrap();
        let mut want = Vec::new();
        let put = |w: &mut Vec<u8>, len: u16, ty: u16, val: &[u8]| {
            w.extend_from_slice(&len.to_ne_bytes());
            w.extend_from_slice(&ty.to_ne_bytes());
            w.extend_from_slice(val);
        };
        put(&mut want, 12, IPSET_ATTR_IP | NLA_F_NESTED, &[]);
        put(
            &mut want,
            8,
            IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            &[192, 0, 2, 1],
        );
        put(
            &mut want,
            6,
            IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER,
            &[0x08, 0x49, 0, 0],
        );
        put(&mut want, 5, IPSET_ATTR_PROTO, &[6, 0, 0, 0]);
        put(
            &mut want,
            8,
            IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            &[0, 0, 0, 60],
        );
        assert_eq!(data.data, &want[..]);
    }

    #[test]
    fn del_and_test_v6_have_no_timeout() {
        let addr: IpAddr = "2001:db8::1".parse().unwrap();
        for msg in [
            encode_del(7, "s", &Element::dst(addr, 21)).unwrap(),
            encode_test(7, "s", &Element::dst(addr, 21)).unwrap(),
        ] {
            let data = attrs(&msg).require(IPSET_ATTR_DATA, "d").unwrap().nested();
            assert!(data.find(IPSET_ATTR_TIMEOUT).unwrap().is_none());
            let ip = data.require(IPSET_ATTR_IP, "ip").unwrap().nested();
            let v6 = ip.require(IPSET_ATTR_IPADDR_IPV6, "v6").unwrap();
            assert_eq!(IpAddr::from(v6.array::<16>().unwrap()), addr);
            assert_eq!(
                data.require(IPSET_ATTR_PORT, "p").unwrap().be16().unwrap(),
                21
            );
        }
        assert_eq!(
            u16::from_ne_bytes([
                encode_test(7, "s", &Element::dst(addr, 21)).unwrap()[4],
                encode_test(7, "s", &Element::dst(addr, 21)).unwrap()[5]
            ]),
            0x060b
        );
    }

    #[test]
    fn guard_elements_carry_the_second_address() {
        let e = Element {
            addr: "192.0.2.10".parse().unwrap(),
            port: 40000,
            addr2: Some("198.51.100.20".parse().unwrap()),
        };
        let msg = encode_add(7, "g", &e, 0).unwrap();
        let data = attrs(&msg).require(IPSET_ATTR_DATA, "d").unwrap().nested();
        let ip2 = data.require(IPSET_ATTR_IP2, "ip2").unwrap().nested();
        let v4 = ip2.require(IPSET_ATTR_IPADDR_IPV4, "v4").unwrap();
        assert_eq!(v4.data, &[198, 51, 100, 20]);
        assert_eq!(
            data.require(IPSET_ATTR_TIMEOUT, "t")
                .unwrap()
                .be32()
                .unwrap(),
            0,
            "never times out"
        );
        let create = encode_create(7, "g", (false, SetType::Guard), 4, 30).unwrap();
        assert_eq!(
            attrs(&create)
                .require(IPSET_ATTR_TYPENAME, "t")
                .unwrap()
                .data,
            b"hash:ip,port,ip\0"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let bad = |name: &str| Err(BadRequest::SetName(name.to_string()));
        assert_eq!(encode_flush(7, ""), bad(""));
        assert_eq!(encode_destroy(7, &"x".repeat(32)), bad(&"x".repeat(32)));
        assert!(encode_destroy(7, &"x".repeat(31)).is_ok());
        assert_eq!(
            encode_add(7, "a\0b", &Element::dst("192.0.2.1".parse().unwrap(), 1), 1),
            bad("a\0b")
        );
    }

    #[test]
    fn negotiates_down_to_what_both_speak() {
        let reply = |p: u8| {
            let mut b = MsgBuilder::new(0x0601, 0, 2);
            b.put_u8(IPSET_ATTR_PROTOCOL, p);
            b.put_u8(IPSET_ATTR_REVISION_MIN, 6);
            b.finish()
        };
        assert_eq!(negotiate_protocol(attrs(&reply(7))).unwrap(), 7);
        assert_eq!(negotiate_protocol(attrs(&reply(9))).unwrap(), 7);
        assert_eq!(negotiate_protocol(attrs(&reply(6))).unwrap(), 6);
        assert!(matches!(
            negotiate_protocol(attrs(&reply(5))),
            Err(Error::IpsetProtocol { kernel: 5 })
        ));
    }

    #[test]
    fn decodes_type_and_header_answers() {
        let mut b = MsgBuilder::new(0x060d, 0, 2);
        b.put_u8(IPSET_ATTR_PROTOCOL, 7);
        b.put_strz(IPSET_ATTR_TYPENAME, SET_TYPE);
        b.put_u8(IPSET_ATTR_FAMILY, NFPROTO_IPV4);
        b.put_u8(IPSET_ATTR_REVISION, 6);
        b.put_u8(IPSET_ATTR_REVISION_MIN, 0);
        let msg = b.finish();
        assert_eq!(decode_type_revision(attrs(&msg)).unwrap(), 6);
        assert_eq!(
            decode_header(attrs(&msg)).unwrap(),
            (SET_TYPE.to_string(), NFPROTO_IPV4)
        );
    }

    #[test]
    fn ipset_errors_are_explained() {
        let refused = |op, errno| Error::Kernel {
            op,
            target: Target::Set("pasv".into()),
            errno,
        };
        assert_eq!(
            refused(Op::IpsetDestroy, IPSET_ERR_BUSY).to_string(),
            "ipset: set pasv is in use by a rule"
        );
        assert!(refused(Op::IpsetAdd, libc::EPERM)
            .to_string()
            .contains("CAP_NET_ADMIN"));
        assert_eq!(
            refused(Op::IpsetAdd, libc::ENOENT).to_string(),
            "ipset: set pasv does not exist"
        );
        assert_eq!(
            refused(Op::IpsetAdd, 4200).to_string(),
            "ipset: add on set pasv failed: ipset error 4200"
        );
    }

    /// A listing as the kernel sends it: a header message, then one with
    /// the elements under IPSET_ATTR_ADT (a UDP element among them).
    #[test]
    fn a_listing_gives_its_tcp_elements() {
        let header = {
            let mut b = start_named(IPSET_CMD_LIST, 7, "ftpct-finx").unwrap();
            b.put_strz(IPSET_ATTR_TYPENAME, GUARD_SET_TYPE);
            b.finish()
        };
        let element = |b: &mut MsgBuilder, client: IpAddr, port: u16, proto: u8, server: IpAddr| {
            let data = b.nest_start(IPSET_ATTR_DATA);
            put_addr(b, IPSET_ATTR_IP, client);
            b.put_be16(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, port);
            b.put_u8(IPSET_ATTR_PROTO, proto);
            put_addr(b, IPSET_ATTR_IP2, server);
            b.put_be32(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, 59);
            b.nest_end(data);
        };
        let (c4, s4): (IpAddr, IpAddr) = ([192, 0, 2, 10].into(), [198, 51, 100, 20].into());
        let (c6, s6): (IpAddr, IpAddr) = (
            "2001:db8::10".parse().unwrap(),
            "2001:db8::20".parse().unwrap(),
        );
        let elements = {
            let mut b = start_named(IPSET_CMD_LIST, 7, "ftpct-finx").unwrap();
            let adt = b.nest_start(IPSET_ATTR_ADT);
            element(&mut b, c4, 40000, IPPROTO_TCP, s4);
            element(&mut b, c4, 53, 17, s4);
            element(&mut b, c6, 40001, IPPROTO_TCP, s6);
            b.nest_end(adt);
            b.finish()
        };
        let mut wire = header;
        wire.extend(elements);
        let answer = netlink::parse_messages(&wire).unwrap();
        let guard = |addr, port, addr2| Element {
            addr,
            port,
            addr2: Some(addr2),
        };
        assert_eq!(
            decode_listing(&answer).unwrap(),
            vec![guard(c4, 40000, s4), guard(c6, 40001, s6)]
        );
        let swap = encode_swap(7, "ftpct-fin", "ftpct-finx").unwrap();
        let a = attrs(&swap);
        assert_eq!(
            a.require(IPSET_ATTR_SETNAME, "n").unwrap().data,
            b"ftpct-fin\0"
        );
        assert_eq!(
            a.require(IPSET_ATTR_SETNAME2, "n2").unwrap().data,
            b"ftpct-finx\0"
        );
        assert!(encode_swap(7, "ftpct-fin", &"x".repeat(32)).is_err());
    }
}
