//! Partitioned PostgreSQL reads (`source.sql.partition`) against the test PostgreSQL: the
//! rows equal a single session's on unchanged data, whatever the number of sessions, the
//! column's type, its NULLs or empty ranges; rows inserted, updated and deleted while an
//! export runs stay out of it (one snapshot); what cannot be split is refused clearly. Then
//! through the binary: the CSV file of a partitioned run is byte for byte the serial one.

use crate::common;

use common::{Sandbox, pg_url, s};
use ferry::api::Partition;
use ferry::export::Value;
use ferry::source::postgres::{self, Transfer};
use ferry::source::{Params, SourceEvent, stream_sql};
use sqlx::Connection;
use tokio::sync::mpsc;

fn no_window() -> Params {
    let slot: jiff::Zoned = "2026-07-31T00:30:00+09:00[Asia/Tokyo]".parse().unwrap();
    Params {
        window_start: None,
        window_end: None,
        slot,
    }
}

fn partition(column: &str, parts: u32) -> Partition {
    Partition {
        column: column.into(),
        parts,
    }
}

/// The columns and rows a source sent.
async fn read(
    query: &str,
    partition: Option<&Partition>,
) -> Result<(Vec<String>, Vec<Vec<Value>>), String> {
    let (tx, mut rx) = mpsc::channel(4);
    let params = no_window();
    let collect = async {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                SourceEvent::Columns(c) => columns = c,
                SourceEvent::Rows(batch) => rows.extend(batch),
                SourceEvent::Records(_) => panic!("records sent without an encoding"),
            }
        }
        (columns, rows)
    };
    let (result, (columns, rows)) = tokio::join!(
        postgres::stream_with(
            pg_url(),
            query,
            partition,
            &params,
            tx,
            Transfer::Copy,
            None
        ),
        collect
    );
    let count = result.map_err(|e| e.to_string())?;
    assert_eq!(
        count,
        rows.len() as u64,
        "the count returned is the rows sent"
    );
    Ok((columns, rows))
}

async fn read_ok(query: &str, partition: Option<&Partition>) -> (Vec<String>, Vec<Vec<Value>>) {
    read(query, partition)
        .await
        .unwrap_or_else(|e| panic!("{query} ({partition:?}): {e}"))
}

