//! One HTTP connection: a state machine driven by the network layer.
//!
//! | phase   | waits for                        | deadline, counted from         | on expiry                 |
//! |---------|----------------------------------|--------------------------------|---------------------------|
//! | Idle    | the first byte of a request      | `idle_timeout_ms`, idle since  | `Close`, `IdleTimeout`    |
//! | Head    | the rest of the request head     | `header_timeout_ms`, 1st byte  | 408, `RequestTimeout`     |
//! | Body    | a small `GET` body (discarded)   | `header_timeout_ms`, 1st byte  | 408, `RequestTimeout`     |
//! | Respond | send space (`transmit`)          | `send_timeout_ms`, progress    | `Abort`, `SendTimeout`    |
//! | Closing | the socket's release (`open`)    | `close_timeout_ms`, close      | `Abort`, `CloseTimeout`   |
//!
//! Idle → Head on the first byte; Head → Body or Respond when the head is
//! complete, or straight to Respond with an error response (which always closes);
//! Respond → Idle once sent, or → Closing if the response closes the connection
//! (`Connection: close`, HTTP/1.0, any error, peer FIN).
//!
//! One request is in flight at a time: while its response is being sent,
//! [`Conn::receive`] takes no bytes, so pipelined requests wait in the socket (TCP
//! backpressure) and are answered in order. A request's bytes are only taken up to
//! its end, so the input buffer never holds a byte of the next request, and never
//! more than `max_head` bytes in all.
//!
//! How the network layer drives it, per socket and per pass:
//! 1. on accept, [`Conn::open_with_id`];
//! 2. repeat until neither makes progress (bounded by a per-pass budget):
//!    `socket.recv(|b| conn.receive(b, now, app))` if the socket has data, and
//!    `socket.send(|b| conn.transmit(b, now, app))` if `conn.has_pending_output()`;
//! 3. once the socket will deliver no more data (`!socket.may_recv()`, i.e. the peer
//!    sent FIN and every byte before it was taken), [`Conn::peer_closed`];
//! 4. [`Conn::poll`]: `Keep`, `Close` (call `socket.close()`: FIN after the queued
//!    bytes) or `Abort` (`socket.abort()`: RST now); then drain [`Conn::take_event`]
//!    into the stats, and run `poll` again no later than [`Conn::next_deadline`]
//!    (the guest's 10 ms tick wakes every pass; the simulator's clock jumps to the
//!    earliest deadline, `net::server::Server::next_deadline`). A header
//!    timeout makes `poll` queue a 408: if `has_pending_output()` turned true, run
//!    the `transmit` step again before sleeping.
//!
//! The handler hears of each response twice: [`Handler::on_response`] when it
//! starts (with the request's method, path, connection id and arrival time) and
//! [`Handler::on_sent`] when its last byte went into the socket.
//!
//! Once the socket is back to listening the `Conn` may be left as it is; the next
//! accept calls `open` again. `poll` keeps answering `Close` until the socket is
//! released, and `Abort` if that takes longer than `close_timeout_ms` (smoltcp does
//! not time out FIN-WAIT-2 or a peer that never acknowledges).

use super::limits::{Limits, RESPONSE_HEAD_CAP};
use super::logged::HeadSpans;
use super::parse::{self, LineScan, Outcome, Parsed, Reject};
use super::response::{self, Connection, status};
use super::stamp::{RequestId, Stamp};
use super::{Body, Exchange, Handler, Method, Millis, Response};
use alloc::boxed::Box;
use alloc::vec;
use core::net::IpAddr;

/// What the network layer should do with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Graceful close: FIN once the queued bytes are sent.
    Close,
    /// Reset now.
    Abort,
}

/// Something the stats should count; read with [`Conn::take_event`]. Each is
/// reported once, when `poll` acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A request head (or its small body) did not complete within
    /// `header_timeout_ms` of its first byte: a 408 was queued and the connection
    /// closes after it. `Handler::on_response` is not called for this 408: count it
    /// as a 4xx response here.
    RequestTimeout,
    /// Keep-alive connection without a request for `idle_timeout_ms`: closed, no
    /// response.
    IdleTimeout,
    /// A response made no progress for `send_timeout_ms`: aborted.
    SendTimeout,
    /// The socket was not released within `close_timeout_ms` of `Close`: aborted.
    CloseTimeout,
}

