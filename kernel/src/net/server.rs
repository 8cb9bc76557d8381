//! The HTTP server's socket pools: fixed sets of smoltcp TCP sockets, one
//! [`Pool`] per listening port, each socket paired with one `http::Conn` for
//! its whole life. The application above is an [`App`]: per pass it hands
//! each connection a handler for its pool's scope (what that listener
//! serves), and hears the events only the network layer sees.
//!
//! The interface answers SYNs with SYN cookies, so a half-open connection
//! holds no socket; the ACK completing a handshake takes a socket in `Listen`.
//! When a pool that [makes room](Pool::makes_room) runs short, its least
//! valuable connection is closed (see [`eviction`]). Sockets
//! are put back into `Listen` as soon as their connection ends, including from
//! TIME-WAIT (smoltcp resets a TIME-WAIT socket on `listen`), so connection
//! churn cannot starve a pool for TIME-WAIT's 10 s.

use super::eviction::{self, Candidate, ReadProgress, Reason, Standing};
use super::sizing::SOCKET_RX_BUFFER;
use crate::http::conn::Activity;
use crate::http::{Action, Conn, ConnEvent, Exchange, Handler, Limits, Stamp};
use alloc::vec::Vec;
use core::ops::Range;
use smoltcp::iface::SocketHandle;
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;

/// The application's side of a connection: http's [`Handler`] plus what only
/// the network layer sees.
pub trait ConnHandler: Handler {
    /// One event from `Conn::take_event`, with the connection's
    /// `current_exchange` (the 408 a request timeout queued).
    fn on_event(&mut self, event: ConnEvent, current: Option<&Exchange<'_>>);
    /// The connection ended with this response still in flight
    /// (`Conn::take_unfinished`).
    fn on_unfinished(&mut self, exchange: &Exchange<'_>);
}

/// The application the server serves.
pub trait App {
    /// What a listener serves, chosen by whoever builds the pools.
    type Scope: Copy;
    type Handler<'a>: ConnHandler
    where
        Self: 'a;
    /// The handler for one connection of a pool of `scope` in this pass;
    /// `counters` are the server's as of now.
    fn handler(&mut self, scope: Self::Scope, counters: &ServerCounters) -> Self::Handler<'_>;
}

/// One listening port's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool<S> {
    pub port: u16,
    pub sockets: usize,
    pub scope: S,
    /// Close the least valuable connection when the pool runs short. The
    /// site's pool does; the admin pool serves the operator, whose few
    /// connections are never the hoarders.
    pub makes_room: bool,
}

/// What the server counts (the composition copies them into the app's stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Connections accepted; also the id of the latest.
    pub connections_accepted: u64,
    pub connections_active: u64,
    pub evictions_idle: u64,
    pub evictions_head: u64,
    pub evictions_lingering: u64,
    pub evictions_stalled: u64,
}

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
    /// Index of its [`Pool`].
    pool: usize,
    /// How fast the peer takes our bytes (for choosing whom to close).
    reading: ReadProgress,
}

pub struct Server<S> {
    slots: Vec<Slot>,
    /// Each pool and the range of `slots` it holds.
    pools: Vec<(Pool<S>, Range<usize>)>,
    counters: ServerCounters,
    /// `refused` when last seen: each newcomer since found no socket, and
    /// is owed one when it retries.
    refused_seen: u64,
}

impl<S: Copy> Server<S> {
    /// Adds `pools`' sockets to `sockets`, each with `tx_buffer` bytes to send
    /// and a `Conn` with `limits` stamping responses with `stamp`.
    pub fn new(
        sockets: &mut SocketSet<'static>,
        pools: &[Pool<S>],
        tx_buffer: usize,
        limits: Limits,
        stamp: Stamp,
    ) -> Server<S> {
        let mut slots = Vec::new();
        let mut ranges = Vec::new();
        for (index, pool) in pools.iter().enumerate() {
            let start = slots.len();
            for _ in 0..pool.sockets {
                let rx = tcp::SocketBuffer::new(alloc::vec![0u8; SOCKET_RX_BUFFER]);
                let tx = tcp::SocketBuffer::new(alloc::vec![0u8; tx_buffer]);
                let mut socket = tcp::Socket::new(rx, tx);
                socket.set_nagle_enabled(false);
                socket.set_timeout(Some(Duration::from_secs(SOCKET_TIMEOUT_S)));
                let mut conn = Conn::with_limits(limits);
                conn.set_stamp(stamp);
                slots.push(Slot {
                    handle: sockets.add(socket),
                    conn,
                    active: false,
                    peer_closed: false,
                    closing: false,
                    pool: index,
                    reading: ReadProgress::default(),
                });
            }
            ranges.push((*pool, start..slots.len()));
        }
        Server {
            slots,
            pools: ranges,
            counters: ServerCounters::default(),
            refused_seen: 0,
        }
    }

