//! Running schedules end to end through the binary: SQLite in, CSV out, a local directory as
//! the target. The clock is set per command with `FERRY_NOW`, so "downtime" is simulated by
//! running `ferry run --once` at later instants against the same state.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, s};

/// A shop database with order items updated on 2026-07-29, -30 and -31 (Tokyo time).
fn shop_db(sb: &Sandbox) -> PathBuf {
    let db = sb.root().join("shop.db");
    let script = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.executescript("""
CREATE TABLE order_items (id INTEGER PRIMARY KEY, product TEXT, quantity INTEGER,
                          price DECIMAL(10,2), updated_at TEXT);
INSERT INTO order_items VALUES
  (1, 'りんご', 3, '120.50', '2026-07-29T10:00:00+09:00'),
  (2, 'Widget, large', 1, '9.99', '2026-07-30T00:00:00+09:00'),
  (3, 'He said "hi"', 2, '1.00', '2026-07-30T23:59:59+09:00'),
  (4, 'late', 5, '2.00', '2026-07-31T00:10:00+09:00');
""")
con.commit()
"#;
    let status = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(&db)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    db
}

/// A daily 00:30 Tokyo schedule exporting yesterday's items to `out/`.
fn resources(sb: &Sandbox, extra_spec: &str) -> PathBuf {
    sb.write(
        "shop.yaml",
        &format!(
            r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: out}}
spec:
  localDir: {{path: out}}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: items}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://shop.db"
      query: |
        SELECT id, product, quantity, price FROM order_items
        WHERE julianday(updated_at) >= julianday(:window_start)
          AND julianday(updated_at) <  julianday(:window_end)
        ORDER BY id
    window: previousDay
  columns:
    - {{name: id, header: "受注ID"}}
    - {{name: product}}
    - {{name: quantity, header: "数量"}}
  format: {{csv: {{}}}}
  fileName: "items_{{yyyyMMddHHmmss}}.csv"
  deliverTo: [{{target: out}}]
  retry: {{attempts: 1, backoff: 1s}}
{extra_spec}"#
        ),
    )
}

/// A sandbox with the shop database and the `items` schedule (plus `extra_spec` lines),
/// applied at `now`.
fn shop_applied_at(now: &str, extra_spec: &str) -> (Sandbox, PathBuf) {
    let mut sb = Sandbox::new();
    shop_db(&sb);
    let files = resources(&sb, extra_spec);
    at(&mut sb, now);
    sb.apply(&[&files]);
    (sb, files)
}

fn at(sb: &mut Sandbox, now: &str) {
    sb.set_env("FERRY_NOW", now);
}

