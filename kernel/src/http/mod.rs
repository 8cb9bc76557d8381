//! HTTP/1.1 over one TCP connection at a time, with no I/O of its own.
//!
//! The network layer owns the sockets and the clock; per socket it owns one
//! [`Conn`], feeds it the bytes the peer sent ([`Conn::receive`]), gives it the
//! socket's free send space ([`Conn::transmit`]) and asks it what to do with the
//! socket ([`Conn::poll`]). The `Conn` parses requests with `httparse`, enforces
//! [`Limits`], asks a [`Handler`] (the `app` layer) for a [`Response`], and writes
//! the response head into its own fixed buffer and the body by offset from the
//! handler's slice. All of it is safe Rust that builds and is tested on the host.
//!
//! - [`limits`]: every size and timeout, as named defaults in [`Limits`].
//! - [`parse`]: a request head into a validated request or an error status.
//! - [`response`]: status reasons, the response head formatter, error responses.
//! - [`range`]: `Range` and `If-Range` (RFC 9110 §14), `multipart/byteranges`.
//! - [`negotiate`]: `Accept-Encoding` q-values and the codings we can send.
//! - [`conn`]: the per-connection state machine and its deadlines.
//!
//! The interface to the layer above ([`Handler`], [`Request`], [`Response`],
//! [`Body`]) is defined here and re-exported by `app`, so the dependency points one
//! way: `app` implements what `http` asks for.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

pub mod conn;
pub mod limits;
pub mod logged;
pub mod negotiate;
pub mod parse;
pub mod range;
pub mod response;
pub mod stamp;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
pub(crate) mod test_support;

pub use conn::{Action, Conn, ConnEvent};
pub use limits::Limits;
pub use logged::LoggedHead;
pub use negotiate::{AcceptEncoding, Coding};
pub use stamp::{RequestId, Stamp};

/// Milliseconds since boot: the only clock the HTTP layer knows.
pub type Millis = u64;

/// The methods a [`Handler`] is asked to serve; the connection answers every other
/// method itself (405 or 501).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A validated request, borrowed from the connection's buffers for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// Percent-decoded path without the query string; starts with `/`, holds no NUL
    /// and no `..` segment. Absolute-form targets are reduced to their path.
    pub path: &'a str,
    /// The raw query after `?` (not decoded, without any `#fragment`), if the
    /// target had one: visible ASCII only, so it can be echoed into `Location`.
    pub query: Option<&'a str>,
    /// What `Accept-Encoding` allows, with its q-values.
    pub accept_encoding: AcceptEncoding,
    /// The raw `If-None-Match` value, if the request had one.
    pub if_none_match: Option<&'a str>,
    /// The raw `Range` value (the first field, if several).
    pub range: Option<&'a str>,
    /// The raw `If-Range` value.
    pub if_range: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A `GET` of `path` with no optional header (tests, internal rewrites).
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: Method::Get,
            path,
            query: None,
            accept_encoding: AcceptEncoding::default(),
            if_none_match: None,
            range: None,
            if_range: None,
        }
    }
}

/// Where a response body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Sent by offset straight from the slice (baked assets): never copied.
    Static(&'static [u8]),
    /// A small generated body (`/health`, `/api/stats.json`), dropped once sent.
    Owned(Vec<u8>),
    /// Pieces sent one after the other (`multipart/byteranges`: small generated
    /// part heads between slices of a baked body).
    Parts(Vec<Chunk>),
    Empty,
}

/// One piece of a [`Body::Parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Static(b) => b.len(),
            Body::Owned(b) => b.len(),
            Body::Parts(parts) => parts.iter().map(|c| c.bytes().len()).sum(),
            Body::Empty => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the body's bytes from `offset` into `out` as far as they fit and
    /// the body goes; returns how many were copied.
    pub fn copy_at(&self, offset: usize, out: &mut [u8]) -> usize {
        match self {
            Body::Static(b) => copy_slice_at(b, offset, out),
            Body::Owned(b) => copy_slice_at(b, offset, out),
            Body::Empty => 0,
            Body::Parts(parts) => {
                let mut skip = offset;
                let mut copied = 0usize;
                for chunk in parts {
                    let bytes = chunk.bytes();
                    if skip >= bytes.len() {
                        skip -= bytes.len();
                        continue;
                    }
                    let rest = out.get_mut(copied..).unwrap_or_default();
                    if rest.is_empty() {
                        break;
                    }
                    copied = copied.saturating_add(copy_slice_at(bytes, skip, rest));
                    skip = 0;
                }
                copied
            }
        }
    }

    /// The bytes of a one-slice body (tests); panics on [`Body::Parts`].
    #[cfg(test)]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Owned(b) => b,
            Body::Empty => &[],
            Body::Parts(_) => panic!("as_slice on a multipart body"),
        }
    }

    /// Every byte of the body in one vector (tests and small bodies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = alloc::vec![0; self.len()];
        let n = self.copy_at(0, &mut all);
        all.truncate(n);
        all
    }
}

