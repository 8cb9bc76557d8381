//! One access-log line per response, in nginx's `combined` format followed by
//! the request time and the request id, or as one JSON object.
//!
//! Combined (nginx `log_format combined` plus two fields):
//!
//! ```text
//! 10.0.2.2 - - [02/Dec/2026:16:15:00 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.0" 0.002 5f3a09c1-7-1
//! ```
//!
//! Client-controlled bytes (request line, referer, user agent) are escaped as
//! nginx's default `escape=default` does: `"`, `\`, control bytes, DEL and
//! every byte from 0x80 become `\xHH`, so a line is always one line of ASCII
//! and never breaks its quotes. In JSON (nginx `escape=json` for `"`, `\` and
//! controls) valid UTF-8 passes through and each byte of an invalid sequence
//! becomes the text `\xHH`, so every line is valid JSON.
//!
//! Time: with a wall clock, UTC; without one the guest's uptime counted from
//! the Unix epoch (`01/Jan/1970`), which the boot line and `"time":null` in
//! JSON say plainly.

use crate::http::Exchange;
use crate::http::stamp::DateTime;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::net::IpAddr;

/// What one line says beyond the exchange itself.
#[derive(Debug, Clone, Copy)]
pub struct LineFacts {
    /// The client (after the trusted-proxy rule), or `None` if unknown.
    pub client: Option<IpAddr>,
    /// Wall-clock Unix milliseconds of the moment logged, if there is a clock.
    pub unix_ms: Option<u64>,
    /// The response was sent completely (else its connection ended first).
    pub completed: bool,
}

/// `fmt::Write` for a byte vector.
struct Out<'a>(&'a mut Vec<u8>);

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xf)],
    ]);
}

/// nginx `escape=default`; runs that need no escape are copied whole.
pub fn escape_default(out: &mut Vec<u8>, bytes: &[u8]) {
    let needs = |b: &u8| *b == b'"' || *b == b'\\' || !(0x20..0x7f).contains(b);
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(needs) {
        let (plain, tail) = rest.split_at(i);
        out.extend_from_slice(plain);
        if let Some((&b, after)) = tail.split_first() {
            hex_escape(out, b);
            rest = after;
        } else {
            rest = tail;
        }
    }
    out.extend_from_slice(rest);
}

/// Decimal digits of `n`, without `core::fmt` (this runs for several fields
/// of every line).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// What consecutive lines share, formatted once: the time of the current
/// second, the last client address, the boot tag of request ids.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    second: Option<u64>,
    time: Vec<u8>,
    client: Option<IpAddr>,
    client_text: Vec<u8>,
    boot: Option<u32>,
    boot_text: Vec<u8>,
}

impl Memo {
    fn common_log_time(&mut self, secs: u64) -> &[u8] {
        if self.second != Some(secs) {
            self.time.clear();
            let _ = write!(
                Out(&mut self.time),
                "{}",
                DateTime::from_unix(secs).common_log()
            );
            self.second = Some(secs);
        }
        &self.time
    }

    fn client(&mut self, addr: IpAddr) -> &[u8] {
        if self.client != Some(addr) {
            self.client_text.clear();
            let _ = write!(Out(&mut self.client_text), "{addr}");
            self.client = Some(addr);
        }
        &self.client_text
    }

    /// `RequestId`'s `Display`, without `core::fmt` per line.
    fn request_id(&mut self, out: &mut Vec<u8>, id: &crate::http::RequestId) {
        if self.boot != Some(id.boot) {
            self.boot_text.clear();
            let _ = write!(Out(&mut self.boot_text), "{:08x}-", id.boot);
            self.boot = Some(id.boot);
        }
        out.extend_from_slice(&self.boot_text);
        push_u64(out, id.conn);
        out.push(b'-');
        push_u64(out, u64::from(id.seq));
    }
}

