//! What every network-fault test checks after its traffic: the guest's
//! counters against the relay's, the downloads, the probes, and no spinning.

use super::*;

/// `name` from the guest's stats, 0 if absent (recorded as a problem by
/// [`check_stats`]).
pub(crate) fn stat(stats: &BTreeMap<String, u64>, name: &str) -> u64 {
    stats.get(name).copied().unwrap_or(0)
}

/// The guest's counters against the relay's. The guest counts every frame the
/// relay delivered to it and every frame it sent (which the relay received);
/// the frames of the stats request itself after the snapshot differ by a few.
pub(crate) fn check_frames(
    stats: &BTreeMap<String, u64>,
    counts: &RelayCounts,
    slack: u64,
    problems: &mut Vec<String>,
) {
    let pairs = [
        (
            "frames_in",
            stat(stats, "frames_in"),
            "to-guest frames_out",
            counts.to_guest.get("frames_out"),
        ),
        (
            "frames_out",
            stat(stats, "frames_out"),
            "to-host frames_in",
            counts.to_host.get("frames_in"),
        ),
    ];
    for (name, guest, relay_name, relay) in pairs {
        if guest > relay || relay - guest > slack {
            problems.push(format!(
                "guest {name} = {guest} but relay {relay_name} = {relay} (allowed: up to {slack} more at the relay)"
            ));
        }
    }
}

/// Counters every run must show: no 5xx, no aborted response, no device reset.
pub(crate) fn check_stats(
    stats: &BTreeMap<String, u64>,
    min_requests: u64,
    problems: &mut Vec<String>,
) {
    for name in [
        "requests_total",
        "status_2xx",
        "frames_in",
        "frames_out",
        "rx_dropped",
        "rx_checksum_errors",
    ] {
        if !stats.contains_key(name) {
            problems.push(format!("/api/stats.json has no {name:?}"));
        }
    }
    for (name, want) in [
        ("status_5xx", 0),
        ("timeouts_send", 0),
        ("device_resets", 0),
    ] {
        let got = stat(stats, name);
        if got != want {
            problems.push(format!("{name} = {got}, expected {want}"));
        }
    }
    let requests = stat(stats, "requests_total");
    if requests < min_requests || stat(stats, "status_2xx") < min_requests {
        problems.push(format!(
            "requests_total = {requests}, status_2xx = {}: expected at least {min_requests}",
            stat(stats, "status_2xx")
        ));
    }
}

/// The decisions the relay logged during the run must be the first lines of
/// its dry run with the same seed, direction by direction.
pub(crate) fn check_decisions(net: &FaultNet, problems: &mut Vec<String>) {
    let logged = net.relay.logged_decisions();
    let dry = dry_run(net.seed, &net.profile, LOGGED_DECISIONS);
    for dir in ["to-guest ", "to-host "] {
        let live: Vec<&String> = logged.iter().filter(|l| l.starts_with(dir)).collect();
        let want: Vec<&String> = dry.iter().filter(|l| l.starts_with(dir)).collect();
        if live.is_empty() || live.len() > want.len() || live[..] != want[..live.len()] {
            let at = live.iter().zip(&want).position(|(a, b)| a != b);
            problems.push(format!(
                "relay {dir}decisions ({} logged) differ from the dry run of seed {} at {at:?}",
                live.len(),
                net.seed
            ));
        }
    }
}

/// `n` parallel downloads of [`LARGE`], each checked byte-exact and for
/// gaps over [`MAX_GAP`]; returns how long they took together.
pub(crate) fn download_all(
    net: &FaultNet,
    n: usize,
    deadline: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    let want = site_file("large.bin");
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| net.spawn_get(LARGE, deadline, READ_STALL))
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| net.fail("a download thread panicked"))
        })
        .collect();
    let total = start.elapsed();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(d) => {
                net.note(format_args!(
                    "download {i}: {} bytes in {:.1?}, longest gap {:.2?}",
                    d.body.len(),
                    d.elapsed,
                    d.max_gap
                ));
                if d.status != 200 {
                    problems.push(format!("download {i}: status {}", d.status));
                }
                if let Some(at) = first_difference(&d.body, &want) {
                    problems.push(format!(
                        "download {i}: {} bytes, differs from kernel/site/large.bin ({} bytes) at byte {at}",
                        d.body.len(),
                        want.len()
                    ));
                }
                if d.max_gap > MAX_GAP {
                    problems.push(format!(
                        "download {i}: no byte for {:.2?} (limit {MAX_GAP:?})",
                        d.max_gap
                    ));
                }
            }
            Err(e) => {
                net.note(format_args!("download {i}: FAILED {e}"));
                problems.push(format!("download {i}: {e}"));
            }
        }
    }
    net.note(format_args!(
        "{n} parallel download(s) of {LARGE} took {total:.1?} (limit {deadline:?})"
    ));
    if total > deadline {
        problems.push(format!("downloads took {total:.1?}, limit {deadline:?}"));
    }
    total
}

