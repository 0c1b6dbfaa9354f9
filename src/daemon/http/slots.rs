//! A bounded number of connections served at once: each holds a slot
//! while its thread runs; when none is free the connection is turned away
//! at once instead of waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Slots {
    used: Arc<AtomicUsize>,
    max: usize,
}

/// A slot taken; given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A free slot, if any.
    pub fn take(&self) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.used)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_then_given_back() {
        let slots = Slots::new(2);
        let a = slots.take().expect("first");
        let _b = slots.take().expect("second");
        assert!(slots.take().is_none(), "full");
        drop(a);
        assert!(slots.take().is_some(), "given back");
    }
}
