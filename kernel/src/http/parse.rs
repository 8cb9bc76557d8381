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
//!   at most one;
//! - method checks come before target checks, so `OPTIONS *` is 405, like every
//!   other known method but `GET`/`HEAD`; an unknown token is 501;
//! - `HTTP/<d>[.<d>]` versions other than 1.0 and 1.1 are 505, anything else 400.

use super::limits::{Limits, MAX_HEADERS_CAP, MAX_METHOD, MAX_VERSION};
use super::response::status;
use super::{Method, Request};

/// Why a request gets an error response (and the connection then closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// The request was `HEAD`: the error goes out without its body.
    pub head: bool,
}

/// A complete, valid request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
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
pub enum Outcome<'a> {
    /// No verdict yet: keep reading.
    Partial,
    Complete(Parsed<'a>),
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
    if fields.hosts > 1 || (minor == 1 && fields.hosts == 0) {
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
    let Some(raw_path) = target_path(target) else {
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
            accept_gzip: fields.accept_encoding.accepts_gzip(),
            if_none_match: fields.if_none_match,
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
    close: bool,
    keep_alive: bool,
    accept_encoding: AcceptEncoding,
    if_none_match: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn collect(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, u16> {
        let mut f = Fields {
            content_length: ContentLength::Absent,
            transfer_encoding: false,
            hosts: 0,
            close: false,
            keep_alive: false,
            accept_encoding: AcceptEncoding::default(),
            if_none_match: None,
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
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list_items(h.value) {
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("accept-encoding") {
                f.accept_encoding.add(h.value);
            } else if name.eq_ignore_ascii_case("if-none-match") && f.if_none_match.is_none() {
                f.if_none_match = core::str::from_utf8(h.value).ok();
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

/// What the `Accept-Encoding` fields say about gzip, as q-values in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    gzip: Option<u16>,
    any: Option<u16>,
}

impl AcceptEncoding {
    /// Adds one `Accept-Encoding` field value (several fields form one list).
    pub fn add(&mut self, value: &[u8]) {
        for item in list_items(value) {
            let mut parts = item.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            let mut q = 1000;
            for param in parts {
                let mut name_value = param.splitn(2, |&b| b == b'=');
                let name = trim(name_value.next().unwrap_or_default());
                if name.eq_ignore_ascii_case(b"q") {
                    // A malformed q-value counts as a refusal.
                    q = name_value
                        .next()
                        .and_then(|v| parse_qvalue(trim(v)))
                        .unwrap_or(0);
                }
            }
            // The lowest q wins when a coding is listed twice: a refusal sticks.
            let keep_lowest = |slot: &mut Option<u16>| *slot = Some(slot.map_or(q, |s| s.min(q)));
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                keep_lowest(&mut self.gzip);
            } else if coding == b"*" {
                keep_lowest(&mut self.any);
            }
        }
    }

    pub fn accepts_gzip(&self) -> bool {
        match self.gzip {
            Some(q) => q > 0,
            None => self.any.is_some_and(|q| q > 0),
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (&first, rest) = v.split_first()?;
    let frac = match rest.split_first() {
        None => &[][..],
        Some((b'.', frac)) if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => frac,
        _ => return None,
    };
    let thousandths = frac
        .iter()
        .chain(core::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Items of a comma-separated field value, trimmed, empty ones skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_first() {
        if b != b' ' && b != b'\t' {
            break;
        }
        s = rest;
    }
    while let Some((&b, rest)) = s.split_last() {
        if b != b' ' && b != b'\t' {
            break;
        }
        s = rest;
    }
    s
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

/// The path of an origin-form (`/p?q`) or absolute-form (`http://h/p?q`) target,
/// query and fragment removed; `None` for any other form.
fn target_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
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
        match rest.get(authority_end..)? {
            p if p.starts_with('/') => p,
            _ => "/",
        }
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end)
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

    fn parse(head: &str) -> Result<Summary, u16> {
        let limits = Limits::default();
        let mut path = vec![0u8; limits.max_uri];
        match parse_head(head.as_bytes(), &mut path, &limits) {
            Outcome::Complete(p) => Ok((
                p.request.method,
                p.request.path.into(),
                p.request.accept_gzip,
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
        assert_eq!(status_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
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
            a.accepts_gzip()
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
    fn qvalues() {
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1."), Some(1000));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.25"), Some(250));
        assert_eq!(parse_qvalue(b"0.001"), Some(1));
        assert_eq!(parse_qvalue(b"1.001"), None);
        assert_eq!(parse_qvalue(b""), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b".5"), None);
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
