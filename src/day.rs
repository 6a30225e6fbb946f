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

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let julian = i32::try_from(self.0)
            .ok()
            .and_then(|d| d.checked_add(UNIX_EPOCH_JULIAN_DAY));
        match julian.and_then(|j| Date::from_julian_day(j).ok()) {
            Some(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
            None => f.write_str("9999-12-31"),
        }
    }
}

/// RFC 3339 at whole seconds, UTC: the form of every timestamp in answers.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 time (any offset); the inverse of [`rfc3339`] and more lenient.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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
}
