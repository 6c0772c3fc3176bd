//! The MySQL / MariaDB source (`mysql://user@host:3306/db` or `mariadb://...`, the same
//! protocol).
//!
//! One connection per run, set up for reports:
//!
//! - **Read-only**: the session's transactions are `READ ONLY` and the query runs inside
//!   `START TRANSACTION READ ONLY`, so a statement that writes fails on the server (`ferry
//!   validate` refuses it earlier, with MySQL's dialect of `sqlparser`).
//! - **The server's own SQL mode**: sqlx's additions (`PIPES_AS_CONCAT`, which turns `||` from
//!   OR into concatenation, and `NO_ENGINE_SUBSTITUTION`) are switched off, so a query means
//!   what it means in the customer's own client.
//! - **utf8mb4** on the connection: emoji and every script arrive intact, whatever the
//!   server's default character set.
//! - **Time zone**: the session's `time_zone` is the schedule zone's UTC offset at the slot,
//!   e.g. `'+09:00'` for a slot in Asia/Tokyo. A fixed offset, not the zone's name, because a
//!   named zone needs the server's time zone tables, which many customer servers do not have
//!   loaded (MariaDB's Debian package ships without them); and because a fixed offset converts
//!   both ways without the ambiguity of the hour repeated when summer time ends. `NOW()`,
//!   `CURDATE()` and `DATE(ts_column)` therefore follow the schedule's clock at the slot.
//!
//! Values ([`Value`]), as every format (CSV, XLSX, PDF) already renders them:
//!
//! | MySQL / MariaDB type                          | Value                                       |
//! |-----------------------------------------------|---------------------------------------------|
//! | BOOLEAN (= TINYINT(1))                        | Bool for 0 and 1, Int otherwise             |
//! | TINYINT .. BIGINT, signed or UNSIGNED, YEAR   | Int; a BIGINT UNSIGNED above 2^63-1 is an   |
//! |                                               | exact Decimal                               |
//! | BIT(M)                                        | Int (its unsigned value), Decimal above     |
//! |                                               | 2^63-1                                      |
//! | DECIMAL / NUMERIC                             | Decimal, the server's exact digits (never   |
//! |                                               | a float)                                    |
//! | FLOAT                                         | Float, by its shortest text (0.1 is 0.1)    |
//! | DOUBLE                                        | Float                                       |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON          | Text (utf8mb4)                              |
//! | BINARY, VARBINARY, BLOB                       | Bytes (hex in CSV, as other sources)        |
//! | DATE                                          | Date                                        |
//! | DATETIME                                      | DateTime: a civil value, written as stored  |
//! |                                               | (like PostgreSQL's timestamp)               |
//! | TIMESTAMP                                     | Timestamp: an instant (MySQL stores UTC),   |
//! |                                               | written in the schedule's zone with its     |
//! |                                               | offset (like PostgreSQL's timestamptz)      |
//! | TIME                                          | Time within 00:00..24:00; a duration beyond |
//! |                                               | (MySQL's range is ±838:59:59) as Text,      |
//! |                                               | `-01:30:00`, `100:00:00`                    |
//! | GEOMETRY                                      | an error naming the column, suggesting      |
//! |                                               | `ST_AsText(col)`                            |
//!
//! Zero dates (`0000-00-00`, `2026-00-15`, which MySQL stores when its SQL mode allows them)
//! are an error naming the row and the column: they are no date, and neither an empty cell
//! nor a made-up date would be honest in a report.
//!
//! Parameters (`:window_start`, `:window_end`, `:slot`) are bound as `DATETIME(6)` values on
//! the session's clock (the slot's offset): `CAST(? AS DATETIME(6))`. A TIMESTAMP column
//! compared with them is compared instant to instant, exactly. A DATETIME column is compared
//! as the civil time it holds, read on the same clock: right for a DATETIME that records
//! local time in the schedule's zone, except at a window bound whose UTC offset differs from
//! the slot's (a window spanning a summer-time change), which is then one hour off. A
//! DATETIME column that records UTC is compared with arithmetic that needs no time zone
//! tables, e.g. `created_at >= :window_start - INTERVAL 9 HOUR` for Asia/Tokyo (or, better,
//! declared TIMESTAMP).
//!
//! Rows are fetched one message each through a prepared statement (the binary protocol),
//! decoded into reused batches of [`BATCH_ROWS`](super::rows::BATCH_ROWS): memory stays flat
//! however many rows. The connection URL's password never appears in errors or logs:
//! messages name the host, port, database and user only.

