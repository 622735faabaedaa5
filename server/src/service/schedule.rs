//! Local wall-clock times in a cohort's IANA time zone, and their instants in UTC.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::{Error, Result};

/// The time zone cohorts get when none is given.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Amsterdam";

/// Parses an IANA zone name such as `Europe/Amsterdam`.
pub fn parse_time_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| Error::Invalid {
        code: "invalid_time_zone",
        message: format!("{name:?} is not an IANA time zone name such as \"Europe/Amsterdam\""),
        details: Some(serde_json::json!({ "field": "time_zone" })),
    })
}

/// The instant at which a local date and time happen in a zone.
///
/// In the autumn hour that happens twice, the first occurrence is taken; a time in the spring
/// hour that does not exist is moved forward by that hour (02:30 becomes 03:30), which is how
/// people read a meeting set at a skipped time.
pub fn local_to_utc(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            let later = local.checked_add_signed(TimeDelta::hours(1))?;
            zone.from_local_datetime(&later).earliest()
        })
        .map(|at| at.with_timezone(&Utc))
        // No zone skips more than an hour at once; fall back to reading the time as UTC.
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str, time: &str) -> DateTime<Utc> {
        local_to_utc(
            parse_time_zone("Europe/Amsterdam").unwrap(),
            date.parse().unwrap(),
            time.parse().unwrap(),
        )
    }

    #[test]
    fn nine_in_the_morning_follows_summer_and_winter_time() {
        assert_eq!(
            at("2027-01-12", "09:00:00").to_rfc3339(),
            "2027-01-12T08:00:00+00:00"
        );
        assert_eq!(
            at("2027-06-15", "09:00:00").to_rfc3339(),
            "2027-06-15T07:00:00+00:00"
        );
    }

    #[test]
    fn a_skipped_spring_time_moves_forward_and_a_doubled_autumn_time_takes_the_first() {
        // 28 March 2027: 02:00 becomes 03:00 in Amsterdam.
        assert_eq!(
            at("2027-03-28", "02:30:00").to_rfc3339(),
            "2027-03-28T01:30:00+00:00"
        );
        // 31 October 2027: 02:30 happens twice; the first is still summer time (UTC+2).
        assert_eq!(
            at("2027-10-31", "02:30:00").to_rfc3339(),
            "2027-10-31T00:30:00+00:00"
        );
    }

    #[test]
    fn unknown_zones_are_rejected_with_a_stable_code() {
        let err = parse_time_zone("Europe/Atlantis").unwrap_err();
        assert!(matches!(
            err,
            Error::Invalid {
                code: "invalid_time_zone",
                ..
            }
        ));
    }
}
