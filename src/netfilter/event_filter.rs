//! A socket filter for conntrack's destroy events (classic BPF, run by
//! the kernel before an event is queued to the socket): only the events
//! of TCP entries to a control port reach ftpct, so a busy gateway's
//! other connections (nearly all of its events) no longer wake the watch
//! thread. The attributes are found with the kernel's netlink helpers
//! (SKF_AD_NLATTR, SKF_AD_NLATTR_NEST); an event the program cannot walk
//! is let through (the thread looks at what it gets anyway).

use libc::sock_filter;

const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ST: u16 = 0x02;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_MISC: u16 = 0x07;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IMM: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MEM: u16 = 0x60;
const BPF_JEQ: u16 = 0x10;
const BPF_TAX: u16 = 0x00;
/// The kernel's extensions are loads at negative offsets.
const SKF_AD_OFF: u32 = (-0x1000_i32) as u32;
/// A = offset of the attribute of type X in the run starting at A (0: none).
const SKF_AD_NLATTR: u32 = 12;
/// A = offset of the attribute of type X nested in the one at A (0: none).
const SKF_AD_NLATTR_NEST: u32 = 16;

/// Where an event's attributes start: nlmsghdr, then nfgenmsg.
const ATTRS_AT: u32 = 16 + 4;
/// Where the nlmsghdr holds the port id of the socket that caused it.
const NLMSG_PID_AT: u32 = 12;
const CTA_TUPLE_ORIG: u32 = 1;
const CTA_TUPLE_PROTO: u32 = 2;
const CTA_PROTO_NUM: u32 = 1;
const CTA_PROTO_DST_PORT: u32 = 3;
const IPPROTO_TCP: u32 = 6;
/// An attribute's value follows its 4-byte header.
const NLA_HDRLEN: u32 = 4;

/// Where a comparison goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    Keep,
    Drop,
}

/// The program being written: instructions, comparisons with their
/// destinations (resolved at the end, where Drop and Keep are).
#[derive(Default)]
struct Program {
    code: Vec<(sock_filter, To, To)>,
}

impl Program {
    fn stmt(&mut self, code: u16, k: u32) {
        let i = sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        self.code.push((i, To::Next, To::Next));
    }

    /// A == k goes to `yes`, else to `no`.
    fn jeq(&mut self, k: u32, yes: To, no: To) {
        self.stmt(BPF_JMP | BPF_JEQ, k);
        if let Some(last) = self.code.last_mut() {
            (last.1, last.2) = (yes, no);
        }
    }

    /// A = the attribute of type `kind` found with `extension` from A (0: none).
    fn find(&mut self, extension: u32, kind: u32) {
        self.stmt(BPF_LDX | BPF_IMM, kind);
        self.stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF.wrapping_add(extension));
        // Not found: let it through.
        self.jeq(0, To::Keep, To::Next);
    }

    /// The instructions, Drop and Keep at the end; None when a jump is
    /// too long for its 8 bits.
    fn finish(self) -> Option<Vec<sock_filter>> {
        let len = self.code.len() + 2;
        let at = |from: usize, to: To| -> Option<u8> {
            let target = match to {
                To::Next => from + 1,
                To::Drop => len - 2,
                To::Keep => len - 1,
            };
            u8::try_from(target - from - 1).ok()
        };
        let mut out = Vec::with_capacity(len);
        for (from, (mut i, yes, no)) in self.code.into_iter().enumerate() {
            (i.jt, i.jf) = (at(from, yes)?, at(from, no)?);
            out.push(i);
        }
        for k in [0, u32::MAX] {
            out.push(sock_filter {
                code: BPF_RET,
                jt: 0,
                jf: 0,
                k,
            });
        }
        Some(out)
    }
}

/// The program that keeps the events of TCP entries whose original
/// destination port is one of `ports`, but those caused by the sockets
/// whose netlink port ids are `ignored` (an adoption's own deletes);
/// None when they are too many for its jumps (then no filter).
pub fn control_port_events(ports: &[u16], ignored: &[u32]) -> Option<Vec<sock_filter>> {
    let mut p = Program::default();
    // Loads are big-endian; the header's port id is in host order.
    p.stmt(BPF_LD | BPF_W | BPF_ABS, NLMSG_PID_AT);
    for &pid in ignored.iter().filter(|&&pid| pid != 0) {
        p.jeq(u32::from_be_bytes(pid.to_ne_bytes()), To::Drop, To::Next);
    }
    p.stmt(BPF_LD | BPF_IMM, ATTRS_AT);
    p.find(SKF_AD_NLATTR, CTA_TUPLE_ORIG);
    p.find(SKF_AD_NLATTR_NEST, CTA_TUPLE_PROTO);
    p.stmt(BPF_ST, 0); // M[0]: the protocol attribute's offset
    p.find(SKF_AD_NLATTR_NEST, CTA_PROTO_NUM);
    p.stmt(BPF_MISC | BPF_TAX, 0);
    p.stmt(BPF_LD | BPF_B | BPF_IND, NLA_HDRLEN);
    p.jeq(IPPROTO_TCP, To::Next, To::Drop);
    p.stmt(BPF_LD | BPF_MEM, 0);
    p.find(SKF_AD_NLATTR_NEST, CTA_PROTO_DST_PORT);
    p.stmt(BPF_MISC | BPF_TAX, 0);
    p.stmt(BPF_LD | BPF_H | BPF_IND, NLA_HDRLEN);
    for &port in ports {
        p.jeq(u32::from(port), To::Keep, To::Next);
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let p = control_port_events(&[21, 2121], &[0, 77]).expect("a program");
        for (at, i) in p.iter().enumerate() {
            if i.code & 0x07 == BPF_JMP {
                for off in [i.jt, i.jf] {
                    assert!(at + 1 + usize::from(off) < p.len(), "{at}: {off}");
                }
            }
        }
        let last = p.last().expect("keep");
        assert_eq!((last.code, last.k), (BPF_RET, u32::MAX));
        let ports: Vec<u32> = p[p.len() - 4..p.len() - 2].iter().map(|i| i.k).collect();
        assert_eq!(ports, [21, 2121]);
        let pid = u32::from_be_bytes(77u32.to_ne_bytes());
        assert_eq!(p[1].k, pid, "port id 0 (the kernel's own) is no socket's");
    }

    #[test]
    fn too_many_ports_for_its_jumps_is_no_program() {
        let ports: Vec<u16> = (1..=400).collect();
        assert!(control_port_events(&ports, &[]).is_none());
        assert!(control_port_events(&ports[..200], &[]).is_some());
    }
}
