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

mod response;
mod site;

pub use response::*;
pub use site::*;

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
