//! The PostgreSQL source.
//!
//! One connection per run. The session is set up for reports: read-only transactions,
//! `TimeZone` set to the schedule's zone (so `current_date`, `::date` and `date_trunc` follow
//! it, as `:window_start` does) and `IntervalStyle` ISO 8601. The query is prepared first (its
//! window parameters typed `timestamptz`), so the columns are known (and sent) even when no
//! row comes back, and unsupported column types are refused before any row is read.
//!
//! Rows then travel one of two ways ([`Transfer`]), both in PostgreSQL's binary format and
//! decoded by the same code, in batches of [`BATCH_ROWS`]:
//!
//! - `COPY (query) TO STDOUT (FORMAT binary)`, the parameters inlined as `timestamptz`
//!   literals (`'2026-07-30T00:00:00+09:00'::timestamptz`, `NULL::timestamptz`): the default,
//!   as it costs about a quarter less CPU per row than a fetch;
//! - the prepared statement executed with the parameters bound as `timestamptz` values
//!   ([`PgInstant`]), rows fetched one message each: used when the server refuses to COPY the
//!   statement (`SHOW`, `EXPLAIN`, PostgreSQL-compatible servers without binary COPY).
//!
//! | PostgreSQL type                                 | Value                                  |
//! |-------------------------------------------------|----------------------------------------|
//! | bool                                            | Bool                                   |
//! | int2, int4, int8                                | Int                                    |
//! | float4, float8                                  | Float (float4 by its shortest text)    |
//! | numeric                                         | Decimal, exact digits and scale;       |
//! |                                                 | `NaN`, `Infinity`, `-Infinity` as Text |
//! | text, varchar, bpchar, name, "char", citext,    | Text                                   |
//! | unknown, enums                                  |                                        |
//! | date                                            | Date (`infinity` as Text)              |
//! | time                                            | Time (`24:00:00` as Text)              |
//! | timestamp                                       | DateTime (`infinity` as Text)          |
//! | timestamptz                                     | Timestamp (`infinity` as Text)         |
//! | uuid                                            | Text, lowercase hyphenated             |
//! | json, jsonb                                     | Text (the JSON as PostgreSQL prints it)|
//! | bytea                                           | Bytes                                  |
//! | interval                                        | Text, ISO 8601 as PostgreSQL's         |
//! |                                                 | `IntervalStyle = iso_8601`: `P1DT2H`,  |
//! |                                                 | `P1Y2M`, `PT0.5S`, `PT0S`, `P-1D`      |
//! | anything else (arrays, composites, ranges,      | an error naming the column and type,   |
//! | money, inet, timetz, other custom types)        | suggesting `CAST(col AS text)`         |
//!
//! The connection URL comes from a Secret: it never appears in errors or logs. Messages name
//! the host, port, database and user only.

use std::fmt::Write as _;
use std::str::FromStr;

use futures_util::TryStreamExt;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgDatabaseError, PgErrorPosition, PgTypeInfo,
    PgTypeKind, PgValueFormat, Postgres,
};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, Row, SqlSafeStr, Statement,
    TypeInfo,
};
use sqlx::{Encode, ValueRef};
use tokio::sync::mpsc;

use super::params::{Dialect, bind_named, rewrite_named, rfc3339};
use super::sqlite::{is_decimal, parse_date, parse_date_time, parse_time};
use super::{BATCH_ROWS, Params, SourceEvent};
use crate::export::Value;
use crate::{Error, Result};

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01T00:00:00Z.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// An instant bound as a `timestamptz` parameter. Binary format: microseconds since
/// 2000-01-01T00:00:00Z, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgInstant(pub i64);

impl PgInstant {
    /// The instant of `ts` (sub-microsecond digits are dropped, rounding toward the past).
    pub fn from_timestamp(ts: Timestamp) -> PgInstant {
        let micros = ts.as_microsecond();
        PgInstant(micros.saturating_sub(PG_EPOCH_MICROS))
    }
}

impl sqlx::Type<Postgres> for PgInstant {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(oid::TIMESTAMPTZ))
    }
}

impl Encode<'_, Postgres> for PgInstant {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        8
    }
}

/// Built-in type OIDs (stable across PostgreSQL versions, from `pg_type.dat`).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// How a column is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Char,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    Interval,
}

