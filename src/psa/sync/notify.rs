//! A mapping's `notify`: after a scheduled usage sync or billing push, the events of its
//! change of state go to the targets named for them. Healthy or failing is read from the PSA
//! ledger (the attempt of the same kind recorded before), so usage and billing are followed
//! apart and a restart neither repeats nor forgets an alert. Syncs started by hand are told
//! to the person who started them, as runs are.

use super::mapping::MappingView;
use super::status::SyncReport;
use crate::alert::{self, Alert};
use crate::ledger::Outcome;
use crate::psa::ledger::PsaLedger;
use crate::secrets::FileSecrets;
use crate::state::StateStore;

/// Sends the alerts of `report`, the sync recorded as attempt `attempt` of `view`. Failures
/// to alert are logged, never returned: the sync's outcome stands.
pub(super) async fn alert_sync(
    store: &StateStore,
    ledger: &PsaLedger,
    secrets: &FileSecrets,
    view: &MappingView,
    attempt: i64,
    report: &SyncReport,
) {
    if view.spec.notify.is_empty() {
        return;
    }
    let previous = match ledger
        .previous_succeeded(&view.key.namespace, &view.key.name, report.kind, attempt)
        .await
    {
        Ok(previous) => previous.map(outcome),
        Err(e) => {
            tracing::warn!(mapping = %view.key, "alerts skipped: the sync history cannot be read: {e}");
            return;
        }
    };
    let notify = view.spec.notify.as_notify();
    for event in alert::events(previous, outcome(report.succeeded)) {
        let alert = Alert {
            kind: "CustomerMapping",
            sync: Some(report.kind.as_str()),
            customer: Some(view.spec.customer.clone()),
            run_id: Some(attempt),
            error: report.reason.clone(),
            pushed: Some(report.pushed.len()),
            ..Alert::new(
                event,
                &view.key.namespace,
                &view.key.name,
                &report.slot,
                outcome(report.succeeded),
            )
        };
        alert::send::to_named(&alert, event.targets(&notify), store, secrets).await;
    }
}

fn outcome(succeeded: bool) -> Outcome {
    if succeeded {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    }
}
