//! The application: what the server serves.
//!
//! - [`assets`]: the site baked in at build time (`build.rs` turns the site
//!   directory into a sorted table of path, body, gzip variant, content type, ETag);
//!   [`asset_meta`] holds the rules `build.rs` and the kernel share.
//! - [`site`]: serves that table: `GET`/`HEAD`, `If-None-Match` → 304, gzip
//!   negotiation, 404.
//! - [`routes`]: `/health` and `/api/stats.json` before the site; counts every
//!   response into [`stats`].
//! - [`stats`]: the counters behind `/api/stats.json`.
//!
//! The request/response interface is the one `http` defines, re-exported here:
//! `app` sits above `http` and implements its [`Handler`].
#![forbid(unsafe_code)]

pub mod asset_meta;
pub mod assets;
pub mod routes;
pub mod site;
pub mod stats;

pub use crate::http::{Body, Handler, Method, Request, Response};
pub use assets::Asset;
pub use routes::Routes;
pub use site::Site;
pub use stats::Stats;
