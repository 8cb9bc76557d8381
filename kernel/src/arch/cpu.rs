//! Small CPU primitives: port I/O, TSC, control registers, halting.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes have no memory effects visible to Rust; callers only
    // address devices this kernel owns (UART, PIT, PIC, fw_cfg, isa-debug-exit).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: as for outb.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb; reads of these ports have no memory effects.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

pub fn read_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Enables interrupts and halts in one step: `sti` delays interrupt delivery by
/// one instruction, so an interrupt that became pending after the caller decided
/// to sleep still wakes the `hlt`.
///
/// Never inlined, so the profiler's samples of an idle CPU (the RIP after
/// `hlt`) name this function instead of its caller.
#[inline(never)]
pub fn enable_interrupts_and_halt() {
    // SAFETY: the caller's state is consistent for interrupts (IDT loaded).
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
}

pub fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

pub fn disable_interrupts() {
    x86_64::instructions::interrupts::disable();
}

/// Iterations of [`speed_probe`]: about 60k cycles on hardware, so it costs
/// nothing at boot, yet shows a CPU that is being emulated instruction by
/// instruction (nested virtualization without hardware support: ~16000 cycles
/// per iteration).
const PROBE_ITERATIONS: u64 = 10_000;

/// TSC cycles per iteration of a fixed register-only loop. The launcher reads it
/// from the banner to choose between KVM and TCG.
pub fn speed_probe() -> u64 {
    let start = rdtsc();
    let mut x = 1u64;
    for i in 0..PROBE_ITERATIONS {
        x = core::hint::black_box(x.wrapping_mul(3).wrapping_add(i));
    }
    core::hint::black_box(x);
    rdtsc().wrapping_sub(start) / PROBE_ITERATIONS
}
