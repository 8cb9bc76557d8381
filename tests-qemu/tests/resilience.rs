//! Faults injected from outside (QMP) and by guest config, each in the middle
//! of downloads and under wrk load (TESTING.md F3, F4, F6, L6; the "never
//! stall" issue, items 2, 4, 6 and 8).
//!
//! | test | fault | expected |
//! |------|-------|----------|
//! | `link_down_*` | `set_link net0 off` for 5 s, idle then under wrk | downloads byte-exact (or closed cleanly and retried); `/health` within 2 s of link up |
//! | `vm_stop_*` | QMP `stop` for 5 s then `cont`, idle then under wrk | as above, and no soft-lockup report |
//! | `no_fault_control_*` | none (the control) | wrk clean, every probe within 2 s, `timer_recoveries` nearly still |
//! | `drop_every_3rd_irq_*`, `no_irq_*` | every 3rd NIC interrupt ignored / never routed | wrk clean, every probe within 2 s, `timer_recoveries` grows, interrupts counted as faulted |
//! | `queue_size_16_*` | 16-entry rings, with and without interrupts | as above, and the 16-bit ring indices wrapped (and counted) in both directions |
//!
//! Each test boots its own guest on a free port. Figures (recovery times,
//! rates, counters) go to stderr through `tests_qemu::note`.

use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, Stats};
use tests_qemu::note;
use tests_qemu::qmp::{NETDEV, Qmp};
use tests_qemu::resilience::{
    Download, DownloadResult, HEALTH_LIMIT, HealthProbe, KeepAlivePool, LARGE_LEN, Outcome,
    QmpGuest, Wrk, WrkReport, boot_qmp, check_config_accepted, download_now, health_on, mixed_lua,
    poll_fresh_health,
};

/// How long the link stays down / the VM stays paused.
const OUTAGE: Duration = Duration::from_secs(5);
/// `/large.bin` requests pipelined on the interrupted connection: 24 MiB, so
/// the guest is still sending when the outage starts even if QEMU takes a
/// while to act on the command (89 ms seen with two busy guests, during which
/// an idle guest sent 4 MiB).
const PIPELINED: usize = 16;
/// The outage starts once the client has this many bytes: inside the first
/// 1.5 MiB body.
const CUT_AT: u64 = 1 << 20;
/// A read of the interrupted download may wait this long: the outage plus the
/// guest's retransmission backoff.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(60);
/// Keep-alive connections idle through the outage, then probed 100 ms apart.
const POOL: usize = 5;
const POLL: Duration = Duration::from_millis(100);
const WRK_CONNECTIONS: u32 = 16;
const WRK_TIMEOUT_S: u64 = 10;
const WRK_GRACE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    LinkDown,
    Stop,
}

impl Outage {
    fn begin(self, http: &HttpGuest, qmp: &mut Qmp) {
        let done = match self {
            Outage::LinkDown => qmp.set_link(NETDEV, false),
            Outage::Stop => qmp.stop(),
        };
        done.unwrap_or_else(|e| http.fail(format_args!("{self:?}: {e}")));
        if self == Outage::Stop {
            expect_status(http, qmp, "paused");
        }
    }

    fn end(self, http: &HttpGuest, qmp: &mut Qmp) {
        let done = match self {
            Outage::LinkDown => qmp.set_link(NETDEV, true),
            Outage::Stop => qmp.cont(),
        };
        done.unwrap_or_else(|e| http.fail(format_args!("ending {self:?}: {e}")));
    }
}

fn expect_status(http: &HttpGuest, qmp: &mut Qmp, want: &str) {
    match qmp.query_status() {
        Ok(status) if status == want => {}
        other => http.fail(format_args!("query-status: {other:?}, expected {want:?}")),
    }
}

