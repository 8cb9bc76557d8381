//! Every route and status through curl (the binary), header by header.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests_qemu::Scratch;
use tests_qemu::http::{
    HttpGuest, Response, Stats, Transport, boot_http, brotli_best, etag_of, gunzip, gzip_best,
    parse_response, site_content_type, site_file, site_path, unbrotli,
};

/// curl's own limit for one invocation.
const CURL_MAX_TIME: &str = "20";

/// What one curl run produced.
struct Curl {
    /// The last response head curl received (`-D`).
    head: Response,
    /// The body as curl wrote it (`-o`).
    body: Vec<u8>,
    /// `%{num_connects}` of each transfer, in order.
    connects: Vec<u32>,
    /// `%{size_download}` of the last transfer.
    size_download: u64,
    args: Vec<String>,
}

impl Curl {
    fn describe(&self) -> String {
        format!(
            "curl {:?}\n{}body {} bytes: {:?}",
            self.args,
            self.head.head_text(),
            self.body.len(),
            String::from_utf8_lossy(&self.body[..self.body.len().min(120)])
        )
    }
}

/// Runs `curl -sS --max-time 20 -D <head> -o <body> -w ... <args>`; `args` holds
/// the URL(s). Fails the test if curl is missing or exits non-zero.
fn curl(g: &HttpGuest, scratch: &Scratch, args: &[&str]) -> Curl {
    let head_file = scratch.path("head");
    // One output file per URL (curl pairs `-o` options with URLs in order).
    let urls = args
        .iter()
        .filter(|a| a.starts_with("http://"))
        .count()
        .max(1);
    let body_files: Vec<PathBuf> = (0..urls)
        .map(|i| scratch.path(&format!("body{i}")))
        .collect();
    let _ = std::fs::remove_file(&head_file);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", CURL_MAX_TIME, "-D"])
        .arg(&head_file)
        .args(["-w", "%{num_connects} %{size_download}\\n"]);
    for f in &body_files {
        let _ = std::fs::remove_file(f);
        cmd.arg("-o").arg(f);
    }
    cmd.args(args);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("curl is not installed: scripts/test installs it (apt-get install curl)")
        }
        Err(e) => panic!("running curl: {e}"),
    };
    if !out.status.success() {
        g.fail(format_args!(
            "curl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let write_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut connects = Vec::new();
    let mut size_download = 0;
    for line in write_out.lines() {
        let mut it = line.split_whitespace();
        let (Some(c), Some(s)) = (it.next(), it.next()) else {
            g.fail(format_args!("curl --write-out line {line:?}"));
        };
        connects.push(c.parse().unwrap_or(u32::MAX));
        size_download = s.parse().unwrap_or(u64::MAX);
    }
    let heads = std::fs::read(&head_file).unwrap_or_default();
    let head = last_head(&heads)
        .unwrap_or_else(|e| g.fail(format_args!("curl {args:?}: response head: {e}")));
    let body = std::fs::read(&body_files[urls - 1]).unwrap_or_default();
    Curl {
        head,
        body,
        connects,
        size_download,
        args,
    }
}

/// The last of the response heads curl dumped (one per response received).
fn last_head(dump: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(dump);
    let last = text
        .rfind("HTTP/")
        .ok_or_else(|| format!("no response head in {text:?}"))?;
    // A head dump has no body: parse it as the answer to a HEAD.
    match parse_response(&dump[last..], true)? {
        Some((r, _)) => Ok(r),
        None => Err(format!("incomplete head {:?}", &text[last..])),
    }
}

/// Expected `Content-Type` of a site file, by extension (the kernel's table).
fn content_type_of(rel: &str) -> &'static str {
    site_content_type(rel)
}

/// The default site's `Cache-Control` per file: its `_headers` gives `media/`
/// an hour; a content-hashed name is immutable; everything else revalidates.
fn cache_control_of(rel: &str) -> &'static str {
    if rel.starts_with("media/") {
        "public, max-age=3600"
    } else if rel == "assets/app.5f3c9e1a.js" {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

fn compressible(rel: &str) -> bool {
    let ct = content_type_of(rel);
    ct.starts_with("text/") || ct.starts_with("image/svg+xml")
}

/// The gzip variant the build bakes: a `.gz` shipped beside the file, else
/// gzip at the best level for text-like types; only if smaller.
fn expected_gzip(rel: &str, body: &[u8]) -> Option<Vec<u8>> {
    let sidecar = site_path(&format!("{rel}.gz"));
    let packed = if sidecar.is_file() {
        std::fs::read(&sidecar).expect("read sidecar")
    } else if compressible(rel) {
        gzip_best(body)
    } else {
        return None;
    };
    (packed.len() < body.len()).then_some(packed)
}

/// The brotli variant the build bakes (quality 11): text-like types, if smaller.
fn expected_br(rel: &str, body: &[u8]) -> Option<Vec<u8>> {
    let packed = compressible(rel).then(|| brotli_best(body))?;
    (packed.len() < body.len()).then_some(packed)
}

/// Every regular file under `kernel/site`, relative (`bench/4k.html`).
fn site_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            // Dot-files are not served (`.well-known/` is: tests/website.rs);
            // the rules files are read by the build, not served.
            if name.starts_with('.')
                || (prefix.is_empty() && (name == "_headers" || name == "_redirects"))
            {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let ty = e.file_type().expect("file type");
            if ty.is_dir() {
                walk(&e.path(), &format!("{rel}/"), out);
            } else if ty.is_file() {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&site_path(""), "", &mut out);
    out
}

/// Fails unless `cond`, with the curl run described.
fn check(g: &HttpGuest, c: &Curl, cond: bool, what: impl std::fmt::Display) {
    if !cond {
        g.fail(format_args!("{what}\n{}", c.describe()));
    }
}

fn header_is(g: &HttpGuest, c: &Curl, name: &str, want: Option<&str>) {
    let got = c.head.header(name);
    check(
        g,
        c,
        got == want && c.head.header_count(name) <= 1,
        format_args!(
            "header {name}: got {got:?} ({} fields), want {want:?}",
            c.head.header_count(name)
        ),
    );
}

fn status_is(g: &HttpGuest, c: &Curl, want: u16) {
    check(
        g,
        c,
        c.head.status == want,
        format_args!("status {}, want {want}", c.head.status),
    );
}

/// The headers every response carries.
fn common_headers(g: &HttpGuest, c: &Curl) {
    let server = c.head.header("server").unwrap_or("");
    check(
        g,
        c,
        server.starts_with("unikernel/") && c.head.header_count("server") == 1,
        "Server: unikernel/<version>",
    );
    // The harness passes the host's clock: every response has a Date and an id.
    let date = c.head.header("date").unwrap_or("");
    check(
        g,
        c,
        c.head.header_count("date") == 1 && date.len() == 29 && date.ends_with(" GMT"),
        "one IMF-fixdate Date",
    );
    check(
        g,
        c,
        c.head.header_count("x-request-id") == 1,
        "one X-Request-Id",
    );
}

/// An error response the connection generates: status, text body, close.
fn connection_error(g: &HttpGuest, c: &Curl, status: u16, reason: &str) {
    status_is(g, c, status);
    common_headers(g, c);
    header_is(g, c, "content-type", Some("text/plain; charset=utf-8"));
    header_is(g, c, "connection", Some("close"));
    let body = format!("{status} {reason}\n");
    header_is(g, c, "content-length", Some(&body.len().to_string()));
    check(
        g,
        c,
        c.body == body.as_bytes(),
        format_args!("body {body:?}"),
    );
}

pub fn curl_routes_statuses_and_headers(transport: Transport) {
    let g = boot_http("curl_routes", transport, &[]);
    let scratch = Scratch::new("curl");
    let files = site_files();
    for must in ["index.html", "style.css", "logo.svg", "large.bin"] {
        assert!(
            files.iter().any(|f| f == must),
            "kernel/site/{must} missing"
        );
    }
    let mut served = 0;
    for rel in &files {
        let body = site_file(rel);
        let mut paths = vec![format!("/{rel}")];
        if let Some(dir) = rel.strip_suffix("index.html") {
            paths.push(format!("/{dir}"));
        }
        for path in &paths {
            check_asset(&g, &scratch, path, rel, &body);
            served += 1;
        }
    }
    check_endpoints(&g, &scratch);
    check_errors(&g, &scratch);
    check_keep_alive(&g, &scratch);
    g.note(format_args!(
        "{served} asset paths and every endpoint/status checked with curl ({transport:?})"
    ));
    g.finish();
}

/// GET, HEAD, conditional GET, gzip and brotli of one baked asset served at `path`.
fn check_asset(g: &HttpGuest, s: &Scratch, path: &str, rel: &str, file: &[u8]) {
    let url = g.url(path);
    let ct = content_type_of(rel);
    let etag = etag_of(file);
    let gz = expected_gzip(rel, file);
    let br = expected_br(rel, file);
    let vary = (gz.is_some() || br.is_some()).then_some("Accept-Encoding");
    let len = file.len().to_string();

    // Plain GET (curl sends no Accept-Encoding).
    let c = curl(g, s, &[&url]);
    status_is(g, &c, 200);
    common_headers(g, &c);
    header_is(g, &c, "content-type", Some(ct));
    header_is(g, &c, "content-length", Some(&len));
    header_is(g, &c, "etag", Some(&etag));
    header_is(g, &c, "cache-control", Some(cache_control_of(rel)));
    header_is(g, &c, "accept-ranges", Some("bytes"));
    header_is(g, &c, "vary", vary);
    header_is(g, &c, "content-encoding", None);
    header_is(g, &c, "connection", None);
    // The default site's `_headers` gives every file these.
    header_is(g, &c, "x-content-type-options", Some("nosniff"));
    check(
        g,
        &c,
        c.body == file,
        format_args!("body differs from {rel}"),
    );

    // HEAD: same head, no body.
    let h = curl(g, s, &["-I", &url]);
    status_is(g, &h, 200);
    for name in [
        "content-type",
        "content-length",
        "etag",
        "vary",
        "cache-control",
        "accept-ranges",
    ] {
        header_is(g, &h, name, c.head.header(name));
    }
    check(g, &h, h.size_download == 0, "HEAD downloaded a body");

    // Conditional GET.
    let not_modified = |h: &Curl| {
        status_is(g, h, 304);
        header_is(g, h, "etag", Some(&etag));
        header_is(g, h, "content-length", None);
        header_is(g, h, "content-type", None);
        check(g, h, h.body.is_empty(), "304 with a body");
    };
    let inm = format!("If-None-Match: {etag}");
    not_modified(&curl(g, s, &["-H", &inm, &url]));
    not_modified(&curl(
        g,
        s,
        &["-H", &format!("If-None-Match: W/{etag}"), &url],
    ));
    not_modified(&curl(g, s, &["-H", "If-None-Match: *", &url]));
    not_modified(&curl(
        g,
        s,
        &["-H", &format!("If-None-Match: \"nope\", {etag}"), &url],
    ));
    let other = curl(g, s, &["-H", "If-None-Match: \"0000000000000000\"", &url]);
    status_is(g, &other, 200);
    check(
        g,
        &other,
        other.body == file,
        "non-matching If-None-Match: full body",
    );

    // Each coding on its own, then the client's choice.
    for (coding, variant) in [("gzip", &gz), ("br", &br)] {
        let accept = format!("Accept-Encoding: {coding}");
        let z = curl(g, s, &["-H", &accept, &url]);
        status_is(g, &z, 200);
        header_is(g, &z, "vary", vary);
        header_is(g, &z, "content-type", Some(ct));
        let Some(expected) = variant else {
            header_is(g, &z, "content-encoding", None);
            header_is(g, &z, "etag", Some(&etag));
            check(
                g,
                &z,
                z.body == file,
                format_args!("identity body without a {coding} variant"),
            );
            continue;
        };
        header_is(g, &z, "content-encoding", Some(coding));
        check(
            g,
            &z,
            &z.body == expected,
            format_args!("{coding} body is not the baked variant"),
        );
        let z_etag = etag_of(&z.body);
        header_is(g, &z, "etag", Some(&z_etag));
        check(
            g,
            &z,
            z_etag != etag,
            format_args!("{coding} variant shares the identity ETag"),
        );
        header_is(g, &z, "content-length", Some(&z.body.len().to_string()));
        let plain = if coding == "gzip" {
            gunzip(&z.body)
        } else {
            unbrotli(&z.body)
        };
        match plain {
            Ok(plain) => check(
                g,
                &z,
                plain == file,
                format_args!("decoded {coding} body differs from the file"),
            ),
            Err(e) => check(g, &z, false, e),
        }
        // Its own validator: 304 only with the variant's ETag.
        let zinm = format!("If-None-Match: {z_etag}");
        let z304 = curl(g, s, &["-H", &accept, "-H", &zinm, &url]);
        status_is(g, &z304, 304);
        header_is(g, &z304, "etag", Some(&z_etag));
        header_is(g, &z304, "content-encoding", None);
        let zfull = curl(g, s, &["-H", &accept, "-H", &inm, &url]);
        status_is(g, &zfull, 200);
        header_is(g, &zfull, "content-encoding", Some(coding));
    }
    // q=0 refuses a coding; the client's own choice is decoded to the file.
    let q0 = curl(g, s, &["-H", "Accept-Encoding: gzip;q=0, br;q=0", &url]);
    header_is(g, &q0, "content-encoding", None);
    check(g, &q0, q0.body == file, "q=0 for both: identity body");
    let smaller = match (&gz, &br) {
        (Some(z), Some(b)) => Some(if b.len() < z.len() { "br" } else { "gzip" }),
        (Some(_), None) => Some("gzip"),
        (None, Some(_)) => Some("br"),
        (None, None) => None,
    };
    let dec = curl(g, s, &["--compressed", &url]);
    header_is(g, &dec, "content-encoding", smaller);
    check(g, &dec, dec.body == file, "--compressed body differs");
}

/// `/health`, `/api/stats.json`, query strings.
fn check_endpoints(g: &HttpGuest, s: &Scratch) {
    for path in ["/health", "/health?probe=1&x=%20"] {
        let c = curl(g, s, &[&g.url(path)]);
        status_is(g, &c, 200);
        common_headers(g, &c);
        header_is(g, &c, "content-type", Some("text/plain; charset=utf-8"));
        header_is(g, &c, "content-length", Some("3"));
        header_is(g, &c, "cache-control", Some("no-store"));
        header_is(g, &c, "etag", None);
        check(g, &c, c.body == b"ok\n", "/health body");
    }
    let h = curl(g, s, &["-I", &g.url("/health")]);
    status_is(g, &h, 200);
    header_is(g, &h, "content-length", Some("3"));

    let c = curl(g, s, &[&g.admin_url("/api/stats.json")]);
    status_is(g, &c, 200);
    common_headers(g, &c);
    header_is(g, &c, "content-type", Some("application/json"));
    header_is(g, &c, "cache-control", Some("no-store"));
    header_is(g, &c, "content-length", Some(&c.body.len().to_string()));
    match Stats::parse(&c.body) {
        Ok(stats) => {
            let server = c.head.header("server").unwrap_or("");
            check(
                g,
                &c,
                server == format!("unikernel/{}", stats.version),
                "stats version differs from the Server header",
            );
        }
        Err(e) => check(g, &c, false, e),
    }
    let h = curl(g, s, &["-I", &g.admin_url("/api/stats.json")]);
    status_is(g, &h, 200);
    header_is(g, &h, "cache-control", Some("no-store"));
}

/// Every error status curl can produce.
fn check_errors(g: &HttpGuest, s: &Scratch) {
    // 404 comes from the site, not the connection: no close; the body is the
    // site's 404.html.
    let page = site_file("404.html");
    for path in [
        "/nope",
        "/health/",
        "/index.htm",
        "/bench",
        "/bench/",
        "/_headers",
        "/_redirects",
    ] {
        let c = curl(g, s, &[&g.url(path)]);
        status_is(g, &c, 404);
        header_is(g, &c, "connection", None);
        header_is(g, &c, "content-type", Some("text/html; charset=utf-8"));
        check(g, &c, c.body == page, "404 body is not 404.html");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        let c = curl(g, s, &["-X", method, &g.url("/")]);
        connection_error(g, &c, 405, "Method Not Allowed");
        header_is(g, &c, "allow", Some("GET, HEAD"));
    }
    let c = curl(
        g,
        s,
        &["-X", "POST", "--data-binary", "a=b", &g.url("/health")],
    );
    connection_error(g, &c, 405, "Method Not Allowed");
    for method in ["BREW", "get", "PROPFIND"] {
        let c = curl(g, s, &["-X", method, &g.url("/")]);
        connection_error(g, &c, 501, "Not Implemented");
    }
    // HTTP/1.1 without Host.
    let c = curl(g, s, &["-H", "Host:", &g.url("/health")]);
    connection_error(g, &c, 400, "Bad Request");
    // Dot-dot, bad escapes, Transfer-Encoding (two Hosts: curl sends only one,
    // the raw corpus covers it).
    for path in ["/../etc/passwd", "/a/%2e%2e/health", "/%00", "/%zz"] {
        let c = curl(g, s, &["--path-as-is", &g.url(path)]);
        connection_error(g, &c, 400, "Bad Request");
    }
    let c = curl(
        g,
        s,
        &["-H", "Transfer-Encoding: chunked", &g.url("/health")],
    );
    connection_error(g, &c, 400, "Bad Request");
    // Request body on GET: up to 1024 bytes is read and ignored, more is 413.
    let small = "x".repeat(1024);
    let c = curl(
        g,
        s,
        &["-X", "GET", "--data-binary", &small, &g.url("/health")],
    );
    status_is(g, &c, 200);
    check(g, &c, c.body == b"ok\n", "GET with a 1024-byte body");
    let big = "x".repeat(1025);
    let c = curl(
        g,
        s,
        &["-X", "GET", "--data-binary", &big, &g.url("/health")],
    );
    connection_error(g, &c, 413, "Content Too Large");
    // URI over 2048 bytes.
    let at_limit = format!("/{}", "a".repeat(2047));
    let c = curl(g, s, &[&g.url(&at_limit)]);
    status_is(g, &c, 404);
    let long = format!("/{}", "a".repeat(2048));
    let c = curl(g, s, &[&g.url(&long)]);
    connection_error(g, &c, 414, "URI Too Long");
    // More than 32 header fields; a head over 8192 bytes.
    let mut many: Vec<String> = Vec::new();
    for i in 0..40 {
        many.push("-H".into());
        many.push(format!("X-Field-{i}: v"));
    }
    let url = g.url("/health");
    let mut args: Vec<&str> = many.iter().map(String::as_str).collect();
    args.push(&url);
    let c = curl(g, s, &args);
    connection_error(g, &c, 431, "Request Header Fields Too Large");
    let huge = format!("X-Big: {}", "b".repeat(9000));
    let c = curl(g, s, &["-H", &huge, &url]);
    connection_error(g, &c, 431, "Request Header Fields Too Large");
    // HEAD of an error: same head, no body.
    let c = curl(g, s, &["-I", "-H", "Host:", &url]);
    status_is(g, &c, 400);
    header_is(g, &c, "connection", Some("close"));
    header_is(g, &c, "content-length", Some("16"));
}

/// Keep-alive: HTTP/1.1 by default, HTTP/1.0 only when asked; errors close.
fn check_keep_alive(g: &HttpGuest, s: &Scratch) {
    let health = g.url("/health");
    let nope = g.url("/nope");
    let cases: [(&str, Vec<&str>, Vec<u32>); 6] = [
        (
            "HTTP/1.1 reuses the connection",
            vec![&health, &health],
            vec![1, 0],
        ),
        (
            "a 404 keeps the connection",
            vec![&nope, &health],
            vec![1, 0],
        ),
        (
            "HTTP/1.0 closes",
            vec!["--http1.0", &health, &health],
            vec![1, 1],
        ),
        (
            "HTTP/1.0 with keep-alive reuses",
            vec![
                "--http1.0",
                "-H",
                "Connection: keep-alive",
                &health,
                &health,
            ],
            vec![1, 0],
        ),
        (
            "Connection: close closes",
            vec!["-H", "Connection: close", &health, &health],
            vec![1, 1],
        ),
        (
            "a 405 closes",
            vec!["-X", "DELETE", &health, &health],
            vec![1, 1],
        ),
    ];
    for (what, args, want) in cases {
        let c = curl(g, s, &args);
        check(
            g,
            &c,
            c.connects == want,
            format_args!("{what}: num_connects {:?}, want {want:?}", c.connects),
        );
    }
    let c = curl(g, s, &["--http1.0", &health]);
    header_is(g, &c, "connection", Some("close"));
    let c = curl(
        g,
        s,
        &["--http1.0", "-H", "Connection: keep-alive", &health],
    );
    header_is(g, &c, "connection", Some("keep-alive"));
}
