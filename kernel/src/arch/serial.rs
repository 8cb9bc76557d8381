//! Serial console on COM1 (`uart_16550`) and the `log` backend.
//!
//! Normal logging takes a lock with `try_lock` only, so an interrupt handler can
//! never deadlock against the main loop (the message is dropped and counted).
//! Fatal reports use [`RawConsole`], which takes no lock at all.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

const COM1: u16 = 0x3f8;
/// Bound on waiting for the UART per byte: a stuck UART must not hang the kernel.
const SEND_SPINS: u32 = 100_000;

static UART: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);
/// Log records dropped because the console was busy (re-entered from an interrupt).
pub static DROPPED_RECORDS: AtomicU64 = AtomicU64::new(0);

fn com1() -> Option<Uart16550<PioBackend>> {
    // SAFETY: COM1 (0x3f8..0x400) is the microvm ISA serial port; this kernel is its
    // only user and every instance drives the same registers the same way.
    unsafe { Uart16550::new_port(COM1) }.ok()
}

fn send(uart: &mut Uart16550<PioBackend>, mut bytes: &[u8]) {
    let mut idle = 0;
    while !bytes.is_empty() && idle < SEND_SPINS {
        let n = uart.send_bytes(bytes);
        if n == 0 {
            idle += 1;
            core::hint::spin_loop();
        } else {
            idle = 0;
            bytes = &bytes[n..];
        }
    }
}

fn write_to(uart: &mut Uart16550<PioBackend>, s: &str) {
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            send(uart, b"\r\n");
        }
        send(uart, line.as_bytes());
    }
}

pub fn init() {
    let mut uart = com1();
    if let Some(u) = uart.as_mut() {
        // A UART that fails its presence check still takes writes; nothing to report it to.
        let _ = u.init(Config {
            baud_rate: BaudRate::Baud115200,
            ..Config::DEFAULT
        });
    }
    *UART.lock() = uart;
}

/// Writes without locking; for fatal reports, which must get out even if the
/// fault interrupted a log call.
pub struct RawConsole(Option<Uart16550<PioBackend>>);

impl RawConsole {
    pub fn new() -> Self {
        RawConsole(com1())
    }
}

impl Default for RawConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for RawConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = self.0.as_mut() {
            write_to(uart, s);
        }
        Ok(())
    }
}

struct Console<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Console<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_to(self.0, s);
        Ok(())
    }
}

/// Writes bytes as they are (the access log with `access_log=serial`: whole
/// lines, `\n`-terminated); dropped if the port is in use.
pub fn write_raw(bytes: &[u8]) {
    match UART.try_lock() {
        Some(mut guard) => {
            if let Some(uart) = guard.as_mut() {
                for line in bytes.split_inclusive(|&b| b == b'\n') {
                    match line.strip_suffix(b"\n") {
                        Some(text) => {
                            send(uart, text);
                            send(uart, b"\r\n");
                        }
                        None => send(uart, line),
                    }
                }
            }
        }
        None => {
            DROPPED_RECORDS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints one line to the console (used for the banner and by the logger).
pub fn print(args: fmt::Arguments) {
    match UART.try_lock() {
        Some(mut guard) => {
            if let Some(uart) = guard.as_mut() {
                let _ = writeln!(Console(uart), "{args}");
            }
        }
        None => {
            DROPPED_RECORDS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Messages carry their subsystem ("config: ...", "clock: ..."); warnings
        // and errors are tagged at the end so lines still start with the subsystem.
        let tag = match record.level() {
            log::Level::Info => return print(format_args!("{}", record.args())),
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        print(format_args!("{} [{tag}]", record.args()));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_logger(level: log::LevelFilter) {
    // A second call (there is none) would keep the first logger; nothing to do.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
