//! Boot the release image and read what the kernel says on serial.

use boot_image::is_banner;
use tests_qemu::{INIT_TIMEOUT, MEMORY_MIB, boot, config, expect_line, fail, note};

/// `unikernel v<version> booted: <N> MiB usable memory` -> N. Text after
/// `memory` (`, ...`) is tolerated.
fn usable_mib(banner: &str) -> Option<u32> {
    let rest = banner.split(" booted: ").nth(1)?;
    let (n, rest) = rest.split_once(" MiB usable memory")?;
    if !(rest.is_empty() || rest.starts_with(',') || rest.starts_with(' ')) {
        return None;
    }
    n.parse().ok()
}

#[test]
fn banner_reports_plausible_memory_and_init_completes() {
    let test = "banner";
    let guest = boot(test, &config(&[]));
    let banner = expect_line(&guest, "unikernel v", INIT_TIMEOUT);
    let banner = banner.trim_end();
    if !is_banner(banner) {
        fail(&guest, format_args!("{banner:?} is not a banner"));
    }
    let version = banner
        .strip_prefix("unikernel v")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("");
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        fail(&guest, format_args!("no version in banner {banner:?}"));
    }
    let Some(mib) = usable_mib(banner) else {
        fail(
            &guest,
            format_args!("banner {banner:?} is not `... booted: <N> MiB usable memory`"),
        );
    };
    note(
        test,
        format_args!(
            "accel={:?}: {mib} MiB usable of {MEMORY_MIB} MiB",
            guest.accel()
        ),
    );
    if !(MEMORY_MIB / 2..=MEMORY_MIB).contains(&mib) {
        fail(
            &guest,
            format_args!(
                "{mib} MiB usable with -m {MEMORY_MIB}: expected {}..={MEMORY_MIB}",
                MEMORY_MIB / 2
            ),
        );
    }
    expect_line(&guest, "kernel: init complete", INIT_TIMEOUT);
    let serial = guest.serial();
    if serial.contains("FATAL ") {
        fail(&guest, "a clean boot printed a FATAL line");
    }
    if serial.contains("unknown key") || serial.contains("bad value") {
        fail(
            &guest,
            "a boot without config items reported a bad config item",
        );
    }
}

#[test]
fn unknown_and_malformed_config_is_reported_and_boot_continues() {
    let test = "config";
    let unknown = "no_such_key_for_test";
    // Known keys with values they do not accept.
    let malformed = [("fault", "not-a-fault"), ("log", "loud")];
    let mut items = vec![format!("{unknown}=1")];
    items.extend(malformed.iter().map(|(k, v)| format!("{k}={v}")));
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let guest = boot(test, &config(&items));
    expect_line(&guest, "kernel: init complete", INIT_TIMEOUT);
    let serial = guest.serial();
    let config_lines: Vec<&str> = serial
        .lines()
        .filter(|l| l.starts_with("config: "))
        .collect();
    note(
        test,
        format_args!("accel={:?}: {config_lines:?}", guest.accel()),
    );
    if !config_lines.iter().any(|l| l.contains(unknown)) {
        fail(
            &guest,
            format_args!("no `config: ` line names the unknown key {unknown:?}"),
        );
    }
    for (key, value) in malformed {
        if !config_lines
            .iter()
            .any(|l| l.contains(key) && l.contains(value))
        {
            fail(
                &guest,
                format_args!("no `config: ` line names the malformed item {key}={value}"),
            );
        }
    }
    if serial.contains("FATAL ") {
        fail(&guest, "a malformed fault= value injected a fault");
    }
}

#[test]
fn banner_parser() {
    assert_eq!(
        usable_mib("unikernel v0.1.0 booted: 120 MiB usable memory"),
        Some(120)
    );
    assert_eq!(
        usable_mib("unikernel v0.1.0 booted: 125 MiB usable memory, cpu probe 12"),
        Some(125)
    );
    assert_eq!(usable_mib("unikernel v0.1.0 booted: lots"), None);
    assert_eq!(
        usable_mib("unikernel v0.1.0 booted: 12 MiB usable memoryx"),
        None
    );
}
