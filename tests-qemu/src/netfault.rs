//! Network faults for the QEMU tests (TESTING.md F1, F2): a seeded relay
//! between the guest's NIC and a tap device in a network namespace the test
//! creates, and HTTP clients that talk to the guest from inside that namespace.
//!
//! ```text
//!  guest virtio-net        QEMU -netdev dgram         relay.py (in the namespace)      namespace uk-relay-<pid>-<n>
//!  10.0.3.2/24  ─────▶ DIR/qemu.sock ◀──────▶ DIR/relay.sock ── faults ──▶ tap0 ◀──▶ 10.0.3.1/24, clients
//! ```
//!
//! QEMU stays in the host namespace (unix socket paths are not tied to one);
//! the relay ([`relay_script`], `tests-qemu/relay/relay.py --help`) forwards one
//! Ethernet frame per datagram, applying per direction a seeded loss, delay,
//! jitter, duplication, reordering, corruption and rate limit, and logs its
//! seed, so a failure can be replayed with `NETFAULT_SEED=<seed>` ([`seed`]).
//!
//! - [`skip_reason`]: the tests need root (network namespaces, tap devices).
//! - [`Netns`]: a namespace with `tap0` = 10.0.3.1/24; [`Netns::connect`] opens
//!   a TCP connection from inside it (a thread that `setns`es, then returns).
//! - [`Relay`], [`Profile`], [`RelayCounts`], [`dry_run`]: the relay process.
//! - [`FaultNet`]: guest + relay + namespace; [`FaultNet::get`] and
//!   [`FaultNet::spawn_get`] (byte-exact bodies, the longest gap without a
//!   byte), [`Prober`] (`/health` every second on a keep-alive connection),
//!   [`FaultNet::stats`], [`FaultNet::host_counters`]. [`FaultNet::fail`]
//!   keeps the relay's pcap of the guest's side in [`KEPT_PCAP_DIR`].
//!
//! Every resource has a guard whose `Drop` releases it, also when a test
//! panics: QEMU ([`boot_image::Guest`]), the relay (stdin closed, then killed),
//! the namespace (`ip netns del`), the socket directory. Namespaces left by a
//! test process that was killed outright are deleted by the next run
//! ([`Netns::create`] sweeps `uk-relay-<pid>-*` of dead pids). Every loop is
//! bounded in count and time; traffic goes only into the test's namespace.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boot_image::{Guest, QemuConfig};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};

use crate::http::parse_response;
use crate::{INIT_TIMEOUT, boot, config, note};

/// The guest's address (static, guest config `ip=`).
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
/// The tap's address in the namespace: the guest's gateway.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
pub const PREFIX_LEN: u8 = 24;
/// The tap device inside the namespace.
pub const TAP: &str = "tap0";
/// Namespace names: `uk-relay-<pid>-<n>`.
pub const NETNS_PREFIX: &str = "uk-relay-";
/// Replay: run with this seed instead of a fresh one.
pub const SEED_ENV: &str = "NETFAULT_SEED";
/// The interpreter for the relay (Python 3.11 stdlib only).
pub const PYTHON: &str = "python3";

/// From starting the relay to its `relay: ready` line.
const RELAY_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// From closing the relay's stdin to its exit (it prints its counts first).
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The relay's own lifetime bound, should this process vanish without closing
/// its stdin (it also ends at end of stdin).
const RELAY_MAX_SECONDS: u32 = 600;
/// From `net: ready` to the first `/health` 200 through the relay.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-attempt connect timeout while waiting for `/health`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a response head, for the total a response may take.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted (the biggest asset is 1.5 MiB).
const MAX_BODY: usize = 8 << 20;
/// Relay log lines quoted in failure messages.
const LOG_TAIL_LINES: usize = 60;
/// The relay's recording of the guest's side of the link, in the socket
/// directory; kept in [`KEPT_PCAP_DIR`] when a test fails.
const PCAP_NAME: &str = "guest.pcap";
/// Where failing tests leave their pcap (relative to the repository).
pub const KEPT_PCAP_DIR: &str = "target/netfault";
/// Probes before a [`Prober`] stops by itself (10 minutes at one a second).
const MAX_PROBES: usize = 600;