impl Kind {
    fn of(ty: &PgTypeInfo) -> Option<Kind> {
        if let Some(Oid(oid)) = ty.oid() {
            let kind = match oid {
                oid::BOOL => Kind::Bool,
                oid::INT2 => Kind::Int2,
                oid::INT4 => Kind::Int4,
                oid::INT8 => Kind::Int8,
                oid::FLOAT4 => Kind::Float4,
                oid::FLOAT8 => Kind::Float8,
                oid::NUMERIC => Kind::Numeric,
                oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN => Kind::Text,
                oid::CHAR => Kind::Char,
                oid::DATE => Kind::Date,
                oid::TIME => Kind::Time,
                oid::TIMESTAMP => Kind::Timestamp,
                oid::TIMESTAMPTZ => Kind::Timestamptz,
                oid::UUID => Kind::Uuid,
                oid::JSON => Kind::Json,
                oid::JSONB => Kind::Jsonb,
                oid::BYTEA => Kind::Bytea,
                oid::INTERVAL => Kind::Interval,
                _ => return Kind::custom(ty),
            };
            return Some(kind);
        }
        Kind::custom(ty)
    }

    /// Custom types whose binary form is their text: enums and citext.
    fn custom(ty: &PgTypeInfo) -> Option<Kind> {
        match ty.kind() {
            PgTypeKind::Enum(_) => Some(Kind::Text),
            PgTypeKind::Simple if ty.name().eq_ignore_ascii_case("citext") => Some(Kind::Text),
            _ => None,
        }
    }
}

/// Streams the rows of `query` from the PostgreSQL database of `url`.
pub async fn stream(
    url: &str,
    query: &str,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    stream_with(url, query, params, tx, Transfer::Auto).await
}

/// How rows travel from the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transfer {
    /// `Copy`, falling back to `Fetch` when the server refuses to COPY the statement (e.g.
    /// `SHOW` or `EXPLAIN`, or a PostgreSQL-compatible server without binary COPY).
    #[default]
    Auto,
    /// `COPY (query) TO STDOUT (FORMAT binary)` with the parameters inlined as `timestamptz`
    /// literals: a quarter less CPU per row than a fetch.
    Copy,
    /// The prepared statement executed with the parameters bound as `timestamptz`, rows
    /// fetched one message each.
    Fetch,
}

/// [`stream`] with a chosen [`Transfer`].
pub async fn stream_with(
    url: &str,
    query: &str,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
    transfer: Transfer,
) -> Result<u64> {
    let bound = bind_named(query, Dialect::Postgres).map_err(Error::Source)?;
    let inlined = rewrite_named(query, Dialect::Postgres, |_, name| {
        match params.get(name).flatten() {
            Some(z) => format!("'{}'::timestamptz", rfc3339(z)),
            None => "NULL::timestamptz".to_string(),
        }
    })
    .map_err(Error::Source)?;
    let scrub = Scrubber::new(url);
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| {
            Error::Source(format!(
                "invalid PostgreSQL URL: {}",
                scrub.clean(&e.to_string())
            ))
        })?
        .application_name("ferry")
        // An export runs for seconds by design: no "slow statement" warnings with its SQL.
        .disable_statement_logging();
    let server = format!(
        "{}:{} (database {}, user {})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username()),
        options.get_username()
    );
    let connect = || async {
        PgConnection::connect_with(&options).await.map_err(|e| {
            Error::Source(format!(
                "cannot connect to PostgreSQL at {server}: {}",
                describe(&e, &scrub, None)
            ))
        })
    };
    let mut conn = connect().await?;

    let run = Run {
        copy_sql: format!(
            "COPY (\n{}\n) TO STDOUT (FORMAT binary)",
            &inlined.sql[..inlined.body_len]
        ),
        sql: &bound.sql,
        params: bound
            .names
            .iter()
            .map(|n| {
                params
                    .get(n)
                    .flatten()
                    .map(|z| PgInstant::from_timestamp(z.timestamp()))
            })
            .collect(),
        zone: params.slot.time_zone().iana_name().map(str::to_string),
        scrub: &scrub,
    };
    let mut result = tokio::select! {
        biased;
        result = run.pump(&mut conn, &tx, transfer, true) => result,
        _ = tx.closed() => Err(cancelled()),
    };
    if let Ok(Pumped::Refused) = result {
        // The server cannot COPY this statement: fetch it instead (the columns are sent
        // already). sqlx leaves the refused COPY's ReadyForQuery unread, so the connection
        // is out of step: use a fresh one.
        drop(conn);
        conn = connect().await?;
        result = tokio::select! {
            biased;
            result = run.pump(&mut conn, &tx, Transfer::Fetch, false) => result,
            _ = tx.closed() => Err(cancelled()),
        };
    }
    match result {
        Ok(Pumped::Rows(rows)) => {
            // A polite goodbye; the rows are all in already.
            let _ = conn.close().await;
            Ok(rows)
        }
        Ok(Pumped::Refused) => Err(Error::Source("PostgreSQL refused to run the query".into())),
        // Dropping the connection mid-stream closes the socket: the server stops the query.
        Err(e) => Err(e),
    }
}

