//! Host-side helpers for the QEMU integration tests in `tests/`.
//!
//! - [`image`]: the release image, built once per test binary.
//! - [`config`] and [`boot`]: start a guest (KVM when it works, else TCG; see
//!   [`accel_from_env`]) and say which accelerator each test got.
//! - [`run_fault`]: inject a fault, wait for the dump, time QEMU's exit.
//! - [`dump`]: parse the kernel's `FATAL` dump and check its values.
//! - [`symbolize`]: map dump addresses to functions with `scripts/symbolize`.
//! - [`elf`]: where the kernel's code lies.
//! - [`http`]: boot a guest that serves HTTP on a free host port (legacy or
//!   modern virtio-mmio), a raw HTTP/1.1 client, `/api/stats.json`.
//! - [`netfault`]: a guest behind the seeded fault relay (`relay/relay.py`)
//!   in a network namespace the test creates; clients inside it.
//! - [`qmp`]: a QMP client (`set_link`, `stop`, `cont`, `query-status`).
//! - [`browser`]: headless Chromium over `tests/observability/cdp.py`.
//! - [`resilience`]: a guest with QMP, pipelined byte-exact downloads, wrk in
//!   the background, `/health` probes, for the fault tests.
//!
//! Every guest is a [`boot_image::Guest`], which kills QEMU when dropped, so
//! a failing assertion never leaves a VM behind. No test uses a fixed host
//! port, so tests run side by side under `--test-threads`.
//!
//! Environment: `TESTS_QEMU_ACCEL=kvm|tcg|auto` forces an accelerator
//! (default auto); `TESTS_QEMU_ECHO=1` copies guest serial output to the
//! terminal.

pub mod attack;
pub mod browser;
pub mod deploy;
pub mod dump;
pub mod elf;
pub mod http;
pub mod netfault;
pub mod qmp;
pub mod resilience;
pub mod symbolize;

use std::io::Write;
use std::ops::Range;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use boot_image::{Accel, Artifacts, Guest, Profile, QemuConfig};

pub use dump::FatalDump;
pub use symbolize::Symbolized;

/// Guest memory for the tests.
pub const MEMORY_MIB: u32 = 128;
/// From the banner to `kernel: init complete` (generous for TCG on a busy host).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// From the banner to `FATAL end` of an injected fault.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// QEMU must be gone this soon after `FATAL end` (isa-debug-exit present).
pub const EXIT_LIMIT: Duration = Duration::from_secs(2);
/// ... and this soon without isa-debug-exit (the guest resets, `-no-reboot`).
pub const EXIT_LIMIT_NO_DEBUG_EXIT: Duration = Duration::from_secs(5);
/// How long to wait for an exit beyond the limit, to report how late it was.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The release image and its kernel ELF, built on first use in this test
/// binary. A failed build is remembered, so every test reports it at once
/// instead of building again.
pub fn image() -> &'static Artifacts {
    static IMAGE: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let start = Instant::now();
        let built = boot_image::build_image(Profile::Release);
        if let Ok(artifacts) = &built {
            note(
                "image",
                format_args!(
                    "built {} in {:.1?}",
                    artifacts.image.display(),
                    start.elapsed()
                ),
            );
        }
        built
    });
    match built {
        Ok(artifacts) => artifacts,
        Err(e) => panic!("building the release image failed: {e}"),
    }
}

