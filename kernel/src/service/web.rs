//! The app as the network layer serves it: the state each connection's
//! handler borrows for a pass, and the copies of the network layer's
//! counters into the app's stats (made here and nowhere else).

use crate::app::access_log::AccessLog;
use crate::app::routes::{ProfileWriter, Scope};
use crate::app::{RequestLog, Routes, Site, Stats};
use crate::http::{ConnEvent, Exchange};
use crate::net::server::{App, ConnHandler, ServerCounters};
use crate::net::{Health, StackCounters};
use alloc::boxed::Box;

/// The app's state each connection's handler borrows for a pass: the
/// site's routes over it are the handler ([`App`]).
pub struct Web {
    pub(super) site: Site,
    pub(super) stats: Stats,
    /// Recent requests (`/api/requests.json`), allocated once.
    pub(super) requests: Box<RequestLog>,
    pub(super) profile: ProfileWriter,
    pub(super) access_log: AccessLog,
    /// The network path's health as of this pass, for `/health`.
    pub(super) health: Result<(), Health>,
}

impl App for Web {
    type Scope = Scope;
    type Handler<'a> = Routes<'a>;

    fn handler(&mut self, scope: Scope, counters: &ServerCounters) -> Routes<'_> {
        // /api/stats.json shows the connection asking.
        copy_server_counters(&mut self.stats, counters);
        Routes {
            site: self.site,
            stats: &mut self.stats,
            requests: &mut self.requests,
            health: self.health.map_err(Health::as_str),
            profile: self.profile,
            access_log: &mut self.access_log,
            scope,
        }
    }
}

impl ConnHandler for Routes<'_> {
    fn on_event(&mut self, event: ConnEvent, current: Option<&Exchange<'_>>) {
        Routes::on_event(self, event, current)
    }

    fn on_unfinished(&mut self, exchange: &Exchange<'_>) {
        Routes::on_unfinished(self, exchange)
    }
}

pub(super) fn copy_server_counters(stats: &mut Stats, c: &ServerCounters) {
    stats.connections_accepted = c.connections_accepted;
    stats.connections_active = c.connections_active;
    stats.evictions_idle = c.evictions_idle;
    stats.evictions_head = c.evictions_head;
    stats.evictions_lingering = c.evictions_lingering;
    stats.evictions_stalled = c.evictions_stalled;
}

pub(super) fn copy_stack_counters(stats: &mut Stats, c: &StackCounters) {
    stats.frames_in = c.frames_in;
    stats.frames_out = c.frames_out;
    stats.bytes_in = c.bytes_in;
    stats.bytes_out = c.bytes_out;
    stats.tx_full_events = c.tx_full_events;
    stats.rx_dropped = c.rx_dropped;
    stats.rx_checksum_errors = c.rx_checksum_errors;
    stats.rx_wraps = c.rx_wraps;
    stats.tx_wraps = c.tx_wraps;
    stats.rx_avail_idx = c.rx_avail_idx;
    stats.rx_used_idx = c.rx_used_idx;
    stats.tx_avail_idx = c.tx_avail_idx;
    stats.tx_used_idx = c.tx_used_idx;
    stats.device_resets = c.device_resets;
    stats.tx_large_buffer_bytes = c.tx_large_buffer_bytes;
    stats.syn_cookies_sent = c.syn_cookies_sent;
    stats.syn_cookies_valid = c.syn_cookies_valid;
    stats.syn_cookies_invalid = c.syn_cookies_invalid;
    stats.connections_refused = c.connections_refused;
}