use std::str::FromStr;

use futures_util::TryStreamExt;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;
use jiff::{Timestamp, Zoned};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlTypeInfo, MySqlValueRef};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Decode, Executor, Row, SqlSafeStr,
    Statement, Type, TypeInfo, ValueRef,
};
use tokio::sync::mpsc;

use super::params::{Dialect, Params, rewrite_named};
use super::rows::{BatchFiller, BatchPool, SourceEvent};
use crate::export::Value;
use crate::redact::UrlScrubber as Scrubber;
use crate::{Error, Result};

/// Streams the rows of `query` from the MySQL or MariaDB database of `url`, its named
/// parameters bound, to `tx`. Returns the number of rows.
pub async fn stream(
    url: &str,
    query: &str,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    let prepared = Prepared::new(query, params)?;
    let scrub = Scrubber::new(url);
    let server = Server::new(url, params, &scrub)?;
    let mut conn = server.connect(&scrub).await?;
    let result = tokio::select! {
        biased;
        result = prepared.pump(&mut conn, &scrub, &tx) => result,
        _ = tx.closed() => Err(Error::SourceCancelled),
    };
    if result.is_ok() {
        // A polite goodbye; the rows are all in already. On an error the connection is
        // dropped, which closes the socket and stops the server's work.
        let _ = conn.close().await;
    }
    result
}

/// The result columns of `query`, prepared (never run) in a read-only session on the slot's
/// clock: what `ferry check` compares with a schedule's declared columns. A column of a type
/// Ferry cannot export is an error naming it.
pub async fn columns(url: &str, query: &str, params: &Params) -> Result<Vec<String>> {
    let prepared = Prepared::new(query, params)?;
    let scrub = Scrubber::new(url);
    let server = Server::new(url, params, &scrub)?;
    let mut conn = server.connect(&scrub).await?;
    read_only(&mut conn, &scrub).await?;
    let (_, names) = prepared.prepare(&mut conn, &scrub).await?;
    let _ = conn.close().await;
    Ok(names)
}

/// The session's time zone: the UTC offset of `slot`, as MySQL writes one (`+09:00`).
fn session_offset(slot: &Zoned) -> Offset {
    // MySQL accepts whole minutes only; historic offsets with seconds do not occur in slots.
    let seconds = slot.offset().seconds();
    Offset::from_seconds(seconds - seconds % 60).unwrap_or(Offset::UTC)
}

