//! The pure middle of the pipeline: desired state (from files or a cluster) is diffed against
//! actual state (the state store) into a [`Plan`]; applying a plan turns it into state writes.
//! Nothing here does I/O, so the CLI and the controller share it unchanged (the cluster side
//! of `ferry plan --cluster` lists objects in [`crate::controller::plan`]).

mod describe;
pub mod hosted_users;
pub mod model;
pub mod render;

pub use model::{
    Action, CLUSTER_LINEAGE, Change, DesiredResource, DriftNote, FieldChange, HostedUserChange,
    NextRun, PLAN_FORMAT_VERSION, PasswordAction, Plan, SavedPlan, Summary,
};

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::Value;

use crate::api::{Kind, ResourceKey, Spec};
use crate::filename;
use crate::load::Meta;
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::schedule::CompiledSchedule;
use crate::state::{ActualState, StateWrite, StoredResource};

/// How many upcoming runs a plan previews per ReportSchedule.
pub const PREVIEW_RUNS: usize = 3;

/// Diffs desired against actual state. Pure: same inputs, same plan.
pub fn plan(
    desired: &[DesiredResource],
    actual: &ActualState,
    warnings: Vec<String>,
    now: Timestamp,
) -> Plan {
    let mut changes = Vec::with_capacity(desired.len().max(actual.resources.len()));
    let mut summary = Summary::default();
    let mut wanted = BTreeSet::new();
    for d in desired {
        wanted.insert(&d.key);
        let change = match actual.resources.get(&d.key) {
            None => {
                let mut fields = Vec::new();
                diff_values("metadata", None, Some(&meta_json(&d.meta)), &mut fields);
                diff_values("spec", None, Some(d.spec_json()), &mut fields);
                diff_secrets(&BTreeMap::new(), &d.secret_digests, &mut fields);
                summary.create += 1;
                new_change(Action::Create, d, fields, describe::created(&d.spec))
            }
            Some(stored)
                if stored.spec == *d.spec_text()
                    && stored.meta == d.meta
                    && stored.secret_digests == d.secret_digests =>
            {
                // The common case in a large repository: skip the field-by-field walk.
                summary.unchanged += 1;
                new_change(Action::NoOp, d, Vec::new(), Vec::new())
            }
            Some(stored) => {
                let mut fields = Vec::new();
                diff_values(
                    "metadata",
                    Some(&meta_json(&stored.meta)),
                    Some(&meta_json(&d.meta)),
                    &mut fields,
                );
                diff_values("spec", Some(&stored.spec), Some(d.spec_json()), &mut fields);
                diff_secrets(&stored.secret_digests, &d.secret_digests, &mut fields);
                if fields.is_empty() {
                    summary.unchanged += 1;
                    new_change(Action::NoOp, d, fields, Vec::new())
                } else {
                    summary.update += 1;
                    let notes = match stored.typed_spec() {
                        Some(old) => describe::updated(old, &d.spec, &fields),
                        None => Vec::new(),
                    };
                    new_change(Action::Update, d, fields, notes)
                }
            }
        };
        let mut change = change;
        if let Spec::ReportSchedule(rs) = &d.spec {
            change.suspended = rs.suspend;
            change.next_runs = preview_runs(&d.key, rs, now, PREVIEW_RUNS);
        }
        changes.push(change);
    }
    for (key, stored) in &actual.resources {
        if wanted.contains(key) {
            continue;
        }
        let mut fields = Vec::new();
        diff_values(
            "metadata",
            Some(&meta_json(&stored.meta)),
            None,
            &mut fields,
        );
        diff_values("spec", Some(&stored.spec), None, &mut fields);
        summary.delete += 1;
        changes.push(Change {
            action: Action::Delete,
            kind: key.kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            source: None,
            fields,
            notes: describe::deleted(key, stored, actual),
            next_runs: Vec::new(),
            suspended: false,
        });
    }
    changes.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    let mut warnings = warnings;
    if summary.delete > 0 && summary.delete == actual.resources.len() {
        // Said first: a reviewer skimming a long plan must not miss a wipe.
        warnings.insert(0, deletes_everything(summary.delete, desired.is_empty()));
    }
    let hosted_users = hosted_users::changes(desired, actual);
    summary.passwords = hosted_users.iter().filter(|u| u.password.is_some()).count();
    Plan {
        format_version: PLAN_FORMAT_VERSION.to_string(),
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now.to_string(),
        lineage: actual.lineage.clone(),
        serial: actual.serial,
        changes,
        summary,
        warnings,
        hosted_users,
        drift: Vec::new(),
    }
}

/// The warning of a plan that deletes every resource of the state.
fn deletes_everything(count: usize, no_files: bool) -> String {
    let why = if no_files {
        "the files hold no resources"
    } else {
        "none of them is in the files"
    };
    format!("this plan deletes every resource in the state ({count}): {why}")
}

fn new_change(
    action: Action,
    d: &DesiredResource,
    fields: Vec<FieldChange>,
    notes: Vec<String>,
) -> Change {
    Change {
        action,
        kind: d.key.kind,
        namespace: d.key.namespace.clone(),
        name: d.key.name.clone(),
        source: d.source.clone(),
        fields,
        notes,
        next_runs: Vec::new(),
        suspended: false,
    }
}

/// The next `count` slots of a schedule after `now`, with the file names they produce.
pub fn preview_runs(
    key: &ResourceKey,
    rs: &crate::api::ReportScheduleSpec,
    now: Timestamp,
    count: usize,
) -> Vec<NextRun> {
    let Ok(compiled) = CompiledSchedule::new(&rs.schedule, &rs.time_zone) else {
        return Vec::new();
    };
    compiled
        .upcoming(now, count)
        .into_iter()
        .map(|slot| NextRun {
            at: slot
                .timestamp()
                .to_zoned(slot.time_zone().clone())
                .to_string_rfc3339(),
            file_name: filename::render(
                &rs.file_name,
                &filename::TemplateContext {
                    slot: &slot,
                    schedule: &key.name,
                    namespace: &key.namespace,
                    extra: &[],
                },
            ),
        })
        .collect()
}

