//! The reader against the builder's writer (`boot-image/src/bundle_write.rs`,
//! included here with the site compiler it uses): round trips, every way a
//! bundle is refused, and a fixed-seed fuzz of random and mutated bundles.

#[path = "../../../../boot-image/src/bundle_write.rs"]
mod writer;

// The writer names its shared modules as `super::...`.
use super::super::bundle_format;
use super::*;
use crate::app::bundle_format::hdr;
use crate::app::site_build_tests::builder as site;
use crate::test_rng::Rng;
use std::path::{Path, PathBuf};

fn default_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("site")
}

fn compile(dir: &Path) -> site::CompiledSite {
    site::compile(dir, true).unwrap()
}

/// A small site with rules, sidecars, an empty file and nested directories.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Scratch(root)
    }
    fn file(&self, rel: &str, bytes: &[u8]) -> &Scratch {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small_site() -> Scratch {
    let s = Scratch::new("small");
    let page = b"<p>well, well, well, well, well, well, well, well.</p>\n".repeat(20);
    s.file("index.html", &page)
        .file("docs/index.html", b"<h1>docs</h1>")
        .file("empty.txt", b"")
        .file("app.3f2a9c1b.js", &b"console.log(1);\n".repeat(40))
        .file("img/x.png", &[0x89, b'P', b'N', b'G', 0, 1, 2, 3])
        .file(
            "_headers",
            b"/*\n  X-Content-Type-Options: nosniff\n/img/*\n  Cache-Control: public, max-age=60\n  X-Img: 1\n",
        )
        .file(
            "_redirects",
            b"/old /docs/ 301\n/app/* /index.html 200\n/blog/:y/:s /docs/?p=:y-:s 302\n/force /img/x.png 200!\n",
        );
    s
}

/// Every row of `site` reads back from `bundle` byte for byte.
fn assert_round_trip(site: &site::CompiledSite, bytes: &[u8]) {
    let bundle = Bundle::parse(bytes).unwrap();
    assert_eq!(bundle.len(), site.rows.len());
    for (i, row) in site.rows.iter().enumerate() {
        let file = &site.files[row.file];
        let e = bundle.entry(i).unwrap();
        assert_eq!(bundle.find(&row.url), Some(e), "{}", row.url);
        assert_eq!(e.path, row.url);
        assert_eq!(e.body, &file.body[..], "{}", row.url);
        assert_eq!(e.etag, file.etag);
        let variant =
            |v: &Option<(Vec<u8>, String)>| v.as_ref().map(|(b, e)| (b.clone(), e.clone()));
        let got = |v: Option<(&[u8], &str)>| v.map(|(b, e)| (b.to_vec(), e.to_string()));
        assert_eq!(got(e.gzip), variant(&file.gzip), "{}", row.url);
        assert_eq!(got(e.br), variant(&file.br), "{}", row.url);
        assert_eq!(e.content_type, row.content_type);
        assert_eq!(e.cache_control, row.cache_control.as_deref());
        let headers: Vec<(String, String)> = bundle
            .header_set(e.header_set)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(headers, row.headers, "{}", row.url);
    }
    let rules: Vec<_> = bundle
        .rules()
        .map(|r| (r.from.to_string(), r.to.to_string(), r.status, r.force))
        .collect();
    let want: Vec<_> = site
        .redirects
        .iter()
        .map(|r| (r.from.clone(), r.to.clone(), r.status, r.force))
        .collect();
    assert_eq!(rules, want);
    assert_eq!(bundle.find("/no-such-file"), None);
    assert_eq!(bundle.find(""), None);
}

#[test]
fn default_site_round_trips_byte_exact() {
    let site = compile(&default_site());
    assert!(
        site.files
            .iter()
            .any(|f| f.gzip.is_some() && f.br.is_some())
    );
    assert!(!site.redirects.is_empty());
    assert!(site.rows.iter().any(|r| !r.headers.is_empty()));
    let bytes = writer::write(&site).unwrap();
    assert_round_trip(&site, &bytes);
    // Deterministic: the same directory gives the same bytes.
    assert_eq!(writer::write(&compile(&default_site())).unwrap(), bytes);
}

#[test]
fn small_site_round_trips_with_rules_and_empty_files() {
    let s = small_site();
    let site = compile(&s.0);
    let bytes = writer::write(&site).unwrap();
    assert_round_trip(&site, &bytes);
    let bundle = Bundle::parse(&bytes).unwrap();
    assert_eq!(bundle.find("/empty.txt").unwrap().body, b"");
    assert_eq!(bundle.find("/docs/").unwrap().body, b"<h1>docs</h1>");
    let img = bundle.find("/img/x.png").unwrap();
    assert_eq!(img.cache_control, Some("public, max-age=60"));
    assert_eq!(
        bundle.header_set(img.header_set).collect::<Vec<_>>(),
        [("X-Content-Type-Options", "nosniff"), ("X-Img", "1")]
    );
    assert_eq!(bundle.rules().filter(|r| r.force).count(), 1);
}

#[test]
fn an_empty_site_is_a_valid_bundle() {
    let s = Scratch::new("empty");
    let bytes = writer::write(&compile(&s.0)).unwrap();
    let bundle = Bundle::parse(&bytes).unwrap();
    assert!(bundle.is_empty());
    assert_eq!(bundle.find("/"), None);
}

fn sample() -> Vec<u8> {
    let s = small_site();
    writer::write(&compile(&s.0)).unwrap()
}

/// Recomputes the checksum, so a test reaches the checks behind it.
fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= bundle_format::HEADER_LEN {
        let crc = crc32fast::hash(&bytes[bundle_format::CHECKSUM_FROM..]);
        bytes[hdr::CHECKSUM..hdr::CHECKSUM + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn refusals_say_why() {
    let good = sample();
    let err = |bytes: &[u8]| Bundle::parse(bytes).unwrap_err().to_string();

    assert!(err(&good[..10]).contains("too short"));
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(err(&b), "not a site bundle (wrong magic)");

    let mut b = good.clone();
    put_u32(&mut b, hdr::VERSION, 2);
    assert_eq!(
        err(&b),
        "bundle from a newer builder: format 2, this kernel reads format 1"
    );
    put_u32(&mut b, hdr::VERSION, 0);
    assert!(err(&b).contains("no longer read"));

    let cut = &good[..good.len() - 1];
    assert_eq!(
        err(cut),
        format!(
            "bundle truncated: header says {} bytes, got {}",
            good.len(),
            good.len() - 1
        )
    );
    let mut long = good.clone();
    long.push(0);
    assert!(err(&long).contains("trailing bytes"));

    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(err(&b).starts_with("bundle checksum mismatch: stored 0x"));

    // Behind a good checksum: an entry's body past the data section.
    let mut b = good.clone();
    let body_len = bundle_format::HEADER_LEN + bundle_format::entry::BODY + 8;
    put_u64(&mut b, body_len, u64::MAX / 2);
    reseal(&mut b);
    assert_eq!(err(&b), "bundle entry 0: body out of bounds");

    // Two entries out of order.
    let mut b = good.clone();
    let (e0, e1) = (
        bundle_format::HEADER_LEN,
        bundle_format::HEADER_LEN + bundle_format::entry::LEN,
    );
    let first: Vec<u8> = b[e0..e1].to_vec();
    b.copy_within(e1..e1 + bundle_format::entry::LEN, e0);
    b[e1..e1 + bundle_format::entry::LEN].copy_from_slice(&first);
    reseal(&mut b);
    assert_eq!(err(&b), "bundle entry 1: paths are not strictly sorted");

    // Two bodies that overlap without being the same.
    let mut b = good.clone();
    let bundle = Bundle::parse(&good).unwrap();
    let big = (0..bundle.len())
        .max_by_key(|&i| bundle.entry(i).unwrap().body.len())
        .unwrap();
    let at =
        bundle_format::HEADER_LEN + big * bundle_format::entry::LEN + bundle_format::entry::BODY;
    let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let other = (0..bundle.len())
        .find(|&i| i != big && !bundle.entry(i).unwrap().body.is_empty())
        .unwrap();
    let at2 =
        bundle_format::HEADER_LEN + other * bundle_format::entry::LEN + bundle_format::entry::BODY;
    put_u64(&mut b, at2, off + 1);
    put_u64(&mut b, at2 + 8, 2);
    reseal(&mut b);
    assert!(err(&b).contains("bodies overlap"), "{}", err(&b));

    // A header field that would inject a line into the response head.
    let mut b = good.clone();
    let pos = b.windows(7).position(|w| w == b"nosniff").unwrap();
    b[pos] = b'\n';
    reseal(&mut b);
    assert_eq!(err(&b), "bundle header field 0: not a valid header field");
}

#[test]
fn every_prefix_is_refused_without_panic() {
    let good = sample();
    for n in 0..good.len() {
        assert!(Bundle::parse(&good[..n]).is_err(), "prefix {n}");
    }
}

/// Whatever a parsed bundle hands out lies inside its bytes and agrees with
/// itself; walking it must not panic.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(bundle) = Bundle::parse(bytes) else {
        return false;
    };
    let range = bytes.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (range.start <= r.start && r.end <= range.end)
    };
    let mut previous: Option<&str> = None;
    for i in 0..bundle.len() {
        let e = bundle.entry(i).unwrap();
        assert!(previous.is_none_or(|p| p < e.path));
        previous = Some(e.path);
        assert_eq!(bundle.find(e.path), Some(e));
        for part in [
            e.path.as_bytes(),
            e.body,
            e.etag.as_bytes(),
            e.content_type.as_bytes(),
        ] {
            assert!(inside(part));
        }
        for (body, etag) in e.gzip.into_iter().chain(e.br) {
            assert!(inside(body) && inside(etag.as_bytes()));
        }
        assert!(e.header_set < bundle.header_set_count());
        for (n, v) in bundle.header_set(e.header_set) {
            assert!(inside(n.as_bytes()) && inside(v.as_bytes()));
        }
    }
    assert!(bundle.entry(bundle.len()).is_none());
    for r in bundle.rules() {
        assert!(inside(r.from.as_bytes()) && inside(r.to.as_bytes()));
    }
    true
}

