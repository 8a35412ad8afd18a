//! UTC calendar time by hand: the instant of a date and time, and RFC 3339 text
//! both ways. Proleptic-Gregorian arithmetic (days-from-civil) is a few lines, so
//! no date crate is needed; certificates' validity times, the access log's stamps
//! and `nexushub check` all go through here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// The instant of a UTC calendar date and time, or `None` if it is not a real one
/// (month 13, February 30, second 60...) or its year is outside 0..=9999.
pub fn utc_time(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<SystemTime> {
    if !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// `t` as RFC 3339 in UTC with whole seconds (rounded down), e.g.
/// `2026-11-25T20:41:23Z`.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            // Round towards the past: 0.5 s before the epoch is 23:59:59.
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            let carry = i64::from(before.subsec_nanos() > 0);
            0i64.saturating_sub(whole).saturating_sub(carry)
        }
    };
    let days = secs.div_euclid(SECS_PER_DAY);
    let of_day = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The inverse of [`format_rfc3339`]: reads exactly `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || b.get(19) != Some(&b'Z')
    {
        return None;
    }
    let year = i64::from(two_digits(b, 0)?) * 100 + i64::from(two_digits(b, 2)?);
    utc_time(
        year,
        two_digits(b, 5)?,
        two_digits(b, 8)?,
        two_digits(b, 11)?,
        two_digits(b, 14)?,
        two_digits(b, 17)?,
    )
}

/// Two ASCII digits at `at` as a number.
fn two_digits(bytes: &[u8], at: usize) -> Option<u32> {
    let digit = |i: usize| match bytes.get(i) {
        Some(b @ b'0'..=b'9') => Some(u32::from(b - b'0')),
        _ => None,
    };
    Some(digit(at)? * 10 + digit(at + 1)?)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). Callers keep `year` within 0..=9999 and `month` in 1..=12.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day count. Any
/// `days` a `SystemTime` can hold stays far from overflow.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days.saturating_add(719_468);
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // In range by construction: month 1..=12, day 1..=31.
    (year, month as u32, day as u32)
}

/// Appends `t` as a log line's time stamp: RFC 3339 UTC with the fraction's trailing zeros left out (as
/// the `time` crate writes it, so the format did not change with the logger).
/// `second` and `stamp` cache the text of the last whole second.
pub(crate) fn push_stamp(
    out: &mut Vec<u8>,
    second: &mut Option<u64>,
    stamp: &mut String,
    t: SystemTime,
) {
    use std::io::Write;
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    if *second != Some(since.as_secs()) {
        let full = format_rfc3339(t);
        *stamp = full.strip_suffix('Z').unwrap_or(&full).to_string();
        *second = Some(since.as_secs());
    }
    out.extend_from_slice(stamp.as_bytes());
    let mut nanos = since.subsec_nanos();
    if nanos != 0 {
        let mut digits = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{nanos:0digits$}");
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_epoch() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn format_example() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_639_283);
        assert_eq!(format_rfc3339(t), "2026-11-25T20:41:23Z");
    }

    #[test]
    fn format_rounds_down_after_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(999);
        assert_eq!(format_rfc3339(t), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn format_rounds_down_before_epoch() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_rfc3339(t), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn format_one_second_before_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_rfc3339(t), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn format_far_future_does_not_panic() {
        let t = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2);
        assert!(!format_rfc3339(t).is_empty());
    }

    #[test]
    fn parse_rfc3339_example() {
        assert_eq!(
            parse_rfc3339("2026-11-25T20:41:23Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_639_283))
        );
    }

    #[test]
    fn parse_rfc3339_refuses_space() {
        assert_eq!(parse_rfc3339("2026-11-25 20:41:23Z"), None);
    }

    #[test]
    fn parse_rfc3339_refuses_no_z() {
        assert_eq!(parse_rfc3339("2026-11-25T20:41:23"), None);
    }

    #[test]
    fn parse_rfc3339_refuses_fraction() {
        assert_eq!(parse_rfc3339("2026-11-25T20:41:23.5Z"), None);
    }

    #[test]
    fn parse_rfc3339_refuses_february_30() {
        assert_eq!(parse_rfc3339("2026-02-30T00:00:00Z"), None);
    }

    #[test]
    fn parse_rfc3339_refuses_multibyte() {
        assert_eq!(parse_rfc3339("2026-11-25T20:41:2\u{e9}"), None);
    }

    #[test]
    fn format_then_parse_round_trips() {
        // Every 997th day from about 1000 AD to 3100 AD, at an odd time of day.
        for days in (-354_000i64..413_000).step_by(997) {
            let secs = days * SECS_PER_DAY + 45_296;
            let t = if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "day {days}");
        }
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-719_468i64..2_932_897).step_by(13) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "day {days}");
        }
    }
}
