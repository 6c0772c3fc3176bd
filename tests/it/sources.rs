//! The SQL sources through the library API: `ferry::source::stream_sql` against a real SQLite
//! file (created here with sqlx) and a real PostgreSQL server (started by
//! `scripts/test-servers/postgres.sh`, once per test binary).

use std::path::PathBuf;

use crate::common;

use common::pg_url;
use ferry::api::{Column, CsvEncoding, CsvFormat, LineEnding, ReportFormat, Window};
use ferry::export::job::select_columns;
use ferry::export::{FormatContext, FormatWriter, Value, writer_for};
use ferry::schedule;
use ferry::source::postgres::{self, Transfer};
use ferry::source::{BATCH_ROWS, Params, RECORDS_CHUNK, SourceEvent, stream_sql};
use jiff::Zoned;
use sqlx::Connection;
use tokio::sync::mpsc;

// ---- helpers ---------------------------------------------------------------------------------

/// What a source sent, checked for order: the columns exactly once, first, then batches.
#[derive(Debug)]
struct Export {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    batch_sizes: Vec<usize>,
    count: u64,
}

impl Export {
    /// The values of one column, by name.
    fn column(&self, name: &str) -> Vec<Value> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].clone()).collect()
    }

    /// The single row, as (column, value) pairs.
    fn only_row(&self) -> Vec<(&str, Value)> {
        assert_eq!(self.rows.len(), 1, "expected one row: {:?}", self.rows);
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.rows[0].iter().cloned())
            .collect()
    }
}

async fn export(url: &str, query: &str, params: &Params) -> Result<Export, String> {
    collect(|tx| stream_sql(url, query, None, params, tx)).await
}

/// Exports from the test PostgreSQL with a chosen transfer (COPY or fetch).
async fn export_pg(query: &str, params: &Params, transfer: Transfer) -> Export {
    collect(|tx| postgres::stream_with(pg_url(), query, None, params, tx, transfer, None))
        .await
        .unwrap_or_else(|e| panic!("export ({transfer:?}) failed: {e}\nquery: {query}"))
}

/// Both ways rows can travel from PostgreSQL: every value test runs with each.
const TRANSFERS: [Transfer; 2] = [Transfer::Copy, Transfer::Fetch];

/// Runs a source writing to a channel and collects what it sent.
async fn collect<F>(source: impl FnOnce(mpsc::Sender<SourceEvent>) -> F) -> Result<Export, String>
where
    F: std::future::Future<Output = ferry::Result<u64>>,
{
    let (tx, mut rx) = mpsc::channel(4);
    let collect = async {
        let mut columns = None;
        let mut rows = Vec::new();
        let mut batch_sizes = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                SourceEvent::Columns(names) => {
                    assert!(columns.is_none(), "columns sent twice");
                    assert!(rows.is_empty(), "columns sent after rows");
                    columns = Some(names);
                }
                SourceEvent::Rows(batch) => {
                    assert!(columns.is_some(), "rows sent before the columns");
                    assert!(!batch.is_empty(), "an empty batch was sent");
                    assert!(batch.len() <= BATCH_ROWS, "a batch exceeds BATCH_ROWS");
                    batch_sizes.push(batch.len());
                    rows.extend(batch);
                }
                SourceEvent::Records(_) => panic!("records sent without an encoding"),
            }
        }
        (columns, rows, batch_sizes)
    };
    let (result, (columns, rows, batch_sizes)) = tokio::join!(source(tx), collect);
    let count = result.map_err(|e| e.to_string())?;
    assert_eq!(
        count,
        rows.len() as u64,
        "returned count differs from rows sent"
    );
    Ok(Export {
        columns: columns.expect("no columns were sent"),
        rows,
        batch_sizes,
        count,
    })
}

async fn export_ok(url: &str, query: &str, params: &Params) -> Export {
    export(url, query, params)
        .await
        .unwrap_or_else(|e| panic!("export failed: {e}\nquery: {query}"))
}

fn zoned(s: &str) -> Zoned {
    s.parse().unwrap_or_else(|e| panic!("bad zoned {s}: {e}"))
}

/// The parameters of a run of `slot` for `window`, exactly as the runner builds them.
fn params(window: Window, slot: &str, last_success: Option<&str>) -> Params {
    let slot = zoned(slot);
    let last = last_success.map(zoned);
    let bounds = schedule::window(window, &slot, last.as_ref());
    Params {
        window_start: bounds.as_ref().map(|(start, _)| start.clone()),
        window_end: bounds.map(|(_, end)| end),
        slot,
    }
}

/// A slot with no window (for queries without window parameters).
fn no_window() -> Params {
    params(Window::All, SLOT, None)
}

/// Friday 2026-07-31 00:30 in Tokyo.
const SLOT: &str = "2026-07-31T00:30:00+09:00[Asia/Tokyo]";
const LAST_SUCCESS: &str = "2026-07-30T00:30:00+09:00[Asia/Tokyo]";

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn decimal(s: &str) -> Value {
    Value::Decimal(s.to_string())
}

fn date(s: &str) -> Value {
    Value::Date(s.parse().unwrap())
}

fn datetime(s: &str) -> Value {
    Value::DateTime(s.parse().unwrap())
}

fn timestamp(s: &str) -> Value {
    Value::Timestamp(s.parse().unwrap())
}

/// A window kind, the last success, the ids it selects and the bounds bound for it.
type WindowCase = (Window, Option<&'static str>, &'static [i64], Value, Value);

fn ints(values: &[i64]) -> Vec<Value> {
    values.iter().map(|&i| Value::Int(i)).collect()
}

// ---- SQLite ----------------------------------------------------------------------------------

