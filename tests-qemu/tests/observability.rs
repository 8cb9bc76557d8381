//! Observability against the real guest (issue 7):
//!
//! | test | what |
//! |------|------|
//! | `metrics_parse_with_a_real_prometheus_parser_and_match_the_traffic` | `/metrics` through `prometheus_client`'s parser (`observability/promparse.py`): every `/api/stats.json` counter with `# HELP`/`# TYPE` under its documented name, deltas equal to the traffic sent, counters monotonic, agreement with the JSON |
//! | `recent_requests_ring_matches_the_traffic` | `/api/requests.json`: method, path (cut at 96 bytes), status, bytes, connection ids, sent and dropped responses |
//! | `status_page_in_headless_chromium_under_load_and_across_a_restart` | `/status` in headless Chromium driven over the DevTools protocol (`observability/cdp.py`) while a client loads the guest: every chart draws, no console error, screenshot in `target/observability/`; then the guest is killed and a new one booted on the same port: the page shows offline, comes back, counts the restart and keeps drawing |
//!
//! Needs `chromium` and a `python3` that can import `prometheus_client`
//! (Debian: `python3-prometheus-client`); `TESTS_QEMU_CHROMIUM` overrides the
//! browser binary. Each test fails with a message naming what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boot_image::{Guest, QemuConfig};
use serde_json::{Value, json};
use tests_qemu::browser::Browser;
use tests_qemu::http::{Client, HttpGuest, STATS_COUNTERS, Transport, boot_http, site_file};
use tests_qemu::{INIT_TIMEOUT, config, python_with};

/// Every `/api/stats.json` counter's metric: field, sample name, labels, type,
/// and the divisor from the JSON value (milliseconds to seconds). This is the
/// interface the README documents; the kernel's `stats!` list must match it.
/// (JSON field, sample name, labels, type, divisor).
type MetricRow = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    f64,
);

