//! The PostgreSQL state backend (`--state postgres://...`): what SQLite gives by being one
//! file on one machine, PostgreSQL must give to replicas on several: applies that race are
//! serialised by the serial, the state lock is per state, and the URL's password never shows.
//! (The CLI suites also run against this backend: `FERRY_TEST_STATE=postgres`, see
//! scripts/test.sh.)

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Sandbox, s, stream};
use ferry::Error;
use ferry::state::{StateStore, lock_state};

#[tokio::test]
async fn two_applies_from_the_same_serial_cannot_both_commit() {
    let state = common::postgres_state();
    let sb = Sandbox::new();
    let files = sb.write("a.yaml", &stream(&[common::local_dir("out")]));
    let mut sb = sb;
    sb.state = state.clone();
    sb.apply(&[&files]);

    let one = StateStore::open(&state).await.unwrap();
    let two = StateStore::open(&state).await.unwrap();
    let base = one.snapshot().await.unwrap();
    assert_eq!(base.serial, 1);
    let stored = base.resources.values().next().unwrap().clone();
    let mut changed = stored.clone();
    changed.generation += 1;
    let write = ferry::state::StateWrite::Upsert(Box::new(changed));
    let (a, b) = tokio::join!(
        one.commit(&base.lineage, base.serial, std::slice::from_ref(&write)),
        two.commit(&base.lineage, base.serial, std::slice::from_ref(&write)),
    );
    let outcomes = [a, b];
    let committed = outcomes.iter().filter(|r| r.is_ok()).count();
    let stale = outcomes
        .iter()
        .filter(|r| matches!(r, Err(Error::StalePlan(m)) if m.contains("serial 1 then, 2 now")))
        .count();
    assert_eq!((committed, stale), (1, 1), "{outcomes:?}");
    let after = one.snapshot().await.unwrap();
    assert_eq!(after.serial, 2);
    assert_eq!(
        after.resources[&stored.key].generation,
        stored.generation + 1
    );
}

#[tokio::test]
async fn the_state_lock_excludes_a_second_holder_of_the_same_state_only() {
    let first = common::postgres_state();
    let other = common::postgres_state();
    // Tables exist (the lock does not need them, but a real state has them).
    StateStore::open(&first).await.unwrap();
    let held = lock_state(&first, Duration::from_secs(1), "apply")
        .await
        .unwrap();
    let refused = lock_state(&first, Duration::from_millis(500), "apply").await;
    match refused {
        Err(Error::Locked(holder)) => {
            assert!(holder.contains("advisory lock"), "{holder}");
            assert!(!holder.contains(":ferry@"), "no password: {holder}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another state in the same database (its own schema) is not blocked.
    let elsewhere = lock_state(&other, Duration::from_millis(500), "apply").await;
    assert!(elsewhere.is_ok(), "{elsewhere:?}");
    drop(held);
    // Released with its session.
    let again = lock_state(&first, Duration::from_secs(5), "apply").await;
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn apply_waits_for_the_lock_of_a_running_ferry_and_changes_nothing() {
    let mut sb = Sandbox::new();
    sb.state = common::postgres_state();
    let files = sb.write("a.yaml", &stream(&[common::local_dir("out")]));
    sb.apply(&[&files]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime
        .block_on(lock_state(&sb.state, Duration::from_secs(1), "run"))
        .unwrap();
    let more = sb.write("b.yaml", &stream(&[common::local_dir("more")]));
    let refused = sb
        .ferry([
            "--lock-timeout",
            "1s",
            "apply",
            "-f",
            s(&files),
            s(&more),
            "--auto-approve",
        ])
        .failure();
    assert!(
        refused.stderr.contains("state is locked"),
        "{}",
        refused.stderr
    );
    assert_eq!(sb.snapshot().len(), 1, "nothing applied while locked");
    drop(held);
    sb.apply(&[&files, &more]);
    assert_eq!(sb.snapshot().len(), 2);
}

#[test]
fn a_wrong_password_is_a_clear_error_that_does_not_show_it() {
    let url = common::pg_url().replace("ferry:ferry@", "ferry:Wr0ng-S3cret@");
    let mut sb = Sandbox::new();
    sb.state = PathBuf::from(&url);
    let files = sb.write("a.yaml", &stream(&[common::local_dir("out")]));
    let run = sb.ferry(["plan", "-f", s(&files)]).failure();
    assert!(!run.stderr.contains("Wr0ng-S3cret"), "{}", run.stderr);
    assert!(run.stderr.contains("ferry:***@127.0.0.1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("password authentication failed"),
        "{}",
        run.stderr
    );
}

/// The tables of the schema a `postgres_state()` URL uses.
fn tables_of(state: &std::path::Path) -> u64 {
    let url = state.to_string_lossy();
    let schema = url.rsplit("search_path%3D").next().unwrap().to_string();
    let out = std::process::Command::new("psql")
        .arg(common::pg_url())
        .args(["-tA", "-c"])
        .arg(format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
        ))
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn a_plan_creates_no_tables_and_cannot_write_an_existing_state() {
    let state = common::postgres_state();
    let mut sb = Sandbox::new();
    sb.state = state.clone();
    let files = sb.write("a.yaml", &stream(&[common::local_dir("out")]));
    let plan = sb.plan_json(&[&files]);
    assert_eq!(plan["summary"]["create"], 1);
    sb.ferry(["get", "dt", "-A"]).success();
    assert_eq!(tables_of(&state), 0, "a plan leaves an empty schema empty");

    sb.apply(&[&files]);
    let reader = StateStore::open_read_only(&state).await.unwrap();
    let base = reader.snapshot().await.unwrap();
    assert_eq!(base.serial, 1);
    let stored = base.resources.values().next().unwrap().clone();
    let refused = reader
        .commit(
            &base.lineage,
            base.serial,
            &[ferry::state::StateWrite::Upsert(Box::new(stored))],
        )
        .await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("read-only transaction"), "{message}");
    let again = StateStore::open(&state)
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap();
    assert_eq!(again.serial, 1);
}
