//! Time: the TSC, calibrated at boot against PIT channel 0 (microvm has no
//! port 0x61, so the PIT channel 2 gate trick is unavailable), and a periodic
//! LAPIC timer calibrated in the same windows. The arithmetic, and why a
//! window's reads are bracketed, is in [`crate::clock_calibration`].

use super::{cpu, lapic};
use crate::clock_calibration::{PIT_HZ, Stamp, Window, best_of};
use crate::diag::Registers;
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0, lobyte/hibyte access, mode 0 (count down once), binary.
const PIT_ONE_SHOT: u8 = 0x30;
const PIT_LATCH_CHANNEL0: u8 = 0x00;
/// Calibration window: 25 ms of PIT ticks (fits the 16-bit counter).
const CALIBRATION_TICKS: u64 = PIT_HZ / 40;
/// Windows tried at most when the host keeps getting between the reads.
const CALIBRATION_ATTEMPTS: u32 = 5;
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

fn stamp() -> Stamp {
    let tsc_before = cpu::rdtsc();
    let pit = pit_read();
    let lapic = lapic::calibration_count();
    Stamp {
        tsc_before,
        pit,
        lapic,
        tsc_after: cpu::rdtsc(),
    }
}

/// One window: the PIT and the LAPIC timer started together, stamped at the
/// start and once the PIT has counted [`CALIBRATION_TICKS`] (or the read
/// bound ran out, which `Window::rates` then rejects).
fn measure_window() -> Window {
    cpu::outb(PIT_COMMAND, PIT_ONE_SHOT);
    cpu::outb(PIT_CHANNEL0, 0xff);
    cpu::outb(PIT_CHANNEL0, 0xff);
    lapic::start_calibration_count();
    let start = stamp();
    let mut end = start;
    for _ in 0..CALIBRATION_MAX_READS {
        end = stamp();
        if u64::from(start.pit.wrapping_sub(end.pit)) >= CALIBRATION_TICKS {
            break;
        }
    }
    Window { start, end }
}

pub struct Calibration {
    pub tsc_hz: u64,
    /// LAPIC timer ticks per second after the divide-by-16.
    pub lapic_hz: u64,
    /// `None` if the PIT never counted and the rates are assumed.
    pub uncertainty_ppm: Option<u64>,
    /// Windows measured.
    pub windows: u32,
}

/// Measures the TSC and the LAPIC timer against PIT channel 0: the best of
/// up to `CALIBRATION_ATTEMPTS` windows (see [`crate::clock_calibration`]).
pub fn calibrate() -> Calibration {
    TSC_AT_BOOT.store(cpu::rdtsc(), Ordering::Relaxed);
    let (rates, windows) = best_of(CALIBRATION_ATTEMPTS, CALIBRATION_TICKS, measure_window);
    let calibration = match rates {
        Some(r) => Calibration {
            tsc_hz: r.tsc_hz,
            lapic_hz: r.lapic_hz.max(TICK_HZ),
            uncertainty_ppm: Some(r.uncertainty_ppm),
            windows,
        },
        None => Calibration {
            tsc_hz: FALLBACK_TSC_HZ,
            lapic_hz: FALLBACK_LAPIC_HZ,
            uncertainty_ppm: None,
            windows,
        },
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