fn offset_text(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// An instant as the civil `DATETIME(6)` text it reads on the `offset` clock.
fn datetime_text(ts: Timestamp, offset: Offset) -> String {
    let dt = offset.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

/// The query with its parameters as `CAST(? AS DATETIME(6))` placeholders, and the values to
/// bind to them in order (one per occurrence).
struct Prepared {
    sql: String,
    values: Vec<Option<String>>,
    /// The session's clock: the slot's UTC offset.
    clock: Offset,
}

impl Prepared {
    fn new(query: &str, params: &Params) -> Result<Prepared> {
        let offset = session_offset(&params.slot);
        let mut values = Vec::new();
        let rewritten = rewrite_named(query, Dialect::MySql, |_, name| {
            values.push(
                params
                    .get(name)
                    .flatten()
                    .map(|z| datetime_text(z.timestamp(), offset)),
            );
            "CAST(? AS DATETIME(6))".to_string()
        })
        .map_err(Error::Source)?;
        Ok(Prepared {
            // Without the trailing `;` and comments: a prepared statement is one statement.
            sql: rewritten.sql[..rewritten.body_len].to_string(),
            values,
            clock: offset,
        })
    }

    /// Prepares the statement: its columns' names, every type checked before any row.
    async fn prepare(
        &self,
        conn: &mut MySqlConnection,
        scrub: &Scrubber,
    ) -> Result<(sqlx::mysql::MySqlStatement, Vec<String>)> {
        let statement = (&mut *conn)
            .prepare(AssertSqlSafe(self.sql.as_str()).into_sql_str())
            .await
            .map_err(|e| query_error(&e, scrub))?;
        if statement.columns().is_empty() {
            return Err(Error::Source(
                "the query returns no columns; a report runs a SELECT (or WITH ... SELECT, \
                 VALUES, TABLE)"
                    .into(),
            ));
        }
        let mut names = Vec::with_capacity(statement.columns().len());
        for column in statement.columns() {
            Kind::of(column.type_info(), column.name())?;
            names.push(column.name().to_string());
        }
        Ok((statement, names))
    }

    async fn pump(
        &self,
        conn: &mut MySqlConnection,
        scrub: &Scrubber,
        tx: &mpsc::Sender<SourceEvent>,
    ) -> Result<u64> {
        read_only(conn, scrub).await?;
        let (statement, names) = self.prepare(conn, scrub).await?;
        tx.send(SourceEvent::Columns(names.clone()))
            .await
            .map_err(|_| Error::SourceCancelled)?;
        let mut query = statement.query();
        for value in &self.values {
            query = query.bind(value.as_deref());
        }
        let mut rows = query.fetch(&mut *conn);
        let mut filler = BatchFiller::new(BatchPool::default());
        // The kinds of the executed statement's columns (the server describes them again
        // with the rows), known at the first row.
        let mut kinds: Vec<Kind> = Vec::new();
        let mut count: u64 = 0;
        while let Some(row) = rows.try_next().await.map_err(|e| query_error(&e, scrub))? {
            if kinds.is_empty() {
                kinds = row
                    .columns()
                    .iter()
                    .map(|c| Kind::of(c.type_info(), c.name()))
                    .collect::<Result<_>>()?;
            }
            count += 1;
            let mut values = filler.row(kinds.len());
            for (i, (kind, slot)) in kinds.iter().zip(values.iter_mut()).enumerate() {
                let raw = row.try_get_raw(i).map_err(|e| query_error(&e, scrub))?;
                decode(*kind, raw, self.clock, slot).map_err(|why| {
                    Error::Source(format!("row {count}, column `{}`: {why}", names[i]))
                })?;
            }
            if let Some(full) = filler.push(values) {
                tx.send(SourceEvent::Rows(full))
                    .await
                    .map_err(|_| Error::SourceCancelled)?;
            }
        }
        drop(rows);
        if let Some(rest) = filler.rest() {
            tx.send(SourceEvent::Rows(rest))
                .await
                .map_err(|_| Error::SourceCancelled)?;
        }
        sqlx::raw_sql(AssertSqlSafe("COMMIT"))
            .execute(&mut *conn)
            .await
            .map_err(|e| query_error(&e, scrub))?;
        Ok(count)
    }
}

/// Read-only for the session and for the transaction the query runs in.
async fn read_only(conn: &mut MySqlConnection, scrub: &Scrubber) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(
        "SET SESSION TRANSACTION READ ONLY; START TRANSACTION READ ONLY",
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| query_error(&e, scrub))?;
    Ok(())
}

/// A MySQL server as a URL names it: how to connect, and how messages name it (host, port,
/// database and user; never the password).
struct Server {
    options: MySqlConnectOptions,
    label: String,
}

impl Server {
    fn new(url: &str, params: &Params, scrub: &Scrubber) -> Result<Server> {
        // `mariadb://` is the same protocol; sqlx knows it as `mysql://`.
        let normalized = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_string(),
        };
        let options = MySqlConnectOptions::from_str(&normalized)
            .map_err(|e| {
                Error::Source(format!(
                    "invalid MySQL URL `{}`: {}",
                    crate::redact::redact_url(url),
                    scrub.clean(&e.to_string())
                ))
            })?
            .charset("utf8mb4")
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            .timezone(Some(offset_text(session_offset(&params.slot))))
            // An export runs for seconds by design: no "slow statement" warnings with its SQL.
            .disable_statement_logging();
        let label = format!(
            "{}:{} (database {}, user {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(none)"),
            options.get_username()
        );
        Ok(Server { options, label })
    }

    async fn connect(&self, scrub: &Scrubber) -> Result<MySqlConnection> {
        MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| {
                Error::Source(format!(
                    "cannot connect to MySQL at {}: {}",
                    self.label,
                    describe(&e, scrub)
                ))
            })
    }
}

