//! The service pass: one iteration of the main loop's work, composed of the
//! network stack, the HTTP server, the app's counters and the access log's
//! sink. The guest's main loop (`boot`) and the host simulator drive the same
//! [`Service`]; everything the machine supplies (the clock, the interrupt
//! flag, interrupt counts, heap usage) comes in as arguments.
//!
//! API:
//! - [`Service::new`]`(stack, config, parts, sink, tick)` builds the socket
//!   pools over `stack` (any [`Nic`]; its ports may be fault wrappers) and
//!   the app from [`AppParts`].
//! - [`Service::pass`]`(now_ms, tick, from_irq, read)` runs one pass and says
//!   whether the caller may sleep until the next interrupt
//!   ([`PassOutcome::may_sleep`]) and whether `tick` moved
//!   ([`PassOutcome::ticked`]: the guest pets its watchdog then). `now_ms` is
//!   uptime in milliseconds, `tick` the timer tick count, `from_irq` whether
//!   the NIC interrupted since the last pass (the caller clears its flag),
//!   `read` supplies [`Readings`] for the stats.
//! - [`Service::is_configured`], [`Service::stats`], [`Service::stack`],
//!   [`Service::server`], [`Service::sink`] for the caller and the simulator.
//!
//! A pass: a quiet one (no interrupt, no open connection, nothing due in
//! smoltcp) does only the access-log pump and, when the tick moved, the
//! per-tick housekeeping; its stats are filled on the next full pass. A full
//! pass polls the stack, runs every HTTP connection, and polls again so the
//! responses just written leave in the same pass.

use crate::app::access_log::{AccessLog, LineBuffer};
use crate::app::routes::ProfileWriter;
use crate::app::{Site, Stats};
use crate::config::{ADMIN_SOCKETS, Admin, Config};
use crate::dev::port::Nic;
use crate::http::Stamp;
use crate::net::Stack;
use crate::net::server::Server;
use crate::net::sizing;
use smoltcp::time::Duration;

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

pub struct Service<D: Nic, S: LineSink> {
    stack: Stack<D>,
    server: Server,
    stats: Stats,
    sink: S,
    last_tick: u64,
    /// Quiet passes skip filling the stats; the next full pass does it first.
    stats_stale: bool,
}

impl<D: Nic, S: LineSink> Service<D, S> {
    /// Adds the HTTP sockets (public and admin, per `config`) to `stack`.
    /// `tick` is the current tick count: housekeeping first runs when it moves.
    pub fn new(mut stack: Stack<D>, config: &Config, parts: AppParts, sink: S, tick: u64) -> Self {
        let admin = match config.serving.admin {
            Admin::Port(port) => Some((port, ADMIN_SOCKETS)),
            Admin::Public => None,
        };
        let sockets = config.http_sockets + admin.map_or(0, |(_, n)| n);
        let mut server = Server::new(
            &mut stack.sockets,
            config.http_sockets,
            sizing::tx_buffer_for(parts.heap_free, sockets),
            config.http_limits(),
        );
        server.add_admin(&mut stack.sockets, admin);
        server.set_profile(parts.profile);
        server.set_site(parts.site);
        server.set_stamp(parts.stamp);
        if let Some(log) = parts.access_log {
            server.set_access_log(log);
        }
        Service {
            stack,
            server,
            stats: Stats::new(parts.version),
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
        // A pass with no connection open, nothing from the device and nothing
        // due in smoltcp does only the per-tick housekeeping below (ring
        // audit, tick kicks): full passes were most of an idle guest's host CPU.
        let quiet = !from_irq && self.server.is_idle() && !self.stack.has_work(now);
        let mut may_sleep = true;
        if !quiet {
            may_sleep = self.serve(now, from_irq, &read);
        }
        if self.sink.pump(self.server.access_log_buffer(), now) {
            may_sleep = false;
        }
        let ticked = tick != self.last_tick;
        if ticked {
            self.last_tick = tick;
            self.stack.tick_housekeeping(now);
        }
        self.stats.loop_iterations = self.stats.loop_iterations.saturating_add(1);
        if quiet {
            self.stats_stale = true;
        } else {
            self.fill_stats(now, &read);
        }
        PassOutcome { may_sleep, ticked }
    }

    /// The full pass: poll, run the connections, poll again. Returns whether
    /// the caller may sleep.
    fn serve(&mut self, now: u64, from_irq: bool, read: &impl Fn() -> Readings) -> bool {
        let mut worked = self.stack.poll(now);
        if worked && !from_irq {
            self.stats.timer_recoveries = self.stats.timer_recoveries.saturating_add(1);
        }
        if self.stats_stale {
            // /api/stats.json may be asked in this pass.
            self.fill_stats(now, read);
            self.stats_stale = false;
        }
        let health = self.stack.health();
        let busy = self
            .server
            .service(&mut self.stack.sockets, now, &mut self.stats, health);
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
        let stats = &mut self.stats;
        stats.uptime_ms = now;
        stats.interrupts_net = r.interrupts_net;
        stats.interrupts_ignored = r.interrupts_ignored;
        stats.interrupts_timer = r.interrupts_timer;
        self.stack.fill_stats(stats);
        if let Some((used, free)) = r.heap {
            stats.heap_used = used;
            stats.heap_free = free;
        }
    }

    /// The interface has an IPv4 address.
    pub fn is_configured(&self) -> bool {
        self.stack.is_configured()
    }

    /// The counters as of the last full pass.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn stack(&mut self) -> &mut Stack<D> {
        &mut self.stack
    }

    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    pub fn sink(&mut self) -> &mut S {
        &mut self.sink
    }
}

#[cfg(test)]
mod tests;
