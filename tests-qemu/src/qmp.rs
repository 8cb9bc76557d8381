//! A small QMP client for the fault tests: link down/up
//! with `set_link`, `stop`/`cont`, `query-status`.
//!
//! QMP speaks one JSON object per line over the unix socket that
//! `QemuConfig::qmp_socket` asks QEMU to listen on: a greeting, then
//! `qmp_capabilities`, then commands, each answered by a `return` or `error`
//! object carrying the command's `id`; asynchronous `event` objects may come in
//! between and are kept in [`Qmp::events`]. Every read is bounded by a deadline.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one command may take to be answered.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest line accepted from QEMU.
const MAX_LINE: usize = 1 << 20;

/// The netdev id the launcher gives the user-mode network backend
/// (boot-image `qemu_command.rs`: `-netdev user,id=net0,...`). `set_link` on a
/// netdev also takes down its NIC peer (the NIC itself has no id, QEMU calls it
/// `virtio-net-device.0`); both names work, and a request to the guest gets no
/// answer while either is down.
pub const NETDEV: &str = "net0";

/// A fresh socket path in the temporary directory, short enough for a unix
/// socket (108 bytes), unique within the test binary and across processes.
pub fn socket_path(test: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    std::env::temp_dir().join(format!("tq-{}-{n}-{short}.qmp", std::process::id()))
}

/// Removes the socket file when dropped (QEMU leaves it behind when killed).
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One QMP connection in command mode.
pub struct Qmp {
    stream: UnixStream,
    buf: Vec<u8>,
    next_id: u64,
    /// The greeting's `QMP.version.qemu`, e.g. `7.2.22`.
    pub qemu_version: String,
    /// Every asynchronous event received so far (`STOP`, `RESUME`, ...).
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects to `path` (retrying until `timeout` while QEMU has not created
    /// it yet), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        let mut stream = None;
        for _ in 0..10_000 {
            match UnixStream::connect(path) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let stream = stream.ok_or_else(|| {
            format!(
                "QMP socket {} not connectable within {timeout:?}: {last}",
                path.display()
            )
        })?;
        stream
            .set_write_timeout(Some(QMP_TIMEOUT))
            .map_err(|e| format!("QMP socket write timeout: {e}"))?;
        let mut qmp = Qmp {
            stream,
            buf: Vec::new(),
            next_id: 1,
            qemu_version: String::new(),
            events: Vec::new(),
        };
        let greeting = qmp.read_object(Instant::now() + QMP_TIMEOUT)?;
        let Some(version) = greeting.pointer("/QMP/version/qemu") else {
            return Err(format!("QMP greeting without QMP.version.qemu: {greeting}"));
        };
        qmp.qemu_version = format!(
            "{}.{}.{}",
            version["major"], version["minor"], version["micro"]
        );
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns its `return` value, or the
    /// `error` as text. Events received meanwhile go to [`Qmp::events`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("QMP: sending {command}: {e}"))?;
        let deadline = Instant::now() + QMP_TIMEOUT;
        for _ in 0..10_000 {
            let reply = self.read_object(deadline)?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            if reply.get("id") != Some(&json!(id)) {
                return Err(format!(
                    "QMP: reply to {command} (id {id}) has another id: {reply}"
                ));
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(format!("QMP {command}: {err}"));
            }
            return Err(format!("QMP: unexpected reply to {command}: {reply}"));
        }
        Err(format!("QMP: no reply to {command} among 10,000 events"))
    }

    /// `set_link name up`.
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<(), String> {
        self.execute("set_link", Some(json!({ "name": name, "up": up })))
            .map(|_| ())
    }

    /// `stop`: returns once the vCPUs are paused.
    pub fn stop(&mut self) -> Result<(), String> {
        self.execute("stop", None).map(|_| ())
    }

    /// `cont`.
    pub fn cont(&mut self) -> Result<(), String> {
        self.execute("cont", None).map(|_| ())
    }

    /// `query-status`: the run state (`running`, `paused`, ...).
    pub fn query_status(&mut self) -> Result<String, String> {
        let ret = self.execute("query-status", None)?;
        match ret.get("status").and_then(Value::as_str) {
            Some(status) => Ok(status.to_string()),
            None => Err(format!("query-status without a status: {ret}")),
        }
    }

    /// Whether an event named `name` has been received.
    pub fn saw_event(&self, name: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.get("event").and_then(Value::as_str) == Some(name))
    }

    /// The next JSON object line, waiting at most until `deadline`.
    fn read_object(&mut self, deadline: Instant) -> Result<Value, String> {
        let mut chunk = [0u8; 4096];
        for _ in 0..100_000 {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text)
                    .map_err(|e| format!("QMP: not JSON ({e}): {text:?}"));
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!("QMP: line over {MAX_LINE} bytes"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "QMP: no complete line within the deadline ({} bytes buffered)",
                    self.buf.len()
                ));
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| format!("QMP socket read timeout: {e}"))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("QMP: QEMU closed the socket".to_string()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("QMP: reading: {e}")),
            }
        }
        Err("QMP: no complete line after 100,000 reads".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: greeting, then answers each command (echoing its id), with
    /// an event before the second answer.
    #[test]
    fn handshake_events_and_errors() {
        let path = socket_path("unit");
        let _file = SocketFile(path.clone());
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            writeln!(
                out,
                r#"{{"QMP": {{"version": {{"qemu": {{"micro": 22, "minor": 2, "major": 7}}}}, "capabilities": []}}}}"#
            )
            .unwrap();
            let mut commands = Vec::new();
            for (n, line) in BufReader::new(stream).lines().enumerate() {
                let request: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let id = request["id"].clone();
                commands.push(request["execute"].as_str().unwrap().to_string());
                let reply = match n {
                    0 => json!({ "return": {}, "id": id }),
                    1 => {
                        writeln!(out, r#"{{"event": "STOP", "timestamp": {{}}}}"#).unwrap();
                        json!({ "return": { "status": "paused", "running": false }, "id": id })
                    }
                    _ => json!({ "error": { "class": "DeviceNotFound", "desc": "no" }, "id": id }),
                };
                writeln!(out, "{reply}").unwrap();
            }
            commands
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.qemu_version, "7.2.22");
        assert_eq!(qmp.query_status().unwrap(), "paused");
        assert!(qmp.saw_event("STOP"));
        let err = qmp.set_link("nosuch", false).unwrap_err();
        assert!(err.contains("DeviceNotFound"), "{err}");
        drop(qmp);
        assert_eq!(
            server.join().unwrap(),
            ["qmp_capabilities", "query-status", "set_link"]
        );
    }
}
