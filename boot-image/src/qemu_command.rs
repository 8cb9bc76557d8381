//! The QEMU command line: what a [`QemuConfig`] turns into.
//!
//! Everything here is pure; [`crate::Guest`] runs the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The QEMU binary (looked up in `PATH`).
pub const QEMU_PROGRAM: &str = "qemu-system-x86_64";

// The kernel's own spelling of the fw_cfg file name, so the two cannot drift.
#[path = "../../kernel/src/config/fw_cfg_file.rs"]
mod fw_cfg_file;

/// The fw_cfg file the kernel reads its runtime configuration from.
pub const CONFIG_FW_CFG_NAME: &str = fw_cfg_file::FW_CFG_FILE;

/// The guest port that `QemuConfig::host_port` is forwarded to.
pub const GUEST_HTTP_PORT: u16 = 80;

/// The guest port of the admin endpoints (the kernel's default `admin_port`),
/// which `QemuConfig::admin_host_port` is forwarded to.
pub const GUEST_ADMIN_PORT: u16 = 8081;

/// The chardev id of the access log's virtio console.
pub const ACCESS_LOG_CHARDEV: &str = "accesslog";

/// The guest configuration key the launcher sets to the wall-clock time.
pub const CLOCK_KEY: &str = "clock";

/// The host end of the access log's virtio console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogChannel {
    /// Appended to this file (QEMU creates it if missing).
    File(PathBuf),
    /// A Unix socket QEMU listens on (`server=on,wait=off`): whoever connects
    /// reads the log; while nobody reads, the guest counts drops.
    Socket(PathBuf),
}

/// Which accelerator QEMU runs the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Try KVM; if the guest does not print its banner under KVM, use TCG.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// Name as QEMU's `-accel` option spells it (`Auto` has none: it is two tries).
    pub fn qemu_name(self) -> Option<&'static str> {
        match self {
            Accel::Auto => None,
            Accel::Kvm => Some("kvm"),
            Accel::Tcg => Some("tcg"),
        }
    }
}

/// How to run the guest. [`QemuConfig::default`] is what `cargo run` uses.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// `Auto` (default) = try KVM, fall back to TCG.
    pub accel: Accel,
    /// Guest RAM in MiB (default 128).
    pub memory_mib: u32,
    /// `Some(p)`: a virtio-net NIC on user-mode networking with host `127.0.0.1:p`
    /// forwarded to guest port 80. `None`: no NIC (unless [`QemuConfig::tap`]).
    /// Default `Some(8080)`.
    pub host_port: Option<u16>,
    /// `Some(ifname)`: the virtio-net NIC on an existing tap device instead of
    /// user networking (`script=no,downscript=no`; the guest then needs an
    /// address of its own, `ip=` in [`QemuConfig::config`]). Requires
    /// `host_port: None`. Default `None`.
    pub tap: Option<String>,
    /// Guest configuration items `key=value`, passed joined with `,` in the fw_cfg file
    /// `opt/unikernel/config`. Items must not contain `,`.
    pub config: Vec<String>,
    /// `-device isa-debug-exit,iobase=0xf4,iosize=0x04` (default true): a guest writing
    /// `v` to port 0xf4 ends QEMU with status `(v << 1) | 1`.
    pub debug_exit: bool,
    /// `-no-reboot` (default true): a guest reset ends QEMU (status 0).
    pub no_reboot: bool,
    /// `-qmp unix:<path>,server=on,wait=off`.
    pub qmp_socket: Option<PathBuf>,
    /// `-initrd FILE`: a site bundle the guest serves instead of the one in the image.
    pub initrd: Option<PathBuf>,
    /// `-append TEXT`: the kernel command line (configuration words, devices).
    pub append: Option<String>,
    /// `false`: `-M microvm,acpi=off` (QEMU then describes the virtio-mmio devices
    /// on the kernel command line, as Firecracker does). Default `true`.
    pub acpi: bool,
    /// With a NIC: host `127.0.0.1:p` forwarded to the guest's admin port
    /// [`GUEST_ADMIN_PORT`]. Default `None`.
    pub admin_host_port: Option<u16>,
    /// A virtio serial port (`virtio-serial-device` + `virtserialport` 1)
    /// whose host end receives the access log. Default `None`.
    pub access_log: Option<AccessLogChannel>,
    /// Unix seconds passed to the guest as `clock=` (its wall clock where it
    /// has no RTC, i.e. under KVM). Default `None`; see [`now_unix`].
    pub wall_clock: Option<u64>,
    /// Appended to the command line verbatim.
    pub extra_args: Vec<String>,
    /// How long [`crate::Guest::start`] waits for the banner under KVM before falling
    /// back to TCG (default 15 s).
    pub banner_timeout: Duration,
    /// Also write every serial line to this file (truncated when QEMU starts, again if
    /// it is restarted under TCG). Not part of the QEMU command line. Default `None`.
    pub serial_log: Option<PathBuf>,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            accel: Accel::Auto,
            memory_mib: 128,
            host_port: Some(8080),
            tap: None,
            config: Vec::new(),
            debug_exit: true,
            no_reboot: true,
            qmp_socket: None,
            initrd: None,
            append: None,
            acpi: true,
            admin_host_port: None,
            access_log: None,
            wall_clock: None,
            extra_args: Vec::new(),
            banner_timeout: Duration::from_secs(15),
            serial_log: None,
        }
    }
}

