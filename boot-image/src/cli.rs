//! Command-line parsing for the `boot-image` binary (pure; used by `main.rs` only).

use std::path::PathBuf;

use boot_image::{Accel, Profile, QemuConfig, validate_config_item};

pub const USAGE: &str = "\
Build the unikernel image and boot it in QEMU (-M microvm).

Usage:
  cargo run [-- OPTIONS] [-- QEMU-ARGS...]   build, then boot with the serial console here
  cargo run -- image [--debug|--release]     build only; print the image path on stdout
  cargo image [--debug]                      same (alias)
  cargo image --site DIR                     the same kernel with DIR packed in as a bundle:
                                             target/image/<profile>/unikernel-site.elf
  cargo run -- bundle DIR -o FILE            write site directory DIR as a bundle
                                             (for -initrd; no kernel build)
  cargo qemu-args [OPTIONS] [QEMU-ARGS-OPTIONS] [-- QEMU-ARGS...]
                                             print, shell-quoted on one line, the QEMU
                                             command `cargo run` with OPTIONS would start
                                             (scripts and tests start QEMU from it)

Options:
  --release           boot the release kernel (default)
  --debug             boot the debug kernel
  --accel MODE        auto (default): KVM if the kernel boots under it (banner within
                      15 s), otherwise TCG; kvm or tcg: that one only
  --memory MIB        guest RAM in MiB (default 128)
  --port PORT         host port forwarded from 127.0.0.1 to guest port 80 (default 8080)
  --no-net            no network device
  --config KEY=VALUE  guest configuration item (repeatable), passed through fw_cfg
                      opt/unikernel/config; an item must not contain ','
  --bundle FILE       serve this site bundle (-initrd) instead of the one in the image
  --append TEXT       kernel command line: the --config keys as space-separated words
                      (--config wins for a key given both ways)
  --qmp PATH          QMP control socket (unix:PATH,server=on,wait=off)
  --serial-log FILE   also write the serial console to FILE
  --reboot            let a guest reset reboot it (default: a reset ends QEMU)
  -h, --help          this help
  -- QEMU-ARGS...     appended verbatim to QEMU's command line
                      (e.g. cargo run -- --port 8081 -- -d int,cpu_reset)

qemu-args also takes:
  --image FILE        the image to boot (default: build it, as `cargo image` does)
  --tap IFNAME        the NIC on this existing tap device instead of user networking
                      (no --port; give the guest an address with --config ip=...)
  --admin-port PORT   host 127.0.0.1:PORT forwarded to the guest's admin port 8081
  --access-log FILE   the access log's virtio serial port, appended to FILE
  --no-clock          leave out clock= (the host's time now), for a fixed command line

Ctrl-C stops QEMU (the launcher waits up to 2 s, then kills it).

Exit status:
  0    QEMU ended normally: Ctrl-C, or the guest reset/powered off (with -no-reboot)
  1    the build failed, QEMU could not start, or QEMU reported an error (shown above)
  2    bad command-line options
  3    the guest hit a fatal fault or panic; the dump is on the serial console above
  N    other statuses are QEMU's own ((v << 1) | 1 if the guest wrote v to
       isa-debug-exit); 128+S if QEMU was killed by signal S
";

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cli {
    Help,
    /// Build only and print the image path.
    Image {
        profile: Profile,
        /// Pack this site directory into the image as a bundle.
        site: Option<PathBuf>,
    },
    /// Build and boot.
    Run(RunOptions),
    /// Print the QEMU command line of a run.
    QemuArgs(QemuArgsOptions),
    /// Write a site directory as a bundle.
    Bundle {
        dir: PathBuf,
        out: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    pub profile: Profile,
    pub accel: Accel,
    pub memory_mib: u32,
    /// `None` with `--no-net`.
    pub port: Option<u16>,
    pub config: Vec<String>,
    pub qmp: Option<PathBuf>,
    pub serial_log: Option<PathBuf>,
    pub reboot: bool,
    /// A site bundle for `-initrd`.
    pub bundle: Option<PathBuf>,
    /// The kernel command line (`-append`).
    pub append: Option<String>,
    pub qemu_args: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        let qemu = QemuConfig::default();
        RunOptions {
            profile: Profile::Release,
            accel: qemu.accel,
            memory_mib: qemu.memory_mib,
            port: qemu.host_port,
            config: Vec::new(),
            qmp: None,
            serial_log: None,
            reboot: false,
            bundle: None,
            append: None,
            qemu_args: Vec::new(),
        }
    }
}

