//! Network faults for the QEMU tests: a seeded relay
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

mod client;
mod guest;
mod relay;

pub use client::*;
pub use guest::*;
pub use relay::*;

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
