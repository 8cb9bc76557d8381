//! The HTTP server's socket pool: a fixed set of smoltcp TCP sockets listening
//! on port 80, each paired with one `http::Conn` for its whole life.
//!
//! smoltcp has no listen backlog: a SYN that finds no socket in `Listen` gets a
//! RST, which is how an exhausted pool refuses connections fast (and counts
//! them). Sockets are put back into `Listen` as soon as their connection ends,
//! including from TIME-WAIT (smoltcp resets a TIME-WAIT socket on `listen`), so
//! connection churn cannot starve the pool for TIME-WAIT's 10 s.

use super::phy::HTTP_PORT;
use super::sizing::SOCKET_RX_BUFFER;
use crate::app::routes::{ProfileWriter, no_profile};
use crate::app::{RequestLog, Routes, Site, Stats};
use crate::http::{Action, Conn, Handler, Limits};
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

struct Slot {
    handle: SocketHandle,
    conn: Conn,
    /// A connection is open on this socket (accepted and not yet released).
    active: bool,
    peer_closed: bool,
    closing: bool,
}

pub struct Server {
    slots: Vec<Slot>,
    site: Site,
    /// Recent requests (`/api/requests.json`), allocated once.
    requests: Box<RequestLog>,
    /// Writes `/debug/profile`; see [`Server::set_profile`].
    profile: ProfileWriter,
}

impl Server {
    pub fn new(
        sockets: &mut SocketSet<'static>,
        count: usize,
        tx_buffer: usize,
        limits: Limits,
    ) -> Server {
        let slots = (0..count)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(alloc::vec![0u8; SOCKET_RX_BUFFER]);
                let tx = tcp::SocketBuffer::new(alloc::vec![0u8; tx_buffer]);
                let mut socket = tcp::Socket::new(rx, tx);
                socket.set_nagle_enabled(false);
                socket.set_timeout(Some(Duration::from_secs(SOCKET_TIMEOUT_S)));
                Slot {
                    handle: sockets.add(socket),
                    conn: Conn::with_limits(limits),
                    active: false,
                    peer_closed: false,
                    closing: false,
                }
            })
            .collect();
        log::info!(
            "http: {count} sockets on port {HTTP_PORT}, {} KiB send buffer each",
            tx_buffer >> 10
        );
        Server {
            slots,
            site: Site::baked(),
            requests: Box::new(RequestLog::new()),
            profile: no_profile,
        }
    }

    /// Serve `site` (a bundle, or one that answers 503) instead of the baked one.
    pub fn set_site(&mut self, site: Site) {
        self.site = site;
    }

    /// Serve the kernel's sampling profiler at `/debug/profile`.
    pub fn set_profile(&mut self, profile: ProfileWriter) {
        self.profile = profile;
    }

    /// Sockets ready to accept a connection.
    /// No connection is open: nothing to serve and no deadline to watch.
    pub fn is_idle(&self) -> bool {
        !self.slots.iter().any(|s| s.active)
    }

    pub fn listening(&self, sockets: &SocketSet<'static>) -> u64 {
        self.slots
            .iter()
            .filter(|s| sockets.get::<tcp::Socket>(s.handle).state() == State::Listen)
            .count() as u64
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
        let mut routes = Routes {
            site: self.site,
            stats,
            requests: &mut self.requests,
            health,
            profile: self.profile,
        };
        let mut busy = false;
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                State::Closed | State::TimeWait => {
                    if slot.active {
                        slot.active = false;
                        let active = &mut routes.stats.connections_active;
                        *active = active.saturating_sub(1);
                        routes.on_closed(slot.conn.id(), now);
                    }
                    // From Closed this cannot fail; from TimeWait it resets the socket.
                    let _ = socket.listen(HTTP_PORT);
                    continue;
                }
                State::Listen | State::SynReceived => continue,
                _ => {}
            }
            if !slot.active {
                slot.active = true;
                slot.peer_closed = false;
                slot.closing = false;
                routes.stats.connections_accepted += 1;
                routes.stats.connections_active += 1;
                // Connection ids count from 1, as `connections_accepted` does.
                slot.conn
                    .open_with_id(now, routes.stats.connections_accepted);
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
                progress += send(socket, &mut slot.conn, now, &mut routes);
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
                    send(socket, &mut slot.conn, now, &mut routes);
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
            let output_ready = slot.conn.has_pending_output() && socket.can_send();
            let input_ready = socket.can_recv() && !slot.conn.has_pending_output() && !slot.closing;
            busy |= output_ready || input_ready;
        }
        busy
    }
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
