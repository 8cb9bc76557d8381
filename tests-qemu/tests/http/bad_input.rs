//! Bad input: a corpus of malformed, oversized and smuggling-shaped requests
//! sent raw, and slow clients against the header deadline.

use std::time::{Duration, Instant};

use tests_qemu::http::{Ending, HttpGuest, Response, Transport, boot_http, parse_all};

use super::corpus::{Case, Expect, corpus};

/// How long a connection the server answered with an error may stay open.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "?",
    }
}

/// The shape of an error response the connection generates.
fn error_shape(r: &Response, status: u16, head: bool) -> Result<(), String> {
    let body = format!("{status} {}\n", reason(status));
    if r.status != status {
        return Err(format!("status {}, want {status}", r.status));
    }
    if r.reason != reason(status) {
        return Err(format!("reason {:?}", r.reason));
    }
    if !r.closes() {
        return Err("no Connection: close".into());
    }
    if r.content_length() != Some(body.len() as u64) {
        return Err(format!("Content-Length {:?}", r.header("content-length")));
    }
    let want_body: &[u8] = if head { b"" } else { body.as_bytes() };
    if r.body != want_body {
        return Err(format!("body {:?}, want {want_body:?}", r.body_text()));
    }
    if status == 405 && r.header("allow") != Some("GET, HEAD") {
        return Err(format!("Allow {:?}", r.header("allow")));
    }
    Ok(())
}