const EVENTS: [ConnEvent; 4] = [
    ConnEvent::RequestTimeout,
    ConnEvent::IdleTimeout,
    ConnEvent::SendTimeout,
    ConnEvent::CloseTimeout,
];

/// What a connection is doing, as [`Conn::activity`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Kept alive after a response, waiting for the next request.
    Idle,
    /// New, nothing received yet; `since` is when it opened.
    Opened,
    /// Receiving a request head (or a small body it announced); `since` is
    /// when its first byte came.
    Request,
    /// Sending a response.
    Respond,
    /// Closed by us, waiting for the socket to be released.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection (before the first `open`).
    Free,
    /// Open, waiting for the first byte of a request.
    Idle,
    /// Part of a request head is buffered.
    Head,
    /// Discarding a small request body; the response is ready and waits for it.
    Body {
        remaining: u64,
    },
    /// Sending a response.
    Respond,
    /// Answering `Close` until the socket is released.
    Closing,
    Aborted,
}

/// How to answer one request, decided when its head completes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    head_request: bool,
    close: bool,
    announce_keep_alive: bool,
    discard: u64,
}

impl Plan {
    fn for_request(p: &Parsed) -> Plan {
        Plan {
            head_request: p.request.method == super::Method::Head,
            close: p.close,
            announce_keep_alive: p.announce_keep_alive,
            discard: p.body_len,
        }
    }

    fn for_error(r: Reject) -> Plan {
        Plan {
            head_request: r.head,
            close: true,
            announce_keep_alive: false,
            discard: 0,
        }
    }
}

pub struct Conn {
    limits: Limits,
    phase: Phase,
    /// When the current phase's clock started: Idle since, first byte of the
    /// request (Head, Body), last send progress (Respond), close asked (Closing).
    since: Millis,
    input: Box<[u8]>,
    input_len: usize,
    scan: LineScan,
    /// Decoded request path (`max_uri` bytes).
    path: Box<[u8]>,
    /// Formatted response head.
    head: Box<[u8]>,
    head_len: usize,
    head_sent: usize,
    body: Body,
    /// Body bytes to send (0 for `HEAD` and bodiless statuses).
    body_len: usize,
    body_sent: usize,
    /// The response being prepared or sent answers a `HEAD`.
    head_request: bool,
    /// Close once the current response is sent.
    close_after: bool,
    /// `on_response` still owed for a response that waits for a request body.
    unreported: bool,
    /// A response was completed and the connection kept open for another.
    kept_alive: bool,
    events: [u32; EVENTS.len()],
    /// Given by `open_with_id`; reported with every response.
    id: u64,
    /// The response being prepared or sent, for [`Exchange`]: its status, and
    /// its request's method, path (`path[..path_len]`) and first-byte time.
    status: u16,
    method: &'static str,
    path_len: usize,
    received: Millis,
    /// Where the current request's logged parts are in `input`.
    spans: HeadSpans,
    peer: Option<IpAddr>,
    stamp: Stamp,
    /// Responses started on this connection; the current one's number.
    seq: u32,
    /// Body bytes of the current response handed to the socket.
    sent_bytes: u64,
    /// A response was reported (`on_response`, or a 408) and not yet sent.
    in_flight: bool,
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    /// A connection with the default [`Limits`]; allocates its buffers once.
    pub fn new() -> Conn {
        Conn::with_limits(Limits::default())
    }

