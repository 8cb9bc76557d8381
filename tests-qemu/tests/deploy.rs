//! `deploy/` against real tools (issue 5): the units, the settings file, the
//! health check, `install.sh` and the examples.
//!
//! | test | checks |
//! |------|--------|
//! | `units_pass_systemd_analyze_verify` | every unit (and the tap drop-in) passes `systemd-analyze verify` without a word of output; the services stay under an exposure of 4.0 in `systemd-analyze security`; a deliberately broken unit does not pass (the check can fail) |
//! | `units_settings_and_launcher_agree` | single and template units differ only where an instance must; the tap drop-in's command line differs from the service's only in the network; the service has every device and flag of the launcher (`boot_image::qemu_args`); the settings file reads the same to systemd and to the shell |
//! | `service_command_line_serves_health` | `unikernel.service`'s `ExecStart` with `unikernel.env`'s values boots a freshly built image, answers `/health`, takes its guest config (doubled commas), has QMP where the unit says, and ends on SIGTERM within `TimeoutStopSec` |
//! | `service_command_line_ends_qemu_on_a_guest_fault` | the same command line with `fault=panic` ends QEMU with status 3, so `Restart=always` has something to restart |
//! | `health_check_live_paused_and_absent` | `unikernel-health` against that guest: live (no restart), paused with QMP `stop` (one failure, then a restart through the `systemctl` recorder), a new run of the service (count starts again), not active (nothing counted), resumed, and no guest at all |
//! | `health_check_judges_answers` | 503, a 200 that is not `ok`, a failed restart, bad usage |
//! | `install_sh_into_a_temporary_root` | install, second run, kept settings, upgrade, roll back, instances, uninstall, purge, with every system-changing command a recorder |
//! | `install_sh_refuses_what_it_should` | `--root` without recorders, not an ELF, bad instance, misplaced `--purge`, nothing to roll back |
//! | `caddyfile_balances_and_skips_a_paused_instance` | Caddy with `deploy/Caddyfile` over two guests: TLS, both used, a paused one left out, back after `cont` |
//! | `tap_drop_in_serves_in_a_network_namespace` | `tap-networking.conf`'s commands and command line in a network namespace: the guest answers on 10.0.3.2, the health check with `HEALTH_URL` passes, the tap is removed after |
//!
//! A tool that is missing (`systemd-analyze`, `caddy`) is installed with
//! apt-get first; only if that fails is its test skipped, with the reason
//! printed. Guests are started from the unit's own command line, on free
//! ports, and killed by PID when a test ends.

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
    flag_values, parse_env_file, run_bounded, settings, stop_child, unit_argv, write_script,
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

// --- 1. systemd-analyze ------------------------------------------------------------

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

// --- units, settings and launcher agree ---------------------------------------------

