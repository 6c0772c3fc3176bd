//! Scale-out on Kubernetes itself: `ferry controller --executor job` runs each export as a
//! Kubernetes Job whose one pod runs `ferry exec-run` against the shared PostgreSQL state.
//!
//! The API server is the in-memory one of tests/it/common/fake_api.rs, which keeps batch/v1
//! Jobs like any other collection. A test kubelet below plays the Job controller and the
//! kubelet: it watches Jobs, runs each pod's container as a local process (the `ferry` binary,
//! the image's entrypoint, with the container's arguments and environment: FERRY_STATE from
//! the Secret its `secretKeyRef` names, and a private work directory and secrets mirror per
//! pod, as emptyDirs), replaces a pod that dies while `backoffLimit` allows, honours the pod
//! failure policy, and writes the Job's status. A pod is killed with SIGKILL in the middle of
//! its export (`pg_sleep` in the query): the Job's next pod resumes the same run, and the slot
//! reaches the target once.

use crate::common;
use crate::common::fake_api::{Controller, FakeApi};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sqlx::Connection;

const JOBS: &str = "batch/v1/jobs";

// ---- A test kubelet ------------------------------------------------------------------------

/// One pod the kubelet started for a Job.
struct Pod {
    job: String,
    child: Child,
    dir: PathBuf,
    /// How it ended: `Some(code)`, `Some(None)` when killed by a signal.
    ended: Option<Option<i32>>,
}

