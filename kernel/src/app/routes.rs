//! The server's routes: the built-in endpoints first, then the site. Query
//! strings never reach routing (the `http` layer strips them).
//!
//! | path                 | answer                                              |
//! |----------------------|-----------------------------------------------------|
//! | `/health`            | `ok` or 503 `unhealthy: <reason>`                   |
//! | `/api/stats.json`    | every counter of [`Stats`], JSON                    |
//! | `/metrics`           | the same counters, Prometheus text format 0.0.4     |
//! | `/api/requests.json` | the [`RequestLog`] ring of recent requests, JSON    |
//! | `/status`            | the built-in status page (`kernel/builtin/status.html`) |
//! | `/debug/profile`     | the profiler's recent RIP samples (`scripts/profile`) |
//!
//! Which of them a listener serves is its [`Scope`]: the public port serves
//! `/health` and the site, the admin port `/health` and the rest (anything
//! else is a plain 404 there), and `admin=public` puts everything on one port.
//!
//! Each response is counted into [`Stats`], recorded in the [`RequestLog`] and,
//! once sent (or given up), written to the [`AccessLog`].

use super::access_log::AccessLog;
use super::assets;
use super::requests::RequestLog;
use super::site::Site;
use super::stats::Stats;
use crate::http::response::status;
use crate::http::{Body, ConnEvent, Exchange, Handler, Request, Response};
use alloc::string::String;
use alloc::vec::Vec;

pub const HEALTH_PATH: &str = "/health";
pub const STATS_PATH: &str = "/api/stats.json";
pub const REQUESTS_PATH: &str = "/api/requests.json";
pub const METRICS_PATH: &str = "/metrics";
pub const STATUS_PATH: &str = "/status";
pub const PROFILE_PATH: &str = "/debug/profile";
/// The built-in asset `/status` serves.
pub const STATUS_ASSET: &str = "/status.html";
/// `Cache-Control` of the dynamic endpoints.
pub const NO_STORE: &str = "no-store";
/// What Prometheus expects of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/health` and the site.
    Public,
    /// `/health` and the observability endpoints; nothing of the site.
    Admin,
    /// Everything (`admin=public`, local development).
    All,
}

impl Scope {
    fn serves_admin(self) -> bool {
        self != Scope::Public
    }

    fn serves_site(self) -> bool {
        self != Scope::Admin
    }
}

/// The handler the network layer gives each connection: borrowed per pass.
pub struct Routes<'a> {
    pub site: Site,
    /// Every response is counted here; `/api/stats.json` prints it.
    pub stats: &'a mut Stats,
    /// Every response is recorded here; `/api/requests.json` prints it.
    pub requests: &'a mut RequestLog,
    /// `Err(reason)` makes `/health` answer 503 `unhealthy: <reason>`. The main
    /// loop decides it (e.g. a device reset in progress); a site that cannot
    /// serve (a refused bundle) makes it 503 too, with the site's reason.
    pub health: Result<(), &'a str>,
    /// Writes the `/debug/profile` text (the kernel's sampling profiler).
    pub profile: ProfileWriter,
    /// Every finished response is written here.
    pub access_log: &'a mut AccessLog,
    pub scope: Scope,
}

/// Writes the body of `/debug/profile`.
pub type ProfileWriter = fn(&mut String);

/// For builds without the profiler (host tests).
pub fn no_profile(out: &mut String) {
    out.push_str("# no profiler in this build\ntaken 0\nkept 0\n");
}

impl Handler for Routes<'_> {
    fn handle(&mut self, req: &Request) -> Response {
        let admin = self.scope.serves_admin();
        match req.path {
            HEALTH_PATH => health(self.site.health().and(self.health)),
            STATS_PATH | METRICS_PATH | REQUESTS_PATH | PROFILE_PATH | STATUS_PATH if !admin => {
                self.site.respond(req)
            }
            STATS_PATH => {
                let mut json = String::new();
                self.stats.write_json(&mut json);
                dynamic("application/json", json)
            }
            METRICS_PATH => {
                let mut text = String::new();
                self.stats.write_prometheus(&mut text);
                dynamic(METRICS_CONTENT_TYPE, text)
            }
            REQUESTS_PATH => {
                let mut json = String::new();
                self.requests.write_json(&mut json, self.stats.uptime_ms);
                dynamic("application/json", json)
            }
            PROFILE_PATH => {
                let mut text = String::new();
                (self.profile)(&mut text);
                dynamic("text/plain; charset=utf-8", text)
            }
            STATUS_PATH => Site::new(assets::BUILTIN).respond(&Request {
                path: STATUS_ASSET,
                ..*req
            }),
            _ if self.scope.serves_site() => self.site.respond(req),
            _ => crate::http::response::error(status::NOT_FOUND),
        }
    }

    fn on_response(&mut self, exchange: &Exchange<'_>) {
        self.stats.record(exchange);
        self.requests.record(exchange);
    }

    fn on_sent(&mut self, exchange: &Exchange<'_>) {
        self.requests.sent(exchange.conn, exchange.now);
        self.log(exchange, true);
    }
}

