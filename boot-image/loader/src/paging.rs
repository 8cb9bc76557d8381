//! Four-level page tables for the kernel, built in identity-mapped memory.
//!
//! The loader runs with the first 4 GiB identity-mapped, so a table's physical
//! address is also a pointer to it.

pub const PRESENT: u64 = 1;
pub const WRITABLE: u64 = 1 << 1;
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;
const HUGE_PAGE: u64 = 2 * 1024 * 1024;

/// Hands out zeroed physical frames from one RAM range, upward.
pub struct Frames {
    pub next: u64,
    pub limit: u64,
    /// Said when the frames run out, e.g. what set the limit.
    pub limit_note: &'static str,
}

impl Frames {
    pub fn alloc(&mut self, count: u64) -> u64 {
        let base = self.next;
        let end = count
            .checked_mul(PAGE)
            .and_then(|len| base.checked_add(len));
        match end {
            Some(end) if end <= self.limit => {
                self.next = end;
                // SAFETY: [base, end) is RAM inside the loader's free range, below 4 GiB
                // (identity-mapped), and nothing else refers to it yet.
                unsafe { core::ptr::write_bytes(base as *mut u8, 0, (end - base) as usize) };
                base
            }
            _ => crate::fail(format_args!(
                "out of memory allocating {count} frames at {base:#x} (limit {:#x}{})",
                self.limit, self.limit_note
            )),
        }
    }
}

fn index(vaddr: u64, level: u32) -> usize {
    ((vaddr >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Returns the entry for `vaddr` in the table at `level` (3 = PML4 .. 0 = PT),
/// creating intermediate tables down to `stop_level`.
fn entry(pml4: u64, vaddr: u64, stop_level: u32, frames: &mut Frames) -> *mut u64 {
    let mut table = pml4;
    let mut level = 3;
    loop {
        // SAFETY: `table` is a page-table frame this loader allocated (identity-mapped),
        // and index() < 512 keeps the pointer inside it.
        let slot = unsafe { (table as *mut u64).add(index(vaddr, level)) };
        if level == stop_level {
            return slot;
        }
        // SAFETY: `slot` points into a live table (see above).
        let e = unsafe { slot.read() };
        table = if e & PRESENT != 0 {
            if e & HUGE != 0 {
                crate::fail(format_args!("mapping {vaddr:#x} collides with a huge page"));
            }
            e & ADDR_MASK
        } else {
            let t = frames.alloc(1);
            // SAFETY: as above; the new table is zeroed.
            unsafe { slot.write(t | PRESENT | WRITABLE) };
            t
        };
        level -= 1;
    }
}

/// Maps one 4 KiB page. If the page is already mapped (two segments sharing a
/// page), keeps its frame, widens its permissions and returns that frame.
pub fn map_page(pml4: u64, vaddr: u64, frame: u64, flags: u64, frames: &mut Frames) -> u64 {
    let slot = entry(pml4, vaddr, 0, frames);
    // SAFETY: `entry` returns a pointer into a live page table.
    let old = unsafe { slot.read() };
    if old & PRESENT != 0 {
        let nx = old & flags & NO_EXECUTE;
        let merged = ((old | flags) & !NO_EXECUTE) | nx;
        // SAFETY: as above.
        unsafe { slot.write(merged) };
        return old & ADDR_MASK;
    }
    // SAFETY: as above.
    unsafe { slot.write(frame | flags | PRESENT) };
    frame
}

/// Maps `[phys, phys + len)` at `vaddr` with 2 MiB pages.
pub fn map_huge_range(pml4: u64, vaddr: u64, phys: u64, len: u64, flags: u64, frames: &mut Frames) {
    let mut off = 0;
    while off < len {
        let slot = entry(pml4, vaddr + off, 1, frames);
        // SAFETY: `entry` returns a pointer into a live page directory.
        unsafe { slot.write((phys + off) | flags | PRESENT | HUGE) };
        off += HUGE_PAGE;
    }
}

/// The physical frame behind `vaddr` if it is mapped with a 4 KiB page.
pub fn translate(pml4: u64, vaddr: u64) -> Option<u64> {
    let mut table = pml4;
    for level in (0..4).rev() {
        // SAFETY: tables reached from `pml4` are loader-built and identity-mapped.
        let e = unsafe { (table as *const u64).add(index(vaddr, level)).read() };
        if e & PRESENT == 0 {
            return None;
        }
        table = e & ADDR_MASK;
    }
    Some(table)
}
