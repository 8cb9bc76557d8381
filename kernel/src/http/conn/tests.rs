use super::*;
use crate::http::test_support::{
    TestApp, Wire, big_body, drain, drain_to, exchange, parse_responses,
};
use crate::http::{Method, limits};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

fn one(input: &str) -> (Wire, Action, Conn, TestApp) {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let (wire, action) = exchange(
        &mut conn,
        &mut app,
        input.as_bytes(),
        &[usize::MAX],
        &[4096],
        0,
    );
    let mut responses = parse_responses(&wire, &[input.starts_with("HEAD")]);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&wire));
    (responses.remove(0), action, conn, app)
}

fn status(input: &str) -> (u16, Action) {
    let (w, action, ..) = one(input);
    (w.status, action)
}

/// An error answer: the status, `Connection: close`, then `Close`.
fn assert_error(input: &str, expected: u16) {
    let (w, action, mut conn, app) = one(input);
    assert_eq!(w.status, expected, "{input:?}");
    assert_eq!(w.header("connection"), Some("close"), "{input:?}");
    assert_eq!(action, Action::Close, "{input:?}");
    assert!(app.requests.is_empty(), "the handler saw {input:?}");
    assert_eq!(app.responses, [(expected, w.body.len() as u64)]);
    // Later bytes are dropped, never answered.
    let mut app2 = TestApp::default();
    assert_eq!(conn.receive(GET.as_bytes(), 1, &mut app2), GET.len());
    assert!(!conn.has_pending_output());
    assert_eq!(conn.poll(1), Action::Close);
}

#[test]
fn keep_alive_get() {
    let (w, action, conn, app) = one(GET);
    assert_eq!(w.status, 200);
    assert_eq!(w.body, b"hello\n");
    assert_eq!(w.header("content-length"), Some("6"));
    assert_eq!(w.header("server"), Some(response::SERVER));
    assert_eq!(w.header("connection"), None);
    assert_eq!(w.header("date"), None);
    assert_eq!(action, Action::Keep);
    assert_eq!(app.responses, [(200, 6)]);
    assert!(!conn.has_pending_output());
    assert_eq!(conn.next_deadline(), Some(limits::IDLE_TIMEOUT_MS));
}

#[test]
fn connection_close_and_http10() {
    let (w, action, ..) = one("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(
        (w.status, w.header("connection"), action),
        (200, Some("close"), Action::Close)
    );
    let (w, action, ..) = one("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        (w.status, w.header("connection"), action),
        (200, Some("close"), Action::Close)
    );
    let (w, action, ..) = one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        (w.status, w.header("connection"), action),
        (200, Some("keep-alive"), Action::Keep)
    );
}