/// A JSON string body (without quotes): `"`, `\` and controls escaped,
/// invalid UTF-8 bytes as the text `\xHH`.
pub fn escape_json(out: &mut Vec<u8>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let (valid, bad) = match core::str::from_utf8(bytes) {
            Ok(s) => (s, None),
            Err(e) => {
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                let bad_len = e.error_len().unwrap_or(rest.len());
                (
                    core::str::from_utf8(ok).unwrap_or_default(),
                    Some(rest.split_at(bad_len.min(rest.len()))),
                )
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(Out(out), "\\u{:04x}", c as u32);
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        match bad {
            None => break,
            Some((bad, rest)) => {
                for &b in bad {
                    out.extend_from_slice(b"\\\\x");
                    out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
                }
                bytes = rest;
            }
        }
    }
}

fn duration(e: &Exchange<'_>) -> u64 {
    e.now.saturating_sub(e.received)
}

/// The instant a line is stamped with: wall clock, or uptime from the epoch.
fn instant(e: &Exchange<'_>, facts: &LineFacts) -> (DateTime, u64) {
    let ms = facts.unix_ms.unwrap_or(e.now);
    (DateTime::from_unix(ms / 1000), ms % 1000)
}

/// Appends one combined-format line (with its `\n`) to `out`.
pub fn combined(out: &mut Vec<u8>, e: &Exchange<'_>, facts: &LineFacts, memo: &mut Memo) {
    match facts.client {
        Some(addr) => out.extend_from_slice(memo.client(addr)),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    let ms = facts.unix_ms.unwrap_or(e.now);
    out.extend_from_slice(memo.common_log_time(ms / 1000));
    out.extend_from_slice(b"] \"");
    escape_default(out, e.head.request_line);
    out.extend_from_slice(b"\" ");
    push_u64(out, u64::from(e.status));
    out.push(b' ');
    push_u64(out, e.sent_bytes);
    out.extend_from_slice(b" \"");
    quoted_or_dash(out, e.head.referer);
    out.extend_from_slice(b" \"");
    quoted_or_dash(out, e.head.user_agent);
    let d = duration(e);
    out.push(b' ');
    push_u64(out, d / 1000);
    let ms = d % 1000;
    let digit = |n: u64| b'0' + (n % 10) as u8;
    out.extend_from_slice(&[b'.', digit(ms / 100), digit(ms / 10), digit(ms), b' ']);
    memo.request_id(out, &e.request_id);
    out.push(b'\n');
}

/// The rest of a quoted field whose opening quote is written: the escaped
/// value or `-`, then the closing quote.
fn quoted_or_dash(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) if !v.is_empty() => escape_default(out, v),
        _ => out.push(b'-'),
    }
    out.push(b'"');
}