fn out_files(sb: &Sandbox) -> Vec<String> {
    let dir = sb.root().join("out");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn history(sb: &Sandbox) -> serde_json::Value {
    sb.ferry(["history", "rs/items", "-o", "json"])
        .success()
        .json()
}

#[test]
fn run_now_for_a_slot_exports_that_slots_window_and_names_the_file_from_the_slot() {
    let (sb, _) = shop_applied_at("2026-07-30T00:00:00Z", "");
    let run = sb
        .ferry([
            "run-now",
            "reportschedule/items",
            "--slot",
            "2026-07-31T00:30:00+09:00",
        ])
        .success();
    assert!(run.stdout.contains("succeeded, 2 rows"), "{run:#?}");
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
    let csv = std::fs::read_to_string(sb.root().join("out/items_20260731003000.csv")).unwrap();
    assert_eq!(
        csv,
        "受注ID,product,数量\r\n2,\"Widget, large\",1\r\n3,\"He said \"\"hi\"\"\",2\r\n"
    );
}

#[test]
fn history_records_the_run_with_rows_bytes_sha256_and_the_delivery_receipt() {
    let (sb, _) = shop_applied_at("2026-07-30T00:00:00Z", "");
    sb.ferry(["run-now", "rs/items", "--slot", "2026-07-31T00:30:00+09:00"])
        .success();
    let runs = history(&sb);
    let run = &runs[0];
    assert_eq!(run["slot"], "2026-07-31T00:30:00+09:00");
    assert_eq!(run["trigger"], "backfill");
    assert_eq!(run["outcome"], "succeeded");
    assert_eq!(run["rows"], 2);
    let bytes = std::fs::metadata(sb.root().join("out/items_20260731003000.csv"))
        .unwrap()
        .len();
    assert_eq!(run["bytes"], bytes);
    let sha = run["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    let delivery = &run["deliveries"][0];
    assert_eq!(delivery["target"], "out");
    assert_eq!(delivery["outcome"], "succeeded");
    assert_eq!(delivery["receipt"]["sha256"], sha);
    assert_eq!(delivery["receipt"]["bytes"], bytes);
    assert!(
        delivery["receipt"]["location"]
            .as_str()
            .unwrap()
            .ends_with("out/items_20260731003000.csv")
    );
    // The status of the schedule reflects the run.
    let got = sb.ferry(["get", "rs/items", "-o", "json"]).success().json();
    let status = &got[0]["status"];
    assert_eq!(status["lastRun"]["outcome"], "succeeded");
    assert_eq!(status["lastSuccessfulTime"], "2026-07-31T00:30:00+09:00");
    assert!(status["conditions"].to_string().contains("Synced"));
}

#[test]
fn a_slot_already_delivered_is_not_sent_again_unless_a_resend_is_asked_for() {
    let (sb, _) = shop_applied_at("2026-07-30T00:00:00Z", "");
    let slot = "2026-07-31T00:30:00+09:00";
    sb.ferry(["run-now", "rs/items", "--slot", slot]).success();
    let target = sb.root().join("out/items_20260731003000.csv");
    let first = std::fs::metadata(&target).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let again = sb.ferry(["run-now", "rs/items", "--slot", slot]).success();
    assert!(
        again.stdout.contains("out: already delivered"),
        "{again:#?}"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().modified().unwrap(),
        first
    );
    let resend = sb
        .ferry(["run-now", "rs/items", "--slot", slot, "--resend"])
        .success();
    assert!(resend.stdout.contains("out: delivered to"), "{resend:#?}");
    let runs = history(&sb);
    let delivered: usize = runs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deliveries"].as_array().unwrap())
        .filter(|d| d["outcome"] == "succeeded")
        .count();
    assert_eq!(delivered, 2, "the first delivery and the explicit re-send");
}

#[test]
fn run_once_runs_a_due_slot_and_never_runs_it_twice() {
    let (mut sb, files) = shop_applied_at("2026-07-30T10:00:00Z", "");
    // 2026-07-31 00:30 Tokyo is 2026-07-30T15:30Z: ten seconds later the slot is due.
    at(&mut sb, "2026-07-30T15:30:10Z");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    at(&mut sb, "2026-07-30T18:00:00Z");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    let runs = history(&sb);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    assert_eq!(runs[0]["trigger"], "schedule");
    assert_eq!(runs[0]["slot"], "2026-07-31T00:30:00+09:00");
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
}

#[test]
fn after_downtime_the_latest_slot_catches_up_once_and_older_slots_are_recorded_missed() {
    let (mut sb, files) = shop_applied_at("2026-07-28T10:00:00Z", "  startingDeadline: 6h\n");
    // Down until 2026-07-31 03:00 Tokyo: the slots of the 29th, 30th and 31st passed.
    at(&mut sb, "2026-07-30T18:00:00Z");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    let runs = history(&sb);
    let runs = runs.as_array().unwrap();
    let summary: Vec<(String, String)> = runs
        .iter()
        .map(|r| {
            (
                r["slot"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "2026-07-31T00:30:00+09:00".to_string(),
                "succeeded".to_string()
            ),
            (
                "2026-07-30T00:30:00+09:00".to_string(),
                "missed".to_string()
            ),
            (
                "2026-07-29T00:30:00+09:00".to_string(),
                "missed".to_string()
            ),
        ]
    );
    assert_eq!(runs[0]["trigger"], "catch-up");
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
}

#[test]
fn a_month_of_downtime_is_one_log_line_and_every_missed_slot_is_in_history() {
    let (mut sb, files) = shop_applied_at("2026-07-28T10:00:00Z", "");
    // Down until 2026-08-28 03:00 Tokyo: the slots of July 29th to August 28th passed.
    at(&mut sb, "2026-08-27T18:00:00Z");
    let run = sb.ferry(["run", "--once", "-f", s(&files)]).success();
    let missed_lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("slot")).collect();
    assert_eq!(missed_lines.len(), 1, "{run:#?}");
    assert!(
        missed_lines[0].contains(
            "skipped 30 slots from 2026-07-29T00:30:00+09:00 to 2026-08-27T00:30:00+09:00: \
             superseded by a later slot (ferry was not running); each is in \
             `ferry history reportschedule/items`"
        ),
        "{}",
        missed_lines[0]
    );
    let runs = sb
        .ferry(["history", "rs/items", "-o", "json", "--limit", "50"])
        .success()
        .json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs[0]["trigger"], "catch-up");
    assert_eq!(runs[0]["slot"], "2026-08-28T00:30:00+09:00");
    let missed: Vec<&serde_json::Value> =
        runs.iter().filter(|r| r["outcome"] == "missed").collect();
    assert_eq!(missed.len(), 30, "each missed slot has its own entry");
    assert_eq!(missed[29]["slot"], "2026-07-29T00:30:00+09:00");
}

#[test]
fn a_backfill_of_a_slot_from_before_the_schedule_existed_misses_nothing() {
    // The quick start's case: applied now, then a 2025 slot run by hand.
    let (mut sb, files) = shop_applied_at("2026-07-30T10:00:00Z", "");
    sb.ferry(["run-now", "rs/items", "--slot", "2025-06-16T00:30:00+09:00"])
        .success();
    at(&mut sb, "2026-07-30T16:00:00Z"); // half an hour after the next slot
    let run = sb.ferry(["run", "--once", "-f", s(&files)]).success();
    assert!(!run.stderr.contains("skipped"), "{run:#?}");
    let runs = history(&sb);
    let outcomes: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["slot"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("2026-07-31T00:30:00+09:00", "succeeded"),
            ("2025-06-16T00:30:00+09:00", "succeeded")
        ]
    );
}

