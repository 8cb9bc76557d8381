//! The counters behind `/api/stats.json` and `/metrics`: plain `u64`s (the main
//! loop is single threaded). Each has one writer: the app counts responses,
//! timeouts and access-log lines here, the service pass its own loop counters,
//! both with saturating arithmetic so nothing can overflow-panic; the network
//! layer's counters (connections, evictions, frames, rings, SYN cookies) are
//! its own, copied in by the service pass (`crate::service`).
//!
//! One list, the `stats!` invocation below, is the single source of both
//! outputs: each field's JSON name, and its Prometheus kind, metric name,
//! labels, scale and `# HELP` text.
//!
//! Field names are part of the interface (the QEMU tests and the soak read them):
//! snake_case, and never renamed. The JSON object is `version` followed by every
//! counter below in declaration order. Metric names follow Prometheus
//! conventions (`unikernel_` prefix, base units, `_total` on counters); fields
//! that share a metric name form one family told apart by labels, and are
//! declared next to each other with the family's help text on the first.

use crate::http::{ConnEvent, Exchange};
use alloc::string::String;
use core::fmt::Write as _;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up while the guest runs (a restart starts it again at 0).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// How one [`Stats`] field is exposed on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The field's JSON name.
    pub field: &'static str,
    pub kind: Kind,
    /// Metric (family) name.
    pub name: &'static str,
    /// Label pairs that tell this field apart within its family.
    pub labels: &'static [(&'static str, &'static str)],
    /// `# HELP` text; empty for the second and later fields of a family.
    pub help: &'static str,
    /// The exposed value is the field divided by this (1000: milliseconds as
    /// seconds); a power of ten.
    pub divisor: u64,
}

/// `$value`, or `$default` when the optional part is absent.
macro_rules! or_default {
    (; $default:expr) => {
        $default
    };
    ($value:expr; $default:expr) => {
        $value
    };
}

macro_rules! stats {
    ($(
        $(#[$doc:meta])*
        $name:ident: $kind:ident $metric:literal
            $([$($label:ident = $value:literal),+])?
            $(/ $divisor:literal)?
            $(=> $help:literal)?
    ),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Stats {
            /// Kernel version (`CARGO_PKG_VERSION`).
            pub version: &'static str,
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Every counter's JSON name, in output order (after `version`).
            pub const COUNTERS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Every counter's metric, in the same order as [`Stats::COUNTERS`].
            pub const METRICS: &'static [Metric] = &[$(Metric {
                field: stringify!($name),
                kind: Kind::$kind,
                name: $metric,
                labels: &[$($((stringify!($label), $value)),+)?],
                help: or_default!($($help)?; ""),
                divisor: or_default!($($divisor)?; 1),
            }),*];

            pub const fn new(version: &'static str) -> Stats {
                Stats { version, $($name: 0,)* }
            }

            /// Every counter's value, in the order of [`Stats::COUNTERS`].
            pub fn values(&self) -> [u64; Stats::COUNTERS.len()] {
                [$(self.$name),*]
            }

            #[cfg(test)]
            fn values_mut(&mut self) -> [&mut u64; Stats::COUNTERS.len()] {
                [$(&mut self.$name),*]
            }
        }
    };
}

