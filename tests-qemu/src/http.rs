//! Host-side HTTP helpers for the tests in `tests/http*.rs`.
//!
//! - [`boot_http`]: boot a guest with its port 80 forwarded to a free host port,
//!   on the legacy or the modern virtio-mmio [`Transport`], and wait until
//!   `/health` answers.
//! - [`Client`]: one raw TCP connection with a response reader that frames
//!   responses by `Content-Length` (parsed with `httparse`), for pipelining,
//!   malformed input and slow clients. Every read is bounded by a timeout.
//! - [`Stats`]: `/api/stats.json` parsed with `serde_json`, every counter checked
//!   to be present and a `u64`.
//! - [`site_file`], [`etag_of`], [`gunzip`], [`gzip_best`], [`unbrotli`],
//!   [`brotli_best`]: what the baked site
//!   should serve, computed from `kernel/site/` on the host.
//!
//! Every loop here is bounded in count and time; every wait has a deadline.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use boot_image::{AccessLogChannel, Guest, QemuConfig};

use crate::{INIT_TIMEOUT, config, note};

/// Connect, read and write timeout of a [`Client`] unless a test sets its own.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`boot_http`] waits for `/health` after `net: ready`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// Boot attempts when QEMU cannot bind the picked port (another process took it).
const BOOT_ATTEMPTS: usize = 5;
/// Largest response head the reader accepts.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Every counter `/api/stats.json` must carry (after `version`), all `u64`.
pub const STATS_COUNTERS: &[&str] = &[
    "uptime_ms",
    "requests_total",
    "status_1xx",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "response_body_bytes",
    "connections_accepted",
    "connections_active",
    "connections_refused",
    "syn_cookies_sent",
    "syn_cookies_valid",
    "syn_cookies_invalid",
    "evictions_idle",
    "evictions_head",
    "evictions_lingering",
    "evictions_stalled",
    "connections_timed_out",
    "timeouts_request",
    "timeouts_idle",
    "timeouts_send",
    "timeouts_close",
    "bytes_in",
    "bytes_out",
    "frames_in",
    "frames_out",
    "rx_avail_idx",
    "rx_used_idx",
    "tx_avail_idx",
    "tx_used_idx",
    "interrupts_net",
    "interrupts_timer",
    "timer_recoveries",
    "device_resets",
    "tx_full_events",
    "rx_dropped",
    "rx_checksum_errors",
    "heap_used",
    "heap_free",
    "tx_large_buffer_bytes",
    "loop_iterations",
    "access_log_lines",
    "access_log_dropped",
];

/// The virtio-mmio transport version QEMU offers the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Version 1, QEMU's default for virtio-mmio.
    Legacy,
    /// Version 2: `-global virtio-mmio.force-legacy=false`.
    Modern,
}

impl Transport {
    /// Extra QEMU arguments that select this transport.
    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Transport::Legacy => Vec::new(),
            Transport::Modern => vec!["-global".into(), "virtio-mmio.force-legacy=false".into()],
        }
    }

    /// How the kernel names it on its `virtio: slot ...` line.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Transport::Legacy => "Legacy",
            Transport::Modern => "Modern",
        }
    }
}

/// A free TCP port on 127.0.0.1: bind port 0, read the port, drop the listener.
/// Another process may take it before QEMU does; [`boot_http`] retries then.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to pick a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address of the port-0 listener: {e}"))
        .port()
}

/// A booted guest serving HTTP on `127.0.0.1:port` (the site and `/health`)
/// and `127.0.0.1:admin_port` (`/metrics`, `/api/*`, `/status`, `/debug/*`),
/// writing its access log to `access_log`.
pub struct HttpGuest {
    pub guest: Guest,
    pub port: u16,
    pub admin_port: u16,
    /// The host end of the guest's access-log console (a file).
    pub access_log: PathBuf,
    pub test: String,
    pub transport: Transport,
}

/// Boot the release image with the NIC on `transport`, guest config `items` and
/// port 80 forwarded to a free host port; return once the guest printed
/// `net: ready` and `GET /health` answered 200 `ok`. Retries with another port
/// if QEMU cannot set up the forwarding.
pub fn boot_http(test: &str, transport: Transport, items: &[&str]) -> HttpGuest {
    boot_http_with(test, transport, items, |_| {})
}

/// [`boot_http`], with `adjust` applied to the QEMU configuration (e.g. to add a
/// QMP socket) before each boot attempt.
pub fn boot_http_with(
    test: &str,
    transport: Transport,
    items: &[&str],
    adjust: impl Fn(&mut QemuConfig),
) -> HttpGuest {
    boot_http_image(test, &crate::image().image, transport, items, adjust, true)
}

