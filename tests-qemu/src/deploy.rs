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

// --- unit files ---------------------------------------------------------------

/// A unit file: `(section, key, value)` in file order, continuation lines
/// joined with a space as systemd does, comments and blank lines dropped.
#[derive(Clone, Debug)]
pub struct UnitFile {
    pub name: String,
    pub entries: Vec<(String, String, String)>,
}

impl UnitFile {
    pub fn parse(name: &str, text: &str) -> Result<UnitFile, String> {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if let Some(mut acc) = pending.take() {
                // systemd skips comment lines inside a continuation.
                if line.starts_with('#') || line.starts_with(';') {
                    pending = Some(acc);
                    continue;
                }
                match line.strip_suffix('\\') {
                    Some(part) => {
                        acc.push(' ');
                        acc.push_str(part.trim_end());
                        pending = Some(acc);
                        continue;
                    }
                    None => {
                        acc.push(' ');
                        acc.push_str(line);
                        push_entry(&mut entries, &section, &acc, name, n)?;
                        continue;
                    }
                }
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .ok_or_else(|| format!("{name}:{}: bad section header {line:?}", n + 1))?
                    .to_string();
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => pending = Some(part.trim_end().to_string()),
                None => push_entry(&mut entries, &section, line, name, n)?,
            }
        }
        if pending.is_some() {
            return Err(format!("{name}: file ends inside a continued line"));
        }
        Ok(UnitFile {
            name: name.to_string(),
            entries,
        })
    }

    /// A file of `deploy/`, parsed.
    pub fn load(name: &str) -> UnitFile {
        UnitFile::parse(name, &deploy_file(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every value of `section`/`key`, in order.
    pub fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `section`/`key` (systemd's rule for single-valued keys).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last().copied()
    }

    /// The effective `ExecStart=` after resets (an empty assignment clears the
    /// list, as in a drop-in); exactly one is expected.
    pub fn exec_start(&self) -> Result<String, String> {
        let mut lines: Vec<&str> = Vec::new();
        for v in self.values("Service", "ExecStart") {
            if v.is_empty() {
                lines.clear();
            } else {
                lines.push(v);
            }
        }
        match lines.as_slice() {
            [one] => Ok(one.to_string()),
            other => Err(format!(
                "{}: {} ExecStart= lines, expected one",
                self.name,
                other.len()
            )),
        }
    }
}

fn push_entry(
    entries: &mut Vec<(String, String, String)>,
    section: &str,
    line: &str,
    name: &str,
    n: usize,
) -> Result<(), String> {
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| format!("{name}:{}: not key=value: {line:?}", n + 1))?;
    if section.is_empty() {
        return Err(format!("{name}:{}: assignment outside a section", n + 1));
    }
    entries.push((
        section.to_string(),
        key.trim().to_string(),
        value.trim().to_string(),
    ));
    Ok(())
}

/// An `EnvironmentFile=`: `KEY=value` lines, `#`/`;` comments, values
/// optionally in double or single quotes. Backslashes and `$` are rejected:
/// systemd and the shell (`unikernel-health`, `install.sh`) would read them
/// differently, and the settings file promises plain values.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not KEY=value: {line:?}", n + 1))?;
        let key = key.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("line {}: bad variable name {key:?}", n + 1));
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        if value.contains(['\\', '$', '`', '"', '\'']) {
            return Err(format!(
                "line {}: {key}={value:?} has a character systemd and the shell read differently",
                n + 1
            ));
        }
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

/// Splits a command line into words: whitespace separates, `"..."` and
/// `'...'` quote. Backslash escapes are not supported (an error).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == first {
                    closed = true;
                    break;
                }
                if c == '\\' {
                    return Err(format!("backslash in {line:?}: not supported here"));
                }
                word.push(c);
            }
            if !closed {
                return Err(format!("unterminated quote in {line:?}"));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!("text right after a closing quote in {line:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' || c == '"' || c == '\'' {
                    return Err(format!(
                        "{c:?} inside a word of {line:?}: not supported here"
                    ));
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// Replaces systemd specifiers in `word`: `%%` and the ones in `specifiers`
/// (e.g. `'i'` → instance, `'t'` → runtime directory root). Any other is an error.
pub fn expand_specifiers(
    word: &str,
    specifiers: &BTreeMap<char, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(s) => match specifiers.get(&s) {
                Some(value) => out.push_str(value),
                None => return Err(format!("specifier %{s} in {word:?} not known to the test")),
            },
            None => return Err(format!("lone % at the end of {word:?}")),
        }
    }
    Ok(out)
}

/// Replaces every `${NAME}` in `word` with its value in `env` (empty if unset).
fn expand_braced(word: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {word:?}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad variable name {name:?} in {word:?}"));
        }
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = &after[end + 1..];
    }
    if rest.contains('$') {
        return Err(format!(
            "a `$` in {word:?} that systemd would not expand (use ${{NAME}}, or $NAME as a whole word)"
        ));
    }
    out.push_str(rest);
    Ok(out)
}

