//! The HTTP server's socket pool: a fixed set of smoltcp TCP sockets listening
//! on port 80, each paired with one `http::Conn` for its whole life, and a few
//! more on the admin port (see [`Server::add_admin`]); each socket's listener
//! decides the [`Scope`] of routes it serves.
//!
//! The interface answers SYNs with SYN cookies, so a half-open connection
//! holds no socket; the ACK completing a handshake takes a socket in `Listen`.
//! When the pool runs short, the least valuable connection is closed to make
//! room (see [`eviction`](super::eviction)). Sockets are put back into
//! `Listen` as soon as their connection ends, including from TIME-WAIT
//! (smoltcp resets a TIME-WAIT socket on `listen`), so connection churn
//! cannot starve the pool for TIME-WAIT's 10 s.

use super::eviction::{self, Candidate, ReadProgress, Reason, Standing};
use super::phy::HTTP_PORT;
use super::sizing::SOCKET_RX_BUFFER;
use crate::app::access_log::{AccessLog, LineBuffer};
use crate::app::routes::{ProfileWriter, Scope, no_profile};
use crate::app::{RequestLog, Routes, Site, Stats};
use crate::http::conn::Activity;
use crate::http::{Action, Conn, Handler, Limits, Stamp};
use alloc::boxed::Box;
use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;

/// smoltcp aborts a connection whose sent data stays unacknowledged this long.
const SOCKET_TIMEOUT_S: u64 = 60;
/// Receive/transmit rounds per socket per pass (pipelined requests advance one
/// response per round); bounded so one connection cannot hold the loop.
const ROUNDS_PER_PASS: usize = 8;
/// Sockets kept free (listening, or closed and listening from the next pass)
/// by closing the least valuable connection when the pool runs short: a new
/// connection, the ACK of a SYN cookie, takes a listener at once, and a
/// socket freed now listens only from the next pass, so a burst of new
/// connections larger than the spares waits for its retransmissions. One per
/// 8 sockets of the pool, at least 1 and at most 8; none below 4 sockets,
/// where that would close connections no one is waiting for (there a refused
/// newcomer asks, see [`Server::service`]).
fn spare_listeners(pool: usize) -> usize {
    if pool < 4 { 0 } else { (pool / 8).clamp(1, 8) }
}
/// Connections closed per pass for newcomers that found no socket (each will
/// retry); bounded so a burst cannot empty the pool in one pass.
const MAX_OWED_PER_PASS: usize = 8;

struct Slot {
    handle: SocketHandle,
    conn: Conn,
    /// A connection is open on this socket (accepted and not yet released).
    active: bool,
    peer_closed: bool,
    closing: bool,
    port: u16,
    scope: Scope,
    /// How fast the peer takes our bytes (for choosing whom to close).
    reading: ReadProgress,
}

pub struct Server {
    slots: Vec<Slot>,
    site: Site,
    /// Recent requests (`/api/requests.json`), allocated once.
    requests: Box<RequestLog>,
    /// Writes `/debug/profile`; see [`Server::set_profile`].
    profile: ProfileWriter,
    access_log: AccessLog,
    /// Kept for the sockets [`Server::add_admin`] adds.
    stamp: Stamp,
    limits: Limits,
    tx_buffer: usize,
    /// `connections_refused` when last seen: each newcomer since found no
    /// socket, and is owed one when it retries.
    refused_seen: u64,
}

impl Server {
    pub fn new(
        sockets: &mut SocketSet<'static>,
        count: usize,
        tx_buffer: usize,
        limits: Limits,
    ) -> Server {
        let mut server = Server {
            slots: Vec::new(),
            site: Site::baked(),
            requests: Box::new(RequestLog::new()),
            profile: no_profile,
            access_log: AccessLog::off(),
            stamp: Stamp::default(),
            limits,
            tx_buffer,
            refused_seen: 0,
        };
        server.add_slots(sockets, count, HTTP_PORT, Scope::Public);
        log::info!(
            "http: {count} sockets on port {HTTP_PORT}, {} KiB send buffer each",
            tx_buffer >> 10
        );
        server
    }

