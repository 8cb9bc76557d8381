use super::*;
use crate::app::assets::Variant;
use crate::http::range::ByteRange;
use crate::http::{AcceptEncoding, Method};

const HTML: &str = "text/html; charset=utf-8";
static SECURITY: &[(&str, &str)] = &[("X-Content-Type-Options", "nosniff")];

const fn asset(path: &'static str, body: &'static [u8], etag: &'static str) -> Asset {
    Asset {
        path,
        body,
        etag,
        gzip: None,
        br: None,
        content_type: HTML,
        cache_control: Some("no-cache"),
        headers: &[],
    }
}

/// Sorted by path.
static TABLE: &[Asset] = &[
    Asset {
        gzip: Some(Variant {
            body: b"GZ-INDEX",
            etag: "\"gggg\"",
        }),
        br: Some(Variant {
            body: b"BR-IX",
            etag: "\"bbbb\"",
        }),
        headers: SECURITY,
        ..asset("/", b"<html>index page</html>", "\"aaaa\"")
    },
    Asset {
        gzip: Some(Variant {
            body: b"GZ404",
            etag: "\"g404\"",
        }),
        ..asset("/404.html", b"<h1>not here</h1>", "\"n404\"")
    },
    asset("/docs/", b"docs index", "\"dddd\""),
    asset("/docs/index.html", b"docs index", "\"dddd\""),
    Asset {
        content_type: "image/png",
        cache_control: Some("public, max-age=31536000, immutable"),
        ..asset("/img.5f3c9e1a.png", b"0123456789", "\"pppp\"")
    },
    asset("/index.html", b"<html>index page</html>", "\"aaaa\""),
    asset("/spa.html", b"spa shell", "\"ssss\""),
];

const fn rule(from: &'static str, to: &'static str, status: u16, force: bool) -> Redirect {
    Redirect {
        from,
        to,
        status,
        force,
    }
}

static RULES: &[Redirect] = &[
    rule("/old", "/docs/", 301, false),
    rule("/blog/:year/:slug", "/docs/?post=:year-:slug", 302, false),
    rule("/files/*", "/archive/:splat", 308, false),
    rule("/away", "https://example.com/x", 307, false),
    rule("/see", "/docs/", 303, false),
    rule("/docs/index.html", "/docs/", 301, true),
    rule("/app/*", "/spa.html", 200, false),
    rule("/img.5f3c9e1a.png", "/never", 302, false),
    rule("/gone/*", "/404.html", 404, false),
    rule("/missing-target", "/nope.html", 200, false),
];

fn site() -> Site {
    Site::with_rules(TABLE, RULES)
}

fn req(path: &str) -> Request<'_> {
    Request::get(path)
}

fn with_encoding<'a>(mut r: Request<'a>, value: &str) -> Request<'a> {
    let mut a = AcceptEncoding::default();
    a.add(value.as_bytes());
    r.accept_encoding = a;
    r
}

fn with_range<'a>(mut r: Request<'a>, range: &'a str) -> Request<'a> {
    r.range = Some(range);
    r
}

