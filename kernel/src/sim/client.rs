//! The clients: one smoltcp interface (the "host" at 10.0.2.2) with a TCP
//! socket per session, each session a script of requests and a manner of
//! talking (sequential keep-alive, pipelined, slow reader, slowloris,
//! abandoning mid-body, idle). Every byte received is checked against the
//! oracle as it arrives.

use super::oracle::{self, Matcher, Spec};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec::Vec;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
pub const GUEST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
/// A request with no response byte for this long, while the network and the
/// device behaved throughout, is a stall. The server's own deadlines are
/// 10 to 30 s; a healthy exchange takes milliseconds.
pub const STALL_MS: u64 = 45_000;
/// A session without progress for this long gives up (only reachable while
/// the network or device misbehaved, or the stall check fires first).
const GIVE_UP_MS: u64 = 600_000;
const RX_BUFFER: usize = 64 * 1024;
const TX_BUFFER: usize = 16 * 1024;
/// A slow reader's window: small, so the server's send buffer backs up.
const SLOW_RX_BUFFER: usize = 2048;

/// How a session talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manner {
    /// One request at a time.
    Sequential,
    /// Every request at once.
    Pipelined,
    /// Reads `chunk` bytes every `every_ms`.
    SlowReader { chunk: usize, every_ms: u64 },
    /// Sends its (only) request one byte every `every_ms`, never finishing
    /// before the server's header deadline: it must get 408.
    Slowloris { every_ms: u64 },
    /// Aborts after `after` bytes of its first response.
    Abandon { after: usize },
    /// Connects and says nothing: the server closes it when idle.
    Silent,
}

/// A session to open.
#[derive(Debug, Clone)]
pub struct Plan {
    pub manner: Manner,
    pub requests: Vec<Spec>,
}

struct Session {
    handle: SocketHandle,
    manner: Manner,
    specs: VecDeque<Spec>,
    waiting: VecDeque<Matcher>,
    outbox: Vec<u8>,
    sent: usize,
    opened_at: u64,
    last_progress: u64,
    next_action: u64,
    /// Bytes of the current response received (Abandon).
    received: usize,
    /// We closed our side (all answered) or aborted.
    finished: bool,
    established: bool,
}

/// What the clients counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions_opened: u64,
    pub sessions_established: u64,
    pub requests_sent: u64,
    /// Complete responses, each byte-identical to the site's.
    pub responses: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    pub body_bytes: u64,
    /// Requests left unanswered because the server closed or reset the
    /// connection (a deliberate close: eviction, deadline, device trouble).
    pub closed_unanswered: u64,
    /// Sessions the client abandoned on purpose.
    pub abandoned: u64,
    /// Sessions that gave up waiting (network or device trouble).
    pub gave_up: u64,
    pub connect_failures: u64,
}