#[test]
fn a_slot_missed_by_more_than_the_starting_deadline_is_recorded_and_never_run() {
    let (mut sb, files) = shop_applied_at("2026-07-30T10:00:00Z", "  startingDeadline: 1h\n");
    at(&mut sb, "2026-07-30T18:30:00Z"); // three hours after the slot
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    let runs = history(&sb);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["outcome"], "missed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("startingDeadline 1h")
    );
    assert!(out_files(&sb).is_empty());
}

#[test]
fn a_suspended_schedule_does_not_run_on_schedule_but_runs_when_asked() {
    let (mut sb, files) = shop_applied_at("2026-07-30T10:00:00Z", "  suspend: true\n");
    at(&mut sb, "2026-07-30T15:30:10Z");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    assert!(out_files(&sb).is_empty());
    let run = sb.ferry(["run-now", "rs/items"]).success();
    assert!(run.stdout.contains("(run-now): succeeded"), "{run:#?}");
    // The run-now slot is the current instant in the schedule's zone.
    assert_eq!(out_files(&sb), ["items_20260731003010.csv"]);
}

#[test]
fn an_export_that_fails_is_recorded_failed_and_leaves_no_file() {
    let mut sb = Sandbox::new();
    shop_db(&sb);
    let files = resources(&sb, "");
    let text = std::fs::read_to_string(&files)
        .unwrap()
        .replace("FROM order_items", "FROM no_such_table");
    std::fs::write(&files, text).unwrap();
    at(&mut sb, "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    let run = sb
        .ferry(["run-now", "rs/items", "--slot", "2026-07-31T00:30:00+09:00"])
        .failure();
    assert!(run.stderr.contains("no_such_table"), "{run:#?}");
    assert!(out_files(&sb).is_empty());
    let runs = history(&sb);
    assert_eq!(runs[0]["outcome"], "failed");
}

/// A big table, so that an export takes long enough to be killed in the middle.
fn big_db(sb: &Sandbox, rows: u32) {
    let script = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("CREATE TABLE order_items (id INTEGER PRIMARY KEY, product TEXT, quantity INTEGER, price DECIMAL(10,2), updated_at TEXT)")
con.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)",
  ((i, "product number %d with a reasonably long name" % i, i % 7, "%d.50" % (i % 100), "2026-07-30T12:00:00+09:00") for i in range(int(sys.argv[2]))))
con.commit()
"#;
    let status = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(sb.root().join("shop.db"))
        .arg(rows.to_string())
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

fn no_partial_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.') && !name.ends_with(".partial"),
            "a partial file is visible to consumers: {name}"
        );
    }
}

