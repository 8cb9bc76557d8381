//! Serves an asset table the way nginx and Caddy serve a directory, with the
//! site's own rules on top (Netlify / Cloudflare Pages conventions):
//!
//! 1. A file at the path is served: the representation `Accept-Encoding`
//!    prefers (brotli, gzip, identity; each with its own strong ETag, `Vary:
//!    Accept-Encoding` when there is a choice), `If-None-Match` → 304, then
//!    `Range` → 206 / 416 (`If-Range` must name the selected representation's
//!    ETag). Every asset response has `Accept-Ranges: bytes`, the asset's
//!    `Cache-Control` and its `_headers` fields.
//! 2. A path without a trailing slash whose directory has an `index.html`
//!    answers 301 to the path with the slash, query kept (nginx, Caddy).
//! 3. Otherwise the first `_redirects` rule that matches applies; rules marked
//!    `!` apply before 1 and 2 (Netlify's shadowing). A pattern without a
//!    trailing slash also matches the path with one.
//! 4. Otherwise `404.html` at the site root with status 404, or a plain 404.
//!
//! The files come from the table baked into the kernel or from a validated
//! [`Bundle`] (served in place); a bundle that failed its checks leaves a site
//! that answers every request 503 with the reason.

use super::assets::{self, Asset, Redirect, Variant};
use super::bundle::{Bundle, BundleError};
use super::pattern::{self, Captures};
use crate::http::range::{self, ContentRange, Ranges};
use crate::http::response::{self, status};
use crate::http::{Body, Coding, Exchange, Handler, Request, Response};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// The page a missing path gets, if the site has one.
pub const NOT_FOUND_PAGE: &str = "/404.html";

#[derive(Debug, Clone, Copy)]
/// What the server serves under its paths: the baked table or a bundle, with the site's rules. Cheap to copy: it borrows static data.
pub struct Site {
    files: Files,
    redirects: &'static [Redirect],
    /// Some rule applies even where a file exists.
    forced: bool,
}

impl Default for Site {
    fn default() -> Self {
        Site::baked()
    }
}

/// Where a site's files are.
#[derive(Debug, Clone, Copy)]
enum Files {
    /// Sorted by path (baked by `build.rs`).
    Table(&'static [Asset]),
    /// Read in place; the `_headers` sets as the response wants them.
    Bundle {
        bundle: Bundle<'static>,
        header_sets: &'static [&'static [(&'static str, &'static str)]],
    },
    /// Nothing is served: every request gets 503 with this reason.
    Unavailable(&'static str),
}

/// What a path names before any rule applies.
enum Found {
    File(Asset),
    /// `path/` is a directory index: redirect to it.
    Directory,
    Nothing,
}

impl Site {
    /// The site baked in at build time, with its rules.
    pub fn baked() -> Site {
        Site::with_rules(assets::ASSETS, assets::REDIRECTS)
    }

    /// Any table sorted by path, without rules.
    pub fn new(assets: &'static [Asset]) -> Site {
        Site::with_rules(assets, &[])
    }

    /// A baked table sorted by path, with its `_redirects` rules.
    pub fn with_rules(assets: &'static [Asset], redirects: &'static [Redirect]) -> Site {
        Site {
            files: Files::Table(assets),
            redirects,
            forced: redirects.iter().any(|r| r.force),
        }
    }

    /// The site in bundle `bytes`, after every check of [`Bundle::parse`].
    /// Its header sets and rules are put in the form responses use once, for
    /// good (a site lives as long as the kernel); bodies stay where they are.
    pub fn from_bundle(bytes: &'static [u8]) -> Result<Site, BundleError> {
        let bundle = Bundle::parse(bytes)?;
        let header_sets: Vec<&'static [(&'static str, &'static str)]> = (0..bundle
            .header_set_count())
            .map(|i| &*Box::leak(bundle.header_set(i).collect::<Vec<_>>().into_boxed_slice()))
            .collect();
        let redirects: Vec<Redirect> = bundle
            .rules()
            .map(|r| Redirect {
                from: r.from,
                to: r.to,
                status: r.status,
                force: r.force,
            })
            .collect();
        let redirects: &'static [Redirect] = Box::leak(redirects.into_boxed_slice());
        Ok(Site {
            files: Files::Bundle {
                bundle,
                header_sets: Box::leak(header_sets.into_boxed_slice()),
            },
            redirects,
            forced: redirects.iter().any(|r| r.force),
        })
    }