fn json_string(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            out.push(b'"');
            escape_json(out, v);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends one JSON object (with its `\n`) to `out` (`memo`: unused, the
/// JSON form is the slower one).
pub fn json(out: &mut Vec<u8>, e: &Exchange<'_>, facts: &LineFacts, _memo: &mut Memo) {
    out.extend_from_slice(b"{\"time\":");
    if facts.unix_ms.is_some() {
        let (t, ms) = instant(e, facts);
        let _ = write!(Out(out), "\"{}\"", t.rfc3339(ms));
    } else {
        out.extend_from_slice(b"null");
    }
    let _ = write!(Out(out), ",\"uptime_ms\":{},\"remote_addr\":", e.now);
    match facts.client {
        Some(addr) => {
            let _ = write!(Out(out), "\"{addr}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"peer_addr\":");
    match e.peer {
        Some(addr) => {
            let _ = write!(Out(out), "\"{addr}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"request\":");
    json_string(out, Some(e.head.request_line));
    let _ = write!(
        Out(out),
        ",\"status\":{},\"body_bytes_sent\":{},\"referer\":",
        e.status,
        e.sent_bytes
    );
    json_string(out, e.head.referer);
    out.extend_from_slice(b",\"user_agent\":");
    json_string(out, e.head.user_agent);
    let _ = writeln!(
        Out(out),
        ",\"request_time_ms\":{},\"request_id\":\"{}\",\"completed\":{}}}",
        duration(e),
        e.request_id,
        facts.completed
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{LoggedHead, RequestId};
    use alloc::string::String;

    fn exchange(head: LoggedHead<'static>) -> Exchange<'static> {
        Exchange {
            status: 200,
            body_bytes: 612,
            method: "GET",
            path: "/",
            conn: 7,
            received: 1_000,
            now: 3_456,
            request_id: RequestId {
                boot: 0x5f3a_09c1,
                conn: 7,
                seq: 1,
            },
            peer: Some("10.0.2.2".parse().unwrap()),
            head,
            sent_bytes: 612,
        }
    }

    fn facts(unix_ms: Option<u64>) -> LineFacts {
        LineFacts {
            client: Some("10.0.2.2".parse().unwrap()),
            unix_ms,
            completed: true,
        }
    }

    type Formatter = fn(&mut Vec<u8>, &Exchange<'_>, &LineFacts, &mut Memo);

    fn text(f: Formatter, e: &Exchange<'_>, l: &LineFacts) -> String {
        let mut out = Vec::new();
        f(&mut out, e, l, &mut Memo::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_and_memo_reuse() {
        for n in [0u64, 7, 10, 999, 1000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, alloc::format!("{n}").into_bytes());
        }
        // One memo across lines of different seconds, clients and boots.
        let mut memo = Memo::default();
        let mut e = exchange(LoggedHead::default());
        let mut f = facts(Some(1_796_228_100_123));
        for (secs, client, boot) in [(0, "10.0.2.2", 1), (0, "10.0.2.3", 1), (1, "10.0.2.3", 2)] {
            f.unix_ms = Some(1_796_228_100_123 + secs * 1000);
            f.client = Some(client.parse().unwrap());
            e.request_id.boot = boot;
            let mut out = Vec::new();
            combined(&mut out, &e, &f, &mut memo);
            assert_eq!(String::from_utf8(out).unwrap(), text(combined, &e, &f));
        }
    }

    #[test]
    fn combined_line_with_and_without_clock() {
        let e = exchange(LoggedHead {
            request_line: b"GET /a?b=1 HTTP/1.1",
            user_agent: Some(b"curl/8.0"),
            ..LoggedHead::default()
        });
        assert_eq!(
            text(combined, &e, &facts(Some(1_796_228_100_123))),
            "10.0.2.2 - - [02/Dec/2026:16:15:00 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 \"-\" \"curl/8.0\" 2.456 5f3a09c1-7-1\n"
        );
        let mut no_peer = facts(None);
        no_peer.client = None;
        assert_eq!(
            text(combined, &e, &no_peer),
            "- - - [01/Jan/1970:00:00:03 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 \"-\" \"curl/8.0\" 2.456 5f3a09c1-7-1\n"
        );
    }

    #[test]
    fn awkward_bytes_are_escaped_as_nginx_does() {
        let e = exchange(LoggedHead {
            request_line: b"GET /\"q\"\\\x01\x1b\x7f\xff\xc3\xa9 HTTP/1.1",
            user_agent: Some(b"a\"b\\c\td\r\ne"),
            referer: Some(b"http://x/\x00\x80"),
            ..LoggedHead::default()
        });
        let line = text(combined, &e, &facts(None));
        assert!(
            line.contains(r#""GET /\x22q\x22\x5C\x01\x1B\x7F\xFF\xC3\xA9 HTTP/1.1""#),
            "{line}"
        );
        assert!(
            line.contains(r#""http://x/\x00\x80" "a\x22b\x5Cc\x09d\x0D\x0Ae""#),
            "{line}"
        );
        // One line, every byte printable ASCII, exactly six quotes.
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.trim_end().bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(line.matches('"').count(), 6);
    }

    #[test]
    fn json_line_parses_back() {
        let e = exchange(LoggedHead {
            request_line: b"GET /caf\xc3\xa9/\xff\"x HTTP/1.1",
            user_agent: Some(b"tab\there \x7f\\"),
            referer: None,
            ..LoggedHead::default()
        });
        let mut f = facts(Some(1_796_228_100_123));
        f.completed = false;
        let line = text(json, &e, &f);
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-02T16:15:00.123Z");
        assert_eq!(v["uptime_ms"], 3456);
        assert_eq!(v["remote_addr"], "10.0.2.2");
        assert_eq!(v["peer_addr"], "10.0.2.2");
        assert_eq!(v["request"], "GET /café/\\xFF\"x HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes_sent"], 612);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], "tab\there \u{7f}\\");
        assert_eq!(v["request_time_ms"], 2456);
        assert_eq!(v["request_id"], "5f3a09c1-7-1");
        assert_eq!(v["completed"], false);
        let v: serde_json::Value = serde_json::from_str(&text(json, &e, &facts(None))).unwrap();
        assert_eq!(v["time"], serde_json::Value::Null);
    }

    #[test]
    fn json_escapes_every_byte_value_validly() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::from(&b"\""[..]);
        escape_json(&mut out, &all);
        out.push(b'"');
        let s: String = serde_json::from_slice(&out).unwrap();
        assert!(s.starts_with("\u{0}\u{1}"));
        assert!(s.ends_with("\\xFE\\xFF"));
    }
}
