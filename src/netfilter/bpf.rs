//! The classic BPF programs of the selective-queueing rules (xt_bpf
//! `--bytecode`, written as `nfbpf_compile` writes them). xt_bpf runs them
//! on the packet from its IP header; `len` is the IP packet's length. Both
//! find where the TCP payload starts (IPv4: the header length field; IPv6:
//! a TCP header right after the fixed header, else the program says what
//! it says for other packets).

use std::fmt::Write as _;

use crate::netfilter::rules::Family;

/// (code, jt, jf, k) of struct sock_filter.
type Insn = (u16, u8, u8, u32);

const LDXB_MSH: u16 = 0xb1; // X = 4 * (P[k] & 0xf)
const LDX_IMM: u16 = 0x01; // X = k
const LDB_ABS: u16 = 0x30; // A = P[k]
const LDB_IND: u16 = 0x50; // A = P[X + k]
const AND_K: u16 = 0x54;
const RSH_K: u16 = 0x74;
const ADD_X: u16 = 0x0c;
const SUB_K: u16 = 0x14;
const TAX: u16 = 0x07;
const LD_LEN: u16 = 0x80; // A = packet length
const JGT_X: u16 = 0x2d;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
const IPPROTO_TCP: u32 = 6;
const MATCH: Insn = (RET_K, 0, 0, 1);
const NO_MATCH: Insn = (RET_K, 0, 0, 0);

/// Matches a segment with payload whose last byte is not a line feed: it
/// ends inside a line, whose rest must be seen too. IPv6 behind extension
/// headers: matches.
pub fn not_ending_a_line(family: Family) -> String {
    let tail = [
        (JGT_X, 0, 5, 0),    // no payload: no match
        (SUB_K, 0, 0, 1),    //
        (TAX, 0, 0, 0),      //
        (LDB_IND, 0, 0, 0),  // the last byte
        (JEQ_K, 1, 0, 0x0a), // a line feed: no match
        MATCH,
        NO_MATCH,
    ];
    program(family, &tail, true)
}

/// Matches a segment without payload (an ACK, a window update). IPv6
/// behind extension headers: no match.
pub fn without_payload(family: Family) -> String {
    let tail = [
        (JGT_X, 1, 0, 0), // payload: no match
        MATCH,
        NO_MATCH,
    ];
    program(family, &tail, false)
}

/// A = packet length, X = where the payload starts, then `tail`, which
/// ends with MATCH then NO_MATCH; `other`: the verdict for an IPv6 packet
/// whose next header is not TCP.
fn program(family: Family, tail: &[Insn], other: bool) -> String {
    let mut prog: Vec<Insn> = match family {
        Family::V4 => vec![(LDXB_MSH, 0, 0, 0)],
        Family::V6 => vec![
            (LDB_ABS, 0, 0, 6),
            (JEQ_K, 0, 0, IPPROTO_TCP),
            (LDX_IMM, 0, 0, 40),
        ],
    };
    prog.extend([
        (LDB_IND, 0, 0, 12), // TCP data offset byte
        (AND_K, 0, 0, 0xf0), //
        (RSH_K, 0, 0, 2),    // TCP header length
        (ADD_X, 0, 0, 0),    // both headers
        (TAX, 0, 0, 0),      //
        (LD_LEN, 0, 0, 0),   //
    ]);
    prog.extend_from_slice(tail);
    if family == Family::V6 {
        // The JEQ at 1 jumps, when false, to the last (NO_MATCH) or the
        // one before (MATCH).
        let target = prog.len() - if other { 2 } else { 1 };
        prog[1].2 = u8::try_from(target - 2).unwrap_or(u8::MAX);
    }
    let mut out = prog.len().to_string();
    for (code, jt, jf, k) in prog {
        let _ = write!(out, ",{code} {jt} {jf} {k}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions above, on `packet`.
    fn run(prog: &str, packet: &[u8]) -> bool {
        let insns: Vec<Vec<u32>> = prog
            .split(',')
            .skip(1)
            .map(|i| i.split(' ').map(|w| w.parse().expect("number")).collect())
            .collect();
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: u32| u32::from(packet[at as usize]);
        loop {
            let (code, jt, jf, k) = (
                insns[pc][0] as u16,
                insns[pc][1],
                insns[pc][2],
                insns[pc][3],
            );
            pc += 1;
            match code {
                LDXB_MSH => x = 4 * (byte(k) & 0xf),
                LDX_IMM => x = k,
                LDB_ABS => a = byte(k),
                LDB_IND => a = byte(x + k),
                AND_K => a &= k,
                RSH_K => a >>= k,
                ADD_X => a += x,
                SUB_K => a -= k,
                TAX => x = a,
                LD_LEN => a = packet.len() as u32,
                JGT_X => pc += if a > x { jt } else { jf } as usize,
                JEQ_K => pc += if a == k { jt } else { jf } as usize,
                RET_K => return k != 0,
                other => panic!("instruction {other}"),
            }
        }
    }

    fn v4(payload: &[u8]) -> Vec<u8> {
        ftpct_testkit::Segment::new(
            ftpct_testkit::tuple("192.0.2.10:40000", "198.51.100.20:21"),
            1,
        )
        .ack(1)
        .timestamps(1, 2)
        .payload(payload)
        .build()
    }

    fn v6(payload: &[u8]) -> Vec<u8> {
        ftpct_testkit::Segment::new(
            ftpct_testkit::tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21"),
            1,
        )
        .ack(1)
        .payload(payload)
        .build()
    }

    #[test]
    fn the_programs_find_the_payload_and_its_last_byte() {
        for (family, build) in [(Family::V4, v4 as fn(&[u8]) -> Vec<u8>), (Family::V6, v6)] {
            let open = not_ending_a_line(family);
            let empty = without_payload(family);
            assert!(run(&open, &build(b"PO")), "{family:?}");
            assert!(run(&open, &build(b"NOOP\r")));
            assert!(!run(&open, &build(b"NOOP\r\n")));
            assert!(!run(&open, &build(b"")));
            assert!(run(&empty, &build(b"")));
            assert!(!run(&empty, &build(b"x")));
        }
        // IPv6 with a hop-by-hop header first: not provably empty, and
        // maybe inside a line.
        let mut odd = v6(b"");
        odd[6] = 0;
        assert!(run(&not_ending_a_line(Family::V6), &odd));
        assert!(!run(&without_payload(Family::V6), &odd));
    }
}