const METRICS: &[MetricRow] = &[
    (
        "uptime_ms",
        "unikernel_uptime_seconds",
        &[],
        "gauge",
        1000.0,
    ),
    (
        "requests_total",
        "unikernel_http_requests_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "status_1xx",
        "unikernel_http_responses_total",
        &[("class", "1xx")],
        "counter",
        1.0,
    ),
    (
        "status_2xx",
        "unikernel_http_responses_total",
        &[("class", "2xx")],
        "counter",
        1.0,
    ),
    (
        "status_3xx",
        "unikernel_http_responses_total",
        &[("class", "3xx")],
        "counter",
        1.0,
    ),
    (
        "status_4xx",
        "unikernel_http_responses_total",
        &[("class", "4xx")],
        "counter",
        1.0,
    ),
    (
        "status_5xx",
        "unikernel_http_responses_total",
        &[("class", "5xx")],
        "counter",
        1.0,
    ),
    (
        "response_body_bytes",
        "unikernel_http_response_body_bytes_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "connections_accepted",
        "unikernel_http_connections_accepted_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "connections_active",
        "unikernel_connections_active",
        &[],
        "gauge",
        1.0,
    ),
    (
        "connections_refused",
        "unikernel_http_connections_refused_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "syn_cookies_sent",
        "unikernel_tcp_syn_cookies_total",
        &[("result", "sent")],
        "counter",
        1.0,
    ),
    (
        "syn_cookies_valid",
        "unikernel_tcp_syn_cookies_total",
        &[("result", "valid")],
        "counter",
        1.0,
    ),
    (
        "syn_cookies_invalid",
        "unikernel_tcp_syn_cookies_total",
        &[("result", "invalid")],
        "counter",
        1.0,
    ),
    (
        "evictions_idle",
        "unikernel_http_evictions_total",
        &[("reason", "idle")],
        "counter",
        1.0,
    ),
    (
        "evictions_head",
        "unikernel_http_evictions_total",
        &[("reason", "head")],
        "counter",
        1.0,
    ),
    (
        "evictions_lingering",
        "unikernel_http_evictions_total",
        &[("reason", "lingering")],
        "counter",
        1.0,
    ),
    (
        "evictions_stalled",
        "unikernel_http_evictions_total",
        &[("reason", "stalled")],
        "counter",
        1.0,
    ),
    (
        "connections_timed_out",
        "unikernel_http_connections_timed_out_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "timeouts_request",
        "unikernel_http_timeouts_total",
        &[("deadline", "request")],
        "counter",
        1.0,
    ),
    (
        "timeouts_idle",
        "unikernel_http_timeouts_total",
        &[("deadline", "idle")],
        "counter",
        1.0,
    ),
    (
        "timeouts_send",
        "unikernel_http_timeouts_total",
        &[("deadline", "send")],
        "counter",
        1.0,
    ),
    (
        "timeouts_close",
        "unikernel_http_timeouts_total",
        &[("deadline", "close")],
        "counter",
        1.0,
    ),
    (
        "bytes_in",
        "unikernel_network_receive_bytes_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "bytes_out",
        "unikernel_network_transmit_bytes_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "frames_in",
        "unikernel_network_receive_frames_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "frames_out",
        "unikernel_network_transmit_frames_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "rx_avail_idx",
        "unikernel_virtio_ring_index",
        &[("queue", "rx"), ("ring", "avail")],
        "gauge",
        1.0,
    ),
    (
        "rx_used_idx",
        "unikernel_virtio_ring_index",
        &[("queue", "rx"), ("ring", "used")],
        "gauge",
        1.0,
    ),
    (
        "tx_avail_idx",
        "unikernel_virtio_ring_index",
        &[("queue", "tx"), ("ring", "avail")],
        "gauge",
        1.0,
    ),
    (
        "tx_used_idx",
        "unikernel_virtio_ring_index",
        &[("queue", "tx"), ("ring", "used")],
        "gauge",
        1.0,
    ),
    (
        "interrupts_net",
        "unikernel_interrupts_total",
        &[("source", "net")],
        "counter",
        1.0,
    ),
    (
        "interrupts_timer",
        "unikernel_interrupts_total",
        &[("source", "timer")],
        "counter",
        1.0,
    ),
    (
        "timer_recoveries",
        "unikernel_timer_recoveries_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "device_resets",
        "unikernel_device_resets_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "tx_full_events",
        "unikernel_tx_full_events_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "rx_dropped",
        "unikernel_network_receive_dropped_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "rx_checksum_errors",
        "unikernel_network_receive_checksum_errors_total",
        &[],
        "counter",
        1.0,
    ),
    ("heap_used", "unikernel_heap_used_bytes", &[], "gauge", 1.0),
    ("heap_free", "unikernel_heap_free_bytes", &[], "gauge", 1.0),
    (
        "tx_large_buffer_bytes",
        "unikernel_tx_large_buffer_bytes",
        &[],
        "gauge",
        1.0,
    ),
    (
        "loop_iterations",
        "unikernel_loop_iterations_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "rx_wraps",
        "unikernel_virtio_used_index_wraps_total",
        &[("queue", "rx")],
        "counter",
        1.0,
    ),
    (
        "tx_wraps",
        "unikernel_virtio_used_index_wraps_total",
        &[("queue", "tx")],
        "counter",
        1.0,
    ),
    (
        "interrupts_ignored",
        "unikernel_interrupts_ignored_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "access_log_lines",
        "unikernel_access_log_lines_total",
        &[],
        "counter",
        1.0,
    ),
    (
        "access_log_dropped",
        "unikernel_access_log_dropped_total",
        &[],
        "counter",
        1.0,
    ),
];
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Path bytes the request ring keeps per entry.
const RING_PATH_MAX: usize = 96;
/// The status page must draw within this (TCG on a busy host is slow).
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Successful polls (one a second) before the page is judged and shot.
const POLLS_BEFORE_SCREENSHOT: u64 = 15;
const VIEWPORT: (u32, u32) = (1280, 1250);

fn here(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/observability")
        .join(name)
}

