//! What conntrack keeps of a control connection for ftpct, in label bits of
//! its entry, so that a restarted ftpct, or ftpct on a standby gateway
//! whose conntrack conntrackd keeps in step, takes the session up again:
//! whether the kernel has its sequence fix-ups, and its most recent pending
//! expectation (kind, announced and public port). The expectation itself
//! is rebuilt from the entry's NAT mapping ([`restore`]). A session whose
//! entry the kernel could not take keeps ftpct's own fix-ups: then the
//! labels keep how far each direction has moved, so that a restarted ftpct
//! goes on shifting it.
//!
//! Not kept: a third-party address (FXP: the expectation is not restored),
//! more than one pending expectation per session (only the most recent),
//! its deadline (a restored one gets a full timeout), ftpct's own shifts
//! beyond ±8191 bytes, and which byte each of its edits changed (a segment
//! sent again from before the last edit, after a restart, is shifted as if
//! after it).
//!
//! The bits, from bit `base` (at most 64) of the 128 label bits (the
//! kernel's layout: bit n is bit n % 8 of byte n / 8): 0 fix-ups in the
//! kernel; 1 an expectation follows; 2-3 its kind; 4-19 the announced
//! port; 20-35 the public port; 36-49 and 50-63 ftpct's own shift of the
//! original and the reply direction (two's complement, 14 bits).

use std::net::SocketAddr;
use std::time::Duration;

use crate::expect::{Expectation, NatBindings};
use crate::grammar::AnnounceKind;
use crate::nat::CtMapping;
use crate::tuple::Dir;

/// How many label bits ftpct uses.
pub const LABEL_BITS: u32 = 64;
/// ftpct's own shifts are kept within ±2^13.
const SHIFT_BITS: u32 = 14;
const SHIFT_MAX: i32 = (1 << (SHIFT_BITS - 1)) - 1;
/// Where they start by default: the upper half is left to the others.
pub const DEFAULT_LABEL_BASE: u8 = 64;

const KERNEL_FIXUPS: u64 = 1;
const EXPECTING: u64 = 1 << 1;

/// A session as its labels say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// The kernel keeps its sequence fix-ups (its entry was adopted).
    pub kernel_fixups: bool,
    pub pending: Option<PendingKept>,
    /// ftpct's own shift of each direction (by `Dir::index`), when it
    /// does the fix-ups itself.
    pub own_shift: [i32; 2],
}

/// A pending expectation as labels keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingKept {
    pub kind: AnnounceKind,
    /// The port the announcement named (the data connection's port inside).
    pub announced_port: u16,
    /// The port the far side was told (after a rewrite).
    pub public_port: u16,
}

impl Kept {
    pub fn to_bits(self) -> u64 {
        let mut bits = if self.kernel_fixups { KERNEL_FIXUPS } else { 0 };
        if let Some(p) = self.pending {
            bits |= EXPECTING
                | (kind_code(p.kind) << 2)
                | (u64::from(p.announced_port) << 4)
                | (u64::from(p.public_port) << 20);
        }
        let field = |shift: i32| u64::from(shift as u32) & ((1 << SHIFT_BITS) - 1);
        bits | (field(self.own_shift[0]) << 36) | (field(self.own_shift[1]) << 50)
    }

    /// False when a shift is too large for its bits.
    pub fn fits(&self) -> bool {
        self.own_shift.iter().all(|s| s.abs() <= SHIFT_MAX)
    }

    /// None when no bit is set: nothing of ftpct's.
    pub fn from_bits(bits: u64) -> Option<Kept> {
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
        let shift =
            |at: u32| (((bits >> at) << (64 - SHIFT_BITS)) as i64 >> (64 - SHIFT_BITS)) as i32;
        Some(Kept {
            kernel_fixups: bits & KERNEL_FIXUPS != 0,
            pending,
            own_shift: [shift(36), shift(50)],
        })
    }

    /// The 128 label bits with these at `base`, and the mask of ftpct's.
    pub fn labels(self, base: u8) -> ([u8; 16], [u8; 16]) {
        let place = |v: u64| -> [u8; 16] { (u128::from(v) << base).to_le_bytes() };
        (place(self.to_bits()), place(u64::MAX))
    }

