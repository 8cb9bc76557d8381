//! Property test: hostile bytes, split at random points, with random send
//! space and random clock jumps, never panic a [`Conn`], and what it writes is
//! always a sequence of well-formed responses that ends where the connection ends.

use super::response::{self, status};
use super::test_support::TestApp;
use super::{Action, Conn, Limits};
use crate::test_rng::Rng;
use alloc::vec::Vec;

/// Input generators: random bytes, a request-ish alphabet, token soup, mutated
/// valid requests, and valid requests grown towards the limits.
const STRATEGIES: u32 = 5;
const CASES_PER_STRATEGY: u32 = 10_000;

const TOKENS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "OPTIONS",
    "BREW",
    " ",
    "  ",
    "/",
    "/owned",
    "/304",
    "*",
    "http://h/x",
    "?q=1",
    "%2e%2e",
    "%00",
    "%",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "\r\n",
    "\n",
    "\r",
    "\0",
    "Host: h",
    "Content-Length: 3",
    "Content-Length: 99999",
    "Transfer-Encoding: chunked",
    "Connection: close",
    "Connection: keep-alive",
    "Accept-Encoding: gzip;q=0",
    "Accept-Encoding: br;q=0.5, gzip, identity;q=0",
    "If-None-Match: *",
    "Range: bytes=0-1,5-",
    "Range: bytes=-3",
    "Range: bytes=99999999999999999999-",
    "If-Range: \"r\"",
    "/ranged",
    "HTTP/1.2",
    ":",
    " folded",
    "abc",
    "\t",
];

