//! Local APIC (xAPIC, memory-mapped): enable, EOI, and the timer.

use core::sync::atomic::{AtomicU64, Ordering};

pub const LAPIC_PHYS: u64 = 0xfee0_0000;

const ID: usize = 0x020;
const EOI: usize = 0x0b0;
const SPURIOUS: usize = 0x0f0;
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;

const SOFTWARE_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

/// Virtual address of the LAPIC registers (0 until `init`).
static BASE: AtomicU64 = AtomicU64::new(0);

fn reg(offset: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) as usize + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: BASE maps the LAPIC page uncached (set in init from the kernel's
    // physical-memory window); offsets are architectural registers inside it.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as for read.
    unsafe { reg(offset).write_volatile(value) }
}

/// Enables the LAPIC at `virt` (the uncached mapping of [`LAPIC_PHYS`]).
pub fn init(virt: u64, spurious_vector: u8) {
    BASE.store(virt, Ordering::Relaxed);
    write(SPURIOUS, SOFTWARE_ENABLE | u32::from(spurious_vector));
    write(LVT_TIMER, LVT_MASKED);
}

pub fn id() -> u32 {
    read(ID) >> 24
}

pub fn eoi() {
    if BASE.load(Ordering::Relaxed) != 0 {
        write(EOI, 0);
    }
}

/// Starts a one-shot count from `u32::MAX` (divide by 16, masked) for calibration.
pub fn start_calibration_count() {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, u32::MAX);
}

/// Counts elapsed since `start_calibration_count` (divide-by-16 ticks).
pub fn calibration_elapsed() -> u32 {
    u32::MAX - read(TIMER_CURRENT)
}

/// Periodic timer: `count` divide-by-16 ticks per interrupt on `vector`.
pub fn start_periodic(vector: u8, count: u32) {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, TIMER_PERIODIC | u32::from(vector));
    write(TIMER_INITIAL, count.max(1));
}
