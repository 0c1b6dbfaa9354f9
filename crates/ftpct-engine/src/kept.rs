//! What conntrack keeps of a control connection for ftpct, in its entry,
//! so that a restarted ftpct, or ftpct on a standby gateway whose conntrack
//! conntrackd keeps in step, takes the session up again: whether the
//! kernel has its sequence fix-ups, and its most recent pending expectation
//! (kind, announced and public port). The expectation itself is rebuilt
//! from the entry's NAT mapping (`kept_expectation`). A session whose entry the
//! kernel could not take keeps ftpct's own fix-ups: then the kept state
//! says how far each direction has moved, so that a restarted ftpct goes
//! on shifting it.
//!
//! Not kept: a third-party address (FXP: the expectation is not restored),
//! more than one pending expectation per session (only the most recent),
//! its deadline (a restored one gets a full timeout), ftpct's own shifts
//! beyond ±8191 bytes, and which byte each of its edits changed (a segment
//! sent again from before the last edit, after a restart, is shifted as if
//! after it).
//!
//! The driver keeps it in the entry (live: in conntrack label bits, whose
//! layout is the driver's); the engine speaks of [`Kept`] only.

use crate::grammar::AnnounceKind;

/// ftpct's own shifts are kept within ±8191 bytes (the labels' room).
pub const SHIFT_MAX: i32 = 8191;

/// A session as conntrack keeps it (all zero: nothing kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kept {
    /// The kernel keeps its sequence fix-ups (its entry was adopted).
    pub kernel_fixups: bool,
    pub pending: Option<PendingKept>,
    /// ftpct's own shift of each direction (by `Dir::index`), when it
    /// does the fix-ups itself.
    pub own_shift: [i32; 2],
}

/// A pending expectation as it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingKept {
    pub kind: AnnounceKind,
    /// The port the announcement named (the data connection's port inside).
    pub announced_port: u16,
    /// The port the far side was told (after a rewrite).
    pub public_port: u16,
}

impl Kept {
    /// False when a shift is too large to keep.
    pub fn fits(&self) -> bool {
        self.own_shift.iter().all(|s| s.abs() <= SHIFT_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_beyond_the_bound_do_not_fit() {
        let own = Kept {
            kernel_fixups: false,
            pending: None,
            own_shift: [-SHIFT_MAX, SHIFT_MAX],
        };
        assert!(own.fits());
        assert!(!Kept {
            own_shift: [SHIFT_MAX + 1, 0],
            ..own
        }
        .fits());
    }
}
