//! Packs buffers with live intervals into one arena: buffers live at the same time never
//! share bytes; buffers whose lives do not overlap may. Largest first, each placed in the
//! tightest gap left by the buffers it overlaps in time (best fit), 64-byte aligned.

use super::liveness::Interval;

/// Every offset is a multiple of this (a cache line; also an AVX-512 vector).
pub const ALIGN: usize = 64;

pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Returns each item's offset (in input order) and the arena size.
pub fn pack(items: &[(Interval, usize)]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Largest first; ties by first use, then index, so the layout is deterministic.
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].1), items[i].0.first, i));
    let mut offsets = vec![0usize; items.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(items.len());
    let mut peak = 0;
    for i in order {
        let (iv, bytes) = items[i];
        let size = align_up(bytes.max(1));
        // Byte ranges taken by buffers alive at the same time, sorted by offset.
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| items[j].0.overlaps(&iv))
            .map(|&j| (offsets[j], offsets[j] + align_up(items[j].1.max(1))))
            .collect();
        taken.sort();
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0;
        for &(start, end) in &taken {
            if start >= cursor + size {
                let gap = start - cursor;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, o)| o);
        offsets[i] = offset;
        peak = peak.max(offset + size);
        placed.push(i);
    }
    (offsets, peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::liveness::max_live_bytes;
    use proptest::prelude::*;

    fn iv(first: usize, last: usize) -> Interval {
        Interval { first, last }
    }

    #[test]
    fn disjoint_lives_share_memory() {
        let items = [(iv(0, 1), 100), (iv(2, 3), 100), (iv(1, 2), 64)];
        let (offsets, peak) = pack(&items);
        assert_eq!(offsets[0], offsets[1], "{offsets:?}");
        assert_eq!(peak, 128 + 64);
    }

    proptest! {
        #[test]
        fn live_buffers_never_overlap(
            raw in prop::collection::vec((0usize..40, 0usize..10, 1usize..5000), 1..60)
        ) {
            let items: Vec<(Interval, usize)> = raw.iter().map(|&(f, len, b)| (iv(f, f + len), b)).collect();
            let (offsets, peak) = pack(&items);
            for (i, a) in items.iter().enumerate() {
                prop_assert_eq!(offsets[i] % ALIGN, 0);
                prop_assert!(offsets[i] + a.1 <= peak);
                for (j, b) in items.iter().enumerate().skip(i + 1) {
                    if a.0.overlaps(&b.0) {
                        let disjoint = offsets[i] + a.1 <= offsets[j] || offsets[j] + b.1 <= offsets[i];
                        prop_assert!(disjoint, "buffers {} and {} overlap in time and memory", i, j);
                    }
                }
            }
            prop_assert!(peak >= max_live_bytes(&items));
        }
    }
}
