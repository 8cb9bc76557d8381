//! Status codes, reason phrases, the connection's own error responses, and the
//! formatter that writes a response head into a fixed buffer.
//!
//! No `Date` header: the guest has no wall clock, and RFC 9110 §6.6.1 says an
//! origin server without a clock must not send one.

use super::{Body, Response};
use core::fmt::{self, Write as _};

/// The status codes this server produces.
pub mod status {
    pub const OK: u16 = 200;
    pub const NO_CONTENT: u16 = 204;
    pub const NOT_MODIFIED: u16 = 304;
    pub const BAD_REQUEST: u16 = 400;
    pub const NOT_FOUND: u16 = 404;
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const CONTENT_TOO_LARGE: u16 = 413;
    pub const URI_TOO_LONG: u16 = 414;
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
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
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

/// The body of an error response: `<code> <reason>\n`.
fn error_body(status: u16) -> &'static [u8] {
    match status {
        400 => b"400 Bad Request\n",
        404 => b"404 Not Found\n",
        405 => b"405 Method Not Allowed\n",
        408 => b"408 Request Timeout\n",
        413 => b"413 Content Too Large\n",
        414 => b"414 URI Too Long\n",
        431 => b"431 Request Header Fields Too Large\n",
        500 => b"500 Internal Server Error\n",
        501 => b"501 Not Implemented\n",
        503 => b"503 Service Unavailable\n",
        505 => b"505 HTTP Version Not Supported\n",
        _ => b"error\n",
    }
}

/// A plain-text error response (`Allow: GET, HEAD` on 405).
pub fn error(status: u16) -> Response {
    let mut resp = Response::new(status, Some(TEXT_PLAIN), Body::Static(error_body(status)));
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
    let values = [resp.content_type, resp.etag, resp.cache_control, resp.allow];
    if values
        .iter()
        .flatten()
        .any(|v| v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
    {
        return None;
    }
    let mut w = HeadWriter { buf, len: 0 };
    write_fields(&mut w, resp, content_length, connection).ok()?;
    Some(w.len)
}

fn write_fields(
    w: &mut HeadWriter,
    resp: &Response,
    content_length: Option<u64>,
    connection: Connection,
) -> fmt::Result {
    write!(
        w,
        "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\n",
        resp.status,
        reason(resp.status)
    )?;
    if let Some(ct) = resp.content_type {
        write!(w, "Content-Type: {ct}\r\n")?;
    }
    if let Some(len) = content_length {
        write!(w, "Content-Length: {len}\r\n")?;
    }
    if resp.content_encoding_gzip {
        w.write_str("Content-Encoding: gzip\r\n")?;
    }
    if let Some(etag) = resp.etag {
        write!(w, "ETag: {etag}\r\n")?;
    }
    if resp.vary_accept_encoding {
        w.write_str("Vary: Accept-Encoding\r\n")?;
    }
    if let Some(cc) = resp.cache_control {
        write!(w, "Cache-Control: {cc}\r\n")?;
    }
    if let Some(allow) = resp.allow {
        write!(w, "Allow: {allow}\r\n")?;
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
            status: 200,
            content_type: Some("text/css; charset=utf-8"),
            etag: Some("\"0123456789abcdef\""),
            content_encoding_gzip: true,
            vary_accept_encoding: true,
            cache_control: Some("no-cache"),
            allow: None,
            body: Body::Empty,
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
        for s in [400, 404, 408, 413, 414, 431, 500, 501, 503, 505] {
            let body = error(s).body;
            assert!(
                body.as_slice()
                    .starts_with(alloc::format!("{s} ").as_bytes())
            );
            assert!(body.as_slice().ends_with(b"\n"));
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
    fn statuses_without_body() {
        assert!(has_body(200) && has_body(404) && has_body(500));
        assert!(!has_body(100) && !has_body(204) && !has_body(304));
        assert_eq!(reason(299), "Success");
        assert_eq!(reason(999), "Server Error");
    }
}
