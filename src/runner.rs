//! Running ReportSchedules: deciding which slots are due (catch-up within `startingDeadline`,
//! missed beyond it, never twice), executing a run (export to a staged file, deliver to every
//! target with retries, record it all in the ledger), resuming runs a crash interrupted, and
//! reporting status. The scheduling decision is a pure function; everything else is I/O.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{Timestamp, Zoned};
use serde_json::{Value, json};

use crate::api::{Kind, ReportScheduleSpec, ResourceKey, Spec, Window};
use crate::deliver::{self, Outgoing};
use crate::export::FormatContext;
use crate::export::job::{ExportJob, export};
use crate::filename::{self, TemplateContext};
use crate::ledger::{Ledger, Outcome, SlotKey, Trigger, rfc3339};
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::schedule::{self, CompiledSchedule};
use crate::secrets::FileSecrets;
use crate::source::Params;
use crate::state::{StateStore, StoredResource};
use crate::{Error, Result};

/// A slot that came less than this long ago runs as `schedule`, later as `catch-up`.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// At most this many missed slots are enumerated after a long downtime.
pub const MAX_SLOTS_PER_DECISION: usize = 1000;

/// What to do for one schedule at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The slot to run now, and why.
    pub run: Option<(Zoned, Trigger)>,
    /// Slots that will never run (older than the one to run, or beyond the deadline).
    pub missed: Vec<Zoned>,
    /// More slots were missed than [`MAX_SLOTS_PER_DECISION`]: those after the listed ones
    /// are neither run nor recorded.
    pub unlisted: bool,
}

/// Decides which slots of a schedule are due at `now`, given the newest slot the ledger
/// already holds (`reference`; or when the schedule was first applied). Only the most recent
/// due slot runs; older ones are missed. A late slot runs if it is still within `deadline`
/// (no deadline: always), else it is missed too. A slot at or before `reference` is never
/// considered again, so nothing runs twice.
pub fn decide(
    compiled: &CompiledSchedule,
    reference: Timestamp,
    deadline: Option<Duration>,
    now: Timestamp,
) -> Decision {
    let mut slots = compiled.slots_between(reference, now, MAX_SLOTS_PER_DECISION);
    // After a downtime longer than the list (an `every: 1m` schedule down for a day), the
    // slot to consider is still the latest one, not the last listed.
    let newest = compiled
        .latest_at_or_before(now)
        .filter(|z| slots.last().is_some_and(|l| z.timestamp() > l.timestamp()));
    let unlisted = slots.len() == MAX_SLOTS_PER_DECISION && newest.is_some();
    let latest = match newest {
        Some(z) if unlisted => Some(z),
        _ => slots.pop(),
    };
    let Some(latest) = latest else {
        return Decision {
            run: None,
            missed: Vec::new(),
            unlisted: false,
        };
    };
    let late = now.duration_since(latest.timestamp());
    let late = Duration::from_secs(late.as_secs().max(0) as u64);
    let mut missed = slots;
    let run = if late <= ON_TIME {
        Some((latest, Trigger::Schedule))
    } else if deadline.is_none_or(|d| late <= d) {
        Some((latest, Trigger::CatchUp))
    } else {
        missed.push(latest);
        None
    };
    Decision {
        run,
        missed,
        unlisted,
    }
}

/// The one log line for the slots a decision recorded as missed: how many, from which to
/// which, why, and where the details are. `None` when none was missed.
pub fn missed_summary(view: &ScheduleView, decision: &Decision, reason: &str) -> Option<String> {
    let history = format!("`ferry history reportschedule/{}`", view.key.name);
    let missed = &decision.missed;
    match missed.as_slice() {
        [] => None,
        [slot] => Some(format!(
            "skipped slot {}: {reason}; see {history}",
            rfc3339(slot)
        )),
        [first, .., last] if decision.unlisted => Some(format!(
            "skipped more than {} slots from {}: {reason}; the first {} (to {}) are in {history}",
            missed.len(),
            rfc3339(first),
            missed.len(),
            rfc3339(last)
        )),
        [first, .., last] => Some(format!(
            "skipped {} slots from {} to {}: {reason}; each is in {history}",
            missed.len(),
            rfc3339(first),
            rfc3339(last)
        )),
    }
}