/// Entries of `unit` except those whose key is in `skip`.
fn entries_without(unit: &UnitFile, skip: &[&str]) -> Vec<(String, String, String)> {
    unit.entries
        .iter()
        .filter(|(_, k, _)| !skip.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[test]
fn units_settings_and_launcher_agree() {
    // The file as shipped (no TESTS_QEMU_ACCEL override).
    let env = parse_env_file(&deploy_file("unikernel.env")).expect("unikernel.env");
    let run = PathBuf::from("/run");
    let image = Path::new("/img/unikernel.elf");

    // The service and its template: the same but for what names an instance.
    let single = UnitFile::load("unikernel.service");
    let template = UnitFile::load("unikernel@.service");
    let per_instance = [
        "Description",
        "EnvironmentFile",
        "RuntimeDirectory",
        "SyslogIdentifier",
        "ExecStart",
    ];
    assert_eq!(
        entries_without(&single, &per_instance),
        entries_without(&template, &per_instance),
        "unikernel.service and unikernel@.service differ beyond the per-instance keys"
    );
    assert_eq!(
        single.get("Service", "EnvironmentFile"),
        Some("/etc/unikernel/unikernel.env")
    );
    assert_eq!(
        template.get("Service", "EnvironmentFile"),
        Some("/etc/unikernel/instances/%i.env")
    );
    let a = unit_argv(&single, &env, &run, "x", image);
    let b = unit_argv(&template, &env, &run, "x", image);
    let differing: Vec<(String, String)> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.clone(), y.clone()))
        .collect();
    assert_eq!(a.len(), b.len(), "argv lengths differ:\n{a:?}\n{b:?}");
    assert_eq!(
        differing,
        [(
            "unix:/run/unikernel/qmp.sock,server=on,wait=off".to_string(),
            "unix:/run/unikernel-x/qmp.sock,server=on,wait=off".to_string()
        )],
        "the two command lines differ beyond the QMP socket"
    );
    // The QMP socket lies in the runtime directory systemd creates.
    assert_eq!(single.get("Service", "RuntimeDirectory"), Some("unikernel"));
    assert_eq!(
        template.get("Service", "RuntimeDirectory"),
        Some("unikernel-%i")
    );
    for (unit, must) in [
        ("Restart", "always"),
        ("User", "unikernel"),
        ("SupplementaryGroups", "kvm"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/kvm rw"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("StandardOutput", "journal"),
    ] {
        assert_eq!(single.get("Service", unit), Some(must), "{unit}=");
    }
    assert_eq!(single.get("Unit", "StartLimitIntervalSec"), Some("0"));

    // The health check units: the template is the single one for %i.
    for (one, many) in [
        ("unikernel-health.service", "unikernel-health@.service"),
        ("unikernel-health.timer", "unikernel-health@.timer"),
    ] {
        let one = UnitFile::load(one);
        let many = UnitFile::load(many);
        let mapped: Vec<(String, String, String)> = entries_without(&one, &["Description"])
            .into_iter()
            .map(|(s, k, v)| {
                let v = v
                    .replace("unikernel-health.service", "unikernel-health@%i.service")
                    .replace("unikernel.service", "unikernel@%i.service")
                    .replace(
                        "/etc/unikernel/unikernel.env",
                        "/etc/unikernel/instances/%i.env",
                    );
                (s, k, v)
            })
            .collect();
        assert_eq!(
            mapped,
            entries_without(&many, &["Description"]),
            "{} and {} differ beyond the instance",
            one.name,
            many.name
        );
    }
    let health = UnitFile::load("unikernel-health.service");
    assert_eq!(
        health.get("Service", "ExecStart"),
        Some(format!("{INSTALLED_HEALTH} unikernel.service").as_str())
    );
    assert_eq!(
        health.get("Service", "EnvironmentFile"),
        single.get("Service", "EnvironmentFile"),
        "the health check must read the service's settings"
    );

    // The launcher's QEMU command line (what `cargo run` and every other test
    // boots): each of its devices, actions and flags is in the service.
    let port: u16 = env["UNIKERNEL_PORT"].parse().expect("UNIKERNEL_PORT");
    let admin_port: u16 = env["UNIKERNEL_ADMIN_PORT"]
        .parse()
        .expect("UNIKERNEL_ADMIN_PORT");
    let launcher_cfg = QemuConfig {
        host_port: Some(port),
        admin_host_port: Some(admin_port),
        access_log: Some(boot_image::AccessLogChannel::File(PathBuf::from(
            &env["UNIKERNEL_ACCESS_LOG"],
        ))),
        config: env["UNIKERNEL_GUEST_CONFIG"]
            .split(",,")
            .map(str::to_string)
            .collect(),
        ..QemuConfig::default()
    };
    let launcher: Vec<String> = boot_image::qemu_args(image, Accel::Auto, &launcher_cfg)
        .expect("launcher args")
        .into_iter()
        .map(|a| a.into_string().expect("UTF-8"))
        .collect();
    for flag in [
        "-M", "-smp", "-display", "-serial", "-action", "-device", "-fw_cfg", "-chardev",
    ] {
        for value in flag_values(&launcher, flag) {
            assert!(
                flag_values(&a, flag).contains(&value),
                "the launcher has `{flag} {value}`, unikernel.service does not:\n{}",
                a.join(" ")
            );
        }
    }
    for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
        assert!(
            a.iter().any(|w| w == flag),
            "unikernel.service lacks {flag}"
        );
    }
    let launcher_netdev = flag_values(&launcher, "-netdev");
    let unit_netdev: Vec<String> = flag_values(&a, "-netdev")
        .iter()
        .map(|v| v.replace("restrict=on,", ""))
        .collect();
    assert_eq!(launcher_netdev, unit_netdev, "-netdev (restrict=on aside)");
    assert_eq!(
        flag_values(&a, "-accel"),
        ["kvm", "tcg"],
        "the default accelerators"
    );

    // The tap drop-in: the service's command line with another network.
    let tap = UnitFile::load("tap-networking.conf");
    let t = unit_argv(&tap, &env, &run, "", image);
    assert_eq!(t.len(), a.len(), "tap argv length:\n{a:?}\n{t:?}");
    let differing: Vec<(&str, &str)> = a
        .iter()
        .zip(&t)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.as_str(), y.as_str()))
        .collect();
    assert_eq!(
        differing,
        [
            (
                format!(
                    "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80,\
                     hostfwd=tcp:127.0.0.1:{admin_port}-:8081"
                )
                .as_str(),
                "tap,id=net0,ifname=uk0,script=no,downscript=no"
            ),
            (
                "name=opt/unikernel/config,string=log=info",
                "name=opt/unikernel/config,string=ip=10.0.3.2/24,,gateway=10.0.3.1,,log=info"
            ),
        ],
        "the tap drop-in's command line differs beyond the network"
    );
    assert!(
        tap.values("Service", "DeviceAllow")
            .contains(&"/dev/net/tun rw")
    );

    // The settings file: the keys the units use, plain values that systemd
    // and the shell read alike, a guest config QEMU accepts (not empty).
    let file = deploy_dir().join("unikernel.env");
    let parsed = parse_env_file(&deploy_file("unikernel.env")).expect("unikernel.env");
    for key in [
        "UNIKERNEL_LISTEN",
        "UNIKERNEL_PORT",
        "UNIKERNEL_ADMIN_PORT",
        "UNIKERNEL_ACCESS_LOG",
        "UNIKERNEL_ACCEL",
        "UNIKERNEL_MEMORY",
        "UNIKERNEL_GUEST_CONFIG",
        "UNIKERNEL_EXTRA_ARGS",
        "HEALTH_TIMEOUT",
        "HEALTH_FAILURES",
    ] {
        assert!(parsed.contains_key(key), "unikernel.env lacks {key}");
    }
    assert!(!parsed["UNIKERNEL_GUEST_CONFIG"].is_empty());
    let keys: Vec<&String> = parsed.keys().collect();
    let script = format!(
        ". {}; for k in {}; do printf '%s=%s\\n' \"$k\" \"${{!k}}\"; done",
        file.display(),
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let shell: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(shell, parsed, "the shell reads unikernel.env differently");

    // The admin port is forwarded from 127.0.0.1 only, whatever
    // UNIKERNEL_LISTEN says (0.0.0.0 exposes the site, never the admin port).
    let exposed = settings("unikernel.env", &[("UNIKERNEL_LISTEN", "0.0.0.0")]);
    for unit in [&single, &template] {
        let argv = unit_argv(unit, &exposed, &run, "x", image);
        let forwards: Vec<String> = flag_values(&argv, "-netdev")
            .iter()
            .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|o| o.starts_with("hostfwd="))
            .collect();
        let admin: Vec<&String> = forwards.iter().filter(|f| f.ends_with("-:8081")).collect();
        assert_eq!(
            admin,
            [&format!("hostfwd=tcp:127.0.0.1:{admin_port}-:8081")],
            "{}: the admin port's forwards: {forwards:?}",
            unit.name
        );
        assert!(
            forwards.contains(&format!("hostfwd=tcp:0.0.0.0:{port}-:80")),
            "{}: UNIKERNEL_LISTEN no longer moves the site's forward: {forwards:?}",
            unit.name
        );
    }
    // The Caddyfile proxies the sites only: never an admin port (the single
    // service's, or an instance's: its site port + 1000).
    let caddy = deploy_file("Caddyfile");
    for admin in [admin_port, 9081, 9082] {
        assert!(
            !caddy.contains(&admin.to_string()),
            "the Caddyfile must never proxy the admin port {admin}"
        );
    }

    // install.sh installs every unit and example.
    let install = deploy_file("install.sh");
    for name in UNITS
        .iter()
        .chain(&["Caddyfile", "tap-networking.conf", "README.md"])
    {
        assert!(install.contains(name), "install.sh does not mention {name}");
    }
    assert!(install.contains(INSTALLED_IMAGE.trim_end_matches("/unikernel.elf")));
}

