//! Polled COM1 output for the loader's few messages, and the way out on failure.

use core::arch::asm;

const COM1: u16 = 0x3f8;
/// `isa-debug-exit` (QEMU exits with status (value << 1) | 1 = 3).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bound on waiting for the transmitter: a missing UART must not hang us.
const TX_SPINS: u32 = 100_000;

fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the legacy UART and isa-debug-exit has no memory effects.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // FIFO on
}

pub struct Serial;

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

fn put(b: u8) {
    for _ in 0..TX_SPINS {
        if inb(COM1 + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1, b);
}

pub fn exit_guest() -> ! {
    outb(DEBUG_EXIT_PORT, 1);
    // No isa-debug-exit: a triple fault resets the machine (QEMU exits with -no-reboot).
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let empty = Idtr { limit: 0, base: 0 };
    // SAFETY: loading an empty IDT and raising an exception is the intended reset.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &empty, options(noreturn)) }
}