    fn add_slots(
        &mut self,
        sockets: &mut SocketSet<'static>,
        count: usize,
        port: u16,
        scope: Scope,
    ) {
        for _ in 0..count {
            let rx = tcp::SocketBuffer::new(alloc::vec![0u8; SOCKET_RX_BUFFER]);
            let tx = tcp::SocketBuffer::new(alloc::vec![0u8; self.tx_buffer]);
            let mut socket = tcp::Socket::new(rx, tx);
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(Duration::from_secs(SOCKET_TIMEOUT_S)));
            let mut conn = Conn::with_limits(self.limits);
            conn.set_stamp(self.stamp);
            self.slots.push(Slot {
                handle: sockets.add(socket),
                conn,
                active: false,
                peer_closed: false,
                closing: false,
                port,
                scope,
                reading: ReadProgress::default(),
            });
        }
    }

    /// Serve `site` (a bundle, or one that answers 503) instead of the baked one.
    pub fn set_site(&mut self, site: Site) {
        self.site = site;
    }

    /// Serves the admin endpoints on `count` more sockets listening on `port`;
    /// port 80 keeps `/health` and the site. `None`: everything on port 80.
    pub fn add_admin(&mut self, sockets: &mut SocketSet<'static>, admin: Option<(u16, usize)>) {
        match admin {
            Some((port, count)) => {
                self.add_slots(sockets, count, port, Scope::Admin);
                log::info!(
                    "http: admin endpoints on port {port} ({count} sockets); port {HTTP_PORT} serves the site and /health"
                );
            }
            None => {
                for slot in &mut self.slots {
                    slot.scope = Scope::All;
                }
                log::warn!(
                    "http: admin=public: metrics, stats, status and debug endpoints on port {HTTP_PORT}, for local development only"
                );
            }
        }
    }

    /// Stamps every response with this clock and boot tag.
    pub fn set_stamp(&mut self, stamp: Stamp) {
        self.stamp = stamp;
        for slot in &mut self.slots {
            slot.conn.set_stamp(stamp);
        }
    }

    /// Writes every finished response to `log`.
    pub fn set_access_log(&mut self, log: AccessLog) {
        self.access_log = log;
    }

    /// The access-log lines waiting for their device.
    pub fn access_log_buffer(&mut self) -> &mut LineBuffer {
        self.access_log.buffer()
    }

    /// Serve the kernel's sampling profiler at `/debug/profile`.
    pub fn set_profile(&mut self, profile: ProfileWriter) {
        self.profile = profile;
    }

    /// No connection is open: nothing to serve and no deadline to watch.
    pub fn is_idle(&self) -> bool {
        !self.slots.iter().any(|s| s.active)
    }

    /// Earliest connection deadline (header, idle, send, close timeouts).
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| s.conn.next_deadline())
            .min()
    }

    /// Runs every connection: accept, read requests, write responses, apply
    /// deadlines, recycle finished sockets; counts into `stats`. Returns whether
    /// a connection still has work it could do now (unread pipelined requests,
    /// or output and send space), so the caller must not sleep.
    pub fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: u64,
        stats: &mut Stats,
        health: Result<(), &str>,
    ) -> bool {
        let mut busy = false;
        for slot in &mut self.slots {
            let mut routes = Routes {
                site: self.site,
                stats: &mut *stats,
                requests: &mut self.requests,
                health,
                profile: self.profile,
                access_log: &mut self.access_log,
                scope: slot.scope,
            };
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                State::Closed | State::TimeWait => {
                    if slot.active {
                        slot.active = false;
                        let active = &mut routes.stats.connections_active;
                        *active = active.saturating_sub(1);
                        if let Some(unfinished) = slot.conn.take_unfinished(now) {
                            routes.on_unfinished(&unfinished);
                        }
                    }
                    // From Closed this cannot fail; from TimeWait it resets the socket.
                    let _ = socket.listen(slot.port);
                    continue;
                }
                State::Listen | State::SynReceived => continue,
                _ => {}
            }
            if !slot.active {
                slot.active = true;
                slot.peer_closed = false;
                slot.closing = false;
                slot.reading = ReadProgress::open(now);
                routes.stats.connections_accepted += 1;
                routes.stats.connections_active += 1;
                // Connection ids count from 1, as `connections_accepted` does.
                slot.conn
                    .open_with_id(now, routes.stats.connections_accepted);
                slot.conn
                    .set_peer(socket.remote_endpoint().map(|e| e.addr.into()));
            }
            for _ in 0..ROUNDS_PER_PASS {
                let mut progress = 0;
                if socket.can_recv() {
                    progress += socket
                        .recv(|input| {
                            let taken = slot.conn.receive(input, now, &mut routes);
                            (taken, taken)
                        })
                        .unwrap_or(0);
                }
                let sent = send(socket, &mut slot.conn, now, &mut routes);
                slot.reading.wrote(sent);
                progress += sent;
                if progress == 0 {
                    break;
                }
            }
            if !slot.peer_closed && !socket.may_recv() && socket.recv_queue() == 0 {
                slot.peer_closed = true;
                slot.conn.peer_closed(now);
            }
            match slot.conn.poll(now) {
                Action::Keep => {}
                Action::Close => {
                    // A 408 queued by the header deadline goes out before the FIN.
                    let sent = send(socket, &mut slot.conn, now, &mut routes);
                    slot.reading.wrote(sent);
                    if !slot.closing {
                        slot.closing = true;
                        socket.close();
                    }
                }
                Action::Abort => socket.abort(),
            }
            while let Some(event) = slot.conn.take_event() {
                routes.on_event(event, slot.conn.current_exchange(now).as_ref());
            }
            slot.reading.update(socket.send_queue(), now);
            let output_ready = slot.conn.has_pending_output() && socket.can_send();
            let input_ready = socket.can_recv() && !slot.conn.has_pending_output() && !slot.closing;
            busy |= output_ready || input_ready;
        }
        let refused = stats.connections_refused;
        let owed = refused.saturating_sub(self.refused_seen);
        let owed = usize::try_from(owed)
            .unwrap_or(usize::MAX)
            .min(MAX_OWED_PER_PASS);
        self.refused_seen = refused;
        // Only the site's pool makes room: the admin sockets (added after it)
        // serve the operator, whose few connections are never the hoarders.
        let public = self
            .slots
            .iter()
            .take_while(|s| s.port == HTTP_PORT)
            .count();
        make_room(&mut self.slots[..public], sockets, stats, owed, now);
        busy
    }
}

