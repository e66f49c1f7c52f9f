//! The one block of memory a session runs in: the KV region, then the activation arena.
//!
//! An anonymous mapping, 2 MiB aligned and advised as huge pages: attention streams a
//! layer's whole cache every token, and with 4 KiB pages the hardware prefetchers stop at
//! every page boundary (as for the repacked weights, `gguf/derived.rs`). The kernel hands
//! out zeroed pages as they are first touched, so a long context costs resident memory only
//! as positions fill it. Under Miri, which cannot map memory, a zeroed heap allocation.

/// Alignment of the block: a huge page (every plan offset needs 64 bytes at least).
const ALIGN: usize = 2 << 20;

pub struct SessionMemory {
    /// Owns the mapping `ptr` points into.
    #[cfg(not(miri))]
    _map: memmap2::MmapMut,
    #[cfg(miri)]
    layout: std::alloc::Layout,
    ptr: *mut u8,
}

impl SessionMemory {
    /// `size` zeroed bytes, or `None` when the system will not give them.
    pub fn new(size: usize) -> Option<SessionMemory> {
        let size = size.max(64);
        #[cfg(not(miri))]
        {
            let mut map = memmap2::MmapMut::map_anon(size.checked_add(ALIGN)?).ok()?;
            // A hint: without transparent huge pages the memory works the same.
            let _ = map.advise(memmap2::Advice::HugePage);
            let base = map.as_mut_ptr();
            let skip = (base as usize).next_multiple_of(ALIGN) - base as usize;
            // SAFETY: skip < ALIGN, and the map holds size + ALIGN bytes.
            let ptr = unsafe { base.add(skip) };
            Some(SessionMemory { _map: map, ptr })
        }
        #[cfg(miri)]
        {
            let layout = std::alloc::Layout::from_size_align(size, 64).ok()?;
            // SAFETY: the layout's size is at least 64 bytes.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            (!ptr.is_null()).then_some(SessionMemory { layout, ptr })
        }
    }

    /// The first byte; `size` bytes from it are the session's.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

#[cfg(miri)]
impl Drop for SessionMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}
