//! The cluster's objects as the pipeline takes them: typed (no text round trip), keyed, and
//! gathered per namespace, since a namespace is validated as a whole (references between
//! objects), like a directory in file mode.

use k8s_openapi::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Result;
use crate::api::{CustomerMapping, DeliveryTarget, Kind, ReportSchedule, ResourceKey, Spec};
use crate::load::{LoadedResource, Meta, Origin};

/// The annotation that asks for a run now; any new value triggers one run, echoed as
/// `status.lastHandledRunNow`.
pub const RUN_NOW_ANNOTATION: &str = "ferry.dev/run-now";

/// The three kinds, as the controller handles them.
pub trait FerryObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: Kind;
    /// The object's `status`, as JSON (`{}` when none).
    fn status_json(&self) -> Value;
    /// `status` as the CRD's schema keeps it (fields it does not declare dropped), so what is
    /// compared and applied is what the API server would store.
    fn normalize_status(status: Value) -> Value;
    /// The typed spec.
    fn spec_of(&self) -> Spec;
}

fn normalize<S: Serialize + DeserializeOwned>(status: Value) -> Value {
    match serde_json::from_value::<S>(status.clone()) {
        Ok(typed) => serde_json::to_value(typed).unwrap_or(status),
        Err(_) => status,
    }
}

impl FerryObject for ReportSchedule {
    const KIND: Kind = Kind::ReportSchedule;
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
    fn normalize_status(status: Value) -> Value {
        normalize::<crate::api::ReportScheduleStatus>(status)
    }
    fn spec_of(&self) -> Spec {
        Spec::ReportSchedule(self.spec.clone())
    }
}

impl FerryObject for DeliveryTarget {
    const KIND: Kind = Kind::DeliveryTarget;
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
    fn normalize_status(status: Value) -> Value {
        normalize::<crate::api::DeliveryTargetStatus>(status)
    }
    fn spec_of(&self) -> Spec {
        Spec::DeliveryTarget(Box::new(self.spec.clone()))
    }
}

impl FerryObject for CustomerMapping {
    const KIND: Kind = Kind::CustomerMapping;
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
    fn normalize_status(status: Value) -> Value {
        normalize::<crate::api::CustomerMappingStatus>(status)
    }
    fn spec_of(&self) -> Spec {
        Spec::CustomerMapping(self.spec.clone())
    }
}

/// The key of a cluster object.
pub fn key_of<K: FerryObject>(obj: &K) -> ResourceKey {
    ResourceKey::new(K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// How messages name a cluster object, in place of a file: `cluster:NS/KINDS/NAME`.
pub fn origin_label(key: &ResourceKey) -> String {
    format!(
        "cluster:{}/{}/{}",
        key.namespace,
        key.kind.plural(),
        key.name
    )
}

/// A cluster object as the pipeline takes it: its typed spec, its labels and annotations.
pub fn resource_of<K: FerryObject>(obj: &K) -> LoadedResource {
    let key = key_of(obj);
    let meta = Meta {
        labels: obj.labels().clone(),
        annotations: obj.annotations().clone(),
    };
    let origin = Origin::unlocated(origin_label(&key));
    LoadedResource::new(key, meta, obj.spec_of(), origin)
}

/// Every Ferry object of a namespace: the whole namespace is validated together (references
/// between objects), like a directory in file mode.
#[derive(Default)]
pub struct Namespace {
    /// The objects, typed.
    pub resources: Vec<LoadedResource>,
}

impl Namespace {
    /// Adds an object.
    pub fn add<K: FerryObject>(&mut self, obj: &K) -> Result<()> {
        self.resources.push(resource_of(obj));
        Ok(())
    }
}