/// How a run ended.
enum Pumped {
    /// Every row was sent; this many.
    Rows(u64),
    /// The server refused to COPY the statement; nothing but the columns was sent.
    Refused,
}

fn cancelled() -> Error {
    Error::Source("export cancelled".into())
}

/// Removes the URL (and a password long enough to be recognisable) from messages.
struct Scrubber {
    url: String,
    password: Option<String>,
}

impl Scrubber {
    fn new(url: &str) -> Scrubber {
        let password = crate::redact::url_password(url)
            .filter(|p| p.len() >= 8)
            .map(str::to_string);
        Scrubber {
            url: url.to_string(),
            password,
        }
    }

    fn clean(&self, message: &str) -> String {
        let mut out = message.replace(&self.url, "(connection URL)");
        if let Some(password) = &self.password {
            out = out.replace(password.as_str(), "***");
        }
        out
    }
}

/// A readable message for a sqlx error, without credentials. `sql` (the text the server saw
/// and how many lines precede the user's query in it) locates query errors.
fn describe(e: &sqlx::Error, scrub: &Scrubber, sql: Option<(&str, usize)>) -> String {
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

struct Run<'a> {
    sql: &'a str,
    /// The statement with the parameters inlined as `timestamptz` literals, for COPY.
    copy_sql: String,
    params: Vec<Option<PgInstant>>,
    zone: Option<String>,
    scrub: &'a Scrubber,
}

