//! Runtime configuration: `key=value` items separated by commas, as QEMU passes
//! them in the `fw_cfg` file `opt/unikernel/config`. Parsing never fails: a bad
//! item is reported through the `warn` callback and the default is kept, so a
//! typo cannot stop the guest from booting.

use core::fmt;

mod fw_cfg_file;
mod serving;
pub use fw_cfg_file::FW_CFG_FILE;
pub use serving::{ADMIN_SOCKETS, Admin, DEFAULT_ADMIN_PORT, Serving};

/// Longest configuration string read from fw_cfg; the rest is ignored (and reported).
pub const MAX_CONFIG_LEN: usize = 4096;

/// Test-only fault injection (`fault=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read through `0xffffffffffffff88` (a null pointer minus 120, unmapped).
    PageFault,
    Panic,
    /// Unbounded recursion into the stack guard page.
    StackOverflow,
    DivideByZero,
    /// Spin with interrupts disabled in the main loop: only the ib700 watchdog can end it.
    Hang,
    /// Spin with interrupts enabled in the main loop: the soft-lockup detector reports it.
    Livelock,
}

impl Fault {
    /// Faults injected from inside the main loop (after the watchdog and the
    /// lockup detector are armed) rather than during boot.
    pub fn in_main_loop(self) -> bool {
        matches!(self, Fault::Hang | Fault::Livelock)
    }
}

impl Fault {
    fn parse(value: &str) -> Option<Option<Fault>> {
        Some(match value {
            "none" => None,
            "pagefault" => Some(Fault::PageFault),
            "panic" => Some(Fault::Panic),
            "stack-overflow" => Some(Fault::StackOverflow),
            "divide" => Some(Fault::DivideByZero),
            "hang" => Some(Fault::Hang),
            "livelock" => Some(Fault::Livelock),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn parse(value: &str) -> Option<LogLevel> {
        Some(match value {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }
}

/// Test-only faults in the network path (`fault=drop-irq:N`, `fault=no-irq`,
/// `fault=no-repost`): the guest must keep serving through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// Ignore every Nth NIC interrupt (acknowledge the device, record nothing).
    DropIrq(u32),
    /// Never route the NIC interrupt: only the periodic tick services the rings.
    NoIrq,
    /// Stop re-posting RX buffers, so the RX ring drains to empty, until the
    /// ring audit notices and resets the device (proves the audit works).
    NoRepost,
}

impl NetFault {
    fn parse(value: &str) -> Option<NetFault> {
        match value {
            "no-irq" => Some(NetFault::NoIrq),
            "no-repost" => Some(NetFault::NoRepost),
            _ => {
                let n: u32 = value.strip_prefix("drop-irq:")?.parse().ok()?;
                (n >= 1).then_some(NetFault::DropIrq(n))
            }
        }
    }
}

/// RX/TX ring sizes the kernel is built for (`queue_size=`): the default, and a
/// small one that makes 16-bit ring indices wrap constantly.
pub const QUEUE_SIZES: [usize; 2] = [256, 16];

/// How the guest gets its IPv4 address (`ip=dhcp` or `ip=A.B.C.D/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMode {
    /// DHCP, falling back to [`FALLBACK_ADDRESS`] if no lease comes in time.
    Dhcp,
    Static {
        address: [u8; 4],
        prefix: u8,
    },
}

/// QEMU user networking's fixed guest address and gateway.
pub const FALLBACK_ADDRESS: ([u8; 4], u8) = ([10, 0, 2, 15], 24);
pub const FALLBACK_GATEWAY: [u8; 4] = [10, 0, 2, 2];
pub const DEFAULT_HTTP_SOCKETS: usize = 64;
pub const MAX_HTTP_SOCKETS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub fault: Option<Fault>,
    pub net_fault: Option<NetFault>,
    /// Entries in each virtio-net ring (one of [`QUEUE_SIZES`]).
    pub queue_size: usize,
    pub log_level: LogLevel,
    pub ip: IpMode,
    /// Default route for a static address (DHCP supplies its own).
    pub gateway: [u8; 4],
    /// Size of the pool of listening TCP sockets (concurrent connections).
    pub http_sockets: usize,
    /// Overrides of the HTTP deadlines (ms); None keeps the HTTP layer's defaults.
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    /// How long the main loop may go without completing an iteration before the
    /// soft-lockup detector reports the stuck RIP and ends the guest.
    pub lockup_ms: u64,
    /// Main-loop faults (`hang`, `livelock`) wait this long after the guest
    /// has its address, so tests can put it under load first.
    pub fault_delay_ms: u64,
    /// Access log, wall clock and admin listener ([`Serving`]).
    pub serving: Serving,
}

pub const DEFAULT_LOCKUP_MS: u64 = 5_000;
pub const MIN_LOCKUP_MS: u64 = 1_000;

/// Bounds for the deadline overrides: long enough for any real client at the low
/// end, short enough that a stuck peer is noticed within an hour at the high end.
pub const MIN_TIMEOUT_MS: u64 = 100;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

fn parse_timeout(value: &str) -> Option<u64> {
    value
        .parse()
        .ok()
        .filter(|ms| (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(ms))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fault: None,
            net_fault: None,
            queue_size: QUEUE_SIZES[0],
            log_level: LogLevel::Info,
            ip: IpMode::Dhcp,
            gateway: FALLBACK_GATEWAY,
            http_sockets: DEFAULT_HTTP_SOCKETS,
            header_timeout_ms: None,
            idle_timeout_ms: None,
            send_timeout_ms: None,
            lockup_ms: DEFAULT_LOCKUP_MS,
            fault_delay_ms: 0,
            serving: Serving::default(),
        }
    }
}

fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_ip_mode(text: &str) -> Option<IpMode> {
    if text == "dhcp" {
        return Some(IpMode::Dhcp);
    }
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
    Some(IpMode::Static {
        address: parse_ipv4(address)?,
        prefix,
    })
}

/// What was wrong with one item; the caller logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWarning<'a> {
    UnknownKey(&'a str),
    BadValue { key: &'a str, value: &'a str },
    MissingValue(&'a str),
    NotUtf8,
    Truncated,
}

impl fmt::Display for ConfigWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey(k) => write!(f, "config: unknown key {k:?} ignored"),
            ConfigWarning::BadValue { key, value } => {
                write!(
                    f,
                    "config: bad value {value:?} for {key:?}, keeping the default"
                )
            }
            ConfigWarning::MissingValue(item) => {
                write!(f, "config: item {item:?} is not key=value, ignored")
            }
            ConfigWarning::NotUtf8 => write!(f, "config: not UTF-8, using defaults"),
            ConfigWarning::Truncated => {
                write!(
                    f,
                    "config: longer than {MAX_CONFIG_LEN} bytes, rest ignored"
                )
            }
        }
    }
}

