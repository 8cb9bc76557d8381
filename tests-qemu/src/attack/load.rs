//! What the attack tests run beside an attack: probes, downloads, hoarders and the attack tools themselves.

use super::*;

/// One probe: when it started and what it got.
#[derive(Clone, Debug)]
pub struct Probe {
    pub at: Instant,
    pub result: Result<Duration, String>,
}

/// A client loop on a thread of its own, asked to stop with [`Worker::stop`]
/// (or when dropped); the loop checks the flag it is given between steps.
pub struct Worker<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `body` inside `target`'s namespace; `failed` is its result when
    /// the thread cannot enter the namespace.
    fn spawn(
        target: &Target,
        failed: impl FnOnce(String) -> T + Send + 'static,
        body: impl FnOnce(&Target, &AtomicBool) -> T + Send + 'static,
    ) -> Worker<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let t = target.clone();
        let handle = thread::spawn(move || match t.enter() {
            Ok(()) => body(&t, &flag),
            Err(e) => failed(format!("entering the namespace: {e}")),
        });
        Worker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops it after the step in progress; its result.
    pub fn stop(mut self) -> T {
        self.stop.store(true, Ordering::Release);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => panic!("a client thread panicked"),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// `/health` on a new connection every `interval`, until stopped: every
/// probe made.
pub type Prober = Worker<Vec<Probe>>;

/// Starts a [`Prober`].
pub fn start_prober(target: &Target, interval: Duration) -> Prober {
    Worker::spawn(
        target,
        |e| {
            vec![Probe {
                at: Instant::now(),
                result: Err(e),
            }]
        },
        move |t, stop| {
            let mut probes = Vec::new();
            let mut next = Instant::now();
            for _ in 0..MAX_PROBES {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let at = Instant::now();
                probes.push(Probe {
                    at,
                    result: health(t, PROBE_TIMEOUT),
                });
                next += interval;
                // A slow probe is not made up for with a burst.
                next = next.max(Instant::now());
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            probes
        },
    )
}

/// What the probes started in a window got.
#[derive(Clone, Debug)]
pub struct ProbeSummary {
    pub total: usize,
    /// Answered 200 within the limit.
    pub within: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The first few that were late or failed.
    pub misses: Vec<String>,
}

impl ProbeSummary {
    pub fn of(probes: &[Probe], from: Instant, to: Instant, limit: Duration) -> ProbeSummary {
        let window: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .collect();
        let mut times: Vec<Duration> = window
            .iter()
            .map(|p| p.result.clone().unwrap_or(Duration::MAX))
            .collect();
        times.sort();
        let pick = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let misses = window
            .iter()
            .filter(|p| !matches!(p.result, Ok(t) if t <= limit))
            .take(10)
            .map(|p| match &p.result {
                Ok(t) => format!("+{:.1?}: answered after {t:.2?}", p.at - from),
                Err(e) => format!("+{:.1?}: {e}", p.at - from),
            })
            .collect();
        ProbeSummary {
            total: window.len(),
            within: times.iter().filter(|&&t| t <= limit).count(),
            median: pick(0.5),
            p99: pick(0.99),
            max: times.last().copied().unwrap_or_default(),
            misses,
        }
    }

    /// Share of probes answered within the limit (0 for no probes).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.within as f64 / self.total as f64
        }
    }
}

impl std::fmt::Display for ProbeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: Duration| {
            if d == Duration::MAX {
                "failed".to_string()
            } else {
                format!("{d:.1?}")
            }
        };
        write!(
            f,
            "{}/{} probes within limit ({:.2}%), median {}, p99 {}, max {}",
            self.within,
            self.total,
            self.rate() * 100.0,
            show(self.median),
            show(self.p99),
            show(self.max)
        )
    }
}

/// What the downloader got.
#[derive(Clone, Debug, Default)]
pub struct Downloads {
    /// Complete and byte-identical to `large.bin`.
    pub exact: usize,
    /// Failed or differing, and why.
    pub bad: Vec<String>,
    /// Gave up without a single byte of response: the newcomer's handshake
    /// or request found the pool full at every retry (or the RST that closed
    /// it to make room was lost), a reachability miss, as a late probe is;
    /// unlike `bad`, nothing was delivered wrong.
    pub never_started: usize,
    pub slowest: Duration,
}

/// `/large.bin` downloaded again and again on new connections, each checked
/// against the site's file, until stopped (after the download in progress).
pub type Downloader = Worker<Downloads>;

/// Starts a [`Downloader`].
pub fn start_downloader(target: &Target) -> Downloader {
    let want = large_bin();
    Worker::spawn(
        target,
        |e| Downloads {
            bad: vec![e],
            ..Downloads::default()
        },
        move |t, stop| {
            let mut d = Downloads::default();
            for _ in 0..MAX_DOWNLOADS {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let start = Instant::now();
                match download(t) {
                    Ok(body) if body == want => d.exact += 1,
                    Ok(body) => d.bad.push(format!(
                        "{} bytes, differing from large.bin ({} bytes)",
                        body.len(),
                        want.len()
                    )),
                    Err(Failed::NeverStarted) => d.never_started += 1,
                    Err(Failed::Bad(e)) => d.bad.push(e),
                }
                d.slowest = d.slowest.max(start.elapsed());
                thread::sleep(Duration::from_millis(100));
            }
            d
        },
    )
}

