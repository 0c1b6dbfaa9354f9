//! What one direction of a connection delivered, by sequence position.

use std::collections::HashMap;

/// The bytes one direction delivered to its receiver, each at its
/// sequence position (in the receiver's numbering: after the gateway's
/// edits). TCP may deliver a position more than once; it must always be
/// the same byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    bytes: HashMap<u32, u8>,
}

/// A position delivered twice with different bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub pos: u32,
    pub first: u8,
    pub again: u8,
}

impl Received {
    /// Records `payload` at `seq` onwards. A position already delivered
    /// keeps its first byte; the first that differs is the error.
    pub fn record(&mut self, seq: u32, payload: &[u8]) -> Result<(), Conflict> {
        for (i, &again) in payload.iter().enumerate() {
            let pos = seq.wrapping_add(i as u32);
            let first = *self.bytes.entry(pos).or_insert(again);
            if first != again {
                return Err(Conflict { pos, first, again });
            }
        }
        Ok(())
    }

    /// The byte delivered at `pos`, if any.
    pub fn get(&self, pos: u32) -> Option<u8> {
        self.bytes.get(&pos).copied()
    }

    /// The first position from `start` on that was not delivered: what a
    /// receiver that had everything up to `start` acknowledges.
    pub fn end_from(&self, start: u32) -> u32 {
        let mut pos = start;
        while self.bytes.contains_key(&pos) {
            pos = pos.wrapping_add(1);
        }
        pos
    }

    /// The bytes delivered in order from `start` on, up to the first gap.
    pub fn stream_from(&self, start: u32) -> Vec<u8> {
        let end = self.end_from(start);
        (0..end.wrapping_sub(start))
            .map(|i| self.bytes[&start.wrapping_add(i)])
            .collect()
    }

    /// Forgets everything (the direction starts again with a new ISN).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_byte_and_reports_a_different_one() {
        let mut r = Received::default();
        assert_eq!(r.record(u32::MAX - 1, b"abc"), Ok(()));
        assert_eq!(r.record(u32::MAX, b"bc"), Ok(()));
        assert_eq!(
            r.record(0, b"x"),
            Err(Conflict {
                pos: 0,
                first: b'c',
                again: b'x'
            })
        );
        assert_eq!(r.get(0), Some(b'c'));
        assert_eq!(r.end_from(u32::MAX - 1), 1);
        assert_eq!(r.stream_from(u32::MAX - 1), b"abc");
        r.clear();
        assert!(r.is_empty());
    }
}
