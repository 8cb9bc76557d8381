//! What the loader hands the kernel beyond `bootloader_api::BootInfo`'s fields.
//! The kernel (`kernel/src/mem/handover.rs`) repeats these values; a host test
//! there reads this file to keep them equal.

/// Memory-region kind (`MemoryRegionKind::UnknownBios(CMDLINE_REGION)`) of the
/// page holding the kernel command line, NUL-terminated ("UKCL"). No E820 type
/// is near it, so it cannot be mistaken for one the firmware reported.
pub const CMDLINE_REGION: u32 = 0x554b_434c;
