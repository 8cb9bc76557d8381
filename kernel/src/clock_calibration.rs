//! The arithmetic of calibrating the TSC and the LAPIC timer against the PIT,
//! apart from the ports so that it is tested on the host (`arch::clock` takes
//! the readings).
//!
//! A reading of the PIT is bracketed by two TSC reads. Where the host
//! deschedules the vCPU between them (TCG on a busy host, or nested KVM), the
//! bracket is wide and says so; a reading taken without a bracket would
//! silently count the lost time on one clock and not the other. With a
//! 25 ms window, a 9 ms pause at the start made the guest's clock run 1.6x
//! fast: a 5 s idle deadline fired after 3.1 s. So each window's uncertainty
//! is known, and the best of a few windows is kept.

/// PIT input clock.
pub const PIT_HZ: u64 = 1_193_182;

/// One reading of the PIT and the LAPIC timer's current count, between two
/// TSC reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub tsc_before: u64,
    /// PIT channel 0's count (counting down).
    pub pit: u16,
    /// The LAPIC timer's current count (counting down).
    pub lapic: u32,
    pub tsc_after: u64,
}

impl Stamp {
    fn tsc_width(&self) -> u64 {
        self.tsc_after.saturating_sub(self.tsc_before)
    }

    /// Twice the TSC at the bracket's middle (kept doubled: no rounding).
    fn tsc_mid2(&self) -> u128 {
        u128::from(self.tsc_before) + u128::from(self.tsc_after)
    }
}

/// A calibration window: its first and last stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Stamp,
    pub end: Stamp,
}

/// What one window measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub tsc_hz: u64,
    /// LAPIC timer counts per second (at whatever divider it ran).
    pub lapic_hz: u64,
    /// How far the TSC rate may be off, in parts per million: the two
    /// brackets' half widths against the TSC ticks of the window.
    pub uncertainty_ppm: u64,
}

impl Window {
    /// PIT ticks the window spans (the 16-bit count runs down and wraps).
    pub fn pit_ticks(&self) -> u64 {
        u64::from(self.start.pit.wrapping_sub(self.end.pit))
    }

    /// The rates, or `None` if the window is too short to say anything
    /// (`min_pit_ticks` not reached, or the TSC did not advance).
    pub fn rates(&self, min_pit_ticks: u64) -> Option<Rates> {
        let pit = self.pit_ticks();
        if pit == 0 || pit < min_pit_ticks {
            return None;
        }
        let tsc2 = self.end.tsc_mid2().checked_sub(self.start.tsc_mid2())?;
        if tsc2 == 0 {
            return None;
        }
        // Half of each bracket's width, doubled like `tsc2`.
        let slack2 = u128::from(self.start.tsc_width()) + u128::from(self.end.tsc_width());
        let lapic = u128::from(self.start.lapic.wrapping_sub(self.end.lapic));
        let pit = u128::from(pit);
        let hz = |ticks2: u128| u64::try_from(ticks2 * u128::from(PIT_HZ) / (2 * pit)).ok();
        Some(Rates {
            tsc_hz: hz(tsc2)?,
            lapic_hz: hz(2 * lapic)?,
            uncertainty_ppm: u64::try_from(slack2 * 1_000_000 / tsc2).unwrap_or(u64::MAX),
        })
    }
}

/// Good enough to stop trying: the host did not get between the reads.
pub const GOOD_PPM: u64 = 1_000;