stats! {
    /// Milliseconds since the kernel's clock started (TSC, calibrated at boot).
    uptime_ms: Gauge "unikernel_uptime_seconds" / 1000
        => "Time since the kernel started, by its own clock.",
    /// Responses started, of any status (each answers one request, complete or not).
    requests_total: Counter "unikernel_http_requests_total"
        => "HTTP requests answered (responses started), of any status.",
    status_1xx: Counter "unikernel_http_responses_total" [class = "1xx"]
        => "HTTP responses started, by status class.",
    status_2xx: Counter "unikernel_http_responses_total" [class = "2xx"],
    status_3xx: Counter "unikernel_http_responses_total" [class = "3xx"],
    status_4xx: Counter "unikernel_http_responses_total" [class = "4xx"],
    status_5xx: Counter "unikernel_http_responses_total" [class = "5xx"],
    /// Body bytes of those responses (0 for `HEAD` and bodiless statuses).
    response_body_bytes: Counter "unikernel_http_response_body_bytes_total"
        => "Body bytes of the HTTP responses started (0 for HEAD and bodiless statuses).",
    connections_accepted: Counter "unikernel_http_connections_accepted_total"
        => "TCP connections accepted on port 80.",
    /// Gauge: connections currently open.
    connections_active: Gauge "unikernel_connections_active"
        => "TCP connections currently open.",
    /// Handshakes completed (a valid SYN cookie returned) while every socket
    /// of the pool was busy: dropped, so the client retries.
    connections_refused: Counter "unikernel_http_connections_refused_total"
        => "Connections refused because every socket of the pool was busy.",
    /// SYN-ACKs sent with a SYN cookie (every SYN to port 80 gets one; none takes a socket).
    syn_cookies_sent: Counter "unikernel_tcp_syn_cookies_total" [result = "sent"]
        => "TCP SYN cookies: sent in SYN-ACKs, returned valid, returned invalid (answered RST).",
    syn_cookies_valid: Counter "unikernel_tcp_syn_cookies_total" [result = "valid"],
    /// ACKs for no connection whose cookie failed (forged, expired, or late
    /// segments of a closed connection): answered RST.
    syn_cookies_invalid: Counter "unikernel_tcp_syn_cookies_total" [result = "invalid"],
    /// Connections closed to make room for a new one with the pool full, by
    /// what they were doing: idle keep-alive, slowest request head, a peer
    /// that had not closed after our FIN, or a response stalled by its reader.
    evictions_idle: Counter "unikernel_http_evictions_total" [reason = "idle"]
        => "Connections closed to free a socket for a new one, by reason (idle keep-alive, slow request head, lingering after our FIN, response stalled by its reader).",
    evictions_head: Counter "unikernel_http_evictions_total" [reason = "head"],
    evictions_lingering: Counter "unikernel_http_evictions_total" [reason = "lingering"],
    /// A response its reader had not let move for `STALLED_AFTER_MS` (slow read).
    evictions_stalled: Counter "unikernel_http_evictions_total" [reason = "stalled"],
    /// Sum of the four `timeouts_*` below.
    connections_timed_out: Counter "unikernel_http_connections_timed_out_total"
        => "Connections closed or aborted by a deadline (all deadlines).",
    /// Header (request) deadline: answered 408.
    timeouts_request: Counter "unikernel_http_timeouts_total" [deadline = "request"]
        => "Connections ended by a deadline, by deadline (request: 408; idle; send; close).",
    timeouts_idle: Counter "unikernel_http_timeouts_total" [deadline = "idle"],
    timeouts_send: Counter "unikernel_http_timeouts_total" [deadline = "send"],
    /// A closed socket was not released in time: aborted.
    timeouts_close: Counter "unikernel_http_timeouts_total" [deadline = "close"],
    bytes_in: Counter "unikernel_network_receive_bytes_total"
        => "Bytes of the Ethernet frames received by the NIC.",
    bytes_out: Counter "unikernel_network_transmit_bytes_total"
        => "Bytes of the Ethernet frames sent by the NIC.",
    frames_in: Counter "unikernel_network_receive_frames_total"
        => "Ethernet frames received by the NIC.",
    frames_out: Counter "unikernel_network_transmit_frames_total"
        => "Ethernet frames sent by the NIC.",
    rx_avail_idx: Gauge "unikernel_virtio_ring_index" [queue = "rx", ring = "avail"]
        => "virtio-net ring indices (16-bit, wrapping): avail is the driver's, used the device's.",
    rx_used_idx: Gauge "unikernel_virtio_ring_index" [queue = "rx", ring = "used"],
    tx_avail_idx: Gauge "unikernel_virtio_ring_index" [queue = "tx", ring = "avail"],
    tx_used_idx: Gauge "unikernel_virtio_ring_index" [queue = "tx", ring = "used"],
    interrupts_net: Counter "unikernel_interrupts_total" [source = "net"]
        => "Interrupts taken, by source.",
    interrupts_timer: Counter "unikernel_interrupts_total" [source = "timer"],
    /// Work found by the periodic tick rather than by an interrupt.
    timer_recoveries: Counter "unikernel_timer_recoveries_total"
        => "Main-loop passes that found network work no interrupt had announced.",
    device_resets: Counter "unikernel_device_resets_total"
        => "NIC resets and re-initialisations by the ring audit.",
    tx_full_events: Counter "unikernel_tx_full_events_total"
        => "Times a frame waited because the TX ring was full.",
    rx_dropped: Counter "unikernel_network_receive_dropped_total"
        => "Received frames dropped (bad buffer or length).",
    heap_used: Gauge "unikernel_heap_used_bytes"
        => "Kernel heap in use.",
    heap_free: Gauge "unikernel_heap_free_bytes"
        => "Kernel heap free.",
    /// Part of `heap_used`: a pool that grows to the load's peak and is kept.
    tx_large_buffer_bytes: Gauge "unikernel_tx_large_buffer_bytes"
        => "Heap held by the NIC's large TX buffers (segmentation offload).",
    loop_iterations: Counter "unikernel_loop_iterations_total"
        => "Main-loop iterations.",
    /// Times the 16-bit RX/TX used indices wrapped (65535 -> 0).
    rx_wraps: Counter "unikernel_virtio_used_index_wraps_total" [queue = "rx"]
        => "Times a virtio-net used index wrapped from 65535 to 0.",
    tx_wraps: Counter "unikernel_virtio_used_index_wraps_total" [queue = "tx"],
    /// NIC interrupts deliberately ignored by `fault=drop-irq:N` (test only).
    interrupts_ignored: Counter "unikernel_interrupts_ignored_total"
        => "NIC interrupts ignored on purpose by fault=drop-irq (tests only).",
    /// Received frames dropped for a bad IPv4/TCP/UDP/ICMP checksum.
    rx_checksum_errors: Counter "unikernel_network_receive_checksum_errors_total"
        => "Received frames dropped for a bad IPv4, TCP, UDP or ICMP checksum.",
    /// Access-log lines queued for the host (`access_log=serial|console`).
    access_log_lines: Counter "unikernel_access_log_lines_total"
        => "Access-log lines queued for the host.",
    /// Access-log lines dropped because the host end did not drain the buffer.
    access_log_dropped: Counter "unikernel_access_log_dropped_total"
        => "Access-log lines dropped because the buffer was full (the host end did not drain it).",
}

