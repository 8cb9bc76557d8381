//! Headless Chromium driven over the DevTools protocol by
//! `tests/observability/cdp.py` (one JSON command per line on its stdin, one
//! JSON reply per line on its stdout); quits when dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::note;

/// Longest wait for one reply of cdp.py (a page load under TCG included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often [`Browser::wait_until`] re-evaluates its expression.
const POLL: Duration = Duration::from_millis(250);

/// The Chromium binary: `$TESTS_QEMU_CHROMIUM`, else the first of the usual
/// names on `PATH`.
pub fn chromium() -> String {
    if let Ok(bin) = std::env::var("TESTS_QEMU_CHROMIUM") {
        return bin;
    }
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(candidate).is_file()));
        if found {
            return candidate.to_string();
        }
    }
    panic!("no chromium on PATH: install the Debian package chromium (or set TESTS_QEMU_CHROMIUM)")
}

pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    /// Starts Chromium with a fresh profile; its log goes to
    /// `artifacts/<test>-chromium.log`.
    pub fn start(test: &str, artifacts: &Path) -> Browser {
        let binary = chromium();
        let profile =
            std::env::temp_dir().join(format!("tests-qemu-chromium-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("chromium profile dir");
        let log = artifacts.join(format!("{test}-chromium.log"));
        let cdp = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/observability/cdp.py");
        let mut child = Command::new("python3")
            .arg(&cdp)
            .arg(&binary)
            .arg(&profile)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", cdp.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut b = Browser {
            stdin: child.stdin.take(),
            child,
            lines,
            profile,
            log,
        };
        let ready = b.reply("start");
        assert_eq!(ready["ready"], true, "cdp.py: {ready}");
        note(test, format_args!("browser: {binary}"));
        b
    }

    fn reply(&mut self, what: &str) -> Value {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("cdp.py said {line:?}: {e}"))
            }
            Err(e) => panic!(
                "cdp.py: no reply to {what} ({e}); chromium log {}:\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }

    /// Sends one command (`open`, `eval`, `events`, `screenshot`, ...) and
    /// returns its reply; panics unless the reply says `ok`.
    pub fn cmd(&mut self, request: Value) -> Value {
        let line = format!("{request}\n");
        self.stdin
            .as_mut()
            .expect("cdp.py stdin")
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("writing to cdp.py: {e}"));
        let reply = self.reply(&line);
        if reply["ok"] != true {
            panic!("cdp.py {request}: {reply}");
        }
        reply
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expr: &str) -> Value {
        self.cmd(json!({"cmd": "eval", "expr": expr}))["value"].clone()
    }

    /// Re-evaluates `expr` until it is `true`; after `timeout` fails with
    /// `what` and the value of `state` (an expression describing the page).
    pub fn wait_until(&mut self, expr: &str, timeout: Duration, what: &str, state: &str) {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            if self.eval(expr) == true {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "{what}: not within {timeout:?}; page state: {}",
            self.eval(state)
        );
    }

    /// Console messages, exceptions and log entries so far.
    pub fn events(&mut self) -> Vec<Value> {
        self.cmd(json!({"cmd": "events"}))["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The events at level error, and exceptions.
    pub fn errors(&mut self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["level"] == "error" || e["kind"] == "exception")
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"quit\"}\n");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
