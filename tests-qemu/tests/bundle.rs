//! Site bundles and the kernel command line on a real guest: one image serves
//! two bundles through `-initrd`, a bundle packed into the image and its baked
//! site, each byte-exact; a corrupted bundle costs 503 with its reason and
//! nothing else; a 64 MiB bundle serves byte-exact; `-M microvm,acpi=off`
//! with configuration only on `-append` serves and applies it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boot_image::Profile;
use tests_qemu::http::{HttpGuest, Transport, boot_http_image, get_from, gunzip, site_file};
use tests_qemu::{Scratch, image, note};

/// A generous bound on boot to the first 200: TCG on a shared host, not a target.
const BOOT_SANITY: Duration = Duration::from_secs(60);

/// Writes `files` (path relative to the site root, bytes) under `dir`.
fn write_site(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
}

/// The bundle of `dir`, written to `out`.
fn bundle(dir: &Path, out: &Path) -> PathBuf {
    let started = Instant::now();
    let summary = boot_image::bundle::build(dir, out)
        .unwrap_or_else(|e| panic!("bundling {}: {e}", dir.display()));
    note(
        "bundle",
        format_args!(
            "{}: {} paths, {} bytes in {:.2?}",
            out.display(),
            summary.paths,
            summary.bytes,
            started.elapsed()
        ),
    );
    out.to_path_buf()
}

