//! A schedule's `notify`: after a run, or after slots were found missed, the events of the
//! change of state ([`crate::alert::events`], from the outcome recorded before) go to the
//! targets named for them. Runs by hand (`run-now`, a backfill) are told to the person who
//! started them, not alerted.

use super::decide::ScheduleView;
use super::engine::{RunReport, Runner};
use crate::alert::{self, Alert, Event, TargetOutcome};
use crate::ledger::Outcome;

impl Runner {
    /// Sends the alerts of `report`'s run of `view` (a scheduled, caught-up or resumed run).
    /// Failures to alert are logged, never returned: the run's outcome stands.
    pub async fn alert_run(&self, view: &ScheduleView, report: &RunReport) {
        if view.spec.notify.is_empty() {
            return;
        }
        let previous = match self
            .ledger
            .previous_outcome(&view.key.namespace, &view.key.name, report.run_id)
            .await
        {
            Ok(previous) => previous,
            Err(e) => {
                tracing::warn!(schedule = %view.key, "alerts skipped: the run history cannot be read: {e}");
                return;
            }
        };
        for event in alert::events(previous, report.outcome) {
            let alert = Alert {
                run_id: Some(report.run_id),
                error: report.error.clone(),
                rows: Some(report.rows),
                file: report.file_name.clone(),
                deliveries: report
                    .targets
                    .iter()
                    .map(|(target, outcome)| TargetOutcome {
                        target: target.clone(),
                        outcome: outcome.clone(),
                    })
                    .collect(),
                ..Alert::new(
                    event,
                    &view.key.namespace,
                    &view.key.name,
                    &report.slot,
                    report.outcome,
                )
            };
            self.send_alert(view, &alert).await;
        }
    }

    /// Sends the `missed` alert of `slots` (oldest first) just recorded missed,
    /// when the schedule was healthy before them (`previous`, read before they were recorded).
    pub(super) async fn alert_missed(
        &self,
        view: &ScheduleView,
        previous: Option<Outcome>,
        slots: &[jiff::Zoned],
        reason: &str,
    ) {
        let Some(first) = slots.first() else { return };
        if view.spec.notify.on_missed.is_empty()
            || !alert::events(previous, Outcome::Missed).contains(&Event::Missed)
        {
            return;
        }
        let alert = Alert {
            error: Some(reason.to_string()),
            missed_slots: Some(slots.len()),
            ..Alert::new(
                Event::Missed,
                &view.key.namespace,
                &view.key.name,
                &crate::ledger::rfc3339(first),
                Outcome::Missed,
            )
        };
        self.send_alert(view, &alert).await;
    }

    async fn send_alert(&self, view: &ScheduleView, alert: &Alert) {
        let names = alert.event.targets(&view.spec.notify);
        alert::send::to_named(alert, names, &self.store, &self.secrets).await;
    }
}