#[test]
fn serves_identity_gzip_and_br() {
    let site = Site::new(TABLE);
    let r = site.respond(&req("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Body::Static(b"<html>index page</html>"));
    assert_eq!(r.etag, Some("\"aaaa\""));
    assert_eq!(r.content_encoding, Coding::Identity);
    assert!(r.vary_accept_encoding && r.accept_ranges);
    assert_eq!(r.cache_control, Some("no-cache"));
    assert_eq!(r.content_type, Some(HTML));
    assert_eq!(r.headers, SECURITY);
    let r = site.respond(&with_encoding(req("/"), "gzip"));
    assert_eq!(
        (r.body, r.etag, r.content_encoding),
        (Body::Static(b"GZ-INDEX"), Some("\"gggg\""), Coding::Gzip)
    );
    let r = site.respond(&with_encoding(req("/"), "gzip, br"));
    assert_eq!(
        (r.body, r.etag, r.content_encoding),
        (Body::Static(b"BR-IX"), Some("\"bbbb\""), Coding::Br)
    );
    let r = site.respond(&with_encoding(req("/"), "br;q=0.5, gzip"));
    assert_eq!(r.content_encoding, Coding::Gzip);
    // No variant: identity, no Vary.
    let r = site.respond(&with_encoding(req("/img.5f3c9e1a.png"), "gzip, br"));
    assert_eq!(r.body, Body::Static(b"0123456789"));
    assert!(r.content_encoding == Coding::Identity && !r.vary_accept_encoding);
    assert_eq!(r.cache_control, Some("public, max-age=31536000, immutable"));
}

#[test]
fn conditional_requests() {
    let site = Site::new(TABLE);
    let status = |enc: &str, inm: &'static str| {
        let mut r = with_encoding(req("/"), enc);
        r.if_none_match = Some(inm);
        site.respond(&r).status
    };
    assert_eq!(status("", "\"aaaa\""), 304);
    assert_eq!(status("", "W/\"aaaa\""), 304);
    assert_eq!(status("", "\"x\", \"aaaa\""), 304);
    assert_eq!(status("", "*"), 304);
    assert_eq!(
        status("", "\"gggg\""),
        200,
        "the gzip tag is another representation"
    );
    assert_eq!(status("gzip", "\"gggg\""), 304);
    assert_eq!(status("br", "\"bbbb\""), 304);
    assert_eq!(status("gzip", "\"aaaa\""), 200);
    assert_eq!(status("", "aaaa"), 200);
    let mut r = with_encoding(req("/"), "gzip");
    r.if_none_match = Some("\"gggg\"");
    r.range = Some("bytes=0-1");
    let r = site.respond(&r);
    assert_eq!(r.status, 304, "If-None-Match before Range");
    assert_eq!(r.body, Body::Empty);
    assert_eq!(r.etag, Some("\"gggg\""));
    assert!(r.vary_accept_encoding && r.content_encoding == Coding::Identity);
    assert_eq!(r.content_type, None);
    let mut missing = req("/missing");
    missing.if_none_match = Some("*");
    assert_eq!(site.respond(&missing).status, 404);
}

#[test]
fn single_range_and_416() {
    let site = Site::new(TABLE);
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "bytes=2-4"));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, Body::Static(b"234"));
    assert_eq!(
        r.content_range,
        Some(ContentRange::Bytes {
            range: ByteRange { first: 2, last: 4 },
            complete: 10
        })
    );
    assert_eq!(r.etag, Some("\"pppp\""));
    assert!(r.accept_ranges);
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "bytes=-3"));
    assert_eq!(r.body, Body::Static(b"789"));
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "bytes=10-"));
    assert_eq!(r.status, 416);
    assert_eq!(
        r.content_range,
        Some(ContentRange::Unsatisfied { complete: 10 })
    );
    assert!(r.body.to_vec().starts_with(b"416 Range Not Satisfiable"));
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "lines=1-2"));
    assert_eq!((r.status, r.body), (200, Body::Static(b"0123456789")));
    // HEAD gets the same head; the connection leaves the body out.
    let mut head = with_range(req("/img.5f3c9e1a.png"), "bytes=2-4");
    head.method = Method::Head;
    assert_eq!(site.respond(&head).status, 206);
}

#[test]
fn range_applies_to_the_selected_representation() {
    let site = Site::new(TABLE);
    let r = site.respond(&with_range(with_encoding(req("/"), "gzip"), "bytes=3-"));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, Body::Static(b"INDEX"));
    assert_eq!(r.content_encoding, Coding::Gzip);
    assert_eq!(r.etag, Some("\"gggg\""));
    assert_eq!(
        r.content_range,
        Some(ContentRange::Bytes {
            range: ByteRange { first: 3, last: 7 },
            complete: 8
        })
    );
}

#[test]
fn if_range() {
    let site = Site::new(TABLE);
    let ask = |enc: &str, if_range: &'static str| {
        let mut r = with_range(with_encoding(req("/"), enc), "bytes=0-1");
        r.if_range = Some(if_range);
        site.respond(&r).status
    };
    assert_eq!(ask("", "\"aaaa\""), 206);
    assert_eq!(ask("", "\"gggg\""), 200, "another representation's tag");
    assert_eq!(ask("gzip", "\"gggg\""), 206);
    assert_eq!(ask("", "W/\"aaaa\""), 200, "weak tags never match");
    assert_eq!(ask("", "Wed, 02 Dec 2026 10:00:00 GMT"), 200);
}

#[test]
fn multipart_ranges() {
    let site = Site::new(TABLE);
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "bytes=0-1,8-"));
    assert_eq!(r.status, 206);
    assert_eq!(r.multipart_boundary, Some("pppp"));
    assert_eq!(r.content_range, None);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert_eq!(
        text,
        "--pppp\r\nContent-Type: image/png\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
         --pppp\r\nContent-Type: image/png\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--pppp--\r\n"
    );
    // Overlapping: the whole file.
    let r = site.respond(&with_range(req("/img.5f3c9e1a.png"), "bytes=0-5,4-6"));
    assert_eq!(r.status, 200);
}