/// A SQLite file created by sqlx in a temp dir, and its `sqlite://` URL.
struct SqliteDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
    url: String,
}

async fn sqlite_db(script: &'static str) -> SqliteDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(script).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let url = format!("sqlite://{}", path.display());
    SqliteDb {
        _dir: dir,
        path,
        url,
    }
}

const SQLITE_TYPES: &str = r#"
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    quantity INTEGER,
    price REAL,
    name TEXT,
    payload BLOB,
    gift BOOLEAN,
    ordered_on DATE,
    picked_at TIME,
    shipped_at DATETIME,
    paid_at TIMESTAMP,
    amount DECIMAL(12,2),
    note VARCHAR(20)
);
INSERT INTO items VALUES
    (1, 3, 12.5, '受注 🍣', x'00ff10', 1, '2026-07-30', '09:15:30', '2026-07-30 10:11:12',
     '2026-07-30T10:11:12+09:00', '1234567.891', 'plain'),
    (2, -7, -0.25, '', x'', 0, 'not a date', '9am', '2026-07-30T10:11:12.5', '2026-07-30 01:11:12Z',
     '-3.25', NULL),
    (3, 0, 0.0, 'emoji 👍🏽 and kanji 漢字', NULL, NULL, NULL, NULL, NULL, NULL, 0, '12345678901234567890.123456789'),
    (4, NULL, NULL, NULL, NULL, 'true', '2026-02-28', NULL, 'someday', '2026-07-30 10:11', '12.50', NULL);
"#;

#[tokio::test]
async fn sqlite_values_follow_the_storage_class_refined_by_the_declared_type() {
    let db = sqlite_db(SQLITE_TYPES).await;
    let out = export_ok(&db.url, "SELECT * FROM items ORDER BY id", &no_window()).await;
    assert_eq!(
        out.columns,
        [
            "id",
            "quantity",
            "price",
            "name",
            "payload",
            "gift",
            "ordered_on",
            "picked_at",
            "shipped_at",
            "paid_at",
            "amount",
            "note"
        ]
    );
    assert_eq!(out.column("id"), ints(&[1, 2, 3, 4]));
    assert_eq!(
        out.column("quantity"),
        [Value::Int(3), Value::Int(-7), Value::Int(0), Value::Null]
    );
    assert_eq!(
        out.column("price"),
        [
            Value::Float(12.5),
            Value::Float(-0.25),
            Value::Float(0.0),
            Value::Null
        ]
    );
    assert_eq!(
        out.column("name"),
        [
            text("受注 🍣"),
            text(""),
            text("emoji 👍🏽 and kanji 漢字"),
            Value::Null
        ]
    );
    assert_eq!(
        out.column("payload"),
        [
            Value::Bytes(vec![0x00, 0xff, 0x10]),
            Value::Bytes(vec![]),
            Value::Null,
            Value::Null
        ]
    );
    // BOOLEAN: 0/1 (and the words) are booleans.
    assert_eq!(
        out.column("gift"),
        [
            Value::Bool(true),
            Value::Bool(false),
            Value::Null,
            Value::Bool(true)
        ]
    );
    // DATE: text that is a date is a date; other text stays text.
    assert_eq!(
        out.column("ordered_on"),
        [
            date("2026-07-30"),
            text("not a date"),
            Value::Null,
            date("2026-02-28")
        ]
    );
    assert_eq!(
        out.column("picked_at"),
        [
            Value::Time("09:15:30".parse().unwrap()),
            text("9am"),
            Value::Null,
            Value::Null
        ]
    );
    // DATETIME / TIMESTAMP: without an offset a wall-clock reading, with one an instant.
    assert_eq!(
        out.column("shipped_at"),
        [
            datetime("2026-07-30T10:11:12"),
            datetime("2026-07-30T10:11:12.5"),
            Value::Null,
            text("someday")
        ]
    );
    assert_eq!(
        out.column("paid_at"),
        [
            timestamp("2026-07-30T01:11:12Z"),
            timestamp("2026-07-30T01:11:12Z"),
            Value::Null,
            datetime("2026-07-30T10:11:00")
        ]
    );
    // DECIMAL: the exact text of what SQLite stored. SQLite stores a number written in a
    // DECIMAL column as an INTEGER or a REAL, so '12.50' comes back as 12.5 (the REAL's
    // shortest round-trip text) and a 29-digit number keeps the 17 digits a REAL holds.
    assert_eq!(
        out.column("amount"),
        [
            decimal("1234567.891"),
            decimal("-3.25"),
            decimal("0"),
            decimal("12.5")
        ]
    );
    assert_eq!(
        out.column("note"),
        [
            text("plain"),
            Value::Null,
            text("12345678901234567890.123456789"),
            Value::Null
        ]
    );
}

#[tokio::test]
async fn sqlite_decimals_are_the_exact_text_of_the_stored_number() {
    let db = sqlite_db(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, amount DECIMAL(30,9), price MONEY, label TEXT);
         INSERT INTO m VALUES
             (1, '12345678901234567890.123456789', 1, '12345678901234567890.123456789'),
             (2, -0.5, '-0.50', '-0.5'),
             (3, 0, 0.1, '0'),
             (4, 'n/a', 12, 'n/a'),
             (5, x'01', NULL, NULL);",
    )
    .await;
    let out = export_ok(&db.url, "SELECT * FROM m ORDER BY id", &no_window()).await;
    // SQLite converts numbers written into a DECIMAL/NUMERIC/MONEY column to INTEGER or REAL:
    // 29 digits become the REAL 1.2345678901234567e19, exported as the REAL's exact digits.
    assert_eq!(
        out.column("amount"),
        [
            decimal("12345678901234567000"),
            decimal("-0.5"),
            decimal("0"),
            text("n/a"),
            Value::Bytes(vec![1])
        ]
    );
    assert_eq!(
        out.column("price"),
        [
            decimal("1"),
            decimal("-0.5"),
            decimal("0.1"),
            decimal("12"),
            Value::Null
        ]
    );
    // A TEXT column keeps every digit.
    assert_eq!(
        out.column("label")[0],
        text("12345678901234567890.123456789")
    );
}