const _: () = assert!(RELAY_MAX_SECONDS as u64 > INIT_TIMEOUT.as_secs() + 120);
const _: () = assert!(MAX_HEAD < MAX_BODY);

/// Why the netfault tests cannot run here, if they cannot: they need root for
/// network namespaces and tap devices. Root without working namespaces is not
/// a reason: [`Netns::create`] fails the test then.
pub fn skip_reason() -> Option<String> {
    if Uid::effective().is_root() {
        None
    } else {
        Some(format!(
            "not root (euid {}): network namespaces and tap devices need root; CI runs as root",
            Uid::effective()
        ))
    }
}

/// For tests that need root: prints why `test` skips and returns `true`.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(why) => {
            note(test, format_args!("SKIPPED: {why}"));
            true
        }
        None => false,
    }
}

/// The relay program, `tests-qemu/relay/relay.py`.
pub fn relay_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("relay/relay.py")
}

/// The seed for a test: `NETFAULT_SEED` if set (a replay), else a fresh one
/// (time, pid, `salt`). Printed with the command that replays it.
pub fn seed(test: &str, salt: u64) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={v:?}: not a u64 ({e})")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // Keep it short enough to retype: 32 bits.
            (nanos ^ u64::from(std::process::id()).rotate_left(17) ^ salt.wrapping_mul(0x9e37_79b9))
                & 0xffff_ffff
        }
    };
    note(
        test,
        format_args!(
            "relay seed {seed} (replay: {SEED_ENV}={seed} cargo test -p tests-qemu --test netfault -- {test})"
        ),
    );
    seed
}

/// Runs `program args`, `Err` with its stderr unless it exits 0.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace with `tap0` = 10.0.3.1/24 up, loopback up, IPv6 off on
/// the tap. Deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace (after deleting ones left by dead test processes).
    /// Panics if `ip netns add` fails: the caller is root, so namespaces must work.
    pub fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let name = format!(
            "{NETNS_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = run("ip", &["netns", "add", &name]) {
            panic!("running as root, but cannot create a network namespace: {e}");
        }
        let ns = Netns { name };
        let cidr = format!("{HOST_IP}/{PREFIX_LEN}");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", TAP, "mode", "tap"],
            &["addr", "add", &cidr, "dev", TAP],
            &["link", "set", TAP, "up"],
        ] {
            if let Err(e) = ns.ip(args) {
                panic!("setting up namespace {}: {e}", ns.name);
            }
        }
        // Best effort: keeps router and neighbour solicitations off the link.
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{TAP}.disable_ipv6=1"),
            ],
        );
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> args`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <name> program`: add arguments and I/O, then spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// A TCP connection to `addr` made from inside the namespace.
    pub fn connect(&self, addr: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
        connect_in(&self.name, addr, timeout)
    }

    /// The namespace's IP/TCP counters (`/proc/net/snmp` and `/proc/net/netstat`)
    /// as `Group.Name` → value, e.g. `Tcp.InCsumErrors`, `IpExt.InCsumErrors`.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, String> {
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                "cat",
                "/proc/net/snmp",
                "/proc/net/netstat",
            ],
        )?;
        Ok(parse_proc_net(&out))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            note("netns", format_args!("could not delete {}: {e}", self.name));
        }
    }
}

/// Connects from a short-lived thread that first moves itself into namespace
/// `name`; the socket stays in that namespace for its whole life.
fn connect_in(name: &str, addr: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let path = format!("/run/netns/{name}");
    thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path)?;
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the connecting thread panicked")))
    })
}

/// Deletes `uk-relay-<pid>-<n>` namespaces whose pid is gone (a test process
/// killed before its guards ran).
fn sweep_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            match run("ip", &["netns", "del", name]) {
                Ok(_) => note("netns", format_args!("deleted stale namespace {name}")),
                Err(e) => note("netns", format_args!("stale namespace {name}: {e}")),
            }
        }
    }
}

/// `/proc/net/snmp`-style text: pairs of lines `Group: names...` and
/// `Group: values...`.
pub fn parse_proc_net(text: &str) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.windows(2) {
        let (Some((g1, names)), Some((g2, values))) =
            (pair[0].split_once(':'), pair[1].split_once(':'))
        else {
            continue;
        };
        if g1 != g2 || names.split_whitespace().any(|n| n.parse::<i64>().is_ok()) {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                map.insert(format!("{g1}.{n}"), v);
            }
        }
    }
    map
}