/// Boots `image` with `initrd` (if any), waits for `net: ready`, and returns the
/// guest with the time from QEMU's start to the first 200 of `first`.
/// The request whose first 200 ends the boot: on the site's port, or on the
/// admin port (where a broken site cannot answer 200).
#[derive(Debug, Clone, Copy)]
enum First {
    Site(&'static str),
    Admin(&'static str),
}

fn boot_site(
    test: &str,
    image: &Path,
    initrd: Option<&Path>,
    first: First,
) -> (HttpGuest, Duration) {
    let started = Instant::now();
    let guest = boot_http_image(
        test,
        image,
        Transport::Legacy,
        &[],
        |cfg| cfg.initrd = initrd.map(Path::to_path_buf),
        false,
    );
    let deadline = Instant::now() + BOOT_SANITY;
    loop {
        let answer = match first {
            First::Site(path) => guest.try_get(path),
            First::Admin(path) => get_from(guest.admin_addr(), path),
        };
        match answer {
            Ok(r) if r.status == 200 => break,
            other if Instant::now() >= deadline => {
                guest.fail(format_args!("GET {first:?} never answered 200: {other:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let took = started.elapsed();
    if took > BOOT_SANITY {
        guest.fail(format_args!("first 200 after {took:?}"));
    }
    (guest, took)
}

/// Every file answers byte-exact, and its gzip variant (when the guest sends
/// one) decompresses to it.
fn check_files(guest: &HttpGuest, files: &[(&str, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = format!("/{rel}");
        let r = guest.get(&path);
        if r.status != 200 || &r.body != bytes {
            guest.fail(format_args!(
                "GET {path}: status {}, {} bytes, want 200 and the file's {} bytes",
                r.status,
                r.body.len(),
                bytes.len()
            ));
        }
        let r = guest.request("GET", &path, &["Accept-Encoding: gzip"]);
        if r.header("Content-Encoding") == Some("gzip") && gunzip(&r.body).as_ref() != Ok(bytes) {
            guest.fail(format_args!(
                "GET {path} gzip does not decompress to the file"
            ));
        }
    }
    let health = guest.get("/health");
    if (health.status, health.body.as_slice()) != (200, b"ok\n".as_slice()) {
        guest.fail(format_args!(
            "/health: {} {:?}",
            health.status,
            health.body_text()
        ));
    }
}

fn page(name: &str) -> Vec<u8> {
    format!(
        "<!doctype html><title>{name}</title><p>{}</p>\n",
        format!("{name} ").repeat(300)
    )
    .into_bytes()
}

#[test]
fn one_image_serves_two_bundles_a_packed_site_and_the_baked_one() {
    let test = "bundle-sites";
    let scratch = Scratch::new(test);
    let a: Vec<(&str, Vec<u8>)> = vec![
        ("index.html", page("site A")),
        ("css/a.css", b"body { color: red }\n".repeat(50)),
        (
            "blob.bin",
            (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect(),
        ),
    ];
    let b: Vec<(&str, Vec<u8>)> = vec![
        ("index.html", page("site B")),
        ("docs/index.html", page("site B docs")),
        ("empty.txt", Vec::new()),
    ];
    write_site(&scratch.path("a"), &a);
    write_site(&scratch.path("b"), &b);
    let bundle_a = bundle(&scratch.path("a"), &scratch.path("a.bundle"));
    let bundle_b = bundle(&scratch.path("b"), &scratch.path("b.bundle"));
    let plain = &image().image;

    let (guest, took_a) = boot_site(test, plain, Some(&bundle_a), First::Site("/"));
    check_files(&guest, &a);
    if guest.get("/docs/").status != 404 {
        guest.fail("site A answers a path only site B has");
    }
    if !guest.guest.serial().contains("site: bundle of ") {
        guest.fail("no `site: bundle of` line");
    }
    guest.finish();

    let (guest, took_b) = boot_site(test, plain, Some(&bundle_b), First::Site("/"));
    check_files(&guest, &b);
    let dir = guest.get("/docs/");
    if dir.status != 200 || dir.body != page("site B docs") {
        guest.fail("GET /docs/ is not site B's docs index");
    }
    guest.finish();

    let (guest, took_baked) = boot_site(test, plain, None, First::Site("/"));
    let baked = [("index.html", site_file("index.html"))];
    check_files(&guest, &baked);
    if !guest.guest.serial().contains("site: baked into the kernel") {
        guest.fail("no `site: baked into the kernel` line");
    }
    guest.finish();

    let started = Instant::now();
    let packed = boot_image::build_image_with_site(Profile::Release, &scratch.path("b"))
        .unwrap_or_else(|e| panic!("cargo image --site: {e}"));
    note(
        test,
        format_args!("packed image built in {:.2?}", started.elapsed()),
    );
    let (guest, took_packed) = boot_site(test, &packed.image, None, First::Site("/"));
    check_files(&guest, &b);
    guest.finish();

    note(
        test,
        format_args!(
            "QEMU start to first 200 of /: baked {took_baked:.2?}, -initrd A {took_a:.2?}, \
             -initrd B {took_b:.2?}, packed B {took_packed:.2?}"
        ),
    );
}

#[test]
fn a_corrupted_bundle_gives_503_with_its_reason_and_nothing_else_breaks() {
    let test = "bundle-corrupt";
    let scratch = Scratch::new(test);
    write_site(&scratch.path("s"), &[("index.html", page("corrupt"))]);
    let path = bundle(&scratch.path("s"), &scratch.path("s.bundle"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let (guest, _) = boot_site(
        test,
        &image().image,
        Some(&path),
        First::Admin("/api/stats.json"),
    );
    let health = guest.get("/health");
    let text = health.body_text();
    if health.status != 503
        || !text.starts_with("unhealthy: site: bundle checksum mismatch: stored 0x")
    {
        guest.fail(format_args!("/health: {} {text:?}", health.status));
    }
    let site = guest.get("/");
    if site.status != 503 || !site.body_text().contains("bundle checksum mismatch") {
        guest.fail(format_args!(
            "GET /: {} {:?}",
            site.status,
            site.body_text()
        ));
    }
    for path in ["/metrics", "/status", "/api/requests.json"] {
        if guest.admin_get(path).status != 200 {
            guest.fail(format_args!("{path} stopped working with a bad bundle"));
        }
    }
    let serial = guest.guest.serial();
    if serial.contains("FATAL") || !serial.contains("site: bundle checksum mismatch") {
        guest.fail("expected the refusal on serial and no FATAL line");
    }
    guest.finish();
}

#[test]
fn a_64_mib_bundle_boots_and_serves_byte_exact() {
    let test = "bundle-64mib";
    let scratch = Scratch::new(test);
    // Incompressible (no variants), fixed seed: the bundle is just over 64 MiB.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..64 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let files = vec![("index.html", page("big")), ("big.bin", big)];
    write_site(&scratch.path("s"), &files);
    let path = bundle(&scratch.path("s"), &scratch.path("s.bundle"));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 64 << 20, "bundle is {size} bytes");

    let started = Instant::now();
    let guest = boot_http_image(
        test,
        &image().image,
        Transport::Legacy,
        &[],
        |cfg| {
            cfg.initrd = Some(path.clone());
            cfg.memory_mib = 256;
        },
        true,
    );
    let checked = guest
        .guest
        .wait_for("site: bundle of ", Duration::from_secs(1))
        .unwrap_or_else(|e| guest.fail(format_args!("no `site: bundle of` line: {e}")));
    note(
        test,
        format_args!(
            "healthy {:.2?} after QEMU start; guest: {}",
            started.elapsed(),
            checked.trim_end()
        ),
    );
    let started = Instant::now();
    check_files(&guest, &files);
    note(
        test,
        format_args!("fetched both files in {:.2?}", started.elapsed()),
    );
    let tail = guest.request("GET", "/big.bin", &["Range: bytes=-4096"]);
    if tail.status != 206 || tail.body[..] != files[1].1[(64 << 20) - 4096..] {
        guest.fail(format_args!("the last 4 KiB: status {}", tail.status));
    }
    guest.finish();
}

#[test]
fn acpi_off_with_configuration_only_on_the_command_line() {
    let test = "cmdline";
    let append = "sockets=3 fault=drop-irq:3 log=info";
    let guest = boot_http_image(
        test,
        &image().image,
        Transport::Legacy,
        &[],
        |cfg| {
            cfg.acpi = false;
            cfg.append = Some(append.to_string());
            // The launcher passes the time as `clock=` in fw_cfg; the RTC
            // gives it here.
            cfg.wall_clock = None;
        },
        true,
    );
    let serial = guest.guest.serial();
    for want in [
        "virtio_mmio.device=512@0x",
        "from the command line",
        "http: 3 sockets on port 80",
        "fault=drop-irq:3",
    ] {
        if !serial.contains(want) {
            guest.fail(format_args!("serial has no {want:?}"));
        }
    }
    if !serial.contains("config: no opt/unikernel/config in fw_cfg") {
        guest.fail("the test meant to pass no fw_cfg configuration");
    }
    let r = guest.get("/");
    if r.status != 200 || r.body != site_file("index.html") {
        guest.fail(format_args!("GET /: {}", r.status));
    }
    guest.finish();
}