/// Copies `src[offset..]` into `out` as far as it fits; returns how many bytes.
pub(crate) fn copy_slice_at(src: &[u8], offset: usize, out: &mut [u8]) -> usize {
    let pending = src.get(offset..).unwrap_or_default();
    let n = pending.len().min(out.len());
    match (out.get_mut(..n), pending.get(..n)) {
        (Some(dst), Some(from)) => {
            dst.copy_from_slice(from);
            n
        }
        _ => 0,
    }
}

/// What the handler answers. The connection adds `Server`, `Content-Length` and
/// `Connection`; for `HEAD` it sends the same head without the body; for 1xx, 204
/// and 304 it sends neither `Content-Length` nor a body. Header values must not
/// hold CR, LF or NUL (such a response is replaced by a 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Ignored when `multipart_boundary` is set.
    pub content_type: Option<&'static str>,
    /// `Content-Type: multipart/byteranges; boundary=<this>` (a multi-range 206).
    pub multipart_boundary: Option<&'static str>,
    pub etag: Option<&'static str>,
    pub content_encoding: Coding,
    pub vary_accept_encoding: bool,
    pub cache_control: Option<&'static str>,
    /// `Accept-Ranges: bytes` (site assets).
    pub accept_ranges: bool,
    /// `Content-Range` of a 206 with one part, or of a 416.
    pub content_range: Option<range::ContentRange>,
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// `Allow` header (405 responses).
    pub allow: Option<&'static str>,
    /// More fields, written after the others in this order (a site's
    /// `_headers` rules).
    pub headers: &'static [(&'static str, &'static str)],
    pub body: Body,
}

impl Response {
    /// A response with only a status and a body; every optional header unset.
    pub fn new(status: u16, content_type: Option<&'static str>, body: Body) -> Response {
        Response {
            status,
            content_type,
            multipart_boundary: None,
            etag: None,
            content_encoding: Coding::Identity,
            vary_accept_encoding: false,
            cache_control: None,
            accept_ranges: false,
            content_range: None,
            location: None,
            allow: None,
            headers: &[],
            body,
        }
    }
}

/// One response as the connection reports it to [`Handler::on_response`] and
/// [`Handler::on_sent`]: what was asked, by whom, on which connection, when,
/// and what is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exchange<'a> {
    pub status: u16,
    /// Body bytes the response will send (0 for `HEAD` and bodiless statuses).
    pub body_bytes: u64,
    /// `GET` or `HEAD` for a served request; for a rejected one the known method
    /// its request line names (`POST`, ...), or `""`.
    pub method: &'static str,
    /// The decoded path of a served request (without the query). For a rejected
    /// one, the raw request target up to its first byte that is not visible
    /// ASCII (possibly cut short or empty): it was never validated.
    pub path: &'a str,
    /// The connection's id, as given to [`Conn::open_with_id`].
    pub conn: u64,
    /// When the connection took the request's first byte.
    pub received: Millis,
    /// When the response starts (`on_response`), was sent (`on_sent`) or was
    /// given up: `now` of the call that reports it.
    pub now: Millis,
    /// Also sent as `X-Request-Id`.
    pub request_id: RequestId,
    /// The TCP peer, as the network layer gave it ([`Conn::set_peer`]).
    pub peer: Option<core::net::IpAddr>,
    /// The request line and the header fields an access log prints.
    pub head: LoggedHead<'a>,
    /// Body bytes handed to the socket so far.
    pub sent_bytes: u64,
}

/// The application: routes a validated `GET`/`HEAD` request to a response.
pub trait Handler {
    fn handle(&mut self, req: &Request) -> Response;
    /// Called once for every response the connection starts from
    /// [`Conn::receive`], including its own error responses. The one exception
    /// is the 408 a header timeout produces inside [`Conn::poll`], which has no
    /// handler: it is reported as [`ConnEvent::RequestTimeout`] instead.
    fn on_response(&mut self, exchange: &Exchange<'_>);
    /// The last byte of a connection's current response (the one its latest
    /// `on_response` reported, or the 408 of its `RequestTimeout`) was handed to
    /// the socket by [`Conn::transmit`] at `exchange.now`. Not called for a
    /// response that the connection drops (abort, reset) before it is sent:
    /// [`Conn::take_unfinished`] hands that one to the network layer.
    fn on_sent(&mut self, exchange: &Exchange<'_>) {
        let _ = exchange;
    }
}
