//! `ferry plan --cluster -f PATH...`: the files against the live objects of a Kubernetes
//! cluster, in two views.
//!
//! 1. **Objects**, like `kubectl diff`: each file object is `create` (not in the cluster),
//!    `update` (with a unified YAML diff of its labels, annotations and spec) or `unchanged`;
//!    live objects of the same namespaces that the files do not hold are listed as
//!    `not-in-files` (`kubectl apply` leaves them; only `--prune` would delete them).
//! 2. **The domain plan**, the very [`Plan`] of `ferry plan`: desired = the files, actual = the
//!    state Ferry's controller holds for the live objects. The live objects are taken as the
//!    controller takes them ([`super::Namespace`], typed) and go through the same
//!    validate -> desired state -> plan -> writes pipeline, so the actual state is the
//!    `StoredResource`s an applied controller would have.
//!
//! Both sides are compared in their canonical typed form (what the loader and the controller
//! see: defaults filled in), so a field the API server defaulted is not reported as a change.
//! Server-populated fields (status, managedFields, resourceVersion, uid, generation,
//! creationTimestamp, finalizers, ownerReferences, the `kubectl.kubernetes.io/last-applied-
//! configuration` annotation) are never compared. The `ferry.dev/run-now` annotation set on a
//! live object is ignored when the file does not set it: `kubectl annotate` puts it there and
//! `kubectl apply` leaves it.
//!
//! **Secrets** are Kubernetes Secrets the CLI may not be allowed to read: they are never read
//! here. Every referenced secret counts as present and unchanged on both sides (a changed
//! `*SecretRef` still shows, as a spec change), so no value, digest or "missing secret"
//! warning ever appears. The cluster is only listed (never watched, never written).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use similar::TextDiff;

use super::objects::{FerryObject, Namespace, RUN_NOW_ANNOTATION, key_of, origin_label};
use crate::api::{
    API_VERSION, CustomerMapping, DEFAULT_NAMESPACE, DeliveryTarget, Kind, ReportSchedule,
    ResourceKey, Spec,
};
use crate::diagnostic::Diagnostic;
use crate::load::{self, LoadedResource, Meta};
use crate::pipeline::desired::desired_state;
use crate::plan::render::{self, Output};
use crate::plan::{Action, CLUSTER_LINEAGE, Plan, Summary};
use crate::state::{ActualState, StateWrite};
use crate::{Error, Result};

/// The annotation `kubectl apply` keeps its previous input in: bookkeeping, not configuration.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The digest every secret gets on both sides: secrets are not read in cluster mode, so they
/// compare as present and unchanged. Never shown (plans print `(sensitive)`).
const UNREAD_SECRET: &str = "unread-kubernetes-secret";

/// How `ferry plan --cluster` reads the files.
#[derive(Clone, Debug)]
pub struct Options {
    /// `-n`: the namespace of documents that name none (and the only one allowed), like
    /// kubectl; `None`: the client's default namespace (the kubeconfig context's).
    pub namespace: Option<String>,
    /// The instant next runs are previewed from.
    pub now: Timestamp,
}

/// What `kubectl apply` would do to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectAction {
    /// In the files, not in the cluster.
    Create,
    /// In both, different.
    Update,
    /// In both, the same.
    Unchanged,
    /// In the cluster (in a namespace the files use), not in the files: apply leaves it.
    NotInFiles,
}

/// One object of the kubectl-style view.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectChange {
    /// The kind.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// What apply does to it.
    pub action: ObjectAction,
    /// Unified diff, live -> file, of the object as YAML (empty when unchanged or not in the
    /// files).
    pub diff: String,
    /// `file:line` of the file object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ObjectChange {
    fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, self.namespace.clone(), self.name.clone())
    }
}

/// The result of `ferry plan --cluster`: `-o json` prints exactly this.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterPlan {
    /// Per object, in kind, namespace, name order: file objects, then live-only ones.
    pub objects: Vec<ObjectChange>,
    /// The domain plan of the file objects (no deletions: apply without `--prune` deletes
    /// nothing). `lineage` is [`CLUSTER_LINEAGE`] and `serial` 0.
    pub plan: Plan,
}

