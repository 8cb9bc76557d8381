//! [`FaultNet`]: a guest behind the relay, in the test's namespace.

use super::client::fetch;
use super::*;

/// A directory for the sockets and the relay log, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "uk-netfault-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A guest whose only NIC goes through the relay into the test's namespace.
/// Fields drop in order: QEMU, relay, namespace, directory.
pub struct FaultNet {
    pub guest: Guest,
    pub relay: Relay,
    pub ns: Netns,
    dir: TempDir,
    pub test: String,
    pub profile: Profile,
    pub seed: u64,
}

impl FaultNet {
    /// Namespace, relay with `profile` and `seed`, then the guest with
    /// `ip=10.0.3.2/24,gateway=10.0.3.1` and `extra_config`; returns once
    /// `/health` answered 200 through the relay.
    pub fn start(
        test: &str,
        profile: Profile,
        seed: u64,
        log_decisions: usize,
        extra_config: &[&str],
    ) -> FaultNet {
        let dir = TempDir::new();
        let ns = Netns::create();
        let sockets = SocketPaths {
            qemu: dir.0.join("qemu.sock"),
            relay: dir.0.join("relay.sock"),
        };
        let relay = Relay::start(
            &ns,
            &sockets,
            &dir.0.join("relay.log"),
            Some(&dir.0.join(PCAP_NAME)),
            &profile,
            seed,
            log_decisions,
        );
        let ip = format!("ip={GUEST_IP}/{PREFIX_LEN}");
        let gateway = format!("gateway={HOST_IP}");
        // The relay carries port 80 only: the stats the tests read come
        // through it, so the admin endpoints stay on that port.
        let mut items = vec![ip.as_str(), gateway.as_str(), "admin=public"];
        items.extend_from_slice(extra_config);
        let cfg = QemuConfig {
            extra_args: sockets.qemu_args(),
            ..config(&items)
        };
        let start = Instant::now();
        let guest = boot(test, &cfg);
        let net = FaultNet {
            guest,
            relay,
            ns,
            dir,
            test: test.to_string(),
            profile,
            seed,
        };
        if let Err(e) = net.guest.wait_for("net: ready", INIT_TIMEOUT) {
            net.fail(format_args!("waiting for `net: ready`: {e}"));
        }
        net.wait_healthy();
        note(
            test,
            format_args!(
                "accel={:?} namespace {} relay seed {} ({profile}): /health 200 after {:.2?}",
                net.guest.accel(),
                net.ns.name(),
                seed,
                start.elapsed()
            ),
        );
        net
    }

    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(GUEST_IP, 80)
    }

    /// Where the sockets and the relay log are.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::new();
        for _ in 0..1000 {
            match self.get("/health", CONNECT_TIMEOUT, CONNECT_TIMEOUT) {
                Ok(d) if d.status == 200 && d.body == b"ok\n" => return,
                Ok(d) => last = format!("status {} body {:?}", d.status, d.body_text()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.fail(format_args!(
            "GET /health did not answer 200 `ok` within {HEALTH_TIMEOUT:?}; last: {last}"
        ))
    }

    /// `GET path` on a new connection (`Connection: close`) from the namespace:
    /// at most `deadline` in all, and no more than `stall` without a byte.
    pub fn get(
        &self,
        path: &str,
        deadline: Duration,
        stall: Duration,
    ) -> Result<Fetch, FetchError> {
        fetch(&self.ns.name, self.addr(), path, deadline, stall)
    }

    /// A [`Fetch`] of `path` that runs on its own thread (for parallel downloads).
    pub fn spawn_get(
        &self,
        path: &str,
        deadline: Duration,
        stall: Duration,
    ) -> JoinHandle<Result<Fetch, FetchError>> {
        let (ns, addr, path) = (self.ns.name.clone(), self.addr(), path.to_string());
        thread::spawn(move || fetch(&ns, addr, &path, deadline, stall))
    }

    /// `/health` every `interval` on a keep-alive connection until stopped.
    pub fn start_prober(&self, interval: Duration, limit: Duration) -> Prober {
        Prober::start(self.ns.name.clone(), self.addr(), interval, limit)
    }

    /// `/api/stats.json`: every numeric field.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let t = Duration::from_secs(20);
        let d = self
            .get("/api/stats.json", t, t)
            .map_err(|e| e.to_string())?;
        if d.status != 200 {
            return Err(format!("/api/stats.json answered {}", d.status));
        }
        let v: serde_json::Value = serde_json::from_slice(&d.body)
            .map_err(|e| format!("/api/stats.json: {e}: {:?}", d.body_text()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("/api/stats.json is not an object: {}", d.body_text()))?;
        Ok(obj
            .iter()
            .filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n)))
            .collect())
    }

    /// The namespace's IP/TCP counters (see [`Netns::counters`]).
    pub fn host_counters(&self) -> BTreeMap<String, u64> {
        self.ns
            .counters()
            .unwrap_or_else(|e| self.fail(format_args!("namespace counters: {e}")))
    }

    /// What is wrong with the guest now: QEMU gone, or a FATAL line on serial.
    pub fn guest_problems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(status) = self.guest.wait_exit(Duration::ZERO) {
            problems.push(format!("QEMU exited ({status}) during the test"));
        }
        if let Some(line) = self.guest.serial().lines().find(|l| l.contains("FATAL ")) {
            problems.push(format!("the serial log has a FATAL line: {line:?}"));
        }
        problems
    }

    /// `[tests-qemu <test>] message` on stderr.
    pub fn note(&self, message: std::fmt::Arguments<'_>) {
        note(&self.test, message);
    }

    /// Copies the relay's pcap to [`KEPT_PCAP_DIR`]; says where, or why not.
    fn keep_pcap(&self) -> String {
        let src = self.dir.0.join(PCAP_NAME);
        let dir = boot_image::repo_root().join(KEPT_PCAP_DIR);
        let dst = dir.join(format!("{}-{}.pcap", self.test, self.seed));
        match fs::create_dir_all(&dir).and_then(|()| fs::copy(&src, &dst)) {
            Ok(_) => format!(
                "the guest's side of the link (frames it sent, frames it got): {}",
                dst.display()
            ),
            Err(e) => format!("pcap {} not kept: {e}", src.display()),
        }
    }

    /// Panics with `message`, the seed and profile, the relay's log and the
    /// guest's serial log; keeps the relay's pcap.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "[{}] {message}\nrelay seed {} ({}); replay: {SEED_ENV}={} cargo test -p tests-qemu --test netfault -- {}\n{}\n\
             --- relay log (tail) ---\n{}\n--- serial ({:?}) ---\n{}--- QEMU stderr ---\n{}--- end ---",
            self.test,
            self.seed,
            self.profile,
            self.seed,
            self.test,
            self.keep_pcap(),
            self.relay.log_tail(),
            self.guest.accel(),
            self.guest.serial(),
            self.guest.qemu_stderr(),
        )
    }
}