    /// A site that answers every request 503 `unavailable: <reason>`.
    pub fn unavailable(reason: &'static str) -> Site {
        Site {
            files: Files::Unavailable(reason),
            redirects: &[],
            forced: false,
        }
    }

    /// `Err(reason)` when the site cannot serve (`/health` says so).
    pub fn health(&self) -> Result<(), &'static str> {
        match self.files {
            Files::Unavailable(reason) => Err(reason),
            _ => Ok(()),
        }
    }

    /// The asset at `path` exactly, if there is one.
    pub fn lookup(&self, path: &str) -> Option<Asset> {
        match self.files {
            Files::Table(table) => assets::lookup_in(table, path).copied(),
            Files::Bundle {
                bundle,
                header_sets,
            } => {
                let e = bundle.find(path)?;
                let variant = |v: Option<(&'static [u8], &'static str)>| {
                    v.map(|(body, etag)| Variant { body, etag })
                };
                Some(Asset {
                    path: e.path,
                    body: e.body,
                    etag: e.etag,
                    gzip: variant(e.gzip),
                    br: variant(e.br),
                    content_type: e.content_type,
                    cache_control: e.cache_control,
                    headers: header_sets.get(e.header_set).copied().unwrap_or_default(),
                })
            }
            Files::Unavailable(_) => None,
        }
    }

    fn find(&self, path: &str) -> Found {
        if let Some(asset) = self.lookup(path) {
            return Found::File(asset);
        }
        if !path.ends_with('/') {
            let mut dir = String::with_capacity(path.len() + 1);
            dir.push_str(path);
            dir.push('/');
            if self.lookup(&dir).is_some() {
                return Found::Directory;
            }
        }
        Found::Nothing
    }

    /// The response to a validated `GET` or `HEAD`: a file, a redirect, a 304, a range, or the site's 404.
    pub fn respond(&self, req: &Request) -> Response {
        if let Files::Unavailable(reason) = self.files {
            let mut body = Vec::with_capacity(reason.len() + 14);
            body.extend_from_slice(b"unavailable: ");
            body.extend_from_slice(reason.as_bytes());
            body.push(b'\n');
            return Response::new(
                status::SERVICE_UNAVAILABLE,
                Some("text/plain; charset=utf-8"),
                Body::Owned(body),
            );
        }
        let found = self.find(req.path);
        let shadowed = !matches!(found, Found::Nothing);
        if !shadowed || self.forced {
            for rule in self.redirects {
                if shadowed && !rule.force {
                    continue;
                }
                let mut caps = Captures::default();
                if rule_matches(rule.from, req.path, &mut caps) {
                    return self.apply(rule, &caps, req);
                }
            }
        }
        match found {
            Found::File(asset) => serve(&asset, req),
            Found::Directory => {
                let mut location = String::with_capacity(req.path.len() + 2);
                location.push_str(req.path);
                location.push('/');
                redirect(status::MOVED_PERMANENTLY, location, req.query)
            }
            Found::Nothing => self.not_found(req),
        }
    }

    fn apply(&self, rule: &Redirect, caps: &Captures<'_, '_>, req: &Request) -> Response {
        let encode = !matches!(rule.status, status::OK | status::NOT_FOUND);
        let mut target = String::new();
        if pattern::substitute(rule.to, caps, encode, &mut target).is_err() {
            return response::error(status::INTERNAL_ERROR);
        }
        match rule.status {
            status::OK => match self.lookup(&target) {
                Some(asset) => serve(&asset, req),
                None => self.not_found(req),
            },
            status::NOT_FOUND => match self.lookup(&target) {
                Some(page) => error_page(&page, status::NOT_FOUND, req),
                None => self.not_found(req),
            },
            code => {
                let query = if target.contains('?') {
                    None
                } else {
                    req.query
                };
                redirect(code, target, query)
            }
        }
    }

    fn not_found(&self, req: &Request) -> Response {
        match self.lookup(NOT_FOUND_PAGE) {
            Some(page) => error_page(&page, status::NOT_FOUND, req),
            None => response::error(status::NOT_FOUND),
        }
    }
}

