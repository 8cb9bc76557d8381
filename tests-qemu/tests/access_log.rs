//! The access log end to end: lines on the virtio console's host end, one per
//! request with the right fields and escaping, the request id of each
//! response's `X-Request-Id`; a host end that stops reading costs dropped lines
//! (counted), never a stalled guest; GoAccess reads a wrk run's log; the admin
//! endpoints answer on the admin port only.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boot_image::AccessLogChannel;
use tests_qemu::http::{Client, HttpGuest, Response, Transport, boot_http, boot_http_with};

/// How long lines may take to reach the host end.
const LOG_TIMEOUT: Duration = Duration::from_secs(15);
const IO: Duration = Duration::from_secs(10);

/// One combined-format line, split at its quotes (escaping leaves none inside
/// a field).
#[derive(Debug)]
struct Line {
    remote: String,
    time: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
    request_id: String,
}

fn parse_line(line: &str) -> Result<Line, String> {
    let parts: Vec<&str> = line.split('"').collect();
    let [prefix, request, mid, referer, " ", user_agent, tail] = parts[..] else {
        return Err(format!("not 6 quotes: {line:?}"));
    };
    let (remote, rest) = prefix
        .split_once(" - - [")
        .ok_or_else(|| format!("no ` - - [`: {line:?}"))?;
    let time = rest
        .strip_suffix("] ")
        .ok_or_else(|| format!("no time: {line:?}"))?;
    let mut mid = mid.split_whitespace();
    let status = mid.next().and_then(|s| s.parse().ok());
    let bytes = mid.next().and_then(|s| s.parse().ok());
    let mut tail = tail.split_whitespace();
    let request_time = tail.next().and_then(|t| t.parse::<f64>().ok());
    let request_id = tail.next();
    match (status, bytes, request_time, request_id, tail.next()) {
        (Some(status), Some(bytes), Some(_), Some(id), None) => Ok(Line {
            remote: remote.to_string(),
            time: time.to_string(),
            request: request.to_string(),
            status,
            bytes,
            referer: referer.to_string(),
            user_agent: user_agent.to_string(),
            request_id: id.to_string(),
        }),
        _ => Err(format!("bad status/bytes/time/id: {line:?}")),
    }
}

