//! Kubernetes Events for what the scheduler does on its own: each finished run (with one Event
//! per target delivered or failed) on its ReportSchedule, each usage sync or billing push on
//! its CustomerMapping. `kubectl describe` then tells the story without the ledger.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{CustomerMapping, DeliveryTarget, ReportSchedule};
use crate::check::periodic::ConditionChange;
use crate::daemon::Happened;
use crate::ledger::Outcome;
use crate::psa::sync::SyncReport;
use crate::runner::RunReport;

/// The API server refuses Event notes over 1 kB.
const NOTE_LIMIT: usize = 1024;

/// The Events of one finished run: the run itself (Normal `RunSucceeded`, or Warning
/// `RunPartial` / `RunOutcomeUnknown` / `RunFailed`), then one per target (`Delivered`,
/// `DeliveryFailed` or `DeliveryOutcomeUnknown`; targets
/// that already had the slot get none).
pub fn run_events(report: &RunReport) -> Vec<Event> {
    let (type_, reason) = match report.outcome {
        Outcome::Succeeded => (EventType::Normal, "RunSucceeded"),
        Outcome::Partial => (EventType::Warning, "RunPartial"),
        Outcome::Unknown => (EventType::Warning, "RunOutcomeUnknown"),
        Outcome::Skipped => (EventType::Normal, "RunSkipped"),
        _ => (EventType::Warning, "RunFailed"),
    };
    let mut note = format!(
        "slot {}: {} rows, {} bytes, {}",
        report.slot, report.rows, report.bytes, report.file_name
    );
    if let Some(error) = &report.error {
        note.push_str(": ");
        note.push_str(error);
    }
    let mut events = vec![event(type_, reason, "Run", note)];
    for (target, outcome) in &report.targets {
        if let Some(location) = outcome.strip_prefix("delivered to ") {
            events.push(event(
                EventType::Normal,
                "Delivered",
                "Deliver",
                format!("slot {} to {target}: {location}", report.slot),
            ));
        } else if let Some(error) = outcome.strip_prefix("failed: ") {
            events.push(event(
                EventType::Warning,
                "DeliveryFailed",
                "Deliver",
                format!("slot {} to {target}: {error}", report.slot),
            ));
        } else if let Some(why) = outcome.strip_prefix("outcome unknown: ") {
            events.push(event(
                EventType::Warning,
                "DeliveryOutcomeUnknown",
                "Deliver",
                format!("slot {} to {target}: {why}", report.slot),
            ));
        }
    }
    events
}

/// The Event of one PSA sync: Normal `Synced` with what was set, or Warning `SyncFailed`
/// with why.
pub fn sync_event(report: &SyncReport) -> Event {
    let what = report.kind.label();
    if report.succeeded {
        let changed = report
            .pushed
            .iter()
            .filter(|p| p.action != "unchanged")
            .map(|p| format!("{} {}", p.product, crate::psa::format_quantity(p.quantity)))
            .collect::<Vec<_>>();
        let detail = if changed.is_empty() {
            "every quantity already right".to_string()
        } else {
            format!("set {}", changed.join(", "))
        };
        event(
            EventType::Normal,
            "Synced",
            "Sync",
            format!("{what} of slot {}: {detail}", report.slot),
        )
    } else {
        event(
            EventType::Warning,
            "SyncFailed",
            "Sync",
            format!(
                "{what} of slot {} failed: {}",
                report.slot,
                report.reason.as_deref().unwrap_or("unknown reason")
            ),
        )
    }
}

/// The Event of a condition a periodic check changed: Normal `Reachable` / `SourceReady` when
/// it now holds, Warning `Unreachable` / `SourceNotReady` with why when it does not.
pub fn check_event(change: &ConditionChange) -> Event {
    let (type_, reason) = match (change.condition, change.holds) {
        ("Reachable", true) => (EventType::Normal, "Reachable"),
        ("Reachable", false) => (EventType::Warning, "Unreachable"),
        (_, true) => (EventType::Normal, "SourceReady"),
        (_, false) => (EventType::Warning, "SourceNotReady"),
    };
    event(type_, reason, "Check", change.message.clone())
}

fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(fit(note)),
        action: action.into(),
        secondary: None,
    }
}

