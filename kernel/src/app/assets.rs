//! The site baked in at build time: `build.rs` writes `$OUT_DIR/site.rs` (see
//! `build/site.rs`), which defines [`ASSETS`], sorted by path, and [`BAKED_FROM`].
//! The server's own pages (`kernel/builtin/`, e.g. the status page) are baked
//! the same way into [`BUILTIN`], whatever site is baked.

/// A precompressed representation of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The compressed bytes.
    pub body: &'static [u8],
    /// Its own strong ETag: a different representation needs a different
    /// validator.
    pub etag: &'static str,
}

/// One servable file. Bodies live in the kernel image and are never copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// URL path, e.g. `/index.html`; `X/index.html` is also listed as `X/`.
    pub path: &'static str,
    /// The file as it is (identity coding).
    pub body: &'static [u8],
    /// Strong ETag of `body`: `"` + 16 hex digits of its 64-bit FNV-1a hash + `"`.
    pub etag: &'static str,
    /// gzip variant, present only where it is smaller than `body`.
    pub gzip: Option<Variant>,
    /// brotli variant, present only where it is smaller than `body`.
    pub br: Option<Variant>,
    /// By extension (text types carry `; charset=utf-8`), unless `_headers`
    /// set another.
    pub content_type: &'static str,
    /// [`IMMUTABLE`](super::asset_meta::IMMUTABLE) for fingerprinted names,
    /// else [`REVALIDATE`](super::asset_meta::REVALIDATE), unless `_headers`
    /// set another or detached it.
    pub cache_control: Option<&'static str>,
    /// The other fields `_headers` gives this path, in order.
    pub headers: &'static [(&'static str, &'static str)],
}

impl Asset {
    /// The representations this asset has, with their sizes, identity first.
    pub fn codings(&self) -> impl Iterator<Item = (Coding, &'static [u8], &'static str)> {
        let identity = (Coding::Identity, self.body, self.etag);
        let gzip = self.gzip.map(|v| (Coding::Gzip, v.body, v.etag));
        let br = self.br.map(|v| (Coding::Br, v.body, v.etag));
        core::iter::once(identity).chain(gzip).chain(br)
    }

    /// Whether there is a compressed representation, so responses vary on `Accept-Encoding`.
    pub fn has_variants(&self) -> bool {
        self.gzip.is_some() || self.br.is_some()
    }
}

/// One `_redirects` rule (see `site_rules`), checked when the site was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    /// Path pattern the rule matches.
    pub from: &'static str,
    /// Target, with the pattern's placeholders and splat substituted.
    pub to: &'static str,
    /// Redirect status (301, 302, 303, 307, 308), or 200 for a rewrite.
    pub status: u16,
    /// Applies even where a file exists (`!`).
    pub force: bool,
}

const _: () = assert!(super::asset_meta::MAX_RULE_HEADER_BYTES <= RESPONSE_EXTRA_FIELDS);

use crate::http::Coding;
use crate::http::limits::RESPONSE_EXTRA_FIELDS;

