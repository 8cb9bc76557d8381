//! The CMOS real-time clock (MC146818, ports 0x70/0x71): the wall clock at boot
//! under TCG. QEMU's microvm has it only without KVM; where it is absent every
//! register reads 0xff and [`read_unix`] says `None`.

use super::cpu::{inb, outb};
use crate::wall_clock;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
/// QEMU's MC146818 keeps the century here (the ACPI FADT's default).
const REG_CENTURY: u8 = 0x32;
/// Status A bit 7: an update is in progress (registers may be inconsistent).
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// Status B bit 2: binary rather than BCD; bit 1: 24-hour mode.
const BINARY: u8 = 0x04;
const HOURS_24: u8 = 0x02;
/// Polls of the update flag before giving up (an update lasts under 2 ms).
const MAX_POLLS: u32 = 100_000;
/// Reads compared for a consistent snapshot.
const MAX_READS: u32 = 5;

fn read(reg: u8) -> u8 {
    // Bit 7 of the index port masks NMIs: keep it clear.
    outb(INDEX, reg & 0x7f);
    inb(DATA)
}

fn snapshot() -> [u8; 7] {
    [
        read(REG_SECONDS),
        read(REG_MINUTES),
        read(REG_HOURS),
        read(REG_DAY),
        read(REG_MONTH),
        read(REG_YEAR),
        read(REG_CENTURY),
    ]
}

fn wait_not_updating() -> bool {
    (0..MAX_POLLS).any(|_| read(REG_STATUS_A) & UPDATE_IN_PROGRESS == 0)
}

/// The RTC's time as Unix seconds, or `None` if there is no RTC (or it holds
/// no plausible date, or never left an update).
pub fn read_unix() -> Option<u64> {
    if read(REG_STATUS_A) == 0xff && read(REG_STATUS_B) == 0xff {
        return None;
    }
    let mut last = None;
    for _ in 0..MAX_READS {
        if !wait_not_updating() {
            return None;
        }
        let now = snapshot();
        if last == Some(now) {
            let b = read(REG_STATUS_B);
            return wall_clock::rtc_to_unix(now, b & BINARY != 0, b & HOURS_24 != 0);
        }
        last = Some(now);
    }
    None
}
