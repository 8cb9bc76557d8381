//! Pure parts of the PVH loader, built for the guest and unit tested on the host.
//!
//! - [`elf`]: a checked view of the embedded kernel ELF (segments, sections).
//! - [`memmap`]: the PVH (E820-style) memory map turned into `bootloader_api` regions.
//! - [`handover`]: how the loader hands the kernel what `BootInfo` has no field for.
//! - [`layout`]: where the kernel's stack and physical-memory window go, from its config.
//!
//! Everything that touches memory or the CPU lives in `main.rs` and `paging.rs`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod elf;
pub mod handover;
pub mod layout;
pub mod memmap;
