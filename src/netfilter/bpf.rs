//! The classic BPF programs of the selective-queueing rules (xt_bpf
//! `--bytecode`, written as `nfbpf_compile` writes them). xt_bpf runs them
//! on the packet from its IP header; `len` is the IP packet's length. They
//! find where the TCP payload starts (IPv4: the header length field; IPv6:
//! a TCP header right after the fixed header, else the program says what
//! it says for other packets). A read past the packet's end stops a
//! program with "no match". xt_bpf takes at most 64 instructions a
//! program.
//!
//! A line ends only at CR LF (RFC 959's Telnet end of line), as the engine
//! reads it: a segment ends a line when its payload ends with CR LF; a
//! last byte LF after anything else (a server echoing a client's bare LF)
//! ends inside a line. A program that lets a segment pass reads only the
//! header shapes it can ([`readable_payload`]); the selector of segments
//! ending inside a line matches every other shape, so what cannot be read
//! is queued.

use std::fmt::Write as _;

use crate::netfilter::classifier::{CLIENT_WORDS, TCP_HEADER_WITH_TIMESTAMPS};
use crate::netfilter::family::Family;

const LDXB_MSH: u16 = 0xb1; // X = 4 * (P[k] & 0xf)
const LDX_IMM: u16 = 0x01; // X = k
const LDB_ABS: u16 = 0x30; // A = P[k]
const LDW_ABS: u16 = 0x20; // A = P[k .. k + 4], big-endian
const LDB_IND: u16 = 0x50; // A = P[X + k]
const LDH_IND: u16 = 0x48; // A = P[X + k .. X + k + 2], big-endian
const LDW_IND: u16 = 0x40; // A = P[X + k .. X + k + 4], big-endian
const LD_MEM: u16 = 0x60; // A = M[k]
const LDX_MEM: u16 = 0x61; // X = M[k]
const ST: u16 = 0x02; // M[k] = A
const AND_K: u16 = 0x54;
const OR_K: u16 = 0x44;
const OR_X: u16 = 0x4c;
const XOR_K: u16 = 0xa4;
const ADD_K: u16 = 0x04;
const RSH_K: u16 = 0x74;
const ADD_X: u16 = 0x0c;
const SUB_K: u16 = 0x14;
const SUB_X: u16 = 0x1c;
const TAX: u16 = 0x07;
const LD_LEN: u16 = 0x80; // A = packet length
const JGT_X: u16 = 0x2d;
const JEQ_X: u16 = 0x1d;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
const IPPROTO_TCP: u32 = 6;
const LINE_FEED: u32 = 0x0a;
/// CR LF, as a big-endian half-word: the end of a line.
const CR_LF: u32 = 0x0d0a;
/// xt_bpf's limit (XT_BPF_MAX_NUM_INSTR).
const MAX_INSNS: usize = 64;

/// Where a jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Match,
    NoMatch,
    /// Over the next N instructions.
    Skip(u32),
    /// The scan step that reads payload byte N.
    Scan(u32),
}

/// One instruction, its jumps still named; `scan`: the scan step that
/// reads payload byte N (a jump target).
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    jt: To,
    jf: To,
    k: u32,
    scan: Option<u32>,
}

fn op(code: u16, k: u32) -> Insn {
    jump(code, k, To::Next, To::Next)
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
    Insn {
        code,
        jt,
        jf,
        k,
        scan: None,
    }
}

/// A = payload byte `at` (X: where the payload starts).
fn scan_step(at: u32) -> Insn {
    Insn {
        scan: Some(at),
        ..op(LDB_IND, at)
    }
}

/// A program ending in MATCH, NO_MATCH, written out with its jumps
/// resolved.
fn assemble(mut body: Vec<Insn>) -> String {
    body.push(op(RET_K, 1));
    body.push(op(RET_K, 0));
    assert!(body.len() <= MAX_INSNS, "{} instructions", body.len());
    let at = |to: To, here: usize| -> u8 {
        let target = match to {
            To::Next => here + 1,
            To::Match => body.len() - 2,
            To::NoMatch => body.len() - 1,
            To::Skip(n) => here + 1 + n as usize,
            To::Scan(n) => body
                .iter()
                .position(|i| i.scan == Some(n))
                .expect("scan step"),
        };
        u8::try_from(target - here - 1).expect("forward jump")
    };
    let mut out = body.len().to_string();
    for (here, i) in body.iter().enumerate() {
        let _ = write!(
            out,
            ",{} {} {} {}",
            i.code,
            at(i.jt, here),
            at(i.jf, here),
            i.k
        );
    }
    out
}

/// X = where the payload starts, A = the packet's length; `other`: where
/// an IPv6 packet whose next header is not TCP goes (extension headers:
/// a shape the programs do not read). [`readable_payload`] says the same.
fn find_payload(family: Family, other: To) -> Vec<Insn> {
    let mut prog = match family {
        Family::V4 => vec![op(LDXB_MSH, 0)],
        Family::V6 => vec![
            op(LDB_ABS, 6),
            jump(JEQ_K, IPPROTO_TCP, To::Next, other),
            op(LDX_IMM, 40),
        ],
    };
    prog.extend([
        op(LDB_IND, 12), // TCP data offset byte
        op(AND_K, 0xf0), //
        op(RSH_K, 2),    // TCP header length
        op(ADD_X, 0),    // both headers
        op(TAX, 0),      //
        op(LD_LEN, 0),   //
    ]);
    prog
}

