//! Status codes, reason phrases, the connection's own error responses, and the
//! formatter that writes a response head into a fixed buffer.
//!
//! No `Date` header: the guest has no wall clock, and RFC 9110 §6.6.1 says an
//! origin server without a clock must not send one.

use super::stamp::{DateTime, RequestId};
use super::{Body, Response};
use alloc::format;
use core::fmt::{self, Write as _};

/// Defines the [`status`] constants and the reason-phrase table from one
/// list, so a status cannot have a constant without a reason or the reverse.
macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal,)*) => {
        /// The status codes this server produces (redirects also with the
        /// codes a site's `_redirects` rules name).
        pub mod status {
            $(
                #[doc = concat!("`", stringify!($code), " ", $reason, "`")]
                pub const $name: u16 = $code;
            )*
        }

        /// `(code, reason phrase)` of every [`status`] constant.
        const REASONS: &[(u16, &str)] = &[$(($code, $reason)),*];
    };
}

statuses! {
    OK = 200 "OK",
    NO_CONTENT = 204 "No Content",
    PARTIAL_CONTENT = 206 "Partial Content",
    MOVED_PERMANENTLY = 301 "Moved Permanently",
    FOUND = 302 "Found",
    SEE_OTHER = 303 "See Other",
    NOT_MODIFIED = 304 "Not Modified",
    TEMPORARY_REDIRECT = 307 "Temporary Redirect",
    PERMANENT_REDIRECT = 308 "Permanent Redirect",
    BAD_REQUEST = 400 "Bad Request",
    NOT_FOUND = 404 "Not Found",
    METHOD_NOT_ALLOWED = 405 "Method Not Allowed",
    REQUEST_TIMEOUT = 408 "Request Timeout",
    CONTENT_TOO_LARGE = 413 "Content Too Large",
    URI_TOO_LONG = 414 "URI Too Long",
    RANGE_NOT_SATISFIABLE = 416 "Range Not Satisfiable",
    HEADERS_TOO_LARGE = 431 "Request Header Fields Too Large",
    INTERNAL_ERROR = 500 "Internal Server Error",
    NOT_IMPLEMENTED = 501 "Not Implemented",
    SERVICE_UNAVAILABLE = 503 "Service Unavailable",
    VERSION_NOT_SUPPORTED = 505 "HTTP Version Not Supported",
}

/// `Server` header value.
pub const SERVER: &str = concat!("unikernel/", env!("CARGO_PKG_VERSION"));
/// `Allow` header value of every 405.
pub const ALLOW: &str = "GET, HEAD";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The reason phrase of `status`: its own for the codes in [`status`], its
/// class's name (RFC 9110 §15) for any other.
pub fn reason(status: u16) -> &'static str {
    if let Some((_, reason)) = REASONS.iter().find(|(code, _)| *code == status) {
        return reason;
    }
    match status {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
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
    /// `Connection: close`: the connection closes after this response.
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
    /// Sent as `X-Request-Id`.
    pub request_id: RequestId,
    /// For `Date`, if the guest has a wall clock.
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

    #[test]
    fn every_status_constant_has_its_own_reason() {
        for (i, (code, phrase)) in REASONS.iter().enumerate() {
            assert!(
                REASONS[i + 1..].iter().all(|(other, _)| other != code),
                "{code} twice"
            );
            assert_eq!(reason(*code), *phrase);
        }
        assert_eq!(
            reason(status::HEADERS_TOO_LARGE),
            "Request Header Fields Too Large"
        );
        assert_eq!(
            reason(status::VERSION_NOT_SUPPORTED),
            "HTTP Version Not Supported"
        );
        assert_eq!(REASONS.len(), 21);
    }
}
