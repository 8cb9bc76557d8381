//! A main loop that stops making progress: spinning with
//! interrupts on is reported by the soft-lockup detector with the stuck RIP;
//! spinning with interrupts off is invisible to the guest, and the ib700
//! watchdog has the host reset it. Each also runs under wrk load.

use std::time::{Duration, Instant};
use tests_qemu::http::{Transport, boot_http};
use tests_qemu::resilience::{Wrk, mixed_lua};
use tests_qemu::{boot, config, expect_line, fail, image, note, symbolize};

/// Detector limit used by the test (the guest's default is 5 s).
const LOCKUP_MS: u64 = 2_000;
/// The guest's ib700 timeout (kernel/src/boot.rs WATCHDOG_S).
const WATCHDOG: Duration = Duration::from_secs(10);
const EXIT_LIMIT: Duration = Duration::from_secs(2);

#[test]
fn livelock_is_reported_with_the_stuck_rip_and_ends_the_guest() {
    let test = "livelock";
    let cfg = config(&["fault=livelock", &format!("lockup_ms={LOCKUP_MS}")]);
    let mut guest = boot(test, &cfg);
    let injected = expect_line(&guest, "fault: injecting Livelock", Duration::from_secs(30));
    let started = Instant::now();
    let report = expect_line(&guest, "FATAL soft-lockup", Duration::from_secs(30));
    let detected_after = started.elapsed();
    expect_line(&guest, "FATAL end", Duration::from_secs(5));
    let ended = Instant::now();
    let Some(exit) = guest.wait_exit(EXIT_LIMIT + Duration::from_secs(1)) else {
        fail(&guest, "QEMU still running after the soft-lockup report");
    };
    note(
        test,
        format_args!(
            "{injected:?} -> {report:?} after {detected_after:.2?}; QEMU exited {exit} {:.0?} later",
            ended.elapsed()
        ),
    );
    if exit.code() != Some(boot_image::FAULT_EXIT_STATUS) {
        fail(
            &guest,
            format_args!(
                "exit status {exit}, expected {}",
                boot_image::FAULT_EXIT_STATUS
            ),
        );
    }
    // Reported after the limit, and not long after (ticks are 10 ms).
    let limit = Duration::from_millis(LOCKUP_MS);
    if detected_after + Duration::from_millis(200) < limit || detected_after > limit * 3 {
        fail(
            &guest,
            format_args!("reported after {detected_after:?}, limit {limit:?}"),
        );
    }
    let serial = guest.serial();
    let symbols = symbolize::run(&image().kernel_elf, &serial)
        .unwrap_or_else(|e| fail(&guest, format_args!("symbolize: {e}")));
    let rip = symbols.iter().find(|s| s.label == "rip");
    match rip {
        Some(rip) if rip.is_in("fault_inject::livelock") => {}
        other => fail(
            &guest,
            format_args!("rip symbolizes to {other:?}, not fault_inject::livelock"),
        ),
    }
}

#[test]
fn hang_with_interrupts_off_is_reset_by_the_watchdog() {
    let test = "hang";
    let cfg = config(&["fault=hang"]);
    let mut guest = boot(test, &cfg);
    expect_line(&guest, "fault: injecting Hang", Duration::from_secs(30));
    let started = Instant::now();
    let Some(exit) = guest.wait_exit(WATCHDOG + Duration::from_secs(10)) else {
        fail(
            &guest,
            "QEMU still running: the watchdog did not reset the hung guest",
        );
    };
    let after = started.elapsed();
    note(
        test,
        format_args!("watchdog reset after {after:.2?}, QEMU exited {exit}"),
    );
    // -no-reboot turns the watchdog's reset into a normal exit.
    if exit.code() != Some(0) {
        fail(
            &guest,
            format_args!("exit status {exit}, expected 0 (reset with -no-reboot)"),
        );
    }
    if after + Duration::from_secs(1) < WATCHDOG {
        fail(
            &guest,
            format_args!("ended after {after:?}, before the {WATCHDOG:?} watchdog"),
        );
    }
    if guest.serial().contains("FATAL") {
        fail(
            &guest,
            "the hang must end by watchdog reset, not by an in-guest report",
        );
    }
}

