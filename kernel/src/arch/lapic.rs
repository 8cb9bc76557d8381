//! Local APIC (xAPIC, memory-mapped): enable, EOI, and the timer.
//!
//! [`init`] takes the responsibility for the register page once; every other
//! function here is safe and touches only architectural registers in it.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{PhysAddr, VirtAddr};

/// Where the xAPIC's register page is (the architectural default, which
/// microvm keeps).
pub const LAPIC_PHYS: PhysAddr = PhysAddr::new_truncate(0xfee0_0000);

const ID: usize = 0x020;
const EOI: usize = 0x0b0;
const SPURIOUS: usize = 0x0f0;
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;

/// The APIC ID sits in bits 24-31 of the ID register.
const ID_SHIFT: u32 = 24;
const SOFTWARE_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

/// Virtual address of the LAPIC registers (0 until `init`).
static BASE: AtomicU64 = AtomicU64::new(0);

/// The register at `offset`, or `None` before [`init`].
fn reg(offset: usize) -> Option<*mut u32> {
    match BASE.load(Ordering::Relaxed) {
        0 => None,
        base => Some((base as usize + offset) as *mut u32),
    }
}

/// The register at `offset` (0 before [`init`]).
fn read(offset: usize) -> u32 {
    // SAFETY: a non-zero BASE maps the LAPIC page uncached (init's caller
    // vouched for it); offsets are architectural registers inside it.
    reg(offset).map_or(0, |r| unsafe { r.read_volatile() })
}

/// Writes the register at `offset` (nothing before [`init`]).
fn write(offset: usize, value: u32) {
    if let Some(r) = reg(offset) {
        // SAFETY: as for read.
        unsafe { r.write_volatile(value) }
    }
}

/// Enables the LAPIC at `virt`, its timer masked.
///
/// # Safety
/// `virt` must be the uncached mapping of [`LAPIC_PHYS`], mapped for the
/// kernel's life; every register access in this module goes through it.
pub unsafe fn init(virt: VirtAddr, spurious_vector: u8) {
    BASE.store(virt.as_u64(), Ordering::Relaxed);
    write(SPURIOUS, SOFTWARE_ENABLE | u32::from(spurious_vector));
    write(LVT_TIMER, LVT_MASKED);
}

pub fn id() -> u32 {
    read(ID) >> ID_SHIFT
}

pub fn eoi() {
    write(EOI, 0);
}

/// Starts a one-shot count from `u32::MAX` (divide by 16, masked) for calibration.
pub fn start_calibration_count() {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, u32::MAX);
}

/// The timer's current count (divide-by-16 ticks, counting down from
/// `start_calibration_count`).
pub fn calibration_count() -> u32 {
    read(TIMER_CURRENT)
}

/// Periodic timer: `count` divide-by-16 ticks per interrupt on `vector`.
pub fn start_periodic(vector: u8, count: u32) {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, TIMER_PERIODIC | u32::from(vector));
    write(TIMER_INITIAL, count.max(1));
}
