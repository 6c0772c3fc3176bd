//! The reconcile of one object, as kube-runtime's controllers call it: [`reconcile`] wraps
//! [`apply`] and [`cleanup`] in the finalizer, [`error_policy`] retries with a [`Backoff`];
//! besides the state and status, a reconcile runs `ferry.dev/run-now` requests, issues hosted
//! SFTP passwords and releases a deleted CustomerMapping in the PSA. [`Context`] and
//! [`Caches`] are what every reconcile shares.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::objects::{FerryObject, Namespace, RUN_NOW_ANNOTATION, key_of};
use super::secrets;
use super::writes::{Applied, apply_object, event, forget_object, patch_status, status_for};
use crate::api::{CustomerMapping, DeliveryTarget, Kind, ReportSchedule, ResourceKey};
use crate::state::StateStore;
use crate::{Error, Result};

/// The finalizer Ferry puts on every object it reconciles, so a deletion is seen and cleaned
/// up (a hosted SFTP user removed, a ledger forgotten) before the object goes.
pub const FINALIZER: &str = "ferry.dev/cleanup";

/// How long an invalid object waits before it is looked at again (a change to it, or to an
/// object it refers to, triggers a reconcile at once anyway): no hot loop.
pub const INVALID_REQUEUE: Duration = Duration::from_secs(15 * 60);

/// How often a valid object's status is refreshed from the runs and syncs.
pub const STATUS_REQUEUE: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The state store (runs, syncs, applied resources).
    pub store: StateStore,
    /// Secrets mirrored from the cluster.
    pub secrets: secrets::SecretMirror,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Runs `ferry.dev/run-now` requests.
    pub runner: crate::runner::Runner,
    /// Where they execute, as the scheduler's runs (none: in this process).
    pub executor: Option<std::sync::Arc<dyn crate::daemon::Executor>>,
    /// Retry delays of objects whose reconcile failed for a transient reason.
    pub backoff: Backoff,
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// Ferry's own pipeline failed.
    #[error("{0}")]
    Ferry(#[from] Error),
    /// The finalizer helper failed, or the apply or cleanup inside it (kept as the source).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
}

impl ReconcileError {
    /// Whether trying again later can succeed without anyone changing anything: an API
    /// server or a state store that is away, a lock, a network failure. An invalid object or
    /// a request that can never work is not transient: it waits for a change.
    pub fn is_transient(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        match self {
            ReconcileError::Kube(_) => true,
            ReconcileError::Ferry(e) => e.is_transient(),
            ReconcileError::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.is_transient(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => true,
                _ => false,
            },
        }
    }
}