mod baked {
    #[allow(unused_imports)] // a site without compressible files has no Variant
    use super::{Asset, Redirect, Variant};
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

mod builtin {
    #[allow(unused_imports)]
    use super::{Asset, Variant};
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

pub use baked::{ASSETS, BAKED_FROM, REDIRECTS};
/// The server's own pages, from `kernel/builtin/`, sorted by path.
pub use builtin::{ASSETS as BUILTIN, BAKED_FROM as BUILTIN_FROM};

/// Binary search of a table sorted by path.
pub fn lookup_in(table: &'static [Asset], path: &str) -> Option<&'static Asset> {
    let i = table.binary_search_by(|a| a.path.cmp(path)).ok()?;
    table.get(i)
}

/// The baked asset served at `path` (`/` is `/index.html`).
pub fn lookup(path: &str) -> Option<&'static Asset> {
    lookup_in(ASSETS, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{asset_meta, site_rules};
    use std::io::Read;

    /// The tests below describe the default site; a custom one only gets the
    /// generic checks.
    fn default_site() -> bool {
        option_env!("UNIKERNEL_SITE_DIR").is_none()
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ASSETS.windows(2).all(|w| w[0].path < w[1].path));
        assert!(BUILTIN.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn every_asset_is_consistent() {
        let tables = [(ASSETS, BAKED_FROM), (BUILTIN, BUILTIN_FROM)];
        for (a, baked_from) in tables
            .iter()
            .flat_map(|(t, from)| t.iter().map(move |a| (a, from)))
        {
            // A directory path `X/` serves `X/index.html`.
            let file = if a.path.ends_with('/') {
                format!("{}index.html", a.path)
            } else {
                a.path.to_string()
            };
            assert!(asset_meta::is_valid_url_path(&file), "{}", a.path);
            assert_eq!(
                a.etag,
                format!("\"{:016x}\"", asset_meta::etag_hash(a.body))
            );
            // Type, cache policy and rule headers as the site's `_headers`
            // resolves them over the defaults.
            let rules = std::fs::read_to_string(format!("{baked_from}/_headers"))
                .map(|text| site_rules::parse_headers(&text).unwrap())
                .unwrap_or_default();
            let cache = if asset_meta::is_fingerprinted(a.path) {
                asset_meta::IMMUTABLE
            } else {
                asset_meta::REVALIDATE
            };
            let resolved =
                site_rules::resolve_headers(&rules, a.path, asset_meta::content_type(&file), cache);
            assert_eq!(Some(a.content_type), resolved.content_type.as_deref());
            assert_eq!(a.cache_control, resolved.cache_control.as_deref());
            let fields: Vec<(String, String)> = a
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(fields, resolved.fields, "{}", a.path);
            for (coding, variant) in [("gzip", a.gzip), ("br", a.br)] {
                let Some(v) = variant else { continue };
                assert!(
                    v.body.len() < a.body.len(),
                    "{}: {coding} not smaller",
                    a.path
                );
                assert_eq!(
                    v.etag,
                    format!("\"{:016x}\"", asset_meta::etag_hash(v.body))
                );
                assert_ne!(v.etag, a.etag);
                let mut plain = Vec::new();
                if coding == "gzip" {
                    flate2::read::MultiGzDecoder::new(v.body)
                        .read_to_end(&mut plain)
                        .unwrap();
                } else {
                    brotli::BrotliDecompress(&mut &v.body[..], &mut plain).unwrap();
                }
                assert!(
                    plain == a.body,
                    "{}: {coding} does not decompress to the body",
                    a.path
                );
            }
            let on_disk = std::fs::read(format!("{baked_from}{file}")).unwrap();
            assert!(on_disk == a.body, "{} differs from the file", a.path);
        }
    }

    #[test]
    fn lookup_finds_paths_and_directory_indexes() {
        if !default_site() {
            return;
        }
        let index = lookup("/index.html").unwrap();
        assert_eq!(lookup("/").unwrap().body, index.body);
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(index.gzip.is_some());
        assert_eq!(
            lookup("/style.css").unwrap().content_type,
            "text/css; charset=utf-8"
        );
        assert_eq!(lookup("/logo.svg").unwrap().content_type, "image/svg+xml");
        let large = lookup("/large.bin").unwrap();
        assert_eq!(large.content_type, "application/octet-stream");
        assert!(large.gzip.is_none(), "binaries are served as stored");
        assert!(large.body.len() > 1024 * 1024);
        for missing in [
            "",
            "/nope",
            "/index.htm",
            "/INDEX.HTML",
            "/index.html/",
            "//",
        ] {
            assert!(lookup(missing).is_none(), "{missing}");
        }
    }

    /// The status page is self-contained and small: no external script, style,
    /// font or image (every `href`/`src` is a `data:` URL), only same-origin
    /// fetches of the JSON endpoints.
    #[test]
    fn status_page_is_self_contained_and_small() {
        let page = lookup_in(BUILTIN, "/status.html").expect("builtin /status.html");
        assert!(page.body.len() < 16 * 1024, "{} bytes", page.body.len());
        assert!(page.gzip.is_some());
        let html = core::str::from_utf8(page.body).unwrap();
        for banned in [
            "http:", "https:", "@import", "url(", "<iframe", "<object", "<embed", "<img",
        ] {
            assert!(!html.contains(banned), "status page has {banned:?}");
        }
        for attr in ["href=", "src="] {
            for (i, _) in html.match_indices(attr) {
                let value = &html[i + attr.len()..];
                assert!(value.starts_with("\"data:"), "external {attr} at byte {i}");
            }
        }
        for needed in [
            "/api/stats.json",
            "/api/requests.json",
            "createElement(\"canvas\")",
            "onerror",
        ] {
            assert!(html.contains(needed), "status page lacks {needed:?}");
        }
    }

    #[test]
    fn index_links_everything() {
        if !default_site() {
            return;
        }
        let html = core::str::from_utf8(lookup("/").unwrap().body).unwrap();
        for link in [
            "/style.css",
            "/logo.svg",
            "/health",
            "/api/stats.json",
            "/api/requests.json",
            "/metrics",
            "/status",
            "/large.bin",
        ] {
            assert!(
                html.contains(&format!("\"{link}\"")),
                "index.html does not link {link}"
            );
        }
    }

    /// Same rule as `scripts/gen-large-asset`.
    #[test]
    fn large_asset_matches_its_generator() {
        if !default_site() {
            return;
        }
        const ALPHABET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let twice = ALPHABET.repeat(2);
        let mut expected = String::new();
        for n in 0..24576usize {
            let start = n % ALPHABET.len();
            expected.push_str(&format!("{:08x} {}\n", n * 64, &twice[start..start + 54]));
        }
        assert_eq!(expected.len(), 1536 * 1024);
        assert!(lookup("/large.bin").unwrap().body == expected.as_bytes());
    }

    #[test]
    fn content_types_by_extension() {
        let ct = asset_meta::content_type;
        assert_eq!(ct("/a.html"), "text/html; charset=utf-8");
        assert_eq!(ct("/a.HTM"), "text/html; charset=utf-8");
        assert_eq!(ct("/a.css"), "text/css; charset=utf-8");
        assert_eq!(ct("/a.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("/a.json"), "application/json");
        assert_eq!(ct("/a.svg"), "image/svg+xml");
        assert_eq!(ct("/a.png"), "image/png");
        assert_eq!(ct("/a.jpg"), "image/jpeg");
        assert_eq!(ct("/a.jpeg"), "image/jpeg");
        assert_eq!(ct("/a.gif"), "image/gif");
        assert_eq!(ct("/a.ico"), "image/x-icon");
        assert_eq!(ct("/a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("/a.wasm"), "application/wasm");
        assert_eq!(ct("/a.woff2"), "font/woff2");
        assert_eq!(ct("/a.bin"), "application/octet-stream");
        for (ext, want) in [
            ("avif", "image/avif"),
            ("webp", "image/webp"),
            ("woff", "font/woff"),
            ("ttf", "font/ttf"),
            ("otf", "font/otf"),
            ("pdf", "application/pdf"),
            ("mp4", "video/mp4"),
            ("webm", "video/webm"),
            ("ogg", "audio/ogg"),
            ("mp3", "audio/mpeg"),
            ("wav", "audio/wav"),
            ("webmanifest", "application/manifest+json"),
            ("map", "application/json"),
            ("csv", "text/csv; charset=utf-8"),
            ("ics", "text/calendar; charset=utf-8"),
            ("md", "text/markdown; charset=utf-8"),
            ("mjs", "text/javascript; charset=utf-8"),
            ("xml", "text/xml; charset=utf-8"),
        ] {
            assert_eq!(ct(&format!("/f.{ext}")), want, "{ext}");
        }
        assert_eq!(ct("/a.unknown"), "application/octet-stream");
        assert_eq!(ct("/noext"), "application/octet-stream");
        assert_eq!(ct("/.html"), "application/octet-stream");
        assert_eq!(ct("/dir.html/file"), "application/octet-stream");
        assert!(asset_meta::is_compressible("text/css; charset=utf-8"));
        assert!(asset_meta::is_compressible("image/svg+xml"));
        assert!(!asset_meta::is_compressible("image/png"));
        assert!(!asset_meta::is_compressible("application/octet-stream"));
    }

    #[test]
    fn url_path_rules() {
        let ok = asset_meta::is_valid_url_path;
        assert!(ok("/index.html") && ok("/a/b-c_d~e.f") && ok("/a:b@c"));
        for bad in [
            "",
            "/",
            "index.html",
            "/a//b",
            "/a/",
            "/./a",
            "/a/../b",
            "/a b",
            "/a%20b",
            "/a?b",
            "/a#b",
            "/ä",
            "/a\\b",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn fingerprinted_names() {
        let f = asset_meta::is_fingerprinted;
        for yes in [
            "/app.3f2a9c1b.js",
            "/assets/app.5f3c9e1a.js",
            "/chunk-5XJ2K7QH.css",
            "/main.0123456789abcdef0123.css",
            "/a/b/vendor-A1B2C3D4.mjs",
            "/img.5f3c9e1a.png",
        ] {
            assert!(f(yes), "{yes}");
        }
        for no in [
            "/app.js",
            "/app.settings.js",
            "/deadbeef.js",
            "/app.deadbeef.js",
            "/app.12345678.js",
            "/MainPage.js",
            "/app-MainPage.js",
            "/index-DiwrgTda.js",
            "/app.3f2a9c1.js",
            "/app.3F2A9c1b.js",
            "/.3f2a9c1b.js",
            "/app.3f2a9c1b",
            "/3f2a9c1b/app.js",
            "/a.3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b1.js",
        ] {
            assert!(!f(no), "{no}");
        }
    }

    #[test]
    fn etag_hash_is_fnv1a() {
        assert_eq!(asset_meta::etag_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(asset_meta::etag_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lookup_in_custom_table() {
        const fn plain(path: &'static str, body: &'static [u8], etag: &'static str) -> Asset {
            Asset {
                path,
                body,
                etag,
                gzip: None,
                br: None,
                content_type: "text/plain",
                cache_control: None,
                headers: &[],
            }
        }
        static TABLE: &[Asset] = &[plain("/a", b"A", "\"1\""), plain("/b", b"B", "\"2\"")];
        assert_eq!(lookup_in(TABLE, "/b").unwrap().body, b"B");
        assert!(lookup_in(TABLE, "/c").is_none());
        assert!(lookup_in(&[], "/a").is_none());
    }

    /// What the default site shows: every rule kind of `_headers` and
    /// `_redirects`, a sidecar variant, `.well-known/`, a fingerprinted asset.
    #[test]
    fn default_site_rules_and_special_files() {
        if !default_site() {
            return;
        }
        for hidden in ["/_headers", "/_redirects"] {
            assert!(lookup(hidden).is_none(), "{hidden} must not be served");
        }
        let security = lookup("/.well-known/security.txt").expect(".well-known is baked");
        assert_eq!(security.content_type, "text/plain; charset=utf-8");
        assert!(
            !security
                .headers
                .iter()
                .any(|(n, _)| *n == "Referrer-Policy"),
            "detached"
        );
        let notes = lookup("/docs/notes.txt").unwrap();
        let sidecar = std::fs::read(format!("{BAKED_FROM}/docs/notes.txt.gz")).unwrap();
        assert!(
            notes.gzip.unwrap().body == &sidecar[..],
            "the shipped .gz is the gzip variant"
        );
        assert!(notes.br.is_some(), "brotli made by the build");
        assert!(
            lookup("/docs/notes.txt.gz").is_some(),
            "the sidecar is served too (nginx)"
        );
        let js = lookup("/assets/app.5f3c9e1a.js").unwrap();
        assert_eq!(js.cache_control, Some(asset_meta::IMMUTABLE));
        assert_eq!(
            lookup("/index.html").unwrap().cache_control,
            Some(asset_meta::REVALIDATE)
        );
        let clip = lookup("/media/clip.webm").unwrap();
        assert_eq!(clip.content_type, "video/webm");
        assert_eq!(clip.cache_control, Some("public, max-age=3600"));
        assert!(clip.gzip.is_none() && clip.br.is_none());
        let docs = lookup("/docs/").unwrap();
        assert!(docs.headers.contains(&("X-Frame-Options", "DENY")));
        assert!(
            docs.headers
                .contains(&("X-Content-Type-Options", "nosniff"))
        );
        assert!(lookup("/404.html").is_some());
        assert!(lookup("/index.html").unwrap().br.is_some());
        assert!(
            REDIRECTS
                .iter()
                .any(|r| r.status == 200 && r.to == "/index.html")
        );
        assert_eq!(REDIRECTS.len(), 5);
    }
}
