//! Pool pressure: with `sockets=8`, more idle connections than sockets, then
//! more half requests than sockets. The guest keeps one socket free by closing
//! the least valuable connection (the oldest idle one, then the longest
//! request head), so a new client is always served; the rest are freed by the
//! idle and header deadlines as before.
//!
//! QEMU's user networking accepts every TCP connection on the host side first
//! and only then connects to the guest: a connection the guest closes (RST)
//! shows up on the host as the accepted connection being closed or reset. So
//! "evicted" here means: closed within [`EVICTED_WITHIN`] of connect without
//! a response.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tests_qemu::attack::{Target, health};
use tests_qemu::http::{HttpGuest, Transport, boot_http, parse_all};

const SOCKETS: usize = 8;
const CLIENTS: usize = 2 * SOCKETS;
const IDLE_TIMEOUT_MS: u64 = 5000;
/// Gap between connects, and the most all of them may take (well inside the
/// idle deadline, so the pool stays full while they arrive). With 7 held, the
/// oldest idle one has been idle 7 gaps when the next arrives: more than the
/// 500 ms an idle connection is spared in favour of others (`GRACE_MS` in
/// `kernel/src/net/eviction.rs`).
const CONNECT_PACE: Duration = Duration::from_millis(100);
const MAX_CONNECTS_TIME: Duration = Duration::from_secs(3);
/// Gap between the half requests (a request head gets no grace), well inside
/// the header deadline.
const HALF_PACE: Duration = Duration::from_millis(20);
const HEADER_TIMEOUT_MS: u64 = 1000;
/// An evicted connection is closed this soon after connect (well before any
/// deadline).
const EVICTED_WITHIN: Duration = Duration::from_secs(2);
/// Sockets the guest keeps free under pressure with a pool of 8
/// (`spare_listeners` in `kernel/src/net/server.rs`): at most 7 held.
const SPARE: usize = 1;
/// A new client's `/health` while the pool is full: answered within this.
const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// How late after its deadline a held connection may be closed.
const DEADLINE_SLACK: Duration = Duration::from_secs(3);
/// The deadlines are measured from the host; the guest's clock started a
/// little later than our connect returned, never earlier.
const EARLY_BY_AT_MOST: Duration = Duration::from_millis(300);

/// A connection watched until the guest closes it.
struct Watched {
    stream: TcpStream,
    connected: Instant,
    closed: Option<Instant>,
    data: Vec<u8>,
    reset: bool,
}

impl Watched {
    fn open(g: &HttpGuest) -> Watched {
        let stream = TcpStream::connect_timeout(&g.addr(), Duration::from_secs(10))
            .unwrap_or_else(|e| g.fail(format_args!("connect: {e}")));
        let connected = Instant::now();
        stream
            .set_nonblocking(true)
            .unwrap_or_else(|e| g.fail(format_args!("set_nonblocking: {e}")));
        Watched {
            stream,
            connected,
            closed: None,
            data: Vec::new(),
            reset: false,
        }
    }

    /// Reads what is there without blocking; notes the close.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = Some(Instant::now());
                    // Close our side too, as any client does on EOF; else the
                    // guest's socket waits in FIN-WAIT-2 for its close deadline.
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Ok(n) => self.data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.reset = true;
                    self.closed = Some(Instant::now());
                    return;
                }
            }
        }
    }

    fn lifetime(&self) -> Option<Duration> {
        self.closed.map(|c| c - self.connected)
    }

    /// Whether the guest answered exactly one request, 200, before closing.
    fn answered_once(&self) -> bool {
        parse_all(&self.data, &[])
            .is_ok_and(|(rs, rest)| rs.len() == 1 && rs[0].status == 200 && rest.is_empty())
    }
}

