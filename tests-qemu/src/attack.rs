//! Attacks on the server's connection handling (TESTING.md B12, B14), run
//! with the tools people use, while legitimate clients measure what they get.
//!
//! - [`TapGuest`]: the guest's NIC on a tap device inside a network namespace
//!   the test creates ([`Netns`]), so spoofed SYNs reach the guest (QEMU user
//!   networking completes handshakes itself and would absorb them).
//! - [`Target`]: where clients run, the host (user networking's forwarded
//!   port) or inside that namespace; every client thread enters it first.
//! - [`Worker`]s, client loops on threads of their own: [`start_prober`]
//!   (`GET /health` on a new connection every interval; [`ProbeSummary`] of a
//!   time window), [`start_downloader`] (the large asset again and again,
//!   checked byte-exact), [`start_hoarder`] (keep-alive connections opened,
//!   one request each, and held).
//! - [`Tool`]: an attack tool (`hping3`, `slowloris`, `slowhttptest`, `wrk`)
//!   as a child process, killed when dropped, bounded by a deadline.
//!
//! Every loop is bounded in count and time; traffic goes only to 127.0.0.1 or
//! into the test's namespace.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use boot_image::{GUEST_ADMIN_PORT, Guest, QemuConfig};
use nix::sched::{CloneFlags, setns};

use crate::http::{Client, HttpGuest, Stats, parse_response};
use crate::netfault::{GUEST_IP, HOST_IP, Netns, PREFIX_LEN, TAP};
use crate::resilience::large_bin;
use crate::{INIT_TIMEOUT, boot, config, note};

/// Probes stop by themselves after this many (an hour at 10 a second).
const MAX_PROBES: usize = 36_000;
/// One probe (connect, request, whole response) gives up after this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// One download of the large asset gives up after this.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Downloads stop by themselves after this many.
const MAX_DOWNLOADS: usize = 10_000;
/// From SIGINT to SIGKILL for a tool that overstays.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);
/// From `net: ready` to the first `/health` 200 on the tap.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the clients connect from, and to.
#[derive(Clone, Debug)]
pub enum Target {
    /// The host: user networking's forwarded ports on 127.0.0.1 (the site's
    /// and the admin port's).
    Host {
        addr: SocketAddrV4,
        admin: SocketAddrV4,
    },
    /// Inside namespace `ns`, to the guest's address on the tap.
    Netns {
        ns: String,
        addr: SocketAddrV4,
        admin: SocketAddrV4,
    },
}

impl Target {
    /// A guest on user networking, reached through its forwarded ports.
    pub fn host(guest: &HttpGuest) -> Result<Target, String> {
        match (guest.addr(), guest.admin_addr()) {
            (SocketAddr::V4(addr), SocketAddr::V4(admin)) => Ok(Target::Host { addr, admin }),
            other => Err(format!("unexpected addresses {other:?}")),
        }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        match self {
            Target::Host { addr: a, .. } | Target::Netns { addr: a, .. } => *a,
        }
    }

