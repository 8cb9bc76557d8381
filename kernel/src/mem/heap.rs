//! The kernel heap: `linked_list_allocator` over one physically contiguous
//! block, so any heap buffer can be handed to a DMA device as-is.

use linked_list_allocator::LockedHeap;
use x86_64::VirtAddr;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

pub const MIN_HEAP: u64 = 1 << 20;
pub const MAX_HEAP: u64 = 64 << 20;

/// Heap size given the largest contiguous free block (bytes) once page tables
/// and stacks are allocated: all of it, up to [`MAX_HEAP`]. Nothing allocates
/// frames after the heap (DMA buffers come from the heap too), so a smaller
/// heap would leave RAM idle and make small guests (16 MiB) fail to allocate
/// their socket buffers. None if even [`MIN_HEAP`] does not fit.
pub fn size_for(largest_block: u64) -> Option<u64> {
    let size = largest_block.min(MAX_HEAP) & !0xfff;
    (size >= MIN_HEAP).then_some(size)
}

/// # Safety
/// `[start, start + size)` must be mapped, writable, unused by anything else for
/// the kernel's life, and this must be called once.
pub unsafe fn init(start: VirtAddr, size: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        ALLOCATOR
            .lock()
            .init(start.as_mut_ptr::<u8>(), size as usize)
    };
}

pub struct HeapUsage {
    pub used: usize,
    pub free: usize,
}

/// Heap usage, or None if the heap is busy (called from where it might be held).
pub fn usage() -> Option<HeapUsage> {
    ALLOCATOR.try_lock().map(|h| HeapUsage {
        used: h.used(),
        free: h.free(),
    })
}
