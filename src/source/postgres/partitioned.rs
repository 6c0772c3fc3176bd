//! A PostgreSQL query read by several sessions at once (`source.sql.partition`), as
//! `pg_dump -j` reads tables: one consistent snapshot, ranges of one column read in parallel,
//! rows written in order.
//!
//! 1. The lead session opens a `REPEATABLE READ, READ ONLY` transaction, prepares the query
//!    (columns and types, as a single session would), exports its snapshot
//!    (`pg_export_snapshot()`) and asks for the column's smallest and largest values
//!    ([`SplitQuery::bounds_sql`]).
//! 2. The values are cut into [`RANGES_PER_PART`] x `parts` ranges ([`SplitQuery::ranges`]).
//!    `parts - 1` more sessions start the same kind of transaction on the same snapshot
//!    (`SET TRANSACTION SNAPSHOT`): every session sees exactly the rows the lead sees, whatever
//!    is inserted, updated or deleted meanwhile.
//! 3. Each session takes the next range in write order and streams it with binary COPY,
//!    decoded on its own task (so decoding uses every core). The ranges are written in order:
//!    the first one not yet written streams straight through, the ones after it are held
//!    until their turn, at most [`WINDOW_PER_PART`] x `parts` ranges started and not yet
//!    written, each holding at most [`RANGE_BUFFER_BATCHES`] batches (a session waits when
//!    its range's buffer is full): memory stays bounded however large the export.
//!
//! With a query ordered by the column, the file is byte for byte the one a single session
//! would write from the same snapshot. A failing range fails the export; dropping the
//! sessions stops the server's work.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sqlx::{
    AssertSqlSafe, Column, Connection, Executor, PgConnection, SqlSafeStr, Statement, TypeInfo,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::errors::{Scrubber, describe};
use super::types::Kind;
use super::{Run, cancelled, copy_rows};
use crate::export::Value;
use crate::source::SourceEvent;
use crate::source::split::{Range, SplitQuery};
use crate::{Error, Result};

/// Ranges per session: more ranges than sessions keep every session busy when the rows are
/// not spread evenly over the column's values.
pub const RANGES_PER_PART: usize = 4;
/// Ranges started and not yet written, per session.
pub const WINDOW_PER_PART: usize = 2;
/// Batches of rows a range holds while it waits for its turn.
pub const RANGE_BUFFER_BATCHES: usize = 16;
/// The most sessions a partitioned read opens.
pub const MAX_PARTS: u32 = 16;

/// What a range's channel carries: row batches, then `None` once the range is complete (a
/// channel that closes without it lost its reader), or the error that ended it.
type Batch = Result<Option<Vec<Vec<Value>>>>;

/// One range to read: its SQL, and where its rows go.
struct Work {
    index: usize,
    copy_sql: String,
    rows: mpsc::Sender<Batch>,
}

/// Streams the query of `run` split by `split` into `parts` sessions' worth of ranges. The
/// columns go to `tx` first, then the rows of every range in order.
pub(super) async fn stream<F, Fut>(
    run: &Run<'_>,
    connect: F,
    split: &SplitQuery,
    parts: usize,
    tx: &mpsc::Sender<SourceEvent>,
) -> Result<u64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<PgConnection>>,
{
    let mut lead = connect().await?;
    run.setup(&mut lead).await?;
    begin(run, &mut lead, None).await?;
    let (_, names, kinds) = run.prepare(&mut lead).await?;
    tx.send(SourceEvent::Columns(names.clone()))
        .await
        .map_err(|_| cancelled())?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut lead)
        .await
        .map_err(|e| run.query_error(&e))?;

    let column = split.column_sql();
    let bounds_sql = split.bounds_sql();
    let bounds = lead
        .prepare(AssertSqlSafe(bounds_sql.clone()).into_sql_str())
        .await
        .map_err(|e| partition_error(run, &column, &e))?;
    let ty = bounds.columns()[0].type_info().clone();
    let kind = Kind::of(&ty).filter(|k| {
        matches!(
            k,
            Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Date | Kind::Timestamp | Kind::Timestamptz
        )
    });
    let Some(kind) = kind else {
        return Err(Error::Source(format!(
            "source.sql.partition: column `{column}` has type {}; a partition column is an \
             integer, date, timestamp or timestamptz",
            ty.name().to_lowercase()
        )));
    };
    let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {}, {} FROM (\n{bounds_sql}\n) AS ferry_bounds(low, high)",
        as_number(kind, "low"),
        as_number(kind, "high")
    )))
    .fetch_one(&mut lead)
    .await
    .map_err(|e| partition_error(run, &column, &e))?;

    let ranges: Vec<Range<i64>> = match (low, high) {
        (Some(low), Some(high)) => split.ranges(low, high, parts * RANGES_PER_PART),
        // No row, only NULLs or infinite timestamps: one range, every row.
        _ => vec![Range {
            low: None,
            high: None,
            nulls: true,
        }],
    };
    let sessions = parts.min(ranges.len());
    let mut queue = VecDeque::with_capacity(ranges.len());
    let mut receivers = Vec::with_capacity(ranges.len());
    for (index, range) in ranges.iter().enumerate() {
        let (rows, received) = mpsc::channel(RANGE_BUFFER_BATCHES);
        let predicate = split.predicate(range, |b| literal(kind, *b));
        let copy_sql = format!(
            "COPY (\n{}\n) TO STDOUT (FORMAT binary)",
            split.restricted_sql(&predicate)
        );
        queue.push_back(Work {
            index,
            copy_sql,
            rows,
        });
        receivers.push(received);
    }

    // Every other session joins the lead's snapshot before anything is read.
    let mut connections = vec![lead];
    let joined = futures_util::future::try_join_all((1..sessions).map(|_| async {
        let mut conn = connect().await?;
        run.setup(&mut conn).await?;
        begin(run, &mut conn, Some(&snapshot)).await?;
        Ok::<_, Error>(conn)
    }))
    .await?;
    connections.extend(joined);

    let queue = Arc::new(Mutex::new(queue));
    let window = Arc::new(Semaphore::new(WINDOW_PER_PART * sessions));
    let names: Arc<[String]> = names.into();
    let kinds: Arc<[Kind]> = kinds.into();
    let total = ranges.len();
    let mut readers = JoinSet::new();
    for mut conn in connections {
        let (queue, window, names, kinds) =
            (queue.clone(), window.clone(), names.clone(), kinds.clone());
        let scrub = run.scrub.clone();
        readers.spawn(async move {
            read_ranges(&mut conn, &queue, &window, &names, &kinds, &scrub, total).await;
            // A polite goodbye; a failed session's connection closes all the same.
            let _ = conn.close().await;
        });
    }

    let mut rows = 0u64;
    for (index, mut range) in receivers.into_iter().enumerate() {
        loop {
            match range.recv().await {
                Some(Ok(Some(batch))) => {
                    rows += batch.len() as u64;
                    tx.send(SourceEvent::Rows(batch))
                        .await
                        .map_err(|_| cancelled())?;
                }
                Some(Ok(None)) => break,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::Source(format!(
                        "range {} of {total} was not read to its end (its session stopped)",
                        index + 1
                    )));
                }
            }
        }
        window.add_permits(1);
    }
    readers.join_all().await;
    Ok(rows)
}

