//! Serves an asset table: `GET`/`HEAD` of a known path, `If-None-Match` → 304,
//! the gzip variant when the client accepts it, 404 otherwise.
//!
//! Every asset response carries `Cache-Control: no-cache` (caches may store it but
//! must revalidate, which the strong ETag makes a cheap 304), and `Vary:
//! Accept-Encoding` when the asset has a gzip variant. The gzip variant has its own
//! ETag: it is a different representation, so it needs a different strong
//! validator.

use super::assets::{self, Asset};
use crate::http::response::{self, status};
use crate::http::{Body, Exchange, Handler, Request, Response};

/// `Cache-Control` of every asset.
pub const ASSET_CACHE_CONTROL: &str = "no-cache";

#[derive(Debug, Clone, Copy)]
pub struct Site {
    assets: &'static [Asset],
}

impl Default for Site {
    fn default() -> Self {
        Site::baked()
    }
}

impl Site {
    /// The site baked in at build time.
    pub fn baked() -> Site {
        Site {
            assets: assets::ASSETS,
        }
    }

    /// Any table sorted by path (tests).
    pub fn new(assets: &'static [Asset]) -> Site {
        Site { assets }
    }

    pub fn lookup(&self, path: &str) -> Option<&'static Asset> {
        assets::lookup_in(self.assets, path)
    }

    pub fn respond(&self, req: &Request) -> Response {
        let Some(asset) = self.lookup(req.path) else {
            return response::error(status::NOT_FOUND);
        };
        let (body, etag, gzip) = match (req.accept_gzip, asset.gzip, asset.gzip_etag) {
            (true, Some(gz), Some(gz_etag)) => (gz, gz_etag, true),
            _ => (asset.body, asset.etag, false),
        };
        let not_modified = req
            .if_none_match
            .is_some_and(|field| if_none_match_matches(field, etag));
        Response {
            status: if not_modified {
                status::NOT_MODIFIED
            } else {
                status::OK
            },
            content_type: (!not_modified).then_some(asset.content_type),
            etag: Some(etag),
            content_encoding_gzip: gzip && !not_modified,
            vary_accept_encoding: asset.gzip.is_some(),
            cache_control: Some(ASSET_CACHE_CONTROL),
            allow: None,
            body: if not_modified {
                Body::Empty
            } else {
                Body::Static(body)
            },
        }
    }
}

impl Handler for Site {
    fn handle(&mut self, req: &Request) -> Response {
        self.respond(req)
    }

    fn on_response(&mut self, _exchange: &Exchange<'_>) {}
}

/// `If-None-Match` against `etag` (RFC 9110 §13.1.2): `*` matches any current
/// representation; otherwise a list of entity tags compared weakly (`W/` ignored).
/// A malformed list matches nothing, so the full response is sent.
pub fn if_none_match_matches(field: &str, etag: &str) -> bool {
    let field = field.trim_matches([' ', '\t']);
    if field == "*" {
        return true;
    }
    let mut rest = field;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(after_quote) = tag_start.strip_prefix('"') else {
            return false;
        };
        let Some(close) = after_quote.find('"') else {
            return false;
        };
        let Some(tag) = tag_start.get(..close + 2) else {
            return false;
        };
        if tag == etag {
            return true;
        }
        rest = after_quote.get(close + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    static TABLE: &[Asset] = &[
        Asset {
            path: "/",
            body: b"<html>index</html>",
            gzip: Some(b"GZ"),
            content_type: "text/html; charset=utf-8",
            etag: "\"aaaa\"",
            gzip_etag: Some("\"gggg\""),
        },
        Asset {
            path: "/img.png",
            body: b"PNG",
            gzip: None,
            content_type: "image/png",
            etag: "\"pppp\"",
            gzip_etag: None,
        },
    ];

    fn get<'a>(path: &'a str, gzip: bool, inm: Option<&'a str>) -> Request<'a> {
        Request {
            method: Method::Get,
            path,
            accept_gzip: gzip,
            if_none_match: inm,
        }
    }

    #[test]
    fn serves_identity_and_gzip() {
        let site = Site::new(TABLE);
        let r = site.respond(&get("/", false, None));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, Body::Static(b"<html>index</html>"));
        assert_eq!(r.etag, Some("\"aaaa\""));
        assert!(!r.content_encoding_gzip && r.vary_accept_encoding);
        assert_eq!(r.cache_control, Some("no-cache"));
        assert_eq!(r.content_type, Some("text/html; charset=utf-8"));
        let r = site.respond(&get("/", true, None));
        assert_eq!(r.body, Body::Static(b"GZ"));
        assert_eq!(r.etag, Some("\"gggg\""));
        assert!(r.content_encoding_gzip && r.vary_accept_encoding);
        // No gzip variant: identity, no Vary.
        let r = site.respond(&get("/img.png", true, None));
        assert_eq!(r.body, Body::Static(b"PNG"));
        assert!(!r.content_encoding_gzip && !r.vary_accept_encoding);
    }

    #[test]
    fn not_found() {
        let r = Site::new(TABLE).respond(&get("/missing", true, None));
        assert_eq!(r.status, 404);
        assert!(!r.body.is_empty());
    }

    #[test]
    fn conditional_requests() {
        let site = Site::new(TABLE);
        let status = |gzip, inm| site.respond(&get("/", gzip, Some(inm))).status;
        assert_eq!(status(false, "\"aaaa\""), 304);
        assert_eq!(status(false, "W/\"aaaa\""), 304);
        assert_eq!(status(false, "\"x\", \"aaaa\""), 304);
        assert_eq!(status(false, "*"), 304);
        assert_eq!(
            status(false, "\"gggg\""),
            200,
            "the gzip tag is another representation"
        );
        assert_eq!(status(true, "\"gggg\""), 304);
        assert_eq!(status(true, "\"aaaa\""), 200);
        assert_eq!(status(false, "aaaa"), 200);
        assert_eq!(status(false, "\"aaaa"), 200);
        assert_eq!(status(false, ""), 200);
        let r = site.respond(&get("/", true, Some("\"gggg\"")));
        assert_eq!(r.body, Body::Empty);
        assert_eq!(r.etag, Some("\"gggg\""));
        assert!(r.vary_accept_encoding && !r.content_encoding_gzip);
        assert_eq!(r.content_type, None);
        // `*` on a missing path is still 404.
        assert_eq!(site.respond(&get("/missing", false, Some("*"))).status, 404);
    }

    #[test]
    fn etag_lists() {
        assert!(if_none_match_matches(" * ", "\"a\""));
        assert!(if_none_match_matches("\"b\",W/\"a\"", "\"a\""));
        assert!(if_none_match_matches(",, \"a\" ,", "\"a\""));
        assert!(!if_none_match_matches("\"a,b\"", "\"a\""));
        assert!(!if_none_match_matches("\"b\" junk \"a\"", "\"a\""));
        assert!(!if_none_match_matches("W/", "\"a\""));
        assert!(!if_none_match_matches("\"", "\"a\""));
    }
}