/// One outage in the middle of a pipelined download of `/large.bin` x4: the
/// outage really cut the guest off (a `/health` sent during it is not
/// answered), the download completes byte-exact with bytes arriving after the
/// outage (or ends cleanly and a retry succeeds), and `/health` answers within
/// 2 s of the end of the outage on keep-alive connections left idle through
/// it (and, without load, on a new connection).
fn outage_mid_download(g: &mut QmpGuest, outage: Outage, phase: &str, under_load: bool) {
    let QmpGuest { http, qmp, .. } = g;
    let pool = KeepAlivePool::open(http, POOL);
    let mut witness = http.connect();
    if let Err(e) = health_on(&mut witness) {
        http.fail(format_args!("{phase}: witness connection: {e}"));
    }
    let download = Download::start(http.addr(), PIPELINED, READ_TIMEOUT, DOWNLOAD_DEADLINE);
    if !download.wait_for_bytes(CUT_AT, Duration::from_secs(30)) {
        http.fail(format_args!(
            "{phase}: the download did not reach {CUT_AT} bytes within 30 s ({} bytes)",
            download.received()
        ));
    }
    let asked = Instant::now();
    outage.begin(http, qmp);
    let down = Instant::now();
    let begun = down - asked;
    // The guest must be cut off: a request on a live connection goes unanswered.
    let _ = witness
        .stream
        .set_read_timeout(Some(Duration::from_millis(1500)));
    if let Ok(took) = health_on(&mut witness) {
        http.fail(format_args!(
            "{phase}: /health answered {took:?} into the {outage:?} outage: it did not cut the guest off"
        ));
    }
    std::thread::sleep((down + OUTAGE).saturating_duration_since(Instant::now()));
    outage.end(http, qmp);
    let up = Instant::now();
    let outage_len = up - down;
    if outage == Outage::Stop {
        expect_status(http, qmp, "running");
    }
    let probes = std::thread::spawn(move || pool.probe_from(up, POLL, Duration::from_secs(5)));
    let fresh = poll_fresh_health(http.addr(), up, POLL, Duration::from_secs(10));
    let probes = probes.join().expect("probe thread");
    let result = download.join();
    drop(witness);

    // The download.
    let resumed = result.first_read_after(up);
    note(
        &http.test,
        format_args!(
            "{phase}: {outage:?} {outage_len:.2?} (command took {begun:.1?}); download of {PIPELINED}x{LARGE_LEN}: \
             {} bytes when asked, {} when done, {} during the outage, {} after; first bytes {:?} after the end; \
             {:?} after {:.2?} ({} responses ok)",
            result.received_by(asked),
            result.received_by(down),
            result.received_by(up) - result.received_by(down),
            result.received_after(up),
            resumed.map(|(d, _)| d),
            result.outcome,
            result.elapsed,
            result.responses_ok
        ),
    );
    check_interrupted_download(http, phase, &result, up);

    // Recovery of /health.
    let keep_alive: Vec<String> = probes
        .iter()
        .map(|p| match p {
            Ok(d) => format!("{:.0?}", d),
            Err(e) => format!("ERR {e}"),
        })
        .collect();
    note(
        &http.test,
        format_args!(
            "{phase}: /health after the outage: first fresh connection answered {:?} ({} tries); \
             keep-alive connections (sent at +0, +100 ms, ...) answered at {keep_alive:?}",
            fresh.0, fresh.1
        ),
    );
    for (i, p) in probes.iter().enumerate() {
        let sent = POLL * i as u32;
        match p {
            Ok(at) if *at <= sent + HEALTH_LIMIT => {}
            Ok(at) => http.fail(format_args!(
                "{phase}: keep-alive connection {i}, sent {sent:?} after the outage, answered {at:?} after it (limit: {HEALTH_LIMIT:?} after sending)"
            )),
            Err(e) => http.fail(format_args!(
                "{phase}: keep-alive connection {i}, idle through the outage, got no /health answer: {e}"
            )),
        }
    }
    if !under_load {
        match fresh.0 {
            Some(at) if at <= HEALTH_LIMIT => {}
            other => http.fail(format_args!(
                "{phase}: /health on a new connection: first answer {other:?} after the outage, limit {HEALTH_LIMIT:?}"
            )),
        }
    }
}