// --- 2. the service's command line boots -------------------------------------------------

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

// --- 3. the health check --------------------------------------------------------------------

/// `unikernel-health` with a `systemctl` recorder: `show` prints the file
/// `show`, `restart` exits with the number in `restart-status` (default 0);
/// every call is appended to `calls`.
struct HealthRig {
    dir: TempDir,
    env: BTreeMap<String, String>,
}

impl HealthRig {
    fn new(test: &str, overrides: &[(&str, &str)]) -> HealthRig {
        let dir = TempDir::new(test);
        let calls = dir.join("calls");
        let show = dir.join("show");
        let status = dir.join("restart-status");
        write_script(
            &dir.join("bin/systemctl"),
            &format!(
                "#!/bin/sh\necho \"systemctl $*\" >> '{calls}'\ncase \"$1\" in\nshow) cat '{show}' ;;\nrestart) exit \"$(cat '{status}' 2>/dev/null || echo 0)\" ;;\nesac\n",
                calls = calls.display(),
                show = show.display(),
                status = status.display()
            ),
        );
        let rig = HealthRig {
            env: settings("unikernel.env", overrides),
            dir,
        };
        rig.set_service("active", "run-1");
        rig
    }

    /// What the recorder's `systemctl show` reports.
    fn set_service(&self, state: &str, invocation: &str) {
        fs::write(
            self.dir.join("show"),
            format!("ActiveState={state}\nInvocationID={invocation}\n"),
        )
        .unwrap();
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("systemctl show"))
            .map(str::to_string)
            .collect()
    }

    fn state(&self) -> Option<String> {
        fs::read_to_string(self.dir.join("state/unikernel.service.failures"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn check(&self) -> RunOutput {
        let mut cmd = Command::new(deploy_dir().join("unikernel-health"));
        cmd.arg("unikernel.service")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("HEALTH_URL")
            .envs(&self.env)
            .env("HEALTH_STATE_DIR", self.dir.join("state"))
            .env("SYSTEMCTL", self.dir.join("bin/systemctl"));
        run_bounded(&mut cmd, self.dir.path(), TOOL_TIMEOUT)
    }

    /// One check that must end with `code` and print `needle` (`""`: print
    /// nothing at all).
    fn expect(&self, what: &str, code: i32, needle: &str) -> RunOutput {
        let out = self.check();
        let printed = format!("{}{}", out.stdout, out.stderr);
        let ok = out.code() == Some(code)
            && if needle.is_empty() {
                printed.trim().is_empty()
            } else {
                printed.contains(needle)
            };
        assert!(
            ok,
            "{what}: expected status {code} and {needle:?}; got {}\nrecorded: {:?}",
            out.text(),
            self.calls()
        );
        note(
            "health",
            format_args!(
                "{what}: status {code} in {:.2?}: {}",
                out.elapsed,
                printed.trim()
            ),
        );
        out
    }
}

const RESTART: &str = "systemctl restart --no-block -- unikernel.service";

#[test]
fn health_check_live_paused_and_absent() {
    let test = "health";
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let mut guest = UnitGuest::start(test, &scratch, &image, &[]);
    guest.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);
    let port = guest.port.to_string();
    let timeout_s = 2;
    let rig = HealthRig::new(
        test,
        &[
            ("UNIKERNEL_PORT", &port),
            ("HEALTH_TIMEOUT", &timeout_s.to_string()),
        ],
    );
    assert_eq!(rig.env["HEALTH_FAILURES"], "2", "the shipped threshold");

    // Live guest: nothing printed, nothing counted, no restart.
    rig.expect("live guest", 0, "");
    assert_eq!(rig.state(), None);
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());

    // Paused guest: QEMU still accepts the connection, nothing answers.
    let mut qmp = Qmp::connect(&guest.qmp_socket, Duration::from_secs(10))
        .unwrap_or_else(|e| guest.fail(format_args!("QMP: {e}")));
    qmp.stop().unwrap_or_else(|e| guest.fail(e));
    assert_eq!(qmp.query_status().as_deref(), Ok("paused"));
    let out = rig.expect("paused, 1st check", 1, "(1 of 2 in a row)");
    assert!(out.stdout.contains("no answer within 2s"), "{}", out.text());
    assert!(
        out.elapsed < Duration::from_secs(timeout_s + 5),
        "took {:?}",
        out.elapsed
    );
    assert_eq!(rig.state().as_deref(), Some("1 run-1"));
    assert!(rig.calls().is_empty(), "restarted after one failure");
    rig.expect("paused, 2nd check", 1, "(2 of 2 in a row)");
    assert_eq!(rig.calls(), [RESTART], "the second failure must restart");
    assert_eq!(rig.state(), None, "the count is cleared after a restart");

    // Still paused, but the failures of one run do not count against the next.
    rig.expect("paused, run 1 again", 1, "(1 of 2 in a row)");
    rig.set_service("active", "run-2");
    rig.expect("paused, new run", 1, "(1 of 2 in a row)");
    assert_eq!(rig.calls(), [RESTART]);
    // Between a crash and its restart (or stopped): nothing to check.
    rig.set_service("activating", "run-2");
    rig.expect("service activating", 0, "");
    assert_eq!(rig.state(), None);
    rig.set_service("active", "run-2");

    // Resumed: healthy again; the count restarts from zero.
    rig.expect("paused, one failure", 1, "(1 of 2 in a row)");
    qmp.cont().unwrap_or_else(|e| guest.fail(e));
    guest.wait_healthy(Duration::from_secs(20));
    rig.expect("resumed", 0, "healthy again after 1 failed check");
    assert_eq!(rig.state(), None);
    rig.expect("resumed, again", 0, "");
    drop(qmp);

    // No guest at all: connection refused, restart on the second.
    let pid = guest.pid();
    guest.stop();
    drop(guest);
    rig.expect("no guest, 1st", 1, "connection refused");
    rig.expect("no guest, 2nd", 1, "restarting unikernel.service");
    assert_eq!(rig.calls(), [RESTART, RESTART]);
    note(
        test,
        format_args!("QEMU pid {pid} stopped; 2 restarts recorded"),
    );
}

