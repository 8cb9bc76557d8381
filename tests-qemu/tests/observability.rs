//! Observability against the real guest:
//!
//! | test | what |
//! |------|------|
//! | `metrics::metrics_parse_with_a_real_prometheus_parser_and_match_the_traffic` | `/metrics` through `prometheus_client`'s parser (`observability/promparse.py`): every `/api/stats.json` counter with `# HELP`/`# TYPE` under its documented name, deltas equal to the traffic sent, counters monotonic, agreement with the JSON |
//! | `requests::recent_requests_ring_matches_the_traffic` | `/api/requests.json`: method, path (cut at 96 bytes), status, bytes, connection ids, sent and dropped responses |
//! | `status_page::status_page_in_headless_chromium_under_load_and_across_a_restart` | `/status` in headless Chromium driven over the DevTools protocol (`observability/cdp.py`) while a client loads the guest: every chart draws, no console error, screenshot in `target/observability/`; then the guest is killed and a new one booted on the same port: the page shows offline, comes back, counts the restart and keeps drawing |
//!
//! Needs `chromium` and a `python3` that can import `prometheus_client`
//! (Debian: `python3-prometheus-client`); `TESTS_QEMU_CHROMIUM` overrides the
//! browser binary. Each test fails with a message naming what is missing.

#[path = "observability/metrics.rs"]
mod metrics;
#[path = "observability/metrics_table.rs"]
mod metrics_table;
#[path = "observability/requests.rs"]
mod requests;
#[path = "observability/status_page.rs"]
mod status_page;

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
use metrics_table::METRICS;
use serde_json::{Value, json};
use tests_qemu::browser::Browser;
use tests_qemu::http::{Client, HttpGuest, STATS_COUNTERS, Transport, boot_http, site_file};
use tests_qemu::{INIT_TIMEOUT, config, python_with};

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
