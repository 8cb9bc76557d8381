//! What the PVH loader hands over besides `BootInfo`'s own fields, read once at
//! boot (the loader's side is `boot-image/loader/src/handover.rs`):
//!
//! - the site bundle as `ramdisk_addr` (in the physical-memory window) and
//!   `ramdisk_len`, in memory the loader reported as `Bootloader`, so the frame
//!   allocator never hands it out and it stays put for the kernel's life;
//! - the kernel command line, NUL-terminated in the one memory region of kind
//!   `UnknownBios(`[`CMDLINE_REGION`]`)` (`BootInfo` has no field for it).

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
use core::ops::Range;

/// Memory-region kind of the command-line page ("UKCL").
pub const CMDLINE_REGION: u32 = 0x554b_434c;

/// Why a ramdisk was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverError {
    /// Not inside the physical-memory window.
    OutsideWindow { addr: u64, len: u64 },
    /// Not inside memory the loader reserved: the kernel could overwrite it.
    NotReserved { phys: u64, len: u64 },
}

impl core::fmt::Display for HandoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandoverError::OutsideWindow { addr, len } => write!(
                f,
                "ramdisk of {len} bytes at {addr:#x} is outside the physical-memory window"
            ),
            HandoverError::NotReserved { phys, len } => write!(
                f,
                "ramdisk of {len} bytes at physical {phys:#x} is not in memory the loader reserved"
            ),
        }
    }
}

/// The physical range of a ramdisk at window address `addr`, checked to lie in
/// one `Bootloader` region (never handed out as free memory).
pub fn ramdisk_range(
    regions: &[MemoryRegion],
    addr: u64,
    len: u64,
    phys_offset: u64,
    window_len: u64,
) -> Result<Range<u64>, HandoverError> {
    let phys = addr
        .checked_sub(phys_offset)
        .filter(|p| p.checked_add(len).is_some_and(|end| end <= window_len))
        .ok_or(HandoverError::OutsideWindow { addr, len })?;
    let end = phys + len;
    regions
        .iter()
        .any(|r| r.kind == MemoryRegionKind::Bootloader && r.start <= phys && end <= r.end)
        .then_some(phys..end)
        .ok_or(HandoverError::NotReserved { phys, len })
}

/// The command-line region, if the loader reported one.
pub fn cmdline_range(regions: &[MemoryRegion]) -> Option<Range<u64>> {
    regions
        .iter()
        .find(|r| r.kind == MemoryRegionKind::UnknownBios(CMDLINE_REGION) && r.start < r.end)
        .map(|r| r.start..r.end)
}

/// Bytes of reserved memory that live as long as the kernel.
#[cfg(target_os = "none")]
fn reserved_bytes(phys: Range<u64>) -> &'static [u8] {
    let len = (phys.end - phys.start) as usize;
    // SAFETY: callers pass a range checked to lie in a region the loader reserved
    // (Bootloader or the command-line page) inside the physical-memory window,
    // which `paging::build` maps for the kernel's life; the frame allocator
    // only hands out Usable frames, so nothing writes these bytes.
    unsafe {
        core::slice::from_raw_parts(
            super::paging::phys_to_virt(x86_64::PhysAddr::new(phys.start)).as_ptr::<u8>(),
            len,
        )
    }
}

/// The ramdisk the loader handed over (a site bundle), if any.
#[cfg(target_os = "none")]
pub fn ramdisk(
    boot_info: &bootloader_api::BootInfo,
) -> Result<Option<&'static [u8]>, HandoverError> {
    let (phys_offset, window_len) = super::paging::window();
    let Some(addr) = boot_info.ramdisk_addr.into_option() else {
        return Ok(None);
    };
    let range = ramdisk_range(
        &boot_info.memory_regions,
        addr,
        boot_info.ramdisk_len,
        phys_offset,
        window_len,
    )?;
    Ok(Some(reserved_bytes(range)))
}

/// The kernel command line (empty without one), up to its NUL.
#[cfg(target_os = "none")]
pub fn cmdline(regions: &[MemoryRegion]) -> &'static [u8] {
    let Some(range) = cmdline_range(regions) else {
        return &[];
    };
    let bytes = reserved_bytes(range);
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, kind: MemoryRegionKind) -> MemoryRegion {
        MemoryRegion { start, end, kind }
    }

    #[test]
    fn the_loader_uses_the_same_command_line_kind() {
        let loader = include_str!("../../../boot-image/loader/src/handover.rs");
        assert!(loader.contains(&format!(
            "CMDLINE_REGION: u32 = 0x{:04x}_{:04x};",
            CMDLINE_REGION >> 16,
            CMDLINE_REGION & 0xffff
        )));
    }

    #[test]
    fn ramdisk_must_be_reserved_and_inside_the_window() {
        let off = 0xffff_8000_0000_0000;
        let regions = [
            region(0, 0x10_0000, MemoryRegionKind::Usable),
            region(0x10_0000, 0x20_0000, MemoryRegionKind::Bootloader),
            region(0x20_0000, 0x100_0000, MemoryRegionKind::Usable),
        ];
        let window = 4 << 30;
        assert_eq!(
            ramdisk_range(&regions, off + 0x10_0000, 0x1000, off, window),
            Ok(0x10_0000..0x10_1000)
        );
        assert_eq!(
            ramdisk_range(&regions, off + 0x1f_f000, 0x2000, off, window),
            Err(HandoverError::NotReserved {
                phys: 0x1f_f000,
                len: 0x2000
            })
        );
        assert!(ramdisk_range(&regions, 0x1000, 1, off, window).is_err());
        assert!(ramdisk_range(&regions, off + 0x10_0000, u64::MAX, off, window).is_err());
        assert!(ramdisk_range(&regions, off + window, 0, off, window).is_err());
    }

    #[test]
    fn command_line_region_is_found_by_kind() {
        let regions = [
            region(0, 0x1000, MemoryRegionKind::Usable),
            region(
                0x5000,
                0x6000,
                MemoryRegionKind::UnknownBios(CMDLINE_REGION),
            ),
        ];
        assert_eq!(cmdline_range(&regions), Some(0x5000..0x6000));
        assert_eq!(cmdline_range(&regions[..1]), None);
    }
}
