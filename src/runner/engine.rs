//! The [`Runner`] over one state store: what a run is asked and reports ([`RunRequest`],
//! [`RunReport`]), the applied schedules, which slots to start (recording the missed and
//! skipped ones), resuming runs a crash interrupted, and the schedule's status.

use std::path::PathBuf;

use jiff::{Timestamp, Zoned};
use serde_json::{Value, json};

use crate::api::{Kind, ResourceKey, Spec};
use crate::ledger::{Ledger, Outcome, Trigger, rfc3339};
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::secrets::FileSecrets;
use crate::state::StateStore;
use crate::{Error, Result};

use super::decide::{ScheduleView, decide, missed_summary, slot_key};

/// A request to run one slot.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The slot.
    pub slot: Zoned,
    /// Why.
    pub trigger: Trigger,
    /// Deliver again to targets that already have this slot (an explicit re-send).
    pub resend: bool,
    /// Continue this interrupted run instead of starting a new one.
    pub resume: Option<i64>,
}

/// The result of a run, as reported to the user.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The ReportSchedule.
    pub schedule: ResourceKey,
    /// The slot, RFC 3339 with the zone's offset.
    pub slot: String,
    /// Ledger id.
    pub run_id: i64,
    /// Outcome.
    pub outcome: Outcome,
    /// Rows exported.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// The file name.
    pub file_name: String,
    /// Per target: outcome, or why it was skipped or failed.
    pub targets: Vec<(String, String)>,
    /// The error, for a failed run.
    pub error: Option<String>,
}

/// Executes runs against one state store.
#[derive(Clone)]
pub struct Runner {
    pub(super) store: StateStore,
    pub(super) ledger: Ledger,
    pub(super) secrets: FileSecrets,
    pub(super) staging: PathBuf,
    pub(super) hosted_sftp_data: PathBuf,
    /// The state's lineage, read once (it never changes), for delivery keys.
    pub(super) lineage: std::sync::Arc<tokio::sync::OnceCell<String>>,
    /// Deliveries at once per target (`maxConnections`), shared by the clones of this runner.
    pub(super) limits: std::sync::Arc<super::limits::TargetLimits>,
    /// Show a progress line on the terminal while exporting (it redraws itself with escape
    /// codes: off with `--no-color`).
    pub progress: bool,
}

