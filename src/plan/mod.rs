//! The pure middle of the pipeline: desired state (from files or a cluster) is diffed against
//! actual state (the state store) into a [`Plan`]; applying a plan turns it into state writes.
//! Nothing here does I/O, so the CLI and the controller share it unchanged.

pub mod cluster;
mod describe;
pub mod hosted_users;
pub mod render;

pub use hosted_users::{HostedUserChange, PasswordAction};

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Kind, ResourceKey, SecretRef, Spec};
use crate::filename;
use crate::load::{LoadedResource, Meta};
use crate::schedule::CompiledSchedule;
use crate::state::{ActualState, StateWrite, StoredResource};
use crate::validate::secret_refs;

/// Version of the JSON plan format (`-o json` and saved plans). Bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: &str = "1";

/// How many upcoming runs a plan previews per ReportSchedule.
pub const PREVIEW_RUNS: usize = 3;

/// A resource as the files (or the cluster) want it, with secrets reduced to keyed hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredResource {
    /// Kind, namespace, name.
    pub key: ResourceKey,
    /// Labels and annotations.
    pub meta: Meta,
    /// The spec.
    pub spec: Spec,
    /// Keyed hash of each referenced secret's value by field path; `None` when missing.
    pub secret_digests: BTreeMap<String, Option<String>>,
    /// `file:line` it was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The spec as canonical JSON, computed once.
    #[serde(skip)]
    spec_json: std::sync::OnceLock<std::sync::Arc<Value>>,
}

impl DesiredResource {
    /// The spec as canonical JSON.
    pub fn spec_json(&self) -> &Value {
        self.spec_json
            .get_or_init(|| std::sync::Arc::new(self.spec.to_json()))
    }
}

/// Builds the desired state. `digest` resolves a secret reference to the keyed hash of its
/// value (`None` when it does not exist); missing secrets become warnings, not errors, so a
/// plan can be reviewed where the secrets are not available (e.g. in pull-request CI).
pub fn desired_state(
    loaded: &[LoadedResource],
    mut digest: impl FnMut(&str, &SecretRef) -> crate::Result<Option<String>>,
) -> crate::Result<(Vec<DesiredResource>, Vec<String>)> {
    let mut desired = Vec::with_capacity(loaded.len());
    let mut warnings = Vec::new();
    let mut cache: std::collections::HashMap<(String, SecretRef), Option<String>> =
        std::collections::HashMap::new();
    for r in loaded {
        let mut secret_digests = BTreeMap::new();
        for (path, sref) in secret_refs(r.spec_json(), "spec") {
            // Many resources share a secret: resolve each one once.
            let cache_key = (r.key.namespace.clone(), sref.clone());
            let d = match cache.get(&cache_key) {
                Some(d) => d.clone(),
                None => {
                    let d = digest(&r.key.namespace, &sref)?;
                    cache.insert(cache_key, d.clone());
                    d
                }
            };
            if d.is_none() {
                let (line, col) = r.origin.locate(&path);
                warnings.push(format!(
                    "{}:{line}:{col}: {}/{}: {path}: secret {}/{} not found; runs will fail until it exists",
                    r.origin.file.display(),
                    r.key.kind,
                    r.key.name,
                    sref.name,
                    sref.key
                ));
            }
            secret_digests.insert(path, d);
        }
        desired.push(DesiredResource {
            key: r.key.clone(),
            meta: r.meta.clone(),
            spec: r.spec.clone(),
            secret_digests,
            source: Some(r.origin.short()),
            spec_json: std::sync::OnceLock::from(std::sync::Arc::clone(r.spec_json())),
        });
    }
    Ok((desired, warnings))
}

/// What a plan does to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The resource is new.
    Create,
    /// The resource exists and changes.
    Update,
    /// The resource is no longer in the files.
    Delete,
    /// Nothing changes.
    NoOp,
}

/// One changed field. Secret values show as `(sensitive)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Field path, e.g. `spec.schedule.daily.at`.
    pub path: String,
    /// Value before (absent for additions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value after (absent for removals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The value is a secret: `before`/`after` only say `(sensitive)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// An upcoming run of a ReportSchedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextRun {
    /// The slot, RFC 3339 with the zone's offset.
    pub at: String,
    /// The file name that slot produces.
    #[serde(rename = "fileName")]
    pub file_name: String,
}

/// The plan for one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `create`, `update`, `delete` or `no-op`.
    pub action: Action,
    /// The kind, e.g. `ReportSchedule`.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `file:line` of the desired resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Field-level differences (every field for create and delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// What the change means in domain terms, e.g. "host key pin changed".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// ReportSchedules: the next runs after apply and their file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_runs: Vec<NextRun>,
    /// ReportSchedules: `suspend: true`, so scheduled runs do not happen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