/// Complete with bytes after the outage (else the outage cut nothing), or a
/// clean close and a successful retry. A stall or a wrong byte fails.
fn check_interrupted_download(http: &HttpGuest, phase: &str, result: &DownloadResult, up: Instant) {
    match &result.outcome {
        Outcome::Complete => {
            // TCP retransmits with a doubling timeout (smoltcp: at least 1 s), so
            // after a 5 s outage the next try comes at most about one outage later.
            if let Some((after, _)) = result.first_read_after(up)
                && after > OUTAGE + Duration::from_secs(1)
            {
                http.fail(format_args!(
                    "{phase}: the interrupted download resumed only {after:.2?} after the outage"
                ));
            }
            if result.received_after(up) == 0 {
                http.fail(format_args!(
                    "{phase}: all {} bytes arrived before the outage ended: it interrupted nothing",
                    result.received
                ));
            }
        }
        Outcome::Closed(why) => {
            note(
                &http.test,
                format_args!("{phase}: the interrupted download ended cleanly ({why}); retrying"),
            );
            let retry = download_now(http.addr(), 1, Duration::from_secs(30));
            if retry.outcome != Outcome::Complete {
                http.fail(format_args!(
                    "{phase}: the retried download: {:?}",
                    retry.outcome
                ));
            }
        }
        Outcome::Stalled(why) | Outcome::Corrupt(why) => http.fail(format_args!(
            "{phase}: the interrupted download: {:?}: {why}",
            result.outcome
        )),
    }
}

fn note_wrk(http: &HttpGuest, what: &str, r: &WrkReport) {
    note(
        &http.test,
        format_args!(
            "{what}: {} requests in {:.1?} ({:.0} req/s), socket errors {:?}, non-2xx {}",
            r.requests, r.elapsed, r.per_second, r.socket_errors, r.non_2xx
        ),
    );
}

fn wrk_mixed(http: &HttpGuest, seconds: u64) -> Wrk {
    Wrk::spawn(
        &http.url("/"),
        WRK_CONNECTIONS,
        seconds,
        WRK_TIMEOUT_S,
        Some(mixed_lua()),
    )
}

/// Idle, then under `wrk -c16` (mixed routes, started before the outage): an
/// outage in the middle of a download each time; then a fresh 5 s wrk run
/// must be clean and a download byte-exact.
fn outage_idle_then_under_load(test: &str, outage: Outage) {
    let mut g = boot_qmp(test, &[]);
    let before = g.http.stats();
    outage_mid_download(&mut g, outage, "idle", false);

    let wrk = wrk_mixed(&g.http, 14);
    std::thread::sleep(Duration::from_secs(1));
    outage_mid_download(&mut g, outage, "under load", true);
    let during = wrk
        .wait(WRK_GRACE)
        .unwrap_or_else(|e| g.http.fail(format_args!("wrk across the outage: {e}")));
    note_wrk(&g.http, "wrk across the outage (errors allowed)", &during);

    let after_outage = wrk_mixed(&g.http, 5)
        .wait(WRK_GRACE)
        .unwrap_or_else(|e| g.http.fail(format_args!("wrk after the outage: {e}")));
    note_wrk(&g.http, "wrk after the outage", &after_outage);
    after_outage.check_clean(&g.http, "wrk after the outage");

    let last = download_now(g.http.addr(), 1, Duration::from_secs(30));
    if last.outcome != Outcome::Complete {
        g.http
            .fail(format_args!("the last download: {:?}", last.outcome));
    }
    let after = g.http.stats();
    note(
        test,
        format_args!(
            "guest counters: device_resets +{}, timeouts_send +{}, connections_timed_out +{}, \
             tx_full_events +{}, rx_dropped +{}, events {:?}",
            after.delta(&before, "device_resets"),
            after.delta(&before, "timeouts_send"),
            after.delta(&before, "connections_timed_out"),
            after.delta(&before, "tx_full_events"),
            after.delta(&before, "rx_dropped"),
            g.qmp
                .events
                .iter()
                .filter_map(|e| e.get("event").and_then(|v| v.as_str()))
                .collect::<Vec<_>>()
        ),
    );
    if after.delta(&before, "device_resets") != 0 {
        g.http.fail(format_args!(
            "the guest reset its NIC during the test: {}",
            after.text
        ));
    }
    if outage == Outage::Stop && !(g.qmp.saw_event("STOP") && g.qmp.saw_event("RESUME")) {
        g.http.fail(format_args!(
            "no STOP and RESUME events from QEMU: {:?}",
            g.qmp.events
        ));
    }
    if g.http.guest.serial().contains("FATAL soft-lockup") {
        g.http.fail("the soft-lockup detector fired");
    }
    let QmpGuest { http, .. } = g;
    http.finish();
}

