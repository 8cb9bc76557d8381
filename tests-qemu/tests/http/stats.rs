//! `/api/stats.json`: every counter present and a `u64`, and the counters
//! checked against the traffic this test sent.

use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, STATS_COUNTERS, Stats, Transport, boot_http, site_file};

/// Largest virtio queue QEMU offers on virtio-mmio: ring distances beyond it
/// are garbage.
const MAX_QUEUE: u64 = 1024;

/// Fetches the stats until `connections_active` is 1 (only the stats request's
/// own connection); returns them, how many fetches it took and the body
/// lengths of all but the last (those responses count in the last one).
fn settled_stats(g: &HttpGuest) -> (Stats, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut earlier_bodies = 0u64;
    for fetches in 1..=100u64 {
        let r = g.admin_get("/api/stats.json");
        let s = Stats::parse(&r.body).unwrap_or_else(|e| g.fail(e));
        if s.get("connections_active") == 1 {
            return (s, fetches, earlier_bodies);
        }
        earlier_bodies += r.body.len() as u64;
        if Instant::now() >= deadline {
            g.fail(format_args!(
                "connections_active never back to 1: {}",
                s.text
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    g.fail("connections_active never back to 1 in 100 fetches")
}

/// Invariants that hold in any snapshot.
fn invariants(g: &HttpGuest, s: &Stats) {
    let classes: u64 = [
        "status_1xx",
        "status_2xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
    ]
    .iter()
    .map(|n| s.get(n))
    .sum();
    if classes != s.get("requests_total") {
        g.fail(format_args!(
            "status classes add up to {classes}, requests_total is {}: {}",
            s.get("requests_total"),
            s.text
        ));
    }
    let timeouts: u64 = [
        "timeouts_request",
        "timeouts_idle",
        "timeouts_send",
        "timeouts_close",
    ]
    .iter()
    .map(|n| s.get(n))
    .sum();
    if timeouts != s.get("connections_timed_out") {
        g.fail(format_args!(
            "timeouts_* add up to {timeouts}, connections_timed_out is {}",
            s.get("connections_timed_out")
        ));
    }
    for idx in ["rx_avail_idx", "rx_used_idx", "tx_avail_idx", "tx_used_idx"] {
        if s.get(idx) >= 65536 {
            g.fail(format_args!(
                "{idx} = {} is not a 16-bit ring index",
                s.get(idx)
            ));
        }
    }
    let rx_posted = (s.get("rx_avail_idx") + 65536 - s.get("rx_used_idx")) % 65536;
    let tx_pending = (s.get("tx_avail_idx") + 65536 - s.get("tx_used_idx")) % 65536;
    if rx_posted == 0 || rx_posted > MAX_QUEUE || tx_pending > MAX_QUEUE {
        g.fail(format_args!(
            "ring distances: {rx_posted} RX buffers posted, {tx_pending} TX pending: {}",
            s.text
        ));
    }
    if s.get("heap_used") == 0 || s.get("heap_free") == 0 {
        g.fail(format_args!("heap figures missing: {}", s.text));
    }
    if s.get("connections_active") > s.get("connections_accepted") {
        g.fail(format_args!(
            "more connections active than accepted: {}",
            s.text
        ));
    }
}

pub fn stats_counters_match_the_traffic(transport: Transport) {
    let g = boot_http("stats", transport, &[]);
    let css = site_file("style.css");
    let (s0, _, _) = settled_stats(&g);
    let t0 = Instant::now();
    invariants(&g, &s0);
    if STATS_COUNTERS.len() + 1 != s0.map.len() {
        let extra: Vec<&String> = s0
            .map
            .keys()
            .filter(|k| *k != "version" && !STATS_COUNTERS.contains(&k.as_str()))
            .collect();
        g.note(format_args!(
            "counters beyond the documented ones: {extra:?}"
        ));
    }

    // The traffic: one keep-alive connection, then separate ones.
    const KEEP_ALIVE_HEALTH: u64 = 20;
    const NOT_FOUND: u64 = 3;
    const HEADS: u64 = 2;
    const SEPARATE: u64 = 5;
    let mut sent_bytes = 0u64;
    let mut received_bytes = 0u64;
    let mut body_bytes = 0u64;
    let mut c = g.connect();
    let mut exchange = |c: &mut tests_qemu::http::Client, req: &str, head: bool| {
        c.send(req.as_bytes())
            .unwrap_or_else(|e| g.fail(format_args!("{req:?}: {e}")));
        let r = c
            .read_response(head)
            .unwrap_or_else(|e| g.fail(format_args!("{req:?}: {e}")));
        sent_bytes += req.len() as u64;
        received_bytes += (r.head_text().len() + r.body.len()) as u64;
        body_bytes += r.body.len() as u64;
        r
    };
    for _ in 0..KEEP_ALIVE_HEALTH {
        let r = exchange(&mut c, "GET /health HTTP/1.1\r\nHost: s\r\n\r\n", false);
        assert_eq!(r.status, 200);
    }
    for _ in 0..NOT_FOUND {
        let r = exchange(&mut c, "GET /nope HTTP/1.1\r\nHost: s\r\n\r\n", false);
        assert_eq!(r.status, 404);
    }
    for _ in 0..HEADS {
        let r = exchange(&mut c, "HEAD /style.css HTTP/1.1\r\nHost: s\r\n\r\n", true);
        assert_eq!((r.status, r.body.len()), (200, 0));
    }
    let r = exchange(&mut c, "GET /style.css HTTP/1.1\r\nHost: s\r\n\r\n", false);
    assert_eq!(r.body, css);
    drop(c);
    for _ in 0..SEPARATE {
        let mut c = g.connect();
        let r = exchange(
            &mut c,
            "GET /health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
            false,
        );
        assert_eq!(r.status, 200);
    }
    // Let some time pass so that the clock counters can be compared with ours.
    std::thread::sleep(Duration::from_millis(1000));

    let (s1, fetches, earlier_stats_bodies) = settled_stats(&g);
    let wall = t0.elapsed();
    invariants(&g, &s1);
    let sent = KEEP_ALIVE_HEALTH + NOT_FOUND + HEADS + 1 + SEPARATE;
    let ok = sent - NOT_FOUND;
    // s0's own response and every stats fetch before the last count in s1.
    let stats_responses = fetches;
    let stats_bodies = s0.text.len() as u64 + earlier_stats_bodies;
    let exact = [
        ("requests_total", sent + stats_responses),
        ("status_2xx", ok + stats_responses),
        ("status_4xx", NOT_FOUND),
        ("status_1xx", 0),
        ("status_3xx", 0),
        ("status_5xx", 0),
        ("response_body_bytes", body_bytes + stats_bodies),
        // The keep-alive one, the separate ones, each stats fetch after s0.
        ("connections_accepted", 1 + SEPARATE + fetches),
        ("connections_refused", 0),
        ("connections_timed_out", 0),
        ("device_resets", 0),
        ("rx_dropped", 0),
    ];
    let mut problems = Vec::new();
    for (name, want) in exact {
        let got = s1.delta(&s0, name);
        if got != want {
            problems.push(format!("{name} grew by {got}, want {want}"));
        }
    }
    if s1.get("connections_active") != 1 {
        problems.push("connections_active is not 1".into());
    }
    let at_least = [
        ("frames_in", sent + 2 * (1 + SEPARATE)),
        ("frames_out", sent),
        ("bytes_in", sent_bytes),
        ("bytes_out", received_bytes),
        ("interrupts_net", 1),
        ("interrupts_timer", 1),
        ("loop_iterations", sent),
    ];
    for (name, min) in at_least {
        let got = s1.delta(&s0, name);
        if got < min {
            problems.push(format!("{name} grew by {got}, want at least {min}"));
        }
    }
    for idx in ["rx_used_idx", "tx_avail_idx"] {
        if s1.get(idx) == s0.get(idx) {
            problems.push(format!("{idx} did not move"));
        }
    }
    // Every frame received took a used RX entry, every frame sent an avail TX
    // entry (mod 2^16; the last TX may still be in flight, so not tx_used).
    let moved = |n: &str| (s1.get(n) + 65536 - s0.get(n)) % 65536;
    let frames_in = s1.delta(&s0, "frames_in") % 65536;
    let frames_out = s1.delta(&s0, "frames_out") % 65536;
    if moved("rx_used_idx") < frames_in || moved("tx_avail_idx") < frames_out {
        problems.push(format!(
            "rings moved rx used {} tx avail {}, fewer than frames in {frames_in} out {frames_out}",
            moved("rx_used_idx"),
            moved("tx_avail_idx")
        ));
    }
    // The guest's clock against ours: uptime and the 100 Hz tick.
    let uptime = s1.delta(&s0, "uptime_ms");
    let wall_ms = wall.as_millis() as u64;
    if uptime * 10 < wall_ms * 7 || uptime * 10 > wall_ms * 13 + 2000 {
        problems.push(format!(
            "uptime_ms grew by {uptime} over {wall_ms} ms of wall-clock time"
        ));
    }
    let ticks = s1.delta(&s0, "interrupts_timer");
    // Loose below: a starved QEMU drops late ticks; the point is ~100 Hz.
    if ticks * 10 < uptime / 2 || ticks * 10 > uptime * 13 / 10 + 100 {
        problems.push(format!(
            "interrupts_timer grew by {ticks} over {uptime} ms of uptime (100 Hz tick)"
        ));
    }
    let heap = |s: &Stats| s.get("heap_used") + s.get("heap_free");
    if heap(&s0) != heap(&s1) {
        problems.push(format!(
            "heap_used + heap_free changed: {} -> {}",
            heap(&s0),
            heap(&s1)
        ));
    }
    if !problems.is_empty() {
        g.fail(format_args!(
            "stats do not match the traffic:\n  {}\nbefore: {}\nafter: {}",
            problems.join("\n  "),
            s0.text,
            s1.text
        ));
    }
    g.note(format_args!(
        "{sent} requests: counters exact; {} frames in, {} out, {} net interrupts, uptime \
         +{uptime} ms over {wall_ms} ms wall, {ticks} ticks, {} timer recoveries, heap {} KiB used",
        s1.delta(&s0, "frames_in"),
        s1.delta(&s0, "frames_out"),
        s1.delta(&s0, "interrupts_net"),
        s1.delta(&s0, "timer_recoveries"),
        s1.get("heap_used") / 1024
    ));
    g.finish();
}