    /// Where the admin endpoints answer.
    pub fn admin(&self) -> SocketAddrV4 {
        match self {
            Target::Host { admin: a, .. } | Target::Netns { admin: a, .. } => *a,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Moves the calling thread into the target's network namespace (for a
    /// thread of its own: it stays there).
    pub fn enter(&self) -> io::Result<()> {
        match self {
            Target::Host { .. } => Ok(()),
            Target::Netns { ns, .. } => {
                let f = File::open(format!("/run/netns/{ns}"))?;
                setns(&f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
            }
        }
    }

    /// `program` run where the clients are.
    pub fn command(&self, program: &str) -> Command {
        match self {
            Target::Host { .. } => Command::new(program),
            Target::Netns { ns, .. } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
        }
    }

    /// `f` on a thread inside the target's namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let t = self.clone();
        thread::spawn(move || {
            t.enter()
                .map_err(|e| format!("entering the namespace: {e}"))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err("the client thread panicked".into()))
    }

    /// `/api/stats.json` (on the admin port).
    pub fn stats(&self) -> Result<Stats, String> {
        let addr = SocketAddr::V4(self.admin());
        self.run(move || {
            let mut c = Client::connect(addr, Duration::from_secs(10))
                .map_err(|e| format!("stats: connect: {e}"))?;
            c.send(b"GET /api/stats.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .map_err(|e| format!("stats: send: {e}"))?;
            let r = c.read_response(false)?;
            Stats::parse(&r.body)
        })?
    }

    /// Fetches the stats until `ok` holds or `timeout` passes; the last ones.
    pub fn stats_until(&self, timeout: Duration, ok: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            let s = self.stats();
            match s {
                Ok(s) if ok(&s) || Instant::now() >= deadline => return s,
                Err(e) if Instant::now() >= deadline => panic!("stats: {e}"),
                _ => thread::sleep(Duration::from_millis(250)),
            }
        }
        panic!("stats_until: loop bound")
    }
}

/// A tap device created in the host namespace (QEMU attaches to it by name),
/// deleted on drop if it is still there (once moved into the namespace, the
/// namespace's deletion takes it).
struct HostTap(String);

impl Drop for HostTap {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A guest whose NIC is a tap device in a namespace of its own, with
/// `ip=10.0.3.2/24,gateway=10.0.3.1`; the namespace's side is 10.0.3.1.
/// Fields drop in order: QEMU, then the namespace (and the tap with it).
pub struct TapGuest {
    pub guest: Guest,
    pub ns: Netns,
    _tap: HostTap,
    pub test: String,
}

impl TapGuest {
    pub fn start(test: &str, extra_config: &[&str]) -> TapGuest {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // IFNAMSIZ is 16: "uka" + pid (≤ 7 digits) + "-" + a small counter.
        let name = format!(
            "uka{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns::create();
        if let Err(e) = ip(&["tuntap", "add", "dev", &name, "mode", "tap"]) {
            panic!("[{test}] creating tap {name}: {e}");
        }
        let tap = HostTap(name.clone());
        let ipcfg = format!("ip={GUEST_IP}/{PREFIX_LEN}");
        let gateway = format!("gateway={HOST_IP}");
        let mut items = vec![ipcfg.as_str(), gateway.as_str()];
        items.extend_from_slice(extra_config);
        let cfg = QemuConfig {
            extra_args: vec![
                "-netdev".into(),
                format!("tap,id=net0,ifname={name},script=no,downscript=no"),
                "-device".into(),
                "virtio-net-device,netdev=net0".into(),
            ],
            ..config(&items)
        };
        let guest = boot(test, &cfg);
        // QEMU opens its netdevs before the guest runs: once the guest has
        // its address, QEMU holds the tap (moved earlier, QEMU would create
        // a new one of that name instead). Then move it into the namespace
        // in place of the namespace's own, unattached, tap0.
        if let Err(e) = guest.wait_for("net: ready", INIT_TIMEOUT) {
            panic!("[{test}] waiting for `net: ready`: {e}\n{}", guest.serial());
        }
        let cidr = format!("{HOST_IP}/{PREFIX_LEN}");
        let nsname = ns.name().to_string();
        let moved = ns
            .ip(&["link", "del", TAP])
            .and_then(|_| ip(&["link", "set", "dev", &name, "netns", &nsname]))
            .and_then(|()| ns.ip(&["link", "set", &name, "name", TAP]))
            .and_then(|_| ns.ip(&["addr", "add", &cidr, "dev", TAP]))
            .and_then(|_| ns.ip(&["link", "set", TAP, "up"]));
        let g = TapGuest {
            guest,
            ns,
            _tap: tap,
            test: test.to_string(),
        };
        if let Err(e) = moved {
            g.fail(format_args!("moving tap {name} into {nsname}: {e}"));
        }
        g.wait_healthy(HEALTH_TIMEOUT);
        note(
            test,
            format_args!(
                "accel={:?} pid={} namespace {} tap {name}: /health 200",
                g.guest.accel(),
                g.guest.pid(),
                g.ns.name()
            ),
        );
        g
    }

    pub fn target(&self) -> Target {
        Target::Netns {
            ns: self.ns.name().to_string(),
            addr: SocketAddrV4::new(GUEST_IP, 80),
            admin: SocketAddrV4::new(GUEST_IP, GUEST_ADMIN_PORT),
        }
    }

    fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let target = self.target();
        let mut last = String::new();
        for _ in 0..1000 {
            match target.run({
                let t = target.clone();
                move || health(&t, PROBE_TIMEOUT)
            }) {
                Ok(Ok(_)) => return,
                Ok(Err(e)) | Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        let link = self
            .ns
            .ip(&["-s", "link", "show", TAP])
            .unwrap_or_else(|e| e);
        let neigh = self.ns.ip(&["neigh"]).unwrap_or_else(|e| e);
        self.fail(format_args!(
            "/health did not answer 200 within {timeout:?}: {last}\n{link}\n{neigh}"
        ))
    }

    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "[{}] {message}\n--- serial ({:?}) ---\n{}--- QEMU stderr ---\n{}--- end ---",
            self.test,
            self.guest.accel(),
            self.guest.serial(),
            self.guest.qemu_stderr()
        )
    }
}

/// `GET /health` on a new connection (`Connection: close`), from the
/// calling thread's namespace: the time to a complete `200 ok`, or why not.
pub fn health(target: &Target, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut c = Client::connect(SocketAddr::V4(target.addr()), timeout)
        .map_err(|e| format!("connect: {e}"))?;
    c.send(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let r = c.read_response(false)?;
    if r.status != 200 || r.body != b"ok\n" {
        return Err(format!("status {} body {:?}", r.status, r.body_text()));
    }
    Ok(start.elapsed())
}

/// One probe: when it started and what it got.
#[derive(Clone, Debug)]
pub struct Probe {
    pub at: Instant,
    pub result: Result<Duration, String>,
}

/// A client loop on a thread of its own, asked to stop with [`Worker::stop`]
/// (or when dropped); the loop checks the flag it is given between steps.
pub struct Worker<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `body` inside `target`'s namespace; `failed` is its result when
    /// the thread cannot enter the namespace.
    fn spawn(
        target: &Target,
        failed: impl FnOnce(String) -> T + Send + 'static,
        body: impl FnOnce(&Target, &AtomicBool) -> T + Send + 'static,
    ) -> Worker<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let t = target.clone();
        let handle = thread::spawn(move || match t.enter() {
            Ok(()) => body(&t, &flag),
            Err(e) => failed(format!("entering the namespace: {e}")),
        });
        Worker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops it after the step in progress; its result.
    pub fn stop(mut self) -> T {
        self.stop.store(true, Ordering::Release);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => panic!("a client thread panicked"),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// `/health` on a new connection every `interval`, until stopped: every
/// probe made.
pub type Prober = Worker<Vec<Probe>>;

/// Starts a [`Prober`].
pub fn start_prober(target: &Target, interval: Duration) -> Prober {
    Worker::spawn(
        target,
        |e| {
            vec![Probe {
                at: Instant::now(),
                result: Err(e),
            }]
        },
        move |t, stop| {
            let mut probes = Vec::new();
            let mut next = Instant::now();
            for _ in 0..MAX_PROBES {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let at = Instant::now();
                probes.push(Probe {
                    at,
                    result: health(t, PROBE_TIMEOUT),
                });
                next += interval;
                // A slow probe is not made up for with a burst.
                next = next.max(Instant::now());
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            probes
        },
    )
}

/// What the probes started in a window got.
#[derive(Clone, Debug)]
pub struct ProbeSummary {
    pub total: usize,
    /// Answered 200 within the limit.
    pub within: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The first few that were late or failed.
    pub misses: Vec<String>,
}

impl ProbeSummary {
    pub fn of(probes: &[Probe], from: Instant, to: Instant, limit: Duration) -> ProbeSummary {
        let window: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.at >= from && p.at < to)
            .collect();
        let mut times: Vec<Duration> = window
            .iter()
            .map(|p| p.result.clone().unwrap_or(Duration::MAX))
            .collect();
        times.sort();
        let pick = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let misses = window
            .iter()
            .filter(|p| !matches!(p.result, Ok(t) if t <= limit))
            .take(10)
            .map(|p| match &p.result {
                Ok(t) => format!("+{:.1?}: answered after {t:.2?}", p.at - from),
                Err(e) => format!("+{:.1?}: {e}", p.at - from),
            })
            .collect();
        ProbeSummary {
            total: window.len(),
            within: times.iter().filter(|&&t| t <= limit).count(),
            median: pick(0.5),
            p99: pick(0.99),
            max: times.last().copied().unwrap_or_default(),
            misses,
        }
    }

    /// Share of probes answered within the limit (0 for no probes).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.within as f64 / self.total as f64
        }
    }
}

impl std::fmt::Display for ProbeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: Duration| {
            if d == Duration::MAX {
                "failed".to_string()
            } else {
                format!("{d:.1?}")
            }
        };
        write!(
            f,
            "{}/{} probes within limit ({:.2}%), median {}, p99 {}, max {}",
            self.within,
            self.total,
            self.rate() * 100.0,
            show(self.median),
            show(self.p99),
            show(self.max)
        )
    }
}

/// What the downloader got.
#[derive(Clone, Debug, Default)]
pub struct Downloads {
    /// Complete and byte-identical to `large.bin`.
    pub exact: usize,
    /// Failed or differing, and why.
    pub bad: Vec<String>,
    pub slowest: Duration,
}

/// `/large.bin` downloaded again and again on new connections, each checked
/// against the site's file, until stopped (after the download in progress).
pub type Downloader = Worker<Downloads>;

/// Starts a [`Downloader`].
pub fn start_downloader(target: &Target) -> Downloader {
    let want = large_bin();
    Worker::spawn(
        target,
        |e| Downloads {
            bad: vec![e],
            ..Downloads::default()
        },
        move |t, stop| {
            let mut d = Downloads::default();
            for _ in 0..MAX_DOWNLOADS {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let start = Instant::now();
                match download(t) {
                    Ok(body) if body == want => d.exact += 1,
                    Ok(body) => d.bad.push(format!(
                        "{} bytes, differing from large.bin ({} bytes)",
                        body.len(),
                        want.len()
                    )),
                    Err(e) => d.bad.push(e),
                }
                d.slowest = d.slowest.max(start.elapsed());
                thread::sleep(Duration::from_millis(100));
            }
            d
        },
    )
}

/// One `/large.bin` on a new connection: the body, or why not. Bounded by
/// [`DOWNLOAD_TIMEOUT`] in all: the downloads check integrity under attack
/// (the probes measure latency), so a slow start (a handshake retried while
/// the pool was full) is not a failure.
fn download(t: &Target) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let mut c = Client::connect(SocketAddr::V4(t.addr()), DOWNLOAD_TIMEOUT)
        .map_err(|e| format!("download: connect: {e}"))?;
    c.send(b"GET /large.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("download: send: {e}"))?;
    let left = DOWNLOAD_TIMEOUT.saturating_sub(start.elapsed());
    let (ending, bytes) = c.read_until_close(left);
    match parse_response(&bytes, false)? {
        Some((r, used)) if used == bytes.len() && r.status == 200 => Ok(r.body),
        Some((r, _)) if r.status != 200 => Err(format!("download: status {}", r.status)),
        _ => Err(format!(
            "download: {} bytes after {:.1?}, then {ending:?}",
            bytes.len(),
            start.elapsed()
        )),
    }
}

/// Keep-alive connections, each answered once and then held idle until
/// stopped: how many were opened and answered, how many failed.
pub type Hoarder = Worker<(usize, usize)>;

/// Starts a [`Hoarder`]: up to `count` connections, one after another, for
/// at most `open_for`; each sends one `GET /health` and waits for its answer.
pub fn start_hoarder(target: &Target, count: usize, open_for: Duration) -> Hoarder {
    Worker::spawn(
        target,
        move |_| (0, count),
        move |t, stop| {
            let until = Instant::now() + open_for;
            let mut held = Vec::new();
            let mut failed = 0;
            for _ in 0..count {
                if stop.load(Ordering::Acquire) || Instant::now() >= until {
                    break;
                }
                let ok = Client::connect(SocketAddr::V4(t.addr()), Duration::from_secs(5))
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        c.send(b"GET /health HTTP/1.1\r\nHost: hoard\r\n\r\n")
                            .map_err(|e| e.to_string())?;
                        let r = c.read_response(false)?;
                        (r.status == 200)
                            .then_some(c)
                            .ok_or_else(|| "not 200".into())
                    });
                match ok {
                    Ok(c) => held.push(c),
                    Err(_) => failed += 1,
                }
            }
            let opened = held.len();
            // Hold them (the server may close some to make room).
            for _ in 0..36_000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            (opened, failed)
        },
    )
}