/// Waits until the log holds a line for every id in `ids`; the lines by id,
/// failing if one appears more than once.
fn lines_for(
    g: &HttpGuest,
    ids: &[String],
    parse: fn(&str) -> Result<(String, String), String>,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let text = g.access_log_text();
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let (id, line) = parse(line).unwrap_or_else(|e| g.fail(e));
            by_id.entry(id).or_default().push(line);
        }
        if let Some((id, dup)) = by_id.iter().find(|(_, v)| v.len() > 1) {
            g.fail(format_args!(
                "request id {id} logged {} times: {dup:#?}",
                dup.len()
            ));
        }
        if ids.iter().all(|id| by_id.contains_key(id)) {
            return by_id
                .into_iter()
                .map(|(k, mut v)| (k, v.remove(0)))
                .collect();
        }
        if Instant::now() >= deadline {
            let missing: Vec<_> = ids.iter().filter(|id| !by_id.contains_key(*id)).collect();
            g.fail(format_args!(
                "no log line within {LOG_TIMEOUT:?} for {missing:?}; log:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn combined_id(line: &str) -> Result<(String, String), String> {
    parse_line(line).map(|l| (l.request_id, line.to_string()))
}

fn json_id(line: &str) -> Result<(String, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
    let id = v["request_id"]
        .as_str()
        .ok_or(format!("no request_id: {line}"))?;
    Ok((id.to_string(), line.to_string()))
}

fn request_id(g: &HttpGuest, what: &str, r: &Response) -> String {
    match (r.header("x-request-id"), r.header_count("x-request-id")) {
        (Some(id), 1) => id.to_string(),
        _ => g.fail(format_args!(
            "{what}: not one X-Request-Id: {}",
            r.head_text()
        )),
    }
}

/// Sends raw request bytes on a new connection to `port`; the responses.
fn exchange(g: &HttpGuest, admin: bool, raw: &[u8], heads: &[bool]) -> Vec<Response> {
    let addr = if admin { g.admin_addr() } else { g.addr() };
    let mut c = Client::connect(addr, IO).unwrap_or_else(|e| g.fail(format_args!("connect: {e}")));
    c.send(raw)
        .unwrap_or_else(|e| g.fail(format_args!("send: {e}")));
    heads
        .iter()
        .map(|&head| {
            c.read_response(head).unwrap_or_else(|e| {
                g.fail(format_args!(
                    "reading a response to {:?}: {e}",
                    String::from_utf8_lossy(raw)
                ))
            })
        })
        .collect()
}

/// An IMF-fixdate (`Wed, 02 Dec 2026 16:11:09 GMT`) as Unix seconds, read by
/// GNU date after checking the shape.
fn parse_date(text: &str) -> Option<u64> {
    let shape = text.len() == 29 && text.ends_with(" GMT") && text.as_bytes()[3] == b',';
    if !shape {
        return None;
    }
    let out = Command::new("date")
        .args(["-u", "-d", text, "+%s"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A known mix: every request's line, with the fields it must carry.
#[test]
fn every_request_is_logged_once_with_its_fields_and_goaccess_reads_a_wrk_run() {
    // QEMU's user networking makes every host connection come from 10.0.2.2:
    // trusting it lets X-Forwarded-For through, as behind a local proxy.
    let g = boot_http(
        "access-log-fields",
        Transport::Legacy,
        &["trusted_proxies=10.0.2.2"],
    );
    struct Case {
        raw: Vec<u8>,
        admin: bool,
        head: bool,
        status: u16,
        request: &'static str,
        remote: &'static str,
        referer: &'static str,
        user_agent: &'static str,
    }
    let case = |raw: &[u8], status, request, referer, user_agent| Case {
        raw: raw.to_vec(),
        admin: false,
        head: false,
        status,
        request,
        remote: "10.0.2.2",
        referer,
        user_agent,
    };
    let cases = vec![
        case(b"GET /health HTTP/1.1\r\nHost: a\r\nUser-Agent: probe/1\r\n\r\n", 200, "GET /health HTTP/1.1", "-", "probe/1"),
        case(
            b"GET /?q=\"x\" HTTP/1.1\r\nHost: a\r\nReferer: http://r.example/p?a=1\r\nUser-Agent: q\"uote\\back\xff\xc3\xa9\r\n\r\n",
            200,
            r#"GET /?q=\x22x\x22 HTTP/1.1"#,
            "http://r.example/p?a=1",
            r"q\x22uote\x5Cback\xFF\xC3\xA9",
        ),
        Case { head: true, ..case(b"HEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n", 200, "HEAD /index.html HTTP/1.1", "-", "-") },
        case(b"GET /no-such-page HTTP/1.1\r\nHost: a\r\n\r\n", 404, "GET /no-such-page HTTP/1.1", "-", "-"),
        case(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 404, "GET /metrics HTTP/1.1", "-", "-"),
        Case { admin: true, ..case(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 200, "GET /metrics HTTP/1.1", "-", "-") },
        Case {
            remote: "203.0.113.7",
            ..case(b"GET /health HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n\r\n", 200, "GET /health HTTP/1.1", "-", "-")
        },
        Case {
            remote: "2001:db8::5",
            ..case(b"GET /health HTTP/1.1\r\nHost: a\r\nForwarded: for=\"[2001:db8::5]:443\";proto=https\r\n\r\n", 200, "GET /health HTTP/1.1", "-", "-")
        },
        case(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405, "POST / HTTP/1.1", "-", "-"),
        case(b"GET /\x7fbad\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, r"GET /\x7Fbad\x00 HTTP/1.1", "-", "-"),
        case(b"GET /large.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-99\r\n\r\n", 206, "GET /large.bin HTTP/1.1", "-", "-"),
    ];
    let before = now_unix();
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for c in &cases {
        let r = exchange(&g, c.admin, &c.raw, &[c.head]).remove(0);
        if r.status != c.status {
            g.fail(format_args!(
                "{:?} answered {} not {}",
                String::from_utf8_lossy(&c.raw),
                r.status,
                c.status
            ));
        }
        let date = r
            .header("date")
            .unwrap_or_else(|| g.fail(format_args!("no Date: {}", r.head_text())));
        let parsed = parse_date(date)
            .unwrap_or_else(|| g.fail(format_args!("Date {date:?} is not IMF-fixdate")));
        if parsed + 5 < before || parsed > now_unix() + 5 {
            g.fail(format_args!("Date {date:?} is not now ({before})"));
        }
        let id = request_id(&g, c.request, &r);
        ids.push(id.clone());
        expected.push((id, c, r.body.len() as u64));
    }
    // Three pipelined requests on one connection: ids in order, one line each.
    let pipelined = exchange(
        &g,
        false,
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        &[false, false, false],
    );
    let pipe_ids: Vec<String> = pipelined
        .iter()
        .map(|r| request_id(&g, "pipelined", r))
        .collect();
    let conn_of = |id: &str| {
        id.rsplit_once('-')
            .map(|(c, n)| (c.to_string(), n.to_string()))
    };
    let seqs: Vec<_> = pipe_ids.iter().filter_map(|i| conn_of(i)).collect();
    if seqs.len() != 3
        || seqs.iter().any(|(c, _)| *c != seqs[0].0)
        || seqs.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>() != ["1", "2", "3"]
    {
        g.fail(format_args!("pipelined ids {pipe_ids:?}"));
    }
    ids.extend(pipe_ids);

    let lines = lines_for(&g, &ids, combined_id);
    for (id, c, body) in &expected {
        let line = parse_line(&lines[id]).unwrap();
        let want = (
            c.remote,
            c.request,
            c.status,
            *body,
            c.referer,
            c.user_agent,
        );
        let got = (
            line.remote.as_str(),
            line.request.as_str(),
            line.status,
            line.bytes,
            line.referer.as_str(),
            line.user_agent.as_str(),
        );
        if want != got {
            g.fail(format_args!(
                "line for {id}: {got:?}, expected {want:?}\n{}",
                lines[id]
            ));
        }
        // Wall clock (the launcher's clock= or the RTC): this year, not 1970.
        if !line.time.ends_with(" +0000") || line.time.contains("1970") {
            g.fail(format_args!(
                "time {:?} is not a wall-clock time",
                line.time
            ));
        }
    }
    g.note(format_args!(
        "{} requests, one line each; e.g. {}",
        ids.len(),
        lines[&ids[1]]
    ));

    // A wrk run over a mix; GoAccess must count every line of the log and
    // find none it cannot parse, and the guest must have queued as many.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d3s", "--timeout", "10s", &g.url("/")])
        .output()
        .unwrap_or_else(|e| g.fail(format_args!("wrk: {e}")));
    let wrk_text = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let (settled, lines_now) = settle(&g);
    // The stats fetch's own line is queued after its body was written.
    let queued = settled.get("access_log_lines") + 1;
    if settled.get("access_log_dropped") != 0 || queued != lines_now {
        g.fail(format_args!(
            "guest queued {queued} lines (with the stats fetch), dropped {}; the host end has {lines_now}",
            settled.get("access_log_dropped")
        ));
    }
    let report = Command::new("goaccess")
        .arg(&g.access_log)
        .args([
            "--log-format",
            r#"%h %^[%d:%t %^] "%r" %s %b "%R" "%u" %T %^"#,
            "--date-format=%d/%b/%Y",
            "--time-format=%T",
            "--no-global-config",
            "-o",
            "json",
        ])
        .output()
        .unwrap_or_else(|e| g.fail(format_args!("goaccess (Debian package goaccess): {e}")));
    if !report.status.success() {
        g.fail(format_args!(
            "goaccess failed: {}",
            String::from_utf8_lossy(&report.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|e| g.fail(format_args!("goaccess JSON: {e}")));
    let general = &v["general"];
    let (total, failed) = (
        general["total_requests"].as_u64(),
        general["failed_requests"].as_u64(),
    );
    if total != Some(lines_now) || failed != Some(0) {
        g.fail(format_args!(
            "goaccess: total {total:?} failed {failed:?}; the log has {lines_now} lines; {general}"
        ));
    }
    g.note(format_args!(
        "goaccess counted {lines_now} requests, 0 failed; wrk: {}",
        wrk_text
            .lines()
            .find(|l| l.contains("requests in"))
            .unwrap_or("?")
            .trim()
    ));
    g.finish();
}

/// Stats once the access log stopped growing (every line of the traffic so
/// far on the host end), fetched on the admin port, and the number of lines
/// on the host end once the stats fetch's own line arrived too.
fn settle(g: &HttpGuest) -> (tests_qemu::http::Stats, u64) {
    let count = || g.access_log_text().lines().count() as u64;
    let deadline = Instant::now() + LOG_TIMEOUT;
    let mut last = u64::MAX;
    while count() != last {
        last = count();
        if Instant::now() >= deadline {
            g.fail("the access log kept growing");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = g.stats();
    let want = s.get("access_log_lines") + 1;
    for _ in 0..100 {
        if count() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Anything late would show as a difference.
    std::thread::sleep(Duration::from_millis(300));
    (s, count())
}

#[test]
fn json_lines_and_admin_endpoints_only_on_the_admin_port() {
    let g = boot_http("access-log-json", Transport::Legacy, &["log_format=json"]);
    let mut ids = Vec::new();
    for path in [
        "/metrics",
        "/api/stats.json",
        "/api/requests.json",
        "/status",
        "/debug/profile",
    ] {
        let public = g.get(path);
        let admin = g.admin_get(path);
        if public.status != 404 || admin.status != 200 {
            g.fail(format_args!(
                "{path}: public port {}, admin port {}",
                public.status, admin.status
            ));
        }
        ids.push(request_id(&g, path, &public));
        ids.push(request_id(&g, path, &admin));
    }
    for (admin, path, status) in [
        (false, "/", 200),
        (true, "/", 404),
        (true, "/health", 200),
        (false, "/health", 200),
    ] {
        let r = if admin {
            g.admin_get(path)
        } else {
            g.get(path)
        };
        if r.status != status {
            g.fail(format_args!(
                "{path} on the {} port: {} not {status}",
                if admin { "admin" } else { "public" },
                r.status
            ));
        }
        ids.push(request_id(&g, path, &r));
    }
    let lines = lines_for(&g, &ids, json_id);
    for id in &ids {
        let v: serde_json::Value = serde_json::from_str(&lines[id]).unwrap();
        let ok = v["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && !t.starts_with("1970"))
            && v["remote_addr"] == "10.0.2.2"
            && v["status"].as_u64().is_some()
            && v["completed"] == true
            && v["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("GET /"));
        if !ok {
            g.fail(format_args!("JSON line for {id}: {v}"));
        }
    }
    g.finish();
}

/// The host end is a socket nobody reads: QEMU stops taking the console's
/// buffers, the guest's line buffer fills, lines are dropped and counted, and
/// `/health` keeps answering fast throughout. Reading again delivers every
/// line the guest queued, whole.
#[test]
fn a_host_end_that_stops_reading_costs_lines_not_service() {
    let socket = std::env::temp_dir().join(format!(
        "unikernel-access-stall-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&socket);
    let g = boot_http_with("access-log-stall", Transport::Legacy, &[], |cfg| {
        cfg.access_log = Some(AccessLogChannel::Socket(socket.clone()));
    });
    let mut reader = UnixStream::connect(&socket)
        .unwrap_or_else(|e| g.fail(format_args!("connecting to the access-log socket: {e}")));
    // Never read during the load: the socket's buffers fill, then QEMU's.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c16", "-d6s", "--timeout", "10s", &g.url("/health")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| g.fail(format_args!("wrk: {e}")));
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    let mut probes = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let r = g
            .try_get("/health")
            .unwrap_or_else(|e| g.fail(format_args!("/health probe during the stall: {e}")));
        if r.status != 200 {
            g.fail(format_args!(
                "/health answered {} during the stall",
                r.status
            ));
        }
        worst = worst.max(t.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = wrk
        .wait_with_output()
        .unwrap_or_else(|e| g.fail(format_args!("wrk: {e}")));
    let wrk_text = String::from_utf8_lossy(&out.stdout).into_owned();
    let s = g.stats();
    let (queued, dropped) = (s.get("access_log_lines"), s.get("access_log_dropped"));
    g.note(format_args!(
        "stalled host end: {queued} lines queued, {dropped} dropped; {probes} /health probes, slowest {worst:?}; wrk: {}",
        wrk_text.lines().find(|l| l.contains("requests in")).unwrap_or("?").trim()
    ));
    if dropped == 0 {
        g.fail(format_args!(
            "no line dropped with the host end not reading ({queued} queued)"
        ));
    }
    if worst > Duration::from_secs(1) {
        g.fail(format_args!(
            "a /health probe took {worst:?} while the log was stalled"
        ));
    }
    // Read again: every line queued arrives, whole and in the combined format.
    reader
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + LOG_TIMEOUT;
    let mut buf = vec![0u8; 1 << 16];
    while (got.iter().filter(|&&b| b == b'\n').count() as u64) < queued && Instant::now() < deadline
    {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => g.fail(format_args!("reading the access log: {e}")),
        }
    }
    let text =
        String::from_utf8(got).unwrap_or_else(|e| g.fail(format_args!("log not ASCII: {e}")));
    let lines: Vec<&str> = text.lines().collect();
    if (lines.len() as u64) < queued {
        g.fail(format_args!(
            "{} lines arrived after reading resumed; the guest queued {queued}",
            lines.len()
        ));
    }
    if let Some(bad) = lines.iter().find(|l| parse_line(l).is_err()) {
        g.fail(format_args!("a torn or malformed line: {bad:?}"));
    }
    let _ = std::fs::remove_file(&socket);
    g.finish();
}
