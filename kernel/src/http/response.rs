//! Status codes, reason phrases, the connection's own error responses, and the
//! formatter that writes a response head into a fixed buffer.
//!
//! No `Date` header: the guest has no wall clock, and RFC 9110 §6.6.1 says an
//! origin server without a clock must not send one.

use super::stamp::{DateTime, RequestId};
use super::{Body, Response};
use alloc::format;
use core::fmt::{self, Write as _};

/// The status codes this server produces.
pub mod status {
    pub const OK: u16 = 200;
    pub const NO_CONTENT: u16 = 204;
    pub const PARTIAL_CONTENT: u16 = 206;
    pub const MOVED_PERMANENTLY: u16 = 301;
    pub const FOUND: u16 = 302;
    pub const SEE_OTHER: u16 = 303;
    pub const NOT_MODIFIED: u16 = 304;
    pub const TEMPORARY_REDIRECT: u16 = 307;
    pub const PERMANENT_REDIRECT: u16 = 308;
    pub const BAD_REQUEST: u16 = 400;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const CONTENT_TOO_LARGE: u16 = 413;
    pub const URI_TOO_LONG: u16 = 414;
    pub const RANGE_NOT_SATISFIABLE: u16 = 416;
    pub const HEADERS_TOO_LARGE: u16 = 431;
    pub const INTERNAL_ERROR: u16 = 500;
    pub const NOT_IMPLEMENTED: u16 = 501;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    pub const VERSION_NOT_SUPPORTED: u16 = 505;
}

/// `Server` header value.
pub const SERVER: &str = concat!("unikernel/", env!("CARGO_PKG_VERSION"));
/// `Allow` header value of every 405.
pub const ALLOW: &str = "GET, HEAD";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        100..=199 => "Informational",
        201..=299 => "Success",
        300..=399 => "Redirection",
        401..=499 => "Client Error",
        _ => "Server Error",
    }
}

/// Whether a response with this status has a body and `Content-Length`
/// (RFC 9110 §6.4.1: not 1xx, 204 or 304).
pub fn has_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != status::NO_CONTENT && status != status::NOT_MODIFIED
}

/// A plain-text error response, `<code> <reason>\n` (`Allow: GET, HEAD` on 405).
pub fn error(status: u16) -> Response {
    let body = format!("{status} {}\n", reason(status)).into_bytes();
    let mut resp = Response::new(status, Some(TEXT_PLAIN), Body::Owned(body));
    if status == status::METHOD_NOT_ALLOWED {
        resp.allow = Some(ALLOW);
    }
    resp
}

/// What the `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Nothing: HTTP/1.1 keep-alive is the default.
    Default,
    Close,
    /// An HTTP/1.0 client asked to keep the connection.
    KeepAlive,
}

