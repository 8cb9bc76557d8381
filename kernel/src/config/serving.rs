//! Configuration keys of the access log, the wall clock and the admin listener:
//! `access_log`, `log_format`, `trusted_proxies`, `clock`, `admin`, `admin_port`.

use crate::app::access_log::{Destination, Format, TrustedProxies};

/// Guest port of the admin endpoints unless `admin_port=` says otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 8081;
/// Sockets of the admin listener: a scraper, a status page and a shell or two.
pub const ADMIN_SOCKETS: usize = 4;
/// `clock=` values outside 2000-01-01 .. 2100-01-01 are refused as typos.
const CLOCK_RANGE: core::ops::RangeInclusive<u64> = 946_684_800..=4_102_444_800;

/// Where the admin endpoints are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// Their own port (`admin_port=`, default 8081).
    Port(u16),
    /// On port 80 with the site (`admin=public`, local development).
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// `None`: `console` if a virtio console exists, else `off`.
    pub access_log: Option<Destination>,
    pub log_format: Format,
    pub trusted_proxies: TrustedProxies,
    /// Unix seconds at the moment QEMU was started, from the launcher.
    pub clock: Option<u64>,
    pub admin: Admin,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            access_log: None,
            log_format: Format::Combined,
            trusted_proxies: TrustedProxies::default(),
            clock: None,
            admin: Admin::Port(DEFAULT_ADMIN_PORT),
        }
    }
}

impl Serving {
    /// Applies `key=value` if `key` is one of these: `None` for another key,
    /// `Some(false)` for a bad value (the setting is unchanged).
    pub fn set(&mut self, key: &str, value: &str) -> Option<bool> {
        let ok = match key {
            "access_log" => Destination::parse(value).map(|d| self.access_log = Some(d)),
            "log_format" => Format::parse(value).map(|f| self.log_format = f),
            "trusted_proxies" => TrustedProxies::parse(value)
                .ok()
                .map(|t| self.trusted_proxies = t),
            "clock" => value
                .parse()
                .ok()
                .filter(|s| CLOCK_RANGE.contains(s))
                .map(|s| self.clock = Some(s)),
            "admin" => match value {
                "public" => Some(Admin::Public),
                "port" if self.admin == Admin::Public => Some(Admin::Port(DEFAULT_ADMIN_PORT)),
                "port" => Some(self.admin),
                _ => None,
            }
            .map(|admin| self.admin = admin),
            "admin_port" => value
                .parse()
                .ok()
                .filter(|&p: &u16| p != 0 && p != crate::net::HTTP_PORT)
                .map(|p| {
                    if self.admin != Admin::Public {
                        self.admin = Admin::Port(p);
                    }
                }),
            _ => return None,
        };
        Some(ok.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        let mut s = Serving::default();
        assert_eq!(s.admin, Admin::Port(8081));
        for (k, v) in [
            ("access_log", "serial"),
            ("log_format", "json"),
            ("trusted_proxies", "10.0.0.0/8;127.0.0.1"),
            ("clock", "1796228100"),
            ("admin_port", "9100"),
        ] {
            assert_eq!(s.set(k, v), Some(true), "{k}={v}");
        }
        assert_eq!(s.access_log, Some(Destination::Serial));
        assert_eq!(s.log_format, Format::Json);
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(s.clock, Some(1_796_228_100));
        assert_eq!(s.admin, Admin::Port(9100));
        assert_eq!(s.set("admin", "public"), Some(true));
        assert_eq!(s.set("admin_port", "9200"), Some(true));
        assert_eq!(s.admin, Admin::Public, "admin=public wins over a port");
        assert_eq!(s.set("ip", "dhcp"), None);
    }

    #[test]
    fn bad_values_keep_the_setting() {
        let mut s = Serving::default();
        for (k, v) in [
            ("access_log", "file"),
            ("log_format", "common"),
            ("trusted_proxies", "10.0.0.0/8;x"),
            ("clock", "0"),
            ("clock", "-5"),
            ("clock", "99999999999"),
            ("admin", "private"),
            ("admin_port", "80"),
            ("admin_port", "0"),
            ("admin_port", "70000"),
        ] {
            assert_eq!(s.set(k, v), Some(false), "{k}={v}");
        }
        assert_eq!(s, Serving::default());
    }
}
