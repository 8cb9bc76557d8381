//! A sampling profiler: the timer interrupt records the interrupted RIP into a
//! fixed ring, and `/debug/profile` lists the most recent samples for
//! `scripts/profile` to symbolize against `kernel.elf`. Always on: a sample is
//! one relaxed store per tick, and the ring is static (no allocation).
//!
//! What it sees: where the CPU was when the tick arrived. Code that runs with
//! interrupts disabled is charged to the instruction that re-enables them, and
//! a halted (idle) CPU shows as the halt in the main loop.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Samples kept: 80 s at 100 Hz.
pub const CAPACITY: usize = 8192;

static SAMPLES: [AtomicU64; CAPACITY] = [const { AtomicU64::new(0) }; CAPACITY];
/// Samples taken since boot; the next one goes to `TAKEN % CAPACITY`.
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// From the timer interrupt (one CPU: no concurrent writer).
pub fn record(rip: u64) {
    let n = TAKEN.load(Ordering::Relaxed);
    SAMPLES[(n % CAPACITY as u64) as usize].store(rip, Ordering::Relaxed);
    TAKEN.store(n + 1, Ordering::Release);
}

/// The text `/debug/profile` serves: a header, then the kept samples oldest
/// first, one hex RIP a line. A tick during the copy may replace the oldest
/// sample or two; `scripts/profile` takes only samples newer than its start.
pub fn write_text(out: &mut alloc::string::String) {
    let taken = TAKEN.load(Ordering::Acquire);
    let kept = taken.min(CAPACITY as u64);
    let _ = write!(
        out,
        "# unikernel RIP samples from the timer interrupt\nhz {}\ntaken {taken}\nkept {kept}\n",
        super::clock::TICK_HZ
    );
    out.reserve(kept as usize * 19);
    for n in taken - kept..taken {
        let rip = SAMPLES[(n % CAPACITY as u64) as usize].load(Ordering::Relaxed);
        let _ = writeln!(out, "{rip:#x}");
    }
}
