//! Capture of QEMU's output: its stdout (the guest's serial console) split into lines,
//! and its stderr. Background threads read both pipes into a shared, bounded store that
//! callers can wait on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Serial output kept in memory; older lines are dropped beyond this (a guest stuck in
/// a print loop must not exhaust the host).
const MAX_SERIAL_BYTES: usize = 64 << 20;
/// A "line" this long without a newline is cut and stored anyway.
const MAX_LINE_BYTES: usize = 64 << 10;
/// QEMU stderr kept in memory (the newest part).
const MAX_STDERR_BYTES: usize = 1 << 20;

/// Appends `bytes` to `partial` and returns the lines completed by them, without their
/// `\n` or `\r\n`. Invalid UTF-8 is replaced, not rejected.
pub(crate) fn split_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    for &b in bytes {
        if b == b'\n' {
            lines.push(decode_line(partial));
        } else {
            partial.push(b);
            if partial.len() >= MAX_LINE_BYTES {
                lines.push(decode_line(partial));
            }
        }
    }
    lines
}

/// Takes the bytes out of `partial` as one line.
fn decode_line(partial: &mut Vec<u8>) -> String {
    let mut line = String::from_utf8_lossy(partial).into_owned();
    partial.clear();
    if line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Oldest-first text store with a byte budget.
#[derive(Debug, Default)]
struct BoundedLines {
    lines: VecDeque<String>,
    /// Absolute index of `lines[0]`: how many lines were dropped.
    first_index: usize,
    bytes: usize,
}

impl BoundedLines {
    fn push(&mut self, line: String, budget: usize) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > budget && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
                self.first_index += 1;
            }
        }
    }

    /// Absolute index one past the last line.
    fn end(&self) -> usize {
        self.first_index + self.lines.len()
    }

    fn get(&self, index: usize) -> Option<&String> {
        index
            .checked_sub(self.first_index)
            .and_then(|i| self.lines.get(i))
    }

    fn tail(&self, n: usize) -> impl Iterator<Item = &String> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }
}

#[derive(Debug)]
struct State {
    serial: BoundedLines,
    /// Serial bytes after the last newline.
    partial: Vec<u8>,
    serial_open: bool,
    stderr: BoundedLines,
    stderr_open: bool,
}

/// Result of waiting for a serial line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The first matching line and its absolute index.
    Found {
        index: usize,
        line: String,
    },
    /// QEMU closed its stdout (it exited) with no matching line.
    Closed,
    TimedOut,
}

/// Shared between the reader threads and the [`crate::Guest`].
#[derive(Debug)]
pub(crate) struct Capture {
    state: Mutex<State>,
    changed: Condvar,
}

