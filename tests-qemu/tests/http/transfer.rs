//! Transfers: the large asset byte-exact, in a row and at once; pipelined
//! requests on one connection; requests sent one byte per write.

use std::time::{Duration, Instant};

use tests_qemu::http::{Client, HttpGuest, IO_TIMEOUT, Response, Transport, boot_http, etag_of};
use tests_qemu::http::{Ending, gunzip, site_file};

/// Downloads in a row (half on one keep-alive connection, half on new ones).
const IN_A_ROW: usize = 100;
/// Concurrent downloaders, each fetching twice on its own connection.
const AT_ONCE: usize = 16;
const PER_DOWNLOADER: usize = 2;
/// Pipelined requests in one write.
const PIPELINED: usize = 100;

/// Where `got` first differs from `want`, for a failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i} of {}", want.len()),
        None => format!("length {} instead of {}", got.len(), want.len()),
    }
}

/// Checks one response to `GET /large.bin`.
fn check_large(r: &Response, want: &[u8], etag: &str) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    if r.content_length() != Some(want.len() as u64) {
        return Err(format!("Content-Length {:?}", r.header("content-length")));
    }
    if r.header("etag") != Some(etag) {
        return Err(format!("ETag {:?}, want {etag}", r.header("etag")));
    }
    if r.body != want {
        return Err(format!(
            "body not byte-exact: {}",
            first_difference(&r.body, want)
        ));
    }
    Ok(())
}

