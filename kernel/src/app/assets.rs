//! The site baked in at build time: `build.rs` writes `$OUT_DIR/site.rs` (see
//! `build/site.rs`), which defines [`ASSETS`], sorted by path, and [`BAKED_FROM`].
//! The server's own pages (`kernel/builtin/`, e.g. the status page) are baked
//! the same way into [`BUILTIN`], whatever site is baked.

/// One servable file. Bodies live in the kernel image and are never copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// URL path, e.g. `/index.html`; `X/index.html` is also listed as `X/`.
    pub path: &'static str,
    pub body: &'static [u8],
    /// Precompressed gzip, present only for text-like types where it is smaller.
    pub gzip: Option<&'static [u8]>,
    /// By extension; text types carry `; charset=utf-8`.
    pub content_type: &'static str,
    /// Strong ETag of `body`: `"` + 16 hex digits of its 64-bit FNV-1a hash + `"`.
    pub etag: &'static str,
    /// Strong ETag of the gzip variant (a different representation, so a
    /// different validator); present exactly when `gzip` is.
    pub gzip_etag: Option<&'static str>,
}

mod baked {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

mod builtin {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

pub use baked::{ASSETS, BAKED_FROM};
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
    use crate::app::asset_meta;
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
            assert_eq!(a.content_type, asset_meta::content_type(&file));
            assert_eq!(a.gzip.is_some(), a.gzip_etag.is_some());
            if let (Some(gz), Some(etag)) = (a.gzip, a.gzip_etag) {
                assert!(gz.len() < a.body.len(), "{}: gzip not smaller", a.path);
                assert_eq!(etag, format!("\"{:016x}\"", asset_meta::etag_hash(gz)));
                assert_ne!(etag, a.etag);
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(gz)
                    .read_to_end(&mut plain)
                    .unwrap();
                assert!(
                    plain == a.body,
                    "{}: gzip does not decompress to the body",
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
    fn etag_hash_is_fnv1a() {
        assert_eq!(asset_meta::etag_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(asset_meta::etag_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lookup_in_custom_table() {
        static TABLE: &[Asset] = &[
            Asset {
                path: "/a",
                body: b"A",
                gzip: None,
                content_type: "text/plain",
                etag: "\"1\"",
                gzip_etag: None,
            },
            Asset {
                path: "/b",
                body: b"B",
                gzip: None,
                content_type: "text/plain",
                etag: "\"2\"",
                gzip_etag: None,
            },
        ];
        assert_eq!(lookup_in(TABLE, "/b").unwrap().body, b"B");
        assert!(lookup_in(TABLE, "/c").is_none());
        assert!(lookup_in(&[], "/a").is_none());
    }
}