/// Polls every watched connection until all are closed or `until` passes.
fn watch(all: &mut [Watched], until: Instant) {
    for _ in 0..100_000 {
        for w in all.iter_mut() {
            w.poll();
        }
        if all.iter().all(|w| w.closed.is_some()) || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn describe(all: &[Watched], origin: Instant) -> String {
    all.iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "  #{i}: connected at {:.2?}, lifetime {:?}{}, {} bytes",
                w.connected - origin,
                w.lifetime(),
                if w.reset { " (reset)" } else { "" },
                w.data.len()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /health` on a new connection (`Connection: close`): 200 `ok` and how
/// long it took, or why not.
fn fresh_health(g: &HttpGuest) -> Result<Duration, String> {
    health(&Target::host(g)?, SERVED_WITHIN)
}

/// Indices of connections closed within [`EVICTED_WITHIN`] of connect.
fn evicted(all: &[Watched]) -> Vec<usize> {
    (0..all.len())
        .filter(|&i| all[i].lifetime().is_some_and(|l| l <= EVICTED_WITHIN))
        .collect()
}

pub fn pool_pressure_evicts_the_least_valuable_and_deadlines_free_the_rest(transport: Transport) {
    let sockets = format!("sockets={SOCKETS}");
    let idle = format!("idle_timeout_ms={IDLE_TIMEOUT_MS}");
    let header = format!("header_timeout_ms={HEADER_TIMEOUT_MS}");
    let g = boot_http("pool", transport, &[&sockets, &idle, &header]);
    let idle_timeout = Duration::from_millis(IDLE_TIMEOUT_MS);
    let header_timeout = Duration::from_millis(HEADER_TIMEOUT_MS);
    let held_max = SOCKETS - SPARE;

    // Start from an empty pool: only the stats request's own connection active.
    let (s0, _) = g.stats_until(Duration::from_secs(10), "an empty pool", |s| {
        s.get("connections_active") == 1
    });
    std::thread::sleep(Duration::from_millis(300));

    // Phase 1: 16 keep-alive clients, each idle after one request, against 8
    // sockets; then a new client.
    // The connects are paced: QEMU's host listener has a backlog of 1, and a
    // burst of connects waits for SYN retransmits (1 s each).
    let origin = Instant::now();
    let mut conns: Vec<Watched> = Vec::new();
    for _ in 0..CLIENTS {
        let mut w = Watched::open(&g);
        if let Err(e) = w
            .stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        {
            g.fail(format_args!("keep-alive request: {e}"));
        }
        conns.push(w);
        watch(&mut conns, Instant::now() + CONNECT_PACE);
    }
    let connects_took = origin.elapsed();
    if connects_took > MAX_CONNECTS_TIME {
        g.fail(format_args!(
            "{CLIENTS} paced connects took {connects_took:.2?} (limit {MAX_CONNECTS_TIME:?}): \
             the host is too slow to fill the pool within the {idle_timeout:?} idle deadline\n{}",
            describe(&conns, origin)
        ));
    }
    watch(&mut conns, Instant::now() + Duration::from_millis(300));
    // A new client while the pool is full is served: the oldest idle
    // connection makes room.
    let served = fresh_health(&g);
    watch(
        &mut conns,
        Instant::now() + idle_timeout + DEADLINE_SLACK + Duration::from_secs(1),
    );
    let table = describe(&conns, origin);
    let gone = evicted(&conns);
    // The 16 connects evict all but `held_max`; the new client one more.
    let want_evicted = CLIENTS - held_max + 1;
    if gone != (0..want_evicted).collect::<Vec<_>>() {
        g.fail(format_args!(
            "with {SOCKETS} sockets and {CLIENTS} idle keep-alive clients then one more: evicted {gone:?} \
             within {EVICTED_WITHIN:?}; want the oldest {want_evicted}, oldest first\n{table}"
        ));
    }
    match &served {
        Ok(took) if *took <= SERVED_WITHIN => {}
        other => g.fail(format_args!(
            "a new client with the pool full of idle connections: {other:?} \
             (want 200 within {SERVED_WITHIN:?})\n{table}"
        )),
    }
    if let Some(w) = conns.iter().find(|w| !w.answered_once()) {
        g.fail(format_args!(
            "a keep-alive client did not get exactly one 200 before going idle: {:?}\n{table}",
            String::from_utf8_lossy(&w.data)
        ));
    }
    for w in &conns[want_evicted..] {
        match w.lifetime() {
            Some(l)
                if l + EARLY_BY_AT_MOST >= idle_timeout && l <= idle_timeout + DEADLINE_SLACK => {}
            other => g.fail(format_args!(
                "a held idle connection lived {other:?}; the idle deadline is {idle_timeout:?} \
                 (+{DEADLINE_SLACK:?} allowed)\n{table}"
            )),
        }
    }

    // Service goes on; the counters agree.
    g.wait_healthy(Duration::from_secs(5));
    let (s1, fetches) = g.stats_until(Duration::from_secs(10), "pool back to empty", |s| {
        s.get("connections_active") == 1
    });
    let held = (CLIENTS - want_evicted) as u64;
    // Accepted: every keep-alive client, the new client, the health probe(s), every
    // stats fetch after s0.
    let health_probes = 1;
    let want_accepted = CLIENTS as u64 + 1 + health_probes + fetches;
    for (name, got, want) in [
        (
            "connections_accepted",
            s1.delta(&s0, "connections_accepted"),
            want_accepted,
        ),
        (
            "evictions_idle",
            s1.delta(&s0, "evictions_idle"),
            want_evicted as u64,
        ),
        ("evictions_head", s1.delta(&s0, "evictions_head"), 0),
        ("timeouts_idle", s1.delta(&s0, "timeouts_idle"), held),
        ("timeouts_request", s1.delta(&s0, "timeouts_request"), 0),
        (
            "connections_refused",
            s1.delta(&s0, "connections_refused"),
            0,
        ),
    ] {
        if got != want {
            g.fail(format_args!(
                "{name} grew by {got}, want {want}\n{}\n{table}",
                s1.text
            ));
        }
    }

    // Phase 2: the pool full of half requests (slowloris): the longest head
    // makes room for the newcomer; the header deadline frees the rest.
    std::thread::sleep(Duration::from_millis(300));
    let origin2 = Instant::now();
    let mut halves: Vec<Watched> = Vec::new();
    for _ in 0..SOCKETS {
        let mut w = Watched::open(&g);
        if let Err(e) = w.stream.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n") {
            g.fail(format_args!("half request: {e}"));
        }
        w.connected = Instant::now();
        halves.push(w);
        watch(&mut halves, Instant::now() + HALF_PACE);
    }
    watch(&mut halves, Instant::now() + Duration::from_millis(300));
    let served2 = fresh_health(&g);
    watch(
        &mut halves,
        Instant::now() + header_timeout + DEADLINE_SLACK + Duration::from_secs(1),
    );
    let table2 = describe(&halves, origin2);
    let gone2 = evicted(&halves);
    // Eight half requests evict the oldest one; the new client one more.
    let want_evicted2 = SOCKETS - held_max + 1;
    let early: Vec<usize> = gone2
        .iter()
        .copied()
        .filter(|&i| halves[i].data.is_empty())
        .collect();
    if early != (0..want_evicted2).collect::<Vec<_>>() {
        g.fail(format_args!(
            "with {SOCKETS} half requests then a new client: closed early without answer \
             {early:?}; want the oldest {want_evicted2}\n{table2}"
        ));
    }
    match &served2 {
        Ok(took) if *took <= SERVED_WITHIN => {}
        other => g.fail(format_args!(
            "a new client with the pool full of half requests: {other:?} \
             (want 200 within {SERVED_WITHIN:?})\n{table2}"
        )),
    }
    for w in &halves[want_evicted2..] {
        let ok_time = w.lifetime().is_some_and(|l| {
            l + EARLY_BY_AT_MOST >= header_timeout && l <= header_timeout + DEADLINE_SLACK
        });
        let got_408 = parse_all(&w.data, &[])
            .map(|(rs, rest)| rs.len() == 1 && rs[0].status == 408 && rest.is_empty())
            .unwrap_or(false);
        if !ok_time || !got_408 {
            g.fail(format_args!(
                "a half request was not answered 408 and closed at the header deadline \
                 ({header_timeout:?}): {:?}\n{table2}",
                String::from_utf8_lossy(&w.data)
            ));
        }
    }
    g.wait_healthy(Duration::from_secs(5));
    let (s2, _) = g.stats_until(Duration::from_secs(10), "pool back to empty", |s| {
        s.get("connections_active") == 1
    });
    let want_408 = (SOCKETS - want_evicted2) as u64;
    if s2.delta(&s1, "timeouts_request") != want_408
        || s2.delta(&s1, "evictions_head") != want_evicted2 as u64
        || s2.delta(&s1, "evictions_idle") != 0
    {
        g.fail(format_args!(
            "phase 2: timeouts_request +{} (want {want_408}), evictions_head +{} (want \
             {want_evicted2}), evictions_idle +{} (want 0)\n{}\n{table2}",
            s2.delta(&s1, "timeouts_request"),
            s2.delta(&s1, "evictions_head"),
            s2.delta(&s1, "evictions_idle"),
            s2.text
        ));
    }
    g.note(format_args!(
        "sockets={SOCKETS}: {CLIENTS} idle clients -> oldest {want_evicted} evicted, {held} held \
         to the idle deadline, new client served in {:.2?}; {SOCKETS} half requests -> oldest \
         {want_evicted2} evicted, {want_408} answered 408 at the header deadline, new client \
         served in {:.2?}",
        served.unwrap_or_default(),
        served2.unwrap_or_default(),
    ));
    g.finish();
}
