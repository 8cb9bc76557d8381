//! The counters behind `/api/stats.json`: plain `u64`s (the main loop is single
//! threaded), updated with saturating arithmetic so nothing can overflow-panic.
//!
//! Field names are part of the interface (the QEMU tests and the soak read them):
//! snake_case, and never renamed. The JSON object is `version` followed by every
//! counter below in declaration order.

use crate::http::ConnEvent;
use alloc::string::String;
use core::fmt::Write as _;

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Stats {
            /// Kernel version (`CARGO_PKG_VERSION`).
            pub version: &'static str,
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Every counter's JSON name, in output order (after `version`).
            pub const COUNTERS: &'static [&'static str] = &[$(stringify!($name)),*];

            pub const fn new(version: &'static str) -> Stats {
                Stats { version, $($name: 0,)* }
            }

            fn write_counters(&self, out: &mut String) -> core::fmt::Result {
                $(write!(out, ",\"{}\":{}", stringify!($name), self.$name)?;)*
                Ok(())
            }
        }
    };
}

stats! {
    uptime_ms,
    /// Responses started, of any status (each answers one request, complete or not).
    requests_total,
    status_1xx,
    status_2xx,
    status_3xx,
    status_4xx,
    status_5xx,
    /// Body bytes of those responses (0 for `HEAD` and bodiless statuses).
    response_body_bytes,
    connections_accepted,
    /// Gauge: connections currently open.
    connections_active,
    /// Connections refused or reset because the socket pool was full.
    connections_refused,
    /// Sum of the four `timeouts_*` below.
    connections_timed_out,
    /// Header (request) deadline: answered 408.
    timeouts_request,
    timeouts_idle,
    timeouts_send,
    /// A closed socket was not released in time: aborted.
    timeouts_close,
    bytes_in,
    bytes_out,
    frames_in,
    frames_out,
    rx_avail_idx,
    rx_used_idx,
    tx_avail_idx,
    tx_used_idx,
    interrupts_net,
    interrupts_timer,
    /// Work found by the periodic tick rather than by an interrupt.
    timer_recoveries,
    device_resets,
    tx_full_events,
    rx_dropped,
    heap_used,
    heap_free,
    loop_iterations,
    /// Times the 16-bit RX/TX used indices wrapped (65535 -> 0).
    rx_wraps,
    tx_wraps,
    /// NIC interrupts deliberately ignored by `fault=drop-irq:N` (test only).
    interrupts_ignored,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(env!("CARGO_PKG_VERSION"))
    }
}

/// `*counter += n`, saturating.
fn add(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

impl Stats {
    /// One response (see `Handler::on_response`).
    pub fn record_response(&mut self, status: u16, body_bytes: u64) {
        add(&mut self.requests_total, 1);
        add(&mut self.response_body_bytes, body_bytes);
        let class = match status {
            100..=199 => &mut self.status_1xx,
            200..=299 => &mut self.status_2xx,
            300..=399 => &mut self.status_3xx,
            400..=499 => &mut self.status_4xx,
            _ => &mut self.status_5xx,
        };
        add(class, 1);
    }

    /// One event from `Conn::take_event`. A request timeout is also a 408
    /// response (the connection could not report it: `poll` has no handler).
    pub fn record_event(&mut self, event: ConnEvent) {
        add(&mut self.connections_timed_out, 1);
        match event {
            ConnEvent::RequestTimeout => {
                add(&mut self.timeouts_request, 1);
                let body =
                    crate::http::response::error(crate::http::response::status::REQUEST_TIMEOUT)
                        .body
                        .len() as u64;
                self.record_response(crate::http::response::status::REQUEST_TIMEOUT, body);
            }
            ConnEvent::IdleTimeout => add(&mut self.timeouts_idle, 1),
            ConnEvent::SendTimeout => add(&mut self.timeouts_send, 1),
            ConnEvent::CloseTimeout => add(&mut self.timeouts_close, 1),
        }
    }

    /// The whole object as one line of JSON, appended to `out`.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"version\":");
        write_json_string(out, self.version);
        // Writing into a String cannot fail.
        let _ = self.write_counters(out);
        out.push_str("}\n");
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(stats: &Stats) -> serde_json::Map<String, serde_json::Value> {
        let mut json = String::new();
        stats.write_json(&mut json);
        match serde_json::from_str(&json).unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn json_has_every_field_as_a_number() {
        let stats = Stats {
            heap_used: u64::MAX,
            rx_used_idx: 65535,
            ..Stats::default()
        };
        let map = parse(&stats);
        assert_eq!(map.len(), Stats::COUNTERS.len() + 1);
        assert_eq!(map["version"], env!("CARGO_PKG_VERSION"));
        for name in Stats::COUNTERS {
            assert!(map[*name].is_u64(), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
        assert_eq!(map["heap_used"].as_u64(), Some(u64::MAX));
        assert_eq!(map["rx_used_idx"], 65535);
    }

    #[test]
    fn required_fields_are_present() {
        let map = parse(&Stats::default());
        for name in [
            "uptime_ms",
            "requests_total",
            "status_1xx",
            "status_2xx",
            "status_3xx",
            "status_4xx",
            "status_5xx",
            "connections_accepted",
            "connections_active",
            "connections_refused",
            "connections_timed_out",
            "bytes_in",
            "bytes_out",
            "frames_in",
            "frames_out",
            "rx_avail_idx",
            "rx_used_idx",
            "tx_avail_idx",
            "tx_used_idx",
            "interrupts_net",
            "interrupts_timer",
            "timer_recoveries",
            "device_resets",
            "tx_full_events",
            "rx_dropped",
            "heap_used",
            "heap_free",
            "loop_iterations",
            "version",
        ] {
            assert!(map.contains_key(name), "{name} missing");
        }
    }

    #[test]
    fn version_is_escaped() {
        let map = parse(&Stats::new("1.0 \"x\" \\ \n"));
        assert_eq!(map["version"], "1.0 \"x\" \\ \n");
    }

    #[test]
    fn responses_and_events_are_counted() {
        let mut s = Stats::default();
        for status in [100, 200, 204, 304, 404, 431, 500, 503, 999] {
            s.record_response(status, 1);
        }
        assert_eq!(
            (
                s.status_1xx,
                s.status_2xx,
                s.status_3xx,
                s.status_4xx,
                s.status_5xx
            ),
            (1, 2, 1, 2, 3)
        );
        assert_eq!((s.requests_total, s.response_body_bytes), (9, 9));
        for e in [
            ConnEvent::RequestTimeout,
            ConnEvent::IdleTimeout,
            ConnEvent::SendTimeout,
            ConnEvent::CloseTimeout,
        ] {
            s.record_event(e);
        }
        assert_eq!(s.connections_timed_out, 4);
        assert_eq!(
            (
                s.timeouts_request,
                s.timeouts_idle,
                s.timeouts_send,
                s.timeouts_close
            ),
            (1, 1, 1, 1)
        );
        assert_eq!((s.requests_total, s.status_4xx), (10, 3));
    }

    #[test]
    fn counters_saturate() {
        let mut s = Stats {
            requests_total: u64::MAX,
            response_body_bytes: u64::MAX - 1,
            ..Stats::default()
        };
        s.record_response(200, 5);
        assert_eq!(
            (s.requests_total, s.response_body_bytes),
            (u64::MAX, u64::MAX)
        );
    }
}