/// Closes the least valuable connections (see [`eviction`]) until
/// [`spare_listeners`] sockets are free, or `owed` if more newcomers found
/// none since the last pass (they retry); counts each by reason. The socket is aborted (the peer gets a
/// RST on the next egress) and listens again on the next pass.
fn make_room(
    slots: &mut [Slot],
    sockets: &mut SocketSet<'static>,
    stats: &mut Stats,
    owed: usize,
    now: u64,
) {
    let free = slots
        .iter()
        .filter(|s| {
            let state = sockets.get::<tcp::Socket>(s.handle).state();
            matches!(state, State::Listen | State::Closed)
        })
        .count();
    let wanted = spare_listeners(slots.len()).max(owed);
    for _ in free..wanted {
        let candidates = slots.iter().map(|s| candidate(s, sockets));
        let Some((i, reason)) = eviction::choose(candidates, now) else {
            return;
        };
        let Some(slot) = slots.get_mut(i) else {
            return;
        };
        sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        let counter = match reason {
            Reason::Idle => &mut stats.evictions_idle,
            Reason::SlowHead => &mut stats.evictions_head,
            Reason::Lingering => &mut stats.evictions_lingering,
            Reason::StalledReader => &mut stats.evictions_stalled,
        };
        *counter = counter.saturating_add(1);
    }
}

/// How expendable a slot's connection is. A response, or the tail of one
/// not yet acknowledged (the connection may already be idle or closing on
/// our side), is judged by how fast its reader takes it.
fn candidate(slot: &Slot, sockets: &SocketSet<'static>) -> Candidate {
    let socket = sockets.get::<tcp::Socket>(slot.handle);
    let open = slot.active
        && !matches!(
            socket.state(),
            State::Listen | State::Closed | State::TimeWait
        );
    let (activity, since) = slot.conn.activity();
    let responding = activity == Activity::Respond || socket.send_queue() > 0;
    let (standing, since) = match activity {
        _ if !open => (Standing::Busy, since),
        _ if responding => (Standing::Responding, slot.reading.since()),
        Activity::Idle => (Standing::Idle, since),
        Activity::Opened => (Standing::Opened, since),
        Activity::Request => (Standing::Head, since),
        Activity::Closing => (Standing::Lingering, since),
        Activity::Respond => (Standing::Busy, since),
    };
    Candidate { standing, since }
}

/// Moves as much pending response as fits into the socket's send buffer.
fn send(socket: &mut tcp::Socket, conn: &mut Conn, now: u64, app: &mut dyn Handler) -> usize {
    if !socket.can_send() || !conn.has_pending_output() {
        return 0;
    }
    socket
        .send(|out| {
            let written = conn.transmit(out, now, app);
            (written, written)
        })
        .unwrap_or(0)
}
