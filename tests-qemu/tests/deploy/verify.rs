//! `systemd-analyze verify` and `security` over the units.

use super::*;

/// Copies the units into `dir`, with the health check's installed path
/// replaced by the repository's script (verify insists that ExecStart's
/// program exists and is executable; QEMU is found on PATH as on a server).
fn units_for_verify(dir: &Path) {
    let health = deploy_dir().join("unikernel-health");
    assert_eq!(
        mode_of(&health) & 0o111,
        0o111,
        "deploy/unikernel-health is not executable"
    );
    for unit in UNITS {
        let text = deploy_file(unit).replace(INSTALLED_HEALTH, &health.to_string_lossy());
        fs::write(dir.join(unit), text).expect("writing a unit copy");
    }
}

fn systemd_analyze(dir: &Path, args: &[&str]) -> RunOutput {
    run_bounded(
        Command::new("systemd-analyze").args(args).current_dir(dir),
        dir,
        TOOL_TIMEOUT,
    )
}

/// `systemd-analyze verify` must succeed and say nothing (it only warns,
/// with status 0, about unknown keys and bad values).
fn verify_clean(dir: &Path, name: &str) -> Result<(), String> {
    let out = systemd_analyze(dir, &["verify", "--man=no", name]);
    if out.status.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify {name}: {}", out.text()))
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let test = "verify";
    if let Err(reason) = ensure_tool(test, "systemd-analyze", "systemd") {
        note(test, format_args!("SKIPPED: {reason}"));
        return;
    }
    let start = Instant::now();
    let scratch = TempDir::new(test);
    units_for_verify(scratch.path());
    note(
        test,
        format_args!(
            "verifying copies in {} with {INSTALLED_HEALTH} replaced by deploy/unikernel-health",
            scratch.path().display()
        ),
    );
    let mut failures = Vec::new();
    for name in VERIFY {
        if let Err(e) = verify_clean(scratch.path(), name) {
            failures.push(e);
        }
    }

    // The tap drop-in, loaded the way systemd loads it: next to its unit.
    let with_drop_in = scratch.join("with-tap");
    fs::create_dir_all(with_drop_in.join("unikernel.service.d")).unwrap();
    units_for_verify(&with_drop_in);
    fs::copy(
        deploy_dir().join("tap-networking.conf"),
        with_drop_in.join("unikernel.service.d/tap.conf"),
    )
    .unwrap();
    if let Err(e) = verify_clean(&with_drop_in, "unikernel.service") {
        failures.push(format!("with tap-networking.conf as a drop-in: {e}"));
    }

    // The check itself must be able to fail: an unknown key passes with
    // status 0 and a warning, which verify_clean rejects.
    let broken = deploy_file("unikernel.service")
        .replace("Restart=always", "Restart=always\nRestartSecs=2s");
    fs::write(scratch.join("broken.service"), broken).unwrap();
    assert!(
        verify_clean(scratch.path(), "broken.service").is_err(),
        "a unit with a misspelt key passed the verify check: the check cannot fail"
    );

    for name in [
        "unikernel.service",
        "unikernel@test.service",
        "unikernel-health.service",
        "unikernel-health@test.service",
    ] {
        let threshold = format!("--threshold={EXPOSURE_THRESHOLD}");
        let out = systemd_analyze(
            scratch.path(),
            &["security", "--offline=yes", &threshold, "--no-pager", name],
        );
        let level = out
            .stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("(no overall exposure line)")
            .trim()
            .to_string();
        note(test, format_args!("{level}"));
        if !out.status.success() {
            failures.push(format!(
                "systemd-analyze security {name} above {EXPOSURE_THRESHOLD}: {level}\n{}",
                out.stdout
            ));
        }
    }

    // Dependencies verify does not check: every non-target unit named in a
    // dependency must be one of ours.
    for unit in UNITS {
        let file = UnitFile::load(unit);
        for (section, key) in [
            ("Unit", "After"),
            ("Unit", "Before"),
            ("Unit", "PartOf"),
            ("Unit", "Requires"),
            ("Unit", "Wants"),
            ("Unit", "BindsTo"),
            ("Install", "WantedBy"),
        ] {
            for value in file.values(section, key) {
                for dep in value.split_whitespace() {
                    let template = dep.replace("@%i.", "@.");
                    if !dep.ends_with(".target") && !UNITS.contains(&template.as_str()) {
                        failures.push(format!("{unit}: {key}={dep} is not a unit of deploy/"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    note(
        test,
        format_args!(
            "{} units, the drop-in and 4 security reviews clean in {:.1?}",
            VERIFY.len(),
            start.elapsed()
        ),
    );
}
