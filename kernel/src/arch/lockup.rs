//! Soft-lockup detection: the timer interrupt checks that the main loop
//! completed an iteration recently. Counting timer ticks rather than reading
//! the clock means a paused VM (QMP `stop`, no ticks) is never mistaken for a
//! stuck one.

use super::fault;
use crate::diag::Registers;
use core::sync::atomic::{AtomicU64, Ordering};

/// Main-loop iterations completed (written by the loop, read by the interrupt).
static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Ticks without progress before reporting; 0 = not armed yet.
static LIMIT_TICKS: AtomicU64 = AtomicU64::new(0);
static SEEN: AtomicU64 = AtomicU64::new(0);
static STALE_TICKS: AtomicU64 = AtomicU64::new(0);

/// Arms the detector: from now on the loop must call [`progress`] at least once
/// every `limit_ticks` timer ticks.
pub fn arm(limit_ticks: u64) {
    SEEN.store(PROGRESS.load(Ordering::Relaxed), Ordering::Relaxed);
    STALE_TICKS.store(0, Ordering::Relaxed);
    LIMIT_TICKS.store(limit_ticks.max(2), Ordering::Relaxed);
}

/// The main loop completed an iteration.
pub fn progress() {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
}

/// From the timer interrupt, with the interrupted context.
pub fn check(regs: &Registers) {
    let limit = LIMIT_TICKS.load(Ordering::Relaxed);
    if limit == 0 {
        return;
    }
    let now = PROGRESS.load(Ordering::Relaxed);
    if now != SEEN.swap(now, Ordering::Relaxed) {
        STALE_TICKS.store(0, Ordering::Relaxed);
        return;
    }
    let stale = STALE_TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    if stale >= limit {
        fault::soft_lockup(regs, stale);
    }
}
