//! Network faults between the guest and its clients: a seeded
//! relay (`tests-qemu/relay/relay.py`) sits between QEMU's `-netdev dgram`
//! and a tap device in a network namespace each test creates; the clients run
//! in that namespace (see `tests_qemu::netfault`).
//!
//! | test                                  | faults                                        |
//! |---------------------------------------|-----------------------------------------------|
//! | `clean_relay_path`                    | none: the path itself, counters frame-exact    |
//! | `loss_delay_reorder_duplication`      | 5% loss, 20 ± 10 ms, 10% reorder, 1% dup       |
//! | `corruption_is_dropped_by_checksums`  | 2% of frames with one flipped byte             |
//! | `rate_limit_with_tail_drop`           | 4 Mbit/s, 8-frame queue, tail drop             |
//! | `same_seed_same_decisions`            | the relay's decisions replay from the seed     |
//!
//! The tests that boot a guest need root (namespaces, tap devices); without
//! root they print why and pass. Every seed is printed with the command that
//! replays it (`NETFAULT_SEED=<seed>`): the relay then makes the same decision
//! for the n-th frame of each direction. A failing test keeps the relay's
//! recording of the guest's side of the link in `target/netfault/`;
//! `tests-qemu/relay/tcp-gaps.py <pcap>` shows where the guest's TCP sender
//! went quiet and whether its retransmission timeout kept doubling. Figures
//! (download times, longest gaps, probe latencies, relay counts) go to stderr.

#[path = "netfault/checks.rs"]
mod checks;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tests_qemu::netfault::{
    FaultNet, Probe, Profile, RelayCounts, dry_run, first_difference, probe_summary, seed,
    site_file, skip,
};
use tests_qemu::note;

use checks::*;

/// The 1.5 MiB asset.
const LARGE: &str = "/large.bin";
/// `/health` probe period.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe slower than this is late.
const PROBE_LATE: Duration = Duration::from_secs(2);
/// A probe slower than this has failed (the service stalled).
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// Longest time a download may go without a byte. A loss that duplicate ACKs
/// cannot announce costs the guest's retransmission timeout (200 ms minimum,
/// doubling while the retransmission is lost too, reset by the next ACK of
/// new data; see kernel/vendor/smoltcp/PATCHES.md): 5 s allows four losses of
/// one segment in a row (0.2 + 0.4 + 0.8 + 1.6 s) with room for delay.
/// Without those patches gaps of 8-16 s are common under the loss profile.
const MAX_GAP: Duration = Duration::from_secs(5);
/// A download's read blocks this long at most (beyond the guest's 30 s
/// send-progress deadline, so the guest's own behaviour shows).
const READ_STALL: Duration = Duration::from_secs(45);
/// Parallel downloads under [`LOSSY_PROFILE`], and their time bound.
const DOWNLOADS: usize = 5;
const DOWNLOADS_DEADLINE: Duration = Duration::from_secs(120);
/// Decisions per direction the relay logs, compared with its dry run.
const LOGGED_DECISIONS: usize = 200;

/// A bad wide-area link: 5% loss, 20 ms ± 10 ms, 10% reorder, 1% duplication,
/// both ways.
const LOSSY_PROFILE: Profile = Profile {
    loss: 5.0,
    delay_ms: 20.0,
    jitter_ms: 10.0,
    dup: 1.0,
    reorder: 10.0,
    ..Profile::CLEAN
};

/// F1 baseline: the relay with no faults is a transparent link. `/health`,
/// the 1.5 MiB asset byte-exact, and the guest's frame counters equal the
/// relay's.
#[test]
fn clean_relay_path() {
    let test = "clean_relay_path";
    if skip(test) {
        return;
    }
    let seed = seed(test, 1);
    let mut net = FaultNet::start(test, Profile::CLEAN, seed, 0, &[]);
    let mut problems = Vec::new();
    match net.get("/health", Duration::from_secs(5), Duration::from_secs(5)) {
        Ok(h) if h.status == 200 && h.body == b"ok\n" => {}
        Ok(h) => problems.push(format!("/health: {} {:?}", h.status, h.body_text())),
        Err(e) => problems.push(format!("/health: {e}")),
    }
    let before = stats_now(&net);
    download_all(&net, 1, Duration::from_secs(60), &mut problems);
    let after = stats_now(&net);
    problems.extend(net.guest_problems());
    let counts = stop_relay(&mut net);
    for dir in [&counts.to_guest, &counts.to_host] {
        for name in [
            "lost",
            "corrupted",
            "duplicated",
            "reordered",
            "tail_dropped",
        ] {
            if dir.get(name) != 0 {
                problems.push(format!("clean relay: {name} = {}", dir.get(name)));
            }
        }
    }
    check_guest(&net, &before, &after, &counts, 3, 16, &mut problems);
    report(&net, &problems);
}

