//! The guest's wall clock: taken once at boot and then kept by the TSC-based
//! uptime, as the Unix time of uptime 0 (`epoch_ms`).
//!
//! Sources, best first:
//! - the CMOS RTC (QEMU microvm has one only under TCG: it is left out with
//!   KVM), read live during boot;
//! - `clock=<unix seconds>`, which the launcher and the systemd units set when
//!   they start QEMU (so it is a little early: by the time from QEMU's start to
//!   the read, under a second); works under both accelerators.
//!
//! Without either, the guest has no wall clock: no `Date` header, and the
//! access log's times are uptime since boot (shown as 1970-01-01).

use crate::http::stamp::DateTime;

/// Where the wall clock came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rtc,
    Launcher,
    None,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Rtc => "CMOS RTC",
            Source::Launcher => "the launcher's clock= setting",
            Source::None => "none",
        }
    }
}

/// `epoch_ms` (Unix ms at uptime 0) and its source, from an RTC reading and
/// the launcher's value, both taken at uptime `now_ms`.
pub fn choose(
    rtc_secs: Option<u64>,
    launcher_secs: Option<u64>,
    now_ms: u64,
) -> (Option<u64>, Source) {
    let epoch = |secs: u64| secs.saturating_mul(1000).saturating_sub(now_ms);
    match (rtc_secs, launcher_secs) {
        (Some(secs), _) => (Some(epoch(secs)), Source::Rtc),
        // The launcher's value is the moment QEMU started, before uptime 0.
        (None, Some(secs)) => (Some(secs.saturating_mul(1000)), Source::Launcher),
        (None, None) => (None, Source::None),
    }
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The RTC registers seconds, minutes, hours, day, month, year, century as
/// read, in BCD unless `binary`, hours in 12-hour form (bit 7 = PM) unless
/// `hours_24`; `None` unless they form a valid date from 1970 on.
pub fn rtc_to_unix(regs: [u8; 7], binary: bool, hours_24: bool) -> Option<u64> {
    let [sec, min, hour, day, month, year, century] = regs;
    let conv = |v: u8| if binary { v } else { from_bcd(v) };
    let pm = hour & 0x80 != 0;
    let mut hour = conv(hour & 0x7f);
    if !hours_24 {
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let century = match conv(century) {
        c @ 19..=21 => i64::from(c),
        // No century register: years 70..99 are 19xx.
        _ if conv(year) >= 70 => 19,
        _ => 20,
    };
    let t = DateTime {
        year: century * 100 + i64::from(conv(year)),
        month: conv(month),
        day: conv(day),
        hour,
        minute: conv(min),
        second: conv(sec),
        weekday: 0,
    };
    let valid = (1..=12).contains(&t.month)
        && (1..=31).contains(&t.day)
        && t.hour < 24
        && t.minute < 60
        && t.second < 60
        && t.year < 10_000;
    valid.then(|| t.to_unix()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_registers_in_bcd_and_binary() {
        // 2026-12-02 16:15:00 in BCD, 24-hour.
        let bcd = [0x00, 0x15, 0x16, 0x02, 0x12, 0x26, 0x20];
        assert_eq!(rtc_to_unix(bcd, false, true), Some(1_796_228_100));
        let bin = [0, 15, 16, 2, 12, 26, 20];
        assert_eq!(rtc_to_unix(bin, true, true), Some(1_796_228_100));
        // 4:15 PM in 12-hour BCD.
        let pm = [0x00, 0x15, 0x84, 0x02, 0x12, 0x26, 0x20];
        assert_eq!(rtc_to_unix(pm, false, false), Some(1_796_228_100));
        let midnight = [0x00, 0x00, 0x12, 0x02, 0x12, 0x26, 0x20];
        assert_eq!(rtc_to_unix(midnight, false, false), Some(1_796_169_600));
        // No century register.
        assert_eq!(
            rtc_to_unix([0, 15, 16, 2, 12, 26, 0], true, true),
            Some(1_796_228_100)
        );
        // Absent RTC (every port reads 0xff) and nonsense.
        assert_eq!(rtc_to_unix([0xff; 7], false, true), None);
        assert_eq!(rtc_to_unix([0xff; 7], true, true), None);
        assert_eq!(rtc_to_unix([0, 0, 0, 0, 1, 26, 20], true, true), None);
    }

    #[test]
    fn rtc_wins_then_the_launcher() {
        assert_eq!(
            choose(Some(1000), Some(5), 250),
            (Some(999_750), Source::Rtc)
        );
        assert_eq!(choose(None, Some(5), 250), (Some(5000), Source::Launcher));
        assert_eq!(choose(None, None, 250), (None, Source::None));
    }
}
