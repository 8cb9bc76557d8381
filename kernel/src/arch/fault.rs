//! Fatal CPU exceptions and Rust panics: print a full report, then end the guest.

use super::{cpu, exit, serial::RawConsole};
use crate::diag::{self, Registers, StackRange};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;

pub const MAX_STACKS: usize = 4;

/// The stacks the backtrace may read, and the guard page under each.
#[derive(Debug, Clone, Copy)]
pub struct Stacks {
    pub ranges: [StackRange; MAX_STACKS],
    pub guards: [u64; MAX_STACKS],
}

static STACKS: Once<Stacks> = Once::new();
/// Set by the first fatal report; a fault inside the report goes straight to exit.
static REPORTING: AtomicBool = AtomicBool::new(false);

pub fn register_stacks(stacks: Stacks) {
    STACKS.call_once(|| stacks);
}

fn write_backtrace(out: &mut RawConsole, rbp: u64) {
    let Some(stacks) = STACKS.get() else { return };
    let read = |addr: u64| {
        // SAFETY: `backtrace` only reads 8-byte-aligned words inside a registered
        // stack range, and every registered stack is mapped for the kernel's life.
        unsafe { (addr as *const u64).read_volatile() }
    };
    diag::backtrace(rbp, &stacks.ranges, &read, |i, a| {
        let _ = diag::write_frame(out, i, a);
    });
}

fn begin_report() {
    if REPORTING.swap(true, Ordering::SeqCst) {
        // Faulted while reporting: the first report is what matters; leave now.
        exit::fatal();
    }
}

/// Called from `idt::dispatch` for vectors 0-31 (all are fatal here).
pub fn exception(regs: &Registers) -> ! {
    begin_report();
    let cr2 = cpu::cr2();
    let guards = STACKS.get().map(|s| s.guards).unwrap_or_default();
    let mut out = RawConsole::new();
    let _ = diag::write_exception(&mut out, regs, cr2, &guards);
    write_backtrace(&mut out, regs.rbp);
    let _ = diag::write_end(&mut out);
    exit::fatal()
}

/// The main loop made no progress for `ticks` timer ticks: report where the CPU
/// is (the interrupted context) and end the guest.
pub fn soft_lockup(regs: &Registers, ticks: u64) -> ! {
    begin_report();
    let mut out = RawConsole::new();
    let _ = writeln!(
        out,
        "FATAL soft-lockup: main loop made no progress for {ticks} timer ticks ({} ms)",
        ticks * 1000 / super::clock::TICK_HZ
    );
    let _ = diag::write_context(&mut out, regs);
    write_backtrace(&mut out, regs.rbp);
    let _ = diag::write_end(&mut out);
    exit::fatal()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    begin_report();
    let mut out = RawConsole::new();
    let _ = match info.location() {
        Some(l) => write!(
            out,
            "FATAL panic at {}:{}:{}: ",
            l.file(),
            l.line(),
            l.column()
        ),
        None => write!(out, "FATAL panic at <unknown>: "),
    };
    let _ = writeln!(out, "{}", info.message());
    write_backtrace(&mut out, cpu::read_rbp());
    let _ = diag::write_end(&mut out);
    exit::fatal()
}