/// Serves `response` to every connection on a free port until dropped.
struct FakeServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(response: &'static str) -> FakeServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(response.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn health_check_judges_answers() {
    let unhealthy = FakeServer::start(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 25\r\nConnection: close\r\n\r\nunhealthy: rx ring wedged",
    );
    let port = unhealthy.port.to_string();
    let rig = HealthRig::new("health-503", &[("UNIKERNEL_PORT", &port)]);
    rig.expect("503", 1, "answered 503: unhealthy: rx ring wedged");
    // A failing restart is reported and the count kept for the next check.
    fs::write(rig.dir.join("restart-status"), "1").unwrap();
    rig.expect("503, restart fails", 2, "restart failed");
    assert_eq!(rig.state().as_deref(), Some("2 run-1"));
    fs::write(rig.dir.join("restart-status"), "0").unwrap();
    rig.expect("503, restart works", 1, "restarting");
    assert_eq!(rig.state(), None);

    let wrong = FakeServer::start(
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
    );
    let port = wrong.port.to_string();
    let rig = HealthRig::new("health-200", &[("UNIKERNEL_PORT", &port)]);
    rig.expect("200 but not ok", 1, "answered 200: hello");

    let good =
        FakeServer::start("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    let port = good.port.to_string();
    let rig = HealthRig::new("health-ok", &[("UNIKERNEL_PORT", &port)]);
    rig.expect("200 ok", 0, "");
    // HEALTH_URL wins over LISTEN:PORT (tap networking).
    let rig = HealthRig::new(
        "health-url",
        &[
            ("UNIKERNEL_PORT", "1"),
            ("HEALTH_URL", &format!("http://127.0.0.1:{port}/health")),
        ],
    );
    rig.expect("HEALTH_URL", 0, "");

    let rig = HealthRig::new("health-usage", &[("UNIKERNEL_PORT", "x")]);
    rig.expect("bad port", 2, "usage");
}

// --- 4. install.sh ---------------------------------------------------------------------------

/// A temporary root plus recorders for every command `install.sh` may change
/// the system with. Each recorder appends `name args` to `calls`; `useradd`,
/// `groupadd` and `userdel` also edit the root's passwd/group files as the
/// real ones would, `apt-get install` "installs" QEMU by creating the program
/// `uk-test-qemu` in the recorders' directory (on PATH), and `systemctl
/// is-active` says inactive for the units listed in `inactive`.
struct InstallRig {
    dir: TempDir,
    root: PathBuf,
    bin: PathBuf,
}

const QEMU_NAME: &str = "uk-test-qemu";

impl InstallRig {
    fn new(test: &str) -> InstallRig {
        let dir = TempDir::new(test);
        let root = dir.join("root");
        let bin = dir.join("bin");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let recorder = format!(
            r#"#!/bin/bash
name=$(basename "$0")
echo "$name $*" >> '{calls}'
case "$name $1" in
"apt-get install") printf '#!/bin/sh\n' > '{bin}/{QEMU_NAME}'; chmod 755 '{bin}/{QEMU_NAME}' ;;
"groupadd "*) echo "${{!#}}:x:990:" >> '{root}/etc/group' ;;
"useradd "*) echo "${{!#}}:x:990:990::/nonexistent:/usr/sbin/nologin" >> '{root}/etc/passwd' ;;
"userdel "*) sed -i "/^${{!#}}:/d" '{root}/etc/passwd' ;;
"systemctl is-active") grep -qx "${{!#}}" '{inactive}' 2>/dev/null && exit 3 ;;
esac
exit 0
"#,
            calls = dir.join("calls").display(),
            bin = bin.display(),
            root = root.display(),
            inactive = dir.join("inactive").display(),
        );
        for name in ["systemctl", "apt-get", "useradd", "groupadd", "userdel"] {
            write_script(&bin.join(name), &recorder);
        }
        InstallRig { dir, root, bin }
    }

    fn command(&self, args: &[&str], with_recorders: bool) -> Command {
        let mut cmd = Command::new(deploy_dir().join("install.sh"));
        cmd.arg("--root").arg(&self.root).args(args);
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("QEMU", QEMU_NAME)
            .env("CURL", "curl")
            .env("UNIKERNEL_WAIT", "0");
        for (var, name) in [
            ("SYSTEMCTL", "systemctl"),
            ("APT_GET", "apt-get"),
            ("USERADD", "useradd"),
            ("GROUPADD", "groupadd"),
            ("USERDEL", "userdel"),
        ] {
            if with_recorders {
                cmd.env(var, self.bin.join(name));
            } else {
                cmd.env_remove(var);
            }
        }
        cmd
    }

    /// Runs install.sh with `args`; returns its output and the commands it
    /// recorded (then forgets them).
    fn run(&self, args: &[&str], code: i32) -> (RunOutput, Vec<String>) {
        let out = run_bounded(&mut self.command(args, true), self.dir.path(), TOOL_TIMEOUT);
        let calls_path = self.dir.join("calls");
        let calls: Vec<String> = fs::read_to_string(&calls_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = fs::remove_file(&calls_path);
        assert_eq!(
            out.code(),
            Some(code),
            "install.sh {args:?}: {}\nrecorded: {calls:?}",
            out.text()
        );
        note(
            "install",
            format_args!(
                "install.sh {}: status {code} in {:.2?}, recorded {calls:?}",
                args.join(" "),
                out.elapsed
            ),
        );
        (out, calls)
    }

    /// Every file under the root: relative path -> (mode, bytes).
    fn tree(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&self.root).unwrap();
                    out.insert(
                        format!("/{}", rel.display()),
                        (mode_of(&path), fs::read(&path).unwrap()),
                    );
                }
            }
        }
        out
    }

    fn users(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("etc/passwd"))
            .unwrap()
            .lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    }

    fn mtime(&self, rel: &str) -> i64 {
        fs::metadata(self.root.join(rel.trim_start_matches('/')))
            .unwrap()
            .mtime_nsec()
    }
}

