//! The bad-input corpus: malformed, oversized and smuggling-shaped requests,
//! each with the answer the server must give.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// One error response with this status and `Connection: close`, then the
    /// connection closes; nothing else on the wire.
    Error(u16),
    /// One response with this status; the connection stays usable.
    Served(u16),
}

pub(crate) struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub head: bool,
    pub expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    let bytes = bytes.into();
    let head = bytes.starts_with(b"HEAD ");
    Case {
        name,
        bytes,
        head,
        expect,
    }
}

/// The smuggled request hidden in bodies: it must never be answered.
const SMUGGLED: &str = "GET /health HTTP/1.1\r\nHost: s\r\n\r\n";

pub(crate) fn corpus() -> Vec<Case> {
    use Expect::{Error, Served};
    let h = "GET /health HTTP/1.1\r\nHost: a\r\n";
    let mut c = vec![
        // Request line.
        case(
            "bare LF everywhere",
            "GET /health HTTP/1.1\nHost: a\n\n",
            Error(400),
        ),
        case(
            "bare LF after a header",
            "GET /health HTTP/1.1\r\nHost: a\n\r\n",
            Error(400),
        ),
        case(
            "bare CR",
            "GET /health HTTP/1.1\rHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "NUL first",
            "\0GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "NUL in method",
            "GE\0T /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "NUL in target",
            "GET /he\0alth HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "NUL in a header",
            "GET /health HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            Error(400),
        ),
        case(
            "two spaces",
            "GET  /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case("no version (HTTP/0.9)", "GET /health\r\n\r\n", Error(400)),
        case(
            "lowercase version",
            "GET /health http/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "not a version",
            "GET /health HTTX/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "HTTP/2.0",
            "GET /health HTTP/2.0\r\nHost: a\r\n\r\n",
            Error(505),
        ),
        // A later HTTP/1 minor version is answered as HTTP/1.1 (RFC 9110 §2.5).
        case(
            "HTTP/1.2",
            "GET /health HTTP/1.2\r\nHost: a\r\n\r\n",
            Served(200),
        ),
        case(
            "invalid Host",
            "GET /health HTTP/1.1\r\nHost: a b/c\r\n\r\n",
            Error(400),
        ),
        case(
            "HTTP/3",
            "GET /health HTTP/3\r\nHost: a\r\n\r\n",
            Error(505),
        ),
        case("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Error(505)),
        case(
            "unknown method",
            "BREW /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(501),
        ),
        case(
            "lowercase method",
            "get /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(501),
        ),
        case(
            "33-byte method",
            format!("{} /health HTTP/1.1\r\nHost: a\r\n\r\n", "M".repeat(33)),
            Error(501),
        ),
        case(
            "bad method byte",
            "G(T /health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "OPTIONS *",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(405),
        ),
        case(
            "CONNECT",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(405),
        ),
        case(
            "POST with a body",
            format!("POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}"),
            Error(405),
        ),
        case(
            "asterisk target on GET",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "authority target",
            "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "ftp target",
            "GET ftp://a/health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "dot-dot",
            "GET /a/../health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "encoded dot-dot",
            "GET /%2e%2e/health HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "encoded NUL",
            "GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "bad escape",
            "GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "not UTF-8",
            "GET /%ff HTTP/1.1\r\nHost: a\r\n\r\n",
            Error(400),
        ),
        case(
            "garbage",
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            Error(400),
        ),
        case("TLS-ish text", "\x16\x03\x01 hello\r\n\r\n", Error(400)),
        // Host (RFC 9112 §3.2).
        case(
            "HTTP/1.1 without Host",
            "GET /health HTTP/1.1\r\n\r\n",
            Error(400),
        ),
        case("two Hosts", format!("{h}Host: b\r\n\r\n"), Error(400)),
        case(
            "HEAD without Host",
            "HEAD /health HTTP/1.1\r\n\r\n",
            Error(400),
        ),
        // Framing and smuggling shapes.
        case(
            "chunked",
            format!("{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            Error(400),
        ),
        case(
            "CL and TE",
            format!(
                "{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Error(400),
        ),
        case(
            "TE and CL",
            format!(
                "{h}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Error(400),
        ),
        case(
            "duplicate equal CL",
            format!("{h}Content-Length: 2\r\nContent-Length: 2\r\n\r\nab{SMUGGLED}"),
            Error(400),
        ),
        case(
            "duplicate different CL",
            format!("{h}Content-Length: 2\r\nContent-Length: 40\r\n\r\nab{SMUGGLED}"),
            Error(400),
        ),
        case(
            "CL +5",
            format!("{h}Content-Length: +5\r\n\r\nhello"),
            Error(400),
        ),
        case(
            "CL 5,5",
            format!("{h}Content-Length: 5,5\r\n\r\nhello"),
            Error(400),
        ),
        case(
            "CL 5x",
            format!("{h}Content-Length: 5x\r\n\r\nhello"),
            Error(400),
        ),
        case(
            "CL -1",
            format!("{h}Content-Length: -1\r\n\r\n"),
            Error(400),
        ),
        case(
            "CL empty",
            format!("{h}Content-Length:\r\n\r\n"),
            Error(400),
        ),
        case(
            "CL hex",
            format!("{h}Content-Length: 0x5\r\n\r\nhello"),
            Error(400),
        ),
        case(
            "obs-fold",
            format!("{h}X-A: b\r\n  folded\r\n\r\n"),
            Error(400),
        ),
        case(
            "space before colon",
            format!("{h}Content-Length : 0\r\n\r\n"),
            Error(400),
        ),
        case(
            "header line starting with space",
            format!("{h} X-A: b\r\n\r\n"),
            Error(400),
        ),
        case(
            "header without colon",
            format!("{h}X-A b\r\n\r\n"),
            Error(400),
        ),
        // Limits.
        case(
            "GET body over 1024",
            format!("{h}Content-Length: 1025\r\n\r\n{}", "b".repeat(1025)),
            Error(413),
        ),
        case(
            "GET body length beyond u64",
            format!("{h}Content-Length: 99999999999999999999999\r\n\r\n"),
            Error(413),
        ),
        case(
            "URI of 2049 bytes",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2048)),
            Error(414),
        ),
        case(
            "URI of 5000 bytes, line never ends",
            format!("GET /{}", "u".repeat(5000)),
            Error(414),
        ),
        case(
            "HEAD with a long URI",
            format!("HEAD /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2048)),
            Error(414),
        ),
        case(
            "33 header fields",
            format!(
                "{h}{}\r\n",
                (1..33).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            ),
            Error(431),
        ),
        case(
            "head over 8192 bytes",
            format!("{h}X-Big: {}\r\n\r\n", "b".repeat(9000)),
            Error(431),
        ),
        case(
            "head over 8192 bytes, never ends",
            format!("{h}X-Big: {}", "b".repeat(20_000)),
            Error(431),
        ),
        // Served: the boundaries on the right side, and shapes that are fine.
        case(
            "32 header fields",
            format!(
                "{h}{}\r\n",
                (1..32).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            ),
            Served(200),
        ),
        case(
            "GET body of 1024, discarded",
            format!("{h}Content-Length: 1024\r\n\r\n{}", "b".repeat(1024)),
            Served(200),
        ),
        case(
            "URI of 2048 bytes",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2047)),
            Served(404),
        ),
        case(
            "absolute form",
            "GET http://example.com/health?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Served(200),
        ),
        case(
            "leading empty lines",
            format!("\r\n\r\n{h}\r\n"),
            Served(200),
        ),
        case(
            "HTTP/1.0 without Host, keep-alive",
            "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Served(200),
        ),
        case(
            "CL with whitespace",
            format!("{h}Content-Length:  007 \r\n\r\n1234567"),
            Served(200),
        ),
    ];
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        c.push(Case {
            name: "known method",
            bytes: format!("{m} /health HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
            head: false,
            expect: Error(405),
        });
    }
    c
}