impl ClusterPlan {
    /// Whether applying the files changes anything (for `--detailed-exitcode`).
    pub fn has_changes(&self) -> bool {
        self.plan.summary.has_changes()
            || self
                .objects
                .iter()
                .any(|o| matches!(o.action, ObjectAction::Create | ObjectAction::Update))
    }
}

/// A live object read from the cluster, in the canonical form the object diff compares (its
/// document for the domain side goes to a [`Namespace`]).
struct Live {
    key: ResourceKey,
    comparable: Value,
}

/// Diffs the files against the live objects of the namespaces they name.
pub async fn plan(client: &Client, files: &[PathBuf], options: &Options) -> Result<ClusterPlan> {
    // The files, with kubectl's namespace rule. Syntax errors stop here, before any request.
    let loaded = load::load_paths(files);
    if !loaded.diagnostics.is_empty() {
        return Err(invalid(loaded.diagnostics));
    }
    let mut resources = loaded.resources;
    let default_ns = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    set_namespaces(&mut resources, &default_ns, options.namespace.is_some())?;

    let file_meta: BTreeMap<ResourceKey, &Meta> =
        resources.iter().map(|r| (r.key.clone(), &r.meta)).collect();
    let namespaces: BTreeSet<String> = resources.iter().map(|r| r.key.namespace.clone()).collect();

    // The live objects, listed kind by kind in each namespace.
    let mut live = Vec::new();
    let mut documents = Namespace::default();
    for ns in &namespaces {
        take(
            list::<DeliveryTarget>(client, ns).await?,
            &file_meta,
            &mut documents,
            &mut live,
        )?;
        take(
            list::<ReportSchedule>(client, ns).await?,
            &file_meta,
            &mut documents,
            &mut live,
        )?;
        take(
            list::<CustomerMapping>(client, ns).await?,
            &file_meta,
            &mut documents,
            &mut live,
        )?;
    }
    let live_loaded = documents;

    // Actual: the live objects the controller can apply (valid among their namespace).
    let mut warnings = Vec::new();
    let live_diags = crate::validate::validate(&live_loaded.resources);
    let invalid_live = diagnosed(&live_diags);
    for d in &live_diags {
        warnings.push(format!(
            "{d} (invalid in the cluster: the controller has not applied it, so it counts as absent)"
        ));
    }
    let live_valid: Vec<LoadedResource> = live_loaded
        .resources
        .iter()
        .filter(|r| !invalid_live.contains(&r.key))
        .cloned()
        .collect();
    let actual = actual_state(&live_valid, options.now)?;

    // Desired: what the namespaces hold after `kubectl apply` (the files over the live
    // objects), validated together so a file may refer to a target only the cluster holds.
    let mut merged = resources.clone();
    merged.extend(
        live_loaded
            .resources
            .into_iter()
            .filter(|r| !file_meta.contains_key(&r.key)),
    );
    let merged_diags = crate::validate::validate(&merged);
    let (cluster_diags, file_diags): (Vec<Diagnostic>, Vec<Diagnostic>) = merged_diags
        .into_iter()
        .partition(|d| d.file.to_string_lossy().starts_with("cluster:"));
    if !file_diags.is_empty() {
        return Err(invalid(file_diags));
    }
    let invalid_merged = diagnosed(&cluster_diags);
    merged.retain(|r| !invalid_merged.contains(&r.key));
    let (desired, _no_warnings) = desired_state(&merged, |_, _| Ok(Some(UNREAD_SECRET.into())))?;

    let mut planned = crate::plan::plan(&desired, &actual, warnings, options.now);
    keep_only(&mut planned, &file_meta);

    // The kubectl view.
    let live_by_key: BTreeMap<&ResourceKey, &Live> = live.iter().map(|l| (&l.key, l)).collect();
    let mut objects = Vec::new();
    for r in &resources {
        let file = comparable(&file_object(r));
        let (action, diff) = object_diff(
            live_by_key.get(&r.key).map(|l| &l.comparable),
            &file,
            &live_path(&r.key),
            &r.origin.short(),
        )?;
        objects.push(ObjectChange {
            kind: r.key.kind,
            namespace: r.key.namespace.clone(),
            name: r.key.name.clone(),
            action,
            diff,
            source: Some(r.origin.short()),
        });
    }
    for l in &live {
        if !file_meta.contains_key(&l.key) {
            objects.push(ObjectChange {
                kind: l.key.kind,
                namespace: l.key.namespace.clone(),
                name: l.key.name.clone(),
                action: ObjectAction::NotInFiles,
                diff: String::new(),
                source: None,
            });
        }
    }
    objects.sort_by_key(|o| (o.action == ObjectAction::NotInFiles, o.key()));
    Ok(ClusterPlan {
        objects,
        plan: planned,
    })
}