fn query_error(e: &sqlx::Error, scrub: &Scrubber) -> Error {
    Error::Source(format!("MySQL query failed: {}", describe(e, scrub)))
}

/// A readable message for a sqlx error, without credentials: the server's own words (MySQL
/// names the line of a syntax error itself) and its error code.
fn describe(e: &sqlx::Error, scrub: &Scrubber) -> String {
    let message = match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => format!("network error: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS error: {tls}"),
        other => other.to_string(),
    };
    scrub.clean(&message)
}

/// How a column's values are decoded (from MySQL's binary protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `SELECT NULL`: every value is NULL.
    Null,
    /// TINYINT(1), MySQL's BOOLEAN; `true` when UNSIGNED (its other values read 128..255).
    Bool(bool),
    /// A signed integer of this many bytes.
    Int(usize),
    /// An unsigned integer of this many bytes (YEAR is a 2-byte one).
    UInt(usize),
    Bit,
    Float,
    Double,
    Decimal,
    Text,
    Bytes,
    Date,
    DateTime,
    Timestamp,
    Time,
}

impl Kind {
    fn of(ty: &MySqlTypeInfo, column: &str) -> Result<Kind> {
        let name = ty.name();
        Ok(match name {
            "NULL" => Kind::Null,
            "BOOLEAN" => Kind::Bool(<u8 as Type<MySql>>::compatible(ty)),
            "TINYINT" => Kind::Int(1),
            "SMALLINT" => Kind::Int(2),
            "MEDIUMINT" | "INT" => Kind::Int(4),
            "BIGINT" => Kind::Int(8),
            "TINYINT UNSIGNED" => Kind::UInt(1),
            "SMALLINT UNSIGNED" | "YEAR" => Kind::UInt(2),
            "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Kind::UInt(4),
            "BIGINT UNSIGNED" => Kind::UInt(8),
            "BIT" => Kind::Bit,
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" => Kind::Decimal,
            "DATE" => Kind::Date,
            "DATETIME" => Kind::DateTime,
            "TIMESTAMP" => Kind::Timestamp,
            "TIME" => Kind::Time,
            // MySQL's JSON type is sent with the binary collation, yet it is utf8mb4 text.
            "JSON" => Kind::Text,
            // A non-binary collation is text (transcoded to utf8mb4 by the server); the
            // binary one is bytes.
            _ if <str as Type<MySql>>::compatible(ty) => Kind::Text,
            _ if <[u8] as Type<MySql>>::compatible(ty) => Kind::Bytes,
            other => {
                let hint = if other == "GEOMETRY" {
                    format!("ST_AsText({column})")
                } else {
                    format!("CAST({column} AS CHAR)")
                };
                return Err(Error::Source(format!(
                    "column `{column}` has type {other}, which Ferry cannot export; convert it \
                     in the query, e.g. {hint}"
                )));
            }
        })
    }
}