impl Run<'_> {
    fn query_error(&self, e: &sqlx::Error) -> Error {
        Error::Source(format!(
            "PostgreSQL query failed: {}",
            describe(e, self.scrub, Some((self.sql, 0)))
        ))
    }

    /// An error of the COPY statement, whose first line is the `COPY (` wrapper.
    fn copy_error(&self, e: &sqlx::Error) -> Error {
        Error::Source(format!(
            "PostgreSQL query failed: {}",
            describe(e, self.scrub, Some((&self.copy_sql, 1)))
        ))
    }

    async fn pump(
        &self,
        conn: &mut PgConnection,
        tx: &mpsc::Sender<SourceEvent>,
        transfer: Transfer,
        send_columns: bool,
    ) -> Result<Pumped> {
        // Session settings for a report, in one round trip.
        let mut setup =
            String::from("SET default_transaction_read_only = on; SET IntervalStyle = iso_8601;");
        if let Some(zone) = &self.zone
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        {
            let _ = write!(setup, " SET TimeZone = '{zone}';");
        }
        sqlx::raw_sql(AssertSqlSafe(setup))
            .execute(&mut *conn)
            .await
            .map_err(|e| self.query_error(&e))?;

        let types = vec![PgTypeInfo::with_oid(Oid(oid::TIMESTAMPTZ)); self.params.len()];
        let statement = (&mut *conn)
            .prepare_with(AssertSqlSafe(self.sql).into_sql_str(), &types)
            .await
            .map_err(|e| self.query_error(&e))?;
        if statement.columns().is_empty() {
            return Err(Error::Source(
                "the query returns no columns; a report runs a SELECT (or WITH ... SELECT, \
                 VALUES, TABLE)"
                    .into(),
            ));
        }
        let mut names = Vec::with_capacity(statement.columns().len());
        let mut kinds = Vec::with_capacity(statement.columns().len());
        for column in statement.columns() {
            let ty = column.type_info();
            let kind = Kind::of(ty).ok_or_else(|| {
                Error::Source(format!(
                    "column `{name}` has type {ty}, which Ferry cannot export; convert it in the \
                     query, e.g. CAST({name} AS text)",
                    name = column.name(),
                    ty = ty.name().to_lowercase(),
                ))
            })?;
            names.push(column.name().to_string());
            kinds.push(kind);
        }
        if send_columns {
            tx.send(SourceEvent::Columns(names.clone()))
                .await
                .map_err(|_| cancelled())?;
        }

        if transfer != Transfer::Fetch {
            return match self.copy(conn, tx, &names, &kinds).await? {
                Ok(rows) => Ok(Pumped::Rows(rows)),
                Err(refused) if transfer == Transfer::Copy => Err(self.copy_error(&refused)),
                Err(_) => Ok(Pumped::Refused),
            };
        }
        let mut query = statement.query();
        for value in &self.params {
            query = query.bind(*value);
        }
        let mut stream = query.fetch(&mut *conn);
        let mut rows: u64 = 0;
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
        let mut scratch = String::new();
        while let Some(row) = stream.try_next().await.map_err(|e| self.query_error(&e))? {
            rows += 1;
            let mut values = Vec::with_capacity(kinds.len());
            for (i, &kind) in kinds.iter().enumerate() {
                let raw = row.try_get_raw(i).map_err(|e| self.query_error(&e))?;
                if raw.is_null() {
                    values.push(Value::Null);
                    continue;
                }
                let bytes = raw.as_bytes().unwrap_or_default();
                let decoded = match raw.format() {
                    PgValueFormat::Binary => decode_binary(kind, bytes, &mut scratch),
                    PgValueFormat::Text => decode_text(kind, bytes),
                };
                values.push(decoded.map_err(|why| {
                    Error::Source(format!(
                        "row {rows}, column `{}` ({}): {why}",
                        names[i],
                        raw.type_info().name().to_lowercase()
                    ))
                })?);
            }
            batch.push(values);
            if batch.len() == BATCH_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                tx.send(SourceEvent::Rows(full))
                    .await
                    .map_err(|_| cancelled())?;
            }
        }
        drop(stream);
        if !batch.is_empty() {
            tx.send(SourceEvent::Rows(batch))
                .await
                .map_err(|_| cancelled())?;
        }
        Ok(Pumped::Rows(rows))
    }

    /// Streams the rows through `COPY (query) TO STDOUT (FORMAT binary)`: the same binary
    /// values as a fetch, without a row object per row. The inner error is the server's
    /// refusal to COPY this statement at all (before any row).
    async fn copy(
        &self,
        conn: &mut PgConnection,
        tx: &mpsc::Sender<SourceEvent>,
        names: &[String],
        kinds: &[Kind],
    ) -> Result<std::result::Result<u64, sqlx::Error>> {
        let mut stream = match conn.copy_out_raw(&self.copy_sql).await {
            Ok(stream) => stream,
            Err(e) if copy_refused(&e) => return Ok(Err(e)),
            Err(e) => return Err(self.copy_error(&e)),
        };
        let mut reader = CopyReader::new(kinds.len());
        let mut scratch = String::new();
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
        let mut rows: u64 = 0;
        let mut carry: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.copy_error(&e))? {
            // PostgreSQL sends one row per message; a row split across messages is carried.
            let data: &[u8] = if carry.is_empty() {
                &chunk
            } else {
                carry.extend_from_slice(&chunk);
                &carry
            };
            let mut at = 0;
            loop {
                let row = reader.next_row(&data[at..], |i, bytes| {
                    let Some(bytes) = bytes else {
                        return Ok(Value::Null);
                    };
                    decode_binary(kinds[i], bytes, &mut scratch).map_err(|why| {
                        Error::Source(format!("row {}, column `{}`: {why}", rows + 1, names[i]))
                    })
                })?;
                let Some((values, used)) = row else { break };
                at += used;
                let Some(values) = values else { continue };
                rows += 1;
                batch.push(values);
                if batch.len() == BATCH_ROWS {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                    tx.send(SourceEvent::Rows(full))
                        .await
                        .map_err(|_| cancelled())?;
                }
            }
            let rest = data[at..].to_vec();
            carry = rest;
        }
        drop(stream);
        if !carry.is_empty() || !reader.finished {
            return Err(Error::Source(
                "PostgreSQL ended the COPY stream in the middle of a row".into(),
            ));
        }
        if !batch.is_empty() {
            tx.send(SourceEvent::Rows(batch))
                .await
                .map_err(|_| cancelled())?;
        }
        Ok(Ok(rows))
    }
}

