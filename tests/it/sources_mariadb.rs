//! The MySQL / MariaDB source, end to end through the binary against the test MariaDB
//! (`scripts/test-servers/mariadb.sh`, started once per test binary): every column type to
//! the exact CSV text, TIMESTAMP as instants in two schedule zones, the time window's named
//! parameters, a write refused at validate, zero dates refused with their row and column and
//! a failed run recorded, connection errors without the password, and a large result
//! streamed. Each test uses tables of its own (`mdb_<test>`), as the tests run in parallel.

use crate::common;

use std::path::PathBuf;

use common::{Sandbox, diag_at, line_col, mariadb_url, s};
use sqlx::Connection;

/// Runs `script` (several statements) on the test database, in a session whose clock is UTC
/// and whose SQL mode allows zero dates (to store the bad data a customer may have).
async fn mariadb(script: &str) {
    let mut conn = sqlx::MySqlConnection::connect(mariadb_url())
        .await
        .expect("connect to the test MariaDB");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET time_zone = '+00:00', sql_mode = '';\n{script}"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}\n{script}"));
    conn.close().await.unwrap();
}

fn setup(script: &str) {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(mariadb(script));
}

/// A daily 00:30 schedule `name` in `zone` exporting `query` to CSV in `out/`, reading the
/// database whose URL is in the Secret `shop-db`.
fn schedule(name: &str, zone: &str, window: &str, query: &str) -> String {
    let query: String = query.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: {name}}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: {zone}
  source:
    sql:
      connectionSecretRef: {{name: shop-db, key: url}}
      query: |
{query}    window: {window}
  format: {{csv: {{}}}}
  fileName: "{name}.csv"
  deliverTo: [{{target: out}}]
  retry: {{attempts: 1, backoff: 1s}}
"#
    )
}

const TARGET: &str = "apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: out}
spec:
  localDir: {path: out}
";

/// A sandbox whose Secret `shop-db` holds `url`, with `schedules` applied.
fn sandbox(url: &str, schedules: &[String]) -> (Sandbox, PathBuf) {
    let mut sb = Sandbox::new();
    sb.write_secret("default", "shop-db", "url", url);
    let mut docs = vec![TARGET.to_string()];
    docs.extend(schedules.iter().cloned());
    let files = sb.write("shop.yaml", &docs.join("---\n"));
    sb.set_env("FERRY_NOW", "2026-07-30T10:00:00Z");
    sb.apply(&[&files]).success();
    (sb, files)
}

/// `ferry run-now rs/<name>` for the slot 2026-07-31 00:30 in the schedule's zone.
fn run_now(sb: &Sandbox, name: &str, slot: &str) -> common::Run {
    sb.ferry(["run-now", &format!("rs/{name}"), "--slot", slot])
}