/// [`LOSSY_PROFILE`] both ways: 5 parallel downloads of the
/// 1.5 MiB asset byte-exact within 120 s, none going [`MAX_GAP`] without a
/// byte, `/health` probed every second on a keep-alive connection, no fault
/// dump, sane counters, no busy spin, and the relay's live decisions equal to
/// its dry run.
#[test]
fn loss_delay_reorder_duplication() {
    let test = "loss_delay_reorder_duplication";
    if skip(test) {
        return;
    }
    let seed = seed(test, 2);
    let mut net = FaultNet::start(test, LOSSY_PROFILE, seed, LOGGED_DECISIONS, &[]);
    let mut problems = Vec::new();
    let before = stats_now(&net);
    let prober = net.start_prober(PROBE_INTERVAL, PROBE_LIMIT);
    download_all(&net, DOWNLOADS, DOWNLOADS_DEADLINE, &mut problems);
    let probes = prober.finish();
    net.note(format_args!(
        "/health: {}",
        probe_summary(&probes, PROBE_LATE)
    ));
    check_probes(&probes, &mut problems);
    let after = stats_now(&net);
    problems.extend(net.guest_problems());
    let counts = stop_relay(&mut net);
    for (dir, c) in [("to guest", &counts.to_guest), ("to host", &counts.to_host)] {
        for name in ["lost", "reordered", "duplicated"] {
            if c.get(name) == 0 {
                problems.push(format!(
                    "relay {dir}: {name} = 0, the profile was not applied"
                ));
            }
        }
    }
    let ok_probes = probes.iter().filter(|p| p.result.is_ok()).count() as u64;
    let served = DOWNLOADS as u64 + ok_probes;
    check_guest(&net, &before, &after, &counts, served, 64, &mut problems);
    check_decisions(&net, &mut problems);
    report(&net, &problems);
}

/// F1 corruption: 2% of frames each way get one byte flipped inside the IPv4
/// packet. The checksums make both ends drop them: downloads stay byte-exact,
/// and the namespace's IP/TCP error counters account for every corrupted
/// frame towards the host, the guest's `rx_checksum_errors` for every one
/// towards the guest.
#[test]
fn corruption_is_dropped_by_checksums() {
    let test = "corruption_is_dropped_by_checksums";
    if skip(test) {
        return;
    }
    let seed = seed(test, 3);
    let profile = Profile {
        corrupt: 2.0,
        ..Profile::CLEAN
    };
    let mut net = FaultNet::start(test, profile, seed, 0, &[]);
    let mut problems = Vec::new();
    let host_before = net.host_counters();
    let before = stats_now(&net);
    download_all(&net, 3, DOWNLOADS_DEADLINE, &mut problems);
    let after = stats_now(&net);
    problems.extend(net.guest_problems());
    let counts = stop_relay(&mut net);
    let host_after = net.host_counters();
    let delta = |name: &str| {
        host_after
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(host_before.get(name).copied().unwrap_or(0))
    };
    // An IPv4 header with a bad checksum (or version, length) counts in
    // Ip.InHdrErrors; a TCP segment with a bad checksum in Tcp.InCsumErrors.
    let host_dropped = delta("Ip.InHdrErrors") + delta("Tcp.InCsumErrors");
    net.note(format_args!(
        "namespace: Ip.InHdrErrors +{} IpExt.InCsumErrors +{} Tcp.InCsumErrors +{}",
        delta("Ip.InHdrErrors"),
        delta("IpExt.InCsumErrors"),
        delta("Tcp.InCsumErrors"),
    ));
    let corrupted_to_host = counts.to_host.get("corrupted");
    if counts.to_guest.get("corrupted") == 0 || corrupted_to_host == 0 {
        problems.push("the relay corrupted no frame in one direction".into());
    }
    // Equal in almost every run; a frame corrupted in its last milliseconds can
    // still be in the namespace's queue when the counters are read, so allow a
    // small shortfall (never more drops than corruptions).
    let slack = (corrupted_to_host / 20).max(2);
    if host_dropped > corrupted_to_host || corrupted_to_host - host_dropped > slack {
        problems.push(format!(
            "the relay corrupted {corrupted_to_host} frames towards the host, the namespace dropped {host_dropped} for bad headers or checksums"
        ));
    }
    let moved: Vec<String> = after
        .iter()
        .filter(|(k, v)| {
            (k.contains("drop") || k.contains("error") || k.contains("reset"))
                && before.get(*k) != Some(v)
        })
        .map(|(k, v)| format!("{k} {} -> {v}", stat(&before, k)))
        .collect();
    net.note(format_args!(
        "guest: got {} corrupted frames; its drop/error counters that moved: {}",
        counts.to_guest.get("corrupted"),
        if moved.is_empty() {
            "none".to_string()
        } else {
            moved.join(", ")
        }
    ));
    // The same bound as the namespace's: `after` was read before the relay
    // stopped, so a frame corrupted since may not have reached the guest yet.
    let corrupted_to_guest = counts.to_guest.get("corrupted");
    let guest_dropped =
        stat(&after, "rx_checksum_errors").saturating_sub(stat(&before, "rx_checksum_errors"));
    let slack = (corrupted_to_guest / 20).max(2);
    if guest_dropped > corrupted_to_guest || corrupted_to_guest - guest_dropped > slack {
        problems.push(format!(
            "the relay corrupted {corrupted_to_guest} frames towards the guest, its rx_checksum_errors grew by {guest_dropped}"
        ));
    }
    check_guest(&net, &before, &after, &counts, 3, 32, &mut problems);
    report(&net, &problems);
}