/// Whether `e` says the server cannot COPY this statement (a syntax error in the COPY
/// wrapper, the statement having been prepared fine, or an unsupported feature).
fn copy_refused(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code == "42601" || code.starts_with("0A")),
        _ => false,
    }
}

/// Reads PostgreSQL's binary COPY format: an 11-byte signature, flags and a header
/// extension, then per row a 16-bit field count and per field a 32-bit length (-1: NULL) and
/// the value's bytes; a field count of -1 ends the data.
struct CopyReader {
    columns: usize,
    header_done: bool,
    finished: bool,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyReader {
    fn new(columns: usize) -> CopyReader {
        CopyReader {
            columns,
            header_done: false,
            finished: false,
        }
    }

    /// The next item in `data`: `None` when `data` holds no complete item; otherwise the bytes
    /// used and the row (`None` for the header or the trailer). `value` decodes field `i`.
    fn next_row(
        &mut self,
        data: &[u8],
        mut value: impl FnMut(usize, Option<&[u8]>) -> Result<Value>,
    ) -> Result<Option<(Option<Vec<Value>>, usize)>> {
        let broken =
            |what: &str| Error::Source(format!("unexpected COPY data from PostgreSQL: {what}"));
        if data.is_empty() {
            return Ok(None);
        }
        if !self.header_done {
            if data.len() < 19 {
                return Ok(None);
            }
            if &data[..11] != COPY_SIGNATURE {
                return Err(broken("no binary COPY signature"));
            }
            let ext = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
            if data.len() < 19 + ext {
                return Ok(None);
            }
            self.header_done = true;
            return Ok(Some((None, 19 + ext)));
        }
        if self.finished {
            return Err(broken("data after the end marker"));
        }
        if data.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([data[0], data[1]]);
        if fields == -1 {
            self.finished = true;
            return Ok(Some((None, 2)));
        }
        if fields as usize != self.columns {
            return Err(broken("a row with a different number of columns"));
        }
        let mut at = 2;
        let mut values = Vec::with_capacity(self.columns);
        for i in 0..self.columns {
            let Some(len) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                values.push(value(i, None)?);
                continue;
            }
            let Some(bytes) = data.get(at..at + len as usize) else {
                return Ok(None);
            };
            at += len as usize;
            values.push(value(i, Some(bytes))?);
        }
        Ok(Some((Some(values), at)))
    }
}

type Decoded = std::result::Result<Value, String>;

fn be<const N: usize>(b: &[u8]) -> std::result::Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn utf8(b: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "the text is not valid UTF-8".to_string())
}