#[tokio::test]
async fn sqlite_expressions_keep_the_storage_mapping() {
    let db = sqlite_db(SQLITE_TYPES).await;
    let out = export_ok(
        &db.url,
        "SELECT gift + 0 AS g, amount || '' AS a, ordered_on AS d, 1.5 * 2 AS f, NULL AS n \
         FROM items WHERE id = 1",
        &no_window(),
    )
    .await;
    assert_eq!(
        out.only_row(),
        [
            ("g", Value::Int(1)),
            ("a", text("1234567.891")),
            // A bare column reference keeps its declared type.
            ("d", date("2026-07-30")),
            ("f", Value::Float(3.0)),
            ("n", Value::Null),
        ]
    );
}

#[tokio::test]
async fn sqlite_zero_rows_still_send_the_columns() {
    let db = sqlite_db(SQLITE_TYPES).await;
    let out = export_ok(
        &db.url,
        "SELECT id, name AS product FROM items WHERE id > 100",
        &no_window(),
    )
    .await;
    assert_eq!(out.columns, ["id", "product"]);
    assert!(out.rows.is_empty());
    assert!(out.batch_sizes.is_empty());
    assert_eq!(out.count, 0);
}

#[tokio::test]
async fn sqlite_streams_more_than_a_batch_in_several_batches_in_order() {
    let db = sqlite_db("CREATE TABLE t (a INTEGER);").await;
    let out = export_ok(
        &db.url,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         SELECT i, 'row ' || i AS label FROM n",
        &no_window(),
    )
    .await;
    assert_eq!(out.count, 5000);
    assert_eq!(out.batch_sizes, [1024, 1024, 1024, 1024, 904]);
    let expected: Vec<Vec<Value>> = (1..=5000)
        .map(|i| vec![Value::Int(i), text(&format!("row {i}"))])
        .collect();
    assert_eq!(out.rows, expected);
}

const SQLITE_EVENTS: &str = r#"
CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
INSERT INTO events VALUES
    (1, '2026-05-31T23:59:59+09:00'),  -- before June
    (2, '2026-06-01T00:00:00+09:00'),  -- first instant of June (Tokyo)
    (3, '2026-06-30T14:59:59Z'),       -- last second of June in Tokyo, written in UTC
    (4, '2026-07-20T00:00:00+09:00'),  -- Monday of the previous week
    (5, '2026-07-26T23:59:59+09:00'),  -- Sunday night, still the previous week
    (6, '2026-07-27T00:00:00+09:00'),  -- Monday of the slot's week
    (7, '2026-07-29T23:59:59+09:00'),  -- the day before yesterday
    (8, '2026-07-30T00:00:00+09:00'),  -- yesterday, first instant
    (9, '2026-07-30T00:30:00+09:00'),  -- the last success
    (10, '2026-07-30T15:00:00Z'),      -- today 00:00 in Tokyo: excluded from yesterday
    (11, '2026-07-31T00:29:59+09:00'), -- just before the slot
    (12, '2026-07-31T00:30:00+09:00'); -- the slot itself
"#;

/// The same filter for every window kind; `all` binds NULL bounds.
const SQLITE_WINDOW_QUERY: &str = "
    SELECT id, :slot AS slot, :window_start AS window_start, :window_end AS window_end
    FROM events
    WHERE (:window_start IS NULL OR unixepoch(at) >= unixepoch(:window_start))
      AND (:window_end IS NULL OR unixepoch(at) < unixepoch(:window_end))
    ORDER BY id";

#[tokio::test]
async fn sqlite_window_parameters_filter_each_kind_of_window() {
    let db = sqlite_db(SQLITE_EVENTS).await;
    let cases: [WindowCase; 6] = [
        (
            Window::All,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            Value::Null,
            Value::Null,
        ),
        (
            Window::PreviousDay,
            None,
            &[8, 9],
            text("2026-07-30T00:00:00+09:00"),
            text("2026-07-31T00:00:00+09:00"),
        ),
        (
            Window::PreviousWeek,
            None,
            &[4, 5],
            text("2026-07-20T00:00:00+09:00"),
            text("2026-07-27T00:00:00+09:00"),
        ),
        (
            Window::PreviousMonth,
            None,
            &[2, 3],
            text("2026-06-01T00:00:00+09:00"),
            text("2026-07-01T00:00:00+09:00"),
        ),
        (
            Window::SinceLastSuccess,
            Some(LAST_SUCCESS),
            &[9, 10, 11],
            text("2026-07-30T00:30:00+09:00"),
            text("2026-07-31T00:30:00+09:00"),
        ),
        (
            // Never succeeded: from the epoch (shown in the zone's offset).
            Window::SinceLastSuccess,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            text("1970-01-01T09:00:00+09:00"),
            text("2026-07-31T00:30:00+09:00"),
        ),
    ];
    for (window, last, ids, start, end) in cases {
        let out = export_ok(&db.url, SQLITE_WINDOW_QUERY, &params(window, SLOT, last)).await;
        assert_eq!(
            out.column("id"),
            ints(ids),
            "{window:?} (last success {last:?})"
        );
        if !ids.is_empty() {
            assert_eq!(
                out.rows[0][1],
                text("2026-07-31T00:30:00+09:00"),
                "{window:?}"
            );
            assert_eq!(out.rows[0][2], start, "{window:?}");
            assert_eq!(out.rows[0][3], end, "{window:?}");
        }
    }
}

