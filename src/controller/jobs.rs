//! `ferry controller --executor job`: each run executes in a Kubernetes Job, so exports scale
//! out over the cluster's nodes instead of the leader's pod.
//!
//! The leader only decides and records: it records the run's start in the ledger (the same
//! [`Runner::record_start`] an in-process run begins with: adopt, in-flight and
//! nothing-to-deliver checks), creates a Job whose one pod runs `ferry exec-run --run-id N`
//! against the shared PostgreSQL state, waits for the run to end in the ledger, and reports it
//! from there ([`Runner::ended_report`]): Events, status, metrics and logs as today. The run
//! stays the leader's in the ledger while the Job executes it, so the leader never takes its
//! own Job's run for interrupted, and a new leader after a failover resumes it (and finds the
//! Job still running under its deterministic name, instead of starting a second one).
//!
//! A pod that dies mid-export leaves the run `running`: the Job's next pod (`backoffLimit`)
//! executes the same run id again, re-exporting into its own staging area (the file name,
//! slot and window are the run's) and delivering only to targets that do not have the slot;
//! the (schedule, slot, target) key of the ledger refuses a second delivery. When a Job fails
//! for good (or is deleted) with the run still running, the leader creates the next Job for
//! it, up to [`MAX_JOBS_PER_RUN`], then records the run as failed. How long a Job may take is
//! the Job's own `activeDeadlineSeconds` (from the template); the leader polls the ledger and
//! the Job until one of them says the run ended. A run replaced by a newer one
//! (`concurrencyPolicy: Replace`) is cancelled in the ledger and its Job deleted.
//!
//! The Job is built from a template (a batch/v1 Job, JSON or YAML; the chart renders it from
//! its values: image, service account, the state Secret as env FERRY_STATE, resources, TTL,
//! backoff limit, security contexts). Ferry adds the name `<schedule>-<run>-<attempt>`, the
//! labels, an ownerReference to the ReportSchedule when it lives in the Jobs' namespace (an
//! ownerReference cannot cross namespaces), `restartPolicy: Never`, a pod failure policy that
//! ends the Job at once when the run itself ended unsuccessfully (exit code
//! [`EXIT_RUN_ENDED`]: retrying would change nothing), and the container's arguments. No
//! secret value is in the Job: the pod reads the state URL from its Secret and mirrors the
//! Secrets its schedule and targets refer to from the API, as the controller does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};

use super::secrets::SecretMirror;
use crate::api::{Kind, ReportSchedule, ResourceKey};
use crate::daemon::Executor;
use crate::ledger::{Ledger, Outcome, Trigger};
use crate::runner::{RunReport, RunRequest, Runner, ScheduleView, Started};
use crate::state::StateStore;
use crate::{Error, Result};

/// Label of a run's Job and pod: the ReportSchedule's name (a label value, at most 63
/// characters).
pub const SCHEDULE_LABEL: &str = "ferry.dev/schedule";
/// Label of a run's Job and pod: the ReportSchedule's namespace.
pub const SCHEDULE_NAMESPACE_LABEL: &str = "ferry.dev/schedule-namespace";
/// Label of a run's Job and pod: the run's ledger id.
pub const RUN_ID_LABEL: &str = "ferry.dev/run-id";

/// `ferry exec-run`'s exit code when the run ended, but not successfully (failed, partial,
/// outcome unknown, cancelled): the Job's pod failure policy fails the Job at once, since a
/// retry would only find the run ended.
pub const EXIT_RUN_ENDED: u8 = 3;

/// How many Jobs the leader creates for one run (each with its own pod retries) before it
/// records the run as failed.
pub const MAX_JOBS_PER_RUN: u32 = 3;

/// `ttlSecondsAfterFinished` when the template has none: finished Jobs stay an hour for
/// `kubectl logs`, then go.
pub const DEFAULT_TTL_SECONDS: i32 = 3600;

/// `backoffLimit` when the template has none: a pod that dies is replaced twice.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 2;

