//! A request head into a validated [`Request`] or the status that rejects it.
//!
//! Two steps, so that no byte past a limit is ever kept and no head is re-parsed
//! once per received byte:
//! - [`LineScan`] walks the request line incrementally as bytes arrive and rejects
//!   an over-long method (501), target (414) or version (400) before the line ends;
//! - [`parse_head`] runs `httparse` (only once a line has ended) and, when the head
//!   is complete, applies the rules `httparse` leaves to us: bare LF, framing
//!   (`Content-Length`, `Transfer-Encoding`), `Host`, the method, the target.
//!
//! Decisions (RFC 9112 allows either; we pick the strict side):
//! - a bare LF as line terminator is rejected with 400 (a proxy in front may split
//!   lines differently: the classic smuggling ambiguity);
//! - any `Transfer-Encoding` is 400: we take no request bodies except a small
//!   `Content-Length` one on `GET`/`HEAD`, which is read and discarded;
//! - duplicate `Content-Length` fields are 400 even when equal; the value must be
//!   1*DIGIT (`+5`, `5,5`, `5x` are 400); a value over the limit is 413;
//! - HTTP/1.1 requires exactly one `Host` (400 otherwise, RFC 9112 §3.2); HTTP/1.0
//!   at most one; its value must be `host [ ":" port ]` of RFC 3986 or empty
//!   (400 otherwise: RFC 9112 §3.2 makes that a MUST);
//! - method checks come before target checks, so `OPTIONS *` is 405, like every
//!   other known method but `GET`/`HEAD`; an unknown token is 501;
//! - `HTTP/1.<d>` with `d` above 1 is answered as HTTP/1.1 (RFC 9110 §2.5: a
//!   later minor version is backwards compatible; [`normalize_minor_version`]
//!   rewrites it before `httparse` sees it); other `HTTP/<d>[.<d>]` versions
//!   are 505, anything else 400.

use super::limits::{Limits, MAX_HEADERS_CAP, MAX_METHOD, MAX_VERSION};
use super::negotiate::{AcceptEncoding, list_items};
use super::response::status;
use super::{Method, Request};

/// Why a request gets an error response (and the connection then closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// Status of the error response.
    pub status: u16,
    /// The request was `HEAD`: the error goes out without its body.
    pub head: bool,
}

/// A complete, valid request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The request the head asks for.
    pub request: Request<'a>,
    /// Bytes of the head (request line, headers, empty line) at the buffer start.
    pub head_len: usize,
    /// Body bytes that follow and must be read and discarded.
    pub body_len: u64,
    /// Close after this response (`Connection: close`, or HTTP/1.0 by default).
    pub close: bool,
    /// Answer with `Connection: keep-alive` (HTTP/1.0 client that asked for it).
    pub announce_keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What a request head, as far as it arrived, amounts to.
pub enum Outcome<'a> {
    /// No verdict yet: keep reading.
    Partial,
    /// A valid head.
    Complete(Parsed<'a>),
    /// An invalid one: answer with an error and close.
    Reject(Reject),
}

/// Known methods we do not serve: 405 with `Allow: GET, HEAD`.
const KNOWN_METHODS: &[&str] = &[
    "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Empty lines before the request line (RFC 9112 §2.2 lets us skip them).
    Blank,
    Method {
        len: usize,
    },
    Target {
        len: usize,
    },
    Version {
        len: usize,
    },
    Done,
}

/// Incremental scan of the request line; each buffered byte is looked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineScan {
    pos: usize,
    state: LineState,
    head_method: bool,
}

impl Default for LineScan {
    fn default() -> Self {
        LineScan::new()
    }
}

impl LineScan {
    /// A scan at the start of the buffer.
    pub const fn new() -> LineScan {
        LineScan {
            pos: 0,
            state: LineState::Blank,
            head_method: false,
        }
    }

    /// The request line has ended (it may still be invalid: `httparse` decides).
    pub fn is_done(&self) -> bool {
        self.state == LineState::Done
    }

    /// The method seen so far is `HEAD` (an error response then has no body).
    pub fn head_method(&self) -> bool {
        self.head_method
    }

