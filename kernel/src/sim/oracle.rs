//! What the site defines for a request, written out independently of the
//! HTTP layer under test: the requests the simulated clients send, as bytes,
//! and the exact response each must get, from the baked asset table (the
//! site's definition) and the response format the server documents (field
//! order of `http::response`, `X-Request-Id` on every response).

use crate::app::assets::{ASSETS, Asset};
use crate::http::response::SERVER;
use std::format;
use std::string::String;
use std::vec::Vec;

/// A path the site has no file, directory or rule for.
const MISSING: &str = "/no/such/page";
const NOT_FOUND_PAGE: &str = "/404.html";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One request a client sends.
#[derive(Debug, Clone)]
pub enum Spec {
    Get(Get),
    /// A head the server must refuse with this status and close.
    Malformed {
        text: &'static str,
        status: u16,
    },
}

#[derive(Debug, Clone)]
pub struct Get {
    pub head_method: bool,
    pub path: String,
    pub version: Version,
    /// `Connection: close` (1.1) or its absence of keep-alive (1.0).
    pub close: bool,
    pub accept: Option<&'static str>,
    pub if_none_match: Option<&'static str>,
    /// `bytes=first-last`, `last` possibly past the end (unsatisfiable when
    /// `first` is).
    pub range: Option<(u64, u64)>,
}

/// The malformed heads clients send, with the status each must get.
pub const MALFORMED: &[(&str, u16)] = &[
    ("DELETE / HTTP/1.1\r\nHost: sim\r\n\r\n", 405),
    ("BREW /pot HTTP/1.1\r\nHost: sim\r\n\r\n", 501),
    ("GET / HTTP/1.1\r\nHost: sim\r\nno colon here\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n\r\n", 400),
    (
        "GET / HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "GET / HTTP/1.1\r\nHost: sim\r\nContent-Length: 99999\r\n\r\n",
        413,
    ),
];

/// Paths served from files, with how much of the traffic asks for each:
/// small pages mostly, the large ones rarely (they cost the most frames).
pub fn assets() -> impl Iterator<Item = &'static Asset> {
    ASSETS.iter()
}

impl Spec {
    /// The bytes on the wire.
    pub fn render(&self) -> Vec<u8> {
        match self {
            Spec::Malformed { text, .. } => text.as_bytes().to_vec(),
            Spec::Get(g) => {
                let mut s = String::new();
                let method = if g.head_method { "HEAD" } else { "GET" };
                let version = match g.version {
                    Version::Http10 => "HTTP/1.0",
                    Version::Http11 => "HTTP/1.1",
                };
                s.push_str(&format!(
                    "{method} {} {version}\r\nHost: sim.test\r\n",
                    g.path
                ));
                match (g.version, g.close) {
                    (Version::Http11, true) => s.push_str("Connection: close\r\n"),
                    (Version::Http10, false) => s.push_str("Connection: keep-alive\r\n"),
                    _ => {}
                }
                if let Some(a) = g.accept {
                    s.push_str(&format!("Accept-Encoding: {a}\r\n"));
                }
                if let Some(e) = g.if_none_match {
                    s.push_str(&format!("If-None-Match: {e}\r\n"));
                }
                if let Some((a, b)) = g.range {
                    s.push_str(&format!("Range: bytes={a}-{b}\r\n"));
                }
                s.push_str("\r\n");
                s.into_bytes()
            }
        }
    }
}

/// A response as it must arrive: `before` + `X-Request-Id: <id>\r\n` +
/// `after` + `body` (the id names the boot, connection and request, which
/// the client cannot know; its form is checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub status: u16,
    pub before: Vec<u8>,
    pub after: Vec<u8>,
    pub body: Body,
}

/// A body from the site's table (never copied), or a small one built here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Owned(b) => b,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        501 => "Not Implemented",
        _ => "?",
    }
}

/// The fields of a response, in the server's documented order.
#[derive(Default)]
struct Head<'a> {
    status: u16,
    content_type: Option<&'a str>,
    content_length: Option<usize>,
    content_range: Option<String>,
    content_encoding: Option<&'a str>,
    etag: Option<&'a str>,
    accept_ranges: bool,
    vary: bool,
    cache_control: Option<&'a str>,
    location: Option<&'a str>,
    allow: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
}