/// One direction's faults, or both (the relay's common options). Percentages,
/// milliseconds, kbit/s.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Profile {
    pub loss: f64,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub dup: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// 0: no rate limit.
    pub rate_kbit: f64,
    /// Frames queued per direction before tail drop; 0: the relay's default.
    pub limit: u32,
}

impl Profile {
    /// No faults at all.
    pub const CLEAN: Profile = Profile {
        loss: 0.0,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        dup: 0.0,
        reorder: 0.0,
        corrupt: 0.0,
        rate_kbit: 0.0,
        limit: 0,
    };

    /// The relay's options for this profile.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--loss={}", self.loss),
            format!("--delay={}", self.delay_ms),
            format!("--jitter={}", self.jitter_ms),
            format!("--dup={}", self.dup),
            format!("--reorder={}", self.reorder),
            format!("--corrupt={}", self.corrupt),
            format!("--rate={}", self.rate_kbit),
        ];
        if self.limit > 0 {
            args.push(format!("--limit={}", self.limit));
        }
        args
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {}%, delay {} ms ± {} ms, dup {}%, reorder {}%, corrupt {}%",
            self.loss, self.delay_ms, self.jitter_ms, self.dup, self.reorder, self.corrupt
        )?;
        if self.rate_kbit > 0.0 {
            write!(f, ", rate {} kbit/s", self.rate_kbit)?;
        }
        if self.limit > 0 {
            write!(f, ", queue {} frames", self.limit)?;
        }
        Ok(())
    }
}

/// `relay.py --dry-run n`: the decisions for the first `n` frames of each
/// direction, one line each (`to-guest 3 delay=17.114ms corrupt@0.511153^0x67`).
pub fn dry_run(seed: u64, profile: &Profile, n: usize) -> Vec<String> {
    let script = relay_script();
    let mut args: Vec<String> = vec![
        script.to_string_lossy().into_owned(),
        format!("--dry-run={n}"),
        format!("--seed={seed}"),
    ];
    args.extend(profile.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(PYTHON, &args).unwrap_or_else(|e| panic!("relay dry run: {e}"));
    out.lines().map(str::to_string).collect()
}

/// One direction's counters from the relay (`frames_in`, `lost`, `corrupted`,
/// `duplicated`, `reordered`, `tail_dropped`, `frames_out`, `send_blocked`, ...).
#[derive(Clone, Debug, Default)]
pub struct DirCounts(pub BTreeMap<String, u64>);

impl DirCounts {
    /// The counter `name`; panics if the relay did not report it.
    pub fn get(&self, name: &str) -> u64 {
        match self.0.get(name) {
            Some(&v) => v,
            None => panic!("relay counts have no {name:?}: {:?}", self.0),
        }
    }
}

/// What the relay did, from its `relay: counts {json}` line.
#[derive(Clone, Debug)]
pub struct RelayCounts {
    pub seed: u64,
    pub to_guest: DirCounts,
    pub to_host: DirCounts,
    /// Frames the relay could not deliver, by `direction errno`.
    pub send_errors: BTreeMap<String, u64>,
    /// The JSON as printed.
    pub json: String,
}

impl RelayCounts {
    pub fn parse(json: &str) -> Result<RelayCounts, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("relay counts {json:?}: {e}"))?;
        let map = |key: &str| -> Result<BTreeMap<String, u64>, String> {
            let obj = v
                .get(key)
                .and_then(|o| o.as_object())
                .ok_or_else(|| format!("relay counts: no object {key:?} in {json}"))?;
            obj.iter()
                .map(|(k, n)| {
                    n.as_u64()
                        .map(|n| (k.clone(), n))
                        .ok_or_else(|| format!("relay counts: {key}.{k} is not a u64"))
                })
                .collect()
        };
        Ok(RelayCounts {
            seed: v
                .get("seed")
                .and_then(|s| s.as_u64())
                .ok_or_else(|| format!("relay counts: no seed in {json}"))?,
            to_guest: DirCounts(map("to_guest")?),
            to_host: DirCounts(map("to_host")?),
            send_errors: map("send_errors")?,
            json: json.to_string(),
        })
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        let dir = |d: &DirCounts| {
            format!(
                "in {} lost {} corrupted {} dup {} reordered {} tail-dropped {} out {} \
                 (blocked {} times, max queue {})",
                d.get("frames_in"),
                d.get("lost"),
                d.get("corrupted"),
                d.get("duplicated"),
                d.get("reordered"),
                d.get("tail_dropped"),
                d.get("frames_out"),
                d.get("send_blocked"),
                d.get("max_queue"),
            )
        };
        format!(
            "seed {}: to guest: {}; to host: {}; send errors {:?}",
            self.seed,
            dir(&self.to_guest),
            dir(&self.to_host),
            self.send_errors
        )
    }
}