/// Used when a handler's response head cannot be formatted (too long for the
/// buffer, or a header value with CR/LF/NUL).
pub const FALLBACK_500: &[u8] = concat!(
    "HTTP/1.1 500 Internal Server Error\r\nServer: unikernel/",
    env!("CARGO_PKG_VERSION"),
    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
.as_bytes();

/// Formats the head of `resp` into `buf` and returns its length; `None` when it
/// does not fit or a header value is unsafe. `content_length` is the full body
/// length (also for `HEAD`), or `None` for statuses without a body.
pub fn write_head(
    buf: &mut [u8],
    resp: &Response,
    content_length: Option<u64>,
    connection: Connection,
) -> Option<usize> {
    write_head_stamped(buf, resp, content_length, connection, None)
}

/// What [`write_head_stamped`] adds to every response: `Date` (when the guest
/// has a wall clock) and `X-Request-Id`.
#[derive(Debug, Clone, Copy)]
pub struct HeadStamp {
    pub request_id: RequestId,
    pub unix_secs: Option<u64>,
}

/// [`write_head`] with `Date` after `Server` and `X-Request-Id` last before
/// `Connection`.
pub fn write_head_stamped(
    buf: &mut [u8],
    resp: &Response,
    content_length: Option<u64>,
    connection: Connection,
    stamp: Option<&HeadStamp>,
) -> Option<usize> {
    let values = [
        resp.content_type,
        resp.multipart_boundary,
        resp.etag,
        resp.cache_control,
        resp.allow,
        resp.location.as_deref(),
    ];
    let extra = resp
        .headers
        .iter()
        .flat_map(|(name, value)| [*name, *value]);
    if values
        .into_iter()
        .flatten()
        .chain(extra)
        .any(|v| v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
    {
        return None;
    }
    let mut w = HeadWriter { buf, len: 0 };
    write_fields(&mut w, resp, content_length, connection, stamp).ok()?;
    Some(w.len)
}

fn write_fields(
    w: &mut HeadWriter,
    resp: &Response,
    content_length: Option<u64>,
    connection: Connection,
    stamp: Option<&HeadStamp>,
) -> fmt::Result {
    write!(
        w,
        "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\n",
        resp.status,
        reason(resp.status)
    )?;
    if let Some(secs) = stamp.and_then(|s| s.unix_secs) {
        write!(w, "Date: {}\r\n", DateTime::from_unix(secs).imf_fixdate())?;
    }
    if let Some(boundary) = resp.multipart_boundary {
        write!(
            w,
            "Content-Type: multipart/byteranges; boundary={boundary}\r\n"
        )?;
    } else if let Some(ct) = resp.content_type {
        write!(w, "Content-Type: {ct}\r\n")?;
    }
    if let Some(len) = content_length {
        write!(w, "Content-Length: {len}\r\n")?;
    }
    if let Some(range) = resp.content_range {
        write!(w, "Content-Range: {range}\r\n")?;
    }
    if let Some(coding) = resp.content_encoding.token() {
        write!(w, "Content-Encoding: {coding}\r\n")?;
    }
    if let Some(etag) = resp.etag {
        write!(w, "ETag: {etag}\r\n")?;
    }
    if resp.accept_ranges {
        w.write_str("Accept-Ranges: bytes\r\n")?;
    }
    if resp.vary_accept_encoding {
        w.write_str("Vary: Accept-Encoding\r\n")?;
    }
    if let Some(cc) = resp.cache_control {
        write!(w, "Cache-Control: {cc}\r\n")?;
    }
    if let Some(location) = &resp.location {
        write!(w, "Location: {location}\r\n")?;
    }
    if let Some(allow) = resp.allow {
        write!(w, "Allow: {allow}\r\n")?;
    }
    for (name, value) in resp.headers {
        write!(w, "{name}: {value}\r\n")?;
    }
    if let Some(stamp) = stamp {
        write!(w, "X-Request-Id: {}\r\n", stamp.request_id)?;
    }
    match connection {
        Connection::Default => {}
        Connection::Close => w.write_str("Connection: close\r\n")?,
        Connection::KeepAlive => w.write_str("Connection: keep-alive\r\n")?,
    }
    w.write_str("\r\n")
}

/// `fmt::Write` into a fixed buffer; fails instead of truncating.
struct HeadWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for HeadWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::limits::RESPONSE_HEAD_CAP;

    fn head(resp: &Response, len: Option<u64>, c: Connection) -> alloc::string::String {
        let mut buf = [0u8; RESPONSE_HEAD_CAP];
        let n = write_head(&mut buf, resp, len, c).unwrap();
        alloc::string::String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn full_head() {
        let resp = Response {
            content_type: Some("text/css; charset=utf-8"),
            etag: Some("\"0123456789abcdef\""),
            content_encoding: crate::http::Coding::Gzip,
            vary_accept_encoding: true,
            cache_control: Some("no-cache"),
            ..Response::new(200, None, Body::Empty)
        };
        assert_eq!(
            head(&resp, Some(42), Connection::Close),
            concat!(
                "HTTP/1.1 200 OK\r\nServer: unikernel/",
                env!("CARGO_PKG_VERSION"),
                "\r\nContent-Type: text/css; charset=utf-8\r\nContent-Length: 42\r\n",
                "Content-Encoding: gzip\r\nETag: \"0123456789abcdef\"\r\n",
                "Vary: Accept-Encoding\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
        );
    }

    #[test]
    fn error_responses() {
        let r = error(405);
        assert_eq!(r.allow, Some(ALLOW));
        let text = head(&r, Some(r.body.len() as u64), Connection::Close);
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        for s in [400, 404, 408, 413, 414, 416, 431, 500, 501, 503, 505] {
            let body = error(s).body.to_vec();
            assert_eq!(body, format!("{s} {}\n", reason(s)).into_bytes());
        }
        let ka = head(&error(404), None, Connection::KeepAlive);
        assert!(ka.contains("\r\nConnection: keep-alive\r\n"));
        assert!(!head(&error(404), None, Connection::Default).contains("Connection"));
    }

    #[test]
    fn rejects_overflow_and_injection() {
        let mut buf = [0u8; RESPONSE_HEAD_CAP];
        let long: &'static str = alloc::string::String::leak("x".repeat(RESPONSE_HEAD_CAP));
        let mut r = error(400);
        r.content_type = Some(long);
        assert_eq!(write_head(&mut buf, &r, Some(1), Connection::Close), None);
        let mut r = error(400);
        r.cache_control = Some("a\r\nSet-Cookie: x");
        assert_eq!(write_head(&mut buf, &r, Some(1), Connection::Close), None);
        let mut tiny = [0u8; 8];
        assert_eq!(
            write_head(&mut tiny, &error(400), None, Connection::Close),
            None
        );
        assert!(FALLBACK_500.len() < RESPONSE_HEAD_CAP);
    }

    #[test]
    fn range_redirect_and_rule_headers() {
        use crate::http::range::{ByteRange, ContentRange};
        let resp = Response {
            multipart_boundary: Some("0123abcd"),
            content_range: Some(ContentRange::Bytes {
                range: ByteRange { first: 0, last: 9 },
                complete: 100,
            }),
            accept_ranges: true,
            location: Some("/docs/?a=1".into()),
            headers: &[("X-Frame-Options", "DENY"), ("X-A", "b")],
            content_encoding: crate::http::Coding::Br,
            ..Response::new(206, Some("ignored/type"), Body::Empty)
        };
        assert_eq!(
            head(&resp, Some(10), Connection::Default),
            concat!(
                "HTTP/1.1 206 Partial Content\r\nServer: unikernel/",
                env!("CARGO_PKG_VERSION"),
                "\r\nContent-Type: multipart/byteranges; boundary=0123abcd\r\n",
                "Content-Length: 10\r\nContent-Range: bytes 0-9/100\r\n",
                "Content-Encoding: br\r\nAccept-Ranges: bytes\r\n",
                "Location: /docs/?a=1\r\nX-Frame-Options: DENY\r\nX-A: b\r\n\r\n"
            )
        );
        let mut buf = [0u8; RESPONSE_HEAD_CAP];
        let bad_rule = Response {
            headers: &[("X", "a\nb")],
            ..Response::new(200, None, Body::Empty)
        };
        assert_eq!(
            write_head(&mut buf, &bad_rule, None, Connection::Close),
            None
        );
        let bad_location = Response {
            location: Some("/a\r\nSet-Cookie: x".into()),
            ..Response::new(301, None, Body::Empty)
        };
        assert_eq!(
            write_head(&mut buf, &bad_location, None, Connection::Close),
            None
        );
        for s in [206, 301, 302, 303, 307, 308, 416] {
            assert!(
                !reason(s).is_empty()
                    && !matches!(reason(s), "Success" | "Redirection" | "Client Error")
            );
        }
    }

    #[test]
    fn statuses_without_body() {
        assert!(has_body(200) && has_body(404) && has_body(500));
        assert!(!has_body(100) && !has_body(204) && !has_body(304));
        assert_eq!(reason(299), "Success");
        assert_eq!(reason(999), "Server Error");
    }
}
