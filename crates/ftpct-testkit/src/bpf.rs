//! A classic BPF interpreter, as the kernel runs an xt_bpf program on a
//! packet from its IP header: for the tests that check ftpct's generated
//! programs against the selection rule. It decodes each instruction by
//! its fields (class, size, mode, operation, source) rather than trusting
//! the generator's names for them; a load past the packet's end stops the
//! program with "no match", as in the kernel.

/// One instruction: code, jump if true, jump if false, constant.
type Insn = (u16, u8, u8, u32);

/// A program parsed from xt_bpf's `--bytecode` text (`N,code jt jf k,...`).
#[derive(Debug, Clone)]
pub struct Program(Vec<Insn>);

/// Instruction classes.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

impl Program {
    /// Panics on text that is not a program (a test's mistake).
    pub fn parse(text: &str) -> Program {
        let mut parts = text.split(',');
        let count: usize = parts.next().and_then(|c| c.parse().ok()).expect("a count");
        let insns: Vec<Insn> = parts
            .map(|i| {
                let w: Vec<u32> = i.split(' ').map(|w| w.parse().expect("number")).collect();
                let small = |v: u32| u8::try_from(v).expect("a jump offset");
                (
                    u16::try_from(w[0]).expect("a code"),
                    small(w[1]),
                    small(w[2]),
                    w[3],
                )
            })
            .collect();
        assert_eq!(count, insns.len(), "{text}");
        Program(insns)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the program returns non-zero on `packet`. Panics on an
    /// instruction xt_bpf's programs never hold, or a jump out of it.
    pub fn matches(&self, packet: &[u8]) -> bool {
        let mut m = Machine {
            packet,
            a: 0,
            x: 0,
            mem: [0; 16],
        };
        let mut pc = 0;
        loop {
            let (code, jt, jf, k) = self.0[pc];
            pc += 1;
            match code & 0x07 {
                LD => match m.load(code, k) {
                    Some(v) => m.a = v,
                    None => return false,
                },
                LDX => match m.load_x(code, k) {
                    Some(v) => m.x = v,
                    None => return false,
                },
                ST => m.mem[k as usize] = m.a,
                STX => m.mem[k as usize] = m.x,
                ALU => m.a = m.alu(code, k),
                JMP => pc += m.jump(code, jt, jf, k),
                RET => return (if code & 0x18 == 0x10 { m.a } else { k }) != 0,
                MISC => match code & 0xf8 {
                    0x00 => m.x = m.a,
                    _ => m.a = m.x,
                },
                _ => unreachable!("three bits"),
            }
        }
    }
}

struct Machine<'a> {
    packet: &'a [u8],
    a: u32,
    x: u32,
    mem: [u32; 16],
}

impl Machine<'_> {
    /// `size` bytes at `at`, big-endian; None past the end.
    fn read(&self, at: u32, size: usize) -> Option<u32> {
        let at = at as usize;
        let bytes = self.packet.get(at..at.checked_add(size)?)?;
        Some(bytes.iter().fold(0, |v, &b| v << 8 | u32::from(b)))
    }

    fn load(&self, code: u16, k: u32) -> Option<u32> {
        let size = match code & 0x18 {
            0x00 => 4,
            0x08 => 2,
            0x10 => 1,
            other => panic!("load size {other:#x}"),
        };
        match code & 0xe0 {
            0x00 => Some(k),
            0x20 => self.read(k, size),
            0x40 => self.read(self.x.wrapping_add(k), size),
            0x60 => Some(self.mem[k as usize]),
            0x80 => Some(self.packet.len() as u32),
            other => panic!("load mode {other:#x}"),
        }
    }

    fn load_x(&self, code: u16, k: u32) -> Option<u32> {
        match code & 0xe0 {
            0x00 => Some(k),
            0x60 => Some(self.mem[k as usize]),
            0x80 => Some(self.packet.len() as u32),
            // The IPv4 header length: 4 * (P[k] & 0xf).
            0xa0 => self.read(k, 1).map(|b| 4 * (b & 0x0f)),
            other => panic!("ldx mode {other:#x}"),
        }
    }

    fn operand(&self, code: u16, k: u32) -> u32 {
        if code & 0x08 == 0 {
            k
        } else {
            self.x
        }
    }

    fn alu(&self, code: u16, k: u32) -> u32 {
        let (a, v) = (self.a, self.operand(code, k));
        match code & 0xf0 {
            0x00 => a.wrapping_add(v),
            0x10 => a.wrapping_sub(v),
            0x20 => a.wrapping_mul(v),
            0x40 => a | v,
            0x50 => a & v,
            0x60 => a.checked_shl(v).unwrap_or(0),
            0x70 => a.checked_shr(v).unwrap_or(0),
            0x80 => a.wrapping_neg(),
            0xa0 => a ^ v,
            other => panic!("alu operation {other:#x}"),
        }
    }

    /// How many instructions to skip.
    fn jump(&self, code: u16, jt: u8, jf: u8, k: u32) -> usize {
        let v = self.operand(code, k);
        let taken = match code & 0xf0 {
            0x00 => return k as usize,
            0x10 => self.a == v,
            0x20 => self.a > v,
            0x30 => self.a >= v,
            0x40 => self.a & v != 0,
            other => panic!("jump {other:#x}"),
        };
        usize::from(if taken { jt } else { jf })
    }
}

#[cfg(test)]
mod tests {
    use super::Program;

    #[test]
    fn runs_a_hand_written_program() {
        // A = P[0]; A == 0x45 ? match : no match.
        let p = Program::parse("4,48 0 0 0,21 0 1 69,6 0 0 1,6 0 0 0");
        assert_eq!(p.len(), 4);
        assert!(p.matches(&[0x45, 0]));
        assert!(!p.matches(&[0x46]));
        assert!(!p.matches(&[]), "a read past the end");
        // X = 4 * (P[0] & 0xf); A = P[X + 0]; A == 7.
        let ind = Program::parse("5,177 0 0 0,80 0 0 0,21 0 1 7,6 0 0 1,6 0 0 0");
        let mut packet = vec![0x41, 0, 0, 0, 7];
        assert!(ind.matches(&packet));
        packet[4] = 8;
        assert!(!ind.matches(&packet));
    }
}