fn build(h: &Head, connection: Option<&str>, body: Body) -> Expected {
    let mut s = format!(
        "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\n",
        h.status,
        reason(h.status)
    );
    if let Some(ct) = h.content_type {
        s.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(n) = h.content_length {
        s.push_str(&format!("Content-Length: {n}\r\n"));
    }
    if let Some(r) = &h.content_range {
        s.push_str(&format!("Content-Range: {r}\r\n"));
    }
    if let Some(c) = h.content_encoding {
        s.push_str(&format!("Content-Encoding: {c}\r\n"));
    }
    if let Some(e) = h.etag {
        s.push_str(&format!("ETag: {e}\r\n"));
    }
    if h.accept_ranges {
        s.push_str("Accept-Ranges: bytes\r\n");
    }
    if h.vary {
        s.push_str("Vary: Accept-Encoding\r\n");
    }
    if let Some(cc) = h.cache_control {
        s.push_str(&format!("Cache-Control: {cc}\r\n"));
    }
    if let Some(l) = h.location {
        s.push_str(&format!("Location: {l}\r\n"));
    }
    if let Some(a) = h.allow {
        s.push_str(&format!("Allow: {a}\r\n"));
    }
    for (name, value) in h.headers {
        s.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut after = String::new();
    if let Some(c) = connection {
        after.push_str(&format!("Connection: {c}\r\n"));
    }
    after.push_str("\r\n");
    Expected {
        status: h.status,
        before: s.into_bytes(),
        after: after.into_bytes(),
        body,
    }
}

fn error_body(status: u16) -> Vec<u8> {
    format!("{status} {}\n", reason(status)).into_bytes()
}

fn lookup(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The representation `accept` selects: among identity and the variants the
/// client accepts (all at q=1), the smallest, identity winning ties.
fn select(
    asset: &Asset,
    accept: Option<&str>,
) -> (Option<&'static str>, &'static [u8], &'static str) {
    let accepts = |c: &str| accept.is_some_and(|a| a.split(',').any(|t| t.trim() == c));
    let mut best = (None, asset.body, asset.etag);
    if let Some(v) = asset.gzip.filter(|_| accepts("gzip"))
        && v.body.len() < best.1.len()
    {
        best = (Some("gzip"), v.body, v.etag);
    }
    if let Some(v) = asset.br.filter(|_| accepts("br"))
        && v.body.len() < best.1.len()
    {
        best = (Some("br"), v.body, v.etag);
    }
    best
}

/// The response the site defines for `spec`.
pub fn expected(spec: &Spec) -> Expected {
    let g = match spec {
        Spec::Malformed { status, .. } => {
            let body = error_body(*status);
            let head = Head {
                status: *status,
                content_type: Some("text/plain; charset=utf-8"),
                content_length: Some(body.len()),
                allow: (*status == 405).then_some("GET, HEAD"),
                ..Head::default()
            };
            return build(&head, Some("close"), Body::Owned(body));
        }
        Spec::Get(g) => g,
    };
    let connection = match (g.version, g.close) {
        (_, true) => Some("close"),
        (Version::Http10, false) => Some("keep-alive"),
        (Version::Http11, false) => None,
    };
    let body_of = |b: &'static [u8]| Body::Static(if g.head_method { &[] } else { b });
    if g.path == "/old-docs" {
        let head = Head {
            status: 301,
            content_length: Some(0),
            location: Some("/docs/"),
            ..Head::default()
        };
        return build(&head, connection, Body::Static(&[]));
    }
    let Some(asset) = lookup(&g.path) else {
        let page = lookup(NOT_FOUND_PAGE).expect("the site has a 404 page");
        let (coding, body, _) = select(page, g.accept);
        let head = Head {
            status: 404,
            content_type: Some(page.content_type),
            content_length: Some(body.len()),
            content_encoding: coding,
            vary: page.gzip.is_some() || page.br.is_some(),
            cache_control: page.cache_control,
            headers: page.headers,
            ..Head::default()
        };
        return build(&head, connection, body_of(body));
    };
    let (coding, body, etag) = select(asset, g.accept);
    let vary = asset.gzip.is_some() || asset.br.is_some();
    if g.if_none_match == Some(etag) || g.if_none_match == Some("*") {
        let head = Head {
            status: 304,
            etag: Some(etag),
            vary,
            cache_control: asset.cache_control,
            headers: asset.headers,
            ..Head::default()
        };
        return build(&head, connection, Body::Static(&[]));
    }
    let complete = body.len() as u64;
    match g.range {
        Some((first, _)) if first >= complete => {
            let text = error_body(416);
            let head = Head {
                status: 416,
                content_type: Some("text/plain; charset=utf-8"),
                content_length: Some(text.len()),
                content_range: Some(format!("bytes */{complete}")),
                accept_ranges: true,
                headers: asset.headers,
                ..Head::default()
            };
            let text = if g.head_method { Vec::new() } else { text };
            build(&head, connection, Body::Owned(text))
        }
        range => {
            // The 200 and the 206 of a file share every header but these.
            let whole = Head {
                status: 200,
                content_type: Some(asset.content_type),
                content_length: Some(body.len()),
                content_encoding: coding,
                etag: Some(etag),
                accept_ranges: true,
                vary,
                cache_control: asset.cache_control,
                headers: asset.headers,
                ..Head::default()
            };
            match range {
                Some((first, last)) => {
                    let last = last.min(complete - 1);
                    let slice = &body[first as usize..=last as usize];
                    let head = Head {
                        status: 206,
                        content_length: Some(slice.len()),
                        content_range: Some(format!("bytes {first}-{last}/{complete}")),
                        ..whole
                    };
                    build(&head, connection, body_of(slice))
                }
                None => build(&whole, connection, body_of(body)),
            }
        }
    }
}

/// The ETag a conditional request names to get 304 (of the representation
/// `accept` selects), or one that matches nothing.
pub fn etag_for(path: &str, accept: Option<&str>, matching: bool) -> Option<&'static str> {
    if !matching {
        return Some("\"0000000000000000\"");
    }
    lookup(path).map(|a| select(a, accept).2)
}

/// A path with no file.
pub fn missing() -> &'static str {
    MISSING
}

/// Incremental check of a response stream against what is expected:
/// byte by byte, the request id's form where it stands.
#[derive(Debug, Clone)]
pub struct Matcher {
    expected: Expected,
    /// Bytes of `before` matched, then the id, then `after`.
    at: usize,
    stage: Stage,
    id: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Before,
    IdName,
    IdValue,
    After,
    Body,
    Done,
}

const ID_NAME: &[u8] = b"X-Request-Id: ";

/// A response that is not what the site defines.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub offset: usize,
    pub what: String,
}

