//! A guest started from a unit's own command line.

use super::*;

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
