//! The kernel command line (QEMU `-append`, Firecracker `boot_args`; PVH
//! `start_info.cmdline`): space-separated words.
//!
//! - `key=value` with a configuration key (`config`) is a configuration item,
//!   the same keys and values as fw_cfg's `opt/unikernel/config`. When both
//!   give a key, fw_cfg's value wins ([`merge`]), key by key.
//! - `virtio_mmio.device=SIZE@ADDR:IRQ[:ID]` (Linux's form, which QEMU adds for
//!   `-M microvm,acpi=off` and Firecracker passes) names a virtio-mmio device;
//!   SIZE takes a K, M or G suffix, ADDR is hex with `0x` or decimal.
//! - Any other word is handed to the configuration parser, which warns about
//!   an unknown key as it does for fw_cfg.
//!
//! Parsing never fails: a bad word is reported and skipped.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest command line read (the loader copies at most one page).
pub const MAX_CMDLINE_LEN: usize = 4095;
/// Devices kept from the command line; more are reported and ignored.
pub const MAX_DEVICES: usize = 32;

const DEVICE_KEY: &str = "virtio_mmio.device=";

/// One `virtio_mmio.device=` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    pub size: u64,
    pub phys: u64,
    pub gsi: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineWarning<'a> {
    BadDevice(&'a str),
    TooManyDevices,
    NotUtf8,
}

impl fmt::Display for CmdlineWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineWarning::BadDevice(w) => write!(
                f,
                "cmdline: {w:?} is not virtio_mmio.device=SIZE@ADDR:IRQ, ignored"
            ),
            CmdlineWarning::TooManyDevices => write!(
                f,
                "cmdline: more than {MAX_DEVICES} virtio_mmio.device= words, rest ignored"
            ),
            CmdlineWarning::NotUtf8 => write!(f, "cmdline: not UTF-8, ignored"),
        }
    }
}

/// What the command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline<'a> {
    /// Every other word, for the configuration parser.
    pub config_items: Vec<&'a str>,
    pub devices: Vec<MmioDevice>,
}

/// Parses raw command-line bytes (up to the first NUL).
pub fn parse_bytes<'a>(raw: &'a [u8], warn: &mut dyn FnMut(CmdlineWarning<'a>)) -> Cmdline<'a> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let raw = raw.get(..end.min(MAX_CMDLINE_LEN)).unwrap_or_default();
    match core::str::from_utf8(raw) {
        Ok(text) => parse(text, warn),
        Err(_) => {
            warn(CmdlineWarning::NotUtf8);
            Cmdline::default()
        }
    }
}

