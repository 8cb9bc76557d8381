//! Every size and timeout of an HTTP connection. Each has a named default, and a
//! test in `conn` or `parse` that reaches it.

use super::Millis;

/// Request line plus headers, in bytes: the size of a connection's input buffer.
pub const MAX_HEAD: usize = 8192;
/// Request target (URI), in bytes; longer gets 414.
pub const MAX_URI: usize = 2048;
/// Header fields in one request; more gets 431.
pub const MAX_HEADERS: usize = 32;
/// Request body accepted (and discarded) on `GET`/`HEAD`; larger gets 413.
pub const MAX_GET_BODY: usize = 1024;
/// From the first byte of a request until its head (and small body) is complete.
pub const HEADER_TIMEOUT_MS: Millis = 10_000;
/// Keep-alive connection with no request in progress.
pub const IDLE_TIMEOUT_MS: Millis = 15_000;
/// Response pending but no byte accepted by the socket.
pub const SEND_TIMEOUT_MS: Millis = 30_000;
/// After [`Action::Close`](super::Action::Close): the socket should be back to
/// listening by then, else `poll` answers `Abort` (smoltcp has no FIN-WAIT-2 timeout).
pub const CLOSE_TIMEOUT_MS: Millis = 10_000;

/// Hard ceiling on [`Limits::max_headers`]: the header array lives on the stack.
pub const MAX_HEADERS_CAP: usize = 128;
/// Smallest [`Limits::max_head`] a connection accepts (it clamps to this).
pub const MIN_HEAD: usize = 64;
/// Longest method token; a longer one is answered 501 before its line ends.
pub const MAX_METHOD: usize = 32;
/// Longest HTTP-version token before the line must end.
pub const MAX_VERSION: usize = 16;
/// Size of a connection's response-head buffer: room for the fixed fields, a
/// `Location` as long as the longest target (a directory redirect echoes path
/// and query) and [`RESPONSE_EXTRA_FIELDS`].
pub const RESPONSE_HEAD_CAP: usize = 4096;
/// Bytes of the head the fixed fields (status line, `Server`, `Content-*`,
/// `ETag`, `Cache-Control`, ...) take at most, for the budget below.
pub const RESPONSE_FIXED_FIELDS: usize = 1024;
/// What is left for a handler's extra fields ([`Response::headers`](super::Response::headers)).
pub const RESPONSE_EXTRA_FIELDS: usize = RESPONSE_HEAD_CAP - RESPONSE_FIXED_FIELDS - MAX_URI - 2;

const _: () = assert!(MAX_URI < MAX_HEAD && MIN_HEAD <= MAX_HEAD);
const _: () = assert!(MAX_HEADERS <= MAX_HEADERS_CAP);
const _: () = assert!(HEADER_TIMEOUT_MS > 0 && IDLE_TIMEOUT_MS > 0 && SEND_TIMEOUT_MS > 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The sizes and timeouts one connection enforces; [`Limits::default`] is the named defaults above, configuration may change them.
pub struct Limits {
    /// See [`MAX_HEAD`].
    pub max_head: usize,
    /// See [`MAX_URI`].
    pub max_uri: usize,
    /// See [`MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`MAX_GET_BODY`].
    pub max_get_body: usize,
    /// See [`HEADER_TIMEOUT_MS`].
    pub header_timeout_ms: Millis,
    /// See [`IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: Millis,
    /// See [`SEND_TIMEOUT_MS`].
    pub send_timeout_ms: Millis,
    /// See [`CLOSE_TIMEOUT_MS`].
    pub close_timeout_ms: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: MAX_HEAD,
            max_uri: MAX_URI,
            max_headers: MAX_HEADERS,
            max_get_body: MAX_GET_BODY,
            header_timeout_ms: HEADER_TIMEOUT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            send_timeout_ms: SEND_TIMEOUT_MS,
            close_timeout_ms: CLOSE_TIMEOUT_MS,
        }
    }
}

impl Limits {
    /// The limits a connection actually applies: `max_head` at least [`MIN_HEAD`],
    /// `max_uri` at most `max_head`, `max_headers` at most [`MAX_HEADERS_CAP`].
    pub fn clamped(self) -> Limits {
        let max_head = self.max_head.max(MIN_HEAD);
        Limits {
            max_head,
            max_uri: self.max_uri.min(max_head),
            max_headers: self.max_headers.min(MAX_HEADERS_CAP),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamped_keeps_defaults_and_bounds_the_rest() {
        assert_eq!(Limits::default().clamped(), Limits::default());
        let odd = Limits {
            max_head: 1,
            max_uri: 10_000,
            max_headers: 10_000,
            ..Limits::default()
        }
        .clamped();
        assert_eq!(odd.max_head, MIN_HEAD);
        assert_eq!(odd.max_uri, MIN_HEAD);
        assert_eq!(odd.max_headers, MAX_HEADERS_CAP);
    }
}
