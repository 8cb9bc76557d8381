//! The access log: one line per response, formatted here (safe code, tested on
//! the host) into a bounded [`LineBuffer`] that a device driver drains towards
//! the host. A line that does not fit is dropped and counted, never waited for.
//!
//! - [`format`]: the combined and JSON line formats and their escaping.
//! - [`client`]: the client address and the `trusted_proxies` rule.
//! - [`LineBuffer`] (in `dev`, whose console driver drains it): the bounded line buffer.
//!
//! A response is logged when its last byte went into the socket, or, if its
//! connection ended first, when that was noticed (`"completed":false` in JSON,
//! the bytes sent so far in both), so every request answered is logged once.

pub mod client;
pub mod format;

pub use crate::dev::line_buffer::LineBuffer;
pub use client::TrustedProxies;

use crate::http::{Exchange, Stamp};
use alloc::vec::Vec;

/// Bytes of log lines waiting for the device: about 300 lines.
pub const BUFFER_BYTES: usize = 64 * 1024;
/// Scratch space for one line, reserved once (a longer line grows it).
const LINE_RESERVE: usize = 1024;

/// Where lines go (`access_log=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Off,
    /// The 16550 with the kernel log: a VM exit per byte, for debugging.
    Serial,
    /// A virtio-console port of its own.
    Console,
}

impl Destination {
    pub fn parse(value: &str) -> Option<Destination> {
        Some(match value {
            "off" => Destination::Off,
            "serial" => Destination::Serial,
            "console" => Destination::Console,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Off => "off",
            Destination::Serial => "serial",
            Destination::Console => "console",
        }
    }
}

/// Line format (`log_format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// nginx `combined`, then request time (s) and request id.
    #[default]
    Combined,
    Json,
}

impl Format {
    pub fn parse(value: &str) -> Option<Format> {
        Some(match value {
            "combined" => Format::Combined,
            "json" => Format::Json,
            _ => return None,
        })
    }
}

/// The formatter and its buffer. `AccessLog::off()` records nothing.
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: Format,
    trusted: TrustedProxies,
    stamp: Stamp,
    buffer: LineBuffer,
    line: Vec<u8>,
    memo: format::Memo,
    on: bool,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog::off()
    }
}

impl AccessLog {
    pub fn off() -> AccessLog {
        AccessLog {
            format: Format::Combined,
            trusted: TrustedProxies::default(),
            stamp: Stamp::default(),
            buffer: LineBuffer::new(0),
            line: Vec::new(),
            memo: format::Memo::default(),
            on: false,
        }
    }

    /// A log writing `format` lines into a buffer of `capacity` bytes, with the
    /// wall clock of `stamp` (if any).
    pub fn new(
        format: Format,
        trusted: TrustedProxies,
        stamp: Stamp,
        capacity: usize,
    ) -> AccessLog {
        AccessLog {
            format,
            trusted,
            stamp,
            buffer: LineBuffer::new(capacity),
            line: Vec::with_capacity(LINE_RESERVE),
            memo: format::Memo::default(),
            on: true,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Formats the line of one finished exchange (`completed`: sent in full)
    /// and queues it. `None` when the log is off; else whether it was queued
    /// (`false`: dropped, the buffer is full).
    pub fn record(&mut self, e: &Exchange<'_>, completed: bool) -> Option<bool> {
        if !self.on {
            return None;
        }
        let facts = format::LineFacts {
            client: self
                .trusted
                .client(e.peer, e.head.forwarded, e.head.forwarded_for),
            unix_ms: self.stamp.epoch_ms.map(|epoch| epoch.saturating_add(e.now)),
            completed,
        };
        self.line.clear();
        match self.format {
            Format::Combined => format::combined(&mut self.line, e, &facts, &mut self.memo),
            Format::Json => format::json(&mut self.line, e, &facts, &mut self.memo),
        }
        Some(self.buffer.push(&self.line))
    }

    /// The lines waiting for the device.
    pub fn buffer(&mut self) -> &mut LineBuffer {
        &mut self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::LoggedHead;

    #[test]
    fn lines_queue_until_full_then_drop() {
        let e = Exchange {
            status: 404,
            head: LoggedHead {
                request_line: b"GET /x HTTP/1.1",
                ..LoggedHead::default()
            },
            ..Exchange::default()
        };
        let mut probe = AccessLog::new(
            Format::Combined,
            TrustedProxies::default(),
            Stamp::default(),
            1000,
        );
        probe.record(&e, true);
        let line = probe.buffer().len();
        // Room for four lines and not quite a fifth.
        let mut log = AccessLog::new(
            Format::Combined,
            TrustedProxies::default(),
            Stamp::default(),
            5 * line - 1,
        );
        let mut outcomes = alloc::vec::Vec::new();
        for _ in 0..5 {
            outcomes.push(log.record(&e, true));
        }
        assert_eq!(
            outcomes,
            [Some(true), Some(true), Some(true), Some(true), Some(false)]
        );
        let mut out = [0u8; 1000];
        let n = log.buffer().pop_into(&mut out);
        let text = core::str::from_utf8(&out[..n]).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().all(|l| {
            l.starts_with("- - - [01/Jan/1970:00:00:00 +0000] \"GET /x HTTP/1.1\" 404 0 ")
        }));
        assert_eq!(log.record(&e, true), Some(true));
        assert_eq!(AccessLog::off().record(&e, true), None);
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::http::{LoggedHead, RequestId};

    /// A measurement, not a check: `cargo test --release --lib format_cost
    /// -- --ignored --nocapture` prints the cost of one combined line.
    #[test]
    #[ignore]
    fn format_cost() {
        let mut log = AccessLog::new(
            Format::Combined,
            TrustedProxies::default(),
            Stamp {
                epoch_ms: Some(1_796_228_100_000),
                boot: 1,
            },
            BUFFER_BYTES,
        );
        let e = Exchange {
            status: 200,
            body_bytes: 3,
            method: "GET",
            path: "/health",
            conn: 12,
            received: 1000,
            now: 1001,
            request_id: RequestId {
                boot: 1,
                conn: 12,
                seq: 7,
            },
            peer: Some("10.0.2.2".parse().unwrap()),
            head: LoggedHead {
                request_line: b"GET /health HTTP/1.1",
                ..LoggedHead::default()
            },
            sent_bytes: 3,
        };
        let n = 1_000_000;
        let start = std::time::Instant::now();
        let mut out = [0u8; 8192];
        for _ in 0..n {
            log.record(&e, true);
            if log.buffer().len() > 60_000 {
                log.buffer().pop_into(&mut out);
            }
        }
        std::println!("{:?} per line", start.elapsed() / n);
    }
}