/// A ReportSchedule as applied, ready to run.
#[derive(Clone, Debug)]
pub struct ScheduleView {
    /// Kind, namespace, name.
    pub key: ResourceKey,
    /// The applied spec.
    pub spec: ReportScheduleSpec,
    /// The applied generation.
    pub generation: i64,
    /// When it was first applied: slots before it never run.
    pub created_at: Timestamp,
}

impl ScheduleView {
    /// Reads a stored ReportSchedule.
    pub fn from_stored(r: &StoredResource) -> Result<ScheduleView> {
        let Spec::ReportSchedule(spec) = Spec::from_json(Kind::ReportSchedule, r.spec.clone())
            .map_err(|e| Error::State(format!("stored {}: {e}", r.key)))?
        else {
            return Err(Error::State(format!("{} is not a ReportSchedule", r.key)));
        };
        Ok(ScheduleView {
            key: r.key.clone(),
            spec,
            generation: r.generation,
            created_at: r
                .created_at
                .parse()
                .map_err(|e| Error::State(format!("stored {} creation time: {e}", r.key)))?,
        })
    }

    /// The compiled schedule.
    pub fn compiled(&self) -> Result<CompiledSchedule> {
        CompiledSchedule::new(&self.spec.schedule, &self.spec.time_zone)
            .map_err(|e| Error::State(format!("{}: {e}", self.key)))
    }