#[test]
fn head_has_length_but_no_body() {
    let (w, _, _, app) = one("HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(w.status, 200);
    assert_eq!(
        w.header("content-length"),
        Some(format!("{}", big_body().len()).as_str())
    );
    assert!(w.body.is_empty());
    assert_eq!(app.requests[0].0, Method::Head);
    assert_eq!(app.responses, [(200, 0)]);
}

#[test]
fn not_modified_has_no_length_or_body() {
    let (w, ..) = one("GET /304 HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"e\"\r\n\r\n");
    assert_eq!(w.status, 304);
    assert_eq!(w.header("content-length"), None);
    assert_eq!(w.header("etag"), Some("\"e\""));
}

#[test]
fn owned_and_not_found_keep_alive() {
    let (w, action, ..) = one("GET /owned HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (w.status, w.body.as_slice(), action),
        (200, &b"owned body\n"[..], Action::Keep)
    );
    let (w, action, ..) = one("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((w.status, action), (404, Action::Keep));
}

#[test]
fn unformattable_response_becomes_500() {
    let (w, action, _, app) = one("GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (w.status, w.header("connection"), action),
        (500, Some("close"), Action::Close)
    );
    assert_eq!(app.responses, [(500, 0)]);
}

#[test]
fn bad_request_lines_b1() {
    assert_error("GET / HTTP/1.1\nHost: t\n\n", 400);
    assert_error("GET /\0 HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_error("\0\0\0\0", 400);
    assert_error("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    assert_error("GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505);
    // A later HTTP/1 minor version is served as HTTP/1.1.
    assert_eq!(
        status("GET / HTTP/1.7\r\nHost: t\r\n\r\n"),
        (200, Action::Keep)
    );
    assert_error("BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 501);
    assert_error("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 405);
    assert_error(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        405,
    );
    assert_error("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", 405);
    assert_error("GET / HTTP/1.1\r\n\r\n", 400);
    assert_error("GET /%2e%2e/etc HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    let (w, ..) = one("PUT / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(w.header("allow"), Some("GET, HEAD"));
    // Absolute form routes on its path.
    let (w, _, _, app) = one("GET http://example.com/owned?x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(w.status, 200);
    assert_eq!(app.requests[0].1, "/owned");
}

#[test]
fn smuggling_shapes_b3() {
    let h = "GET / HTTP/1.1\r\nHost: t\r\n";
    for extra in [
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length:  5x\r\n",
        "X-Fold: a\r\n folded\r\n",
        "Content-Length : 3\r\n",
    ] {
        // The "body" that follows would be a second request if misframed.
        assert_error(&format!("{h}{extra}\r\n{GET}"), 400);
    }
}

#[test]
fn error_for_head_request_has_no_body() {
    let (w, ..) = one("HEAD / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(w.status, 505);
    assert!(w.body.is_empty());
    assert!(w.header("content-length").is_some());
}

#[test]
fn uri_limit_b2_is_answered_before_the_line_ends() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let line = format!("GET /{}", "a".repeat(limits.max_uri + 100));
    // Byte by byte: the 414 comes as soon as the target passes the limit.
    let mut fed = 0;
    for b in line.as_bytes() {
        fed += 1;
        conn.receive(core::slice::from_ref(b), 0, &mut app);
        if conn.has_pending_output() {
            break;
        }
    }
    assert_eq!(fed, "GET /".len() + limits.max_uri);
    let w = parse_responses(&drain(&mut conn, 100, 0), &[false]);
    assert_eq!(w[0].status, 414);
    // At the limit exactly: served.
    let (w, ..) = one(&format!(
        "GET /{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(limits.max_uri - 1)
    ));
    assert_eq!(w.status, 404);
}

#[test]
fn head_size_limit_b2_buffers_at_most_max_head() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    req.push_str(&"b".repeat(limits.max_head * 2));
    let taken = conn.receive(req.as_bytes(), 0, &mut app);
    // Everything is taken (and dropped) once the 431 is decided, but the buffer
    // stopped at max_head.
    assert_eq!(taken, req.len());
    assert_eq!(conn.input_len, 0);
    let w = parse_responses(&drain(&mut conn, 1000, 0), &[false]);
    assert_eq!(w[0].status, 431);
    // A head of exactly max_head bytes is served.
    let prefix = "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    let pad = limits.max_head - prefix.len() - 4;
    let exact = format!("{prefix}{}\r\n\r\n", "p".repeat(pad));
    assert_eq!(exact.len(), limits.max_head);
    assert_eq!(status(&exact), (200, Action::Keep));
    let over = format!("{prefix}{}\r\n\r\n", "p".repeat(pad + 1));
    assert_eq!(status(&over), (431, Action::Close));
}

#[test]
fn header_count_limit_b2() {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 1..limits::MAX_HEADERS {
        req.push_str(&format!("X-{i}: v\r\n"));
    }
    assert_eq!(status(&format!("{req}\r\n")).0, 200);
    assert_eq!(
        status(&format!("{req}X-Last: v\r\n\r\n")),
        (431, Action::Close)
    );
}

#[test]
fn get_body_limit_b2() {
    let max = limits::MAX_GET_BODY;
    let body = "x".repeat(max);
    let req = format!("GET /owned HTTP/1.1\r\nHost: t\r\nContent-Length: {max}\r\n\r\n{body}{GET}");
    // Split at odd places: the body is discarded and the next request answered.
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let (wire, action) = exchange(&mut conn, &mut app, req.as_bytes(), &[7, 300, 1], &[13], 0);
    let w = parse_responses(&wire, &[false, false]);
    assert_eq!(
        (w.len(), w[0].status, w[1].status, action),
        (2, 200, 200, Action::Keep)
    );
    assert_eq!(w[1].body, b"hello\n");
    assert_eq!(app.responses, [(200, 11), (200, 6)]);
    let over = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        max + 1
    );
    assert_error(&over, 413);
}

#[test]
fn pipelined_100_in_one_write_and_byte_by_byte_b4() {
    let mut input = String::new();
    let mut expect_head = Vec::new();
    for i in 0..100 {
        let (m, p) = match i % 4 {
            0 => ("GET", "/"),
            1 => ("HEAD", "/owned"),
            2 => ("GET", "/owned"),
            _ => ("GET", "/missing"),
        };
        input.push_str(&format!("{m} {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
        expect_head.push(m == "HEAD");
    }
    let run = |chunks: &[usize], outs: &[usize]| {
        let mut conn = Conn::new();
        let mut app = TestApp::default();
        conn.open(0);
        let (wire, action) = exchange(&mut conn, &mut app, input.as_bytes(), chunks, outs, 0);
        assert_eq!(action, Action::Keep);
        assert_eq!(app.requests.len(), 100);
        wire
    };
    let all_at_once = run(&[usize::MAX], &[65536]);
    let byte_by_byte = run(&[1], &[1, 2, 3, 5, 8]);
    let odd = run(&[3, 17, 1, 250], &[7, 1000]);
    assert_eq!(all_at_once, byte_by_byte);
    assert_eq!(all_at_once, odd);
    let w = parse_responses(&all_at_once, &expect_head);
    assert_eq!(w.len(), 100);
    for (i, r) in w.iter().enumerate() {
        let expected = if i % 4 == 3 { 404 } else { 200 };
        assert_eq!(r.status, expected, "response {i}");
    }
}

#[test]
fn backpressure_takes_nothing_while_responding() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let two = format!("GET /big HTTP/1.1\r\nHost: t\r\n\r\n{GET}");
    let first = two.len() - GET.len();
    assert_eq!(conn.receive(two.as_bytes(), 0, &mut app), first);
    assert_eq!(conn.receive(GET.as_bytes(), 0, &mut app), 0);
    let mut out = [0u8; 1000];
    assert_eq!(conn.transmit(&mut out, 0, &mut app), 1000);
    assert_eq!(conn.receive(GET.as_bytes(), 0, &mut app), 0);
    drain(&mut conn, 65536, 0);
    assert_eq!(conn.receive(GET.as_bytes(), 0, &mut app), GET.len());
}

#[test]
fn three_mib_body_through_small_and_odd_buffers() {
    for sizes in [&[1460usize][..], &[1, 7, 4096, 65535, 3][..], &[536][..]] {
        let mut conn = Conn::new();
        let mut app = TestApp::default();
        conn.open(0);
        let req = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_eq!(conn.receive(req.as_bytes(), 0, &mut app), req.len());
        let mut wire = Vec::new();
        let mut i = 0;
        while conn.has_pending_output() {
            let mut out = alloc::vec![0u8; sizes[i % sizes.len()]];
            i += 1;
            let n = conn.transmit(&mut out, 0, &mut app);
            assert_eq!(n, out.len().min(n.max(1)), "transmit fills what it can");
            wire.extend_from_slice(&out[..n]);
        }
        let w = parse_responses(&wire, &[false]);
        assert_eq!(w[0].body.len(), big_body().len());
        assert!(w[0].body == big_body(), "body differs");
        assert_eq!(conn.poll(0), Action::Keep);
    }
}

#[test]
fn zero_space_makes_no_progress() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    conn.receive(GET.as_bytes(), 0, &mut app);
    assert_eq!(conn.transmit(&mut [], 5, &mut app), 0);
    assert!(conn.has_pending_output());
}

#[test]
fn header_timeout_b5_sends_408_then_closes() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    assert_eq!(conn.receive(b"GET / HT", 1000, &mut app), 8);
    let deadline = 1000 + limits::HEADER_TIMEOUT_MS;
    assert_eq!(conn.next_deadline(), Some(deadline));
    assert_eq!(conn.poll(deadline - 1), Action::Keep);
    // More slow bytes do not extend the deadline.
    conn.receive(b"T", deadline - 1, &mut app);
    assert_eq!(conn.next_deadline(), Some(deadline));
    assert_eq!(conn.poll(deadline), Action::Keep);
    assert_eq!(conn.take_event(), Some(ConnEvent::RequestTimeout));
    assert_eq!(conn.take_event(), None);
    let w = parse_responses(&drain(&mut conn, 64, deadline), &[false]);
    assert_eq!(w[0].status, 408);
    assert_eq!(w[0].header("connection"), Some("close"));
    assert_eq!(conn.poll(deadline), Action::Close);
    assert!(app.responses.is_empty(), "408 is reported as an event");
}

#[test]
fn header_timeout_covers_a_slow_body() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let req = "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc";
    assert_eq!(conn.receive(req.as_bytes(), 0, &mut app), req.len());
    assert!(!conn.has_pending_output());
    assert_eq!(conn.poll(limits::HEADER_TIMEOUT_MS), Action::Keep);
    assert_eq!(conn.take_event(), Some(ConnEvent::RequestTimeout));
    let w = parse_responses(&drain(&mut conn, 64, 0), &[false]);
    assert_eq!(w[0].status, 408);
    assert!(app.responses.is_empty());
}

#[test]
fn idle_timeout_b7_closes_without_response() {
    let mut conn = Conn::new();
    conn.open(500);
    assert_eq!(conn.next_deadline(), Some(500 + limits::IDLE_TIMEOUT_MS));
    assert_eq!(conn.poll(500 + limits::IDLE_TIMEOUT_MS - 1), Action::Keep);
    assert_eq!(conn.poll(500 + limits::IDLE_TIMEOUT_MS), Action::Close);
    assert!(!conn.has_pending_output());
    assert_eq!(conn.take_event(), Some(ConnEvent::IdleTimeout));
    // Idle restarts after each response.
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    conn.receive(GET.as_bytes(), 100, &mut app);
    drain(&mut conn, 4096, 200);
    assert_eq!(conn.next_deadline(), Some(200 + limits::IDLE_TIMEOUT_MS));
}

#[test]
fn send_timeout_b6_aborts_a_stalled_response() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    conn.receive(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 0, &mut app);
    let mut out = [0u8; 100];
    assert_eq!(conn.transmit(&mut out, 1000, &mut app), 100);
    assert_eq!(conn.next_deadline(), Some(1000 + limits::SEND_TIMEOUT_MS));
    // A full send buffer: transmit is offered no space, no progress.
    assert_eq!(conn.transmit(&mut [], 20_000, &mut app), 0);
    assert_eq!(conn.poll(1000 + limits::SEND_TIMEOUT_MS - 1), Action::Keep);
    assert_eq!(conn.poll(1000 + limits::SEND_TIMEOUT_MS), Action::Abort);
    assert_eq!(conn.take_event(), Some(ConnEvent::SendTimeout));
    assert!(!conn.has_pending_output());
    assert_eq!(conn.next_deadline(), None);
    assert_eq!(conn.poll(u64::MAX), Action::Abort);
    // Reused for the next connection.
    conn.open(50_000);
    assert_eq!(conn.poll(50_000), Action::Keep);
}

#[test]
fn close_timeout_aborts_a_lingering_socket() {
    let (_, action, mut conn, _) = one("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(action, Action::Close);
    assert_eq!(conn.next_deadline(), Some(limits::CLOSE_TIMEOUT_MS));
    assert_eq!(conn.poll(limits::CLOSE_TIMEOUT_MS - 1), Action::Close);
    assert_eq!(conn.poll(limits::CLOSE_TIMEOUT_MS), Action::Abort);
    assert_eq!(conn.take_event(), Some(ConnEvent::CloseTimeout));
}

#[test]
fn peer_fin_finishes_the_response_then_closes() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    conn.receive(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 0, &mut app);
    conn.peer_closed(0);
    assert_eq!(conn.poll(0), Action::Keep);
    let w = parse_responses(&drain(&mut conn, 60_000, 0), &[false]);
    assert_eq!(w[0].body.len(), big_body().len());
    assert_eq!(conn.poll(0), Action::Close);

    // FIN with a partial head: closed without an answer.
    let mut conn = Conn::new();
    conn.open(0);
    conn.receive(b"GET / HTTP/1.1\r\n", 0, &mut app);
    conn.peer_closed(1);
    assert!(!conn.has_pending_output());
    assert_eq!(conn.poll(1), Action::Close);

    // FIN on an idle keep-alive connection.
    let mut conn = Conn::new();
    conn.open(0);
    conn.peer_closed(0);
    assert_eq!(conn.poll(0), Action::Close);
}

#[test]
fn free_conn_is_inert_and_opens_on_input() {
    let mut conn = Conn::new();
    assert_eq!(conn.poll(1_000_000), Action::Keep);
    assert_eq!(conn.next_deadline(), None);
    let mut app = TestApp::default();
    assert_eq!(conn.transmit(&mut [0; 10], 0, &mut app), 0);
    assert_eq!(conn.receive(GET.as_bytes(), 0, &mut app), GET.len());
    assert!(conn.has_pending_output());
}

#[test]
fn events_are_counted_not_lost() {
    let mut conn = Conn::new();
    for i in 0..3u64 {
        conn.open(i * 100_000);
        assert_eq!(
            conn.poll(i * 100_000 + limits::IDLE_TIMEOUT_MS),
            Action::Close
        );
    }
    for _ in 0..3 {
        assert_eq!(conn.take_event(), Some(ConnEvent::IdleTimeout));
    }
    assert_eq!(conn.take_event(), None);
}

#[test]
fn clock_going_backwards_is_harmless() {
    let mut conn = Conn::new();
    conn.open(10_000);
    assert_eq!(conn.poll(0), Action::Keep);
    let mut app = TestApp::default();
    conn.receive(b"GET", 5, &mut app);
    assert_eq!(conn.poll(0), Action::Keep);
}

#[test]
fn custom_limits_are_reached() {
    let limits = Limits {
        max_head: 128,
        max_uri: 16,
        max_headers: 2,
        max_get_body: 4,
        ..Limits::default()
    };
    let run = |input: &str| {
        let mut conn = Conn::with_limits(limits);
        let mut app = TestApp::default();
        conn.open(0);
        let (wire, _) = exchange(&mut conn, &mut app, input.as_bytes(), &[5], &[9], 0);
        parse_responses(&wire, &[false])[0].status
    };
    assert_eq!(run("GET /123456789012345 HTTP/1.1\r\nHost: t\r\n\r\n"), 404);
    assert_eq!(
        run("GET /1234567890123456 HTTP/1.1\r\nHost: t\r\n\r\n"),
        414
    );
    assert_eq!(run("GET / HTTP/1.1\r\nHost: t\r\nA: b\r\n\r\n"), 200);
    assert_eq!(
        run("GET / HTTP/1.1\r\nHost: t\r\nA: b\r\nC: d\r\n\r\n"),
        431
    );
    assert_eq!(
        run("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd"),
        200
    );
    assert_eq!(
        run("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde"),
        413
    );
    let long = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(128));
    assert_eq!(run(&long), 431);
}

/// The method, path, connection id and times the handler is told, for served
/// and rejected requests.
#[test]
fn exchanges_report_method_path_conn_and_times() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open_with_id(0, 7);
    assert_eq!(conn.id(), 7);
    // First byte at 100, rest at 130, response sent at 150.
    assert_eq!(conn.receive(b"HEAD /owned%20x?q=1 HT", 100, &mut app), 22);
    let rest = b"TP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(conn.receive(rest, 130, &mut app), rest.len());
    assert!(app.sent.is_empty());
    let e = conn.current_exchange(140).unwrap();
    assert_eq!(
        (e.method, e.path, e.conn, e.status),
        ("HEAD", "/owned x", 7, 404)
    );
    drain_to(&mut conn, 7, 150, &mut app);
    assert_eq!(
        app.exchanges,
        [("HEAD".into(), "/owned x".into(), 7, 100, 130)]
    );
    assert_eq!(app.sent, [(7, 150, 1)]);
    assert!(conn.current_exchange(150).is_none());
    // A rejected request: the known method, the raw target.
    let mut app = TestApp::default();
    conn.open_with_id(200, 8);
    let post = b"POST /form%41?x=\"y\" HTTP/1.1\r\nHost: t\r\n\r\n";
    conn.receive(post, 210, &mut app);
    assert_eq!(
        app.exchanges,
        [("POST".into(), "/form%41?x=\"y\"".into(), 8, 210, 210)]
    );
    assert_eq!(app.responses, [(405, app.responses[0].1)]);
    drain_to(&mut conn, 4096, 220, &mut app);
    assert_eq!(app.sent, [(8, 220, 1)]);
}

