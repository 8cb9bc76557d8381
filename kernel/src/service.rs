//! The service pass: one iteration of the main loop's work, composed of the
//! network stack, the HTTP server, the app's counters and the access log's
//! sink. The guest's main loop (`boot`) and the host simulator drive the same
//! [`Service`]; everything the machine supplies (the clock, the interrupt
//! flag, interrupt counts, heap usage) comes in as arguments.
//!
//! API:
//! - [`Service::new`]`(stack, config, parts, sink, tick)` builds the socket
//!   pools over `stack` (any [`Nic`]; its ports may be fault wrappers) and
//!   the app, a [`Web`], from [`AppParts`].
//! - [`Service::with_app`]`(.., wrap)`: the same, serving `wrap(web)`, any
//!   [`Serves`] app around that [`Web`] (a test composition's wrapper that
//!   changes how the handler answers; the guest serves the [`Web`] itself).
//! - [`Service::pass`]`(now_ms, tick, from_irq, read)` runs one pass and says
//!   whether the caller may sleep until the next interrupt
//!   ([`PassOutcome::may_sleep`]) and whether `tick` moved
//!   ([`PassOutcome::ticked`]: the guest pets its watchdog then). `now_ms` is
//!   uptime in milliseconds, `tick` the timer tick count, `from_irq` whether
//!   the NIC interrupted since the last pass (the caller clears its flag),
//!   `read` supplies [`Readings`] for the stats.
//! - [`Service::next_deadline`]`(now_ms)`: when a pass next has work with no
//!   new input (a connection deadline or a smoltcp timer), for a caller with
//!   a clock of its own.
//! - [`Service::is_configured`], [`Service::stats`],
//!   [`Service::access_log_buffer`], [`Service::stack`] (and through it the
//!   [`Nic`], its health and counters), [`Service::server`],
//!   [`Service::sink`] for the caller and the simulator.
//!
//! The app side lives in `web`: the state each connection's handler borrows,
//! and the one place where the network layer's counters are copied into the
//! app's [`Stats`].
//!
//! A pass: a quiet one (no interrupt, no open connection, nothing due in
//! smoltcp) does only the access-log pump and, when the tick moved, the
//! per-tick housekeeping; its stats are filled on the next full pass. A full
//! pass polls the stack, runs every HTTP connection, and polls again so the
//! responses just written leave in the same pass.
#![forbid(unsafe_code)]

use crate::app::access_log::{AccessLog, LineBuffer};
use crate::app::routes::{ProfileWriter, Scope};
use crate::app::{RequestLog, Site, Stats};
use crate::config::{ADMIN_SOCKETS, Admin, Config};
use crate::dev::port::Nic;
use crate::http::Stamp;
use crate::net::server::{App, Pool, Server};
use crate::net::{HTTP_PORT, Health, Stack, sizing};
use alloc::boxed::Box;
use smoltcp::time::Duration;
use web::{copy_server_counters, copy_stack_counters};

pub use web::Web;

/// The app a [`Service`] serves: its [`Web`] (site, counters, logs), as it
/// is or inside a wrapper whose handler answers differently. The service
/// reaches the counters and the access log through [`Serves::web`].
pub trait Serves: App<Scope = Scope> {
    fn web(&self) -> &Web;
    fn web_mut(&mut self) -> &mut Web;
}

impl Serves for Web {
    fn web(&self) -> &Web {
        self
    }
    fn web_mut(&mut self) -> &mut Web {
        self
    }
}

/// Where the access log's lines go (serial, a virtio console, nowhere).
pub trait LineSink {
    /// Moves waiting lines towards their device without waiting for it.
    /// Returns whether lines remain that it could take now (no sleep then).
    fn pump(&mut self, lines: &mut LineBuffer, now_ms: u64) -> bool;
}

/// A sink that drops nothing and takes nothing: the lines stay in the buffer
/// (for tests and the simulator, which read them there).
pub struct KeepLines;

impl LineSink for KeepLines {
    fn pump(&mut self, _lines: &mut LineBuffer, _now_ms: u64) -> bool {
        false
    }
}

