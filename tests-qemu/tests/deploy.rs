//! `deploy/` against real tools: the units, the settings file, the
//! health check, `install.sh` and the examples.
//!
//! | test | checks |
//! |------|--------|
//! | `verify::units_pass_systemd_analyze_verify` | every unit (and the tap drop-in) passes `systemd-analyze verify` without a word of output; the services stay under an exposure of 4.0 in `systemd-analyze security`; a deliberately broken unit does not pass (the check can fail) |
//! | `agree::units_settings_and_launcher_agree` | single and template units differ only where an instance must; the tap drop-in's command line differs from the service's only in the network; the service has every device and flag of the launcher (`boot_image::qemu_args`); the settings file reads the same to systemd and to the shell |
//! | `service::service_command_line_serves_health` | `unikernel.service`'s `ExecStart` with `unikernel.env`'s values boots a freshly built image, answers `/health`, takes its guest config (doubled commas), has QMP where the unit says, and ends on SIGTERM within `TimeoutStopSec` |
//! | `service::service_command_line_ends_qemu_on_a_guest_fault` | the same command line with `fault=panic` ends QEMU with status 3, so `Restart=always` has something to restart |
//! | `health::health_check_live_paused_and_absent` | `unikernel-health` against that guest: live (no restart), paused with QMP `stop` (one failure, then a restart through the `systemctl` recorder), a new run of the service (count starts again), not active (nothing counted), resumed, and no guest at all |
//! | `health::health_check_judges_answers` | 503, a 200 that is not `ok`, a failed restart, bad usage |
//! | `install::install_sh_into_a_temporary_root` | install, second run, kept settings, upgrade, roll back, instances, uninstall, purge, with every system-changing command a recorder |
//! | `install::install_sh_refuses_what_it_should` | `--root` without recorders, not an ELF, bad instance, misplaced `--purge`, nothing to roll back |
//! | `proxy::caddyfile_balances_and_skips_a_paused_instance` | Caddy with `deploy/Caddyfile` over two guests: TLS, both used, a paused one left out, back after `cont` |
//! | `tap::tap_drop_in_serves_in_a_network_namespace` | `tap-networking.conf`'s commands and command line in a network namespace: the guest answers on 10.0.3.2, the health check with `HEALTH_URL` passes, the tap is removed after |
//!
//! A tool that is missing (`systemd-analyze`, `caddy`) is installed with
//! apt-get first; only if that fails is its test skipped, with the reason
//! printed. Guests are started from the unit's own command line, on free
//! ports, and killed by PID when a test ends.

#[path = "deploy/agree.rs"]
mod agree;
#[path = "deploy/health.rs"]
mod health;
#[path = "deploy/install.rs"]
mod install;
#[path = "deploy/proxy.rs"]
mod proxy;
#[path = "deploy/service.rs"]
mod service;
#[path = "deploy/tap.rs"]
mod tap;
#[path = "deploy/verify.rs"]
mod verify;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use boot_image::{Accel, QemuConfig};
use tests_qemu::deploy::{
    INSTALLED_BUNDLE, INSTALLED_HEALTH, INSTALLED_IMAGE, KillOnDrop, RunOutput, STOP_TIMEOUT,
    TempDir, UnitFile, UnitGuest, config_warnings, deploy_dir, deploy_file, expand_command,
    flag_values, parse_env_file, qemu_options, run_bounded, settings, stop_child, unit_argv,
    write_script,
};
use tests_qemu::http::free_port;
use tests_qemu::note;
use tests_qemu::qmp::Qmp;

const UNITS: &[&str] = &[
    "unikernel.service",
    "unikernel@.service",
    "unikernel-health.service",
    "unikernel-health.timer",
    "unikernel-health@.service",
    "unikernel-health@.timer",
];
/// What `systemd-analyze verify` is asked to load (templates as an instance).
const VERIFY: &[&str] = &[
    "unikernel.service",
    "unikernel@test.service",
    "unikernel-health.service",
    "unikernel-health.timer",
    "unikernel-health@test.service",
    "unikernel-health@test.timer",
];
/// `systemd-analyze security` exposure ceiling (tenths): 4.0, "OK".
const EXPOSURE_THRESHOLD: u32 = 40;
/// Bound on one `systemd-analyze`, `install.sh` or health-check run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `apt-get install` of a missing tool.
const APT_TIMEOUT: Duration = Duration::from_secs(600);

// --- shared helpers ------------------------------------------------------------

fn image_copy(scratch: &TempDir) -> PathBuf {
    // A private copy: other builds may rewrite target/image while QEMU reads it.
    let built = &tests_qemu::image().image;
    let copy = scratch.join("unikernel.elf");
    fs::copy(built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    // What install.sh installs without a bundle: the units' -initrd, empty.
    fs::write(scratch.join("site.bundle"), b"").expect("writing an empty site.bundle");
    copy
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `program` on PATH, installing `package` with apt-get if it is not; `Err`
/// with the reason if that fails.
fn ensure_tool(test: &str, program: &str, package: &str) -> Result<(), String> {
    if have(program) {
        return Ok(());
    }
    note(
        test,
        format_args!("{program} missing: apt-get install -y {package}"),
    );
    let scratch = TempDir::new("apt");
    let out = run_bounded(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        scratch.path(),
        APT_TIMEOUT,
    );
    if have(program) {
        Ok(())
    } else {
        Err(format!(
            "{program} is missing and `apt-get install {package}` did not provide it: {}",
            out.text()
        ))
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