fn invalid(mut diags: Vec<Diagnostic>) -> Error {
    diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    Error::Invalid(diags)
}

/// kubectl's rule: a document without `metadata.namespace` goes to `namespace` (the
/// context's, or `-n`); with `-n` (`forced`), a document naming another namespace is an error.
fn set_namespaces(resources: &mut [LoadedResource], namespace: &str, forced: bool) -> Result<()> {
    let mut diags = Vec::new();
    for r in resources.iter_mut() {
        if !names_namespace(r) {
            r.key.namespace = namespace.to_string();
        } else if forced && r.key.namespace != namespace {
            diags.push(r.origin.diagnostic(
                Some(&r.key),
                "metadata.namespace",
                format!(
                    "the namespace `{}` of the object does not match `-n {namespace}`",
                    r.key.namespace
                ),
            ));
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(invalid(diags))
    }
}

/// Whether the document writes `metadata.namespace` (the loader fills in `default` either
/// way): its position differs from that of `metadata` only when the field is there.
fn names_namespace(r: &LoadedResource) -> bool {
    r.origin.locate("metadata.namespace") != r.origin.locate("metadata")
}

/// Lists the objects of one kind in one namespace; errors say what to do about them.
async fn list<K: FerryObject>(client: &Client, namespace: &str) -> Result<Vec<K>> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => Err(list_error(&e, K::KIND, namespace)),
    }
}

/// A failed list as a message naming the cause and the fix.
fn list_error(e: &kube::Error, kind: Kind, namespace: &str) -> Error {
    let what = format!("{}.{}", kind.plural(), crate::api::GROUP);
    Error::Usage(match e {
        kube::Error::Api(status) if status.code == 404 => format!(
            "the Ferry CRDs are not installed in this cluster (list {what} in namespace \
             {namespace}: 404 Not Found); install them with `ferry crds | kubectl apply -f -`"
        ),
        kube::Error::Api(status) if status.code == 403 => format!(
            "forbidden: cannot list {what} in namespace {namespace} ({}); the credentials of \
             the current kubeconfig context need the verb `list` on resource `{}` in API group \
             `{}`",
            status.message,
            kind.plural(),
            crate::api::GROUP
        ),
        kube::Error::Api(status) if status.code == 401 => format!(
            "unauthorized: the Kubernetes API refused the credentials of the current \
             kubeconfig context ({})",
            status.message
        ),
        kube::Error::Api(status) => format!(
            "list {what} in namespace {namespace}: {} {}",
            status.code, status.message
        ),
        kube::Error::SerdeError(e) => format!(
            "list {what} in namespace {namespace}: an object does not fit this ferry version's \
             types ({e}); compare the installed CRDs with `ferry crds`"
        ),
        other => format!("cannot reach the Kubernetes API: {other}"),
    })
}