#[test]
fn mutated_bundles_never_panic_or_escape() {
    let good = sample();
    assert!(exercise(&good));
    let mut rng = Rng(0x5eed_b0d1_e5a1_7e00);
    let (mut accepted, mut cases) = (0, 0);
    for _ in 0..20_000 {
        let mut b = good.clone();
        match rng.below(4) {
            // Flip a few bytes anywhere.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            // A header or table field set to a random or boundary value.
            1 => {
                let at = rng.below(b.len().min(2048).saturating_sub(8)) & !3;
                let v = match rng.below(5) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => b.len() as u64 + rng.below(64) as u64,
                    3 => rng.next_u64(),
                    _ => rng.below(b.len()) as u64,
                };
                put_u64(&mut b, at, v);
            }
            // Cut or extend.
            2 => {
                let n = rng.below(b.len());
                b.truncate(n);
                if n >= hdr::FILE_LEN + 8 {
                    put_u64(&mut b, hdr::FILE_LEN, n as u64);
                }
            }
            // Garbage after a valid header.
            _ => {
                for x in b.iter_mut().skip(hdr::ENTRY_COUNT + rng.below(64)) {
                    *x = rng.next_u64() as u8;
                }
            }
        }
        // Usually reseal, so the checks behind the checksum are what is tried.
        if rng.below(8) != 0 {
            reseal(&mut b);
        }
        cases += 1;
        if exercise(&b) {
            accepted += 1;
        }
    }
    // Some mutations land in bodies and stay valid; most must be refused.
    assert!(
        accepted > 0 && accepted < cases,
        "{accepted} of {cases} accepted"
    );
}