/// The frames between the interface and the wire.
#[derive(Default)]
pub struct Port {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = std::vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Port {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

pub struct Clients {
    iface: Interface,
    pub port: Port,
    sockets: SocketSet<'static>,
    sessions: Vec<Session>,
    next_port: u16,
    pub counts: Counts,
}

fn instant(ms: u64) -> Instant {
    Instant::from_millis(ms as i64)
}

impl Clients {
    pub fn new(now: u64, seed: u64) -> Clients {
        let mut port = Port::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut port, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24));
        });
        Clients {
            iface,
            port,
            sockets: SocketSet::new(Vec::new()),
            sessions: Vec::new(),
            next_port: 20_000,
            counts: Counts::default(),
        }
    }

    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    /// Opens a session now.
    pub fn open(&mut self, now: u64, plan: Plan) {
        let rx = match plan.manner {
            Manner::SlowReader { .. } => SLOW_RX_BUFFER,
            _ => RX_BUFFER,
        };
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(std::vec![0u8; rx]),
            tcp::SocketBuffer::new(std::vec![0u8; TX_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        let local = self.next_port;
        self.next_port = if self.next_port >= 60_000 {
            20_000
        } else {
            self.next_port + 1
        };
        if let Err(e) = socket.connect(self.iface.context(), (GUEST_IP, 80), local) {
            panic!("client connect: {e:?}");
        }
        let handle = self.sockets.add(socket);
        self.counts.sessions_opened += 1;
        self.sessions.push(Session {
            handle,
            manner: plan.manner,
            specs: plan.requests.into(),
            waiting: VecDeque::new(),
            outbox: Vec::new(),
            sent: 0,
            opened_at: now,
            last_progress: now,
            next_action: now,
            received: 0,
            finished: false,
            established: false,
        });
    }

    /// Runs the interface and every session at `now`. `calm_since`: since
    /// when the network and the device have behaved (for the stall check);
    /// `steady_since`: the same but for VM pauses.
    pub fn step(&mut self, now: u64, calm_since: u64, steady_since: u64) -> Result<(), String> {
        self.iface
            .poll(instant(now), &mut self.port, &mut self.sockets);
        let mut i = 0;
        while i < self.sessions.len() {
            let gone = drive(
                &mut self.sessions[i],
                &mut self.sockets,
                now,
                calm_since,
                steady_since,
                &mut self.counts,
            )?;
            if gone {
                let s = self.sessions.swap_remove(i);
                self.sockets.remove(s.handle);
            } else {
                i += 1;
            }
        }
        self.iface
            .poll(instant(now), &mut self.port, &mut self.sockets);
        Ok(())
    }

    /// When the clients next need a step (a timer of the interface or of a
    /// session), if ever.
    pub fn next_wakeup(&mut self, now: u64) -> Option<u64> {
        let iface = self
            .iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d: Duration| now + d.total_millis());
        let sessions = self
            .sessions
            .iter()
            .filter(|s| !s.finished)
            .map(|s| match s.manner {
                Manner::SlowReader { .. } | Manner::Slowloris { .. } => s.next_action.max(now),
                _ => s.last_progress + GIVE_UP_MS,
            })
            .min();
        [iface, sessions].into_iter().flatten().min()
    }

    /// No session open and nothing to send.
    pub fn is_idle(&self) -> bool {
        self.sessions.is_empty() && self.port.tx.is_empty()
    }
}

fn count_status(counts: &mut Counts, status: u16) {
    counts.responses += 1;
    match status {
        200..=299 => counts.responses_2xx += 1,
        300..=399 => counts.responses_3xx += 1,
        400..=499 => counts.responses_4xx += 1,
        _ => counts.responses_5xx += 1,
    }
}