fn enable_single() -> String {
    "systemctl enable --now unikernel.service unikernel-health.timer".to_string()
}

#[test]
fn install_sh_into_a_temporary_root() {
    let test = "install";
    let rig = InstallRig::new(test);
    let image = image_copy(&rig.dir);
    let image_bytes = fs::read(&image).unwrap();
    let image_arg = image.to_string_lossy().into_owned();

    // First install: QEMU missing, no kvm group, no user.
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(
        calls,
        [
            "apt-get update".to_string(),
            "apt-get install -y --no-install-recommends qemu-system-x86".to_string(),
            "groupadd --system kvm".to_string(),
            "useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --comment unikernel service unikernel".to_string(),
            "systemctl daemon-reload".to_string(),
            enable_single(),
        ]
    );
    let deploy = |name: &str| fs::read(deploy_dir().join(name)).unwrap();
    let mut expected: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    expected.insert(INSTALLED_IMAGE.into(), (0o644, image_bytes.clone()));
    // No bundle given: an empty one, the baked site.
    expected.insert(INSTALLED_BUNDLE.into(), (0o644, Vec::new()));
    expected.insert(INSTALLED_HEALTH.into(), (0o755, deploy("unikernel-health")));
    for unit in UNITS {
        expected.insert(format!("/etc/systemd/system/{unit}"), (0o644, deploy(unit)));
    }
    expected.insert(
        "/etc/unikernel/unikernel.env".into(),
        (0o644, deploy("unikernel.env")),
    );
    for doc in ["README.md", "Caddyfile", "tap-networking.conf"] {
        expected.insert(
            format!("/usr/local/share/doc/unikernel/{doc}"),
            (0o644, deploy(doc)),
        );
    }
    expected.insert(
        "/usr/local/share/doc/unikernel/unikernel.env.dist".into(),
        (0o644, deploy("unikernel.env")),
    );
    let with_accounts = |mut tree: BTreeMap<String, (u32, Vec<u8>)>| {
        tree.remove("/etc/passwd");
        tree.remove("/etc/group");
        tree
    };
    let names = |t: &BTreeMap<String, (u32, Vec<u8>)>| -> Vec<String> {
        t.iter().map(|(k, (m, _))| format!("{k} {m:o}")).collect()
    };
    let tree = with_accounts(rig.tree());
    assert_eq!(names(&tree), names(&expected), "files and modes");
    assert!(
        tree == expected,
        "file contents differ from deploy/ and the image"
    );
    assert_eq!(rig.users(), ["root", "unikernel"]);

    // Second run, same command: nothing to install, create or reload.
    let unit_mtime = rig.mtime("/etc/systemd/system/unikernel.service");
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(calls, [enable_single()]);
    assert!(
        with_accounts(rig.tree()) == expected,
        "a second run changed files"
    );
    assert_eq!(
        rig.mtime("/etc/systemd/system/unikernel.service"),
        unit_mtime,
        "a second run rewrote a unchanged unit"
    );
    assert_eq!(rig.users(), ["root", "unikernel"], "user created twice");

    // The operator's settings survive a run.
    let env_path = rig.root.join("etc/unikernel/unikernel.env");
    let mut edited = fs::read_to_string(&env_path).unwrap();
    edited.push_str("UNIKERNEL_MEMORY=\"256M\"\n");
    fs::write(&env_path, &edited).unwrap();
    let (out, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(calls, [enable_single()]);
    assert!(
        out.stdout
            .contains("kept your /etc/unikernel/unikernel.env")
    );
    assert_eq!(fs::read_to_string(&env_path).unwrap(), edited);

    // Upgrade: a different image; the old one is kept; the running service
    // is restarted (before `enable --now`, which would not restart it).
    let mut new_bytes = image_bytes.clone();
    new_bytes.extend_from_slice(b"\0upgrade");
    let new_image = rig.dir.join("new.elf");
    fs::write(&new_image, &new_bytes).unwrap();
    let new_arg = new_image.to_string_lossy().into_owned();
    let (_, calls) = rig.run(&["--image", &new_arg], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service".to_string(),
            "systemctl restart unikernel.service".to_string(),
            enable_single(),
        ]
    );
    let lib = rig.root.join("usr/local/lib/unikernel");
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);
    assert_eq!(
        fs::read(lib.join("unikernel.elf.previous")).unwrap(),
        image_bytes
    );
    assert_eq!(mode_of(&lib.join("unikernel.elf.previous")), 0o644);

    // Roll back, and forward again.
    let (_, calls) = rig.run(&["--rollback"], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service",
            "systemctl restart unikernel.service"
        ]
    );
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), image_bytes);
    assert_eq!(
        fs::read(lib.join("unikernel.elf.previous")).unwrap(),
        new_bytes
    );
    rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);

    // A site update: a bundle beside the image, the replaced one kept, a
    // rolling restart; --rollback swaps it back (with the image, whose
    // previous one is still there).
    let bundle = |name: &str| {
        let path = rig.dir.join(name);
        fs::write(&path, [b"UKSITE\r\n".as_slice(), name.as_bytes()].concat()).unwrap();
        (
            path.to_string_lossy().into_owned(),
            fs::read(&path).unwrap(),
        )
    };
    let ((a_arg, a_bytes), (b_arg, b_bytes)) = (bundle("a.bundle"), bundle("b.bundle"));
    let site = lib.join("site.bundle");
    let (_, calls) = rig.run(&["--image", &new_arg, "--bundle", &a_arg], 0);
    assert!(calls.contains(&"systemctl restart unikernel.service".to_string()));
    assert_eq!(fs::read(&site).unwrap(), a_bytes);
    rig.run(&["--image", &new_arg, "--bundle", &b_arg], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);
    assert_eq!(fs::read(lib.join("site.bundle.previous")).unwrap(), a_bytes);
    let (out, _) = rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(&site).unwrap(), a_bytes, "{}", out.text());
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), image_bytes);
    rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);
    // Without --bundle an installed bundle stays.
    rig.run(&["--image", &new_arg], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);

    // Instances: settings files from the shipped one with their ports. `a`
    // gets a port where something answers /health, `b` one where nothing does.
    let healthy =
        FakeServer::start("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    let port_a = healthy.port.to_string();
    let port_b = free_port().to_string();
    let (_, calls) = rig.run(
        &[
            "--image",
            &new_arg,
            "--instance",
            &format!("a={port_a}"),
            "--instance",
            &format!("b={port_b}"),
        ],
        0,
    );
    assert_eq!(
        calls,
        [
            "systemctl enable --now unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer"
        ]
    );
    for (name, port) in [("a", &port_a), ("b", &port_b)] {
        let path = rig.root.join(format!("etc/unikernel/instances/{name}.env"));
        let text = fs::read_to_string(&path).unwrap();
        let env = parse_env_file(&text).unwrap();
        let mut shipped = parse_env_file(&deploy_file("unikernel.env")).unwrap();
        shipped.insert("UNIKERNEL_PORT".into(), port.to_string());
        // Each instance its own admin port (site port + 1000) and access log.
        let admin = port.parse::<u32>().unwrap() + 1000;
        shipped.insert("UNIKERNEL_ADMIN_PORT".into(), admin.to_string());
        shipped.insert(
            "UNIKERNEL_ACCESS_LOG".into(),
            format!("/var/log/unikernel/{name}-access.log"),
        );
        assert_eq!(env, shipped, "{name}.env");
        assert_eq!(mode_of(&path), 0o644);
    }

    // Upgrade with instances: one at a time, skipping what does not run; the
    // installed instances stay what is enabled (not the single service).
    fs::write(rig.dir.join("inactive"), "unikernel.service\n").unwrap();
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service",
            "systemctl is-active --quiet unikernel@a.service",
            "systemctl restart unikernel@a.service",
            "systemctl is-active --quiet unikernel@b.service",
            "systemctl restart unikernel@b.service",
            "systemctl enable --now unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer",
        ]
    );

    // Waiting for /health between restarts: `a` answers, `b` does not, so
    // the roll-back stops there and says so.
    let mut cmd = rig.command(&["--rollback"], true);
    cmd.env("UNIKERNEL_WAIT", "2");
    let out = run_bounded(&mut cmd, rig.dir.path(), TOOL_TIMEOUT);
    let _ = fs::remove_file(rig.dir.join("calls"));
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stdout.contains("unikernel@a.service answers")
            && out
                .stderr
                .contains("unikernel@b.service did not answer /health within 2s"),
        "{}",
        out.text()
    );
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    drop(healthy);

    // Uninstall: everything but the settings and the user.
    let (_, calls) = rig.run(&["--uninstall"], 0);
    assert_eq!(
        calls,
        [
            "systemctl disable --now unikernel.service unikernel-health.timer unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer",
            "systemctl daemon-reload"
        ]
    );
    let left: Vec<String> = with_accounts(rig.tree()).into_keys().collect();
    assert_eq!(
        left,
        [
            "/etc/unikernel/instances/a.env",
            "/etc/unikernel/instances/b.env",
            "/etc/unikernel/unikernel.env"
        ]
    );
    assert_eq!(rig.users(), ["root", "unikernel"]);

    // Purge: the settings and the user too.
    let (_, calls) = rig.run(&["--uninstall", "--purge"], 0);
    assert_eq!(calls.last().map(String::as_str), Some("userdel unikernel"));
    assert!(
        with_accounts(rig.tree()).is_empty(),
        "{:?}",
        rig.tree().keys()
    );
    assert_eq!(rig.users(), ["root"]);
}

