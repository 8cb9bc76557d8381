//! The service's own command line boots a guest, serves and ends as systemd expects.

use super::*;

#[test]
fn service_command_line_serves_health() {
    let test = "unit-cmdline";
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let default_config = settings("unikernel.env", &[])["UNIKERNEL_GUEST_CONFIG"].clone();
    // One more item after the defaults, separated the way the settings file
    // says (doubled comma): the guest must see both.
    let guest_config = format!("{default_config},,sockets=32");
    let mut guest = UnitGuest::start(
        test,
        &scratch,
        &image,
        &[("UNIKERNEL_GUEST_CONFIG", &guest_config)],
    );
    let healthy_after = guest.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);
    let serial = guest.serial();
    if !serial.contains("http: 32 sockets") || !config_warnings(&serial).is_empty() {
        guest.fail(format_args!(
            "the guest did not take UNIKERNEL_GUEST_CONFIG={guest_config:?} cleanly"
        ));
    }
    let stats = guest
        .admin_get("/api/stats.json", Duration::from_secs(10))
        .unwrap_or_else(|e| guest.fail(format_args!("/api/stats.json: {e}")));
    if stats.status != 200 {
        guest.fail(format_args!("/api/stats.json answered {}", stats.status));
    }
    let mut qmp = Qmp::connect(&guest.qmp_socket, Duration::from_secs(10))
        .unwrap_or_else(|e| guest.fail(format_args!("QMP where the unit puts it: {e}")));
    match qmp.query_status() {
        Ok(s) if s == "running" => {}
        other => guest.fail(format_args!("query-status: {other:?}")),
    }
    drop(qmp);

    // `systemctl stop` sends SIGTERM and kills after TimeoutStopSec.
    let unit = UnitFile::load("unikernel.service");
    assert_eq!(unit.get("Service", "TimeoutStopSec"), Some("10s"));
    let stop_start = Instant::now();
    let status = guest.stop();
    let stopped_after = stop_start.elapsed();
    match status {
        Some(s) if s.success() => {}
        other => guest.fail(format_args!(
            "QEMU did not exit cleanly within {STOP_TIMEOUT:?} of SIGTERM: {other:?}"
        )),
    }
    note(
        test,
        format_args!(
            "/health 200 after {healthy_after:.2?}, QMP running, SIGTERM -> exit 0 in {stopped_after:.2?}"
        ),
    );
}

#[test]
fn service_command_line_ends_qemu_on_a_guest_fault() {
    let test = "unit-fault";
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let default_config = settings("unikernel.env", &[])["UNIKERNEL_GUEST_CONFIG"].clone();
    let guest_config = format!("{default_config},,fault=panic");
    let mut guest = UnitGuest::start(
        test,
        &scratch,
        &image,
        &[("UNIKERNEL_GUEST_CONFIG", &guest_config)],
    );
    let limit = Duration::from_secs(90);
    let Some(status) = guest.wait_exit(limit) else {
        guest.fail(format_args!(
            "QEMU still running {limit:?} after an injected panic"
        ));
    };
    if status.code() != Some(boot_image::FAULT_EXIT_STATUS) || !guest.serial().contains("FATAL end")
    {
        guest.fail(format_args!(
            "expected exit status {} and a FATAL dump, got {status}",
            boot_image::FAULT_EXIT_STATUS
        ));
    }
    note(
        test,
        format_args!(
            "fault=panic: QEMU exited {status} {:.2?} after its start",
            guest.started.elapsed()
        ),
    );
}
