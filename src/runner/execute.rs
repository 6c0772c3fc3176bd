//! Executing one run: export to a staged file, deliver to every target that does not have
//! the slot yet, record it all in the ledger, update the targets' and the schedule's status,
//! report to the customer's tickets and to the metrics.

use std::path::Path;
use std::time::Duration;

use jiff::{Timestamp, Zoned};

use crate::api::{Kind, ResourceKey, Window};
use crate::export::FormatContext;
use crate::export::job::{ExportJob, export};
use crate::filename::{self, TemplateContext};
use crate::ledger::{Outcome, Prior, SlotKey, rfc3339};
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::source::Params;
use crate::{Error, Result};

use super::decide::{ScheduleView, slot_key};
use super::engine::{RunReport, RunRequest, Runner};
use super::retry::TargetOutcome;

/// How [`Runner::record_start`] left a run: recorded as running under this id, or already
/// at its end (skipped: in flight elsewhere, or nothing to deliver) with its report.
#[derive(Debug)]
pub enum Started {
    /// Recorded as running: execute it ([`Runner::execute_recorded`]).
    Run(i64),
    /// Nothing to execute; the slot's report.
    Done(RunReport),
}

/// Why a target whose delivery by run `run` is unknown is not sent to again.
fn unknown_since(run: i64) -> String {
    format!(
        "run {run} may have delivered it (Ferry stopped while handing it over); not sent \
         again without --resend"
    )
}

impl Runner {
    /// Runs one slot: export, deliver to each target (skipping those that already have this
    /// slot), record everything, update status. Errors of the run itself end up in the
    /// ledger and the report; only state-store failures are returned as `Err`.
    pub async fn execute(&self, view: &ScheduleView, request: RunRequest) -> Result<RunReport> {
        match self.record_start(view, &request).await? {
            Started::Done(report) => Ok(report),
            Started::Run(run_id) => self.execute_recorded(view, request, run_id).await,
        }
    }

    /// Records the start of `request`'s run in the ledger, as this process's: a resumed run
    /// is adopted, an interrupted run of the slot is continued, and a slot in flight
    /// elsewhere or with nothing to deliver is recorded as skipped. What the leader does
    /// before handing a run to a Kubernetes Job; [`Runner::execute`] does it first too.
    pub async fn record_start(&self, view: &ScheduleView, request: &RunRequest) -> Result<Started> {
        let started = crate::clock::now()?;
        let slot = &request.slot;
        let key = slot_key(view, slot);
        Ok(Started::Run(match request.resume {
            Some(id) => {
                self.ledger.adopt(id).await?;
                id
            }
            // A slot whose run was interrupted continues that run, with its run id (a
            // `--resend` is a delivery of its own).
            None => {
                let adopted = if request.resend {
                    self.supersede_interrupted(view, &key).await?;
                    None
                } else {
                    self.ledger.adopt_interrupted(&key).await?
                };
                match adopted {
                    Some(id) => {
                        tracing::info!(
                            schedule = %view.key,
                            slot = %rfc3339(slot),
                            run = id,
                            "continuing the interrupted run of this slot"
                        );
                        id
                    }
                    None => {
                        if !request.resend {
                            if let Some(report) = self.in_flight(view, request).await? {
                                return Ok(Started::Done(report));
                            }
                            if let Some(report) = self.nothing_to_deliver(view, request).await? {
                                return Ok(Started::Done(report));
                            }
                        }
                        self.ledger
                            .start_run(&key, request.trigger, view.generation, &started.to_string())
                            .await?
                    }
                }
            }
        }))
    }