/// The kernel's executable address ranges, read once from its ELF.
pub fn kernel_text() -> &'static [Range<u64>] {
    static TEXT: OnceLock<Vec<Range<u64>>> = OnceLock::new();
    TEXT.get_or_init(|| {
        elf::executable_ranges_of(&image().kernel_elf).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// `TESTS_QEMU_ACCEL`: `kvm`, `tcg` or `auto` (the default: KVM, TCG if the
/// guest does not come up under KVM).
pub fn accel_from_env() -> Accel {
    match std::env::var("TESTS_QEMU_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        Ok("tcg") => Accel::Tcg,
        Ok("auto") | Ok("") | Err(_) => Accel::Auto,
        Ok(other) => panic!("TESTS_QEMU_ACCEL={other:?}: expected kvm, tcg or auto"),
    }
}

/// `TESTS_QEMU_ECHO=1` copies serial output to the terminal.
pub fn echo_from_env() -> bool {
    std::env::var_os("TESTS_QEMU_ECHO").is_some_and(|v| v != "0" && !v.is_empty())
}

/// The tests' base configuration: no host port forwarded, fixed memory, the
/// given `key=value` guest config items.
pub fn config(items: &[&str]) -> QemuConfig {
    QemuConfig {
        accel: accel_from_env(),
        memory_mib: MEMORY_MIB,
        host_port: None,
        config: items.iter().map(|s| s.to_string()).collect(),
        ..QemuConfig::default()
    }
}

/// A line on the real stderr, bypassing the test harness's capture, so the
/// accelerator and timings show in every run.
pub fn note(test: &str, message: std::fmt::Arguments<'_>) {
    let line = format!("[tests-qemu {test}] {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Boot the release image with `cfg` and report the accelerator used.
pub fn boot(test: &str, cfg: &QemuConfig) -> Guest {
    let image = &image().image;
    let start = Instant::now();
    let guest = Guest::start(image, cfg, echo_from_env())
        .unwrap_or_else(|e| panic!("[{test}] guest did not boot: {e}"));
    note(
        test,
        format_args!(
            "accel={:?} pid={} banner after {:.2?} config={:?}",
            guest.accel(),
            guest.pid(),
            start.elapsed(),
            cfg.config
        ),
    );
    guest
}

/// Panic with `message` and the guest's serial log so far.
pub fn fail(guest: &Guest, message: impl std::fmt::Display) -> ! {
    panic!(
        "{message}\n--- serial ({:?}) ---\n{}--- end serial ---",
        guest.accel(),
        guest.serial()
    )
}

/// Wait for a serial line containing `needle`, failing with the log.
pub fn expect_line(guest: &Guest, needle: &str, timeout: Duration) -> String {
    guest
        .wait_for(needle, timeout)
        .unwrap_or_else(|e| fail(guest, format_args!("waiting for {needle:?}: {e}")))
}

/// What an injected fault produced.
pub struct FaultRun {
    pub accel: Accel,
    pub dump: FatalDump,
    pub serial: String,
    pub exit: ExitStatus,
    /// From seeing `FATAL end` on serial to seeing QEMU gone.
    pub exit_after: Duration,
    /// The dump's addresses, symbolized against the kernel ELF.
    pub symbols: Vec<Symbolized>,
}

impl FaultRun {
    /// The symbolized `rip`, if the dump has one.
    pub fn rip(&self) -> Option<&Symbolized> {
        self.symbols.iter().find(|s| s.label == "rip")
    }

    /// The symbolized backtrace frames, in order.
    pub fn backtrace(&self) -> impl Iterator<Item = &Symbolized> {
        self.symbols.iter().filter(|s| s.label.starts_with('#'))
    }

    /// Every symbolized address, for failure messages.
    pub fn symbols_text(&self) -> String {
        let mut text = String::new();
        for s in &self.symbols {
            text.push_str(&format!("{} 0x{:016x}\n", s.label, s.addr));
            for f in &s.frames {
                text.push_str(&format!("    {f}\n"));
            }
        }
        text
    }
}

/// Boot with `fault=<fault>`, wait for the dump, check that QEMU exits within
/// the limit (status [`boot_image::FAULT_EXIT_STATUS`] with isa-debug-exit,
/// 0 after the forced reset without it), check the dump's shape and values,
/// and symbolize it. Panics, with the serial log, on any failure.
pub fn run_fault(test: &str, fault: &str, debug_exit: bool) -> FaultRun {
    let cfg = QemuConfig {
        debug_exit,
        no_reboot: true,
        ..config(&[&format!("fault={fault}")])
    };
    let mut guest = boot(test, &cfg);
    let end_line = expect_line(&guest, "FATAL end", DUMP_TIMEOUT);
    let seen = Instant::now();
    let (limit, expected_status) = if debug_exit {
        (EXIT_LIMIT, boot_image::FAULT_EXIT_STATUS)
    } else {
        (EXIT_LIMIT_NO_DEBUG_EXIT, 0)
    };
    let exit = guest.wait_exit(limit + EXIT_GRACE);
    let exit_after = seen.elapsed();
    let Some(exit) = exit else {
        fail(
            &guest,
            format_args!(
                "QEMU still running {exit_after:.2?} after {end_line:?} (limit {limit:?}, debug_exit={debug_exit})"
            ),
        );
    };
    note(
        test,
        format_args!(
            "accel={:?} debug_exit={debug_exit}: QEMU exited {exit} {:.0?} after `FATAL end`",
            guest.accel(),
            exit_after
        ),
    );
    if exit_after > limit {
        fail(
            &guest,
            format_args!("QEMU exited {exit_after:.2?} after `FATAL end`, limit {limit:?}"),
        );
    }
    if exit.code() != Some(expected_status) {
        fail(
            &guest,
            format_args!(
                "QEMU exit status {exit}, expected {expected_status} (debug_exit={debug_exit})"
            ),
        );
    }
    let serial = guest.serial();
    let dump = dump::parse(&serial)
        .unwrap_or_else(|e| fail(&guest, format_args!("malformed fatal dump: {e}")));
    if dump.end_status != boot_image::FAULT_EXIT_STATUS {
        fail(
            &guest,
            format_args!(
                "dump ends with status={}, expected {}",
                dump.end_status,
                boot_image::FAULT_EXIT_STATUS
            ),
        );
    }
    if !dump.extra.is_empty() {
        note(
            test,
            format_args!("FATAL lines outside the contract: {:?}", dump.extra),
        );
    }
    let problems = dump.problems(kernel_text());
    if !problems.is_empty() {
        fail(
            &guest,
            format_args!("implausible fatal dump:\n  {}", problems.join("\n  ")),
        );
    }
    let symbols = symbolize::run(&image().kernel_elf, &dump.text)
        .unwrap_or_else(|e| fail(&guest, format_args!("symbolizing the dump: {e}")));
    FaultRun {
        accel: guest.accel(),
        dump,
        serial,
        exit,
        exit_after,
        symbols,
    }
}

/// A scratch directory for a test's files (curl output, logs), removed on drop.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// A new empty directory under the system's temp dir, unique per call.
    pub fn new(test: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tests-qemu-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `python3` that can import `module` (pyenv's first, then Debian's
/// `/usr/bin/python3`); panics with `install_hint` when neither can.
pub fn python_with(module: &str, install_hint: &str) -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(candidate)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("no python3 can import {module}: {install_hint}")
}
