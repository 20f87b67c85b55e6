//! An append-only log of what a channel received (uevents, notices, QMP
//! events), bounded in bytes, addressed by absolute position.
//!
//! Waits take a position ("everything from here on") before they act, so a
//! position must mean the same item for the whole life of the VM. A long
//! run (the explorer's soak: thousands of steps) would still reach the
//! bound with perfectly good traffic, so what is no longer needed can be
//! forgotten ([`EventLog::forget`]): the items go, their bytes no longer
//! count, and positions stay absolute. The bound then only stops a guest
//! that sends too much between two forgets, which is the flood it is for.

use std::collections::VecDeque;

/// Items with their sizes, the bytes they take, and how many came before
/// the first one kept.
#[derive(Debug)]
pub struct EventLog<T> {
    items: VecDeque<(T, usize)>,
    forgotten: usize,
    bytes: usize,
    limit: usize,
}

/// Adding an item would take the log past its bound.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    /// Items kept (not forgotten) when it happened.
    pub kept: usize,
}

impl<T> EventLog<T> {
    /// An empty log that holds at most `limit` bytes.
    pub fn new(limit: usize) -> EventLog<T> {
        EventLog { items: VecDeque::new(), forgotten: 0, bytes: 0, limit }
    }

    /// Append `item`, which costs `size` bytes; refused past the bound.
    pub fn push(&mut self, item: T, size: usize) -> Result<(), Full> {
        if self.bytes + size > self.limit {
            return Err(Full { kept: self.items.len() });
        }
        self.bytes += size;
        self.items.push_back((item, size));
        Ok(())
    }

    /// The position the next item will have.
    pub fn cursor(&self) -> usize {
        self.forgotten + self.items.len()
    }

    /// The items kept at or after position `from`, with their positions
    /// (forgotten ones are not there to see).
    pub fn since(&self, from: usize) -> impl Iterator<Item = (usize, &T)> {
        let skip = from.saturating_sub(self.forgotten);
        self.items.iter().enumerate().skip(skip).map(|(i, (item, _))| (self.forgotten + i, item))
    }

    /// Every item kept.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(item, _)| item)
    }

    /// How many items are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drop every item received so far; their bytes no longer count
    /// against the bound. Positions handed out stay valid.
    pub fn forget(&mut self) {
        self.forgotten += self.items.len();
        self.items.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_forgetting_and_the_bound_counts_what_is_kept() {
        let mut log = EventLog::new(10);
        log.push("a", 4).unwrap();
        log.push("b", 4).unwrap();
        assert_eq!(log.push("c", 4), Err(Full { kept: 2 }), "12 bytes > 10");
        let at = log.cursor();
        assert_eq!(at, 2);
        log.forget();
        assert!(log.is_empty());
        assert_eq!(log.cursor(), 2, "a position means the same item after a forget");
        log.push("c", 4).unwrap();
        log.push("d", 4).unwrap();
        assert_eq!(log.since(at).collect::<Vec<_>>(), [(2, &"c"), (3, &"d")]);
        assert_eq!(log.since(3).collect::<Vec<_>>(), [(3, &"d")]);
        assert_eq!(log.since(0).count(), 2, "forgotten items are gone");
        assert_eq!(log.iter().copied().collect::<Vec<_>>(), ["c", "d"]);
    }
}