/// Stores one value in `slot` (a text column reuses the slot's buffer); `clock` is the
/// session's offset, which TIMESTAMP values are read on. The error says why the value cannot
/// be exported; the caller adds the row and column.
fn decode(
    kind: Kind,
    raw: MySqlValueRef<'_>,
    clock: Offset,
    slot: &mut Value,
) -> std::result::Result<(), String> {
    let temporal = matches!(kind, Kind::Date | Kind::DateTime | Kind::Timestamp);
    // sqlx reports zero dates as NULL: only the absence of bytes is a real NULL.
    if kind == Kind::Null || (raw.is_null() && !temporal) {
        *slot = Value::Null;
        return Ok(());
    }
    let Ok(b) = <&[u8] as Decode<MySql>>::decode(raw) else {
        *slot = Value::Null;
        return Ok(());
    };
    let short = || format!("the server sent {} bytes for a {kind:?} value", b.len());
    *slot = match kind {
        Kind::Null => Value::Null,
        Kind::Bool(unsigned) => {
            let n = if unsigned {
                b.first().map(|&byte| i64::from(byte))
            } else {
                signed(b)
            };
            match n.ok_or_else(short)? {
                n @ (0 | 1) => Value::Bool(n == 1),
                n => Value::Int(n),
            }
        }
        Kind::Int(_) => Value::Int(signed(b).ok_or_else(short)?),
        Kind::UInt(_) => unsigned_value(unsigned_le(b).ok_or_else(short)?),
        Kind::Bit => {
            if b.len() > 8 {
                return Err(short());
            }
            unsigned_value(b.iter().fold(0u64, |n, &byte| n << 8 | u64::from(byte)))
        }
        Kind::Float => {
            let f = f32::from_le_bytes(b.try_into().map_err(|_| short())?);
            // Through its shortest text, so 0.1 stored as FLOAT is 0.1.
            Value::Float(f.to_string().parse().unwrap_or(f64::from(f)))
        }
        Kind::Double => Value::Float(f64::from_le_bytes(b.try_into().map_err(|_| short())?)),
        Kind::Decimal => {
            let text = std::str::from_utf8(b).map_err(|_| short())?;
            Value::Decimal(text.to_string())
        }
        Kind::Text => {
            let text = std::str::from_utf8(b)
                .map_err(|_| "the text is not valid UTF-8 (select HEX(col) to export its bytes)")?;
            slot.set_text(text);
            return Ok(());
        }
        Kind::Bytes => match slot {
            Value::Bytes(buffer) => {
                buffer.clear();
                buffer.extend_from_slice(b);
                return Ok(());
            }
            _ => Value::Bytes(b.to_vec()),
        },
        Kind::Date | Kind::DateTime | Kind::Timestamp => {
            let dt = date_time(b)?;
            match kind {
                Kind::Date => Value::Date(dt.date()),
                Kind::DateTime => Value::DateTime(dt),
                // The session's clock is a fixed offset: the conversion is exact.
                _ => Value::Timestamp(
                    clock
                        .to_timestamp(dt)
                        .map_err(|e| format!("not an instant ({dt}): {e}"))?,
                ),
            }
        }
        Kind::Time => time(b)?,
    };
    Ok(())
}

