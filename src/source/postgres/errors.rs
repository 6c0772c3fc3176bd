//! Error messages without credentials: [`describe`], a readable message for a sqlx error (with the line of the
//! query it points at). Kept apart so every message goes through the same scrubbing.

use std::fmt::Write as _;

use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

/// The sources' scrubber of connection URLs ([`crate::redact::UrlScrubber`]).
pub(super) use crate::redact::UrlScrubber as Scrubber;

/// A readable message for a sqlx error, without credentials. `sql` (the text the server saw
/// and how many lines precede the user's query in it) locates query errors.
pub(super) fn describe(e: &sqlx::Error, scrub: &Scrubber, sql: Option<(&str, usize)>) -> String {
    let message = match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) => {
                let mut m = pg.message().to_string();
                if let (Some((sql, skip)), Some(PgErrorPosition::Original(pos))) =
                    (sql, pg.position())
                {
                    let before: String = sql.chars().take(pos.saturating_sub(1)).collect();
                    let line = (before.matches('\n').count() + 1)
                        .saturating_sub(skip)
                        .max(1);
                    let _ = write!(m, " (line {line} of the query)");
                }
                if let Some(detail) = pg.detail() {
                    let _ = write!(m, "; {detail}");
                }
                if let Some(hint) = pg.hint() {
                    let _ = write!(m, "; hint: {hint}");
                }
                m
            }
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => format!("network error: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS error: {tls}"),
        other => other.to_string(),
    };
    scrub.clean(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_passwords_and_the_url_are_scrubbed_from_messages() {
        let s = Scrubber::new("postgres://u:s3cret-pass@db:5432/x");
        assert_eq!(
            s.clean("bad postgres://u:s3cret-pass@db:5432/x and s3cret-pass"),
            "bad (connection URL) and ***"
        );
    }
}
