//! Derived copies of tensors: the same weights rearranged for a kernel (the planner's
//! repack), made once per file and shared by every plan over it. Once a tensor has its
//! copy, the file's pages behind it can be handed back to the kernel, so a model does not
//! stay resident twice.
//!
//! Copies are bump-allocated, 64-byte aligned, from anonymous slabs aligned to 2 MiB and
//! advised as huge pages: a decode step streams every copy once, and with 4 KiB pages the
//! hardware prefetchers stop at every page boundary. Measured on the AVX2-only EPYC VM
//! (`qgraph profile -t 1`, alternating): the 28 MB output head streamed 11.1–11.6 GB/s from
//! 4 KiB pages, 12.2 from huge pages. Slab pages are touched only as copies are written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{GgufFile, Storage, TensorInfo};

/// Alignment of slabs (a huge page) and of each copy in them (a cache line).
const SLAB_ALIGN: usize = 2 << 20;
const COPY_ALIGN: usize = 64;
/// The first slab reserves room for a copy of every tensor in the file plus this margin
/// (panel padding): address space only, since pages are touched as copies are written, so
/// the copies share one slab and one partly used last huge page.
const SLAB_MARGIN: usize = 16 << 20;

/// A tensor in another layout: `len` bytes in one of its file's slabs.
pub struct DerivedBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are written once, before the `DerivedBytes` is made, and only read
// after; the slab they sit in lives as long as the file's cache, which outlives every
// `Arc<DerivedBytes>` handed out only through `&GgufFile` (plans hold the file's `Arc`).
unsafe impl Send for DerivedBytes {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for DerivedBytes {}

impl DerivedBytes {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies in a live slab and is never written again (above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An anonymous mapping, bump-allocated from its first 2 MiB boundary on.
struct Slab {
    map: memmap2::MmapMut,
    /// Offset of the next free byte.
    next: usize,
}

impl Slab {
    fn new(size: usize) -> Option<Slab> {
        let size = size.checked_add(SLAB_ALIGN)?;
        let map = memmap2::MmapMut::map_anon(size).ok()?;
        // A hint: without transparent huge pages the slab works the same, on 4 KiB pages.
        let _ = map.advise(memmap2::Advice::HugePage);
        let start = (map.as_ptr() as usize).next_multiple_of(SLAB_ALIGN) - map.as_ptr() as usize;
        Some(Slab { map, next: start })
    }

    /// `len` bytes, if they fit: zero when fresh, or left by a copy whose fill failed.
    fn take(&mut self, len: usize) -> Option<&mut [u8]> {
        let at = self.next.next_multiple_of(COPY_ALIGN);
        let end = at.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        self.next = end;
        Some(&mut self.map[at..end])
    }
}

#[derive(Default)]
struct State {
    copies: BTreeMap<(String, &'static str), Arc<DerivedBytes>>,
    slabs: Vec<Slab>,
    /// Byte ranges of the file whose pages were released, merged where only alignment
    /// padding separates them (start → end).
    released: BTreeMap<usize, usize>,
}

/// Derived copies by (tensor name, layout tag), and the slabs holding them.
#[derive(Default)]
pub(super) struct DerivedCache(Mutex<State>);

impl GgufFile {
    /// The copy of tensor `t` in layout `tag`: `len` bytes that `fill` writes in full from
    /// the tensor's bytes the first time it is asked for, then shared. `fill` returning `false`
    /// (a shape the layout cannot hold), or no memory for the copy, gives `None`. The second
    /// value says whether this call made the copy.
    pub fn derived(
        &self,
        t: &TensorInfo,
        tag: &'static str,
        len: usize,
        fill: impl FnOnce(&[u8], &mut [u8]) -> bool,
    ) -> Option<(Arc<DerivedBytes>, bool)> {
        let key = (t.name.clone(), tag);
        // A poisoned lock only means another plan panicked mid-insert; every insert is one
        // call, so the map and the slabs are still consistent.
        let mut state = self.derived.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = state.copies.get(&key) {
            return Some((d.clone(), false));
        }
        let has_room = state
            .slabs
            .last()
            .is_some_and(|s| s.next.next_multiple_of(COPY_ALIGN) + len <= s.map.len());
        if !has_room {
            let first = state.slabs.is_empty();
            let data = self.storage.bytes().len() - self.layout.data_start as usize;
            let size = if first {
                data + data / 8 + SLAB_MARGIN
            } else {
                0
            };
            state.slabs.push(Slab::new(size.max(len))?);
        }
        let slab = state.slabs.last_mut()?;
        let before = slab.next;
        let out = slab.take(len)?;
        if !fill(self.tensor_bytes(t), out) {
            // Give the space back (written bytes stay written; the next copy overwrites).
            slab.next = before;
            return None;
        }
        let d = Arc::new(DerivedBytes {
            ptr: out.as_ptr(),
            len,
        });
        state.copies.insert(key, d.clone());
        Some((d, true))
    }

    /// `derived` for a copy of tensor `t`'s bytes as they are, made 4 MiB at a time with the
    /// file's whole pages behind each piece dropped as soon as it is copied, so a large table
    /// is not resident twice while it is copied (`release_pages` then drops the rest).
    pub fn derived_verbatim(
        &self,
        t: &TensorInfo,
        tag: &'static str,
    ) -> Option<(Arc<DerivedBytes>, bool)> {
        const PIECE: usize = 4 << 20;
        self.derived(t, tag, t.n_bytes as usize, |src, out| {
            for (s, o) in src.chunks(PIECE).zip(out.chunks_mut(PIECE)) {
                o.copy_from_slice(s);
                self.drop_pages_within(s);
            }
            true
        })
    }

    /// Drops the mapped pages that lie wholly inside `bytes`, a piece of a tensor whose copy
    /// is being made (`release_pages`, without its bookkeeping: the pages at either end, which
    /// a neighbour may share, stay). A hint, as `release_pages`.
    fn drop_pages_within(&self, bytes: &[u8]) {
        let Storage::Mmap(map) = &self.storage else {
            return;
        };
        const PAGE: usize = 4096;
        let Some(off) = (bytes.as_ptr() as usize).checked_sub(map.as_ptr() as usize) else {
            return;
        };
        let (a, b) = (
            off.next_multiple_of(PAGE),
            (off + bytes.len()) / PAGE * PAGE,
        );
        if a < b && b <= map.len() {
            let dont_need = memmap2::UncheckedAdvice::DontNeed;
            // SAFETY: as in `release_pages`: the map is read-only and private, so a later read
            // faults the same bytes back in from the file; the range lies inside the map
            // (checked just above) and inside the tensor `bytes` belongs to.
            let _ = unsafe { map.unchecked_advise_range(dont_need, a, b - a) };
        }
    }

    /// Tells the kernel it may drop the mapped pages behind tensor `t`
    /// (`madvise(MADV_DONTNEED)`): they leave this process's resident memory and are read
    /// back from the file only if touched again. A page shared with a neighbouring tensor
    /// is released once that tensor's pages are released too. A hint: errors are ignored,
    /// and an in-memory file keeps its bytes.
    pub fn release_pages(&self, t: &TensorInfo) {
        let Storage::Mmap(map) = &self.storage else {
            return;
        };
        const PAGE: usize = 4096;
        let gap = self.layout.alignment as usize;
        let mut start = (self.layout.data_start + t.offset) as usize;
        let mut end = start + t.n_bytes as usize;
        let mut state = self.derived.0.lock().unwrap_or_else(|e| e.into_inner());
        // Merge with released neighbours that only alignment padding separates from t.
        if let Some((&a, &b)) = state.released.range(..=start).next_back() {
            if b + gap >= start {
                start = a;
                end = end.max(b);
                state.released.remove(&a);
            }
        }
        while let Some((&a, &b)) = state.released.range(start..).next() {
            if a > end + gap {
                break;
            }
            end = end.max(b);
            state.released.remove(&a);
        }
        state.released.insert(start, end);
        let (a, b) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if a < b {
            let dont_need = memmap2::UncheckedAdvice::DontNeed;
            // SAFETY: the map is read-only and private, so MADV_DONTNEED discards nothing
            // that cannot be read back: a later read faults the pages in from the file with
            // the same bytes. The range lies inside the map (the parser checked every
            // tensor's bytes against its length).
            let _ = unsafe { map.unchecked_advise_range(dont_need, a, b - a) };
        }
    }
}
