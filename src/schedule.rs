//! Calendar-correct schedule maths: when a [`Schedule`] fires, and which data window a slot covers.
//!
//! Every wall-clock schedule (daily, weekly, monthly, cron) is evaluated in two steps, so that
//! the daylight-saving rules of the API hold for every kind alike:
//!
//! 1. find the matching *wall-clock* times (civil date and time, no zone), and
//! 2. map each one to the first instant at which the zone's clock reads that time or later.
//!
//! Step 2 is exactly the contract's DST rule: a wall-clock time inside a gap maps to the
//! first instant after the gap, and a wall-clock time inside a fold maps to its first
//! occurrence (so it fires once). The mapping never decreases, which lets
//! [`CompiledSchedule::next_after`] and [`CompiledSchedule::latest_at_or_before`] jump straight
//! to the answer instead of scanning.
//!
//! `every` schedules are different: they are fixed intervals on the absolute time line,
//! counted from the Unix epoch, and ignore the zone (except to present the slot).

use std::cmp::Ordering;
use std::time::Duration;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution};
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp, Zoned};

use crate::api::{Schedule, Weekday, Window};

const DURATION_HINT: &str = "expected a number followed by s, m, h or d (e.g. 30s, 15m, 6h, 7d)";

/// Parses a duration such as `30s`, `15m`, `6h`, `7d` or `1h30m`.
///
/// Durations in the API are strings so that YAML stays readable; this is the one parser for
/// all of them (intervals, deadlines, backoffs, link lifetimes). Units go from largest to
/// smallest, each at most once. `0s` parses: callers that need a positive duration check it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{s}`: {DURATION_HINT}");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    // Rank of the previous unit: d = 0, h = 1, m = 2, s = 3.
    let mut previous_rank: Option<u8> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let (seconds_per_unit, rank) = match unit {
            "d" => (86_400, 0),
            "h" => (3_600, 1),
            "m" => (60, 2),
            "s" => (1, 3),
            _ => return Err(invalid()),
        };
        if previous_rank.is_some_and(|previous| previous >= rank) {
            return Err(format!(
                "invalid duration `{s}`: write each unit at most once, from largest to smallest \
                 (e.g. 1h30m)"
            ));
        }
        previous_rank = Some(rank);
        let too_large = || format!("invalid duration `{s}`: too large");
        let value: u64 = number.parse().map_err(|_| too_large())?;
        total = value
            .checked_mul(seconds_per_unit)
            .and_then(|seconds| total.checked_add(seconds))
            // Stay within what jiff's signed durations can hold, so callers never overflow.
            .filter(|&seconds| seconds <= i64::MAX as u64)
            .ok_or_else(too_large)?;
        rest = tail;
    }
    Ok(Duration::from_secs(total))
}

/// Parses a local time of day, `HH:MM` on a 24-hour clock (`00:00` to `23:59`).
///
/// Exactly two digits each, so that `7:30` or `07:30:00` are rejected rather than guessed at.
pub fn parse_time_of_day(s: &str) -> Result<(i8, i8), String> {
    let invalid = || {
        format!(
            "invalid time `{s}`: expected HH:MM on a 24-hour clock, 00:00 to 23:59 (e.g. 00:30)"
        )
    };
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(invalid());
    }
    let hour = (b[0] - b'0') * 10 + (b[1] - b'0');
    let minute = (b[3] - b'0') * 10 + (b[4] - b'0');
    if hour > 23 || minute > 59 {
        return Err(invalid());
    }
    Ok((hour as i8, minute as i8))
}

/// Looks up an IANA time zone by name, e.g. `Asia/Tokyo` or `UTC`, in jiff's bundled database.
///
/// The bundled database makes results independent of the host's `/usr/share/zoneinfo`. Names are
/// case-sensitive (as in the IANA database and most other tools): `asia/tokyo` is rejected with
/// a suggestion, so the spelling stored in Git is the canonical one. Database entries that are
/// not zones (`localtime`, `posixrules`, `Factory`) are rejected too.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    let unknown =
        || format!("unknown time zone `{name}` (expected an IANA name such as Asia/Tokyo or UTC)");
    if name.is_empty() {
        return Err(unknown());
    }
    let tz = TimeZone::get(name).map_err(|_| unknown())?;
    match tz.iana_name() {
        None | Some("localtime" | "posixrules" | "Factory") => Err(unknown()),
        Some(canonical) if canonical != name => Err(format!(
            "unknown time zone `{name}` (IANA names are case-sensitive: did you mean `{canonical}`?)"
        )),
        _ => Ok(tz),
    }
}

/// Checks a five-field cron expression (minute hour day-of-month month day-of-week).
///
/// Seconds and year fields are rejected: Ferry schedules to the minute, and a six-field
/// expression is ambiguous between "seconds first" and "year last" dialects. The nicknames
/// `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` and `@hourly` are accepted. An
/// expression that can never fire (e.g. `0 0 30 2 *`) is an error too.
pub fn validate_cron(expr: &str) -> Result<(), String> {
    parse_cron(expr).map(drop)
}

fn parse_cron(expr: &str) -> Result<Cron, String> {
    const FIVE_FIELDS: &str = "expected five fields: minute hour day-of-month month day-of-week, \
                               e.g. `30 0 * * *`";
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(format!("empty cron expression: {FIVE_FIELDS}"));
    }
    if let Some(nickname) = trimmed.strip_prefix('@') {
        const NICKNAMES: [&str; 6] = ["yearly", "annually", "monthly", "weekly", "daily", "hourly"];
        if !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(nickname)) {
            return Err(format!(
                "unknown cron nickname `{trimmed}` (expected @yearly, @annually, @monthly, \
                 @weekly, @daily or @hourly, or five fields)"
            ));
        }
    } else {
        let fields = trimmed.split_whitespace().count();
        if fields == 6 || fields == 7 {
            return Err(format!(
                "cron expression `{expr}` has {fields} fields: seconds and year fields are not \
                 supported; {FIVE_FIELDS}"
            ));
        }
        if fields != 5 {
            return Err(format!(
                "cron expression `{expr}` has {fields} field(s): {FIVE_FIELDS}"
            ));
        }
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(trimmed)
        .map_err(|e| format!("invalid cron expression `{expr}`: {}", cron_error(&e)))?;
    // A five-field pattern repeats every 400 years (the Gregorian cycle is a whole number of
    // weeks), so one that matches nothing in 400 years never matches.
    let start = Date::constant(2000, 1, 1).to_datetime(Time::midnight());
    match cron_civil_after(&cron, start) {
        Some(first) if first.year() < 2400 => Ok(cron),
        _ => Err(format!(
            "cron expression `{expr}` never fires: no date matches it (e.g. 30 February)"
        )),
    }
}