/// The relay process, inside the namespace. Dropping it closes its stdin (it
/// ends, printing its counts) and kills it if it has not ended within
/// `RELAY_STOP_TIMEOUT` (5 s).
pub struct Relay {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    pub seed: u64,
    counts: Option<RelayCounts>,
}

impl Relay {
    /// Starts the relay in `ns` between `listen` (its socket, QEMU's
    /// `remote.path`) and `connect` (QEMU's `local.path`), logging to `log`,
    /// and waits for `relay: ready`. `log_decisions`: log the decisions for
    /// the first that many frames of each direction.
    pub fn start(
        ns: &Netns,
        sockets: &SocketPaths,
        log: &Path,
        pcap: Option<&Path>,
        profile: &Profile,
        seed: u64,
        log_decisions: usize,
    ) -> Relay {
        let file = File::create(log)
            .unwrap_or_else(|e| panic!("creating relay log {}: {e}", log.display()));
        let err_file = file
            .try_clone()
            .unwrap_or_else(|e| panic!("relay log {}: {e}", log.display()));
        let mut cmd = ns.command(PYTHON);
        cmd.arg(relay_script())
            .arg(format!("--tap={TAP}"))
            .arg(format!("--listen={}", sockets.relay.display()))
            .arg(format!("--connect={}", sockets.qemu.display()))
            .arg(format!("--seed={seed}"))
            .arg(format!("--max-seconds={RELAY_MAX_SECONDS}"))
            .arg(format!("--log-decisions={log_decisions}"))
            .arg("--exit-on-stdin-eof")
            .args(pcap.map(|p| format!("--pcap={}", p.display())))
            .args(profile.args())
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(err_file);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting the relay in {}: {e}", ns.name));
        let stdin = child.stdin.take();
        let mut relay = Relay {
            child,
            stdin,
            log: log.to_path_buf(),
            seed,
            counts: None,
        };
        relay.wait_ready();
        relay
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + RELAY_READY_TIMEOUT;
        for _ in 0..10_000 {
            if self.log_text().lines().any(|l| l == "relay: ready") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the relay exited ({status}) before `relay: ready`:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no `relay: ready` within {RELAY_READY_TIMEOUT:?}:\n{}",
            self.log_text()
        );
    }

    /// The relay's log so far (seed, settings, decisions, counts at the end).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `LOG_TAIL_LINES` (60) lines of the log, without decision lines.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("relay: decision "))
            .collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The decisions the relay logged (`--log-decisions`), in the format of
    /// [`dry_run`]'s lines.
    pub fn logged_decisions(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.strip_prefix("relay: decision "))
            .map(str::to_string)
            .collect()
    }

    /// Ends the relay (end of stdin; SIGTERM, then SIGKILL if it lingers) and
    /// returns its counts. Later calls return the same counts.
    pub fn stop(&mut self) -> Result<RelayCounts, String> {
        if let Some(counts) = &self.counts {
            return Ok(counts.clone());
        }
        self.end();
        let text = self.log_text();
        let line = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("relay: counts "))
            .ok_or_else(|| format!("the relay printed no counts:\n{}", self.log_tail()))?;
        let counts = RelayCounts::parse(line)?;
        self.counts = Some(counts.clone());
        Ok(counts)
    }

    /// Closes stdin and waits; SIGTERM after [`RELAY_STOP_TIMEOUT`], SIGKILL
    /// after another second. Always reaps the process.
    fn end(&mut self) {
        drop(self.stdin.take());
        if self.wait_exit(RELAY_STOP_TIMEOUT) {
            return;
        }
        // `ip netns exec` execs the relay, so the child's pid is the relay's.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if !self.wait_exit(Duration::from_secs(1)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.counts.is_none() {
            self.end();
        }
    }
}

