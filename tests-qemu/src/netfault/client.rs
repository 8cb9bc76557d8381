//! HTTP from inside the namespace: timed fetches and the `/health` prober.

use super::*;

/// A completed response.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub status: u16,
    pub body: Vec<u8>,
    /// From starting to connect to the last body byte.
    pub elapsed: Duration,
    /// The longest time without a byte arriving, connect included.
    pub max_gap: Duration,
    /// Whether the server said `Connection: close`.
    pub close: bool,
}

impl Fetch {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response that did not complete, and how far it got.
#[derive(Clone, Debug)]
pub struct FetchError {
    pub what: String,
    /// Response bytes (head and body) received.
    pub bytes: usize,
    pub elapsed: Duration,
    pub max_gap: Duration,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {:.2?}, {} bytes received, longest gap {:.2?})",
            self.what, self.elapsed, self.bytes, self.max_gap
        )
    }
}

/// Arrival times of a response's bytes.
struct Progress {
    start: Instant,
    last: Instant,
    max_gap: Duration,
    bytes: usize,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            start: now,
            last: now,
            max_gap: Duration::ZERO,
            bytes: 0,
        }
    }

    fn got(&mut self, n: usize) {
        let now = Instant::now();
        self.max_gap = self.max_gap.max(now - self.last);
        self.last = now;
        self.bytes += n;
    }

    fn error(&self, what: impl Into<String>) -> FetchError {
        FetchError {
            what: what.into(),
            bytes: self.bytes,
            elapsed: self.start.elapsed(),
            max_gap: self.max_gap.max(self.last.elapsed()),
        }
    }
}

pub(super) fn fetch(
    ns: &str,
    addr: SocketAddrV4,
    path: &str,
    deadline: Duration,
    stall: Duration,
) -> Result<Fetch, FetchError> {
    let mut progress = Progress::new();
    let end = progress.start + deadline;
    let mut stream = connect_in(ns, addr, stall.min(deadline))
        .map_err(|e| progress.error(format!("connect {addr}: {e}")))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {GUEST_IP}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(stall))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| progress.error(format!("sending GET {path}: {e}")))?;
    read_response(&mut stream, end, stall, &mut progress)
}

/// Reads one response (head, then a `Content-Length` body) from `stream`,
/// parsed by [`crate::http::parse_response`], timing every byte's arrival.
fn read_response(
    stream: &mut TcpStream,
    end: Instant,
    stall: Duration,
    progress: &mut Progress,
) -> Result<Fetch, FetchError> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Each pass reads at least one byte or returns.
    for _ in 0..=MAX_HEAD + MAX_BODY {
        if buf.len() > MAX_HEAD + MAX_BODY {
            return Err(progress.error(format!("response over {} bytes", MAX_HEAD + MAX_BODY)));
        }
        match parse_response(&buf, false) {
            Ok(Some((response, used))) => {
                if buf.len() > used {
                    return Err(
                        progress.error(format!("{} bytes after the response", buf.len() - used))
                    );
                }
                let close = response.closes();
                return Ok(Fetch {
                    status: response.status,
                    body: response.body,
                    elapsed: progress.start.elapsed(),
                    max_gap: progress.max_gap,
                    close,
                });
            }
            Ok(None) => {}
            Err(e) => return Err(progress.error(e)),
        }
        let now = Instant::now();
        if now >= end {
            return Err(progress.error("deadline passed"));
        }
        let wait = stall.min(end - now).max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| progress.error(format!("set_read_timeout: {e}")))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(progress.error("connection closed before the response ended")),
            Ok(n) => {
                progress.got(n);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= end {
                    return Err(progress.error("deadline passed"));
                }
                return Err(progress.error(format!("stalled: no byte for {wait:?}")));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(progress.error(format!("read: {e}"))),
        }
    }
    Err(progress.error("too many reads"))
}

/// One `/health` probe: when it started (from the prober's start) and how
/// long it took, or why it failed.
#[derive(Clone, Debug)]
pub struct Probe {
    pub at: Duration,
    pub result: Result<Duration, String>,
    /// Whether the probe had to open a new connection.
    pub connected: bool,
}

/// `GET /health` every `interval` on one keep-alive connection (a new one
/// after an error or a close), each probe bounded by `limit`.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Probe>>>,
}

impl Prober {
    pub(super) fn start(
        ns: String,
        addr: SocketAddrV4,
        interval: Duration,
        limit: Duration,
    ) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || probe_loop(&ns, addr, interval, limit, &flag));
        Prober {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after the probe in progress; every probe made.
    pub fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(probes)) => probes,
            Some(Err(_)) => panic!("the /health prober panicked"),
            None => Vec::new(),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn probe_loop(
    ns: &str,
    addr: SocketAddrV4,
    interval: Duration,
    limit: Duration,
    stop: &AtomicBool,
) -> Vec<Probe> {
    let start = Instant::now();
    let mut probes = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let request = format!("GET /health HTTP/1.1\r\nHost: {GUEST_IP}\r\n\r\n");
    for i in 0..MAX_PROBES {
        // Sleep in short steps until this probe's slot, watching `stop`.
        let slot = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        while Instant::now() < slot && !stop.load(Ordering::Relaxed) {
            thread::sleep((slot - Instant::now()).min(Duration::from_millis(50)));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = start.elapsed();
        let mut progress = Progress::new();
        let end = progress.start + limit;
        let connected = conn.is_none();
        let result = (|| -> Result<Fetch, FetchError> {
            if conn.is_none() {
                let s = connect_in(ns, addr, limit)
                    .map_err(|e| progress.error(format!("connect: {e}")))?;
                conn = Some(s);
            }
            let Some(s) = conn.as_mut() else {
                return Err(progress.error("no connection"));
            };
            s.set_write_timeout(Some(limit))
                .and_then(|()| s.write_all(request.as_bytes()))
                .map_err(|e| progress.error(format!("send: {e}")))?;
            read_response(s, end, limit, &mut progress)
        })();
        let result = match result {
            Ok(f) if f.status == 200 && f.body == b"ok\n" => {
                if f.close {
                    conn = None;
                }
                Ok(f.elapsed)
            }
            Ok(f) => {
                conn = None;
                Err(format!("status {} body {:?}", f.status, f.body_text()))
            }
            Err(e) => {
                conn = None;
                Err(e.to_string())
            }
        };
        probes.push(Probe {
            at,
            result,
            connected,
        });
    }
    probes
}

/// Summary of probe latencies: count, failures, late (over `late`), median,
/// 90th percentile, max.
pub fn probe_summary(probes: &[Probe], late: Duration) -> String {
    let mut ok: Vec<Duration> = probes
        .iter()
        .filter_map(|p| p.result.as_ref().ok().copied())
        .collect();
    ok.sort();
    let pct = |p: usize| {
        ok.get((ok.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "{} probes ({} on new connections): {} failed, {} over {late:?}; median {:.0?}, p90 {:.0?}, max {:.0?}",
        probes.len(),
        probes.iter().filter(|p| p.connected).count(),
        probes.iter().filter(|p| p.result.is_err()).count(),
        ok.iter().filter(|d| **d > late).count(),
        pct(50),
        pct(90),
        ok.last().copied().unwrap_or_default()
    )
}

/// Index of the first difference between `got` and `want` (byte-exact check),
/// `None` if equal.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    Some(
        got.iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len())),
    )
}

/// A file of the baked site, read from `kernel/site/` on the host.
pub fn site_file(name: &str) -> Vec<u8> {
    let path = boot_image::repo_root().join("kernel/site").join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