#[test]
fn random_bytes_behind_a_valid_header_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let len = bundle_format::HEADER_LEN + rng.below(4096);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        b[..8].copy_from_slice(&bundle_format::MAGIC);
        put_u32(&mut b, hdr::VERSION, bundle_format::VERSION);
        put_u32(&mut b, hdr::HEADER_LEN, bundle_format::HEADER_LEN as u32);
        put_u64(&mut b, hdr::FILE_LEN, len as u64);
        // Small counts and offsets inside the file, so parsing gets past the layout.
        for at in [
            hdr::ENTRY_COUNT,
            hdr::REDIRECT_COUNT,
            hdr::HEADER_SET_COUNT,
            hdr::FIELD_COUNT,
        ] {
            put_u32(&mut b, at, rng.below(4) as u32);
        }
        for at in (hdr::ENTRIES_OFF..hdr::RESERVED).step_by(8) {
            put_u64(&mut b, at, rng.below(len) as u64);
        }
        b[hdr::RESERVED..bundle_format::HEADER_LEN].fill(0);
        reseal(&mut b);
        let _ = exercise(&b);
    }
}

/// What a client sees of a response (bodies of every kind flattened).
fn seen(r: &crate::http::Response) -> String {
    format!(
        "{} {:?} {:?} {:?} {} {:?} {} {:?} {:?} {:?} {:?} {:?}",
        r.status,
        r.content_type,
        r.etag,
        r.content_encoding,
        r.vary_accept_encoding,
        r.cache_control,
        r.accept_ranges,
        r.content_range,
        r.location,
        r.headers,
        r.multipart_boundary,
        r.body.to_vec(),
    )
}