#[test]
fn a_kill_during_an_export_leaves_no_partial_file_and_the_next_start_completes_the_slot_once() {
    let mut sb = Sandbox::new();
    big_db(&sb, 1_500_000);
    let files = resources(&sb, "");
    at(&mut sb, "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    let mut child = common::ferry_command()
        .args(["run-now", "rs/items", "--slot", "2026-07-31T00:30:00+09:00"])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry starts");
    // Kill it once the export is under way (its staged file exists), with SIGKILL.
    let staging = sb.work_dir().join("staging");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !staging.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("kill -9");
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none() || !status.success(),
        "it was killed mid-export"
    );
    no_partial_files(&sb.root().join("out"));
    assert!(
        out_files(&sb).is_empty(),
        "nothing was delivered before the kill: {:?}",
        out_files(&sb)
    );
    // The next start resumes the interrupted run: the same slot, once.
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
    no_partial_files(&sb.root().join("out"));
    let runs = history(&sb);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["outcome"], "succeeded");
    assert_eq!(runs[0]["rows"], 1_500_000);
    let lines = std::fs::read_to_string(sb.root().join("out/items_20260731003000.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 1_500_001, "the header and every row, exactly once");
}

/// Starts `ferry run -f FILES` as a daemon at the sandbox's clock.
fn daemon(sb: &Sandbox, files: &Path, grace: &str) -> std::process::Child {
    daemon_at(sb, files, grace, Some("2026-07-30T15:30:05Z"))
}

/// Starts `ferry run -f FILES` as a daemon at `now`, or on the real clock.
fn daemon_at(sb: &Sandbox, files: &Path, grace: &str, now: Option<&str>) -> std::process::Child {
    let mut cmd = common::ferry_command();
    cmd.args(["run", "-f"])
        .arg(files)
        .args(["--shutdown-grace", grace, "--poll", "1s"])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .current_dir(sb.root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.root().join("daemon.log")).expect("a log file"));
    match now {
        Some(now) => cmd.env("FERRY_NOW", now),
        None => cmd.env_remove("FERRY_NOW"),
    };
    cmd.spawn().expect("ferry run starts")
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    child.wait().expect("the daemon exits")
}

#[test]
fn sigterm_lets_a_running_export_finish_within_the_grace_period() {
    let mut sb = Sandbox::new();
    big_db(&sb, 1_000_000);
    let files = resources(&sb, "");
    at(&mut sb, "2026-07-30T10:00:00Z");
    sb.apply(&[&files]);
    let mut child = daemon(&sb, &files, "120s");
    wait_for(&sb.work_dir().join("staging"));
    let status = terminate(&mut child);
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
    no_partial_files(&sb.root().join("out"));
    let runs = history(&sb);
    assert_eq!(runs[0]["outcome"], "succeeded");
    assert_eq!(runs[0]["rows"], 1_000_000);
}

#[test]
fn sigterm_after_the_grace_period_abandons_the_export_cleanly_and_the_next_start_completes_it() {
    let mut sb = Sandbox::new();
    big_db(&sb, 1_500_000);
    let files = resources(&sb, "");
    at(&mut sb, "2026-07-30T10:00:00Z");
    sb.apply(&[&files]);
    let mut child = daemon(&sb, &files, "0s");
    wait_for(&sb.work_dir().join("staging"));
    terminate(&mut child);
    no_partial_files(&sb.root().join("out"));
    assert!(out_files(&sb).is_empty(), "{:?}", out_files(&sb));
    at(&mut sb, "2026-07-30T15:31:00Z");
    sb.ferry(["run", "--once", "-f", s(&files)]).success();
    assert_eq!(out_files(&sb), ["items_20260731003000.csv"]);
    let runs = history(&sb);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    assert_eq!(runs[0]["outcome"], "succeeded");
}

