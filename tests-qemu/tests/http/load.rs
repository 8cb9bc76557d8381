//! Load with wrk and the host CPU an idle guest costs.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, Stats, Transport, boot_http, site_file};

/// wrk's connections (the guest gets a pool of this plus a few).
const WRK_CONNECTIONS: u32 = 64;
/// QEMU's host listener has a backlog of 1: a burst of connects overflows the
/// host's accept queue, and a connection then waits for TCP retransmits (SYN,
/// or its first data with SYN cookies) with exponential backoff before QEMU
/// accepts it and the guest sees it.
const WRK_TIMEOUT: &str = "10s";
const WRK_TIMEOUT_DURATION: Duration = Duration::from_secs(10);
/// The probe beside wrk: one request a second on a keep-alive connection
/// opened before wrk, each answered within the limit.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// Heap growth allowed across a load run.
const HEAP_SLACK: u64 = 64 * 1024;
/// An idle guest may use at most this share of one host core.
const IDLE_CPU_LIMIT_PERCENT: f64 = 20.0;
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// What one wrk run reported.
struct Wrk {
    requests: u64,
    per_second: f64,
    /// `Socket errors:` connect, read, write, timeout (all 0 when absent).
    errors: [u64; 4],
    output: String,
}

/// One sample of the probe that runs beside wrk.
struct Sample {
    at: Duration,
    latency: Duration,
    accepted: u64,
}

/// `Socket errors: connect 0, read 0, write 0, timeout 2` -> [0, 0, 0, 2].
fn socket_errors(output: &str) -> Option<[u64; 4]> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))?;
    let mut out = [0u64; 4];
    for (i, name) in ["connect", "read", "write", "timeout"].iter().enumerate() {
        let rest = &line[line.find(name)? + name.len()..];
        out[i] = rest.trim_start().split(',').next()?.trim().parse().ok()?;
    }
    Some(out)
}

/// Runs wrk against `path` and fails the test on socket errors, non-2xx
/// responses, or a failed run. Bounded: killed if it overruns by 30 s.
fn run_wrk(g: &HttpGuest, path: &str, connections: u32, seconds: u64) -> Wrk {
    let url = g.url(path);
    let mut child = match Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            WRK_TIMEOUT,
            "--latency",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "wrk is not installed: scripts/test installs it (apt-get install wrk); \
             the HTTP load test needs it"
        ),
        Err(e) => panic!("running wrk: {e}"),
    };
    let limit = Duration::from_secs(seconds + 30);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                g.fail(format_args!("wrk still running after {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => g.fail(format_args!("waiting for wrk: {e}")),
        }
    };
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| g.fail(format_args!("wrk output: {e}")));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !status.success() {
        g.fail(format_args!("wrk failed ({status}):\n{output}"));
    }
    let errors = match socket_errors(&output) {
        Some(e) => e,
        None if output.contains("Socket errors") => {
            g.fail(format_args!("unreadable `Socket errors` line:\n{output}"))
        }
        None => [0; 4],
    };
    if output.contains("Non-2xx") {
        g.fail(format_args!("wrk saw non-2xx responses:\n{output}"));
    }
    let requests = output
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| g.fail(format_args!("no request count in wrk's output:\n{output}")));
    let per_second = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
        .unwrap_or_else(|| g.fail(format_args!("no Requests/sec in wrk's output:\n{output}")));
    if requests == 0 {
        g.fail(format_args!("wrk completed no request:\n{output}"));
    }
    Wrk {
        requests,
        per_second,
        errors,
        output,
    }
}

