//! `/metrics` through a real Prometheus parser, against the traffic sent.

use super::*;

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
