//! Outages from outside (QMP `set_link` off, `stop`/`cont`) in the middle of downloads, idle and under load.

use super::*;

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

pub(crate) fn note_wrk(http: &HttpGuest, what: &str, r: &WrkReport) {
    note(
        &http.test,
        format_args!(
            "{what}: {} requests in {:.1?} ({:.0} req/s), socket errors {:?}, non-2xx {}",
            r.requests, r.elapsed, r.per_second, r.socket_errors, r.non_2xx
        ),
    );
}

pub(crate) fn wrk_mixed(http: &HttpGuest, seconds: u64) -> Wrk {
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