/// The latency percentiles line of wrk's `--latency` output, for the log.
fn latency_summary(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("50%") || l.starts_with("99%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the stats across a wrk run of `wrk.requests` requests with
/// `body_len`-byte bodies; returns the settled stats after.
fn check_after_load(g: &HttpGuest, before: &Stats, wrk: &Wrk, body_len: u64) -> Stats {
    let (after, _) = g.stats_until(
        Duration::from_secs(15),
        "connections_active back to 1 after wrk",
        |s| s.get("connections_active") <= 1,
    );
    let mut problems = Vec::new();
    for (name, min) in [
        ("requests_total", wrk.requests),
        ("status_2xx", wrk.requests),
        ("response_body_bytes", wrk.requests * body_len),
    ] {
        let got = after.delta(before, name);
        if got < min {
            problems.push(format!("{name} grew by {got}, less than {min}"));
        }
    }
    for name in [
        "status_1xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
        "connections_refused",
        "connections_timed_out",
        "device_resets",
    ] {
        let got = after.delta(before, name);
        if got != 0 {
            problems.push(format!("{name} grew by {got}"));
        }
    }
    let (h0, h1) = (before.get("heap_used"), after.get("heap_used"));
    if h1.abs_diff(h0) > HEAP_SLACK {
        problems.push(format!(
            "heap_used {h0} -> {h1}: more than {HEAP_SLACK} bytes apart"
        ));
    }
    if !problems.is_empty() {
        g.fail(format_args!(
            "after wrk ({} requests):\n  {}\nbefore: {}\nafter: {}\nwrk:\n{}",
            wrk.requests,
            problems.join("\n  "),
            before.text,
            after.text,
            wrk.output
        ));
    }
    after
}

/// Runs wrk (see [`run_wrk`]) while a probe on a keep-alive connection opened
/// before it fetches `/api/stats.json` every second; fails if a probe is not
/// answered within [`PROBE_LIMIT`], or wrk saw a connect, read or write error,
/// or more timeouts than the host's accept queue explains (see
/// [`WRK_TIMEOUT`]).
fn wrk_with_probe(g: &HttpGuest, path: &str, seconds: u64) -> (Wrk, Vec<Sample>) {
    let mut probe = g.admin_connect();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (wrk, samples) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| -> Result<Vec<Sample>, String> {
            let mut samples = Vec::new();
            // Bounded by the stop flag and by wrk's own limit (seconds + 30).
            for _ in 0..(seconds + 40) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = Instant::now();
                probe
                    .send(b"GET /api/stats.json HTTP/1.1\r\nHost: probe\r\n\r\n")
                    .map_err(|e| format!("probe write: {e}"))?;
                let r = probe.read_response(false)?;
                let latency = sent.elapsed();
                let stats = Stats::parse(&r.body)?;
                samples.push(Sample {
                    at: sent - start,
                    latency,
                    accepted: stats.get("connections_accepted"),
                });
                std::thread::sleep(PROBE_EVERY.saturating_sub(latency));
            }
            Ok(samples)
        });
        let wrk = run_wrk(g, path, WRK_CONNECTIONS, seconds);
        stop.store(true, Ordering::Relaxed);
        let samples = prober.join();
        (wrk, samples)
    });
    let samples = match samples {
        Ok(Ok(samples)) => samples,
        Ok(Err(e)) => g.fail(format_args!("the probe beside wrk failed: {e}")),
        Err(_) => g.fail("the probe thread panicked"),
    };
    if let Some(slow) = samples.iter().find(|s| s.latency > PROBE_LIMIT) {
        g.fail(format_args!(
            "a probe {:.1?} into the wrk run took {:.2?} (limit {PROBE_LIMIT:?}): the guest stalled",
            slow.at, slow.latency
        ));
    }
    if samples.len() < (seconds as usize).saturating_sub(2) {
        g.fail(format_args!(
            "only {} probes during a {seconds} s wrk run",
            samples.len()
        ));
    }
    let [connect, read, write, timeout] = wrk.errors;
    if connect + read + write > 0 {
        g.fail(format_args!("wrk saw socket errors:\n{}", wrk.output));
    }
    // A wrk connection the host kernel has not yet handed to QEMU (listen
    // overflow: QEMU listens with a backlog of 1) waits for TCP retransmits
    // with backoff; its first request then counts as a timeout if that took
    // more than WRK_TIMEOUT. Only wrk connections the guest had not accepted
    // by then may explain a timeout.
    let first = samples.first().map_or(0, |s| s.accepted);
    let accepted_by_deadline = samples
        .iter()
        .filter(|s| s.at + PROBE_EVERY < WRK_TIMEOUT_DURATION)
        .map(|s| s.accepted - first)
        .max()
        .unwrap_or(0);
    let late = u64::from(WRK_CONNECTIONS).saturating_sub(accepted_by_deadline);
    if timeout > late {
        g.fail(format_args!(
            "wrk counted {timeout} timeouts, but only {late} of its {WRK_CONNECTIONS} connections \
             had not reached the guest {WRK_TIMEOUT} into the run:\n{}",
            wrk.output
        ));
    }
    if timeout > 0 {
        g.note(format_args!(
            "wrk: {timeout} request(s) over {WRK_TIMEOUT}, all on connections that reached the \
             guest late ({late} of {WRK_CONNECTIONS} not accepted by QEMU's host listener in time)"
        ));
    }
    (wrk, samples)
}