/// Where and how runs' Jobs are created.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// The Job every run's Job starts from.
    pub template: Job,
    /// The namespace of the Jobs: the controller's, where its ServiceAccount and the state's
    /// Secret are.
    pub namespace: String,
    /// How often the leader looks at a running Job and its run.
    pub poll: Duration,
}

impl JobSettings {
    /// Reads the template (a batch/v1 Job, JSON or YAML) from `path`. It must have one
    /// container: the one that runs `ferry exec-run`.
    pub fn from_file(path: &Path, namespace: &str, poll: Duration) -> Result<JobSettings> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_saphyr::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: not a Job template: {e}", path.display())))?;
        let template: Job = serde_json::from_value(value)
            .map_err(|e| Error::Usage(format!("{}: not a Job template: {e}", path.display())))?;
        let containers = template
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map_or(0, |p| p.containers.len());
        if containers != 1 {
            return Err(Error::Usage(format!(
                "{}: the Job template needs exactly one container (the one running `ferry \
                 exec-run`), not {containers}",
                path.display()
            )));
        }
        Ok(JobSettings {
            template,
            namespace: namespace.to_string(),
            poll,
        })
    }
}

/// The name of run `run_id`'s `attempt`th Job: `<schedule>-<run>-<attempt>`, the schedule's
/// name shortened so that the whole is a valid label value (the Job controller labels the
/// pods with it): at most 63 characters, lower-case letters, digits and `-`.
pub fn job_name(schedule: &str, run_id: i64, attempt: u32) -> String {
    let suffix = format!("-{run_id}-{attempt}");
    let mut stem: String = schedule
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(63 - suffix.len())
        .collect();
    while stem.ends_with('-') {
        stem.pop();
    }
    if stem.is_empty() {
        stem.push_str("run");
    }
    format!("{stem}{suffix}")
}

/// A label value made of `value`: at most 63 characters, ending on a letter or digit.
fn label_value(value: &str) -> String {
    let mut v: String = value.chars().take(63).collect();
    while v.ends_with(['-', '.', '_']) {
        v.pop();
    }
    v
}

/// Run `run_id`'s `attempt`th Job, built from `template`: name, namespace, labels, the owner
/// (the ReportSchedule, when in the same namespace), TTL and backoff defaults, `restartPolicy:
/// Never`, the pod failure policy and the container's `exec-run` arguments.
pub fn job_for_run(
    template: &Job,
    namespace: &str,
    schedule: &ResourceKey,
    run_id: i64,
    attempt: u32,
    owner: Option<OwnerReference>,
) -> Job {
    let mut job = template.clone();
    let labels = BTreeMap::from([
        (SCHEDULE_LABEL.to_string(), label_value(&schedule.name)),
        (
            SCHEDULE_NAMESPACE_LABEL.to_string(),
            label_value(&schedule.namespace),
        ),
        (RUN_ID_LABEL.to_string(), run_id.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "ferry".to_string(),
        ),
    ]);
    let meta = &mut job.metadata;
    meta.name = Some(job_name(&schedule.name, run_id, attempt));
    meta.generate_name = None;
    meta.namespace = Some(namespace.to_string());
    meta.resource_version = None;
    meta.uid = None;
    meta.labels.get_or_insert_default().extend(labels.clone());
    meta.owner_references = owner.map(|o| vec![o]);
    let spec = job.spec.get_or_insert_default();
    spec.ttl_seconds_after_finished
        .get_or_insert(DEFAULT_TTL_SECONDS);
    spec.backoff_limit.get_or_insert(DEFAULT_BACKOFF_LIMIT);
    spec.pod_failure_policy
        .get_or_insert_with(|| PodFailurePolicy { rules: Vec::new() })
        .rules
        .push(PodFailurePolicyRule {
            action: "FailJob".into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".into(),
                values: vec![EXIT_RUN_ENDED.into()],
            }),
            on_pod_conditions: None,
        });
    let pod = &mut spec.template;
    pod.metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .extend(labels);
    let pod_spec = pod.spec.get_or_insert_default();
    pod_spec.restart_policy = Some("Never".into());
    if let Some(container) = pod_spec.containers.first_mut() {
        container.args.get_or_insert_default().extend([
            "exec-run".to_string(),
            "--run-id".to_string(),
            run_id.to_string(),
        ]);
    }
    job
}