#[test]
fn rejected_targets_are_kept_as_visible_ascii_prefixes() {
    for (input, method, path) in [
        ("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", "", "/pot"),
        ("GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", "GET", "/a"),
        ("GET /../x HTTP/1.1\r\nHost: t\r\n\r\n", "GET", "/../x"),
        (
            "\r\n\r\nDELETE /d HTTP/9.9\r\nHost: t\r\n\r\n",
            "DELETE",
            "/d",
        ),
        ("garbage\r\n\r\n", "", ""),
        // Served (a 404), so the decoded path.
        ("GET /\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n", "GET", "/\u{e9}"),
    ] {
        let (_, _, _, app) = one(input);
        assert_eq!(app.exchanges.len(), 1, "{input:?}");
        assert_eq!(
            (app.exchanges[0].0.as_str(), app.exchanges[0].1.as_str()),
            (method, path),
            "{input:?}"
        );
    }
    // 414 before the line ends: the target as far as it was read.
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(0);
    let long = format!("GET /{}", "a".repeat(limits::MAX_URI + 10));
    conn.receive(long.as_bytes(), 0, &mut app);
    assert_eq!(app.responses[0].0, 414);
    assert_eq!(app.exchanges[0].0, "GET");
    assert!(app.exchanges[0].1.starts_with("/aaa"));
    assert!(app.exchanges[0].1.len() <= limits::MAX_URI);
}

