//! Conntrack over netlink (ctnetlink): look up the control connection's
//! entry (its NAT mapping shows in the reply tuple), create the data
//! connection's entry as RELATED to it with its NAT bindings, delete entries.
//!
//! Why create entries rather than expectations: ctnetlink refuses an
//! expectation on a connection without a kernel helper (see docs/DESIGN.md). An
//! entry created with `CTA_TUPLE_MASTER` gets the IPS_EXPECTED status bit,
//! so the first packet that matches it is classified RELATED, and NAT
//! bindings given at creation apply to all its packets.
//!
//! The `encode_*` and `decode_*` functions are pure; [`Ctnetlink`] sends them.

use std::net::{IpAddr, SocketAddr};

use crate::netfilter::error::{BadRequest, Error, Malformed, Op, Subsystem, Target};
use crate::netfilter::netlink::{
    self, first_attrs, nfnl_msg_type, Attrs, Message, MsgBuilder, NlCounters, NlSocket, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
};
use ftpct_engine::command::{DataConnection, NatBinding, SeqAdj};
use ftpct_engine::tuple::{Dir, Tuple};

const NFNL_SUBSYS_CTNETLINK: u8 = 1;
const IPCTNL_MSG_CT_NEW: u8 = 0;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_NAT_SRC: u16 = 6;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_NAT_DST: u16 = 13;
const CTA_TUPLE_MASTER: u16 = 14;
const CTA_SEQ_ADJ_ORIG: u16 = 15;
const CTA_SEQ_ADJ_REPLY: u16 = 16;
const CTA_LABELS: u16 = 22;
const CTA_ZONE: u16 = 18;
const CTA_LABELS_MASK: u16 = 23;

// enum ctattr_seqadj
const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;

// enum ctattr_tuple, ctattr_ip, ctattr_l4proto
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

// enum ctattr_protoinfo, ctattr_protoinfo_tcp
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
const TCP_CONNTRACK_SYN_SENT: u8 = 1;
/// IP_CT_TCP_FLAG_BE_LIBERAL: no window check for this direction.
const IP_CT_TCP_FLAG_BE_LIBERAL: u8 = 0x08;

// enum ctattr_nat, ctattr_protonat
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_PROTO: u16 = 3;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;

const IPPROTO_TCP: u8 = 6;

/// Status bits (enum ip_conntrack_status) worth knowing from outside.
pub const IPS_EXPECTED: u32 = 1 << 0;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;

/// The two tuples of a conntrack entry. With NAT, `reply` is what the
/// translated peer sends back: e.g. after DNAT its source is the real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry {
    pub orig: Tuple,
    pub reply: Tuple,
    pub mark: u32,
}

/// Everything [`Ctnetlink::get_info`] reads from an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtInfo {
    pub entry: CtEntry,
    /// Original tuple of the master connection, for an entry created RELATED.
    pub master: Option<Tuple>,
    /// IPS_* bits.
    pub status: u32,
    pub timeout_secs: Option<u32>,
    /// TCP conntrack state number (1 = SYN_SENT, 3 = ESTABLISHED...).
    pub tcp_state: Option<u8>,
    /// TCP window scale each side announced, by direction.
    pub wscale: [Option<u8>; 2],
    /// Sequence adjustment by direction, when the entry has the extension
    /// and a non-zero one is set.
    pub seqadj: [Option<SeqAdj>; 2],
    /// The 128 label bits, when the entry has labels.
    pub labels: Option<[u8; 16]>,
}

/// `msg` (a whole ctnetlink request) naming conntrack zone `zone`:
/// `CTA_ZONE` (16 bits, big-endian) appended, the message's length
/// updated. Zone 0, the default, is left unsaid.
pub fn in_zone(mut msg: Vec<u8>, zone: u16) -> Vec<u8> {
    if zone == 0 {
        return msg;
    }
    msg.resize(netlink::align4(msg.len()), 0);
    msg.extend_from_slice(&6u16.to_ne_bytes());
    msg.extend_from_slice(&CTA_ZONE.to_ne_bytes());
    msg.extend_from_slice(&zone.to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    msg
}

fn family_of(t: &Tuple) -> u8 {
    if t.is_ipv6() {
        netlink::AF_INET6
    } else {
        netlink::AF_INET
    }
}

/// Both ends of a tuple must be the same family.
fn check_tuple(t: &Tuple) -> Result<(), BadRequest> {
    if t.src.is_ipv6() != t.dst.is_ipv6() {
        return Err(BadRequest::MixedTuple(*t));
    }
    Ok(())
}

fn put_ip_pair(b: &mut MsgBuilder, src: IpAddr, dst: IpAddr) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.put(CTA_IP_V4_SRC, &s.octets());
            b.put(CTA_IP_V4_DST, &d.octets());
        }
        (s, d) => {
            b.put(CTA_IP_V6_SRC, &v6_octets(s));
            b.put(CTA_IP_V6_DST, &v6_octets(d));
        }
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// CTA_TUPLE_* { CTA_TUPLE_IP {..}, CTA_TUPLE_PROTO { TCP, ports } }
fn put_tuple(b: &mut MsgBuilder, attr: u16, t: &Tuple) {
    let outer = b.nest_start(attr);
    let ip = b.nest_start(CTA_TUPLE_IP);
    put_ip_pair(b, t.src.ip(), t.dst.ip());
    b.nest_end(ip);
    let proto = b.nest_start(CTA_TUPLE_PROTO);
    b.put_u8(CTA_PROTO_NUM, IPPROTO_TCP);
    b.put_be16(CTA_PROTO_SRC_PORT, t.src.port());
    b.put_be16(CTA_PROTO_DST_PORT, t.dst.port());
    b.nest_end(proto);
    b.nest_end(outer);
}