/// Per-object backoff after transient failures: 5 s, doubling up to 5 minutes, forgotten at
/// the next successful reconcile (as kube-runtime's own watcher backoff does for watches).
#[derive(Debug, Default)]
pub struct Backoff(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl Backoff {
    /// The first retry's delay.
    pub const FIRST: Duration = Duration::from_secs(5);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(300);

    /// The delay before retrying `object` after one more failure.
    pub fn failed(&self, object: &str) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(object.to_string()).or_insert(0);
        let delay = Self::FIRST
            .saturating_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    /// `object` reconciled: its next failure starts again from [`Backoff::FIRST`].
    pub fn succeeded(&self, object: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(object);
    }
}

/// Reconciles one object (the finalizer's `Apply`).
pub async fn apply<K: FerryObject>(
    obj: Arc<K>,
    ns_objects: Namespace,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let key = key_of(obj.as_ref());
    ctx.secrets
        .mirror(&ctx.client, &key.namespace, &ns_objects)
        .await?;
    let applied = apply_object(&ctx.store, ctx.secrets.files(), &ns_objects, &key).await?;
    let previous = obj.status_json();
    let mut handled_run_now = previous
        .get("lastHandledRunNow")
        .and_then(Value::as_str)
        .map(String::from);
    if let Applied::Invalid(messages) = &applied {
        event(
            &ctx.recorder,
            obj.as_ref(),
            EventType::Warning,
            "Invalid",
            "Validate",
            messages.join("; "),
        )
        .await;
    }
    // Run now, once per new annotation value (also while suspended).
    if K::KIND == Kind::ReportSchedule
        && matches!(applied, Applied::Ready { .. })
        && let Some(asked) = obj.annotations().get(RUN_NOW_ANNOTATION).cloned()
        && handled_run_now.as_deref() != Some(asked.as_str())
    {
        let outcome = run_now(ctx, &key).await;
        let (type_, reason, note) = match &outcome {
            Ok((true, message)) => (EventType::Normal, "RunNow", message.clone()),
            Ok((false, message)) => (EventType::Warning, "RunNowFailed", message.clone()),
            Err(e) => (EventType::Warning, "RunNowFailed", e.to_string()),
        };
        event(&ctx.recorder, obj.as_ref(), type_, reason, "Run", note).await;
        handled_run_now = Some(asked);
    }
    let stored = ctx.store.get(&key).await?;
    // A hosted SFTP user without keys gets its generated password in a Secret.
    let password_secret = match &stored {
        Some(stored)
            if K::KIND == Kind::DeliveryTarget && matches!(applied, Applied::Ready { .. }) =>
        {
            hosted_password(ctx, obj.as_ref(), stored).await?
        }
        _ => None,
    };
    let mut status = status_for(
        obj.meta().generation,
        stored.as_ref().map(|s| &*s.status),
        &previous,
        &applied,
        handled_run_now.as_deref(),
        &crate::clock::now()?.to_string(),
    );
    if let Some(name) = password_secret {
        status["passwordSecretName"] = json!(name);
    }
    let status = K::normalize_status(status);
    if status != previous {
        patch_status(&ctx.client, obj.as_ref(), status).await?;
    }
    Ok(match applied {
        Applied::Invalid(_) => Action::requeue(INVALID_REQUEUE),
        Applied::Ready { .. } => Action::requeue(STATUS_REQUEUE),
    })
}

/// The name of the Secret holding the generated password of hosted SFTP user `user`: one per
/// user, since connections naming the same user share its credentials.
pub fn password_secret_name(user: &str) -> String {
    format!("ferry-sftp-password-{user}")
}

/// For a `hostedSftp` target whose user logs in with a password (no connection gives it a
/// key): makes sure the user's password is in its Secret (key `password`, owned by the target
/// that created it) and its Argon2id hash in the state. A new user gets a generated password;
/// an existing Secret is the truth (after a lost state its password is hashed again, not
/// replaced). Returns the Secret's name, or `None` for targets that need none.
async fn hosted_password<K: FerryObject>(
    ctx: &Context,
    obj: &K,
    stored: &crate::state::StoredResource,
) -> Result<Option<String>> {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let key = &stored.key;
    let Some(crate::api::Spec::DeliveryTarget(target)) = stored.typed_spec() else {
        return Ok(None);
    };
    let Some(user) = target.hosted_sftp.as_ref().map(|h| h.user.clone()) else {
        return Ok(None);
    };
    let connections = ctx.runner.hosted_connections().await?;
    if !crate::hosted_sftp::users_needing_password(&connections).contains(&user) {
        return Ok(None);
    }
    let name = password_secret_name(&user);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::Secret(format!("Secret {}/{name}: {e}", key.namespace)))?;
    let stored_hash = ctx.store.password_hashes().await?.get(&user).cloned();
    let existing_password = existing
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("password"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    if let Some(password) = existing_password {
        let matches = match stored_hash {
            Some(hash) => {
                crate::hosted_sftp::verify_password_off_thread(password.clone(), hash).await
            }
            None => false,
        };
        if !matches {
            let hash = crate::hosted_sftp::hash_password_off_thread(password).await?;
            ctx.store.rotate_password(&user, &hash).await?;
        }
        return Ok(Some(name));
    }
    let (password, hash) = crate::hosted_sftp::issue_password().await?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: Some(
                [
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "ferry".to_string(),
                    ),
                    ("ferry.dev/sftp-user".to_string(), user.clone()),
                ]
                .into(),
            ),
            owner_references: obj.meta().uid.clone().map(|uid| {
                vec![OwnerReference {
                    api_version: crate::api::API_VERSION.into(),
                    kind: K::KIND.as_str().into(),
                    name: key.name.clone(),
                    uid,
                    controller: Some(true),
                    block_owner_deletion: None,
                }]
            }),
            ..Default::default()
        },
        data: Some(
            [
                (
                    "user".to_string(),
                    k8s_openapi::ByteString(user.clone().into_bytes()),
                ),
                (
                    "password".to_string(),
                    k8s_openapi::ByteString(password.into_bytes()),
                ),
            ]
            .into(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let written = match existing {
        None => api.create(&kube::api::PostParams::default(), &secret).await,
        Some(_) => {
            api.replace(&name, &kube::api::PostParams::default(), &secret)
                .await
        }
    };
    written.map_err(|e| Error::Secret(format!("Secret {}/{name}: {e}", key.namespace)))?;
    // The hash only once the Secret holds the password: a password nobody can read is useless.
    ctx.store.rotate_password(&user, &hash).await?;
    event(
        &ctx.recorder,
        obj,
        EventType::Normal,
        "PasswordIssued",
        "Issue",
        format!("generated password of hosted SFTP user {user} stored in Secret {name}"),
    )
    .await;
    Ok(Some(name))
}

/// Runs a ReportSchedule now (the `ferry.dev/run-now` annotation): whether it delivered
/// everywhere, and a message for the Event.
async fn run_now(ctx: &Context, key: &ResourceKey) -> Result<(bool, String)> {
    let stored = ctx
        .store
        .get(key)
        .await?
        .ok_or_else(|| Error::State(format!("{key} is not applied")))?;
    let view = crate::runner::ScheduleView::from_stored(&stored)?;
    let tz = view.compiled()?.time_zone().clone();
    let slot = crate::clock::now()?.to_zoned(tz);
    let request = crate::runner::RunRequest {
        slot: slot.clone(),
        trigger: crate::ledger::Trigger::RunNow,
        resend: false,
        resume: None,
    };
    let report = match &ctx.executor {
        Some(executor) => {
            executor
                .execute(ctx.runner.clone(), std::sync::Arc::new(view), request)
                .await?
        }
        None => ctx.runner.execute(&view, request).await?,
    };
    let succeeded = report.outcome == crate::ledger::Outcome::Succeeded;
    Ok((
        succeeded,
        format!(
            "run-now of slot {}: {}, {} rows, {} bytes{}",
            crate::ledger::rfc3339(&slot),
            report.outcome.as_str(),
            report.rows,
            report.bytes,
            report.error.map(|e| format!(": {e}")).unwrap_or_default()
        ),
    ))
}

/// Cleans up before the object goes (the finalizer's `Cleanup`): its state is removed, so a
/// hosted SFTP user loses access and a schedule stops; a CustomerMapping leaves the PSA as it
/// is (`deletionPolicy: Orphan`, the default).
pub async fn cleanup<K: FerryObject>(obj: Arc<K>, ctx: &Context) -> Result<Action, ReconcileError> {
    let key = key_of(obj.as_ref());
    if K::KIND == Kind::CustomerMapping {
        release_mapping(ctx, obj.as_ref(), &key).await?;
    }
    forget_object(&ctx.store, &key).await?;
    event(
        &ctx.recorder,
        obj.as_ref(),
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!("{key} removed from Ferry's state"),
    )
    .await;
    Ok(Action::await_change())
}

/// `deletionPolicy: Delete` on a CustomerMapping being deleted: its additions or units are
/// released in the PSA first (an error keeps the finalizer, so the deletion is retried);
/// `Orphan` (the default) leaves the PSA untouched.
async fn release_mapping<K: FerryObject>(ctx: &Context, obj: &K, key: &ResourceKey) -> Result<()> {
    let actual = ctx.store.snapshot().await?;
    let Some(view) = crate::psa::sync::MappingView::all(&actual)
        .into_iter()
        .find(|v| &v.key == key)
    else {
        return Ok(());
    };
    if view.spec.deletion_policy != crate::api::DeletionPolicy::Delete {
        return Ok(());
    }
    let done =
        crate::pipeline::apply::release_mapping(ctx.secrets.files(), &ctx.store, &view).await?;
    event(
        &ctx.recorder,
        obj,
        EventType::Normal,
        "PsaReleased",
        "Cleanup",
        if done.is_empty() {
            "deletionPolicy Delete: nothing to release in the PSA".to_string()
        } else {
            format!("deletionPolicy Delete: {}", done.join("; "))
        },
    )
    .await;
    Ok(())
}

/// The reconcile of kind `K`: finalizer, then [`apply`] or [`cleanup`].
pub async fn reconcile<K: FerryObject>(
    obj: Arc<K>,
    ctx: Arc<(Context, Caches)>,
) -> Result<Action, ReconcileError> {
    let (context, caches) = ctx.as_ref();
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let ns_objects = caches.namespace(&namespace)?;
    let key = key_of(obj.as_ref()).to_string();
    let action = finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            Finalizer::Apply(o) => apply(o, ns_objects, context).await,
            Finalizer::Cleanup(o) => cleanup(o, context).await,
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))?;
    context.backoff.succeeded(&key);
    Ok(action)
}

