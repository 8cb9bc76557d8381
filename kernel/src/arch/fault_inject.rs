//! Test-only faults, chosen with `fault=...` in the runtime configuration, so
//! tests can prove the fault path end to end. Each function is never inlined,
//! so the reported RIP symbolizes to it.

use crate::config::Fault;

/// `0 - 120`: what a null pointer minus a small offset wraps to, in the
/// unmapped top page. A read through it page-faults with a `cr2` that a test
/// can recognise in the dump.
pub const BAD_POINTER: u64 = 0xffff_ffff_ffff_ff88;

pub fn inject(fault: Fault) -> ! {
    log::warn!("fault: injecting {fault:?} as configured");
    match fault {
        Fault::PageFault => page_fault(),
        Fault::Panic => panic(),
        Fault::StackOverflow => {
            let depth = recurse(core::hint::black_box(1));
            panic!("recursion returned at depth {depth}")
        }
        Fault::DivideByZero => divide(core::hint::black_box(0)),
        Fault::Hang => hang(),
        Fault::Livelock => livelock(),
    }
}

/// Spins with interrupts disabled: no timer, no lockup detector; the ib700
/// watchdog resets the guest. (Deliberately unbounded: test-only.)
#[inline(never)]
pub fn hang() -> ! {
    super::cpu::disable_interrupts();
    loop {
        core::hint::spin_loop();
    }
}

/// Spins with interrupts enabled: the timer keeps running and the soft-lockup
/// detector must report a RIP inside this function. (Deliberately unbounded.)
#[inline(never)]
pub fn livelock() -> ! {
    super::cpu::enable_interrupts();
    loop {
        core::hint::spin_loop();
    }
}

#[inline(never)]
pub fn page_fault() -> ! {
    let p = core::hint::black_box(BAD_POINTER) as *const u64;
    // SAFETY: deliberately unsound: this read must fault (test-only injection).
    let value = unsafe { p.read_volatile() };
    panic!("read through {p:p} returned {value}")
}

#[inline(never)]
pub fn panic() -> ! {
    panic!("injected panic (fault=panic)")
}

/// Recurses with a frame large enough to reach the guard page quickly.
#[inline(never)]
#[allow(unconditional_recursion)] // the point: it ends in the guard page
pub fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[depth as usize % 64]
}

#[inline(never)]
pub fn divide(divisor: u64) -> ! {
    let quotient: u64;
    // SAFETY: a plain `div`; with divisor 0 the CPU raises #DE, which is the point.
    // (Rust's `/` would panic before dividing, so the instruction is written out.)
    unsafe {
        core::arch::asm!("div {d}", d = in(reg) divisor, inout("rax") 1u64 => quotient, inout("rdx") 0u64 => _)
    };
    panic!("1 / {divisor} = {quotient}")
}
