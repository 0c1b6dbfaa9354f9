//! The layout of a session's kept state (`ftpct_engine::kept::Kept`) in
//! the 128 conntrack label bits of its entry: 64 bits from bit `base`
//! (at most 64; the kernel's layout: bit n is bit n % 8 of byte n / 8).
//!
//! The bits, from `base`: 0 fix-ups in the kernel; 1 an expectation
//! follows; 2-3 its kind; 4-19 the announced port; 20-35 the public port;
//! 36-49 and 50-63 ftpct's own shift of the original and the reply
//! direction (two's complement, 14 bits: `kept::SHIFT_MAX`).

use ftpct_engine::grammar::AnnounceKind;
use ftpct_engine::kept::{Kept, PendingKept};

/// How many label bits ftpct uses.
pub const LABEL_BITS: u32 = 64;
/// Where they start by default: the upper half is left to the others.
pub const DEFAULT_LABEL_BASE: u8 = 64;

/// Bits of each own shift.
const SHIFT_BITS: u32 = 14;
const KERNEL_FIXUPS: u64 = 1;
const EXPECTING: u64 = 1 << 1;

/// Label value and mask, as conntrack takes them.
pub type Labels = ([u8; 16], [u8; 16]);

/// The kept state's place in the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptLabels {
    base: u8,
}

impl Default for KeptLabels {
    fn default() -> Self {
        KeptLabels {
            base: DEFAULT_LABEL_BASE,
        }
    }
}

impl KeptLabels {
    /// From bit `base` on (at most 64: checked by the configuration).
    pub fn at(base: u8) -> Self {
        KeptLabels {
            base: base.min(DEFAULT_LABEL_BASE),
        }
    }

    /// The 128 label bits keeping `kept`, and the mask of ftpct's.
    pub fn encode(&self, kept: &Kept) -> Labels {
        let place = |v: u64| -> [u8; 16] { (u128::from(v) << self.base).to_le_bytes() };
        (place(to_bits(kept)), place(u64::MAX))
    }

    /// What an entry's 128 label bits keep; None when ftpct's are all zero.
    pub fn decode(&self, labels: &[u8; 16]) -> Option<Kept> {
        let all = u128::from_le_bytes(*labels);
        from_bits((all >> self.base) as u64)
    }
}

fn to_bits(kept: &Kept) -> u64 {
    let mut bits = if kept.kernel_fixups { KERNEL_FIXUPS } else { 0 };
    if let Some(p) = kept.pending {
        bits |= EXPECTING
            | (kind_code(p.kind) << 2)
            | (u64::from(p.announced_port) << 4)
            | (u64::from(p.public_port) << 20);
    }
    let field = |shift: i32| u64::from(shift as u32) & ((1 << SHIFT_BITS) - 1);
    bits | (field(kept.own_shift[0]) << 36) | (field(kept.own_shift[1]) << 50)
}

fn from_bits(bits: u64) -> Option<Kept> {
    if bits == 0 {
        return None;
    }
    let port = |shift: u32| ((bits >> shift) & 0xffff) as u16;
    let pending = (bits & EXPECTING != 0).then(|| PendingKept {
        kind: kind_of((bits >> 2) & 3),
        announced_port: port(4),
        public_port: port(20),
    });
    // Sign-extended from 14 bits.
    let shift = |at: u32| (((bits >> at) << (64 - SHIFT_BITS)) as i64 >> (64 - SHIFT_BITS)) as i32;
    Some(Kept {
        kernel_fixups: bits & KERNEL_FIXUPS != 0,
        pending,
        own_shift: [shift(36), shift(50)],
    })
}

fn kind_code(kind: AnnounceKind) -> u64 {
    match kind {
        AnnounceKind::Port => 0,
        AnnounceKind::Eprt => 1,
        AnnounceKind::Pasv227 => 2,
        AnnounceKind::Epsv229 => 3,
    }
}

fn kind_of(code: u64) -> AnnounceKind {
    match code {
        0 => AnnounceKind::Port,
        1 => AnnounceKind::Eprt,
        2 => AnnounceKind::Pasv227,
        _ => AnnounceKind::Epsv229,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::kept::SHIFT_MAX;

    fn expecting() -> Kept {
        Kept {
            kernel_fixups: true,
            pending: Some(PendingKept {
                kind: AnnounceKind::Epsv229,
                announced_port: 50001,
                public_port: 65535,
            }),
            own_shift: [0, 0],
        }
    }

    #[test]
    fn kept_state_round_trips_at_any_base() {
        let own = Kept {
            kernel_fixups: false,
            pending: None,
            own_shift: [-SHIFT_MAX, SHIFT_MAX],
        };
        for base in [0, 32, 64] {
            let codec = KeptLabels::at(base);
            for kept in [expecting(), own] {
                let (labels, mask) = codec.encode(&kept);
                assert_eq!(codec.decode(&labels), Some(kept), "base {base}");
                assert_eq!(u128::from_le_bytes(mask).count_ones(), LABEL_BITS);
                assert_eq!(u128::from_le_bytes(mask).trailing_zeros(), u32::from(base));
            }
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let codec = KeptLabels::default();
        for kind in [
            AnnounceKind::Port,
            AnnounceKind::Eprt,
            AnnounceKind::Pasv227,
            AnnounceKind::Epsv229,
        ] {
            let pending = expecting().pending.map(|p| PendingKept { kind, ..p });
            let kept = Kept {
                pending,
                ..expecting()
            };
            assert_eq!(codec.decode(&codec.encode(&kept).0), Some(kept));
        }
    }

    #[test]
    fn nothing_of_ftpcts_decodes_to_nothing() {
        let codec = KeptLabels::default();
        assert_eq!(codec.decode(&[0; 16]), None);
        assert_eq!(codec.decode(&codec.encode(&Kept::default()).0), None);
        // Bits below the base are someone else's.
        let others = (u128::from(u64::MAX)).to_le_bytes();
        assert_eq!(codec.decode(&others), None);
        assert_eq!(
            codec.decode(&[0xff; 16]).map(|k| k.kernel_fixups),
            Some(true)
        );
    }
}
