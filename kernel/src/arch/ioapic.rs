//! I/O APICs. microvm has one at 0xfec00000 (GSI 0-23) and, with its default
//! `ioapic2=on`, a second at 0xfec10000 (GSI 24-47) for virtio-mmio.
//! At boot every redirection entry is masked; drivers route their own lines.

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u64 = 1 << 16;
const LEVEL_TRIGGERED: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;
/// Absent MMIO reads as all ones (or zero); a real IOAPIC has 1..240 entries.
const MAX_ENTRIES: u32 = 240;

pub const IOAPIC_PHYS: [u64; 2] = [0xfec0_0000, 0xfec1_0000];
pub const GSI_PER_IOAPIC: u32 = 24;

pub struct IoApic {
    base: u64,
    pub gsi_base: u32,
    pub entries: u32,
}

impl IoApic {
    /// Probes the IOAPIC at virtual address `virt`; None if nothing answers.
    pub fn probe(virt: u64, gsi_base: u32) -> Option<IoApic> {
        let mut io = IoApic {
            base: virt,
            gsi_base,
            entries: 0,
        };
        let version = io.read(REG_VERSION);
        let entries = ((version >> 16) & 0xff) + 1;
        if version == u32::MAX || version == 0 || entries > MAX_ENTRIES {
            return None;
        }
        io.entries = entries;
        Some(io)
    }

    fn read(&mut self, reg: u32) -> u32 {
        // SAFETY: `base` is the uncached mapping of an IOAPIC window (or of an
        // empty MMIO hole, which reads harmlessly); IOREGSEL/IOWIN are inside it.
        unsafe {
            ((self.base as usize + IOREGSEL) as *mut u32).write_volatile(reg);
            ((self.base as usize + IOWIN) as *mut u32).read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as for read.
        unsafe {
            ((self.base as usize + IOREGSEL) as *mut u32).write_volatile(reg);
            ((self.base as usize + IOWIN) as *mut u32).write_volatile(value);
        }
    }

    pub fn covers(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.entries
    }

    pub fn id(&mut self) -> u32 {
        (self.read(REG_ID) >> 24) & 0xf
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
        let mut entry = u64::from(vector) | (u64::from(apic_id) << 56);
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