/// Why a download did not deliver `large.bin`.
enum Failed {
    /// Not one byte of response within [`DOWNLOAD_TIMEOUT`].
    NeverStarted,
    /// Anything else: an error, a partial or wrong response.
    Bad(String),
}

/// One `/large.bin` on a new connection: the body, or why not. Bounded by
/// [`DOWNLOAD_TIMEOUT`] in all: the downloads check integrity under attack
/// (the probes measure latency), so a slow start (a handshake retried while
/// the pool was full) is not a failure.
fn download(t: &Target) -> Result<Vec<u8>, Failed> {
    let start = Instant::now();
    let mut c = Client::connect(SocketAddr::V4(t.addr()), DOWNLOAD_TIMEOUT)
        .map_err(|e| Failed::Bad(format!("download: connect: {e}")))?;
    c.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| Failed::Bad(format!("download: send: {e}")))?;
    let left = DOWNLOAD_TIMEOUT.saturating_sub(start.elapsed());
    let (ending, bytes) = c.read_until_close(left);
    if bytes.is_empty() && matches!(ending, Ending::TimedOut) {
        return Err(Failed::NeverStarted);
    }
    match parse_response(&bytes, false).map_err(Failed::Bad)? {
        Some((r, used)) if used == bytes.len() && r.status == 200 => Ok(r.body),
        Some((r, _)) if r.status != 200 => {
            Err(Failed::Bad(format!("download: status {}", r.status)))
        }
        _ => Err(Failed::Bad(format!(
            "download: {} bytes after {:.1?}, then {ending:?}",
            bytes.len(),
            start.elapsed()
        ))),
    }
}

/// Keep-alive connections, each answered once and then held idle until
/// stopped: how many were opened and answered, how many failed.
pub type Hoarder = Worker<(usize, usize)>;

/// Starts a [`Hoarder`]: up to `count` connections, one after another, for
/// at most `open_for`; each sends one `GET /health` and waits for its answer.
pub fn start_hoarder(target: &Target, count: usize, open_for: Duration) -> Hoarder {
    Worker::spawn(
        target,
        move |_| (0, count),
        move |t, stop| {
            let until = Instant::now() + open_for;
            let mut held = Vec::new();
            let mut failed = 0;
            for _ in 0..count {
                if stop.load(Ordering::Acquire) || Instant::now() >= until {
                    break;
                }
                let ok = Client::connect(SocketAddr::V4(t.addr()), Duration::from_secs(5))
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        c.send(b"GET /health HTTP/1.1\r\nHost: hoard\r\n\r\n")
                            .map_err(|e| e.to_string())?;
                        let r = c.read_response(false)?;
                        (r.status == 200)
                            .then_some(c)
                            .ok_or_else(|| "not 200".into())
                    });
                match ok {
                    Ok(c) => held.push(c),
                    Err(_) => failed += 1,
                }
            }
            let opened = held.len();
            // Hold them (the server may close some to make room).
            for _ in 0..36_000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            (opened, failed)
        },
    )
}

/// An attack tool (or wrk) as a child process; killed when dropped.
pub struct Tool {
    pub name: String,
    child: Option<Child>,
    started: Instant,
    /// Killed after this long if it has not ended by itself.
    limit: Duration,
}

impl Tool {
    /// Starts `cmd`; `limit` bounds its run. Panics with `hint` if the program
    /// is missing.
    pub fn spawn(name: &str, mut cmd: Command, limit: Duration, hint: &str) -> Tool {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {name}: {e} ({hint})"));
        Tool {
            name: name.to_string(),
            child: Some(child),
            started: Instant::now(),
            limit,
        }
    }

    /// Waits for it to end by itself, killing it at its limit; its output
    /// (stdout then stderr) and whether it was killed.
    pub fn finish(mut self) -> (String, bool) {
        let mut child = self.child.take().expect("finished once");
        let mut killed = false;
        for _ in 0..100_000 {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if self.started.elapsed() >= self.limit => {
                    interrupt(&mut child);
                    killed = true;
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let out = child.wait_with_output();
        let text = match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("({} output: {e})", self.name),
        };
        (text, killed)
    }

    /// Ends it now (for tools that run until stopped).
    pub fn stop(mut self) -> String {
        self.limit = Duration::ZERO;
        self.finish().0
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGINT (tools print their summary on it), then SIGKILL if it has not
/// ended within [`INTERRUPT_GRACE`].
fn interrupt(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let until = Instant::now() + INTERRUPT_GRACE;
    for _ in 0..1000 {
        if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= until {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}

/// CPU time QEMU process `pid` has used (user + system), from `/proc`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// The guest's address as the attack tools take it.
pub fn host_of(target: &Target) -> Ipv4Addr {
    *target.addr().ip()
}