/// Decodes a value in PostgreSQL's binary wire format.
fn decode_binary(kind: Kind, b: &[u8], scratch: &mut String) -> Decoded {
    Ok(match kind {
        Kind::Bool => Value::Bool(be::<1>(b)?[0] != 0),
        Kind::Int2 => Value::Int(i16::from_be_bytes(be(b)?).into()),
        Kind::Int4 => Value::Int(i32::from_be_bytes(be(b)?).into()),
        Kind::Int8 => Value::Int(i64::from_be_bytes(be(b)?)),
        Kind::Float4 => {
            // Through its shortest text, so 0.1::float4 is 0.1 and not 0.10000000149011612.
            let f = f32::from_be_bytes(be(b)?);
            scratch.clear();
            let _ = write!(scratch, "{f}");
            Value::Float(scratch.parse().unwrap_or(f64::from(f)))
        }
        Kind::Float8 => Value::Float(f64::from_be_bytes(be(b)?)),
        Kind::Numeric => numeric(b)?,
        Kind::Text | Kind::Char => Value::Text(utf8(b)?.to_owned()),
        Kind::Json => Value::Text(utf8(b)?.to_owned()),
        Kind::Jsonb => match b.split_first() {
            Some((1, json)) => Value::Text(utf8(json)?.to_owned()),
            _ => return Err("unknown jsonb format version".into()),
        },
        Kind::Bytea => Value::Bytes(b.to_vec()),
        Kind::Uuid => Value::Text(uuid(&be::<16>(b)?)),
        Kind::Date => match i32::from_be_bytes(be(b)?) {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            days => Value::Date(date_from_unix_days(i64::from(days) + PG_EPOCH_DAYS)?),
        },
        Kind::Time => {
            let micros = i64::from_be_bytes(be(b)?);
            if micros == MICROS_PER_DAY {
                Value::Text("24:00:00".into())
            } else {
                Value::Time(time_from_micros(micros)?)
            }
        }
        Kind::Timestamp => match i64::from_be_bytes(be(b)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => {
                let unix = micros
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("timestamp out of range")?;
                let date = date_from_unix_days(unix.div_euclid(MICROS_PER_DAY))?;
                let time = time_from_micros(unix.rem_euclid(MICROS_PER_DAY))?;
                Value::DateTime(DateTime::from_parts(date, time))
            }
        },
        Kind::Timestamptz => match i64::from_be_bytes(be(b)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => Value::Timestamp(
                micros
                    .checked_add(PG_EPOCH_MICROS)
                    .and_then(|m| Timestamp::from_microsecond(m).ok())
                    .ok_or("timestamp out of the supported range (years -9999 to 9999)")?,
            ),
        },
        Kind::Interval => {
            if b.len() != 16 {
                return Err(format!("expected 16 bytes, got {}", b.len()));
            }
            let micros = i64::from_be_bytes(be(&b[..8])?);
            let days = i32::from_be_bytes(be(&b[8..12])?);
            let months = i32::from_be_bytes(be(&b[12..])?);
            Value::Text(interval_iso8601(months, days, micros))
        }
    })
}

/// Decodes a value in PostgreSQL's text format (sqlx uses binary for prepared statements; this
/// is the fallback should it ever hand out text).
fn decode_text(kind: Kind, b: &[u8]) -> Decoded {
    let text = utf8(b)?;
    let bad = || format!("cannot read `{text}`");
    Ok(match kind {
        Kind::Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        Kind::Int2 | Kind::Int4 | Kind::Int8 => Value::Int(text.parse().map_err(|_| bad())?),
        Kind::Float4 | Kind::Float8 => Value::Float(text.parse().map_err(|_| bad())?),
        Kind::Numeric if is_decimal(text) => Value::Decimal(text.to_owned()),
        Kind::Numeric => Value::Text(text.to_owned()),
        Kind::Date => match parse_date(b).or_else(|| text.parse().ok()) {
            Some(d) => Value::Date(d),
            None => Value::Text(text.to_owned()),
        },
        Kind::Time => match parse_time(b) {
            Some(t) => Value::Time(t),
            None => Value::Text(text.to_owned()),
        },
        Kind::Timestamp | Kind::Timestamptz => match parse_date_time(text) {
            Some(v) => v,
            None => Value::Text(text.to_owned()),
        },
        Kind::Bytea => {
            let hex = text.strip_prefix("\\x").ok_or_else(bad)?;
            Value::Bytes(hex::decode(hex).map_err(|_| bad())?)
        }
        Kind::Text | Kind::Char | Kind::Json | Kind::Jsonb | Kind::Uuid | Kind::Interval => {
            Value::Text(text.to_owned())
        }
    })
}

/// The civil date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn date_from_unix_days(days: i64) -> std::result::Result<Date, String> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    i16::try_from(year)
        .ok()
        .and_then(|y| Date::new(y, month as i8, day as i8).ok())
        .ok_or_else(|| "date out of the supported range (years -9999 to 9999)".to_string())
}

fn time_from_micros(micros: i64) -> std::result::Result<Time, String> {
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err("time of day out of range".into());
    }
    let secs = micros / 1_000_000;
    Time::new(
        (secs / 3600) as i8,
        (secs / 60 % 60) as i8,
        (secs % 60) as i8,
        (micros % 1_000_000 * 1000) as i32,
    )
    .map_err(|e| e.to_string())
}

fn uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 15)] as char);
    }
    s
}

