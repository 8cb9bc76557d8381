//! The Nomad job (`deploy/nomad/unikernel.nomad.hcl`) without Nomad, which
//! cannot be installed here: the test reads the job's QEMU command and
//! arguments, fills in what Nomad would (the allocation's address and port,
//! the task directory holding the bundle artifact, the job's variables) and
//! boots exactly that, three instances on ports it picks, each serving the
//! bundle byte-exact and answering the job's health check. Not run here:
//! Nomad's own parsing, scheduling, artifact download, service registration
//! and rolling update.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use boot_image::{Accel, AccessLogChannel, QemuConfig};
use tests_qemu::deploy::{TempDir, UnitGuest, deploy_dir, qemu_options};
use tests_qemu::http::free_port;
use tests_qemu::{image, note};

const JOB: &str = "nomad/unikernel.nomad.hcl";
const INSTANCES: usize = 3;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// The HCL string literals in `text`, in order. Job files use no escapes but `\"`.
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => s.extend(chars.next()),
                    Some('"') | None => break,
                    Some(c) => s.push(c),
                }
            }
            out.push(s);
        }
    }
    out
}

/// The string literals from `from` to the first `end` after it.
fn strings_between(text: &str, from: &str, end: &str) -> Vec<String> {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("{JOB}: no {from:?}"));
    let rest = &text[start + from.len()..];
    let stop = rest
        .find(end)
        .unwrap_or_else(|| panic!("{JOB}: no {end:?} after {from:?}"));
    quoted(&rest[..stop])
}

/// The string value of the first `key = "..."` after `block`.
fn value_in(text: &str, block: &str, key: &str) -> String {
    let start = text
        .find(block)
        .unwrap_or_else(|| panic!("{JOB}: no {block:?}"));
    let line = text[start..]
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{JOB}: no {key} in {block:?}"));
    let (_, value) = line
        .split_once('=')
        .unwrap_or_else(|| panic!("{JOB}: {line:?} is not key = value"));
    quoted(value)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{JOB}: {line:?} has no string"))
}