fn valid_request(rng: &mut Rng) -> Vec<u8> {
    let method = *rng.pick(&["GET", "HEAD", "GET", "POST"]);
    let path = *rng.pick(&[
        "/",
        "/owned",
        "/304",
        "/missing",
        "http://h/owned?x",
        "/ranged",
        "/ranged",
    ]);
    let version = *rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.3"]);
    let mut r = alloc::format!("{method} {path} {version}\r\nHost: h\r\n");
    if rng.chance(3) {
        let value = *rng.pick(&["gzip, br", "br;q=0.1, gzip;q=0.2", "*;q=0", "identity"]);
        r.push_str(&alloc::format!("Accept-Encoding: {value}\r\n"));
    }
    if rng.chance(2) {
        let a = rng.below(40);
        let b = a + rng.below(40);
        let value = match rng.below(6) {
            0 => alloc::format!("bytes={a}-{b}"),
            1 => alloc::format!("bytes={a}-"),
            2 => alloc::format!("bytes=-{b}"),
            3 => alloc::format!("bytes={a}-{a},{b}-"),
            4 => alloc::format!("bytes=0-0,{}-{},{b}-", a + 1, a + 1),
            _ => alloc::format!("bytes={b}-{a}"),
        };
        r.push_str(&alloc::format!("Range: {value}\r\n"));
        if rng.chance(3) {
            r.push_str(if rng.chance(2) {
                "If-Range: \"r\"\r\n"
            } else {
                "If-Range: \"other\"\r\n"
            });
        }
    }
    if rng.chance(4) {
        r.push_str("Connection: close\r\n");
    }
    if rng.chance(4) {
        r.push_str("Connection: keep-alive\r\n");
    }
    let body = if rng.chance(5) { rng.below(8) } else { 0 };
    if body > 0 {
        r.push_str(&alloc::format!("Content-Length: {body}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(&"b".repeat(body));
    r.into_bytes()
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if at < bytes.len() => bytes[at] = rng.next_u64() as u8,
            1 => bytes.insert(at, rng.next_u64() as u8),
            2 if at < bytes.len() => {
                let end = (at + rng.below(8)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
}

fn generate(rng: &mut Rng, strategy: u32) -> Vec<u8> {
    match strategy {
        0 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
        1 => {
            let alphabet = b"GETHOST /:\r\n0123456789%.abchttp";
            (0..rng.below(300)).map(|_| *rng.pick(alphabet)).collect()
        }
        2 => (0..rng.below(40))
            .flat_map(|_| rng.pick(TOKENS).bytes())
            .collect(),
        3 => {
            let mut out = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let mut r = valid_request(rng);
                if rng.chance(2) {
                    mutate(rng, &mut r);
                }
                out.extend(r);
            }
            out
        }
        _ => {
            // Long targets and many or long header fields, near the limits.
            let segment = "s".repeat(rng.below(60));
            let mut r = alloc::format!("GET /{segment}{segment} HTTP/1.1\r\nHost: h\r\n");
            for i in 0..rng.below(8) {
                r.push_str(&alloc::format!("X-{i}: {}\r\n", "v".repeat(rng.below(60))));
            }
            r.push_str("\r\n");
            r.into_bytes()
        }
    }
}

/// Plays `input` through a connection; returns the wire bytes, the app, and the
/// last action.
fn run(rng: &mut Rng, input: &[u8], limits: Limits) -> (Vec<u8>, TestApp, Action) {
    let mut conn = Conn::with_limits(limits);
    let mut app = TestApp::default();
    let mut now = rng.next_u64() % 1_000_000;
    conn.open(now);
    let mut socket: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut wire = Vec::new();
    let mut action = Action::Keep;
    let mut fin = false;
    for _step in 0..10_000 {
        if fed < input.len() {
            let max = if rng.chance(2) { 8 } else { 400 };
            let n = 1 + rng.below(max);
            let end = (fed + n).min(input.len());
            socket.extend_from_slice(&input[fed..end]);
            fed = end;
        } else if !fin && socket.is_empty() && rng.chance(3) {
            fin = true;
            conn.peer_closed(now);
        }
        let took = conn.receive(&socket, now, &mut app);
        assert!(took <= socket.len());
        socket.drain(..took);
        let mut out = alloc::vec![0u8; *rng.pick(&[0, 1, 7, 100, 1460, 65536])];
        let sent = conn.transmit(&mut out, now, &mut app);
        assert!(sent <= out.len());
        wire.extend_from_slice(&out[..sent]);
        // Mostly no time passes; sometimes past a deadline.
        now += match rng.below(20) {
            0 => 1 + rng.next_u64() % 40_000,
            1 => rng.next_u64() % 2_000,
            _ => 0,
        };
        if let Some(deadline) = conn.next_deadline() {
            assert!(deadline >= now.min(deadline), "deadline sane");
        }
        action = conn.poll(now);
        while conn.take_event().is_some() {}
        if action != Action::Keep {
            break;
        }
        if fed >= input.len() && took == 0 && sent == 0 && !conn.has_pending_output() {
            if socket.is_empty() || conn.next_deadline().is_none() {
                break;
            }
            // Bytes wait in the socket: let time pass so a deadline decides.
            now += 1 + rng.next_u64() % 20_000;
        }
    }
    // Whatever is still queued goes out (unless aborted).
    if action == Action::Close || action == Action::Keep {
        let mut out = alloc::vec![0u8; 4096];
        for _ in 0..100_000 {
            let n = conn.transmit(&mut out, now, &mut app);
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&out[..n]);
        }
    }
    (wire, app, action)
}

/// Every response is well formed and framed; after `Connection: close` nothing
/// follows; only an aborted connection may end inside a response; the handler
/// heard `on_sent` once for each complete response, after its `on_response`.
fn check(wire: &[u8], app: &TestApp, action: Action) {
    let complete = check_framing(wire, app, action);
    assert_eq!(app.sent.len(), complete, "on_sent count");
    for (i, &(conn, _, reported)) in app.sent.iter().enumerate() {
        assert_eq!(conn, 0);
        // The i-th sent response was reported (the 408 of a header timeout is
        // not: it is always the last one, after the i reported before it).
        assert!(reported == i + 1 || (reported == i && i + 1 == complete));
    }
    assert!(app.exchanges.iter().all(|e| e.2 == 0 && e.1.len() <= 2048));
}

/// [`check`]'s framing part; returns how many responses are complete.
fn check_framing(wire: &[u8], app: &TestApp, action: Action) -> usize {
    let mut rest = wire;
    let mut index = 0;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if action == Action::Abort => return index,
            other => panic!(
                "malformed response {other:?} in {:?}",
                alloc::string::String::from_utf8_lossy(wire)
            ),
        };
        let code = resp.code.unwrap_or(0);
        assert!(
            [
                200, 206, 304, 400, 404, 405, 408, 413, 414, 416, 431, 500, 501, 505
            ]
            .contains(&code),
            "unexpected status {code}"
        );
        let find = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| core::str::from_utf8(h.value).unwrap_or(""))
        };
        assert_eq!(find("server"), Some(response::SERVER));
        let content_length = find("content-length").map(|v| v.parse::<usize>().unwrap());
        assert_eq!(content_length.is_some(), response::has_body(code));
        let close = find("connection") == Some("close");
        let body = match app.responses.get(index) {
            Some(&(status, bytes)) => {
                assert_eq!(status, code, "response {index} out of order");
                bytes as usize
            }
            // Only the 408 of a header timeout is not reported to the handler.
            None => {
                assert_eq!(code, status::REQUEST_TIMEOUT);
                // Bodiless if it answers a HEAD; otherwise it may be cut by an abort.
                if rest.len() == head_len {
                    0
                } else {
                    content_length.unwrap_or(0)
                }
            }
        };
        if rest.len() < head_len + body {
            assert_eq!(action, Action::Abort, "truncated response without abort");
            return index;
        }
        if let Some(boundary) =
            find("content-type").and_then(|ct| ct.strip_prefix("multipart/byteranges; boundary="))
            && body > 0
        {
            let payload = &rest[head_len..head_len + body];
            assert!(payload.starts_with(alloc::format!("--{boundary}\r\n").as_bytes()));
            assert!(payload.ends_with(alloc::format!("\r\n--{boundary}--\r\n").as_bytes()));
        }
        rest = &rest[head_len + body..];
        index += 1;
        if close {
            assert!(
                rest.is_empty(),
                "bytes after Connection: close: {:?}",
                alloc::string::String::from_utf8_lossy(wire)
            );
        }
    }
    index
}

#[test]
fn random_input_never_panics_and_yields_valid_responses() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let small = Limits {
        max_head: 200,
        max_uri: 40,
        max_headers: 4,
        max_get_body: 4,
        ..Limits::default()
    };
    let mut cases = 0u32;
    let mut statuses = [0u32; 600];
    for strategy in 0..STRATEGIES {
        for _ in 0..CASES_PER_STRATEGY {
            let input = generate(&mut rng, strategy);
            let limits = if rng.chance(2) {
                small
            } else {
                Limits::default()
            };
            let (wire, app, action) = run(&mut rng, &input, limits);
            check(&wire, &app, action);
            for &(s, _) in &app.responses {
                statuses[usize::from(s).min(599)] += 1;
            }
            cases += 1;
        }
    }
    assert_eq!(cases, STRATEGIES * CASES_PER_STRATEGY);
    // The generators reach the interesting outcomes.
    for s in [200, 206, 304, 400, 404, 405, 413, 414, 416, 431, 501, 505] {
        assert!(statuses[s] > 0, "no case produced {s}");
    }
    assert!(statuses[206] > 300, "ranges reached: {}", statuses[206]);
}