    /// A connection with `limits` (after [`Limits::clamped`]).
    pub fn with_limits(limits: Limits) -> Conn {
        let limits = limits.clamped();
        Conn {
            limits,
            phase: Phase::Free,
            since: 0,
            input: vec![0; limits.max_head].into_boxed_slice(),
            input_len: 0,
            scan: LineScan::new(),
            path: vec![0; limits.max_uri].into_boxed_slice(),
            head: vec![0; RESPONSE_HEAD_CAP].into_boxed_slice(),
            head_len: 0,
            head_sent: 0,
            body: Body::Empty,
            body_len: 0,
            body_sent: 0,
            head_request: false,
            close_after: false,
            unreported: false,
            kept_alive: false,
            events: [0; EVENTS.len()],
            id: 0,
            status: 0,
            method: "",
            path_len: 0,
            received: 0,
            spans: HeadSpans::default(),
            peer: None,
            stamp: Stamp::default(),
            seq: 0,
            sent_bytes: 0,
            in_flight: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new connection was accepted on this socket: [`Conn::open_with_id`] with
    /// id 0.
    pub fn open(&mut self, now: Millis) {
        self.open_with_id(now, 0);
    }

    /// A new connection was accepted on this socket; `id` names it in every
    /// [`Exchange`] and [`Handler::on_sent`]. Pending events are kept.
    pub fn open_with_id(&mut self, now: Millis, id: u64) {
        self.id = id;
        self.clear_response();
        self.phase = Phase::Idle;
        self.since = now;
        self.input_len = 0;
        self.scan = LineScan::new();
        self.close_after = false;
        self.unreported = false;
        self.in_flight = false;
        self.seq = 0;
        self.peer = None;
        self.kept_alive = false;
    }

    /// The TCP peer of the connection just opened, reported in every
    /// [`Exchange`] (call after `open_with_id`).
    pub fn set_peer(&mut self, peer: Option<IpAddr>) {
        self.peer = peer;
    }

    /// How responses are stamped (`Date`, request ids); kept across connections.
    pub fn set_stamp(&mut self, stamp: Stamp) {
        self.stamp = stamp;
    }

    /// A response that was reported but whose connection ended before it was
    /// sent (reset, send timeout, peer gone): handed out once, so the caller
    /// can log it as given up at `now`.
    pub fn take_unfinished(&mut self, now: Millis) -> Option<Exchange<'_>> {
        if !core::mem::take(&mut self.in_flight) {
            return None;
        }
        Some(self.exchange(now))
    }

    /// The id given to the latest [`Conn::open_with_id`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The response being sent (after `poll` queued a 408, the timed-out
    /// request's), or `None` when no response is pending.
    pub fn current_exchange(&self, now: Millis) -> Option<Exchange<'_>> {
        (self.phase == Phase::Respond).then(|| self.exchange(now))
    }