#[test]
fn directory_redirect_keeps_the_query() {
    let site = Site::new(TABLE);
    let r = site.respond(&req("/docs"));
    assert_eq!((r.status, r.location.as_deref()), (301, Some("/docs/")));
    assert_eq!(r.body, Body::Empty);
    let mut q = req("/docs");
    q.query = Some("a=1&b");
    assert_eq!(site.respond(&q).location.as_deref(), Some("/docs/?a=1&b"));
    assert_eq!(site.respond(&req("/docs/")).status, 200);
    // A file, not a directory: no redirect.
    assert_eq!(site.respond(&req("/spa")).status, 404);
}

#[test]
fn not_found_page_with_variants() {
    let site = Site::new(TABLE);
    let r = site.respond(&req("/nothing"));
    assert_eq!(r.status, 404);
    assert_eq!(r.body, Body::Static(b"<h1>not here</h1>"));
    assert_eq!(r.content_type, Some(HTML));
    assert_eq!(r.etag, None);
    let r = site.respond(&with_range(
        with_encoding(req("/nothing"), "gzip"),
        "bytes=0-1",
    ));
    assert_eq!(
        (r.status, r.body, r.content_encoding),
        (404, Body::Static(b"GZ404"), Coding::Gzip)
    );
    assert_eq!(r.content_range, None, "no ranges on an error page");
    // Without a 404.html: the plain one.
    static BARE: &[Asset] = &[asset("/a", b"a", "\"1\"")];
    let r = Site::new(BARE).respond(&req("/b"));
    assert_eq!(
        (r.status, r.body.to_vec()),
        (404, b"404 Not Found\n".to_vec())
    );
}

#[test]
fn redirect_rules() {
    let site = site();
    let loc = |path: &'static str, query: Option<&'static str>| {
        let mut r = req(path);
        r.query = query;
        let resp = site.respond(&r);
        (resp.status, resp.location)
    };
    assert_eq!(loc("/old", None), (301, Some("/docs/".into())));
    assert_eq!(
        loc("/old/", None),
        (301, Some("/docs/".into())),
        "trailing slash"
    );
    assert_eq!(loc("/old", Some("x=1")), (301, Some("/docs/?x=1".into())));
    assert_eq!(
        loc("/blog/2024/hello", Some("ignored")),
        (302, Some("/docs/?post=2024-hello".into())),
        "a target with its own query keeps it"
    );
    assert_eq!(loc("/blog/2024", None).0, 404);
    assert_eq!(loc("/blog/2024/a/b", None).0, 404);
    assert_eq!(
        loc("/files/a/b.txt", None),
        (308, Some("/archive/a/b.txt".into()))
    );
    assert_eq!(loc("/files/", None), (308, Some("/archive/".into())));
    assert_eq!(
        loc("/files/a b\u{e4}?", None),
        (308, Some("/archive/a%20b%C3%A4%3F".into()))
    );
    assert_eq!(
        loc("/files/x\r\nSet-Cookie:1", None).1,
        Some("/archive/x%0D%0ASet-Cookie:1".into())
    );
    assert_eq!(
        loc("/away", Some("q")),
        (307, Some("https://example.com/x?q".into()))
    );
    assert_eq!(loc("/see", None).0, 303);
}

#[test]
fn shadowing_and_forced_rules() {
    let site = site();
    // A file shadows a rule...
    let r = site.respond(&req("/img.5f3c9e1a.png"));
    assert_eq!((r.status, r.location), (200, None));
    // ... unless the rule is forced.
    let r = site.respond(&req("/docs/index.html"));
    assert_eq!((r.status, r.location.as_deref()), (301, Some("/docs/")));
    // A directory index shadows too: `/docs` is still the directory redirect.
    assert_eq!(
        site.respond(&req("/docs")).location.as_deref(),
        Some("/docs/")
    );
}

#[test]
fn rewrites() {
    let site = site();
    let r = site.respond(&req("/app/settings/profile"));
    assert_eq!(
        (r.status, r.body, r.location),
        (200, Body::Static(b"spa shell"), None)
    );
    assert_eq!(r.etag, Some("\"ssss\""));
    // A rewritten file serves ranges like any other.
    let r = site.respond(&with_range(req("/app/x"), "bytes=0-2"));
    assert_eq!((r.status, r.body), (206, Body::Static(b"spa")));
    let r = site.respond(&with_encoding(req("/gone/page"), "gzip"));
    assert_eq!((r.status, r.body), (404, Body::Static(b"GZ404")));
    let r = site.respond(&req("/missing-target"));
    assert_eq!(
        (r.status, r.body),
        (404, Body::Static(b"<h1>not here</h1>"))
    );
}
