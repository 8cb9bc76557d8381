//! The application: what the server serves.
//!
//! - [`assets`]: the site baked in at build time (`build.rs` turns the site
//!   directory into a sorted table of path, body, gzip variant, content type, ETag),
//!   and the built-in pages (`kernel/builtin/`, baked the same way whatever the
//!   site); [`asset_meta`] holds the rules `build.rs` and the kernel share.
//! - [`bundle`]: a site bundle read in place (layout in [`bundle_format`],
//!   shared with the image builder that writes it), every byte checked first.
//! - [`site`]: serves the baked table or a bundle: `GET`/`HEAD`, `If-None-Match` → 304,
//!   brotli/gzip negotiation, byte ranges, directory redirects, the site's
//!   `_redirects` rules and its `404.html`.
//! - [`site_rules`] and [`pattern`]: the `_headers` / `_redirects` syntax,
//!   parsed by `build.rs` (which includes both files) and matched here.
//! - [`routes`]: `/health`, `/api/stats.json`, `/metrics`,
//!   `/api/requests.json` and `/status` before the site; counts every response
//!   into [`stats`] and records it in [`requests`].
//! - [`stats`]: the counters behind `/api/stats.json` and `/metrics` (one list
//!   declares both).
//! - [`requests`]: the fixed ring of recent requests behind `/api/requests.json`.
//!
//! The request/response interface is the one `http` defines, re-exported here:
//! `app` sits above `http` and implements its [`Handler`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access_log;
pub mod asset_meta;
pub mod assets;
pub mod bundle;
pub mod bundle_format;
pub mod pattern;
pub mod requests;
pub mod routes;
pub mod site;
pub mod site_rules;
pub mod stats;

#[cfg(test)]
mod site_build_tests;

pub use crate::http::{Body, Exchange, Handler, Method, Request, Response};
pub use assets::Asset;
pub use requests::RequestLog;
pub use routes::Routes;
pub use site::Site;
pub use stats::Stats;