/// After a failed reconcile. A transient failure (API server, state store, network) is
/// retried with a per-object backoff; any other waits for a change to the object or to one it
/// refers to, looked at again only after [`INVALID_REQUEUE`], as an invalid object is (the way
/// Stackable's operators tell the two apart). Never a hot loop.
pub fn error_policy<K: FerryObject>(
    obj: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<(Context, Caches)>,
) -> Action {
    let key = key_of(obj.as_ref());
    if error.is_transient() {
        let delay = ctx.0.backoff.failed(&key.to_string());
        tracing::warn!(object = %key, retry_in = ?delay, "reconcile failed: {error}");
        Action::requeue(delay)
    } else {
        tracing::warn!(object = %key, "reconcile failed, waiting for a change: {error}");
        Action::requeue(INVALID_REQUEUE)
    }
}

/// The controllers' caches of the three kinds, read to validate a namespace as a whole.
#[derive(Clone, Default)]
pub struct Caches {
    /// ReportSchedules.
    pub schedules: Option<kube::runtime::reflector::Store<ReportSchedule>>,
    /// DeliveryTargets.
    pub targets: Option<kube::runtime::reflector::Store<DeliveryTarget>>,
    /// CustomerMappings.
    pub mappings: Option<kube::runtime::reflector::Store<CustomerMapping>>,
}