impl Runner {
    /// A runner over `store`, reading secrets from `secrets`. Files are staged next to the
    /// state database, where no consumer looks.
    pub fn new(store: StateStore, secrets: FileSecrets) -> Runner {
        let staging = store.work_dir().join("staging");
        let hosted_sftp_data = crate::hosted_sftp::data_dir_in(store.work_dir());
        Runner {
            ledger: Ledger::new(store.pool().clone()),
            store,
            secrets,
            staging,
            hosted_sftp_data,
            lineage: Default::default(),
            limits: Default::default(),
            progress: false,
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The secrets.
    pub fn secrets(&self) -> &FileSecrets {
        &self.secrets
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Every applied ReportSchedule.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        let actual = self.store.snapshot().await?;
        actual
            .resources
            .values()
            .filter(|r| r.key.kind == Kind::ReportSchedule)
            .map(ScheduleView::from_stored)
            .collect()
    }

    /// The applied `hostedSftp` connections, for Ferry's SFTP server.
    pub async fn hosted_connections(&self) -> Result<Vec<crate::hosted_sftp::Connection>> {
        let actual = self.store.snapshot().await?;
        let mut connections = Vec::new();
        for r in actual
            .resources
            .values()
            .filter(|r| r.key.kind == Kind::DeliveryTarget)
        {
            if let Some(Spec::DeliveryTarget(spec)) = r.typed_spec()
                && let Some(t) = &spec.hosted_sftp
            {
                connections.push(crate::hosted_sftp::Connection::from_target(
                    &r.key.namespace,
                    &r.key.name,
                    t,
                ));
            }
        }
        Ok(connections)
    }

    /// Decides for one schedule at `now` and records its missed slots. Returns the run to
    /// start, if any. Suspended schedules record nothing and run nothing.
    pub async fn plan_due(
        &self,
        view: &ScheduleView,
        now: Timestamp,
    ) -> Result<Option<RunRequest>> {
        if view.spec.suspend {
            return Ok(None);
        }
        let compiled = view.compiled()?;
        let last = self
            .ledger
            .last_slot(&view.key.namespace, &view.key.name)
            .await?;
        let reference = decision_reference(view, last);
        let decision = decide(&compiled, reference, view.deadline()?, now);
        let now_s = now.to_string();
        // Read before the missed slots are recorded: whether they are news (a `missed` alert).
        let before_missed = if decision.missed.is_empty() || view.spec.notify.on_missed.is_empty() {
            None
        } else {
            self.ledger
                .previous_outcome(&view.key.namespace, &view.key.name, i64::MAX)
                .await?
        };
        let reason = match view.spec.starting_deadline.as_deref() {
            Some(d) => format!("missed by more than startingDeadline {d} (ferry was not running)"),
            None => "superseded by a later slot (ferry was not running)".to_string(),
        };
        for slot in &decision.missed {
            let key = slot_key(view, slot);
            self.ledger
                .record_unrun(&key, Trigger::CatchUp, Outcome::Missed, &reason, &now_s)
                .await?;
            crate::observe::slot_missed(&view.key.namespace, &view.key.name);
        }
        self.alert_missed(view, before_missed, &decision.missed, &reason)
            .await;
        if let Some(line) = missed_summary(view, &decision, &reason) {
            // One line per schedule and decision, however long the downtime: each slot is in
            // the ledger (`ferry history`), not in the log.
            tracing::warn!(schedule = %view.key, missed = decision.missed.len(), "{line}");
            self.report_status(view, now).await?;
        }
        Ok(decision.run.map(|(slot, trigger)| RunRequest {
            slot,
            trigger,
            resend: false,
            resume: None,
        }))
    }

    /// Records a slot skipped because the previous run was still going (Forbid).
    pub async fn record_skipped(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
        now: Timestamp,
    ) -> Result<()> {
        let key = slot_key(view, &request.slot);
        self.ledger
            .record_unrun(
                &key,
                request.trigger,
                Outcome::Skipped,
                "the previous run was still going (concurrencyPolicy: Forbid)",
                &now.to_string(),
            )
            .await?;
        crate::observe::run_skipped(
            &view.key.namespace,
            &view.key.name,
            request.trigger.as_str(),
        );
        Ok(())
    }

    /// Brings `timetable` to the applied schedules, timing new and changed ones from their
    /// ledgers (one query for all). Returns how many were (re)timed.
    pub async fn retime(&self, timetable: &mut super::Timetable) -> Result<usize> {
        let views = self.schedules().await?;
        let last = self.ledger.last_slots().await?;
        Ok(timetable.sync(views, |view| {
            let key = (view.key.namespace.clone(), view.key.name.clone());
            decision_reference(view, last.get(&key).copied())
        }))
    }

    /// The runs a crash or kill left unfinished, as requests that complete them: the same
    /// slot, the same file name, only to the targets that do not have it yet. Runs of
    /// deleted schedules are cancelled instead.
    pub async fn interrupted_requests(&self) -> Result<Vec<(ScheduleView, RunRequest)>> {
        let mut requests = Vec::new();
        // Usually none: each schedule is read by its key, not the whole state.
        for run in self.ledger.interrupted().await? {
            let key = ResourceKey::new(Kind::ReportSchedule, &run.namespace, &run.schedule);
            let Some(stored) = self.store.get(&key).await? else {
                self.ledger
                    .finish_run(
                        run.id,
                        Outcome::Cancelled,
                        Some("the schedule was deleted"),
                        &crate::clock::now()?.to_string(),
                    )
                    .await?;
                continue;
            };
            let view = ScheduleView::from_stored(&stored)?;
            let tz = view.compiled()?.time_zone().clone();
            let slot = Timestamp::from_second(run.slot_epoch())
                .map_err(|e| Error::State(e.to_string()))?
                .to_zoned(tz);
            tracing::info!(schedule = %view.key, slot = %rfc3339(&slot), "resuming an interrupted run");
            requests.push((
                view,
                RunRequest {
                    slot,
                    trigger: Trigger::Resume,
                    resend: false,
                    resume: Some(run.id),
                },
            ));
        }
        Ok(requests)
    }

    /// Prunes history and refreshes the schedule's status.
    pub(super) async fn after_run(&self, view: &ScheduleView) -> Result<()> {
        self.ledger
            .prune(&view.key.namespace, &view.key.name, view.spec.history_limit)
            .await?;
        self.report_status(view, crate::clock::now()?).await
    }

    /// Writes the schedule's status from the ledger: last schedule and success times, next
    /// slot, last run with per-target outcomes, and the `Synced` condition.
    pub async fn report_status(&self, view: &ScheduleView, now: Timestamp) -> Result<()> {
        let Some(stored) = self.store.get(&view.key).await? else {
            return Ok(());
        };
        let mut status = stored.status_object();
        let history = self
            .ledger
            .history(&view.key.namespace, &view.key.name, 50)
            .await?;
        let last = history.iter().find(|r| r.outcome != Outcome::Running);
        if let Some(run) = history.first() {
            status["lastScheduleTime"] = Value::from(run.slot.clone());
        }
        if let Some(ok) = history.iter().find(|r| r.outcome == Outcome::Succeeded) {
            status["lastSuccessfulTime"] = Value::from(ok.slot.clone());
        }
        if let Ok(compiled) = view.compiled() {
            match compiled.next_after(now) {
                Some(next) if !view.spec.suspend => {
                    status["nextScheduleTime"] = Value::from(rfc3339(&next))
                }
                _ => {
                    if let Some(o) = status.as_object_mut() {
                        o.remove("nextScheduleTime");
                    }
                }
            }
        }
        let now_s = now.to_string();
        if let Some(run) = last {
            status["lastRun"] = json!({
                "slot": run.slot,
                "outcome": run.outcome.as_str(),
                "rows": run.rows.unwrap_or(0),
                "bytes": run.bytes.unwrap_or(0),
                "sha256": run.sha256,
                "targets": run.deliveries.iter().map(|d| json!({
                    "target": d.target,
                    "outcome": d.outcome,
                    "sha256": d.receipt.as_ref().and_then(|r| r.get("sha256")).cloned(),
                    "message": d.error,
                })).collect::<Vec<_>>(),
            });
            let (value, reason, message) = match run.outcome {
                Outcome::Succeeded => (
                    Truth::True,
                    "RunSucceeded",
                    format!("slot {} delivered to every target", run.slot),
                ),
                Outcome::Missed => (
                    Truth::False,
                    "SlotMissed",
                    run.error.clone().unwrap_or_default(),
                ),
                Outcome::Skipped => (
                    Truth::True,
                    "RunSkipped",
                    run.error.clone().unwrap_or_default(),
                ),
                other => (
                    Truth::False,
                    "RunFailed",
                    format!(
                        "slot {}: {}: {}",
                        run.slot,
                        other.as_str(),
                        run.error.clone().unwrap_or_default()
                    ),
                ),
            };
            set_condition(
                &mut status,
                ConditionType::Synced,
                value,
                reason,
                &message,
                &now_s,
            );
        }
        self.store.set_status(&view.key, &status).await
    }
}

/// The instant after which a schedule's slots are still to decide: its newest slot in the
/// ledger, and never before it was applied (a backfill of an older slot with `run-now
/// --slot` must not make the years before it look missed).
fn decision_reference(view: &ScheduleView, last_slot: Option<i64>) -> Timestamp {
    last_slot
        .and_then(|epoch| Timestamp::from_second(epoch).ok())
        .map_or(view.created_at, |last| last.max(view.created_at))
}