/// Where the screenshots are kept: `target/observability/`.
fn artifacts() -> PathBuf {
    let dir = boot_image::repo_root().join("target/observability");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------- /metrics

/// One scrape, parsed by prometheus_client: (sample name, labels) -> value,
/// and family name -> (type, help).
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    families: BTreeMap<String, (String, String)>,
    body_len: usize,
    text: String,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The value of a JSON counter's metric, in the JSON's unit.
    fn field(&self, field: &str) -> f64 {
        let (_, name, labels, _, divisor) = METRICS
            .iter()
            .find(|m| m.0 == field)
            .unwrap_or_else(|| panic!("no metric for {field}"));
        let v = self
            .get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} for {field} in:\n{}", self.text));
        v * divisor
    }
}

fn scrape(g: &HttpGuest, python: &str) -> Scrape {
    let r = g.admin_get("/metrics");
    if r.status != 200 {
        g.fail(format_args!("/metrics answered {}", r.status));
    }
    if r.header("content-type") != Some(METRICS_CONTENT_TYPE) {
        g.fail(format_args!("/metrics content type: {}", r.head_text()));
    }
    if r.header("cache-control") != Some("no-store") {
        g.fail(format_args!("/metrics is cacheable: {}", r.head_text()));
    }
    let text = r.body_text();
    let mut child = Command::new(python)
        .arg(here("promparse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python} promparse.py: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(r.body.as_slice())
        .expect("feeding promparse.py");
    let out = child.wait_with_output().expect("promparse.py output");
    if !out.status.success() {
        g.fail(format_args!(
            "prometheus_client rejects /metrics ({}): {}\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).expect("promparse.py JSON");
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        families: BTreeMap::new(),
        body_len: r.body.len(),
        text: text.clone(),
    };
    for f in &families {
        let kind = f["type"].as_str().unwrap_or_default().to_string();
        let help = f["help"].as_str().unwrap_or_default().to_string();
        for s in f["samples"].as_array().into_iter().flatten() {
            let labels = s["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let key = (s["name"].as_str().unwrap_or_default().to_string(), labels);
            let value = s["value"].as_f64().unwrap_or(f64::NAN);
            if scrape.samples.insert(key.clone(), value).is_some() {
                g.fail(format_args!("series {key:?} twice in /metrics:\n{text}"));
            }
            // prometheus_client names a counter family without `_total`.
            scrape
                .families
                .insert(key.0.clone(), (kind.clone(), help.clone()));
        }
    }
    scrape
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser_and_match_the_traffic() {
    let python = python_with(
        "prometheus_client.parser",
        "install the Debian package python3-prometheus-client (or `pip install prometheus_client`)",
    );
    let g = boot_http("metrics", Transport::Legacy, &[]);
    let fields: BTreeSet<&str> = METRICS.iter().map(|m| m.0).collect();
    let json: BTreeSet<&str> = STATS_COUNTERS.iter().copied().collect();
    assert!(
        json.is_subset(&fields),
        "JSON counters without a metric here: {:?}",
        json.difference(&fields).collect::<Vec<_>>()
    );

    let m0 = scrape(&g, &python);
    let before = g.stats();
    // Every counter, under its name, with its type and help; and build_info.
    for (field, name, labels, kind, _) in METRICS {
        if m0.get(name, labels).is_none() {
            g.fail(format_args!("{field}: no {name}{labels:?} in\n{}", m0.text));
        }
        let (got_kind, help) = &m0.families[*name];
        assert_eq!(got_kind, kind, "type of {name}");
        assert!(!help.trim().is_empty(), "{name} has no HELP");
        assert_eq!(kind == &"counter", name.ends_with("_total"), "{name}");
    }
    let build = m0.get(
        "unikernel_build_info",
        &[("version", before.version.as_str())],
    );
    assert_eq!(build, Some(1.0), "build_info:\n{}", m0.text);
    assert_eq!(m0.families["unikernel_build_info"].0, "gauge");
    assert_eq!(
        m0.samples.len(),
        METRICS.len() + 1,
        "unexpected series:\n{}",
        m0.text
    );
    assert!(
        (m0.field("uptime_ms") - before.get("uptime_ms") as f64).abs() < 5_000.0,
        "uptime_seconds against the JSON uptime_ms"
    );

    // Known traffic, one connection per request.
    const OK: u64 = 20;
    const NOT_FOUND: u64 = 7;
    const NOT_ALLOWED: u64 = 3;
    const HEADS: u64 = 5;
    let index = site_file("index.html");
    let mut body_404 = 0;
    let mut body_405 = 0;
    for _ in 0..OK {
        let r = g.get("/");
        assert_eq!((r.status, r.body.len()), (200, index.len()));
    }
    for _ in 0..NOT_FOUND {
        let r = g.get("/no-such-page");
        assert_eq!(r.status, 404);
        body_404 = r.body.len() as u64;
    }
    for _ in 0..NOT_ALLOWED {
        let r = g.request("POST", "/", &["Content-Length: 0"]);
        assert_eq!(r.status, 405);
        body_405 = r.body.len() as u64;
    }
    for _ in 0..HEADS {
        assert_eq!(g.request("HEAD", "/index.html", &[]).status, 200);
    }
    let m1 = scrape(&g, &python);
    // Deltas since m0: the traffic, plus the /api/stats.json fetch and the m0
    // scrape itself (each counted once its response started, after its body
    // was generated).
    let stats_len = before.text.len() as u64;
    let delta = |f: &str| m1.field(f) - m0.field(f);
    let sent = OK + NOT_FOUND + NOT_ALLOWED + HEADS;
    assert_eq!(delta("requests_total"), (sent + 2) as f64);
    assert_eq!(delta("status_2xx"), (OK + HEADS + 2) as f64);
    assert_eq!(delta("status_4xx"), (NOT_FOUND + NOT_ALLOWED) as f64);
    for f in ["status_1xx", "status_3xx", "status_5xx", "device_resets"] {
        assert_eq!(delta(f), 0.0, "{f}");
    }
    assert_eq!(
        delta("response_body_bytes"),
        (OK * index.len() as u64
            + NOT_FOUND * body_404
            + NOT_ALLOWED * body_405
            + m0.body_len as u64
            + stats_len) as f64
    );
    assert_eq!(delta("connections_accepted"), (sent + 2) as f64);
    // Every request of the traffic got its access-log line, none dropped.
    assert!(delta("access_log_lines") >= sent as f64, "access-log lines");
    assert_eq!(delta("access_log_dropped"), 0.0);
    for f in [
        "frames_in",
        "frames_out",
        "bytes_in",
        "bytes_out",
        "loop_iterations",
    ] {
        assert!(delta(f) > 0.0, "{f} did not move");
    }
    // Counters only go up.
    for (field, name, _, kind, _) in METRICS {
        if *kind == "counter" {
            assert!(delta(field) >= 0.0, "{name} went down");
        }
    }
    // The JSON and the metrics agree (the metrics scrape answers after the
    // JSON fetch, which it counts).
    let j = g.stats();
    let m2 = scrape(&g, &python);
    for f in [
        "status_1xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
        "timeouts_request",
        "device_resets",
    ] {
        assert_eq!(m2.field(f), j.get(f) as f64, "{f}");
    }
    assert_eq!(
        m2.field("requests_total"),
        (j.get("requests_total") + 1) as f64
    );
    assert_eq!(m2.field("status_2xx"), (j.get("status_2xx") + 1) as f64);
    assert!(m2.field("uptime_ms") >= j.get("uptime_ms") as f64);
    g.note(format_args!(
        "/metrics: {} series, {} bytes; {} requests counted",
        m2.samples.len(),
        m2.body_len,
        m2.field("requests_total")
    ));
    g.finish();
}

// ---------------------------------------------------------- /api/requests.json

fn recent_requests(g: &HttpGuest) -> Value {
    let r = g.admin_get("/api/requests.json");
    if r.status != 200
        || r.header("content-type") != Some("application/json")
        || r.header("cache-control") != Some("no-store")
    {
        g.fail(format_args!("/api/requests.json: {}", r.head_text()));
    }
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        g.fail(format_args!(
            "/api/requests.json is not JSON ({e}): {}",
            r.body_text()
        ))
    })
}

#[test]
fn recent_requests_ring_matches_the_traffic() {
    let g = boot_http("requests-ring", Transport::Legacy, &[]);
    let index = site_file("index.html");
    let style = site_file("style.css");
    let long = format!("/{}", "a".repeat(300));
    // (method, path sent, path logged, status, body bytes)
    let mut expected: Vec<(&str, String, String, u64, u64)> = Vec::new();
    let mut conns: Vec<&str> = Vec::new(); // connection names, for the id check
    let r = g.get("/index.html?x=1");
    assert_eq!(r.status, 200);
    expected.push((
        "GET",
        "/index.html?x=1".into(),
        "/index.html".into(),
        200,
        index.len() as u64,
    ));
    conns.push("a");
    assert_eq!(g.request("HEAD", "/", &[]).status, 200);
    expected.push(("HEAD", "/".into(), "/".into(), 200, 0));
    conns.push("b");
    let r = g.request("POST", "/form", &["Content-Length: 0"]);
    assert_eq!(r.status, 405);
    expected.push((
        "POST",
        "/form".into(),
        "/form".into(),
        405,
        r.body.len() as u64,
    ));
    conns.push("c");
    let r = g.get(&long);
    assert_eq!(r.status, 404);
    expected.push((
        "GET",
        long.clone(),
        long[..RING_PATH_MAX].into(),
        404,
        r.body.len() as u64,
    ));
    conns.push("d");
    // Two pipelined requests on one connection: one connection id.
    let mut c = g.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("pipelining: {e}")));
    for _ in 0..2 {
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| g.fail(format_args!("pipelined response: {e}")));
        assert_eq!(r.status, 200);
    }
    expected.push(("GET", "/".into(), "/".into(), 200, index.len() as u64));
    conns.push("e");
    expected.push((
        "GET",
        "/style.css".into(),
        "/style.css".into(),
        200,
        style.len() as u64,
    ));
    conns.push("e");
    drop(c);

    let v = recent_requests(&g);
    assert_eq!(v["capacity"], 64);
    let rows = v["requests"].as_array().expect("requests array");
    assert!(rows.len() >= expected.len() && rows.len() <= 64);
    let ours: Vec<&Value> = rows[..expected.len()].iter().rev().collect();
    let mut ids: BTreeMap<&str, u64> = BTreeMap::new();
    let mut last_id = 0;
    let mut last_seq = None;
    for ((row, (method, sent, logged, status, bytes)), name) in
        ours.iter().zip(&expected).zip(&conns)
    {
        let what = format!("{method} {sent}: {row}");
        assert_eq!(row["method"], *method, "{what}");
        assert_eq!(row["path"].as_str(), Some(logged.as_str()), "{what}");
        assert_eq!(
            row["path_truncated"],
            logged != sent && sent.len() > RING_PATH_MAX,
            "{what}"
        );
        assert_eq!(row["status"], *status, "{what}");
        assert_eq!(row["body_bytes"], *bytes, "{what}");
        assert_eq!(row["state"], "sent", "{what}");
        assert!(row["duration_ms"].is_u64(), "{what}");
        assert!(
            row["received_ms"].as_u64() <= v["uptime_ms"].as_u64(),
            "{what}"
        );
        let seq = row["seq"].as_u64().expect("seq");
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev + 1, "{what}");
        }
        last_seq = Some(seq);
        let id = row["conn"].as_u64().expect("conn");
        match ids.get(name) {
            Some(&same) => assert_eq!(id, same, "pipelined requests share a connection: {what}"),
            None => {
                assert!(
                    id > last_id,
                    "a new connection gets a new, larger id: {what}"
                );
                ids.insert(name, id);
                last_id = id;
            }
        }
    }
    assert_eq!(v["total"].as_u64(), last_seq, "total counts every request");

    // A download the client abandons: recorded, then dropped, never sent.
    let mut c = g.connect();
    c.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("large.bin: {e}")));
    let mut some = [0u8; 1000];
    std::io::Read::read(&mut c.stream, &mut some)
        .unwrap_or_else(|e| g.fail(format_args!("reading large.bin: {e}")));
    // Closing with unread data resets the connection.
    drop(c);
    let large_len = site_file("large.bin").len() as u64;
    let deadline = Instant::now() + Duration::from_secs(45);
    let state = loop {
        let v = recent_requests(&g);
        let row = v["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["path"] == "/large.bin")
            .cloned()
            .unwrap_or_else(|| g.fail(format_args!("no /large.bin entry: {v}")));
        assert_eq!(row["body_bytes"], large_len);
        let state = row["state"].as_str().unwrap_or_default().to_string();
        if state != "sending" || Instant::now() >= deadline {
            break (state, row);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(state.0, "dropped", "abandoned download: {}", state.1);
    assert!(state.1["duration_ms"].is_u64());
    g.note(format_args!("abandoned download logged as {}", state.1));
    g.finish();
}

// ------------------------------------------------------------------- /status

/// What the test reads off the page: the attributes it keeps for tests.
const PAGE_STATE: &str = "JSON.stringify({...document.body.dataset, \
     points: [...document.querySelectorAll('canvas')].map(c => Number(c.dataset.points))})";

/// Pixels of each canvas in a saturated colour: the series lines (the grid and
/// the labels are grey).
const COLOURED_PIXELS: &str = "[...document.querySelectorAll('canvas')].map(c => { \
     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
     for (let i = 0; i < d.length; i += 4) { \
       const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]); \
       if (d[i + 3] > 128 && hi - lo > 60) n++; } \
     return n; })";