impl Caches {
    /// Every cached object of `namespace`.
    pub fn namespace(&self, namespace: &str) -> Result<Namespace> {
        let mut ns = Namespace::default();
        fn add_all<K: FerryObject>(
            ns: &mut Namespace,
            store: &Option<kube::runtime::reflector::Store<K>>,
            namespace: &str,
        ) -> Result<()> {
            if let Some(store) = store {
                for o in store.state() {
                    if o.namespace().as_deref() == Some(namespace) {
                        ns.add(o.as_ref())?;
                    }
                }
            }
            Ok(())
        }
        add_all(&mut ns, &self.schedules, namespace)?;
        add_all(&mut ns, &self.targets, namespace)?;
        add_all(&mut ns, &self.mappings, namespace)?;
        Ok(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_backs_off_doubling_to_five_minutes_and_a_success_starts_again() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.failed("default/reportschedule/daily").as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff.failed("default/reportschedule/other").as_secs(), 5);
        backoff.succeeded("default/reportschedule/daily");
        assert_eq!(backoff.failed("default/reportschedule/daily").as_secs(), 5);
    }

    #[test]
    fn an_invalid_object_waits_for_a_change_and_an_unreachable_store_is_retried() {
        let invalid = ReconcileError::Ferry(Error::Invalid(Vec::new()));
        let usage = ReconcileError::Ferry(Error::Usage("no such kind".into()));
        let store_down = ReconcileError::Ferry(Error::State("connection refused".into()));
        let locked = ReconcileError::Ferry(Error::Locked("pid 42".into()));
        assert!(!invalid.is_transient());
        assert!(!usage.is_transient());
        assert!(store_down.is_transient());
        assert!(locked.is_transient());
        let inside_finalizer = |e| {
            ReconcileError::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(e)))
        };
        assert!(!inside_finalizer(invalid).is_transient());
        assert!(inside_finalizer(store_down).is_transient());
        let unnamed =
            ReconcileError::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject));
        assert!(!unnamed.is_transient());
    }
}