fn csv(sb: &Sandbox, name: &str) -> String {
    let path = sb.root().join("out").join(format!("{name}.csv"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn history(sb: &Sandbox, name: &str) -> serde_json::Value {
    sb.ferry(["history", &format!("rs/{name}"), "-o", "json"])
        .success()
        .json()
}

const TOKYO_SLOT: &str = "2026-07-31T00:30:00+09:00";

#[test]
fn every_column_type_reaches_the_csv_exactly_and_timestamps_follow_the_schedules_zone() {
    setup(
        "DROP TABLE IF EXISTS mdb_types;
         CREATE TABLE mdb_types (
           id INT PRIMARY KEY,
           tiny TINYINT, small SMALLINT UNSIGNED, big BIGINT UNSIGNED, neg BIGINT,
           amount DECIMAL(38,10), f FLOAT, d DOUBLE,
           name VARCHAR(40), note TEXT, raw VARBINARY(8), data BLOB,
           day DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, t TIME(2), y YEAR,
           flag BOOLEAN, bit1 BIT(1), doc JSON, size ENUM('small', 'large')
         ) CHARACTER SET utf8mb4;
         INSERT INTO mdb_types VALUES
           (1, -128, 65535, 18446744073709551615, -9223372036854775808,
            '1234567890123456789012345678.1234567890', 0.1, 2.5,
            'りんご 🍎, \"ripe\"', 'line one\nline two', X'00FF10', X'CAFE',
            '2026-07-30', '2026-07-30 23:59:59.123456', '2026-07-30 01:02:03.500000',
            '13:05:09.25', 2026, TRUE, b'1', '{\"a\": [1, \"é\"]}', 'large'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (3, 0, 0, 0, 0, '-0.0000000001', -1.5, 1e20,
            '', '', X'', X'', '1000-01-01', '2026-03-08 02:30:00', '2026-12-31 15:00:00',
            '-01:30:00', 1901, FALSE, b'0', '[]', 'small'),
           (4, 5, 1, 9223372036854775807, 1, '0.0000000000', 0, 0, 'x', 'x', X'01', X'02',
            '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999',
            '100:00:00', 2155, 7, b'1', 'null', 'small');",
    );
    let query = "SELECT * FROM mdb_types ORDER BY id";
    let (sb, _) = sandbox(
        mariadb_url(),
        &[
            schedule("tokyo", "Asia/Tokyo", "all", query),
            schedule("newyork", "America/New_York", "all", query),
        ],
    );
    let run = run_now(&sb, "tokyo", TOKYO_SLOT).success();
    assert!(run.stdout.contains("succeeded, 4 rows"), "{run:#?}");
    let header =
        "id,tiny,small,big,neg,amount,f,d,name,note,raw,data,day,dt,ts,t,y,flag,bit1,doc,size\r\n";
    // DATETIME and DATE are written as stored; TIMESTAMP (stored as UTC) in the zone.
    assert_eq!(
        csv(&sb, "tokyo"),
        format!(
            "{header}\
             1,-128,65535,18446744073709551615,-9223372036854775808,\
             1234567890123456789012345678.1234567890,0.1,2.5,\
             \"りんご 🍎, \"\"ripe\"\"\",\"line one\nline two\",00ff10,cafe,\
             2026-07-30,2026-07-30T23:59:59.123456,2026-07-30T10:02:03.5+09:00,\
             13:05:09.25,2026,true,1,\"{{\"\"a\"\": [1, \"\"é\"\"]}}\",large\r\n\
             2,,,,,,,,,,,,,,,,,,,,\r\n\
             3,0,0,0,0,-0.0000000001,-1.5,100000000000000000000,,,,,1000-01-01,2026-03-08T02:30:00,\
             2027-01-01T00:00:00+09:00,-01:30:00,1901,false,0,[],small\r\n\
             4,5,1,9223372036854775807,1,0.0000000000,0,0,x,x,01,02,9999-12-31,\
             9999-12-31T23:59:59.999999,2038-01-19T12:14:07.999999+09:00,100:00:00,2155,7,1,\
             null,small\r\n"
        )
    );
    // The same instants from New York (summer time in July, standard time in December);
    // the civil values do not move.
    let run = run_now(&sb, "newyork", "2026-07-31T00:30:00-04:00").success();
    assert!(run.stdout.contains("succeeded, 4 rows"), "{run:#?}");
    let ny = csv(&sb, "newyork");
    let rows: Vec<&str> = ny.split("\r\n").collect();
    assert!(
        rows[1].contains(",2026-07-30,2026-07-30T23:59:59.123456,2026-07-29T21:02:03.5-04:00,"),
        "{ny}"
    );
    assert!(
        rows[3].contains(",1000-01-01,2026-03-08T02:30:00,2026-12-31T10:00:00-05:00,"),
        "{ny}"
    );
    assert!(
        rows[4].contains(",2038-01-18T22:14:07.999999-05:00,"),
        "{ny}"
    );
}

#[test]
fn the_time_window_binds_as_the_schedules_clock_for_datetime_and_timestamp_columns() {
    // created: DATETIME in Tokyo local time; paid: TIMESTAMP (inserted here as UTC).
    setup(
        "DROP TABLE IF EXISTS mdb_window;
         CREATE TABLE mdb_window (id INT PRIMARY KEY, created DATETIME(6), paid TIMESTAMP(6));
         INSERT INTO mdb_window VALUES
           (1, '2026-07-29 23:59:59.999999', '2026-07-29 14:59:59.999999'),
           (2, '2026-07-30 00:00:00',        '2026-07-29 15:00:00'),
           (3, '2026-07-30 23:59:59.999999', '2026-07-30 14:59:59.999999'),
           (4, '2026-07-31 00:00:00',        '2026-07-30 15:00:00');",
    );
    let (sb, _) = sandbox(
        mariadb_url(),
        &[
            schedule(
                "by-datetime",
                "Asia/Tokyo",
                "previousDay",
                "SELECT id, created, :slot AS slot, @@session.time_zone AS clock
FROM mdb_window
WHERE created >= :window_start AND created < :window_end
ORDER BY id",
            ),
            schedule(
                "by-timestamp",
                "Asia/Tokyo",
                "previousDay",
                "SELECT id, paid FROM mdb_window
WHERE paid >= :window_start AND paid < :window_end -- :window_end in a comment
ORDER BY id",
            ),
        ],
    );
    sb.ferry(["validate", "-f", s(&sb.files.join("shop.yaml"))])
        .success();
    // The session's clock is the slot's offset; :slot reads on it.
    run_now(&sb, "by-datetime", TOKYO_SLOT).success();
    assert_eq!(
        csv(&sb, "by-datetime"),
        "id,created,slot,clock\r\n\
         2,2026-07-30T00:00:00,2026-07-31T00:30:00,+09:00\r\n\
         3,2026-07-30T23:59:59.999999,2026-07-31T00:30:00,+09:00\r\n"
    );
    run_now(&sb, "by-timestamp", TOKYO_SLOT).success();
    assert_eq!(
        csv(&sb, "by-timestamp"),
        "id,paid\r\n2,2026-07-30T00:00:00+09:00\r\n3,2026-07-30T23:59:59.999999+09:00\r\n"
    );
}

#[test]
fn a_writing_query_is_refused_at_validate_at_its_line_and_column() {
    let sb = Sandbox::new();
    for (query, offending, says) in [
        (
            "|\n        SELECT 1;\n        UPDATE mdb_orders SET total = 0",
            "UPDATE",
            "the query holds 2 statements",
        ),
        (
            "\"REPLACE INTO mdb_orders VALUES (1)\"",
            "REPLACE",
            "REPLACE is not a read statement",
        ),
        (
            "|\n        SELECT id FROM mdb_orders\n        FOR UPDATE",
            "SELECT id",
            "locks rows",
        ),
    ] {
        let text = format!(
            "{TARGET}---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: orders}}
spec:
  schedule: {{daily: {{at: \"00:30\"}}}}
  source:
    sql:
      url: \"mysql://ferry@127.0.0.1:53306/ferry_test\"
      query: {query}
    window: all
  format: {{csv: {{}}}}
  fileName: \"orders.csv\"
  deliverTo: [{{target: out}}]
"
        );
        let path = sb.write("query.yaml", &text);
        let (l, c) = line_col(&text, offending);
        let run = sb.ferry(["validate", "-f", s(&path)]).failure();
        let message = diag_at(&run.stderr, &path, l, c);
        assert!(
            message.starts_with("ReportSchedule/orders: spec.source.sql.query: ")
                && message.contains(says),
            "{query}: {message}"
        );
    }
}

#[test]
fn a_write_that_reaches_the_server_fails_in_its_read_only_transaction() {
    // A function that writes, called from a SELECT: the validator sees a read, the server's
    // READ ONLY transaction refuses the write.
    setup(
        "DROP TABLE IF EXISTS mdb_readonly;
         DROP FUNCTION IF EXISTS mdb_bump;
         CREATE TABLE mdb_readonly (id INT PRIMARY KEY, v INT);
         INSERT INTO mdb_readonly VALUES (1, 10);
         CREATE FUNCTION mdb_bump() RETURNS INT MODIFIES SQL DATA
         BEGIN
           UPDATE mdb_readonly SET v = v + 1;
           RETURN 1;
         END;",
    );
    let (sb, _) = sandbox(
        mariadb_url(),
        &[
            schedule(
                "bump",
                "Asia/Tokyo",
                "all",
                "SELECT id, mdb_bump() AS bumped FROM mdb_readonly",
            ),
            schedule(
                "after",
                "Asia/Tokyo",
                "all",
                "SELECT id, v FROM mdb_readonly",
            ),
        ],
    );
    let run = run_now(&sb, "bump", TOKYO_SLOT).failure();
    assert!(
        run.stderr
            .contains("MySQL query failed: Cannot execute statement in a READ ONLY transaction"),
        "{run:#?}"
    );
    assert_eq!(history(&sb, "bump")[0]["outcome"], "failed");
    run_now(&sb, "after", TOKYO_SLOT).success();
    assert_eq!(csv(&sb, "after"), "id,v\r\n1,10\r\n");
}

#[test]
fn a_zero_date_is_an_error_naming_its_row_and_column_and_the_run_is_recorded_failed() {
    setup(
        "DROP TABLE IF EXISTS mdb_zero;
         CREATE TABLE mdb_zero (id INT PRIMARY KEY, shipped DATE, at DATETIME);
         INSERT INTO mdb_zero VALUES
           (1, '2026-07-30', '2026-07-30 10:00:00'),
           (2, '2026-07-30', '0000-00-00 00:00:00'),
           (3, '0000-00-00', '2026-07-30 10:00:00');",
    );
    let (sb, _) = sandbox(
        mariadb_url(),
        &[
            schedule(
                "zero",
                "Asia/Tokyo",
                "all",
                "SELECT id, shipped, at FROM mdb_zero ORDER BY id",
            ),
            schedule(
                "nullif",
                "Asia/Tokyo",
                "all",
                "SELECT id, NULLIF(shipped, '0000-00-00') AS shipped FROM mdb_zero ORDER BY id",
            ),
        ],
    );
    let run = run_now(&sb, "zero", TOKYO_SLOT).failure();
    assert!(
        run.stderr
            .contains("row 2, column `at`: MySQL zero date (0000-00-00)"),
        "{run:#?}"
    );
    assert!(!sb.root().join("out/zero.csv").exists());
    let runs = history(&sb, "zero");
    assert_eq!(runs[0]["outcome"], "failed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("row 2, column `at`"),
        "{runs:#}"
    );
    // The message's advice works: NULLIF makes the zero date an empty cell.
    run_now(&sb, "nullif", TOKYO_SLOT).success();
    assert_eq!(
        csv(&sb, "nullif"),
        "id,shipped\r\n1,2026-07-30\r\n2,2026-07-30\r\n3,\r\n"
    );
}

#[test]
fn a_wrong_password_is_a_clear_error_that_does_not_show_the_password() {
    let url = mariadb_url().replace("ferry:ferry@", "ferry:Wrong-Secret-pw-42@");
    let (sb, _) = sandbox(
        &url,
        &[schedule("denied", "Asia/Tokyo", "all", "SELECT 1 AS one")],
    );
    let run = run_now(&sb, "denied", TOKYO_SLOT).failure();
    assert!(
        run.stderr.contains(
            "cannot connect to MySQL at 127.0.0.1:53306 (database ferry_test, user ferry): \
             Access denied for user 'ferry'@"
        ) && run.stderr.contains("(using password: YES)"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("Wrong-Secret-pw-42"), "{run:#?}");
    assert!(!run.stdout.contains("Wrong-Secret-pw-42"), "{run:#?}");
    let runs = history(&sb, "denied");
    assert_eq!(runs[0]["outcome"], "failed");
    assert!(!runs.to_string().contains("Wrong-Secret-pw-42"));
}

#[test]
fn an_unknown_host_is_a_clear_error_naming_the_host() {
    let url = "mariadb://ferry:Wrong-Secret-pw-42@no-such-host.invalid:3306/shop";
    let (sb, _) = sandbox(
        url,
        &[schedule("nohost", "Asia/Tokyo", "all", "SELECT 1 AS one")],
    );
    let run = run_now(&sb, "nohost", TOKYO_SLOT).failure();
    assert!(
        run.stderr.contains(
            "cannot connect to MySQL at no-such-host.invalid:3306 (database shop, user ferry): \
             network error:"
        ),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("Wrong-Secret-pw-42"), "{run:#?}");
}

#[test]
fn a_large_result_is_streamed_to_the_last_row() {
    // 200,000 rows from a 1,000-row table crossed with itself (a quarter of it).
    setup(
        "DROP TABLE IF EXISTS mdb_large;
         CREATE TABLE mdb_large (n INT PRIMARY KEY);
         INSERT INTO mdb_large SELECT n FROM (
           WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < 999)
           SELECT n FROM seq) AS numbers;",
    );
    let (sb, _) = sandbox(
        mariadb_url(),
        &[schedule(
            "large",
            "Asia/Tokyo",
            "all",
            "SELECT a.n * 1000 + b.n AS id, CONCAT('row ', a.n, '-', b.n) AS label,
       CAST(b.n / 7 AS DECIMAL(12,4)) AS amount
FROM mdb_large a CROSS JOIN mdb_large b
WHERE a.n < 200
ORDER BY id",
        )],
    );
    let run = run_now(&sb, "large", TOKYO_SLOT).success();
    assert!(run.stdout.contains("succeeded, 200000 rows"), "{run:#?}");
    assert_eq!(history(&sb, "large")[0]["rows"], 200_000);
    let text = csv(&sb, "large");
    assert_eq!(text.matches("\r\n").count(), 200_001);
    assert!(text.starts_with("id,label,amount\r\n0,row 0-0,0.0000\r\n1,row 0-1,0.1429\r\n"));
    assert!(
        text.ends_with("199999,row 199-999,142.7143\r\n"),
        "{}",
        &text[text.len() - 200..]
    );
}

#[test]
fn ferry_check_prepares_the_query_without_running_it_and_names_a_column_it_cannot_export() {
    setup(
        "DROP TABLE IF EXISTS mdb_check;
         CREATE TABLE mdb_check (id INT PRIMARY KEY, total DECIMAL(10,2), shape GEOMETRY NULL);",
    );
    let sb = Sandbox::new();
    sb.write_secret("default", "shop-db", "url", mariadb_url());
    let files = sb.write(
        "check.yaml",
        &[
            TARGET.to_string(),
            schedule(
                "fine",
                "Asia/Tokyo",
                "previousDay",
                "SELECT id, total FROM mdb_check WHERE id > 0 AND :window_start < :window_end",
            ),
            schedule(
                "shapes",
                "Asia/Tokyo",
                "all",
                "SELECT id, shape FROM mdb_check",
            ),
        ]
        .join("---\n"),
    );
    let run = sb.ferry(["check", "-f", s(&files)]).code(1);
    assert!(
        run.stdout
            .contains("ReportSchedule/fine: source: ok: the query prepares for the run of"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(
            "ReportSchedule/shapes: source: failed: source: column `shape` has type GEOMETRY, \
             which Ferry cannot export; convert it in the query, e.g. ST_AsText(shape)"
        ),
        "{run:#?}"
    );
}

#[test]
fn an_unsigned_boolean_column_keeps_its_values_above_127() {
    setup(
        "DROP TABLE IF EXISTS mdb_flags;
         CREATE TABLE mdb_flags (id INT PRIMARY KEY, signed_flag TINYINT(1),
                                 unsigned_flag TINYINT(1) UNSIGNED);
         INSERT INTO mdb_flags VALUES (1, 1, 0), (2, -1, 255), (3, 0, 1);",
    );
    let (sb, _) = sandbox(
        mariadb_url(),
        &[schedule(
            "flags",
            "Asia/Tokyo",
            "all",
            "SELECT id, signed_flag, unsigned_flag FROM mdb_flags ORDER BY id",
        )],
    );
    run_now(&sb, "flags", TOKYO_SLOT).success();
    assert_eq!(
        csv(&sb, "flags"),
        "id,signed_flag,unsigned_flag\r\n1,true,false\r\n2,-1,255\r\n3,false,true\r\n"
    );
}