/// A little-endian two's complement integer of 1, 2, 4 or 8 bytes.
fn signed(b: &[u8]) -> Option<i64> {
    Some(match b.len() {
        1 => i64::from(b[0] as i8),
        2 => i64::from(i16::from_le_bytes(b.try_into().ok()?)),
        4 => i64::from(i32::from_le_bytes(b.try_into().ok()?)),
        8 => i64::from_le_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

/// A little-endian unsigned integer of 1, 2, 4 or 8 bytes.
fn unsigned_le(b: &[u8]) -> Option<u64> {
    if !matches!(b.len(), 1 | 2 | 4 | 8) {
        return None;
    }
    Some(
        b.iter()
            .rev()
            .fold(0u64, |n, &byte| n << 8 | u64::from(byte)),
    )
}

/// An unsigned integer: Int while it fits, an exact Decimal beyond.
fn unsigned_value(n: u64) -> Value {
    match i64::try_from(n) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::Decimal(n.to_string()),
    }
}

/// A binary DATE, DATETIME or TIMESTAMP (length byte first): a zero date is an error.
fn date_time(b: &[u8]) -> std::result::Result<DateTime, String> {
    let zero = || {
        "MySQL zero date (0000-00-00): it is no date, so Ferry cannot write it; select \
         NULLIF(col, '0000-00-00') to export it as an empty cell, or correct the data"
            .to_string()
    };
    let len = usize::from(*b.first().ok_or_else(zero)?);
    let v = b
        .get(1..1 + len)
        .ok_or_else(|| "a truncated date value".to_string())?;
    if len == 0 {
        return Err(zero());
    }
    if len < 4 {
        return Err(format!("a date value of {len} bytes"));
    }
    let year = u16::from_le_bytes([v[0], v[1]]);
    let (month, day) = (v[2], v[3]);
    if month == 0 || day == 0 {
        return Err(if year == 0 {
            zero()
        } else {
            format!(
                "MySQL date with a zero part ({year:04}-{month:02}-{day:02}): it is no date, \
                 so Ferry cannot write it; correct the data or select NULLIF(col, ...)"
            )
        });
    }
    let date = Date::new(year as i16, month as i8, day as i8)
        .map_err(|e| format!("not a date ({year:04}-{month:02}-{day:02}): {e}"))?;
    let (mut h, mut m, mut s, mut micros) = (0, 0, 0, 0u32);
    if len >= 7 {
        (h, m, s) = (v[4], v[5], v[6]);
    }
    if len >= 11 {
        micros = u32::from_le_bytes([v[7], v[8], v[9], v[10]]);
    }
    let time = Time::new(h as i8, m as i8, s as i8, (micros * 1000) as i32)
        .map_err(|e| format!("not a time of day ({h:02}:{m:02}:{s:02}): {e}"))?;
    Ok(date.to_datetime(time))
}

/// A binary TIME: Time within a day, Text (as MySQL writes it) for a duration beyond.
fn time(b: &[u8]) -> std::result::Result<Value, String> {
    let len = usize::from(*b.first().ok_or("an empty TIME value")?);
    let v = b.get(1..1 + len).ok_or("a truncated TIME value")?;
    if len == 0 {
        return Ok(Value::Time(Time::midnight()));
    }
    if len < 8 {
        return Err(format!("a TIME value of {len} bytes"));
    }
    let negative = v[0] == 1;
    let days = u32::from_le_bytes([v[1], v[2], v[3], v[4]]);
    let (h, m, s) = (v[5], v[6], v[7]);
    let micros = if len >= 12 {
        u32::from_le_bytes([v[8], v[9], v[10], v[11]])
    } else {
        0
    };
    if !negative && days == 0 {
        let time = Time::new(h as i8, m as i8, s as i8, (micros * 1000) as i32)
            .map_err(|e| format!("not a time ({h:02}:{m:02}:{s:02}): {e}"))?;
        return Ok(Value::Time(time));
    }
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut text = format!(
        "{}{hours:02}:{m:02}:{s:02}",
        if negative { "-" } else { "" }
    );
    if micros > 0 {
        let frac = format!("{micros:06}");
        text.push('.');
        text.push_str(frac.trim_end_matches('0'));
    }
    Ok(Value::Text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_clock_is_the_slots_offset() {
        let tokyo: Zoned = "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap();
        assert_eq!(offset_text(session_offset(&tokyo)), "+09:00");
        let ny: Zoned = "2026-01-31T00:30:00-05:00[America/New_York]"
            .parse()
            .unwrap();
        assert_eq!(offset_text(session_offset(&ny)), "-05:00");
        let kolkata: Zoned = "2026-01-31T00:30:00+05:30[Asia/Kolkata]".parse().unwrap();
        assert_eq!(offset_text(session_offset(&kolkata)), "+05:30");
        let ts: Timestamp = "2026-07-29T15:00:00.25Z".parse().unwrap();
        assert_eq!(
            datetime_text(ts, session_offset(&tokyo)),
            "2026-07-30 00:00:00.250000"
        );
    }

    #[test]
    fn parameters_become_datetime_placeholders_bound_per_occurrence() {
        let slot: Zoned = "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap();
        let params = Params {
            window_start: Some("2026-07-30T00:00:00+09:00[Asia/Tokyo]".parse().unwrap()),
            window_end: None,
            slot,
        };
        let p = Prepared::new(
            "SELECT :slot AS s FROM t WHERE d >= :window_start AND d < :window_end OR :slot;\n",
            &params,
        )
        .unwrap();
        assert_eq!(
            p.sql,
            "SELECT CAST(? AS DATETIME(6)) AS s FROM t WHERE d >= CAST(? AS DATETIME(6)) AND \
             d < CAST(? AS DATETIME(6)) OR CAST(? AS DATETIME(6))"
        );
        assert_eq!(
            p.values,
            vec![
                Some("2026-07-31 00:30:00.000000".to_string()),
                Some("2026-07-30 00:00:00.000000".to_string()),
                None,
                Some("2026-07-31 00:30:00.000000".to_string()),
            ]
        );
    }

    #[test]
    fn binary_dates_decode_and_zero_dates_are_refused() {
        assert_eq!(
            date_time(&[4, 0xea, 0x07, 7, 30]).unwrap(),
            jiff::civil::date(2026, 7, 30).at(0, 0, 0, 0)
        );
        assert_eq!(
            date_time(&[11, 0xea, 0x07, 7, 30, 23, 59, 58, 0x40, 0xe2, 0x01, 0x00]).unwrap(),
            jiff::civil::date(2026, 7, 30).at(23, 59, 58, 123_456_000)
        );
        assert!(date_time(&[0]).unwrap_err().contains("zero date"));
        assert!(
            date_time(&[4, 0, 0, 0, 0])
                .unwrap_err()
                .contains("zero date")
        );
        assert!(
            date_time(&[4, 0xea, 0x07, 0, 15])
                .unwrap_err()
                .contains("2026-00-15")
        );
    }

    #[test]
    fn times_beyond_a_day_or_negative_are_text() {
        assert_eq!(time(&[0]).unwrap(), Value::Time(Time::midnight()));
        assert_eq!(
            time(&[8, 0, 0, 0, 0, 0, 13, 5, 9]).unwrap(),
            Value::Time(jiff::civil::time(13, 5, 9, 0))
        );
        assert_eq!(
            time(&[8, 1, 0, 0, 0, 0, 1, 30, 0]).unwrap(),
            Value::Text("-01:30:00".into())
        );
        assert_eq!(
            time(&[12, 0, 4, 0, 0, 0, 4, 0, 0, 0x20, 0xa1, 0x07, 0]).unwrap(),
            Value::Text("100:00:00.5".into())
        );
    }

    #[test]
    fn integers_decode_by_width_and_sign() {
        assert_eq!(signed(&[0xff]), Some(-1));
        assert_eq!(signed(&[0xfe, 0xff]), Some(-2));
        assert_eq!(unsigned_le(&[0xff, 0xff]), Some(65535));
        assert_eq!(
            unsigned_value(u64::MAX),
            Value::Decimal("18446744073709551615".into())
        );
        assert_eq!(unsigned_value(7), Value::Int(7));
        assert_eq!(signed(&[1, 2, 3]), None);
    }

    #[test]
    fn passwords_and_the_url_are_scrubbed_from_messages() {
        let s = Scrubber::new("mysql://u:s3cret-pass@db:3306/x");
        assert_eq!(
            s.clean("bad mysql://u:s3cret-pass@db:3306/x and s3cret-pass"),
            "bad (connection URL) and ***"
        );
    }
}