/// CTA_NAT_SRC/DST { MINIP, MAXIP, CTA_NAT_PROTO { PORT_MIN, PORT_MAX } }
fn put_nat(b: &mut MsgBuilder, attr: u16, nat: &NatBinding) {
    let n = b.nest_start(attr);
    match nat.addr {
        IpAddr::V4(a) => {
            b.put(CTA_NAT_V4_MINIP, &a.octets());
            b.put(CTA_NAT_V4_MAXIP, &a.octets());
        }
        IpAddr::V6(a) => {
            b.put(CTA_NAT_V6_MINIP, &a.octets());
            b.put(CTA_NAT_V6_MAXIP, &a.octets());
        }
    }
    if let Some(port) = nat.port {
        let p = b.nest_start(CTA_NAT_PROTO);
        b.put_be16(CTA_PROTONAT_PORT_MIN, port);
        b.put_be16(CTA_PROTONAT_PORT_MAX, port);
        b.nest_end(p);
    }
    b.nest_end(n);
}

fn dir_attr(dir: Dir) -> u16 {
    match dir {
        Dir::Orig => CTA_TUPLE_ORIG,
        Dir::Reply => CTA_TUPLE_REPLY,
    }
}

/// IPCTNL_MSG_CT_GET for the entry that has `tuple` in direction `dir`.
pub fn encode_get(tuple: &Tuple, dir: Dir) -> Result<Vec<u8>, BadRequest> {
    check_tuple(tuple)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET);
    let mut b = MsgBuilder::new(ty, NLM_F_ACK, family_of(tuple));
    put_tuple(&mut b, dir_attr(dir), tuple);
    Ok(b.finish())
}

/// IPCTNL_MSG_CT_GET of every entry, of every family.
pub fn encode_dump() -> Vec<u8> {
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET);
    MsgBuilder::new(ty, NLM_F_DUMP, 0).finish()
}

/// IPCTNL_MSG_CT_DELETE of the entry whose original tuple is `orig`.
pub fn encode_delete(orig: &Tuple) -> Result<Vec<u8>, BadRequest> {
    check_tuple(orig)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE);
    let mut b = MsgBuilder::new(ty, NLM_F_ACK, family_of(orig));
    put_tuple(&mut b, CTA_TUPLE_ORIG, orig);
    Ok(b.finish())
}

fn check_data_connection(dc: &DataConnection) -> Result<(), BadRequest> {
    check_tuple(&dc.tuple)?;
    check_tuple(&dc.master)?;
    let v6 = dc.tuple.is_ipv6();
    if dc.master.is_ipv6() != v6 {
        return Err(BadRequest::MasterFamily {
            tuple: dc.tuple,
            master: Box::new(dc.master),
        });
    }
    for nat in [dc.nat_src, dc.nat_dst].iter().flatten() {
        if nat.addr.is_ipv6() != v6 {
            return Err(BadRequest::NatFamily {
                addr: nat.addr,
                tuple: dc.tuple,
            });
        }
    }
    Ok(())
}

/// IPCTNL_MSG_CT_NEW creating the data connection's entry, RELATED to its
/// master, in TCP state SYN_SENT. The kernel requires a reply tuple and a
/// timeout when creating; the reply tuple sent is the plain inverse, and
/// the kernel rewrites it from the NAT bindings.
pub fn encode_create_related(dc: &DataConnection) -> Result<Vec<u8>, BadRequest> {
    check_data_connection(dc)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW);
    let flags = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    let mut b = MsgBuilder::new(ty, flags, family_of(&dc.tuple));
    put_tuple(&mut b, CTA_TUPLE_ORIG, &dc.tuple);
    put_tuple(&mut b, CTA_TUPLE_REPLY, &dc.tuple.reversed());
    put_tuple(&mut b, CTA_TUPLE_MASTER, &dc.master);
    if let Some(nat) = &dc.nat_src {
        put_nat(&mut b, CTA_NAT_SRC, nat);
    }
    if let Some(nat) = &dc.nat_dst {
        put_nat(&mut b, CTA_NAT_DST, nat);
    }
    let info = b.nest_start(CTA_PROTOINFO);
    let tcp = b.nest_start(CTA_PROTOINFO_TCP);
    b.put_u8(CTA_PROTOINFO_TCP_STATE, TCP_CONNTRACK_SYN_SENT);
    b.nest_end(tcp);
    b.nest_end(info);
    b.put_be32(CTA_TIMEOUT, dc.timeout_secs);
    if let Some(mark) = dc.mark {
        b.put_be32(CTA_MARK, mark);
    }
    Ok(b.finish())
}

/// IPCTNL_MSG_CT_NEW updating the entry whose original tuple is `orig`:
/// TCP window tracking liberal in both directions (struct nf_ct_tcp_flags
/// { flags, mask }). Needed once ftpct changes a segment's length before
/// conntrack: conntrack then sees one direction shifted and the other's
/// acknowledgements un-shifted, and a shorter rewrite would look like an
/// acknowledgement of unsent data (INVALID, the session dies).
pub fn encode_set_liberal(orig: &Tuple) -> Result<Vec<u8>, BadRequest> {
    check_tuple(orig)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW);
    let mut b = MsgBuilder::new(ty, NLM_F_ACK, family_of(orig));
    put_tuple(&mut b, CTA_TUPLE_ORIG, orig);
    let info = b.nest_start(CTA_PROTOINFO);
    let tcp = b.nest_start(CTA_PROTOINFO_TCP);
    let flags = [IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL];
    b.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &flags);
    b.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &flags);
    b.nest_end(tcp);
    b.nest_end(info);
    Ok(b.finish())
}

fn seqadj_attr(dir: Dir) -> u16 {
    match dir {
        Dir::Orig => CTA_SEQ_ADJ_ORIG,
        Dir::Reply => CTA_SEQ_ADJ_REPLY,
    }
}

fn put_seqadj(b: &mut MsgBuilder, dir: Dir, adj: &SeqAdj) {
    let n = b.nest_start(seqadj_attr(dir));
    b.put_be32(CTA_SEQADJ_CORRECTION_POS, adj.correction_pos);
    // The kernel reads the offsets as be32 and stores them in s32 fields.
    b.put_be32(CTA_SEQADJ_OFFSET_BEFORE, adj.offset_before as u32);
    b.put_be32(CTA_SEQADJ_OFFSET_AFTER, adj.offset_after as u32);
    b.nest_end(n);
}