/// `${NAME}` in `arg` replaced from `vars`; any other `${` is an error.
fn interpolate(arg: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let close = rest[at..]
            .find('}')
            .unwrap_or_else(|| panic!("{JOB}: unclosed ${{ in {arg:?}"));
        let name = &rest[at + 2..at + close];
        let value = vars
            .get(name)
            .unwrap_or_else(|| panic!("{JOB}: the test does not know ${{{name}}} in {arg:?}"));
        out.push_str(value);
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_nomad_job_command_line_serves_three_instances() {
    let test = "nomad";
    let job = std::fs::read_to_string(deploy_dir().join(JOB)).expect("reading the job");
    let scratch = TempDir::new(test);

    // What the job asks of Nomad.
    assert_eq!(value_in(&job, "task \"guest\"", "driver"), "raw_exec");
    assert_eq!(value_in(&job, "check {", "type"), "http");
    assert_eq!(value_in(&job, "check {", "path"), "/health");
    assert_eq!(value_in(&job, "service {", "port"), "http");
    assert!(
        job.contains("port \"http\" {}"),
        "a dynamic port labelled http"
    );
    assert_eq!(value_in(&job, "update {", "health_check"), "checks");
    assert_eq!(
        value_in(&job, "artifact {", "destination"),
        "local/site.bundle"
    );
    let command = value_in(&job, "config {", "command");
    let args = strings_between(&job, "args = [", "]");
    assert!(args.len() > 10, "args: {args:?}");

    // The site, as the artifact would put it in each task directory.
    let site = scratch.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let index = b"<!doctype html><title>from nomad</title><p>bundle served by the job</p>\n";
    std::fs::write(site.join("index.html"), index).unwrap();
    let bundle = scratch.join("site.bundle");
    boot_image::bundle::build(&site, &bundle).expect("bundling the test site");

    let guest_config = value_in(&job, "variable \"guest_config\"", "default");
    let mut guests = Vec::new();
    for i in 0..INSTANCES {
        let task_dir = scratch.join(&format!("alloc-{i}/local"));
        std::fs::create_dir_all(&task_dir).unwrap();
        std::fs::copy(&bundle, task_dir.join("site.bundle")).unwrap();
        let port = free_port();
        let admin_port = free_port();
        let alloc_dir = scratch.join(&format!("alloc-{i}"));
        std::fs::create_dir_all(alloc_dir.join("logs")).unwrap();
        let vars = BTreeMap::from([
            ("var.image", image().image.to_string_lossy().into_owned()),
            ("var.guest_config", guest_config.clone()),
            ("NOMAD_TASK_DIR", task_dir.to_string_lossy().into_owned()),
            ("NOMAD_IP_http", "127.0.0.1".to_string()),
            ("NOMAD_HOST_PORT_http", port.to_string()),
            ("NOMAD_HOST_PORT_admin", admin_port.to_string()),
            ("NOMAD_ALLOC_DIR", alloc_dir.to_string_lossy().into_owned()),
        ]);
        let mut argv = vec![command.clone()];
        argv.extend(args.iter().map(|a| interpolate(a, &vars)));
        let tag = format!("alloc-{i}");
        guests.push(UnitGuest::spawn(
            test,
            &scratch,
            &tag,
            argv,
            port,
            admin_port,
            scratch.join(&format!("{tag}-no-qmp")),
        ));
    }
    for guest in &mut guests {
        let took = guest.wait_healthy(HEALTH_TIMEOUT);
        let r = guest
            .get("/", Duration::from_secs(10))
            .unwrap_or_else(|e| guest.fail(format_args!("GET /: {e}")));
        if r.status != 200 || r.body != index {
            guest.fail(format_args!(
                "GET / is not the bundle's index.html: {}",
                r.status
            ));
        }
        if !guest.serial().contains("site: bundle of ") {
            guest.fail("the guest did not take the bundle");
        }
        let stats = guest
            .admin_get("/api/stats.json", Duration::from_secs(10))
            .unwrap_or_else(|e| guest.fail(format_args!("admin GET /api/stats.json: {e}")));
        if stats.status != 200 {
            guest.fail(format_args!(
                "the job's admin port answers {} for /api/stats.json",
                stats.status
            ));
        }
        note(
            test,
            format_args!("port {}: healthy after {took:.2?}", guest.port),
        );
    }

    // The job runs the launcher's devices, flags and actions: its command line
    // is the one qemu_command builds, with the allocation's port and bundle.
    let argv = &guests[0].argv;
    let launcher: Vec<String> = boot_image::qemu_args(
        Path::new(&argv[argv.iter().position(|a| a == "-kernel").unwrap() + 1]),
        Accel::Auto,
        &QemuConfig {
            host_port: Some(guests[0].port),
            admin_host_port: Some(guests[0].admin_port),
            initrd: Some(scratch.join("alloc-0/local/site.bundle")),
            append: Some(guest_config.clone()),
            access_log: Some(AccessLogChannel::File(
                scratch.join("alloc-0/logs/access.log"),
            )),
            ..QemuConfig::default()
        },
    )
    .expect("launcher args")
    .into_iter()
    .map(|a| a.into_string().expect("UTF-8"))
    .collect();
    // Exactly the launcher's options, `restrict=on` (no outbound connections
    // from the guest) aside.
    let mut launcher_words = vec![boot_image::QEMU_PROGRAM.to_string()];
    launcher_words.extend(launcher);
    let job_words: Vec<String> = argv.iter().map(|w| w.replace("restrict=on,", "")).collect();
    assert_eq!(
        qemu_options(&job_words),
        qemu_options(&launcher_words),
        "the Nomad job's QEMU options against the launcher's:\n{}\n{}",
        argv.join(" "),
        launcher_words.join(" ")
    );
    for mut guest in guests {
        guest.stop();
    }
}
