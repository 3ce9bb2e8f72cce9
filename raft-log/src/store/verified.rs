//! The committed entries whose CRC this process has already checked.
//!
//! Committed bytes never change (truncation only removes uncommitted entries), so an entry that
//! verified once need not be hashed again on every read. Without this, a consumer reading one
//! message out of a 1 MiB group-commit entry paid a CRC32C over the whole entry per message,
//! which was three quarters of a broker's CPU while consuming. Kept as ranges of indexes; reads
//! are mostly in order, so the set stays a handful of ranges.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Ranges of verified indexes: start → end, both inclusive, disjoint and not adjacent.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    ranges: Mutex<BTreeMap<u64, u64>>,
}

impl Verified {
    /// Whether `index` verified before.
    pub(crate) fn contains(&self, index: u64) -> bool {
        let ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        ranges
            .range(..=index)
            .next_back()
            .is_some_and(|(_, end)| *end >= index)
    }

    /// Records that `index` verified.
    pub(crate) fn insert(&self, index: u64) {
        let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        let (mut start, mut end) = (index, index);
        if let Some((&s, &e)) = ranges.range(..=index).next_back() {
            if e >= index {
                return;
            }
            if e + 1 == index {
                start = s;
                ranges.remove(&s);
            }
        }
        if let Some(&e) = ranges.get(&(index + 1)) {
            end = e;
            ranges.remove(&(index + 1));
        }
        ranges.insert(start, end);
    }

    /// Forgets indexes below `first` (purged).
    pub(crate) fn forget_below(&self, first: u64) {
        let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        let below: Vec<(u64, u64)> = ranges.range(..first).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in below {
            ranges.remove(&s);
            if e >= first {
                ranges.insert(first, e);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ranges.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_forget() {
        let v = Verified::default();
        for i in [5, 7, 6, 1, 2, 10] {
            v.insert(i);
        }
        assert_eq!(v.len(), 3, "1-2, 5-7, 10");
        for i in [1, 2, 5, 6, 7, 10] {
            assert!(v.contains(i), "{i}");
        }
        for i in [0, 3, 4, 8, 9, 11] {
            assert!(!v.contains(i), "{i}");
        }
        v.insert(3);
        v.insert(4);
        assert_eq!(v.len(), 2, "1-7, 10");
        v.forget_below(6);
        assert!(!v.contains(5));
        assert!(v.contains(6) && v.contains(7) && v.contains(10));
    }
}