/// Adds listed objects to `live` (canonical form) and `documents` (what the loader reads),
/// dropping what `kubectl apply` does not touch.
fn take<K: FerryObject>(
    items: Vec<K>,
    file_meta: &BTreeMap<ResourceKey, &Meta>,
    documents: &mut Namespace,
    live: &mut Vec<Live>,
) -> Result<()> {
    for mut obj in items {
        let key = key_of(&obj);
        obj.annotations_mut().remove(LAST_APPLIED_ANNOTATION);
        if file_meta
            .get(&key)
            .is_some_and(|m| !m.annotations.contains_key(RUN_NOW_ANNOTATION))
        {
            obj.annotations_mut().remove(RUN_NOW_ANNOTATION);
        }
        let value = serde_json::to_value(&obj).map_err(|e| Error::State(e.to_string()))?;
        documents.add(&obj)?;
        live.push(Live {
            key,
            comparable: comparable(&value),
        });
    }
    Ok(())
}

/// Keys of resources some diagnostic is about.
fn diagnosed(diags: &[Diagnostic]) -> BTreeSet<ResourceKey> {
    diags
        .iter()
        .filter_map(|d| parse_live_path(&d.file.to_string_lossy()))
        .collect()
}

/// `cluster:NS/plural/NAME`, how messages name a live object.
fn live_path(key: &ResourceKey) -> String {
    origin_label(key)
}

fn parse_live_path(path: &str) -> Option<ResourceKey> {
    let rest = path.strip_prefix("cluster:")?;
    let mut parts = rest.splitn(3, '/');
    let (ns, plural, name) = (parts.next()?, parts.next()?, parts.next()?);
    let kind = Kind::ALL.into_iter().find(|k| k.plural() == plural)?;
    Some(ResourceKey::new(kind, ns, name))
}

/// The state an applied controller holds for `live`: the writes of applying them to an empty
/// state (generation 1, `Ready`), plus, as secrets are not read, a generated password for every
/// hosted SFTP user without keys (the controller issued one into a Secret).
fn actual_state(live: &[LoadedResource], now: Timestamp) -> Result<ActualState> {
    let (desired, _) = desired_state(live, |_, _| Ok(Some(UNREAD_SECRET.into())))?;
    let empty = ActualState {
        lineage: CLUSTER_LINEAGE.into(),
        serial: 0,
        resources: BTreeMap::new(),
        password_users: BTreeSet::new(),
    };
    let applied = crate::plan::plan(&desired, &empty, Vec::new(), now);
    let mut actual = empty.clone();
    for w in crate::plan::writes(&applied, &desired, &empty, now) {
        if let StateWrite::Upsert(r) = w {
            actual.resources.insert(r.key.clone(), *r);
        }
    }
    for d in &desired {
        if let Spec::DeliveryTarget(t) = &d.spec
            && let Some(h) = &t.hosted_sftp
            && h.public_keys.is_empty()
        {
            actual.password_users.insert(h.user.clone());
        }
    }
    Ok(actual)
}

/// Keeps the changes of the file objects only (live-only objects are neither desired changes
/// nor deletions: apply leaves them), and recounts.
fn keep_only(plan: &mut Plan, files: &BTreeMap<ResourceKey, &Meta>) {
    plan.changes.retain(|c| files.contains_key(&c.key()));
    let mut summary = Summary {
        passwords: plan.summary.passwords,
        ..Summary::default()
    };
    for c in &plan.changes {
        match c.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Delete => summary.delete += 1,
            Action::NoOp => summary.unchanged += 1,
        }
    }
    plan.summary = summary;
}

/// A file object as the API server would hold it (canonical spec).
fn file_object(r: &LoadedResource) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": r.key.kind.as_str(),
        "metadata": {
            "name": r.key.name,
            "namespace": r.key.namespace,
            "labels": r.meta.labels,
            "annotations": r.meta.annotations,
        },
        "spec": r.spec_json().as_ref(),
    })
}