#[test]
fn install_sh_refuses_what_it_should() {
    let rig = InstallRig::new("install-refuse");
    let image = image_copy(&rig.dir);
    let image_arg = image.to_string_lossy().into_owned();

    // --root without recorders would act on this machine: refused.
    let out = run_bounded(
        &mut rig.command(&["--image", &image_arg], false),
        rig.dir.path(),
        TOOL_TIMEOUT,
    );
    assert_eq!(out.code(), Some(2), "{}", out.text());
    assert!(out.stderr.contains("SYSTEMCTL"), "{}", out.text());
    assert!(!rig.dir.join("calls").exists());

    let not_elf = rig.dir.join("not.elf");
    fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
    let (out, calls) = rig.run(&["--image", &not_elf.to_string_lossy()], 2);
    assert!(out.stderr.contains("not an ELF"), "{}", out.text());
    assert!(calls.is_empty());
    let (_, calls) = rig.run(&["--image", &image_arg, "--instance", "a/b=1"], 2);
    assert!(calls.is_empty());
    let (_, calls) = rig.run(&["--image", &image_arg, "--instance", "a=99999"], 2);
    assert!(calls.is_empty());
    rig.run(&["--purge"], 2);
    rig.run(&["--rollback", "--image", &image_arg], 2);
    rig.run(&["--bogus"], 2);
    let (out, _) = rig.run(&["--rollback"], 1);
    assert!(
        out.stderr.contains("no previous image or bundle"),
        "{}",
        out.text()
    );
    let (out, calls) = rig.run(&["--image", &image_arg, "--bundle", &image_arg], 2);
    assert!(
        out.stderr.contains("is not a site bundle"),
        "{}",
        out.text()
    );
    assert!(calls.is_empty());
    rig.run(&["--site", "/nonexistent", "--bundle", &image_arg], 2);
    let files: Vec<String> = rig.tree().into_keys().collect();
    assert_eq!(
        files,
        ["/etc/group", "/etc/passwd"],
        "refused runs left files"
    );
}