impl QemuConfig {
    /// Checks what QEMU would otherwise reject or misread.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_mib == 0 {
            return Err("memory size must be at least 1 MiB".to_string());
        }
        if self.host_port == Some(0) || self.admin_host_port == Some(0) {
            return Err("host port must not be 0".to_string());
        }
        if let Some(ifname) = &self.tap {
            if self.host_port.is_some() || self.admin_host_port.is_some() {
                return Err("a tap device replaces user networking: no host ports".to_string());
            }
            if ifname.is_empty() || ifname.contains(',') || ifname.chars().any(char::is_control) {
                return Err(format!(
                    "tap device name {ifname:?} is not an interface name"
                ));
            }
        }
        if self.admin_host_port.is_some() && self.admin_host_port == self.host_port {
            return Err("the admin port must differ from the site's port".to_string());
        }
        if let Some(AccessLogChannel::File(path) | AccessLogChannel::Socket(path)) =
            &self.access_log
            && path.to_str().is_none()
        {
            return Err(format!(
                "access log path {} is not valid UTF-8",
                path.display()
            ));
        }
        for item in &self.config {
            validate_config_item(item)?;
        }
        if let Some(path) = &self.qmp_socket
            && path.to_str().is_none()
        {
            return Err(format!(
                "QMP socket path {} is not valid UTF-8",
                path.display()
            ));
        }
        Ok(())
    }
}

/// A guest configuration item must be `key=value` with a non-empty key, and must not
/// contain `,` (the separator between items) or control characters.
pub fn validate_config_item(item: &str) -> Result<(), String> {
    if item.contains(',') {
        return Err(format!(
            "config item {item:?} contains ',', which separates items; pass each key=value separately"
        ));
    }
    if item.chars().any(char::is_control) {
        return Err(format!("config item {item:?} contains a control character"));
    }
    match item.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(()),
        _ => Err(format!("config item {item:?} is not of the form key=value")),
    }
}

/// The configuration string the guest reads from fw_cfg: the items joined with `,`.
pub fn config_string(items: &[String]) -> Result<String, String> {
    for item in items {
        validate_config_item(item)?;
    }
    Ok(items.join(","))
}

/// QEMU's option parser splits on `,`; a literal comma is written `,,`.
fn escape_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