/// Matches a segment with payload that does not end with CR LF: it ends
/// inside a line, whose rest must be seen too ([`ends_inside_a_line`]).
/// Also matches what it cannot read: IPv6 behind extension headers, a TCP
/// header longer than the packet (the rules after it queue them).
pub fn not_ending_a_line(family: Family) -> String {
    let mut prog = find_payload(family, To::Match);
    prog.extend([
        jump(JGT_X, 0, To::Skip(1), To::Next),
        jump(JEQ_X, 0, To::NoMatch, To::Match), // no payload; header past the end
        op(SUB_X, 0),
        jump(JGE_K, 2, To::Next, To::Match), // one byte: no CR LF
        op(ADD_X, 0),
        op(SUB_K, 2),
        op(TAX, 0),
        op(LDH_IND, 0), // the last two bytes
        jump(JEQ_K, CR_LF, To::NoMatch, To::Match),
    ]);
    assemble(prog)
}

/// Whether a segment with this payload ends inside a line: it has payload
/// and does not end with CR LF (a bare LF or CR last ends no line).
pub fn ends_inside_a_line(payload: &[u8]) -> bool {
    !payload.is_empty() && !payload.ends_with(b"\r\n")
}

/// The TCP payload of the IP packet `ip` where the programs read it: after
/// an IPv4 header of any length, or an IPv6 header whose next header is
/// TCP, and a TCP header of any length. None for the shapes they do not
/// read (IPv6 extension headers; headers past the packet's end): no
/// program lets those pass, and [`not_ending_a_line`] selects them.
pub fn readable_payload(ip: &[u8]) -> Option<&[u8]> {
    let tcp = match ip.first()? >> 4 {
        4 => usize::from(ip[0] & 0x0f) * 4,
        6 if *ip.get(6)? == IPPROTO_TCP as u8 => 40,
        _ => return None,
    };
    let payload = tcp + usize::from(ip.get(tcp + 12)? >> 4) * 4;
    ip.get(payload..)
}

/// Which end of the control connection sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The most programs a plain-line rule has, and the longest payload they
/// vouch for.
pub const PLAIN_PROGRAMS: usize = 5;
pub const PLAIN_MAX: usize = plain_max(PLAIN_PROGRAMS);
/// Payload bytes the first program scans for a line feed; each of the
/// next programs scans `NEXT_SCAN` more (what fits in 64 instructions).
const FIRST_SCAN: usize = 10;
const NEXT_SCAN: usize = 17;

/// The longest payload `programs` plain-line programs vouch for.
pub const fn plain_max(programs: usize) -> usize {
    1 + FIRST_SCAN + NEXT_SCAN * (programs - 1)
}

/// What the plain-line programs match, all of them on one packet: a
/// payload of at most `PLAIN_MAX` bytes that is one whole line (it ends
/// with CR LF, and holds no other line feed) and cannot matter to ftpct:
/// from a client,
/// a line whose first four bytes are none of PORT, EPRT, PASV, EPSV, AUTH
/// in any case (the engine reads a command's keyword there and nowhere
/// else); from a server, a line that does not start with 227, 229 or 234
/// and does not open a multi-line reply (`xyz-`). Shorter than four bytes:
/// no match (the programs do not prove it). The segment starts a line: one
/// whose direction last ended inside a line is guarded and queued before
/// these rules. The programs read it only in [`readable_payload`]'s shapes.
pub fn is_plain_line(payload: &[u8], side: Side) -> bool {
    let Some(head) = one_whole_line(payload, PLAIN_MAX) else {
        return false;
    };
    match side {
        Side::Client => !client_keywords().contains(&(head | CASE_BITS)),
        Side::Server => !server_codes().contains(&(head >> 8)) && head & 0xff != u32::from(b'-'),
    }
}

/// The longest passive request line the passive-request program vouches
/// for ("EPSV ALL\r\n" is 10 bytes).
pub const PASSIVE_MAX: usize = plain_max(1);

/// What the passive-request program matches: a client segment that is one
/// whole line of at most [`PASSIVE_MAX`] bytes starting with PASV or EPSV
/// in any case (the engine reads a command's keyword there). The segment
/// starts a line: one whose direction last ended inside a line is guarded
/// and queued before this rule.
pub fn is_passive_request(payload: &[u8]) -> bool {
    one_whole_line(payload, PASSIVE_MAX)
        .is_some_and(|head| passive_keywords().contains(&(head | CASE_BITS)))
}

/// The first four bytes, big-endian, of a payload of at most `max` bytes
/// that ends with CR LF and holds no line feed before it; None otherwise,
/// and for fewer than four bytes (the programs do not prove those).
fn one_whole_line(payload: &[u8], max: usize) -> Option<u32> {
    let body = payload.strip_suffix(b"\r\n")?;
    let head = payload.get(..4)?;
    let whole = payload.len() <= max && !body.contains(&b'\n');
    whole.then(|| u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

/// The bit that tells an ASCII letter's cases apart, in each byte.
const CASE_BITS: u32 = 0x2020_2020;

fn client_keywords() -> [u32; 5] {
    CLIENT_WORDS.map(|w| u32::from_be_bytes(word4(w.to_ascii_lowercase().as_bytes())))
}

fn passive_keywords() -> [u32; 2] {
    [b"pasv", b"epsv"].map(|w| u32::from_be_bytes(*w))
}

fn server_codes() -> [u32; 3] {
    [b"227", b"229", b"234"].map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]]))
}

