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
