//! Ending the guest so that its supervisor notices at once.

use super::cpu;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// `isa-debug-exit` as the launcher configures it: writing `v` makes QEMU exit
/// with status `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;
const DEBUG_EXIT_FATAL: u8 = 1;
const _: () = assert!(((DEBUG_EXIT_FATAL as u32) << 1 | 1) == crate::diag::FATAL_EXIT_STATUS);

/// microvm's ACPI generic event device: its reset register resets the machine
/// (QEMU exits with `-no-reboot`). Present with microvm's default `acpi=on`.
const GED_RESET_REGISTER: u64 = 0xfea0_0202;
const GED_RESET_VALUE: u8 = 0x42;

/// Where the physical-memory window starts, for the GED register (0 before the
/// kernel knows it; then only the triple fault remains).
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

pub fn set_phys_offset(offset: u64) {
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
}

/// Ends the guest after a fatal error: QEMU exits with status 3 when it has
/// `isa-debug-exit`; otherwise the machine is reset (QEMU exits with
/// `-no-reboot`, or reboots the guest): through the ACPI GED reset register,
/// and if that does nothing, a triple fault (which this machine's nested KVM
/// cannot emulate, hence the GED first). Never spins in `cli; hlt`.
pub fn fatal() -> ! {
    cpu::disable_interrupts();
    cpu::outb(DEBUG_EXIT_PORT, DEBUG_EXIT_FATAL);
    let offset = PHYS_OFFSET.load(Ordering::Relaxed);
    if offset != 0 {
        let register = (offset + GED_RESET_REGISTER) as *mut u8;
        // SAFETY: the physical window maps the microvm MMIO hole uncached; the GED
        // reset register is a write-only byte there (an absent device ignores it).
        unsafe { register.write_volatile(GED_RESET_VALUE) };
    }
    triple_fault()
}

fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let empty = Idtr { limit: 0, base: 0 };
    // SAFETY: with an empty IDT the breakpoint cannot be delivered: the CPU
    // double-faults, then triple-faults and resets. That reset is the intent.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &empty, options(noreturn)) }
}
