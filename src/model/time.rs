//! Time handling: UTC timestamps at nanosecond resolution, fixed-offset time zones for day
//! windows and month boundaries, and the store's record time format.
//!
//! Windows are half-open `[start, end)`. Hour windows are whole UTC hours; day windows are
//! days in the configured zone. Only fixed offsets are supported (`"+08:00"`): the cloud store's
//! own boundaries are Beijing time, which has no daylight saving.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A UTC instant in nanoseconds since the Unix epoch (valid until the year 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const NS_PER_SEC: i64 = 1_000_000_000;

    /// Saturates outside the years 1677–2262 instead of overflowing (never a panic).
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(Self::NS_PER_SEC))
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Option<Timestamp> {
        dt.timestamp_nanos_opt().map(Timestamp)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    pub fn now() -> Timestamp {
        Timestamp::from_datetime(Utc::now()).unwrap_or_default()
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(Self::NS_PER_SEC)
    }

    pub fn add_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(Self::NS_PER_SEC)))
    }

    /// RFC 3339 in UTC with `Z`, seconds precision unless sub-second digits are present.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Why a text is not a [`Timestamp`]; the message shows the text and a valid example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(String);

/// Parses exactly what an event's `time` field accepts: RFC 3339 with an explicit offset
/// (`"2026-11-23T08:15:00Z"`, `"2026-11-23T16:15:00.5+08:00"`), nanoseconds at most, within
/// the years 1677–2262. A time without an offset is refused, never guessed as UTC.
impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rfc3339(s).map_err(TimestampError)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses an RFC 3339 time with an explicit offset (`Z` or `±hh:mm`).
pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    let dt = DateTime::parse_from_rfc3339(s).map_err(|_| {
        format!("{s:?} is not an RFC 3339 time with an offset; write e.g. \"2026-11-23T08:15:00Z\" or \"2026-11-23T16:15:00+08:00\"")
    })?;
    Timestamp::from_datetime(dt.with_timezone(&Utc)).ok_or_else(|| format!("{s:?} is outside the years 1677–2262"))
}

/// The store's record time format, `yyyyMMdd'T'HHmmss'Z'` in UTC.
pub fn format_record_time(t: Timestamp) -> String {
    t.to_datetime().format("%Y%m%dT%H%M%SZ").to_string()
}

/// A record period: whole UTC hours, or days in the configured zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// A fixed UTC offset, written `"+08:00"`, `"-05:30"` or `"Z"`/`"UTC"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedTz(pub FixedOffset);

impl Default for FixedTz {
    fn default() -> Self {
        FixedTz(FixedOffset::east_opt(8 * 3600).expect("valid offset"))
    }
}

impl FromStr for FixedTz {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "Z" || s.eq_ignore_ascii_case("utc") {
            return Ok(FixedTz(FixedOffset::east_opt(0).expect("zero offset")));
        }
        let bad = || format!("timezone {s:?} is not a fixed offset; write e.g. \"+08:00\" or \"UTC\"");
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if h > 14 || m > 59 {
            return Err(bad());
        }
        FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(FixedTz).ok_or_else(bad)
    }
}

impl fmt::Display for FixedTz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for FixedTz {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FixedTz {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl FixedTz {
    fn offset_secs(self) -> i64 {
        i64::from(self.0.local_minus_utc())
    }

    /// Start (UTC seconds) of the window of `period` that contains `t`.
    pub fn window_start(self, period: Period, t: Timestamp) -> i64 {
        let s = t.secs();
        match period {
            Period::Hour => s.div_euclid(3600) * 3600,
            Period::Day => {
                let off = self.offset_secs();
                (s + off).div_euclid(86_400) * 86_400 - off
            }
        }
    }

    /// End (UTC seconds) of the window of `period` that starts at `start`.
    pub fn window_end(self, period: Period, start: i64) -> i64 {
        match period {
            Period::Hour => start + 3600,
            Period::Day => start + 86_400,
        }
    }

    /// Start (UTC seconds) of the local day containing `t`.
    pub fn day_start(self, t: Timestamp) -> i64 {
        self.window_start(Period::Day, t)
    }

    /// Start (UTC seconds) of the local calendar month containing `t`.
    pub fn month_start(self, t: Timestamp) -> i64 {
        let local = t.to_datetime().with_timezone(&self.0);
        self.local_midnight(local.year(), local.month())
    }

    /// Start (UTC seconds) of the local calendar year containing `t`.
    pub fn year_start(self, t: Timestamp) -> i64 {
        self.local_midnight(t.to_datetime().with_timezone(&self.0).year(), 1)
    }

    /// UTC seconds of local midnight on the first day of `month` in `year`.
    fn local_midnight(self, year: i32, month: u32) -> i64 {
        let first = NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month read from a valid date");
        let midnight = first.and_hms_opt(0, 0, 0).expect("00:00:00 is a valid time");
        self.0.from_local_datetime(&midnight).single().expect("fixed offsets are unambiguous").timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_str_takes_what_the_event_time_field_takes() {
        let t: Timestamp = "2026-11-23T16:15:00.5+08:00".parse().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T08:15:00.500Z");
        let e = "2026-11-23T08:15:00".parse::<Timestamp>().unwrap_err().to_string();
        assert!(e.contains("with an offset") && e.contains("2026-11-23T08:15:00Z"), "{e}");
        let e = "3000-01-01T00:00:00Z".parse::<Timestamp>().unwrap_err().to_string();
        assert!(e.contains("1677–2262"), "{e}");
        let boxed: Box<dyn std::error::Error + Send + Sync> = "x".parse::<Timestamp>().unwrap_err().into();
        assert!(boxed.to_string().contains("RFC 3339"));
    }

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn record_time_format() {
        assert_eq!(format_record_time(ts("2022-08-09T09:10:00Z")), "20220809T091000Z");
        assert_eq!(format_record_time(ts("2022-08-09T17:10:00+08:00")), "20220809T091000Z");
    }

    #[test]
    fn day_window_in_beijing_is_16_to_16_utc() {
        let tz: FixedTz = "+08:00".parse().unwrap();
        let start = tz.window_start(Period::Day, ts("2026-11-23T15:59:59Z"));
        assert_eq!(Timestamp::from_secs(start), ts("2026-11-22T16:00:00Z"));
        let start = tz.window_start(Period::Day, ts("2026-11-23T16:00:00Z"));
        assert_eq!(Timestamp::from_secs(start), ts("2026-11-23T16:00:00Z"));
        assert_eq!(tz.window_end(Period::Day, start) - start, 86_400);
    }

    #[test]
    fn month_start_in_zone() {
        let tz: FixedTz = "+08:00".parse().unwrap();
        // 2026-11-30T17:00Z is already December 1st in Beijing.
        assert_eq!(Timestamp::from_secs(tz.month_start(ts("2026-11-30T17:00:00Z"))), ts("2026-11-30T16:00:00Z"));
        assert_eq!(Timestamp::from_secs(tz.month_start(ts("2026-11-30T15:00:00Z"))), ts("2026-10-31T16:00:00Z"));
    }

    #[test]
    fn offsets_parse_strictly() {
        assert!("+08:00".parse::<FixedTz>().is_ok());
        assert!("UTC".parse::<FixedTz>().is_ok());
        for bad in ["8", "+8:00", "Asia/Shanghai", "+25:00", ""] {
            assert!(bad.parse::<FixedTz>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_requires_offset() {
        assert!(parse_rfc3339("2026-11-23T08:15:00").is_err());
        assert_eq!(ts("2026-11-23T16:15:00+08:00"), ts("2026-11-23T08:15:00Z"));
    }
}
