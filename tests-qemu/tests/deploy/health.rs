//! The health check (`unikernel-health`) against live, paused and absent guests and canned answers.

use super::*;

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
pub(super) struct FakeServer {
    pub(super) port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub(super) fn start(response: &'static str) -> FakeServer {
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