/// Boot `image` as [`boot_http_with`] does; with `healthy` false, return once
/// `net: ready` is printed without asking `/health`.
pub fn boot_http_image(
    test: &str,
    image: &std::path::Path,
    transport: Transport,
    items: &[&str],
    adjust: impl Fn(&mut QemuConfig),
    healthy: bool,
) -> HttpGuest {
    for attempt in 1..=BOOT_ATTEMPTS {
        let (port, admin_port) = (free_port(), free_port());
        let access_log = std::env::temp_dir().join(format!(
            "unikernel-access-{test}-{}-{port}.log",
            std::process::id()
        ));
        let mut cfg = QemuConfig {
            host_port: Some(port),
            admin_host_port: Some(admin_port),
            access_log: Some(AccessLogChannel::File(access_log.clone())),
            wall_clock: Some(boot_image::now_unix()),
            extra_args: transport.qemu_args(),
            ..config(items)
        };
        adjust(&mut cfg);
        let start = Instant::now();
        let guest = match Guest::start(image, &cfg, crate::echo_from_env()) {
            Ok(guest) => guest,
            Err(e) if is_forwarding_error(&e) && attempt < BOOT_ATTEMPTS => {
                note(test, format_args!("port {port} taken ({e}); retrying"));
                continue;
            }
            Err(e) => panic!("[{test}] guest did not boot: {e}"),
        };
        match guest.wait_for("net: ready", INIT_TIMEOUT) {
            Ok(_) => {}
            Err(e) if is_forwarding_error(&guest.qemu_stderr()) && attempt < BOOT_ATTEMPTS => {
                note(
                    test,
                    format_args!("port {port} taken (QEMU could not forward it); retrying"),
                );
                drop(guest);
                let _ = e;
                continue;
            }
            Err(e) => panic!("[{test}] waiting for `net: ready`: {e}"),
        }
        let ready_after = start.elapsed();
        let http = HttpGuest {
            guest,
            port,
            admin_port,
            access_log,
            test: test.to_string(),
            transport,
        };
        http.check_transport();
        if healthy {
            http.wait_healthy(HEALTH_TIMEOUT);
        }
        note(
            test,
            format_args!(
                "accel={:?} transport={transport:?} port={port} pid={} ready after {:.2?}, \
                 /health {} after {:.2?} config={items:?}",
                http.guest.accel(),
                http.guest.pid(),
                ready_after,
                if healthy { "200" } else { "not asked" },
                start.elapsed()
            ),
        );
        return http;
    }
    unreachable!("the last boot attempt panics instead of retrying")
}

fn is_forwarding_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("host forwarding") || text.contains("hostfwd") || text.contains("cannot forward")
}

