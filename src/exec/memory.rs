//! The one block of memory a session runs in: the KV region, then the activation arena.
//!
//! An anonymous mapping: the kernel hands out zeroed 4 KiB pages as they are first touched,
//! so a context costs resident memory only as positions fill it (SmolLM2 at `--ctx 8192`
//! with a short prompt: 125 MiB peak, against 304 MiB when the block is zeroed up front or
//! advised as huge pages, whose 2 MiB each span several KV heads' regions). Huge pages
//! would stream a long cache 5–10% faster (decode at depth 4096 on the Zen 4 VM, with the
//! attention kernel's own prefetching); memory that follows the context won. Under Miri,
//! which cannot map memory, a zeroed heap allocation.

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
            // Page aligned, so every plan offset's 64-byte alignment holds.
            let mut map = memmap2::MmapMut::map_anon(size).ok()?;
            let ptr = map.as_mut_ptr();
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
