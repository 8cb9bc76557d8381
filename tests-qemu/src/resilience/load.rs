//! Load beside a fault: wrk runs, `/health` probes and keep-alive pools.

use super::*;

/// wrk running in the background; killed if dropped unfinished.
pub struct Wrk {
    child: Option<Child>,
    seconds: u64,
    started: Instant,
    pub args: Vec<String>,
}

/// wrk's summary.
#[derive(Clone, Debug)]
pub struct WrkReport {
    pub requests: u64,
    pub per_second: f64,
    /// `Socket errors: ...` if wrk printed that line.
    pub socket_errors: Option<String>,
    /// `Non-2xx or 3xx responses: N`.
    pub non_2xx: u64,
    pub output: String,
    pub elapsed: Duration,
}

impl WrkReport {
    /// Fails with the output unless there were no socket errors, only 2xx and
    /// at least one request.
    pub fn check_clean(&self, g: &HttpGuest, what: &str) {
        if self.socket_errors.is_some() || self.non_2xx != 0 || self.requests == 0 {
            g.fail(format_args!(
                "{what}: wrk saw socket errors {:?}, {} non-2xx/3xx, {} requests:\n{}",
                self.socket_errors, self.non_2xx, self.requests, self.output
            ));
        }
    }
}

impl Wrk {
    /// `wrk -t2 -c<connections> -d<seconds>s --timeout <timeout_s>s [-s script] <url>`,
    /// keep-alive (`SOAK_CLOSE=0` for mixed.lua).
    pub fn spawn(
        url: &str,
        connections: u32,
        seconds: u64,
        timeout_s: u64,
        script: Option<PathBuf>,
    ) -> Wrk {
        let mut args = vec![
            "-t2".to_string(),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--timeout".to_string(),
            format!("{timeout_s}s"),
        ];
        if let Some(script) = script {
            args.push("-s".to_string());
            args.push(script.to_string_lossy().into_owned());
        }
        args.push(url.to_string());
        let child = match Command::new("wrk")
            .args(&args)
            .env("SOAK_CLOSE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "wrk is not installed: scripts/test installs it (apt-get install wrk); \
                 the resilience tests need it"
            ),
            Err(e) => panic!("running wrk: {e}"),
        };
        Wrk {
            child: Some(child),
            seconds,
            started: Instant::now(),
            args,
        }
    }

    /// Waits for wrk to end (at most its duration plus `grace`, else kills it
    /// and fails) and parses its summary.
    pub fn wait(mut self, grace: Duration) -> Result<WrkReport, String> {
        let mut child = self.child.take().expect("waited once");
        let limit = Duration::from_secs(self.seconds) + grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if self.started.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("wrk {:?} still running after {limit:?}", self.args));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("waiting for wrk: {e}")),
            }
        };
        let elapsed = self.started.elapsed();
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wrk output: {e}"))?;
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !status.success() {
            return Err(format!("wrk failed ({status}):\n{output}"));
        }
        parse_wrk(&output, elapsed)
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses wrk's summary.
pub fn parse_wrk(output: &str, elapsed: Duration) -> Result<WrkReport, String> {
    let requests = output
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .ok_or_else(|| format!("no request count in wrk's output:\n{output}"))?;
    let per_second = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{output}"))?;
    let socket_errors = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|s| s.trim().to_string());
    let non_2xx = output
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Non-2xx or 3xx responses:")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Ok(WrkReport {
        requests,
        per_second,
        socket_errors,
        non_2xx,
        output: output.to_string(),
        elapsed,
    })
}

/// `GET /health` on `client` (keep-alive); the time to a `200 ok`, or why not.
pub fn health_on(client: &mut Client) -> Result<Duration, String> {
    let start = Instant::now();
    client
        .send(b"GET /health HTTP/1.1\r\nHost: probe\r\n\r\n")
        .map_err(|e| format!("sending: {e}"))?;
    let r = client.read_response(false)?;
    if r.status != 200 || r.body != b"ok\n" {
        return Err(format!("status {} body {:?}", r.status, r.body_text()));
    }
    Ok(start.elapsed())
}

/// What a [`HealthProbe`] saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeReport {
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
}

impl ProbeReport {
    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    pub fn median(&self) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(l.len() / 2).copied().unwrap_or_default()
    }
}

/// `GET /health` every second on one keep-alive connection (reopened after a
/// failure); a probe fails if it errs or takes longer than [`HEALTH_LIMIT`].
pub struct HealthProbe {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ProbeReport>>,
}