fn push_all(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The arguments after `qemu-system-x86_64`.
///
/// `accel` should be `Kvm` or `Tcg`; `Auto` becomes `-accel kvm -accel tcg` (QEMU's own
/// fallback, which only notices a missing KVM, not a guest that hangs under it).
/// `Err` if the configuration does not validate.
pub fn qemu_args(image: &Path, accel: Accel, cfg: &QemuConfig) -> Result<Vec<OsString>, String> {
    cfg.validate()?;
    let mut args: Vec<OsString> = Vec::new();
    // rtc=on: the CMOS RTC, the guest's wall clock, under KVM too (microvm
    // leaves it out with KVM by default).
    push_all(
        &mut args,
        &[
            "-M",
            if cfg.acpi {
                "microvm,rtc=on"
            } else {
                "microvm,acpi=off,rtc=on"
            },
        ],
    );
    match accel.qemu_name() {
        Some(name) => push_all(&mut args, &["-accel", name]),
        None => push_all(&mut args, &["-accel", "kvm", "-accel", "tcg"]),
    }
    let memory = format!("{}M", cfg.memory_mib);
    push_all(
        &mut args,
        &[
            "-m",
            &memory,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
        ],
    );
    args.push(image.into());
    if cfg.no_reboot {
        push_all(&mut args, &["-no-reboot"]);
    }
    if cfg.debug_exit {
        push_all(
            &mut args,
            &["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        );
    }
    // The guest pets this watchdog from its main loop; a guest stuck with
    // interrupts disabled is reset (and with -no-reboot, QEMU exits).
    push_all(
        &mut args,
        &["-device", "ib700", "-action", "watchdog=reset"],
    );
    if let Some(port) = cfg.host_port {
        let mut netdev = format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_HTTP_PORT}");
        if let Some(admin) = cfg.admin_host_port {
            netdev.push_str(&format!(
                ",hostfwd=tcp:127.0.0.1:{admin}-:{GUEST_ADMIN_PORT}"
            ));
        }
        push_all(
            &mut args,
            &[
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-device,netdev=net0",
            ],
        );
    }
    if let Some(ifname) = &cfg.tap {
        let netdev = format!("tap,id=net0,ifname={ifname},script=no,downscript=no");
        push_all(
            &mut args,
            &[
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-device,netdev=net0",
            ],
        );
    }
    if let Some(channel) = &cfg.access_log {
        // validate() checked that the path is UTF-8.
        let chardev = match channel {
            AccessLogChannel::File(path) => format!(
                "file,id={ACCESS_LOG_CHARDEV},path={},append=on",
                escape_option_value(&path.to_string_lossy())
            ),
            AccessLogChannel::Socket(path) => format!(
                "socket,id={ACCESS_LOG_CHARDEV},path={},server=on,wait=off",
                escape_option_value(&path.to_string_lossy())
            ),
        };
        // Port 1 of a multiport device, where the guest writes: QEMU throttles
        // a serial port whose host end does not read (a `virtconsole` would
        // drop the data instead, uncounted).
        let console = format!("virtserialport,chardev={ACCESS_LOG_CHARDEV},nr=1,name=access-log");
        push_all(
            &mut args,
            &[
                "-device",
                "virtio-serial-device",
                "-chardev",
                &chardev,
                "-device",
                &console,
            ],
        );
    }
    let mut items = cfg.config.clone();
    if let Some(secs) = cfg.wall_clock
        && !items
            .iter()
            .any(|i| i.split_once('=').is_some_and(|(k, _)| k == CLOCK_KEY))
    {
        items.push(format!("{CLOCK_KEY}={secs}"));
    }
    if !items.is_empty() {
        let joined = config_string(&items)?;
        let fw_cfg = format!(
            "name={CONFIG_FW_CFG_NAME},string={}",
            escape_option_value(&joined)
        );
        push_all(&mut args, &["-fw_cfg", &fw_cfg]);
    }
    if let Some(path) = &cfg.initrd {
        args.push("-initrd".into());
        args.push(path.into());
    }
    if let Some(text) = &cfg.append {
        push_all(&mut args, &["-append", text]);
    }
    if let Some(path) = &cfg.qmp_socket {
        // validate() checked that the path is UTF-8.
        let path = path.to_string_lossy();
        let qmp = format!("unix:{},server=on,wait=off", escape_option_value(&path));
        push_all(&mut args, &["-qmp", &qmp]);
    }
    args.extend(cfg.extra_args.iter().map(OsString::from));
    Ok(args)
}

/// The host's wall clock now, in Unix seconds, for [`QemuConfig::wall_clock`].
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The QEMU command for `image`, with stdin null and stdout (the serial console) and
/// stderr piped.
///
/// # Panics
///
/// If `cfg` does not pass [`QemuConfig::validate`] (for example a config item containing
/// `,`). [`crate::Guest::start`] validates first and returns the error instead.
pub fn qemu_command(image: &Path, accel: Accel, cfg: &QemuConfig) -> Command {
    let args = match qemu_args(image, accel, cfg) {
        Ok(args) => args,
        Err(e) => panic!("invalid QemuConfig: {e}"),
    };
    let mut cmd = Command::new(QEMU_PROGRAM);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(accel: Accel, cfg: &QemuConfig) -> Vec<String> {
        qemu_args(Path::new("/img/unikernel.elf"), accel, cfg)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    /// The value following `flag`, for every occurrence.
    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn default_command_line() {
        let a = args(Accel::Kvm, &QemuConfig::default());
        let expected = "-M microvm,rtc=on -accel kvm -m 128M -smp 1 -nodefaults -no-user-config \
            -display none -serial stdio -kernel /img/unikernel.elf -no-reboot \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            -device ib700 -action watchdog=reset \
            -netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80 \
            -device virtio-net-device,netdev=net0";
        assert_eq!(
            a.join(" "),
            expected.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn accel_names() {
        let cfg = QemuConfig::default();
        assert_eq!(values(&args(Accel::Tcg, &cfg), "-accel"), ["tcg"]);
        assert_eq!(values(&args(Accel::Kvm, &cfg), "-accel"), ["kvm"]);
        assert_eq!(values(&args(Accel::Auto, &cfg), "-accel"), ["kvm", "tcg"]);
    }

    #[test]
    fn bundle_command_line_and_no_acpi() {
        let cfg = QemuConfig {
            initrd: Some("/srv/site.bundle".into()),
            append: Some("sockets=8 log=debug".into()),
            acpi: false,
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(values(&a, "-initrd"), ["/srv/site.bundle"]);
        assert_eq!(values(&a, "-append"), ["sockets=8 log=debug"]);
        assert_eq!(values(&a, "-M"), ["microvm,acpi=off,rtc=on"]);
        let plain = args(Accel::Tcg, &QemuConfig::default());
        assert_eq!(values(&plain, "-M"), ["microvm,rtc=on"]);
        assert!(!plain.iter().any(|x| x == "-initrd" || x == "-append"));
    }

    #[test]
    fn optional_parts_can_be_turned_off() {
        let cfg = QemuConfig {
            host_port: None,
            debug_exit: false,
            no_reboot: false,
            memory_mib: 64,
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert!(!a.iter().any(|x| x == "-netdev" || x == "-no-reboot"));
        assert!(
            !a.iter()
                .any(|x| x.contains("virtio-net") || x.contains("isa-debug-exit"))
        );
        assert_eq!(values(&a, "-m"), ["64M"]);
    }

    #[test]
    fn host_port_is_forwarded_to_guest_port_80_on_loopback() {
        let cfg = QemuConfig {
            host_port: Some(18081),
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(
            values(&a, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:18081-:80"]
        );
        assert!(values(&a, "-device").contains(&"virtio-net-device,netdev=net0"));
    }

    #[test]
    fn tap_replaces_user_networking() {
        let cfg = QemuConfig {
            host_port: None,
            tap: Some("tap0".into()),
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(
            values(&a, "-netdev"),
            ["tap,id=net0,ifname=tap0,script=no,downscript=no"]
        );
        assert!(values(&a, "-device").contains(&"virtio-net-device,netdev=net0"));
        for bad in [
            QemuConfig {
                tap: Some("tap0".into()),
                ..QemuConfig::default()
            },
            QemuConfig {
                host_port: None,
                tap: Some("a,b".into()),
                ..QemuConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_port_access_log_and_clock() {
        let cfg = QemuConfig {
            host_port: Some(18080),
            admin_host_port: Some(18081),
            access_log: Some(AccessLogChannel::File(PathBuf::from("/tmp/a,b.log"))),
            wall_clock: Some(1_796_228_100),
            config: vec!["log=debug".into()],
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(
            values(&a, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=tcp:127.0.0.1:18081-:8081"]
        );
        assert_eq!(
            values(&a, "-chardev"),
            ["file,id=accesslog,path=/tmp/a,,b.log,append=on"]
        );
        let devices = values(&a, "-device");
        assert!(devices.contains(&"virtio-serial-device"));
        assert!(devices.contains(&"virtserialport,chardev=accesslog,nr=1,name=access-log"));
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/unikernel/config,string=log=debug,,clock=1796228100"]
        );
        // A clock= the user set wins.
        let cfg = QemuConfig {
            config: vec!["clock=1000000000".into()],
            access_log: Some(AccessLogChannel::Socket(PathBuf::from("/run/a.sock"))),
            ..cfg
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/unikernel/config,string=clock=1000000000"]
        );
        assert_eq!(
            values(&a, "-chardev"),
            ["socket,id=accesslog,path=/run/a.sock,server=on,wait=off"]
        );
        let same = QemuConfig {
            admin_host_port: Some(18080),
            ..cfg
        };
        assert!(same.validate().is_err());
    }

    #[test]
    fn config_items_go_to_fw_cfg_with_commas_escaped_for_qemu() {
        let cfg = QemuConfig {
            config: vec!["ip=dhcp".into(), "log=debug".into(), "x=a=b".into()],
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        // QEMU turns ",," back into ","; the guest reads "ip=dhcp,log=debug,x=a=b".
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/unikernel/config,string=ip=dhcp,,log=debug,,x=a=b"]
        );
        assert_eq!(
            config_string(&cfg.config).unwrap(),
            "ip=dhcp,log=debug,x=a=b"
        );
    }

    #[test]
    fn no_config_items_means_no_fw_cfg() {
        let a = args(Accel::Tcg, &QemuConfig::default());
        assert!(values(&a, "-fw_cfg").is_empty());
        assert_eq!(config_string(&[]).unwrap(), "");
    }

    #[test]
    fn bad_config_items_are_rejected() {
        for bad in ["a=b,c=d", "novalue", "=value", "", "a=b\n"] {
            assert!(validate_config_item(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a=b", "a=", "fault=page-fault", "k=v=w"] {
            assert!(validate_config_item(good).is_ok(), "{good:?} rejected");
        }
        let cfg = QemuConfig {
            config: vec!["a=1,b=2".into()],
            ..QemuConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("','"), "{err}");
        assert!(qemu_args(Path::new("x"), Accel::Tcg, &cfg).is_err());
    }

    #[test]
    #[should_panic(expected = "invalid QemuConfig")]
    fn qemu_command_panics_on_invalid_config() {
        let cfg = QemuConfig {
            config: vec!["a,b".into()],
            ..QemuConfig::default()
        };
        let _ = qemu_command(Path::new("x"), Accel::Tcg, &cfg);
    }

    #[test]
    fn qmp_socket_and_extra_args() {
        let cfg = QemuConfig {
            qmp_socket: Some(PathBuf::from("/tmp/a,b/qmp.sock")),
            extra_args: vec!["-d".into(), "int".into()],
            ..QemuConfig::default()
        };
        let a = args(Accel::Tcg, &cfg);
        assert_eq!(
            values(&a, "-qmp"),
            ["unix:/tmp/a,,b/qmp.sock,server=on,wait=off"]
        );
        assert_eq!(&a[a.len() - 2..], ["-d", "int"]);
    }

    #[test]
    fn command_pipes_output_and_names_qemu() {
        let cmd = qemu_command(Path::new("/i.elf"), Accel::Tcg, &QemuConfig::default());
        assert_eq!(cmd.get_program(), QEMU_PROGRAM);
        assert!(cmd.get_args().any(|a| a == "/i.elf"));
    }

    #[test]
    fn zero_memory_and_zero_port_are_rejected() {
        let cfg = QemuConfig {
            memory_mib: 0,
            ..QemuConfig::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = QemuConfig {
            host_port: Some(0),
            ..QemuConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