/// The part of an object `kubectl apply` sets from a Ferry file: `apiVersion`, `kind`,
/// `metadata` name, namespace, labels and annotations (without the last-applied annotation),
/// and `spec`. Everything the server populates (status, managedFields, resourceVersion, uid,
/// generation, creationTimestamp, finalizers, ...) is left out.
pub fn comparable(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut metadata = serde_json::Map::new();
    for field in ["name", "namespace"] {
        if let Some(v) = meta.get(field).filter(|v| !v.is_null()) {
            metadata.insert(field.into(), v.clone());
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = meta.get(field) {
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED_ANNOTATION)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                metadata.insert(field.into(), Value::Object(kept));
            }
        }
    }
    let mut out = serde_json::Map::new();
    for field in ["apiVersion", "kind"] {
        if let Some(v) = object.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert(
        "spec".into(),
        object.get("spec").cloned().unwrap_or_else(|| json!({})),
    );
    Value::Object(out)
}

/// YAML of a comparable object, for the diff.
fn to_yaml(v: &Value) -> Result<String> {
    serde_saphyr::to_string(v).map_err(|e| Error::State(format!("YAML rendering: {e}")))
}

/// `kubectl diff` of one object: `live` (`None`: not in the cluster) against `file`, both
/// [`comparable`], as a unified YAML diff with headers naming both sides.
pub fn object_diff(
    live: Option<&Value>,
    file: &Value,
    live_name: &str,
    file_name: &str,
) -> Result<(ObjectAction, String)> {
    let after = to_yaml(file)?;
    let (action, before, live_header) = match live {
        None => (
            ObjectAction::Create,
            String::new(),
            "live: (none)".to_string(),
        ),
        Some(l) if l == file => return Ok((ObjectAction::Unchanged, String::new())),
        Some(l) => (
            ObjectAction::Update,
            to_yaml(l)?,
            format!("live: {live_name}"),
        ),
    };
    if before == after {
        // Equal up to what YAML shows (e.g. 1 vs 1.0): nothing to report.
        return Ok((ObjectAction::Unchanged, String::new()));
    }
    let diff = TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&live_header, &format!("file: {file_name}"))
        .to_string();
    Ok((action, diff))
}

/// `title` as in plans: `Kind/name`, plus the namespace when not `default`.
fn title(kind: Kind, namespace: &str, name: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{name} (namespace {namespace})")
    }
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Counts per object action.
fn counts(cp: &ClusterPlan) -> [usize; 4] {
    let n = |a: ObjectAction| cp.objects.iter().filter(|o| o.action == a).count();
    [
        n(ObjectAction::Create),
        n(ObjectAction::Update),
        n(ObjectAction::Unchanged),
        n(ObjectAction::NotInFiles),
    ]
}

/// The heading of the live-only list.
pub const NOT_IN_FILES: &str =
    "Not in the files (kubectl apply leaves them; `--prune` would delete):";

/// Text: the object diffs, the live-only objects, then the domain plan as `ferry plan`
/// prints it (next runs and file names included). `color`: ANSI colours, terminal only.
pub fn text(cp: &ClusterPlan, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}\n",
        paint(
            color,
            "1",
            "Objects (the files against the live cluster objects, like kubectl diff):"
        )
    );
    for o in &cp.objects {
        let (sign, code, verb) = match o.action {
            ObjectAction::Create => ("+", "32", "will be created"),
            ObjectAction::Update => ("~", "33", "will be updated"),
            _ => continue,
        };
        let mut head = format!("{sign} {} {verb}", title(o.kind, &o.namespace, &o.name));
        if let Some(src) = &o.source {
            let _ = write!(head, "  ({src})");
        }
        let _ = writeln!(out, "  {}", paint(color, code, &head));
        for line in o.diff.lines() {
            let code = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => "32",
                Some('-') if !line.starts_with("---") => "31",
                Some('@') => "36",
                _ => "0",
            };
            let _ = writeln!(out, "      {}", paint(color && code != "0", code, line));
        }
        out.push('\n');
    }
    let live_only = live_only(cp);
    if !live_only.is_empty() {
        let _ = writeln!(out, "  {NOT_IN_FILES}");
        for o in live_only {
            let _ = writeln!(out, "    {}", title(o.kind, &o.namespace, &o.name));
        }
        out.push('\n');
    }
    let [create, update, unchanged, not_in_files] = counts(cp);
    let _ = writeln!(
        out,
        "{} {create} to create, {update} to update, {unchanged} unchanged, {not_in_files} not in the files.\n",
        paint(color, "1", "Objects:")
    );
    let _ = writeln!(
        out,
        "{}\n",
        paint(
            color,
            "1",
            "Domain plan (what Ferry's controller does once the files are applied):"
        )
    );
    out.push_str(&render::text(&cp.plan, color));
    out
}