#[test]
fn exchange_of_a_request_with_a_body_is_reported_once_the_body_is_in() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open_with_id(0, 3);
    conn.receive(
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab",
        10,
        &mut app,
    );
    assert!(app.exchanges.is_empty());
    conn.receive(b"cd", 25, &mut app);
    assert_eq!(app.exchanges, [("GET".into(), "/".into(), 3, 10, 25)]);
}

#[test]
fn a_request_timeout_408_is_sent_and_reported_as_sent() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open_with_id(0, 9);
    conn.receive(b"GET /slow HTTP/1.1\r\nHo", 1000, &mut app);
    let deadline = 1000 + limits::HEADER_TIMEOUT_MS;
    assert_eq!(conn.poll(deadline), Action::Keep);
    assert_eq!(conn.take_event(), Some(ConnEvent::RequestTimeout));
    let e = conn.current_exchange(deadline).unwrap();
    assert_eq!(
        (e.status, e.method, e.path, e.conn),
        (408, "GET", "/slow", 9)
    );
    assert_eq!((e.received, e.now), (1000, deadline));
    assert!(app.responses.is_empty());
    drain_to(&mut conn, 64, deadline + 5, &mut app);
    assert_eq!(app.sent, [(9, deadline + 5, 0)]);
}

#[test]
fn an_aborted_response_is_never_reported_sent() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open_with_id(0, 4);
    conn.receive(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 0, &mut app);
    let mut out = [0u8; 100];
    conn.transmit(&mut out, 0, &mut app);
    assert_eq!(conn.poll(limits::SEND_TIMEOUT_MS), Action::Abort);
    assert_eq!(
        conn.transmit(&mut out, limits::SEND_TIMEOUT_MS, &mut app),
        0
    );
    assert_eq!(app.responses.len(), 1);
    assert!(app.sent.is_empty());
}

