//! Ending the guest so that its supervisor notices at once.

use super::cpu;
use core::arch::asm;

/// `isa-debug-exit` as the launcher configures it: writing `v` makes QEMU exit
/// with status `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;
const DEBUG_EXIT_FATAL: u8 = 1;
const _: () = assert!(((DEBUG_EXIT_FATAL as u32) << 1 | 1) == crate::diag::FATAL_EXIT_STATUS);

/// Ends the guest after a fatal error: QEMU exits with status 3 when it has
/// `isa-debug-exit`; otherwise a triple fault resets the machine (QEMU exits
/// with `-no-reboot`, or reboots the guest). Never spins in `cli; hlt`.
pub fn fatal() -> ! {
    cpu::disable_interrupts();
    cpu::outb(DEBUG_EXIT_PORT, DEBUG_EXIT_FATAL);
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