/// How a Job ended, if it did: `Complete`, or `Failed` with the reason.
fn job_end(job: &Job) -> Option<String> {
    let status = job.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Some("completed".into()),
            "Failed" => {
                return Some(format!(
                    "failed ({}): {}",
                    c.reason.as_deref().unwrap_or("no reason"),
                    c.message.as_deref().unwrap_or("no message")
                ));
            }
            _ => {}
        }
    }
    None
}

fn kube_error(e: kube::Error) -> Error {
    Error::State(format!("kubernetes: {e}"))
}

/// Executes runs in Kubernetes Jobs (see the module documentation).
#[derive(Clone)]
pub struct JobExecutor {
    client: Client,
    settings: Arc<JobSettings>,
}

impl std::fmt::Debug for JobExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobExecutor")
            .field("namespace", &self.settings.namespace)
            .finish()
    }
}

/// How waiting for a run's Job ended.
enum Waited {
    /// The run ended (in the ledger): its report.
    Ended(RunReport),
    /// The Job ended (or went) with the run still running: why.
    JobEnded(String),
}

impl JobExecutor {
    /// An executor creating Jobs with `client` as `settings` say.
    pub fn new(client: Client, settings: JobSettings) -> JobExecutor {
        JobExecutor {
            client,
            settings: Arc::new(settings),
        }
    }