/// `{"objects": [...], "plan": <the plan JSON of ferry plan>}`.
pub fn json(cp: &ClusterPlan) -> String {
    serde_json::to_string_pretty(cp).expect("cluster plans serialize to JSON") + "\n"
}

/// Markdown for a pull-request comment: the object diffs, then the plan's Markdown.
pub fn markdown(cp: &ClusterPlan) -> String {
    let [create, update, unchanged, not_in_files] = counts(cp);
    let mut out = format!(
        "### Cluster objects: {create} to create, {update} to update, {unchanged} unchanged, \
         {not_in_files} not in the files\n\n"
    );
    for o in cp
        .objects
        .iter()
        .filter(|o| matches!(o.action, ObjectAction::Create | ObjectAction::Update))
    {
        let _ = writeln!(
            out,
            "<details><summary><code>{} {}</code></summary>\n\n```diff\n{}```\n\n</details>\n",
            if o.action == ObjectAction::Create {
                "+"
            } else {
                "~"
            },
            title(o.kind, &o.namespace, &o.name),
            o.diff
        );
    }
    let live_only = live_only(cp);
    if !live_only.is_empty() {
        let _ = writeln!(out, "{NOT_IN_FILES}\n");
        for o in live_only {
            let _ = writeln!(out, "- `{}`", title(o.kind, &o.namespace, &o.name));
        }
        out.push('\n');
    }
    out.push_str(&render::markdown(&cp.plan));
    out
}

/// Renders in the chosen format.
pub fn render(cp: &ClusterPlan, output: Output, color: bool) -> String {
    match output {
        Output::Text => text(cp, color),
        Output::Json => json(cp),
        Output::Markdown => markdown(cp),
    }
}