/// The argv systemd runs for the command line `line` (an `ExecStart=` value)
/// with environment `env` and the given specifiers. See the module doc.
pub fn expand_command(
    line: &str,
    env: &BTreeMap<String, String>,
    specifiers: &BTreeMap<char, String>,
) -> Result<Vec<String>, String> {
    let line = line.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut argv = Vec::new();
    for word in split_words(line)? {
        let word = expand_specifiers(&word, specifiers)?;
        let whole = word.strip_prefix('$').filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        match whole {
            Some(name) => {
                let value = env.get(name).map(String::as_str).unwrap_or("");
                argv.extend(value.split_whitespace().map(str::to_string));
            }
            None => argv.push(expand_braced(&word, env)?),
        }
    }
    if argv.is_empty() {
        return Err(format!("{line:?} expands to nothing"));
    }
    Ok(argv)
}

/// The QEMU options of `argv` (program name first) as sorted `(option,
/// value)` pairs, so two command lines compare whatever their order. Only the
/// flags in [`VALUELESS_QEMU_FLAGS`] stand alone; every other option takes
/// the next word.
pub fn qemu_options(argv: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        if VALUELESS_QEMU_FLAGS.contains(&word.as_str()) {
            out.push((word.clone(), None));
        } else {
            out.push((word.clone(), words.next().cloned()));
        }
    }
    out.sort();
    out
}

/// The value-less QEMU flags the launcher and the units use.
pub const VALUELESS_QEMU_FLAGS: &[&str] = &["-nodefaults", "-no-user-config", "-no-reboot"];

/// The value after `flag` for every occurrence in `argv`.
pub fn flag_values<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

// --- a guest started from a unit's command line ---------------------------------

/// QEMU started from the argv of a unit's `ExecStart=`. Killed (by PID) when
/// dropped.
pub struct UnitGuest {
    pub child: Child,
    pub port: u16,
    /// Host port of the guest's admin port (`UNIKERNEL_ADMIN_PORT`).
    pub admin_port: u16,
    pub argv: Vec<String>,
    pub qmp_socket: PathBuf,
    pub serial_path: PathBuf,
    pub stderr_path: PathBuf,
    pub test: String,
    pub started: Instant,
}

