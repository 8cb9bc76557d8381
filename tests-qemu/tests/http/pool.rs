//! Socket pool exhaustion: with `sockets=8`, idle connections fill the pool,
//! further connections are refused fast (and counted), and the idle and header
//! deadlines free the pool so that service resumes.
//!
//! QEMU's user networking accepts every TCP connection on the host side first
//! and only then connects to the guest: a refusal by the guest (RST to the SYN)
//! shows up on the host as the accepted connection being closed or reset at
//! once. So "refused" here means: closed within [`REFUSED_WITHIN`] of connect
//! without a response (or with a 503).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tests_qemu::http::{HttpGuest, Transport, boot_http, parse_all};

const SOCKETS: usize = 8;
const CLIENTS: usize = 2 * SOCKETS;
const IDLE_TIMEOUT_MS: u64 = 5000;
/// Gap between connects, and the most all of them may take (well inside the
/// idle deadline, so the pool stays full while they arrive).
const CONNECT_PACE: Duration = Duration::from_millis(20);
const MAX_CONNECTS_TIME: Duration = Duration::from_secs(3);
const HEADER_TIMEOUT_MS: u64 = 1000;
/// A refused connection must be closed this soon after connect.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);
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

    /// Whether the guest answered with anything but a 503 before closing.
    fn served(&self) -> bool {
        if self.data.is_empty() {
            return false;
        }
        match parse_all(&self.data, &[]) {
            Ok((rs, _)) => rs.iter().any(|r| r.status != 503),
            Err(_) => true,
        }
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

pub fn pool_exhaustion_refuses_fast_and_deadlines_free_it(transport: Transport) {
    let sockets = format!("sockets={SOCKETS}");
    let idle = format!("idle_timeout_ms={IDLE_TIMEOUT_MS}");
    let header = format!("header_timeout_ms={HEADER_TIMEOUT_MS}");
    let g = boot_http("pool", transport, &[&sockets, &idle, &header]);
    let idle_timeout = Duration::from_millis(IDLE_TIMEOUT_MS);
    let header_timeout = Duration::from_millis(HEADER_TIMEOUT_MS);

    // Start from an empty pool: only the stats request's own connection active.
    let (s0, _) = g.stats_until(Duration::from_secs(10), "an empty pool", |s| {
        s.get("connections_active") == 1
    });
    std::thread::sleep(Duration::from_millis(300));

    // Phase 1: 16 idle connections against 8 sockets, then one more probe.
    // The connects are paced: QEMU's host listener has a backlog of 1, and a
    // burst of connects waits for SYN retransmits (1 s each).
    let origin = Instant::now();
    let mut conns: Vec<Watched> = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(Watched::open(&g));
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
    // One more connection while the pool is full; then wait for the idle
    // deadline to free the held ones (all watched together).
    conns.push(Watched::open(&g));
    watch(
        &mut conns,
        Instant::now() + idle_timeout + DEADLINE_SLACK + Duration::from_secs(1),
    );
    let probe = conns.pop().expect("the probe");
    let probe_closed = probe.lifetime();
    let table = describe(&conns, origin);

    let refused: Vec<&Watched> = conns
        .iter()
        .filter(|w| w.lifetime().is_some_and(|l| l <= REFUSED_WITHIN))
        .collect();
    let held: Vec<&Watched> = conns
        .iter()
        .filter(|w| w.lifetime().is_none_or(|l| l > REFUSED_WITHIN))
        .collect();
    if held.len() != SOCKETS || refused.len() != CLIENTS - SOCKETS {
        g.fail(format_args!(
            "with {SOCKETS} sockets and {CLIENTS} idle clients: \
             {} held, {} refused within {REFUSED_WITHIN:?}; want {SOCKETS} held and {} refused\n{table}",
            held.len(),
            refused.len(),
            CLIENTS - SOCKETS
        ));
    }
    if let Some(w) = conns.iter().find(|w| w.served()) {
        g.fail(format_args!(
            "an idle or refused connection got a response: {:?}\n{table}",
            String::from_utf8_lossy(&w.data)
        ));
    }
    for w in &held {
        match w.lifetime() {
            Some(l)
                if l + EARLY_BY_AT_MOST >= idle_timeout && l <= idle_timeout + DEADLINE_SLACK => {}
            other => g.fail(format_args!(
                "a held idle connection lived {other:?}; the idle deadline is {idle_timeout:?} \
                 (+{DEADLINE_SLACK:?} allowed)\n{table}"
            )),
        }
    }
    match probe_closed {
        Some(l) if l <= REFUSED_WITHIN && !probe.served() => {}
        other => g.fail(format_args!(
            "a connection to a full pool was not refused fast: closed after {other:?} \
             (limit {REFUSED_WITHIN:?})\n{table}"
        )),
    }
    let refused_worst = refused.iter().filter_map(|w| w.lifetime()).max();

    // Service resumes once the idle deadline freed the pool.
    g.wait_healthy(Duration::from_secs(5));
    let (s1, fetches) = g.stats_until(Duration::from_secs(10), "pool back to empty", |s| {
        s.get("connections_active") == 1
    });
    let refused_count = s1.delta(&s0, "connections_refused");
    let want_refused = (CLIENTS - SOCKETS + 1) as u64;
    if refused_count < want_refused {
        g.fail(format_args!(
            "connections_refused grew by {refused_count}, want at least {want_refused}\n{}",
            s1.text
        ));
    }
    // Accepted: the held ones, the health probe(s), every stats fetch after s0.
    let accepted = s1.delta(&s0, "connections_accepted");
    let health_probes = 1;
    let want_accepted = SOCKETS as u64 + health_probes + fetches;
    for (name, got, want) in [
        ("connections_accepted", accepted, want_accepted),
        (
            "timeouts_idle",
            s1.delta(&s0, "timeouts_idle"),
            SOCKETS as u64,
        ),
        ("timeouts_request", s1.delta(&s0, "timeouts_request"), 0),
    ] {
        if got != want {
            g.fail(format_args!(
                "{name} grew by {got}, want {want}\n{}\n{table}",
                s1.text
            ));
        }
    }

    // Phase 2: the pool full of half requests; the header deadline frees it.
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
        watch(&mut halves, Instant::now() + CONNECT_PACE);
    }
    halves.push(Watched::open(&g));
    watch(
        &mut halves,
        Instant::now() + header_timeout + DEADLINE_SLACK + Duration::from_secs(1),
    );
    let extra = halves.pop().expect("the extra connection");
    let table2 = describe(&halves, origin2);
    match extra.lifetime() {
        Some(l) if l <= REFUSED_WITHIN => {}
        other => g.fail(format_args!(
            "connection to a pool full of half requests: closed after {other:?}\n{table2}"
        )),
    }
    for w in &halves {
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
    if s2.delta(&s1, "timeouts_request") != SOCKETS as u64
        || s2.delta(&s1, "connections_refused") < 1
    {
        g.fail(format_args!(
            "phase 2: timeouts_request +{} (want {SOCKETS}), connections_refused +{}\n{}",
            s2.delta(&s1, "timeouts_request"),
            s2.delta(&s1, "connections_refused"),
            s2.text
        ));
    }
    g.note(format_args!(
        "sockets={SOCKETS}: {CLIENTS} idle clients -> {} held, {} refused (slowest refusal \
         {refused_worst:.2?}, probe {probe_closed:.2?}); idle deadline freed them; \
         connections_refused +{refused_count}; header deadline freed {SOCKETS} half requests",
        held.len(),
        refused.len(),
    ));
    g.finish();
}
