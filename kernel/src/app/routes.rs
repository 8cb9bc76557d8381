//! The server's routes: `/health` and `/api/stats.json` first, then the site.
//! Query strings never reach routing (the `http` layer strips them).

use super::site::Site;
use super::stats::Stats;
use crate::http::response::status;
use crate::http::{Body, Handler, Request, Response};
use alloc::string::String;
use alloc::vec::Vec;

pub const HEALTH_PATH: &str = "/health";
pub const STATS_PATH: &str = "/api/stats.json";
/// `Cache-Control` of the dynamic endpoints.
pub const NO_STORE: &str = "no-store";

/// The handler the network layer gives each connection: borrowed per pass.
pub struct Routes<'a> {
    pub site: Site,
    /// Every response is counted here; `/api/stats.json` prints it.
    pub stats: &'a mut Stats,
    /// `Err(reason)` makes `/health` answer 503 `unhealthy: <reason>`. The main
    /// loop decides it (e.g. a device reset in progress).
    pub health: Result<(), &'a str>,
}

impl Handler for Routes<'_> {
    fn handle(&mut self, req: &Request) -> Response {
        match req.path {
            HEALTH_PATH => health(self.health),
            STATS_PATH => {
                let mut json = String::new();
                self.stats.write_json(&mut json);
                let mut r = Response::new(
                    status::OK,
                    Some("application/json"),
                    Body::Owned(json.into_bytes()),
                );
                r.cache_control = Some(NO_STORE);
                r
            }
            _ => self.site.respond(req),
        }
    }

    fn on_response(&mut self, status: u16, body_bytes: u64) {
        self.stats.record_response(status, body_bytes);
    }
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
    use crate::http::Method;
    use crate::http::test_support::parse_responses;
    use crate::http::{Action, Conn};

    fn get(path: &str) -> Request<'_> {
        Request {
            method: Method::Get,
            path,
            accept_gzip: false,
            if_none_match: None,
        }
    }

    #[test]
    fn health_ok_and_unhealthy() {
        let mut stats = Stats::new("t");
        let mut routes = Routes {
            site: Site::baked(),
            stats: &mut stats,
            health: Ok(()),
        };
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
    fn stats_json_and_counting() {
        let mut stats = Stats::new("t");
        stats.frames_in = 7;
        let mut routes = Routes {
            site: Site::baked(),
            stats: &mut stats,
            health: Ok(()),
        };
        let r = routes.handle(&get("/api/stats.json"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, Some("application/json"));
        assert_eq!(r.cache_control, Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(r.body.as_slice()).unwrap();
        assert_eq!(v["frames_in"], 7);
        routes.on_response(200, 10);
        routes.on_response(404, 3);
        assert_eq!(
            (stats.requests_total, stats.status_2xx, stats.status_4xx),
            (2, 1, 1)
        );
    }

    #[test]
    fn site_after_the_endpoints() {
        let mut stats = Stats::new("t");
        let mut routes = Routes {
            site: Site::baked(),
            stats: &mut stats,
            health: Ok(()),
        };
        assert_eq!(routes.handle(&get("/no-such-file")).status, 404);
        assert_eq!(routes.handle(&get("/health/")).status, 404);
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
        let mut stats = Stats::new("t");
        let mut conn = Conn::new();
        conn.open(0);
        let input = "GET /health?probe=1 HTTP/1.1\r\nHost: h\r\n\r\n\
                     HEAD /api/stats.json HTTP/1.1\r\nHost: h\r\n\r\n\
                     GET /large.bin HTTP/1.1\r\nHost: h\r\n\r\n\
                     GET /%6C%61rge.bin HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n\
                     GET /missing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let mut wire = Vec::new();
        let mut rest = input.as_bytes();
        let mut out = alloc::vec![0u8; 1400];
        for _ in 0..100_000 {
            let mut routes = Routes {
                site: Site::baked(),
                stats: &mut stats,
                health: Ok(()),
            };
            let took = conn.receive(rest, 0, &mut routes);
            rest = &rest[took..];
            let n = conn.transmit(&mut out, 0);
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
    }
}