/// Takes windows from `measure` (at most `attempts`) until one is within
/// [`GOOD_PPM`], and keeps the one with the smallest uncertainty. Returns it
/// and how many windows were taken; `None` if no window measured anything
/// (the PIT never counted).
pub fn best_of(
    attempts: u32,
    min_pit_ticks: u64,
    mut measure: impl FnMut() -> Window,
) -> (Option<Rates>, u32) {
    let mut best: Option<Rates> = None;
    let mut taken = 0;
    while taken < attempts {
        taken += 1;
        let Some(rates) = measure().rates(min_pit_ticks) else {
            continue;
        };
        if best.is_none_or(|b| rates.uncertainty_ppm < b.uncertainty_ppm) {
            best = Some(rates);
        }
        if rates.uncertainty_ppm <= GOOD_PPM {
            break;
        }
    }
    (best, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSC_HZ: u64 = 2_400_000_000;
    const LAPIC_HZ: u64 = 62_500_000;
    const WINDOW: u64 = PIT_HZ / 40;
    /// The TSC at the first window's start: a second after reset.
    const BASE: u64 = TSC_HZ;

    /// A stamp taken at `at_pit` PIT ticks after a start count of 0xffff, its
    /// PIT read lasting `read_tsc` TSC ticks, plus `lost_tsc` TSC ticks the
    /// host took before the read (counted on both clocks, inside the bracket).
    fn stamp(at_pit: u64, read_tsc: u64, lost_tsc: u64) -> Stamp {
        let tsc_at = at_pit * TSC_HZ / PIT_HZ;
        Stamp {
            tsc_before: BASE + tsc_at - lost_tsc,
            pit: 0xffff - at_pit as u16,
            lapic: u32::MAX - (at_pit * LAPIC_HZ / PIT_HZ) as u32,
            tsc_after: BASE + tsc_at + read_tsc,
        }
    }

    #[test]
    fn a_tight_window_gives_the_true_rates() {
        let w = Window {
            start: stamp(0, 2_000, 0),
            end: stamp(WINDOW, 2_000, 0),
        };
        let r = w.rates(WINDOW).unwrap();
        let off = r.tsc_hz.abs_diff(TSC_HZ);
        assert!(off * 10_000 < TSC_HZ, "tsc {} vs {TSC_HZ}", r.tsc_hz);
        assert!(r.lapic_hz.abs_diff(LAPIC_HZ) * 10_000 < LAPIC_HZ, "{r:?}");
        assert!(r.uncertainty_ppm <= GOOD_PPM, "{r:?}");
    }

    #[test]
    fn a_pause_inside_a_bracket_shows_as_uncertainty() {
        // 9 ms lost between the first TSC read and the PIT read.
        let lost = TSC_HZ * 9 / 1000;
        let w = Window {
            start: stamp(0, 2_000, lost),
            end: stamp(WINDOW, 2_000, 0),
        };
        let r = w.rates(WINDOW).unwrap();
        assert!(r.uncertainty_ppm > 100_000, "{r:?}");
    }

    #[test]
    fn the_best_window_is_kept_and_a_good_one_ends_the_search() {
        let lost = TSC_HZ * 9 / 1000;
        let mut windows = [
            Window {
                start: stamp(0, 2_000, lost),
                end: stamp(WINDOW, 2_000, 0),
            },
            Window {
                start: stamp(0, 2_000, 0),
                end: stamp(WINDOW, 2_000, lost / 3),
            },
            Window {
                start: stamp(0, 2_000, 0),
                end: stamp(WINDOW, 2_000, 0),
            },
            Window {
                start: stamp(0, 2_000, lost),
                end: stamp(WINDOW, 2_000, lost),
            },
        ]
        .into_iter();
        let (best, taken) = best_of(5, WINDOW, || windows.next().unwrap());
        assert_eq!(taken, 3);
        let best = best.unwrap();
        assert!(best.uncertainty_ppm <= GOOD_PPM, "{best:?}");
        assert!(best.tsc_hz.abs_diff(TSC_HZ) * 10_000 < TSC_HZ, "{best:?}");
    }

    #[test]
    fn when_every_window_is_disturbed_the_least_disturbed_wins() {
        let lost = TSC_HZ * 9 / 1000;
        let mut n = 0u64;
        let (best, taken) = best_of(4, WINDOW, || {
            n += 1;
            // The third window loses the least.
            let l = if n == 3 { lost / 10 } else { lost };
            Window {
                start: stamp(0, 2_000, l),
                end: stamp(WINDOW, 2_000, 0),
            }
        });
        assert_eq!(taken, 4);
        let best = best.unwrap();
        let third = Window {
            start: stamp(0, 2_000, lost / 10),
            end: stamp(WINDOW, 2_000, 0),
        }
        .rates(WINDOW)
        .unwrap();
        assert_eq!(best, third);
    }

    #[test]
    fn a_silent_pit_or_a_short_window_measures_nothing() {
        let still = Window {
            start: stamp(0, 2_000, 0),
            end: stamp(0, 2_000, 0),
        };
        assert_eq!(still.rates(1), None);
        let short = Window {
            start: stamp(0, 2_000, 0),
            end: stamp(WINDOW - 1, 2_000, 0),
        };
        assert_eq!(short.rates(WINDOW), None);
        assert_eq!(best_of(3, WINDOW, || still), (None, 3));
    }

    #[test]
    fn the_pit_count_may_wrap_inside_a_window() {
        let mut start = stamp(0, 2_000, 0);
        let mut end = stamp(WINDOW, 2_000, 0);
        start.pit = 100;
        end.pit = 100u16.wrapping_sub(WINDOW as u16);
        let r = Window { start, end }.rates(WINDOW).unwrap();
        assert!(r.tsc_hz.abs_diff(TSC_HZ) * 10_000 < TSC_HZ, "{r:?}");
    }
}