impl Matcher {
    pub fn new(expected: Expected) -> Matcher {
        Matcher {
            expected,
            at: 0,
            stage: Stage::Before,
            id: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        self.expected.status
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Bytes received so far of this response.
    pub fn progress(&self) -> usize {
        match self.stage {
            Stage::Before => self.at,
            Stage::IdName => self.expected.before.len() + self.at,
            Stage::IdValue => self.expected.before.len() + ID_NAME.len() + self.id.len(),
            Stage::After => {
                self.expected.before.len() + ID_NAME.len() + self.id.len() + 1 + self.at
            }
            Stage::Body | Stage::Done => {
                self.expected.before.len()
                    + ID_NAME.len()
                    + self.id.len()
                    + 1
                    + self.expected.after.len()
                    + self.at
            }
        }
    }

    /// Consumes bytes of this response from `input`; returns how many (the
    /// rest belongs to the next response).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Mismatch> {
        let mut used = 0;
        while used < input.len() {
            let b = input[used];
            let want = match self.stage {
                Stage::Done => return Ok(used),
                Stage::Body => {
                    let body = self.expected.body.bytes();
                    let n = (input.len() - used).min(body.len() - self.at);
                    let got = &input[used..used + n];
                    let want = &body[self.at..self.at + n];
                    if got != want {
                        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                        self.at += i;
                        return Err(self.mismatch(&format!(
                            "body byte {:#04x} where {:#04x} was expected",
                            got[i], want[i]
                        )));
                    }
                    used += n;
                    self.at += n;
                    self.advance();
                    continue;
                }
                Stage::Before => self.expected.before.get(self.at).copied(),
                Stage::IdName => ID_NAME.get(self.at).copied(),
                Stage::After => self.expected.after.get(self.at).copied(),
                Stage::IdValue => {
                    used += 1;
                    if b == b'\n' {
                        self.check_id()?;
                        self.stage = Stage::After;
                        self.at = 0;
                    } else if self.id.len() > 40 {
                        return Err(self.mismatch("request id too long"));
                    } else {
                        self.id.push(b);
                    }
                    continue;
                }
            };
            match want {
                Some(w) if w == b => {
                    used += 1;
                    self.at += 1;
                }
                Some(w) => {
                    return Err(self.mismatch(&format!(
                        "byte {:?} where {:?} was expected",
                        b as char, w as char
                    )));
                }
                None => unreachable!("stage advanced at its end"),
            }
            self.advance();
        }
        self.advance();
        Ok(used)
    }

    fn advance(&mut self) {
        match self.stage {
            Stage::Before if self.at == self.expected.before.len() => {
                self.stage = Stage::IdName;
                self.at = 0;
            }
            Stage::IdName if self.at == ID_NAME.len() => {
                self.stage = Stage::IdValue;
            }
            Stage::After if self.at == self.expected.after.len() => {
                self.stage = Stage::Body;
                self.at = 0;
                self.advance();
            }
            Stage::Body if self.at == self.expected.body.bytes().len() => self.stage = Stage::Done,
            _ => {}
        }
    }

    /// `<8 hex>-<conn>-<seq>\r`.
    fn check_id(&self) -> Result<(), Mismatch> {
        let text = core::str::from_utf8(&self.id).unwrap_or("");
        let ok = text.strip_suffix('\r').is_some_and(|id| {
            let mut parts = id.split('-');
            let boot = parts.next().unwrap_or("");
            let n1 = parts.next().unwrap_or("");
            let n2 = parts.next().unwrap_or("");
            boot.len() == 8
                && boot.bytes().all(|c| c.is_ascii_hexdigit())
                && !n1.is_empty()
                && n1.bytes().all(|c| c.is_ascii_digit())
                && !n2.is_empty()
                && n2.bytes().all(|c| c.is_ascii_digit())
                && parts.next().is_none()
        });
        if ok {
            Ok(())
        } else {
            Err(self.mismatch(&format!("malformed request id {text:?}")))
        }
    }

    fn mismatch(&self, what: &str) -> Mismatch {
        let expected_text =
            String::from_utf8_lossy(&self.expected.before[..self.expected.before.len().min(400)])
                .into_owned();
        Mismatch {
            offset: self.progress(),
            what: format!("{what} (expected head starts {expected_text:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Conn, Handler};

    /// Sanity of the oracle against the real connection and site over a
    /// fixed list (the simulator then checks every response it sees).
    #[test]
    fn agrees_with_the_server_on_each_kind_of_request() {
        let mut specs = std::vec![];
        for a in assets().take(8) {
            for accept in [None, Some("gzip"), Some("br"), Some("gzip, br")] {
                for version in [Version::Http10, Version::Http11] {
                    specs.push(Spec::Get(Get {
                        head_method: false,
                        path: a.path.into(),
                        version,
                        close: version == Version::Http10,
                        accept,
                        if_none_match: None,
                        range: None,
                    }));
                }
                specs.push(Spec::Get(Get {
                    head_method: true,
                    path: a.path.into(),
                    version: Version::Http11,
                    close: false,
                    accept,
                    if_none_match: etag_for(a.path, accept, true),
                    range: None,
                }));
                specs.push(Spec::Get(Get {
                    head_method: false,
                    path: a.path.into(),
                    version: Version::Http11,
                    close: false,
                    accept,
                    if_none_match: None,
                    range: Some((1, 3)),
                }));
                specs.push(Spec::Get(Get {
                    head_method: false,
                    path: a.path.into(),
                    version: Version::Http11,
                    close: false,
                    accept,
                    if_none_match: None,
                    range: Some((1 << 30, 1 << 31)),
                }));
            }
        }
        for path in [missing(), "/old-docs"] {
            specs.push(Spec::Get(Get {
                head_method: false,
                path: path.into(),
                version: Version::Http11,
                close: false,
                accept: Some("gzip"),
                if_none_match: None,
                range: None,
            }));
        }
        for &(text, status) in MALFORMED {
            specs.push(Spec::Malformed { text, status });
        }
        let mut site = crate::app::Site::baked();
        for spec in specs {
            let mut conn = Conn::new();
            conn.open_with_id(0, 1);
            let wire = spec.render();
            let taken = conn.receive(&wire, 0, &mut site as &mut dyn Handler);
            assert_eq!(taken, wire.len());
            let mut out = std::vec![0u8; 4 << 20];
            let n = conn.transmit(&mut out, 0, &mut site);
            let mut m = Matcher::new(expected(&spec));
            let used = m.feed(&out[..n]).unwrap_or_else(|e| {
                panic!(
                    "{spec:?}: {e:?}\ngot {:?}",
                    String::from_utf8_lossy(&out[..n.min(600)])
                )
            });
            assert!(m.is_done() && used == n, "{spec:?}: {used} of {n}");
        }
    }
}