/// Sends one case on a new connection and checks what comes back.
fn run_case(g: &HttpGuest, case: &Case) -> Result<String, String> {
    let mut c = g.connect();
    // The server may answer and close before it has read everything (a line
    // that never ends): a failed write is not an error by itself.
    let write = c.send(&case.bytes);
    match case.expect {
        Expect::Error(status) => {
            let start = Instant::now();
            let (ending, bytes) = c.read_until_close(CLOSE_WITHIN);
            let (responses, rest) = parse_all(&bytes, &[case.head])?;
            if ending == Ending::TimedOut {
                return Err(format!(
                    "connection still open {CLOSE_WITHIN:?} after the request ({} responses)",
                    responses.len()
                ));
            }
            if responses.len() != 1 || !rest.is_empty() {
                return Err(format!(
                    "{} responses and {} more bytes on the wire (want exactly one); \
                     ended by {ending:?}; write: {write:?}; wire: {:?}",
                    responses.len(),
                    rest.len(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
                ));
            }
            error_shape(&responses[0], status, case.head)
                .map_err(|e| format!("{e}\n{}", responses[0].head_text()))?;
            Ok(format!(
                "{status} then {ending:?} after {:.0?}",
                start.elapsed()
            ))
        }
        Expect::Served(status) => {
            write.map_err(|e| format!("write: {e}"))?;
            let r = c.read_response(case.head)?;
            if r.status != status || r.closes() {
                return Err(format!("want {status} keep-alive\n{}", r.head_text()));
            }
            // Exactly one response, and the connection still serves.
            c.send(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
                .map_err(|e| format!("follow-up write: {e}"))?;
            let next = c.read_response(false)?;
            if next.status != 200 || next.body != b"ok\n" {
                return Err(format!(
                    "follow-up on the same connection (an extra response?)\n{}",
                    next.head_text()
                ));
            }
            Ok(format!("{status}, connection reused"))
        }
    }
}

pub fn malformed_and_oversized_requests(transport: Transport) {
    let g = boot_http("malformed", transport, &[]);
    let cases = corpus();
    let s0 = g.stats();
    let (mut want_4xx, mut want_5xx, mut want_2xx, mut requests) = (0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for case in &cases {
        match run_case(&g, case) {
            Ok(_) => {}
            Err(e) => failures.push(format!("{} ({:?}): {e}", case.name, case.expect)),
        }
        let status = match case.expect {
            Expect::Error(s) => s,
            Expect::Served(s) => {
                want_2xx += 1; // the follow-up /health
                requests += 1;
                s
            }
        };
        requests += 1;
        match status {
            200..=299 => want_2xx += 1,
            400..=499 => want_4xx += 1,
            _ => want_5xx += 1,
        }
        // A normal request on a new connection must succeed after each case.
        if let Err(e) = g.try_get("/health").and_then(|r| {
            (r.status == 200 && r.body == b"ok\n")
                .then_some(())
                .ok_or(format!("status {}", r.status))
        }) {
            failures.push(format!("GET /health after {:?}: {e}", case.name));
        }
        want_2xx += 1;
        requests += 1;
    }
    if !failures.is_empty() {
        g.fail(format_args!(
            "{} of {} cases failed:\n  {}",
            failures.len(),
            cases.len(),
            failures.join("\n  ")
        ));
    }
    // Every response was counted by class; the stats request itself adds one 2xx.
    let (s1, fetches) = g.stats_until(Duration::from_secs(10), "connections back to 1", |s| {
        s.get("connections_active") == 1
    });
    let got = (
        s1.delta(&s0, "requests_total"),
        s1.delta(&s0, "status_2xx"),
        s1.delta(&s0, "status_4xx"),
        s1.delta(&s0, "status_5xx"),
    );
    let want = (requests + fetches, want_2xx + fetches, want_4xx, want_5xx);
    if got != want {
        g.fail(format_args!(
            "stats deltas (requests, 2xx, 4xx, 5xx) {got:?}, want {want:?}\n{}",
            s1.text
        ));
    }
    g.note(format_args!(
        "{} raw cases: one response each, counted: {want_4xx} 4xx, {want_5xx} 5xx",
        cases.len()
    ));
    g.finish();
}

/// Header deadline for the slow-client test.
const HEADER_TIMEOUT_MS: u64 = 1000;
/// The 408 must come no later than this after the deadline.
const LATE_BY_AT_MOST: Duration = Duration::from_secs(3);

/// Sends `bytes` (all at once, or one byte every `drip` until the server
/// answers), then waits for exactly one 408 and the close. Returns when the
/// first byte of the answer came, counted from the first byte sent.
fn expect_408(
    g: &HttpGuest,
    what: &str,
    bytes: &[u8],
    drip: Option<Duration>,
    head: bool,
) -> Duration {
    let deadline = Duration::from_millis(HEADER_TIMEOUT_MS);
    let limit = deadline + LATE_BY_AT_MOST;
    let mut c = g.connect();
    let start = Instant::now();
    let mut wire = Vec::new();
    let mut ending = Ending::TimedOut;
    let mut answered = None;
    let poll = drip.unwrap_or(Duration::from_millis(20));
    let mut unsent = bytes;
    // Bounded by `limit` (and by the number of bytes when dripping).
    while answered.is_none() && start.elapsed() <= limit {
        if !unsent.is_empty() {
            let n = if drip.is_some() { 1 } else { unsent.len() };
            if let Err(e) = c.send(&unsent[..n]) {
                g.fail(format_args!("{what}: write failed before any answer: {e}"));
            }
            unsent = &unsent[n..];
        }
        let (e, got) = c.read_until_close(poll);
        wire.extend_from_slice(&got);
        ending = e;
        if !wire.is_empty() || ending != Ending::TimedOut {
            answered = Some(start.elapsed());
        }
    }
    let Some(answered) = answered else {
        g.fail(format_args!(
            "{what}: no answer within {limit:?} (header deadline {deadline:?})"
        ));
    };
    if ending == Ending::TimedOut {
        let (e, got) = c.read_until_close(CLOSE_WITHIN);
        wire.extend_from_slice(&got);
        ending = e;
    }
    let (responses, rest) =
        parse_all(&wire, &[head]).unwrap_or_else(|e| g.fail(format_args!("{what}: {e}")));
    if responses.len() != 1 || !rest.is_empty() || ending == Ending::TimedOut {
        g.fail(format_args!(
            "{what}: {} responses, {} bytes more, ended by {ending:?} (want one 408 then close): {:?}",
            responses.len(),
            rest.len(),
            String::from_utf8_lossy(&wire)
        ));
    }
    if let Err(e) = error_shape(&responses[0], 408, head) {
        g.fail(format_args!("{what}: {e}\n{}", responses[0].head_text()));
    }
    if answered + Duration::from_millis(100) < deadline {
        g.fail(format_args!(
            "{what}: 408 after {answered:.2?}, before the {deadline:?} header deadline"
        ));
    }
    answered
}

pub fn slow_header_gets_408_then_close(transport: Transport) {
    let timeout = format!("header_timeout_ms={HEADER_TIMEOUT_MS}");
    let g = boot_http("slow_header", transport, &[&timeout]);
    // An idle connection is not on the header deadline (idle default: 15 s).
    let mut idle = g.connect();
    let s0 = g.stats();

    let half = expect_408(
        &g,
        "half a request",
        b"GET /health HTTP/1.1\r\nHost: a\r\n",
        None,
        false,
    );
    let line = expect_408(&g, "half a request line", b"GET /hea", None, false);
    let head = expect_408(&g, "half a HEAD", b"HEAD /health HTTP/1.1\r\n", None, true);
    let body = expect_408(
        &g,
        "body short of its Content-Length",
        b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345",
        None,
        false,
    );
    // Slowloris: one byte every 100 ms keeps coming, but the deadline counts
    // from the first byte.
    let drip_bytes = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(200)
    );
    let drip = expect_408(
        &g,
        "slowloris",
        drip_bytes.as_bytes(),
        Some(Duration::from_millis(100)),
        false,
    );
    let timed_out = 5;

    if !idle.still_open_after(Duration::from_millis(10)) || !idle.buffered().is_empty() {
        g.fail("an idle connection was closed or answered by the header deadline");
    }
    idle.send(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("idle connection: {e}")));
    match idle.read_response(false) {
        Ok(r) if r.status == 200 => {}
        other => g.fail(format_args!("request on the idle connection: {other:?}")),
    }
    drop(idle);

    g.wait_healthy(Duration::from_secs(5));
    let (s1, _) = g.stats_until(Duration::from_secs(10), "connections back to 1", |s| {
        s.get("connections_active") == 1
    });
    for (name, want) in [
        ("timeouts_request", timed_out),
        ("connections_timed_out", timed_out),
        ("status_4xx", timed_out),
        ("timeouts_idle", 0),
        ("status_5xx", 0),
    ] {
        if s1.delta(&s0, name) != want {
            g.fail(format_args!(
                "{name} grew by {}, want {want}\n{}",
                s1.delta(&s0, name),
                s1.text
            ));
        }
    }
    g.note(format_args!(
        "header_timeout_ms={HEADER_TIMEOUT_MS}: 408 after {half:.2?} (half request), \
         {line:.2?} (half line), {head:.2?} (HEAD), {body:.2?} (short body), \
         {drip:.2?} (slowloris); all closed; timeouts_request +{timed_out}"
    ));
    g.finish();
}