/// The two unix datagram sockets between QEMU and the relay.
#[derive(Clone, Debug)]
pub struct SocketPaths {
    /// QEMU binds this (`local.path`); the relay sends to it.
    pub qemu: PathBuf,
    /// The relay binds this; QEMU sends to it (`remote.path`).
    pub relay: PathBuf,
}

impl SocketPaths {
    /// QEMU's NIC on the dgram netdev: `-netdev dgram,... -device virtio-net-device`.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "dgram,id=net0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                self.qemu.display(),
                self.relay.display()
            ),
            "-device".into(),
            "virtio-net-device,netdev=net0".into(),
        ]
    }
}

/// A directory for the sockets and the relay log, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "uk-netfault-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A guest whose only NIC goes through the relay into the test's namespace.
/// Fields drop in order: QEMU, relay, namespace, directory.
pub struct FaultNet {
    pub guest: Guest,
    pub relay: Relay,
    pub ns: Netns,
    dir: TempDir,
    pub test: String,
    pub profile: Profile,
    pub seed: u64,
}

impl FaultNet {
    /// Namespace, relay with `profile` and `seed`, then the guest with
    /// `ip=10.0.3.2/24,gateway=10.0.3.1` and `extra_config`; returns once
    /// `/health` answered 200 through the relay.
    pub fn start(
        test: &str,
        profile: Profile,
        seed: u64,
        log_decisions: usize,
        extra_config: &[&str],
    ) -> FaultNet {
        let dir = TempDir::new();
        let ns = Netns::create();
        let sockets = SocketPaths {
            qemu: dir.0.join("qemu.sock"),
            relay: dir.0.join("relay.sock"),
        };
        let relay = Relay::start(
            &ns,
            &sockets,
            &dir.0.join("relay.log"),
            Some(&dir.0.join(PCAP_NAME)),
            &profile,
            seed,
            log_decisions,
        );
        let ip = format!("ip={GUEST_IP}/{PREFIX_LEN}");
        let gateway = format!("gateway={HOST_IP}");
        // The relay carries port 80 only: the stats the tests read come
        // through it, so the admin endpoints stay on that port.
        let mut items = vec![ip.as_str(), gateway.as_str(), "admin=public"];
        items.extend_from_slice(extra_config);
        let cfg = QemuConfig {
            extra_args: sockets.qemu_args(),
            ..config(&items)
        };
        let start = Instant::now();
        let guest = boot(test, &cfg);
        let net = FaultNet {
            guest,
            relay,
            ns,
            dir,
            test: test.to_string(),
            profile,
            seed,
        };
        if let Err(e) = net.guest.wait_for("net: ready", INIT_TIMEOUT) {
            net.fail(format_args!("waiting for `net: ready`: {e}"));
        }
        net.wait_healthy();
        note(
            test,
            format_args!(
                "accel={:?} namespace {} relay seed {} ({profile}): /health 200 after {:.2?}",
                net.guest.accel(),
                net.ns.name(),
                seed,
                start.elapsed()
            ),
        );
        net
    }

    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(GUEST_IP, 80)
    }

    /// Where the sockets and the relay log are.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::new();
        for _ in 0..1000 {
            match self.get("/health", CONNECT_TIMEOUT, CONNECT_TIMEOUT) {
                Ok(d) if d.status == 200 && d.body == b"ok\n" => return,
                Ok(d) => last = format!("status {} body {:?}", d.status, d.body_text()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.fail(format_args!(
            "GET /health did not answer 200 `ok` within {HEALTH_TIMEOUT:?}; last: {last}"
        ))
    }

    /// `GET path` on a new connection (`Connection: close`) from the namespace:
    /// at most `deadline` in all, and no more than `stall` without a byte.
    pub fn get(
        &self,
        path: &str,
        deadline: Duration,
        stall: Duration,
    ) -> Result<Fetch, FetchError> {
        fetch(&self.ns.name, self.addr(), path, deadline, stall)
    }

    /// A [`Fetch`] of `path` that runs on its own thread (for parallel downloads).
    pub fn spawn_get(
        &self,
        path: &str,
        deadline: Duration,
        stall: Duration,
    ) -> JoinHandle<Result<Fetch, FetchError>> {
        let (ns, addr, path) = (self.ns.name.clone(), self.addr(), path.to_string());
        thread::spawn(move || fetch(&ns, addr, &path, deadline, stall))
    }

    /// `/health` every `interval` on a keep-alive connection until stopped.
    pub fn start_prober(&self, interval: Duration, limit: Duration) -> Prober {
        Prober::start(self.ns.name.clone(), self.addr(), interval, limit)
    }

    /// `/api/stats.json`: every numeric field.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let t = Duration::from_secs(20);
        let d = self
            .get("/api/stats.json", t, t)
            .map_err(|e| e.to_string())?;
        if d.status != 200 {
            return Err(format!("/api/stats.json answered {}", d.status));
        }
        let v: serde_json::Value = serde_json::from_slice(&d.body)
            .map_err(|e| format!("/api/stats.json: {e}: {:?}", d.body_text()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("/api/stats.json is not an object: {}", d.body_text()))?;
        Ok(obj
            .iter()
            .filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n)))
            .collect())
    }

    /// The namespace's IP/TCP counters (see [`Netns::counters`]).
    pub fn host_counters(&self) -> BTreeMap<String, u64> {
        self.ns
            .counters()
            .unwrap_or_else(|e| self.fail(format_args!("namespace counters: {e}")))
    }

    /// What is wrong with the guest now: QEMU gone, or a FATAL line on serial.
    pub fn guest_problems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(status) = self.guest.wait_exit(Duration::ZERO) {
            problems.push(format!("QEMU exited ({status}) during the test"));
        }
        if let Some(line) = self.guest.serial().lines().find(|l| l.contains("FATAL ")) {
            problems.push(format!("the serial log has a FATAL line: {line:?}"));
        }
        problems
    }

    /// `[tests-qemu <test>] message` on stderr.
    pub fn note(&self, message: std::fmt::Arguments<'_>) {
        note(&self.test, message);
    }

    /// Copies the relay's pcap to [`KEPT_PCAP_DIR`]; says where, or why not.
    fn keep_pcap(&self) -> String {
        let src = self.dir.0.join(PCAP_NAME);
        let dir = boot_image::repo_root().join(KEPT_PCAP_DIR);
        let dst = dir.join(format!("{}-{}.pcap", self.test, self.seed));
        match fs::create_dir_all(&dir).and_then(|()| fs::copy(&src, &dst)) {
            Ok(_) => format!(
                "the guest's side of the link (frames it sent, frames it got): {}",
                dst.display()
            ),
            Err(e) => format!("pcap {} not kept: {e}", src.display()),
        }
    }

    /// Panics with `message`, the seed and profile, the relay's log and the
    /// guest's serial log; keeps the relay's pcap.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "[{}] {message}\nrelay seed {} ({}); replay: {SEED_ENV}={} cargo test -p tests-qemu --test netfault -- {}\n{}\n\
             --- relay log (tail) ---\n{}\n--- serial ({:?}) ---\n{}--- QEMU stderr ---\n{}--- end ---",
            self.test,
            self.seed,
            self.profile,
            self.seed,
            self.test,
            self.keep_pcap(),
            self.relay.log_tail(),
            self.guest.accel(),
            self.guest.serial(),
            self.guest.qemu_stderr(),
        )
    }
}

