//! What every response is stamped with: a request id (`X-Request-Id`, the same
//! id its access-log line carries) and, when the guest knows the wall-clock
//! time, a `Date` (RFC 9110 §6.6.1, IMF-fixdate). Also the calendar arithmetic
//! the access log's timestamps share.

use core::fmt;

/// Names one request: the boot it happened in, the connection (the n-th
/// accepted since boot) and the request's number on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestId {
    /// Tells this boot's ids from another's.
    pub boot: u32,
    /// The connection's id: the n-th accepted since boot.
    pub conn: u64,
    /// The request's number on its connection, from 1.
    pub seq: u32,
}

impl fmt::Display for RequestId {
    /// `1a2b3c4d-17-3`: boot tag in hex, connection, request on it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}-{}", self.boot, self.conn, self.seq)
    }
}

/// Set once per connection by the network layer: how to stamp responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// Unix time in milliseconds at uptime 0, if the guest has a wall clock.
    pub epoch_ms: Option<u64>,
    /// Distinguishes this boot's request ids from another boot's.
    pub boot: u32,
}

impl Stamp {
    /// Unix seconds at uptime `now` (ms), if there is a wall clock.
    pub fn unix_secs(&self, now: u64) -> Option<u64> {
        Some(self.epoch_ms?.saturating_add(now) / 1000)
    }
}

/// A UTC calendar time (proleptic Gregorian), from Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (negative before 1 BC is not reached from Unix time).
    pub year: i64,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
    /// 0..=59 (Unix time has no leap seconds).
    pub second: u8,
    /// 0 = Sunday.
    pub weekday: u8,
}

/// Month abbreviations as HTTP dates and the access log print them.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl DateTime {
    /// The calendar time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> DateTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u8,
        }
    }

    /// Unix seconds of this calendar time (`weekday` is ignored); `None`
    /// before 1970.
    pub fn to_unix(&self) -> Option<u64> {
        // Howard Hinnant's days_from_civil.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = self.year - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs).ok()
    }

    /// `Jan`..`Dec`.
    pub fn month_name(&self) -> &'static str {
        MONTHS
            .get(usize::from(self.month.saturating_sub(1)))
            .copied()
            .unwrap_or("???")
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
    pub fn imf_fixdate(self) -> ImfFixdate {
        ImfFixdate(self)
    }

    /// `06/Nov/1994:08:49:37 +0000` (the Common Log Format's time).
    pub fn common_log(self) -> CommonLog {
        CommonLog(self)
    }

    /// `1994-11-06T08:49:37.123Z` (RFC 3339, UTC, with `ms` milliseconds).
    pub fn rfc3339(self, ms: u64) -> Rfc3339 {
        Rfc3339(self, ms)
    }
}

/// Displays a [`DateTime`] as the Common Log Format's time.
pub struct CommonLog(DateTime);

impl fmt::Display for CommonLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day,
            t.month_name(),
            t.year,
            t.hour,
            t.minute,
            t.second
        )
    }
}

/// Displays a [`DateTime`] and milliseconds as RFC 3339 UTC.
pub struct Rfc3339(DateTime, u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second, self.1
        )
    }
}

/// Displays a [`DateTime`] as IMF-fixdate.
pub struct ImfFixdate(DateTime);

impl fmt::Display for ImfFixdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        let weekday = WEEKDAYS
            .get(usize::from(t.weekday))
            .copied()
            .unwrap_or("???");
        write!(
            f,
            "{weekday}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            t.day,
            t.month_name(),
            t.year,
            t.hour,
            t.minute,
            t.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn imf_fixdate_of_known_instants() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            // RFC 9110's own example.
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_796_226_599, "Wed, 02 Dec 2026 15:49:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        ];
        for (secs, text) in cases {
            assert_eq!(format!("{}", DateTime::from_unix(secs).imf_fixdate()), text);
        }
        let t = DateTime::from_unix(784_111_777);
        assert_eq!(format!("{}", t.common_log()), "06/Nov/1994:08:49:37 +0000");
        assert_eq!(format!("{}", t.rfc3339(7)), "1994-11-06T08:49:37.007Z");
    }

    #[test]
    fn every_day_of_four_centuries_is_consecutive() {
        let mut prev = DateTime::from_unix(0);
        for day in 1..(400 * 366) {
            let t = DateTime::from_unix(day * 86_400);
            let next_day = t.day == prev.day + 1 && t.month == prev.month;
            let next_month =
                t.day == 1 && (t.month == prev.month + 1 || (t.month, prev.month) == (1, 12));
            assert!(next_day || next_month, "{prev:?} -> {t:?}");
            assert_eq!(t.weekday, (prev.weekday + 1) % 7);
            assert_eq!(t.to_unix(), Some(day * 86_400));
            prev = t;
        }
    }

    #[test]
    fn request_id_and_stamp() {
        let id = RequestId {
            boot: 0xab,
            conn: 17,
            seq: 3,
        };
        assert_eq!(format!("{id}"), "000000ab-17-3");
        let s = Stamp {
            epoch_ms: Some(1_000_000_500),
            boot: 1,
        };
        assert_eq!(s.unix_secs(600), Some(1_000_001));
        assert_eq!(Stamp::default().unix_secs(600), None);
    }
}
