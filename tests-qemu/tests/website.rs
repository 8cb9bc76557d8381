//! The default site served as nginx and Caddy serve a directory, checked with
//! real clients against the files in `kernel/site/`:
//!
//! | test | what |
//! |------|------|
//! | `ranges_with_curl_requests_and_a_resumed_download` | `curl -r` in every form (`a-b`, `a-`, `-n`, `0-0`, past the end, clamped, overflowing, suffix longer than the file), HEAD, 416, ignored ranges, `multipart/byteranges` read back by this file's own parser, `If-Range`, ranges of the gzip and brotli representations; a Python `requests` session doing several ranges on one keep-alive connection; `curl -C -` resuming a cut download |
//! | `redirects_headers_encodings_and_protocol` | `curl -L` through `/docs`, `_redirects` redirects and rewrites (never following the off-site one), the 404 page, `_headers` on every asset and not on the built-in endpoints, cache policy, MIME types, brotli/gzip choice by q-values, `curl --compressed`, HTTP versions and a bad `Host` on a raw connection, status counters |
//! | `chromium_plays_and_seeks_the_clip` | headless Chromium (through `observability/cdp.py`) plays `/media/clip.webm`, seeks to 4 s and plays on; the guest's request log shows its 206s |
//! | `redbot_reports_no_errors` | REDbot on `/`, the fingerprinted script, `/large.bin` and a missing page: no error-level note (warnings are printed) |
//!
//! One guest per test, legacy transport. Needs curl (with brotli), chromium,
//! a `python3` with `requests`, and `redbot`: `scripts/install-deps` has them.

#[path = "website/clients.rs"]
mod clients;
#[path = "website/ranges.rs"]
mod ranges;
#[path = "website/rules.rs"]
mod rules;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, Response, Transport, parse_response};
pub use tests_qemu::{Scratch, python_with};

#[test]
fn ranges_with_curl_requests_and_a_resumed_download() {
    ranges::ranges_with_curl_requests_and_a_resumed_download(Transport::Legacy)
}

#[test]
fn redirects_headers_encodings_and_protocol() {
    rules::redirects_headers_encodings_and_protocol(Transport::Legacy)
}

#[test]
fn chromium_plays_and_seeks_the_clip() {
    clients::chromium_plays_and_seeks_the_clip(Transport::Legacy)
}

#[test]
fn redbot_reports_no_errors() {
    clients::redbot_reports_no_errors(Transport::Legacy)
}

/// curl's own limit for one invocation.
const CURL_MAX_TIME: &str = "30";

