//! Human durations in config files: `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"20d"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written with a unit suffix; whole numbers only, so it round-trips exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(s: u64) -> Span {
        Span(Duration::from_secs(s))
    }
    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a duration; write a whole number with a unit: ms, s, m, h or d (e.g. \"30s\", \"5m\")");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        n.checked_mul(ms).map(|v| Span(Duration::from_millis(v))).ok_or_else(bad)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
            if ms != 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("30s".parse::<Span>().unwrap(), Span::secs(30));
        assert_eq!("20d".parse::<Span>().unwrap(), Span::secs(20 * 86_400));
        assert_eq!("1500ms".parse::<Span>().unwrap().to_string(), "1500ms");
        assert_eq!(Span::secs(300).to_string(), "5m");
        for bad in ["", "5", "m", "5 m", "-5s", "1.5s", "5y"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
