//! `/api/requests.json`: the recent-requests ring against the traffic sent.

use super::*;

fn recent_requests(g: &HttpGuest) -> Value {
    let r = g.admin_get("/api/requests.json");
    if r.status != 200
        || r.header("content-type") != Some("application/json")
        || r.header("cache-control") != Some("no-store")
    {
        g.fail(format_args!("/api/requests.json: {}", r.head_text()));
    }
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        g.fail(format_args!(
            "/api/requests.json is not JSON ({e}): {}",
            r.body_text()
        ))
    })
}

#[test]
fn recent_requests_ring_matches_the_traffic() {
    let g = boot_http("requests-ring", Transport::Legacy, &[]);
    let index = site_file("index.html");
    let style = site_file("style.css");
    let long = format!("/{}", "a".repeat(300));
    // (method, path sent, path logged, status, body bytes)
    let mut expected: Vec<(&str, String, String, u64, u64)> = Vec::new();
    let mut conns: Vec<&str> = Vec::new(); // connection names, for the id check
    let r = g.get("/index.html?x=1");
    assert_eq!(r.status, 200);
    expected.push((
        "GET",
        "/index.html?x=1".into(),
        "/index.html".into(),
        200,
        index.len() as u64,
    ));
    conns.push("a");
    assert_eq!(g.request("HEAD", "/", &[]).status, 200);
    expected.push(("HEAD", "/".into(), "/".into(), 200, 0));
    conns.push("b");
    let r = g.request("POST", "/form", &["Content-Length: 0"]);
    assert_eq!(r.status, 405);
    expected.push((
        "POST",
        "/form".into(),
        "/form".into(),
        405,
        r.body.len() as u64,
    ));
    conns.push("c");
    let r = g.get(&long);
    assert_eq!(r.status, 404);
    expected.push((
        "GET",
        long.clone(),
        long[..RING_PATH_MAX].into(),
        404,
        r.body.len() as u64,
    ));
    conns.push("d");
    // Two pipelined requests on one connection: one connection id.
    let mut c = g.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("pipelining: {e}")));
    for _ in 0..2 {
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| g.fail(format_args!("pipelined response: {e}")));
        assert_eq!(r.status, 200);
    }
    expected.push(("GET", "/".into(), "/".into(), 200, index.len() as u64));
    conns.push("e");
    expected.push((
        "GET",
        "/style.css".into(),
        "/style.css".into(),
        200,
        style.len() as u64,
    ));
    conns.push("e");
    drop(c);

    let v = recent_requests(&g);
    assert_eq!(v["capacity"], 64);
    let rows = v["requests"].as_array().expect("requests array");
    assert!(rows.len() >= expected.len() && rows.len() <= 64);
    let ours: Vec<&Value> = rows[..expected.len()].iter().rev().collect();
    let mut ids: BTreeMap<&str, u64> = BTreeMap::new();
    let mut last_id = 0;
    let mut last_seq = None;
    for ((row, (method, sent, logged, status, bytes)), name) in
        ours.iter().zip(&expected).zip(&conns)
    {
        let what = format!("{method} {sent}: {row}");
        assert_eq!(row["method"], *method, "{what}");
        assert_eq!(row["path"].as_str(), Some(logged.as_str()), "{what}");
        assert_eq!(
            row["path_truncated"],
            logged != sent && sent.len() > RING_PATH_MAX,
            "{what}"
        );
        assert_eq!(row["status"], *status, "{what}");
        assert_eq!(row["body_bytes"], *bytes, "{what}");
        assert_eq!(row["state"], "sent", "{what}");
        assert!(row["duration_ms"].is_u64(), "{what}");
        assert!(
            row["received_ms"].as_u64() <= v["uptime_ms"].as_u64(),
            "{what}"
        );
        let seq = row["seq"].as_u64().expect("seq");
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev + 1, "{what}");
        }
        last_seq = Some(seq);
        let id = row["conn"].as_u64().expect("conn");
        match ids.get(name) {
            Some(&same) => assert_eq!(id, same, "pipelined requests share a connection: {what}"),
            None => {
                assert!(
                    id > last_id,
                    "a new connection gets a new, larger id: {what}"
                );
                ids.insert(name, id);
                last_id = id;
            }
        }
    }
    assert_eq!(v["total"].as_u64(), last_seq, "total counts every request");

    // A download the client abandons: recorded, then dropped, never sent.
    let mut c = g.connect();
    c.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| g.fail(format_args!("large.bin: {e}")));
    let mut some = [0u8; 1000];
    std::io::Read::read(&mut c.stream, &mut some)
        .unwrap_or_else(|e| g.fail(format_args!("reading large.bin: {e}")));
    // Closing with unread data resets the connection.
    drop(c);
    let large_len = site_file("large.bin").len() as u64;
    let deadline = Instant::now() + Duration::from_secs(45);
    let state = loop {
        let v = recent_requests(&g);
        let row = v["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["path"] == "/large.bin")
            .cloned()
            .unwrap_or_else(|| g.fail(format_args!("no /large.bin entry: {v}")));
        assert_eq!(row["body_bytes"], large_len);
        let state = row["state"].as_str().unwrap_or_default().to_string();
        if state != "sending" || Instant::now() >= deadline {
            break (state, row);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(state.0, "dropped", "abandoned download: {}", state.1);
    assert!(state.1["duration_ms"].is_u64());
    g.note(format_args!("abandoned download logged as {}", state.1));
    g.finish();
}