/// One session's turn; returns whether it is over (its socket can go).
fn drive(
    s: &mut Session,
    sockets: &mut SocketSet<'static>,
    now: u64,
    calm_since: u64,
    steady_since: u64,
    counts: &mut Counts,
) -> Result<bool, String> {
    let socket = sockets.get_mut::<tcp::Socket>(s.handle);
    let state = socket.state();
    if matches!(state, State::Closed | State::TimeWait) {
        if !s.established {
            counts.connect_failures += 1;
        }
        if !s.finished && !s.waiting.is_empty() {
            counts.closed_unanswered += s.waiting.len() as u64;
        }
        return Ok(true);
    }
    if s.finished {
        // Our FIN is out; the socket lingers until the peer's FIN or a reset.
        if now.saturating_sub(s.last_progress) > GIVE_UP_MS {
            socket.abort();
        }
        return Ok(false);
    }
    if !s.established && socket.may_send() {
        s.established = true;
        counts.sessions_established += 1;
        s.last_progress = now;
    }
    let mut ended = false;
    if s.established {
        // What to send next.
        if s.outbox.len() == s.sent {
            let take = match s.manner {
                Manner::Pipelined => s.specs.len(),
                Manner::Silent => 0,
                _ if s.waiting.is_empty() => 1.min(s.specs.len()),
                _ => 0,
            };
            for _ in 0..take {
                if let Some(spec) = s.specs.pop_front() {
                    s.outbox.extend_from_slice(&spec.render());
                    s.waiting.push_back(Matcher::new(oracle::expected(&spec)));
                    counts.requests_sent += 1;
                }
            }
        }
        if s.sent < s.outbox.len() && socket.can_send() {
            let end = match s.manner {
                Manner::Slowloris { every_ms } => {
                    if now < s.next_action {
                        s.sent
                    } else {
                        s.next_action = now + every_ms;
                        // Never the last byte: the head stays incomplete.
                        (s.sent + 1).min(s.outbox.len() - 1)
                    }
                }
                _ => s.outbox.len(),
            };
            if end > s.sent {
                let n = socket.send_slice(&s.outbox[s.sent..end]).unwrap_or(0);
                s.sent += n;
            }
        }
        // What came back.
        let limit = match s.manner {
            Manner::SlowReader { chunk, every_ms } => {
                if now >= s.next_action {
                    s.next_action = now + every_ms;
                    chunk
                } else {
                    0
                }
            }
            _ => usize::MAX,
        };
        let mut budget = limit;
        while budget > 0 && socket.can_recv() {
            let mut buf = [0u8; 4096];
            let want = budget.min(buf.len());
            let n = socket.recv_slice(&mut buf[..want]).unwrap_or(0);
            if n == 0 {
                break;
            }
            budget -= n;
            s.last_progress = now;
            let mut data = &buf[..n];
            while !data.is_empty() {
                let Some(m) = s.waiting.front_mut() else {
                    return Err(format!(
                        "{} bytes nobody asked for: {:?}",
                        data.len(),
                        String::from_utf8_lossy(&data[..data.len().min(200)])
                    ));
                };
                let used = m.feed(data).map_err(|e| {
                    format!(
                        "response differs from the site's at byte {}: {}",
                        e.offset, e.what
                    )
                })?;
                s.received += used;
                data = &data[used..];
                if m.is_done() {
                    count_status(counts, m.status());
                    counts.body_bytes += m.progress() as u64;
                    s.waiting.pop_front();
                    s.received = 0;
                }
            }
            if let Manner::Abandon { after } = s.manner
                && s.received >= after
                && !s.waiting.is_empty()
            {
                counts.abandoned += 1;
                socket.abort();
                s.finished = true;
                return Ok(false);
            }
        }
        let all_sent = s.specs.is_empty() && s.sent == s.outbox.len();
        if all_sent && s.waiting.is_empty() && !matches!(s.manner, Manner::Silent) {
            // Done: close our side (the server may have closed first).
            socket.close();
            s.finished = true;
            s.last_progress = now;
            ended = true;
        }
    }
    if s.established && !ended && !socket.may_recv() && !s.finished {
        // The server closed: anything unanswered was closed deliberately
        // (an error, a deadline, an eviction), which the session counts.
        counts.closed_unanswered += s.waiting.len() as u64 + s.specs.len() as u64;
        socket.close();
        s.finished = true;
        s.waiting.clear();
        return Ok(false);
    }
    // Stalls: waiting on the server with everything healthy for too long.
    let waiting_on_server = match s.manner {
        Manner::Silent | Manner::Slowloris { .. } => false,
        // A slow reader's window is its own doing; it reads on schedule.
        _ => !s.waiting.is_empty() || !s.established,
    };
    // Judged only for sessions whose handshake was in steady weather: one
    // made through a lossy network or under pool pressure may be a
    // connection the server never had (or one waiting for a socket), which
    // only the client's retransmissions can mend. A VM pause is not such
    // weather: a handshake through it must make a connection that answers.
    let since = s.last_progress.max(calm_since);
    if waiting_on_server && s.opened_at >= steady_since && now.saturating_sub(since) > STALL_MS {
        return Err(format!(
            "stall: session from port {} opened at {} ms ({:?}), {} responses awaited, {} bytes of the first received, no progress since {} ms, socket {:?}",
            socket.local_endpoint().map_or(0, |e| e.port),
            s.opened_at,
            s.manner,
            s.waiting.len(),
            s.waiting.front().map_or(0, Matcher::progress),
            s.last_progress,
            state
        ));
    }
    // Slowloris and silent sessions wait for the server's deadline: it must
    // come within its bound.
    let deadline_bound =
        crate::http::limits::IDLE_TIMEOUT_MS.max(crate::http::limits::HEADER_TIMEOUT_MS) + STALL_MS;
    // Only a session opened in calm weather: a handshake whose last ACK was
    // lost leaves a silent client with a connection the server never had.
    if matches!(s.manner, Manner::Silent | Manner::Slowloris { .. })
        && s.opened_at >= calm_since
        && now.saturating_sub(s.opened_at) > deadline_bound
    {
        return Err(format!(
            "the server kept a {:?} session open since {} ms, past its deadlines",
            s.manner, s.opened_at
        ));
    }
    if now.saturating_sub(s.last_progress) > GIVE_UP_MS {
        counts.gave_up += 1;
        socket.abort();
        s.finished = true;
    }
    Ok(false)
}