impl Routes<'_> {
    /// One event from `Conn::take_event`, with the connection's
    /// `current_exchange` (the 408 a request timeout queued, which `on_response`
    /// never saw).
    pub fn on_event(&mut self, event: ConnEvent, current: Option<&Exchange<'_>>) {
        self.stats.record_event(event);
        if let (ConnEvent::RequestTimeout, Some(e)) = (event, current) {
            self.requests.record(e);
        }
    }

    /// A connection ended (its socket closed or was reset) with this response
    /// still in flight (`Conn::take_unfinished`): it was dropped at `e.now`.
    pub fn on_unfinished(&mut self, e: &Exchange<'_>) {
        self.requests.dropped(e.conn, e.now);
        self.log(e, false);
    }

    fn log(&mut self, e: &Exchange<'_>, completed: bool) {
        let counter = match self.access_log.record(e, completed) {
            Some(true) => &mut self.stats.access_log_lines,
            Some(false) => &mut self.stats.access_log_dropped,
            None => return,
        };
        *counter = counter.saturating_add(1);
    }
}

/// A generated body, never cached.
fn dynamic(content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(
        status::OK,
        Some(content_type),
        Body::Owned(body.into_bytes()),
    );
    r.cache_control = Some(NO_STORE);
    r
}

/// `ok\n` (200) or `unhealthy: <reason>\n` (503), plain text, never cached.
pub fn health(state: Result<(), &str>) -> Response {
    let (code, body) = match state {
        Ok(()) => (status::OK, b"ok\n".to_vec()),
        Err(reason) => {
            let mut body = Vec::with_capacity(reason.len() + 12);
            body.extend_from_slice(b"unhealthy: ");
            body.extend_from_slice(reason.as_bytes());
            body.push(b'\n');
            (status::SERVICE_UNAVAILABLE, body)
        }
    };
    let mut r = Response::new(code, Some("text/plain; charset=utf-8"), Body::Owned(body));
    r.cache_control = Some(NO_STORE);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::requests::{self, State};
    use crate::http::test_support::parse_responses;
    use crate::http::{Action, Conn};

    fn get(path: &str) -> Request<'_> {
        Request::get(path)
    }

    fn routes<'a>(stats: &'a mut Stats, requests: &'a mut RequestLog) -> Routes<'a> {
        Routes {
            site: Site::baked(),
            stats,
            requests,
            health: Ok(()),
            profile: no_profile,
            access_log: alloc::boxed::Box::leak(alloc::boxed::Box::new(AccessLog::off())),
            scope: Scope::All,
        }
    }

    fn exchange(status: u16, body_bytes: u64, conn: u64) -> Exchange<'static> {
        Exchange {
            status,
            body_bytes,
            method: "GET",
            path: "/x",
            conn,
            received: 100,
            now: 105,
            ..Exchange::default()
        }
    }

    #[test]
    fn profile_route_serves_the_writer_text() {
        fn fake(out: &mut String) {
            out.push_str("hz 100\ntaken 2\nkept 2\n0x1\n0x2\n");
        }
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut routes = routes(&mut stats, &mut log);
        let r = routes.handle(&get("/debug/profile"));
        assert_eq!(r.status, 200);
        assert!(r.body.as_slice().starts_with(b"# no profiler"));
        routes.profile = fake;
        let r = routes.handle(&get("/debug/profile"));
        assert_eq!(r.body.as_slice(), b"hz 100\ntaken 2\nkept 2\n0x1\n0x2\n");
        assert_eq!(r.cache_control, Some("no-store"));
    }

    #[test]
    fn health_ok_and_unhealthy() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut routes = routes(&mut stats, &mut log);
        let r = routes.handle(&get("/health"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(r.cache_control, Some("no-store"));
        assert_eq!(r.content_type, Some("text/plain; charset=utf-8"));
        routes.health = Err("device reset");
        let r = routes.handle(&get("/health"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, &b"unhealthy: device reset\n"[..])
        );
    }

    #[test]
    fn an_unavailable_site_fails_health_and_site_paths_but_not_the_rest() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut routes = routes(&mut stats, &mut log);
        routes.site = Site::unavailable("site: bundle checksum mismatch");
        let r = routes.handle(&get("/health"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, &b"unhealthy: site: bundle checksum mismatch\n"[..])
        );
        assert_eq!(routes.handle(&get("/index.html")).status, 503);
        assert_eq!(routes.handle(&get("/api/stats.json")).status, 200);
        assert_eq!(routes.handle(&get("/metrics")).status, 200);
        assert_eq!(routes.handle(&get("/status")).status, 200);
    }

    #[test]
    fn stats_json_and_counting() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        stats.frames_in = 7;
        let mut routes = routes(&mut stats, &mut log);
        let r = routes.handle(&get("/api/stats.json"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, Some("application/json"));
        assert_eq!(r.cache_control, Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(r.body.as_slice()).unwrap();
        assert_eq!(v["frames_in"], 7);
        routes.on_response(&exchange(200, 10, 1));
        routes.on_response(&exchange(404, 3, 2));
        routes.on_sent(&Exchange {
            now: 120,
            ..exchange(200, 10, 1)
        });
        assert_eq!(
            (stats.requests_total, stats.status_2xx, stats.status_4xx),
            (2, 1, 1)
        );
        let states: Vec<_> = log.newest_first().map(|e| (e.status, e.state)).collect();
        assert_eq!(states, [(404, State::Sending), (200, State::Sent(120))]);
    }

    #[test]
    fn metrics_endpoint() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        stats.status_2xx = 5;
        stats.uptime_ms = 1500;
        let mut routes = routes(&mut stats, &mut log);
        let r = routes.handle(&get("/metrics"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.content_type,
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(r.cache_control, Some("no-store"));
        let text = core::str::from_utf8(r.body.as_slice()).unwrap();
        assert!(text.contains("\nunikernel_http_responses_total{class=\"2xx\"} 5\n"));
        assert!(text.contains("\nunikernel_uptime_seconds 1.500\n"));
        assert!(text.ends_with("unikernel_build_info{version=\"t\"} 1\n"));
    }

    #[test]
    fn requests_endpoint_and_events() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        stats.uptime_ms = 999;
        let mut routes = routes(&mut stats, &mut log);
        routes.on_response(&exchange(200, 10, 1));
        routes.on_sent(&Exchange {
            now: 107,
            ..exchange(200, 10, 1)
        });
        routes.on_response(&exchange(200, 10, 2));
        routes.on_unfinished(&Exchange {
            now: 130,
            ..exchange(200, 10, 2)
        });
        // A request timeout: counted, and its 408 recorded.
        let timed_out = Exchange {
            status: 408,
            method: "",
            path: "/slo",
            ..exchange(408, 20, 3)
        };
        routes.on_event(ConnEvent::RequestTimeout, Some(&timed_out));
        routes.on_event(ConnEvent::IdleTimeout, None);
        let r = routes.handle(&get("/api/requests.json"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, Some("application/json"));
        assert_eq!(r.cache_control, Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(r.body.as_slice()).unwrap();
        assert_eq!(v["capacity"], requests::CAPACITY);
        assert_eq!(
            (v["total"].as_u64(), v["uptime_ms"].as_u64()),
            (Some(3), Some(999))
        );
        let rows = v["requests"].as_array().unwrap();
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r["status"].as_u64().unwrap(),
                    r["state"].as_str().unwrap(),
                    r["duration_ms"].as_u64(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (408, "sending", None),
                (200, "dropped", Some(30)),
                (200, "sent", Some(7))
            ]
        );
        assert_eq!(rows[0]["path"], "/slo");
        assert_eq!((stats.requests_total, stats.status_4xx), (3, 1));
        assert_eq!((stats.timeouts_request, stats.timeouts_idle), (1, 1));
    }

    #[test]
    fn status_page_is_built_in() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut routes = routes(&mut stats, &mut log);
        let r = routes.handle(&get("/status"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, Some("text/html; charset=utf-8"));
        assert!(r.etag.is_some());
        let body = core::str::from_utf8(r.body.as_slice()).unwrap();
        assert!(body.contains("createElement(\"canvas\")"));
        // Revalidation and gzip work as for any asset.
        let etag = r.etag.unwrap();
        let r = routes.handle(&Request {
            if_none_match: Some(etag),
            ..get("/status")
        });
        assert_eq!(r.status, 304);
        let mut accept = crate::http::AcceptEncoding::default();
        accept.add(b"gzip");
        let r = routes.handle(&Request {
            accept_encoding: accept,
            ..get("/status")
        });
        assert_eq!(r.content_encoding, crate::http::Coding::Gzip);
        // Only `/status`: the built-in table is not a second site.
        assert_eq!(routes.handle(&get("/status.html")).status, {
            if routes.site.lookup("/status.html").is_some() {
                200
            } else {
                404
            }
        });
    }

    #[test]
    fn site_after_the_endpoints() {
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut routes = routes(&mut stats, &mut log);
        assert_eq!(routes.handle(&get("/no-such-file")).status, 404);
        assert_eq!(routes.handle(&get("/health/")).status, 404);
        assert_eq!(routes.handle(&get("/status/")).status, 404);
        assert_eq!(routes.handle(&get("/metrics/")).status, 404);
        if option_env!("UNIKERNEL_SITE_DIR").is_none() {
            assert_eq!(routes.handle(&get("/")).status, 200);
        }
    }

    /// The whole stack on the host: a connection, the routes, the baked site.
    #[test]
    fn end_to_end_through_a_connection() {
        if option_env!("UNIKERNEL_SITE_DIR").is_some() {
            return; // written for the default site
        }
        let (mut stats, mut log) = (Stats::new("t"), RequestLog::new());
        let mut conn = Conn::new();
        conn.open_with_id(0, 42);
        let input = "GET /health?probe=1 HTTP/1.1\r\nHost: h\r\n\r\n\
                     HEAD /api/stats.json HTTP/1.1\r\nHost: h\r\n\r\n\
                     GET /large.bin HTTP/1.1\r\nHost: h\r\n\r\n\
                     GET /%6C%61rge.bin HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n\
                     GET /missing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let mut wire = Vec::new();
        let mut rest = input.as_bytes();
        let mut out = alloc::vec![0u8; 1400];
        for step in 0..100_000u64 {
            let mut routes = routes(&mut stats, &mut log);
            let took = conn.receive(rest, step, &mut routes);
            rest = &rest[took..];
            let n = conn.transmit(&mut out, step, &mut routes);
            wire.extend_from_slice(&out[..n]);
            if took == 0 && n == 0 {
                break;
            }
        }
        assert_eq!(conn.poll(0), Action::Close);
        let w = parse_responses(&wire, &[false, true, false, false, false]);
        assert_eq!(w.len(), 5);
        assert_eq!((w[0].status, w[0].body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(w[1].status, 200);
        assert!(w[1].body.is_empty());
        assert_eq!(w[4].status, 404);
        assert_eq!(w[4].header("connection"), Some("close"));
        assert_eq!(
            (stats.requests_total, stats.status_2xx, stats.status_4xx),
            (5, 4, 1)
        );
        let large = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/site/large.bin")).unwrap();
        assert!(w[2].body == large && w[3].body == large);
        assert_eq!(
            w[2].header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(w[3].header("content-encoding"), None);
        // Every request is in the ring, oldest last, each sent, the large ones
        // over many passes (one step of the clock per pass).
        let rows: Vec<_> = log
            .newest_first()
            .map(|e| (e.method, e.path(), e.status, e.conn, e.state.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("GET", "/missing", 404, 42, "sent"),
                ("GET", "/large.bin", 200, 42, "sent"),
                ("GET", "/large.bin", 200, 42, "sent"),
                ("HEAD", "/api/stats.json", 200, 42, "sent"),
                ("GET", "/health", 200, 42, "sent"),
            ]
        );
        let large_entry = log.newest_first().nth(1).unwrap();
        assert_eq!(large_entry.body_bytes, large.len() as u64);
        assert!(large_entry.duration_ms().unwrap() as usize >= large.len() / 1400 - 1);
    }
}
