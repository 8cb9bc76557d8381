//! The relay process: its fault profile, its counters and its guard.

use super::*;

/// One direction's faults, or both (the relay's common options). Percentages,
/// milliseconds, kbit/s.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Profile {
    pub loss: f64,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub dup: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// 0: no rate limit.
    pub rate_kbit: f64,
    /// Frames queued per direction before tail drop; 0: the relay's default.
    pub limit: u32,
}

impl Profile {
    /// No faults at all.
    pub const CLEAN: Profile = Profile {
        loss: 0.0,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        dup: 0.0,
        reorder: 0.0,
        corrupt: 0.0,
        rate_kbit: 0.0,
        limit: 0,
    };

    /// The relay's options for this profile.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--loss={}", self.loss),
            format!("--delay={}", self.delay_ms),
            format!("--jitter={}", self.jitter_ms),
            format!("--dup={}", self.dup),
            format!("--reorder={}", self.reorder),
            format!("--corrupt={}", self.corrupt),
            format!("--rate={}", self.rate_kbit),
        ];
        if self.limit > 0 {
            args.push(format!("--limit={}", self.limit));
        }
        args
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {}%, delay {} ms ± {} ms, dup {}%, reorder {}%, corrupt {}%",
            self.loss, self.delay_ms, self.jitter_ms, self.dup, self.reorder, self.corrupt
        )?;
        if self.rate_kbit > 0.0 {
            write!(f, ", rate {} kbit/s", self.rate_kbit)?;
        }
        if self.limit > 0 {
            write!(f, ", queue {} frames", self.limit)?;
        }
        Ok(())
    }
}

/// `relay.py --dry-run n`: the decisions for the first `n` frames of each
/// direction, one line each (`to-guest 3 delay=17.114ms corrupt@0.511153^0x67`).
pub fn dry_run(seed: u64, profile: &Profile, n: usize) -> Vec<String> {
    let script = relay_script();
    let mut args: Vec<String> = vec![
        script.to_string_lossy().into_owned(),
        format!("--dry-run={n}"),
        format!("--seed={seed}"),
    ];
    args.extend(profile.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(PYTHON, &args).unwrap_or_else(|e| panic!("relay dry run: {e}"));
    out.lines().map(str::to_string).collect()
}

/// One direction's counters from the relay (`frames_in`, `lost`, `corrupted`,
/// `duplicated`, `reordered`, `tail_dropped`, `frames_out`, `send_blocked`, ...).
#[derive(Clone, Debug, Default)]
pub struct DirCounts(pub BTreeMap<String, u64>);

impl DirCounts {
    /// The counter `name`; panics if the relay did not report it.
    pub fn get(&self, name: &str) -> u64 {
        match self.0.get(name) {
            Some(&v) => v,
            None => panic!("relay counts have no {name:?}: {:?}", self.0),
        }
    }
}

/// What the relay did, from its `relay: counts {json}` line.
#[derive(Clone, Debug)]
pub struct RelayCounts {
    pub seed: u64,
    pub to_guest: DirCounts,
    pub to_host: DirCounts,
    /// Frames the relay could not deliver, by `direction errno`.
    pub send_errors: BTreeMap<String, u64>,
    /// The JSON as printed.
    pub json: String,
}

impl RelayCounts {
    pub fn parse(json: &str) -> Result<RelayCounts, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("relay counts {json:?}: {e}"))?;
        let map = |key: &str| -> Result<BTreeMap<String, u64>, String> {
            let obj = v
                .get(key)
                .and_then(|o| o.as_object())
                .ok_or_else(|| format!("relay counts: no object {key:?} in {json}"))?;
            obj.iter()
                .map(|(k, n)| {
                    n.as_u64()
                        .map(|n| (k.clone(), n))
                        .ok_or_else(|| format!("relay counts: {key}.{k} is not a u64"))
                })
                .collect()
        };
        Ok(RelayCounts {
            seed: v
                .get("seed")
                .and_then(|s| s.as_u64())
                .ok_or_else(|| format!("relay counts: no seed in {json}"))?,
            to_guest: DirCounts(map("to_guest")?),
            to_host: DirCounts(map("to_host")?),
            send_errors: map("send_errors")?,
            json: json.to_string(),
        })
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        let dir = |d: &DirCounts| {
            format!(
                "in {} lost {} corrupted {} dup {} reordered {} tail-dropped {} out {} \
                 (blocked {} times, max queue {})",
                d.get("frames_in"),
                d.get("lost"),
                d.get("corrupted"),
                d.get("duplicated"),
                d.get("reordered"),
                d.get("tail_dropped"),
                d.get("frames_out"),
                d.get("send_blocked"),
                d.get("max_queue"),
            )
        };
        format!(
            "seed {}: to guest: {}; to host: {}; send errors {:?}",
            self.seed,
            dir(&self.to_guest),
            dir(&self.to_host),
            self.send_errors
        )
    }
}

