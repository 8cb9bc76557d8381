//! Host-side tools for the fault tests in `tests/resilience.rs`: faults
//! injected from outside (QMP) or by guest config while the guest is under load, and the measurements that judge them.
//!
//! - [`boot_qmp`]: an HTTP guest (see [`crate::http::boot_http`]) with a QMP
//!   socket, connected.
//! - [`Download`]: `/large.bin` fetched `n` times pipelined on one connection by
//!   a reader thread, with a live byte count, checked byte-exact, ending in an
//!   [`Outcome`] that tells a clean failure (the guest closed or reset) from a
//!   stall or a corrupted body.
//! - [`Wrk`]: `wrk` in the background, bounded, its summary parsed.
//! - [`HealthProbe`]: `GET /health` every second on a keep-alive connection, as
//!   `scripts/soak` does (QEMU user networking's host listener has a backlog of
//!   1, so fresh connects can wait 1-3 s for SYN retransmits under load; a
//!   persistent connection measures the guest).
//! - [`KeepAlivePool`] and [`poll_fresh_health`]: how soon `/health` answers
//!   after an outage.
//!
//! Every loop is bounded in count and time.

mod load;

pub use load::*;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{Client, HttpGuest, Transport, boot_http_with, parse_response, site_file};
use crate::note;
use crate::qmp::{Qmp, SocketFile, socket_path};

/// Size of `kernel/site/large.bin` (a download that outlasts a 5 s outage: 1.5 MiB).
pub const LARGE_LEN: usize = 1_572_864;
/// How long `/health` may take after an outage ends, and a probe under load.
pub const HEALTH_LIMIT: Duration = Duration::from_secs(2);

/// `kernel/site/large.bin`, read once.
pub fn large_bin() -> &'static [u8] {
    static LARGE: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = LARGE.get_or_init(|| site_file("large.bin"));
    assert_eq!(bytes.len(), LARGE_LEN, "kernel/site/large.bin changed size");
    bytes
}

/// An HTTP guest with a QMP connection. Dropping it kills QEMU and removes the
/// socket file.
pub struct QmpGuest {
    pub http: HttpGuest,
    pub qmp: Qmp,
    _socket: SocketFile,
}

/// Boots like [`crate::http::boot_http`] (legacy transport, port 80 forwarded to
/// a free port, waits for `net: ready` and `/health`) with a QMP socket, and
/// connects to it.
pub fn boot_qmp(test: &str, items: &[&str]) -> QmpGuest {
    let socket = SocketFile(socket_path(test));
    let start = Instant::now();
    let http = boot_http_with(test, Transport::Legacy, items, |cfg| {
        let _ = std::fs::remove_file(&socket.0);
        cfg.qmp_socket = Some(socket.0.clone());
    });
    let qmp = Qmp::connect(&socket.0, Duration::from_secs(10))
        .unwrap_or_else(|e| http.fail(format_args!("QMP: {e}")));
    note(
        test,
        format_args!(
            "QEMU {} with QMP, /health 200 after {:.2?}",
            qmp.qemu_version,
            start.elapsed()
        ),
    );
    QmpGuest {
        http,
        qmp,
        _socket: socket,
    }
}

/// Fails unless the guest accepted every config item: the only `config:`
/// lines allowed on serial are the parsed configuration and "no config file";
/// any other (unknown key, bad value, not key=value, ...) is a rejection. An
/// ignored fault or queue size would make a fault test pass without testing
/// anything.
pub fn check_config_accepted(g: &HttpGuest, items: &[&str]) {
    let serial = g.guest.serial();
    if let Some(line) = serial.lines().find(|l| {
        l.starts_with("config: ")
            && !l.starts_with("config: Config {")
            && !l.starts_with("config: no ")
    }) {
        g.fail(format_args!(
            "the guest did not accept the config {items:?}: {line:?}"
        ));
    }
}

/// How a [`Download`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every response arrived: 200, `Content-Length` and body byte-exact.
    Complete,
    /// The guest ended the connection (FIN or reset) before the last byte: a
    /// clean failure, to be retried.
    Closed(String),
    /// No byte for the read timeout, or past the overall deadline: a stall.
    Stalled(String),
    /// A wrong status, a malformed response or a body that differs: never
    /// acceptable.
    Corrupt(String),
}

/// What a [`Download`] thread returns.
#[derive(Clone, Debug)]
pub struct DownloadResult {
    pub outcome: Outcome,
    /// Complete, byte-exact responses.
    pub responses_ok: usize,
    pub received: u64,
    pub elapsed: Duration,
    /// Every read: when it returned and the byte count after it.
    pub reads: Vec<(Instant, u64)>,
}

impl DownloadResult {
    /// Bytes received by `at`.
    pub fn received_by(&self, at: Instant) -> u64 {
        self.reads
            .iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map_or(0, |(_, n)| *n)
    }

    /// The first read after `at` that brought bytes: how long after `at`, and
    /// the count before it.
    pub fn first_read_after(&self, at: Instant) -> Option<(Duration, u64)> {
        let before = self.received_by(at);
        self.reads
            .iter()
            .find(|(t, _)| *t > at)
            .map(|(t, _)| (*t - at, before))
    }

    /// Bytes received after `at`.
    pub fn received_after(&self, at: Instant) -> u64 {
        self.received - self.received_by(at)
    }
}

/// `GET /large.bin` `count` times pipelined on one keep-alive connection, read
/// by a thread as fast as the guest sends.
pub struct Download {
    received: Arc<AtomicU64>,
    /// Bytes the whole transfer carries (heads included), known once the first
    /// head arrived; 0 before.
    expected: Arc<AtomicU64>,
    handle: Option<JoinHandle<DownloadResult>>,
    pub started: Instant,
}