/// The metric that carries the version as a label (value always 1).
pub const BUILD_INFO: &str = "unikernel_build_info";

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
    /// One response, as `Handler::on_response` reports it.
    pub fn record(&mut self, e: &Exchange<'_>) {
        self.record_response(e.status, e.body_bytes);
    }

    /// One response of `status` with `body_bytes` of body.
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
        for (name, value) in Stats::COUNTERS.iter().zip(self.values()) {
            // Writing into a String cannot fail.
            let _ = write!(out, ",\"{name}\":{value}");
        }
        out.push_str("}\n");
    }

    /// Every counter in the Prometheus text exposition format, version 0.0.4
    /// (served as `text/plain; version=0.0.4`): each family's `# HELP` and
    /// `# TYPE` once, then its samples; last `unikernel_build_info{version}`.
    pub fn write_prometheus(&self, out: &mut String) {
        let mut family = "";
        for (m, value) in Stats::METRICS.iter().zip(self.values()) {
            if m.name != family {
                family = m.name;
                write_family_head(out, m.name, m.help, m.kind);
            }
            out.push_str(m.name);
            if let Some(((first_key, first_value), rest)) = m.labels.split_first() {
                out.push('{');
                write_label(out, first_key, first_value);
                for (key, value) in rest {
                    out.push(',');
                    write_label(out, key, value);
                }
                out.push('}');
            }
            out.push(' ');
            write_scaled(out, value, m.divisor);
            out.push('\n');
        }
        write_family_head(
            out,
            BUILD_INFO,
            "Build information: the kernel version as a label; always 1.",
            Kind::Gauge,
        );
        out.push_str(BUILD_INFO);
        out.push('{');
        write_label(out, "version", self.version);
        out.push_str("} 1\n");
    }
}

