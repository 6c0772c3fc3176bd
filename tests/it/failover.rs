//! High availability: two `ferry controller` processes share a PostgreSQL state and a Lease.
//! The leader is killed with SIGKILL in the middle of a run; the standby takes the Lease over,
//! completes the interrupted run and keeps the schedule going, and no slot reaches the target
//! twice.
//!
//! The Kubernetes API is simulated (the only simulated system here, as in tests/it/controller.rs),
//! but by a small HTTP server rather than a scripted mock (tests/it/common/fake_api.rs): both processes talk to it through
//! their kubeconfig, so it keeps objects, resource versions, watches, finalizers, status and
//! the Lease with the API server's semantics (optimistic concurrency on `resourceVersion`).
//! The state is the test PostgreSQL (`scripts/test-servers/postgres.sh`), the report's source
//! too (`pg_sleep` makes each run last long enough to be killed in the middle of).

use crate::common;
use crate::common::fake_api::{Controller, FakeApi};

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

// ---- Files at the target -------------------------------------------------------------------

/// Watches the target directory: the inode of each report when first seen. A second delivery
/// of a slot would replace the file (same name, new inode); a partial one would show up as a
/// file that is not a finished report.
#[derive(Default)]
struct Sightings {
    first: BTreeMap<String, u64>,
    replaced: Vec<String>,
    partial: Vec<String>,
}

fn look(dir: &Path, seen: &mut Sightings) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        // The controllers' periodic checks write and remove a probe file here (under its own
        // temporary name first): it is neither a report nor a part of one.
        if name.contains(ferry::check::PROBE_PREFIX) {
            continue;
        }
        if !(name.starts_with("report_") && name.ends_with(".csv")) {
            if !seen.partial.contains(&name) {
                seen.partial.push(name);
            }
            continue;
        }
        match seen.first.get(&name) {
            None => {
                seen.first.insert(name, meta.ino());
            }
            Some(&ino) if ino != meta.ino() && !seen.replaced.contains(&name) => {
                seen.replaced.push(name)
            }
            Some(_) => {}
        }
    }
}

