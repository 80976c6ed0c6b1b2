//! Cron schedules for the daemon (`[schedule]`): parsing and next-fire computation. Pure.
//! Expressions have six fields with seconds: `sec min hour day month weekday`.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// A validated cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule(cron::Schedule);

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        cron::Schedule::from_str(s)
            .map(Schedule)
            .map_err(|e| format!("{s:?} is not a cron expression (sec min hour day month weekday): {e}"))
    }
}

impl Schedule {
    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.after(&t).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fire_times() {
        let s: Schedule = "0 5 * * * *".parse().unwrap();
        let t = DateTime::parse_from_rfc3339("2026-11-23T08:04:59Z").unwrap().with_timezone(&Utc);
        assert_eq!(s.next_after(t).unwrap().to_rfc3339(), "2026-11-23T08:05:00+00:00");
        let t = DateTime::parse_from_rfc3339("2026-11-23T08:05:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(s.next_after(t).unwrap().to_rfc3339(), "2026-11-23T09:05:00+00:00");
        assert!("every hour".parse::<Schedule>().is_err());
    }
}