/// The live objects no file declares (shown apart, never deleted).
fn live_only(cp: &ClusterPlan) -> Vec<&ObjectChange> {
    cp.objects
        .iter()
        .filter(|o| o.action == ObjectAction::NotInFiles)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_object() -> Value {
        json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "ReportSchedule",
            "metadata": {
                "name": "orders",
                "namespace": "default",
                "uid": "4b1c",
                "resourceVersion": "812",
                "generation": 4,
                "creationTimestamp": "2026-07-01T00:00:00Z",
                "finalizers": ["ferry.dev/cleanup"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "labels": {"team": "bi"},
                "annotations": {
                    LAST_APPLIED_ANNOTATION: "{\"apiVersion\":\"ferry.dev/v1alpha1\"}",
                },
            },
            "spec": {"schedule": {"daily": {"at": "00:30"}}, "timeZone": "Asia/Tokyo"},
            "status": {"observedGeneration": 4, "conditions": [{"type": "Ready", "status": "True"}]},
        })
    }

    fn file_object() -> Value {
        json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "ReportSchedule",
            "metadata": {"name": "orders", "namespace": "default", "labels": {"team": "bi"}, "annotations": {}},
            "spec": {"schedule": {"daily": {"at": "00:30"}}, "timeZone": "Asia/Tokyo"},
        })
    }

    #[test]
    fn server_populated_fields_are_not_compared() {
        let live = comparable(&live_object());
        assert_eq!(
            live,
            json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "ReportSchedule",
                "metadata": {"name": "orders", "namespace": "default", "labels": {"team": "bi"}},
                "spec": {"schedule": {"daily": {"at": "00:30"}}, "timeZone": "Asia/Tokyo"},
            })
        );
        assert_eq!(live, comparable(&file_object()));
        let (action, diff) =
            object_diff(Some(&live), &comparable(&file_object()), "l", "f").unwrap();
        assert_eq!((action, diff.as_str()), (ObjectAction::Unchanged, ""));
    }

    #[test]
    fn a_changed_field_is_a_unified_yaml_diff_naming_both_sides() {
        let live = comparable(&live_object());
        let mut file = file_object();
        file["spec"]["schedule"]["daily"]["at"] = json!("01:30");
        let (action, diff) = object_diff(
            Some(&live),
            &comparable(&file),
            "cluster:default/reportschedules/orders",
            "files/orders.yaml:1",
        )
        .unwrap();
        assert_eq!(action, ObjectAction::Update);
        let lines: Vec<&str> = diff.lines().collect();
        assert_eq!(lines[0], "--- live: cluster:default/reportschedules/orders");
        assert_eq!(lines[1], "+++ file: files/orders.yaml:1");
        assert!(lines[2].starts_with("@@ "), "{diff}");
        let removed: Vec<&str> = lines[3..]
            .iter()
            .copied()
            .filter(|l| l.starts_with('-'))
            .collect();
        let added: Vec<&str> = lines[3..]
            .iter()
            .copied()
            .filter(|l| l.starts_with('+'))
            .collect();
        assert_eq!(removed.len(), 1, "{diff}");
        assert_eq!(added.len(), 1, "{diff}");
        assert!(
            removed[0].contains("at:") && removed[0].contains("00:30"),
            "{diff}"
        );
        assert!(
            added[0].contains("at:") && added[0].contains("01:30"),
            "{diff}"
        );
        // Server fields never show up, on either side.
        for noise in [
            "resourceVersion",
            "managedFields",
            "uid",
            "status",
            "finalizers",
            "last-applied",
        ] {
            assert!(!diff.contains(noise), "{noise} in {diff}");
        }
    }

    #[test]
    fn a_new_object_is_all_additions() {
        let (action, diff) =
            object_diff(None, &comparable(&file_object()), "l", "f.yaml:3").unwrap();
        assert_eq!(action, ObjectAction::Create);
        assert!(
            diff.starts_with("--- live: (none)\n+++ file: f.yaml:3\n@@ -0,0 +1,"),
            "{diff}"
        );
        assert!(diff.lines().skip(3).all(|l| l.starts_with('+')), "{diff}");
        assert!(diff.contains("+kind: ReportSchedule\n"), "{diff}");
    }

    #[test]
    fn a_removed_label_is_an_update() {
        let live = comparable(&live_object());
        let mut file = file_object();
        file["metadata"]["labels"] = json!({});
        let (action, diff) = object_diff(Some(&live), &comparable(&file), "l", "f").unwrap();
        assert_eq!(action, ObjectAction::Update);
        assert!(diff.contains("-    team: bi"), "{diff}");
    }

    #[test]
    fn live_paths_round_trip() {
        let key = ResourceKey::new(Kind::CustomerMapping, "team-a", "acme");
        assert_eq!(live_path(&key), "cluster:team-a/customermappings/acme");
        assert_eq!(parse_live_path(&live_path(&key)), Some(key));
        assert_eq!(parse_live_path("files/x.yaml"), None);
    }

    #[test]
    fn only_documents_without_a_namespace_take_the_default() {
        let mut loaded = load::Loaded::default();
        let text = "apiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata:\n  name: a\nspec:\n  localDir: {path: /tmp/a}\n---\napiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata:\n  name: b\n  namespace: default\nspec:\n  localDir: {path: /tmp/b}\n";
        load::load_text(std::path::Path::new("t.yaml"), text, &mut loaded);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let mut resources = loaded.resources;
        set_namespaces(&mut resources, "team", false).unwrap();
        assert_eq!(resources[0].key.namespace, "team");
        assert_eq!(resources[1].key.namespace, "default");
        // With -n, a document naming another namespace is refused, as kubectl does.
        let Err(Error::Invalid(diags)) = set_namespaces(&mut resources, "team", true) else {
            panic!("expected an error");
        };
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, 12);
        assert!(
            diags[0].message.contains("does not match `-n team`"),
            "{}",
            diags[0]
        );
    }
}
