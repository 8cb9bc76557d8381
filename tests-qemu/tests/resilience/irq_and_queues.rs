//! Lost interrupts and small queues, under load.

use super::outage::{note_wrk, wrk_mixed};
use super::*;

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