/// What the machine reports into the stats on each full pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    pub interrupts_net: u64,
    pub interrupts_ignored: u64,
    pub interrupts_timer: u64,
    /// Heap bytes used and free, if the heap is up.
    pub heap: Option<(u64, u64)>,
}

/// The app's parts that the composition supplies.
pub struct AppParts {
    /// The bundle from the loader, or the baked site.
    pub site: Site,
    pub stamp: Stamp,
    /// Writes `/debug/profile`.
    pub profile: ProfileWriter,
    /// `None`: no access log.
    pub access_log: Option<AccessLog>,
    /// Heap free now, to size the sockets' send buffers.
    pub heap_free: usize,
    /// The version `/api/stats.json` reports.
    pub version: &'static str,
}

/// What a pass tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOutcome {
    /// Nothing can progress before the next interrupt (NIC or tick).
    pub may_sleep: bool,
    /// The tick count moved since the last pass (housekeeping ran).
    pub ticked: bool,
}

pub struct Service<D: Nic, S: LineSink, A: Serves = Web> {
    stack: Stack<D>,
    server: Server<Scope>,
    app: A,
    sink: S,
    last_tick: u64,
    /// Quiet passes skip filling the stats; the next full pass does it first.
    stats_stale: bool,
}

impl<D: Nic, S: LineSink> Service<D, S> {
    /// Adds the HTTP sockets (the site's pool, and the admin pool if
    /// `config` wants one) to `stack`. `tick` is the current tick count:
    /// housekeeping first runs when it moves.
    pub fn new(stack: Stack<D>, config: &Config, parts: AppParts, sink: S, tick: u64) -> Self {
        Service::with_app(stack, config, parts, sink, tick, |web| web)
    }
}

impl<D: Nic, S: LineSink, A: Serves> Service<D, S, A> {
    /// [`Service::new`], serving `wrap` of the [`Web`] built from `parts`.
    pub fn with_app(
        mut stack: Stack<D>,
        config: &Config,
        parts: AppParts,
        sink: S,
        tick: u64,
        wrap: impl FnOnce(Web) -> A,
    ) -> Self {
        let site_pool = Pool {
            port: HTTP_PORT,
            sockets: config.http_sockets,
            scope: Scope::Public,
            makes_room: true,
        };
        let pools = match config.serving.admin {
            Admin::Port(port) => [
                site_pool,
                Pool {
                    port,
                    sockets: ADMIN_SOCKETS,
                    scope: Scope::Admin,
                    makes_room: false,
                },
            ]
            .to_vec(),
            Admin::Public => [Pool {
                scope: Scope::All,
                ..site_pool
            }]
            .to_vec(),
        };
        let sockets = pools.iter().map(|p| p.sockets).sum();
        let tx_buffer = sizing::tx_buffer_for(parts.heap_free, sockets);
        let server = Server::new(
            &mut stack.sockets,
            &pools,
            tx_buffer,
            config.http_limits(),
            parts.stamp,
        );
        log::info!(
            "http: {} sockets on port {HTTP_PORT}, {} KiB send buffer each",
            config.http_sockets,
            tx_buffer >> 10
        );
        match config.serving.admin {
            Admin::Port(port) => log::info!(
                "http: admin endpoints on port {port} ({ADMIN_SOCKETS} sockets); port {HTTP_PORT} serves the site and /health"
            ),
            Admin::Public => log::warn!(
                "http: admin=public: metrics, stats, status and debug endpoints on port {HTTP_PORT}, for local development only"
            ),
        }
        let web = Web {
            site: parts.site,
            stats: Stats::new(parts.version),
            requests: Box::new(RequestLog::new()),
            profile: parts.profile,
            access_log: parts.access_log.unwrap_or_else(AccessLog::off),
            health: Err(Health::NoAddress),
        };
        Service {
            stack,
            server,
            app: wrap(web),
            sink,
            last_tick: tick,
            stats_stale: false,
        }
    }