    /// No connection is open: nothing to serve and no deadline to watch.
    pub fn is_idle(&self) -> bool {
        !self.slots.iter().any(|s| s.active)
    }

    /// Earliest connection deadline (header, idle, send, close timeouts): a
    /// caller with a clock of its own (the simulator) may sleep until then;
    /// the guest's tick checks them every 10 ms anyway.
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| s.conn.next_deadline())
            .min()
    }

    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }

    /// Runs every connection: accept, read requests, write responses, apply
    /// deadlines, recycle finished sockets, make room in the pools that do.
    /// `refused` is how many newcomers so far found no socket (they retry).
    /// Returns whether a connection still has work it could do now (unread
    /// pipelined requests, or output and send space), so the caller must
    /// not sleep.
    pub fn service<A: App<Scope = S>>(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: u64,
        app: &mut A,
        refused: u64,
    ) -> bool {
        let mut busy = false;
        for slot in &mut self.slots {
            let Some((pool, _)) = self.pools.get(slot.pool) else {
                continue;
            };
            let (port, scope) = (pool.port, pool.scope);
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                State::Closed | State::TimeWait => {
                    if slot.active {
                        slot.active = false;
                        let active = &mut self.counters.connections_active;
                        *active = active.saturating_sub(1);
                        if let Some(unfinished) = slot.conn.take_unfinished(now) {
                            app.handler(scope, &self.counters)
                                .on_unfinished(&unfinished);
                        }
                    }
                    // From Closed this cannot fail; from TimeWait it resets the socket.
                    let _ = socket.listen(port);
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
                let c = &mut self.counters;
                c.connections_accepted = c.connections_accepted.saturating_add(1);
                c.connections_active = c.connections_active.saturating_add(1);
                // Connection ids count from 1, as `connections_accepted` does.
                slot.conn.open_with_id(now, c.connections_accepted);
                slot.conn
                    .set_peer(socket.remote_endpoint().map(|e| e.addr.into()));
            }
            let mut handler = app.handler(scope, &self.counters);
            for _ in 0..ROUNDS_PER_PASS {
                let mut progress = 0;
                if socket.can_recv() {
                    progress += socket
                        .recv(|input| {
                            let taken = slot.conn.receive(input, now, &mut handler);
                            (taken, taken)
                        })
                        .unwrap_or(0);
                }
                let sent = send(socket, &mut slot.conn, now, &mut handler);
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
                    let sent = send(socket, &mut slot.conn, now, &mut handler);
                    slot.reading.wrote(sent);
                    if !slot.closing {
                        slot.closing = true;
                        socket.close();
                    }
                }
                Action::Abort => socket.abort(),
            }
            while let Some(event) = slot.conn.take_event() {
                handler.on_event(event, slot.conn.current_exchange(now).as_ref());
            }
            slot.reading.update(socket.send_queue(), now);
            let output_ready = slot.conn.has_pending_output() && socket.can_send();
            let input_ready = socket.can_recv() && !slot.conn.has_pending_output() && !slot.closing;
            busy |= output_ready || input_ready;
        }
        let owed = refused.saturating_sub(self.refused_seen);
        let owed = usize::try_from(owed)
            .unwrap_or(usize::MAX)
            .min(MAX_OWED_PER_PASS);
        self.refused_seen = refused;
        for (pool, range) in &self.pools {
            if !pool.makes_room {
                continue;
            }
            if let Some(slots) = self.slots.get_mut(range.clone()) {
                make_room(slots, sockets, &mut self.counters, owed, now);
            }
        }
        busy
    }
}

/// Closes the least valuable connections (see [`eviction`]) until
/// [`spare_listeners`] sockets are free, or `owed` if more newcomers found
/// none since the last pass (they retry); counts each by reason. The socket
/// is aborted (the peer gets a RST on the next egress) and listens again on
/// the next pass.
fn make_room(
    slots: &mut [Slot],
    sockets: &mut SocketSet<'static>,
    counters: &mut ServerCounters,
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
            Reason::Idle => &mut counters.evictions_idle,
            Reason::SlowHead => &mut counters.evictions_head,
            Reason::Lingering => &mut counters.evictions_lingering,
            Reason::StalledReader => &mut counters.evictions_stalled,
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
