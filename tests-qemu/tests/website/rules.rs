//! Directory redirects, `_redirects`, the 404 page, `_headers`, cache policy,
//! MIME types, content coding, HTTP versions and the status counters.

use tests_qemu::http::{
    HttpGuest, Response, Transport, boot_http, brotli_best, etag_of, gzip_best, site_file,
};

use super::{
    Scratch, body_is, check, content_type_of, curl, header_is, raw_exchange, raw_header_is,
    raw_status_is, status_is,
};

/// Site files whose heads are checked one by one: (path served, file).
const ASSETS: &[(&str, &str)] = &[
    ("/", "index.html"),
    ("/index.html", "index.html"),
    ("/style.css", "style.css"),
    ("/logo.svg", "logo.svg"),
    ("/large.bin", "large.bin"),
    ("/bench/4k.html", "bench/4k.html"),
    ("/bench/64k.bin", "bench/64k.bin"),
    ("/docs/", "docs/index.html"),
    ("/docs/index.html", "docs/index.html"),
    ("/docs/notes.txt", "docs/notes.txt"),
    ("/404.html", "404.html"),
    ("/assets/app.5f3c9e1a.js", "assets/app.5f3c9e1a.js"),
    ("/media/clip.webm", "media/clip.webm"),
    ("/.well-known/security.txt", ".well-known/security.txt"),
];

