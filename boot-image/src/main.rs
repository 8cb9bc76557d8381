//! `cargo run`: build the image and boot it in QEMU with the serial console on this
//! terminal. `cargo run -- --help` lists the options and exit statuses.

mod cli;

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use boot_image::{
    AccessLogChannel, Artifacts, FAULT_EXIT_STATUS, GUEST_ADMIN_PORT, Guest, build_image,
    build_image_with_site, repo_root,
};
use cli::{Cli, QemuArgsOptions, RunOptions, USAGE};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// How long QEMU gets to exit by itself after Ctrl-C before it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How often the launcher looks for QEMU's exit and for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);
/// Exit status for a build or start failure.
const FAILURE: u8 = 1;
/// Exit status for bad options.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let parsed = match args {
        Ok(args) => cli::parse(args),
        Err(bad) => Err(format!("argument {bad:?} is not valid UTF-8")),
    };
    match parsed {
        Err(e) => {
            eprintln!("boot-image: {e}");
            eprintln!("Try 'cargo run -- --help'.");
            ExitCode::from(USAGE_ERROR)
        }
        Ok(Cli::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Image { profile, site }) => match match &site {
            Some(dir) => build_image_with_site(profile, dir),
            None => build_image(profile),
        } {
            Ok(artifacts) => {
                println!("{}", artifacts.image.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Ok(Cli::Run(opts)) => run(&opts),
        Ok(Cli::QemuArgs(opts)) => print_qemu_args(&opts),
        Ok(Cli::Bundle { dir, out }) => {
            let started = std::time::Instant::now();
            match boot_image::bundle::build(&dir, &out) {
                Ok(summary) => {
                    for warning in &summary.warnings {
                        eprintln!("boot-image: {warning}");
                    }
                    eprintln!(
                        "boot-image: {}: {} files, {} paths, {} redirect rules, {} bytes in {:.2} s",
                        out.display(),
                        summary.files,
                        summary.paths,
                        summary.redirects,
                        summary.bytes,
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// `qemu-args`: the command line on stdout, so that scripts and tests start
/// QEMU exactly as `cargo run` does rather than keeping a copy of it.
fn print_qemu_args(opts: &QemuArgsOptions) -> ExitCode {
    let image = match &opts.image {
        Some(image) => image.clone(),
        None => match build_image(opts.run.profile) {
            Ok(artifacts) => artifacts.image,
            Err(e) => return fail(&e),
        },
    };
    match qemu_args_line(opts, &image) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The QEMU command for `opts` booting `image`, as one shell line.
fn qemu_args_line(opts: &QemuArgsOptions, image: &std::path::Path) -> Result<String, String> {
    if image.to_str().is_none() {
        return Err(format!("image path {} is not valid UTF-8", image.display()));
    }
    let cfg = opts.qemu_config();
    let args = boot_image::qemu_args(image, cfg.accel, &cfg)?;
    let mut words = vec![boot_image::QEMU_PROGRAM.to_string()];
    // Every argument comes from UTF-8 options and a UTF-8 image path.
    words.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    Ok(cli::shell_line(&words))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("boot-image: error: {message}");
    ExitCode::from(FAILURE)
}

fn run(opts: &RunOptions) -> ExitCode {
    // Ctrl-C reaches QEMU too (same process group); the launcher must outlive it to
    // reap it and report its status. SIGTERM and SIGHUP land here as well.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        return fail(&format!("could not install the Ctrl-C handler: {e}"));
    }

    let artifacts = match build_image(opts.profile) {
        Ok(a) => a,
        Err(_) if interrupted.load(Ordering::SeqCst) => return interrupted_exit(),
        Err(e) => return fail(&e),
    };
    if interrupted.load(Ordering::SeqCst) {
        return interrupted_exit();
    }
    if let Some(port) = opts.port
        && let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
    {
        return fail(&format!(
            "cannot forward 127.0.0.1:{port} ({e}); is another instance running? choose another with --port"
        ));
    }

    let mut cfg = opts.qemu_config();
    let access_log = opts.port.map(|port| {
        let path = repo_root().join(format!("target/run/access-{port}.log"));
        cfg.access_log = Some(AccessLogChannel::File(path.clone()));
        path
    });
    if let Some(dir) = access_log.as_ref().and_then(|p| p.parent())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return fail(&format!("creating {}: {e}", dir.display()));
    }
    let mut guest = match Guest::start(&artifacts.image, &cfg, true) {
        Ok(g) => g,
        Err(_) if interrupted.load(Ordering::SeqCst) => return interrupted_exit(),
        Err(e) => return fail(&e),
    };
    if let Some(port) = opts.port {
        eprintln!("boot-image: site: http://127.0.0.1:{port}/");
        if cfg.config.iter().any(|i| i == "admin=public") {
            eprintln!(
                "boot-image: admin=public: /metrics, /api/stats.json, /api/requests.json, /status and \
                 /debug/* are on this port too (local development; a deployment serves them on guest \
                 port {GUEST_ADMIN_PORT})"
            );
        }
    }
    if let Some(path) = access_log {
        // Shown on a terminal only: a script reading the serial console
        // (scripts/soak) gets the kernel's lines alone.
        let show = std::io::stdout().is_terminal();
        eprintln!(
            "boot-image: access log: {}{}",
            path.display(),
            if show {
                " (also shown here as `access| ...`)"
            } else {
                ""
            }
        );
        if show {
            let stop = Arc::clone(&interrupted);
            std::thread::spawn(move || follow(&path, &stop));
        }
    }

    let status = loop {
        if let Some(status) = guest.wait_exit(POLL) {
            break Some(status);
        }
        if interrupted.load(Ordering::SeqCst) {
            match guest.wait_exit(INTERRUPT_GRACE) {
                Some(status) => break Some(status),
                None => {
                    eprintln!(
                        "boot-image: QEMU did not exit within {INTERRUPT_GRACE:?}; killing it"
                    );
                    guest.kill();
                    break None;
                }
            }
        }
    };
    match status {
        Some(status) => report_exit(status, &artifacts),
        // Killed by us after Ctrl-C: the user asked for it.
        None => ExitCode::SUCCESS,
    }
}

/// Prints the lines appended to `path` as `access| <line>` until `stop`.
fn follow(path: &PathBuf, stop: &AtomicBool) {
    let mut offset = 0u64;
    let mut partial = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut new = Vec::new();
        let Ok(n) = file.read_to_end(&mut new) else {
            continue;
        };
        offset += n as u64;
        partial.extend_from_slice(&new);
        let Some(end) = partial.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let mut out = std::io::stdout().lock();
        for line in partial[..end].split(|&b| b == b'\n') {
            let _ = out.write_all(b"access| ");
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
        partial.drain(..=end);
    }
}

fn interrupted_exit() -> ExitCode {
    eprintln!("boot-image: interrupted");
    ExitCode::SUCCESS
}

/// Says what QEMU's status means and passes it on as ours.
fn report_exit(status: ExitStatus, artifacts: &Artifacts) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(0), _) => ExitCode::SUCCESS,
        (Some(FAULT_EXIT_STATUS), _) => {
            eprintln!(
                "boot-image: the guest hit a fatal fault or panic (QEMU exit status {FAULT_EXIT_STATUS}); \
                 kernel ELF for symbolizing: {}",
                artifacts.kernel_elf.display()
            );
            ExitCode::from(exit_byte(FAULT_EXIT_STATUS))
        }
        (Some(code), _) => {
            eprintln!("boot-image: QEMU exited with status {code}");
            ExitCode::from(exit_byte(code))
        }
        (None, Some(signal)) => {
            eprintln!("boot-image: QEMU was killed by signal {signal}");
            ExitCode::from(exit_byte(128 + signal))
        }
        (None, None) => {
            eprintln!("boot-image: QEMU ended with {status}");
            ExitCode::from(FAILURE)
        }
    }
}

/// An exit status as the byte a process can return (1 if it does not fit).
fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed line, split by a real shell, is the launcher's command.
    #[test]
    fn printed_qemu_args_are_the_launchers_through_a_shell() {
        let parsed = cli::parse(
            [
                "qemu-args",
                "--accel",
                "tcg",
                "--config",
                "log=a b's",
                "--access-log",
                "/tmp/x y.log",
                "--no-clock",
            ]
            .map(String::from),
        );
        let Ok(Cli::QemuArgs(opts)) = parsed else {
            panic!("{parsed:?}");
        };
        let image = std::path::Path::new("/img/unikernel image.elf");
        let line = qemu_args_line(&opts, image).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {line}")])
            .output()
            .expect("sh");
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let cfg = opts.qemu_config();
        let mut expected = vec![boot_image::QEMU_PROGRAM.to_string()];
        expected.extend(
            boot_image::qemu_args(image, cfg.accel, &cfg)
                .unwrap()
                .into_iter()
                .map(|a| a.into_string().unwrap()),
        );
        assert_eq!(words, expected);
        assert!(words.iter().any(|w| w == "/img/unikernel image.elf"));
    }
}