#[test]
fn the_daemon_applies_an_edited_file_without_a_restart_and_keeps_running_on_invalid_edits() {
    let (sb, files) = shop_applied_at("2026-07-30T10:00:00Z", "");
    let mut child = daemon(&sb, &files, "5s");
    let generation = |sb: &Sandbox| {
        sb.ferry(["get", "rs/items", "-o", "json"]).success().json()[0]["metadata"]["generation"]
            .as_i64()
            .unwrap()
    };
    let wait_generation = |sb: &Sandbox, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while generation(sb) != want {
            assert!(Instant::now() < deadline, "generation never became {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The daemon is up once the slot that was due at its start is delivered.
    wait_for(&sb.root().join("out/items_20260731003000.csv"));
    // An invalid edit is reported and ignored: the daemon keeps the applied resources.
    let text = std::fs::read_to_string(&files).unwrap();
    std::fs::write(&files, text.replace("at: \"00:30\"", "at: \"25:30\"")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(generation(&sb), 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon is still running: {}",
        std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
    );
    // A valid edit is applied.
    std::fs::write(&files, text.replace("at: \"00:30\"", "at: \"01:30\"")).unwrap();
    wait_generation(&sb, 2);
    let got = sb.ferry(["get", "rs/items", "-o", "json"]).success().json();
    assert_eq!(got[0]["spec"]["schedule"]["daily"]["at"], "01:30");
    assert!(terminate(&mut child).success());
}

#[test]
fn a_live_daemon_runs_each_slot_as_it_comes_once_and_a_suspend_stops_it_at_once() {
    // On the real clock: the daemon sleeps until each slot of an `every: 2s` schedule.
    let sb = Sandbox::new();
    shop_db(&sb);
    let files = resources(&sb, "");
    let every = std::fs::read_to_string(&files).unwrap().replace(
        r#"schedule: {daily: {at: "00:30"}}"#,
        "schedule: {every: 2s}",
    );
    std::fs::write(&files, &every).unwrap();
    let mut child = daemon_at(&sb, &files, "5s", None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out_files(&sb).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "three slots never came: {:?}\n{}",
            out_files(&sb),
            std::fs::read_to_string(sb.root().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A suspend takes the schedule out of the timetable: no slot runs after it is applied.
    std::fs::write(
        &files,
        every.replace("  retry:", "  suspend: true\n  retry:"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.ferry(["get", "rs/items", "-o", "json"]).success().json()[0]["metadata"]["generation"]
        != 2
    {
        assert!(Instant::now() < deadline, "the suspend was never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let delivered = out_files(&sb);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(out_files(&sb), delivered, "a suspended schedule ran");
    assert!(terminate(&mut child).success());
    let runs = history(&sb);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), delivered.len(), "one run per file: {runs:#?}");
    let mut slots: Vec<&str> = runs.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    for r in runs {
        assert_eq!(r["outcome"], "succeeded", "{r:#}");
        assert!(
            r["trigger"] == "schedule" || r["trigger"] == "catch-up",
            "{r:#}"
        );
    }
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "no slot ran twice");
}

#[test]
fn history_with_receipts_prints_where_each_delivery_went_and_what_the_destination_confirmed() {
    let (sb, _) = shop_applied_at("2026-07-30T00:00:00Z", "");
    sb.ferry(["run-now", "rs/items", "--slot", "2026-07-31T00:30:00+09:00"])
        .success();
    let sha = history(&sb)[0]["sha256"].as_str().unwrap().to_string();
    let text = sb.ferry(["history", "rs/items", "--receipts"]).success();
    assert!(
        text.stdout
            .contains("2026-07-31T00:30:00+09:00 -> out: succeeded after 1 attempt(s)"),
        "{text:#?}"
    );
    assert!(text.stdout.contains(&format!("sha256: {sha}")), "{text:#?}");
    assert!(
        text.stdout.contains("out/items_20260731003000.csv"),
        "{text:#?}"
    );
}

#[test]
fn deliver_sends_a_file_through_an_applied_target_and_prints_the_receipt() {
    let (sb, _) = shop_applied_at("2026-07-30T00:00:00Z", "");
    let file = sb.write("adhoc.csv", "a,b\r\n1,2\r\n");
    let sent = sb
        .ferry([
            "deliver",
            "deliverytarget/out",
            s(&file),
            "--as",
            "renamed.csv",
        ])
        .success();
    assert!(
        sent.stdout
            .contains("Delivered renamed.csv to deliverytarget/out"),
        "{sent:#?}"
    );
    assert!(sent.stdout.contains("bytes: 10"), "{sent:#?}");
    assert_eq!(out_files(&sb), ["renamed.csv"]);
    assert_eq!(
        std::fs::read_to_string(sb.root().join("out/renamed.csv")).unwrap(),
        "a,b\r\n1,2\r\n"
    );
    // Not a schedule's delivery: no history is written.
    let none = sb
        .ferry(["history", "rs/items", "-o", "json"])
        .success()
        .json();
    assert_eq!(none, serde_json::json!([]));
    // A name with a path, or a target that is not applied, is refused without sending.
    let bad = sb
        .ferry(["deliver", "dt/out", s(&file), "--as", "../escape.csv"])
        .failure();
    assert!(bad.stderr.contains("plain file name"), "{bad:#?}");
    let missing = sb.ferry(["deliver", "dt/nope", s(&file)]).failure();
    assert!(missing.stderr.contains("is not applied"), "{missing:#?}");
}

#[test]
fn when_one_target_fails_the_rerun_delivers_only_to_it_and_never_again_to_the_one_that_succeeded() {
    let mut sb = Sandbox::new();
    shop_db(&sb);
    let files = resources(&sb, "");
    let yaml = std::fs::read_to_string(&files).unwrap().replace(
        "deliverTo: [{target: out}]",
        "deliverTo: [{target: out}, {target: blocked}]",
    ) + "---\napiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata: {name: blocked}\nspec:\n  localDir: {path: blocked/reports}\n";
    std::fs::write(&files, yaml).unwrap();
    // `blocked` is a file, so the directory `blocked/reports` cannot be created.
    std::fs::write(sb.root().join("blocked"), "in the way").unwrap();
    at(&mut sb, "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    let slot = "2026-07-31T00:30:00+09:00";
    let first = sb.ferry(["run-now", "rs/items", "--slot", slot]).code(1);
    assert!(first.stdout.contains("partial"), "{first:#?}");
    assert!(first.stdout.contains("out: delivered to"), "{first:#?}");
    assert!(first.stdout.contains("blocked: failed"), "{first:#?}");
    let delivered = sb.root().join("out/items_20260731003000.csv");
    let mtime = std::fs::metadata(&delivered).unwrap().modified().unwrap();

    std::fs::remove_file(sb.root().join("blocked")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let rerun = sb.ferry(["run-now", "rs/items", "--slot", slot]).success();
    assert!(
        rerun.stdout.contains("out: already delivered"),
        "{rerun:#?}"
    );
    assert!(rerun.stdout.contains("blocked: delivered to"), "{rerun:#?}");
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().modified().unwrap(),
        mtime,
        "the target that had the slot was not sent it again"
    );
    assert!(
        sb.root()
            .join("blocked/reports/items_20260731003000.csv")
            .exists()
    );
    let runs = history(&sb);
    let successes: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deliveries"].as_array().unwrap())
        .filter(|d| d["outcome"] == "succeeded")
        .map(|d| d["target"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = successes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["blocked", "out"],
        "one success per target: {runs:#?}"
    );
}

#[test]
fn a_report_for_a_hosted_sftp_connection_lands_in_its_directory_of_the_users_jail() {
    let mut sb = Sandbox::new();
    shop_db(&sb);
    let files = resources(&sb, "");
    let yaml = std::fs::read_to_string(&files).unwrap().replace(
        "deliverTo: [{target: out}]",
        "deliverTo: [{target: partner-drop}]",
    ) + "---\napiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata: {name: partner-drop}\nspec:\n  hostedSftp:\n    connectionName: partner-drop\n    user: partner01\n    publicKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"]\n    directory: reports/\n";
    std::fs::write(&files, yaml).unwrap();
    at(&mut sb, "2026-07-30T00:00:00Z");
    sb.apply(&[&files]);
    sb.ferry(["run-now", "rs/items", "--slot", "2026-07-31T00:30:00+09:00"])
        .success();
    let data = sb.work_dir().join("hosted-sftp");
    let delivered = data.join("users/partner01/reports/items_20260731003000.csv");
    assert!(
        std::fs::read_to_string(&delivered)
            .unwrap()
            .starts_with("受注ID,product,数量\r\n")
    );
    let receipt = &history(&sb)[0]["deliveries"][0]["receipt"];
    assert_eq!(
        receipt["location"],
        "hosted-sftp://partner01/reports/items_20260731003000.csv"
    );
    assert_eq!(receipt["details"]["connection"], "partner-drop");
}