/// Runs the pods of the Jobs in the fake API as local processes and reports their end in the
/// Jobs' status. Stops (killing its pods) when dropped.
struct Kubelet {
    pods: Arc<Mutex<Vec<Pod>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    fn start(api: FakeApi, kubeconfig: PathBuf, root: PathBuf) -> Kubelet {
        let pods: Arc<Mutex<Vec<Pod>>> = Arc::default();
        let shared = pods.clone();
        let task = tokio::spawn(async move {
            loop {
                tick(&api, &kubeconfig, &root, &shared);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet { pods, task }
    }

    /// The process id of `job`'s running pod, if one runs.
    fn running_pid(&self, job: &str) -> Option<u32> {
        let pods = self.pods.lock().unwrap();
        pods.iter()
            .find(|p| p.job == job && p.ended.is_none())
            .map(|p| p.child.id())
    }

    /// The pods started so far: Job, how each ended, its directory.
    fn pods(&self) -> Vec<(String, Option<Option<i32>>, PathBuf)> {
        let pods = self.pods.lock().unwrap();
        pods.iter()
            .map(|p| (p.job.clone(), p.ended, p.dir.clone()))
            .collect()
    }

    /// Every pod's log, for a failure message.
    fn logs(&self) -> String {
        self.pods()
            .iter()
            .map(|(job, _, dir)| {
                format!(
                    "pod of {job}:\n{}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        for pod in self.pods.lock().unwrap().iter_mut() {
            let _ = pod.child.kill();
            let _ = pod.child.wait();
        }
    }
}

fn condition(job: &Value, type_: &str) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn finished(job: &Value) -> bool {
    condition(job, "Complete") || condition(job, "Failed")
}

/// One look at the Jobs and pods: reap ended pods into their Job's status, start a pod for a
/// Job that has none running and may have one more.
fn tick(api: &FakeApi, kubeconfig: &Path, root: &Path, pods: &Mutex<Vec<Pod>>) {
    let mut pods = pods.lock().unwrap();
    let jobs: BTreeMap<String, Value> = api
        .list(JOBS)
        .into_iter()
        .map(|j| (j["metadata"]["name"].as_str().unwrap().to_string(), j))
        .collect();
    for pod in pods.iter_mut().filter(|p| p.ended.is_none()) {
        match pod.child.try_wait().unwrap() {
            Some(status) => pod.ended = Some(status.code()),
            // A deleted Job's pods go with it.
            None if !jobs.contains_key(&pod.job) => {
                let _ = pod.child.kill();
                pod.ended = Some(pod.child.wait().unwrap().code());
            }
            None => {}
        }
    }
    for (name, job) in &jobs {
        if finished(job) {
            continue;
        }
        let ns = job["metadata"]["namespace"].as_str().unwrap_or("default");
        let mine: Vec<&Pod> = pods.iter().filter(|p| &p.job == name).collect();
        let failed = mine
            .iter()
            .filter(|p| p.ended.is_some_and(|code| code != Some(0)))
            .count();
        let fail_job_codes: Vec<i64> = job["spec"]["podFailurePolicy"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["action"] == "FailJob" && r["onExitCodes"]["operator"] == "In")
            .flat_map(|r| {
                r["onExitCodes"]["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_i64())
            .collect();
        let status = if mine.iter().any(|p| p.ended == Some(Some(0))) {
            Some(json!({"succeeded": 1, "failed": failed,
                        "conditions": [{"type": "Complete", "status": "True"}]}))
        } else if let Some(code) = mine.iter().find_map(|p| {
            p.ended
                .flatten()
                .filter(|c| fail_job_codes.contains(&i64::from(*c)))
        }) {
            Some(
                json!({"failed": failed, "conditions": [{"type": "Failed", "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": format!("container exited with code {code}")}]}),
            )
        } else if failed as i64 > job["spec"]["backoffLimit"].as_i64().unwrap_or(6) {
            Some(
                json!({"failed": failed, "conditions": [{"type": "Failed", "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit"}]}),
            )
        } else {
            None
        };
        if let Some(status) = status {
            api.set_status(JOBS, ns, name, status);
            continue;
        }
        if mine.iter().any(|p| p.ended.is_none()) {
            continue;
        }
        api.set_status(JOBS, ns, name, json!({"active": 1, "failed": failed}));
        let dir = root.join(format!("{name}-pod{}", mine.len() + 1));
        pods.push(start_pod(api, kubeconfig, name, ns, job, dir));
    }
}

/// Starts a Job's pod: the image's entrypoint (`ferry`) with the container's arguments and
/// environment; its emptyDirs (work directory, secrets mirror) and log in `dir`.
fn start_pod(
    api: &FakeApi,
    kubeconfig: &Path,
    job_name: &str,
    ns: &str,
    job: &Value,
    dir: PathBuf,
) -> Pod {
    std::fs::create_dir_all(&dir).unwrap();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("FERRY_WORK_DIR", dir.join("work"))
        .env("FERRY_SECRETS_MIRROR", dir.join("secrets"))
        .env("FERRY_LOG", "ferry=debug,info")
        .env("NO_COLOR", "1");
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap();
        let value = match var["valueFrom"]["secretKeyRef"].as_object() {
            Some(r) => {
                let secret = api
                    .get("v1/secrets", ns, r["name"].as_str().unwrap())
                    .expect("the Secret a Job's env refers to exists");
                let encoded = secret["data"][r["key"].as_str().unwrap()].as_str().unwrap();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .unwrap(),
                )
                .unwrap()
            }
            None => var["value"].as_str().unwrap_or("").to_string(),
        };
        command.env(name, value);
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .expect("the pod's process starts");
    Pod {
        job: job_name.to_string(),
        child,
        dir,
        ended: None,
    }
}

// ---- The test ------------------------------------------------------------------------------

async fn scalar_i64(state: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(state)
        .await
        .unwrap()
}

/// Polls `until` every 100 ms; panics after `limit` with the controller's and pods' logs.
async fn wait_for(
    what: &str,
    limit: Duration,
    mut until: impl AsyncFnMut() -> bool,
    controller: &Controller,
    kubelet: &Kubelet,
) {
    let deadline = Instant::now() + limit;
    while !until().await {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; controller log:\n{}\n=====\npods:\n{}",
                controller.log(),
                kubelet.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A cluster with a `ferry controller --executor job` leading, a test kubelet, the state in
/// the test PostgreSQL, and a report ([`Report`]) delivered to a local directory.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// The controllers' arguments after the failover test's (`--executor job` ...).
    controller_args: Vec<String>,
    /// The report query's `pg_sleep(...)`, unique to this cluster.
    sleep: String,
    out: PathBuf,
    state_url: String,
    state: sqlx::PgConnection,
    api: FakeApi,
    // Dropped before the controller: no pod outlives the test.
    kubelet: Kubelet,
    controller: Controller,
}

/// One cluster at a time: each runs a controller and pods against the shared test
/// PostgreSQL, and two at once on a small machine only make both slower.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The schedule of a [`Cluster`]'s report, and how long its query takes.
struct Report {
    every: &'static str,
    /// Whole seconds; the query sleeps a fraction of a second more (its marker).
    query_seconds: u32,
    concurrency_policy: &'static str,
}

/// Every 10 s, the query 2 to 3 s: a run ends well before the next slot.
const TICKER: Report = Report {
    every: "10s",
    query_seconds: 2,
    concurrency_policy: "Forbid",
};

/// Starts a [`Cluster`] whose Job template has `backoffLimit: backoff_limit`.
async fn cluster(backoff_limit: u32, report: Report) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let state_url = common::postgres_state().to_string_lossy().into_owned();
    let state = sqlx::PgConnection::connect(&state_url).await.unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // The cluster: the state's Secret (the Jobs' pods read FERRY_STATE from it), a Secret with
    // the source's URL, a local directory target, and the report, whose query sleeps (its
    // pg_sleep argument, unique to the cluster, marks it in pg_stat_activity).
    let sleep = format!(
        "pg_sleep({}.{:04}1)",
        report.query_seconds,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros()
            % 10_000
    );
    let api = FakeApi::new();
    api.seed(
        "v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "ferry-state", "namespace": "default"},
               "data": {"url": b64(&state_url)}}),
    );
    api.seed(
        "v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "source-db", "namespace": "default"},
               "data": {"url": b64(common::pg_url())}}),
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
                   "schedule": {"every": report.every},
                   "concurrencyPolicy": report.concurrency_policy,
                   "timeZone": "UTC",
                   "source": {"sql": {
                       "connectionSecretRef": {"name": "source-db", "key": "url"},
                       "query": format!("SELECT n FROM (SELECT 1 AS n, {sleep}) AS slow")}},
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
    // The Job template, as the chart renders it: image, service account, the state from its
    // Secret, resources, TTL and backoff limit.
    let template = dir.path().join("job-template.json");
    std::fs::write(
        &template,
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"labels": {"app.kubernetes.io/name": "ferry"}},
               "spec": {"backoffLimit": backoff_limit, "ttlSecondsAfterFinished": 600,
                        "template": {"spec": {"serviceAccountName": "ferry",
                            "containers": [{"name": "run", "image": "ferry:test",
                                "env": [{"name": "FERRY_STATE", "valueFrom":
                                          {"secretKeyRef": {"name": "ferry-state", "key": "url"}}}],
                                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                              "limits": {"memory": "512Mi"}}}]}}}})
        .to_string(),
    )
    .unwrap();