/// RFC 3339 rendering of zoned times (jiff's default adds the `[zone]` suffix).
pub trait Rfc3339 {
    /// `2026-07-31T00:30:00+09:00`.
    fn to_string_rfc3339(&self) -> String;
}

impl Rfc3339 for jiff::Zoned {
    fn to_string_rfc3339(&self) -> String {
        self.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn meta_json(meta: &Meta) -> Value {
    serde_json::to_value(meta).expect("metadata serializes")
}

/// Field-level diff of two JSON values, as leaf paths.
fn diff_values(
    path: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            // Keep the spec's own field order where possible: walk `b`'s keys first.
            let mut ordered: Vec<&String> = b.keys().collect();
            ordered.extend(a.keys().filter(|k| !b.contains_key(*k)));
            debug_assert_eq!(ordered.len(), keys.len());
            for k in ordered {
                diff_values(&format!("{path}.{k}"), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_values(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (Some(Value::Object(a)), None) if !a.is_empty() => {
            for (k, v) in a {
                diff_values(&format!("{path}.{k}"), Some(v), None, out);
            }
        }
        (None, Some(Value::Object(b))) if !b.is_empty() => {
            for (k, v) in b {
                diff_values(&format!("{path}.{k}"), None, Some(v), out);
            }
        }
        (Some(Value::Array(a)), None) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                diff_values(&format!("{path}[{i}]"), Some(v), None, out);
            }
        }
        (None, Some(Value::Array(b))) if !b.is_empty() => {
            for (i, v) in b.iter().enumerate() {
                diff_values(&format!("{path}[{i}]"), None, Some(v), out);
            }
        }
        (a, b) => {
            let empty = |v: Option<&Value>| match v {
                None => true,
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if a != b && !(empty(a) && empty(b)) {
                out.push(FieldChange {
                    path: path.to_string(),
                    before: a.cloned(),
                    after: b.cloned(),
                    sensitive: false,
                });
            }
        }
    }
}

fn diff_secrets(
    before: &BTreeMap<String, Option<String>>,
    after: &BTreeMap<String, Option<String>>,
    out: &mut Vec<FieldChange>,
) {
    let show = |d: &Option<String>| {
        Value::String(
            if d.is_some() {
                "(sensitive)"
            } else {
                "(sensitive, missing)"
            }
            .into(),
        )
    };
    for (path, a) in after {
        let b = before.get(path);
        if b == Some(a) {
            continue;
        }
        out.push(FieldChange {
            path: format!("{path} (value)"),
            before: b.map(show),
            after: Some(show(a)),
            sensitive: true,
        });
    }
}

/// Turns a plan into state writes: creates and updates become upserts (generation bumped,
/// status reset to the new generation), deletes become deletes. Pure.
pub fn writes(
    plan: &Plan,
    desired: &[DesiredResource],
    actual: &ActualState,
    now: Timestamp,
) -> Vec<StateWrite> {
    let by_key: BTreeMap<&ResourceKey, &DesiredResource> =
        desired.iter().map(|d| (&d.key, d)).collect();
    let now_s = now.to_string();
    let mut out = Vec::new();
    for change in &plan.changes {
        let key = change.key();
        match change.action {
            Action::NoOp => {}
            Action::Delete => out.push(StateWrite::Delete(key)),
            Action::Create | Action::Update => {
                let Some(d) = by_key.get(&key) else { continue };
                let old = actual.resources.get(&key);
                let generation = old.map(|o| o.generation + 1).unwrap_or(1);
                let mut status = old
                    .map(|o| o.status.to_value())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(Default::default()));
                status["observedGeneration"] = Value::from(generation);
                set_condition(
                    &mut status,
                    ConditionType::Ready,
                    Truth::True,
                    "Applied",
                    "applied from files",
                    &now_s,
                );
                // Every kind reports `Synced`: Unknown until its first run, delivery or sync.
                let synced = status["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Synced"));
                if !synced {
                    set_condition(
                        &mut status,
                        ConditionType::Synced,
                        Truth::Unknown,
                        "Pending",
                        pending_message(key.kind),
                        &now_s,
                    );
                }
                out.push(StateWrite::Upsert(Box::new(StoredResource {
                    key: key.clone(),
                    generation,
                    spec: d.spec_text().text_copy(),
                    typed: Default::default(),
                    meta: d.meta.clone(),
                    secret_digests: d.secret_digests.clone(),
                    external_ids: old
                        .map(|o| o.external_ids.clone())
                        .unwrap_or_else(|| Value::Object(Default::default())),
                    status: status.into(),
                    created_at: old
                        .map(|o| o.created_at.clone())
                        .unwrap_or_else(|| now_s.clone()),
                    updated_at: now_s.clone(),
                })));
            }
        }
    }
    // Generated passwords need randomness and hashing: the caller adds `SetPassword` writes.
    for u in &plan.hosted_users {
        if u.password == Some(PasswordAction::Drop) {
            out.push(StateWrite::DropPassword(u.user.clone()));
        }
    }
    out
}

/// What a `Synced` condition waits for before anything happened.
fn pending_message(kind: Kind) -> &'static str {
    match kind {
        Kind::ReportSchedule => "no run yet",
        Kind::DeliveryTarget => "nothing delivered yet",
        Kind::CustomerMapping => "not synced yet",
    }
}
