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
//! - [`conn`]: the per-connection state machine and its deadlines.
//!
//! The interface to the layer above ([`Handler`], [`Request`], [`Response`],
//! [`Body`]) is defined here and re-exported by `app`, so the dependency points one
//! way: `app` implements what `http` asks for.
#![forbid(unsafe_code)]

pub mod conn;
pub mod limits;
pub mod parse;
pub mod response;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
pub(crate) mod test_support;

pub use conn::{Action, Conn, ConnEvent};
pub use limits::Limits;

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
    /// `Accept-Encoding` allows gzip (q-values honoured: `gzip;q=0` means no).
    pub accept_gzip: bool,
    /// The raw `If-None-Match` value, if the request had one.
    pub if_none_match: Option<&'a str>,
}

/// Where a response body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Sent by offset straight from the slice (baked assets): never copied.
    Static(&'static [u8]),
    /// A small generated body (`/health`, `/api/stats.json`), dropped once sent.
    Owned(alloc::vec::Vec<u8>),
    Empty,
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Static(b) => b.len(),
            Body::Owned(b) => b.len(),
            Body::Empty => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Owned(b) => b,
            Body::Empty => &[],
        }
    }
}

/// What the handler answers. The connection adds `Server`, `Content-Length` and
/// `Connection`; for `HEAD` it sends the same head without the body; for 1xx, 204
/// and 304 it sends neither `Content-Length` nor a body. Header values must not
/// hold CR, LF or NUL (such a response is replaced by a 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub etag: Option<&'static str>,
    pub content_encoding_gzip: bool,
    pub vary_accept_encoding: bool,
    pub cache_control: Option<&'static str>,
    /// `Allow` header (405 responses).
    pub allow: Option<&'static str>,
    pub body: Body,
}

impl Response {
    /// A response with only a status and a body; every optional header unset.
    pub fn new(status: u16, content_type: Option<&'static str>, body: Body) -> Response {
        Response {
            status,
            content_type,
            etag: None,
            content_encoding_gzip: false,
            vary_accept_encoding: false,
            cache_control: None,
            allow: None,
            body,
        }
    }
}

/// One response as the connection reports it to [`Handler::on_response`]: what
/// was asked, by which connection, when, and what is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// When the response starts: `now` of the call that reports it.
    pub now: Millis,
}

/// The application: routes a validated `GET`/`HEAD` request to a response.
pub trait Handler {
    fn handle(&mut self, req: &Request) -> Response;
    /// Called once for every response the connection starts from
    /// [`Conn::receive`], including its own error responses. The one exception
    /// is the 408 a header timeout produces inside [`Conn::poll`], which has no
    /// handler: it is reported as [`ConnEvent::RequestTimeout`] instead.
    fn on_response(&mut self, exchange: &Exchange<'_>);
    /// The last byte of connection `conn`'s current response (the one its latest
    /// `on_response` reported, or the 408 of its `RequestTimeout`) was handed to
    /// the socket by [`Conn::transmit`] at `now`. Not called for a response that
    /// the connection drops (abort, reset) before it is sent.
    fn on_sent(&mut self, conn: u64, now: Millis) {
        let _ = (conn, now);
    }
}