fn cron_error(e: &CronError) -> String {
    match e {
        CronError::ComponentError(m) | CronError::InvalidPattern(m) => m.clone(),
        CronError::IllegalCharacters(m) => m.replace("CronPattern contains", "contains"),
        other => other.to_string(),
    }
}

/// A wall-clock date and time handed to croner, so that croner's pattern search runs on civil
/// time only and the zone's DST rules are applied by this module (croner's own DST handling
/// differs from the API's rules for patterns with more than one time per day).
#[derive(Clone, Copy, Debug)]
struct CronCivil(DateTime);

impl CronDateTime for CronCivil {
    fn to_civil(&self) -> CivilDateTime {
        let dt = self.0;
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(
                i32::from(dt.year()),
                dt.month() as u32,
                dt.day() as u32,
            ),
            CivilTime::from_parts_unchecked(
                dt.hour() as u32,
                dt.minute() as u32,
                dt.second() as u32,
            ),
        )
    }

    fn civil_weekday(&self) -> croner::Weekday {
        croner::Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let dt = DateTime::new(
            year,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        Ok(Resolution::Single(CronCivil(dt)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(CronCivil)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// The first wall-clock time matching `cron` strictly after `dt`.
fn cron_civil_after(cron: &Cron, dt: DateTime) -> Option<DateTime> {
    // croner drops sub-seconds; matches are whole minutes, so "after the truncated second"
    // is the same as "after dt".
    cron.find_next_occurrence(&CronCivil(dt), false)
        .ok()
        .map(|c| c.0)
}

/// The last wall-clock time matching `cron` at or before `dt`.
fn cron_civil_at_or_before(cron: &Cron, dt: DateTime) -> Option<DateTime> {
    cron.find_previous_occurrence(&CronCivil(dt), true)
        .ok()
        .map(|c| c.0)
}

/// A validated schedule in its time zone, ready to answer "when is the next slot?" quickly.
///
/// Built once per resource (parsing and validation happen here), then queried many times by
/// the planner and the controller.
#[derive(Clone, Debug)]
pub struct CompiledSchedule {
    tz: TimeZone,
    rule: Rule,
}

#[derive(Clone, Debug)]
enum Rule {
    Daily {
        at: Time,
    },
    /// `days[i]` is true when the weekday `i` days after Monday is listed.
    Weekly {
        days: [bool; 7],
        at: Time,
    },
    Monthly {
        day: i8,
        at: Time,
    },
    Cron(Box<Cron>),
    /// Interval in nanoseconds, always > 0.
    Every {
        nanos: i128,
    },
}

impl CompiledSchedule {
    /// Validates `schedule` and `time_zone` and compiles them.
    ///
    /// Checks everything a slot computation relies on: `at` times, month day 1-31, a non-empty
    /// weekday list, a five-field cron expression that can fire, and a positive interval. The
    /// message names the offending value but not the field path; callers add that.
    pub fn new(schedule: &Schedule, time_zone: &str) -> Result<Self, String> {
        let tz = parse_time_zone(time_zone)?;
        let time = |s: &str| -> Result<Time, String> {
            let (hour, minute) = parse_time_of_day(s)?;
            Ok(Time::constant(hour, minute, 0, 0))
        };
        let rule = match schedule {
            Schedule::Daily(d) => Rule::Daily { at: time(&d.at)? },
            Schedule::Weekly(w) => {
                if w.on.is_empty() {
                    return Err(
                        "a weekly schedule needs at least one weekday in `on` (mon, tue, wed, \
                         thu, fri, sat, sun)"
                            .to_string(),
                    );
                }
                let mut days = [false; 7];
                for day in &w.on {
                    days[monday_offset(*day)] = true;
                }
                Rule::Weekly {
                    days,
                    at: time(&w.at)?,
                }
            }
            Schedule::Monthly(m) => {
                if !(1..=31).contains(&m.day) {
                    return Err(format!("day {} is out of range (1-31)", m.day));
                }
                Rule::Monthly {
                    day: m.day as i8,
                    at: time(&m.at)?,
                }
            }
            Schedule::Cron(expr) => Rule::Cron(Box::new(parse_cron(expr)?)),
            Schedule::Every(s) => {
                let interval = parse_duration(s)?;
                if interval.is_zero() {
                    return Err(format!("interval `{s}` must be greater than zero"));
                }
                Rule::Every {
                    nanos: interval.as_nanos() as i128,
                }
            }
        };
        Ok(CompiledSchedule { tz, rule })
    }

    /// The schedule's time zone: slots, windows and file names are all presented in it.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first slot strictly after `after`, in the schedule's zone; `None` only past the
    /// end of the representable calendar.
    ///
    /// Constant work per call (no scanning): a slot is at or before `after` exactly when its
    /// wall-clock time is at most the latest wall-clock reading the zone has shown by `after`,
    /// so the answer is the next wall-clock match after that reading.
    pub fn next_after(&self, after: Timestamp) -> Option<Zoned> {
        let ts = match &self.rule {
            Rule::Every { nanos } => {
                let k = after.as_nanosecond().div_euclid(*nanos);
                Timestamp::from_nanosecond(k.checked_add(1)?.checked_mul(*nanos)?).ok()?
            }
            rule => {
                let reading = latest_reading(&self.tz, after)?;
                first_instant_reading(&self.tz, rule.civil_after(reading)?)?
            }
        };
        Some(ts.to_zoned(self.tz.clone()))
    }

    /// The next `count` slots strictly after `after`, in order (fewer only at the end of the
    /// calendar). Used for previews such as `ferry get` and status.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Zoned> {
        let mut slots = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while slots.len() < count {
            let Some(slot) = self.next_after(cursor) else {
                break;
            };
            cursor = slot.timestamp();
            slots.push(slot);
        }
        slots
    }

    /// The most recent slot at or before `at`: the slot to catch up on after downtime.
    ///
    /// As cheap as [`next_after`](Self::next_after), however long ago that slot was.
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Zoned> {
        let ts = match &self.rule {
            Rule::Every { nanos } => {
                let k = at.as_nanosecond().div_euclid(*nanos);
                Timestamp::from_nanosecond(k.checked_mul(*nanos)?).ok()?
            }
            rule => {
                let reading = latest_reading(&self.tz, at)?;
                first_instant_reading(&self.tz, rule.civil_at_or_before(reading)?)?
            }
        };
        Some(ts.to_zoned(self.tz.clone()))
    }

    /// The slots in `(from_exclusive, to_inclusive]`, earliest first, at most `limit` of them
    /// (the earliest ones). Used to list or count missed slots without unbounded work.
    pub fn slots_between(
        &self,
        from_exclusive: Timestamp,
        to_inclusive: Timestamp,
        limit: usize,
    ) -> Vec<Zoned> {
        let mut slots = Vec::new();
        let mut cursor = from_exclusive;
        while slots.len() < limit {
            match self.next_after(cursor) {
                Some(slot) if slot.timestamp() <= to_inclusive => {
                    cursor = slot.timestamp();
                    slots.push(slot);
                }
                _ => break,
            }
        }
        slots
    }
}

impl Rule {
    /// The first matching wall-clock time strictly after `dt`.
    fn civil_after(&self, dt: DateTime) -> Option<DateTime> {
        match self {
            Rule::Daily { at } => {
                let date = if dt.time() < *at {
                    dt.date()
                } else {
                    dt.date().tomorrow().ok()?
                };
                Some(date.to_datetime(*at))
            }
            Rule::Weekly { days, at } => {
                let mut date = if dt.time() < *at {
                    dt.date()
                } else {
                    dt.date().tomorrow().ok()?
                };
                for _ in 0..7 {
                    if days[date.weekday().to_monday_zero_offset() as usize] {
                        return Some(date.to_datetime(*at));
                    }
                    date = date.tomorrow().ok()?;
                }
                None
            }
            Rule::Monthly { day, at } => {
                let this_month = monthly_slot(dt.date(), *day, *at);
                if this_month > dt {
                    Some(this_month)
                } else {
                    let next_month = dt.date().last_of_month().tomorrow().ok()?;
                    Some(monthly_slot(next_month, *day, *at))
                }
            }
            Rule::Cron(cron) => cron_civil_after(cron, dt),
            Rule::Every { .. } => None,
        }
    }

    /// The last matching wall-clock time at or before `dt`.
    fn civil_at_or_before(&self, dt: DateTime) -> Option<DateTime> {
        match self {
            Rule::Daily { at } => {
                let date = if dt.time() >= *at {
                    dt.date()
                } else {
                    dt.date().yesterday().ok()?
                };
                Some(date.to_datetime(*at))
            }
            Rule::Weekly { days, at } => {
                let mut date = if dt.time() >= *at {
                    dt.date()
                } else {
                    dt.date().yesterday().ok()?
                };
                for _ in 0..7 {
                    if days[date.weekday().to_monday_zero_offset() as usize] {
                        return Some(date.to_datetime(*at));
                    }
                    date = date.yesterday().ok()?;
                }
                None
            }
            Rule::Monthly { day, at } => {
                let this_month = monthly_slot(dt.date(), *day, *at);
                if this_month <= dt {
                    Some(this_month)
                } else {
                    let previous_month = dt.date().first_of_month().yesterday().ok()?;
                    Some(monthly_slot(previous_month, *day, *at))
                }
            }
            Rule::Cron(cron) => cron_civil_at_or_before(cron, dt),
            Rule::Every { .. } => None,
        }
    }
}

/// The monthly slot in `date`'s month: day `day`, or the month's last day if it is shorter.
fn monthly_slot(date: Date, day: i8, at: Time) -> DateTime {
    let day = day.min(date.days_in_month());
    date.first_of_month()
        .with()
        .day(day)
        .build()
        .expect("a day within the month's length exists")
        .to_datetime(at)
}

fn monday_offset(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// The first instant at which the zone's clock reads `dt` or later.
///
/// This is the API's DST rule in one function: an existing time maps to itself, a time in a
/// fold to its first occurrence, and a time in a gap to the first instant after the gap (the
/// transition itself). It never decreases as `dt` grows.
fn first_instant_reading(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        // `before` is the larger offset in a fold, so it gives the earlier instant.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the post-gap offset, `dt` names an instant shortly before the
            // transition; the next transition after it is the end of the gap.
            let inside = after.to_timestamp(dt).ok()?;
            tz.following(inside)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}

/// The latest wall-clock reading the zone has shown at or before `t`.
///
/// That is `t`'s own reading, except in the second half of a fold, where the clock already
/// showed later times (up to the moment it was set back) during the first half.
fn latest_reading(tz: &TimeZone, t: Timestamp) -> Option<DateTime> {
    let now = tz.to_datetime(t);
    let AmbiguousOffset::Fold { before, .. } = tz.to_ambiguous_timestamp(now).offset() else {
        return Some(now);
    };
    if before.to_timestamp(now).ok()? == t {
        // First occurrence: nothing later has been shown yet.
        return Some(now);
    }
    // The set-back is the latest transition at or before `t` that left the `before` offset
    // (`preceding` is strict, hence the nanosecond; the zone data can hold no-op entries, hence
    // the offset check).
    let transition = tz
        .preceding(t.checked_add(SignedDuration::from_nanos(1)).ok()?)
        .take(4)
        .map(|transition| transition.timestamp())
        .find(|&at| {
            at.checked_sub(SignedDuration::from_nanos(1))
                .is_ok_and(|just_before| tz.to_offset(just_before) == before)
        })?;
    let set_back_from = before.to_datetime(transition);
    Some(
        set_back_from
            .checked_sub(SignedDuration::from_nanos(1))
            .ok()?
            .max(now),
    )
}

/// The data window of a run for `slot`, as `[start, end)` in the slot's zone; `None` for
/// `all` (no bounds).
///
/// Day boundaries are computed in the zone, so a window spanning a DST change is 23 or 25 hours
/// long and still starts and ends at local midnight (or the first instant of the day, where
/// midnight itself does not exist). `sinceLastSuccess` starts at `last_success` (or the Unix
/// epoch) and is never inverted: a last success at or after the slot gives an empty window.
pub fn window(
    window: Window,
    slot: &Zoned,
    last_success: Option<&Zoned>,
) -> Option<(Zoned, Zoned)> {
    let tz = slot.time_zone();
    let date = slot.date();
    let (start, end) = match window {
        Window::All => return None,
        Window::PreviousDay => (days_before(date, 1), date),
        Window::PreviousWeek => {
            let monday = days_before(date, i64::from(date.weekday().to_monday_zero_offset()));
            (days_before(monday, 7), monday)
        }
        Window::PreviousMonth => {
            let first = date.first_of_month();
            (days_before(first, 1).first_of_month(), first)
        }
        Window::SinceLastSuccess => {
            let start = last_success
                .map(|z| z.timestamp())
                .unwrap_or(Timestamp::UNIX_EPOCH)
                .min(slot.timestamp());
            return Some((start.to_zoned(tz.clone()), slot.clone()));
        }
    };
    Some((start_of_day(tz, start), start_of_day(tz, end)))
}

/// `date` minus `days`, saturating at the earliest supported date.
fn days_before(date: Date, days: i64) -> Date {
    date.checked_sub(Span::new().days(days))
        .unwrap_or(Date::MIN)
}

/// The first instant of `date` in `tz` (saturating at the earliest supported instant).
fn start_of_day(tz: &TimeZone, date: Date) -> Zoned {
    first_instant_reading(tz, date.to_datetime(Time::midnight()))
        .unwrap_or(Timestamp::MIN)
        .to_zoned(tz.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DailySchedule, MonthlySchedule, WeeklySchedule};

    fn ts(s: &str) -> Timestamp {
        s.parse()
            .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
    }

    fn zoned(s: &str) -> Zoned {
        s.parse().unwrap_or_else(|e| panic!("bad zoned {s}: {e}"))
    }

    fn daily(at: &str, tz: &str) -> CompiledSchedule {
        CompiledSchedule::new(&Schedule::Daily(DailySchedule { at: at.into() }), tz).unwrap()
    }

    fn cron(expr: &str, tz: &str) -> CompiledSchedule {
        CompiledSchedule::new(&Schedule::Cron(expr.into()), tz).unwrap()
    }

    fn every(interval: &str, tz: &str) -> CompiledSchedule {
        CompiledSchedule::new(&Schedule::Every(interval.into()), tz).unwrap()
    }

    fn monthly(day: u8, at: &str, tz: &str) -> CompiledSchedule {
        CompiledSchedule::new(
            &Schedule::Monthly(MonthlySchedule { day, at: at.into() }),
            tz,
        )
        .unwrap()
    }

    /// RFC 3339 with offset, the form status fields use: easy to read in assertions.
    fn rfc3339(slots: &[Zoned]) -> Vec<String> {
        slots
            .iter()
            .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .collect()
    }

    fn upcoming(s: &CompiledSchedule, after: &str, count: usize) -> Vec<String> {
        rfc3339(&s.upcoming(ts(after), count))
    }

    // ---- daily -------------------------------------------------------------------------------

    #[test]
    fn daily_at_half_past_midnight_in_tokyo_gives_the_next_three_nights() {
        let s = daily("00:30", "Asia/Tokyo");
        // 21:00 in Tokyo on 30 July.
        assert_eq!(
            upcoming(&s, "2026-07-30T12:00:00Z", 3),
            [
                "2026-07-31T00:30:00+09:00",
                "2026-08-01T00:30:00+09:00",
                "2026-08-02T00:30:00+09:00"
            ]
        );
        assert_eq!(
            s.next_after(ts("2026-07-30T12:00:00Z"))
                .unwrap()
                .time_zone(),
            s.time_zone()
        );
    }

    #[test]
    fn a_slot_is_never_its_own_next_slot() {
        let s = daily("00:30", "Asia/Tokyo");
        let slot = s.next_after(ts("2026-07-30T12:00:00Z")).unwrap();
        let next = s.next_after(slot.timestamp()).unwrap();
        assert_eq!(
            next.timestamp().duration_since(slot.timestamp()),
            SignedDuration::from_hours(24)
        );
    }

    #[test]
    fn daily_in_the_berlin_spring_gap_runs_at_three_when_the_gap_ends() {
        // 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST, so 02:30 does not exist.
        let s = daily("02:30", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn daily_in_the_berlin_autumn_fold_runs_once_at_the_first_occurrence() {
        // 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET, so 02:30 happens twice.
        let s = daily("02:30", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // Asking from the second 02:30 (or from inside the repeated hour) does not fire again.
        let second = zoned("2026-10-25T02:30:00+01:00[Europe/Berlin]").timestamp();
        assert_eq!(
            rfc3339(&[s.next_after(second).unwrap()]),
            ["2026-10-26T02:30:00+01:00"]
        );
        let inside = zoned("2026-10-25T02:10:00+01:00[Europe/Berlin]").timestamp();
        assert_eq!(
            rfc3339(&[s.next_after(inside).unwrap()]),
            ["2026-10-26T02:30:00+01:00"]
        );
        // ...and the slot already happened during the first pass through the hour.
        assert_eq!(
            rfc3339(&[s.latest_at_or_before(inside).unwrap()]),
            ["2026-10-25T02:30:00+02:00"]
        );
    }

    #[test]
    fn daily_in_new_york_handles_both_transitions() {
        // 2026-03-08: 02:00 EST -> 03:00 EDT. 2026-11-01: 02:00 EDT -> 01:00 EST.
        let spring = daily("02:30", "America/New_York");
        assert_eq!(
            upcoming(&spring, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
        let autumn = daily("01:30", "America/New_York");
        assert_eq!(
            upcoming(&autumn, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
    }

    #[test]
    fn daily_in_lord_howe_handles_the_half_hour_shift() {
        // Lord Howe Island moves its clock by 30 minutes: 2026-10-04 02:00 -> 02:30 (+11:00),
        // and 2026-04-05 02:00 -> 01:30 (+10:30).
        let gap = daily("02:15", "Australia/Lord_Howe");
        assert_eq!(
            upcoming(&gap, "2026-10-02T12:00:00Z", 3),
            [
                "2026-10-03T02:15:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-05T02:15:00+11:00"
            ]
        );
        let fold = daily("01:45", "Australia/Lord_Howe");
        assert_eq!(
            upcoming(&fold, "2026-04-03T12:00:00Z", 3),
            [
                "2026-04-04T01:45:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-06T01:45:00+10:30"
            ]
        );
        // Just outside the shifted half hour nothing changes.
        let before_gap = daily("01:59", "Australia/Lord_Howe");
        assert_eq!(
            upcoming(&before_gap, "2026-10-03T12:00:00Z", 1),
            ["2026-10-04T01:59:00+10:30"]
        );
    }

    // ---- cron --------------------------------------------------------------------------------

    #[test]
    fn cron_in_the_berlin_spring_gap_runs_at_the_end_of_the_gap() {
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
    }

    #[test]
    fn cron_with_two_times_in_the_gap_still_runs_that_day_but_only_once() {
        // croner on its own skips this day entirely; the API says never skip a day.
        let s = cron("0,30 2 * * *", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn cron_every_half_hour_collapses_the_missing_hour_into_one_run() {
        let s = cron("*/30 * * * *", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-03-29T01:00:00+01:00", 3),
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
    }

    #[test]
    fn cron_every_half_hour_does_not_repeat_the_repeated_hour() {
        let s = cron("*/30 * * * *", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-10-25T01:45:00+02:00", 4),
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:30:00+01:00"
            ]
        );
    }

    #[test]
    fn cron_in_the_new_york_fold_runs_each_time_once() {
        let s = cron("15,45 1 * * *", "America/New_York");
        assert_eq!(
            upcoming(&s, "2026-10-31T12:00:00Z", 4),
            [
                "2026-11-01T01:15:00-04:00",
                "2026-11-01T01:45:00-04:00",
                "2026-11-02T01:15:00-05:00",
                "2026-11-02T01:45:00-05:00"
            ]
        );
        let spring = cron("30 2 * * 0", "America/New_York");
        assert_eq!(
            upcoming(&spring, "2026-03-01T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-15T02:30:00-04:00"]
        );
    }

    #[test]
    fn cron_in_lord_howe_handles_the_half_hour_shift() {
        let s = cron("*/15 * * * *", "Australia/Lord_Howe");
        // Spring: 02:00 and 02:15 do not exist; both collapse into 02:30.
        assert_eq!(
            upcoming(&s, "2026-10-04T01:50:00+10:30", 3),
            [
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:45:00+11:00",
                "2026-10-04T03:00:00+11:00"
            ]
        );
        // Autumn: 01:30-01:59 happens twice; each quarter hour runs once, on the first pass.
        assert_eq!(
            upcoming(&s, "2026-04-05T01:20:00+11:00", 3),
            [
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T02:00:00+10:30"
            ]
        );
    }

    #[test]
    fn cron_weekday_and_month_fields_are_honoured() {
        // 09:00 on weekdays in Tokyo; 2026-07-31 is a Friday.
        let s = cron("0 9 * * mon-fri", "Asia/Tokyo");
        assert_eq!(
            upcoming(&s, "2026-07-30T23:00:00Z", 2),
            ["2026-07-31T09:00:00+09:00", "2026-08-03T09:00:00+09:00"]
        );
        let leap_day = cron("0 6 29 2 *", "UTC");
        assert_eq!(
            upcoming(&leap_day, "2026-01-01T00:00:00Z", 1),
            ["2028-02-29T06:00:00+00:00"]
        );
    }

    // ---- weekly and monthly ------------------------------------------------------------------

    #[test]
    fn weekly_runs_on_each_listed_day_in_order() {
        let s = CompiledSchedule::new(
            &Schedule::Weekly(WeeklySchedule {
                on: vec![Weekday::Thu, Weekday::Mon],
                at: "08:00".into(),
            }),
            "Asia/Tokyo",
        )
        .unwrap();
        // 2026-08-02 is a Sunday.
        assert_eq!(
            upcoming(&s, "2026-08-02T00:00:00Z", 4),
            [
                "2026-08-03T08:00:00+09:00",
                "2026-08-06T08:00:00+09:00",
                "2026-08-10T08:00:00+09:00",
                "2026-08-13T08:00:00+09:00"
            ]
        );
        assert_eq!(
            rfc3339(&[s.latest_at_or_before(ts("2026-08-09T00:00:00Z")).unwrap()]),
            ["2026-08-06T08:00:00+09:00"]
        );
    }

    #[test]
    fn monthly_on_the_31st_falls_back_to_each_short_months_last_day() {
        let s = monthly(31, "06:00", "Europe/Paris");
        let days = |year: i16| -> Vec<String> {
            let start = Date::new(year, 1, 1)
                .unwrap()
                .to_zoned(TimeZone::UTC)
                .unwrap();
            s.upcoming(start.timestamp(), 12)
                .iter()
                .map(|z| z.strftime("%m-%d %H:%M").to_string())
                .collect()
        };
        let expected = |feb: &str| {
            vec![
                "01-31 06:00".to_string(),
                format!("02-{feb} 06:00"),
                "03-31 06:00".into(),
                "04-30 06:00".into(),
                "05-31 06:00".into(),
                "06-30 06:00".into(),
                "07-31 06:00".into(),
                "08-31 06:00".into(),
                "09-30 06:00".into(),
                "10-31 06:00".into(),
                "11-30 06:00".into(),
                "12-31 06:00".into(),
            ]
        };
        assert_eq!(days(2027), expected("28"), "2027 is not a leap year");
        assert_eq!(days(2028), expected("29"), "2028 is a leap year");
    }

    #[test]
    fn monthly_on_the_29th_and_30th_fall_back_only_in_february() {
        let thirtieth = monthly(30, "00:00", "UTC");
        assert_eq!(
            upcoming(&thirtieth, "2027-01-15T00:00:00Z", 3),
            [
                "2027-01-30T00:00:00+00:00",
                "2027-02-28T00:00:00+00:00",
                "2027-03-30T00:00:00+00:00"
            ]
        );
        let twenty_ninth = monthly(29, "00:00", "UTC");
        assert_eq!(
            upcoming(&twenty_ninth, "2027-02-01T00:00:00Z", 1),
            ["2027-02-28T00:00:00+00:00"]
        );
        assert_eq!(
            upcoming(&twenty_ninth, "2028-02-01T00:00:00Z", 1),
            ["2028-02-29T00:00:00+00:00"]
        );
        // Going backwards applies the same rule.
        assert_eq!(
            rfc3339(&[thirtieth
                .latest_at_or_before(ts("2027-03-15T00:00:00Z"))
                .unwrap()]),
            ["2027-02-28T00:00:00+00:00"]
        );
    }

    #[test]
    fn monthly_in_a_dst_gap_runs_at_the_end_of_the_gap() {
        // 2026-03-29 is the Berlin spring-forward day.
        let s = monthly(29, "02:30", "Europe/Berlin");
        assert_eq!(
            upcoming(&s, "2026-03-01T00:00:00Z", 1),
            ["2026-03-29T03:00:00+02:00"]
        );
    }

    // ---- every -------------------------------------------------------------------------------

    #[test]
    fn every_24h_is_aligned_to_the_unix_epoch_whatever_the_zone() {
        let s = every("24h", "Asia/Tokyo");
        // Midnight UTC is 09:00 in Tokyo.
        assert_eq!(
            upcoming(&s, "2026-07-30T12:00:00Z", 2),
            ["2026-07-31T09:00:00+09:00", "2026-08-01T09:00:00+09:00"]
        );
        // Across a DST change the interval stays 24 real hours, so the local time moves.
        let berlin = every("24h", "Europe/Berlin");
        assert_eq!(
            upcoming(&berlin, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+01:00", "2026-03-30T02:00:00+02:00"]
        );
    }

    #[test]
    fn every_15m_is_aligned_to_quarter_hours_and_exact_slots_count_as_past() {
        let s = every("15m", "UTC");
        assert_eq!(
            upcoming(&s, "2026-07-30T10:07:30Z", 1),
            ["2026-07-30T10:15:00+00:00"]
        );
        assert_eq!(
            upcoming(&s, "2026-07-30T10:15:00Z", 1),
            ["2026-07-30T10:30:00+00:00"]
        );
        assert_eq!(
            rfc3339(&[s.latest_at_or_before(ts("2026-07-30T10:15:00Z")).unwrap()]),
            ["2026-07-30T10:15:00+00:00"]
        );
        // Before 1970 the alignment still holds.
        assert_eq!(
            upcoming(&s, "1969-12-31T23:50:00Z", 1),
            ["1970-01-01T00:00:00+00:00"]
        );
    }

    // ---- latest_at_or_before and ranges ------------------------------------------------------

    #[test]
    fn latest_at_or_before_agrees_with_next_after_around_every_kind_of_transition() {
        let schedules = [
            daily("02:30", "Europe/Berlin"),
            daily("01:30", "America/New_York"),
            daily("01:45", "Australia/Lord_Howe"),
            daily("02:15", "Australia/Lord_Howe"),
            cron("*/15 * * * *", "Australia/Lord_Howe"),
            cron("0,30 2 * * *", "Europe/Berlin"),
            cron("45 1 * * *", "America/New_York"),
            monthly(31, "02:30", "Europe/Berlin"),
            every("15m", "Europe/Berlin"),
        ];
        // Sample every 7 minutes (prime, so we hit every offset) around each transition.
        let centres = [
            "2026-03-29T01:00:00Z", // Berlin spring
            "2026-10-25T01:00:00Z", // Berlin autumn
            "2026-03-08T07:00:00Z", // New York spring
            "2026-11-01T06:00:00Z", // New York autumn
            "2026-04-04T15:00:00Z", // Lord Howe autumn
            "2026-10-03T15:30:00Z", // Lord Howe spring
        ];
        for s in &schedules {
            for centre in centres {
                let centre = ts(centre);
                for step in -60..=60 {
                    let t = centre + SignedDuration::from_mins(7 * step);
                    let latest = s.latest_at_or_before(t).unwrap();
                    let next = s.next_after(t).unwrap();
                    assert!(
                        latest.timestamp() <= t && t < next.timestamp(),
                        "{s:?} at {t}"
                    );
                    // Nothing lies between the two: the slot after `latest` is `next`.
                    assert_eq!(
                        s.next_after(latest.timestamp()).unwrap(),
                        next,
                        "{s:?} at {t}"
                    );
                    assert_eq!(
                        s.latest_at_or_before(next.timestamp()).unwrap(),
                        next,
                        "{s:?} at {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn latest_at_or_before_reaches_far_back_without_scanning() {
        let s = cron("0 6 29 2 *", "Asia/Tokyo");
        assert_eq!(
            rfc3339(&[s.latest_at_or_before(ts("2031-01-01T00:00:00Z")).unwrap()]),
            ["2028-02-29T06:00:00+09:00"]
        );
    }

    #[test]
    fn slots_between_lists_missed_slots_up_to_the_limit() {
        let s = daily("00:30", "Asia/Tokyo");
        let from = ts("2026-07-27T00:00:00Z");
        let to = zoned("2026-07-31T00:30:00+09:00[Asia/Tokyo]").timestamp();
        assert_eq!(
            rfc3339(&s.slots_between(from, to, 10)),
            [
                "2026-07-28T00:30:00+09:00",
                "2026-07-29T00:30:00+09:00",
                "2026-07-30T00:30:00+09:00",
                "2026-07-31T00:30:00+09:00"
            ]
        );
        assert_eq!(s.slots_between(from, to, 2).len(), 2);
        assert!(s.slots_between(to, to, 10).is_empty());
    }

    // ---- windows -----------------------------------------------------------------------------

    fn window_of(kind: Window, slot: &str, last: Option<&str>) -> Option<(String, String)> {
        let last = last.map(zoned);
        window(kind, &zoned(slot), last.as_ref())
            .map(|(start, end)| (start.to_string(), end.to_string()))
    }

    fn pair(start: &str, end: &str) -> Option<(String, String)> {
        Some((start.to_string(), end.to_string()))
    }

    #[test]
    fn window_all_has_no_bounds() {
        assert_eq!(
            window_of(Window::All, "2026-07-31T00:30:00+09:00[Asia/Tokyo]", None),
            None
        );
    }

    #[test]
    fn window_previous_day_is_yesterday_in_the_zone() {
        assert_eq!(
            window_of(
                Window::PreviousDay,
                "2026-07-31T00:30:00+09:00[Asia/Tokyo]",
                None
            ),
            pair(
                "2026-07-30T00:00:00+09:00[Asia/Tokyo]",
                "2026-07-31T00:00:00+09:00[Asia/Tokyo]"
            )
        );
    }

    #[test]
    fn window_previous_day_of_a_23_hour_day_is_23_hours_long() {
        let (start, end) = window(
            Window::PreviousDay,
            &zoned("2026-03-30T00:30:00+02:00[Europe/Berlin]"),
            None,
        )
        .unwrap();
        assert_eq!(
            start.to_string(),
            "2026-03-29T00:00:00+01:00[Europe/Berlin]"
        );
        assert_eq!(end.to_string(), "2026-03-30T00:00:00+02:00[Europe/Berlin]");
        assert_eq!(
            end.timestamp().duration_since(start.timestamp()),
            SignedDuration::from_hours(23)
        );

        let (start, end) = window(
            Window::PreviousDay,
            &zoned("2026-10-26T00:30:00+01:00[Europe/Berlin]"),
            None,
        )
        .unwrap();
        assert_eq!(
            end.timestamp().duration_since(start.timestamp()),
            SignedDuration::from_hours(25)
        );
    }

    #[test]
    fn window_previous_day_starts_after_a_gap_at_midnight() {
        // Havana springs forward at midnight: 2026-03-08 00:00 does not exist (-05:00 -> -04:00).
        let (start, end) = window(
            Window::PreviousDay,
            &zoned("2026-03-09T06:00:00-04:00[America/Havana]"),
            None,
        )
        .unwrap();
        assert_eq!(
            start.to_string(),
            "2026-03-08T01:00:00-04:00[America/Havana]"
        );
        assert_eq!(end.to_string(), "2026-03-09T00:00:00-04:00[America/Havana]");
    }

    #[test]
    fn window_previous_week_is_monday_to_sunday_before_the_slots_week() {
        // 2026-07-29 is a Wednesday; its week starts on Monday 27 July.
        let expected = pair(
            "2026-07-20T00:00:00+09:00[Asia/Tokyo]",
            "2026-07-27T00:00:00+09:00[Asia/Tokyo]",
        );
        assert_eq!(
            window_of(
                Window::PreviousWeek,
                "2026-07-29T08:00:00+09:00[Asia/Tokyo]",
                None
            ),
            expected
        );
        // A slot on the Monday itself, or on the Sunday, belongs to the same week.
        assert_eq!(
            window_of(
                Window::PreviousWeek,
                "2026-07-27T00:00:00+09:00[Asia/Tokyo]",
                None
            ),
            expected
        );
        assert_eq!(
            window_of(
                Window::PreviousWeek,
                "2026-08-02T23:59:00+09:00[Asia/Tokyo]",
                None
            ),
            expected
        );
    }

    #[test]
    fn window_previous_month_is_the_calendar_month_before() {
        assert_eq!(
            window_of(
                Window::PreviousMonth,
                "2026-03-01T06:00:00+01:00[Europe/Paris]",
                None
            ),
            pair(
                "2026-02-01T00:00:00+01:00[Europe/Paris]",
                "2026-03-01T00:00:00+01:00[Europe/Paris]"
            )
        );
        assert_eq!(
            window_of(
                Window::PreviousMonth,
                "2027-01-31T06:00:00+01:00[Europe/Paris]",
                None
            ),
            pair(
                "2026-12-01T00:00:00+01:00[Europe/Paris]",
                "2027-01-01T00:00:00+01:00[Europe/Paris]"
            )
        );
        // April's window (March) contains the spring-forward day and ends in summer time.
        assert_eq!(
            window_of(
                Window::PreviousMonth,
                "2026-04-01T06:00:00+02:00[Europe/Paris]",
                None
            ),
            pair(
                "2026-03-01T00:00:00+01:00[Europe/Paris]",
                "2026-04-01T00:00:00+02:00[Europe/Paris]"
            )
        );
    }

    #[test]
    fn window_since_last_success_starts_at_the_last_success_or_the_epoch() {
        let slot = "2026-07-31T00:30:00+09:00[Asia/Tokyo]";
        assert_eq!(
            window_of(
                Window::SinceLastSuccess,
                slot,
                Some("2026-07-29T00:30:00+09:00[Asia/Tokyo]")
            ),
            pair("2026-07-29T00:30:00+09:00[Asia/Tokyo]", slot)
        );
        // A last success recorded in another zone is presented in the slot's zone.
        assert_eq!(
            window_of(
                Window::SinceLastSuccess,
                slot,
                Some("2026-07-28T15:30:00+00:00[UTC]")
            ),
            pair("2026-07-29T00:30:00+09:00[Asia/Tokyo]", slot)
        );
        assert_eq!(
            window_of(Window::SinceLastSuccess, slot, None),
            pair("1970-01-01T09:00:00+09:00[Asia/Tokyo]", slot)
        );
        // A success after the slot (a re-run of an older slot) gives an empty window.
        assert_eq!(
            window_of(
                Window::SinceLastSuccess,
                slot,
                Some("2026-08-01T00:30:00+09:00[Asia/Tokyo]")
            ),
            pair(slot, slot)
        );
    }

    // ---- parsing and validation --------------------------------------------------------------

    #[test]
    fn durations_parse_single_and_combined_units() {
        let secs = |s: &str| parse_duration(s).unwrap().as_secs();
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs("6h"), 21_600);
        assert_eq!(secs("7d"), 604_800);
        assert_eq!(secs("1h30m"), 5_400);
        assert_eq!(secs("1d2h3m4s"), 93_784);
        assert_eq!(secs("0s"), 0);
    }

    #[test]
    fn bad_durations_are_rejected_with_a_hint() {
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "invalid duration `5x`: expected a number followed by s, m, h or d \
             (e.g. 30s, 15m, 6h, 7d)"
        );
        for bad in [
            "", "h", "10", "1.5h", "-5m", "+5m", " 5m", "5m ", "5 m", "15ms", "1w", "m5",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("expected a number followed by s, m, h or d"),
                "{bad:?}: {err}"
            );
        }
        assert!(
            parse_duration("30m1h")
                .unwrap_err()
                .contains("largest to smallest")
        );
        assert!(parse_duration("1h1h").unwrap_err().contains("at most once"));
        assert!(
            parse_duration("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_duration("999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn times_of_day_are_two_digit_hours_and_minutes() {
        assert_eq!(parse_time_of_day("00:00"), Ok((0, 0)));
        assert_eq!(parse_time_of_day("00:30"), Ok((0, 30)));
        assert_eq!(parse_time_of_day("23:59"), Ok((23, 59)));
        for bad in [
            "24:00", "23:60", "7:30", "07:5", "0730", "07:30:00", " 07:30", "aa:bb", "",
        ] {
            let err = parse_time_of_day(bad).unwrap_err();
            assert!(
                err.contains(&format!("invalid time `{bad}`")),
                "{bad:?}: {err}"
            );
            assert!(err.contains("HH:MM"), "{err}");
        }
    }

    #[test]
    fn time_zones_must_be_iana_names() {
        assert!(parse_time_zone("Asia/Tokyo").is_ok());
        assert!(parse_time_zone("UTC").is_ok());
        assert!(parse_time_zone("Australia/Lord_Howe").is_ok());
        assert_eq!(
            parse_time_zone("Mars/Olympus_Mons").unwrap_err(),
            "unknown time zone `Mars/Olympus_Mons` (expected an IANA name such as Asia/Tokyo or UTC)"
        );
        for bad in [
            "",
            "+09:00",
            "JST-9",
            "localtime",
            "LocalTime",
            "posixrules",
            "Etc/Unknown",
            " Asia/Tokyo",
        ] {
            assert!(
                parse_time_zone(bad)
                    .unwrap_err()
                    .starts_with("unknown time zone"),
                "{bad:?}"
            );
        }
        assert!(
            parse_time_zone("asia/tokyo")
                .unwrap_err()
                .contains("did you mean `Asia/Tokyo`")
        );
    }

    #[test]
    fn cron_expressions_have_exactly_five_fields() {
        for ok in [
            "30 0 * * *",
            "*/15 * * * *",
            "0 9 * * MON-FRI",
            "0 0 L * *",
            "@daily",
        ] {
            assert_eq!(validate_cron(ok), Ok(()), "{ok}");
        }
        let six = validate_cron("0 30 0 * * *").unwrap_err();
        assert!(
            six.contains("has 6 fields") && six.contains("seconds"),
            "{six}"
        );
        assert!(
            validate_cron("* * *")
                .unwrap_err()
                .contains("has 3 field(s)")
        );
        assert!(
            validate_cron("")
                .unwrap_err()
                .starts_with("empty cron expression")
        );
        assert!(
            validate_cron("@reboot")
                .unwrap_err()
                .contains("unknown cron nickname")
        );
        let range = validate_cron("61 * * * *").unwrap_err();
        assert!(
            range.starts_with("invalid cron expression `61 * * * *`"),
            "{range}"
        );
        assert!(
            validate_cron("0 0 * * x")
                .unwrap_err()
                .starts_with("invalid cron expression")
        );
        assert!(
            validate_cron("0 0 30 2 *")
                .unwrap_err()
                .contains("never fires")
        );
    }

    #[test]
    fn compiling_rejects_each_invalid_part() {
        let err = |schedule: Schedule, tz: &str| CompiledSchedule::new(&schedule, tz).unwrap_err();
        let daily_at = |at: &str| Schedule::Daily(DailySchedule { at: at.into() });
        assert!(err(daily_at("25:00"), "UTC").starts_with("invalid time"));
        assert!(err(daily_at("00:30"), "Nowhere/Special").starts_with("unknown time zone"));
        assert!(
            err(
                Schedule::Weekly(WeeklySchedule {
                    on: vec![],
                    at: "08:00".into()
                }),
                "UTC"
            )
            .contains("at least one weekday")
        );
        for day in [0, 32] {
            assert_eq!(
                err(
                    Schedule::Monthly(MonthlySchedule {
                        day,
                        at: "06:00".into()
                    }),
                    "UTC"
                ),
                format!("day {day} is out of range (1-31)")
            );
        }
        assert!(err(Schedule::Cron("0 0 0 * * *".into()), "UTC").contains("6 fields"));
        assert!(err(Schedule::Every("0s".into()), "UTC").contains("greater than zero"));
        assert!(err(Schedule::Every("soon".into()), "UTC").starts_with("invalid duration"));
    }
}
