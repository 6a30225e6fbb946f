//! Calendar days as stored in snapshots: days since 1970-01-01, shown as `YYYY-MM-DD`.

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

    /// The UTC day an instant falls on.
    pub fn of(t: OffsetDateTime) -> Day {
        Day(u32::try_from(t.unix_timestamp().div_euclid(86_400)).unwrap_or(0))
    }
}

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

/// RFC 3339 at whole seconds, UTC (`2026-11-25T08:00:00Z`): the form of every timestamp
/// in answers. Every answer carries one, so times from 1970 to 9999 are written by integer
/// arithmetic into a fixed buffer; others go through the `time` crate.
pub struct Rfc3339 {
    fixed: [u8; 20],
    other: Option<String>,
}

impl Rfc3339 {
    pub fn of(t: OffsetDateTime) -> Rfc3339 {
        let secs = t.unix_timestamp();
        // 253 402 300 800 is 10000-01-01T00:00:00Z.
        let day = u32::try_from(secs.div_euclid(86_400)).ok().map(Day);
        match day.filter(|_| secs < 253_402_300_800) {
            Some(day) => {
                let mut fixed = [0u8; 20];
                fixed[..10].copy_from_slice(&day.ymd());
                let s = secs.rem_euclid(86_400);
                let two = |v: i64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
                fixed[10] = b'T';
                fixed[11..13].copy_from_slice(&two(s / 3600));
                fixed[13] = b':';
                fixed[14..16].copy_from_slice(&two(s / 60 % 60));
                fixed[16] = b':';
                fixed[17..19].copy_from_slice(&two(s % 60));
                fixed[19] = b'Z';
                Rfc3339 { fixed, other: None }
            }
            None => {
                let t = t
                    .to_offset(time::UtcOffset::UTC)
                    .replace_nanosecond(0)
                    .unwrap_or(t);
                let text = t
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
                Rfc3339 {
                    fixed: [0; 20],
                    other: Some(text),
                }
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.other {
            Some(s) => s,
            // Digits, dashes, colons, `T` and `Z` only: always UTF-8.
            None => std::str::from_utf8(&self.fixed).unwrap_or("1970-01-01T00:00:00Z"),
        }
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    Rfc3339::of(t).as_str().to_owned()
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

    /// Agrees with the `time` crate's RFC 3339, at whole seconds, from before 1970 (the
    /// fallback) to the end of 9999 (the last time `time` represents).
    #[test]
    fn rfc3339_matches_the_time_crate() {
        let reference = |t: OffsetDateTime| {
            t.replace_nanosecond(0)
                .expect("ns")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("fmt")
        };
        let mut t = -86_400 * 400;
        while t < 253_402_300_800 {
            let at = OffsetDateTime::from_unix_timestamp(t).expect("ts")
                + time::Duration::milliseconds(700);
            assert_eq!(rfc3339(at), reference(at), "{t}");
            t += 86_400 * 13 + 3_607;
        }
        for t in [0, 59, 86_399, 951_782_400, 253_402_300_799] {
            let at = OffsetDateTime::from_unix_timestamp(t).expect("ts");
            assert_eq!(rfc3339(at), reference(at), "{t}");
        }
    }
}