#[test]
fn link_down_5s_mid_download_idle_and_under_load() {
    outage_idle_then_under_load("link-down", Outage::LinkDown);
}

#[test]
fn vm_stop_5s_mid_download_idle_and_under_load() {
    outage_idle_then_under_load("vm-stop", Outage::Stop);
}

// ---------------------------------------------------------------------------
// Lost interrupts and small queues, under load (issue items 2, 4, 8).

/// 16-bit virtqueue indices wrap every 65,536 frames; a little more so the
/// ring's initial offset (buffers pre-posted) cannot matter.
const WRAP_FRAMES: u64 = 65_536 + 1_024;
/// `timer_recoveries` (work found by a loop pass that no interrupt announced)
/// may grow by less than this under load without a fault (the control test:
/// +3 under TCG). With one interrupt in 3 dropped it grew by 63 in one CI run
/// and 1,293 in another, because under load the next interrupt usually
/// covers a dropped one; so drop-irq is judged by the quiet phase instead.
const RECOVERIES_WITHOUT_FAULT: u64 = 100;
/// ... and by at least this with no NIC interrupt at all (+1,400 under TCG).
const RECOVERIES_NO_IRQ: u64 = 500;

/// What a config fault must show on serial and in the stats.
struct Expect {
    /// Serial lines (substrings) that show the guest applied the config.
    serial: &'static [&'static str],
    /// Entries per ring.
    ring: u64,
    /// `timer_recoveries` growth during the load must lie in this range.
    timer_recoveries: std::ops::Range<u64>,
    /// ... and during [`quiet_requests`], where the guest idles between
    /// requests so that a lost interrupt leaves work for the tick.
    quiet_recoveries: std::ops::Range<u64>,
    /// ... and over both together at least this.
    min_recoveries: u64,
    /// `fault=drop-irq:N`: `interrupts_ignored` must be `interrupts_net / N`.
    ignored_every: Option<u64>,
    /// `interrupts_net` must stay 0 since boot.
    no_net_interrupts: bool,
    /// Drive enough frames for 16-bit index wraps in both directions (if the
    /// load did not) and require them counted.
    wraps: bool,
}

fn counter(http: &HttpGuest, s: &Stats, name: &str) -> u64 {
    s.map
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| http.fail(format_args!("stats have no counter {name:?}: {}", s.text)))
}

