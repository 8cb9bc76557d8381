//! Physical frame allocator over the boot memory map.
//!
//! Frames are handed out upward from the usable regions and never freed: the
//! kernel allocates its page tables, stacks and heap once at boot, and the heap
//! serves everything after that.

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};

pub const FRAME: u64 = 4096;
/// Memory below 1 MiB is left alone (real-mode leftovers, and physical address 0
/// means "allocation failed" to virtio-drivers).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
pub const MAX_RANGES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    next: u64,
    end: u64,
}

#[derive(Debug)]
pub struct FrameAllocator {
    ranges: [Range; MAX_RANGES],
    count: usize,
    allocated: u64,
}

impl FrameAllocator {
    pub fn new(regions: &[MemoryRegion]) -> Self {
        let mut ranges = [Range { next: 0, end: 0 }; MAX_RANGES];
        let mut count = 0;
        for r in regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
        {
            let start = r.start.max(LOW_MEMORY_END).next_multiple_of(FRAME);
            let end = r.end & !(FRAME - 1);
            if start < end && count < MAX_RANGES {
                ranges[count] = Range { next: start, end };
                count += 1;
            }
        }
        FrameAllocator {
            ranges,
            count,
            allocated: 0,
        }
    }

    /// `count` physically contiguous frames, or None if no range has them.
    pub fn alloc_contiguous(&mut self, count: u64) -> Option<u64> {
        let len = count.checked_mul(FRAME)?;
        let range = self.ranges[..self.count]
            .iter_mut()
            .find(|r| r.end - r.next >= len)?;
        let base = range.next;
        range.next += len;
        self.allocated += count;
        Some(base)
    }

    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_contiguous(1)
    }

    /// Frames still available.
    pub fn free_frames(&self) -> u64 {
        self.ranges[..self.count]
            .iter()
            .map(|r| (r.end - r.next) / FRAME)
            .sum()
    }

    /// The most frames one `alloc_contiguous` call could return now.
    pub fn largest_run(&self) -> u64 {
        self.ranges[..self.count]
            .iter()
            .map(|r| (r.end - r.next) / FRAME)
            .max()
            .unwrap_or(0)
    }

    pub fn allocated_frames(&self) -> u64 {
        self.allocated
    }
}

/// Bytes of usable memory in the map.
pub fn usable_bytes(regions: &[MemoryRegion]) -> u64 {
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| r.end.saturating_sub(r.start))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemoryRegionKind::*;

    fn region(start: u64, end: u64, kind: MemoryRegionKind) -> MemoryRegion {
        MemoryRegion { start, end, kind }
    }

    #[test]
    fn skips_low_memory_and_non_usable() {
        let regions = [
            region(0, 0x9f000, Usable),
            region(0x10_0000, 0x20_0000, Bootloader),
            region(0x20_0000, 0x20_3000, Usable),
        ];
        let mut a = FrameAllocator::new(&regions);
        assert_eq!(a.free_frames(), 3);
        assert_eq!(a.alloc(), Some(0x20_0000));
        assert_eq!(a.alloc(), Some(0x20_1000));
        assert_eq!(a.alloc(), Some(0x20_2000));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.allocated_frames(), 3);
    }

    #[test]
    fn contiguous_requests_skip_small_ranges() {
        let regions = [
            region(0x10_0000, 0x10_2000, Usable),
            region(0x40_0000, 0x80_0000, Usable),
        ];
        let mut a = FrameAllocator::new(&regions);
        assert_eq!(a.largest_run(), 0x400);
        assert_eq!(a.alloc_contiguous(4), Some(0x40_0000));
        assert_eq!(a.largest_run(), 0x3fc);
        assert_eq!(a.alloc(), Some(0x10_0000));
        assert_eq!(a.alloc_contiguous(u64::MAX), None);
        assert_eq!(a.alloc_contiguous(2000), None);
        assert_eq!(usable_bytes(&regions), 0x2000 + 0x40_0000);
    }

    #[test]
    fn unaligned_regions_are_trimmed_to_whole_frames() {
        let mut a = FrameAllocator::new(&[region(0x10_0800, 0x10_2800, Usable)]);
        assert_eq!(a.alloc(), Some(0x10_1000));
        assert_eq!(a.alloc(), None);
    }
}