/// The settings file's values with `overrides` applied; `UNIKERNEL_ACCEL` is
/// forced to `-accel kvm` / `-accel tcg` when `TESTS_QEMU_ACCEL` says so (the
/// same setting an operator uses), else left as the file has it.
pub fn settings(file: &str, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = parse_env_file(&deploy_file(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    match std::env::var("TESTS_QEMU_ACCEL").as_deref() {
        Ok("kvm") => {
            env.insert("UNIKERNEL_ACCEL".into(), "-accel kvm".into());
        }
        Ok("tcg") => {
            env.insert("UNIKERNEL_ACCEL".into(), "-accel tcg".into());
        }
        _ => {}
    }
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// The argv of `unit`'s `ExecStart=` for a test: settings `env`, `%t` = the
/// scratch directory, `%i` = `instance`, and the installed image path
/// replaced by `image` (it must occur exactly once), the installed bundle by
/// `site.bundle` beside `image`.
pub fn unit_argv(
    unit: &UnitFile,
    env: &BTreeMap<String, String>,
    runtime_root: &Path,
    instance: &str,
    image: &Path,
) -> Vec<String> {
    let specifiers = BTreeMap::from([
        ('t', runtime_root.to_string_lossy().into_owned()),
        ('i', instance.to_string()),
    ]);
    let line = unit.exec_start().unwrap_or_else(|e| panic!("{e}"));
    let mut argv = expand_command(&line, env, &specifiers)
        .unwrap_or_else(|e| panic!("{}: ExecStart: {e}", unit.name));
    let at: Vec<usize> = (0..argv.len())
        .filter(|&i| argv[i] == INSTALLED_IMAGE)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{}: the installed image {INSTALLED_IMAGE} should appear once in {argv:?}",
        unit.name
    );
    argv[at[0]] = image.to_string_lossy().into_owned();
    let bundle = image.with_file_name("site.bundle");
    for arg in argv.iter_mut().filter(|a| *a == INSTALLED_BUNDLE) {
        *arg = bundle.to_string_lossy().into_owned();
    }
    argv
}

impl UnitGuest {
    /// Starts QEMU with `argv` (serial and stderr to `<tag>-*.log` in
    /// `scratch`); `port` is the host port forwarded to the guest's port 80,
    /// `admin_port` the one forwarded to its admin port.
    pub fn spawn(
        test: &str,
        scratch: &TempDir,
        tag: &str,
        argv: Vec<String>,
        port: u16,
        admin_port: u16,
        qmp_socket: PathBuf,
    ) -> UnitGuest {
        let serial_path = scratch.join(&format!("{tag}-serial.log"));
        let stderr_path = scratch.join(&format!("{tag}-qemu-stderr.log"));
        let serial = fs::File::create(&serial_path).expect("creating the serial log");
        let stderr = fs::File::create(&stderr_path).expect("creating the stderr log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(serial)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("[{test}] starting {}: {e}", argv[0]));
        let guest = UnitGuest {
            child,
            port,
            admin_port,
            argv,
            qmp_socket,
            serial_path,
            stderr_path,
            test: test.to_string(),
            started: Instant::now(),
        };
        note(
            test,
            format_args!(
                "started pid {} port {port}: {}",
                guest.child.id(),
                guest.argv.join(" ")
            ),
        );
        guest
    }

    /// Starts the single-instance unit's command line on a free port, with the
    /// settings file's values and `overrides`, retrying with another port if
    /// QEMU could not bind the one picked.
    pub fn start(test: &str, scratch: &TempDir, image: &Path, overrides: &[(&str, &str)]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unit = UnitFile::load("unikernel.service");
        for attempt in 1..=START_ATTEMPTS {
            // Each guest its own runtime directory (QMP socket) and logs.
            let tag = format!("guest-{}", NEXT.fetch_add(1, Ordering::Relaxed));
            let port = free_port();
            let port_text = port.to_string();
            let admin_port = free_port();
            let admin_text = admin_port.to_string();
            let access_log = scratch.join(&format!("{tag}-access.log"));
            let access_text = access_log.to_string_lossy().into_owned();
            let mut all: Vec<(&str, &str)> = vec![
                ("UNIKERNEL_PORT", &port_text),
                ("UNIKERNEL_ADMIN_PORT", &admin_text),
                ("UNIKERNEL_ACCESS_LOG", &access_text),
            ];
            all.extend_from_slice(overrides);
            let env = settings("unikernel.env", &all);
            let run = scratch.join(&format!("{tag}-run"));
            fs::create_dir_all(run.join("unikernel")).expect("creating the runtime directory");
            let argv = unit_argv(&unit, &env, &run, "", image);
            let mut guest = UnitGuest::spawn(
                test,
                scratch,
                &tag,
                argv,
                port,
                admin_port,
                run.join("unikernel/qmp.sock"),
            );
            // QEMU fails at once when the port is taken. (A guest may also end
            // this soon by itself, e.g. an injected fault under TCG: that is
            // the caller's to judge.)
            std::thread::sleep(Duration::from_millis(300));
            if let Ok(Some(status)) = guest.child.try_wait()
                && guest.stderr().contains("host forwarding")
            {
                if attempt < START_ATTEMPTS {
                    note(test, format_args!("port {port} taken ({status}); retrying"));
                    continue;
                }
                guest.fail(format_args!("QEMU could not forward port {port}: {status}"));
            }
            return guest;
        }
        unreachable!("the last attempt returns or fails")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn serial(&self) -> String {
        fs::read_to_string(&self.serial_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Panic with `message`, the serial console and QEMU's stderr.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "[{}] {message}\nargv: {}\n--- serial ---\n{}--- QEMU stderr ---\n{}--- end ---",
            self.test,
            self.argv.join(" "),
            self.serial(),
            self.stderr()
        )
    }

    /// `GET path` on a new connection (timeouts `timeout`).
    pub fn get(&self, path: &str, timeout: Duration) -> Result<Response, String> {
        self.get_from(self.addr(), path, timeout)
    }

    /// `GET path` on the admin port (`127.0.0.1:UNIKERNEL_ADMIN_PORT`).
    pub fn admin_get(&self, path: &str, timeout: Duration) -> Result<Response, String> {
        self.get_from(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port)),
            path,
            timeout,
        )
    }

    fn get_from(
        &self,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<Response, String> {
        crate::http::get_within(addr, path, timeout)
    }

    /// Retries `GET /health` until it answers 200 `ok` (at most `timeout`);
    /// how long it took from QEMU's start.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        for _ in 0..10_000 {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(format_args!(
                    "QEMU exited ({status}) before /health answered"
                ));
            }
            match self.get("/health", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 && r.body == b"ok\n" => return self.started.elapsed(),
                Ok(r) => last = format!("{} {:?}", r.status, r.body_text()),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.fail(format_args!(
            "GET /health did not answer 200 ok within {timeout:?}; last: {last}"
        ))
    }

    /// Waits at most `timeout` for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// SIGTERM, as `systemctl stop` sends; the exit status if QEMU exited
    /// within [`STOP_TIMEOUT`] (else it was killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        stop_child(&mut self.child, STOP_TIMEOUT)
    }
}