#[tokio::test]
async fn sqlite_a_missing_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("shop.db");
    let err = export(
        &format!("sqlite:{}", path.display()),
        "SELECT 1",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "source: the SQLite database `{}` does not exist",
            path.display()
        )
    );
    // Nothing was created by trying.
    assert!(!path.parent().unwrap().exists());

    let err = export("sqlite://no/such/relative.db", "SELECT 1", &no_window())
        .await
        .unwrap_err();
    assert!(
        err.starts_with("source: the SQLite database `no/such/relative.db` does not exist (relative to the working directory `"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_a_bad_query_is_an_error_with_sqlites_reason() {
    let db = sqlite_db(SQLITE_TYPES).await;
    let err = export(&db.url, "SELECT * FROM orders", &no_window())
        .await
        .unwrap_err();
    assert_eq!(err, "source: SQLite query failed: no such table: orders");

    let err = export(&db.url, "SELECT nam FROM items", &no_window())
        .await
        .unwrap_err();
    assert_eq!(err, "source: SQLite query failed: no such column: nam");

    let err = export(&db.url, "SELECT 1; SELECT 2", &no_window())
        .await
        .unwrap_err();
    assert!(err.contains("more than one statement"), "{err}");

    // A trailing semicolon and comment are fine.
    let out = export_ok(&db.url, "SELECT 1 AS one; -- done\n", &no_window()).await;
    assert_eq!(out.column("one"), ints(&[1]));
}

#[tokio::test]
async fn sqlite_unknown_and_positional_parameters_are_refused_before_opening() {
    let err = export(
        "sqlite:/nonexistent.db",
        "SELECT * FROM t WHERE d >= :since",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "source: line 1: unknown query parameter `:since` (known parameters: :window_start, \
         :window_end, :slot)"
    );
    let db = sqlite_db(SQLITE_TYPES).await;
    let err = export(&db.url, "SELECT * FROM items WHERE id = ?", &no_window())
        .await
        .unwrap_err();
    assert!(err.contains("positional parameter `?`"), "{err}");
    let err = export(&db.url, "SELECT * FROM items WHERE id = @id", &no_window())
        .await
        .unwrap_err();
    assert!(
        err.contains("parameters Ferry does not bind (@id)"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_databases_are_opened_read_only() {
    let db = sqlite_db(SQLITE_TYPES).await;
    let before = std::fs::read(&db.path).unwrap();
    let err = export(&db.url, "DELETE FROM items RETURNING id", &no_window())
        .await
        .unwrap_err();
    assert!(err.contains("would modify the database"), "{err}");
    let err = export(
        &db.url,
        "WITH x AS (SELECT 1) INSERT INTO items (id) SELECT 99 FROM x",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("would modify the database"), "{err}");
    assert_eq!(std::fs::read(&db.path).unwrap(), before);
}

#[tokio::test]
async fn sqlite_a_closed_receiver_stops_the_query() {
    let db = sqlite_db("CREATE TABLE t (a INTEGER);").await;
    let (tx, mut rx) = mpsc::channel(1);
    let query = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n";
    let reader = async move {
        // Take the columns and one batch, then hang up.
        let first = rx.recv().await;
        assert!(matches!(first, Some(SourceEvent::Columns(_))));
        let second = rx.recv().await;
        assert!(matches!(second, Some(SourceEvent::Rows(_))));
        drop(rx);
    };
    let params = no_window();
    let (result, ()) = tokio::join!(stream_sql(&db.url, query, None, &params, tx), reader);
    assert_eq!(result.unwrap_err().to_string(), "source: export cancelled");
}

// ---- PostgreSQL ------------------------------------------------------------------------------

async fn pg_setup(sql: &'static str) {
    let mut conn = sqlx::PgConnection::connect(pg_url()).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn postgres_values_map_by_column_type() {
    pg_setup(
        "DO $$ BEGIN CREATE TYPE sources_mood AS ENUM ('happy', 'sad'); \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         CREATE EXTENSION IF NOT EXISTS citext;",
    )
    .await;
    let query = r#"
        SELECT true AS b, false AS b2,
               32767::int2 AS i2, (-2147483647 - 1)::int4 AS i4, '-9223372036854775808'::int8 AS i8,
               0.1::float4 AS f4, 1e300::float8 AS f8, 'NaN'::float8 AS f8_nan,
               '受注 🍣'::text AS t, 'vc'::varchar(5) AS vc, 'ab'::char(4) AS bp, 'nm'::name AS nm,
               'x'::"char" AS ch, 'MiXeD'::citext AS ci, 'happy'::sources_mood AS mood,
               '2026-07-30'::date AS d, '23:59:58.25'::time AS tm,
               '2026-07-30 10:11:12.345678'::timestamp AS ts,
               '2026-07-30 10:11:12+09'::timestamptz AS tstz,
               'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS id,
               '{"b": 1, "a": [1, 2]}'::json AS js, '{"b": 1, "a": [1, 2]}'::jsonb AS jsb,
               '\x00ff10'::bytea AS raw, interval '1 day 2 hours' AS iv,
               'infinity'::date AS d_inf, '-infinity'::timestamptz AS ts_inf
    "#;
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(query, &no_window(), transfer).await;
        let expected = [
            ("b", Value::Bool(true)),
            ("b2", Value::Bool(false)),
            ("i2", Value::Int(32767)),
            ("i4", Value::Int(-2147483648)),
            ("i8", Value::Int(i64::MIN)),
            // float4 through its shortest text: 0.1, not 0.10000000149011612.
            ("f4", Value::Float(0.1)),
            ("f8", Value::Float(1e300)),
            ("f8_nan", Value::Float(f64::NAN)),
            ("t", text("受注 🍣")),
            ("vc", text("vc")),
            ("bp", text("ab  ")),
            ("nm", text("nm")),
            ("ch", text("x")),
            ("ci", text("MiXeD")),
            ("mood", text("happy")),
            ("d", date("2026-07-30")),
            ("tm", Value::Time("23:59:58.25".parse().unwrap())),
            ("ts", datetime("2026-07-30T10:11:12.345678")),
            ("tstz", timestamp("2026-07-30T01:11:12Z")),
            ("id", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            ("js", text(r#"{"b": 1, "a": [1, 2]}"#)),
            ("jsb", text(r#"{"a": [1, 2], "b": 1}"#)),
            ("raw", Value::Bytes(vec![0x00, 0xff, 0x10])),
            ("iv", text("P1DT2H")),
            ("d_inf", text("infinity")),
            ("ts_inf", text("-infinity")),
        ];
        assert_eq!(comparable(out.only_row()), comparable(expected.to_vec()));
    }
}

/// NaN is not equal to itself: compare it as a marker.
fn comparable(row: Vec<(&str, Value)>) -> Vec<(String, Value)> {
    row.into_iter()
        .map(|(name, value)| match value {
            Value::Float(f) if f.is_nan() => (name.to_string(), text("<NaN>")),
            other => (name.to_string(), other),
        })
        .collect()
}

#[tokio::test]
async fn postgres_nulls_of_every_type_are_null() {
    let query = "
        SELECT NULL::bool AS b, NULL::int2 AS i2, NULL::int4 AS i4, NULL::int8 AS i8,
               NULL::float4 AS f4, NULL::float8 AS f8, NULL::numeric AS n, NULL::text AS t,
               NULL::varchar AS vc, NULL::date AS d, NULL::time AS tm, NULL::timestamp AS ts,
               NULL::timestamptz AS tstz, NULL::uuid AS id, NULL::json AS js, NULL::jsonb AS jsb,
               NULL::bytea AS raw, NULL::interval AS iv, NULL AS unknown";
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(query, &no_window(), transfer).await;
        assert_eq!(out.columns.len(), 19);
        assert_eq!(out.rows, [vec![Value::Null; 19]]);
    }
}

#[tokio::test]
async fn postgres_numerics_keep_their_exact_digits() {
    let values = [
        "12345678901234567890.123456789",
        "-12345678901234567890.123456789",
        "0",
        "0.00",
        "-0.001",
        "0.00001234",
        "1e-20",
        "100000000",
        "10000.0000",
        "9999.9999",
        "-1",
        "123456789012345678901234567890123456789",
        "0.1",
        "3.14159265358979323846264338327950288419716939937510",
        "NaN",
        "Infinity",
        "-Infinity",
    ];
    let list: Vec<String> = values.iter().map(|v| format!("('{v}'::numeric)")).collect();
    let query = format!(
        "SELECT v, v::text AS printed FROM (VALUES {}) AS t(v)",
        list.join(", ")
    );
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(&query, &no_window(), transfer).await;
        assert_eq!(out.count, values.len() as u64);
        for row in &out.rows {
            let Value::Text(printed) = &row[1] else {
                panic!("{row:?}")
            };
            let expected = if matches!(printed.as_str(), "NaN" | "Infinity" | "-Infinity") {
                text(printed)
            } else {
                decimal(printed)
            };
            assert_eq!(row[0], expected, "PostgreSQL prints {printed}");
        }
        assert_eq!(out.rows[0][0], decimal("12345678901234567890.123456789"));
        assert_eq!(out.rows[4][0], decimal("-0.001"));
        assert_eq!(out.rows[6][0], decimal("0.00000000000000000001"));
    }
}

#[tokio::test]
async fn postgres_intervals_read_like_postgres_iso_8601_style() {
    let values = [
        "1 day 2 hours",
        "1 year 2 months",
        "0.5 seconds",
        "0",
        "-1 day",
        "-1 hour -1 minute -30 seconds",
        "-13 months 3 days 61.000001 seconds",
        "1 day -1 second",
        "3 weeks",
    ];
    let list: Vec<String> = values.iter().map(|v| format!("(interval '{v}')")).collect();
    let query = format!(
        "SELECT v, v::text AS printed FROM (VALUES {}) AS t(v)",
        list.join(", ")
    );
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(&query, &no_window(), transfer).await;
        for row in &out.rows {
            assert_eq!(row[0], row[1]);
        }
        assert_eq!(out.rows[0][0], text("P1DT2H"));
        assert_eq!(out.rows[3][0], text("PT0S"));
    }
}

#[tokio::test]
async fn postgres_dates_and_timestamps_with_and_without_zone() {
    let query = "
        SELECT '1999-12-31'::date AS d1, '0001-01-01'::date AS d2, '2024-02-29'::date AS d3,
               '1999-12-31 23:59:59.999999'::timestamp AS ts1,
               '1970-01-01 00:00:00'::timestamp AS ts2,
               '2026-03-29 02:30:00'::timestamp AS ts3,
               '2026-07-30 00:00:00+09'::timestamptz AS tz1,
               '1960-06-15 12:00:00.5Z'::timestamptz AS tz2,
               '00:00:00'::time AS t1, '24:00:00'::time AS t2";
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(query, &no_window(), transfer).await;
        assert_eq!(
            out.only_row(),
            [
                ("d1", date("1999-12-31")),
                ("d2", date("0001-01-01")),
                ("d3", date("2024-02-29")),
                ("ts1", datetime("1999-12-31T23:59:59.999999")),
                ("ts2", datetime("1970-01-01T00:00:00")),
                ("ts3", datetime("2026-03-29T02:30:00")),
                ("tz1", timestamp("2026-07-29T15:00:00Z")),
                ("tz2", timestamp("1960-06-15T12:00:00.5Z")),
                ("t1", Value::Time("00:00:00".parse().unwrap())),
                ("t2", text("24:00:00")),
            ]
        );
    }
}

#[tokio::test]
async fn postgres_sessions_run_in_the_schedules_time_zone() {
    let query = "SELECT current_setting('TimeZone') AS zone, \
                 (timestamptz '2026-07-30 15:30:00Z')::date AS local_day";
    let out = export_ok(pg_url(), query, &no_window()).await;
    assert_eq!(
        out.only_row(),
        [
            ("zone", text("Asia/Tokyo")),
            ("local_day", date("2026-07-31"))
        ]
    );
    let paris = params(Window::All, "2026-07-31T00:30:00+02:00[Europe/Paris]", None);
    let out = export_ok(pg_url(), query, &paris).await;
    assert_eq!(
        out.only_row(),
        [
            ("zone", text("Europe/Paris")),
            ("local_day", date("2026-07-30"))
        ]
    );
}

#[tokio::test]
async fn postgres_zero_rows_still_send_the_columns() {
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(
            "SELECT 1::int AS id, 'x'::text AS product, now() AS at WHERE false",
            &no_window(),
            transfer,
        )
        .await;
        assert_eq!(out.columns, ["id", "product", "at"]);
        assert!(out.rows.is_empty());
        assert_eq!(out.count, 0);
    }
}

#[tokio::test]
async fn postgres_streams_more_than_a_batch_in_several_batches_in_order() {
    for transfer in TRANSFERS {
        println!("transfer: {transfer:?}");
        let out = export_pg(
            "SELECT i, 'row ' || i AS label FROM generate_series(1, 5000) AS i ORDER BY i",
            &no_window(),
            transfer,
        )
        .await;
        assert_eq!(out.count, 5000);
        assert_eq!(out.batch_sizes, [1024, 1024, 1024, 1024, 904]);
        let expected: Vec<Vec<Value>> = (1..=5000)
            .map(|i| vec![Value::Int(i), text(&format!("row {i}"))])
            .collect();
        assert_eq!(out.rows, expected);
    }
}

/// The CSV file of `query` both ways a PostgreSQL export can make it: from records the source
/// encodes as it decodes each COPY row (with the encoding UTF-8 CSV files give it), and from
/// the rows it decodes, written by the CSV writer. Returns both files and the row count.
async fn pg_csv_both_ways(
    query: &str,
    opts: &CsvFormat,
    zone: &str,
    selection: &[Column],
) -> (Vec<u8>, Vec<u8>, u64) {
    let time_zone = jiff::tz::TimeZone::get(zone).unwrap();
    let ctx = FormatContext {
        title: "both ways".into(),
        generated_at: Zoned::now().with_time_zone(time_zone.clone()),
        time_zone,
    };
    let format = ReportFormat::Csv(opts.clone());
    let encoding = ferry::export::record_encoding(&format, &ctx, selection)
        .unwrap()
        .expect("UTF-8 CSV has an encoding");
    let params = no_window();
    let dir = tempfile::tempdir().unwrap();

    let path = dir.path().join("records.csv");
    let mut writer: Box<dyn FormatWriter> = writer_for(&format, &path, &ctx).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let gather = async {
        let (mut rows, mut chunks) = (0, 0);
        while let Some(event) = rx.recv().await {
            match event {
                SourceEvent::Columns(names) => {
                    assert_eq!(chunks, 0, "columns after records");
                    writer
                        .begin(&select_columns(&names, selection).unwrap().0)
                        .unwrap();
                }
                SourceEvent::Rows(_) => panic!("rows sent to a consumer with an encoding"),
                SourceEvent::Records(r) => {
                    assert!(r.rows > 0 && !r.bytes.is_empty(), "an empty chunk was sent");
                    writer.records(&r.bytes).unwrap();
                    rows += r.rows;
                    chunks += 1;
                }
            }
        }
        rows
    };
    let reader = postgres::stream_with(
        pg_url(),
        query,
        None,
        &params,
        tx,
        Transfer::Copy,
        Some(encoding),
    );
    let (count, rows) = tokio::join!(reader, gather);
    assert_eq!(count.unwrap(), rows, "the count returned is the rows sent");
    writer.finish().unwrap();
    let encoded = std::fs::read(&path).unwrap();

    let out = export_pg(query, &params, Transfer::Copy).await;
    assert_eq!(out.count, rows);
    let (specs, picks) = select_columns(&out.columns, selection).unwrap();
    let path = dir.path().join("rows.csv");
    let mut writer: Box<dyn FormatWriter> = writer_for(&format, &path, &ctx).unwrap();
    writer.begin(&specs).unwrap();
    for (i, row) in out.rows.iter().enumerate() {
        let picked: Vec<Value> = picks.iter().map(|&p| row[p].clone()).collect();
        writer.row(i as u64 + 1, &picked).unwrap();
    }
    writer.finish().unwrap();
    (encoded, std::fs::read(&path).unwrap(), rows)
}

/// Every type and awkward value: a file of the records a COPY encodes itself is byte for byte
/// the file the CSV writer makes of the decoded rows, for each delimiter, line ending, byte
/// order mark, zone and column selection, in chunks of many rows.
#[tokio::test]
async fn postgres_records_encoded_by_the_source_are_the_csv_writers_bytes() {
    let query = r#"
        SELECT i, i % 2 = 0 AS even, (i % 4000 * 7)::int2 AS small, i::int8 * 1000003 AS big,
               (i / 7.0)::float4 AS f4, CASE WHEN i % 11 = 0 THEN 'NaN'::float8
                                             WHEN i % 13 = 0 THEN 1e20 ELSE i / 3.0 END AS f8,
               (i * 12.345)::numeric(14,3) AS amount,
               CASE WHEN i % 17 = 0 THEN 'NaN'::numeric ELSE i * 0.0001 END AS tiny,
               CASE i % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'say "hi", ok'
                          WHEN 3 THEN E'two\nlines'
                          WHEN 4 THEN E'受注 🍣;tab\tend'
                          ELSE 'plain ' || i END AS label,
               date '2024-02-29' + i AS day, time '00:00:00' + i * interval '17 seconds' AS tm,
               timestamp '2026-03-29 01:00:00' + i * interval '97 seconds' AS local_at,
               timestamptz '2026-10-25 00:00:00Z' + i * interval '89 seconds' AS at,
               CASE WHEN i % 19 = 0 THEN 'infinity'::timestamptz END AS inf,
               md5(i::text)::uuid AS id, ('{"i": ' || i || '}')::jsonb AS js,
               decode(lpad(to_hex(i), 8, '0'), 'hex') AS raw,
               i * interval '1 hour 1 second' AS iv
        FROM generate_series(1, 6000) AS i ORDER BY i"#;
    let lf = CsvFormat {
        line_ending: LineEnding::Lf,
        ..CsvFormat::default()
    };
    let semicolon = CsvFormat {
        delimiter: ";".into(),
        encoding: CsvEncoding::Utf8Bom,
        ..CsvFormat::default()
    };
    let no_header = CsvFormat {
        header: false,
        ..CsvFormat::default()
    };
    let tab = CsvFormat {
        delimiter: "\t".into(),
        ..CsvFormat::default()
    };
    let picked = [
        Column {
            name: "label".into(),
            header: Some("Label".into()),
        },
        Column {
            name: "at".into(),
            header: None,
        },
        Column {
            name: "i".into(),
            header: None,
        },
    ];
    for (opts, zone, selection) in [
        (&CsvFormat::default(), "Asia/Tokyo", &[][..]),
        (&lf, "Europe/Amsterdam", &[][..]),
        (&semicolon, "America/St_Johns", &picked[..]),
        (&tab, "UTC", &picked[..]),
        (&no_header, "Asia/Kathmandu", &[][..]),
    ] {
        let (encoded, written, rows) = pg_csv_both_ways(query, opts, zone, selection).await;
        assert_eq!(rows, 6000);
        // More than one chunk went through the channel.
        assert!(encoded.len() > RECORDS_CHUNK || !selection.is_empty());
        assert!(
            encoded == written,
            "{opts:?} {zone}: the file of encoded records differs from the file of rows"
        );
    }
}

/// Events around the windows of the slot 2026-07-31 00:30 Tokyo, as a VALUES list.
const PG_WINDOW_QUERY: &str = "
    WITH events(id, at) AS (VALUES
        (1, timestamptz '2026-05-31 23:59:59+09'),
        (2, timestamptz '2026-06-01 00:00:00+09'),
        (3, timestamptz '2026-06-30 14:59:59Z'),
        (4, timestamptz '2026-07-20 00:00:00+09'),
        (5, timestamptz '2026-07-26 23:59:59+09'),
        (6, timestamptz '2026-07-27 00:00:00+09'),
        (7, timestamptz '2026-07-29 23:59:59+09'),
        (8, timestamptz '2026-07-30 00:00:00+09'),
        (9, timestamptz '2026-07-30 00:30:00+09'),
        (10, timestamptz '2026-07-30 15:00:00Z'),
        (11, timestamptz '2026-07-31 00:29:59+09'),
        (12, timestamptz '2026-07-31 00:30:00+09'))
    SELECT id, :slot AS slot, :window_start AS window_start, :window_end AS window_end
    FROM events
    WHERE (:window_start IS NULL OR at >= :window_start)
      AND (:window_end IS NULL OR at < :window_end)
    ORDER BY id";

#[tokio::test]
async fn postgres_window_parameters_are_timestamptz_and_filter_each_kind_of_window() {
    let cases: [WindowCase; 6] = [
        (
            Window::All,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            Value::Null,
            Value::Null,
        ),
        (
            Window::PreviousDay,
            None,
            &[8, 9],
            timestamp("2026-07-29T15:00:00Z"),
            timestamp("2026-07-30T15:00:00Z"),
        ),
        (
            Window::PreviousWeek,
            None,
            &[4, 5],
            timestamp("2026-07-19T15:00:00Z"),
            timestamp("2026-07-26T15:00:00Z"),
        ),
        (
            Window::PreviousMonth,
            None,
            &[2, 3],
            timestamp("2026-05-31T15:00:00Z"),
            timestamp("2026-06-30T15:00:00Z"),
        ),
        (
            Window::SinceLastSuccess,
            Some(LAST_SUCCESS),
            &[9, 10, 11],
            timestamp("2026-07-29T15:30:00Z"),
            timestamp("2026-07-30T15:30:00Z"),
        ),
        (
            Window::SinceLastSuccess,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            timestamp("1970-01-01T00:00:00Z"),
            timestamp("2026-07-30T15:30:00Z"),
        ),
    ];
    for (window, last, ids, start, end) in cases {
        let params = params(window, SLOT, last);
        for transfer in TRANSFERS {
            println!("transfer: {transfer:?}");
            let out = export_pg(PG_WINDOW_QUERY, &params, transfer).await;
            assert_eq!(
                out.column("id"),
                ints(ids),
                "{window:?} (last success {last:?})"
            );
            assert_eq!(
                out.rows[0][1],
                timestamp("2026-07-30T15:30:00Z"),
                "{window:?}"
            );
            assert_eq!(out.rows[0][2], start, "{window:?}");
            assert_eq!(out.rows[0][3], end, "{window:?}");
        }
    }
}

#[tokio::test]
async fn postgres_a_wrong_password_is_a_clear_error_without_the_password() {
    let url = pg_url().replace("ferry:ferry@", "ferry:wrong-secret-pw@");
    let err = export(&url, "SELECT 1", &no_window()).await.unwrap_err();
    assert_eq!(
        err,
        "source: cannot connect to PostgreSQL at 127.0.0.1:55432 (database ferry_test, user \
         ferry): password authentication failed for user \"ferry\""
    );
    assert!(!err.contains("wrong-secret-pw"));

    // Nobody listening: still no URL in the message.
    let url = "postgres://ferry:wrong-secret-pw@127.0.0.1:1/ferry_test";
    let err = export(url, "SELECT 1", &no_window()).await.unwrap_err();
    assert!(
        err.starts_with("source: cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-pw"), "{err}");

    // A URL that does not parse: neither the URL nor the password is echoed.
    let url = "postgres://ferry:wrong-secret-pw@127.0.0.1:port/ferry_test";
    let err = export(url, "SELECT 1", &no_window()).await.unwrap_err();
    assert!(err.starts_with("source: invalid PostgreSQL URL"), "{err}");
    assert!(!err.contains("wrong-secret-pw"), "{err}");
}

#[tokio::test]
async fn postgres_a_bad_query_is_an_error_with_the_servers_reason_and_line() {
    let err = export(
        pg_url(),
        "SELECT id\nFROM sources_no_such_table",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "source: PostgreSQL query failed: relation \"sources_no_such_table\" does not exist \
         (line 2 of the query)"
    );
    let err = export(pg_url(), "SELECT 1/0 AS x", &no_window())
        .await
        .unwrap_err();
    assert_eq!(err, "source: PostgreSQL query failed: division by zero");
}

#[tokio::test]
async fn postgres_unsupported_types_name_the_column_and_suggest_a_cast() {
    let err = export(
        pg_url(),
        "SELECT 1 AS id, ARRAY[1, 2] AS tags",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "source: column `tags` has type int4[], which Ferry cannot export; convert it in the \
         query, e.g. CAST(tags AS text)"
    );
    let err = export(pg_url(), "SELECT '127.0.0.1'::inet AS ip", &no_window())
        .await
        .unwrap_err();
    assert!(err.contains("column `ip` has type inet"), "{err}");
    // The suggested cast works.
    let out = export_ok(
        pg_url(),
        "SELECT CAST(ARRAY[1, 2] AS text) AS tags",
        &no_window(),
    )
    .await;
    assert_eq!(out.only_row(), [("tags", text("{1,2}"))]);
}

#[tokio::test]
async fn postgres_reports_run_read_only() {
    pg_setup("CREATE SEQUENCE IF NOT EXISTS sources_seq").await;
    let err = export(pg_url(), "SELECT nextval('sources_seq') AS n", &no_window())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "source: PostgreSQL query failed: cannot execute nextval() in a read-only transaction"
    );
    let err = export(
        pg_url(),
        "CREATE TABLE sources_must_not_exist (a int)",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("the query returns no columns"), "{err}");
}

#[tokio::test]
async fn postgres_errors_while_rows_stream_name_the_line() {
    let err = export(
        pg_url(),
        "SELECT i,\n  10 / (i - 3) AS x\nFROM generate_series(1, 5) AS i;",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(err, "source: PostgreSQL query failed: division by zero");
    let err = export(
        pg_url(),
        "SELECT i\nFROM generate_series(1, 5) AS i\nWHERE i::text::int4 > 'x'::int4",
        &no_window(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "source: PostgreSQL query failed: invalid input syntax for type integer: \"x\" (line 3 \
         of the query)"
    );
}

#[tokio::test]
async fn postgres_a_closed_receiver_stops_the_query() {
    let (tx, mut rx) = mpsc::channel(1);
    let query = "SELECT generate_series(1, 1000000000) AS i";
    let reader = async move {
        assert!(matches!(rx.recv().await, Some(SourceEvent::Columns(_))));
        assert!(matches!(rx.recv().await, Some(SourceEvent::Rows(_))));
        drop(rx);
    };
    let started = std::time::Instant::now();
    let params = no_window();
    let (result, ()) = tokio::join!(stream_sql(pg_url(), query, None, &params, tx), reader);
    assert_eq!(result.unwrap_err().to_string(), "source: export cancelled");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn postgres_statements_copy_cannot_run_are_fetched_instead() {
    let out = export_ok(pg_url(), "SHOW TimeZone", &no_window()).await;
    assert_eq!(out.only_row(), [("TimeZone", text("Asia/Tokyo"))]);
    let out = export_ok(pg_url(), "EXPLAIN (COSTS OFF) SELECT 1", &no_window()).await;
    assert_eq!(out.only_row(), [("QUERY PLAN", text("Result"))]);

    // Forced to COPY, the same statement is the server's error.
    let params = no_window();
    let err = collect(|tx| {
        postgres::stream_with(
            pg_url(),
            "SHOW TimeZone",
            None,
            &params,
            tx,
            Transfer::Copy,
            None,
        )
    })
    .await
    .unwrap_err();
    assert!(
        err.starts_with("source: PostgreSQL query failed: syntax error"),
        "{err}"
    );
}
