//! When a heartbeat is next due: a fixed interval after the last success, or the next time
//! of a cron schedule in a time zone.
//!
//! Cron patterns are the five fields of crontab(5) (minute, hour, day of month, month, day
//! of week, plus `@hourly`-style nicknames), evaluated by `croner` in the configured IANA
//! time zone (`chrono-tz`), so that "every day at 05:00 Europe/Berlin" follows daylight
//! saving time as GlitchTip's own scheduler does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How often a heartbeat is expected.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A success ping at most this long after the previous one.
    Interval(Duration),
    /// A success ping at every time of a cron schedule (boxed: a parsed pattern is large).
    Cron(Box<CronSchedule>),
}

impl Expect {
    /// When the next success ping is due, given the last one (or the time the heartbeat was
    /// first configured) at `after`. `None` when the schedule never fires again.
    pub fn next_due(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            Expect::Interval(interval) => after.checked_add(*interval),
            Expect::Cron(schedule) => schedule.next_after(after),
        }
    }
}

/// A cron pattern in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses a five-field pattern and an IANA time zone name; the error says which of the
    /// two is wrong and what was expected.
    pub fn parse(pattern: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| ScheduleError::Pattern(e.to_string()))?;
        let tz: Tz = timezone.parse().map_err(|_| ScheduleError::TimeZone)?;
        let schedule = Self { cron, tz };
        // A pattern such as "0 0 31 2 *" parses but never fires: refuse it up front rather
        // than report a heartbeat that can never be late.
        let probe = DateTime::<Utc>::from_timestamp(946_684_800, 0).map(SystemTime::from);
        if probe.and_then(|t| schedule.next_after(t)).is_none() {
            return Err(ScheduleError::Never);
        }
        Ok(schedule)
    }

    /// The first time of the schedule strictly after `t`; `None` also when `t` is beyond
    /// what a calendar date holds (chrono's `From<SystemTime>` would panic there).
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).ok()?;
                match d.subsec_nanos() {
                    0 => (secs.checked_neg()?, 0),
                    n => (secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n),
                }
            }
        };
        let local = DateTime::<Utc>::from_timestamp(secs, nanos)?.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(SystemTime::from)
    }
}

/// Why a cron schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Occurs when the pattern is not a valid five-field cron pattern.
    #[error(
        "a cron pattern of five fields (minute hour day-of-month month day-of-week) such as \"*/5 * * * *\" ({0})"
    )]
    Pattern(String),
    /// Occurs when the time zone is not an IANA time zone name.
    #[error("an IANA time zone name such as \"Europe/Berlin\" or \"UTC\"")]
    TimeZone,
    /// Occurs when the pattern parses but matches no time at all.
    #[error("a cron pattern that fires at some time")]
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn unix(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    // 2026-01-15 10:02:30 UTC, a Thursday, outside daylight saving time in Europe.
    const JAN_15_10_02_30: u64 = 1_768_471_350;

    #[test]
    fn interval_is_added_exactly() {
        let e = Expect::Interval(Duration::from_secs(300));
        assert_eq!(e.next_due(at(1_000)), Some(at(1_300)));
    }

    #[test]
    fn every_five_minutes_next_slot_is_strictly_later() {
        let s = CronSchedule::parse("*/5 * * * *", "UTC").unwrap();
        // 10:02:30 -> 10:05:00
        assert_eq!(
            unix(s.next_after(at(JAN_15_10_02_30)).unwrap()),
            JAN_15_10_02_30 + 150
        );
        // Exactly on a slot: the next one, not the same.
        let slot = JAN_15_10_02_30 + 150;
        assert_eq!(unix(s.next_after(at(slot)).unwrap()), slot + 300);
        // Half a second past a slot still moves on to the next slot.
        let t = at(slot) + Duration::from_millis(500);
        assert_eq!(unix(s.next_after(t).unwrap()), slot + 300);
    }

    #[test]
    fn daily_schedule_follows_the_time_zone() {
        // 05:00 in Berlin is 04:00 UTC in January (CET, +1).
        let s = CronSchedule::parse("0 5 * * *", "Europe/Berlin").unwrap();
        let next = unix(s.next_after(at(JAN_15_10_02_30)).unwrap());
        // 2026-01-16 04:00:00 UTC
        assert_eq!(next, 1_768_536_000);
        // In July (CEST, +2) it is 03:00 UTC: 2026-07-16 03:00:00 UTC after 2026-07-15 12:00 UTC.
        let next = unix(s.next_after(at(1_784_116_800)).unwrap());
        assert_eq!(next, 1_784_170_800);
    }

    #[test]
    fn nicknames_are_accepted() {
        let s = CronSchedule::parse("@hourly", "UTC").unwrap();
        assert_eq!(
            unix(s.next_after(at(JAN_15_10_02_30)).unwrap()),
            1_768_474_800
        );
    }

    #[test]
    fn bad_patterns_and_zones_are_refused() {
        assert!(matches!(
            CronSchedule::parse("every five minutes", "UTC"),
            Err(ScheduleError::Pattern(_))
        ));
        // Seconds are not part of crontab(5).
        assert!(matches!(
            CronSchedule::parse("0 */5 * * * *", "UTC"),
            Err(ScheduleError::Pattern(_))
        ));
        assert_eq!(
            CronSchedule::parse("*/5 * * * *", "Mars/Olympus").unwrap_err(),
            ScheduleError::TimeZone
        );
        assert_eq!(
            CronSchedule::parse("0 0 31 2 *", "UTC").unwrap_err(),
            ScheduleError::Never
        );
    }
}