    /// One pass; see the module doc.
    pub fn pass(
        &mut self,
        now: u64,
        tick: u64,
        from_irq: bool,
        read: impl Fn() -> Readings,
    ) -> PassOutcome {
        let quiet = self.is_quiet(now, from_irq);
        let mut may_sleep = true;
        if !quiet {
            may_sleep = self.serve(now, from_irq, &read);
        }
        if self.sink.pump(self.app.web_mut().access_log.buffer(), now) {
            may_sleep = false;
        }
        let ticked = tick != self.last_tick;
        if ticked {
            self.last_tick = tick;
            self.stack.tick_housekeeping(now);
        }
        let stats = &mut self.app.web_mut().stats;
        stats.loop_iterations = stats.loop_iterations.saturating_add(1);
        if quiet {
            self.stats_stale = true;
        } else {
            self.fill_stats(now, &read);
        }
        PassOutcome { may_sleep, ticked }
    }

    /// No interrupt, no connection open, nothing from the device and nothing
    /// due in smoltcp: the pass does only the per-tick housekeeping (ring
    /// audit, tick kicks), since full passes were most of an idle guest's
    /// host CPU.
    fn is_quiet(&mut self, now: u64, from_irq: bool) -> bool {
        !from_irq && self.server.is_idle() && !self.stack.has_work(now)
    }

    /// The full pass: poll, run the connections, poll again. Returns whether
    /// the caller may sleep.
    fn serve(&mut self, now: u64, from_irq: bool, read: &impl Fn() -> Readings) -> bool {
        let mut worked = self.stack.poll(now);
        if worked && !from_irq {
            let stats = &mut self.app.web_mut().stats;
            stats.timer_recoveries = stats.timer_recoveries.saturating_add(1);
        }
        if self.stats_stale {
            // /api/stats.json may be asked in this pass.
            self.fill_stats(now, read);
            self.stats_stale = false;
        }
        self.app.web_mut().health = self.stack.health();
        let refused = self.stack.refused();
        let busy = self
            .server
            .service(&mut self.stack.sockets, now, &mut self.app, refused);
        worked |= self.stack.poll(now);
        // smoltcp wants another pass at once while a socket has data to send,
        // even if the TX ring is full: then the completion interrupt (or the
        // tick) is what can make progress, so sleep until it comes.
        !busy
            && !worked
            && (self.stack.tx_blocked() || self.stack.poll_delay(now) != Some(Duration::ZERO))
    }

    fn fill_stats(&mut self, now: u64, read: &impl Fn() -> Readings) {
        let r = read();
        let stats = &mut self.app.web_mut().stats;
        stats.uptime_ms = now;
        stats.interrupts_net = r.interrupts_net;
        stats.interrupts_ignored = r.interrupts_ignored;
        stats.interrupts_timer = r.interrupts_timer;
        copy_stack_counters(stats, &self.stack.counters());
        copy_server_counters(stats, self.server.counters());
        if let Some((used, free)) = r.heap {
            stats.heap_used = used;
            stats.heap_free = free;
        }
    }

    /// When the next pass has something to do with no new input: the
    /// earliest connection deadline or smoltcp timer (`None`: nothing until
    /// input arrives). For a caller with a clock of its own (the simulator);
    /// the guest's 100 Hz tick bounds its sleep anyway.
    pub fn next_deadline(&mut self, now: u64) -> Option<u64> {
        let smoltcp = self
            .stack
            .poll_delay(now)
            .map(|d| now.saturating_add(d.total_millis()));
        match (self.server.next_deadline(), smoltcp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The interface has an IPv4 address.
    pub fn is_configured(&self) -> bool {
        self.stack.is_configured()
    }

    /// The counters as of the last full pass.
    pub fn stats(&self) -> &Stats {
        &self.app.web().stats
    }

    /// The access-log lines not yet taken by the sink.
    pub fn access_log_buffer(&mut self) -> &mut LineBuffer {
        self.app.web_mut().access_log.buffer()
    }

    pub fn stack(&mut self) -> &mut Stack<D> {
        &mut self.stack
    }

    pub fn server(&mut self) -> &mut Server<Scope> {
        &mut self.server
    }

    pub fn sink(&mut self) -> &mut S {
        &mut self.sink
    }
}

#[cfg(test)]
mod tests;
mod web;