impl RunOptions {
    /// `cargo run` serves the admin endpoints on the site's port (`admin=public`)
    /// unless `--config admin=...` says otherwise, passes the host's clock
    /// (`clock=`), and adds the access log's console when `access_log` is set.
    pub fn qemu_config(&self) -> QemuConfig {
        let mut config = self.config.clone();
        if !self.config.iter().any(|i| i.starts_with("admin=")) {
            config.push("admin=public".to_string());
        }
        QemuConfig {
            accel: self.accel,
            memory_mib: self.memory_mib,
            host_port: self.port,
            config,
            wall_clock: Some(boot_image::now_unix()),
            no_reboot: !self.reboot,
            qmp_socket: self.qmp.clone(),
            initrd: self.bundle.clone(),
            append: self.append.clone(),
            extra_args: self.qemu_args.clone(),
            serial_log: self.serial_log.clone(),
            ..QemuConfig::default()
        }
    }
}

/// `qemu-args`: a run's options and what only a printed command line needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuArgsOptions {
    pub run: RunOptions,
    /// `None`: build the image of `run.profile`.
    pub image: Option<PathBuf>,
    pub tap: Option<String>,
    pub admin_port: Option<u16>,
    pub access_log: Option<PathBuf>,
    pub no_clock: bool,
}

impl QemuArgsOptions {
    /// The configuration `cargo run` would boot with, plus the extras.
    pub fn qemu_config(&self) -> QemuConfig {
        let mut cfg = self.run.qemu_config();
        if self.tap.is_some() {
            cfg.host_port = None;
        }
        cfg.tap = self.tap.clone();
        cfg.admin_host_port = self.admin_port;
        cfg.access_log = self
            .access_log
            .clone()
            .map(boot_image::AccessLogChannel::File);
        if self.no_clock {
            cfg.wall_clock = None;
        }
        cfg
    }
}

/// `words` as one POSIX shell line: a word with anything but
/// `[A-Za-z0-9_./:=,@%+-]` goes in single quotes.
pub fn shell_line(words: &[String]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c);
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(plain) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits `--name=value` into `("--name", Some("value"))`.
fn split_inline(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value)),
        _ => (arg, None),
    }
}

/// The value of option `name`: inline (`--name=value`) or the next argument.
fn take_value(
    name: &str,
    inline: Option<&str>,
    rest: &mut impl Iterator<Item = String>,
    what: &str,
) -> Result<String, String> {
    match inline {
        Some(v) => Ok(v.to_string()),
        None => rest
            .next()
            .ok_or_else(|| format!("option {name} needs a value ({what})")),
    }
}

fn parse_accel(value: &str) -> Result<Accel, String> {
    match value {
        "auto" => Ok(Accel::Auto),
        "kvm" => Ok(Accel::Kvm),
        "tcg" => Ok(Accel::Tcg),
        _ => Err(format!("--accel must be auto, kvm or tcg, not {value:?}")),
    }
}

fn parse_memory(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(m) if m > 0 => Ok(m),
        _ => Err(format!(
            "--memory needs a size in MiB (a positive integer), not {value:?}"
        )),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("--port needs a port number 1-65535, not {value:?}")),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("image") {
        args.next();
        return parse_image(args);
    }
    if args.peek().map(String::as_str) == Some("bundle") {
        args.next();
        return parse_bundle(args);
    }
    if args.peek().map(String::as_str) == Some("qemu-args") {
        args.next();
        return Ok(parse_run(args, true)?.map_or(Cli::Help, Cli::QemuArgs));
    }
    Ok(parse_run(args, false)?.map_or(Cli::Help, |o| Cli::Run(o.run)))
}

