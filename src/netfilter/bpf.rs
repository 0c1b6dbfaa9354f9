//! The classic BPF programs of the selective-queueing rules (xt_bpf
//! `--bytecode`, written as `nfbpf_compile` writes them), generated from
//! the selection rule's data and computing its functions
//! (`ftpct_engine::classifier`: the words, codes, header shapes and line
//! lengths come from there). xt_bpf runs them
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
//! header shapes it can (`classifier::readable_payload`); the selector of
//! segments ending inside a line matches every other shape, so what cannot
//! be read is queued.

use std::fmt::Write as _;

use ftpct_engine::classifier::{
    common_payload_at, plain_max, Ip, CLIENT_WORDS, FIRST_SCAN, IPPROTO_TCP, LINE_END,
    MULTI_LINE_OPENER, NEXT_SCAN, PASSIVE_MAX, PASSIVE_WORDS, QUICK_PLAIN_MAX, SERVER_CODES,
    TCP_HEADER_WITH_TIMESTAMPS,
};
pub use ftpct_engine::classifier::{Side, PLAIN_PROGRAMS};

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
const LINE_FEED: u32 = LINE_END[1] as u32;
/// CR LF, as a big-endian half-word: the end of a line.
const CR_LF: u32 = u16::from_be_bytes(*LINE_END) as u32;
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
/// a shape the programs do not read). `classifier::readable_payload` says
/// the same.
fn find_payload(family: Family, other: To) -> Vec<Insn> {
    let mut prog = match family {
        Family::V4 => vec![op(LDXB_MSH, 0)],
        Family::V6 => vec![
            op(LDB_ABS, 6),
            jump(JEQ_K, IPPROTO_TCP.into(), To::Next, other),
            op(LDX_IMM, Ip::V6.fixed_header() as u32),
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
/// inside a line, whose rest must be seen too
/// (`classifier::ends_inside_a_line`).
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

/// The bit that tells an ASCII letter's cases apart, in each byte.
const CASE_BITS: u32 = 0x2020_2020;

/// Four bytes as the programs load them (big-endian).
fn word(text: &str) -> u32 {
    let b = text.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The classifier's client words, lower case: a line's first four bytes
/// with [`CASE_BITS`] set equal one exactly when they are the word in any
/// case (every byte of the words is a letter).
fn client_keywords() -> [u32; CLIENT_WORDS.len()] {
    CLIENT_WORDS.map(|w| word(&w.text.to_ascii_lowercase()))
}

fn passive_keywords() -> [u32; PASSIVE_WORDS.len()] {
    PASSIVE_WORDS.map(|w| word(&w.to_ascii_lowercase()))
}

/// The classifier's server codes, as a line's first three bytes.
fn server_codes() -> [u32; SERVER_CODES.len()] {
    SERVER_CODES.map(|c| word(&format!(" {}", c.text)) & 0x00ff_ffff)
}

/// The byte of the multi-line opener.
fn multi_line_opener() -> u32 {
    u32::from(MULTI_LINE_OPENER.text.as_bytes()[0])
}

/// The `programs` xt_bpf programs (1 to `PLAIN_PROGRAMS`) that together
/// compute `classifier::is_plain_line` for a segment of `side` whose
/// payload is at most [`plain_max`]`(programs)` bytes (each scans part of
/// the payload for a line feed; each match costs about as much as the
/// next, whatever its length, so short lines get a rule of fewer).
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
            prog.push(jump(JEQ_K, multi_line_opener(), To::NoMatch, To::Next));
        }
    }
    prog
}

/// The TCP flags that open or close a connection: segments with any of
/// them are for the rules that follow the quick one.
const SYN_FIN_RST: u32 = 0x07;

/// One xt_bpf program that matches a subset of what the short plain-line
/// rule's two do, on the segments most of a session is made of: a segment
/// of the common shape ([`common_payload_at`]) without SYN, FIN or RST,
/// and without payload, or whose payload is one whole line of 5 to
/// [`QUICK_PLAIN_MAX`] bytes that `classifier::is_plain_line` calls plain.
/// It reads the payload by words at fixed offsets, which the kernel loads
/// inline, where the byte-by-byte scan of the general programs calls a
/// helper for each byte: a NOOP or its reply costs one match and a handful
/// of loads instead of two matches and about thirty. Other segments: no match (the rules after it decide).
pub fn quick_plain_line(family: Family, side: Side) -> String {
    let at = common_payload_at(family.ip()) as u32;
    let tcp = at - TCP_HEADER_WITH_TIMESTAMPS as u32;
    let mut prog = match family {
        // Version 4, a header of five words: no options.
        Family::V4 => vec![op(LDB_ABS, 0), jump(JEQ_K, 0x45, To::Next, To::NoMatch)],
        Family::V6 => vec![
            op(LDB_ABS, 6),
            jump(JEQ_K, IPPROTO_TCP.into(), To::Next, To::NoMatch),
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

/// The xt_bpf program that computes `classifier::is_passive_request`.
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
    use ftpct_engine::classifier::{
        ends_inside_a_line, is_passive_request, is_plain_line, readable_payload, PLAIN_MAX,
        QUICK_PLAIN_MIN,
    };
    use ftpct_testkit::bpf::Program as Prog;
    use ftpct_testkit::{Ipv6Ext, Shape};

    /// A generated program, parsed for the interpreter; within xt_bpf's
    /// limit.
    fn parse(prog: &str) -> Prog {
        let parsed = Prog::parse(prog);
        assert!(parsed.len() <= MAX_INSNS);
        parsed
    }

    fn run(prog: &str, packet: &[u8]) -> bool {
        parse(prog).matches(packet)
    }

    /// Whether every program of a rule matches.
    fn all_match(programs: &[Prog], packet: &[u8]) -> bool {
        programs.iter().all(|p| p.matches(packet))
    }

    fn parsed(programs: Vec<String>) -> Vec<Prog> {
        programs.iter().map(|p| parse(p)).collect()
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
            let program = parse(&not_ending_a_line(family));
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
        let open = parse(&not_ending_a_line(Family::V4));
        for payload in [&b"NOOP\r\n"[..], b"", b"NOOP", b"550 /x\n", b"NOOP\n\r"] {
            let inside = ends_inside_a_line(payload);
            assert_eq!(open.matches(&v4(payload)), inside, "{:?}", shown(payload));
        }
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
            Family::V6 => (packet[6] == IPPROTO_TCP, 40),
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
                let program = parse(&quick_plain_line(family, side));
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
                        let short_plain = (QUICK_PLAIN_MIN..=QUICK_PLAIN_MAX).contains(&len)
                            && is_plain_line(payload, side);
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
        let quick = parse(&quick_plain_line(Family::V4, Side::Client));
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
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for len in 1..=PASSIVE_MAX + 2 {
            for head in [
                "PASV", "pasv", "EPSV", "ePsV", "PASW", "EPRT", "PORT", "xxxx",
            ] {
                payloads.extend(line_ends_everywhere(head.as_bytes(), len));
            }
        }
        for family in [Family::V4, Family::V6] {
            let program = parse(&passive_request(family));
            check_program(&program, family, &[Side::Client], &payloads, |p| {
                readable_payload(p).is_some_and(is_passive_request)
            });
        }
    }
}
