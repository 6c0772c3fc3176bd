//! What a plan is made of: the desired resources, one [`Change`] per resource with its field
//! differences and notes, the hosted SFTP logins that change, and the [`Plan`] that holds them
//! against one state version. Plain data, shared by the diff, its renderers and the callers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Kind, ResourceKey, Spec};
use crate::load::Meta;
use crate::state::LazyJson;

/// Version of the JSON plan format (`-o json` and saved plans). Bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: &str = "1";

/// The `lineage` of a plan made against a cluster's live objects rather than a state store.
pub const CLUSTER_LINEAGE: &str = "cluster";

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
    /// The spec as canonical JSON text, computed once, parsed only when a diff needs it.
    #[serde(skip)]
    spec_json: std::sync::OnceLock<LazyJson>,
}

impl DesiredResource {
    /// The spec as canonical JSON.
    pub fn spec_json(&self) -> &Value {
        self.spec_text()
    }

    /// The spec as canonical JSON text (what the state stores, and compares unparsed).
    pub fn spec_text(&self) -> &LazyJson {
        self.spec_json
            .get_or_init(|| LazyJson::from(self.spec.to_json()))
    }
}

impl DesiredResource {
    /// A desired resource: `spec_json` is the spec as canonical JSON when already known.
    pub fn new(
        key: ResourceKey,
        meta: Meta,
        spec: Spec,
        secret_digests: BTreeMap<String, Option<String>>,
        source: Option<String>,
        spec_json: Option<LazyJson>,
    ) -> Self {
        DesiredResource {
            key,
            meta,
            spec,
            secret_digests,
            source,
            spec_json: spec_json.map(std::sync::OnceLock::from).unwrap_or_default(),
        }
    }
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

impl Action {
    /// The plan's symbol for it: `+`, `~`, `-` or a space.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
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

/// What happens to a user's generated password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordAction {
    /// A password is generated at apply, shown once, and only its hash kept.
    Generate,
    /// The stored hash is dropped: the user is gone or now logs in with a key.
    Drop,
}

/// What a plan does to one login of the hosted SFTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostedUserChange {
    /// Login user.
    pub user: String,
    /// `create`: a new login; `update`: its keys or connections change; `delete`: it loses
    /// access (open sessions are closed); `no-op`: only its password changes.
    pub action: Action,
    /// The connections granting it access after the apply (before it, for a deletion), as
    /// `namespace/target`.
    pub connections: Vec<String>,
    /// Keys that start to be accepted, as `type SHA256:fingerprint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_added: Vec<String>,
    /// Keys no longer accepted, as `type SHA256:fingerprint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_removed: Vec<String>,
    /// The password change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordAction>,
}