fn word4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// The `programs` xt_bpf programs (1 to [`PLAIN_PROGRAMS`]) that together
/// compute [`is_plain_line`] for a segment of `side` whose payload is at
/// most [`plain_max`]`(programs)` bytes (each scans part of the payload for
/// a line feed; each match costs about as much as the next, whatever its
/// length, so short lines get a rule of fewer).
pub fn plain_line(family: Family, side: Side, programs: usize) -> Vec<String> {
    plain_line_or(family, side, programs, To::NoMatch)
}

/// [`plain_line`], but the programs also match a segment without payload
/// (an ACK): one rule for both, two matches fewer for a plain line.
pub fn empty_or_plain_line(family: Family, side: Side, programs: usize) -> Vec<String> {
    plain_line_or(family, side, programs, To::Match)
}

/// The plain-line programs; a segment without payload goes to `empty`
/// (the later programs match it: they find no line feed).
fn plain_line_or(family: Family, side: Side, programs: usize, empty: To) -> Vec<String> {
    let mut first = line_start(family, plain_max(programs), empty);
    // The fourth byte: the first word again, from X.
    first.extend(start_tests(side, &[op(LDW_IND, 0), op(AND_K, 0xff)]));
    first.push(op(LD_MEM, 0));
    first.extend(scan_for_line_feed(0, FIRST_SCAN as u32));
    let mut assembled = vec![assemble(first)];
    for n in 0..programs.saturating_sub(1) as u32 {
        let from = FIRST_SCAN as u32 + n * NEXT_SCAN as u32;
        let mut next = find_payload(family, To::NoMatch);
        next.push(op(SUB_X, 0));
        next.extend(scan_for_line_feed(from, from + NEXT_SCAN as u32));
        assembled.push(assemble(next));
    }
    assembled
}

/// With A = a line's first four bytes: no match if the line can matter
/// (`is_plain_line`'s tests); `fourth_byte` loads its fourth byte into A
/// (a server's multi-line opener has a hyphen there).
fn start_tests(side: Side, fourth_byte: &[Insn]) -> Vec<Insn> {
    let mut prog = Vec::new();
    match side {
        Side::Client => {
            prog.push(op(OR_K, CASE_BITS));
            prog.extend(client_keywords().map(|w| jump(JEQ_K, w, To::NoMatch, To::Next)));
        }
        Side::Server => {
            prog.push(op(RSH_K, 8));
            prog.extend(server_codes().map(|c| jump(JEQ_K, c, To::NoMatch, To::Next)));
            prog.extend_from_slice(fourth_byte);
            prog.push(jump(JEQ_K, u32::from(b'-'), To::NoMatch, To::Next));
        }
    }
    prog
}