impl HttpGuest {
    /// Panic with `message`, the guest's serial log and QEMU's stderr.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "[{}] {message}\n--- serial ({:?}, {:?} transport, port {}) ---\n{}--- QEMU stderr ---\n{}--- end ---",
            self.test,
            self.guest.accel(),
            self.transport,
            self.port,
            self.guest.serial(),
            self.guest.qemu_stderr()
        )
    }

    /// `[tests-qemu <test>] message` on stderr.
    pub fn note(&self, message: std::fmt::Arguments<'_>) {
        note(&self.test, message);
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port))
    }

    /// `path` on the admin port.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// `GET path` on the admin port, on a new connection with `Connection: close`.
    pub fn admin_get(&self, path: &str) -> Response {
        get_from(self.admin_addr(), path)
            .unwrap_or_else(|e| self.fail(format_args!("GET {path} (admin port): {e}")))
    }

    /// What the guest's access log holds so far.
    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The kernel drove the NIC over the transport the test asked for.
    fn check_transport(&self) {
        let line = self
            .guest
            .wait_for("Network (virtio-mmio ", Duration::from_secs(1))
            .unwrap_or_else(|e| self.fail(format_args!("no virtio-mmio device line: {e}")));
        let want = format!("(virtio-mmio {})", self.transport.kernel_name());
        if !line.contains("Network") || !line.contains(&want) {
            self.fail(format_args!(
                "the NIC line {line:?} does not say {want:?} ({:?} transport requested)",
                self.transport
            ));
        }
    }

    /// Retries `GET /health` until it answers 200 `ok\n`, for at most `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        for _ in 0..1000 {
            match self.try_get("/health") {
                Ok(r) if r.status == 200 && r.body == b"ok\n" => return,
                Ok(r) => last = format!("status {} body {:?}", r.status, r.body_text()),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.fail(format_args!(
            "GET /health did not answer 200 `ok` within {timeout:?}; last: {last}"
        ))
    }

    /// A new connection to the guest's admin port.
    pub fn admin_connect(&self) -> Client {
        Client::connect(self.admin_addr(), IO_TIMEOUT)
            .unwrap_or_else(|e| self.fail(format_args!("connecting to {}: {e}", self.admin_addr())))
    }

    /// A new connection to the guest (connect, read and write timeouts [`IO_TIMEOUT`]).
    pub fn connect(&self) -> Client {
        Client::connect(self.addr(), IO_TIMEOUT)
            .unwrap_or_else(|e| self.fail(format_args!("connecting to {}: {e}", self.addr())))
    }

    /// `method path` on a new connection with `Connection: close` and `headers`
    /// (each `Name: value`); the response, or why there was none.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
    ) -> Result<Response, String> {
        let mut client = Client::connect(self.addr(), IO_TIMEOUT)
            .map_err(|e| format!("connect {}: {e}", self.addr()))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("Connection: close\r\n\r\n");
        client
            .send(req.as_bytes())
            .map_err(|e| format!("sending {method} {path}: {e}"))?;
        client.read_response(method == "HEAD")
    }

    pub fn try_get(&self, path: &str) -> Result<Response, String> {
        self.try_request("GET", path, &[])
    }

    /// [`HttpGuest::try_request`], failing the test on error.
    pub fn request(&self, method: &str, path: &str, headers: &[&str]) -> Response {
        self.try_request(method, path, headers)
            .unwrap_or_else(|e| self.fail(format_args!("{method} {path}: {e}")))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[])
    }

    /// `GET /api/stats.json` (on its own connection, closed after), parsed and
    /// checked: status 200, every counter present and a `u64`.
    pub fn stats(&self) -> Stats {
        let r = self.admin_get("/api/stats.json");
        if r.status != 200 {
            self.fail(format_args!("/api/stats.json answered {}", r.status));
        }
        Stats::parse(&r.body).unwrap_or_else(|e| self.fail(e))
    }

    /// Fetches the stats until `done` holds for them (at most `timeout`); the last
    /// stats and how many fetches it took.
    pub fn stats_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Stats) -> bool,
    ) -> (Stats, u64) {
        let deadline = Instant::now() + timeout;
        for fetches in 1..=1000u64 {
            let s = self.stats();
            if done(&s) {
                return (s, fetches);
            }
            if Instant::now() >= deadline {
                self.fail(format_args!(
                    "{what}: not within {timeout:?} ({fetches} fetches); last stats: {}",
                    s.text
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.fail(format_args!("{what}: not after 1000 fetches"))
    }

    /// The end of every HTTP test: QEMU still running, no fault dump on serial.
    pub fn finish(mut self) {
        if let Some(status) = self.guest.wait_exit(Duration::ZERO) {
            self.fail(format_args!("QEMU exited ({status}) during the test"));
        }
        if self.guest.serial().contains("FATAL ") {
            self.fail("the serial log has a FATAL line");
        }
        let _ = std::fs::remove_file(&self.access_log);
    }
}

/// `GET path` to `addr` on a new connection with `Connection: close`.
pub fn get_from(addr: SocketAddr, path: &str) -> Result<Response, String> {
    get_within(addr, path, IO_TIMEOUT)
}

/// [`get_from`] with its own connect timeout.
pub fn get_within(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    let mut client = Client::connect(addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    client
        .send(req.as_bytes())
        .map_err(|e| format!("sending GET {path}: {e}"))?;
    client.read_response(false)
}

/// One parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many fields are named `name`.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status line and headers, for failure messages.
    pub fn head_text(&self) -> String {
        let mut s = format!("{} {}\n", self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s
    }
}

/// Whether a response to a request with this status carries a body (not for
/// `HEAD`, 1xx, 204, 304).
fn has_body(status: u16, head_request: bool) -> bool {
    !head_request && !(100..200).contains(&status) && status != 204 && status != 304
}

/// One response at the start of `buf`: `Ok(None)` if more bytes are needed,
/// else the response and the bytes it took. The body is framed by
/// `Content-Length`, which this server always sends when there is a body.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<(Response, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(format!("response head over {MAX_RESPONSE_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "malformed response ({e}): {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ));
        }
    };
    if resp.version != Some(1) {
        return Err(format!("response version HTTP/1.{:?}", resp.version));
    }
    let status = resp.code.unwrap_or(0);
    let parsed = Response {
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    let body_len = if has_body(status, head_request) {
        match parsed.content_length() {
            Some(n) => usize::try_from(n).map_err(|_| format!("Content-Length {n}"))?,
            None => {
                return Err(format!(
                    "{status} response without Content-Length:\n{}",
                    parsed.head_text()
                ));
            }
        }
    } else {
        0
    };
    let Some(end) = head_len.checked_add(body_len) else {
        return Err("response length overflows".into());
    };
    if buf.len() < end {
        return Ok(None);
    }
    let mut parsed = parsed;
    parsed.body = buf[head_len..end].to_vec();
    Ok(Some((parsed, end)))
}

/// How a read until the end of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed (FIN).
    Eof,
    /// The connection was reset (or aborted).
    Reset,
    /// Nothing ended it within the time allowed.
    TimedOut,
}

/// One TCP connection to the guest with a buffer of bytes received but not yet
/// consumed as responses.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects with `timeout` for the connect and for every read and write;
    /// `TCP_NODELAY` so each write goes out at once.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Bytes received but not consumed by [`Client::read_response`].
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The next response (`head_request`: it answers a `HEAD`, so no body).
    /// Each read waits at most the socket's read timeout; the whole call at
    /// most [`IO_TIMEOUT`] more than that.
    pub fn read_response(&mut self, head_request: bool) -> Result<Response, String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, head_request)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no complete response within {IO_TIMEOUT:?} ({} bytes buffered)",
                    self.buf.len()
                ));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed before a complete response ({} bytes buffered: {:?})",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "reading a response ({} bytes buffered): {e}",
                        self.buf.len()
                    ));
                }
            }
        }
    }

    /// Reads until the peer closes, resets, or `timeout` passes; returns how it
    /// ended and every byte not yet consumed (the buffer is emptied).
    pub fn read_until_close(&mut self, timeout: Duration) -> (Ending, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        let ending = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::TimedOut;
            }
            if self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                break Ending::Reset;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ending::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break Ending::Reset,
            }
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        (ending, std::mem::take(&mut self.buf))
    }

    /// Whether the connection is still open after waiting `wait` for it to close;
    /// bytes that arrive meanwhile are kept in the buffer.
    pub fn still_open_after(&mut self, wait: Duration) -> bool {
        let (ending, bytes) = self.read_until_close(wait);
        self.buf = bytes;
        ending == Ending::TimedOut
    }
}