async fn pg(sql: &str) {
    let mut conn = sqlx::PgConnection::connect(pg_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A table `name` of `rows` rows: ids with gaps (every third id missing), a nullable integer
/// key `k` (NULL on every 97th row), a timestamptz, a date, text and numerics.
async fn table(name: &str, rows: i64) {
    pg(&format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (
             id bigint PRIMARY KEY,
             k integer,
             at timestamptz NOT NULL,
             day date NOT NULL,
             label text,
             amount numeric(12,2));
         INSERT INTO {name}
         SELECT i * 3 / 2,
                CASE WHEN i % 97 = 0 THEN NULL ELSE (i * 7919) % 5000 END,
                timestamptz '2026-01-01 00:00:00+09' + i * interval '37 seconds',
                date '2020-01-01' + (i % 2000),
                'row ' || i || CASE WHEN i % 5 = 0 THEN ', with \"quotes\"' ELSE '' END,
                (i * 13 % 100000) / 100.0
         FROM generate_series(1, {rows}) AS i;
         ANALYZE {name};"
    ))
    .await;
}

#[tokio::test]
async fn a_partitioned_read_equals_the_serial_one_for_every_number_of_parts() {
    table("part_equal", 20_000).await;
    let query = "SELECT id, k, at, day, label, amount FROM part_equal ORDER BY id";
    let serial = read_ok(query, None).await;
    assert_eq!(serial.1.len(), 20_000);
    for parts in [2, 3, 4, 16] {
        let split = read_ok(query, Some(&partition("id", parts))).await;
        assert_eq!(split.0, serial.0, "columns, {parts} parts");
        assert!(split.1 == serial.1, "rows differ with {parts} parts");
    }
}

#[tokio::test]
async fn timestamp_and_date_columns_split_and_descending_orders_write_the_highest_range_first() {
    table("part_kinds", 6_000).await;
    for (query, column) in [
        ("SELECT id, at FROM part_kinds ORDER BY at, id", "at"),
        ("SELECT id, day FROM part_kinds ORDER BY day, id", "day"),
        ("SELECT id, label FROM part_kinds ORDER BY id DESC", "id"),
        (
            "SELECT id, at FROM part_kinds ORDER BY at DESC, id",
            "part_kinds.at",
        ),
    ] {
        let serial = read_ok(query, None).await;
        let split = read_ok(query, Some(&partition(column, 4))).await;
        assert!(split.1 == serial.1, "{query} split on {column}");
        assert_eq!(split.1.len(), 6_000);
    }
}

#[tokio::test]
async fn null_keys_come_where_order_by_puts_them_and_a_column_need_not_be_selected() {
    table("part_nulls", 5_000).await;
    for query in [
        // NULLs last (ASC), first (DESC), and first when asked.
        "SELECT id, label FROM part_nulls ORDER BY k, id",
        "SELECT id, label FROM part_nulls ORDER BY k DESC, id",
        "SELECT id, label FROM part_nulls ORDER BY k NULLS FIRST, id",
    ] {
        let serial = read_ok(query, None).await;
        let split = read_ok(query, Some(&partition("k", 3))).await;
        assert_eq!(split.1.len(), 5_000, "{query}");
        assert!(split.1 == serial.1, "{query}");
    }
    // Every key NULL: one range, every row.
    pg("DROP TABLE IF EXISTS part_all_null;
        CREATE TABLE part_all_null AS SELECT i AS id, NULL::int AS k FROM generate_series(1, 50) i;")
    .await;
    let (_, rows) = read_ok(
        "SELECT id FROM part_all_null ORDER BY id",
        Some(&partition("k", 4)),
    )
    .await;
    assert_eq!(rows.len(), 50);
}

#[tokio::test]
async fn empty_ranges_and_an_empty_result_are_fine() {
    // Two clusters of ids far apart: most ranges between them are empty.
    pg("DROP TABLE IF EXISTS part_gaps;
        CREATE TABLE part_gaps (id bigint PRIMARY KEY, v text);
        INSERT INTO part_gaps SELECT i, 'low ' || i FROM generate_series(1, 100) i;
        INSERT INTO part_gaps SELECT i, 'high ' || i FROM generate_series(9000000000, 9000000099) i;")
    .await;
    let query = "SELECT id, v FROM part_gaps ORDER BY id";
    let serial = read_ok(query, None).await;
    let split = read_ok(query, Some(&partition("id", 4))).await;
    assert_eq!(split.1.len(), 200);
    assert!(split.1 == serial.1);
    let (columns, rows) = read_ok(
        "SELECT id, v FROM part_gaps WHERE id < 0 ORDER BY id",
        Some(&partition("id", 4)),
    )
    .await;
    assert_eq!(columns, ["id", "v"]);
    assert!(rows.is_empty());
}

#[tokio::test]
async fn rows_changed_during_a_partitioned_read_stay_out_of_it() {
    table("part_live", 30_000).await;
    let query = "SELECT id, k, label, amount FROM part_live ORDER BY id";
    let before = read_ok(query, None).await.1;
    let (tx, mut rx) = mpsc::channel(1);
    let params = no_window();
    let split = partition("id", 4);
    let reader = postgres::stream_with(
        pg_url(),
        query,
        Some(&split),
        &params,
        tx,
        Transfer::Copy,
        None,
    );
    let writer = async {
        let mut rows = Vec::new();
        // The first batch proves every session holds the snapshot: change the table in every
        // range (insert below, inside and above the ids, update and delete), then read on.
        while let Some(event) = rx.recv().await {
            if let SourceEvent::Rows(batch) = event {
                let first = rows.is_empty();
                rows.extend(batch);
                if first {
                    pg("INSERT INTO part_live (id, k, at, day, label)
                          SELECT i, 1, now(), current_date, 'inserted'
                          FROM generate_series(-500, -1) i;
                        INSERT INTO part_live (id, k, at, day, label)
                          SELECT i * 3 / 2 + 1, 1, now(), current_date, 'inserted'
                          FROM generate_series(2, 29999, 3) i
                          ON CONFLICT (id) DO NOTHING;
                        INSERT INTO part_live (id, k, at, day, label)
                          SELECT i, 1, now(), current_date, 'inserted'
                          FROM generate_series(100000, 100500) i;
                        UPDATE part_live SET label = 'updated', amount = -1 WHERE id % 10 = 0;
                        DELETE FROM part_live WHERE id % 7 = 0;")
                    .await;
                }
            }
        }
        rows
    };
    let (result, rows) = tokio::join!(reader, writer);
    result.unwrap();
    assert_eq!(rows.len(), before.len(), "no row added or lost");
    assert!(rows == before, "exactly the rows of the snapshot, in order");
    // The changes did happen (they are visible to a new read).
    let after = read_ok(query, None).await.1;
    assert_ne!(after.len(), before.len());
}

#[tokio::test]
async fn what_cannot_be_split_is_refused_with_the_reason() {
    table("part_refused", 100).await;
    for (query, column, why) in [
        (
            "SELECT k, count(*) FROM part_refused GROUP BY k",
            "k",
            "GROUP BY",
        ),
        ("SELECT id FROM part_refused LIMIT 5", "id", "LIMIT"),
        (
            "SELECT id, label FROM part_refused",
            "label",
            "has type text",
        ),
        (
            "SELECT id FROM part_refused",
            "id + 1",
            "is not a column name",
        ),
        ("SELECT id FROM part_refused", "nope", "nope"),
    ] {
        let e = read(query, Some(&partition(column, 2))).await.unwrap_err();
        assert!(e.contains(why), "{query} on {column}: {e}");
        assert!(e.contains("partition"), "{e}");
    }
    // SQLite reads with one connection.
    let params = no_window();
    let (tx, _rx) = mpsc::channel(4);
    let e = stream_sql(
        "sqlite::memory:",
        "SELECT 1",
        Some(&partition("id", 2)),
        &params,
        tx,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("partition is for PostgreSQL"), "{e}");
}

/// A ReportSchedule exporting `part_cli` to CSV, with `partition` when given.
fn report(name: &str, partition: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: {name}}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      connectionSecretRef: {{name: source-db, key: url}}
      query: |
        SELECT id, k, at, day, label, amount
        FROM part_cli
        ORDER BY id
{partition}  format: {{csv: {{}}}}
  fileName: "{name}.csv"
  deliverTo: [{{target: out}}]
"#
    )
}

#[test]
fn through_the_binary_a_partitioned_csv_is_byte_for_byte_the_serial_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(table("part_cli", 25_000));
    let mut sb = Sandbox::new();
    sb.write_secret("default", "source-db", "url", pg_url());
    let out = sb.root().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let docs = [
        format!(
            "apiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata: {{name: out}}\nspec:\n  localDir: {{path: \"{}\"}}\n",
            out.display()
        ),
        report("serial", ""),
        report("split", "      partition: {column: id, parts: 4}\n"),
    ];
    let files = sb.write("reports.yaml", &docs.join("---\n"));
    sb.set_env("FERRY_NOW", "2026-07-30T10:00:00Z");
    sb.apply(&[&files]).success();
    sb.set_env("FERRY_NOW", "2026-07-30T15:30:10Z");
    let run = sb.ferry(["run", "--once", "-f", s(&files)]).success();
    assert!(
        run.stdout.contains("2 succeeded") || run.stderr.contains("2 succeeded"),
        "{run:#?}"
    );
    let serial = std::fs::read(out.join("serial.csv")).unwrap();
    let split = std::fs::read(out.join("split.csv")).unwrap();
    assert_eq!(serial.iter().filter(|b| **b == b'\n').count(), 25_001);
    assert!(
        serial == split,
        "the partitioned file differs from the serial one"
    );
}

#[test]
fn validate_names_the_partition_fields_that_are_wrong() {
    let sb = Sandbox::new();
    let bad = |partition: &str, query: &str| {
        format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: r}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  source:
    sql:
      url: "postgres://db.example/shop"
      query: "{query}"
      partition: {partition}
  format: {{csv: {{}}}}
  fileName: "r.csv"
  deliverTo: [{{target: out}}]
"#
        )
    };
    for (partition, query, field, why) in [
        (
            "{column: id, parts: 1}",
            "SELECT id FROM t",
            "partition.parts",
            "give 2 to 16",
        ),
        (
            "{column: id, parts: 40}",
            "SELECT id FROM t",
            "partition.parts",
            "give 2 to 16",
        ),
        (
            "{column: \"id + 1\", parts: 2}",
            "SELECT id FROM t",
            "partition.column",
            "not a column name",
        ),
        (
            "{column: k, parts: 2}",
            "SELECT k, count(*) FROM t GROUP BY k",
            "partition",
            "GROUP BY",
        ),
    ] {
        let file = sb.write("r.yaml", &bad(partition, query));
        let run = sb.ferry(["validate", "-f", s(&file)]).failure();
        let text = format!("{}{}", run.stdout, run.stderr);
        assert!(text.contains("r.yaml:10"), "{text}");
        assert!(text.contains(&format!("spec.source.sql.{field}")), "{text}");
        assert!(text.contains(why), "{text}");
    }
}