// --- the reverse proxy example -------------------------------------------------------------------

/// `status_4xx` of a guest's stats (its own 404s: only the test makes them).
fn count_4xx(guest: &UnitGuest) -> u64 {
    let r = guest
        .admin_get("/api/stats.json", Duration::from_secs(10))
        .unwrap_or_else(|e| guest.fail(format_args!("stats: {e}")));
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| guest.fail(format_args!("stats JSON: {e}")));
    v["status_4xx"]
        .as_u64()
        .unwrap_or_else(|| guest.fail("no status_4xx"))
}

/// `curl -k` through Caddy; the status code, or an error.
fn curl_status(url: &str, timeout_s: u64) -> Result<u16, String> {
    let out = Command::new("curl")
        .args([
            "-k",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            &timeout_s.to_string(),
            url,
        ])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match code.parse::<u16>() {
        Ok(c) if c != 0 => Ok(c),
        _ => Err(format!(
            "curl {url}: exit {} code {code:?}",
            out.status.code().unwrap_or(-1)
        )),
    }
}

/// The `caddy` program: on PATH, or else unpacked (not installed: Debian's
/// package would also start a system-wide Caddy on port 80) from the Debian
/// package fetched with `apt-get download` into target/deploy-tools/.
fn caddy_program(test: &str) -> Result<PathBuf, String> {
    if have("caddy") {
        return Ok(PathBuf::from("caddy"));
    }
    let dir = boot_image::repo_root().join("target/deploy-tools/caddy");
    let program = dir.join("usr/bin/caddy");
    if program.exists() {
        return Ok(program);
    }
    note(
        test,
        format_args!(
            "caddy missing: apt-get download caddy, unpacked in {}",
            dir.display()
        ),
    );
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = run_bounded(
        Command::new("apt-get")
            .args(["download", "caddy"])
            .current_dir(&dir),
        &dir,
        APT_TIMEOUT,
    );
    let deb = fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("`apt-get download caddy` gave no package: {}", out.text()))?;
    let out = run_bounded(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
        &dir,
        TOOL_TIMEOUT,
    );
    if program.exists() {
        Ok(program)
    } else {
        Err(format!("unpacking {}: {}", deb.display(), out.text()))
    }
}

#[test]
fn caddyfile_balances_and_skips_a_paused_instance() {
    let test = "caddy";
    let caddy_program = match caddy_program(test) {
        Ok(p) => p,
        Err(reason) => {
            note(test, format_args!("SKIPPED: {reason}"));
            return;
        }
    };
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let mut a = UnitGuest::start("caddy-a", &scratch, &image, &[]);
    let mut b = UnitGuest::start("caddy-b", &scratch, &image, &[]);
    a.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);
    b.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);

    // deploy/Caddyfile imported unchanged; the site and upstreams through the
    // environment placeholders it documents; Caddy's own state in scratch.
    let https_port = free_port();
    let http_port = free_port();
    let wrapper = scratch.join("Caddyfile.test");
    fs::write(
        &wrapper,
        format!(
            "{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tstorage file_system {}\n}}\nimport {}\n",
            scratch.join("caddy-data").display(),
            deploy_dir().join("Caddyfile").display()
        ),
    )
    .unwrap();
    let mut caddy = KillOnDrop(
        Command::new(&caddy_program)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&wrapper)
            .env("UNIKERNEL_SITE", format!("https://localhost:{https_port}"))
            .env(
                "UNIKERNEL_UPSTREAMS",
                format!("127.0.0.1:{} 127.0.0.1:{}", a.port, b.port),
            )
            .env("HOME", scratch.path())
            .env("XDG_DATA_HOME", scratch.join("xdg-data"))
            .env("XDG_CONFIG_HOME", scratch.join("xdg-config"))
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(scratch.join("caddy.out")).unwrap())
            .stderr(fs::File::create(scratch.join("caddy.log")).unwrap())
            .spawn()
            .expect("starting caddy"),
    );
    let caddy_log = || fs::read_to_string(scratch.join("caddy.log")).unwrap_or_default();
    let base = format!("https://localhost:{https_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(200) = curl_status(&format!("{base}/health"), 3) {
            break;
        }
        if let Ok(Some(s)) = caddy.0.try_wait() {
            panic!("caddy exited ({s}):\n{}", caddy_log());
        }
        assert!(
            Instant::now() < deadline,
            "no 200 through Caddy (TLS) within 30 s:\n{}",
            caddy_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Both instances serve: 20 requests for a missing page, counted as 404s
    // by whichever guest got each.
    let (a0, b0) = (count_4xx(&a), count_4xx(&b));
    for i in 0..20 {
        let code = curl_status(&format!("{base}/balance-{i}"), 10).unwrap();
        assert_eq!(code, 404, "request {i} through Caddy");
    }
    let (a1, b1) = (count_4xx(&a), count_4xx(&b));
    note(
        test,
        format_args!("20 requests: {} to a, {} to b", a1 - a0, b1 - b0),
    );
    assert_eq!((a1 - a0) + (b1 - b0), 20);
    assert!(a1 > a0 && b1 > b0, "one instance got no requests");

    // Pause a: once Caddy's probe has failed (interval 2 s, timeout 2 s),
    // every request goes to b and succeeds.
    let mut qmp = Qmp::connect(&a.qmp_socket, Duration::from_secs(10)).unwrap();
    qmp.stop().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let b2 = count_4xx(&b);
    for i in 0..10 {
        let t = Instant::now();
        let code = curl_status(&format!("{base}/paused-{i}"), 15).unwrap();
        assert_eq!(code, 404, "request {i} with a paused:\n{}", caddy_log());
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "request {i} waited {:?}",
            t.elapsed()
        );
    }
    assert_eq!(count_4xx(&b) - b2, 10, "requests did not all go to b");

    // Resumed: a is back in rotation after a passing probe.
    qmp.cont().unwrap();
    let a3 = count_4xx(&a);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while count_4xx(&a) == a3 {
        assert!(
            Instant::now() < deadline,
            "a not back in rotation within 30 s"
        );
        curl_status(&format!("{base}/back-{sent}"), 10).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    note(
        test,
        format_args!("with a paused: 10/10 via b; a back after {sent} requests"),
    );
    drop(caddy);
}

