//! Time: the TSC, calibrated at boot against PIT channel 0 (microvm has no
//! port 0x61, so the PIT channel 2 gate trick is unavailable), and a periodic
//! LAPIC timer calibrated in the same window.

use super::{cpu, lapic};
use crate::diag::Registers;
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, lobyte/hibyte access, mode 0 (count down once), binary.
const PIT_ONE_SHOT: u8 = 0x30;
const PIT_LATCH_CHANNEL0: u8 = 0x00;
/// Calibration window: 25 ms of PIT ticks (fits the 16-bit counter).
const CALIBRATION_TICKS: u64 = PIT_HZ / 40;
/// Bound on polling the PIT: far more reads than 25 ms takes even under TCG.
const CALIBRATION_MAX_READS: u32 = 20_000_000;
/// Used if the PIT never counts: a typical TSC rate, so time still advances.
const FALLBACK_TSC_HZ: u64 = 2_000_000_000;
/// The LAPIC timer input clock on QEMU (1 GHz before the divider), same purpose.
const FALLBACK_LAPIC_HZ: u64 = 1_000_000_000 / 16;
pub const TICK_HZ: u64 = 100;

static TSC_HZ: AtomicU64 = AtomicU64::new(FALLBACK_TSC_HZ);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);

fn pit_read() -> u16 {
    cpu::outb(PIT_COMMAND, PIT_LATCH_CHANNEL0);
    let lo = cpu::inb(PIT_CHANNEL0);
    let hi = cpu::inb(PIT_CHANNEL0);
    u16::from_le_bytes([lo, hi])
}

pub struct Calibration {
    pub tsc_hz: u64,
    /// LAPIC timer ticks per second after the divide-by-16.
    pub lapic_hz: u64,
    pub from_pit: bool,
}

/// Measures the TSC and the LAPIC timer against PIT channel 0.
pub fn calibrate() -> Calibration {
    TSC_AT_BOOT.store(cpu::rdtsc(), Ordering::Relaxed);
    cpu::outb(PIT_COMMAND, PIT_ONE_SHOT);
    cpu::outb(PIT_CHANNEL0, 0xff);
    cpu::outb(PIT_CHANNEL0, 0xff);
    let start_count = pit_read();
    lapic::start_calibration_count();
    let tsc_start = cpu::rdtsc();
    let mut reads = 0;
    let mut elapsed = 0;
    while reads < CALIBRATION_MAX_READS {
        elapsed = u64::from(start_count.wrapping_sub(pit_read()));
        if elapsed >= CALIBRATION_TICKS {
            break;
        }
        reads += 1;
    }
    let tsc_delta = cpu::rdtsc() - tsc_start;
    let lapic_delta = u64::from(lapic::calibration_elapsed());
    let calibration = if elapsed >= CALIBRATION_TICKS && tsc_delta > 0 {
        Calibration {
            tsc_hz: tsc_delta * PIT_HZ / elapsed,
            lapic_hz: (lapic_delta * PIT_HZ / elapsed).max(TICK_HZ),
            from_pit: true,
        }
    } else {
        Calibration {
            tsc_hz: FALLBACK_TSC_HZ,
            lapic_hz: FALLBACK_LAPIC_HZ,
            from_pit: false,
        }
    };
    TSC_HZ.store(calibration.tsc_hz.max(1), Ordering::Relaxed);
    calibration
}

pub fn start_tick(vector: u8, lapic_hz: u64) {
    let count = u32::try_from(lapic_hz / TICK_HZ).unwrap_or(u32::MAX);
    lapic::start_periodic(vector, count);
}

/// Nanoseconds since `calibrate` ran.
pub fn uptime_ns() -> u64 {
    let delta = cpu::rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (u128::from(delta) * 1_000_000_000 / u128::from(TSC_HZ.load(Ordering::Relaxed))) as u64
}

pub fn uptime_ms() -> u64 {
    uptime_ns() / 1_000_000
}

pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Timer interrupt: count the tick. (Interrupt context: no locks, no allocation.)
pub fn on_timer_interrupt(regs: &Registers) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    super::profile::record(regs.rip);
    super::lockup::check(regs);
}