/// IPCTNL_MSG_CT_NEW updating the sequence adjustment of direction `dir`
/// of the entry whose original tuple is `orig`. The kernel applies it only
/// on an entry that has the seqadj extension (one ctnetlink created); on
/// others the update is accepted and ignored.
pub fn encode_set_seqadj(orig: &Tuple, dir: Dir, adj: &SeqAdj) -> Result<Vec<u8>, BadRequest> {
    check_tuple(orig)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW);
    let mut b = MsgBuilder::new(ty, NLM_F_ACK, family_of(orig));
    put_tuple(&mut b, CTA_TUPLE_ORIG, orig);
    put_seqadj(&mut b, dir, adj);
    Ok(b.finish())
}

/// IPCTNL_MSG_CT_NEW setting the label bits under `mask` of the entry
/// whose original tuple is `orig` to those of `labels` (the other bits
/// stay). Refused with ENOSPC when the entry has no room for labels (no
/// rule used labels when it was made).
pub fn encode_set_labels(
    orig: &Tuple,
    labels: &[u8; 16],
    mask: &[u8; 16],
) -> Result<Vec<u8>, BadRequest> {
    check_tuple(orig)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW);
    let mut b = MsgBuilder::new(ty, NLM_F_ACK, family_of(orig));
    put_tuple(&mut b, CTA_TUPLE_ORIG, orig);
    b.put(CTA_LABELS, labels);
    b.put(CTA_LABELS_MASK, mask);
    Ok(b.finish())
}

/// The NAT bindings that turn `orig` into the entry's `reply` tuple: the
/// reply's destination is where the source went (SNAT), its source where
/// the destination went (DNAT).
fn nat_of(orig: &Tuple, reply: &Tuple) -> (Option<NatBinding>, Option<NatBinding>) {
    let binding = |to: SocketAddr| NatBinding {
        addr: to.ip(),
        port: Some(to.port()),
    };
    let snat = (reply.dst != orig.src).then(|| binding(reply.dst));
    let dnat = (reply.src != orig.dst).then(|| binding(reply.src));
    (snat, dnat)
}

/// IPCTNL_MSG_CT_NEW creating an entry like `info` (taken from the one a
/// packet made): its original tuple, its NAT given as bindings (the reply
/// tuple is sent un-NATed: given NATed, NAT setup would see nothing to do
/// and the packets would leave untranslated), TCP state and window scales,
/// both directions liberal (conntrack's window data cannot be given),
/// timeout, mark, labels. An entry ctnetlink creates always has the
/// seqadj extension, which a packet-made one only has with a kernel helper.
pub fn encode_adopt(info: &CtInfo) -> Result<Vec<u8>, BadRequest> {
    let orig = info.entry.orig;
    check_tuple(&orig)?;
    let ty = nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW);
    let flags = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    let mut b = MsgBuilder::new(ty, flags, family_of(&orig));
    put_tuple(&mut b, CTA_TUPLE_ORIG, &orig);
    put_tuple(&mut b, CTA_TUPLE_REPLY, &orig.reversed());
    let (snat, dnat) = nat_of(&orig, &info.entry.reply);
    if let Some(nat) = &snat {
        put_nat(&mut b, CTA_NAT_SRC, nat);
    }
    if let Some(nat) = &dnat {
        put_nat(&mut b, CTA_NAT_DST, nat);
    }
    let pinfo = b.nest_start(CTA_PROTOINFO);
    let tcp = b.nest_start(CTA_PROTOINFO_TCP);
    b.put_u8(
        CTA_PROTOINFO_TCP_STATE,
        info.tcp_state.unwrap_or(TCP_CONNTRACK_SYN_SENT),
    );
    for (attr, wscale) in [
        (CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, info.wscale[0]),
        (CTA_PROTOINFO_TCP_WSCALE_REPLY, info.wscale[1]),
    ] {
        if let Some(w) = wscale {
            b.put_u8(attr, w);
        }
    }
    let liberal = [IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL];
    b.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &liberal);
    b.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &liberal);
    b.nest_end(tcp);
    b.nest_end(pinfo);
    b.put_be32(CTA_TIMEOUT, info.timeout_secs.unwrap_or(120).max(1));
    if info.entry.mark != 0 {
        b.put_be32(CTA_MARK, info.entry.mark);
    }
    for (dir, adj) in [Dir::Orig, Dir::Reply].into_iter().zip(info.seqadj) {
        if let Some(adj) = adj {
            put_seqadj(&mut b, dir, &adj);
        }
    }
    if let Some(labels) = &info.labels {
        b.put(CTA_LABELS, labels);
    }
    Ok(b.finish())
}

/// `old` with the bits under `mask` taken from `value`.
fn masked_labels(old: [u8; 16], value: [u8; 16], mask: [u8; 16]) -> [u8; 16] {
    std::array::from_fn(|i| (old[i] & !mask[i]) | (value[i] & mask[i]))
}

fn decode_ip_pair(ip: Attrs<'_>) -> Result<(IpAddr, IpAddr), Malformed> {
    if let Some(src) = ip.find(CTA_IP_V4_SRC)? {
        let dst = ip.require(CTA_IP_V4_DST, "CTA_IP_V4_DST")?;
        return Ok((
            IpAddr::from(src.array::<4>()?),
            IpAddr::from(dst.array::<4>()?),
        ));
    }
    let src = ip.require(CTA_IP_V6_SRC, "CTA_IP_V6_SRC")?;
    let dst = ip.require(CTA_IP_V6_DST, "CTA_IP_V6_DST")?;
    Ok((
        IpAddr::from(src.array::<16>()?),
        IpAddr::from(dst.array::<16>()?),
    ))
}

/// Reads a CTA_TUPLE_* nest. Ok(None) for a protocol other than TCP.
pub fn decode_tuple(tuple: Attrs<'_>) -> Result<Option<Tuple>, Malformed> {
    let ip = tuple.require(CTA_TUPLE_IP, "CTA_TUPLE_IP")?;
    let proto = tuple.require(CTA_TUPLE_PROTO, "CTA_TUPLE_PROTO")?.nested();
    if proto.require(CTA_PROTO_NUM, "CTA_PROTO_NUM")?.u8()? != IPPROTO_TCP {
        return Ok(None);
    }
    let sport = proto
        .require(CTA_PROTO_SRC_PORT, "CTA_PROTO_SRC_PORT")?
        .be16()?;
    let dport = proto
        .require(CTA_PROTO_DST_PORT, "CTA_PROTO_DST_PORT")?
        .be16()?;
    let (src, dst) = decode_ip_pair(ip.nested())?;
    Ok(Some(Tuple::new(
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
    )))
}