/// What an access log would print of one finished exchange: request line,
/// user agent, peer, sent bytes, request id, completed.
type Finished = (
    Vec<u8>,
    Option<Vec<u8>>,
    Option<core::net::IpAddr>,
    u64,
    String,
    bool,
);

/// Records what an access log would print of every finished exchange.
#[derive(Default)]
struct Logged {
    finished: Vec<Finished>,
}

impl Logged {
    fn push(&mut self, e: &Exchange<'_>, completed: bool) {
        self.finished.push((
            e.head.request_line.to_vec(),
            e.head.user_agent.map(<[u8]>::to_vec),
            e.peer,
            e.sent_bytes,
            format!("{}", e.request_id),
            completed,
        ));
    }
}

impl Handler for Logged {
    fn handle(&mut self, req: &crate::http::Request) -> Response {
        match req.path {
            "/big" => Response::new(200, None, Body::Static(big_body())),
            _ => Response::new(200, None, Body::Static(b"hello\n")),
        }
    }
    fn on_response(&mut self, _: &Exchange<'_>) {}
    fn on_sent(&mut self, e: &Exchange<'_>) {
        self.push(e, true);
    }
}

#[test]
fn responses_carry_request_ids_and_date_and_exchanges_the_logged_head() {
    let mut conn = Conn::new();
    let mut app = Logged::default();
    conn.set_stamp(crate::http::Stamp {
        epoch_ms: Some(1_796_228_100_000),
        boot: 0xab,
    });
    conn.open_with_id(0, 7);
    let peer = Some("10.0.2.2".parse().unwrap());
    conn.set_peer(peer);
    let input = b"GET /a HTTP/1.1\r\nHost: t\r\nUser-Agent: ua/1\r\n\r\nGET /b?x HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut wire = Vec::new();
    let mut taken = 0;
    for _ in 0..10 {
        taken += conn.receive(&input[taken..], 1000, &mut app);
        let mut out = [0u8; 4096];
        let n = conn.transmit(&mut out, 1000, &mut app);
        wire.extend_from_slice(&out[..n]);
    }
    let responses = parse_responses(&wire, &[false, false]);
    assert_eq!(responses.len(), 2);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.header("date"), Some("Wed, 02 Dec 2026 16:15:01 GMT"));
        let id = format!("000000ab-7-{}", i + 1);
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    }
    assert_eq!(
        app.finished,
        [
            (
                b"GET /a HTTP/1.1".to_vec(),
                Some(b"ua/1".to_vec()),
                peer,
                6,
                "000000ab-7-1".into(),
                true
            ),
            (
                b"GET /b?x HTTP/1.1".to_vec(),
                None,
                peer,
                6,
                "000000ab-7-2".into(),
                true
            ),
        ]
    );
    // A new connection on the socket numbers its requests from 1 again and
    // forgets the old peer; without a clock there is no Date.
    conn.set_stamp(crate::http::Stamp::default());
    conn.open_with_id(2000, 8);
    assert_eq!(conn.receive(GET.as_bytes(), 2000, &mut app), GET.len());
    let mut out = [0u8; 4096];
    let n = conn.transmit(&mut out, 2000, &mut app);
    let r = parse_responses(&out[..n], &[false]).remove(0);
    assert_eq!(r.header("date"), None);
    assert_eq!(r.header("x-request-id"), Some("00000000-8-1"));
    assert_eq!(app.finished.last().map(|f| f.2), Some(None));
}