fn get_large(client: &mut Client, close: bool) -> Result<Response, String> {
    let req = format!(
        "GET /large.bin HTTP/1.1\r\nHost: t\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    client
        .send(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    client.read_response(false)
}

pub fn large_asset_byte_exact_in_a_row_and_at_once(transport: Transport) {
    let g = boot_http("large_asset", transport, &[]);
    let want = site_file("large.bin");
    let etag = etag_of(&want);
    let s0 = g.stats();

    let start = Instant::now();
    let mut keep_alive = g.connect();
    for i in 0..IN_A_ROW {
        let result = if i % 2 == 0 {
            get_large(&mut keep_alive, false)
        } else {
            let mut c = g.connect();
            get_large(&mut c, true)
        };
        if let Err(e) = result.and_then(|r| check_large(&r, &want, &etag)) {
            g.fail(format_args!("download {i} of {IN_A_ROW} in a row: {e}"));
        }
    }
    drop(keep_alive);
    let in_a_row = start.elapsed();

    let start = Instant::now();
    let addr = g.addr();
    let errors: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..AT_ONCE)
            .map(|w| {
                let (want, etag) = (&want, &etag);
                scope.spawn(move || -> Result<(), String> {
                    let mut c = Client::connect(addr, IO_TIMEOUT)
                        .map_err(|e| format!("downloader {w}: connect: {e}"))?;
                    for n in 0..PER_DOWNLOADER {
                        let last = n + 1 == PER_DOWNLOADER;
                        get_large(&mut c, last)
                            .and_then(|r| check_large(&r, want, etag))
                            .map_err(|e| format!("downloader {w}, download {n}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("a downloader panicked".into()),
            })
            .collect()
    });
    if !errors.is_empty() {
        g.fail(format_args!(
            "concurrent downloads failed:\n  {}",
            errors.join("\n  ")
        ));
    }
    let at_once = start.elapsed();

    let total = IN_A_ROW + AT_ONCE * PER_DOWNLOADER;
    let (s1, _) = g.stats_until(Duration::from_secs(10), "connections back to 1", |s| {
        s.get("connections_active") == 1
    });
    let body_bytes = s1.delta(&s0, "response_body_bytes");
    if body_bytes < (total * want.len()) as u64 {
        g.fail(format_args!(
            "response_body_bytes grew by {body_bytes}, less than {total} x {}",
            want.len()
        ));
    }
    for (name, min) in [("status_2xx", total as u64)] {
        if s1.delta(&s0, name) < min {
            g.fail(format_args!("{name} grew by less than {min}: {}", s1.text));
        }
    }
    for name in ["status_4xx", "status_5xx", "timeouts_send", "device_resets"] {
        if s1.delta(&s0, name) != 0 {
            g.fail(format_args!("{name} grew: {}", s1.text));
        }
    }
    let mib = want.len() as f64 / (1 << 20) as f64;
    g.note(format_args!(
        "{IN_A_ROW} x {mib:.1} MiB in a row in {in_a_row:.2?} ({:.0} MiB/s), \
         {AT_ONCE} x {PER_DOWNLOADER} at once in {at_once:.2?} ({:.0} MiB/s), all byte-exact",
        IN_A_ROW as f64 * mib / in_a_row.as_secs_f64(),
        (AT_ONCE * PER_DOWNLOADER) as f64 * mib / at_once.as_secs_f64(),
    ));
    g.finish();
}

/// One pipelined request and what its response must be.
struct Expect {
    request: String,
    head: bool,
    status: u16,
    /// Expected body (after gunzip if `gzip`); `None`: only the length is checked.
    body: Option<Vec<u8>>,
    gzip: bool,
}

fn pipeline_request(i: usize, health: &[u8], css: &[u8], svg: &[u8]) -> Expect {
    // Padding makes the batch larger than the guest's 16 KiB socket RX buffer.
    let pad = format!("X-Pad: {i:03}-{}\r\n", "p".repeat(120));
    let (method, path, extra, status, body, gzip) = match i % 10 {
        6 => ("GET", "/style.css", "", 200, Some(css.to_vec()), false),
        7 => ("HEAD", "/index.html", "", 200, None, false),
        8 => (
            "GET",
            "/no-such-page",
            "",
            404,
            Some(tests_qemu::http::site_file("404.html")),
            false,
        ),
        9 => (
            "GET",
            "/logo.svg",
            "Accept-Encoding: gzip\r\n",
            200,
            Some(svg.to_vec()),
            true,
        ),
        _ => ("GET", "/health", "", 200, Some(health.to_vec()), false),
    };
    Expect {
        request: format!("{method} {path}?seq={i} HTTP/1.1\r\nHost: t\r\n{extra}{pad}\r\n"),
        head: method == "HEAD",
        status,
        body,
        gzip,
    }
}

fn check_expected(g: &HttpGuest, i: usize, e: &Expect, r: &Response) {
    let problem = if r.status != e.status {
        Some(format!("status {}, want {}", r.status, e.status))
    } else if r.closes() {
        Some("Connection: close in a pipeline".into())
    } else if e.head {
        (!r.body.is_empty() || r.content_length().is_none())
            .then(|| "HEAD: body present or no Content-Length".into())
    } else {
        let body = if e.gzip {
            if r.header("content-encoding") != Some("gzip") {
                g.fail(format_args!("pipelined response {i}: not gzip"));
            }
            gunzip(&r.body).unwrap_or_else(|err| g.fail(format_args!("response {i}: {err}")))
        } else {
            r.body.clone()
        };
        match &e.body {
            Some(want) if &body != want => {
                Some(format!("body differs: {}", first_difference(&body, want)))
            }
            _ => None,
        }
    };
    if let Some(p) = problem {
        g.fail(format_args!(
            "pipelined response {i} ({:?}): {p}\n{}",
            e.request.lines().next().unwrap_or(""),
            r.head_text()
        ));
    }
}

pub fn pipelined_requests_and_one_byte_per_write(transport: Transport) {
    let g = boot_http("pipelined", transport, &[]);
    let (css, svg) = (site_file("style.css"), site_file("logo.svg"));
    let expects: Vec<Expect> = (0..PIPELINED)
        .map(|i| pipeline_request(i, b"ok\n", &css, &svg))
        .collect();
    let batch: String = expects.iter().map(|e| e.request.as_str()).collect();
    assert!(batch.len() > 16 * 1024, "batch of {} bytes", batch.len());

    // 100 requests in one write; responses in order; the connection stays open.
    let start = Instant::now();
    let mut c = g.connect();
    if let Err(e) = c.send(batch.as_bytes()) {
        g.fail(format_args!("writing {} pipelined bytes: {e}", batch.len()));
    }
    for (i, e) in expects.iter().enumerate() {
        let r = c
            .read_response(e.head)
            .unwrap_or_else(|err| g.fail(format_args!("pipelined response {i}: {err}")));
        check_expected(&g, i, e, &r);
    }
    let pipelined_in = start.elapsed();
    if !c.buffered().is_empty() {
        g.fail(format_args!(
            "{} bytes after the last pipelined response",
            c.buffered().len()
        ));
    }
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("request after the pipeline: {e}")));
    match c.read_response(false) {
        Ok(r) if r.status == 200 && r.body == b"ok\n" => {}
        other => g.fail(format_args!("request after the pipeline: {other:?}")),
    }

    // A pipeline with `Connection: close` in the middle: nothing after it is answered.
    let mut c = g.connect();
    let close_batch = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n\
                       GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
                       GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(close_batch.as_bytes())
        .unwrap_or_else(|e| g.fail(format_args!("close batch: {e}")));
    let (ending, bytes) = c.read_until_close(Duration::from_secs(10));
    let (responses, rest) = tests_qemu::http::parse_all(&bytes, &[])
        .unwrap_or_else(|e| g.fail(format_args!("close batch: {e}")));
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    if ending != Ending::Eof
        || statuses != [200, 200]
        || !rest.is_empty()
        || !responses[1].closes()
        || responses[1].body != css
    {
        g.fail(format_args!(
            "pipeline with Connection: close: ending {ending:?}, statuses {statuses:?}, \
             {} bytes left over; want [200, 200] (the second with close) then EOF",
            rest.len()
        ));
    }

    // One byte per write: two requests, each byte its own segment.
    let s0 = g.stats();
    let slow = "GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n\
                HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n\
                GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    let start = Instant::now();
    let mut c = g.connect();
    for (i, b) in slow.bytes().enumerate() {
        if let Err(e) = c.send(&[b]) {
            g.fail(format_args!(
                "byte {i} of the one-byte-per-write request: {e}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = c
        .read_response(false)
        .unwrap_or_else(|e| g.fail(format_args!("one byte per write, response 1: {e}")));
    let plain = gunzip(&r.body).unwrap_or_else(|e| g.fail(e));
    if r.status != 200 || r.header("content-encoding") != Some("gzip") || plain != css {
        g.fail(format_args!(
            "one byte per write: /style.css gzip\n{}",
            r.head_text()
        ));
    }
    let r = c
        .read_response(true)
        .unwrap_or_else(|e| g.fail(format_args!("one byte per write, response 2: {e}")));
    if r.status != 200 || r.content_length() != Some(3) {
        g.fail(format_args!("one byte per write: HEAD\n{}", r.head_text()));
    }
    let r = c
        .read_response(false)
        .unwrap_or_else(|e| g.fail(format_args!("one byte per write, response 3: {e}")));
    if r.status != 200 || r.body != b"ok\n" {
        g.fail(format_args!("one byte per write: GET\n{}", r.head_text()));
    }
    let byte_by_byte = start.elapsed();
    drop(c);
    let s1 = g.stats();
    g.note(format_args!(
        "{PIPELINED} pipelined requests ({} bytes in one write) answered in order in \
         {pipelined_in:.2?}; {} bytes one per write in {byte_by_byte:.2?}: the guest saw \
         {} frames in",
        batch.len(),
        slow.len(),
        s1.delta(&s0, "frames_in")
    ));
    g.finish();
}
