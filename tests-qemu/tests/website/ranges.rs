//! Byte ranges (RFC 9110 §14) with curl, Python `requests` and a resumed
//! download, byte-exact against `kernel/site/`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests_qemu::http::{
    HttpGuest, Transport, boot_http, brotli_best, etag_of, gzip_best, site_file,
};

use super::{
    Curl, Scratch, body_is, byte_diff, check, check_multipart, curl, curl_to, header_is,
    python_with, raw_header_is, raw_status_is, run_bounded, status_is,
};

/// The checks every 206 with one part gets: the slice `first..=last` of
/// `repr` (the representation's bytes), its Content-Range and length, and the
/// representation's ETag and type.
fn expect_206(g: &HttpGuest, c: &Curl, repr: &[u8], first: u64, last: u64, ct: &str, what: &str) {
    status_is(g, c, 206);
    let cr = format!("bytes {first}-{last}/{}", repr.len());
    header_is(g, c, "content-range", Some(&cr));
    header_is(
        g,
        c,
        "content-length",
        Some(&(last - first + 1).to_string()),
    );
    header_is(g, c, "accept-ranges", Some("bytes"));
    header_is(g, c, "etag", Some(&etag_of(repr)));
    header_is(g, c, "content-type", Some(ct));
    body_is(g, c, &repr[first as usize..=last as usize], what);
}

/// A full 200 of `file` (a `Range` that was ignored).
fn expect_full(g: &HttpGuest, c: &Curl, file: &[u8], what: &str) {
    status_is(g, c, 200);
    header_is(g, c, "content-range", None);
    header_is(g, c, "content-length", Some(&file.len().to_string()));
    header_is(g, c, "accept-ranges", Some("bytes"));
    header_is(g, c, "etag", Some(&etag_of(file)));
    body_is(g, c, file, what);
}