impl Drop for UnitGuest {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}

/// The guest's complaints about its configuration on `serial`: `config: ...`
/// lines other than the `config: Config { ... }` summary.
pub fn config_warnings(serial: &str) -> Vec<&str> {
    serial
        .lines()
        .filter(|l| l.starts_with("config: ") && !l.starts_with("config: Config {"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unit_file_continuations_comments_and_resets() {
        let text = "# c\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/a \\\n    b \\\n# skipped\n    c\nExecStart=\nExecStart=/bin/d\n";
        let u = UnitFile::parse("t.service", text).unwrap();
        assert_eq!(u.get("Unit", "Description"), Some("x"));
        assert_eq!(
            u.values("Service", "ExecStart"),
            ["/bin/a b c", "", "/bin/d"]
        );
        assert_eq!(u.exec_start().unwrap(), "/bin/d");
        assert!(UnitFile::parse("t", "Key=1\n").is_err());
        assert!(UnitFile::parse("t", "[S]\nA=b \\\n").is_err());
    }

    #[test]
    fn env_file_quotes_and_rejections() {
        let e = parse_env_file("# c\nA=\"x y\"\nB='z'\nC=plain\n; c\n").unwrap();
        assert_eq!(e, env(&[("A", "x y"), ("B", "z"), ("C", "plain")]));
        assert!(parse_env_file("A=\"$HOME\"\n").is_err());
        assert!(parse_env_file("A=a\\b\n").is_err());
        assert!(parse_env_file("1A=x\n").is_err());
        assert!(parse_env_file("novalue\n").is_err());
    }

    #[test]
    fn command_expansion_follows_systemd() {
        let e = env(&[("ACC", "-accel kvm -accel tcg"), ("P", "80"), ("E", "")]);
        let s = BTreeMap::from([('t', "/run".to_string()), ('i', "a".to_string())]);
        let argv = expand_command(
            "-qemu $ACC -net x:${P}-:80,y=${UNSET} -q %t/u-%i/s $E %%",
            &e,
            &s,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "qemu",
                "-accel",
                "kvm",
                "-accel",
                "tcg",
                "-net",
                "x:80-:80,y=",
                "-q",
                "/run/u-a/s",
                "%"
            ]
        );
        // `${X}` keeps whitespace in one word.
        let argv = expand_command("a ${ACC}", &e, &s).unwrap();
        assert_eq!(argv, ["a", "-accel kvm -accel tcg"]);
        assert!(expand_command("a %n", &e, &s).is_err());
        assert!(expand_command("a x$P", &e, &s).is_err());
        assert!(expand_command("a b\\c", &e, &s).is_err());
        assert_eq!(split_words("a \"b c\" 'd'").unwrap(), ["a", "b c", "d"]);
        assert!(split_words("a \"b").is_err());
    }
}
