//! The same checks, run by the daemon (and so the controller) on the applied resources: every
//! `--check-interval`, and so that each schedule is checked within `--check-before` of its
//! next slot. Each result becomes a condition in the resource's status, `Reachable` on a
//! DeliveryTarget and `SourceReady` on a ReportSchedule (with the reason and the time of the
//! check), and a metric; a condition that changes is returned, for an Event.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

use super::{APPLIED, CheckOptions, CheckResult, Status, check_all};
use crate::Result;
use crate::alert::{Alert, Event};
use crate::api::{Kind, ResourceKey, Spec};
use crate::load::{LoadedResource, Origin};
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::schedule::CompiledSchedule;
use crate::secrets::FileSecrets;
use crate::state::{ActualState, StateStore};

/// `--check-interval` when not given.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// `--check-before` when not given.
pub const DEFAULT_CHECK_BEFORE: Duration = Duration::from_secs(2 * 3600);
/// Each check's limit in the daemon.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// How the daemon checks.
#[derive(Clone, Debug)]
pub struct Periodic {
    /// Between two rounds of checks (zero: never).
    pub interval: Duration,
    /// A schedule is checked at least once within this long before each of its slots.
    pub before: Duration,
    /// The hosted SFTP server's data directory.
    pub hosted_sftp_data: PathBuf,
}

/// A condition that changed (or was set for the first time), for an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionChange {
    /// The resource.
    pub key: ResourceKey,
    /// `Reachable` or `SourceReady`.
    pub condition: &'static str,
    /// Whether it now holds.
    pub holds: bool,
    /// Why, in a word (`Checked`, or the failing check: `DeliveryCheckFailed`, ...).
    pub reason: String,
    /// What the check found.
    pub message: String,
}

/// The applied resources, as checks take them (located in [`APPLIED`], without a line).
pub fn applied(state: &ActualState) -> Vec<LoadedResource> {
    state
        .resources
        .values()
        .filter_map(|stored| {
            let spec = stored.typed_spec()?.clone();
            Some(LoadedResource::new(
                stored.key.clone(),
                stored.meta.clone(),
                spec,
                Origin::unlocated(APPLIED),
            ))
        })
        .collect()
}

/// One round: every applied DeliveryTarget and ReportSchedule checked, the conditions
/// recorded. Returns the conditions that changed.
pub async fn round(
    store: &StateStore,
    secrets: &FileSecrets,
    periodic: &Periodic,
    now: Timestamp,
) -> Result<Vec<ConditionChange>> {
    let state = store.snapshot().await?;
    let resources: Vec<LoadedResource> = applied(&state)
        .into_iter()
        .filter(|r| r.key.kind != Kind::CustomerMapping)
        .collect();
    let options = CheckOptions {
        timeout: CHECK_TIMEOUT,
        only: None,
        hosted_sftp_data: periodic.hosted_sftp_data.clone(),
        now,
    };
    let results = check_all(&resources, secrets, &options).await?;
    record(store, &results, now).await
}

