//! I/O APICs. microvm has one at 0xfec00000 (GSI 0-23) and, with its default
//! `ioapic2=on`, a second at 0xfec10000 (GSI 24-47) for virtio-mmio.
//! At boot every redirection entry is masked; drivers route their own lines.
//!
//! [`IoApic::probe`] takes the responsibility for a register window once; the
//! methods are then safe and touch only the window's two registers.

use x86_64::{PhysAddr, VirtAddr};

/// Register select: which internal register [`IOWIN`] reads and writes.
const IOREGSEL: usize = 0x00;
/// Register window: the selected internal register.
const IOWIN: usize = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
/// First redirection entry; entry `i` is the register pair `0x10 + 2i`
/// (low half) and `0x11 + 2i` (high half).
const REG_REDIRECTION: u32 = 0x10;
/// The IOAPIC ID sits in bits 24-27 of the ID register.
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0xf;
/// The highest redirection entry's index sits in bits 16-23 of the version register.
const MAX_REDIRECTION_SHIFT: u32 = 16;
const MAX_REDIRECTION_MASK: u32 = 0xff;
/// Redirection entry: the destination APIC ID in bits 56-63.
const DESTINATION_SHIFT: u32 = 56;
/// Redirection entry bits.
const MASKED: u64 = 1 << 16;
const LEVEL_TRIGGERED: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;
/// Absent MMIO reads as all ones (or zero); a real IOAPIC has 1..240 entries.
const MAX_ENTRIES: u32 = 240;

/// Where microvm puts its IOAPICs (the second only with `ioapic2=on`).
pub const IOAPIC_PHYS: [PhysAddr; 2] = [
    PhysAddr::new_truncate(0xfec0_0000),
    PhysAddr::new_truncate(0xfec1_0000),
];
pub const GSI_PER_IOAPIC: u32 = 24;

pub struct IoApic {
    base: VirtAddr,
    pub gsi_base: u32,
    pub entries: u32,
}

impl IoApic {
    /// Probes the IOAPIC at virtual address `virt`; None if nothing answers.
    ///
    /// # Safety
    /// `virt` must be the uncached mapping, for the kernel's life, of one of
    /// [`IOAPIC_PHYS`]: an IOAPIC's register window or an empty MMIO hole
    /// (which reads harmlessly). No other `IoApic` may use the same window:
    /// the select-then-access pair of registers is not atomic.
    pub unsafe fn probe(virt: VirtAddr, gsi_base: u32) -> Option<IoApic> {
        let mut io = IoApic {
            base: virt,
            gsi_base,
            entries: 0,
        };
        let version = io.read(REG_VERSION);
        let entries = ((version >> MAX_REDIRECTION_SHIFT) & MAX_REDIRECTION_MASK) + 1;
        if version == u32::MAX || version == 0 || entries > MAX_ENTRIES {
            return None;
        }
        io.entries = entries;
        Some(io)
    }

    fn read(&mut self, reg: u32) -> u32 {
        // SAFETY: `base` is the uncached mapping of an IOAPIC window (or of an
        // empty MMIO hole, which reads harmlessly), this IoApic's alone, as
        // probe's caller guaranteed; IOREGSEL/IOWIN are inside it.
        unsafe {
            (self.base + IOREGSEL as u64)
                .as_mut_ptr::<u32>()
                .write_volatile(reg);
            (self.base + IOWIN as u64).as_ptr::<u32>().read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as for read.
        unsafe {
            (self.base + IOREGSEL as u64)
                .as_mut_ptr::<u32>()
                .write_volatile(reg);
            (self.base + IOWIN as u64)
                .as_mut_ptr::<u32>()
                .write_volatile(value);
        }
    }

    pub fn covers(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.entries
    }

    pub fn id(&mut self) -> u32 {
        (self.read(REG_ID) >> ID_SHIFT) & ID_MASK
    }

    fn set_entry(&self, index: u32, value: u64) {
        self.write(REG_REDIRECTION + 2 * index, value as u32);
        self.write(REG_REDIRECTION + 2 * index + 1, (value >> 32) as u32);
    }

    pub fn mask_all(&mut self) {
        for i in 0..self.entries {
            self.set_entry(i, MASKED);
        }
    }

    /// Routes `gsi` to `vector` on the LAPIC `apic_id`. Returns false if the GSI
    /// is not on this IOAPIC.
    pub fn route(&self, gsi: u32, vector: u8, apic_id: u32, level: bool, active_low: bool) -> bool {
        let Some(index) = gsi.checked_sub(self.gsi_base).filter(|&i| i < self.entries) else {
            return false;
        };
        let mut entry = u64::from(vector) | (u64::from(apic_id) << DESTINATION_SHIFT);
        if level {
            entry |= LEVEL_TRIGGERED;
        }
        if active_low {
            entry |= ACTIVE_LOW;
        }
        self.set_entry(index, entry);
        true
    }
}