/// A run's options (`None` for help); with `qemu_args`, also the options only
/// `qemu-args` takes (without, they are unknown options).
fn parse_run(
    mut args: impl Iterator<Item = String>,
    qemu_args: bool,
) -> Result<Option<QemuArgsOptions>, String> {
    let mut extra = QemuArgsOptions::default();
    let mut opts = RunOptions::default();
    let mut port_given = false;
    let mut no_net = false;
    while let Some(arg) = args.next() {
        let (name, inline) = split_inline(&arg);
        let flag_only = || match inline {
            Some(_) => Err(format!("option {name} takes no value")),
            None => Ok(()),
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "--image" if qemu_args => {
                extra.image = Some(take_value(name, inline, &mut args, "FILE")?.into());
            }
            "--tap" if qemu_args => {
                extra.tap = Some(take_value(name, inline, &mut args, "IFNAME")?);
            }
            "--admin-port" if qemu_args => {
                extra.admin_port = Some(parse_port(&take_value(name, inline, &mut args, "PORT")?)?);
            }
            "--access-log" if qemu_args => {
                extra.access_log = Some(take_value(name, inline, &mut args, "FILE")?.into());
            }
            "--no-clock" if qemu_args => {
                flag_only()?;
                extra.no_clock = true;
            }
            "--release" => {
                flag_only()?;
                opts.profile = Profile::Release;
            }
            "--debug" => {
                flag_only()?;
                opts.profile = Profile::Debug;
            }
            "--no-net" => {
                flag_only()?;
                no_net = true;
            }
            "--reboot" => {
                flag_only()?;
                opts.reboot = true;
            }
            "--accel" => {
                opts.accel = parse_accel(&take_value(name, inline, &mut args, "auto|kvm|tcg")?)?;
            }
            "--memory" => {
                opts.memory_mib = parse_memory(&take_value(name, inline, &mut args, "MiB")?)?;
            }
            "--port" => {
                opts.port = Some(parse_port(&take_value(name, inline, &mut args, "PORT")?)?);
                port_given = true;
            }
            "--config" => {
                let item = take_value(name, inline, &mut args, "KEY=VALUE")?;
                validate_config_item(&item)?;
                opts.config.push(item);
            }
            "--qmp" => {
                opts.qmp = Some(take_value(name, inline, &mut args, "PATH")?.into());
            }
            "--bundle" => {
                opts.bundle = Some(take_value(name, inline, &mut args, "FILE")?.into());
            }
            "--append" => {
                opts.append = Some(take_value(name, inline, &mut args, "TEXT")?);
            }
            "--serial-log" => {
                opts.serial_log = Some(take_value(name, inline, &mut args, "FILE")?.into());
            }
            "--" => {
                opts.qemu_args.extend(args.by_ref());
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if no_net {
        if port_given {
            return Err("--port and --no-net cannot be used together".to_string());
        }
        opts.port = None;
    }
    if extra.tap.is_some() {
        if port_given || no_net || extra.admin_port.is_some() {
            return Err(
                "--tap replaces user networking: no --port, --admin-port or --no-net".to_string(),
            );
        }
        opts.port = None;
    }
    extra.run = opts;
    if qemu_args {
        extra.qemu_config().validate()?;
    }
    Ok(Some(extra))
}

fn parse_bundle(mut args: impl Iterator<Item = String>) -> Result<Cli, String> {
    let (mut dir, mut out) = (None, None);
    while let Some(arg) = args.next() {
        let (name, inline) = split_inline(&arg);
        match name {
            "-h" | "--help" => return Ok(Cli::Help),
            "-o" | "--output" => {
                out = Some(PathBuf::from(take_value(name, inline, &mut args, "FILE")?));
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("'bundle' takes one directory, got {arg:?} too")),
        }
    }
    match (dir, out) {
        (Some(dir), Some(out)) => Ok(Cli::Bundle { dir, out }),
        _ => Err("usage: bundle DIR -o FILE".to_string()),
    }
}

fn parse_image(mut args: impl Iterator<Item = String>) -> Result<Cli, String> {
    let mut profile = Profile::Release;
    let mut site = None;
    while let Some(arg) = args.next() {
        let (name, inline) = split_inline(&arg);
        match name {
            "-h" | "--help" => return Ok(Cli::Help),
            "--release" => profile = Profile::Release,
            "--debug" => profile = Profile::Debug,
            "--site" => site = Some(PathBuf::from(take_value(name, inline, &mut args, "DIR")?)),
            _ => {
                return Err(format!(
                    "'image' takes only --debug, --release or --site DIR, not {arg:?}"
                ));
            }
        }
    }
    Ok(Cli::Image { profile, site })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> RunOptions {
        match parse_strs(args) {
            Ok(Cli::Run(opts)) => opts,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn no_arguments_means_run_with_defaults() {
        let opts = run(&[]);
        assert_eq!(opts, RunOptions::default());
        assert_eq!(opts.profile, Profile::Release);
        assert_eq!(opts.accel, Accel::Auto);
        assert_eq!(opts.memory_mib, 128);
        assert_eq!(opts.port, Some(8080));
        let cfg = opts.qemu_config();
        assert!(cfg.no_reboot && cfg.debug_exit);
        assert_eq!(cfg.host_port, Some(8080));
        assert_eq!(cfg.config, ["admin=public"]);
        assert!(cfg.wall_clock.is_some_and(|s| s > 1_700_000_000));
        let own = run(&["--config", "admin=port"]).qemu_config();
        assert_eq!(own.config, ["admin=port"]);
    }

    #[test]
    fn every_run_option() {
        let opts = run(&[
            "--debug",
            "--accel",
            "tcg",
            "--memory=256",
            "--port",
            "9000",
            "--config",
            "ip=static",
            "--config=log=debug",
            "--qmp",
            "/tmp/q.sock",
            "--bundle",
            "s.bundle",
            "--append=sockets=3 log=warn",
            "--serial-log",
            "serial.log",
            "--reboot",
            "--",
            "-d",
            "int",
        ]);
        assert_eq!(opts.profile, Profile::Debug);
        assert_eq!(opts.accel, Accel::Tcg);
        assert_eq!(opts.memory_mib, 256);
        assert_eq!(opts.port, Some(9000));
        assert_eq!(opts.config, ["ip=static", "log=debug"]);
        assert_eq!(opts.qmp, Some(PathBuf::from("/tmp/q.sock")));
        assert_eq!(opts.bundle, Some(PathBuf::from("s.bundle")));
        assert_eq!(opts.append.as_deref(), Some("sockets=3 log=warn"));
        assert_eq!(opts.serial_log, Some(PathBuf::from("serial.log")));
        assert!(opts.reboot);
        assert_eq!(opts.qemu_args, ["-d", "int"]);
        let cfg = opts.qemu_config();
        assert!(!cfg.no_reboot);
        assert_eq!(cfg.extra_args, ["-d", "int"]);
        assert_eq!(cfg.serial_log, Some(PathBuf::from("serial.log")));
    }

    #[test]
    fn no_net_removes_the_port_and_conflicts_with_port() {
        assert_eq!(run(&["--no-net"]).port, None);
        assert!(parse_strs(&["--no-net", "--port", "1"]).is_err());
    }

    #[test]
    fn last_profile_wins() {
        assert_eq!(run(&["--debug", "--release"]).profile, Profile::Release);
    }

    #[test]
    fn help_anywhere() {
        assert_eq!(parse_strs(&["-h"]), Ok(Cli::Help));
        assert_eq!(parse_strs(&["--port", "1", "--help"]), Ok(Cli::Help));
        assert_eq!(parse_strs(&["image", "--help"]), Ok(Cli::Help));
    }

    #[test]
    fn image_with_a_site() {
        assert_eq!(
            parse_strs(&["image", "--site", "public"]),
            Ok(Cli::Image {
                profile: Profile::Release,
                site: Some("public".into())
            })
        );
        assert_eq!(
            parse_strs(&["image", "--debug", "--site=d"]),
            Ok(Cli::Image {
                profile: Profile::Debug,
                site: Some("d".into())
            })
        );
        assert!(parse_strs(&["image", "--site"]).is_err());
    }

    #[test]
    fn bundle_subcommand() {
        assert_eq!(
            parse_strs(&["bundle", "site", "-o", "s.bundle"]),
            Ok(Cli::Bundle {
                dir: "site".into(),
                out: "s.bundle".into()
            })
        );
        assert_eq!(
            parse_strs(&["bundle", "--output=x", "d"]),
            Ok(Cli::Bundle {
                dir: "d".into(),
                out: "x".into()
            })
        );
        assert!(parse_strs(&["bundle", "site"]).is_err());
        assert!(parse_strs(&["bundle", "-o", "x"]).is_err());
        assert!(parse_strs(&["bundle", "a", "b", "-o", "x"]).is_err());
        assert!(parse_strs(&["bundle", "a", "-o"]).is_err());
    }

    #[test]
    fn image_subcommand() {
        assert_eq!(
            parse_strs(&["image"]),
            Ok(Cli::Image {
                profile: Profile::Release,
                site: None
            })
        );
        assert_eq!(
            parse_strs(&["image", "--debug"]),
            Ok(Cli::Image {
                profile: Profile::Debug,
                site: None
            })
        );
        assert!(parse_strs(&["image", "--port", "1"]).is_err());
    }

    fn qemu_args(args: &[&str]) -> QemuArgsOptions {
        let mut all = vec!["qemu-args"];
        all.extend_from_slice(args);
        match parse_strs(&all) {
            Ok(Cli::QemuArgs(opts)) => opts,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn qemu_args_takes_the_run_options_and_its_own() {
        let plain = qemu_args(&["--accel", "tcg", "--memory", "64", "--port", "9000"]);
        assert_eq!(
            plain.run,
            run(&["--accel", "tcg", "--memory", "64", "--port", "9000"])
        );
        let cfg = plain.qemu_config();
        assert_eq!(cfg.host_port, Some(9000));
        assert_eq!(cfg.config, ["admin=public"]);
        assert!(cfg.wall_clock.is_some() && cfg.tap.is_none());

        let extra = qemu_args(&[
            "--image",
            "/i.elf",
            "--tap=tap0",
            "--config",
            "ip=10.0.2.15/24",
            "--access-log",
            "/tmp/a.log",
            "--no-clock",
        ]);
        assert_eq!(extra.image, Some(PathBuf::from("/i.elf")));
        let cfg = extra.qemu_config();
        assert_eq!(cfg.tap.as_deref(), Some("tap0"));
        assert_eq!(cfg.host_port, None);
        assert_eq!(cfg.wall_clock, None);
        assert_eq!(
            cfg.access_log,
            Some(boot_image::AccessLogChannel::File("/tmp/a.log".into()))
        );
        let admin = qemu_args(&["--admin-port", "9081"]).qemu_config();
        assert_eq!(admin.admin_host_port, Some(9081));

        // Its own options are not run's, and a tap excludes host ports.
        assert!(parse_strs(&["--tap", "tap0"]).is_err());
        assert!(parse_strs(&["--image", "/i.elf"]).is_err());
        for bad in [
            &["--tap", "tap0", "--port", "1"][..],
            &["--tap", "tap0", "--admin-port", "2"],
            &["--tap", "tap0", "--no-net"],
            &["--admin-port", "8080"],
            &["--tap", "a,b"],
        ] {
            let mut all = vec!["qemu-args"];
            all.extend_from_slice(bad);
            assert!(parse_strs(&all).is_err(), "{bad:?}");
        }
        assert_eq!(parse_strs(&["qemu-args", "--help"]), Ok(Cli::Help));
    }

    #[test]
    fn shell_line_quotes_what_the_shell_would_split() {
        let words: Vec<String> = ["qemu", "-m", "128M", "a b", "it's", "", "x,y=z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_line(&words),
            r#"qemu -m 128M 'a b' 'it'\''s' '' x,y=z"#
        );
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        for args in [
            &["--bogus"][..],
            &["stray"],
            &["--accel", "xen"],
            &["--accel"],
            &["--memory", "0"],
            &["--memory", "lots"],
            &["--port", "0"],
            &["--port", "70000"],
            &["--config", "a=1,b=2"],
            &["--config", "novalue"],
            &["--no-net=yes"],
            &["--qmp"],
        ] {
            let err = parse_strs(args).unwrap_err();
            assert!(!err.contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn usage_documents_every_option_and_exit_status() {
        for needle in [
            "--accel",
            "--memory",
            "--port",
            "--no-net",
            "--config",
            "--qmp",
            "--release",
            "--debug",
            "--serial-log",
            "--reboot",
            "--help",
            "image",
            "Exit status",
            "  0 ",
            "  3 ",
            "  2 ",
        ] {
            assert!(USAGE.contains(needle), "usage lacks {needle}");
        }
    }
}