/// Parses every complete response in `bytes` (`heads[i]`: the i-th answers a
/// `HEAD`; missing entries mean `GET`). Returns them and the unparsed rest.
pub fn parse_all(bytes: &[u8], heads: &[bool]) -> Result<(Vec<Response>, Vec<u8>), String> {
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..10_000 {
        let head = heads.get(i).copied().unwrap_or(false);
        match parse_response(&bytes[at..], head)? {
            Some((r, used)) => {
                out.push(r);
                at += used;
            }
            None => break,
        }
    }
    Ok((out, bytes[at..].to_vec()))
}

/// `/api/stats.json`, parsed.
#[derive(Clone, Debug)]
pub struct Stats {
    pub version: String,
    pub map: serde_json::Map<String, serde_json::Value>,
    /// The JSON as received, for failure messages.
    pub text: String,
}

impl Stats {
    /// Parses the JSON and checks that it is one object with a non-empty string
    /// `version` and every counter of [`STATS_COUNTERS`] as a `u64`.
    pub fn parse(body: &[u8]) -> Result<Stats, String> {
        let text = String::from_utf8_lossy(body).into_owned();
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("/api/stats.json is not JSON ({e}): {text}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err(format!("/api/stats.json is not one object: {text}"));
        };
        let version = match map.get("version") {
            Some(serde_json::Value::String(v)) if !v.is_empty() => v.clone(),
            other => return Err(format!("stats `version` is {other:?}: {text}")),
        };
        for name in STATS_COUNTERS {
            match map.get(*name) {
                Some(v) if v.is_u64() => {}
                other => return Err(format!("stats counter {name} is {other:?}: {text}")),
            }
        }
        Ok(Stats { version, map, text })
    }

    /// A counter; panics for a name not in [`STATS_COUNTERS`] (parse checked them).
    pub fn get(&self, name: &str) -> u64 {
        match self.map.get(name).and_then(serde_json::Value::as_u64) {
            Some(v) => v,
            None => panic!("stats have no u64 counter {name:?}: {}", self.text),
        }
    }