// --- the tap drop-in ----------------------------------------------------------------------------

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("ukdeploy-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    fn exec(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).args(argv);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn tap_drop_in_serves_in_a_network_namespace() {
    let test = "tap";
    if !nix::unistd::geteuid().is_root() {
        note(
            test,
            format_args!("SKIPPED: needs root for a network namespace and a tap"),
        );
        return;
    }
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let ns = Netns::create();
    ns.exec(&[
        "ip".into(),
        "link".into(),
        "set".into(),
        "lo".into(),
        "up".into(),
    ])
    .output()
    .unwrap();
    let drop_in = UnitFile::load("tap-networking.conf");
    let access_log = scratch.join("access.log");
    let env = settings(
        "unikernel.env",
        &[("UNIKERNEL_ACCESS_LOG", &access_log.to_string_lossy())],
    );
    let none = BTreeMap::new();
    // The `+` commands as root would run them, in the namespace; the tap's
    // owner is root here (the test has no `unikernel` user to give it to).
    let run_all = |key: &str| {
        for line in drop_in.values("Service", key) {
            let ignore_failure = line
                .trim_start_matches(['+', '@', ':', '!'])
                .starts_with('-');
            let line = line.replace("user unikernel group unikernel", "user root group root");
            let argv = expand_command(&line, &env, &none).unwrap();
            let out = run_bounded(&mut ns.exec(&argv), scratch.path(), TOOL_TIMEOUT);
            assert!(
                out.status.success() || ignore_failure,
                "{key}={line}: {}",
                out.text()
            );
        }
    };
    run_all("ExecStartPre");

    let run = scratch.join("run");
    fs::create_dir_all(run.join("unikernel")).unwrap();
    let argv = unit_argv(&drop_in, &env, &run, "", &image);
    let mut qemu = KillOnDrop(
        ns.exec(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(scratch.join("serial.log")).unwrap())
            .stderr(fs::File::create(scratch.join("qemu.err")).unwrap())
            .spawn()
            .expect("starting QEMU in the namespace"),
    );
    let logs = || {
        format!(
            "--- serial ---\n{}--- stderr ---\n{}",
            fs::read_to_string(scratch.join("serial.log")).unwrap_or_default(),
            fs::read_to_string(scratch.join("qemu.err")).unwrap_or_default()
        )
    };
    let start = Instant::now();
    let curl = |url: &str| -> RunOutput {
        run_bounded(
            &mut ns.exec(&[
                "curl".into(),
                "-s".into(),
                "--max-time".into(),
                "2".into(),
                url.into(),
            ]),
            scratch.path(),
            TOOL_TIMEOUT,
        )
    };
    loop {
        let out = curl("http://10.0.3.2/health");
        if out.status.success() && out.stdout == "ok\n" {
            break;
        }
        if let Ok(Some(s)) = qemu.0.try_wait() {
            panic!("QEMU exited ({s})\n{}", logs());
        }
        if start.elapsed() > tests_qemu::deploy::HEALTH_TIMEOUT {
            panic!("no /health on 10.0.3.2 within 60 s\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let healthy_after = start.elapsed();
    let serial = fs::read_to_string(scratch.join("serial.log")).unwrap_or_default();
    assert!(
        serial.contains("net: ready: 10.0.3.2/24") && config_warnings(&serial).is_empty(),
        "the guest did not take the static address cleanly\n{}",
        logs()
    );

    // The health check as the README sets it up: HEALTH_URL on the guest.
    let health = deploy_dir().join("unikernel-health");
    let out = run_bounded(
        ns.exec(&[
            health.to_string_lossy().into_owned(),
            "unikernel.service".into(),
        ])
        .envs(&env)
        .env("HEALTH_URL", "http://10.0.3.2/health")
        .env("HEALTH_STATE_DIR", scratch.join("state"))
        .env("SYSTEMCTL", "false"),
        scratch.path(),
        TOOL_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "health check over tap: {}", out.text());

    let status = stop_child(&mut qemu.0, STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "QEMU on SIGTERM: {status:?}"
    );
    run_all("ExecStopPost");
    let links = ns
        .exec(&["ip".into(), "-br".into(), "link".into()])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("uk0"), "ExecStopPost left uk0: {links}");
    note(
        test,
        format_args!("guest at 10.0.3.2 answered /health after {healthy_after:.2?}; tap removed"),
    );
}