impl Config {
    /// Parses raw fw_cfg bytes (trailing NULs and whitespace are ignored).
    pub fn from_bytes(raw: &[u8], warn: &mut dyn FnMut(ConfigWarning)) -> Config {
        Config::parse(Config::text_of(raw, warn), warn)
    }

    /// The text of raw fw_cfg bytes: up to the first NUL and at most
    /// [`MAX_CONFIG_LEN`] bytes; empty (reported) if it is not UTF-8.
    pub fn text_of<'a>(raw: &'a [u8], warn: &mut dyn FnMut(ConfigWarning)) -> &'a str {
        let raw = if raw.len() > MAX_CONFIG_LEN {
            warn(ConfigWarning::Truncated);
            &raw[..MAX_CONFIG_LEN]
        } else {
            raw
        };
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        core::str::from_utf8(&raw[..end]).unwrap_or_else(|_| {
            warn(ConfigWarning::NotUtf8);
            ""
        })
    }

    /// The HTTP limits with this configuration's deadline overrides applied.
    pub fn http_limits(&self) -> crate::http::Limits {
        let defaults = crate::http::Limits::default();
        crate::http::Limits {
            header_timeout_ms: self.header_timeout_ms.unwrap_or(defaults.header_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(defaults.idle_timeout_ms),
            send_timeout_ms: self.send_timeout_ms.unwrap_or(defaults.send_timeout_ms),
            ..defaults
        }
    }

    pub fn parse<'a>(text: &'a str, warn: &mut dyn FnMut(ConfigWarning<'a>)) -> Config {
        let mut config = Config::default();
        for item in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((key, value)) = item.split_once('=') else {
                warn(ConfigWarning::MissingValue(item));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let bad = ConfigWarning::BadValue { key, value };
            match key {
                "fault" => match (Fault::parse(value), NetFault::parse(value)) {
                    (Some(fault), _) => config.fault = fault,
                    (None, Some(net_fault)) => config.net_fault = Some(net_fault),
                    (None, None) => warn(bad),
                },
                "queue_size" => match value.parse() {
                    Ok(n) if QUEUE_SIZES.contains(&n) => config.queue_size = n,
                    _ => warn(bad),
                },
                "log" => match LogLevel::parse(value) {
                    Some(level) => config.log_level = level,
                    None => warn(bad),
                },
                "ip" => match parse_ip_mode(value) {
                    Some(mode) => config.ip = mode,
                    None => warn(bad),
                },
                "gateway" => match parse_ipv4(value) {
                    Some(gateway) => config.gateway = gateway,
                    None => warn(bad),
                },
                "header_timeout_ms" | "idle_timeout_ms" | "send_timeout_ms" => {
                    match parse_timeout(value) {
                        Some(ms) => {
                            let slot = match key {
                                "header_timeout_ms" => &mut config.header_timeout_ms,
                                "idle_timeout_ms" => &mut config.idle_timeout_ms,
                                _ => &mut config.send_timeout_ms,
                            };
                            *slot = Some(ms);
                        }
                        None => warn(bad),
                    }
                }
                "fault_delay_ms" => match value.parse() {
                    Ok(ms) if ms <= MAX_TIMEOUT_MS => config.fault_delay_ms = ms,
                    _ => warn(bad),
                },
                "lockup_ms" => match value.parse() {
                    Ok(ms) if (MIN_LOCKUP_MS..=MAX_TIMEOUT_MS).contains(&ms) => {
                        config.lockup_ms = ms
                    }
                    _ => warn(bad),
                },
                "sockets" => match value.parse() {
                    Ok(n) if (1..=MAX_HTTP_SOCKETS).contains(&n) => config.http_sockets = n,
                    _ => warn(bad),
                },
                _ => match config.serving.set(key, value) {
                    Some(true) => {}
                    Some(false) => warn(bad),
                    None => warn(ConfigWarning::UnknownKey(key)),
                },
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Config, Vec<String>) {
        let mut warnings = Vec::new();
        let config = Config::parse(text, &mut |w| warnings.push(w.to_string()));
        (config, warnings)
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(parse(""), (Config::default(), vec![]));
        assert_eq!(parse(" , ,"), (Config::default(), vec![]));
    }

    #[test]
    fn known_keys() {
        let (c, w) = parse("fault=pagefault, log=debug");
        assert!(w.is_empty());
        assert_eq!(c.fault, Some(Fault::PageFault));
        assert_eq!(c.ip, IpMode::Dhcp);
        assert_eq!(c.http_sockets, DEFAULT_HTTP_SOCKETS);
        assert_eq!(c.log_level, LogLevel::Debug);
        for (v, f) in [
            ("panic", Some(Fault::Panic)),
            ("stack-overflow", Some(Fault::StackOverflow)),
            ("divide", Some(Fault::DivideByZero)),
            ("hang", Some(Fault::Hang)),
            ("livelock", Some(Fault::Livelock)),
            ("none", None),
        ] {
            assert_eq!(parse(&format!("fault={v}")).0.fault, f);
        }
    }

    #[test]
    fn network_keys() {
        let (c, w) = parse("ip=192.168.7.2/28,gateway=192.168.7.1,sockets=128");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.ip,
            IpMode::Static {
                address: [192, 168, 7, 2],
                prefix: 28
            }
        );
        assert_eq!(c.gateway, [192, 168, 7, 1]);
        assert_eq!(c.http_sockets, 128);
        assert_eq!(parse("ip=dhcp").0.ip, IpMode::Dhcp);
        for bad in [
            "ip=10.0.2.15",
            "ip=10.0.2.15/33",
            "ip=10.0.2.15/0",
            "ip=10.0.2/24",
            "ip=10.0.2.256/24",
            "ip=10.0.2.1.5/24",
            "ip=10.0.+2.1/24",
            "gateway=1.2.3",
            "sockets=0",
            "sockets=257",
            "sockets=-1",
            "header_timeout_ms=99",
            "idle_timeout_ms=3600001",
            "send_timeout_ms=x",
            "lockup_ms=999",
            "queue_size=32",
            "fault=drop-irq:0",
            "fault=drop-irq:",
            "lockup_ms=",
        ] {
            let (c, w) = parse(bad);
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(c, Config::default(), "{bad}");
        }
        assert_eq!(
            parse(&format!("sockets={MAX_HTTP_SOCKETS}")).0.http_sockets,
            MAX_HTTP_SOCKETS
        );
    }

    #[test]
    fn bad_items_warn_and_keep_defaults() {
        let (c, w) = parse("bogus=1,fault=nonsense,log,log=loud,fault=divide");
        assert_eq!(c.fault, Some(Fault::DivideByZero));
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(
            w,
            vec![
                "config: unknown key \"bogus\" ignored",
                "config: bad value \"nonsense\" for \"fault\", keeping the default",
                "config: item \"log\" is not key=value, ignored",
                "config: bad value \"loud\" for \"log\", keeping the default",
            ]
        );
    }

    #[test]
    fn raw_bytes_nul_terminated_non_utf8_and_oversized() {
        let mut w = Vec::new();
        let c = Config::from_bytes(b"fault=panic\0garbage", &mut |x| w.push(x.to_string()));
        assert_eq!(c.fault, Some(Fault::Panic));
        assert!(w.is_empty());
        let c = Config::from_bytes(b"fault=\xff", &mut |x| w.push(x.to_string()));
        assert_eq!(c, Config::default());
        assert_eq!(w, vec!["config: not UTF-8, using defaults"]);
        w.clear();
        let mut big = b"log=warn,".to_vec();
        big.resize(MAX_CONFIG_LEN + 10, b' ');
        let c = Config::from_bytes(&big, &mut |x| w.push(x.to_string()));
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("longer than"));
    }
}
