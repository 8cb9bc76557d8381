//! A running guest: one QEMU process, its captured serial console, and the choice
//! between KVM and TCG.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::{Capture, SerialSinks, WaitOutcome, spawn_serial_reader, spawn_stderr_reader};
use crate::kvm::kvm_usable;
use crate::qemu_command::{Accel, QEMU_PROGRAM, QemuConfig, qemu_command};

/// QEMU's exit status when the guest reports a fatal fault or panic: the kernel writes 1
/// to `isa-debug-exit`, and QEMU exits with `(1 << 1) | 1`.
pub const FAULT_EXIT_STATUS: i32 = 3;

/// Serial lines quoted in error messages.
const TAIL_LINES: usize = 40;
/// How long to wait for the reader threads to drain the pipes after QEMU exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for QEMU's exit status once its stdout has closed.
const REAP_TIMEOUT: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Whether `line` is the kernel's boot banner: `unikernel v<version> ... booted ...`.
pub fn is_banner(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("unikernel v") && line.contains(" booted")
}

fn qemu_not_found() -> String {
    format!("{QEMU_PROGRAM} not found: install it with 'apt-get install qemu-system-x86'")
}

/// A QEMU process running the image. Dropping it kills QEMU.
#[derive(Debug)]
pub struct Guest {
    child: Mutex<Child>,
    pid: u32,
    accel: Accel,
    capture: Arc<Capture>,
}

impl Guest {
    /// Starts QEMU.
    ///
    /// `Accel::Auto`: starts under KVM (only if `/dev/kvm` can be opened) and waits up to
    /// `cfg.banner_timeout` for the kernel's banner (see [`is_banner`]); if QEMU exits
    /// first or the banner does not come, kills it and starts again under TCG (a fresh
    /// serial capture). `Kvm` / `Tcg`: starts under that accelerator and returns at once.
    ///
    /// Prints one line to stderr naming the accelerator in use and, on fallback, why KVM
    /// was abandoned. `echo` prints serial lines to stdout and QEMU's stderr to stderr as
    /// they arrive.
    pub fn start(image: &Path, cfg: &QemuConfig, echo: bool) -> Result<Guest, String> {
        cfg.validate()?;
        if !image.is_file() {
            return Err(format!("image {} does not exist", image.display()));
        }
        match cfg.accel {
            Accel::Tcg => {
                let guest = Guest::spawn(image, Accel::Tcg, cfg, echo)?;
                eprintln!("boot-image: accelerator: TCG (requested)");
                Ok(guest)
            }
            Accel::Kvm => {
                kvm_usable().map_err(|e| format!("KVM requested but not usable: {e}"))?;
                let guest = Guest::spawn(image, Accel::Kvm, cfg, echo)?;
                eprintln!("boot-image: accelerator: KVM (requested)");
                Ok(guest)
            }
            Accel::Auto => {
                let reason = match kvm_usable() {
                    Err(e) => format!("KVM unavailable: {e}"),
                    Ok(()) => {
                        let mut guest = Guest::spawn(image, Accel::Kvm, cfg, echo)?;
                        match guest.banner_or_why(cfg.banner_timeout) {
                            Ok(()) => {
                                eprintln!("boot-image: accelerator: KVM");
                                return Ok(guest);
                            }
                            Err(Abandon::Stop(e)) => return Err(e),
                            Err(Abandon::Fallback(why)) => {
                                guest.kill();
                                format!("KVM abandoned: {why}")
                            }
                        }
                    }
                };
                let guest = Guest::spawn(image, Accel::Tcg, cfg, echo)?;
                eprintln!("boot-image: accelerator: TCG ({reason})");
                Ok(guest)
            }
        }
    }