    /// Executes run `run_id`, already recorded as running ([`Runner::record_start`], here or
    /// by the leader that handed it to this process, whose ownership it keeps): exports
    /// (again, when an earlier attempt's staged file is elsewhere or gone), delivers to the
    /// targets that do not have the slot, records the outcome. Same errors as
    /// [`Runner::execute`].
    pub async fn execute_recorded(
        &self,
        view: &ScheduleView,
        request: RunRequest,
        run_id: i64,
    ) -> Result<RunReport> {
        let timer = std::time::Instant::now(); // for ferry_run_duration_seconds
        let slot = &request.slot;
        let key = slot_key(view, slot);
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
                if !request.resend {
                    match self.ledger.prior_delivery(key, name).await? {
                        Prior::None => {}
                        Prior::Delivered { run } if run == run_id => {
                            return Ok::<_, Error>((name, TargetOutcome::Already(None)));
                        }
                        Prior::Delivered { run } => {
                            return Ok((name, TargetOutcome::Already(Some(run))));
                        }
                        Prior::Unknown { run } => {
                            return Ok((name, TargetOutcome::Unknown(unknown_since(run))));
                        }
                    }
                }
                let outcome = match self.target(&view.key.namespace, name).await? {
                    None => {
                        TargetOutcome::Failed(format!("DeliveryTarget `{name}` is not applied"))
                    }
                    Some(spec) => {
                        self.deliver_with_retries(
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
                    }
                };
                Ok((name, outcome))
            }
        });
        let (mut failed, mut unknown) = (0, 0);
        for result in futures_util::future::join_all(deliveries).await {
            let (name, outcome) = result?;
            crate::observe::delivery_finished(
                &view.key.namespace,
                &view.key.name,
                name,
                outcome.label(),
                report.bytes,
            );
            match &outcome {
                TargetOutcome::Delivered(location) | TargetOutcome::Found(location) => {
                    self.report_target(view, slot, name, Ok(location)).await?;
                }
                TargetOutcome::Failed(message) | TargetOutcome::Unknown(message) => {
                    self.report_target(view, slot, name, Err(message)).await?;
                }
                TargetOutcome::Already(_) => {}
            }
            match &outcome {
                TargetOutcome::Failed(_) => failed += 1,
                TargetOutcome::Unknown(_) => unknown += 1,
                _ => {}
            }
            report.targets.push((name.to_string(), outcome.describe()));
        }
        let total = view.spec.deliver_to.len();
        report.outcome = if failed == 0 && unknown == 0 {
            Outcome::Succeeded
        } else if failed == 0 {
            Outcome::Unknown
        } else if failed < total {
            Outcome::Partial
        } else {
            Outcome::Failed
        };
        let error = (report.outcome != Outcome::Succeeded).then(|| {
            report
                .targets
                .iter()
                .filter(|(_, o)| o.starts_with("failed") || o.starts_with("outcome unknown"))
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

    /// The report of run `run_id` once it has ended (`None` while it is still running), read
    /// from the ledger: how a leader learns what a Kubernetes Job did with a run it recorded,
    /// so that Events, metrics and logs are those of a run executed here.
    pub async fn ended_report(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
        run_id: i64,
        timer: std::time::Instant,
    ) -> Result<Option<RunReport>> {
        let Some(run) = self.ledger.run(run_id).await? else {
            return Err(Error::State(format!(
                "run {run_id} is no longer in the ledger"
            )));
        };
        if run.outcome == Outcome::Running {
            return Ok(None);
        }
        let key = slot_key(view, &request.slot);
        let mut targets = Vec::new();
        for d in &view.spec.deliver_to {
            let name = d.target.as_str();
            let outcome = match run.deliveries.iter().find(|r| r.target == name) {
                Some(r) => match r.outcome.as_str() {
                    "succeeded" => TargetOutcome::Delivered(
                        r.receipt
                            .as_ref()
                            .and_then(|v| v["location"].as_str())
                            .unwrap_or(name)
                            .to_string(),
                    ),
                    "failed" => TargetOutcome::Failed(r.error.clone().unwrap_or_default()),
                    _ => TargetOutcome::Unknown(r.error.clone().unwrap_or_default()),
                },
                None => match self.ledger.prior_delivery(&key, name).await? {
                    Prior::None => continue,
                    Prior::Delivered { run } => TargetOutcome::Already(Some(run)),
                    Prior::Unknown { run } => TargetOutcome::Unknown(unknown_since(run)),
                },
            };
            targets.push((name.to_string(), outcome.describe()));
        }
        let report = RunReport {
            schedule: view.key.clone(),
            slot: rfc3339(&request.slot),
            run_id,
            outcome: run.outcome,
            rows: run.rows.unwrap_or(0),
            bytes: run.bytes.unwrap_or(0),
            // Recorded once exported; a run whose export failed has the name it would have had.
            file_name: run.file_name.unwrap_or_else(|| {
                filename::render(
                    &view.spec.file_name,
                    &TemplateContext {
                        slot: &request.slot,
                        schedule: &view.key.name,
                        namespace: &view.key.namespace,
                        extra: &[],
                    },
                )
            }),
            targets,
            error: run.error,
        };
        observe_run(view, request, &report, timer);
        Ok(Some(report))
    }

    /// Ends run `run_id` as failed with `reason` when nothing will execute it any more (its
    /// Jobs kept failing before it ended), and reports it like any failed run.
    pub async fn give_up(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
        run_id: i64,
        reason: &str,
        timer: std::time::Instant,
    ) -> Result<RunReport> {
        let now = crate::clock::now()?.to_string();
        self.ledger
            .finish_run(run_id, Outcome::Failed, Some(reason), &now)
            .await?;
        self.after_run(view).await?;
        self.ended_report(view, request, run_id, timer)
            .await?
            .ok_or_else(|| Error::State(format!("run {run_id} is still running after it ended")))
    }

    /// A `--resend` of a slot whose run was interrupted replaces that run: it is cancelled
    /// (its staged file removed, its temporary files left to the new run's cleanup) instead
    /// of being resumed later to deliver a second time.
    async fn supersede_interrupted(&self, view: &ScheduleView, key: &SlotKey<'_>) -> Result<()> {
        while let Some(id) = self.ledger.adopt_interrupted(key).await? {
            let now = crate::clock::now()?.to_string();
            self.ledger
                .finish_run(
                    id,
                    Outcome::Cancelled,
                    Some("interrupted, then superseded by a --resend of its slot"),
                    &now,
                )
                .await?;
            let staged_dir = self
                .staging
                .join(&view.key.namespace)
                .join(&view.key.name)
                .join(id.to_string());
            let _ = std::fs::remove_dir_all(staged_dir);
            tracing::info!(schedule = %view.key, run = id, "interrupted run superseded by --resend");
        }
        Ok(())
    }

    /// One run per (schedule, slot) in flight: while a live process runs this slot, another
    /// run of it is recorded as skipped (no targets in the report, the reason as its error)
    /// instead of racing it to the same destinations. `--resend` is the explicit exception.
    async fn in_flight(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
    ) -> Result<Option<RunReport>> {
        let slot = &request.slot;
        let key = slot_key(view, slot);
        let Some(run) = self.ledger.in_flight(&key).await? else {
            return Ok(None);
        };
        let reason = format!(
            "run {run} of this slot is in flight in a live Ferry process: not run twice at once \
             (wait for it, or --resend)"
        );
        tracing::warn!(schedule = %view.key, slot = %rfc3339(slot), "{reason}");
        let report = self.skip(view, request, Outcome::Skipped, Vec::new(), reason);
        Ok(Some(report.await?))
    }

    /// When every target already has this slot (or may have: an unknown outcome), a run
    /// would deliver nothing: it is recorded as skipped, with why, instead of an empty
    /// "succeeded", and nothing is exported. The report's run id is 0 (no run), its outcome
    /// `skipped`, or `unknown` when a target's outcome is.
    async fn nothing_to_deliver(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
    ) -> Result<Option<RunReport>> {
        let slot = &request.slot;
        let key = slot_key(view, slot);
        let mut targets = Vec::new();
        let mut outcome = Outcome::Skipped;
        for d in &view.spec.deliver_to {
            let prior = match self.ledger.prior_delivery(&key, &d.target).await? {
                Prior::None => return Ok(None),
                Prior::Delivered { run } => TargetOutcome::Already(Some(run)),
                Prior::Unknown { run } => {
                    outcome = Outcome::Unknown;
                    TargetOutcome::Unknown(unknown_since(run))
                }
            };
            targets.push((d.target.clone(), prior.describe()));
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let reason = format!(
            "nothing to deliver: {}; `--resend` delivers again",
            targets
                .iter()
                .map(|(t, o)| format!("{t} {o}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tracing::info!(schedule = %view.key, slot = %rfc3339(slot), "{reason}");
        Ok(Some(
            self.skip(view, request, outcome, targets, reason).await?,
        ))
    }

    /// Records `request`'s slot as skipped with `reason`, and its report: run id 0 (no run),
    /// no file, `outcome`, what each target in `targets` has.
    async fn skip(
        &self,
        view: &ScheduleView,
        request: &RunRequest,
        outcome: Outcome,
        targets: Vec<(String, String)>,
        reason: String,
    ) -> Result<RunReport> {
        let key = slot_key(view, &request.slot);
        let now = crate::clock::now()?.to_string();
        self.ledger
            .record_unrun(&key, request.trigger, Outcome::Skipped, &reason, &now)
            .await?;
        Ok(RunReport {
            schedule: view.key.clone(),
            slot: rfc3339(&request.slot),
            run_id: 0,
            outcome,
            rows: 0,
            bytes: 0,
            file_name: String::new(),
            targets,
            error: Some(reason),
        })
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
        let url = crate::source::database_url(sql, &view.key.namespace, &self.secrets)?
            .ok_or_else(|| Error::Source("no database configured".into()))?;
        let url = url.as_str();
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
        let params = Params::for_slot(view.spec.source.window, slot, last_success.as_ref());
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
            partition: sql.partition.as_ref(),
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
}

/// Records a finished run in the process's metrics.
pub(super) fn observe_run(
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