pub fn ranges_with_curl_requests_and_a_resumed_download(transport: Transport) {
    let g = boot_http("website-ranges", transport, &[]);
    let s = Scratch::new("ranges");
    let large = site_file("large.bin");
    let len = large.len() as u64;
    assert!(len > 1_000_000, "kernel/site/large.bin is {len} bytes");
    let url = g.url("/large.bin");
    let bin = "application/octet-stream";

    // One range in every form `curl -r` passes on.
    let clamp = format!("{}-{}", len - 64, len + 1000);
    let longer = format!("-{}", len * 2);
    let cases: [(&str, u64, u64); 7] = [
        ("0-99", 0, 99),
        ("100-", 100, len - 1),
        ("-500", len - 500, len - 1),
        ("0-0", 0, 0),
        (&clamp, len - 64, len - 1),
        ("0-99999999999999999999", 0, len - 1),
        (&longer, 0, len - 1),
    ];
    for (arg, first, last) in cases {
        let c = curl(&g, &s, &["-r", arg, &url]);
        expect_206(&g, &c, &large, first, last, bin, &format!("-r {arg}"));
    }
    // HEAD: the same head, no body.
    let h = curl(&g, &s, &["-I", "-r", "0-99", &url]);
    status_is(&g, &h, 206);
    header_is(&g, &h, "content-range", Some(&format!("bytes 0-99/{len}")));
    header_is(&g, &h, "content-length", Some("100"));
    header_is(&g, &h, "etag", Some(&etag_of(&large)));
    check(&g, &h, h.size_download == 0, "HEAD 206 with a body");

    // Nothing satisfiable: 416 with `bytes */LEN` (GET and HEAD).
    let unsatisfied = format!("bytes */{len}");
    for arg in [format!("{len}-"), format!("{}-{}", len + 5, len + 10)] {
        for head in [false, true] {
            let mut args = vec!["-r", &arg, &url];
            if head {
                args.insert(0, "-I");
            }
            let out = s.path("body");
            let _ = std::fs::remove_file(&out);
            let c = curl_to(&g, &s, &out, &args);
            status_is(&g, &c, 416);
            header_is(&g, &c, "content-range", Some(&unsatisfied));
            if let Some(n) = c.head().content_length()
                && !head
            {
                check(&g, &c, n == c.body.len() as u64, "416 Content-Length");
            }
        }
    }

    // Ignored ranges give the whole file with 200 (on a smaller file, to
    // keep the run short under TCG).
    let small = site_file("bench/64k.bin");
    let small_url = g.url("/bench/64k.bin");
    let sixteen: Vec<(u64, u64)> = (0..16).map(|i| (i * 3000, i * 3000 + 99)).collect();
    let spec = |rs: &[(u64, u64)]| {
        rs.iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let seventeen = format!("{},60000-60009", spec(&sixteen));
    for range in [
        "items=0-1".to_string(),
        "bytes=x".to_string(),
        "bytes=0-99,50-149".to_string(),
        format!("bytes={seventeen}"),
    ] {
        let c = curl(&g, &s, &["-H", &format!("Range: {range}"), &small_url]);
        expect_full(&g, &c, &small, &format!("Range: {range}"));
    }

    // Several ranges: multipart/byteranges, parts in the order asked.
    for rs in [
        vec![(0, 9), (1000, 1099), (len - 10, len - 1)],
        vec![(500_000, 500_099), (0, 49)],
    ] {
        let arg = spec(&rs);
        let c = curl(&g, &s, &["-r", &arg, &url]);
        status_is(&g, &c, 206);
        header_is(&g, &c, "etag", Some(&etag_of(&large)));
        header_is(&g, &c, "accept-ranges", Some("bytes"));
        header_is(&g, &c, "content-range", None);
        check_multipart(&g, &c.describe(), c.head(), &c.body, &large, bin, &rs);
    }
    // `-10` written as a suffix, in a list: the same last ten bytes.
    let c = curl(&g, &s, &["-r", "0-9,-10", &url]);
    status_is(&g, &c, 206);
    check_multipart(
        &g,
        "-r 0-9,-10",
        c.head(),
        &c.body,
        &large,
        bin,
        &[(0, 9), (len - 10, len - 1)],
    );
    // Sixteen ranges are still served.
    let c = curl(&g, &s, &["-r", &spec(&sixteen), &small_url]);
    status_is(&g, &c, 206);
    check_multipart(&g, "16 ranges", c.head(), &c.body, &small, bin, &sixteen);

    // If-Range: only the strong ETag of this representation applies it.
    let etag = etag_of(&large);
    let c = curl(
        &g,
        &s,
        &["-r", "0-99", "-H", &format!("If-Range: {etag}"), &url],
    );
    expect_206(&g, &c, &large, 0, 99, bin, "If-Range matching");
    let small_etag = etag_of(&small);
    for other in [
        "\"0000000000000000\"".to_string(),
        format!("W/{small_etag}"),
        "Wed, 21 Oct 2015 07:28:00 GMT".to_string(),
        etag.clone(),
    ] {
        let c = curl(
            &g,
            &s,
            &[
                "-r",
                "0-99",
                "-H",
                &format!("If-Range: {other}"),
                &small_url,
            ],
        );
        expect_full(&g, &c, &small, &format!("If-Range: {other}"));
    }
    // If-None-Match is decided first.
    let c = curl(
        &g,
        &s,
        &["-r", "0-99", "-H", &format!("If-None-Match: {etag}"), &url],
    );
    status_is(&g, &c, 304);
    header_is(&g, &c, "etag", Some(&etag));
    check(&g, &c, c.body.is_empty(), "304 with a body");

    check_encoded_ranges(&g, &s);
    check_python_session(&g, &s, &large);
    check_resume(&g, &s, &large);
    g.note(format_args!(
        "every range form checked byte-exact ({transport:?})"
    ));
    g.finish();
}

/// A range counts bytes of the representation Accept-Encoding selected, with
/// that representation's ETag; If-Range compares against it.
fn check_encoded_ranges(g: &HttpGuest, s: &Scratch) {
    let index = site_file("index.html");
    let html = "text/html; charset=utf-8";
    let gz = gzip_best(&index);
    let br = brotli_best(&index);
    let url = g.url("/index.html");
    let c = curl(g, s, &["-H", "Accept-Encoding: gzip", "-r", "0-99", &url]);
    expect_206(g, &c, &gz, 0, 99, html, "gzip bytes 0-99 of /index.html");
    header_is(g, &c, "content-encoding", Some("gzip"));
    header_is(g, &c, "vary", Some("Accept-Encoding"));
    let c = curl(g, s, &["-H", "Accept-Encoding: br", "-r", "-20", &url]);
    let n = br.len() as u64;
    expect_206(
        g,
        &c,
        &br,
        n - 20,
        n - 1,
        html,
        "last 20 brotli bytes of /index.html",
    );
    header_is(g, &c, "content-encoding", Some("br"));
    // If-Range with the gzip ETag applies to the gzip bytes only.
    let gz_if = format!("If-Range: {}", etag_of(&gz));
    let c = curl(
        g,
        s,
        &[
            "-H",
            "Accept-Encoding: gzip",
            "-H",
            &gz_if,
            "-r",
            "10-19",
            &url,
        ],
    );
    expect_206(g, &c, &gz, 10, 19, html, "If-Range with the gzip ETag");
    let plain_if = format!("If-Range: {}", etag_of(&index));
    let c = curl(
        g,
        s,
        &[
            "-H",
            "Accept-Encoding: gzip",
            "-H",
            &plain_if,
            "-r",
            "10-19",
            &url,
        ],
    );
    status_is(g, &c, 200);
    header_is(g, &c, "content-encoding", Some("gzip"));
    body_is(
        g,
        &c,
        &gz,
        "If-Range with the identity ETag on the gzip representation",
    );
    let c = curl(g, s, &["-H", &gz_if, "-r", "10-19", &url]);
    expect_full(g, &c, &index, "If-Range with the gzip ETag on identity");

    // The precompressed sidecar is the gzip representation of notes.txt.
    let sidecar = site_file("docs/notes.txt.gz");
    let url = g.url("/docs/notes.txt");
    let c = curl(g, s, &["-H", "Accept-Encoding: gzip", "-r", "10-29", &url]);
    expect_206(
        g,
        &c,
        &sidecar,
        10,
        29,
        "text/plain; charset=utf-8",
        "notes.txt.gz bytes 10-29",
    );
    header_is(g, &c, "content-encoding", Some("gzip"));
}

/// Python `requests` with one Session: several ranges on one keep-alive
/// connection (seen in the guest's request log), If-Range from a received
/// ETag; bodies compared byte for byte.
fn check_python_session(g: &HttpGuest, s: &Scratch, large: &[u8]) {
    const SCRIPT: &str = r#"
import json, sys, requests
url, out, ranges = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
session = requests.Session()
session.headers["Accept-Encoding"] = "identity"
results, etag = [], None
for i, r in enumerate(ranges):
    headers = {"Range": r}
    if r.startswith("if-range "):
        headers = {"Range": r.split(" ", 1)[1], "If-Range": etag}
    resp = session.get(url, headers=headers, timeout=30)
    etag = etag or resp.headers.get("ETag")
    path = f"{out}/py{i}"
    with open(path, "wb") as f:
        f.write(resp.content)
    results.append({"status": resp.status_code, "headers": dict(resp.headers), "file": path})
print(json.dumps(results))
"#;
    let len = large.len() as u64;
    let wanted: [(&str, u64, u64); 5] = [
        ("bytes=0-1023", 0, 1023),
        ("bytes=1048576-1114111", 1_048_576, 1_114_111),
        ("bytes=-4096", len - 4096, len - 1),
        ("bytes=1572000-", 1_572_000, len - 1),
        ("if-range bytes=2048-4095", 2048, 4095),
    ];
    let ranges: Vec<&str> = wanted.iter().map(|w| w.0).collect();
    let python = python_with(
        "requests",
        "install python3-requests or `pip install requests` (scripts/install-deps does)",
    );
    let ran = run_bounded(
        Command::new(&python).args([
            "-c",
            SCRIPT,
            &g.url("/large.bin"),
            &s.path("").to_string_lossy(),
            &serde_json::to_string(&ranges).expect("JSON"),
        ]),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| g.fail(e));
    let stdout = String::from_utf8_lossy(&ran.stdout);
    if ran.code != Some(0) {
        g.fail(format_args!(
            "python requests session exited {:?}: {stdout}\n{}",
            ran.code,
            String::from_utf8_lossy(&ran.stderr)
        ));
    }
    let results: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| g.fail(format_args!("python printed {stdout:?}: {e}")));
    let etag = etag_of(large);
    for (i, (range, first, last)) in wanted.iter().enumerate() {
        let r = &results[i];
        let h = |name: &str| r["headers"][name].as_str().map(str::to_string);
        let cr = format!("bytes {first}-{last}/{len}");
        let body = std::fs::read(r["file"].as_str().unwrap_or("")).unwrap_or_default();
        let diff = byte_diff(&body, &large[*first as usize..=*last as usize]);
        if r["status"] != 206
            || h("Content-Range").as_deref() != Some(cr.as_str())
            || h("ETag").as_deref() != Some(etag.as_str())
            || h("Accept-Ranges").as_deref() != Some("bytes")
            || diff.is_some()
        {
            g.fail(format_args!(
                "requests {range}: want 206 {cr} ETag {etag}, got status {} headers {}; body: {}",
                r["status"],
                r["headers"],
                diff.unwrap_or_else(|| "exact".into())
            ));
        }
    }
    // The guest saw them all on one connection.
    let log = g.admin_get("/api/requests.json");
    raw_status_is(g, "/api/requests.json", &log, 200);
    let v: Value = serde_json::from_slice(&log.body)
        .unwrap_or_else(|e| g.fail(format_args!("/api/requests.json: {e}: {}", log.body_text())));
    let rows: Vec<&Value> = v["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["path"] == "/large.bin")
        .take(wanted.len())
        .collect();
    let conns: Vec<&Value> = rows.iter().map(|r| &r["conn"]).collect();
    if rows.len() != wanted.len()
        || rows.iter().any(|r| r["status"] != 206)
        || conns.iter().any(|c| *c != conns[0])
    {
        g.fail(format_args!(
            "request log: the session's {} requests should be 206s on one connection: {rows:?}",
            wanted.len()
        ));
    }
    g.note(format_args!(
        "python requests ({python}): {} ranges byte-exact on connection {}",
        wanted.len(),
        conns[0]
    ));
}

/// `curl -r 0-99999` cut short, then `curl -C -` resumes into the same file.
fn check_resume(g: &HttpGuest, s: &Scratch, large: &[u8]) {
    let url = g.url("/large.bin");
    let file = s.path("resumed.bin");
    let _ = std::fs::remove_file(&file);
    let first = curl_to(g, s, &file, &["-r", "0-99999", &url]);
    check(g, &first, first.exit == Some(0), "first part: curl failed");
    expect_206(
        g,
        &first,
        large,
        0,
        99_999,
        "application/octet-stream",
        "first part",
    );
    let rest = curl_to(g, s, &file, &["-C", "-", &url]);
    check(g, &rest, rest.exit == Some(0), "curl -C - failed");
    status_is(g, &rest, 206);
    header_is(
        g,
        &rest,
        "content-range",
        Some(&format!("bytes 100000-{}/{}", large.len() - 1, large.len())),
    );
    let got = std::fs::read(&file).unwrap_or_default();
    if let Some(diff) = byte_diff(&got, large) {
        g.fail(format_args!(
            "resumed download: {diff}\n{}",
            rest.describe()
        ));
    }
    // The raw client sees the same head on HEAD of a suffix.
    let r = g.request("HEAD", "/large.bin", &["Range: bytes=-1"]);
    raw_status_is(g, "HEAD Range: bytes=-1", &r, 206);
    raw_header_is(
        g,
        "HEAD Range: bytes=-1",
        &r,
        "content-range",
        Some(&format!("bytes {0}-{0}/{1}", large.len() - 1, large.len())),
    );
}