/// The relay process, inside the namespace. Dropping it closes its stdin (it
/// ends, printing its counts) and kills it if it has not ended within
/// `RELAY_STOP_TIMEOUT` (5 s).
pub struct Relay {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    pub seed: u64,
    counts: Option<RelayCounts>,
}

impl Relay {
    /// Starts the relay in `ns` between `listen` (its socket, QEMU's
    /// `remote.path`) and `connect` (QEMU's `local.path`), logging to `log`,
    /// and waits for `relay: ready`. `log_decisions`: log the decisions for
    /// the first that many frames of each direction.
    pub fn start(
        ns: &Netns,
        sockets: &SocketPaths,
        log: &Path,
        pcap: Option<&Path>,
        profile: &Profile,
        seed: u64,
        log_decisions: usize,
    ) -> Relay {
        let file = File::create(log)
            .unwrap_or_else(|e| panic!("creating relay log {}: {e}", log.display()));
        let err_file = file
            .try_clone()
            .unwrap_or_else(|e| panic!("relay log {}: {e}", log.display()));
        let mut cmd = ns.command(PYTHON);
        cmd.arg(relay_script())
            .arg(format!("--tap={TAP}"))
            .arg(format!("--listen={}", sockets.relay.display()))
            .arg(format!("--connect={}", sockets.qemu.display()))
            .arg(format!("--seed={seed}"))
            .arg(format!("--max-seconds={RELAY_MAX_SECONDS}"))
            .arg(format!("--log-decisions={log_decisions}"))
            .arg("--exit-on-stdin-eof")
            .args(pcap.map(|p| format!("--pcap={}", p.display())))
            .args(profile.args())
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(err_file);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting the relay in {}: {e}", ns.name));
        let stdin = child.stdin.take();
        let mut relay = Relay {
            child,
            stdin,
            log: log.to_path_buf(),
            seed,
            counts: None,
        };
        relay.wait_ready();
        relay
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + RELAY_READY_TIMEOUT;
        for _ in 0..10_000 {
            if self.log_text().lines().any(|l| l == "relay: ready") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the relay exited ({status}) before `relay: ready`:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no `relay: ready` within {RELAY_READY_TIMEOUT:?}:\n{}",
            self.log_text()
        );
    }

    /// The relay's log so far (seed, settings, decisions, counts at the end).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `LOG_TAIL_LINES` (60) lines of the log, without decision lines.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("relay: decision "))
            .collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The decisions the relay logged (`--log-decisions`), in the format of
    /// [`dry_run`]'s lines.
    pub fn logged_decisions(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.strip_prefix("relay: decision "))
            .map(str::to_string)
            .collect()
    }

    /// Ends the relay (end of stdin; SIGTERM, then SIGKILL if it lingers) and
    /// returns its counts. Later calls return the same counts.
    pub fn stop(&mut self) -> Result<RelayCounts, String> {
        if let Some(counts) = &self.counts {
            return Ok(counts.clone());
        }
        self.end();
        let text = self.log_text();
        let line = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("relay: counts "))
            .ok_or_else(|| format!("the relay printed no counts:\n{}", self.log_tail()))?;
        let counts = RelayCounts::parse(line)?;
        self.counts = Some(counts.clone());
        Ok(counts)
    }

    /// Closes stdin and waits; SIGTERM after [`RELAY_STOP_TIMEOUT`], SIGKILL
    /// after another second. Always reaps the process.
    fn end(&mut self) {
        drop(self.stdin.take());
        if self.wait_exit(RELAY_STOP_TIMEOUT) {
            return;
        }
        // `ip netns exec` execs the relay, so the child's pid is the relay's.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if !self.wait_exit(Duration::from_secs(1)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.counts.is_none() {
            self.end();
        }
    }
}

/// The two unix datagram sockets between QEMU and the relay.
#[derive(Clone, Debug)]
pub struct SocketPaths {
    /// QEMU binds this (`local.path`); the relay sends to it.
    pub qemu: PathBuf,
    /// The relay binds this; QEMU sends to it (`remote.path`).
    pub relay: PathBuf,
}

impl SocketPaths {
    /// QEMU's NIC on the dgram netdev: `-netdev dgram,... -device virtio-net-device`.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "dgram,id=net0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                self.qemu.display(),
                self.relay.display()
            ),
            "-device".into(),
            "virtio-net-device,netdev=net0".into(),
        ]
    }
}