/// `pattern` matches `path`, or `path` without its trailing slash (Netlify
/// normalizes it) when the pattern has none.
fn rule_matches<'p, 'a>(pattern: &'p str, path: &'a str, caps: &mut Captures<'p, 'a>) -> bool {
    if pattern::matches(pattern, path, caps) {
        return true;
    }
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() && !pattern.ends_with('/') => {
            pattern::matches(pattern, trimmed, caps)
        }
        _ => false,
    }
}

/// A redirect to `location` (with `?query` appended when given), empty body.
fn redirect(code: u16, mut location: String, query: Option<&str>) -> Response {
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    Response {
        location: Some(location),
        ..Response::new(code, None, Body::Empty)
    }
}

/// The representation of `asset` the request prefers: coding, body, ETag.
fn select(asset: &Asset, req: &Request) -> (Coding, &'static [u8], &'static str) {
    let mut available = [(Coding::Identity, 0usize); 3];
    let mut n = 0usize;
    for (coding, body, _) in asset.codings() {
        if let Some(slot) = available.get_mut(n) {
            *slot = (coding, body.len());
            n += 1;
        }
    }
    let chosen = req
        .accept_encoding
        .choose(available.get(..n).unwrap_or_default());
    asset
        .codings()
        .find(|(coding, _, _)| *coding == chosen)
        .unwrap_or((Coding::Identity, asset.body, asset.etag))
}

/// The fields every response about `asset` carries.
fn asset_response(asset: &Asset, code: u16, coding: Coding, body: Body) -> Response {
    Response {
        content_encoding: coding,
        vary_accept_encoding: asset.has_variants(),
        cache_control: asset.cache_control,
        headers: asset.headers,
        ..Response::new(code, Some(asset.content_type), body)
    }
}

/// `asset` with status 200, 206, 304 or 416.
fn serve(asset: &Asset, req: &Request) -> Response {
    let (coding, body, etag) = select(asset, req);
    let not_modified = req
        .if_none_match
        .is_some_and(|field| if_none_match_matches(field, etag));
    if not_modified {
        return Response {
            content_type: None,
            content_encoding: Coding::Identity,
            etag: Some(etag),
            ..asset_response(asset, status::NOT_MODIFIED, coding, Body::Empty)
        };
    }
    let ranges = match req.range {
        Some(value) if range::if_range_allows(req.if_range, etag) => {
            range::evaluate(value, body.len() as u64)
        }
        _ => Ranges::Ignore,
    };
    let complete = body.len() as u64;
    let mut resp = match ranges {
        Ranges::Ignore => asset_response(asset, status::OK, coding, Body::Static(body)),
        Ranges::Unsatisfiable => Response {
            content_range: Some(ContentRange::Unsatisfied { complete }),
            headers: asset.headers,
            ..response::error(status::RANGE_NOT_SATISFIABLE)
        },
        Ranges::Satisfiable(list) => match list.as_slice() {
            [one] => Response {
                content_range: Some(ContentRange::Bytes {
                    range: *one,
                    complete,
                }),
                ..asset_response(
                    asset,
                    status::PARTIAL_CONTENT,
                    coding,
                    Body::Static(one.slice(body)),
                )
            },
            many => {
                let boundary = etag.trim_matches('"');
                let parts = range::multipart_body(body, many, asset.content_type, boundary);
                Response {
                    multipart_boundary: Some(boundary),
                    ..asset_response(asset, status::PARTIAL_CONTENT, coding, parts)
                }
            }
        },
    };
    if resp.status != status::RANGE_NOT_SATISFIABLE {
        resp.etag = Some(etag);
    }
    resp.accept_ranges = true;
    resp
}

/// `page` as the body of an error status: negotiated coding, no validators, no
/// ranges (the page stands in for a resource that does not exist).
fn error_page(page: &Asset, code: u16, req: &Request) -> Response {
    let (coding, body, _) = select(page, req);
    asset_response(page, code, coding, Body::Static(body))
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
mod tests;