fn page_state(b: &mut Browser) -> Value {
    let text = b.eval(PAGE_STATE);
    serde_json::from_str(text.as_str().unwrap_or("{}")).expect("page state JSON")
}

/// Every chart drew a series (its own count and its pixels agree).
fn check_charts_drawn(b: &mut Browser, when: &str) {
    let state = page_state(b);
    let points: Vec<u64> = state["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p.as_u64().unwrap_or(0))
        .collect();
    assert_eq!(points.len(), 6, "{when}: six charts: {state}");
    assert!(
        points.iter().all(|&p| p >= 3),
        "{when}: a chart has no points: {state}"
    );
    let pixels = b.eval(COLOURED_PIXELS);
    let pixels: Vec<u64> = pixels
        .as_array()
        .expect("pixel counts")
        .iter()
        .map(|p| p.as_u64().unwrap_or(0))
        .collect();
    assert!(
        pixels.iter().all(|&n| n >= 20),
        "{when}: a canvas is blank: coloured pixels {pixels:?}, {state}"
    );
    let rows: u64 = state["requestRows"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(rows > 0, "{when}: no recent requests shown: {state}");
}

/// A client that keeps loading the guest (new connection per request) until
/// stopped; counts answers and failures. Bounded in time and count.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mix = [
                ("GET", "/"),
                ("GET", "/bench/64k.bin"),
                ("GET", "/no-such-page"),
                ("GET", "/bench/4k.html"),
                ("HEAD", "/style.css"),
                ("POST", "/"),
            ];
            let deadline = Instant::now() + Duration::from_secs(300);
            for i in 0..100_000usize {
                if s.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let (method, path) = mix[i % mix.len()];
                match request(addr, method, path) {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(200));
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        Load {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Result<u16, String> {
    let mut c = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let extra = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    c.read_response(method == "HEAD").map(|r| r.status)
}

/// A guest on given host ports (the restart keeps the page's origin, the
/// admin port).
fn boot_on_port(test: &str, port: u16, admin_port: u16) -> HttpGuest {
    let access_log = std::env::temp_dir().join(format!(
        "unikernel-access-{test}-{}-{port}-again.log",
        std::process::id()
    ));
    let cfg = QemuConfig {
        host_port: Some(port),
        admin_host_port: Some(admin_port),
        access_log: Some(boot_image::AccessLogChannel::File(access_log.clone())),
        ..config(&[])
    };
    let mut last = String::new();
    for _ in 0..10 {
        match Guest::start(
            &tests_qemu::image().image,
            &cfg,
            tests_qemu::echo_from_env(),
        ) {
            Ok(guest) => {
                if let Err(e) = guest.wait_for("net: ready", INIT_TIMEOUT) {
                    panic!("[{test}] second guest: {e}\n{}", guest.serial());
                }
                let g = HttpGuest {
                    guest,
                    port,
                    admin_port,
                    access_log,
                    test: test.to_string(),
                    transport: Transport::Legacy,
                };
                g.wait_healthy(Duration::from_secs(20));
                return g;
            }
            // The port may take a moment to be free after the first QEMU.
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("[{test}] no guest on port {port}: {last}")
}

#[test]
fn status_page_in_headless_chromium_under_load_and_across_a_restart() {
    const TEST: &str = "status-page";
    let g = boot_http(TEST, Transport::Legacy, &[]);
    let (port, admin_port) = (g.port, g.admin_port);
    let load = Load::start(g.addr());
    let mut b = Browser::start(TEST, &artifacts());
    b.cmd(
        json!({"cmd": "open", "url": g.admin_url("/status"), "width": VIEWPORT.0, "height": VIEWPORT.1}),
    );
    b.wait_until(
        &format!(
            "Number(document.body.dataset.okPolls) >= {POLLS_BEFORE_SCREENSHOT} && \
             [...document.querySelectorAll('canvas')].every(c => Number(c.dataset.points) >= 3)"
        ),
        PAGE_TIMEOUT + Duration::from_secs(POLLS_BEFORE_SCREENSHOT),
        "charts drawn",
        PAGE_STATE,
    );
    let state = page_state(&mut b);
    assert_eq!(state["state"], "online", "{state}");
    assert_eq!(state["errors"], "0", "errors the page caught: {state}");
    assert_eq!(state["restarts"], "0", "{state}");
    check_charts_drawn(&mut b, "under load");
    let errors = b.errors();
    assert!(errors.is_empty(), "console errors under load: {errors:#?}");
    let shot = artifacts().join("status.png");
    let bytes = b.cmd(json!({"cmd": "screenshot", "path": shot}))["bytes"].clone();
    g.note(format_args!(
        "screenshot {} ({bytes} bytes), page {state}, load {:?} (ok, failed)",
        shot.display(),
        load.counts()
    ));

    // The guest goes away: the page says offline and keeps polling.
    let served_before = g.stats().get("requests_total");
    drop(g);
    b.wait_until(
        "document.body.dataset.state === 'offline'",
        Duration::from_secs(20),
        "offline after the guest stopped",
        PAGE_STATE,
    );
    // A new guest on the same port: counters start again from 0.
    let g = boot_on_port(TEST, port, admin_port);
    let polls_back = page_state(&mut b)["okPolls"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    b.wait_until(
        &format!(
            "document.body.dataset.state === 'online' && document.body.dataset.restarts === '1' && \
             Number(document.body.dataset.okPolls) >= {}",
            polls_back + 8
        ),
        PAGE_TIMEOUT,
        "back online with the restart counted",
        PAGE_STATE,
    );
    let after = g.stats();
    assert!(
        after.get("requests_total") < served_before,
        "the new guest's counters started again"
    );
    let state = page_state(&mut b);
    assert_eq!(state["errors"], "0", "errors the page caught: {state}");
    check_charts_drawn(&mut b, "after the restart");
    // Failed fetches while the guest was down are network errors; nothing else.
    let errors = b.errors();
    let unexpected: Vec<&Value> = errors
        .iter()
        .filter(|e| !(e["kind"] == "log" && e["source"] == "network"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "console errors across the restart: {unexpected:#?}"
    );
    let shot = artifacts().join("status-after-restart.png");
    b.cmd(json!({"cmd": "screenshot", "path": shot}));
    let (ok, failed) = load.counts();
    g.note(format_args!(
        "after restart: page {state}; {} network errors while down; load {ok} answered, {failed} failed; {}",
        errors.len(),
        shot.display()
    ));
    assert!(ok > 50, "the load client got few answers: {ok}");
    drop(load);
    drop(b);
    g.finish();
}