/// What a bounded child process produced.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `cmd` (stdin closed, stdout and stderr read on threads so a full
/// pipe cannot stall it); kills it after `timeout`. `Err` if it could not be
/// started or had to be killed.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Ran, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {what}: {e}"))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                return Err(format!(
                    "{what} still running after {timeout:?}, killed; stderr: {}",
                    String::from_utf8_lossy(&stderr)
                ));
            }
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    Ok(Ran {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// What one curl run produced.
pub struct Curl {
    /// Every response head curl received (`-D`), in order (several with `-L`).
    pub heads: Vec<Response>,
    /// The body as curl wrote it (`-o`), decoded when `--compressed`.
    pub body: Vec<u8>,
    pub exit: Option<i32>,
    pub num_redirects: u32,
    /// `%{size_download}`: body bytes (0 for a HEAD; `-I` writes the head to `-o`).
    pub size_download: u64,
    pub url_effective: String,
    pub args: Vec<String>,
    pub stderr: String,
}

impl Curl {
    /// The last response head.
    pub fn head(&self) -> &Response {
        self.heads.last().expect("curl() checks there is a head")
    }

    pub fn status(&self) -> u16 {
        self.head().status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head().header(name)
    }

    pub fn describe(&self) -> String {
        let mut heads = String::new();
        for h in &self.heads {
            heads.push_str(&h.head_text());
            heads.push_str("--\n");
        }
        format!(
            "curl {:?} (exit {:?}, {} redirects, effective {})\n{heads}body {} bytes: {:?}\nstderr: {}",
            self.args,
            self.exit,
            self.num_redirects,
            self.url_effective,
            self.body.len(),
            String::from_utf8_lossy(&self.body[..self.body.len().min(120)]),
            self.stderr
        )
    }
}

/// `curl -sS` with `args` (which hold the one URL), body into a scratch file;
/// fails the test unless curl exits 0.
pub fn curl(g: &HttpGuest, s: &Scratch, args: &[&str]) -> Curl {
    let out = s.path("body");
    let _ = std::fs::remove_file(&out);
    let c = curl_to(g, s, &out, args);
    if c.exit != Some(0) {
        g.fail(format_args!("curl failed\n{}", c.describe()));
    }
    c
}

/// `curl -sS --max-time .. -D <heads> -o <out> -w ... <args>`, whatever its
/// exit status; `out` is left as it is before the run (for `-C -`).
pub fn curl_to(g: &HttpGuest, s: &Scratch, out: &Path, args: &[&str]) -> Curl {
    let head_file = s.path("heads");
    let _ = std::fs::remove_file(&head_file);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", CURL_MAX_TIME, "-D"])
        .arg(&head_file)
        .arg("-o")
        .arg(out)
        .args(["-w", "%{num_redirects} %{size_download} %{url_effective}"])
        .args(args);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let ran = run_bounded(&mut cmd, Duration::from_secs(40)).unwrap_or_else(|e| {
        if e.contains("No such file") {
            panic!("curl is not installed: scripts/install-deps installs it")
        }
        g.fail(e)
    });
    let write_out = String::from_utf8_lossy(&ran.stdout).into_owned();
    let mut fields = write_out.splitn(3, ' ');
    let (redirects, size, effective) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    let dump = std::fs::read(&head_file).unwrap_or_default();
    let heads = match tests_qemu::http::parse_all(&dump, &[true; 64]) {
        Ok((heads, rest)) if !heads.is_empty() && rest.is_empty() => heads,
        other => g.fail(format_args!(
            "curl {args:?} (exit {:?}, stderr {}): response heads {:?} do not parse: {:?}",
            ran.code,
            String::from_utf8_lossy(&ran.stderr),
            String::from_utf8_lossy(&dump),
            other.map(|(h, rest)| (h.len(), rest.len()))
        )),
    };
    Curl {
        heads,
        body: std::fs::read(out).unwrap_or_default(),
        exit: ran.code,
        num_redirects: redirects.parse().unwrap_or(u32::MAX),
        size_download: size.parse().unwrap_or(u64::MAX),
        url_effective: effective.to_string(),
        args,
        stderr: String::from_utf8_lossy(&ran.stderr).into_owned(),
    }
}

/// Fails unless `cond`, with the curl run described.
pub fn check(g: &HttpGuest, c: &Curl, cond: bool, what: impl std::fmt::Display) {
    if !cond {
        g.fail(format_args!("{what}\n{}", c.describe()));
    }
}

pub fn status_is(g: &HttpGuest, c: &Curl, want: u16) {
    check(
        g,
        c,
        c.status() == want,
        format_args!("status {}, want {want}", c.status()),
    );
}

/// The last head has `name` exactly once with value `want` (`None`: absent).
pub fn header_is(g: &HttpGuest, c: &Curl, name: &str, want: Option<&str>) {
    let got = c.header(name);
    check(
        g,
        c,
        got == want && c.head().header_count(name) <= 1,
        format_args!(
            "header {name}: got {got:?} ({} fields), want {want:?}",
            c.head().header_count(name)
        ),
    );
}

/// The same for a raw-client [`Response`]; `what` names the request.
pub fn raw_header_is(g: &HttpGuest, what: &str, r: &Response, name: &str, want: Option<&str>) {
    let got = r.header(name);
    if got != want || r.header_count(name) > 1 {
        g.fail(format_args!(
            "{what}: header {name}: got {got:?} ({} fields), want {want:?}\n{}",
            r.header_count(name),
            r.head_text()
        ));
    }
}

pub fn raw_status_is(g: &HttpGuest, what: &str, r: &Response, want: u16) {
    if r.status != want {
        g.fail(format_args!(
            "{what}: status {}, want {want}\n{}body {:?}",
            r.status,
            r.head_text(),
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        ));
    }
}

/// `None` if equal, else where and how `got` differs from `want`.
pub fn byte_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Some(format!(
        "{} bytes, want {}; first difference at offset {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        &got[at..got.len().min(at + 16)],
        &want[at..want.len().min(at + 16)]
    ))
}

/// Fails unless the curl body is `want`, byte for byte.
pub fn body_is(g: &HttpGuest, c: &Curl, want: &[u8], what: &str) {
    if let Some(diff) = byte_diff(&c.body, want) {
        g.fail(format_args!("{what}: body {diff}\n{}", c.describe()));
    }
}

/// Expected `Content-Type` of a site file, by extension (README's table).
pub fn content_type_of(rel: &str) -> &'static str {
    if rel.starts_with(".well-known/") {
        // `_headers` sets it for the whole folder.
        return "text/plain; charset=utf-8";
    }
    tests_qemu::http::site_content_type(rel)
}