/// The default site's cache policy: `_headers` gives `media/` an hour, the
/// fingerprinted script is immutable, everything else revalidates.
fn cache_control_of(rel: &str) -> &'static str {
    if rel.starts_with("media/") {
        "public, max-age=3600"
    } else if rel == "assets/app.5f3c9e1a.js" {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// The headers `_headers` adds to a file served at `path`.
fn site_headers(g: &HttpGuest, what: &str, r: &Response, path: &str) {
    raw_header_is(g, what, r, "x-content-type-options", Some("nosniff"));
    let referrer =
        (!path.starts_with("/.well-known/")).then_some("strict-origin-when-cross-origin");
    raw_header_is(g, what, r, "referrer-policy", referrer);
    let frame = path.starts_with("/docs/").then_some("DENY");
    raw_header_is(g, what, r, "x-frame-options", frame);
}

pub fn redirects_headers_encodings_and_protocol(transport: Transport) {
    let g = boot_http("website-rules", transport, &[]);
    let s = Scratch::new("rules");
    check_follow(&g, &s);
    check_heads(&g);
    check_encodings(&g, &s);
    check_counted_block(&g);
    g.note(format_args!(
        "redirects, rewrites, _headers, codings and versions checked ({transport:?})"
    ));
    g.finish();
}

/// `curl -L` through every redirect (never the off-site one) and rewrite.
fn check_follow(g: &HttpGuest, s: &Scratch) {
    let docs = site_file("docs/index.html");
    let notes = site_file("docs/notes.txt");
    let index = site_file("index.html");
    // (path, first status, Location, final path, final body)
    let cases: [(&str, u16, &str, &str, &[u8]); 7] = [
        ("/docs", 301, "/docs/", "/docs/", &docs),
        ("/docs?x=1", 301, "/docs/?x=1", "/docs/?x=1", &docs),
        ("/old-docs", 301, "/docs/", "/docs/", &docs),
        ("/old-docs?a=b", 301, "/docs/?a=b", "/docs/?a=b", &docs),
        (
            "/docs/old/notes.txt",
            308,
            "/docs/notes.txt",
            "/docs/notes.txt",
            &notes,
        ),
        (
            "/blog/2024/hello",
            302,
            "/docs/?post=2024-hello",
            "/docs/?post=2024-hello",
            &docs,
        ),
        ("/app/anything", 200, "", "/app/anything", &index),
    ];
    for (path, first, location, end, body) in cases {
        let c = curl(g, s, &["-L", "--max-redirs", "3", &g.url(path)]);
        let redirects = u32::from(first != 200);
        check(
            g,
            &c,
            c.heads.len() == 1 + redirects as usize
                && c.num_redirects == redirects
                && c.heads[0].status == first,
            format_args!("{path}: want {first} then the page ({redirects} redirects)"),
        );
        if first != 200 {
            let got = c.heads[0].header("location");
            check(
                g,
                &c,
                got == Some(location),
                format_args!("{path}: Location {got:?}, want {location:?}"),
            );
        }
        check(
            g,
            &c,
            c.url_effective == g.url(end),
            format_args!("{path}: ended at {}, want {}", c.url_effective, g.url(end)),
        );
        status_is(g, &c, 200);
        let ct = if end.ends_with(".txt") {
            "text/plain; charset=utf-8"
        } else {
            "text/html; charset=utf-8"
        };
        header_is(g, &c, "content-type", Some(ct));
        body_is(g, &c, body, path);
    }
    let c = curl(g, s, &["-L", &g.url("/app/x/y")]);
    status_is(g, &c, 200);
    body_is(g, &c, &index, "/app/x/y rewrite");
    // The off-site one: only its head, never followed (no network here).
    for (path, location) in [
        ("/elsewhere", "https://example.com/"),
        ("/elsewhere?q=1", "https://example.com/?q=1"),
    ] {
        let c = curl(g, s, &["-I", &g.url(path)]);
        status_is(g, &c, 307);
        header_is(g, &c, "location", Some(location));
        check(g, &c, c.num_redirects == 0, "followed /elsewhere");
    }
    // Missing pages, the rules files: 404 with 404.html.
    let page = site_file("404.html");
    for path in ["/missing", "/_headers", "/_redirects", "/docs/missing.txt"] {
        let c = curl(g, s, &[&g.url(path)]);
        status_is(g, &c, 404);
        header_is(g, &c, "content-type", Some("text/html; charset=utf-8"));
        body_is(g, &c, &page, path);
        // The 404 page gets the rules of /404.html.
        header_is(g, &c, "x-content-type-options", Some("nosniff"));
        header_is(g, &c, "x-frame-options", None);
    }
    for (coding, packed) in [("gzip", gzip_best(&page)), ("br", brotli_best(&page))] {
        let accept = format!("Accept-Encoding: {coding}");
        let r = g.request("GET", "/missing", &[&accept]);
        let what = format!("GET /missing with {accept}");
        raw_status_is(g, &what, &r, 404);
        raw_header_is(g, &what, &r, "content-encoding", Some(coding));
        if r.body != packed {
            g.fail(format_args!(
                "{what}: not the baked {coding} of 404.html\n{}",
                r.head_text()
            ));
        }
        let c = curl(g, s, &["--compressed", "-H", &accept, &g.url("/missing")]);
        status_is(g, &c, 404);
        header_is(g, &c, "content-encoding", Some(coding));
        body_is(g, &c, &page, &format!("/missing decoded from {coding}"));
    }
}

/// Heads of every asset (HEAD, so no bodies) and of the built-in endpoints.
fn check_heads(g: &HttpGuest) {
    for &(path, rel) in ASSETS {
        let file = site_file(rel);
        let what = format!("HEAD {path}");
        let r = g.request("HEAD", path, &[]);
        raw_status_is(g, &what, &r, 200);
        raw_header_is(g, &what, &r, "content-type", Some(content_type_of(rel)));
        raw_header_is(
            g,
            &what,
            &r,
            "content-length",
            Some(&file.len().to_string()),
        );
        raw_header_is(g, &what, &r, "etag", Some(&etag_of(&file)));
        raw_header_is(g, &what, &r, "accept-ranges", Some("bytes"));
        raw_header_is(g, &what, &r, "cache-control", Some(cache_control_of(rel)));
        site_headers(g, &what, &r, path);
        // A range keeps the rules' headers.
        let r = g.request("HEAD", path, &["Range: bytes=0-0"]);
        let what = format!("HEAD {path} Range: bytes=0-0");
        raw_status_is(g, &what, &r, 206);
        raw_header_is(g, &what, &r, "content-type", Some(content_type_of(rel)));
        raw_header_is(g, &what, &r, "cache-control", Some(cache_control_of(rel)));
        site_headers(g, &what, &r, path);
    }
    // The rewrite is served with the rules of its target.
    let r = g.request("HEAD", "/app/anything", &[]);
    site_headers(g, "HEAD /app/anything", &r, "/index.html");
    raw_header_is(
        g,
        "HEAD /app/anything",
        &r,
        "etag",
        Some(&etag_of(&site_file("index.html"))),
    );
    // Built-in endpoints get none of the site's headers.
    for path in [
        "/health",
        "/metrics",
        "/api/stats.json",
        "/api/requests.json",
        "/status",
    ] {
        let r = if path == "/health" {
            g.get(path)
        } else {
            g.admin_get(path)
        };
        let what = format!("GET {path}");
        raw_status_is(g, &what, &r, 200);
        for name in [
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            raw_header_is(g, &what, &r, name, None);
        }
    }
}

/// Brotli and gzip variants, q-values, `curl --compressed` decoding.
fn check_encodings(g: &HttpGuest, s: &Scratch) {
    let index = site_file("index.html");
    let gz = gzip_best(&index);
    let br = brotli_best(&index);
    let identity_etag = etag_of(&index);
    // (Accept-Encoding, coding chosen)
    let smaller = if br.len() <= gz.len() { "br" } else { "gzip" };
    let cases: [(&str, Option<&str>); 9] = [
        ("br", Some("br")),
        ("gzip", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("gzip;q=0.5, br;q=0.4", Some("gzip")),
        ("br;q=0.9, gzip;q=0.8, identity;q=0.5", Some("br")),
        // A named identity without q has q=1 and outranks br;q=0.5.
        ("br;q=0.5, identity", None),
        ("identity", None),
        ("gzip;q=0, br;q=0", None),
        ("gzip, br", Some(smaller)),
    ];
    for (accept, coding) in cases {
        let what = format!("GET / Accept-Encoding: {accept}");
        let r = g.request("GET", "/", &[&format!("Accept-Encoding: {accept}")]);
        raw_status_is(g, &what, &r, 200);
        raw_header_is(g, &what, &r, "content-encoding", coding);
        raw_header_is(g, &what, &r, "vary", Some("Accept-Encoding"));
        raw_header_is(
            g,
            &what,
            &r,
            "content-type",
            Some("text/html; charset=utf-8"),
        );
        let want: &[u8] = match coding {
            Some("br") => &br,
            Some("gzip") => &gz,
            _ => &index,
        };
        if r.body != want {
            g.fail(format_args!(
                "{what}: body is not the {coding:?} representation\n{}",
                r.head_text()
            ));
        }
        let etag = etag_of(want);
        raw_header_is(g, &what, &r, "etag", Some(&etag));
        if coding.is_some() && etag == identity_etag {
            g.fail(format_args!("{what}: shares the identity ETag"));
        }
    }
    // The sidecar is notes.txt's gzip variant; brotli is made at build time.
    let notes = site_file("docs/notes.txt");
    let r = g.request("GET", "/docs/notes.txt", &["Accept-Encoding: gzip"]);
    if r.body != site_file("docs/notes.txt.gz") {
        g.fail(format_args!(
            "/docs/notes.txt gzip is not the sidecar\n{}",
            r.head_text()
        ));
    }
    // curl decodes; the result must be the file.
    for (path, file) in [("/index.html", &index), ("/docs/notes.txt", &notes)] {
        for coding in ["br", "gzip"] {
            let accept = format!("Accept-Encoding: {coding}");
            let c = curl(g, s, &["--compressed", "-H", &accept, &g.url(path)]);
            status_is(g, &c, 200);
            header_is(g, &c, "content-encoding", Some(coding));
            header_is(g, &c, "vary", Some("Accept-Encoding"));
            body_is(g, &c, file, &format!("{path} decoded from {coding}"));
        }
        let c = curl(g, s, &["--compressed", &g.url(path)]);
        check(
            g,
            &c,
            c.header("content-encoding").is_some(),
            "--compressed: no coding chosen",
        );
        body_is(
            g,
            &c,
            file,
            &format!("{path} with curl's own Accept-Encoding"),
        );
    }
    // The rest of the MIME table this site uses.
    for (path, ct) in [
        ("/media/clip.webm", "video/webm"),
        ("/assets/app.5f3c9e1a.js", "text/javascript; charset=utf-8"),
        ("/docs/notes.txt", "text/plain; charset=utf-8"),
    ] {
        let c = curl(g, s, &["-I", &g.url(path)]);
        header_is(g, &c, "content-type", Some(ct));
    }
}

/// Raw requests, counted: every status class's counter moves by exactly
/// what was sent. HTTP versions and a bad Host go here too.
fn check_counted_block(g: &HttpGuest) {
    let before = g.stats();
    let redirects: [(&str, u16, &str); 8] = [
        ("/docs", 301, "/docs/"),
        ("/docs?x=1", 301, "/docs/?x=1"),
        ("/old-docs", 301, "/docs/"),
        ("/old-docs?a=b", 301, "/docs/?a=b"),
        ("/docs/old/notes.txt", 308, "/docs/notes.txt"),
        ("/blog/2024/hello", 302, "/docs/?post=2024-hello"),
        ("/elsewhere", 307, "https://example.com/"),
        ("/elsewhere?q=1", 307, "https://example.com/?q=1"),
    ];
    for (path, status, location) in redirects {
        let what = format!("GET {path}");
        let r = g.get(path);
        raw_status_is(g, &what, &r, status);
        raw_header_is(g, &what, &r, "location", Some(location));
    }
    let mut client_errors = 0;
    for path in ["/missing", "/_headers", "/_redirects", "/nope/deeper"] {
        let r = g.get(path);
        raw_status_is(g, &format!("GET {path}"), &r, 404);
        client_errors += 1;
    }
    let index = site_file("index.html");
    let mut ok = 0;
    for path in ["/app/anything", "/app/x/y"] {
        let r = g.get(path);
        raw_status_is(g, &format!("GET {path}"), &r, 200);
        if r.body != index {
            g.fail(format_args!(
                "GET {path}: not index.html\n{}",
                r.head_text()
            ));
        }
        ok += 1;
    }

    // HTTP versions and Host on the raw wire.
    let (bytes, r) = raw_exchange(g, b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n");
    raw_status_is(g, "Host: a b/c", &r, 400);
    raw_header_is(g, "Host: a b/c", &r, "connection", Some("close"));
    client_errors += 1;
    if !bytes.starts_with(b"HTTP/1.1 400 ") {
        g.fail(format_args!(
            "Host: a b/c: status line {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        ));
    }
    let (bytes, r) = raw_exchange(g, b"GET / HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n");
    if !bytes.starts_with(b"HTTP/1.1 200 ") || r.body != index {
        g.fail(format_args!(
            "GET / HTTP/1.2: want `HTTP/1.1 200` and index.html, got {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    ok += 1;
    let (bytes, r) = raw_exchange(g, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    if !bytes.starts_with(b"HTTP/1.1 505 ") {
        g.fail(format_args!(
            "GET / HTTP/2.0: want `HTTP/1.1 505`, got {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    raw_header_is(g, "HTTP/2.0", &r, "connection", Some("close"));

    let after = g.stats();
    let d = |name: &str| after.delta(&before, name);
    // The two stats fetches are 2xx; each counts once its answer is made,
    // which for the second may be after its own snapshot.
    let ok_range = ok + 1..=ok + 2;
    if d("status_3xx") != redirects.len() as u64
        || d("status_4xx") != client_errors
        || d("status_5xx") != 1
        || !ok_range.contains(&d("status_2xx"))
    {
        g.fail(format_args!(
            "status counters moved 2xx +{} 3xx +{} 4xx +{} 5xx +{}; want 2xx +{ok_range:?} 3xx +{} \
             4xx +{client_errors} 5xx +1\nbefore: {}\nafter: {}",
            d("status_2xx"),
            d("status_3xx"),
            d("status_4xx"),
            d("status_5xx"),
            redirects.len(),
            before.text,
            after.text
        ));
    }
}