/// A completed response.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub status: u16,
    pub body: Vec<u8>,
    /// From starting to connect to the last body byte.
    pub elapsed: Duration,
    /// The longest time without a byte arriving, connect included.
    pub max_gap: Duration,
    /// Whether the server said `Connection: close`.
    pub close: bool,
}

impl Fetch {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response that did not complete, and how far it got.
#[derive(Clone, Debug)]
pub struct FetchError {
    pub what: String,
    /// Response bytes (head and body) received.
    pub bytes: usize,
    pub elapsed: Duration,
    pub max_gap: Duration,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {:.2?}, {} bytes received, longest gap {:.2?})",
            self.what, self.elapsed, self.bytes, self.max_gap
        )
    }
}

/// Arrival times of a response's bytes.
struct Progress {
    start: Instant,
    last: Instant,
    max_gap: Duration,
    bytes: usize,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            start: now,
            last: now,
            max_gap: Duration::ZERO,
            bytes: 0,
        }
    }

    fn got(&mut self, n: usize) {
        let now = Instant::now();
        self.max_gap = self.max_gap.max(now - self.last);
        self.last = now;
        self.bytes += n;
    }

    fn error(&self, what: impl Into<String>) -> FetchError {
        FetchError {
            what: what.into(),
            bytes: self.bytes,
            elapsed: self.start.elapsed(),
            max_gap: self.max_gap.max(self.last.elapsed()),
        }
    }
}