pub fn parse<'a>(text: &'a str, warn: &mut dyn FnMut(CmdlineWarning<'a>)) -> Cmdline<'a> {
    let mut out = Cmdline::default();
    for word in text.split_ascii_whitespace() {
        match word.strip_prefix(DEVICE_KEY) {
            Some(spec) => match parse_device(spec) {
                Some(_) if out.devices.len() == MAX_DEVICES => {
                    warn(CmdlineWarning::TooManyDevices);
                }
                Some(device) => out.devices.push(device),
                None => warn(CmdlineWarning::BadDevice(word)),
            },
            None => out.config_items.push(word),
        }
    }
    out
}

/// `SIZE@ADDR:IRQ[:ID]`.
fn parse_device(spec: &str) -> Option<MmioDevice> {
    let (size, rest) = spec.split_once('@')?;
    let mut parts = rest.split(':');
    let phys = parse_number(parts.next()?)?;
    let gsi: u32 = parts.next()?.parse().ok()?;
    if let Some(id) = parts.next() {
        id.parse::<u32>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let size = parse_size(size)?;
    (size > 0 && phys.checked_add(size).is_some()).then_some(MmioDevice { size, phys, gsi })
}

/// Linux's `memparse`: a number with an optional K, M or G suffix.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

/// Decimal, or hex with `0x`.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    }
}

/// The key of a configuration item (`key=value`), as the parser reads it.
fn key_of(item: &str) -> &str {
    item.split_once('=').map_or(item, |(k, _)| k).trim()
}

/// One configuration text from the command line's items and fw_cfg's text:
/// a command-line item is dropped when fw_cfg gives the same key, so fw_cfg
/// wins key by key and the rest of the command line still applies.
pub fn merge(cmdline_items: &[&str], fw_cfg: &str) -> String {
    let fw_cfg_keys: Vec<&str> = fw_cfg
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(key_of)
        .collect();
    let mut out = String::new();
    for item in cmdline_items
        .iter()
        .filter(|item| !fw_cfg_keys.contains(&key_of(item)))
    {
        out.push_str(item);
        out.push(',');
    }
    out.push_str(fw_cfg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Fault, NetFault};

    fn parsed(text: &str) -> (Cmdline<'_>, Vec<String>) {
        let mut warnings = Vec::new();
        let c = parse(text, &mut |w| warnings.push(w.to_string()));
        (c, warnings)
    }

    #[test]
    fn qemu_microvm_acpi_off_words() {
        // What QEMU 7.2 appends for -M microvm,acpi=off with one virtio-net.
        let (c, w) = parsed("sockets=8 fault=no-irq virtio_mmio.device=512@0xfeb00e00:12");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.config_items, ["sockets=8", "fault=no-irq"]);
        assert_eq!(
            c.devices,
            [MmioDevice {
                size: 512,
                phys: 0xfeb0_0e00,
                gsi: 12
            }]
        );
    }

    #[test]
    fn firecracker_and_linux_device_forms() {
        let (c, w) = parsed(
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=1M@4096:6:3  virtio_mmio.device=2g@0x0:7",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.config_items, ["console=ttyS0"]);
        assert_eq!(
            c.devices,
            [
                MmioDevice {
                    size: 4096,
                    phys: 0xd000_0000,
                    gsi: 5
                },
                MmioDevice {
                    size: 1 << 20,
                    phys: 4096,
                    gsi: 6
                },
                MmioDevice {
                    size: 2 << 30,
                    phys: 0,
                    gsi: 7
                },
            ]
        );
    }

    #[test]
    fn bad_device_words_are_reported_and_skipped() {
        for bad in [
            "virtio_mmio.device=",
            "virtio_mmio.device=512",
            "virtio_mmio.device=512@0xfeb00e00",
            "virtio_mmio.device=512@0xfeb00e00:",
            "virtio_mmio.device=512@0xzz:12",
            "virtio_mmio.device=0@0x1000:12",
            "virtio_mmio.device=-1@0x1000:12",
            "virtio_mmio.device=512@0x1000:12:x",
            "virtio_mmio.device=512@0x1000:12:1:2",
            "virtio_mmio.device=512@0x:12",
            "virtio_mmio.device=99999999999G@0x1000:12",
            "virtio_mmio.device=2@0xffffffffffffffff:12",
            "virtio_mmio.device=512@0x1000:99999999999",
        ] {
            let (c, w) = parsed(bad);
            assert!(c.devices.is_empty(), "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(w[0].contains("is not virtio_mmio.device=SIZE@ADDR:IRQ"));
        }
    }

    #[test]
    fn device_count_is_bounded() {
        let line = "virtio_mmio.device=512@0x1000:5 ".repeat(MAX_DEVICES + 3);
        let (c, w) = parsed(&line);
        assert_eq!(c.devices.len(), MAX_DEVICES);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn bytes_stop_at_nul_and_must_be_utf8() {
        let mut w = Vec::new();
        let c = parse_bytes(b"log=debug\0sockets=3", &mut |x| w.push(x));
        assert_eq!(c.config_items, ["log=debug"]);
        let c = parse_bytes(b"log=\xff", &mut |x| w.push(x));
        assert_eq!(c, Cmdline::default());
        assert_eq!(w, [CmdlineWarning::NotUtf8]);
    }

    #[test]
    fn fw_cfg_wins_key_by_key() {
        let merged = merge(
            &["sockets=8", "fault=panic", "log=debug"],
            "fault=no-irq,log=warn",
        );
        assert_eq!(merged, "sockets=8,fault=no-irq,log=warn");
        let config = Config::parse(&merged, &mut |w| panic!("{w}"));
        assert_eq!(config.http_sockets, 8);
        // The command line's fault=panic is gone, not combined with fw_cfg's.
        assert_eq!(config.fault, None::<Fault>);
        assert_eq!(config.net_fault, Some(NetFault::NoIrq));
        assert_eq!(merge(&["sockets=8"], ""), "sockets=8,");
        assert_eq!(merge(&[], "sockets=9"), "sockets=9");
    }

    #[test]
    fn unknown_words_warn_through_the_config_parser() {
        let (c, _) = parsed("quiet console=ttyS0 sockets=4");
        let merged = merge(&c.config_items, "");
        let mut warnings = Vec::new();
        let config = Config::parse(&merged, &mut |w| warnings.push(w.to_string()));
        assert_eq!(config.http_sockets, 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
