//! Attacks on the server's connection handling, run
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

mod load;

pub use load::*;

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

use crate::http::{Client, Ending, HttpGuest, Stats, parse_response};
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