    fn spawn(image: &Path, accel: Accel, cfg: &QemuConfig, echo: bool) -> Result<Guest, String> {
        let log = match &cfg.serial_log {
            Some(path) => Some(
                File::create(path)
                    .map_err(|e| format!("could not create serial log {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let mut child = qemu_command(image, accel, cfg).spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                qemu_not_found()
            } else {
                format!("could not start {QEMU_PROGRAM}: {e}")
            }
        })?;
        let pid = child.id();
        let capture = Arc::new(Capture::new());
        let readers = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), Some(stderr)) => {
                spawn_serial_reader(stdout, Arc::clone(&capture), SerialSinks { echo, log })
                    .and_then(|()| spawn_stderr_reader(stderr, Arc::clone(&capture), echo))
            }
            _ => Err(io::Error::other("QEMU's output was not piped")),
        };
        let guest = Guest {
            child: Mutex::new(child),
            pid,
            accel,
            capture,
        };
        // On error `guest` is dropped here, which kills QEMU.
        readers.map_err(|e| format!("could not capture QEMU's output: {e}"))?;
        Ok(guest)
    }

    /// Waits for the banner under KVM and says why not if it does not come.
    fn banner_or_why(&self, timeout: Duration) -> Result<(), Abandon> {
        match self.capture.wait_line(0, is_banner, timeout) {
            WaitOutcome::Found { line, .. } => match probe_cycles(&line) {
                Some(cycles) if cycles > MAX_KVM_PROBE_CYCLES => Err(Abandon::Fallback(format!(
                    "KVM boots the kernel but runs it slowly ({cycles} TSC cycles per probe \
                     iteration; hardware-assisted guests take about 10): nested virtualization \
                     without hardware support"
                ))),
                _ => Ok(()),
            },
            WaitOutcome::Closed => {
                let status = self.exit_status_within(REAP_TIMEOUT);
                let stderr = self.capture.stderr_text();
                // Ctrl-C (or a kill) while waiting is not a KVM problem: do not retry.
                if stderr.contains("terminating on signal") {
                    return Err(Abandon::Stop(format!(
                        "QEMU was stopped by a signal before the kernel banner ({})",
                        describe_status(status)
                    )));
                }
                let mut why = format!(
                    "QEMU exited ({}) before the kernel banner",
                    describe_status(status)
                );
                if let Some(last) = last_qemu_error(&stderr) {
                    why.push_str(&format!("; QEMU said: {last}"));
                }
                Err(Abandon::Fallback(why))
            }
            WaitOutcome::TimedOut => {
                let mut why = format!("no kernel banner within {timeout:?}");
                match self.capture.serial_tail(1) {
                    last if last.is_empty() => why.push_str(" (no serial output)"),
                    last => why.push_str(&format!(" (last serial line: {last:?})")),
                }
                Err(Abandon::Fallback(why))
            }
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The accelerator in use: `Kvm` or `Tcg`.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All serial output so far (lines without `\r`, each followed by `\n`; an
    /// unterminated last line as is). Beyond 64 MiB the oldest lines are dropped.
    pub fn serial(&self) -> String {
        self.capture.serial_text()
    }

    /// QEMU's own stderr so far (the newest 1 MiB).
    pub fn qemu_stderr(&self) -> String {
        self.capture.stderr_text()
    }

    /// Number of complete serial lines so far; pass it to [`Guest::wait_for_from`] to
    /// wait for a line that has not been printed yet.
    pub fn serial_line_count(&self) -> usize {
        self.capture.line_count()
    }

    /// The first serial line containing `needle` (lines already received count), waiting
    /// up to `timeout`. `Err` if it does not come or QEMU exits first; the message quotes
    /// the last 40 serial lines and QEMU's stderr.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_from(0, needle, timeout).map(|(_, line)| line)
    }

    /// Like [`Guest::wait_for`], but only lines with index `first_line` or later count
    /// (see [`Guest::serial_line_count`]). Returns the line's index too.
    pub fn wait_for_from(
        &self,
        first_line: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(usize, String), String> {
        match self
            .capture
            .wait_line(first_line, |line| line.contains(needle), timeout)
        {
            WaitOutcome::Found { index, line } => Ok((index, line)),
            WaitOutcome::Closed => {
                let status = self.exit_status_within(REAP_TIMEOUT);
                Err(self.failure_report(&format!(
                    "QEMU exited ({}) without printing a serial line containing {needle:?}",
                    describe_status(status)
                )))
            }
            WaitOutcome::TimedOut => Err(self.failure_report(&format!(
                "no serial line containing {needle:?} within {timeout:?}"
            ))),
        }
    }

    /// `what`, then the serial tail and QEMU's stderr.
    fn failure_report(&self, what: &str) -> String {
        let stderr = self.capture.stderr_text();
        format!(
            "{what} ({} guest, QEMU pid {})\n--- last {TAIL_LINES} serial lines ---\n{}\n--- QEMU stderr ---\n{}",
            accel_name(self.accel),
            self.pid,
            self.capture.serial_tail(TAIL_LINES),
            if stderr.is_empty() {
                "(empty)"
            } else {
                &stderr
            },
        )
    }

    /// QEMU's status if it exits within `timeout`.
    fn exit_status_within(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child().try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `timeout` for QEMU to exit; then also waits (briefly) until all its
    /// output has been captured and echoed. `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.exit_status_within(timeout)?;
        self.capture.wait_closed(DRAIN_TIMEOUT);
        Some(status)
    }

    /// Kills QEMU (SIGKILL to its pid) if it is still running, and reaps it.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
        self.capture.wait_closed(DRAIN_TIMEOUT);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Above this many TSC cycles per iteration of the kernel's boot-time CPU probe, KVM is
/// emulating rather than running the guest (seen here with nested virtualization: ~16000,
/// against ~6 under hardware KVM and ~6-20 under TCG), and TCG is the faster choice.
pub const MAX_KVM_PROBE_CYCLES: u64 = 500;

/// The kernel's CPU probe from its banner: `... cpu probe N cycles/iteration`.
pub fn probe_cycles(banner: &str) -> Option<u64> {
    let rest = &banner[banner.find("cpu probe ")? + "cpu probe ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Why the KVM attempt ended without a banner.
enum Abandon {
    /// Try again under TCG, for this reason.
    Fallback(String),
    /// Give up altogether (the user stopped QEMU).
    Stop(String),
}

fn accel_name(accel: Accel) -> &'static str {
    match accel {
        Accel::Auto => "auto",
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG",
    }
}

/// QEMU's last stderr line that is not a warning (KVM here warns about CPUID bits on
/// every start).
fn last_qemu_error(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains("warning:"))
}

fn describe_status(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_string(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_probe_is_read_from_the_banner() {
        let banner =
            "unikernel v0.1.0 booted: 124 MiB usable memory, cpu probe 16723 cycles/iteration";
        assert_eq!(probe_cycles(banner), Some(16723));
        assert_eq!(
            probe_cycles("unikernel v0.1.0 booted: 124 MiB usable memory"),
            None
        );
        assert_eq!(
            probe_cycles("unikernel v0.1.0 booted: cpu probe x cycles"),
            None
        );
    }

    #[test]
    fn banner_detection() {
        assert!(is_banner("unikernel v0.1.0 booted in 12 ms"));
        assert!(is_banner("unikernel v0.1.0 (release) booted"));
        assert!(is_banner("  unikernel v1 booted"));
        assert!(!is_banner("unikernel v0.1.0 booting"));
        assert!(!is_banner("[INFO] unikernel v0.1.0 booted"));
        assert!(!is_banner("pvh-loader: unikernel v0.1.0 booted"));
        assert!(!is_banner("unikernel booted"));
        assert!(!is_banner(""));
    }

    #[test]
    fn last_qemu_error_skips_warnings() {
        let stderr = "qemu-system-x86_64: -netdev x: bad\n\
                      qemu-system-x86_64: warning: host doesn't support requested feature";
        assert_eq!(
            last_qemu_error(stderr),
            Some("qemu-system-x86_64: -netdev x: bad")
        );
        assert_eq!(last_qemu_error("qemu: warning: x\n"), None);
        assert_eq!(last_qemu_error(""), None);
    }

    #[test]
    fn fault_status_is_debug_exit_of_one() {
        assert_eq!(FAULT_EXIT_STATUS, (1 << 1) | 1);
    }

    #[test]
    fn missing_qemu_message_is_one_line() {
        let msg = qemu_not_found();
        assert!(!msg.contains('\n'));
        assert!(msg.contains("apt-get install qemu-system-x86"));
    }

    #[test]
    fn start_rejects_missing_image_and_bad_config() {
        let err = Guest::start(
            Path::new("/nonexistent/x.elf"),
            &QemuConfig::default(),
            false,
        )
        .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let cfg = QemuConfig {
            config: vec!["a=1,b=2".into()],
            ..QemuConfig::default()
        };
        let err = Guest::start(Path::new("/nonexistent/x.elf"), &cfg, false).unwrap_err();
        assert!(err.contains("','"), "{err}");
    }
}