fn fetch(
    ns: &str,
    addr: SocketAddrV4,
    path: &str,
    deadline: Duration,
    stall: Duration,
) -> Result<Fetch, FetchError> {
    let mut progress = Progress::new();
    let end = progress.start + deadline;
    let mut stream = connect_in(ns, addr, stall.min(deadline))
        .map_err(|e| progress.error(format!("connect {addr}: {e}")))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {GUEST_IP}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(stall))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| progress.error(format!("sending GET {path}: {e}")))?;
    read_response(&mut stream, end, stall, &mut progress)
}

/// Reads one response (head, then a `Content-Length` body) from `stream`,
/// parsed by [`crate::http::parse_response`], timing every byte's arrival.
fn read_response(
    stream: &mut TcpStream,
    end: Instant,
    stall: Duration,
    progress: &mut Progress,
) -> Result<Fetch, FetchError> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Each pass reads at least one byte or returns.
    for _ in 0..=MAX_HEAD + MAX_BODY {
        if buf.len() > MAX_HEAD + MAX_BODY {
            return Err(progress.error(format!("response over {} bytes", MAX_HEAD + MAX_BODY)));
        }
        match parse_response(&buf, false) {
            Ok(Some((response, used))) => {
                if buf.len() > used {
                    return Err(
                        progress.error(format!("{} bytes after the response", buf.len() - used))
                    );
                }
                let close = response.closes();
                return Ok(Fetch {
                    status: response.status,
                    body: response.body,
                    elapsed: progress.start.elapsed(),
                    max_gap: progress.max_gap,
                    close,
                });
            }
            Ok(None) => {}
            Err(e) => return Err(progress.error(e)),
        }
        let now = Instant::now();
        if now >= end {
            return Err(progress.error("deadline passed"));
        }
        let wait = stall.min(end - now).max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| progress.error(format!("set_read_timeout: {e}")))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(progress.error("connection closed before the response ended")),
            Ok(n) => {
                progress.got(n);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= end {
                    return Err(progress.error("deadline passed"));
                }
                return Err(progress.error(format!("stalled: no byte for {wait:?}")));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(progress.error(format!("read: {e}"))),
        }
    }
    Err(progress.error("too many reads"))
}

/// One `/health` probe: when it started (from the prober's start) and how
/// long it took, or why it failed.
#[derive(Clone, Debug)]
pub struct Probe {
    pub at: Duration,
    pub result: Result<Duration, String>,
    /// Whether the probe had to open a new connection.
    pub connected: bool,
}

/// `GET /health` every `interval` on one keep-alive connection (a new one
/// after an error or a close), each probe bounded by `limit`.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Probe>>>,
}