/// Delay before the main-loop fault fires, so wrk is running by then.
const FAULT_DELAY_MS: u64 = 5_000;
const LOAD_SECONDS: u64 = 12;

/// Boots a serving guest whose main loop faults after [`FAULT_DELAY_MS`], and
/// puts it under wrk load (mixed routes) until then.
fn under_load(test: &str, fault: &str) -> (tests_qemu::http::HttpGuest, Wrk, Instant) {
    let delay = format!("fault_delay_ms={FAULT_DELAY_MS}");
    let lockup = format!("lockup_ms={LOCKUP_MS}");
    let booted = Instant::now();
    let g = boot_http(test, Transport::Legacy, &[fault, &delay, &lockup]);
    let url = format!("http://127.0.0.1:{}/", g.port);
    let wrk = Wrk::spawn(&url, 8, LOAD_SECONDS, 10, Some(mixed_lua()));
    (g, wrk, booted)
}

#[test]
fn livelock_under_load_is_reported_with_the_stuck_rip() {
    let test = "livelock-load";
    let (mut g, wrk, _booted) = under_load(test, "fault=livelock");
    let injected = expect_line(
        &g.guest,
        "fault: injecting Livelock",
        Duration::from_secs(30),
    );
    let started = Instant::now();
    expect_line(&g.guest, "FATAL soft-lockup", Duration::from_secs(30));
    let detected_after = started.elapsed();
    expect_line(&g.guest, "FATAL end", Duration::from_secs(5));
    let exit = g.guest.wait_exit(EXIT_LIMIT + Duration::from_secs(1));
    // wrk loses its server mid-run; its figures only show the load was real.
    let report = wrk.wait(Duration::from_secs(LOAD_SECONDS + 10));
    note(
        test,
        format_args!(
            "{injected:?}; reported after {detected_after:.2?}; exit {exit:?}; wrk {:?}",
            report.as_ref().map(|r| r.requests)
        ),
    );
    let Some(exit) = exit else {
        fail(&g.guest, "QEMU still running after the report")
    };
    if exit.code() != Some(boot_image::FAULT_EXIT_STATUS) {
        fail(&g.guest, format_args!("exit status {exit}"));
    }
    if !matches!(&report, Ok(r) if r.requests > 0) {
        fail(
            &g.guest,
            format_args!("no load was served before the fault: {report:?}"),
        );
    }
    let symbols = symbolize::run(&image().kernel_elf, &g.guest.serial())
        .unwrap_or_else(|e| fail(&g.guest, format_args!("symbolize: {e}")));
    match symbols.iter().find(|s| s.label == "rip") {
        Some(rip) if rip.is_in("fault_inject::livelock") => {}
        other => fail(&g.guest, format_args!("rip symbolizes to {other:?}")),
    }
}

#[test]
fn hang_under_load_is_reset_by_the_watchdog() {
    let test = "hang-load";
    let (mut g, wrk, _booted) = under_load(test, "fault=hang");
    expect_line(&g.guest, "fault: injecting Hang", Duration::from_secs(30));
    let started = Instant::now();
    let exit = g.guest.wait_exit(WATCHDOG + Duration::from_secs(10));
    let after = started.elapsed();
    let report = wrk.wait(Duration::from_secs(LOAD_SECONDS + 10));
    note(
        test,
        format_args!(
            "watchdog reset after {after:.2?}, exit {exit:?}; wrk {:?}",
            report.as_ref().map(|r| r.requests)
        ),
    );
    match exit {
        Some(exit) if exit.code() == Some(0) => {}
        other => fail(
            &g.guest,
            format_args!("expected a watchdog reset (exit 0), got {other:?}"),
        ),
    }
    if after + Duration::from_secs(1) < WATCHDOG {
        fail(
            &g.guest,
            format_args!("ended after {after:?}, before the watchdog"),
        );
    }
    if !matches!(&report, Ok(r) if r.requests > 0) {
        fail(
            &g.guest,
            format_args!("no load was served before the fault: {report:?}"),
        );
    }
}
