//! Where the access log's lines go, chosen at boot (`access_log=`): nowhere,
//! the serial port, or a virtio console. Composition only: the lines come from
//! `app::access_log`, the devices from `arch` and `dev`.

use crate::app::access_log::{Destination, LineBuffer};
use crate::arch::serial;
use crate::dev::console::Console;
use crate::service::LineSink;
use alloc::boxed::Box;

/// Bytes written to the serial port per main-loop pass: a VM exit each, so
/// bounded to keep the pass short; the rest waits in the line buffer.
const SERIAL_BYTES_PER_PASS: usize = 2048;

pub enum Sink {
    Off,
    Serial,
    Console(Box<Console>),
}

impl Sink {
    /// The sink for `wanted` (`None`: console if there is one, else off), and
    /// the destination actually used.
    pub fn choose(
        wanted: Option<Destination>,
        console: Option<Console>,
    ) -> (Sink, Destination, &'static str) {
        match (wanted, console) {
            (Some(Destination::Off), _) => (Sink::Off, Destination::Off, "access_log=off"),
            (Some(Destination::Serial), _) => {
                (Sink::Serial, Destination::Serial, "access_log=serial")
            }
            (_, Some(c)) => (
                Sink::Console(Box::new(c)),
                Destination::Console,
                "virtio console found",
            ),
            (Some(Destination::Console), None) => (
                Sink::Off,
                Destination::Off,
                "access_log=console but no virtio console device",
            ),
            (None, None) => (Sink::Off, Destination::Off, "no virtio console device"),
        }
    }
}

impl LineSink for Sink {
    /// Only the serial sink can report lines left that it could take now:
    /// it takes a bounded share per pass.
    fn pump(&mut self, lines: &mut LineBuffer, now: u64) -> bool {
        match self {
            Sink::Off => false,
            Sink::Serial => {
                let mut chunk = [0u8; SERIAL_BYTES_PER_PASS];
                let n = lines.pop_into(&mut chunk);
                serial::write_raw(chunk.get(..n).unwrap_or_default());
                !lines.is_empty()
            }
            Sink::Console(c) => {
                c.pump(lines, now);
                false
            }
        }
    }
}
