//! Sequence arithmetic after payload edits.
//!
//! Each direction of a control connection keeps the history of the edits
//! it made: the original byte range, the replacement, and the cumulative
//! length change before and after it. From that history:
//! - a segment of this direction is shifted by the change of every edit
//!   that starts before it (the kernel keeps only the last correction
//!   point; we keep several, so segments from before an older edit and
//!   several edits in flight stay right);
//! - a retransmitted segment gets exactly the same edits again;
//! - acknowledgements and SACK edges of the other direction are mapped back.
//!
//! All comparisons are modulo 2^32, as TCP's.

use std::collections::VecDeque;

use crate::command::SeqAdj;

/// Edits a direction keeps even once acknowledged: a late retransmission
/// of acknowledged data still leaves with its edits.
const KEEP_ACKED: usize = 16;
/// Edits in flight (not yet acknowledged) at most: a client pipelining
/// thousands of PORTs in one window gets the rest refused, not a history
/// that grows with its window.
pub const MAX_IN_FLIGHT: usize = 1024;

/// `a` comes strictly after `b` in sequence space.
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// One payload edit in the original sequence space of its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start: u32,
    pub end: u32,
    /// Exactly sized: the history lives as long as the connection.
    pub replacement: Box<[u8]>,
    /// Cumulative length change of all edits before this one.
    pub before: i32,
    /// Cumulative length change including this one.
    pub after: i32,
}

impl Edit {
    fn overlaps(&self, start: u32, end: u32) -> bool {
        seq_after(end, self.start) && seq_after(self.end, start)
    }
}

/// A segment as it must leave: original start, and bytes with edits applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub start: u32,
    pub payload: Vec<u8>,
}

/// The edit history of one direction.
#[derive(Debug, Clone, Default)]
pub struct SeqAdjust {
    edits: VecDeque<Edit>,
    /// Cumulative change of edits forgotten from the history.
    base: i32,
    /// The furthest original position the receiver acknowledged.
    acked: Option<u32>,
}

impl SeqAdjust {
    pub const fn new() -> Self {
        SeqAdjust {
            edits: VecDeque::new(),
            base: 0,
            acked: None,
        }
    }