#[test]
fn an_unfinished_response_is_handed_out_once_with_what_was_sent() {
    let mut conn = Conn::new();
    let mut app = Logged::default();
    conn.open_with_id(0, 3);
    let req = b"GET /big HTTP/1.1\r\nHost: t\r\nUser-Agent: slow\r\n\r\n";
    assert_eq!(conn.receive(req, 0, &mut app), req.len());
    assert!(conn.take_unfinished(0).is_some_and(|e| e.sent_bytes == 0));
    // Reported again only after another response starts.
    assert!(conn.take_unfinished(0).is_none());
    conn.open_with_id(10, 4);
    assert_eq!(conn.receive(req, 10, &mut app), req.len());
    let mut out = [0u8; 4096];
    let n = conn.transmit(&mut out, 11, &mut app);
    assert_eq!(n, 4096);
    assert_eq!(conn.poll(11 + conn.limits().send_timeout_ms), Action::Abort);
    let e = conn.take_unfinished(99_999).expect("the aborted response");
    let head_len = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(e.sent_bytes, (4096 - head_len) as u64);
    assert_eq!(e.head.user_agent, Some(&b"slow"[..]));
    assert_eq!((e.status, e.now, e.received), (200, 99_999, 10));
    assert!(conn.take_unfinished(99_999).is_none());
    assert!(app.finished.is_empty(), "never sent in full");
}