    fn exchange(&self, now: Millis) -> Exchange<'_> {
        let path = self.path.get(..self.path_len).unwrap_or_default();
        Exchange {
            status: self.status,
            body_bytes: self.body_len as u64,
            method: self.method,
            // Both producers (`parse_head`'s decoded path, `note_rejected_line`'s
            // visible ASCII) write UTF-8.
            path: core::str::from_utf8(path).unwrap_or_default(),
            conn: self.id,
            received: self.received,
            now,
            request_id: self.request_id(),
            peer: self.peer,
            head: self.spans.resolve(&self.input),
            sent_bytes: self.sent_bytes,
        }
    }

    fn request_id(&self) -> RequestId {
        RequestId {
            boot: self.stamp.boot,
            conn: self.id,
            seq: self.seq,
        }
    }

    /// For a request rejected before it was parsed: keep what its request line
    /// says (known method, visible-ASCII target) for its [`Exchange`].
    fn note_rejected_line(&mut self) {
        let buffered = self.input.get(..self.input_len).unwrap_or_default();
        let (method, target) = parse::request_line_parts(buffered);
        let n = target.len().min(self.path.len());
        if let (Some(dst), Some(src)) = (self.path.get_mut(..n), target.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.method = method;
        self.path_len = n;
        self.spans = HeadSpans::scan(buffered, false);
    }

    /// Takes bytes the peer sent and returns how many were taken; the rest must
    /// stay in the socket and be offered again later. Takes nothing while a
    /// response is being sent (unless the connection will close after it: then
    /// everything is taken and dropped). Never panics, whatever the input.
    pub fn receive(&mut self, input: &[u8], now: Millis, app: &mut dyn Handler) -> usize {
        if self.phase == Phase::Free {
            self.open(now);
        }
        let mut taken = 0usize;
        loop {
            let rest = input.get(taken..).unwrap_or_default();
            match self.phase {
                Phase::Free | Phase::Closing | Phase::Aborted => return input.len(),
                Phase::Respond if self.close_after => return input.len(),
                Phase::Respond => return taken,
                Phase::Body { remaining } => {
                    let n = remaining.min(rest.len() as u64);
                    taken = taken.saturating_add(n as usize);
                    let remaining = remaining - n;
                    if remaining > 0 {
                        self.phase = Phase::Body { remaining };
                        return taken;
                    }
                    self.phase = Phase::Respond;
                    self.since = now;
                    if core::mem::take(&mut self.unreported) {
                        self.in_flight = true;
                        app.on_response(&self.exchange(now));
                    }
                }
                Phase::Idle | Phase::Head => {
                    if rest.is_empty() {
                        return taken;
                    }
                    taken = taken.saturating_add(self.read_head(rest, now, app));
                    if self.phase == Phase::Head {
                        return taken;
                    }
                }
            }
        }
    }

    /// Buffers bytes of a request head and acts on it once it is complete or
    /// breaks a limit; returns the bytes taken.
    fn read_head(&mut self, rest: &[u8], now: Millis, app: &mut dyn Handler) -> usize {
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.since = now;
            self.input_len = 0;
            self.scan = LineScan::new();
        }
        let start = self.input_len;
        let n = rest.len().min(self.input.len().saturating_sub(start));
        let end = start.saturating_add(n);
        let (Some(dst), Some(src)) = (self.input.get_mut(start..end), rest.get(..n)) else {
            return 0;
        };
        dst.copy_from_slice(src);
        self.input_len = end;
        let buffered = self.input.get(..end).unwrap_or_default();
        let line_was_done = self.scan.is_done();
        if let Err(reject) = self.scan.advance(buffered, &self.limits) {
            self.note_rejected_line();
            self.start_error(reject, now, Some(app));
            return n;
        }
        let may_complete = src.contains(&b'\n') || !line_was_done;
        if self.scan.is_done() && may_complete {
            if let Some(line) = self.input.get_mut(..end) {
                parse::normalize_minor_version(line);
            }
            let buffered = self.input.get(..end).unwrap_or_default();
            match parse::parse_head(buffered, &mut self.path, &self.limits) {
                Outcome::Partial => {}
                Outcome::Reject(reject) => {
                    self.note_rejected_line();
                    self.start_error(reject, now, Some(app));
                    return n;
                }
                Outcome::Complete(parsed) => {
                    // The head ends inside this call's bytes (it was incomplete
                    // before them); what follows it stays in the socket.
                    let used = parsed.head_len.saturating_sub(start).min(n);
                    let plan = Plan::for_request(&parsed);
                    self.spans =
                        HeadSpans::scan(buffered.get(..parsed.head_len).unwrap_or_default(), true);
                    let response = app.handle(&parsed.request);
                    self.method = match parsed.request.method {
                        Method::Get => "GET",
                        Method::Head => "HEAD",
                    };
                    self.path_len = parsed.request.path.len();
                    self.start_response(response, plan, now, Some(app));
                    return used;
                }
            }
        }
        if self.input_len >= self.input.len() {
            let reject = Reject {
                status: status::HEADERS_TOO_LARGE,
                head: self.scan.head_method(),
            };
            self.note_rejected_line();
            self.start_error(reject, now, Some(app));
        }
        n
    }

    fn start_error(&mut self, reject: Reject, now: Millis, app: Option<&mut dyn Handler>) {
        self.start_response(
            response::error(reject.status),
            Plan::for_error(reject),
            now,
            app,
        );
    }

    /// Formats the head and queues the body; then waits for the request body, if
    /// any, or starts sending.
    fn start_response(
        &mut self,
        resp: Response,
        plan: Plan,
        now: Millis,
        app: Option<&mut dyn Handler>,
    ) {
        let content_length = response::has_body(resp.status).then_some(resp.body.len() as u64);
        let send_body = response::has_body(resp.status) && !plan.head_request;
        let connection = if plan.close {
            Connection::Close
        } else if plan.announce_keep_alive {
            Connection::KeepAlive
        } else {
            Connection::Default
        };
        // The request clock started at its first byte (Head, Body phases).
        self.received = self.since;
        self.clear_response();
        self.input_len = 0;
        self.scan = LineScan::new();
        self.head_request = plan.head_request;
        self.seq = self.seq.wrapping_add(1);
        self.sent_bytes = 0;
        let stamp = response::HeadStamp {
            request_id: self.request_id(),
            unix_secs: self.stamp.unix_secs(now),
        };
        let written = response::write_head_stamped(
            &mut self.head,
            &resp,
            content_length,
            connection,
            Some(&stamp),
        );
        let status = match written {
            Some(len) => {
                self.head_len = len;
                if send_body {
                    self.body = resp.body;
                }
                self.body_len = self.body.len();
                self.close_after = plan.close;
                resp.status
            }
            None => {
                let fallback = response::FALLBACK_500;
                let len = fallback.len().min(self.head.len());
                if let (Some(dst), Some(src)) = (self.head.get_mut(..len), fallback.get(..len)) {
                    dst.copy_from_slice(src);
                }
                self.head_len = len;
                self.close_after = true;
                status::INTERNAL_ERROR
            }
        };
        self.status = status;
        if plan.discard > 0 && !self.close_after {
            // The request clock (`since`) keeps running until the body is in.
            self.phase = Phase::Body {
                remaining: plan.discard,
            };
            self.unreported = true;
        } else {
            self.phase = Phase::Respond;
            self.since = now;
            // The 408 of a header timeout (no `app`) is reported as an event.
            self.in_flight = true;
            if let Some(app) = app {
                app.on_response(&self.exchange(now));
            }
        }
    }

    /// Copies pending response bytes into `out` (the socket's free send space) and
    /// returns how many; 0 when nothing is pending. Tells `app` when the last
    /// byte of a response went out ([`Handler::on_sent`]).
    pub fn transmit(&mut self, out: &mut [u8], now: Millis, app: &mut dyn Handler) -> usize {
        if self.phase != Phase::Respond {
            return 0;
        }
        let mut n = copy_from(
            self.head.get(..self.head_len).unwrap_or_default(),
            &mut self.head_sent,
            out,
        );
        if self.head_sent >= self.head_len {
            let room = self.body_len.saturating_sub(self.body_sent);
            let rest = out.get_mut(n..).unwrap_or_default();
            let rest_len = rest.len().min(room);
            let rest = rest.get_mut(..rest_len).unwrap_or_default();
            let copied = self.body.copy_at(self.body_sent, rest);
            self.body_sent = self.body_sent.saturating_add(copied);
            self.sent_bytes = self.sent_bytes.saturating_add(copied as u64);
            n = n.saturating_add(copied);
        }
        if n > 0 {
            self.since = now;
        }
        if self.head_sent >= self.head_len && self.body_sent >= self.body_len {
            self.in_flight = false;
            app.on_sent(&self.exchange(now));
            self.clear_response();
            if self.close_after {
                self.close(now);
            } else {
                self.phase = Phase::Idle;
                self.since = now;
                self.kept_alive = true;
            }
        }
        n
    }

    /// The peer sent FIN and every byte before it was taken: finish the response in
    /// progress, if any, then close. A partial request is dropped without answer.
    pub fn peer_closed(&mut self, now: Millis) {
        match self.phase {
            Phase::Idle | Phase::Head | Phase::Body { .. } => self.close(now),
            Phase::Respond => self.close_after = true,
            Phase::Free | Phase::Closing | Phase::Aborted => {}
        }
    }

    /// Applies the deadlines and says what to do with the socket.
    pub fn poll(&mut self, now: Millis) -> Action {
        let elapsed = now.saturating_sub(self.since);
        match self.phase {
            Phase::Free => Action::Keep,
            Phase::Idle if elapsed >= self.limits.idle_timeout_ms => {
                self.record(ConnEvent::IdleTimeout);
                self.close(now);
                Action::Close
            }
            Phase::Head | Phase::Body { .. } if elapsed >= self.limits.header_timeout_ms => {
                self.record(ConnEvent::RequestTimeout);
                let head = if self.phase == Phase::Head {
                    self.scan.head_method()
                } else {
                    self.head_request
                };
                let reject = Reject {
                    status: status::REQUEST_TIMEOUT,
                    head,
                };
                self.unreported = false;
                if self.phase == Phase::Head {
                    self.note_rejected_line();
                }
                self.start_error(reject, now, None);
                Action::Keep
            }
            Phase::Respond if elapsed >= self.limits.send_timeout_ms => {
                self.record(ConnEvent::SendTimeout);
                self.abort();
                Action::Abort
            }
            Phase::Idle | Phase::Head | Phase::Body { .. } | Phase::Respond => Action::Keep,
            Phase::Closing if elapsed >= self.limits.close_timeout_ms => {
                self.record(ConnEvent::CloseTimeout);
                self.abort();
                Action::Abort
            }
            Phase::Closing => Action::Close,
            Phase::Aborted => Action::Abort,
        }
    }

    /// When `poll` next has something to do (absent: nothing until new input).
    /// `Aborted` has no deadline: `poll` already answers `Abort`.
    pub fn next_deadline(&self) -> Option<Millis> {
        let timeout = match self.phase {
            Phase::Free | Phase::Aborted => return None,
            Phase::Idle => self.limits.idle_timeout_ms,
            Phase::Head | Phase::Body { .. } => self.limits.header_timeout_ms,
            Phase::Respond => self.limits.send_timeout_ms,
            Phase::Closing => self.limits.close_timeout_ms,
        };
        Some(self.since.saturating_add(timeout))
    }

    /// What the connection is doing and since when, for choosing which one
    /// to close when the pool is full.
    pub fn activity(&self) -> (Activity, Millis) {
        let activity = match self.phase {
            Phase::Free => Activity::Idle,
            Phase::Idle if self.kept_alive => Activity::Idle,
            Phase::Idle => Activity::Opened,
            Phase::Head | Phase::Body { .. } => Activity::Request,
            Phase::Respond => Activity::Respond,
            Phase::Closing | Phase::Aborted => Activity::Closing,
        };
        (activity, self.since)
    }

    /// Response bytes wait for `transmit`.
    pub fn has_pending_output(&self) -> bool {
        self.phase == Phase::Respond
    }

    /// The oldest event not yet taken (each kind is counted, none is lost).
    pub fn take_event(&mut self) -> Option<ConnEvent> {
        let i = self.events.iter().position(|&n| n > 0)?;
        let count = self.events.get_mut(i)?;
        *count -= 1;
        EVENTS.get(i).copied()
    }

    fn record(&mut self, event: ConnEvent) {
        if let Some(i) = EVENTS.iter().position(|&e| e == event)
            && let Some(count) = self.events.get_mut(i)
        {
            *count = count.saturating_add(1);
        }
    }

    fn close(&mut self, now: Millis) {
        self.clear_response();
        self.input_len = 0;
        self.phase = Phase::Closing;
        self.since = now;
    }

    fn abort(&mut self) {
        self.clear_response();
        self.input_len = 0;
        self.phase = Phase::Aborted;
    }

    fn clear_response(&mut self) {
        self.head_len = 0;
        self.head_sent = 0;
        self.body = Body::Empty;
        self.body_len = 0;
        self.body_sent = 0;
    }
}

/// Copies `src[*sent..]` into `out` as far as it fits, advancing `*sent`.
fn copy_from(src: &[u8], sent: &mut usize, out: &mut [u8]) -> usize {
    let n = super::copy_slice_at(src, *sent, out);
    *sent = sent.saturating_add(n);
    n
}

#[cfg(test)]
mod tests;
