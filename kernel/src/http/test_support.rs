//! Host-test helpers: a recording handler, a driver that plays a client's bytes
//! through a [`Conn`] the way the network layer does, and a response parser.

use super::{Action, Body, Conn, Exchange, Handler, Method, Millis, Request, Response};
use alloc::string::String;
use alloc::vec::Vec;

/// 3 MiB of a pattern where every offset differs from its neighbours.
pub fn big_body() -> &'static [u8] {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| {
        (0..3 * 1024 * 1024u32)
            .map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8)
            .collect()
    })
}

/// Routes: `/` "hello\n"; `/big` 3 MiB static; `/owned` an owned body; `/304`; `/ranged`;
/// `/bad-header` a content type with CR LF; anything else 404.
#[derive(Default)]
pub struct TestApp {
    pub requests: Vec<(Method, String, bool, Option<String>)>,
    /// (status, body bytes) of every `on_response`.
    pub responses: Vec<(u16, u64)>,
    /// Every `on_response` in full: (method, path, conn, received, now).
    pub exchanges: Vec<(String, String, u64, Millis, Millis)>,
    /// Every `on_sent`: (conn, now), and how many responses were reported
    /// before it (each `on_sent` follows its own `on_response`).
    pub sent: Vec<(u64, Millis, usize)>,
}

impl Handler for TestApp {
    fn handle(&mut self, req: &Request) -> Response {
        self.requests.push((
            req.method,
            req.path.into(),
            req.accept_encoding.quality(super::Coding::Gzip) > 0,
            req.if_none_match.map(String::from),
        ));
        let text = Some("text/plain; charset=utf-8");
        match req.path {
            "/" => Response::new(200, text, Body::Static(b"hello\n")),
            "/big" => Response::new(200, None, Body::Static(big_body())),
            "/owned" => Response::new(200, text, Body::Owned(b"owned body\n".to_vec())),
            "/304" => {
                let mut r = Response::new(304, None, Body::Empty);
                r.etag = Some("\"e\"");
                r
            }
            "/bad-header" => Response::new(200, Some("text/plain\r\nX: y"), Body::Empty),
            "/ranged" => ranged(req),
            _ => Response::new(404, text, Body::Static(b"not found\n")),
        }
    }

    fn on_response(&mut self, e: &Exchange<'_>) {
        assert!(e.received <= e.now, "{e:?}");
        self.responses.push((e.status, e.body_bytes));
        self.exchanges
            .push((e.method.into(), e.path.into(), e.conn, e.received, e.now));
    }

    fn on_sent(&mut self, e: &Exchange<'_>) {
        self.sent.push((e.conn, e.now, self.responses.len()));
    }
}

/// `/ranged`: a 36-byte body with ETag `"r"`, served with byte ranges the way
/// a site asset is.
fn ranged(req: &Request) -> Response {
    use super::range::{self, ContentRange, Ranges};
    static BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let complete = BODY.len() as u64;
    let ranges = match req.range {
        Some(v) if range::if_range_allows(req.if_range, "\"r\"") => range::evaluate(v, complete),
        _ => Ranges::Ignore,
    };
    let text = Some("text/plain");
    let mut resp = match ranges {
        Ranges::Ignore => Response::new(200, text, Body::Static(BODY)),
        Ranges::Unsatisfiable => Response {
            content_range: Some(ContentRange::Unsatisfied { complete }),
            ..Response::new(416, text, Body::Static(b"416\n"))
        },
        Ranges::Satisfiable(list) => match list.as_slice() {
            [one] => Response {
                content_range: Some(ContentRange::Bytes {
                    range: *one,
                    complete,
                }),
                ..Response::new(206, text, Body::Static(one.slice(BODY)))
            },
            many => Response {
                multipart_boundary: Some("r"),
                ..Response::new(
                    206,
                    text,
                    range::multipart_body(BODY, many, "text/plain", "r"),
                )
            },
        },
    };
    resp.etag = Some("\"r\"");
    resp.accept_ranges = true;
    resp
}

/// Feeds `input` in `chunks` (sizes cycled), draining output through `out_sizes`
/// (cycled) after each chunk, the way the network layer's pass does: receive and
/// transmit until neither makes progress. Bytes not taken stay "in the socket" and
/// are offered again. Returns everything transmitted and the last poll action.
pub fn exchange(
    conn: &mut Conn,
    app: &mut TestApp,
    input: &[u8],
    chunks: &[usize],
    out_sizes: &[usize],
    now: Millis,
) -> (Vec<u8>, Action) {
    let mut socket_rx: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut wire = Vec::new();
    let mut chunk_i = 0usize;
    let mut out_i = 0usize;
    let mut action;
    loop {
        if fed < input.len() {
            let size = chunks[chunk_i % chunks.len()].max(1);
            chunk_i += 1;
            let end = (fed + size).min(input.len());
            socket_rx.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 10_000_000, "no progress bound hit");
            let took = conn.receive(&socket_rx, now, app);
            assert!(took <= socket_rx.len());
            socket_rx.drain(..took);
            let mut sent = 0;
            if conn.has_pending_output() {
                let size = out_sizes[out_i % out_sizes.len()];
                out_i += 1;
                let mut out = alloc::vec![0u8; size];
                sent = conn.transmit(&mut out, now, app);
                wire.extend_from_slice(&out[..sent]);
            }
            action = conn.poll(now);
            if action != Action::Keep || (took == 0 && sent == 0) {
                break;
            }
        }
        if action != Action::Keep || fed >= input.len() {
            break;
        }
    }
    (wire, action)
}

/// Drains all pending output with `out` buffers of `size` bytes.
pub fn drain(conn: &mut Conn, size: usize, now: Millis) -> Vec<u8> {
    drain_to(conn, size, now, &mut TestApp::default())
}

/// [`drain`], reporting to `app`.
pub fn drain_to(conn: &mut Conn, size: usize, now: Millis, app: &mut TestApp) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut out = alloc::vec![0u8; size];
    while conn.has_pending_output() {
        let n = conn.transmit(&mut out, now, app);
        assert!(n > 0 || size == 0);
        wire.extend_from_slice(&out[..n]);
    }
    wire
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Wire {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a byte stream of responses; `head_requests[i]` says whether the i-th
/// response answers a HEAD (no body). Panics on anything malformed.
pub fn parse_responses(mut bytes: &[u8], head_requests: &[bool]) -> Vec<Wire> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!(
                "bad response {other:?}: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        };
        let status = resp.code.unwrap();
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| (h.name.into(), String::from_utf8(h.value.to_vec()).unwrap()))
            .collect();
        let cl = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let head = head_requests.get(out.len()).copied().unwrap_or(false);
        let body_len = if head { 0 } else { cl.unwrap_or(0) };
        assert!(bytes.len() >= len + body_len, "truncated body");
        out.push(Wire {
            status,
            headers,
            body: bytes[len..len + body_len].to_vec(),
        });
        bytes = &bytes[len + body_len..];
    }
    out
}
