//! Helpers for `tests/deploy.rs`, which checks `deploy/` (systemd units,
//! settings file, health check, `install.sh`, examples) against real tools.
//!
//! - [`UnitFile`]: a unit file read the way systemd reads it (sections, line
//!   continuations, comments).
//! - [`parse_env_file`]: an `EnvironmentFile=` read the way systemd reads it.
//! - [`expand_command`]: an `ExecStart=` line turned into the argv systemd
//!   would run: prefixes dropped, words split, specifiers (`%i`, `%t`, `%%`)
//!   and variables (`${VAR}` inside a word, `$VAR` as a word of its own,
//!   split at whitespace) substituted. Anything else the parser does not know
//!   is an error, so a unit using it fails the tests instead of being misread.
//! - [`UnitGuest`]: QEMU started from such an argv, killed by PID when dropped.
//! - [`TempDir`], [`write_script`], [`run_bounded`]: scratch space, recorder
//!   scripts, child processes with a deadline.
//!
//! Every wait here has a deadline; every child is killed by its PID.

mod unit_file;
mod unit_guest;

pub use unit_file::*;
pub use unit_guest::*;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::http::{Response, free_port};
use crate::note;

/// Where `install.sh` puts the image, and where the units boot it from.
pub const INSTALLED_IMAGE: &str = "/usr/local/lib/unikernel/unikernel.elf";
/// Where install.sh puts the site bundle the units boot with `-initrd`.
pub const INSTALLED_BUNDLE: &str = "/usr/local/lib/unikernel/site.bundle";
/// Where `install.sh` puts the health check, and where the units run it from.
pub const INSTALLED_HEALTH: &str = "/usr/local/lib/unikernel/unikernel-health";
/// How long a guest started from a unit's command line may take to answer
/// `/health` (TCG on a busy host, or this machine's slow nested KVM).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts when QEMU cannot bind the picked port (another process took it).
const START_ATTEMPTS: usize = 5;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    boot_image::repo_root().join("deploy")
}

/// A file of `deploy/`, read whole (panics if missing).
pub fn deploy_file(name: &str) -> String {
    let path = deploy_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// --- scratch space and processes -------------------------------------------

/// A fresh directory under the system temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let path = std::env::temp_dir().join(format!(
            "tq-deploy-{}-{}-{short}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes an executable script (mode 0755) at `path`.
pub fn write_script(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// What a bounded child run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Both streams, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "status {} after {:.2?}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdin null, output to files in `scratch`) and waits at most
/// `timeout`; a child still running then is killed (by PID) and the test fails.
pub fn run_bounded(cmd: &mut Command, scratch: &Path, timeout: Duration) -> RunOutput {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("run-{n}.out"));
    let err_path = scratch.join(format!("run-{n}.err"));
    let out = fs::File::create(&out_path).unwrap_or_else(|e| panic!("creating output file: {e}"));
    let err = fs::File::create(&err_path).unwrap_or_else(|e| panic!("creating output file: {e}"));
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let status = wait_child(&mut child, timeout);
    let elapsed = start.elapsed();
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    match status {
        Some(status) => RunOutput {
            status,
            stdout,
            stderr,
            elapsed,
        },
        None => {
            stop_child(&mut child, Duration::from_secs(2));
            panic!(
                "{cmd:?} still running after {timeout:?}; killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
            )
        }
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    for _ in 0..100_000 {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGTERM to `child` (by PID), then SIGKILL if it has not exited within
/// `grace`. Returns the exit status if it exited after SIGTERM.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    if let Some(status) = wait_child(child, grace) {
        return Some(status);
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = wait_child(child, Duration::from_secs(5));
    None
}

/// A child process that is stopped (SIGTERM, then SIGKILL, by PID) when
/// dropped, so a failing assertion leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        stop_child(&mut self.0, Duration::from_secs(2));
    }
}