impl HealthProbe {
    pub fn start(addr: SocketAddr) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut report = ProbeReport::default();
            let mut conn: Option<Client> = None;
            // Bounded: one probe a second for at most an hour.
            for _ in 0..3600 {
                if flag.load(Ordering::Acquire) {
                    break;
                }
                let start = Instant::now();
                let result = match conn.as_mut() {
                    Some(c) => health_on(c),
                    None => match Client::connect(addr, Duration::from_secs(5)) {
                        Ok(c) => health_on(conn.insert(c)),
                        Err(e) => Err(format!("connect: {e}")),
                    },
                };
                match result {
                    Ok(took) => {
                        report.latencies.push(took);
                        if took > HEALTH_LIMIT {
                            report.failures.push(format!("answered after {took:.2?}"));
                        }
                    }
                    Err(e) => {
                        report
                            .failures
                            .push(format!("{e} after {:.2?}", start.elapsed()));
                        conn = None;
                    }
                }
                // Sleep out the second in small steps, to stop promptly.
                for _ in 0..100 {
                    if flag.load(Ordering::Acquire) || start.elapsed() >= Duration::from_secs(1) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            report
        });
        HealthProbe {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Release);
        match self.handle.take().expect("stopped once").join() {
            Ok(report) => report,
            Err(_) => panic!("the health probe thread panicked"),
        }
    }
}

impl Drop for HealthProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Keep-alive connections opened (and each checked with one `/health`) before
/// an outage, left idle through it, then used to measure recovery.
pub struct KeepAlivePool {
    clients: Vec<Client>,
}

impl KeepAlivePool {
    pub fn open(g: &HttpGuest, n: usize) -> KeepAlivePool {
        let mut clients = Vec::new();
        for i in 0..n {
            let mut c = g.connect();
            if let Err(e) = health_on(&mut c) {
                g.fail(format_args!(
                    "keep-alive connection {i}: /health before the outage: {e}"
                ));
            }
            clients.push(c);
        }
        KeepAlivePool { clients }
    }

    /// Sends `GET /health` on connection `i` at `start + i * spacing`, all at
    /// once in threads; for each, when its `200 ok` arrived (from `start`) or
    /// why not. Each read waits at most `timeout`.
    pub fn probe_from(
        self,
        start: Instant,
        spacing: Duration,
        timeout: Duration,
    ) -> Vec<Result<Duration, String>> {
        let handles: Vec<_> = self
            .clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                std::thread::spawn(move || {
                    let at = start + spacing * i as u32;
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    let _ = c.stream.set_read_timeout(Some(timeout));
                    health_on(&mut c).map(|_| start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("probe thread panicked".into()))
            })
            .collect()
    }
}

/// `GET /health` on a new connection (`Connection: close`, connect and reads
/// bounded by [`HEALTH_LIMIT`]) every `spacing` from `start` until one answers
/// `200 ok` or `limit` passes; when the first one answered (from `start`), and
/// how many tries it took.
pub fn poll_fresh_health(
    addr: SocketAddr,
    start: Instant,
    spacing: Duration,
    limit: Duration,
) -> (Option<Duration>, u32) {
    for tries in 1..=10_000u32 {
        let attempt = Instant::now();
        let ok = Client::connect(addr, HEALTH_LIMIT).is_ok_and(|mut c| {
            c.send(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .is_ok()
                && c.read_response(false)
                    .is_ok_and(|r| r.status == 200 && r.body == b"ok\n")
        });
        if ok {
            return (Some(start.elapsed()), tries);
        }
        if start.elapsed() >= limit {
            return (None, tries);
        }
        std::thread::sleep(spacing.saturating_sub(attempt.elapsed()));
    }
    (None, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_wrk_summaries() {
        let clean = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n\
            \x20 18275 requests in 5.10s, 1.2GB read\nRequests/sec:   3650.12\nTransfer/sec: 1MB\n";
        let r = parse_wrk(clean, Duration::from_secs(5)).unwrap();
        assert_eq!((r.requests, r.socket_errors, r.non_2xx), (18275, None, 0));
        assert!((r.per_second - 3650.12).abs() < 1e-9);
        let bad = "  10 requests in 1.00s, 1KB read\n  Socket errors: connect 0, read 0, write 0, timeout 5\n\
            \x20 Non-2xx or 3xx responses: 3\nRequests/sec:   10.00\n";
        let r = parse_wrk(bad, Duration::from_secs(1)).unwrap();
        assert_eq!(
            r.socket_errors.as_deref(),
            Some("connect 0, read 0, write 0, timeout 5")
        );
        assert_eq!(r.non_2xx, 3);
        assert!(parse_wrk("unable to connect", Duration::ZERO).is_err());
    }
}