/// One part of a `multipart/byteranges` body.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub data: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The boundary of a `multipart/byteranges; boundary=B` content type.
pub fn multipart_boundary(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let ty = params.next().unwrap_or("").trim();
    if !ty.eq_ignore_ascii_case("multipart/byteranges") {
        return Err(format!(
            "content type {content_type:?} is not multipart/byteranges"
        ));
    }
    for p in params {
        if let Some((name, value)) = p.split_once('=')
            && name.trim().eq_ignore_ascii_case("boundary")
        {
            let b = value.trim().trim_matches('"');
            if b.is_empty() || b.len() > 70 {
                return Err(format!("boundary {b:?}: 1 to 70 characters (RFC 2046)"));
            }
            return Ok(b.to_string());
        }
    }
    Err(format!("no boundary in {content_type:?}"))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits a multipart body (RFC 2046 §5.1.1): an optional preamble, parts
/// each after `--B` CRLF with header lines up to an empty line, each part's
/// data ending at CRLF `--B`, the last delimiter `--B--`. Written from the RFC,
/// not from the kernel.
pub fn parse_multipart(boundary: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The first delimiter may open the body (no preamble) or follow CRLF.
    let mut at = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delim.as_bytes(), 0).ok_or("no first boundary")? + delim.len()
    };
    let mut parts = Vec::new();
    for _ in 0..1000 {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (linear white space) may follow a boundary.
        let pad = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(format!("boundary at {at} not followed by CRLF"));
        }
        let head_start = at + pad + 2;
        let (headers, data_start) = if body[head_start..].starts_with(b"\r\n") {
            (Vec::new(), head_start + 2)
        } else {
            let end = find(body, b"\r\n\r\n", head_start)
                .ok_or_else(|| format!("part at {head_start}: headers not ended"))?;
            let text = std::str::from_utf8(&body[head_start..end])
                .map_err(|_| format!("part at {head_start}: headers not UTF-8"))?;
            let mut headers = Vec::new();
            for line in text.split("\r\n") {
                let (n, v) = line
                    .split_once(':')
                    .ok_or_else(|| format!("part header line {line:?}"))?;
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
            (headers, end + 4)
        };
        let data_end = find(body, delim.as_bytes(), data_start)
            .ok_or_else(|| format!("part at {data_start}: no closing boundary"))?;
        parts.push(Part {
            headers,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + delim.len();
    }
    Err("more than 1000 parts".into())
}

/// The `multipart/byteranges` body the README specifies, byte for byte: each
/// part `--B CRLF Content-Type CRLF Content-Range CRLF CRLF data CRLF`, then
/// `--B--` CRLF.
pub fn expected_multipart(
    boundary: &str,
    content_type: &str,
    file: &[u8],
    ranges: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = Vec::new();
    for &(a, b) in ranges {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                file.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&file[a as usize..=b as usize]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Parses a 206 `multipart/byteranges` answer and checks every part against
/// `file[a..=b]` in the order asked, then the exact framing and length.
pub fn check_multipart(
    g: &HttpGuest,
    what: &str,
    head: &Response,
    body: &[u8],
    file: &[u8],
    part_type: &str,
    ranges: &[(u64, u64)],
) {
    let describe = || format!("{what}:\n{}", head.head_text());
    let ct = head.header("content-type").unwrap_or("");
    let boundary =
        multipart_boundary(ct).unwrap_or_else(|e| g.fail(format_args!("{e}\n{}", describe())));
    let parts = parse_multipart(&boundary, body)
        .unwrap_or_else(|e| g.fail(format_args!("multipart body: {e}\n{}", describe())));
    if parts.len() != ranges.len() {
        g.fail(format_args!(
            "{} parts, want {}: {:?}\n{}",
            parts.len(),
            ranges.len(),
            parts.iter().map(|p| &p.headers).collect::<Vec<_>>(),
            describe()
        ));
    }
    for (i, (p, &(a, b))) in parts.iter().zip(ranges).enumerate() {
        let cr = format!("bytes {a}-{b}/{}", file.len());
        if p.header("content-range") != Some(cr.as_str())
            || p.header("content-type") != Some(part_type)
        {
            g.fail(format_args!(
                "part {i}: headers {:?}, want Content-Range {cr:?} and Content-Type {part_type:?}\n{}",
                p.headers,
                describe()
            ));
        }
        if let Some(diff) = byte_diff(&p.data, &file[a as usize..=b as usize]) {
            g.fail(format_args!("part {i} ({cr}): data {diff}\n{}", describe()));
        }
    }
    let exact = expected_multipart(&boundary, part_type, file, ranges);
    if let Some(diff) = byte_diff(body, &exact) {
        g.fail(format_args!(
            "multipart framing differs from the README's: {diff}\n{}",
            describe()
        ));
    }
    if head.content_length() != Some(body.len() as u64) {
        g.fail(format_args!(
            "Content-Length {:?} for a {}-byte multipart body\n{}",
            head.content_length(),
            body.len(),
            describe()
        ));
    }
}

/// One raw request on its own connection, exactly as given (`request` holds
/// the whole head); the raw bytes received until the server closed, and the
/// first response parsed from them.
pub fn raw_exchange(g: &HttpGuest, request: &[u8]) -> (Vec<u8>, Response) {
    let mut c = g.connect();
    c.send(request).unwrap_or_else(|e| {
        g.fail(format_args!(
            "sending {:?}: {e}",
            String::from_utf8_lossy(request)
        ))
    });
    let (_, bytes) = c.read_until_close(Duration::from_secs(15));
    match parse_response(&bytes, false) {
        Ok(Some((r, _))) => (bytes, r),
        other => g.fail(format_args!(
            "{:?}: no response parsed from {:?}: {other:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )),
    }
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn multipart_parser_reads_the_rfc_example_shape() {
        let file: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let body = expected_multipart("XyZ", "text/plain", &file, &[(0, 9), (500, 503)]);
        let parts = parse_multipart("XyZ", &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, &file[0..10]);
        assert_eq!(parts[1].header("content-range"), Some("bytes 500-503/1000"));
        // A preamble and an epilogue are allowed.
        let mut framed = b"preamble\r\n".to_vec();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(b"epilogue");
        assert_eq!(parse_multipart("XyZ", &framed).unwrap(), parts);
        // A part cut short, or a body without the boundary, is an error.
        assert!(parse_multipart("XyZ", &body[..body.len() - 12]).is_err());
        assert!(parse_multipart("other", &body).is_err());
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            multipart_boundary("multipart/byteranges; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            multipart_boundary("Multipart/ByteRanges;boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert!(multipart_boundary("text/html; boundary=x").is_err());
        assert!(multipart_boundary("multipart/byteranges").is_err());
    }

    #[test]
    fn byte_diff_finds_the_offset() {
        assert_eq!(byte_diff(b"abc", b"abc"), None);
        assert!(byte_diff(b"abd", b"abc").unwrap().contains("offset 2"));
        assert!(byte_diff(b"ab", b"abc").unwrap().contains("offset 2"));
    }
}
