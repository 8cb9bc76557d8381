//! virtio-net offloads on a tap with a vnet header (the production tap path):
//! the guest negotiates checksum and segmentation offloads, and parallel large
//! downloads through them arrive byte-exact with no checksum error on either
//! side. Under user networking (no offloads offered) it negotiates none.
//!
//! The guest is a [`TapGuest`] (its tap moved into the test's namespace,
//! where the clients run). The namespace's own stack trusts partial
//! checksums, so `tests-qemu/offload/tap_checksums.py` captures the guest's
//! frames on the tap and checks the partial checksums the way a forwarding
//! host would complete them. Needs root; skipped otherwise.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use boot_image::GUEST_ADMIN_PORT;
use tests_qemu::attack::TapGuest;
use tests_qemu::netfault::{GUEST_IP, Netns, TAP, site_file, skip_reason};
use tests_qemu::{INIT_TIMEOUT, boot, config, fail, note};

/// Parallel downloads of each asset.
const PARALLEL: usize = 6;
/// Bound on one curl download (seconds).
const CURL_MAX_S: u64 = 60;
/// The checksum capture ends after this many TCP frames or seconds.
const CAPTURE_FRAMES: u32 = 3000;
const CAPTURE_S: u32 = 30;

/// `curl` in the namespace for `http://GUEST_IP:port/path`.
fn curl(ns: &Netns, port: u16, path: &str) -> std::process::Child {
    ns.command("curl")
        .args(["-sS", "--max-time", &CURL_MAX_S.to_string()])
        .arg(format!("http://{GUEST_IP}:{port}{path}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning curl in the namespace")
}

fn stat(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let rest = &json[json.find(&key)? + key.len()..];
    rest.split([',', '}']).next()?.trim().parse().ok()
}

#[test]
fn tap_offloads_carry_large_downloads_byte_exact() {
    const TEST: &str = "tap_offloads";
    if let Some(why) = skip_reason() {
        note(TEST, format_args!("SKIPPED: {why}"));
        return;
    }
    let tap = TapGuest::start(TEST, &[]);
    let (guest, ns) = (&tap.guest, &tap.ns);
    let offloads = guest
        .wait_for("net: offloads:", INIT_TIMEOUT)
        .unwrap_or_else(|e| fail(guest, e));
    if !offloads.contains("tx checksum true, rx checksum true, tso4 true") {
        fail(guest, format_args!("a tap offers offloads; {offloads}"));
    }

    let script = boot_image::repo_root().join("tests-qemu/offload/tap_checksums.py");
    let mut capture = ns
        .command("python3")
        .arg(&script)
        .args([
            TAP.to_string(),
            CAPTURE_FRAMES.to_string(),
            CAPTURE_S.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the checksum capture");
    let mut capture_out = BufReader::new(capture.stdout.take().expect("piped"));
    let mut line = String::new();
    capture_out.read_line(&mut line).expect("capture output");
    assert_eq!(line.trim(), "ready", "checksum capture did not start");

    let start = Instant::now();
    let assets = ["large.bin", "bench/64k.bin", "bench/4k.html"];
    let children: Vec<(&str, std::process::Child)> = assets
        .iter()
        .flat_map(|a| (0..PARALLEL).map(move |_| *a))
        .map(|a| (a, curl(ns, 80, &format!("/{a}"))))
        .collect();
    let mut problems = Vec::new();
    for (asset, child) in children {
        let out = child.wait_with_output().expect("curl");
        let want = site_file(asset);
        if !out.status.success() {
            problems.push(format!(
                "/{asset}: curl failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        } else if out.stdout != want {
            problems.push(format!(
                "/{asset}: {} bytes, want {} (first difference at {:?})",
                out.stdout.len(),
                want.len(),
                tests_qemu::netfault::first_difference(&out.stdout, &want)
            ));
        }
    }
    let elapsed = start.elapsed();
    line.clear();
    capture_out.read_line(&mut line).expect("capture counts");
    let _ = capture.wait();
    let counted = |name: &str| stat(&line, name);
    match (
        counted("partial_ok"),
        counted("partial_bad"),
        counted("full_bad"),
        counted("over_mtu"),
    ) {
        (Some(ok), Some(0), Some(0), Some(tso)) if ok > 0 && tso > 0 => {}
        _ => problems.push(format!(
            "checksums on the tap (want partial ones all right, TSO frames seen): {}",
            line.trim()
        )),
    }

    let stats = curl(ns, GUEST_ADMIN_PORT, "/api/stats.json")
        .wait_with_output()
        .expect("curl stats");
    let json = String::from_utf8_lossy(&stats.stdout).into_owned();
    for (name, max) in [("rx_dropped", 0), ("rx_checksum_errors", 0)] {
        match stat(&json, name) {
            Some(v) if v <= max => {}
            other => problems.push(format!("guest {name} = {other:?}, want <= {max}")),
        }
    }
    // Partial checksums the device completed, and TSO frames it segmented,
    // must all have verified in the namespace's stack.
    let counters = ns.counters().unwrap_or_else(|e| panic!("{e}"));
    for name in ["Tcp.InCsumErrors", "Ip.InHdrErrors", "IpExt.InCsumErrors"] {
        if counters.get(name).copied().unwrap_or(0) != 0 {
            problems.push(format!("namespace {name} = {:?}", counters.get(name)));
        }
    }
    note(
        TEST,
        format_args!(
            "{} downloads ({PARALLEL} each of {assets:?}) in {elapsed:.2?}; {offloads}; tap frames: {}",
            PARALLEL * assets.len(),
            line.trim()
        ),
    );
    if !problems.is_empty() {
        fail(guest, problems.join("\n"));
    }
}

#[test]
fn user_networking_offers_no_offloads() {
    const TEST: &str = "user_no_offloads";
    let mut cfg = config(&[]);
    cfg.host_port = Some(tests_qemu::http::free_port());
    let guest = boot(TEST, &cfg);
    let line = guest
        .wait_for("net: offloads:", INIT_TIMEOUT)
        .unwrap_or_else(|e| fail(&guest, e));
    if !line.contains("tx checksum false, rx checksum false, tso4 false") {
        fail(&guest, format_args!("user networking offers none; {line}"));
    }
}
