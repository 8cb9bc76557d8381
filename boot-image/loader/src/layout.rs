//! Virtual placement of what the loader maps for the kernel, honouring the
//! kernel's `BootloaderConfig` where it asks for something specific.

use bootloader_api::config::{BootloaderConfig, Mapping};

pub const PAGE: u64 = 4096;
pub const HUGE_PAGE: u64 = 2 * 1024 * 1024;
/// Physical memory is always mapped at least this far so that the LAPIC,
/// IOAPICs and virtio-mmio windows (just below 4 GiB) are reachable.
pub const MIN_PHYS_MAP: u64 = 4 << 30;
/// Default window for `Mapping::Dynamic` physical memory: PML4 slot 256.
pub const DEFAULT_PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Default kernel stack area: PML4 slot 510, below the kernel image in slot 511.
pub const DEFAULT_STACK_BASE: u64 = 0xffff_ff00_0000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    Unaligned(&'static str),
    /// The kernel did not ask for the physical memory mapping the design requires.
    NoPhysicalMapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub phys_offset: u64,
    /// Bytes of physical memory mapped at `phys_offset`.
    pub phys_map_len: u64,
    /// Unmapped guard page; the stack starts one page above it.
    pub stack_guard: u64,
    pub stack_bottom: u64,
    pub stack_len: u64,
}

impl Layout {
    pub fn stack_top(&self) -> u64 {
        self.stack_bottom + self.stack_len
    }
}

pub fn plan(config: &BootloaderConfig, ram_end: u64) -> Result<Layout, LayoutError> {
    let phys_offset = match config.mappings.physical_memory {
        None => return Err(LayoutError::NoPhysicalMapping),
        Some(Mapping::Dynamic) => DEFAULT_PHYS_OFFSET,
        Some(Mapping::FixedAddress(a)) if a % HUGE_PAGE == 0 => a,
        Some(Mapping::FixedAddress(_)) => return Err(LayoutError::Unaligned("physical memory")),
    };
    let stack_guard = match config.mappings.kernel_stack {
        Mapping::Dynamic => DEFAULT_STACK_BASE,
        Mapping::FixedAddress(a) if a % PAGE == 0 => a,
        Mapping::FixedAddress(_) => return Err(LayoutError::Unaligned("kernel stack")),
    };
    let stack_len = config.kernel_stack_size.max(PAGE).div_ceil(PAGE) * PAGE;
    let phys_map_len = ram_end.max(MIN_PHYS_MAP).div_ceil(1 << 30) * (1 << 30);
    Ok(Layout {
        phys_offset,
        phys_map_len,
        stack_guard,
        stack_bottom: stack_guard + PAGE,
        stack_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_mappings_use_defaults_and_round_sizes() {
        let mut c = BootloaderConfig::new_default();
        c.mappings.physical_memory = Some(Mapping::Dynamic);
        c.kernel_stack_size = 80 * 1024 + 1;
        let l = plan(&c, 128 << 20).unwrap();
        assert_eq!(l.phys_offset, DEFAULT_PHYS_OFFSET);
        assert_eq!(l.phys_map_len, 4 << 30);
        assert_eq!(l.stack_len, 84 * 1024);
        assert_eq!(l.stack_bottom, DEFAULT_STACK_BASE + PAGE);
        assert_eq!(l.stack_top(), DEFAULT_STACK_BASE + PAGE + 84 * 1024);
    }

    #[test]
    fn large_memory_is_mapped_whole() {
        let mut c = BootloaderConfig::new_default();
        c.mappings.physical_memory = Some(Mapping::Dynamic);
        let l = plan(&c, (6 << 30) + 5).unwrap();
        assert_eq!(l.phys_map_len, 7 << 30);
    }

    #[test]
    fn config_survives_serialization_and_fixed_addresses_are_honoured() {
        let mut c = BootloaderConfig::new_default();
        c.mappings.physical_memory = Some(Mapping::FixedAddress(0xffff_9000_0000_0000));
        c.mappings.kernel_stack = Mapping::FixedAddress(0xffff_a000_0000_0000);
        let c = BootloaderConfig::deserialize(&c.serialize()).unwrap();
        let l = plan(&c, 1 << 30).unwrap();
        assert_eq!(l.phys_offset, 0xffff_9000_0000_0000);
        assert_eq!(l.stack_guard, 0xffff_a000_0000_0000);
    }

    #[test]
    fn missing_or_unaligned_requests_are_errors() {
        let c = BootloaderConfig::new_default();
        assert_eq!(plan(&c, 1 << 30), Err(LayoutError::NoPhysicalMapping));
        let mut c = BootloaderConfig::new_default();
        c.mappings.physical_memory = Some(Mapping::FixedAddress(0x1234));
        assert_eq!(
            plan(&c, 1 << 30),
            Err(LayoutError::Unaligned("physical memory"))
        );
    }
}
