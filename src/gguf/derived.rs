//! Derived copies of tensors: the same weights rearranged for a kernel (the planner's
//! repack), made once per file and shared by every plan over it. Once a tensor has its
//! copy, the file's pages behind it can be handed back to the kernel, so a model does not
//! stay resident twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{GgufFile, Storage, TensorInfo};

/// An owned, 8-byte-aligned byte buffer: a tensor in another layout.
pub struct DerivedBytes {
    words: Box<[u64]>,
    len: usize,
}

impl DerivedBytes {
    /// `len` zero bytes (the pages are only touched when written).
    pub fn zeroed(len: usize) -> DerivedBytes {
        DerivedBytes {
            words: vec![0u64; len.div_ceil(8)].into_boxed_slice(),
            len,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// Derived copies by (tensor name, layout tag).
#[derive(Default)]
pub(super) struct DerivedCache(Mutex<BTreeMap<(String, &'static str), Arc<DerivedBytes>>>);

impl GgufFile {
    /// The copy of tensor `t` in layout `tag`, made by `make` from the tensor's bytes the
    /// first time it is asked for, then shared. `make` returning `None` (a shape the layout
    /// cannot hold) is not remembered. The second value says whether this call made it.
    pub fn derived(
        &self,
        t: &TensorInfo,
        tag: &'static str,
        make: impl FnOnce(&[u8]) -> Option<DerivedBytes>,
    ) -> Option<(Arc<DerivedBytes>, bool)> {
        let key = (t.name.clone(), tag);
        // A poisoned lock only means another plan panicked mid-insert; the map is still
        // consistent (an insert is one call), so keep using it.
        let mut cache = self.derived.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = cache.get(&key) {
            return Some((d.clone(), false));
        }
        let d = Arc::new(make(self.tensor_bytes(t))?);
        cache.insert(key, d.clone());
        Some((d, true))
    }

    /// Tells the kernel it may drop the mapped pages that lie wholly inside tensor `t`
    /// (`madvise(MADV_DONTNEED)`): they leave this process's resident memory and are read
    /// back from the file only if touched again. A hint: errors are ignored, and an
    /// in-memory file keeps its bytes.
    pub fn release_pages(&self, t: &TensorInfo) {
        let Storage::Mmap(map) = &self.storage else {
            return;
        };
        const PAGE: usize = 4096;
        let start = (self.layout.data_start + t.offset) as usize;
        let end = start + t.n_bytes as usize;
        let (a, b) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if a < b {
            // SAFETY: the map is read-only and private, so MADV_DONTNEED discards nothing
            // that cannot be read back: a later read of these pages faults them in from the
            // file with the same bytes. The range lies inside the map (the parser checked
            // every tensor's bytes against its length).
            let _ =
                unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
        }
    }
}