fn required_tcp_tuple(
    attrs: &Attrs<'_>,
    kind: u16,
    what: &'static str,
) -> Result<Tuple, Malformed> {
    decode_tuple(attrs.require(kind, what)?.nested())?.ok_or(Malformed::NotTcp { what })
}

/// A u8 of the entry's CTA_PROTOINFO_TCP nest, when there.
fn decode_tcp_u8(attrs: &Attrs<'_>, kind: u16) -> Result<Option<u8>, Malformed> {
    let Some(info) = attrs.find(CTA_PROTOINFO)? else {
        return Ok(None);
    };
    let Some(tcp) = info.nested().find(CTA_PROTOINFO_TCP)? else {
        return Ok(None);
    };
    tcp.nested().find(kind)?.map(|a| a.u8()).transpose()
}

/// A CTA_SEQ_ADJ_* nest; None when absent or all zero (no adjustment).
fn decode_seqadj(attrs: &Attrs<'_>, dir: Dir) -> Result<Option<SeqAdj>, Malformed> {
    let Some(nest) = attrs.find(seqadj_attr(dir))? else {
        return Ok(None);
    };
    let n = nest.nested();
    let field = |kind| -> Result<u32, Malformed> {
        Ok(n.find(kind)?.map(|a| a.be32()).transpose()?.unwrap_or(0))
    };
    let adj = SeqAdj {
        correction_pos: field(CTA_SEQADJ_CORRECTION_POS)?,
        offset_before: field(CTA_SEQADJ_OFFSET_BEFORE)? as i32,
        offset_after: field(CTA_SEQADJ_OFFSET_AFTER)? as i32,
    };
    Ok((adj != SeqAdj::default()).then_some(adj))
}

/// Reads the attributes of an IPCTNL_MSG_CT_NEW message (the answer to GET).
pub fn decode_entry(attrs: Attrs<'_>) -> Result<CtInfo, Malformed> {
    let orig = required_tcp_tuple(&attrs, CTA_TUPLE_ORIG, "CTA_TUPLE_ORIG")?;
    let reply = required_tcp_tuple(&attrs, CTA_TUPLE_REPLY, "CTA_TUPLE_REPLY")?;
    let master = match attrs.find(CTA_TUPLE_MASTER)? {
        Some(m) => decode_tuple(m.nested())?,
        None => None,
    };
    let be32 = |kind| -> Result<Option<u32>, Malformed> {
        attrs.find(kind)?.map(|a| a.be32()).transpose()
    };
    Ok(CtInfo {
        entry: CtEntry {
            orig,
            reply,
            mark: be32(CTA_MARK)?.unwrap_or(0),
        },
        master,
        status: be32(CTA_STATUS)?.unwrap_or(0),
        timeout_secs: be32(CTA_TIMEOUT)?,
        tcp_state: decode_tcp_u8(&attrs, CTA_PROTOINFO_TCP_STATE)?,
        wscale: [
            decode_tcp_u8(&attrs, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL)?,
            decode_tcp_u8(&attrs, CTA_PROTOINFO_TCP_WSCALE_REPLY)?,
        ],
        seqadj: [
            decode_seqadj(&attrs, Dir::Orig)?,
            decode_seqadj(&attrs, Dir::Reply)?,
        ],
        labels: attrs
            .find(CTA_LABELS)?
            .map(|a| a.array::<16>())
            .transpose()?,
    })
}