/// Downloads `/large.bin` (2 connections, pipelined, each byte-exact) until
/// the guest has sent and received at least [`WRAP_FRAMES`] frames since boot;
/// bounded. The number of downloads and how long they took.
fn drive_frames_past_a_wrap(http: &HttpGuest) -> (u64, Duration) {
    let start = Instant::now();
    let mut downloads = 0u64;
    for _ in 0..100 {
        let s = http.stats();
        let (fin, fout) = (s.get("frames_in"), s.get("frames_out"));
        if fin >= WRAP_FRAMES && fout >= WRAP_FRAMES {
            return (downloads, start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(90) {
            break;
        }
        // About 1,100 frames out a download (fewer in); 2..16 at a time.
        let missing = WRAP_FRAMES.saturating_sub(fin.min(fout));
        let per_conn = (missing.div_ceil(1_000).clamp(2, 16) as usize).div_ceil(2);
        let batch = [
            Download::start(
                http.addr(),
                per_conn,
                Duration::from_secs(20),
                Duration::from_secs(60),
            ),
            Download::start(
                http.addr(),
                per_conn,
                Duration::from_secs(20),
                Duration::from_secs(60),
            ),
        ];
        for (i, d) in batch.into_iter().enumerate() {
            let r = d.join();
            if r.outcome != Outcome::Complete {
                http.fail(format_args!(
                    "download {i} of a wrap batch: {:?}",
                    r.outcome
                ));
            }
        }
        downloads += 2 * per_conn as u64;
    }
    http.fail(format_args!(
        "the guest did not pass {WRAP_FRAMES} frames each way within {:.0?} ({downloads} downloads)",
        start.elapsed()
    ))
}

/// `wraps` must be what `frames` through a ring of `ring` entries give: the
/// used index is the frame count, less up to a ring of frames in flight.
fn check_wraps(http: &HttpGuest, s: &Stats, dir: &str, frames: u64, ring: u64) -> u64 {
    let wraps = counter(http, s, &format!("{dir}_wraps"));
    let low = frames.saturating_sub(ring) / 65_536;
    let high = (frames + ring) / 65_536;
    if !(low..=high).contains(&wraps) {
        http.fail(format_args!(
            "{dir}_wraps is {wraps} after {frames} frames on {ring}-entry rings, expected {low}..={high}: {}",
            s.text
        ));
    }
    wraps
}

/// Sequential requests on one keep-alive connection, [`QUIET_GAP`] apart, so
/// the guest halts between them. Under load a dropped interrupt is usually
/// covered by the next one within microseconds; here nothing else wakes the
/// guest, so a dropped RX interrupt shows as a recovery (see
/// [`RECOVERIES_DROP_IRQ`] for why that is still not every request), and
/// without a fault the counter must stay still.
const QUIET_REQUESTS: u64 = 60;
const QUIET_GAP: Duration = Duration::from_millis(30);
/// Quiet-phase recoveries stay below this without a fault (0 under TCG).
const QUIET_WITHOUT_FAULT: u64 = QUIET_REQUESTS / 6;
/// With one interrupt in 3 dropped, load and quiet phase together find at
/// least this much work without an interrupt. Neither phase alone is
/// reliable: a request costs a steady number of interrupts (about 3), so
/// which kind "every third" hits stays in phase for the whole quiet run: the
/// request's own RX interrupt (+60 in 60 requests, seen locally) or a TX
/// completion or ACK whose loss leaves no frame behind (+1, seen in CI); and
/// under load the next interrupt usually covers a dropped one (+63 to +1,293).
/// The control stays at +3 or less over both.
const RECOVERIES_DROP_IRQ: u64 = 30;

/// `timer_recoveries` growth over [`QUIET_REQUESTS`] idle-spaced requests.
fn quiet_requests(http: &HttpGuest) -> u64 {
    let before = http.stats();
    let mut client = http.connect();
    for i in 0..QUIET_REQUESTS {
        std::thread::sleep(QUIET_GAP);
        if let Err(e) = client.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n") {
            http.fail(format_args!("quiet request {i}: send: {e}"));
        }
        match client.read_response(false) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => http.fail(format_args!("quiet request {i}: status {}", r.status)),
            Err(e) => http.fail(format_args!("quiet request {i}: {e}")),
        }
    }
    http.stats().delta(&before, "timer_recoveries")
}