impl Capture {
    pub(crate) fn new() -> Self {
        Capture {
            state: Mutex::new(State {
                serial: BoundedLines::default(),
                partial: Vec::new(),
                serial_open: true,
                stderr: BoundedLines::default(),
                stderr_open: true,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores serial bytes; returns the lines they completed.
    pub(crate) fn push_serial(&self, bytes: &[u8]) -> Vec<String> {
        let mut st = self.lock();
        let lines = split_lines(&mut st.partial, bytes);
        for line in &lines {
            st.serial.push(line.clone(), MAX_SERIAL_BYTES);
        }
        drop(st);
        if !lines.is_empty() {
            self.changed.notify_all();
        }
        lines
    }

    /// At end of output: stores and returns the unterminated last line, if any.
    pub(crate) fn flush_serial(&self) -> Option<String> {
        let mut st = self.lock();
        if st.partial.is_empty() {
            return None;
        }
        let line = decode_line(&mut st.partial);
        st.serial.push(line.clone(), MAX_SERIAL_BYTES);
        drop(st);
        self.changed.notify_all();
        Some(line)
    }

    pub(crate) fn close_serial(&self) {
        self.lock().serial_open = false;
        self.changed.notify_all();
    }

    pub(crate) fn push_stderr(&self, line: String) {
        self.lock().stderr.push(line, MAX_STDERR_BYTES);
    }

    pub(crate) fn close_stderr(&self) {
        self.lock().stderr_open = false;
        self.changed.notify_all();
    }

    /// All serial output kept so far, one `\n` after each line, plus any unterminated
    /// last line.
    pub(crate) fn serial_text(&self) -> String {
        let st = self.lock();
        let mut text = String::with_capacity(st.serial.bytes + st.partial.len());
        for line in &st.serial.lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&st.partial));
        text
    }

    /// Number of complete serial lines received so far (including dropped ones).
    pub(crate) fn line_count(&self) -> usize {
        self.lock().serial.end()
    }

    /// The last `n` serial lines (and any unterminated line), for error messages.
    pub(crate) fn serial_tail(&self, n: usize) -> String {
        let st = self.lock();
        let mut text: Vec<&str> = st.serial.tail(n).map(String::as_str).collect();
        let partial = String::from_utf8_lossy(&st.partial);
        if !partial.is_empty() {
            text.push(&partial);
        }
        text.join("\n")
    }

    pub(crate) fn stderr_text(&self) -> String {
        let st = self.lock();
        st.stderr
            .lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` for the first serial line at absolute index `from` or later
    /// that satisfies `matches` (lines already received count).
    pub(crate) fn wait_line(
        &self,
        from: usize,
        matches: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> WaitOutcome {
        let deadline = Instant::now().checked_add(timeout);
        let mut next = from;
        let mut st = self.lock();
        loop {
            next = next.max(st.serial.first_index);
            while let Some(line) = st.serial.get(next) {
                if matches(line) {
                    return WaitOutcome::Found {
                        index: next,
                        line: line.clone(),
                    };
                }
                next += 1;
            }
            if !st.serial_open {
                return WaitOutcome::Closed;
            }
            st = match deadline {
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return WaitOutcome::TimedOut;
                    }
                    self.changed
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Waits up to `timeout` until both pipes reached end of file (and every line was
    /// echoed). `true` if they did.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if !st.serial_open && !st.stderr_open {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Where serial lines go besides the [`Capture`].
pub(crate) struct SerialSinks {
    /// Print each line to our stdout.
    pub echo: bool,
    /// Append each line to this file.
    pub log: Option<File>,
}

impl SerialSinks {
    fn emit(&mut self, line: &str) {
        if self.echo {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Some(file) = &mut self.log
            && writeln!(file, "{line}").is_err()
        {
            // Disk full or similar: stop logging rather than fail the guest.
            self.log = None;
        }
    }
}

/// Reads the serial console until QEMU closes it.
pub(crate) fn spawn_serial_reader(
    mut pipe: impl Read + Send + 'static,
    capture: Arc<Capture>,
    mut sinks: SerialSinks,
) -> io::Result<()> {
    thread::Builder::new()
        .name("qemu-serial".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        for line in capture.push_serial(&buf[..n]) {
                            sinks.emit(&line);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if let Some(line) = capture.flush_serial() {
                sinks.emit(&line);
            }
            if let Some(file) = &mut sinks.log {
                let _ = file.flush();
            }
            capture.close_serial();
        })
        .map(drop)
}

/// Reads QEMU's stderr until it closes; `echo` copies it to our stderr.
pub(crate) fn spawn_stderr_reader(
    pipe: impl Read + Send + 'static,
    capture: Arc<Capture>,
    echo: bool,
) -> io::Result<()> {
    thread::Builder::new()
        .name("qemu-stderr".into())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let line = decode_line(&mut buf);
                        if echo {
                            eprintln!("{line}");
                        }
                        capture.push_stderr(line);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            capture.close_stderr();
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let mut partial = Vec::new();
        assert_eq!(split_lines(&mut partial, b"hel"), Vec::<String>::new());
        assert_eq!(split_lines(&mut partial, b"lo\r"), Vec::<String>::new());
        assert_eq!(
            split_lines(&mut partial, b"\nworld\n\nx"),
            ["hello", "world", ""]
        );
        assert_eq!(partial, b"x");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut partial = Vec::new();
        assert_eq!(split_lines(&mut partial, b"a\xffb\n"), ["a\u{fffd}b"]);
    }

    #[test]
    fn overlong_lines_are_cut() {
        let mut partial = Vec::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 10];
        let lines = split_lines(&mut partial, &long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(partial.len(), 10);
    }

    #[test]
    fn bounded_lines_drop_oldest_but_keep_indices() {
        let mut b = BoundedLines::default();
        for i in 0..10 {
            b.push(format!("line{i}"), 20);
        }
        assert_eq!(b.end(), 10);
        assert!(b.first_index > 0);
        assert_eq!(b.get(9).map(String::as_str), Some("line9"));
        assert_eq!(b.get(0), None);
        assert!(b.bytes <= 20);
    }

    #[test]
    fn wait_line_finds_earlier_and_later_lines() {
        let capture = Arc::new(Capture::new());
        capture.push_serial(b"boot\nready 1\n");
        let found = capture.wait_line(0, |l| l.contains("ready"), Duration::ZERO);
        assert_eq!(
            found,
            WaitOutcome::Found {
                index: 1,
                line: "ready 1".into()
            }
        );
        // Starting after the first match waits for a later one.
        let c = Arc::clone(&capture);
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            c.push_serial(b"ready 2\n");
        });
        let found = capture.wait_line(2, |l| l.contains("ready"), Duration::from_secs(5));
        writer.join().unwrap();
        assert_eq!(
            found,
            WaitOutcome::Found {
                index: 2,
                line: "ready 2".into()
            }
        );
    }

    #[test]
    fn wait_line_times_out_and_notices_close() {
        let capture = Capture::new();
        capture.push_serial(b"partial without newline");
        let start = Instant::now();
        let outcome = capture.wait_line(0, |l| l.contains("partial"), Duration::from_millis(50));
        assert_eq!(outcome, WaitOutcome::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(50));
        // At end of output the unterminated line counts.
        assert_eq!(
            capture.flush_serial().as_deref(),
            Some("partial without newline")
        );
        capture.close_serial();
        assert!(matches!(
            capture.wait_line(0, |l| l.contains("partial"), Duration::ZERO),
            WaitOutcome::Found { index: 0, .. }
        ));
        assert_eq!(
            capture.wait_line(0, |l| l.contains("nope"), Duration::from_secs(60)),
            WaitOutcome::Closed
        );
    }

    #[test]
    fn text_tail_and_stderr() {
        let capture = Capture::new();
        capture.push_serial(b"a\r\nb\nc\nd");
        assert_eq!(capture.serial_text(), "a\nb\nc\nd");
        assert_eq!(capture.serial_tail(2), "b\nc\nd");
        assert_eq!(capture.line_count(), 3);
        capture.push_stderr("warning: x".into());
        capture.push_stderr("error: y".into());
        assert_eq!(capture.stderr_text(), "warning: x\nerror: y");
    }

    #[test]
    fn readers_fill_the_capture_and_close() {
        let capture = Arc::new(Capture::new());
        let sinks = SerialSinks {
            echo: false,
            log: None,
        };
        spawn_serial_reader(&b"one\r\ntwo"[..], Arc::clone(&capture), sinks).unwrap();
        spawn_stderr_reader(&b"qemu: oops\n"[..], Arc::clone(&capture), false).unwrap();
        assert!(capture.wait_closed(Duration::from_secs(5)));
        assert_eq!(capture.serial_text(), "one\ntwo\n");
        assert_eq!(capture.stderr_text(), "qemu: oops");
    }
}