impl Change {
    /// The resource key.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, self.namespace.clone(), self.name.clone())
    }
}

/// Counts per action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Resources to create.
    pub create: usize,
    /// Resources to update.
    pub update: usize,
    /// Resources to delete.
    pub delete: usize,
    /// Resources unchanged.
    pub unchanged: usize,
    /// Hosted SFTP passwords to generate or drop (they can change without any resource change,
    /// e.g. a user whose password was never issued).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub passwords: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Summary {
    /// Whether applying changes anything.
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete + self.passwords > 0
    }
}

/// A plan: the diff between desired and actual state, made against one state version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: String,
    /// The ferry version that made the plan.
    pub ferry_version: String,
    /// When the plan was made (RFC 3339).
    pub created_at: String,
    /// Lineage of the state the plan was made against.
    pub lineage: String,
    /// Serial of the state the plan was made against.
    pub serial: u64,
    /// One entry per resource, in kind, namespace, name order.
    pub changes: Vec<Change>,
    /// Counts per action.
    pub summary: Summary,
    /// Problems that do not stop the plan (e.g. a missing secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Logins of the hosted SFTP server that change (users merge across connections).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosted_users: Vec<HostedUserChange>,
    /// What refreshing the CustomerMappings from their PSA found (`plan` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftNote>,
}

/// One finding of refreshing a CustomerMapping from its PSA: an error (the mapping cannot
/// sync as it is: company missing, ambiguous or inactive, agreement unusable) or a drift
/// (changed outside Ferry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftNote {
    /// Namespace of the CustomerMapping.
    pub namespace: String,
    /// Name of the CustomerMapping.
    pub name: String,
    /// An error rather than a drift.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// What was found.
    pub message: String,
}

/// A plan saved with `--out`, carrying the desired state so that `ferry apply FILE` applies
/// exactly what was reviewed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The plan.
    #[serde(flatten)]
    pub plan: Plan,
    /// The desired state the plan was made from.
    pub desired: Vec<DesiredResource>,
}

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
        let spec = d.spec_json();
        let change = match actual.resources.get(&d.key) {
            None => {
                let mut fields = Vec::new();
                diff_values("metadata", None, Some(&meta_json(&d.meta)), &mut fields);
                diff_values("spec", None, Some(spec), &mut fields);
                diff_secrets(&BTreeMap::new(), &d.secret_digests, &mut fields);
                summary.create += 1;
                new_change(Action::Create, d, fields, describe::created(&d.spec))
            }
            Some(stored)
                if &stored.spec == spec
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
                diff_values("spec", Some(&stored.spec), Some(spec), &mut fields);
                diff_secrets(&stored.secret_digests, &d.secret_digests, &mut fields);
                if fields.is_empty() {
                    summary.unchanged += 1;
                    new_change(Action::NoOp, d, fields, Vec::new())
                } else {
                    summary.update += 1;
                    let notes = match Spec::from_json(d.key.kind, stored.spec.clone()) {
                        Ok(old) => describe::updated(&old, &d.spec, &fields),
                        Err(_) => Vec::new(),
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
            notes: describe::deleted(key, &stored.spec, actual),
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
                    .map(|o| o.status.clone())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(Default::default()));
                status["observedGeneration"] = Value::from(generation);
                set_condition(
                    &mut status,
                    "Ready",
                    "True",
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
                        "Synced",
                        "Unknown",
                        "Pending",
                        pending_message(key.kind),
                        &now_s,
                    );
                }
                out.push(StateWrite::Upsert(Box::new(StoredResource {
                    key: key.clone(),
                    generation,
                    spec: d.spec_json().clone(),
                    meta: d.meta.clone(),
                    secret_digests: d.secret_digests.clone(),
                    external_ids: old
                        .map(|o| o.external_ids.clone())
                        .unwrap_or_else(|| Value::Object(Default::default())),
                    status,
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

/// Sets a condition in a status object, keeping `lastTransitionTime` when the status holds.
pub fn set_condition(
    status: &mut Value,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = Value::Array(Vec::new());
    }
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("just made an array");
    let new = serde_json::json!({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": now,
    });
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            let transition = if c["status"] == value {
                c["lastTransitionTime"].clone()
            } else {
                Value::from(now)
            };
            *c = new;
            c["lastTransitionTime"] = transition;
        }
        None => conditions.push(new),
    }
}