#[test]
fn activity_tells_a_kept_alive_connection_from_a_new_one() {
    let mut conn = Conn::new();
    let mut app = TestApp::default();
    conn.open(10);
    // Opened, nothing sent yet.
    assert_eq!(conn.activity(), (Activity::Opened, 10));
    assert_eq!(conn.receive(b"GET / HT", 20, &mut app), 8);
    assert_eq!(conn.activity(), (Activity::Request, 20));
    assert_eq!(conn.receive(b"TP/1.1\r\nHost: t\r\n\r\n", 30, &mut app), 19);
    assert_eq!(conn.activity().0, Activity::Respond);
    drain_to(&mut conn, 4096, 40, &mut app);
    // Response sent, connection kept: idle since the response ended.
    assert_eq!(conn.activity(), (Activity::Idle, 40));
    // A new connection on the same socket is new again.
    conn.open(50);
    assert_eq!(conn.activity(), (Activity::Opened, 50));
    // Closed by us (here: by the idle deadline).
    conn.open(60);
    conn.receive(GET.as_bytes(), 60, &mut app);
    drain_to(&mut conn, 4096, 61, &mut app);
    assert_eq!(conn.poll(61 + limits::IDLE_TIMEOUT_MS), Action::Close);
    assert_eq!(conn.activity().0, Activity::Closing);
}
