//! The current instant. One place, so that `FERRY_NOW` fixes time for plans, previews, runs
//! and tests alike.

use jiff::Timestamp;

use crate::{Error, Result};

/// The current instant to the second, or `FERRY_NOW` (RFC 3339) for reproducible plans,
/// previews and tests.
pub fn now() -> Result<Timestamp> {
    match std::env::var("FERRY_NOW") {
        Ok(s) if !s.is_empty() => s
            .parse::<Timestamp>()
            .map_err(|e| Error::Usage(format!("FERRY_NOW `{s}` is not an RFC 3339 instant: {e}"))),
        _ => Ok(Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| Timestamp::now())),
    }
}
