//! What a reconcile writes about its object: the object into Ferry's state
//! ([`apply_object`], [`forget_object`]), its status subresource ([`status_for`],
//! [`patch_status`]) and Kubernetes Events ([`event`]). A leaf, apart from kube-runtime's
//! controller machinery, so the reconcile and the tests call the same functions.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::objects::{FerryObject, Namespace, key_of};
use crate::Result;
use crate::api::ResourceKey;
use crate::pipeline::status::{ConditionType, Truth, set_condition};
use crate::state::StateStore;

/// The field manager of Ferry's server-side applies.
pub const FIELD_MANAGER: &str = "ferry-controller";

/// What validating and applying one object gave.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// The object is invalid: these messages, nothing written.
    Invalid(Vec<String>),
    /// Applied (or unchanged) at this generation of the state.
    Ready {
        /// Whether the state changed.
        changed: bool,
    },
}

/// Validates `key` among the objects of its namespace and applies it to the state: the shared
/// pipeline (desired -> plan -> the one apply), for one object. Its problems are the
/// diagnostics that name it, each `field: message` (the object has no file position).
pub async fn apply_object(
    store: &StateStore,
    secrets: &crate::secrets::FileSecrets,
    namespace: &Namespace,
    key: &ResourceKey,
) -> Result<Applied> {
    let mut problems = crate::pipeline::desired::problems_by_resource(&namespace.resources);
    if let Some(own) = problems.remove(key) {
        return Ok(Applied::Invalid(
            own.iter()
                .map(|d| {
                    if d.field.is_empty() {
                        d.message.clone()
                    } else {
                        format!("{}: {}", d.field, d.message)
                    }
                })
                .collect(),
        ));
    }
    let Some(resource) = namespace.resources.iter().find(|r| &r.key == key) else {
        return Ok(Applied::Invalid(vec![
            "the object could not be read".into(),
        ]));
    };
    let changed = crate::pipeline::apply::apply_object(secrets, store, resource).await?;
    Ok(Applied::Ready { changed })
}

/// Removes `key` from the state (the object is being deleted).
pub async fn forget_object(store: &StateStore, key: &ResourceKey) -> Result<()> {
    crate::pipeline::apply::forget(store, key).await
}

/// The status to apply: what the state holds for the object (runs, syncs), plus
/// `observedGeneration`, the `Ready` condition and the run-now echo.
pub fn status_for(
    obj_generation: Option<i64>,
    stored_status: Option<&Value>,
    previous: &Value,
    applied: &Applied,
    last_handled_run_now: Option<&str>,
    now: &str,
) -> Value {
    let mut status = stored_status
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    // The state's conditions (what runs, syncs and checks report, each with its own
    // transition time), and the object's own `Ready`, which keeps its transition time below
    // while its truth holds.
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != ConditionType::Ready.as_str());
    if let Some(ready) = previous
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == ConditionType::Ready.as_str())
        })
    {
        conditions.insert(0, ready.clone());
    }
    status["conditions"] = Value::Array(conditions);
    if let Some(g) = obj_generation {
        status["observedGeneration"] = json!(g);
    }
    match applied {
        Applied::Invalid(messages) => set_condition(
            &mut status,
            ConditionType::Ready,
            Truth::False,
            "Invalid",
            &messages.join("; "),
            now,
        ),
        Applied::Ready { .. } => set_condition(
            &mut status,
            ConditionType::Ready,
            Truth::True,
            "Applied",
            "validated and applied",
            now,
        ),
    }
    // `Ready` first, then the state's conditions in their order: the same status reads the
    // same, and is not written again.
    if let Some(conditions) = status["conditions"].as_array_mut()
        && let Some(at) = conditions
            .iter()
            .position(|c| c["type"] == ConditionType::Ready.as_str())
    {
        let ready = conditions.remove(at);
        conditions.insert(0, ready);
    }
    if let Some(v) = last_handled_run_now {
        status["lastHandledRunNow"] = json!(v);
    }
    status
}

/// Server-side applies `status` to the object's status subresource.
pub async fn patch_status<K: FerryObject>(
    client: &Client,
    obj: &K,
    status: Value,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": K::KIND.as_str(),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// Publishes an Event about `obj`; failures are logged, never fatal.
pub async fn event<K: FerryObject>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let reference = obj.object_ref(&());
    let ev = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference).await {
        tracing::warn!(object = %key_of(obj), "event not published: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What runs, syncs and checks record in the state reaches the object's status, and the
    /// object's own `Ready` keeps its transition time while it holds, first in the list.
    #[test]
    fn the_states_conditions_reach_the_status_and_ready_keeps_its_time() {
        let stored = json!({"conditions": [
            {"type": "Ready", "status": "True", "reason": "Applied", "message": "applied from files", "lastTransitionTime": "2026-01-02T00:00:00Z"},
            {"type": "Synced", "status": "True", "reason": "Delivered", "message": "slot 1", "lastTransitionTime": "2026-01-03T00:00:00Z"},
            {"type": "Reachable", "status": "False", "reason": "DeliveryCheckFailed", "message": "login refused", "lastTransitionTime": "2026-01-04T00:00:00Z"},
        ]});
        let previous = json!({"conditions": [
            {"type": "Ready", "status": "True", "reason": "Applied", "message": "validated and applied", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Synced", "status": "Unknown", "reason": "Pending", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]});
        let applied = Applied::Ready { changed: false };
        let status = status_for(
            Some(3),
            Some(&stored),
            &previous,
            &applied,
            None,
            "2026-01-05T00:00:00Z",
        );
        let conditions = status["conditions"].as_array().unwrap();
        let types: Vec<&str> = conditions
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Ready", "Synced", "Reachable"]);
        assert_eq!(conditions[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conditions[1]["status"], "True");
        assert_eq!(conditions[2]["reason"], "DeliveryCheckFailed");
        // Computed again from what it wrote: the same status, so no second write.
        let again = status_for(
            Some(3),
            Some(&stored),
            &status,
            &applied,
            None,
            "2026-01-06T00:00:00Z",
        );
        assert_eq!(again, status);
    }
}
