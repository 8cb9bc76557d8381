//! The kernel's own page tables, replacing the loader's at boot:
//! - physical memory at the loader's offset with 2 MiB pages, no-execute, and
//!   uncached wherever there is no RAM (LAPIC, IOAPICs, virtio-mmio windows);
//! - the kernel image and boot stack as the loader mapped them (the unmapped
//!   guard page below the stack stays unmapped);
//! - interrupt stacks, each above an unmapped guard page;
//! - nothing in the lower half, so a null pointer faults.

use super::frames::{FRAME, FrameAllocator};
use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{
    self, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as Flags, PhysFrame, Size2MiB,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

const HUGE: u64 = 2 << 20;
/// PML4 slot 509: interrupt stacks.
pub const IST_REGION: u64 = 0xffff_fe80_0000_0000;
pub const IST_STACK_SIZE: u64 = 32 * 1024;

static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);
static PHYS_WINDOW_LEN: AtomicU64 = AtomicU64::new(0);

/// The kernel's address for physical address `phys` (in the physical-memory
/// window once [`build`] ran; typed so a physical address cannot be used as
/// a pointer by mistake).
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new_truncate(phys.as_u64() + PHYS_OFFSET.load(Ordering::Relaxed))
}

/// `(offset, length)` of the physical-memory window: physical `p` is at
/// `offset + p` for `p < length`.
pub fn window() -> (u64, u64) {
    (
        PHYS_OFFSET.load(Ordering::Relaxed),
        PHYS_WINDOW_LEN.load(Ordering::Relaxed),
    )
}

/// The physical address behind `virt`, which must be in the physical-memory
/// window (the heap is); anything else is a kernel bug, not an input error.
pub fn virt_to_phys(virt: u64) -> u64 {
    let offset = PHYS_OFFSET.load(Ordering::Relaxed);
    match virt.checked_sub(offset) {
        Some(phys) if phys < PHYS_WINDOW_LEN.load(Ordering::Relaxed) => phys,
        _ => panic!("virt_to_phys: {virt:#x} is outside the physical-memory window"),
    }
}

#[derive(Debug)]
pub enum PagingError {
    OutOfFrames,
    Map(&'static str),
}

struct Frames<'a>(&'a mut FrameAllocator);

// SAFETY: FrameAllocator hands out each usable frame at most once, and usable
// frames are not referenced by anything else.
unsafe impl paging::FrameAllocator<Size4KiB> for Frames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0
            .alloc()
            .map(|a| PhysFrame::containing_address(PhysAddr::new(a)))
    }
}

fn is_ram(regions: &[MemoryRegion], start: u64, end: u64) -> bool {
    regions.iter().any(|r| {
        matches!(
            r.kind,
            MemoryRegionKind::Usable | MemoryRegionKind::Bootloader
        ) && r.start < end
            && start < r.end
    })
}

/// A stack mapped by [`build`]: `[bottom, top)`, guard page at `bottom - 4096`.
#[derive(Debug, Clone, Copy)]
pub struct MappedStack {
    pub bottom: u64,
    pub top: u64,
}

/// Builds and activates the kernel's page tables. Returns the interrupt stacks.
pub fn build<const N: usize>(
    regions: &[MemoryRegion],
    phys_offset: u64,
    frames: &mut FrameAllocator,
) -> Result<[MappedStack; N], PagingError> {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    let ram_end = regions.iter().map(|r| r.end).max().unwrap_or(0);
    let phys_map_len = ram_end.max(4 << 30).next_multiple_of(1 << 30);
    PHYS_WINDOW_LEN.store(phys_map_len, Ordering::Relaxed);
    let phys_slots = (phys_offset >> 39) & 0x1ff..=((phys_offset + phys_map_len - 1) >> 39) & 0x1ff;

    let pml4_phys = frames.alloc().ok_or(PagingError::OutOfFrames)?;
    let (old_frame, _) = Cr3::read();
    // SAFETY: both tables are reachable through the loader's physical-memory
    // window; the new one is a fresh frame nobody else references.
    let (old, new) = unsafe {
        (
            &*phys_to_virt(old_frame.start_address()).as_ptr::<PageTable>(),
            &mut *phys_to_virt(PhysAddr::new(pml4_phys)).as_mut_ptr::<PageTable>(),
        )
    };
    new.zero();
    for slot in 256..512 {
        if !phys_slots.contains(&(slot as u64)) {
            new[slot] = old[slot].clone();
        }
    }
    // SAFETY: the offset maps all physical memory (loader contract), so the mapper
    // can reach every table frame through it.
    let mut mapper = unsafe { OffsetPageTable::new(new, VirtAddr::new(phys_offset)) };
    let mut alloc = Frames(frames);

    let mut phys = 0;
    while phys < phys_map_len {
        let mut flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL;
        if !is_ram(regions, phys, phys + HUGE) {
            flags |= Flags::NO_CACHE | Flags::WRITE_THROUGH;
        }
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(phys_offset + phys));
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
        // SAFETY: the new tables are not active yet; this maps physical memory at
        // the offset the loader used, which every other mapping here agrees with.
        unsafe { mapper.map_to(page, frame, flags, &mut alloc) }
            .map_err(|_| PagingError::Map("physical memory window"))?
            .ignore();
        phys += HUGE;
    }

    let mut stacks = [MappedStack { bottom: 0, top: 0 }; N];
    for (i, stack) in stacks.iter_mut().enumerate() {
        let slot = IST_REGION + i as u64 * (IST_STACK_SIZE + FRAME * 16);
        let bottom = slot + FRAME; // guard page at `slot` stays unmapped
        let pages = IST_STACK_SIZE / FRAME;
        let base = alloc
            .0
            .alloc_contiguous(pages)
            .ok_or(PagingError::OutOfFrames)?;
        for p in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(bottom + p * FRAME));
            let frame = PhysFrame::containing_address(PhysAddr::new(base + p * FRAME));
            let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
            // SAFETY: fresh frames mapped once into an unused region of the new tables.
            unsafe { mapper.map_to(page, frame, flags, &mut alloc) }
                .map_err(|_| PagingError::Map("interrupt stack"))?
                .ignore();
        }
        *stack = MappedStack {
            bottom,
            top: bottom + IST_STACK_SIZE,
        };
    }

    let frame = PhysFrame::containing_address(PhysAddr::new(pml4_phys));
    // SAFETY: the new tables map everything the kernel uses right now at the same
    // addresses (image, current stack, physical window incl. the BootInfo), so
    // execution continues unchanged after the switch.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    Ok(stacks)
}