/// Appends `n` (0..=9999) as exactly four digits.
fn push4(out: &mut String, n: u16) {
    out.push(char::from(b'0' + (n / 1000 % 10) as u8));
    out.push(char::from(b'0' + (n / 100 % 10) as u8));
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// A binary NUMERIC as its exact text: `ndigits`, `weight`, `sign`, `dscale`, then `ndigits`
/// base-10000 digits, the first worth 10000^weight. Printed as PostgreSQL prints it: every
/// digit of the display scale, no exponent.
fn numeric(b: &[u8]) -> Decoded {
    if b.len() < 8 {
        return Err("truncated numeric".into());
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]);
    let weight = i16::from_be_bytes([b[2], b[3]]);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]);
    match sign {
        0xC000 => return Ok(Value::Text("NaN".into())),
        0xD000 => return Ok(Value::Text("Infinity".into())),
        0xF000 => return Ok(Value::Text("-Infinity".into())),
        0x0000 | 0x4000 => {}
        _ => return Err(format!("unknown numeric sign {sign:#x}")),
    }
    let ndigits = usize::try_from(ndigits).map_err(|_| "negative numeric length")?;
    if b.len() != 8 + 2 * ndigits {
        return Err("numeric length does not match its digits".into());
    }
    let digit = |i: i32| -> std::result::Result<u16, String> {
        if i < 0 || i as usize >= ndigits {
            return Ok(0);
        }
        let at = 8 + 2 * i as usize;
        let d = u16::from_be_bytes([b[at], b[at + 1]]);
        if d > 9999 {
            return Err("numeric digit out of range".into());
        }
        Ok(d)
    };
    let weight = i32::from(weight);
    let mut out = String::with_capacity(4 * (ndigits + 2) + usize::from(dscale));
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i)?;
            if i == 0 {
                // The leading group without leading zeros.
                let start = out.len();
                push4(&mut out, d);
                let zeros = out[start..]
                    .bytes()
                    .take(3)
                    .take_while(|&c| c == b'0')
                    .count();
                out.drain(start..start + zeros);
            } else {
                push4(&mut out, d);
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut remaining = usize::from(dscale);
        let mut i = weight + 1;
        while remaining > 0 {
            let start = out.len();
            push4(&mut out, digit(i)?);
            if remaining < 4 {
                out.truncate(start + remaining);
                break;
            }
            remaining -= 4;
            i += 1;
        }
    }
    Ok(Value::Decimal(out))
}