/// One session's work: the next range in write order, while there is one and the window
/// allows it.
async fn read_ranges(
    conn: &mut PgConnection,
    queue: &Mutex<VecDeque<Work>>,
    window: &Arc<Semaphore>,
    names: &[String],
    kinds: &[Kind],
    scrub: &Scrubber,
    total: usize,
) {
    loop {
        // The permit is taken before the range: the ranges holding permits are always
        // the first ones not yet written, so the one being written has a session.
        let Ok(permit) = window.clone().acquire_owned().await else {
            return;
        };
        let Some(work) = queue.lock().unwrap().pop_front() else {
            return;
        };
        permit.forget();
        let error = |e: &sqlx::Error| {
            Error::Source(format!(
                "PostgreSQL query failed in range {} of {total}: {}",
                work.index + 1,
                describe(e, scrub, None)
            ))
        };
        let read = copy_rows(conn, &work.copy_sql, names, kinds, error, &work.rows, batch).await;
        let end = match read {
            Ok(Ok(_)) => Ok(None),
            Ok(Err(refused)) => Err(error(&refused)),
            Err(e) => Err(e),
        };
        let failed = end.is_err();
        if work.rows.send(end).await.is_err() || failed {
            return;
        }
    }
}

/// A batch of a range, for its channel.
fn batch(rows: Vec<Vec<Value>>) -> Batch {
    Ok(Some(rows))
}

/// Starts the snapshot transaction: the lead's own (`snapshot` none), or the lead's snapshot.
async fn begin(run: &Run<'_>, conn: &mut PgConnection, snapshot: Option<&str>) -> Result<()> {
    let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;");
    if let Some(id) = snapshot {
        // An identifier PostgreSQL made: hex digits and dashes (`00000003-0000001B-1`).
        if !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(Error::Source(format!(
                "PostgreSQL exported a snapshot named `{id}`, which Ferry does not recognise"
            )));
        }
        sql.push_str(&format!(" SET TRANSACTION SNAPSHOT '{id}';"));
    }
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(|e| run.query_error(&e))?;
    Ok(())
}

/// A partition column's value as an `int8` the ranges are computed on: the integer itself,
/// days since 1970-01-01, or microseconds since 1970-01-01 (an infinite timestamp: NULL).
fn as_number(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Date => {
            format!("CASE WHEN isfinite({value}) THEN ({value} - DATE 'epoch')::int8 END")
        }
        Kind::Timestamp | Kind::Timestamptz => format!(
            "CASE WHEN isfinite({value}) THEN floor(extract(epoch FROM {value}) * 1000000)::int8 END"
        ),
        _ => format!("{value}::int8"),
    }
}

/// A range boundary as a literal of the column's type, the inverse of [`as_number`]. Any
/// boundary splits correctly (adjacent ranges share it); these fall between the values.
fn literal(kind: Kind, number: i64) -> String {
    match kind {
        Kind::Date => format!("(DATE 'epoch' + {number})"),
        Kind::Timestamp => format!("(TIMESTAMP 'epoch' + {number} * INTERVAL '1 microsecond')"),
        Kind::Timestamptz => {
            format!("(TIMESTAMPTZ 'epoch' + {number} * INTERVAL '1 microsecond')")
        }
        _ => number.to_string(),
    }
}

fn partition_error(run: &Run<'_>, column: &str, e: &sqlx::Error) -> Error {
    Error::Source(format!(
        "source.sql.partition: cannot find the range of `{column}`: {}",
        describe(e, run.scrub, None)
    ))
}