/// Boot with `items`, run `wrk -c16 -d10s` on the mixed routes with a
/// keep-alive `/health` probe every second, then (for small queues) downloads
/// until the ring indices wrapped; judge wrk, the probes and the counters;
/// end with a byte-exact download.
fn fault_under_load(test: &str, items: &[&str], expect: Expect) {
    let g = boot_qmp(test, items);
    let http = &g.http;
    check_config_accepted(http, items);
    for mark in expect.serial {
        tests_qemu::expect_line(&http.guest, mark, Duration::from_secs(1));
    }
    let before = http.stats();
    let probe = HealthProbe::start(http.addr());
    let started = Instant::now();
    let wrk = wrk_mixed(http, 10)
        .wait(WRK_GRACE)
        .unwrap_or_else(|e| http.fail(format_args!("wrk: {e}")));
    note_wrk(http, &format!("wrk -c{WRK_CONNECTIONS} mixed"), &wrk);
    let mid = http.stats();
    let wrap_drive = expect.wraps.then(|| drive_frames_past_a_wrap(http));
    let probes = probe.stop();
    let probed_for = started.elapsed();
    let after = http.stats();
    let quiet = quiet_requests(http);
    note(
        test,
        format_args!("{QUIET_REQUESTS} requests {QUIET_GAP:?} apart: timer_recoveries +{quiet}"),
    );
    let total = quiet + after.delta(&before, "timer_recoveries");
    if total < expect.min_recoveries {
        http.fail(format_args!(
            "timer_recoveries grew by {total} over the load and the quiet requests, expected at least {}",
            expect.min_recoveries
        ));
    }
    if !expect.quiet_recoveries.contains(&quiet) {
        http.fail(format_args!(
            "timer_recoveries grew by {quiet} over {QUIET_REQUESTS} quiet requests, expected {:?}",
            expect.quiet_recoveries
        ));
    }

    let d = |name: &str| after.delta(&before, name);
    note(
        test,
        format_args!(
            "during wrk: requests +{}, frames in/out +{}/+{}, interrupts_net +{} (ignored +{}), \
             timer_recoveries +{}, loop_iterations +{}, tx_full_events +{}",
            mid.delta(&before, "requests_total"),
            mid.delta(&before, "frames_in"),
            mid.delta(&before, "frames_out"),
            mid.delta(&before, "interrupts_net"),
            counter(http, &mid, "interrupts_ignored")
                - counter(http, &before, "interrupts_ignored"),
            mid.delta(&before, "timer_recoveries"),
            mid.delta(&before, "loop_iterations"),
            mid.delta(&before, "tx_full_events"),
        ),
    );
    if let Some((downloads, took)) = wrap_drive {
        note(
            test,
            format_args!(
                "{downloads} extra downloads in {took:.1?} to pass {WRAP_FRAMES} frames each way"
            ),
        );
    }
    let (fin, fout) = (after.get("frames_in"), after.get("frames_out"));
    let rx_wraps = check_wraps(http, &after, "rx", fin, expect.ring);
    let tx_wraps = check_wraps(http, &after, "tx", fout, expect.ring);
    note(
        test,
        format_args!(
            "since boot: frames in/out {fin}/{fout}, rx/tx wraps {rx_wraps}/{tx_wraps}, \
             interrupts_net {} (ignored {}), timer_recoveries {}, device_resets {}, \
             tx_full_events {}, rx_dropped {}; probes: {} over {probed_for:.0?}, \
             median {:.1?}, max {:.1?}, failures {:?}",
            after.get("interrupts_net"),
            counter(http, &after, "interrupts_ignored"),
            after.get("timer_recoveries"),
            after.get("device_resets"),
            after.get("tx_full_events"),
            after.get("rx_dropped"),
            probes.latencies.len(),
            probes.median(),
            probes.max(),
            probes.failures
        ),
    );

    wrk.check_clean(http, "wrk under the fault");
    if !probes.failures.is_empty() {
        http.fail(format_args!(
            "/health probes failed or took over {HEALTH_LIMIT:?}: {:?}",
            probes.failures
        ));
    }
    let expected_probes = probed_for.as_secs().saturating_sub(2);
    if (probes.latencies.len() as u64) < expected_probes {
        http.fail(format_args!(
            "only {} probes answered in {probed_for:.0?}",
            probes.latencies.len()
        ));
    }
    for name in ["status_4xx", "status_5xx", "device_resets"] {
        if d(name) != 0 {
            http.fail(format_args!("{name} grew by {}: {}", d(name), after.text));
        }
    }
    if !expect.timer_recoveries.contains(&d("timer_recoveries")) {
        http.fail(format_args!(
            "timer_recoveries grew by {}, expected {:?}: {}",
            d("timer_recoveries"),
            expect.timer_recoveries,
            after.text
        ));
    }
    let (net, ignored) = (
        after.get("interrupts_net"),
        counter(http, &after, "interrupts_ignored"),
    );
    match expect.ignored_every {
        Some(n) if net == 0 || ignored.abs_diff(net / n) > 1 => http.fail(format_args!(
            "interrupts_ignored {ignored} is not interrupts_net {net} / {n}: {}",
            after.text
        )),
        None if ignored != 0 => http.fail(format_args!(
            "interrupts_ignored is {ignored} without fault=drop-irq: {}",
            after.text
        )),
        _ => {}
    }
    if expect.no_net_interrupts && net != 0 {
        http.fail(format_args!(
            "interrupts_net is {net} with the NIC interrupt never routed"
        ));
    }
    if !expect.no_net_interrupts && d("interrupts_net") == 0 {
        http.fail(format_args!(
            "no NIC interrupt during the load: {}",
            after.text
        ));
    }
    if expect.wraps && (rx_wraps == 0 || tx_wraps == 0) {
        http.fail(format_args!(
            "rx/tx wraps {rx_wraps}/{tx_wraps} after {fin}/{fout} frames: {}",
            after.text
        ));
    }
    let last = download_now(http.addr(), 1, Duration::from_secs(30));
    if last.outcome != Outcome::Complete {
        http.fail(format_args!("the last download: {:?}", last.outcome));
    }
    let QmpGuest { http, .. } = g;
    http.finish();
}