/// `# HELP` (escaped: `\\` and `\n`) and `# TYPE` lines of one family.
fn write_family_head(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = write!(out, "# HELP {name} ");
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name} {}", kind.as_str());
}

/// `key="value"`, the value escaped (`\\`, `\"`, `\n`).
fn write_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `value / divisor` in decimal, exact (`divisor` a power of ten: 1234 / 1000
/// is `1.234`).
fn write_scaled(out: &mut String, value: u64, divisor: u64) {
    if divisor <= 1 {
        let _ = write!(out, "{value}");
        return;
    }
    let digits = divisor.ilog10() as usize;
    let _ = write!(
        out,
        "{}.{:0digits$}",
        value / divisor,
        value % divisor,
        digits = digits
    );
}

/// `s` as a JSON string literal, appended to `out`.
pub fn write_json_string(out: &mut String, s: &str) {
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
            "syn_cookies_sent",
            "syn_cookies_valid",
            "syn_cookies_invalid",
            "evictions_idle",
            "evictions_head",
            "evictions_lingering",
            "evictions_stalled",
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
            "rx_checksum_errors",
            "heap_used",
            "heap_free",
            "tx_large_buffer_bytes",
            "loop_iterations",
            "version",
        ] {
            assert!(map.contains_key(name), "{name} missing");
        }
    }

    /// One sample line of the text format: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn is_metric_name(s: &str) -> bool {
        let mut bytes = s.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    }

    fn is_label_name(s: &str) -> bool {
        let mut bytes = s.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !s.starts_with("__")
    }

    /// A strict parser of the 0.0.4 text format, enough for what we write:
    /// returns every family's (help, type) and every sample, and panics on
    /// anything malformed or out of order.
    fn parse_exposition(text: &str) -> (Vec<(String, String, String)>, Vec<Sample>) {
        assert!(text.ends_with('\n'), "must end with a newline");
        let mut families: Vec<(String, String, String)> = Vec::new();
        let mut samples = Vec::new();
        let mut help: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap();
                assert!(is_metric_name(name), "{line}");
                assert!(!text.is_empty(), "empty help: {line}");
                assert!(help.is_none(), "two HELP lines: {line}");
                help = Some((name.into(), text.into()));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let (help_name, help_text) = help.take().expect("TYPE after HELP");
                assert_eq!(help_name, name);
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert!(
                    families.iter().all(|(n, _, _)| n != name),
                    "family {name} twice"
                );
                families.push((name.into(), help_text, kind.into()));
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series, Vec::new()),
                    Some((name, rest)) => {
                        let body = rest.strip_suffix('}').expect("closing brace");
                        (name, parse_labels(body))
                    }
                };
                assert!(is_metric_name(name), "{line}");
                let (family, _, _) = families.last().expect("sample before any TYPE");
                assert_eq!(family, name, "sample outside its family: {line}");
                samples.push((name.to_string(), labels, value));
            }
        }
        assert!(help.is_none(), "HELP without TYPE");
        (families, samples)
    }

    fn parse_labels(mut body: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        while !body.is_empty() {
            let (key, rest) = body.split_once("=\"").unwrap();
            assert!(is_label_name(key), "label {key:?}");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().unwrap().1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => panic!("bad escape \\{c}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            body = &rest[end + 1..];
            body = body.strip_prefix(',').unwrap_or(body);
        }
        labels
    }

    /// Every counter a different value, a few at the extremes.
    fn distinct_values() -> Stats {
        let mut s = Stats::new("1.2.3");
        for (i, v) in s.values_mut().into_iter().enumerate() {
            *v = 1_000_003 * i as u64 + 17;
        }
        s.rx_avail_idx = 65535;
        s.tx_wraps = u64::MAX;
        s
    }

    #[test]
    fn prometheus_text_parses_back_with_every_counter() {
        let stats = distinct_values();
        let mut text = String::new();
        stats.write_prometheus(&mut text);
        let (families, samples) = parse_exposition(&text);
        let json = parse(&stats);
        // One sample per JSON counter plus build_info, each series unique.
        assert_eq!(samples.len(), Stats::COUNTERS.len() + 1);
        for (i, a) in samples.iter().enumerate() {
            assert!(
                samples[i + 1..]
                    .iter()
                    .all(|b| (&a.0, &a.1) != (&b.0, &b.1)),
                "duplicate series {a:?}"
            );
        }
        for (m, field) in Stats::METRICS.iter().zip(Stats::COUNTERS) {
            assert_eq!(m.field, *field);
            let labels: Vec<(String, String)> = m
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let sample = samples
                .iter()
                .find(|(n, l, _)| n == m.name && *l == labels)
                .unwrap_or_else(|| panic!("no sample for {field}"));
            let expected = json[*field].as_u64().unwrap() as f64 / m.divisor as f64;
            assert!(
                (sample.2 - expected).abs() <= expected.abs() * 1e-12,
                "{field}: {} != {expected}",
                sample.2
            );
            let (_, _, kind) = families.iter().find(|(n, _, _)| n == m.name).unwrap();
            assert_eq!(kind, m.kind.as_str());
        }
        assert_eq!(
            samples.last().unwrap(),
            &(
                BUILD_INFO.to_string(),
                vec![("version".to_string(), "1.2.3".to_string())],
                1.0
            )
        );
        // Exact text of a few lines.
        assert!(text.contains("\nunikernel_http_responses_total{class=\"2xx\"} "));
        assert!(
            text.contains("\nunikernel_virtio_ring_index{queue=\"rx\",ring=\"avail\"} 65535\n")
        );
        assert!(text.contains(
            "\nunikernel_virtio_used_index_wraps_total{queue=\"tx\"} 18446744073709551615\n"
        ));
        assert!(text.contains("# TYPE unikernel_heap_used_bytes gauge\n"));
        assert!(text.contains("# TYPE unikernel_connections_active gauge\n"));
        assert!(text.contains("# TYPE unikernel_http_requests_total counter\n"));
    }

    #[test]
    fn metric_names_follow_the_conventions() {
        let mut seen: Vec<&str> = Vec::new();
        let mut prev: Option<&Metric> = None;
        for m in Stats::METRICS {
            assert!(m.name.starts_with("unikernel_") && is_metric_name(m.name));
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(m.divisor >= 1 && 10u64.pow(m.divisor.ilog10()) == m.divisor);
            assert!(m.labels.iter().all(|(k, _)| is_label_name(k)));
            match prev {
                Some(p) if p.name == m.name => {
                    // Same family: same kind, same label keys, no help of its own.
                    assert_eq!(p.kind, m.kind, "{}", m.name);
                    assert!(
                        m.help.is_empty(),
                        "{}: help on the first member only",
                        m.field
                    );
                    let keys = |m: &Metric| m.labels.iter().map(|(k, _)| *k).collect::<Vec<_>>();
                    assert_eq!(keys(p), keys(m), "{}", m.name);
                    assert!(!m.labels.is_empty());
                }
                _ => {
                    assert!(!seen.contains(&m.name), "{}: family split", m.name);
                    assert!(!m.help.is_empty(), "{}: family needs help", m.field);
                    seen.push(m.name);
                }
            }
            prev = Some(m);
        }
    }

    #[test]
    fn prometheus_scaling_and_escaping() {
        let mut out = String::new();
        for (v, d) in [(0, 1000), (1, 1000), (1234, 1000), (u64::MAX, 1000), (7, 1)] {
            write_scaled(&mut out, v, d);
            out.push(' ');
        }
        assert_eq!(out, "0.000 0.001 1.234 18446744073709551.615 7 ");
        let mut s = Stats::new("1.0 \"x\" \\ \n");
        s.uptime_ms = 61_005;
        let mut text = String::new();
        s.write_prometheus(&mut text);
        let (_, samples) = parse_exposition(&text);
        assert_eq!(samples.last().unwrap().1[0].1, "1.0 \"x\" \\ \n");
        assert!(text.contains("\nunikernel_uptime_seconds 61.005\n"));
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