/// F2 through the relay: a 4 Mbit/s link with an 8-frame queue each way (tail
/// drop), the bottleneck in front of the download direction. Two parallel
/// downloads byte-exact without a gap over [`MAX_GAP`], `/health` answering,
/// no busy spin while the guest waits for the link.
#[test]
fn rate_limit_with_tail_drop() {
    let test = "rate_limit_with_tail_drop";
    if skip(test) {
        return;
    }
    let seed = seed(test, 5);
    let profile = Profile {
        rate_kbit: 4000.0,
        limit: 8,
        ..Profile::CLEAN
    };
    let mut net = FaultNet::start(test, profile, seed, 0, &[]);
    let mut problems = Vec::new();
    let before = stats_now(&net);
    let prober = net.start_prober(PROBE_INTERVAL, PROBE_LIMIT);
    // 2 x 1.5 MiB at 4 Mbit/s is 6.3 s of link time.
    download_all(&net, 2, Duration::from_secs(60), &mut problems);
    let probes = prober.finish();
    net.note(format_args!(
        "/health: {}",
        probe_summary(&probes, PROBE_LATE)
    ));
    check_probes(&probes, &mut problems);
    let after = stats_now(&net);
    problems.extend(net.guest_problems());
    let counts = stop_relay(&mut net);
    let ok_probes = probes.iter().filter(|p| p.result.is_ok()).count() as u64;
    check_guest(
        &net,
        &before,
        &after,
        &counts,
        2 + ok_probes,
        32,
        &mut problems,
    );
    report(&net, &problems);
}

/// Replay: the relay's decisions are a function of the seed alone. Its dry
/// run prints the same first 50 decisions per direction for the same seed,
/// different ones for another seed, and over 20,000 frames the fault rates
/// match the profile. Needs no root.
#[test]
fn same_seed_same_decisions() {
    let test = "same_seed_same_decisions";
    let seed = seed(test, 4);
    let profile = Profile {
        corrupt: 2.0,
        ..LOSSY_PROFILE
    };
    let first = dry_run(seed, &profile, 50);
    let second = dry_run(seed, &profile, 50);
    assert_eq!(first.len(), 100, "50 decisions per direction: {first:?}");
    assert_eq!(first, second, "seed {seed}: two dry runs differ");
    let other = dry_run(seed ^ 1, &profile, 50);
    assert_ne!(first, other, "seeds {seed} and {} decide alike", seed ^ 1);
    note(
        test,
        format_args!(
            "seed {seed}: first decisions {:?}",
            &first[..3.min(first.len())]
        ),
    );

    // Rates over many frames, for a fixed seed (deterministic).
    const N: usize = 20_000;
    let lines = dry_run(20_240_601, &profile, N);
    for dir in ["to-guest", "to-host"] {
        let d: Vec<&String> = lines
            .iter()
            .filter(|l| l.split(' ').next() == Some(dir))
            .collect();
        assert_eq!(d.len(), N);
        let count = |word: &str| d.iter().filter(|l| l.contains(word)).count();
        let rate = |n: usize| 100.0 * n as f64 / N as f64;
        let (lose, reorder, dup, corrupt) = (
            count(" lose"),
            count(" reorder"),
            count(" dup"),
            count(" corrupt@"),
        );
        note(
            test,
            format_args!(
                "{dir}: lose {:.2}% reorder {:.2}% dup {:.2}% corrupt {:.2}% of {N}",
                rate(lose),
                rate(reorder),
                rate(dup),
                rate(corrupt)
            ),
        );
        // Within 4 standard deviations of the profile's percentages
        // (reorder, dup and corrupt are drawn only for frames not lost).
        for (name, got, p) in [
            ("lose", lose, profile.loss),
            (
                "reorder",
                reorder,
                profile.reorder * (1.0 - profile.loss / 100.0),
            ),
            ("dup", dup, profile.dup * (1.0 - profile.loss / 100.0)),
            (
                "corrupt",
                corrupt,
                profile.corrupt * (1.0 - profile.loss / 100.0),
            ),
        ] {
            let mean = N as f64 * p / 100.0;
            let sd = (mean * (1.0 - p / 100.0)).sqrt();
            assert!(
                (got as f64 - mean).abs() <= 4.0 * sd,
                "{dir} {name}: {got} of {N}, expected {mean:.0} ± {:.0}",
                4.0 * sd
            );
        }
        // Delays stay within delay ± jitter.
        for l in &d {
            if let Some(ms) = l
                .split(' ')
                .find_map(|w| w.strip_prefix("delay="))
                .and_then(|v| v.strip_suffix("ms"))
            {
                let ms: f64 = ms.parse().unwrap_or(f64::NAN);
                assert!(
                    (profile.delay_ms - profile.jitter_ms..=profile.delay_ms + profile.jitter_ms)
                        .contains(&ms),
                    "{l}"
                );
            }
        }
    }
}