    /// What the 128 label bits of an entry keep at `base`.
    pub fn from_labels(labels: &[u8; 16], base: u8) -> Option<Kept> {
        let all = u128::from_le_bytes(*labels);
        Kept::from_bits((all >> base) as u64)
    }
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

/// Which direction announces `kind`.
pub fn announcer(kind: AnnounceKind) -> Dir {
    match kind {
        AnnounceKind::Port | AnnounceKind::Eprt => Dir::Orig,
        AnnounceKind::Pasv227 | AnnounceKind::Epsv229 => Dir::Reply,
    }
}

/// What labels keep of `exp`; None for what they cannot (a third-party
/// address: FXP).
pub fn keep(m: &CtMapping, exp: &Expectation) -> Option<PendingKept> {
    let dir = announcer(exp.kind);
    let own_public = match dir {
        Dir::Orig => m.reply.dst.ip(),
        Dir::Reply => m.orig.dst.ip(),
    };
    if exp.dst.ip() != own_public {
        return None;
    }
    Some(PendingKept {
        kind: exp.kind,
        announced_port: exp.nat.dst.map_or(exp.dst.port(), |d| d.port()),
        public_port: exp.dst.port(),
    })
}

/// The expectation `p` stands for on the control connection `m`, as the
/// announcement made it (the same peer, destination and follow-master NAT),
/// expiring at `expires`.
pub fn restore(m: &CtMapping, p: &PendingKept, expires: Duration) -> Expectation {
    let dir = announcer(p.kind);
    let (own, own_public, peer) = match dir {
        Dir::Orig => (m.orig.src.ip(), m.reply.dst.ip(), m.reply.src.ip()),
        Dir::Reply => (m.reply.src.ip(), m.orig.dst.ip(), m.orig.src.ip()),
    };
    let nat = if m.is_natted() {
        let src = match dir {
            Dir::Orig => m.orig.dst.ip(),
            Dir::Reply => m.reply.dst.ip(),
        };
        NatBindings {
            src: Some(src),
            dst: Some(SocketAddr::new(own, p.announced_port)),
        }
    } else {
        NatBindings::NONE
    };
    Expectation {
        peer,
        dst: SocketAddr::new(own_public, p.public_port),
        nat,
        master: m.orig,
        kind: p.kind,
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::Tuple;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    #[test]
    fn bits_round_trip_at_any_base() {
        let k = Kept {
            kernel_fixups: true,
            pending: Some(PendingKept {
                kind: AnnounceKind::Epsv229,
                announced_port: 50001,
                public_port: 65535,
            }),
            own_shift: [0, 0],
        };
        assert_eq!(Kept::from_bits(k.to_bits()), Some(k));
        let own = Kept {
            kernel_fixups: false,
            pending: None,
            own_shift: [-8191, 8191],
        };
        assert!(own.fits());
        assert_eq!(Kept::from_bits(own.to_bits()), Some(own));
        assert!(!Kept {
            own_shift: [8192, 0],
            ..own
        }
        .fits());
        for base in [0, 32, 64] {
            let (labels, mask) = k.labels(base);
            assert_eq!(Kept::from_labels(&labels, base), Some(k));
            assert_eq!(u128::from_le_bytes(mask).count_ones(), LABEL_BITS);
        }
        assert_eq!(Kept::from_bits(0), None);
        assert_eq!(
            Kept::from_labels(&[0xff; 16], 64).map(|k| k.kernel_fixups),
            Some(true)
        );
    }

    #[test]
    fn a_kept_expectation_is_restored_as_it_was() {
        // SNAT: the client's PORT 40000, told as 198.51.100.1:40001.
        let m = CtMapping {
            orig: t("192.0.2.10:40000", "198.51.100.20:21"),
            reply: t("198.51.100.20:21", "198.51.100.1:40000"),
        };
        let exp = Expectation {
            peer: "198.51.100.20".parse().expect("ip"),
            dst: "198.51.100.1:40001".parse().expect("addr"),
            nat: NatBindings {
                src: Some("198.51.100.20".parse().expect("ip")),
                dst: Some("192.0.2.10:40000".parse().expect("addr")),
            },
            master: m.orig,
            kind: AnnounceKind::Port,
            expires: Duration::from_secs(9),
        };
        let kept = keep(&m, &exp).expect("kept");
        assert_eq!((kept.announced_port, kept.public_port), (40000, 40001));
        assert_eq!(restore(&m, &kept, Duration::from_secs(9)), exp);
        let fxp = Expectation {
            dst: "203.0.113.5:40001".parse().expect("addr"),
            ..exp
        };
        assert_eq!(keep(&m, &fxp), None, "a third party cannot be kept");
    }
}