    /// A history that starts `offset` bytes off: what the kernel's
    /// correction of a session taken up again already does.
    pub fn resume(&mut self, offset: i32) {
        if self.edits.is_empty() {
            self.base = offset;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.base == 0
    }

    /// Edits kept in the history (a status snapshot).
    pub fn edit_count(&self) -> usize {
        self.edits.len()
    }

    /// How much this direction has grown (or shrunk) so far, in bytes.
    pub fn total_shift(&self) -> i32 {
        self.total()
    }

    /// Records that original bytes `start..end` are replaced. Edits come in
    /// stream order.
    pub fn record(&mut self, start: u32, end: u32, replacement: Vec<u8>) {
        let before = self.total();
        // Most control connections make one edit or two: grow by one.
        self.edits.reserve_exact(1);
        let delta = replacement.len() as i32 - end.wrapping_sub(start) as i32;
        self.edits.push_back(Edit {
            start,
            end,
            replacement: replacement.into_boxed_slice(),
            before,
            after: before + delta,
        });
    }

    /// True when no more edits may be recorded until some are acknowledged.
    pub fn is_full(&self) -> bool {
        self.edits.len() >= MAX_IN_FLIGHT
    }

    /// The receiver acknowledged everything before original position
    /// `acked`: edits that end there or before are forgotten (their length
    /// change stays in the base), all but the last few.
    pub fn forget_acked(&mut self, acked: u32) {
        if self.acked.is_none_or(|a| seq_after(acked, a)) {
            self.acked = Some(acked);
        }
        while self.edits.len() > KEEP_ACKED {
            match self.edits.front() {
                Some(e) if !seq_after(e.end, acked) => {
                    self.base = e.after;
                    self.edits.pop_front();
                }
                _ => break,
            }
        }
        if self.edits.capacity() > 4 * self.edits.len().max(KEEP_ACKED) {
            self.edits.shrink_to_fit();
        }
    }

    /// True when the receiver acknowledged every edit that starts before
    /// `pos` (edits from `pos` on belong to the segment being handled).
    pub fn acked_before(&self, pos: u32) -> bool {
        self.edits
            .iter()
            .rev()
            .find(|e| seq_after(pos, e.start))
            .is_none_or(|e| self.acked.is_some_and(|a| !seq_after(e.end, a)))
    }

    /// True while the receiver has not acknowledged the latest edit.
    pub fn has_unacked_edits(&self) -> bool {
        self.edits
            .back()
            .is_some_and(|e| self.acked.is_none_or(|a| seq_after(e.end, a)))
    }

    /// The edits from `since` on as the kernel's one correction point:
    /// segments starting after the first of them move by the total, the
    /// others by what came before it. None without such edits.
    pub fn kernel_point(&self, since: u32) -> Option<SeqAdj> {
        let first = self.edits.iter().find(|e| !seq_after(since, e.start))?;
        Some(SeqAdj {
            correction_pos: first.start,
            offset_before: first.before,
            offset_after: self.total(),
        })
    }

    fn total(&self) -> i32 {
        self.edits.back().map_or(self.base, |e| e.after)
    }

    /// The shift for a segment that starts at original `seq`.
    pub fn offset_at(&self, seq: u32) -> i32 {
        self.edits
            .iter()
            .rev()
            .find(|e| seq_after(seq, e.start))
            .map_or(self.base, |e| e.after)
    }

    /// Original position -> position the receiver sees.
    pub fn shift(&self, seq: u32) -> u32 {
        seq.wrapping_add_signed(self.offset_at(seq))
    }

    /// Position the receiver acknowledged -> original position (the
    /// kernel's rule: past the start of an edit means past the edit).
    pub fn unshift(&self, ack: u32) -> u32 {
        let offset = self
            .edits
            .iter()
            .rev()
            .find(|e| seq_after(ack.wrapping_add_signed(-e.before), e.start))
            .map_or(self.base, |e| e.after);
        ack.wrapping_add_signed(-offset)
    }

    /// Applies every remembered edit to a segment of original bytes
    /// `payload` starting at `start`. A segment that covers only part of an
    /// edit (a retransmission cut differently) is widened to the whole edit,
    /// so the receiver always gets the same bytes for the same positions.
    pub fn apply(&self, start: u32, payload: &[u8]) -> Edited {
        let end = start.wrapping_add(payload.len() as u32);
        let mut touching = self.edits.iter().filter(|e| e.overlaps(start, end));
        let Some(first) = touching.next() else {
            return Edited {
                start,
                payload: payload.to_vec(),
            };
        };
        let out_start = if seq_after(start, first.start) {
            first.start
        } else {
            start
        };
        // Bytes before the first edit (none when the segment starts inside it).
        let mut out = slice_between(start, payload, start, first.start).to_vec();
        let mut cursor = first.end;
        out.extend_from_slice(&first.replacement);
        for e in touching {
            out.extend_from_slice(slice_between(start, payload, cursor, e.start));
            out.extend_from_slice(&e.replacement);
            cursor = e.end;
        }
        if seq_after(end, cursor) {
            out.extend_from_slice(slice_between(start, payload, cursor, end));
        }
        Edited {
            start: out_start,
            payload: out,
        }
    }
}

/// Bytes `from..to` (original positions) of a payload that starts at `start`.
fn slice_between(start: u32, payload: &[u8], from: u32, to: u32) -> &[u8] {
    let a = from.wrapping_sub(start) as usize;
    let b = to.wrapping_sub(start) as usize;
    payload.get(a..b).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adj_with(edits: &[(u32, u32, &[u8])]) -> SeqAdjust {
        let mut a = SeqAdjust::default();
        for (s, e, r) in edits {
            a.record(*s, *e, r.to_vec());
        }
        a
    }

    #[test]
    fn no_edit_no_shift() {
        let a = SeqAdjust::default();
        assert_eq!(a.shift(100), 100);
        assert_eq!(a.unshift(100), 100);
        assert!(a.is_empty());
    }

    #[test]
    fn growth_shifts_later_segments_only() {
        // bytes 105..115 (10 bytes) became 13 bytes
        let a = adj_with(&[(105, 115, b"0123456789abc")]);
        assert_eq!(a.shift(100), 100, "segment holding the edit keeps its seq");
        assert_eq!(
            a.shift(105),
            105,
            "segment starting at the edit keeps its seq"
        );
        assert_eq!(a.shift(120), 123);
        assert_eq!(a.unshift(123), 120);
        assert_eq!(a.unshift(100), 100);
    }

    #[test]
    fn several_edits_in_flight() {
        let a = adj_with(&[(10, 20, b"x"), (50, 55, b"0123456789")]);
        // first edit: -9, second: +5 -> total -4
        assert_eq!(a.shift(30), 21);
        assert_eq!(a.shift(60), 56);
        assert_eq!(a.unshift(21), 30);
        assert_eq!(a.unshift(56), 60);
    }

    #[test]
    fn wraps_around_zero() {
        let start = u32::MAX - 3;
        let a = adj_with(&[(start, start.wrapping_add(4), b"abcdef")]);
        assert_eq!(a.shift(10), 12);
        assert_eq!(a.unshift(12), 10);
    }

    #[test]
    fn apply_is_identical_for_retransmissions_and_recuts() {
        let a = adj_with(&[(5, 9, b"WXYZZ")]);
        let whole = a.apply(0, b"PORT 1234 rest");
        assert_eq!(whole.payload, b"PORT WXYZZ rest");
        assert_eq!(whole.start, 0);
        // a retransmission that starts inside the edit is widened to it
        let recut = a.apply(7, b"34 rest");
        assert_eq!(recut.start, 5);
        assert_eq!(recut.payload, b"WXYZZ rest");
        // one that ends inside the edit too
        let head = a.apply(0, b"PORT 12");
        assert_eq!(head.payload, b"PORT WXYZZ");
    }

    #[test]
    fn unacknowledged_edits_are_all_kept_and_acknowledged_ones_forgotten() {
        let mut a = SeqAdjust::default();
        for i in 0..40u32 {
            a.record(i * 100, i * 100 + 2, b"abc".to_vec());
        }
        // A segment holding all 40 edits gets every one of them.
        let seg = vec![b'x'; 4000];
        assert_eq!(a.apply(0, &seg).payload.len(), 4040);
        a.forget_acked(3000);
        assert_eq!(
            a.edits.len(),
            KEEP_ACKED,
            "edits ending at or before 3000 went, but the last few"
        );
        assert_eq!(a.shift(100_000), 100_040);
        assert_eq!(a.unshift(100_040), 100_000);
        assert_eq!(a.apply(3000, &seg[..1000]).payload.len(), 1010);
        a.forget_acked(100_000);
        assert_eq!(a.edits.len(), KEEP_ACKED);
        assert_eq!(a.shift(100_000), 100_040, "the totals stay");
    }

    #[test]
    fn the_history_in_flight_is_bounded() {
        let mut a = SeqAdjust::default();
        for i in 0..MAX_IN_FLIGHT as u32 {
            assert!(!a.is_full());
            a.record(i * 10, i * 10 + 2, b"abc".to_vec());
        }
        assert!(a.is_full());
        a.forget_acked(10 * MAX_IN_FLIGHT as u32);
        assert!(!a.is_full());
    }
}