pub fn wrk_keep_alive_load(transport: Transport) {
    // The modern variant runs shorter to keep the suite's time down.
    let (health_secs, index_secs) = match transport {
        Transport::Legacy => (20, 5),
        Transport::Modern => (10, 3),
    };
    // wrk's connections, the probe's and the stats requests' must all fit.
    let sockets = format!("sockets={}", WRK_CONNECTIONS + 8);
    let g = boot_http("wrk", transport, &[&sockets]);
    let index_len = site_file("index.html").len() as u64;

    let s0 = g.stats();
    let (health, probes) = wrk_with_probe(&g, "/health", health_secs);
    let s1 = check_after_load(&g, &s0, &health, 3);
    let (index, _) = wrk_with_probe(&g, "/", index_secs);
    let s2 = check_after_load(&g, &s1, &index, index_len);
    g.wait_healthy(Duration::from_secs(5));
    let worst_probe = probes.iter().map(|s| s.latency).max().unwrap_or_default();
    let reached =
        probes.last().map_or(0, |s| s.accepted) - probes.first().map_or(0, |s| s.accepted);
    g.note(format_args!(
        "accel={:?} {transport:?}: wrk -t2 -c{WRK_CONNECTIONS} -d{health_secs}s /health: \
         {} requests, {:.0} req/s ({}), {reached} of its connections reached the guest, \
         slowest of {} probes {worst_probe:.2?}; -d{index_secs}s /: {} requests, {:.0} req/s ({}); \
         heap_used {} -> {} -> {} bytes; {} frames in, {} tx-full events",
        g.guest.accel(),
        health.requests,
        health.per_second,
        latency_summary(&health.output),
        probes.len(),
        index.requests,
        index.per_second,
        latency_summary(&index.output),
        s0.get("heap_used"),
        s1.get("heap_used"),
        s2.get("heap_used"),
        s2.delta(&s0, "frames_in"),
        s2.delta(&s0, "tx_full_events"),
    ));
    g.finish();
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`).
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let field = |n: usize| -> Result<f64, String> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64)
            .ok_or_else(|| format!("{path}: field {n} in {stat:?}"))
    };
    Ok((field(14)? + field(15)?) / ticks_per_second)
}

/// Clock ticks per second for `/proc` times (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn idle_guest_uses_little_host_cpu(transport: Transport) {
    let g = boot_http("idle_cpu", transport, &[]);
    // A little traffic first, so the idle state follows real work.
    for path in ["/health", "/", "/style.css", "/large.bin", "/health"] {
        let r = g.get(path);
        if r.status != 200 {
            g.fail(format_args!("GET {path}: {}", r.status));
        }
    }
    let s0 = g.stats();
    std::thread::sleep(Duration::from_millis(500));
    let hz = clock_ticks();
    let pid = g.guest.pid();
    let c0 = cpu_seconds(pid, hz).unwrap_or_else(|e| g.fail(e));
    let t0 = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let c1 = cpu_seconds(pid, hz).unwrap_or_else(|e| g.fail(e));
    let wall = t0.elapsed().as_secs_f64();
    let percent = (c1 - c0) / wall * 100.0;
    let s1 = g.stats();
    let loops = s1.delta(&s0, "loop_iterations");
    let ticks = s1.delta(&s0, "interrupts_timer");
    g.note(format_args!(
        "accel={:?} {transport:?}: idle QEMU used {percent:.1}% of a core over {wall:.1} s \
         ({:.2} s CPU); guest: {loops} loop iterations, {ticks} timer ticks meanwhile",
        g.guest.accel(),
        c1 - c0,
    ));
    if percent >= IDLE_CPU_LIMIT_PERCENT {
        g.fail(format_args!(
            "an idle guest used {percent:.1}% of a host core (limit {IDLE_CPU_LIMIT_PERCENT}%): \
             busy waiting?"
        ));
    }
    // The tick keeps running while idle, and the loop sleeps between ticks
    // (a spinning loop makes millions of iterations in 10 s).
    let window_ms = (wall * 1000.0) as u64;
    if ticks * 10 < window_ms / 2 {
        g.fail(format_args!(
            "only {ticks} timer ticks over {window_ms} ms: the 100 Hz tick stopped while idle"
        ));
    }
    if loops > ticks * 4 + 1000 {
        g.fail(format_args!(
            "{loops} loop iterations for {ticks} ticks while idle: the main loop does not sleep"
        ));
    }
    g.finish();
}