    let kubelet = Kubelet::start(api.clone(), kubeconfig.clone(), dir.path().join("pods"));
    let template_arg = template.display().to_string();
    let controller_args: Vec<String> = [
        "--executor",
        "job",
        "--job-template",
        &template_arg,
        "--job-poll",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    let controller = start_controller(
        dir.path(),
        &kubeconfig,
        &state_url,
        "ferry-a",
        &controller_args,
    );

    Cluster {
        dir,
        kubeconfig,
        controller_args,
        sleep,
        out,
        state_url,
        state,
        api,
        kubelet,
        controller,
    }
}

/// `ferry controller --instance <instance> --leader-elect ...` with the Job executor.
fn start_controller(
    dir: &Path,
    kubeconfig: &Path,
    state_url: &str,
    instance: &str,
    args: &[String],
) -> Controller {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Controller::start_with(dir, kubeconfig, state_url, instance, &args)
}

/// Waits for the first run's Job's pod to be in the middle of its export (its query running),
/// kills it with SIGKILL, and returns the run and its Job's name.
async fn kill_the_first_export(c: &mut Cluster) -> (i64, String) {
    let (run, first_job) = the_first_export(c).await;
    let pid = c.kubelet.running_pid(&first_job).unwrap_or_else(|| {
        panic!(
            "{first_job} has a running pod: {:?}",
            c.kubelet.pods().iter().map(|p| &p.0).collect::<Vec<_>>()
        )
    });
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    (run, first_job)
}

/// Waits for the first run's Job's pod to be in the middle of its export (its query running);
/// returns the run and its Job's name.
async fn the_first_export(c: &mut Cluster) -> (i64, String) {
    wait_for(
        "a Job's pod exporting",
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut c.state,
                &format!(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' \
                     AND query LIKE '%{}%' AND query NOT LIKE '%pg_stat_activity%'",
                    c.sleep
                ),
            )
            .await
                > 0
            // A run recorded as running, too: the controller's periodic check at start
            // prepares the same query (never runs it), and can be seen active alone.
                && scalar_i64(
                    &mut c.state,
                    "SELECT COUNT(*) FROM runs WHERE outcome = 'running'",
                )
                .await
                    > 0
        },
        &c.controller,
        &c.kubelet,
    )
    .await;
    let run: i64 = scalar_i64(
        &mut c.state,
        "SELECT MIN(id) FROM runs WHERE outcome = 'running'",
    )
    .await;
    (run, format!("ticker-{run}-1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_run_executes_in_a_job_and_a_job_killed_mid_export_is_resumed_with_one_delivery() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut c = cluster(2, TICKER).await;
    let (run, first_job) = kill_the_first_export(&mut c).await;
    let (dir, out, state_url, api) = (&c.dir, c.out.clone(), c.state_url.clone(), c.api.clone());
    let (controller, kubelet, state) = (&c.controller, &c.kubelet, &mut c.state);

    // The Job's next pod resumes the same run and delivers it.
    wait_for(
        "the killed run to succeed",
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut *state,
                &format!("SELECT COUNT(*) FROM runs WHERE id = {run} AND outcome = 'succeeded'"),
            )
            .await
                == 1
        },
        controller,
        kubelet,
    )
    .await;
    // And the next slot's run goes through a Job of its own, first time.
    wait_for(
        "a second run to succeed",
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut *state,
                &format!("SELECT COUNT(*) FROM runs WHERE id > {run} AND outcome = 'succeeded'"),
            )
            .await
                >= 1
        },
        controller,
        kubelet,
    )
    .await;
    let second: i64 = scalar_i64(
        &mut *state,
        &format!("SELECT MIN(id) FROM runs WHERE id > {run} AND outcome = 'succeeded'"),
    )
    .await;
    // The leader reported them (its Events come from the ledger once the Job is done; the
    // recorder folds repeated reasons into one Event series).
    wait_for(
        "the leader's Events of the runs",
        Duration::from_secs(30),
        async || {
            api.list("events.k8s.io/v1/events")
                .iter()
                .any(|e| e["regarding"]["name"] == "ticker" && e["reason"] == "RunSucceeded")
        },
        controller,
        kubelet,
    )
    .await;

    let second_job = format!("ticker-{second}-1");
    wait_for(
        "both Jobs to complete",
        Duration::from_secs(30),
        async || {
            [&first_job, &second_job].iter().all(|j| {
                api.get(JOBS, "default", j)
                    .is_some_and(|j| condition(&j, "Complete"))
            })
        },
        controller,
        kubelet,
    )
    .await;

    // The killed run's Job ran two pods: the first killed by a signal, the second succeeded;
    // the second run's Job one pod.
    let pods = kubelet.pods();
    let of = |job: &str| -> Vec<Option<Option<i32>>> {
        pods.iter().filter(|p| p.0 == job).map(|p| p.1).collect()
    };
    assert_eq!(
        of(&first_job),
        vec![Some(None), Some(Some(0))],
        "{}",
        kubelet.logs()
    );
    assert_eq!(of(&second_job), vec![Some(Some(0))]);
    // The killed pod had started exporting: its staged file stayed in its own work directory;
    // the next pod exported again into its own.
    let killed_pod_files = files_under(
        &pods
            .iter()
            .find(|p| p.0 == first_job)
            .unwrap()
            .2
            .join("work"),
    );
    assert!(
        killed_pod_files
            .iter()
            .any(|f| f.to_string_lossy().contains("/staging/")),
        "{killed_pod_files:?}"
    );

    // The Job: named after schedule, run and attempt, owned by the ReportSchedule, labelled,
    // with the template's TTL, backoff limit and resources, executing exactly that run.
    let job = api.get(JOBS, "default", &first_job).expect("the Job");
    let schedule = api
        .get("ferry.dev/v1alpha1/reportschedules", "default", "ticker")
        .unwrap();
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"]),
        (
            &json!("ReportSchedule"),
            &json!("ticker"),
            &schedule["metadata"]["uid"]
        )
    );
    assert_eq!(job["metadata"]["labels"]["ferry.dev/schedule"], "ticker");
    assert_eq!(
        job["metadata"]["labels"]["ferry.dev/run-id"],
        run.to_string()
    );
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(job["spec"]["backoffLimit"], 2);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "ferry");
    assert_eq!(pod["containers"][0]["resources"]["requests"]["cpu"], "100m");
    assert_eq!(
        pod["containers"][0]["args"],
        json!(["exec-run", "--run-id", run.to_string()])
    );
    assert!(condition(&job, "Complete"), "{job}");
    // No secret value in any Job: the state's URL is a reference to its Secret.
    for job in api.list(JOBS) {
        let text = job.to_string();
        assert!(
            !text.contains(&state_url) && !text.contains(common::pg_url()),
            "{text}"
        );
    }

    // One delivery per slot: the killed run's slot reached the target once, and the run is
    // one run in the history, resumed under its id, owned by nobody once done.
    let slot = scalar_i64(
        &mut *state,
        &format!("SELECT slot_epoch FROM runs WHERE id = {run}"),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &mut *state,
            &format!("SELECT COUNT(*) FROM runs WHERE slot_epoch = {slot}")
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &mut *state,
            &format!("SELECT COUNT(*) FROM deliveries WHERE slot_epoch = {slot} AND outcome = 'succeeded'")
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &mut *state,
            "SELECT COUNT(*) FROM runs WHERE owner IS NOT NULL AND outcome <> 'running'"
        )
        .await,
        0
    );
    let delivered = files_in(&out);
    let per_slot = scalar_i64(
        &mut *state,
        "SELECT COUNT(*) FROM deliveries WHERE outcome = 'succeeded'",
    )
    .await;
    assert_eq!(
        delivered.len() as i64,
        per_slot,
        "one file per delivery: {delivered:?}"
    );
    assert!(
        delivered
            .iter()
            .all(|f| f.starts_with("report_") && f.ends_with(".csv")),
        "{delivered:?}"
    );

    // The status as in-process runs write it: the schedule's last run in the state.
    let status: String = sqlx::query_scalar(
        "SELECT status FROM resources WHERE kind = 'ReportSchedule' AND name = 'ticker'",
    )
    .fetch_one(&mut *state)
    .await
    .unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["lastRun"]["outcome"], "succeeded", "{status}");
    // Events as in-process: the run and its delivery, from the leader.
    let reasons: Vec<String> = api
        .list("events.k8s.io/v1/events")
        .iter()
        .filter(|e| e["regarding"]["name"] == "ticker")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(reasons.contains(&"Delivered".to_string()), "{reasons:?}");

    // The leader decided and recorded, and never exported: nothing was ever staged in its
    // work directory.
    let leader_staged = files_under(&dir.path().join("ferry-a").join("staging"));
    assert!(leader_staged.is_empty(), "{leader_staged:?}");
    assert!(
        controller.log().contains("run handed to a Job"),
        "{}",
        controller.log()
    );

    // A pod that starts again after its run ended (the Job retried it anyway) only reports it:
    // exit 0, nothing exported or delivered again.
    let deliveries_before = scalar_i64(&mut *state, "SELECT COUNT(*) FROM deliveries").await;
    let again = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_clear()
        .env("FERRY_STATE", &state_url)
        .env("FERRY_WORK_DIR", dir.path().join("again"))
        .env("NO_COLOR", "1")
        .args(["exec-run", "--run-id", &run.to_string(), "--secrets-mirror"])
        .arg(dir.path().join("again-secrets"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("run {run}: succeeded")),
        "{stdout}"
    );
    assert_eq!(
        scalar_i64(&mut *state, "SELECT COUNT(*) FROM deliveries").await,
        deliveries_before
    );
    // A run the ledger does not have is an error (exit 1: the Job may retry).
    let missing = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_clear()
        .env("FERRY_STATE", &state_url)
        .env("FERRY_WORK_DIR", dir.path().join("again"))
        .env("NO_COLOR", "1")
        .args(["exec-run", "--run-id", "999999", "--secrets-mirror"])
        .arg(dir.path().join("again-secrets"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("run 999999 is not in the ledger"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_fails_for_good_is_followed_by_a_new_job_for_the_same_run() {
    // No pod retries: the killed pod fails its Job.
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut c = cluster(0, TICKER).await;
    let (run, first_job) = kill_the_first_export(&mut c).await;
    let second_job = format!("ticker-{run}-2");
    wait_for(
        "the run to succeed in the leader's next Job",
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut c.state,
                &format!("SELECT COUNT(*) FROM runs WHERE id = {run} AND outcome = 'succeeded'"),
            )
            .await
                == 1
        },
        &c.controller,
        &c.kubelet,
    )
    .await;

    wait_for(
        "the second Job to complete",
        Duration::from_secs(30),
        async || {
            c.api
                .get(JOBS, "default", &second_job)
                .is_some_and(|j| condition(&j, "Complete"))
        },
        &c.controller,
        &c.kubelet,
    )
    .await;
    // The first Job failed (its one pod killed); the leader created the second, whose pod
    // resumed the run.
    let first = c
        .api
        .get(JOBS, "default", &first_job)
        .expect("the first Job");
    assert!(condition(&first, "Failed"), "{first}");
    let pods = c.kubelet.pods();
    let of = |job: &str| -> Vec<Option<Option<i32>>> {
        pods.iter().filter(|p| p.0 == job).map(|p| p.1).collect()
    };
    assert_eq!(of(&first_job), vec![Some(None)], "{}", c.kubelet.logs());
    assert_eq!(of(&second_job), vec![Some(Some(0))], "{}", c.kubelet.logs());
    let second = c
        .api
        .get(JOBS, "default", &second_job)
        .expect("the second Job");
    assert_eq!(
        second["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["exec-run", "--run-id", run.to_string()])
    );
    let log = c.controller.log();
    assert!(
        log.contains(&format!("Job {first_job} failed (BackoffLimitExceeded)")),
        "{log}"
    );

    // Still one run and one delivery for the slot.
    let slot = scalar_i64(
        &mut c.state,
        &format!("SELECT slot_epoch FROM runs WHERE id = {run}"),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &mut c.state,
            &format!("SELECT COUNT(*) FROM runs WHERE slot_epoch = {slot}")
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &mut c.state,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE slot_epoch = {slot} AND outcome = 'succeeded'"
            )
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_replaced_by_the_next_slot_has_its_job_deleted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Every 4 s, the query 6 s, concurrencyPolicy Replace: each slot replaces the run before.
    let mut c = cluster(
        2,
        Report {
            every: "4s",
            query_seconds: 6,
            concurrency_policy: "Replace",
        },
    )
    .await;
    wait_for(
        "a run replaced",
        Duration::from_secs(60),
        async || {
            // The controller creates the tables once it runs.
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM runs WHERE outcome = 'cancelled'")
                .fetch_one(&mut c.state)
                .await
                .is_ok_and(|n| n > 0)
        },
        &c.controller,
        &c.kubelet,
    )
    .await;
    let run = scalar_i64(
        &mut c.state,
        "SELECT MIN(id) FROM runs WHERE outcome = 'cancelled'",
    )
    .await;
    let job = format!("ticker-{run}-1");
    // Its Job is deleted (and so its pod stopped), instead of exporting on for nothing.
    wait_for(
        "the replaced run's Job deleted and its pod stopped",
        Duration::from_secs(30),
        async || {
            c.api.get(JOBS, "default", &job).is_none()
                && c.kubelet.pods().iter().any(|p| p.0 == job && p.1.is_some())
        },
        &c.controller,
        &c.kubelet,
    )
    .await;
    assert!(
        c.controller
            .log()
            .contains("the replaced run's Job deleted"),
        "{}",
        c.controller.log()
    );
    assert_eq!(
        scalar_i64(
            &mut c.state,
            &format!("SELECT COUNT(*) FROM deliveries WHERE run_id = {run}")
        )
        .await,
        0
    );
    let (outcome,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT outcome FROM runs WHERE id = {run}"
    )))
    .fetch_one(&mut c.state)
    .await
    .unwrap();
    assert_eq!(outcome, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_waits_for_the_job_its_predecessor_created_instead_of_starting_another() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The query takes 8 s: the leader is killed while its run's pod exports, and the standby
    // takes over (Lease: 3 s) before the pod is done.
    let mut c = cluster(
        2,
        Report {
            every: "10s",
            query_seconds: 8,
            concurrency_policy: "Forbid",
        },
    )
    .await;
    let (run, job) = the_first_export(&mut c).await;
    let b = start_controller(
        c.dir.path(),
        &c.kubeconfig,
        &c.state_url,
        "ferry-b",
        &c.controller_args,
    );
    c.controller.kill9();

    wait_for(
        "the run to succeed",
        Duration::from_secs(60),
        async || {
            scalar_i64(
                &mut c.state,
                &format!("SELECT COUNT(*) FROM runs WHERE id = {run} AND outcome = 'succeeded'"),
            )
            .await
                == 1
        },
        &b,
        &c.kubelet,
    )
    .await;
    wait_for(
        "its Job to complete",
        Duration::from_secs(30),
        async || {
            c.api
                .get(JOBS, "default", &job)
                .is_some_and(|j| condition(&j, "Complete"))
        },
        &b,
        &c.kubelet,
    )
    .await;
    // The new leader took the run over (it was the old leader's in the ledger) and waited for
    // the Job already running it: no second Job, one pod, one delivery.
    let log = b.log();
    assert!(log.contains("resuming an interrupted run"), "{log}");
    assert!(
        c.api
            .get(JOBS, "default", &format!("ticker-{run}-2"))
            .is_none(),
        "{log}"
    );
    let pods: Vec<_> = c
        .kubelet
        .pods()
        .into_iter()
        .filter(|p| p.0 == job)
        .collect();
    assert_eq!(pods.len(), 1, "{}", c.kubelet.logs());
    assert_eq!(pods[0].1, Some(Some(0)));
    let slot = scalar_i64(
        &mut c.state,
        &format!("SELECT slot_epoch FROM runs WHERE id = {run}"),
    )
    .await;
    assert_eq!(
        scalar_i64(
            &mut c.state,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE slot_epoch = {slot} AND outcome = 'succeeded'"
            )
        )
        .await,
        1
    );
}