impl Prober {
    fn start(ns: String, addr: SocketAddrV4, interval: Duration, limit: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || probe_loop(&ns, addr, interval, limit, &flag));
        Prober {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after the probe in progress; every probe made.
    pub fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(probes)) => probes,
            Some(Err(_)) => panic!("the /health prober panicked"),
            None => Vec::new(),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn probe_loop(
    ns: &str,
    addr: SocketAddrV4,
    interval: Duration,
    limit: Duration,
    stop: &AtomicBool,
) -> Vec<Probe> {
    let start = Instant::now();
    let mut probes = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let request = format!("GET /health HTTP/1.1\r\nHost: {GUEST_IP}\r\n\r\n");
    for i in 0..MAX_PROBES {
        // Sleep in short steps until this probe's slot, watching `stop`.
        let slot = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        while Instant::now() < slot && !stop.load(Ordering::Relaxed) {
            thread::sleep((slot - Instant::now()).min(Duration::from_millis(50)));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = start.elapsed();
        let mut progress = Progress::new();
        let end = progress.start + limit;
        let connected = conn.is_none();
        let result = (|| -> Result<Fetch, FetchError> {
            if conn.is_none() {
                let s = connect_in(ns, addr, limit)
                    .map_err(|e| progress.error(format!("connect: {e}")))?;
                conn = Some(s);
            }
            let Some(s) = conn.as_mut() else {
                return Err(progress.error("no connection"));
            };
            s.set_write_timeout(Some(limit))
                .and_then(|()| s.write_all(request.as_bytes()))
                .map_err(|e| progress.error(format!("send: {e}")))?;
            read_response(s, end, limit, &mut progress)
        })();
        let result = match result {
            Ok(f) if f.status == 200 && f.body == b"ok\n" => {
                if f.close {
                    conn = None;
                }
                Ok(f.elapsed)
            }
            Ok(f) => {
                conn = None;
                Err(format!("status {} body {:?}", f.status, f.body_text()))
            }
            Err(e) => {
                conn = None;
                Err(e.to_string())
            }
        };
        probes.push(Probe {
            at,
            result,
            connected,
        });
    }
    probes
}

/// Summary of probe latencies: count, failures, late (over `late`), median,
/// 90th percentile, max.
pub fn probe_summary(probes: &[Probe], late: Duration) -> String {
    let mut ok: Vec<Duration> = probes
        .iter()
        .filter_map(|p| p.result.as_ref().ok().copied())
        .collect();
    ok.sort();
    let pct = |p: usize| {
        ok.get((ok.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "{} probes ({} on new connections): {} failed, {} over {late:?}; median {:.0?}, p90 {:.0?}, max {:.0?}",
        probes.len(),
        probes.iter().filter(|p| p.connected).count(),
        probes.iter().filter(|p| p.result.is_err()).count(),
        ok.iter().filter(|d| **d > late).count(),
        pct(50),
        pct(90),
        ok.last().copied().unwrap_or_default()
    )
}

/// Index of the first difference between `got` and `want` (byte-exact check),
/// `None` if equal.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    Some(
        got.iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len())),
    )
}

/// A file of the baked site, read from `kernel/site/` on the host.
pub fn site_file(name: &str) -> Vec<u8> {
    let path = boot_image::repo_root().join("kernel/site").join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_pairs_are_parsed() {
        let text = "Ip: Forwarding InHdrErrors\nIp: 2 7\nTcp: InCsumErrors\nTcp: 3\n\
                    IpExt: InCsumErrors\nIpExt: 4\n";
        let m = parse_proc_net(text);
        assert_eq!(m.get("Ip.InHdrErrors"), Some(&7));
        assert_eq!(m.get("Tcp.InCsumErrors"), Some(&3));
        assert_eq!(m.get("IpExt.InCsumErrors"), Some(&4));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn relay_counts_parse() {
        let json = r#"{"seed": 5, "stop": "end of stdin", "send_errors": {"to-guest ECONNREFUSED": 2},
            "to_guest": {"frames_in": 10, "lost": 1}, "to_host": {"frames_in": 20, "lost": 0}}"#;
        let c = RelayCounts::parse(json).unwrap();
        assert_eq!(c.seed, 5);
        assert_eq!(c.to_guest.get("lost"), 1);
        assert_eq!(c.to_host.get("frames_in"), 20);
        assert_eq!(c.send_errors.get("to-guest ECONNREFUSED"), Some(&2));
        assert!(RelayCounts::parse("{}").is_err());
    }

    #[test]
    fn first_difference_finds_the_offset() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abd", b"abc"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }

    #[test]
    fn profile_args_name_every_fault() {
        let p = Profile {
            loss: 5.0,
            limit: 32,
            ..Profile::CLEAN
        };
        let args = p.args();
        assert!(args.contains(&"--loss=5".to_string()));
        assert!(args.contains(&"--limit=32".to_string()));
        assert!(
            !Profile::CLEAN
                .args()
                .iter()
                .any(|a| a.starts_with("--limit"))
        );
    }
}