    /// Looks at the bytes of `buf` past those seen before (`buf` only grows between
    /// calls until the scan is replaced by a new one).
    pub fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<(), Reject> {
        let new = buf.get(self.pos..).unwrap_or_default();
        for &b in new {
            if self.state == LineState::Done {
                break;
            }
            self.pos = self.pos.saturating_add(1);
            let head = self.head_method;
            let reject = |status| Reject { status, head };
            self.state = match self.state {
                LineState::Blank if b == b'\r' || b == b'\n' => LineState::Blank,
                LineState::Blank if is_token(b) => LineState::Method { len: 1 },
                LineState::Blank => return Err(reject(status::BAD_REQUEST)),
                LineState::Method { len } if b == b' ' => {
                    let start = self.pos.saturating_sub(len.saturating_add(1));
                    self.head_method = buf.get(start..start.saturating_add(len)) == Some(b"HEAD");
                    LineState::Target { len: 0 }
                }
                LineState::Method { len } if is_token(b) => {
                    if len >= MAX_METHOD {
                        return Err(reject(status::NOT_IMPLEMENTED));
                    }
                    LineState::Method { len: len + 1 }
                }
                LineState::Method { .. } => return Err(reject(status::BAD_REQUEST)),
                LineState::Target { .. } if b == b' ' => LineState::Version { len: 0 },
                LineState::Target { .. } if b == b'\r' || b == b'\n' => LineState::Done,
                LineState::Target { len } => {
                    if len >= limits.max_uri {
                        return Err(reject(status::URI_TOO_LONG));
                    }
                    LineState::Target { len: len + 1 }
                }
                LineState::Version { .. } if b == b'\n' => LineState::Done,
                LineState::Version { len } => {
                    if len >= MAX_VERSION {
                        return Err(reject(status::BAD_REQUEST));
                    }
                    LineState::Version { len: len + 1 }
                }
                LineState::Done => LineState::Done,
            };
        }
        Ok(())
    }
}

/// Parses the head at the start of `buf`. `path_buf` receives the decoded path and
/// must hold at least `limits.max_uri` bytes.
pub fn parse_head<'a>(buf: &'a [u8], path_buf: &'a mut [u8], limits: &Limits) -> Outcome<'a> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let slots = headers
        .get_mut(..limits.max_headers.min(MAX_HEADERS_CAP))
        .unwrap_or_default();
    let mut req = httparse::Request::new(slots);
    let parsed = req.parse(buf);
    let head = req.method == Some("HEAD");
    let reject = |status| Outcome::Reject(Reject { status, head });
    let head_len = match parsed {
        Ok(httparse::Status::Partial) => return Outcome::Partial,
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return reject(status::HEADERS_TOO_LARGE),
        Err(httparse::Error::Version) => return reject(version_error_status(buf)),
        Err(_) => return reject(status::BAD_REQUEST),
    };
    if has_bare_lf(buf.get(..head_len).unwrap_or_default()) {
        return reject(status::BAD_REQUEST);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return reject(status::BAD_REQUEST);
    };
    let fields = match Fields::collect(req.headers) {
        Ok(fields) => fields,
        Err(status) => return reject(status),
    };
    if fields.transfer_encoding {
        return reject(status::BAD_REQUEST);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if KNOWN_METHODS.contains(&m) => return reject(status::METHOD_NOT_ALLOWED),
        _ => return reject(status::NOT_IMPLEMENTED),
    };
    if fields.hosts > 1 || (minor == 1 && fields.hosts == 0) || !fields.host_valid {
        return reject(status::BAD_REQUEST);
    }
    let body_len = match fields.content_length {
        ContentLength::Absent => 0,
        ContentLength::Len(n) if n <= limits.max_get_body as u64 => n,
        ContentLength::Len(_) | ContentLength::TooLarge => {
            return reject(status::CONTENT_TOO_LARGE);
        }
    };
    if target.len() > limits.max_uri {
        return reject(status::URI_TOO_LONG);
    }
    let Some((raw_path, query)) = target_path(target) else {
        return reject(status::BAD_REQUEST);
    };
    let Some(path) = decode_path(raw_path, path_buf) else {
        return reject(status::BAD_REQUEST);
    };
    let close = if minor == 0 {
        fields.close || !fields.keep_alive
    } else {
        fields.close
    };
    Outcome::Complete(Parsed {
        request: Request {
            method,
            path,
            query,
            accept_encoding: fields.accept_encoding,
            if_none_match: fields.if_none_match,
            range: fields.range,
            if_range: fields.if_range,
        },
        head_len,
        body_len,
        close,
        announce_keep_alive: minor == 0 && !close,
    })
}