/// The control: without a fault, the same load leaves `timer_recoveries`
/// nearly still, so its growth in the tests below is the fault's doing.
#[test]
fn no_fault_control_under_load() {
    fault_under_load(
        "control",
        &[],
        Expect {
            serial: &["net: virtio-net rings of 256 entries"],
            ring: 256,
            timer_recoveries: 0..RECOVERIES_WITHOUT_FAULT,
            quiet_recoveries: 0..QUIET_WITHOUT_FAULT,
            min_recoveries: 0,
            ignored_every: None,
            no_net_interrupts: false,
            wraps: false,
        },
    );
}

#[test]
fn drop_every_3rd_irq_under_load() {
    fault_under_load(
        "drop-irq",
        &["fault=drop-irq:3"],
        Expect {
            serial: &[
                "net: fault=drop-irq:3",
                "net: virtio-net rings of 256 entries",
            ],
            ring: 256,
            timer_recoveries: 0..u64::MAX,
            quiet_recoveries: 0..u64::MAX,
            min_recoveries: RECOVERIES_DROP_IRQ,
            ignored_every: Some(3),
            no_net_interrupts: false,
            wraps: false,
        },
    );
}

#[test]
fn no_irq_under_load() {
    fault_under_load(
        "no-irq",
        &["fault=no-irq"],
        Expect {
            serial: &["net: fault=no-irq", "net: virtio-net rings of 256 entries"],
            ring: 256,
            timer_recoveries: RECOVERIES_NO_IRQ..u64::MAX,
            quiet_recoveries: QUIET_REQUESTS / 2..u64::MAX,
            min_recoveries: 0,
            ignored_every: None,
            no_net_interrupts: true,
            wraps: false,
        },
    );
}

#[test]
fn queue_size_16_under_load() {
    fault_under_load(
        "queue16",
        &["queue_size=16"],
        Expect {
            serial: &["net: virtio-net rings of 16 entries"],
            ring: 16,
            timer_recoveries: 0..u64::MAX,
            quiet_recoveries: 0..QUIET_WITHOUT_FAULT,
            min_recoveries: 0,
            ignored_every: None,
            no_net_interrupts: false,
            wraps: true,
        },
    );
}

#[test]
fn queue_size_16_no_irq_under_load() {
    fault_under_load(
        "queue16-no-irq",
        &["queue_size=16", "fault=no-irq"],
        Expect {
            serial: &["net: fault=no-irq", "net: virtio-net rings of 16 entries"],
            ring: 16,
            timer_recoveries: RECOVERIES_NO_IRQ..u64::MAX,
            quiet_recoveries: QUIET_REQUESTS / 2..u64::MAX,
            min_recoveries: 0,
            ignored_every: None,
            no_net_interrupts: true,
            wraps: true,
        },
    );
}