/// Cuts a note to the API server's limit, on a character boundary.
fn fit(mut note: String) -> String {
    if note.len() > NOTE_LIMIT {
        let mut end = NOTE_LIMIT - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

/// The controllers' caches, where Events find their objects.
pub struct Caches {
    /// ReportSchedules.
    pub schedules: Store<ReportSchedule>,
    /// CustomerMappings.
    pub mappings: Store<CustomerMapping>,
    /// DeliveryTargets.
    pub targets: Store<DeliveryTarget>,
}

/// Where an object whose condition a check changed is sent to be reconciled at once.
pub struct Rechecks {
    /// ReportSchedules (`SourceReady`).
    pub schedules: tokio::sync::mpsc::UnboundedSender<ObjectRef<ReportSchedule>>,
    /// DeliveryTargets (`Reachable`).
    pub targets: tokio::sync::mpsc::UnboundedSender<ObjectRef<DeliveryTarget>>,
}

/// Publishes what the daemon reports until it stops. Objects gone from the caches (deleted
/// meanwhile) get no Event. An object whose condition a check changed is also reconciled
/// at once, so its status shows the change.
pub async fn publish(
    mut happened: tokio::sync::mpsc::UnboundedReceiver<Happened>,
    recorder: Recorder,
    caches: Caches,
    rechecks: Rechecks,
) {
    let Caches {
        schedules,
        mappings,
        targets,
    } = caches;
    while let Some(h) = happened.recv().await {
        let (reference, events) = match &h {
            Happened::Run(report) => {
                let key = &report.schedule;
                let found = schedules.get(&ObjectRef::new(&key.name).within(&key.namespace));
                (found.map(|o| o.object_ref(&())), run_events(report))
            }
            Happened::Sync(report) => {
                let key = &report.key;
                let found = mappings.get(&ObjectRef::new(&key.name).within(&key.namespace));
                (found.map(|o| o.object_ref(&())), vec![sync_event(report)])
            }
            Happened::Checked(change) => {
                let key = &change.key;
                let found = match key.kind {
                    crate::api::Kind::DeliveryTarget => {
                        let at = ObjectRef::new(&key.name).within(&key.namespace);
                        let _ = rechecks.targets.send(at.clone());
                        targets.get(&at).map(|o| o.object_ref(&()))
                    }
                    crate::api::Kind::ReportSchedule => {
                        let at = ObjectRef::new(&key.name).within(&key.namespace);
                        let _ = rechecks.schedules.send(at.clone());
                        schedules.get(&at).map(|o| o.object_ref(&()))
                    }
                    crate::api::Kind::CustomerMapping => None,
                };
                (found, vec![check_event(change)])
            }
        };
        let Some(reference) = reference else { continue };
        for e in events {
            if let Err(err) = recorder.publish(&e, &reference).await {
                tracing::warn!(reason = %e.reason, "event not published: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Kind, ResourceKey};

    fn report(outcome: Outcome, targets: &[(&str, &str)], error: Option<&str>) -> RunReport {
        RunReport {
            schedule: ResourceKey::new(Kind::ReportSchedule, "default", "items"),
            slot: "2026-07-31T00:30:00+09:00".into(),
            run_id: 7,
            outcome,
            rows: 2,
            bytes: 120,
            file_name: "items_20260731003000.csv".into(),
            targets: targets
                .iter()
                .map(|(t, o)| (t.to_string(), o.to_string()))
                .collect(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_good_run_is_one_normal_event_plus_one_per_target_that_received_it() {
        let events = run_events(&report(
            Outcome::Succeeded,
            &[
                ("out", "delivered to /srv/out/items_20260731003000.csv"),
                ("partner", "already delivered"),
            ],
            None,
        ));
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.reason.as_str(), e.note.as_deref().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "RunSucceeded",
                    "slot 2026-07-31T00:30:00+09:00: 2 rows, 120 bytes, items_20260731003000.csv"
                ),
                (
                    "Delivered",
                    "slot 2026-07-31T00:30:00+09:00 to out: /srv/out/items_20260731003000.csv"
                ),
            ]
        );
        assert!(events.iter().all(|e| e.type_ == EventType::Normal));
    }

    #[test]
    fn a_partial_run_warns_and_names_the_failed_target() {
        let events = run_events(&report(
            Outcome::Partial,
            &[
                ("out", "delivered to /srv/out/x.csv"),
                ("ftp", "failed: 530 Login incorrect"),
            ],
            Some("ftp: failed: 530 Login incorrect"),
        ));
        assert_eq!(events[0].reason, "RunPartial");
        assert_eq!(events[0].type_, EventType::Warning);
        assert!(
            events[0]
                .note
                .as_deref()
                .unwrap()
                .ends_with("530 Login incorrect")
        );
        let failed = events
            .iter()
            .find(|e| e.reason == "DeliveryFailed")
            .unwrap();
        assert_eq!(
            failed.note.as_deref(),
            Some("slot 2026-07-31T00:30:00+09:00 to ftp: 530 Login incorrect")
        );
        assert_eq!(failed.type_, EventType::Warning);
    }

    fn sync(succeeded: bool, actions: &[(&str, f64, &str)]) -> SyncReport {
        SyncReport {
            key: ResourceKey::new(Kind::CustomerMapping, "default", "acme"),
            kind: crate::psa::ledger::SyncKind::Usage,
            slot: "2026-07-30T00:00:00+00:00".into(),
            succeeded,
            reason: (!succeeded).then(|| "company ACME01 not found".to_string()),
            pushed: actions
                .iter()
                .map(|(product, quantity, action)| crate::psa::sync::Pushed {
                    product: product.to_string(),
                    quantity: *quantity,
                    previous: None,
                    action: action.to_string(),
                    agreement_id: 1,
                    record_id: None,
                    item_id: None,
                    duplicates: Vec::new(),
                    rounded_from: None,
                    rounding: None,
                    effective_date: None,
                })
                .collect(),
            unmapped_products: Vec::new(),
            ticket: None,
        }
    }

    #[test]
    fn a_sync_says_what_it_set_or_why_it_failed() {
        let ok = sync_event(&sync(
            true,
            &[("endpoint", 12.0, "updated"), ("backup", 3.0, "unchanged")],
        ));
        assert_eq!(
            (ok.type_, ok.reason.as_str()),
            (EventType::Normal, "Synced")
        );
        assert_eq!(
            ok.note.as_deref(),
            Some("usage sync of slot 2026-07-30T00:00:00+00:00: set endpoint 12")
        );
        let failed = sync_event(&sync(false, &[]));
        assert_eq!(
            (failed.type_, failed.reason.as_str()),
            (EventType::Warning, "SyncFailed")
        );
        assert_eq!(
            failed.note.as_deref(),
            Some("usage sync of slot 2026-07-30T00:00:00+00:00 failed: company ACME01 not found")
        );
    }

    #[test]
    fn a_long_note_is_cut_to_the_api_limit_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let note = fit(long);
        assert!(note.len() <= NOTE_LIMIT);
        assert!(note.ends_with("..."));
    }
}