    async fn run(
        &self,
        runner: Runner,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> Result<RunReport> {
        let timer = Instant::now();
        let run_id = match runner.record_start(&view, &request).await? {
            Started::Done(report) => return Ok(report),
            Started::Run(id) => id,
        };
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let mut replaced = ReplacedRun {
            api: api.clone(),
            ledger: runner.ledger().clone(),
            run_id,
            job: None,
        };
        let mut last = String::new();
        for attempt in 1..=MAX_JOBS_PER_RUN {
            let name = job_name(&view.key.name, run_id, attempt);
            replaced.job = Some(name.clone());
            // A Job of this name may exist: a previous leader created it (and it may still be
            // running the run); it is waited for, not created twice.
            let existing = api.get_opt(&name).await.map_err(kube_error)?;
            if existing.is_none() {
                let job = self.job(&view, run_id, attempt).await?;
                match api.create(&PostParams::default(), &job).await {
                    Ok(_) => {
                        tracing::info!(schedule = %view.key, run = run_id, job = %name, "run handed to a Job")
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        last = format!("Job {name} could not be created: {e}");
                        tracing::warn!(schedule = %view.key, run = run_id, "{last}");
                        tokio::time::sleep(self.settings.poll).await;
                        continue;
                    }
                }
            }
            match self
                .wait(&api, &name, &runner, &view, &request, run_id, timer)
                .await?
            {
                Waited::Ended(report) => {
                    replaced.job = None;
                    return Ok(report);
                }
                Waited::JobEnded(why) => {
                    tracing::warn!(schedule = %view.key, run = run_id, "{why}, the run unfinished");
                    last = why;
                }
            }
        }
        replaced.job = None;
        let reason =
            format!("{MAX_JOBS_PER_RUN} Jobs ended without finishing the run; the last: {last}");
        runner
            .give_up(&view, &request, run_id, &reason, timer)
            .await
    }

    /// Waits until run `run_id` ends in the ledger, or its Job `name` ends or goes without
    /// it.
    #[allow(clippy::too_many_arguments)]
    async fn wait(
        &self,
        api: &Api<Job>,
        name: &str,
        runner: &Runner,
        view: &ScheduleView,
        request: &RunRequest,
        run_id: i64,
        timer: Instant,
    ) -> Result<Waited> {
        loop {
            if let Some(report) = runner.ended_report(view, request, run_id, timer).await? {
                return Ok(Waited::Ended(report));
            }
            match api.get_opt(name).await {
                Ok(None) => return Ok(Waited::JobEnded(format!("Job {name} was deleted"))),
                Ok(Some(job)) => {
                    if let Some(end) = job_end(&job) {
                        // The pod may have recorded the end just before the Job ended.
                        if let Some(report) =
                            runner.ended_report(view, request, run_id, timer).await?
                        {
                            return Ok(Waited::Ended(report));
                        }
                        return Ok(Waited::JobEnded(format!("Job {name} {end}")));
                    }
                }
                // The API server away for a moment: the Job goes on without it.
                Err(e) => tracing::warn!(job = name, "cannot read the Job: {e}; asking again"),
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Run `run_id`'s `attempt`th Job for `view`, owned by the ReportSchedule when it is in
    /// the Jobs' namespace.
    async fn job(&self, view: &ScheduleView, run_id: i64, attempt: u32) -> Result<Job> {
        let owner = if view.key.namespace == self.settings.namespace {
            let schedules: Api<ReportSchedule> =
                Api::namespaced(self.client.clone(), &view.key.namespace);
            schedules
                .get_opt(&view.key.name)
                .await
                .map_err(kube_error)?
                .and_then(|s| {
                    Some(OwnerReference {
                        api_version: ReportSchedule::api_version(&()).into_owned(),
                        kind: ReportSchedule::kind(&()).into_owned(),
                        name: view.key.name.clone(),
                        uid: s.metadata.uid?,
                        controller: Some(true),
                        block_owner_deletion: None,
                    })
                })
        } else {
            None
        };
        Ok(job_for_run(
            &self.settings.template,
            &self.settings.namespace,
            &view.key,
            run_id,
            attempt,
            owner,
        ))
    }
}

impl Executor for JobExecutor {
    fn execute(
        &self,
        runner: Runner,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> BoxFuture<'static, Result<RunReport>> {
        let this = self.clone();
        Box::pin(async move { this.run(runner, view, request).await })
    }
}

/// Stops a run's Job when the daemon stops waiting for it because the run was replaced
/// (`concurrencyPolicy: Replace` cancels it in the ledger and drops the wait): the Job is
/// deleted with its pod. A wait dropped for another reason (the leader shutting down) leaves
/// the run `running` and its Job going, for the next leader to wait for.
struct ReplacedRun {
    api: Api<Job>,
    ledger: Ledger,
    run_id: i64,
    /// The Job being waited for; `None` once the wait ended normally.
    job: Option<String>,
}

impl Drop for ReplacedRun {
    fn drop(&mut self) {
        let (Some(job), Ok(runtime)) = (self.job.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (api, ledger, run_id) = (self.api.clone(), self.ledger.clone(), self.run_id);
        runtime.spawn(async move {
            // The daemon marks the run cancelled right after it drops the wait.
            for _ in 0..10 {
                match ledger.run(run_id).await {
                    Ok(Some(run)) if run.outcome == Outcome::Cancelled => {
                        match api.delete(&job, &DeleteParams::background()).await {
                            Ok(_) => {
                                tracing::info!(run = run_id, job, "the replaced run's Job deleted")
                            }
                            Err(e) => tracing::warn!(
                                run = run_id,
                                job,
                                "the replaced run's Job not deleted: {e}"
                            ),
                        }
                        return;
                    }
                    Ok(Some(run)) if run.outcome != Outcome::Running => return,
                    Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
}

/// What `ferry exec-run` did with a recorded run: its report, or why there was none, and the
/// exit code (0: succeeded or skipped; [`EXIT_RUN_ENDED`]: ended otherwise).
#[derive(Debug)]
pub struct Executed {
    /// The run's report (of this execution, or of an earlier one that already ended it).
    pub report: Option<RunReport>,
    /// Why nothing was executed, when nothing was.
    pub note: Option<String>,
    /// The process's exit code.
    pub code: u8,
}

/// `ferry exec-run`: executes run `run_id`, recorded as running by the leader, in this
/// process (a Job's pod): reads the run and its schedule from the shared state, mirrors the
/// Secrets the schedule and its targets refer to (and the ticket-syncing CustomerMappings of a
/// schedule labelled with a customer) from the cluster into `mirror`, and executes
/// it ([`Runner::execute_recorded`]). The run stays the leader's in the ledger. A run that
/// already ended (a pod retried after the run was recorded) is only reported.
pub async fn execute_recorded_run(
    store: StateStore,
    mirror: SecretMirror,
    client: impl AsyncFnOnce() -> Result<Client>,
    run_id: i64,
) -> Result<Executed> {
    let ledger = Ledger::new(store.pool().clone());
    let Some(run) = ledger.run(run_id).await? else {
        return Err(Error::Usage(format!(
            "run {run_id} is not in the ledger of {}",
            store.location()
        )));
    };
    let key = ResourceKey::new(Kind::ReportSchedule, &run.namespace, &run.schedule);
    let Some(stored) = store.get(&key).await? else {
        if run.outcome == Outcome::Running {
            ledger
                .finish_run(
                    run_id,
                    Outcome::Cancelled,
                    Some("the schedule was deleted"),
                    &crate::clock::now()?.to_string(),
                )
                .await?;
        }
        return Ok(Executed {
            report: None,
            note: Some(format!("{key} was deleted: run {run_id} not executed")),
            code: EXIT_RUN_ENDED,
        });
    };
    let view = ScheduleView::from_stored(&stored)?;
    let tz = view.compiled()?.time_zone().clone();
    let slot = jiff::Timestamp::from_second(run.slot_epoch())
        .map_err(|e| Error::State(e.to_string()))?
        .to_zoned(tz);
    let trigger: Trigger = serde_json::from_value(serde_json::Value::from(run.trigger.clone()))
        .map_err(|e| Error::State(format!("run {run_id}'s trigger: {e}")))?;
    let request = RunRequest {
        slot,
        trigger,
        resend: false,
        resume: Some(run_id),
    };
    let runner = Runner::new(store.clone(), mirror.files().clone());
    let report = if run.outcome != Outcome::Running {
        runner
            .ended_report(&view, &request, run_id, Instant::now())
            .await?
    } else {
        mirror_run_secrets(&store, &mirror, &stored, &view, client).await?;
        Some(runner.execute_recorded(&view, request, run_id).await?)
    };
    let code = match report.as_ref().map(|r| r.outcome) {
        Some(Outcome::Succeeded | Outcome::Skipped) => 0,
        _ => EXIT_RUN_ENDED,
    };
    Ok(Executed {
        report,
        note: None,
        code,
    })
}

/// Mirrors from the cluster the Secrets one run of `schedule` reads: those its spec and its
/// targets refer to, and those of the CustomerMappings a customer-labelled schedule reports
/// its runs to (ticket sync). A run reads its credentials as they are now, whoever mirrored
/// what before (a Job's pod starts with an empty mirror; a new leader runs before its
/// reconcilers have mirrored anything).
pub async fn mirror_run_secrets(
    store: &StateStore,
    mirror: &SecretMirror,
    schedule: &crate::state::StoredResource,
    view: &ScheduleView,
    client: impl AsyncFnOnce() -> Result<Client>,
) -> Result<()> {
    let key = &schedule.key;
    let mut specs = vec![schedule.spec.clone()];
    for d in &view.spec.deliver_to {
        let target = ResourceKey::new(Kind::DeliveryTarget, &key.namespace, &d.target);
        if let Some(t) = store.get(&target).await? {
            specs.push(t.spec);
        }
    }
    if let Some(customer) = schedule.meta.labels.get(crate::psa::sync::CUSTOMER_LABEL) {
        let actual = store.snapshot().await?;
        specs.extend(
            actual
                .resources
                .values()
                .filter(|r| {
                    r.key.kind == Kind::CustomerMapping
                        && r.key.namespace == key.namespace
                        && r.spec["customer"].as_str() == Some(customer.as_str())
                })
                .map(|r| r.spec.clone()),
        );
    }
    let names: BTreeSet<String> = specs
        .iter()
        .flat_map(|s| crate::validate::secret_refs(s, "spec"))
        .map(|(_, r)| r.name)
        .collect();
    if !names.is_empty() {
        mirror
            .mirror_names(&client().await?, &key.namespace, names)
            .await?;
    }
    Ok(())
}

/// The controller's in-process executor: mirrors the run's Secrets first
/// ([`mirror_run_secrets`]), then runs it here. Without that, a new leader resuming an
/// interrupted run in its first second read a mirror its reconcilers had not filled yet, and
/// the run failed with "secret not found".
pub struct InProcessMirrored {
    client: Client,
    mirror: SecretMirror,
}

impl std::fmt::Debug for InProcessMirrored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessMirrored")
            .field("mirror", &self.mirror)
            .finish()
    }
}

impl InProcessMirrored {
    /// Runs in this process, mirroring each run's Secrets from the cluster through `client`.
    pub fn new(client: Client, mirror: SecretMirror) -> InProcessMirrored {
        InProcessMirrored { client, mirror }
    }
}

impl Executor for InProcessMirrored {
    fn execute(
        &self,
        runner: Runner,
        view: Arc<ScheduleView>,
        request: RunRequest,
    ) -> BoxFuture<'static, Result<RunReport>> {
        let (client, mirror) = (self.client.clone(), self.mirror.clone());
        Box::pin(async move {
            if let Some(stored) = runner.store().get(&view.key).await? {
                let client = async || Ok(client);
                if let Err(e) =
                    mirror_run_secrets(runner.store(), &mirror, &stored, &view, client).await
                {
                    // The mirror the reconcilers keep may still do: the run says if not.
                    tracing::warn!(schedule = %view.key, "Secrets not refreshed before the run: {e}");
                }
            }
            runner.execute(&view, request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"labels": {"app.kubernetes.io/name": "ferry"}},
            "spec": {"backoffLimit": 4, "template": {"spec": {
                "serviceAccountName": "ferry",
                "containers": [{"name": "run", "image": "ferry:1", "args": ["--log-format", "json"],
                                "resources": {"requests": {"cpu": "100m"}}}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn job_names_are_label_values_that_keep_run_and_attempt() {
        assert_eq!(job_name("daily-sales", 42, 1), "daily-sales-42-1");
        assert_eq!(job_name("Sales.Report", 7, 2), "sales-report-7-2");
        let long = job_name(&"x".repeat(300), 123456, 3);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-123456-3"));
        assert_eq!(job_name("---", 1, 1), "run-1-1");
    }

    #[test]
    fn a_runs_job_carries_the_run_its_owner_and_the_templates_settings() {
        let key = ResourceKey::new(Kind::ReportSchedule, "shop", "daily");
        let owner = OwnerReference {
            api_version: "ferry.dev/v1alpha1".into(),
            kind: "ReportSchedule".into(),
            name: "daily".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let job = job_for_run(&template(), "ferry", &key, 42, 1, Some(owner));
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["metadata"]["name"], "daily-42-1");
        assert_eq!(v["metadata"]["namespace"], "ferry");
        assert_eq!(v["metadata"]["labels"]["ferry.dev/run-id"], "42");
        assert_eq!(v["metadata"]["labels"]["ferry.dev/schedule"], "daily");
        assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/name"], "ferry");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u-1");
        // The template's backoff limit stays; the TTL gets its default.
        assert_eq!(v["spec"]["backoffLimit"], 4);
        assert_eq!(v["spec"]["ttlSecondsAfterFinished"], DEFAULT_TTL_SECONDS);
        assert_eq!(
            v["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"][0],
            EXIT_RUN_ENDED
        );
        let pod = &v["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"]["ferry.dev/run-id"], "42");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(
            pod["spec"]["containers"][0]["args"],
            serde_json::json!(["--log-format", "json", "exec-run", "--run-id", "42"])
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "100m"
        );
    }

    #[test]
    fn a_job_ends_complete_or_failed_by_its_conditions() {
        let mut job = template();
        assert_eq!(job_end(&job), None);
        job.status = serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "3 pods failed"}]}))
        .unwrap();
        assert_eq!(
            job_end(&job).as_deref(),
            Some("failed (BackoffLimitExceeded): 3 pods failed")
        );
        job.status = serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Complete", "status": "True"}]}))
        .unwrap();
        assert_eq!(job_end(&job).as_deref(), Some("completed"));
    }
}