/// The longest payload the quick plain-line program vouches for.
pub const QUICK_PLAIN_MAX: usize = 16;
/// Where the payload starts in a segment of the common shape: an IPv4
/// header without options or an IPv6 header followed by TCP, and a TCP
/// header with the timestamps option (32 bytes), as Linux sends them.
const fn common_payload_at(family: Family) -> u32 {
    let ip = match family {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    ip + TCP_HEADER_WITH_TIMESTAMPS as u32
}

/// The TCP flags that open or close a connection: segments with any of
/// them are for the rules that follow the quick one.
const SYN_FIN_RST: u32 = 0x07;

/// One xt_bpf program that matches a subset of what the short plain-line
/// rule's two do, on the segments most of a session is made of: a segment
/// of the common shape ([`common_payload_at`]) without SYN, FIN or RST,
/// and without payload, or whose payload is one whole line of 5 to
/// [`QUICK_PLAIN_MAX`] bytes that [`is_plain_line`] calls plain. It reads the payload by words at fixed
/// offsets, which the kernel loads inline, where the byte-by-byte scan of
/// the general programs calls a helper for each byte: a NOOP or its reply
/// costs one match and a handful of loads instead of two matches and
/// about thirty. Other segments: no match (the rules after it decide).
pub fn quick_plain_line(family: Family, side: Side) -> String {
    let at = common_payload_at(family);
    let tcp = at - TCP_HEADER_WITH_TIMESTAMPS as u32;
    let mut prog = match family {
        Family::V4 => vec![op(LDB_ABS, 0), jump(JEQ_K, 0x45, To::Next, To::NoMatch)],
        Family::V6 => vec![
            op(LDB_ABS, 6),
            jump(JEQ_K, IPPROTO_TCP, To::Next, To::NoMatch),
        ],
    };
    prog.extend([
        op(LDB_ABS, tcp + 12), // TCP data offset byte
        op(AND_K, 0xf0),
        jump(JEQ_K, 0x80, To::Next, To::NoMatch), // 32 bytes
        op(LDB_ABS, tcp + 13),
        op(AND_K, SYN_FIN_RST),
        jump(JEQ_K, 0, To::Next, To::NoMatch),
        op(LD_LEN, 0),
        op(SUB_K, at), // A = payload length L
        jump(JEQ_K, 0, To::Match, To::Next),
        jump(JGT_K, QUICK_PLAIN_MAX as u32, To::NoMatch, To::Next),
        op(ST, 0),
        // The last four bytes: CR LF last, no line feed before them.
        // L < 4 reads before the payload, but the keyword's read below
        // then goes past the packet's end: no match.
        op(ADD_K, at - 4),
        op(TAX, 0),
        op(LDW_IND, 0),
    ]);
    prog.extend(word_test(Word::EndsWithCrLf));
    prog.push(op(LDW_ABS, at));
    prog.extend(start_tests(side, &[op(LDB_ABS, at + 3)]));
    // Bytes 0 to 4n - 1, n = (L - 1) / 4 words, have no line feed: with
    // the last four bytes, all of the payload but its CR LF. Jump to
    // the highest word, fall through to the first.
    let words = (QUICK_PLAIN_MAX as u32 - 1) / 4;
    prog.push(op(LD_MEM, 0));
    for n in (2..=words).rev() {
        let fewer = if n == 2 { To::Scan(0) } else { To::Next };
        prog.push(jump(JGE_K, 4 * n + 1, To::Scan(4 * (n - 1)), fewer));
    }
    for word in (0..words).rev() {
        prog.push(Insn {
            scan: Some(4 * word),
            ..op(LDW_ABS, at + 4 * word)
        });
        prog.extend(word_test(Word::NoLineFeed));
    }
    assemble(prog)
}

/// What [`word_test`] requires of four payload bytes.
#[derive(Debug, Clone, Copy)]
enum Word {
    /// No line feed.
    NoLineFeed,
    /// CR LF last, no line feed before them: the end of a line.
    EndsWithCrLf,
}

impl Word {
    /// The byte each byte is compared with, and the top bits that the
    /// comparison must leave: set where the bytes differ, clear where they
    /// must be equal.
    fn pattern(self) -> (u32, u32) {
        let line_feeds = LINE_FEED * 0x0101_0101;
        match self {
            Word::NoLineFeed => (line_feeds, 0x8080_8080),
            Word::EndsWithCrLf => ((line_feeds & !0xffff) | CR_LF, 0x8080_0000),
        }
    }
}

/// With A = four payload bytes: no match unless they are what `word`
/// says. After an XOR with the pattern, a byte b is zero where it equals
/// its pattern byte; ((b & 0x7f) + 0x7f) | b has its top bit set exactly
/// when b is not zero, and no byte carries into the next. Clobbers X.
fn word_test(word: Word) -> [Insn; 7] {
    let (pattern, expect) = word.pattern();
    [
        op(XOR_K, pattern),
        op(TAX, 0),
        op(AND_K, 0x7f7f_7f7f),
        op(ADD_K, 0x7f7f_7f7f),
        op(OR_X, 0),
        op(AND_K, 0x8080_8080),
        jump(JEQ_K, expect, To::Next, To::NoMatch),
    ]
}

/// The xt_bpf program that computes [`is_passive_request`].
pub fn passive_request(family: Family) -> String {
    let [pasv, epsv] = passive_keywords();
    let mut prog = line_start(family, PASSIVE_MAX, To::NoMatch);
    prog.extend([
        op(OR_K, CASE_BITS),
        jump(JEQ_K, pasv, To::Skip(1), To::Next),
        jump(JEQ_K, epsv, To::Next, To::NoMatch),
        op(LD_MEM, 0),
    ]);
    prog.extend(scan_for_line_feed(0, FIRST_SCAN as u32));
    assemble(prog)
}

/// The start of a program that reads one line: no match unless the
/// payload is 1 to `max` bytes (an empty one goes to `empty`) and ends
/// with CR LF; then M[0] = the payload length, X = where it starts, A =
/// its first four bytes (a read past the end: no match, so a payload of
/// one byte, whose CR LF read takes a header byte, never matches).
fn line_start(family: Family, max: usize, empty: To) -> Vec<Insn> {
    let mut prog = find_payload(family, To::NoMatch);
    prog.extend([
        op(SUB_X, 0), // A = payload length
        jump(JEQ_K, 0, empty, To::Next),
        jump(JGT_K, max as u32, To::NoMatch, To::Next),
        op(ST, 0),
        op(SUB_K, 2),
        op(ADD_X, 0),
        op(TAX, 0),
        op(LDH_IND, 0), // the payload's last two bytes
        jump(JEQ_K, CR_LF, To::Next, To::NoMatch),
        op(LDX_MEM, 0), //
        op(LD_LEN, 0),  //
        op(SUB_X, 0),   //
        op(TAX, 0),     // X = where the payload starts again
        op(LDW_IND, 0), // the first four bytes
    ]);
    prog
}

/// With A = the payload length P and X = where it starts: no match if a
/// payload byte in `from..to` before the last (0-based, under P - 1) is a
/// line feed. Jumps into an unrolled scan at the highest such byte.
fn scan_for_line_feed(from: u32, to: u32) -> Vec<Insn> {
    let mut prog = vec![
        jump(JGE_K, from + 2, To::Next, To::Match), // no byte of this range
        jump(JGT_K, to, To::Scan(to - 1), To::Next), // the whole range
    ];
    // P - 1 = top + 1 bytes before the last: scan from `top` down.
    for top in (from..to - 1).rev() {
        let last_choice = top == from;
        let otherwise = if last_choice { To::NoMatch } else { To::Next };
        prog.push(jump(JEQ_K, top + 2, To::Scan(top), otherwise));
    }
    for at in (from..to).rev() {
        prog.push(scan_step(at));
        prog.push(jump(JEQ_K, LINE_FEED, To::NoMatch, To::Next));
    }
    prog
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_testkit::{Ipv6Ext, Shape};

    /// A program parsed once, for the interpreter: (code, jt, jf, k) each.
    struct Prog(Vec<(u16, usize, usize, u32)>);

    impl Prog {
        fn new(prog: &str) -> Prog {
            let mut parts = prog.split(',');
            let count = parts.next().expect("a count");
            let insns: Vec<_> = parts
                .map(|i| {
                    let w: Vec<u32> = i.split(' ').map(|w| w.parse().expect("number")).collect();
                    (w[0] as u16, w[1] as usize, w[2] as usize, w[3])
                })
                .collect();
            assert_eq!(count, insns.len().to_string());
            assert!(insns.len() <= MAX_INSNS);
            Prog(insns)
        }

        /// A classic BPF interpreter for the instructions above, on
        /// `packet`; a read past its end stops with "no match", as in the
        /// kernel.
        fn matches(&self, packet: &[u8]) -> bool {
            let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
            let mut mem = [0u32; 16];
            let read = |at: u32, size: usize| {
                let at = at as usize;
                let bytes = packet.get(at..at.checked_add(size)?)?;
                Some(bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b)))
            };
            loop {
                let (code, jt, jf, k) = self.0[pc];
                pc += 1;
                let jump = |taken: bool| if taken { jt } else { jf };
                let load = match code {
                    LDB_ABS => Some((k, 1)),
                    LDW_ABS => Some((k, 4)),
                    LDB_IND => Some((x.wrapping_add(k), 1)),
                    LDH_IND => Some((x.wrapping_add(k), 2)),
                    LDW_IND => Some((x.wrapping_add(k), 4)),
                    _ => None,
                };
                if let Some((at, size)) = load {
                    match read(at, size) {
                        Some(v) => a = v,
                        None => return false,
                    }
                    continue;
                }
                match code {
                    LDXB_MSH => match read(k, 1) {
                        Some(b) => x = 4 * (b & 0xf),
                        None => return false,
                    },
                    LDX_IMM => x = k,
                    LD_MEM => a = mem[k as usize],
                    LDX_MEM => x = mem[k as usize],
                    ST => mem[k as usize] = a,
                    AND_K => a &= k,
                    OR_K => a |= k,
                    OR_X => a |= x,
                    XOR_K => a ^= k,
                    ADD_K => a = a.wrapping_add(k),
                    RSH_K => a >>= k,
                    ADD_X => a = a.wrapping_add(x),
                    SUB_K => a = a.wrapping_sub(k),
                    SUB_X => a = a.wrapping_sub(x),
                    TAX => x = a,
                    LD_LEN => a = packet.len() as u32,
                    JGT_X => pc += jump(a > x),
                    JEQ_X => pc += jump(a == x),
                    JGT_K => pc += jump(a > k),
                    JGE_K => pc += jump(a >= k),
                    JEQ_K => pc += jump(a == k),
                    RET_K => return k != 0,
                    other => panic!("instruction {other}"),
                }
            }
        }
    }

    fn run(prog: &str, packet: &[u8]) -> bool {
        Prog::new(prog).matches(packet)
    }

    /// Whether every program of a rule matches.
    fn all_match(programs: &[Prog], packet: &[u8]) -> bool {
        programs.iter().all(|p| p.matches(packet))
    }

    fn parsed(programs: Vec<String>) -> Vec<Prog> {
        programs.iter().map(|p| Prog::new(p)).collect()
    }

    /// The common shape (TCP timestamps), and TCP without options.
    const COMMON: Shape = Shape::tcp(32);
    const NO_TIMESTAMPS: Shape = Shape::tcp(20);

    /// The shapes a segment can come in: TCP headers of 20 to 60 bytes,
    /// IPv4 options, IPv6 extension headers.
    fn shapes(family: Family) -> Vec<Shape> {
        let mut shapes = [32, 20, 24, 40, 60].map(Shape::tcp).to_vec();
        use Ipv6Ext::{DestinationOptions, HopByHop, Routing};
        let odd: [(usize, &'static [Ipv6Ext], usize); 4] = match family {
            Family::V4 => [(4, &[], 32), (40, &[], 20), (8, &[], 60), (12, &[], 28)],
            Family::V6 => [
                (0, &[HopByHop], 32),
                (0, &[DestinationOptions], 20),
                (0, &[Routing], 40),
                (0, &[HopByHop, DestinationOptions], 20),
            ],
        };
        shapes.extend(odd.map(|(ipv4_options, ipv6_ext, tcp_header)| Shape {
            ipv4_options,
            ipv6_ext,
            tcp_header,
        }));
        shapes
    }

    fn segment(family: Family, shape: Shape, side: Side, payload: &[u8]) -> Vec<u8> {
        let (client, server) = match family {
            Family::V4 => ("192.0.2.10:40000", "198.51.100.20:21"),
            Family::V6 => ("[2001:db8::10]:40000", "[2001:db8:2::20]:21"),
        };
        let t = match side {
            Side::Client => ftpct_testkit::tuple(client, server),
            Side::Server => ftpct_testkit::tuple(server, client),
        };
        shape.build(ftpct_testkit::Segment::new(t, 1).ack(1).payload(payload))
    }

    fn v4(payload: &[u8]) -> Vec<u8> {
        segment(Family::V4, COMMON, Side::Client, payload)
    }

    /// Payloads of `len` bytes starting with `head` (padded), ending each
    /// way a segment can: CR LF, a bare LF, a CR, another byte; each also
    /// with a line feed, and a CR LF, at every place before that end (past
    /// the quick program's limit: a line feed, before a CR LF only, what
    /// the general programs scan for).
    fn line_ends_everywhere(head: &[u8], len: usize) -> Vec<Vec<u8>> {
        let padded = head.iter().copied().chain(std::iter::repeat(b'a'));
        let body: Vec<u8> = padded.take(len).collect();
        let short = len <= QUICK_PLAIN_MAX + 4;
        let mut out = Vec::new();
        for tail in [&b"\r\n"[..], b"\n", b"\r", b"x"] {
            let Some(end) = len.checked_sub(tail.len()) else {
                continue;
            };
            let mut ending = body.clone();
            ending[end..].copy_from_slice(tail);
            let inner: &[&[u8]] = match (short, tail == b"\r\n") {
                (true, _) => &[b"\n", b"\r\n"],
                (false, true) => &[b"\n"],
                (false, false) => &[],
            };
            for put in inner {
                for at in 0..(end + 1).saturating_sub(put.len()) {
                    let mut more = ending.clone();
                    more[at..at + put.len()].copy_from_slice(put);
                    out.push(more);
                }
            }
            out.push(ending);
        }
        out
    }

    /// What a rule of `programs` plain-line programs lets pass, `empty`:
    /// segments without payload too.
    fn plain_spec(packet: &[u8], side: Side, programs: usize, empty: bool) -> bool {
        readable_payload(packet).is_some_and(|p| {
            (empty && p.is_empty()) || (is_plain_line(p, side) && p.len() <= plain_max(programs))
        })
    }

    fn shown(payload: &[u8]) -> String {
        String::from_utf8_lossy(payload).into_owned()
    }

    /// `program` on each payload from each of `sides`, in every shape of
    /// `family`: it matches exactly the packets `spec` says.
    fn check_program(
        program: &Prog,
        family: Family,
        sides: &[Side],
        payloads: &[Vec<u8>],
        spec: impl Fn(&[u8]) -> bool,
    ) {
        for shape in shapes(family) {
            for &side in sides {
                for payload in payloads {
                    let packet = segment(family, shape, side, payload);
                    assert_eq!(
                        program.matches(&packet),
                        spec(&packet),
                        "{family:?} {side:?} {shape:?} {:?}",
                        shown(payload)
                    );
                }
            }
        }
    }

    /// Payloads, and whether a segment with one ends inside a line: a
    /// bare LF, a lone LF or CR ends none.
    const LINE_ENDS: [(&[u8], bool); 10] = [
        (b"NOOP\r\n", false),
        (b"", false),
        (b"\r\n", false),
        (b"NOOP", true),
        (b"NOOP\r", true),
        (b"550 /x\n", true),
        (b"\n", true),
        (b"\r", true),
        (b"NOOP\n\r", true),
        (b"NOOP\r\n\n", true),
    ];

    #[test]
    fn where_a_line_ends() {
        for (payload, inside) in LINE_ENDS {
            assert_eq!(ends_inside_a_line(payload), inside, "{:?}", shown(payload));
        }
    }

    /// Every length with CR and LF at every place, in every shape: the
    /// program matches exactly what does not end with CR LF, and every
    /// shape it cannot read.
    #[test]
    fn not_ending_a_line_selects_what_ends_inside_a_line_or_cannot_be_read() {
        let mut payloads = vec![Vec::new()];
        for len in 1..=8 {
            payloads.extend(line_ends_everywhere(b"", len));
        }
        payloads.push(b"550 /x\n".to_vec());
        for family in [Family::V4, Family::V6] {
            let program = Prog::new(&not_ending_a_line(family));
            check_program(
                &program,
                family,
                &[Side::Client, Side::Server],
                &payloads,
                |p| readable_payload(p).is_none_or(ends_inside_a_line),
            );
            // A TCP header longer than the packet: unreadable.
            let mut short = segment(family, NO_TIMESTAMPS, Side::Client, b"");
            let tcp = if family == Family::V4 { 20 } else { 40 };
            short[tcp + 12] = 0xf0;
            assert_eq!(readable_payload(&short), None);
            assert!(program.matches(&short), "{family:?}");
        }
        let open = Prog::new(&not_ending_a_line(Family::V4));
        for (payload, inside) in LINE_ENDS {
            assert_eq!(open.matches(&v4(payload)), inside, "{:?}", shown(payload));
        }
    }

    #[test]
    fn plain_lines_by_example() {
        use Side::{Client, Server};
        let plain = |side, p: &[u8]| is_plain_line(p, side);
        assert!(plain(Client, b"NOOP\r\n"));
        assert!(plain(Client, b"RETR 1k.bin\r\n"));
        assert!(
            plain(Client, b"NOOP PORT\r\n"),
            "the keyword is read at the start"
        );
        assert!(plain(Client, b"NOOP\rPORT\r\n"), "a bare CR ends no line");
        assert!(!plain(Client, b"port 1,2,3,4,5,6\r\n"));
        assert!(!plain(Client, b"Epsv\r\n"));
        assert!(!plain(Client, b"AUTH TLS\r\n"));
        assert!(!plain(Client, b"NOOP\r\nPASV\r\n"), "two lines");
        assert!(!plain(Client, b"NOOP"), "inside a line");
        assert!(!plain(Client, b"NOOP\n"), "a bare line feed ends no line");
        assert!(!plain(Client, b"NOOP\r"), "nor does a CR");
        assert!(!plain(Client, b"\r\n"), "too short to read");
        assert!(!plain(Client, &[b'x'; PLAIN_MAX + 1]));
        assert!(plain(Server, b"200 NOOP ok.\r\n"));
        assert!(plain(Server, b"226 Transfer complete - 1024 bytes\r\n"));
        assert!(!plain(Server, b"550 /x\n"), "an echoed bare line feed");
        assert!(!plain(Server, b"550 /x\n227 (1,2,3,4,5,6)\r\n"));
        assert!(!plain(
            Server,
            b"227 Entering Passive Mode (1,2,3,4,5,6)\r\n"
        ));
        assert!(!plain(Server, b"229 (|||5000|)\r\n"));
        assert!(!plain(Server, b"234 go\r\n"));
        assert!(!plain(Server, b"211-Features\r\n"));
        assert!(plain(Server, b"PASV\r\n"), "client words mean nothing here");
    }

    /// The heads the rules look for, and near misses, each in lines ending
    /// every way.
    fn keyword_lines() -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        for head in [
            "PORT", "port", "PoRt", "EPRT", "PASV", "EPSV", "AUTH", "auth", "P0RT", "PORS", "227 ",
            "229 ", "234 ", "227-", "200-", "200 ", "22 7", "2277",
        ] {
            for tail in ["\r\n", " x\r\n", " 1,2,3,4,5,6\r\n", "\n", " x\n", " x\r"] {
                payloads.push(format!("{head}{tail}").into_bytes());
            }
        }
        payloads
    }

    /// The plain-line rules' programs on `payloads` in the shapes `shapes`:
    /// they compute exactly `plain_spec` (`is_plain_line` where the
    /// programs read the payload), with the empty case or without, with 1,
    /// 2 and all programs.
    fn check_plain_programs(payloads: &[Vec<u8>], shapes: &dyn Fn(Family) -> Vec<Shape>) {
        for family in [Family::V4, Family::V6] {
            for side in [Side::Client, Side::Server] {
                let rules: Vec<_> = [PLAIN_PROGRAMS, 2, 1]
                    .into_iter()
                    .flat_map(|programs| {
                        let plain = (programs, false, plain_line(family, side, programs));
                        let or_empty =
                            (programs, true, empty_or_plain_line(family, side, programs));
                        [plain, or_empty]
                    })
                    .map(|(programs, empty, rule)| (programs, empty, parsed(rule)))
                    .collect();
                for shape in shapes(family) {
                    for payload in payloads {
                        let packet = segment(family, shape, side, payload);
                        for (programs, empty, rule) in &rules {
                            assert_eq!(
                                all_match(rule, &packet),
                                plain_spec(&packet, side, *programs, *empty),
                                "{family:?} {side:?} {shape:?} {programs} programs, empty {empty}: {:?}",
                                shown(payload)
                            );
                        }
                    }
                }
            }
        }
    }

    /// Every payload length up to past the limit, line feeds at every
    /// place and every line end, keywords and near-keywords, in the common
    /// shapes and one more of each family.
    #[test]
    fn the_plain_line_programs_compute_is_plain_line() {
        let mut payloads: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=PLAIN_MAX + 2 {
            payloads.extend(line_ends_everywhere(b"", len));
        }
        payloads.extend(keyword_lines());
        check_plain_programs(&payloads, &|family| {
            let odd = shapes(family).pop().expect("a shape");
            vec![COMMON, NO_TIMESTAMPS, odd]
        });
    }

    /// Every shape: TCP headers of 20 to 60 bytes and IPv4 options are
    /// read where they put the payload, IPv6 extension headers are never
    /// let pass (not even a segment without payload).
    #[test]
    fn the_plain_line_programs_read_every_header_shape_or_let_nothing_pass() {
        let mut payloads: Vec<Vec<u8>> = vec![Vec::new()];
        for len in [4, 6, 11, 12, 28, 29, PLAIN_MAX] {
            payloads.extend(line_ends_everywhere(b"NOOP", len));
        }
        payloads.extend(keyword_lines());
        check_plain_programs(&payloads, &shapes);
        for family in [Family::V4, Family::V6] {
            for shape in shapes(family) {
                let packet = segment(family, shape, Side::Client, b"NOOP\r\n");
                let plain = parsed(plain_line(family, Side::Client, 2));
                let extension_headers = !shape.ipv6_ext.is_empty();
                assert_eq!(all_match(&plain, &packet), !extension_headers, "{shape:?}");
            }
        }
    }

    /// Whether a packet has the common shape the quick program reads.
    fn common_shape(family: Family, packet: &[u8]) -> bool {
        let (ip, tcp) = match family {
            Family::V4 => (packet[0] == 0x45, 20),
            Family::V6 => (packet[6] == IPPROTO_TCP as u8, 40),
        };
        ip && usize::from(packet[tcp + 12] >> 4) * 4 == TCP_HEADER_WITH_TIMESTAMPS
    }

    /// Every length up to past its limit, line feeds and CR LF at every
    /// place and every line end, keywords and near misses, both families
    /// and sides, in every shape: the quick program matches exactly the
    /// segments of the common shape that are empty or one plain line of 5
    /// to `QUICK_PLAIN_MAX` bytes, so never one the short rule would not
    /// let pass.
    #[test]
    fn the_quick_program_lets_pass_common_short_plain_segments_only() {
        let mut payloads: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=QUICK_PLAIN_MAX + 3 {
            payloads.extend(line_ends_everywhere(b"", len));
            for head in [
                "PORT", "ePsV", "AUTH", "PORS", "227 ", "229-", "234 ", "200-", "2277",
            ] {
                if len >= 4 {
                    payloads.extend(line_ends_everywhere(head.as_bytes(), len));
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            for side in [Side::Client, Side::Server] {
                let program = Prog::new(&quick_plain_line(family, side));
                let short = parsed(empty_or_plain_line(family, side, 2));
                for shape in shapes(family) {
                    // The quick program reads fixed places: the other shapes
                    // need a sample of the payloads only.
                    let step = if shape == COMMON || shape == NO_TIMESTAMPS {
                        1
                    } else {
                        7
                    };
                    for payload in payloads.iter().step_by(step) {
                        let packet = segment(family, shape, side, payload);
                        let len = payload.len();
                        let short_plain =
                            (5..=QUICK_PLAIN_MAX).contains(&len) && is_plain_line(payload, side);
                        let expected = common_shape(family, &packet) && (len == 0 || short_plain);
                        let quick = program.matches(&packet);
                        assert_eq!(
                            quick,
                            expected,
                            "{family:?} {side:?} {shape:?} {:?}",
                            shown(payload)
                        );
                        assert!(!quick || all_match(&short, &packet), "a subset");
                    }
                }
            }
        }
        assert!(run(
            &quick_plain_line(Family::V4, Side::Server),
            &segment(Family::V4, COMMON, Side::Server, b"200 NOOP ok.\r\n")
        ));
        // A handshake, a close, a reset: for the rules after it.
        let (client, server) = ("192.0.2.10:40000", "198.51.100.20:21");
        let t = ftpct_testkit::tuple(client, server);
        let base = || ftpct_testkit::Segment::new(t, 1).timestamps(1, 2);
        let quick = Prog::new(&quick_plain_line(Family::V4, Side::Client));
        assert!(quick.matches(&base().ack(1).build()), "an ACK");
        for flagged in [
            base().syn(),
            base().syn().ack(1),
            base().ack(1).fin(),
            base().rst(),
        ] {
            assert!(!quick.matches(&flagged.build()));
        }
        assert!(!quick.matches(&base().ack(1).fin().payload(b"NOOP\r\n").build()));
    }

    /// Every length up to past the limit with CR and LF at every place,
    /// the keywords in any case beside near misses, every shape: the
    /// program computes exactly `is_passive_request` where it reads the
    /// payload.
    #[test]
    fn the_passive_request_program_computes_is_passive_request() {
        assert!(is_passive_request(b"PASV\r\n"));
        assert!(is_passive_request(b"epsv ALL\r\n"));
        assert!(is_passive_request(b"EpSv 2\r\n"));
        assert!(!is_passive_request(b"PORT 1,2,3,4,5,6\r\n"));
        assert!(!is_passive_request(b"PASV\r\nRETR x\r\n"), "two lines");
        assert!(!is_passive_request(b"PASV"), "inside a line");
        assert!(!is_passive_request(b"PASV\n"), "a bare line feed");
        assert!(
            !is_passive_request(b"PASV xxxxxxx\r\n"),
            "longer than vouched for"
        );
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for len in 1..=PASSIVE_MAX + 2 {
            for head in [
                "PASV", "pasv", "EPSV", "ePsV", "PASW", "EPRT", "PORT", "xxxx",
            ] {
                payloads.extend(line_ends_everywhere(head.as_bytes(), len));
            }
        }
        for family in [Family::V4, Family::V6] {
            let program = Prog::new(&passive_request(family));
            check_program(&program, family, &[Side::Client], &payloads, |p| {
                readable_payload(p).is_some_and(is_passive_request)
            });
        }
    }
}
