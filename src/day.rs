//! Calendar days as stored in snapshots: days since 1970-01-01, shown as `YYYY-MM-DD`;
//! and Beijing time (UTC+8, no daylight saving), the calendar of the authority's people
//! and of the temporary-permit policy.

use time::{Date, OffsetDateTime};

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// Parses `YYYY-MM-DD`; only real dates from 1970-01-01 on.
    pub fn parse(s: &str) -> Option<Day> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let d = Date::parse(s, &fmt).ok()?;
        u32::try_from(d.to_julian_day() - UNIX_EPOCH_JULIAN_DAY)
            .ok()
            .map(Day)
    }

    /// Midnight (UTC) at the start of this day.
    pub fn start(self) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(i64::from(self.0))
    }

    /// The UTC day an instant falls on.
    pub fn of(t: OffsetDateTime) -> Day {
        Day(u32::try_from(t.unix_timestamp().div_euclid(86_400)).unwrap_or(0))
    }

    /// The day an instant falls on in Beijing: from 16:00 UTC it is the next day there.
    pub fn in_beijing(t: OffsetDateTime) -> Day {
        Day::of(t + BEIJING_OFFSET)
    }

    /// Midnight in Beijing at the start of this day (16:00 UTC the day before).
    pub fn start_in_beijing(self) -> OffsetDateTime {
        self.start() - BEIJING_OFFSET
    }

    /// `YYYY-MM`: the calendar month this day is in.
    pub fn month(self) -> String {
        let ymd = self.ymd();
        String::from_utf8_lossy(&ymd[..7]).into_owned()
    }
}

/// Beijing time is UTC+8 all year (no daylight saving since 1991).
pub const BEIJING_OFFSET: time::Duration = time::Duration::hours(8);

impl Day {
    /// `YYYY-MM-DD`, by integer arithmetic (H. Hinnant's days-to-civil algorithm): it is in
    /// every answer, so it skips the formatting machinery. Past 9999 it says 9999-12-31.
    pub fn ymd(self) -> [u8; 10] {
        let z = i64::from(self.0) + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let (y, m, d) = if y > 9999 { (9999, 12, 31) } else { (y, m, d) };
        let digit = |v: i64| b'0' + (v % 10) as u8;
        [
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            b'-',
            digit(m / 10),
            digit(m),
            b'-',
            digit(d / 10),
            digit(d),
        ]
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ymd = self.ymd();
        // Only ASCII digits and dashes: always UTF-8.
        f.write_str(std::str::from_utf8(&ymd).unwrap_or("9999-12-31"))
    }
}

/// RFC 3339 at whole seconds, UTC: the form of every timestamp in answers. (`time`'s own
/// formatter takes 16 ns here, allocation included; an arithmetic version measured twice
/// that: benches/validation.rs, group `timestamp`.)
pub fn rfc3339(t: OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(20);
    write_rfc3339(&mut out, t);
    String::from_utf8(out).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// [`rfc3339`], appended to `out` without an allocation of its own.
pub fn write_rfc3339(out: &mut Vec<u8>, t: OffsetDateTime) {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    let at = out.len();
    if t.format_into(out, &time::format_description::well_known::Rfc3339)
        .is_err()
    {
        out.truncate(at);
        out.extend_from_slice(b"1970-01-01T00:00:00Z");
    }
}

/// A time as people read and write it, in Beijing time, in Chinese and in English:
/// `2026年12月5日 06:51 北京时间` and `5 Dec 2026 06:51 Beijing time`. Machine fields stay
/// RFC 3339; the verifier page's `beijing()` writes the same.
pub fn for_people(t: OffsetDateTime) -> (String, String) {
    let b = (t + BEIJING_OFFSET).to_offset(time::UtcOffset::UTC);
    let (y, m, d) = (b.year(), u8::from(b.month()), b.day());
    let hm = format!("{:02}:{:02}", b.hour(), b.minute());
    let month = &format!("{:?}", b.month())[..3];
    (
        format!("{y}年{m}月{d}日 {hm} 北京时间"),
        format!("{d} {month} {y} {hm} Beijing time"),
    )
}

/// Parses an RFC 3339 time (any offset); the inverse of [`rfc3339`] and more lenient.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ymd = self.ymd();
        s.serialize_str(std::str::from_utf8(&ymd).unwrap_or("9999-12-31"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight hours of every day fall on another date in Beijing than in UTC.
    #[test]
    fn people_read_beijing_time() {
        let t = time::macros::datetime!(2026-12-04 22:51:40 UTC);
        assert_eq!(
            for_people(t),
            (
                "2026年12月5日 06:51 北京时间".to_owned(),
                "5 Dec 2026 06:51 Beijing time".to_owned()
            )
        );
        let t = time::macros::datetime!(2026-11-25 08:00 UTC);
        assert_eq!(for_people(t).1, "25 Nov 2026 16:00 Beijing time");
    }

    #[test]
    fn parse_and_format() {
        assert_eq!(Day::parse("1970-01-01"), Some(Day(0)));
        assert_eq!(Day::parse("2000-03-01"), Some(Day(11_017)));
        assert_eq!(Day(11_017).to_string(), "2000-03-01");
        assert_eq!(Day::parse("2030-02-29"), None);
        assert_eq!(Day::parse("1969-12-31"), None);
        assert_eq!(Day::parse("2030-1-1"), None);
        let t = OffsetDateTime::from_unix_timestamp(86_400 * 3 + 5).expect("ts");
        assert_eq!(Day::of(t), Day(3));
    }

    /// The arithmetic agrees with the `time` crate on every day from 1970 to 9999, and
    /// clamps after.
    #[test]
    fn ymd_matches_the_calendar() {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let last = Date::from_calendar_date(9999, time::Month::December, 31).expect("date");
        let last = (last.to_julian_day() - UNIX_EPOCH_JULIAN_DAY) as u32;
        for day in 0..=last {
            let d = Date::from_julian_day(day as i32 + UNIX_EPOCH_JULIAN_DAY).expect("date");
            assert_eq!(
                Day(day).to_string(),
                d.format(&fmt).expect("fmt"),
                "day {day}"
            );
        }
        assert_eq!(Day(last + 1).to_string(), "9999-12-31");
        assert_eq!(Day(u32::MAX).to_string(), "9999-12-31");
        assert_eq!(
            serde_json::to_string(&Day(11_017)).expect("json"),
            "\"2000-03-01\""
        );
    }
}