/// An interval as PostgreSQL prints it with `IntervalStyle = iso_8601`.
fn interval_iso8601(months: i32, days: i32, micros: i64) -> String {
    let years = months / 12;
    let months = months % 12;
    let hours = micros / 3_600_000_000;
    let rest = micros - hours * 3_600_000_000;
    let minutes = rest / 60_000_000;
    let rest = rest - minutes * 60_000_000;
    let seconds = rest / 1_000_000;
    let fraction = rest - seconds * 1_000_000;
    if years == 0 && months == 0 && days == 0 && micros == 0 {
        return "PT0S".into();
    }
    let mut s = String::from("P");
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            let _ = write!(s, "{n}{unit}");
        }
    }
    if micros != 0 {
        s.push('T');
        for (n, unit) in [(hours, 'H'), (minutes, 'M')] {
            if n != 0 {
                let _ = write!(s, "{n}{unit}");
            }
        }
        if seconds != 0 || fraction != 0 {
            if seconds < 0 || fraction < 0 {
                s.push('-');
            }
            let _ = write!(s, "{}", seconds.abs());
            if fraction != 0 {
                let digits = format!("{:06}", fraction.abs());
                let _ = write!(s, ".{}", digits.trim_end_matches('0'));
            }
            s.push('S');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    fn dec(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Value {
        numeric(&numeric_bytes(weight, sign, dscale, digits)).unwrap()
    }

    #[test]
    fn numerics_print_every_digit_of_their_scale() {
        let d = |s: &str| Value::Decimal(s.into());
        // 12345678901234567890.123456789 = 1234 5678 9012 3456 7890 . 1234 5678 9000
        assert_eq!(
            dec(4, 0, 9, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]),
            d("12345678901234567890.123456789")
        );
        assert_eq!(dec(0, 0, 0, &[]), d("0"));
        assert_eq!(dec(0, 0, 2, &[]), d("0.00"));
        assert_eq!(dec(0, 0x4000, 2, &[12, 5000]), d("-12.50"));
        assert_eq!(dec(-2, 0, 8, &[1234]), d("0.00001234"));
        assert_eq!(dec(-1, 0x4000, 4, &[5]), d("-0.0005"));
        assert_eq!(dec(-1, 0x4000, 3, &[5]), d("-0.000"));
        assert_eq!(dec(2, 0, 0, &[1]), d("100000000"));
        assert_eq!(dec(1, 0, 1, &[1, 0]), d("10000.0"));
    }

    #[test]
    fn numeric_specials_are_text() {
        assert_eq!(dec(0, 0xC000, 0, &[]), Value::Text("NaN".into()));
        assert_eq!(dec(0, 0xD000, 0, &[]), Value::Text("Infinity".into()));
        assert_eq!(dec(0, 0xF000, 0, &[]), Value::Text("-Infinity".into()));
        assert!(numeric(&[0, 1, 0, 0]).is_err());
    }

    #[test]
    fn intervals_read_like_postgres_iso_8601_style() {
        const H: i64 = 3_600_000_000;
        assert_eq!(interval_iso8601(0, 1, 2 * H), "P1DT2H");
        assert_eq!(interval_iso8601(14, 0, 0), "P1Y2M");
        assert_eq!(interval_iso8601(0, 0, 500_000), "PT0.5S");
        assert_eq!(interval_iso8601(0, 0, 0), "PT0S");
        assert_eq!(interval_iso8601(0, -1, 0), "P-1D");
        assert_eq!(interval_iso8601(0, 0, -(H + 90_000_000)), "PT-1H-1M-30S");
        assert_eq!(
            interval_iso8601(-13, 3, 61_000_001),
            "P-1Y-1M3DT1M1.000001S"
        );
    }

    #[test]
    fn dates_and_times_come_from_the_2000_epoch() {
        assert_eq!(
            date_from_unix_days(PG_EPOCH_DAYS).unwrap(),
            jiff::civil::date(2000, 1, 1)
        );
        assert_eq!(
            date_from_unix_days(PG_EPOCH_DAYS - 1).unwrap(),
            jiff::civil::date(1999, 12, 31)
        );
        assert_eq!(
            date_from_unix_days(20_664).unwrap(),
            jiff::civil::date(2026, 7, 30)
        );
        assert!(date_from_unix_days(5_000_000).is_err());
        let mut scratch = String::new();
        let ts = decode_binary(Kind::Timestamp, &(-1i64).to_be_bytes(), &mut scratch).unwrap();
        assert_eq!(
            ts,
            Value::DateTime("1999-12-31T23:59:59.999999".parse().unwrap())
        );
        let tz = decode_binary(Kind::Timestamptz, &0i64.to_be_bytes(), &mut scratch).unwrap();
        assert_eq!(
            tz,
            Value::Timestamp("2000-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            PgInstant::from_timestamp("2000-01-01T00:00:01Z".parse().unwrap()),
            PgInstant(1_000_000)
        );
    }

    #[test]
    fn uuids_are_lowercase_and_hyphenated() {
        let b: [u8; 16] = [
            0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ];
        assert_eq!(uuid(&b), "550e8400-e29b-41d4-a716-446655440000");
    }

    #[test]
    fn text_format_values_decode_too() {
        assert_eq!(decode_text(Kind::Bool, b"t").unwrap(), Value::Bool(true));
        assert_eq!(decode_text(Kind::Int8, b"-42").unwrap(), Value::Int(-42));
        assert_eq!(
            decode_text(Kind::Numeric, b"1.50").unwrap(),
            Value::Decimal("1.50".into())
        );
        assert_eq!(
            decode_text(Kind::Numeric, b"NaN").unwrap(),
            Value::Text("NaN".into())
        );
        assert_eq!(
            decode_text(Kind::Timestamptz, b"2023-11-14 22:13:22+09").unwrap(),
            Value::Timestamp("2023-11-14T13:13:22Z".parse().unwrap())
        );
        assert_eq!(
            decode_text(Kind::Bytea, b"\\x00ff").unwrap(),
            Value::Bytes(vec![0, 255])
        );
    }

    #[test]
    fn long_passwords_and_the_url_are_scrubbed_from_messages() {
        let s = Scrubber::new("postgres://u:s3cret-pass@db:5432/x");
        assert_eq!(
            s.clean("bad postgres://u:s3cret-pass@db:5432/x and s3cret-pass"),
            "bad (connection URL) and ***"
        );
    }
}