#[test]
fn a_bundle_of_the_baked_site_serves_what_the_baked_table_serves() {
    use crate::app::site::Site;
    use crate::http::{AcceptEncoding, Request};
    let site = compile(Path::new(crate::app::assets::BAKED_FROM));
    let bytes: &'static [u8] = Box::leak(writer::write(&site).unwrap().into_boxed_slice());
    let from_bundle = Site::from_bundle(bytes).unwrap();
    let baked = Site::baked();
    assert_eq!(from_bundle.health(), Ok(()));
    let mut paths: Vec<&str> = crate::app::assets::ASSETS.iter().map(|a| a.path).collect();
    // Rules, directory redirects and the 404 page too.
    paths.extend([
        "/missing",
        "/docs",
        "/old-docs",
        "/blog/2024/x",
        "/app/deep/link",
        "/a/b/",
    ]);
    for path in paths {
        for encoding in ["", "gzip", "br", "gzip, br", "identity"] {
            for range in [None, Some("bytes=0-9"), Some("bytes=1-2,5-6")] {
                let mut r = Request::get(path);
                let mut a = AcceptEncoding::default();
                a.add(encoding.as_bytes());
                r.accept_encoding = a;
                r.range = range;
                r.query = Some("q=1");
                assert_eq!(
                    seen(&from_bundle.respond(&r)),
                    seen(&baked.respond(&r)),
                    "{path} {encoding} {range:?}"
                );
            }
        }
    }
}

#[test]
fn an_unavailable_site_answers_503_with_the_reason() {
    use crate::app::site::Site;
    let bad = Site::from_bundle(b"not a bundle").unwrap_err().to_string();
    let reason: &'static str = Box::leak(bad.into_boxed_str());
    let site = Site::unavailable(reason);
    assert_eq!(site.health(), Err(reason));
    let r = site.respond(&crate::http::Request::get("/index.html"));
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body.as_slice(),
        b"unavailable: bundle too short: 12 bytes, the header alone is 128\n"
    );
}
