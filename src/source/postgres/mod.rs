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

mod copy;
mod decode;
mod errors;
mod partitioned;
mod types;

pub use partitioned::MAX_PARTS;
pub use types::PgInstant;

use std::fmt::Write as _;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgTypeInfo, PgValueFormat};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, Row, SqlSafeStr, Statement,
    TypeInfo, ValueRef,
};
use tokio::sync::mpsc;

use super::params::{Dialect, bind_named, rewrite_named, rfc3339};
use super::split::SplitQuery;
use super::{BATCH_ROWS, Params, SourceEvent};
use crate::api::Partition;
use crate::export::Value;
use crate::{Error, Result};
use copy::{CopyReader, copy_refused};
use decode::{decode_binary, decode_text};
use errors::{Scrubber, describe};
use types::{Kind, oid};

/// Streams the rows of `query` from the PostgreSQL database of `url`.
pub async fn stream(
    url: &str,
    query: &str,
    partition: Option<&Partition>,
    params: &Params,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<u64> {
    stream_with(url, query, partition, params, tx, Transfer::Auto).await
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

/// [`stream`] with a chosen [`Transfer`] (a partitioned read always copies).
pub async fn stream_with(
    url: &str,
    query: &str,
    partition: Option<&Partition>,
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
    if let Some(partition) = partition {
        let split = SplitQuery::parse(&inlined.sql[..inlined.body_len], &partition.column)
            .map_err(|e| Error::Source(format!("source.sql.partition: {e}")))?;
        let parts = partition.parts.clamp(1, partitioned::MAX_PARTS) as usize;
        return tokio::select! {
            biased;
            result = partitioned::stream(&run, connect, &split, parts, &tx) => result,
            _ = tx.closed() => Err(cancelled()),
        };
    }
    let mut conn = connect().await?;
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
    Error::SourceCancelled
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

    /// Session settings for a report, in one round trip: read-only, ISO 8601 intervals, the
    /// schedule's zone.
    async fn setup(&self, conn: &mut PgConnection) -> Result<()> {
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
        Ok(())
    }

    /// Prepares the query (its window parameters typed `timestamptz`): its columns' names
    /// and kinds, every type checked before any row is read.
    async fn prepare(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(sqlx::postgres::PgStatement, Vec<String>, Vec<Kind>)> {
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
        Ok((statement, names, kinds))
    }

    async fn pump(
        &self,
        conn: &mut PgConnection,
        tx: &mpsc::Sender<SourceEvent>,
        transfer: Transfer,
        send_columns: bool,
    ) -> Result<Pumped> {
        self.setup(conn).await?;
        let (statement, names, kinds) = self.prepare(conn).await?;
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

    /// The rows through `COPY (query) TO STDOUT (FORMAT binary)`, sent as row batches. The
    /// inner error is the server's refusal to COPY this statement at all (before any row).
    async fn copy(
        &self,
        conn: &mut PgConnection,
        tx: &mpsc::Sender<SourceEvent>,
        names: &[String],
        kinds: &[Kind],
    ) -> Result<std::result::Result<u64, sqlx::Error>> {
        let error = |e: &sqlx::Error| self.copy_error(e);
        copy_rows(
            conn,
            &self.copy_sql,
            names,
            kinds,
            error,
            tx,
            SourceEvent::Rows,
        )
        .await
    }
}

/// Streams the rows of `copy_sql` (a `COPY (query) TO STDOUT (FORMAT binary)`) to `out` in
/// batches of [`BATCH_ROWS`], each wrapped by `wrap`: the same binary values as a fetch,
/// without a row object per row. `error` words a server error; the inner error is the
/// server's refusal to COPY the statement at all (before any row), which a caller may answer
/// with a fetch.
async fn copy_rows<T: Send>(
    conn: &mut PgConnection,
    copy_sql: &str,
    names: &[String],
    kinds: &[Kind],
    error: impl Fn(&sqlx::Error) -> Error,
    out: &mpsc::Sender<T>,
    wrap: fn(Vec<Vec<Value>>) -> T,
) -> Result<std::result::Result<u64, sqlx::Error>> {
    let send = async |batch| out.send(wrap(batch)).await.map_err(|_| cancelled());
    let mut stream = match conn.copy_out_raw(copy_sql).await {
        Ok(stream) => stream,
        Err(e) if copy_refused(&e) => return Ok(Err(e)),
        Err(e) => return Err(error(&e)),
    };
    let mut reader = CopyReader::new(kinds.len());
    let mut scratch = String::new();
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
    let mut rows: u64 = 0;
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| error(&e))? {
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
                send(full).await?;
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
        send(batch).await?;
    }
    Ok(Ok(rows))
}
