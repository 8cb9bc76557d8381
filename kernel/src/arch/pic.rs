//! The legacy 8259 PICs, which this kernel never uses: every interrupt goes
//! through the IOAPICs and the LAPIC. They are masked so a stray ISA line
//! cannot raise a vector that overlaps the CPU exceptions.

use super::cpu;

/// Interrupt mask register of the primary PIC (IRQ 0-7).
const PRIMARY_DATA: u16 = 0x21;
/// Interrupt mask register of the secondary PIC (IRQ 8-15).
const SECONDARY_DATA: u16 = 0xa1;
/// Every line masked.
const MASK_ALL: u8 = 0xff;

/// Masks every line of both PICs.
pub fn mask_all() {
    cpu::outb(PRIMARY_DATA, MASK_ALL);
    cpu::outb(SECONDARY_DATA, MASK_ALL);
}