/// The method and target of a request line as far as `buf` holds it, for
/// logging a request that was rejected (so never parsed into a [`Request`]).
/// The method is the known method it names (`""` for an unknown or unfinished
/// token); the target is its raw bytes up to the first one that is not visible
/// ASCII (so it is always valid UTF-8), possibly cut short.
pub fn request_line_parts(buf: &[u8]) -> (&'static str, &[u8]) {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or_default();
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return ("", &[]);
    };
    let token = line.get(..space).unwrap_or_default();
    let method = ["GET", "HEAD"]
        .iter()
        .chain(KNOWN_METHODS)
        .find(|m| m.as_bytes() == token)
        .copied()
        .unwrap_or("");
    let target = line.get(space.saturating_add(1)..).unwrap_or_default();
    let end = target
        .iter()
        .position(|b| !b.is_ascii_graphic())
        .unwrap_or(target.len());
    (method, target.get(..end).unwrap_or_default())
}

/// The header fields we act on, gathered in one pass.
struct Fields<'a> {
    content_length: ContentLength,
    transfer_encoding: bool,
    hosts: usize,
    /// Every `Host` value seen is well formed.
    host_valid: bool,
    close: bool,
    keep_alive: bool,
    accept_encoding: AcceptEncoding,
    if_none_match: Option<&'a str>,
    range: Option<&'a str>,
    if_range: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn collect(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, u16> {
        let mut f = Fields {
            content_length: ContentLength::Absent,
            transfer_encoding: false,
            hosts: 0,
            host_valid: true,
            close: false,
            keep_alive: false,
            accept_encoding: AcceptEncoding::default(),
            if_none_match: None,
            range: None,
            if_range: None,
        };
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                if f.content_length != ContentLength::Absent {
                    return Err(status::BAD_REQUEST);
                }
                f.content_length = ContentLength::parse(h.value).ok_or(status::BAD_REQUEST)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                f.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("host") {
                f.hosts = f.hosts.saturating_add(1);
                f.host_valid &= is_valid_host(h.value);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list_items(h.value) {
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("accept-encoding") {
                f.accept_encoding.add(h.value);
            } else if name.eq_ignore_ascii_case("if-none-match") && f.if_none_match.is_none() {
                f.if_none_match = core::str::from_utf8(h.value).ok();
            } else if name.eq_ignore_ascii_case("range") && f.range.is_none() {
                f.range = core::str::from_utf8(h.value).ok();
            } else if name.eq_ignore_ascii_case("if-range") && f.if_range.is_none() {
                f.if_range = core::str::from_utf8(h.value).ok();
            }
        }
        Ok(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentLength {
    Absent,
    Len(u64),
    /// Valid digits, but more than a `u64` holds.
    TooLarge,
}

impl ContentLength {
    /// `1*DIGIT` exactly (httparse has trimmed the surrounding whitespace).
    fn parse(value: &[u8]) -> Option<ContentLength> {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = value.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        Some(n.map_or(ContentLength::TooLarge, ContentLength::Len))
    }
}

fn has_bare_lf(head: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            return true;
        }
        prev = b;
    }
    false
}

/// `httparse` said the version is wrong: 505 if it looks like `HTTP/<d>[.<d>]`
/// (possibly cut short), 400 if it is not an HTTP version at all.
fn version_error_status(buf: &[u8]) -> u16 {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or_default();
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    let version = version.strip_suffix(b"\r").unwrap_or(version);
    let looks_like_http = match version.strip_prefix(b"HTTP/") {
        Some([major, rest @ ..]) if major.is_ascii_digit() => {
            matches!(rest, [] | [b'.'] | [b'.', b'0'..=b'9'])
        }
        _ => false,
    };
    if looks_like_http {
        status::VERSION_NOT_SUPPORTED
    } else {
        status::BAD_REQUEST
    }
}

/// The path and query of an origin-form (`/p?q`) or absolute-form
/// (`http://h/p?q`) target, fragment removed; `None` for any other form.
fn target_path(target: &str) -> Option<(&str, Option<&str>)> {
    // `rest` is the path followed by any `?query` and `#fragment`; an
    // absolute-form target without a path has the path `/`.
    let (path_is_root, rest) = if target.starts_with('/') {
        (false, target)
    } else {
        let scheme_len = ["http://", "https://"].iter().find_map(|scheme| {
            let prefix = target.get(..scheme.len())?;
            prefix.eq_ignore_ascii_case(scheme).then_some(scheme.len())
        })?;
        let rest = target.get(scheme_len..)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if authority_end == 0 {
            return None;
        }
        let after = rest.get(authority_end..)?;
        (!after.starts_with('/'), after)
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let query = match rest.get(end..)? {
        tail if tail.starts_with('?') => {
            let q = tail.get(1..)?;
            q.get(..q.find('#').unwrap_or(q.len()))
        }
        _ => None,
    };
    let path = if path_is_root { "/" } else { rest.get(..end)? };
    Some((path, query))
}

/// A `Host` value: empty, or RFC 3986 `host [ ":" port ]` where host is an
/// `IP-literal` (`[` ... `]`, checked loosely: hex digits, `:` and `.`, or an
/// IPvFuture), or a `reg-name` / IPv4 address (unreserved, pct-encoded and
/// sub-delims characters), and port is digits.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, after) = rest.split_at(close);
        let after = after.get(1..).unwrap_or_default();
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b":.%".contains(&b) || is_unreserved_or_sub_delim(b));
        if !literal_ok {
            return false;
        }
        match after {
            [] => (&b""[..], None),
            [b':', port @ ..] => (&b""[..], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (
                value.get(..colon).unwrap_or_default(),
                value.get(colon + 1..),
            ),
            None => (value, None),
        }
    };
    let host_ok = host_bytes_ok(host);
    let port_ok = port.is_none_or(|p| p.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

fn host_bytes_ok(host: &[u8]) -> bool {
    let mut i = 0usize;
    while let Some(&b) = host.get(i) {
        if b == b'%' {
            let hex = |j: usize| host.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if is_unreserved_or_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// Rewrites the version of the request line at the start of `buf` from
/// `HTTP/1.<d>` (d in 2..=9) to `HTTP/1.1`, so a later HTTP/1 minor version is
/// answered as 1.1 (RFC 9110 §2.5). Leaves everything else alone; returns
/// whether it rewrote.
pub fn normalize_minor_version(buf: &mut [u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let Some(line) = buf.get_mut(start..) else {
        return false;
    };
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let Some(line) = line.get_mut(..end) else {
        return false;
    };
    let Some(last_space) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    match line.get_mut(last_space + 1..) {
        Some(
            [
                b'H',
                b'T',
                b'T',
                b'P',
                b'/',
                b'1',
                b'.',
                minor @ b'2'..=b'9',
            ],
        ) => {
            *minor = b'1';
            true
        }
        _ => false,
    }
}

/// Percent-decodes `raw` into `out`. `None` (400) for a malformed escape, a NUL,
/// a `..` segment, invalid UTF-8, or a result that does not fit `out`.
fn decode_path<'o>(raw: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let mut len = 0usize;
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        let decoded = if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            hi * 16 + lo
        } else {
            b
        };
        if decoded == 0 {
            return None;
        }
        *out.get_mut(len)? = decoded;
        len += 1;
    }
    let path = core::str::from_utf8(out.get(..len)?).ok()?;
    if !path.starts_with('/') || path.split('/').any(|segment| segment == "..") {
        return None;
    }
    Some(path)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Coding;

    #[test]
    fn request_line_parts_for_logging() {
        for (buf, method, target) in [
            (&b"GET /a?b HTTP/1.1\r\n"[..], "GET", &b"/a?b"[..]),
            (b"\r\nOPTIONS * HTTP/1.1", "OPTIONS", b"*"),
            (b"BREW /pot", "", b"/pot"),
            (b"GET /x\xff/y HTTP/1.1", "GET", b"/x"),
            (b"GET  /two-spaces", "GET", b""),
            (b"GET", "", b""),
            (b"", "", b""),
            (b"get /lower", "", b"/lower"),
        ] {
            assert_eq!(request_line_parts(buf), (method, target), "{buf:?}");
        }
    }
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;

    /// method, path, accept_gzip, if_none_match, body_len, close
    type Summary = (Method, String, bool, Option<String>, u64, bool);

    /// As the connection does: the minor version normalized, then parsed.
    fn parse(head: &str) -> Result<Summary, u16> {
        let limits = Limits::default();
        let mut path = vec![0u8; limits.max_uri];
        let mut buf = head.as_bytes().to_vec();
        normalize_minor_version(&mut buf);
        match parse_head(&buf, &mut path, &limits) {
            Outcome::Complete(p) => Ok((
                p.request.method,
                p.request.path.into(),
                p.request.accept_encoding.quality(Coding::Gzip) > 0,
                p.request.if_none_match.map(String::from),
                p.body_len,
                p.close,
            )),
            Outcome::Reject(r) => Err(r.status),
            Outcome::Partial => Err(0),
        }
    }

    fn status_of(head: &str) -> u16 {
        match parse(head) {
            Ok(_) => 200,
            Err(s) => s,
        }
    }

    #[test]
    fn simple_get() {
        let (m, p, gz, inm, body, close) =
            parse("GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            (m, p.as_str(), gz, inm, body, close),
            (Method::Get, "/index.html", false, None, 0, false)
        );
    }

    #[test]
    fn head_and_partial() {
        assert_eq!(
            parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().0,
            Method::Head
        );
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Err(0));
    }

    #[test]
    fn methods() {
        for m in KNOWN_METHODS {
            assert_eq!(
                status_of(&format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n")),
                405,
                "{m}"
            );
        }
        assert_eq!(status_of("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
        assert_eq!(status_of("BREW / HTTP/1.1\r\nHost: a\r\n\r\n"), 501);
        assert_eq!(status_of("get / HTTP/1.1\r\nHost: a\r\n\r\n"), 501);
        assert_eq!(status_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn versions() {
        assert_eq!(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        // A later HTTP/1 minor version is served as 1.1 (Host then required).
        assert_eq!(status_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status_of("GET / HTTP/1.9\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status_of("GET / HTTP/1.9\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/3\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTX/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET /\r\n\r\n"), 400);
        // HTTP/1.0: no Host needed, closes unless keep-alive.
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().5);
        assert!(
            !parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .5
        );
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(status_of("GET / HTTP/1.1\nHost: a\n\n"), 400, "bare LF");
        assert_eq!(status_of("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400, "bare LF");
        assert_eq!(status_of("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"), 400);
        assert_eq!(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        // Leading empty lines are skipped.
        assert_eq!(status_of("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            400
        );
    }

    #[test]
    fn smuggling_shapes() {
        let h = "GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(
            status_of(&format!(
                "{h}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status_of(&format!("{h}Transfer-Encoding: chunked\r\n\r\n")),
            400
        );
        assert_eq!(
            status_of(&format!(
                "{h}Content-Length: 3\r\nContent-Length: 3\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status_of(&format!(
                "{h}Content-Length: 3\r\nContent-Length: 4\r\n\r\n"
            )),
            400
        );
        for bad in ["+5", "5,5", "5x", "-1", "0x5", "5 5", ""] {
            assert_eq!(
                status_of(&format!("{h}Content-Length: {bad}\r\n\r\n")),
                400,
                "{bad}"
            );
        }
        assert_eq!(status_of(&format!("{h}Content-Length:  5x\r\n\r\n")), 400);
        assert_eq!(
            status_of(&format!("{h}X-A: b\r\n  folded\r\n\r\n")),
            400,
            "obs-fold"
        );
        assert_eq!(status_of(&format!("{h}Content-Length : 0\r\n\r\n")), 400);
        assert_eq!(status_of(&format!("{h} X-A: b\r\n\r\n")), 400);
    }

    #[test]
    fn content_length_limits() {
        let h = "GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(
            parse(&format!("{h}Content-Length: 0\r\n\r\n")).unwrap().4,
            0
        );
        assert_eq!(
            parse(&format!("{h}Content-Length:  007 \r\n\r\n"))
                .unwrap()
                .4,
            7
        );
        let max = Limits::default().max_get_body;
        assert_eq!(
            parse(&format!("{h}Content-Length: {max}\r\n\r\n"))
                .unwrap()
                .4,
            max as u64
        );
        assert_eq!(
            status_of(&format!("{h}Content-Length: {}\r\n\r\n", max + 1)),
            413
        );
        assert_eq!(
            status_of(&format!(
                "{h}Content-Length: 99999999999999999999999\r\n\r\n"
            )),
            413
        );
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits::default();
        let mut ok = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..limits.max_headers {
            ok.push_str(&format!("X-{i}: v\r\n"));
        }
        assert_eq!(status_of(&format!("{ok}\r\n")), 200);
        assert_eq!(status_of(&format!("{ok}X-last: v\r\n\r\n")), 431);
    }

    #[test]
    fn targets() {
        let get = |t: &str| parse(&format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(get("http://example.com/a/b?c").unwrap().1, "/a/b");
        assert_eq!(get("HTTPS://example.com").unwrap().1, "/");
        assert_eq!(get("http://example.com?x").unwrap().1, "/");
        assert_eq!(get("/a%20b/%41").unwrap().1, "/a b/A");
        assert_eq!(get("/%2e%2e/x"), Err(400));
        assert_eq!(get("/a/../x"), Err(400));
        assert_eq!(get("/a/..%2fx"), Err(400));
        assert_eq!(get("/..").unwrap_err(), 400);
        assert_eq!(get("/a/..b").unwrap().1, "/a/..b");
        assert_eq!(get("/%00"), Err(400));
        assert_eq!(get("/%zz"), Err(400));
        assert_eq!(get("/%4"), Err(400));
        assert_eq!(get("/%ff"), Err(400), "not UTF-8");
        assert_eq!(get("*"), Err(400));
        assert_eq!(get("example.com:80"), Err(400));
        assert_eq!(get("http:///x"), Err(400));
        assert_eq!(get("ftp://h/x"), Err(400));
    }

    #[test]
    fn uri_limit() {
        let limits = Limits::default();
        let at = format!("/{}", "a".repeat(limits.max_uri - 1));
        let over = format!("/{}", "a".repeat(limits.max_uri));
        let get = |t: &str| status_of(&format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(get(&at), 200);
        assert_eq!(get(&over), 414);
    }

    #[test]
    fn accept_encoding() {
        let gz = |v: &str| {
            let mut a = AcceptEncoding::default();
            a.add(v.as_bytes());
            a.quality(Coding::Gzip) > 0
        };
        assert!(gz("gzip"));
        assert!(gz("deflate, gzip;q=0.5, br"));
        assert!(gz("GZIP; Q=1.000"));
        assert!(gz("x-gzip"));
        assert!(gz("*"));
        assert!(gz("br, *;q=0.1"));
        assert!(!gz("gzip;q=0"));
        assert!(!gz("gzip;q=0.000"));
        assert!(!gz("gzip;q=0, *"));
        assert!(!gz("*;q=0"));
        assert!(!gz("identity"));
        assert!(!gz(""));
        assert!(!gz("gzip;q=2"), "invalid q is a refusal");
        assert!(!gz("gzip;q=0.0001"));
        assert!(!gz("gzip, gzip;q=0"), "lowest q wins");
        assert!(gz("gzip;level=1"));
        assert!(gz("gzip;qx=0"));
        assert!(!gz("gzip;q"));
        assert!(gz("gzip ; q = 0.5"));
        assert!(!gz("gzipx"));
        assert!(
            parse(
                "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip\r\n\r\n"
            )
            .unwrap()
            .2
        );
    }

    #[test]
    fn connection_and_conditional_fields() {
        let (.., inm, _, close) = parse(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\nIf-None-Match: \"x\"\r\n\r\n",
        )
        .unwrap();
        assert!(close);
        assert_eq!(inm.as_deref(), Some("\"x\""));
    }

    #[test]
    fn line_scan_limits() {
        let limits = Limits::default();
        let scan = |bytes: &[u8]| {
            let mut s = LineScan::new();
            // Feed in two pieces to exercise the incremental path.
            let mid = bytes.len() / 2;
            s.advance(&bytes[..mid], &limits)?;
            s.advance(bytes, &limits)?;
            Ok::<bool, Reject>(s.is_done())
        };
        assert_eq!(scan(b"GET / HTTP/1.1\r\n"), Ok(true));
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1"), Ok(false));
        let long_method = "A".repeat(MAX_METHOD + 1);
        assert_eq!(scan(long_method.as_bytes()).unwrap_err().status, 501);
        assert_eq!(scan("A".repeat(MAX_METHOD).as_bytes()), Ok(false));
        let long_target = format!("GET /{}", "a".repeat(limits.max_uri));
        assert_eq!(scan(long_target.as_bytes()).unwrap_err().status, 414);
        let head_target = format!("HEAD /{}", "a".repeat(limits.max_uri));
        assert_eq!(
            scan(head_target.as_bytes()).unwrap_err(),
            Reject {
                status: 414,
                head: true
            }
        );
        let fits = format!("GET /{}", "a".repeat(limits.max_uri - 1));
        assert_eq!(scan(fits.as_bytes()), Ok(false));
        let long_version = format!("GET / HTTP/1.1{}", "1".repeat(MAX_VERSION));
        assert_eq!(scan(long_version.as_bytes()).unwrap_err().status, 400);
        assert_eq!(scan(b"\0GET").unwrap_err().status, 400);
        assert_eq!(scan(b"GE\0T").unwrap_err().status, 400);
    }
}

#[cfg(test)]
mod host_and_target_tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn host_values() {
        for ok in [
            "",
            "a",
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1%25eth0]",
            "xn--bcher-kva.example",
            "a%20b",
            "a-b_c~d",
            "host:",
            "[v1.fe]",
        ] {
            assert!(is_valid_host(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a b/c", "a b", "a/b", "a?b", "a#b", "a@b", "[::1", "[]", "::1]", "[::1]x", "a:b:c",
            "a:8o", "a%2", "a%zz", "\u{e4}", "[::1]:x", "a\\b",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    fn status(head: &str) -> u16 {
        let limits = Limits::default();
        let mut path = vec![0u8; limits.max_uri];
        match parse_head(head.as_bytes(), &mut path, &limits) {
            Outcome::Complete(_) => 200,
            Outcome::Reject(r) => r.status,
            Outcome::Partial => 0,
        }
    }

    #[test]
    fn invalid_host_is_400() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            200,
            "empty is allowed"
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), 200);
    }

    #[test]
    fn query_range_and_if_range_are_kept() {
        let limits = Limits::default();
        let mut path = vec![0u8; limits.max_uri];
        let head = "GET /a%20b?x=1&y=%41#frag HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nRange: bytes=5-\r\nIf-Range: \"e\"\r\n\r\n";
        let Outcome::Complete(p) = parse_head(head.as_bytes(), &mut path, &limits) else {
            panic!("not complete");
        };
        assert_eq!(p.request.path, "/a b");
        assert_eq!(p.request.query, Some("x=1&y=%41"));
        assert_eq!(p.request.range, Some("bytes=0-1"), "the first field");
        assert_eq!(p.request.if_range, Some("\"e\""));
        for (target, query) in [
            ("/p", None),
            ("/p?", Some("")),
            ("/p#f?x", None),
            ("http://h/p?q", Some("q")),
            ("http://h?q", Some("q")),
        ] {
            assert_eq!(target_path(target).map(|t| t.1), Some(query), "{target}");
        }
    }

    #[test]
    fn minor_version_rewrite() {
        for (line, out, rewrote) in [
            ("GET / HTTP/1.2\r\n", "GET / HTTP/1.1\r\n", true),
            (
                "\r\nGET / HTTP/1.9\r\nX: HTTP/1.5\r\n",
                "\r\nGET / HTTP/1.1\r\nX: HTTP/1.5\r\n",
                true,
            ),
            ("GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\n", false),
            ("GET / HTTP/1.0\r\n", "GET / HTTP/1.0\r\n", false),
            ("GET / HTTP/2.0\r\n", "GET / HTTP/2.0\r\n", false),
            ("GET / HTTP/1.10\r\n", "GET / HTTP/1.10\r\n", false),
            ("GET /HTTP/1.2", "GET /HTTP/1.2", false),
            ("", "", false),
        ] {
            let mut buf = line.as_bytes().to_vec();
            assert_eq!(normalize_minor_version(&mut buf), rewrote, "{line:?}");
            assert_eq!(buf, out.as_bytes(), "{line:?}");
        }
    }
}