    /// `self.name - before.name`, failing if the counter went backwards.
    pub fn delta(&self, before: &Stats, name: &str) -> u64 {
        let (a, b) = (before.get(name), self.get(name));
        match b.checked_sub(a) {
            Some(d) => d,
            None => panic!(
                "stats counter {name} went backwards: {a} -> {b}\nbefore: {}\nafter: {}",
                before.text, self.text
            ),
        }
    }
}

/// A file of the baked site, read from `kernel/site/` (`rel` without the leading `/`).
pub fn site_file(rel: &str) -> Vec<u8> {
    let path = site_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn site_path(rel: &str) -> PathBuf {
    boot_image::repo_root().join("kernel/site").join(rel)
}

/// The strong ETag the kernel gives a body: `"` + 16 hex digits of FNV-1a 64 + `"`.
pub fn etag_of(bytes: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("\"{hash:016x}\"")
}

/// The `Content-Type` the kernel gives a file of the default site, by
/// extension (its table in `kernel/src/app/asset_meta.rs`, for the extensions
/// the default site uses); panics for any other, so a new kind of file gets
/// an expectation written down.
pub fn site_content_type(rel: &str) -> &'static str {
    match std::path::Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
    {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("bin") => "application/octet-stream",
        Some("gz") => "application/gzip",
        Some("webm") => "video/webm",
        other => panic!("site file {rel}: extension {other:?} not covered by the tests"),
    }
}

/// Decompresses a gzip body.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("not valid gzip ({} bytes): {e}", bytes.len()))?;
    Ok(out)
}

/// gzip at the best level, as the kernel's build script makes the variants.
pub fn gzip_best(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Decompresses a brotli body.
pub fn unbrotli(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut out)
        .map_err(|e| format!("not valid brotli ({} bytes): {e}", bytes.len()))?;
    Ok(out)
}

/// brotli at quality 11, window 22, as the kernel's build script makes the
/// variants (the encoder is deterministic, so these are the baked bytes).
pub fn brotli_best(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("brotli into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brotli_round_trip() {
        let data = b"a brotli round trip, a brotli round trip".repeat(20);
        let packed = brotli_best(&data);
        assert!(packed.len() < data.len());
        assert_eq!(unbrotli(&packed).unwrap(), data);
        assert!(unbrotli(b"not brotli").is_err());
    }

    #[test]
    fn parses_pipelined_responses_with_head_and_304() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n\
            HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nn";
        let (rs, rest) = parse_all(wire, &[false, true, false, false]).unwrap();
        assert_eq!(rs.len(), 3);
        assert_eq!((rs[0].status, rs[0].body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!((rs[1].content_length(), rs[1].body.len()), (Some(10), 0));
        assert_eq!(rs[2].status, 304);
        assert!(rest.starts_with(b"HTTP/1.1 404"));
        let (r, _) = parse_response(&[rest.as_slice(), b"\n"].concat(), false)
            .unwrap()
            .unwrap();
        assert!(r.closes());
        assert_eq!(r.header("CONNECTION"), Some("close"));
    }

    #[test]
    fn rejects_bodies_without_length_and_garbage() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc", false).is_err());
        assert!(parse_response(b"hello world\r\n\r\n", false).is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap(),
            None
        );
    }

    #[test]
    fn etag_matches_the_kernels_fnv1a() {
        // FNV-1a 64 of the empty input is the offset basis; of "a", a known value.
        assert_eq!(etag_of(b""), "\"cbf29ce484222325\"");
        assert_eq!(etag_of(b"a"), "\"af63dc4c8601ec8c\"");
    }

    #[test]
    fn gzip_round_trip() {
        let data = b"hello hello hello hello".repeat(10);
        assert_eq!(gunzip(&gzip_best(&data)).unwrap(), data);
        assert!(gunzip(b"not gzip").is_err());
    }

    #[test]
    fn stats_parse_requires_every_counter() {
        let mut obj = serde_json::Map::new();
        obj.insert("version".into(), "0.1.0".into());
        for name in STATS_COUNTERS {
            obj.insert((*name).into(), 7u64.into());
        }
        let text = serde_json::Value::Object(obj.clone()).to_string();
        let s = Stats::parse(text.as_bytes()).unwrap();
        assert_eq!(s.get("heap_used"), 7);
        obj.insert("frames_in".into(), (-1i64).into());
        let text = serde_json::Value::Object(obj.clone()).to_string();
        assert!(
            Stats::parse(text.as_bytes())
                .unwrap_err()
                .contains("frames_in")
        );
        obj.remove("frames_in");
        let text = serde_json::Value::Object(obj).to_string();
        assert!(Stats::parse(text.as_bytes()).is_err());
    }
}