/// No busy spin: the main loop runs once per wake-up (interrupt, tick) and
/// a few more times per frame while it has work, so between two stats
/// snapshots its iterations stay within a small multiple of interrupts plus
/// frames. A spinning loop makes millions a second.
pub(crate) fn check_no_spin(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    net: &FaultNet,
    problems: &mut Vec<String>,
) {
    let d = |name: &str| stat(after, name).saturating_sub(stat(before, name));
    let events = d("interrupts_net") + d("interrupts_timer") + d("frames_in") + d("frames_out");
    let iterations = d("loop_iterations");
    let seconds = d("uptime_ms") as f64 / 1000.0;
    net.note(format_args!(
        "guest main loop: {iterations} iterations in {seconds:.1} s for {events} interrupts, ticks and frames"
    ));
    if iterations > 4 * events + 1000 {
        problems.push(format!(
            "main loop ran {iterations} times in {seconds:.1} s for only {events} interrupts, ticks and frames: busy spin"
        ));
    }
}

pub(crate) fn report(net: &FaultNet, problems: &[String]) {
    if !problems.is_empty() {
        net.fail(format_args!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
}

/// Stops the relay and returns its counts, printed.
pub(crate) fn stop_relay(net: &mut FaultNet) -> RelayCounts {
    let counts = net
        .relay
        .stop()
        .unwrap_or_else(|e| net.fail(format_args!("relay: {e}")));
    net.note(format_args!("relay {}", counts.summary()));
    counts
}

/// Stats snapshot or a failed test.
pub(crate) fn stats_now(net: &FaultNet) -> BTreeMap<String, u64> {
    net.stats()
        .unwrap_or_else(|e| net.fail(format_args!("stats: {e}")))
}

pub(crate) fn note_guest(net: &FaultNet, stats: &BTreeMap<String, u64>) {
    net.note(format_args!(
        "guest: requests {} 2xx {} accepted {} active {} timeouts_send {} frames_in {} frames_out {} rx_dropped {} tx_full_events {}",
        stat(stats, "requests_total"),
        stat(stats, "status_2xx"),
        stat(stats, "connections_accepted"),
        stat(stats, "connections_active"),
        stat(stats, "timeouts_send"),
        stat(stats, "frames_in"),
        stat(stats, "frames_out"),
        stat(stats, "rx_dropped"),
        stat(stats, "tx_full_events"),
    ));
}

/// Frames the relay could not hand to QEMU (while it started, or restarted
/// under TCG) never reached the guest: allowed on top of `slack`.
pub(crate) fn frame_slack(counts: &RelayCounts, slack: u64) -> u64 {
    slack + counts.send_errors.values().sum::<u64>()
}

/// The checks every relay test ends with: note the guest's counters, then
/// sane stats (at least `min_requests` served), no busy spin between the two
/// snapshots, and the guest's frame counts equal to the relay's within
/// [`frame_slack`]`(counts, slack)`.
pub(crate) fn check_guest(
    net: &FaultNet,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    counts: &RelayCounts,
    min_requests: u64,
    slack: u64,
    problems: &mut Vec<String>,
) {
    note_guest(net, after);
    check_stats(after, min_requests, problems);
    check_no_spin(before, after, net, problems);
    check_frames(after, counts, frame_slack(counts, slack), problems);
}

/// Every probe answered within [`PROBE_LIMIT`]; late ones (over
/// [`PROBE_LATE`]) at most 1 + 5% of them and never two in a row. A late
/// probe needs two losses on its own exchange (a response lost twice costs the
/// guest's retransmission timeout, 1 s + 2 s); measured under
/// [`LOSSY_PROFILE`]: 0 to 5% late per run, 1.5% on average. Two late probes in a row
/// would be the service stalling, not bad luck.
pub(crate) fn check_probes(probes: &[Probe], problems: &mut Vec<String>) {
    if probes.is_empty() {
        problems.push("no /health probe ran".into());
    }
    for p in probes {
        if let Err(e) = &p.result {
            problems.push(format!("/health probe at {:.1?}: {e}", p.at));
        }
    }
    let is_late = |p: &Probe| matches!(p.result, Ok(d) if d > PROBE_LATE);
    let late: Vec<String> = probes
        .iter()
        .filter(|p| is_late(p))
        .map(|p| {
            format!(
                "{:.1?} at {:.0?}",
                p.result.clone().unwrap_or_default(),
                p.at
            )
        })
        .collect();
    let allowed = 1 + probes.len() / 20;
    if late.len() > allowed {
        problems.push(format!(
            "{} /health probes over {PROBE_LATE:?} (allowed {allowed}): {}",
            late.len(),
            late.join(", ")
        ));
    }
    if let Some(pair) = probes.windows(2).find(|w| is_late(&w[0]) && is_late(&w[1])) {
        problems.push(format!(
            "two /health probes in a row over {PROBE_LATE:?}, at {:.0?} and {:.0?}",
            pair[0].at, pair[1].at
        ));
    }
}