/// Polls `until` every 50 ms while watching the target directory; panics after `limit`.
async fn wait_for(
    what: &str,
    out: &Path,
    seen: &mut Sightings,
    limit: Duration,
    mut until: impl AsyncFnMut() -> bool,
    logs: &[&Controller],
) {
    let deadline = Instant::now() + limit;
    loop {
        look(out, seen);
        if until().await {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|c| c.log()).collect();
            panic!(
                "timed out waiting for {what}; controller logs:\n{}",
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scalar_i64(state: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(state)
        .await
        .unwrap()
}

fn holder(api: &FakeApi) -> Option<String> {
    api.get(
        "coordination.k8s.io/v1/leases",
        "default",
        "ferry-controller",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_is_replaced_by_the_standby_and_no_slot_is_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let state_url = common::postgres_state().to_string_lossy().into_owned();
    let mut state = sqlx::PgConnection::connect(&state_url).await.unwrap();

    // The cluster: a Secret with the source's URL, a local directory target, and a report
    // every 4 s whose query takes 1.5 s.
    let api = FakeApi::new();
    api.seed(
        "v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "source-db", "namespace": "default"},
               "data": {"url": ferry::psa::http::base64(common::pg_url().as_bytes())}}),
    );
    api.seed(
        "ferry.dev/v1alpha1/deliverytargets",
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "DeliveryTarget",
               "metadata": {"name": "shared-dir", "namespace": "default"},
               "spec": {"localDir": {"path": out.display().to_string()}}}),
    );
    api.seed(
        "ferry.dev/v1alpha1/reportschedules",
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ReportSchedule",
               "metadata": {"name": "ticker", "namespace": "default"},
               "spec": {
                   "schedule": {"every": "4s"},
                   "timeZone": "UTC",
                   "source": {"sql": {
                       "connectionSecretRef": {"name": "source-db", "key": "url"},
                       "query": "SELECT n FROM (SELECT 1 AS n, pg_sleep(1.5)) AS slow"}},
                   "format": {"csv": {}},
                   "fileName": "report_{yyyyMMddHHmmss}.csv",
                   "deliverTo": [{"target": "shared-dir"}]}}),
    );
    for pod in ["ferry-a", "ferry-b"] {
        api.seed(
            "v1/pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod, "namespace": "default", "labels": {"app": "ferry"}}}),
        );
    }
    let port = api.start().await;
    let kubeconfig = FakeApi::write_kubeconfig(dir.path(), port);

    let mut seen = Sightings::default();
    let mut a = Controller::start(dir.path(), &kubeconfig, &state_url, "ferry-a");
    wait_for(
        "ferry-a to lead",
        &out,
        &mut seen,
        Duration::from_secs(60),
        async || holder(&api).as_deref() == Some("ferry-a"),
        &[&a],
    )
    .await;
    let mut b = Controller::start(dir.path(), &kubeconfig, &state_url, "ferry-b");
    wait_for(
        "two reports from ferry-a",
        &out,
        &mut seen,
        Duration::from_secs(60),
        async || seen_count(&out) >= 2,
        &[&a, &b],
    )
    .await;
    assert_eq!(
        holder(&api).as_deref(),
        Some("ferry-a"),
        "the standby never takes a live leader's Lease"
    );
    // The hosted SFTP Service selects `ferry.dev/role: leader`: only the leader's pod has it.
    assert_eq!(
        (role(&api, "ferry-a"), role(&api, "ferry-b")),
        ("leader".into(), "standby".into())
    );
    assert_eq!(
        scalar_i64(
            &mut state,
            "SELECT COUNT(*) FROM runs WHERE owner LIKE '%#ferry-b'"
        )
        .await,
        0,
        "the standby ran nothing"
    );

    // Kill the leader while a run is exporting.
    wait_for(
        "a run in progress",
        &out,
        &mut seen,
        Duration::from_secs(30),
        async || {
            scalar_i64(
                &mut state,
                "SELECT COUNT(*) FROM runs WHERE outcome = 'running'",
            )
            .await
                > 0
        },
        &[&a, &b],
    )
    .await;
    let interrupted = scalar_i64(
        &mut state,
        "SELECT MAX(id) FROM runs WHERE outcome = 'running'",
    )
    .await;
    a.kill9();
    let killed = Instant::now();
    wait_for(
        "ferry-b to take the Lease over",
        &out,
        &mut seen,
        Duration::from_secs(60),
        async || holder(&api).as_deref() == Some("ferry-b"),
        &[&b],
    )
    .await;
    let takeover = killed.elapsed();
    wait_for(
        "ferry-b to label its pod leader",
        &out,
        &mut seen,
        Duration::from_secs(30),
        async || role(&api, "ferry-b") == "leader",
        &[&b],
    )
    .await;
    eprintln!(
        "the standby took the Lease over {takeover:?} after the leader was killed (Lease: 3 s)"
    );

    // The standby completes the interrupted run, then keeps the schedule.
    wait_for(
        "the interrupted run completed by ferry-b",
        &out,
        &mut seen,
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut state,
                &format!(
                    "SELECT COUNT(*) FROM runs WHERE id = {interrupted} AND outcome = 'succeeded'"
                ),
            )
            .await
                == 1
        },
        &[&b],
    )
    .await;
    let before = seen_count(&out);
    wait_for(
        "two more reports from ferry-b",
        &out,
        &mut seen,
        Duration::from_secs(60),
        async || seen_count(&out) >= before + 2,
        &[&b],
    )
    .await;
    b.terminate();
    look(&out, &mut seen);

    // No file was ever replaced (a second delivery of a slot) and none was partial.
    assert!(
        seen.replaced.is_empty(),
        "delivered twice: {:?}",
        seen.replaced
    );
    assert!(
        seen.partial.is_empty(),
        "partial files visible: {:?}",
        seen.partial
    );
    // The ledger agrees with the directory: one success per slot, one file per success.
    let per_slot = sqlx::query_as::<_, (i64, i64)>(
        "SELECT slot_epoch, COUNT(*) FROM deliveries WHERE outcome = 'succeeded' GROUP BY slot_epoch",
    )
    .fetch_all(&mut state)
    .await
    .unwrap();
    assert!(per_slot.iter().all(|(_, n)| *n == 1), "{per_slot:?}");
    assert_eq!(
        per_slot.len(),
        seen.first.len(),
        "one file per delivered slot: {:?}",
        seen.first
    );
    // The interrupted run was resumed by the standby (its owner and trigger tell), and
    // nothing is left running.
    let (outcome, owner): (String, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT outcome, owner FROM runs WHERE id = {interrupted}"
    )))
    .fetch_one(&mut state)
    .await
    .unwrap();
    assert_eq!((outcome.as_str(), owner), ("succeeded", None));
    assert_eq!(
        scalar_i64(
            &mut state,
            "SELECT COUNT(*) FROM runs WHERE outcome = 'running'"
        )
        .await,
        0
    );
    let deliveries_of_interrupted = scalar_i64(
        &mut state,
        &format!(
            "SELECT COUNT(*) FROM deliveries WHERE run_id = {interrupted} AND outcome = 'succeeded'"
        ),
    )
    .await;
    assert_eq!(deliveries_of_interrupted, 1);
    // Runs after the failover belong to ferry-b; the Lease changed hands once.
    let lease = api
        .get(
            "coordination.k8s.io/v1/leases",
            "default",
            "ferry-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "ferry-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(
        b.log().contains("resuming an interrupted run"),
        "{}",
        b.log()
    );
    // Both leaders told the story as Events on the schedule: runs and deliveries.
    let events: Vec<(String, String)> = api
        .list("events.k8s.io/v1/events")
        .iter()
        .filter(|e| e["regarding"]["name"] == "ticker")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["reportingInstance"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for expected in [
        ("RunSucceeded", "ferry-a"),
        ("Delivered", "ferry-a"),
        ("RunSucceeded", "ferry-b"),
        ("Delivered", "ferry-b"),
    ] {
        assert!(
            events.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not in {events:?}"
        );
    }
    // Within the Lease duration plus one renew period and the time to notice, with room for a
    // loaded machine; not a performance figure.
    assert!(
        takeover < Duration::from_secs(30),
        "takeover took {takeover:?}"
    );
}

fn role(api: &FakeApi, pod: &str) -> String {
    api.get("v1/pods", "default", pod).unwrap()["metadata"]["labels"]["ferry.dev/role"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn seen_count(out: &Path) -> usize {
    std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("report_"))
                .count()
        })
        .unwrap_or(0)
}