/// An attack tool (or wrk) as a child process; killed when dropped.
pub struct Tool {
    pub name: String,
    child: Option<Child>,
    started: Instant,
    /// Killed after this long if it has not ended by itself.
    limit: Duration,
}

impl Tool {
    /// Starts `cmd`; `limit` bounds its run. Panics with `hint` if the program
    /// is missing.
    pub fn spawn(name: &str, mut cmd: Command, limit: Duration, hint: &str) -> Tool {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {name}: {e} ({hint})"));
        Tool {
            name: name.to_string(),
            child: Some(child),
            started: Instant::now(),
            limit,
        }
    }

    /// Waits for it to end by itself, killing it at its limit; its output
    /// (stdout then stderr) and whether it was killed.
    pub fn finish(mut self) -> (String, bool) {
        let mut child = self.child.take().expect("finished once");
        let mut killed = false;
        for _ in 0..100_000 {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if self.started.elapsed() >= self.limit => {
                    interrupt(&mut child);
                    killed = true;
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let out = child.wait_with_output();
        let text = match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("({} output: {e})", self.name),
        };
        (text, killed)
    }

    /// Ends it now (for tools that run until stopped).
    pub fn stop(mut self) -> String {
        self.limit = Duration::ZERO;
        self.finish().0
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGINT (tools print their summary on it), then SIGKILL if it has not
/// ended within [`INTERRUPT_GRACE`].
fn interrupt(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let until = Instant::now() + INTERRUPT_GRACE;
    for _ in 0..1000 {
        if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= until {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}

/// CPU time QEMU process `pid` has used (user + system), from `/proc`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// The guest's address as the attack tools take it.
pub fn host_of(target: &Target) -> Ipv4Addr {
    *target.addr().ip()
}
