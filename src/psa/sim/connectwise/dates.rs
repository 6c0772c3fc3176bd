//! Dates as ConnectWise takes and gives them: any of the accepted spellings in, `YYYY-MM-DD`
//! stored, `YYYY-MM-DDT00:00:00Z` out.

use serde_json::Value;

/// `2026-01-01`, `2026-01-01T10:00:00Z` or `2026-01-01T10:00:00` as an instant (UTC).
pub(super) fn parse_instant(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let utc = jiff::tz::TimeZone::UTC;
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(utc).ok().map(|z| z.timestamp());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d.to_zoned(utc).ok().map(|z| z.timestamp());
    }
    None
}

/// A date as stored (`YYYY-MM-DD`), from any of the shapes [`parse_instant`] reads.
pub(super) fn normalize_date(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Some(d.to_string());
    }
    parse_instant(s).map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
}

/// A stored date in the API's shape (`2026-01-01T00:00:00Z`).
pub(super) fn api_date(d: &Option<String>) -> Value {
    match d {
        Some(d) => Value::String(format!("{d}T00:00:00Z")),
        None => Value::Null,
    }
}