impl Download {
    /// Starts the thread. Each read waits at most `read_timeout`; the whole
    /// transfer at most `deadline` from now.
    pub fn start(
        addr: SocketAddr,
        count: usize,
        read_timeout: Duration,
        deadline: Duration,
    ) -> Download {
        let received = Arc::new(AtomicU64::new(0));
        let expected = Arc::new(AtomicU64::new(0));
        let (r, e) = (Arc::clone(&received), Arc::clone(&expected));
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            download(addr, count, read_timeout, started + deadline, &r, &e)
        });
        Download {
            received,
            expected,
            handle: Some(handle),
            started,
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Bytes the whole transfer carries, 0 until the first head arrived.
    pub fn expected(&self) -> u64 {
        self.expected.load(Ordering::Acquire)
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until at least `bytes` arrived or the download ended, for at most
    /// `timeout`; whether the bytes arrived.
    pub fn wait_for_bytes(&self, bytes: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000_000u64 {
            if self.received() >= bytes {
                return true;
            }
            if self.is_finished() || Instant::now() >= deadline {
                return self.received() >= bytes;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        false
    }

    /// The thread's result (it ends by its own deadline).
    pub fn join(mut self) -> DownloadResult {
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(result) => result,
            Err(_) => panic!("the download thread panicked"),
        }
    }
}

fn download(
    addr: SocketAddr,
    count: usize,
    read_timeout: Duration,
    deadline: Instant,
    received: &AtomicU64,
    expected: &AtomicU64,
) -> DownloadResult {
    let start = Instant::now();
    let mut responses_ok = 0;
    let mut total = 0u64;
    let mut reads = Vec::new();
    let outcome = (|| {
        let mut client = Client::connect(addr, read_timeout)
            .map_err(|e| Outcome::Closed(format!("connect: {e}")))?;
        let request = "GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(count);
        client
            .send(request.as_bytes())
            .map_err(|e| Outcome::Closed(format!("sending the requests: {e}")))?;
        let want = large_bin();
        let mut buf: Vec<u8> = Vec::with_capacity(2 * LARGE_LEN);
        let mut chunk = vec![0u8; 256 * 1024];
        for _ in 0..10_000_000u64 {
            match parse_response(&buf, false) {
                Ok(Some((r, used))) => {
                    if r.status != 200 {
                        return Err(Outcome::Corrupt(format!(
                            "response {responses_ok}: status {}",
                            r.status
                        )));
                    }
                    if r.body != want {
                        let at = r.body.iter().zip(want).position(|(a, b)| a != b);
                        return Err(Outcome::Corrupt(format!(
                            "response {responses_ok}: {} body bytes, first difference at {at:?}",
                            r.body.len()
                        )));
                    }
                    if expected.load(Ordering::Relaxed) == 0 {
                        let head = (used - r.body.len()) as u64;
                        expected.store((head + LARGE_LEN as u64) * count as u64, Ordering::Release);
                    }
                    responses_ok += 1;
                    buf.drain(..used);
                    if responses_ok == count {
                        return if buf.is_empty() {
                            Ok(())
                        } else {
                            Err(Outcome::Corrupt(format!(
                                "{} bytes after the last response",
                                buf.len()
                            )))
                        };
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(Outcome::Corrupt(format!("response {responses_ok}: {e}"))),
            }
            if Instant::now() >= deadline {
                return Err(Outcome::Stalled(format!(
                    "overall deadline passed after {responses_ok} responses and {total} bytes"
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = client
                .stream
                .set_read_timeout(Some(read_timeout.min(left).max(Duration::from_millis(1))));
            match client.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Outcome::Closed(format!(
                        "EOF after {responses_ok} responses and {total} bytes"
                    )));
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    total += n as u64;
                    reads.push((Instant::now(), total));
                    received.store(total, Ordering::Release);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        continue;
                    }
                    return Err(Outcome::Stalled(format!(
                        "no byte for {read_timeout:?} after {responses_ok} responses and {total} bytes"
                    )));
                }
                Err(e) => {
                    return Err(Outcome::Closed(format!(
                        "{e} after {responses_ok} responses and {total} bytes"
                    )));
                }
            }
        }
        Err(Outcome::Stalled("10,000,000 reads".to_string()))
    })();
    DownloadResult {
        outcome: outcome.err().unwrap_or(Outcome::Complete),
        responses_ok,
        received: total,
        elapsed: start.elapsed(),
        reads,
    }
}

/// `count` pipelined downloads of `/large.bin`, started and waited for; the
/// result.
pub fn download_now(addr: SocketAddr, count: usize, timeout: Duration) -> DownloadResult {
    Download::start(addr, count, timeout, timeout).join()
}

/// `scripts/lib/mixed.lua`: the soak's mix of routes (small pages, the 64 KiB
/// and the 1.5 MiB assets).
pub fn mixed_lua() -> PathBuf {
    boot_image::repo_root().join("scripts/lib/mixed.lua")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn download_timeline() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let r = DownloadResult {
            outcome: Outcome::Complete,
            responses_ok: 1,
            received: 300,
            elapsed: Duration::from_millis(40),
            reads: vec![(at(10), 100), (at(20), 200), (at(40), 300)],
        };
        assert_eq!(r.received_by(at(5)), 0);
        assert_eq!(r.received_by(at(20)), 200);
        assert_eq!(r.received_after(at(25)), 100);
        assert_eq!(
            r.first_read_after(at(25)),
            Some((Duration::from_millis(15), 200))
        );
        assert_eq!(r.first_read_after(at(40)), None);
    }
}