    /// `startingDeadline` as a duration.
    pub fn deadline(&self) -> Result<Option<Duration>> {
        self.spec
            .starting_deadline
            .as_deref()
            .map(schedule::parse_duration)
            .transpose()
            .map_err(|e| Error::State(format!("{}: {e}", self.key)))
    }
}

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
    store: StateStore,
    ledger: Ledger,
    secrets: FileSecrets,
    staging: PathBuf,
    hosted_sftp_data: PathBuf,
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
            if let Ok(Spec::DeliveryTarget(spec)) =
                Spec::from_json(Kind::DeliveryTarget, r.spec.clone())
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
        // Slots before the schedule was applied never run: a backfill of an older slot
        // (`run-now --slot`) must not make the years before it look missed.
        let reference = match self
            .ledger
            .last_slot(&view.key.namespace, &view.key.name)
            .await?
        {
            Some(epoch) => Timestamp::from_second(epoch)
                .map_err(|e| Error::State(e.to_string()))?
                .max(view.created_at),
            None => view.created_at,
        };
        let decision = decide(&compiled, reference, view.deadline()?, now);
        let now_s = now.to_string();
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

    /// Runs one slot: export, deliver to each target (skipping those that already have this
    /// slot), record everything, update status. Errors of the run itself end up in the
    /// ledger and the report; only state-store failures are returned as `Err`.
    pub async fn execute(&self, view: &ScheduleView, request: RunRequest) -> Result<RunReport> {
        let started = crate::clock::now()?;
        let timer = std::time::Instant::now(); // for ferry_run_duration_seconds
        let slot = &request.slot;
        let key = slot_key(view, slot);
        let run_id = match request.resume {
            Some(id) => {
                self.ledger.adopt(id).await?;
                id
            }
            None => {
                self.ledger
                    .start_run(&key, request.trigger, view.generation, &started.to_string())
                    .await?
            }
        };
        let file_name = filename::render(
            &view.spec.file_name,
            &TemplateContext {
                slot,
                schedule: &view.key.name,
                namespace: &view.key.namespace,
                extra: &[],
            },
        );
        let mut report = RunReport {
            schedule: view.key.clone(),
            slot: rfc3339(slot),
            run_id,
            outcome: Outcome::Failed,
            rows: 0,
            bytes: 0,
            file_name: file_name.clone(),
            targets: Vec::new(),
            error: None,
        };
        let staged_dir = self
            .staging
            .join(&view.key.namespace)
            .join(&view.key.name)
            .join(run_id.to_string());
        let staged = staged_dir.join(&file_name);
        let exported = match self.stage(view, slot, &staged, &staged_dir).await {
            Ok(out) => out,
            Err(e) => {
                // Reported once, by whoever reads the report (the daemon's log, `run-now`'s
                // output), not here too.
                let message = e.to_string();
                tracing::debug!(schedule = %view.key, slot = %rfc3339(slot), "export failed: {message}");
                self.ledger
                    .finish_run(
                        run_id,
                        Outcome::Failed,
                        Some(&message),
                        &crate::clock::now()?.to_string(),
                    )
                    .await?;
                let _ = std::fs::remove_dir_all(&staged_dir);
                report.error = Some(message);
                observe_run(view, &request, &report, timer);
                self.customer_tickets(view, slot, &report).await;
                self.after_run(view).await?;
                return Ok(report);
            }
        };
        report.rows = exported.rows;
        report.bytes = exported.bytes;
        self.ledger
            .record_export(
                run_id,
                exported.rows,
                exported.bytes,
                &exported.sha256,
                &file_name,
                &staged.display().to_string(),
            )
            .await?;
        // Every target at once: a slow or retrying target does not hold the others back. Each
        // delivery is recorded in the ledger on its own, so a crash keeps what succeeded.
        let deliveries = view.spec.deliver_to.iter().map(|d| {
            let (key, staged, file_name, exported) = (&key, &staged, &file_name, &exported);
            async move {
                let name = d.target.as_str();
                if !request.resend && self.ledger.delivered(key, name).await? {
                    return Ok::<_, Error>((name, Ok(None)));
                }
                let outcome = match self.target(&view.key.namespace, name).await? {
                    None => Err(format!("DeliveryTarget `{name}` is not applied")),
                    Some(spec) => self
                        .deliver_with_retries(
                            view,
                            run_id,
                            slot,
                            key,
                            name,
                            &spec,
                            staged,
                            file_name,
                            exported,
                            request.resend,
                        )
                        .await?
                        .map(Some),
                };
                Ok((name, outcome))
            }
        });
        let mut succeeded = 0;
        for result in futures_util::future::join_all(deliveries).await {
            let (name, outcome) = result?;
            let label = match &outcome {
                Ok(Some(_)) => "succeeded",
                Ok(None) => "already-delivered",
                Err(_) => "failed",
            };
            crate::observe::delivery_finished(
                &view.key.namespace,
                &view.key.name,
                name,
                label,
                report.bytes,
            );
            match outcome {
                Ok(None) => {
                    succeeded += 1;
                    report
                        .targets
                        .push((name.to_string(), "already delivered".into()));
                }
                Ok(Some(location)) => {
                    succeeded += 1;
                    self.report_target(view, slot, name, Ok(&location)).await?;
                    report
                        .targets
                        .push((name.to_string(), format!("delivered to {location}")));
                }
                Err(message) => {
                    self.report_target(view, slot, name, Err(&message)).await?;
                    report
                        .targets
                        .push((name.to_string(), format!("failed: {message}")))
                }
            }
        }
        let total = view.spec.deliver_to.len();
        report.outcome = if succeeded == total {
            Outcome::Succeeded
        } else if succeeded > 0 {
            Outcome::Partial
        } else {
            Outcome::Failed
        };
        let error = (report.outcome != Outcome::Succeeded).then(|| {
            report
                .targets
                .iter()
                .filter(|(_, o)| o.starts_with("failed"))
                .map(|(t, o)| format!("{t}: {o}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        self.ledger
            .finish_run(
                run_id,
                report.outcome,
                error.as_deref(),
                &crate::clock::now()?.to_string(),
            )
            .await?;
        report.error = error;
        observe_run(view, &request, &report, timer);
        let _ = std::fs::remove_dir_all(&staged_dir);
        self.customer_tickets(view, slot, &report).await;
        self.after_run(view).await?;
        Ok(report)
    }

    /// A DeliveryTarget's `Synced` condition follows its latest delivery: True `Delivered`
    /// with where the file went, or False `DeliveryFailed` with why.
    async fn report_target(
        &self,
        view: &ScheduleView,
        slot: &Zoned,
        target: &str,
        outcome: std::result::Result<&str, &str>,
    ) -> Result<()> {
        let key = ResourceKey::new(Kind::DeliveryTarget, &view.key.namespace, target);
        let Some(stored) = self.store.get(&key).await? else {
            return Ok(());
        };
        let mut status = stored.status_object();
        let what = format!("slot {} of {}", rfc3339(slot), view.key.name);
        let (value, reason, message) = match outcome {
            Ok(location) => (Truth::True, "Delivered", format!("{what}: {location}")),
            Err(error) => (Truth::False, "DeliveryFailed", format!("{what}: {error}")),
        };
        let now = crate::clock::now()?.to_string();
        set_condition(
            &mut status,
            ConditionType::Synced,
            value,
            reason,
            &message,
            &now,
        );
        self.store.set_status(&key, &status).await
    }

    /// Ticket sync for deliveries: a schedule labelled `ferry.dev/customer` reports its run to
    /// that customer's CustomerMappings, which open a ticket on failure and close it on the
    /// next success (see [`crate::psa::sync::Syncer::report_delivery`]). Never fails the run.
    async fn customer_tickets(&self, view: &ScheduleView, slot: &Zoned, report: &RunReport) {
        let Ok(Some(stored)) = self.store.get(&view.key).await else {
            return;
        };
        let Some(customer) = stored.meta.labels.get(crate::psa::sync::CUSTOMER_LABEL) else {
            return;
        };
        let syncer = crate::psa::sync::Syncer::new(self.store.clone(), self.secrets.clone());
        match syncer
            .report_delivery(
                &view.key.namespace,
                &view.key.name,
                customer,
                report.outcome == Outcome::Succeeded,
                report.error.as_deref().unwrap_or(""),
                &rfc3339(slot),
            )
            .await
        {
            Ok(done) => {
                for d in done {
                    tracing::info!(schedule = %view.key, "ticket sync: {d}");
                }
            }
            Err(e) => {
                tracing::warn!(schedule = %view.key, "ticket sync for the delivery failed: {e}")
            }
        }
    }

    /// Exports a slot to its staged file (reusing a complete one left by an interrupted run).
    async fn stage(
        &self,
        view: &ScheduleView,
        slot: &Zoned,
        staged: &Path,
        staged_dir: &Path,
    ) -> Result<crate::export::job::ExportOutput> {
        std::fs::create_dir_all(staged_dir).map_err(|e| Error::io(staged_dir, e))?;
        let sql = &view.spec.source.sql;
        let url_secret;
        let url = match (&sql.url, &sql.connection_secret_ref) {
            (Some(url), _) => url.as_str(),
            (None, Some(r)) => {
                url_secret = self.secrets.require(&view.key.namespace, r)?;
                url_secret.expose_str()?
            }
            (None, None) => return Err(Error::Source("no database configured".into())),
        };
        let last_success = match view.spec.source.window {
            Window::SinceLastSuccess => self
                .ledger
                .last_success(&view.key.namespace, &view.key.name)
                .await?
                .map(|e| Timestamp::from_second(e).map(|t| t.to_zoned(slot.time_zone().clone())))
                .transpose()
                .map_err(|e| Error::State(e.to_string()))?,
            _ => None,
        };
        let window = schedule::window(view.spec.source.window, slot, last_success.as_ref());
        let params = Params {
            window_start: window.as_ref().map(|w| w.0.clone()),
            window_end: window.map(|w| w.1),
            slot: slot.clone(),
        };
        let title = match &view.spec.format {
            crate::api::ReportFormat::Pdf(p) => p.title.clone(),
            _ => None,
        }
        .unwrap_or_else(|| view.key.name.clone());
        let context = FormatContext {
            title,
            generated_at: crate::clock::now()?.to_zoned(slot.time_zone().clone()),
            time_zone: slot.time_zone().clone(),
        };
        let progress = self.progress_bar(&view.key.name);
        let tick = progress.clone();
        let result = export(ExportJob {
            url,
            query: &sql.query,
            params,
            columns: &view.spec.columns,
            format: &view.spec.format,
            context,
            path: staged.to_path_buf(),
            progress: tick.map(|bar| {
                Box::new(move |rows: u64| bar.set_position(rows)) as Box<dyn Fn(u64) + Send + Sync>
            }),
        })
        .await;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        result
    }

    fn progress_bar(&self, name: &str) -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        if !self.progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {human_pos} rows ({per_sec}, {elapsed})",
            )
            .expect("a valid progress template"),
        );
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    }

    /// The applied spec of one DeliveryTarget (not the whole state: a run needs only its own).
    async fn target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::api::DeliveryTargetSpec>> {
        applied_target(&self.store, namespace, name).await
    }

    /// Delivers with `retry.attempts` attempts and exponential backoff with jitter. Returns
    /// `Ok(Ok(location))` or `Ok(Err(message))`; `Err` only for ledger failures.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_with_retries(
        &self,
        view: &ScheduleView,
        run_id: i64,
        slot: &Zoned,
        key: &SlotKey<'_>,
        name: &str,
        spec: &crate::api::DeliveryTargetSpec,
        staged: &Path,
        file_name: &str,
        exported: &crate::export::job::ExportOutput,
        resend: bool,
    ) -> Result<std::result::Result<String, String>> {
        let attempts = view.spec.retry.attempts.max(1);
        let mut backoff =
            schedule::parse_duration(&view.spec.retry.backoff).unwrap_or(Duration::from_secs(30));
        let record = |outcome: &'static str,
                      attempt: u32,
                      receipt: Option<serde_json::Value>,
                      error: Option<String>| async move {
            self.ledger
                .record_delivery(
                    run_id,
                    key,
                    name,
                    resend,
                    outcome,
                    attempt,
                    receipt.as_ref(),
                    error.as_deref(),
                    &crate::clock::now()?.to_string(),
                )
                .await
        };
        let built = if spec.kind().is_some_and(|k| k.is_psa()) {
            self.psa_transport(view, name, spec).await
        } else {
            deliver::transport_for(
                &view.key.namespace,
                name,
                spec,
                &self.secrets,
                &self.hosted_sftp_data,
            )
        };
        let transport = match built {
            Ok(t) => t,
            Err(e) => {
                let message = e.to_string();
                record("failed", 0, None, Some(message.clone())).await?;
                return Ok(Err(message));
            }
        };
        let outgoing = Outgoing {
            staged,
            file_name,
            bytes: exported.bytes,
            sha256: &exported.sha256,
            run_id,
            about: &deliver::About {
                namespace: view.key.namespace.clone(),
                schedule: view.key.name.clone(),
                slot: slot.clone(),
                rows: exported.rows,
            },
            sharing: if view.spec.deliver_to.len() == 1 {
                deliver::Sharing::Sole
            } else {
                deliver::Sharing::Several
            },
        };
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            match transport.deliver(&outgoing).await {
                Ok(receipt) => {
                    let location = receipt.location.clone();
                    let receipt = serde_json::to_value(&receipt).expect("receipts serialize");
                    if !record("succeeded", attempt, Some(receipt), None).await? {
                        tracing::warn!(
                            target = name,
                            "slot already delivered by another run; not recorded twice"
                        );
                    }
                    tracing::info!(schedule = %view.key, target = name, attempt, "delivered");
                    return Ok(Ok(location));
                }
                Err(e) => {
                    last_error = e.to_string();
                    // The last failure is in the run's report (logged once by the daemon,
                    // printed by `run-now`); an attempt that will be retried is logged here.
                    if attempt < attempts {
                        tracing::warn!(schedule = %view.key, target = name, attempt, attempts, "delivery attempt failed, retrying: {last_error}");
                    }
                    record("failed", attempt, None, Some(last_error.clone())).await?;
                    if attempt < attempts {
                        tokio::time::sleep(jitter(backoff)).await;
                        backoff = backoff.saturating_mul(2);
                    }
                }
            }
        }
        Ok(Err(last_error))
    }

    /// The delivery of a schedule's file to PSA target `name`: the customer is the
    /// schedule's `ferry.dev/customer` label, the company that of the customer's
    /// CustomerMapping on that target.
    async fn psa_transport(
        &self,
        view: &ScheduleView,
        name: &str,
        spec: &crate::api::DeliveryTargetSpec,
    ) -> Result<Box<dyn deliver::Transport>> {
        let fail = |message: String| Error::Delivery {
            target: name.to_string(),
            message,
        };
        let customer = self
            .store
            .get(&view.key)
            .await?
            .and_then(|s| s.meta.labels.get(crate::psa::sync::CUSTOMER_LABEL).cloned());
        let actual = self.store.snapshot().await?;
        let mappings: Vec<crate::psa::sync::MappingView> =
            crate::psa::sync::MappingView::all(&actual)
                .into_iter()
                .filter(|m| m.key.namespace == view.key.namespace && m.spec.psa.target == name)
                .collect();
        deliver::psa::check_schedule_delivery(name, spec, customer.as_deref(), |c| {
            mappings.iter().any(|m| m.spec.customer == c)
        })
        .map_err(fail)?;
        let customer = customer.unwrap_or_default();
        let mapping = mappings
            .into_iter()
            .find(|m| m.spec.customer == customer)
            .ok_or_else(|| fail(format!("no CustomerMapping for customer `{customer}`")))?;
        Ok(Box::new(deliver::psa::PsaDelivery::new(
            &view.key.namespace,
            name,
            spec,
            &customer,
            mapping.spec,
            &self.secrets,
        )?))
    }

    /// Completes runs that a crash or kill left unfinished: the same slot, the same file
    /// name, only to the targets that do not have it yet.
    pub async fn resume_interrupted(&self) -> Result<Vec<RunReport>> {
        let schedules = self.schedules().await?;
        let mut reports = Vec::new();
        for run in self.ledger.interrupted().await? {
            let Some(view) = schedules
                .iter()
                .find(|s| s.key.namespace == run.namespace && s.key.name == run.schedule)
            else {
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
            let tz = view.compiled()?.time_zone().clone();
            let slot = Timestamp::from_second(run.slot_epoch())
                .map_err(|e| Error::State(e.to_string()))?
                .to_zoned(tz);
            tracing::info!(schedule = %view.key, slot = %rfc3339(&slot), "resuming an interrupted run");
            let report = self
                .execute(
                    view,
                    RunRequest {
                        slot,
                        trigger: Trigger::Resume,
                        resend: false,
                        resume: Some(run.id),
                    },
                )
                .await?;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Prunes history and refreshes the schedule's status.
    async fn after_run(&self, view: &ScheduleView) -> Result<()> {
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

/// Records a finished run in the process's metrics.
fn observe_run(
    view: &ScheduleView,
    request: &RunRequest,
    report: &RunReport,
    timer: std::time::Instant,
) {
    let (namespace, schedule) = (&view.key.namespace, &view.key.name);
    let (trigger, outcome) = (request.trigger.as_str(), report.outcome.as_str());
    let finished = Timestamp::now();
    let took = timer.elapsed();
    crate::observe::run_finished(
        namespace,
        schedule,
        trigger,
        outcome,
        took,
        report.rows,
        report.bytes,
        finished,
    );
}

fn slot_key<'a>(view: &'a ScheduleView, slot: &'a Zoned) -> SlotKey<'a> {
    SlotKey {
        namespace: &view.key.namespace,
        schedule: &view.key.name,
        slot,
    }
}

/// `d` varied by up to ±20 %, so that many failing targets do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = u16::from_le_bytes(crate::fsutil::random_bytes::<2>()) as f64 / u16::MAX as f64;
    d.mul_f64(0.8 + 0.4 * r)
}

/// The applied spec of DeliveryTarget `namespace/name`, if it is applied.
pub async fn applied_target(
    store: &StateStore,
    namespace: &str,
    name: &str,
) -> Result<Option<crate::api::DeliveryTargetSpec>> {
    let key = ResourceKey::new(Kind::DeliveryTarget, namespace, name);
    let Some(stored) = store.get(&key).await? else {
        return Ok(None);
    };
    match Spec::from_json(Kind::DeliveryTarget, stored.spec) {
        Ok(Spec::DeliveryTarget(spec)) => Ok(Some(*spec)),
        Ok(_) => Ok(None),
        Err(e) => Err(Error::State(format!("stored {key}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DailySchedule, Schedule};

    fn daily_0030_tokyo() -> CompiledSchedule {
        CompiledSchedule::new(
            &Schedule::Daily(DailySchedule { at: "00:30".into() }),
            "Asia/Tokyo",
        )
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_slot_that_just_came_runs_as_scheduled() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-30T00:00:00Z"),
            None,
            ts("2026-07-30T15:30:10Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        assert_eq!(rfc3339(&slot), "2026-07-31T00:30:00+09:00");
        assert_eq!(trigger, Trigger::Schedule);
        assert!(d.missed.is_empty());
    }

    #[test]
    fn nothing_is_due_before_the_next_slot() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-30T15:30:00Z"),
            None,
            ts("2026-07-31T10:00:00Z"),
        );
        assert_eq!(
            d,
            Decision {
                run: None,
                missed: vec![],
                unlisted: false
            }
        );
    }

    #[test]
    fn after_downtime_only_the_latest_slot_catches_up_within_the_deadline() {
        // Down from the 29th to the 31st 02:00 Tokyo: the 30th and 31st slots passed.
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-28T15:30:00Z"),
            Some(Duration::from_secs(6 * 3600)),
            ts("2026-07-30T17:00:00Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        assert_eq!(rfc3339(&slot), "2026-07-31T00:30:00+09:00");
        assert_eq!(trigger, Trigger::CatchUp);
        assert_eq!(d.missed.len(), 1);
        assert_eq!(rfc3339(&d.missed[0]), "2026-07-30T00:30:00+09:00");
    }

    #[test]
    fn after_a_downtime_longer_than_the_list_the_latest_slot_still_catches_up() {
        // Every minute, down for two days: 2,880 slots passed, 1,000 are listed.
        let every_minute = CompiledSchedule::new(&Schedule::Every("1m".into()), "UTC").unwrap();
        let d = decide(
            &every_minute,
            ts("2026-07-28T00:00:00Z"),
            None,
            ts("2026-07-30T00:00:30Z"),
        );
        let (slot, trigger) = d.run.unwrap();
        // The latest minute, on time (not the 1,000th slot after the reference, two days late).
        assert_eq!(rfc3339(&slot), "2026-07-30T00:00:00+00:00");
        assert_eq!(trigger, Trigger::Schedule);
        assert_eq!(d.missed.len(), MAX_SLOTS_PER_DECISION);
        assert!(d.unlisted);
    }

    #[test]
    fn a_slot_missed_beyond_the_deadline_is_recorded_missed_and_never_run() {
        let d = decide(
            &daily_0030_tokyo(),
            ts("2026-07-29T15:30:00Z"),
            Some(Duration::from_secs(3600)),
            ts("2026-07-30T20:00:00Z"),
        );
        assert!(d.run.is_none());
        assert_eq!(d.missed.len(), 1);
        assert_eq!(rfc3339(&d.missed[0]), "2026-07-31T00:30:00+09:00");
    }

    #[test]
    fn a_slot_already_in_the_ledger_is_never_decided_again() {
        // The reference is the slot just run: deciding again a second later yields nothing.
        let slot = ts("2026-07-30T15:30:00Z");
        let d = decide(&daily_0030_tokyo(), slot, None, ts("2026-07-30T15:30:01Z"));
        assert!(d.run.is_none() && d.missed.is_empty());
    }
}