/// Writes the conditions of `results` into the resources' status, and the metrics. Returns
/// the conditions whose truth changed, except a first check that passed.
pub async fn record(
    store: &StateStore,
    results: &[CheckResult],
    now: Timestamp,
) -> Result<Vec<ConditionChange>> {
    let mut by_resource: std::collections::BTreeMap<ResourceKey, Vec<&CheckResult>> =
        Default::default();
    for r in results {
        let key = ResourceKey::new(r.kind, &r.namespace, &r.name);
        by_resource.entry(key).or_default().push(r);
    }
    let mut changes = Vec::new();
    let now_text = now.to_string();
    for (key, results) in by_resource {
        let condition = match key.kind {
            Kind::DeliveryTarget => ConditionType::Reachable,
            Kind::ReportSchedule => ConditionType::SourceReady,
            Kind::CustomerMapping => continue,
        };
        let failed: Vec<&&CheckResult> = results
            .iter()
            .filter(|r| r.status == Status::Failed)
            .collect();
        for r in &results {
            crate::observe::check_finished(
                key.kind.as_str(),
                &key.namespace,
                &key.name,
                &r.check,
                r.status == Status::Failed,
            );
        }
        let (truth, reason, message) = match failed.first() {
            Some(f) => (
                Truth::False,
                format!("{}CheckFailed", capitalized(&f.check)),
                failed
                    .iter()
                    .map(|f| format!("{}: {}", f.check, f.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None if results.iter().all(|r| r.status == Status::Skipped) => (
                Truth::Unknown,
                "NotChecked".to_string(),
                results
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None => (
                Truth::True,
                "Checked".to_string(),
                results
                    .iter()
                    .filter(|r| r.status == Status::Ok)
                    .map(|r| format!("{}: {}", r.check, r.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        // Read just before writing: a run reports into the same status.
        let Some(stored) = store.get(&key).await? else {
            continue;
        };
        let mut status = stored.status_object();
        let before = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == condition.as_str()))
            .and_then(|c| c["status"].as_str().map(str::to_string));
        set_condition(&mut status, condition, truth, &reason, &message, &now_text);
        status["lastCheck"] = serde_json::json!(now_text);
        store.set_status(&key, &status).await?;
        // A change is news; a first check that passes is not (10,000 targets checked at
        // start would otherwise publish 10,000 Events saying all is well).
        let first = before.is_none() || before.as_deref() == Some(Truth::Unknown.as_str());
        if before.as_deref() != Some(truth.as_str())
            && truth != Truth::Unknown
            && !(first && truth == Truth::True)
        {
            changes.push(ConditionChange {
                key,
                condition: condition.as_str(),
                holds: truth == Truth::True,
                reason,
                message,
            });
        }
    }
    Ok(changes)
}

/// Tells the `onCheckFailed` targets of the schedules `changes` concern: a schedule whose
/// source check changed, or the schedules delivering to a target whose check changed. One
/// alert per target told and change, naming the schedules it is told for. Failures to alert
/// are logged by [`crate::alert::send`], never returned.
pub async fn alert(store: &StateStore, secrets: &FileSecrets, changes: &[ConditionChange]) {
    if changes.is_empty() {
        return;
    }
    let state = match store.snapshot().await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!("check alerts skipped: the applied resources cannot be read: {e}");
            return;
        }
    };
    // The schedules that ask to be told, found once for every change.
    let asking: Vec<(&ResourceKey, &crate::api::ReportScheduleSpec)> = state
        .resources
        .values()
        .filter_map(|stored| match stored.typed_spec() {
            Some(Spec::ReportSchedule(spec)) if !spec.notify.on_check_failed.is_empty() => {
                Some((&stored.key, spec))
            }
            _ => None,
        })
        .collect();
    if asking.is_empty() {
        return;
    }
    for change in changes {
        let mut told: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (key, spec) in &asking {
            let concerned = key.namespace == change.key.namespace
                && match change.key.kind {
                    Kind::ReportSchedule => key.name == change.key.name,
                    Kind::DeliveryTarget => {
                        spec.deliver_to.iter().any(|d| d.target == change.key.name)
                    }
                    Kind::CustomerMapping => false,
                };
            if concerned {
                for name in &spec.notify.on_check_failed {
                    told.entry(name).or_default().push(key.name.clone());
                }
            }
        }
        let (event, outcome) = if change.holds {
            (Event::CheckPassed, "passed")
        } else {
            (Event::CheckFailed, "failed")
        };
        for (target, schedules) in told {
            let alert = Alert {
                kind: change.key.kind.as_str(),
                condition: Some(change.condition),
                schedules,
                outcome: outcome.to_string(),
                error: (!change.holds).then(|| change.message.clone()),
                ..Alert::new(
                    event,
                    &change.key.namespace,
                    &change.key.name,
                    "",
                    crate::ledger::Outcome::Failed,
                )
            };
            crate::alert::send::to_named(&alert, &[target.to_string()], store, secrets).await;
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// When the next round is due after a round at `last`: `interval` later, or earlier when a
/// schedule's slot comes before the next round would fall within `before` of it.
pub fn next_round(last: Timestamp, periodic: &Periodic, state: &ActualState) -> Option<Timestamp> {
    if periodic.interval.is_zero() {
        return None;
    }
    let interval = jiff::SignedDuration::try_from(periodic.interval).ok()?;
    let before = jiff::SignedDuration::try_from(periodic.before).unwrap_or_default();
    let mut next = last.checked_add(interval).ok()?;
    for stored in state.resources.values() {
        let Some(Spec::ReportSchedule(spec)) = stored.typed_spec() else {
            continue;
        };
        if spec.suspend {
            continue;
        }
        let Ok(schedule) = CompiledSchedule::new(&spec.schedule, &spec.time_zone) else {
            continue;
        };
        // The first slot whose window [slot - before, slot) starts after `last`: a round
        // at its start checks it in time (slots whose window holds `last` were checked).
        let Some(slot) = last
            .checked_add(before)
            .ok()
            .and_then(|t| schedule.next_after(t))
        else {
            continue;
        };
        if let Ok(due) = slot.timestamp().checked_sub(before)
            && due < next
        {
            next = due;
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_failing_check() {
        assert_eq!(capitalized("delivery"), "Delivery");
        assert_eq!(capitalized(""), "");
    }
}
