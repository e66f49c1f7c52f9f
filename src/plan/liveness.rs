//! Live intervals: a buffer is live from the step that first writes it to the last step
//! that reads it (inclusive), in schedule order. Intervals only; placement is `arena.rs`.

/// `[first, last]`, step indices, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Interval {
    pub first: usize,
    pub last: usize,
}

impl Interval {
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Extends `iv` to cover step `at`.
pub fn touch(iv: &mut Option<Interval>, at: usize) {
    *iv = Some(match *iv {
        None => Interval {
            first: at,
            last: at,
        },
        Some(i) => Interval {
            first: i.first.min(at),
            last: i.last.max(at),
        },
    });
}

/// The largest sum of sizes of buffers live at the same step: a lower bound for any packing.
pub fn max_live_bytes(items: &[(Interval, usize)]) -> usize {
    let steps = items.iter().map(|(i, _)| i.last + 1).max().unwrap_or(0);
    (0..steps)
        .map(|s| {
            items
                .iter()
                .filter(|(i, _)| i.first <= s && s <= i.last)
                .map(|(_, b)| b)
                .sum()
        })
        .max()
        .unwrap_or(0)
}