/// The entry a lookup of `tuple` in direction `dir` found (`asked`: its
/// answer), if it holds the tuple in that direction.
fn info_of(
    tuple: &Tuple,
    dir: Dir,
    asked: Result<Vec<Message>, Error>,
) -> Result<Option<CtInfo>, Error> {
    let replies = match asked.map_err(|e| e.about(|| Target::Conn(*tuple))) {
        Ok(r) => r,
        Err(Error::Kernel {
            errno: libc::ENOENT,
            ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let info = first_attrs(&replies)
        .and_then(decode_entry)
        .map_err(|w| w.at(Op::CtGet))?;
    // The kernel looks the tuple up in both directions at once: check
    // that it matched the direction asked for.
    let matched = match dir {
        Dir::Orig => info.entry.orig == *tuple,
        Dir::Reply => info.entry.reply == *tuple,
    };
    Ok(matched.then_some(info))
}

/// One NETLINK_NETFILTER socket speaking ctnetlink. Blocking, with a receive
/// timeout (see [`netlink::DEFAULT_TIMEOUT`]).
#[derive(Debug)]
pub struct Ctnetlink {
    sock: NlSocket,
    /// The conntrack zone of the connections its requests name.
    zone: u16,
}

impl Ctnetlink {
    pub fn open() -> Result<Self, Error> {
        Ok(Ctnetlink {
            sock: NlSocket::open(Subsystem::Ctnetlink)?,
            zone: 0,
        })
    }

    /// Every request about a connection names it in conntrack zone `zone`
    /// from now on (`CTA_ZONE`): a lookup, a delete, the re-created entry
    /// of an adoption, a data connection's entry and its master's lookup
    /// (the kernel finds the master in the new entry's zone). A dump
    /// reads every zone.
    pub fn set_zone(&mut self, zone: u16) {
        self.zone = zone;
    }

    /// Counts this socket's requests and failed requests in `counters`
    /// from now on.
    pub fn count_in(&mut self, counters: NlCounters) {
        self.sock.count_in(counters);
    }

    /// The socket's netlink port id: destroy events of entries its
    /// deletes removed name it.
    pub fn port_id(&self) -> Result<u32, Error> {
        self.sock.port_id()
    }

    /// The socket, to send requests without waiting (`NlSocket::tell`),
    /// hold them or read their refusals.
    pub fn socket(&mut self) -> &mut NlSocket {
        &mut self.sock
    }

    /// Like [`Ctnetlink::set_labels`], not waited for: a refusal is
    /// logged with `note` (what it means) when it is read.
    pub fn tell_labels(
        &mut self,
        orig: &Tuple,
        (labels, mask): (&[u8; 16], &[u8; 16]),
        note: &'static str,
    ) -> Result<(), Error> {
        let msg = in_zone(encode_set_labels(orig, labels, mask)?, self.zone);
        self.sock
            .tell(Op::CtSetLabels, msg, Target::Conn(*orig), note)
    }

    /// Like [`Ctnetlink::set_liberal`], not waited for.
    pub fn tell_liberal(&mut self, orig: &Tuple, note: &'static str) -> Result<(), Error> {
        let msg = in_zone(encode_set_liberal(orig)?, self.zone);
        self.sock
            .tell(Op::CtSetLiberal, msg, Target::Conn(*orig), note)
    }

    /// Like [`Ctnetlink::set_seqadj`], not waited for.
    pub fn tell_seqadj(
        &mut self,
        orig: &Tuple,
        (dir, adj): (Dir, &SeqAdj),
        note: &'static str,
    ) -> Result<(), Error> {
        let msg = in_zone(encode_set_seqadj(orig, dir, adj)?, self.zone);
        self.sock
            .tell(Op::CtSetSeqAdj, msg, Target::Conn(*orig), note)
    }

    /// Sends `msg`; a refusal says what it was about.
    fn request(
        &mut self,
        op: Op,
        target: impl FnOnce() -> Target,
        msg: Vec<u8>,
    ) -> Result<Vec<Message>, Error> {
        let msg = match op {
            Op::CtDump => msg,
            _ => in_zone(msg, self.zone),
        };
        self.sock.transact(op, msg).map_err(|e| e.about(target))
    }

    /// The conntrack entry that has `tuple` as its original (dir=Orig) or
    /// reply (dir=Reply) tuple; Ok(None) if there is none.
    pub fn get(&mut self, tuple: &Tuple, dir: Dir) -> Result<Option<CtEntry>, Error> {
        Ok(self.get_info(tuple, dir)?.map(|i| i.entry))
    }

    /// Like [`Ctnetlink::get`], with status, master, timeout and TCP state.
    pub fn get_info(&mut self, tuple: &Tuple, dir: Dir) -> Result<Option<CtInfo>, Error> {
        let msg = in_zone(encode_get(tuple, dir)?, self.zone);
        let asked = self.sock.ask(Op::CtGet, msg);
        info_of(tuple, dir, asked)
    }

    /// [`Ctnetlink::get_info`] of each of `asks`, asked together (see
    /// `NlSocket::ask_all`): their answers in the same order.
    pub fn get_infos(&mut self, asks: &[(Tuple, Dir)]) -> Vec<Result<Option<CtInfo>, Error>> {
        let mut msgs = Vec::with_capacity(asks.len());
        let mut refused = Vec::new();
        for (i, (tuple, dir)) in asks.iter().enumerate() {
            match encode_get(tuple, *dir) {
                Ok(msg) => msgs.push(in_zone(msg, self.zone)),
                Err(e) => refused.push((i, e)),
            }
        }
        let mut answers = self.sock.ask_all(Op::CtGet, msgs).into_iter();
        let mut refused = refused.into_iter().peekable();
        let mut out = Vec::with_capacity(asks.len());
        for (i, (tuple, dir)) in asks.iter().enumerate() {
            let info = match refused.next_if(|(at, _)| *at == i) {
                Some((_, e)) => Err(e.into()),
                None => match answers.next() {
                    Some(asked) => info_of(tuple, *dir, asked),
                    None => Err(Error::Malformed {
                        op: Op::CtGet,
                        what: Malformed::NoData,
                    }),
                },
            };
            out.push(info);
        }
        out
    }

    /// Creates the data connection's entry, RELATED to `dc.master`, with its
    /// NAT bindings. An entry that already exists is refused with EEXIST;
    /// a missing master with ENOENT ([`Error::Kernel`]).
    pub fn create_related(&mut self, dc: &DataConnection) -> Result<(), Error> {
        let msg = encode_create_related(dc)?;
        let target = || Target::related(dc.tuple, dc.master);
        self.request(Op::CtCreate, target, msg).map(drop)
    }

    /// Turns off TCP window checks on the entry whose original tuple is
    /// `orig` (see [`encode_set_liberal`]). A missing entry is ENOENT.
    pub fn set_liberal(&mut self, orig: &Tuple) -> Result<(), Error> {
        let msg = encode_set_liberal(orig)?;
        self.request(Op::CtSetLiberal, || Target::Conn(*orig), msg)
            .map(drop)
    }

    /// Sets the sequence adjustment of direction `dir` of the entry whose
    /// original tuple is `orig` (see [`encode_set_seqadj`]).
    pub fn set_seqadj(&mut self, orig: &Tuple, dir: Dir, adj: &SeqAdj) -> Result<(), Error> {
        let msg = encode_set_seqadj(orig, dir, adj)?;
        self.request(Op::CtSetSeqAdj, || Target::Conn(*orig), msg)
            .map(drop)
    }

    /// Every TCP entry of the table (others are skipped).
    pub fn dump(&mut self) -> Result<Vec<CtInfo>, Error> {
        let replies = self.request(Op::CtDump, || Target::None, encode_dump())?;
        Ok(replies
            .iter()
            .filter_map(|m| m.nf_attrs().and_then(decode_entry).ok())
            .collect())
    }

    /// Sets the label bits under `mask` (see [`encode_set_labels`]).
    pub fn set_labels(
        &mut self,
        orig: &Tuple,
        labels: &[u8; 16],
        mask: &[u8; 16],
    ) -> Result<(), Error> {
        let msg = encode_set_labels(orig, labels, mask)?;
        self.request(Op::CtSetLabels, || Target::Conn(*orig), msg)
            .map(drop)
    }

    /// Replaces the entry whose original tuple is `orig` by the same entry
    /// made through ctnetlink (see [`encode_adopt`]), so that the kernel
    /// can keep its sequence adjustment; the new entry starts with
    /// `seqadj` (by direction) and the label bits of `labels` (value,
    /// mask). Only while the connection is quiet: a packet between the
    /// delete and the create would make an entry of its own. An entry
    /// that already has an adjustment is left alone. Returns the entry as
    /// it was.
    pub fn adopt(
        &mut self,
        orig: &Tuple,
        seqadj: [Option<SeqAdj>; 2],
        labels: Option<([u8; 16], [u8; 16])>,
    ) -> Result<CtInfo, Error> {
        let Some(info) = self.get_info(orig, Dir::Orig)? else {
            return Err(Error::Kernel {
                op: Op::CtAdopt,
                target: Target::Conn(*orig),
                errno: libc::ENOENT,
            });
        };
        let adjusted = seqadj.iter().any(Option::is_some);
        if adjusted && info.seqadj.iter().any(Option::is_some) {
            return Err(BadRequest::AlreadyAdjusted(*orig).into());
        }
        let mut anew = info;
        if adjusted {
            anew.seqadj = seqadj;
        }
        if let Some((value, mask)) = labels {
            anew.labels = Some(masked_labels(info.labels.unwrap_or_default(), value, mask));
        }
        let msg = encode_adopt(&anew)?;
        self.delete(orig)?;
        self.request(Op::CtAdopt, || Target::Conn(*orig), msg)?;
        Ok(info)
    }

    /// Deletes the entry whose original tuple is `orig`. A missing entry is
    /// refused with ENOENT.
    pub fn delete(&mut self, orig: &Tuple) -> Result<(), Error> {
        let msg = encode_delete(orig)?;
        self.request(Op::CtDelete, || Target::Conn(*orig), msg)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::netlink::{NFGENMSG_LEN, NLA_F_NESTED, NLMSG_HDRLEN};

    fn t(src: &str, dst: &str) -> Tuple {
        Tuple::new(src.parse().unwrap(), dst.parse().unwrap())
    }

    fn attrs(msg: &[u8]) -> Attrs<'_> {
        Attrs::new(&msg[NLMSG_HDRLEN + NFGENMSG_LEN..])
    }

    fn header(msg: &[u8]) -> (u16, u16, u8) {
        let ty = u16::from_ne_bytes([msg[4], msg[5]]);
        let flags = u16::from_ne_bytes([msg[6], msg[7]]);
        (ty, flags, msg[16])
    }

    fn data_connection() -> DataConnection {
        DataConnection {
            tuple: t("198.51.100.7:40000", "203.0.113.1:30000"),
            master: t("198.51.100.7:51000", "203.0.113.1:21"),
            nat_src: None,
            nat_dst: Some(NatBinding {
                addr: "192.0.2.10".parse().unwrap(),
                port: Some(30001),
            }),
            timeout_secs: 120,
            mark: Some(0x42),
        }
    }

    #[test]
    fn get_v4_encodes_tuple_bytes() {
        let tuple = t("192.0.2.1:1234", "192.0.2.2:21");
        let msg = encode_get(&tuple, Dir::Orig).unwrap();
        assert_eq!(header(&msg), (0x0101, 0x0005, netlink::AF_INET));
        // CTA_TUPLE_ORIG(nested) { CTA_TUPLE_IP(nested) { src, dst },
        //   CTA_TUPLE_PROTO(nested) { num, sport, dport } }
        let mut want = Vec::new();
        let nested = |ty: u16| (ty | NLA_F_NESTED).to_ne_bytes();
        want.extend_from_slice(&52u16.to_ne_bytes());
        want.extend_from_slice(&nested(CTA_TUPLE_ORIG));
        want.extend_from_slice(&20u16.to_ne_bytes());
        want.extend_from_slice(&nested(CTA_TUPLE_IP));
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&CTA_IP_V4_SRC.to_ne_bytes());
        want.extend_from_slice(&[192, 0, 2, 1]);
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&CTA_IP_V4_DST.to_ne_bytes());
        want.extend_from_slice(&[192, 0, 2, 2]);
        want.extend_from_slice(&28u16.to_ne_bytes());
        want.extend_from_slice(&nested(CTA_TUPLE_PROTO));
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&CTA_PROTO_NUM.to_ne_bytes());
        want.extend_from_slice(&[6, 0, 0, 0]);
        want.extend_from_slice(&6u16.to_ne_bytes());
        want.extend_from_slice(&CTA_PROTO_SRC_PORT.to_ne_bytes());
        want.extend_from_slice(&[0x04, 0xd2, 0, 0]);
        want.extend_from_slice(&6u16.to_ne_bytes());
        want.extend_from_slice(&CTA_PROTO_DST_PORT.to_ne_bytes());
        want.extend_from_slice(&[0, 21, 0, 0]);
        assert_eq!(&msg[20..], &want[..]);
    }

    #[test]
    fn a_zone_is_appended_as_a_big_endian_u16_and_zone_0_is_unsaid() {
        let tuple = t("192.0.2.1:1234", "192.0.2.2:21");
        let plain = encode_get(&tuple, Dir::Orig).unwrap();
        assert_eq!(in_zone(plain.clone(), 0), plain);
        let zoned = in_zone(plain.clone(), 0x0102);
        assert_eq!(zoned.len(), plain.len() + 8);
        assert_eq!(
            u32::from_ne_bytes([zoned[0], zoned[1], zoned[2], zoned[3]]) as usize,
            zoned.len()
        );
        assert_eq!(&zoned[..4], &(zoned.len() as u32).to_ne_bytes());
        let a = attrs(&zoned);
        assert_eq!(a.require(CTA_ZONE, "zone").unwrap().be16().unwrap(), 0x0102);
        let orig = a.require(CTA_TUPLE_ORIG, "orig").unwrap();
        assert_eq!(decode_tuple(orig.nested()).unwrap(), Some(tuple));
    }

    #[test]
    fn get_by_reply_uses_reply_attribute_and_v6_family() {
        let tuple = t("[2001:db8::1]:2121", "[2001:db8::2]:5000");
        let msg = encode_get(&tuple, Dir::Reply).unwrap();
        assert_eq!(header(&msg).2, netlink::AF_INET6);
        let a = attrs(&msg);
        assert!(a.find(CTA_TUPLE_ORIG).unwrap().is_none());
        let reply = a.require(CTA_TUPLE_REPLY, "reply").unwrap();
        assert_eq!(decode_tuple(reply.nested()).unwrap(), Some(tuple));
    }

    #[test]
    fn tuples_round_trip_v4_and_v6() {
        for tuple in [
            t("192.0.2.1:1", "198.51.100.2:65535"),
            t("[2001:db8::1]:2121", "[2001:db8:ffff::2]:40000"),
        ] {
            let mut b = MsgBuilder::new(0, 0, 0);
            put_tuple(&mut b, CTA_TUPLE_MASTER, &tuple);
            let msg = b.finish();
            let m = attrs(&msg).require(CTA_TUPLE_MASTER, "m").unwrap();
            assert_eq!(decode_tuple(m.nested()).unwrap(), Some(tuple));
        }
    }

    #[test]
    fn create_related_carries_every_required_attribute() {
        let dc = data_connection();
        let msg = encode_create_related(&dc).unwrap();
        let (ty, flags, family) = header(&msg);
        assert_eq!(ty, 0x0100, "CTNETLINK << 8 | CT_NEW");
        assert_eq!(
            flags,
            netlink::NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK
        );
        assert_eq!(family, netlink::AF_INET);
        let a = attrs(&msg);
        let tuple = |k| decode_tuple(a.require(k, "t").unwrap().nested()).unwrap();
        assert_eq!(tuple(CTA_TUPLE_ORIG), Some(dc.tuple));
        assert_eq!(tuple(CTA_TUPLE_REPLY), Some(dc.tuple.reversed()));
        assert_eq!(tuple(CTA_TUPLE_MASTER), Some(dc.master));
        assert_eq!(
            a.require(CTA_TIMEOUT, "timeout").unwrap().be32().unwrap(),
            120
        );
        assert_eq!(a.require(CTA_MARK, "mark").unwrap().be32().unwrap(), 0x42);
        assert_eq!(
            decode_tcp_u8(&a, CTA_PROTOINFO_TCP_STATE).unwrap(),
            Some(TCP_CONNTRACK_SYN_SENT)
        );
        assert!(a.find(CTA_NAT_SRC).unwrap().is_none());

        let nat = a.require(CTA_NAT_DST, "nat").unwrap().nested();
        let ip = |k| nat.require(k, "ip").unwrap().array::<4>().unwrap();
        assert_eq!(ip(CTA_NAT_V4_MINIP), [192, 0, 2, 10]);
        assert_eq!(ip(CTA_NAT_V4_MAXIP), [192, 0, 2, 10]);
        let proto = nat.require(CTA_NAT_PROTO, "proto").unwrap().nested();
        let port = |k| proto.require(k, "port").unwrap().be16().unwrap();
        assert_eq!(port(CTA_PROTONAT_PORT_MIN), 30001);
        assert_eq!(port(CTA_PROTONAT_PORT_MAX), 30001);
    }

    #[test]
    fn nat_without_port_keeps_port_and_v6_uses_v6_attributes() {
        let dc = DataConnection {
            tuple: t("[2001:db8::2]:40000", "[2001:db8::3]:30000"),
            master: t("[2001:db8::2]:51000", "[2001:db8::3]:21"),
            nat_src: Some(NatBinding {
                addr: "2001:db8::4".parse().unwrap(),
                port: None,
            }),
            nat_dst: None,
            timeout_secs: 30,
            mark: None,
        };
        let msg = encode_create_related(&dc).unwrap();
        assert_eq!(header(&msg).2, netlink::AF_INET6);
        let a = attrs(&msg);
        assert!(a.find(CTA_MARK).unwrap().is_none());
        assert!(a.find(CTA_NAT_DST).unwrap().is_none());
        let nat = a.require(CTA_NAT_SRC, "nat").unwrap().nested();
        let min = nat.require(CTA_NAT_V6_MINIP, "min").unwrap();
        assert_eq!(
            IpAddr::from(min.array::<16>().unwrap()),
            dc.nat_src.unwrap().addr
        );
        assert!(nat.find(CTA_NAT_PROTO).unwrap().is_none());
    }

    #[test]
    fn mixed_families_are_refused_before_sending() {
        let mut dc = data_connection();
        dc.nat_dst = Some(NatBinding {
            addr: "2001:db8::1".parse().unwrap(),
            port: None,
        });
        assert_eq!(
            encode_create_related(&dc),
            Err(BadRequest::NatFamily {
                addr: "2001:db8::1".parse().unwrap(),
                tuple: dc.tuple
            })
        );
        let mixed = t("192.0.2.1:1", "[2001:db8::1]:2");
        assert_eq!(
            encode_get(&mixed, Dir::Orig),
            Err(BadRequest::MixedTuple(mixed))
        );
        let mut dc = data_connection();
        dc.master = t("[2001:db8::2]:1", "[2001:db8::3]:21");
        assert_eq!(
            encode_create_related(&dc),
            Err(BadRequest::MasterFamily {
                tuple: dc.tuple,
                master: Box::new(dc.master)
            })
        );
    }

    #[test]
    fn set_liberal_updates_both_directions() {
        let orig = t("192.0.2.1:1234", "192.0.2.2:21");
        let msg = encode_set_liberal(&orig).unwrap();
        let (ty, flags, _) = header(&msg);
        assert_eq!(ty, 0x0100, "CT_NEW without NLM_F_CREATE is an update");
        assert_eq!(flags, netlink::NLM_F_REQUEST | NLM_F_ACK);
        let a = attrs(&msg);
        let tuple = a.require(CTA_TUPLE_ORIG, "orig").unwrap();
        assert_eq!(decode_tuple(tuple.nested()).unwrap(), Some(orig));
        let info = a.require(CTA_PROTOINFO, "info").unwrap().nested();
        let tcp = info.require(CTA_PROTOINFO_TCP, "tcp").unwrap().nested();
        for k in [
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
            CTA_PROTOINFO_TCP_FLAGS_REPLY,
        ] {
            assert_eq!(tcp.require(k, "flags").unwrap().data, &[0x08, 0x08]);
        }
        assert!(tcp.find(CTA_PROTOINFO_TCP_STATE).unwrap().is_none());
    }

    #[test]
    fn delete_names_the_original_tuple() {
        let tuple = t("192.0.2.1:1234", "192.0.2.2:21");
        let msg = encode_delete(&tuple).unwrap();
        assert_eq!(header(&msg).0, 0x0102);
        let a = attrs(&msg);
        let orig = a.require(CTA_TUPLE_ORIG, "orig").unwrap();
        assert_eq!(decode_tuple(orig.nested()).unwrap(), Some(tuple));
    }

    /// A reply as the kernel writes it (ctnetlink_fill_info), built by hand.
    #[test]
    fn decodes_a_kernel_style_entry() {
        let orig = t("192.0.2.2:40000", "192.0.2.3:30000");
        let reply = t("192.0.2.1:30001", "192.0.2.2:40000");
        let master = t("192.0.2.2:51000", "192.0.2.3:21");
        let mut b = MsgBuilder::new(0x0100, 0, netlink::AF_INET);
        put_tuple(&mut b, CTA_TUPLE_ORIG, &orig);
        put_tuple(&mut b, CTA_TUPLE_REPLY, &reply);
        b.put_be32(CTA_STATUS, IPS_EXPECTED | IPS_CONFIRMED | IPS_DST_NAT);
        b.put_be32(CTA_MARK, 7);
        b.put_be32(CTA_TIMEOUT, 119);
        put_tuple(&mut b, CTA_TUPLE_MASTER, &master);
        let info_nest = b.nest_start(CTA_PROTOINFO);
        let tcp = b.nest_start(CTA_PROTOINFO_TCP);
        b.put_u8(CTA_PROTOINFO_TCP_STATE, 1);
        b.nest_end(tcp);
        b.nest_end(info_nest);
        let msg = b.finish();
        let info = decode_entry(attrs(&msg)).unwrap();
        assert_eq!(
            info.entry,
            CtEntry {
                orig,
                reply,
                mark: 7
            }
        );
        assert_eq!(info.master, Some(master));
        assert_eq!(info.status & IPS_EXPECTED, IPS_EXPECTED);
        assert_eq!(info.timeout_secs, Some(119));
        assert_eq!(info.tcp_state, Some(1));
    }

    #[test]
    fn entry_without_tuples_is_malformed() {
        let mut b = MsgBuilder::new(0x0100, 0, netlink::AF_INET);
        b.put_be32(CTA_MARK, 7);
        let msg = b.finish();
        assert_eq!(
            decode_entry(attrs(&msg)),
            Err(Malformed::Missing {
                what: "CTA_TUPLE_ORIG",
                kind: CTA_TUPLE_ORIG
            })
        );
    }

    #[test]
    fn error_messages_name_the_cause() {
        let refused = |op, errno| Error::Kernel {
            op,
            target: Target::related(
                t("192.0.2.1:20", "192.0.2.2:5000"),
                t("192.0.2.2:4000", "192.0.2.1:21"),
            ),
            errno,
        };
        assert_eq!(
            refused(Op::CtCreate, libc::EPERM).to_string(),
            "ctnetlink: permission denied (run as root or with CAP_NET_ADMIN)"
        );
        assert_eq!(
            refused(Op::CtCreate, libc::ENOENT).to_string(),
            "ctnetlink: the master (control connection) of 192.0.2.1:20 -> 192.0.2.2:5000 (master 192.0.2.2:4000 -> 192.0.2.1:21) is not in the conntrack table"
        );
        let gone = Error::Kernel {
            op: Op::CtDelete,
            target: Target::Conn(t("192.0.2.1:20", "192.0.2.2:5000")),
            errno: libc::ENOENT,
        };
        assert_eq!(
            gone.to_string(),
            "ctnetlink: no conntrack entry for 192.0.2.1:20 -> 192.0.2.2:5000"
        );
        assert!(refused(Op::CtSetLiberal, libc::EBUSY)
            .to_string()
            .starts_with("ctnetlink: update 192.0.2.1:20"));
    }

    #[test]
    fn an_adopted_entry_is_the_same_entry_with_its_nat_as_bindings() {
        let orig = t("192.0.2.10:40000", "198.51.100.20:21");
        let adj = SeqAdj {
            correction_pos: 1000,
            offset_before: 2,
            offset_after: -3,
        };
        let info = CtInfo {
            entry: CtEntry {
                orig,
                reply: t("198.51.100.20:21", "198.51.100.1:40000"),
                mark: 7,
            },
            master: None,
            status: IPS_SRC_NAT,
            timeout_secs: Some(120),
            tcp_state: Some(3),
            wscale: [Some(7), None],
            seqadj: [None, Some(adj)],
            labels: Some([1; 16]),
        };
        let msg = encode_adopt(&info).unwrap();
        let (_, flags, _) = header(&msg);
        let create = NLM_F_CREATE | NLM_F_EXCL;
        assert_eq!(flags & create, create, "a new entry, never an update");
        let back = decode_entry(attrs(&msg)).unwrap();
        assert_eq!(back.entry.orig, orig);
        assert_eq!(back.entry.reply, orig.reversed(), "sent un-NATed");
        assert_eq!(back.entry.mark, 7);
        assert_eq!((back.tcp_state, back.wscale), (Some(3), [Some(7), None]));
        assert_eq!(back.seqadj, [None, Some(adj)]);
        assert_eq!(back.labels, Some([1; 16]));
        let a = attrs(&msg);
        let snat = a.find(CTA_NAT_SRC).unwrap().expect("SNAT binding").nested();
        assert_eq!(
            snat.find(CTA_NAT_V4_MINIP)
                .unwrap()
                .expect("ip")
                .array::<4>()
                .unwrap(),
            [198, 51, 100, 1]
        );
        assert!(a.find(CTA_NAT_DST).unwrap().is_none(), "no DNAT");
    }

    #[test]
    fn a_seqadj_update_names_the_entry_and_the_direction() {
        let orig = t("192.0.2.10:40000", "198.51.100.20:21");
        let adj = SeqAdj {
            correction_pos: 5,
            offset_before: 0,
            offset_after: 4,
        };
        let msg = encode_set_seqadj(&orig, Dir::Reply, &adj).unwrap();
        let back = decode_entry_orig_and_seqadj(&msg);
        assert_eq!(back, (orig, [None, Some(adj)]));
    }

    fn decode_entry_orig_and_seqadj(msg: &[u8]) -> (Tuple, [Option<SeqAdj>; 2]) {
        let a = attrs(msg);
        let orig = required_tcp_tuple(&a, CTA_TUPLE_ORIG, "orig").unwrap();
        let adj = [
            decode_seqadj(&a, Dir::Orig).unwrap(),
            decode_seqadj(&a, Dir::Reply).unwrap(),
        ];
        (orig, adj)
    }
}
