//! QEMU's `ib700` ISA watchdog (`-device ib700 -action watchdog=reset`): a
//! guest whose main loop stops petting it is reset by the host, even with
//! interrupts disabled forever (which the in-guest lockup detector cannot see).

use super::cpu;

const START_PORT: u16 = 0x443;
const STOP_PORT: u16 = 0x441;

/// ib700 encodes the timeout as `30 - 2 * value` seconds, value 0..=15.
pub fn timeout_code(seconds: u32) -> u8 {
    let seconds = seconds.clamp(2, 30);
    ((30 - seconds.next_multiple_of(2).min(30)) / 2) as u8
}

/// Starts (or restarts) the countdown. Harmless without the device.
pub fn pet(seconds: u32) {
    cpu::outb(START_PORT, timeout_code(seconds));
}

pub fn stop() {
    cpu::outb(STOP_PORT, 0);
}
